"""The README's main job (`make demo` / `jepa-kit demo`).

Generates the `tiny` dataset, trains three objectives through papermill (the `ntp` baseline,
`jepa` with the defaults, the `reverse_aug` ceiling that trains on the test facts), renders the
analysis notebook to HTML and prints the forward/reverse table. Finished runs are kept: a second
`make demo` only redoes what is missing (`--fresh` starts over).
"""
from __future__ import annotations

import math
import shutil
import sys
import time
from pathlib import Path

from jepa_kit.analysis import RULE, compare, objective_label
from jepa_kit.files import atomic_write_text, read_json

OBJECTIVES = ("ntp", "jepa", "reverse_aug")
FORWARD_FLOOR = 0.95  # below this the baseline has not memorised its facts and reversal numbers mean nothing


SHOWN = OBJECTIVES + ("concept",)  # a table that also has a concept run (the positive control) shows it


def demo_table(table) -> list[dict]:
    """One row per objective from collect.collect(): the numbers the demo prints and saves. A metric
    an objective does not have (exact match of a concept run) is None."""
    from jepa_kit.data import SPLITS

    rows = []
    for objective in SHOWN:
        hit = table[table["objective"] == objective] if "objective" in table else table.iloc[0:0]
        if hit.empty:
            continue
        r = hit.iloc[0]
        row = {"objective": objective_label(objective), "state": r.get("state")}
        for split in SPLITS:
            for metric in ("exact_match", "entity_mrr", "concept_mrr"):
                v = r.get(f"{split}.{metric}")
                row[f"{split}.{metric}"] = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
        rows.append(row)
    return rows


def format_demo_table(rows: list[dict]) -> str:
    """Fixed-width table; the concept MRR columns appear only when a row has them."""
    cols = [("train.exact_match", "train EM"), ("atomic.exact_match", "forward EM (atomic)"),
            ("test.exact_match", "reverse EM (test)"), ("atomic.entity_mrr", "forward entity MRR"),
            ("test.entity_mrr", "reverse entity MRR")]
    if any(r.get("test.concept_mrr") is not None for r in rows):
        cols += [("atomic.concept_mrr", "forward concept MRR"), ("test.concept_mrr", "reverse concept MRR")]
    width = max(len(r["objective"]) for r in rows) + 2
    head = "objective".ljust(width) + "  ".join(h.rjust(max(len(h), 8)) for _, h in cols)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = ["-" if r.get(k) is None else f"{r[k]:.3f}" for k, _ in cols]
        lines.append(r["objective"].ljust(width) + "  ".join(c.rjust(max(len(h), 8)) for c, (_, h) in zip(cells, cols)))
    return "\n".join(lines)


def verdict(rows: list[dict], n_entities: int) -> list[str]:
    """Plain sentences about what the table shows. Whether JEPA beats the baseline is decided by the
    kit's rule (``jepa_kit.analysis.compare``); with one seed per objective it cannot tell."""
    from jepa_kit.evaluate import chance_entity_mrr

    by = {r["objective"].split(" ")[0]: r for r in rows}
    out = []
    base, jepa = by.get("ntp"), by.get("jepa")
    chance = chance_entity_mrr(n_entities)
    if base and (base["atomic.exact_match"] or 0) < FORWARD_FLOOR:
        out.append(f"WARNING: the baseline's forward exact match is {base['atomic.exact_match']:.3f} < {FORWARD_FLOOR}: "
                   "it has not memorised its facts, so the reversal column means nothing.")
    if base and jepa:
        d_em = jepa["test.exact_match"] - base["test.exact_match"]
        d_mrr = jepa["test.entity_mrr"] - base["test.entity_mrr"]
        c = compare([jepa["test.exact_match"]], [base["test.exact_match"]])
        out.append(f"Reversal (test): jepa {jepa['test.exact_match']:.3f} vs baseline {base['test.exact_match']:.3f} exact match "
                   f"({d_em:+.3f}); entity MRR {jepa['test.entity_mrr']:.3f} vs {base['test.entity_mrr']:.3f} ({d_mrr:+.3f}); "
                   f"chance entity MRR over {n_entities} entities is {chance:.3f}.")
        why = ": the rule needs two or more seeds per objective; the ablation study runs three" if c.beats is None else ""
        out.append(f"Does JEPA beat the baseline on reversal ({RULE})? {c.verdict[0].upper()}{c.verdict[1:]}{why}.")
    if "reverse_aug" in by:
        out.append("reverse_aug trains on the test facts by design: it shows the model can hold both directions, "
                   "it is not a method.")
    return out


def machine_line(runs: Path) -> str | None:
    """Where the demo's runs trained, from their config.json ("numerics", "versions"): float32 sums
    round differently with the CPU thread count and instruction set, and over 2,000 steps that moves
    the table's last digit. None for runs that recorded neither (trained by an older kit)."""
    seen = []
    for path in sorted(Path(runs).glob("*/config.json")):
        stored = read_json(path)
        n, torch_version = stored.get("numerics"), (stored.get("versions") or {}).get("torch")
        if n:
            threads = n["torch_threads"]
            where = n.get("cuda_device") or f"{threads} CPU thread{'s' * (threads != 1)} ({n['cpu_capability']})"
            text = f"{where}, torch {torch_version}"
            seen += [text] if text not in seen else []
    if not seen:
        return None
    return (f"Trained on {'; '.join(seen)}. Another thread count or instruction set rounds differently "
            "and may change the last digit (README, \"What the demo prints\").")


def main(args) -> int:
    from jepa_kit.collect import collect
    from jepa_kit.data import load_dataset
    from jepa_kit.datagen import ensure_data
    from jepa_kit.launch import render_report, run_local

    t0 = time.perf_counter()
    out = Path(args.out).resolve()
    if args.fresh and out.exists():
        shutil.rmtree(out)
    data_dir = ensure_data(out / "data", preset="tiny", seed=0)
    ds = load_dataset(data_dir)
    summary = ds.summary()
    if summary["leakage_problems"]:
        print("data check failed:", *summary["leakage_problems"], sep="\n  ", file=sys.stderr)
        return 1
    print(f"data: {data_dir} ({len(ds.train)} training items, {len(ds.entities())} entities, no leakage)")

    runs_dir = out / "runs"
    # a finished run is not trained again (train() resumes a run directory), so a rerun is quick
    outcomes = run_local([{"objective": o, "data": str(data_dir)} for o in OBJECTIVES], runs_dir,
                         preset="tiny", name="demo", progress_bar=False)
    failed = [o for o in outcomes if not o.ok]
    for o in failed:
        print(f"run {o.name} failed: {o.error} (see {o.notebook_out})", file=sys.stderr)
    if failed:
        return 1

    report = render_report(runs_dir / "demo", out / "report.html")
    table = collect(runs_dir / "demo")
    rows = demo_table(table)
    text = format_demo_table(rows)
    lines = verdict(rows, len(ds.entities())) + [line for line in [machine_line(runs_dir / "demo")] if line]
    atomic_write_text(out / "results.md", text + "\n\n" + "\n".join(lines) + "\n")
    atomic_write_text(out / "results.csv", table.to_csv(index=False))
    print()
    print(text)
    print()
    print("\n".join(lines))
    print(f"\nreport: {report}\ntable: {out / 'results.csv'}\ndemo wall time: {time.perf_counter() - t0:.0f} s")
    base = next((r for r in rows if r["objective"].startswith("ntp")), None)
    return 0 if base and (base["atomic.exact_match"] or 0) >= FORWARD_FLOOR else 1
