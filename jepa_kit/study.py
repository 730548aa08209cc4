"""The ablation study's table: one row per setting, mean ± std over seeds, from run directories.

    jepa-kit study papermill_runs/output/study --out papermill_runs/results [--readme README.md]

writes ``study.csv`` (one row per run: every number the table is made of) and ``study.md`` (the
table), and, with ``--readme``, puts the same table between the README's results markers. A test
re-renders the README block from the committed CSV, so the README cannot drift from the data.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from jepa_kit import runs
from jepa_kit.files import atomic_write_text

FACTORS = runs.ABLATION_FACTORS  # k_pred, jepa_metric, lambda_jepa, loss_dropout
README_BEGIN, README_END = "<!-- results:begin -->", "<!-- results:end -->"
COLUMNS = [  # (csv column, table header)
    ("atomic.exact_match", "forward EM (atomic)"),
    ("test.exact_match", "reverse EM (test)"),
    ("test.entity_mrr", "reverse entity MRR"),
    ("jepa.pred_cos_between_items", "pred. cosine between items"),
]


def _defaults() -> dict:
    from jepa_kit.model import ObjectiveConfig
    d = ObjectiveConfig()
    return {f: getattr(d, f) for f in FACTORS}


def setting_of(config: dict, defaults: dict) -> str:
    """The row a run belongs to: its objective and the factor(s) where it leaves the defaults."""
    objective = config.get("objective")
    if objective == "ntp":
        return "ntp (baseline)"
    if objective == "reverse_aug":
        return f"reverse_aug ({runs.REVERSE_AUG_LABEL})"
    differs = [f"{f}={config[f]:g}" if isinstance(config[f], float) else f"{f}={config[f]}"
               for f in FACTORS if config.get(f) != defaults[f]]
    return f"{objective} " + (", ".join(differs) if differs else "default")


def run_rows(folder: str | Path) -> list[dict]:
    """One record per finished run under ``folder`` (from ``runs.collect``): setting, config and final numbers."""
    defaults = _defaults()
    n_entities: dict[str, int] = {}  # per data directory: for the chance level of entity MRR
    rows = []
    for rec in runs.collect(folder).to_dict("records"):
        if rec.get("state") != "finished":
            continue  # not part of the table
        row = {"run": rec["run"], "setting": setting_of(rec, defaults), "objective": rec.get("objective"),
               "seed": rec.get("seed"), **{f: rec.get(f) for f in FACTORS}, "steps": rec.get("step"),
               "n_entities": _entity_count(rec.get("data"), n_entities)}
        for split in runs.SPLITS:
            for m in ("exact_match", "entity_mrr", "mrr_first", "mrr_last"):
                row[f"{split}.{m}"] = rec.get(f"{split}.{m}")
        for k in ("pred_cos_between_items", "target_std", "jepa_distance"):
            row[f"jepa.{k}"] = rec.get(f"jepa.{k}")
        rows.append(row)
    return rows


def _entity_count(data_dir: str | None, memo: dict) -> int | None:
    if data_dir and data_dir not in memo:
        from jepa_kit.data import DataError, load_dataset
        try:
            memo[data_dir] = len(load_dataset(data_dir).entities())
        except DataError:
            memo[data_dir] = None
    return memo.get(data_dir)


def _order(setting: str) -> tuple:
    head = 0 if setting.startswith("ntp") else 2 if setting.startswith("reverse_aug") else 1
    return head, setting != "jepa default", setting


def summary_rows(rows: list[dict]) -> list[dict]:
    """Group run records by setting: n and mean/std of each column (std over seeds, ddof 1)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["setting"], []).append(r)
    out = []
    for setting in sorted(groups, key=_order):
        g = groups[setting]
        ents = {r.get("n_entities") for r in g if r.get("n_entities")}
        rec = {"setting": setting, "n": len(g), "n_entities": ents.pop() if len(ents) == 1 else None}
        for col, _ in COLUMNS:
            vals = [float(r[col]) for r in g if r.get(col) is not None and not _isnan(r[col])]
            rec[col] = (_mean(vals), _std(vals)) if vals else None
        out.append(rec)
    return out


def _isnan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _mean(v: list[float]) -> float:
    return sum(v) / len(v)


def _std(v: list[float]) -> float:
    if len(v) < 2:
        return 0.0
    m = _mean(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def markdown(summary: list[dict]) -> str:
    head = "| setting | seeds | " + " | ".join(h for _, h in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (2 + len(COLUMNS))]
    for r in summary:
        cells = ["–" if r[c] is None else f"{r[c][0]:.3f} ± {r[c][1]:.3f}" for c, _ in COLUMNS]
        lines.append(f"| {r['setting']} | {r['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def findings(summary: list[dict]) -> list[str]:
    """Plain sentences: does any JEPA setting beat the baseline on reversal, beyond seed noise?"""
    by = {r["setting"]: r for r in summary}
    base = by.get("ntp (baseline)")
    out = []
    if not base or base["test.exact_match"] is None:
        return ["No finished baseline runs: nothing to compare against."]
    b_em, b_sd = base["test.exact_match"]
    b_mrr, b_mrr_sd = base["test.entity_mrr"]
    fwd = base["atomic.exact_match"][0]
    chance = ""
    if base.get("n_entities"):
        from jepa_kit.evaluate import chance_entity_mrr
        n = int(base["n_entities"])
        chance = f" (chance: {chance_entity_mrr(n):.3f} over {n} entities)"
    out.append(f"Baseline (ntp): forward exact match {fwd:.3f}, reverse exact match {b_em:.3f} ± {b_sd:.3f}, "
               f"reverse entity MRR {b_mrr:.3f} ± {b_mrr_sd:.3f}{chance}.")
    jepa = [r for r in summary if r["setting"].startswith("jepa") and r["test.exact_match"] is not None]
    # "beats" = mean reverse exact match above the baseline's by more than both settings' seed std combined
    winners = [r for r in jepa
               if r["test.exact_match"][0] - b_em > max(0.01, r["test.exact_match"][1] + b_sd)]
    best = max(jepa, key=lambda r: r["test.exact_match"][0], default=None)
    if best is not None:
        em, sd = best["test.exact_match"]
        out.append(f"Best JEPA setting on reversal: {best['setting']}, reverse exact match {em:.3f} ± {sd:.3f} "
                   f"(entity MRR {best['test.entity_mrr'][0]:.3f}).")
    if winners:
        out.append("JEPA settings that beat the baseline on reversal beyond seed noise: "
                   + ", ".join(r["setting"] for r in winners) + ".")
    else:
        out.append("No JEPA setting beats the baseline on reversal: every one stays within seed noise of it "
                   "(the reversal curse holds under this JEPA objective at this scale).")
    low_fwd = [r["setting"] for r in jepa if r["atomic.exact_match"] and r["atomic.exact_match"][0] < 0.95]
    if low_fwd:
        out.append("Forward exact match below 0.95 (facts not memorised; their reversal numbers say little): "
                   + ", ".join(low_fwd) + ".")
    collapsed = [r for r in jepa if r.get("jepa.pred_cos_between_items") and r["jepa.pred_cos_between_items"][0] > 0.9]
    if collapsed:
        out.append(f"{len(collapsed)} of {len(jepa)} JEPA settings end with predictions of different items at cosine "
                   "> 0.9: the JEPA term is met by near-constant representations (collapse), not by binding the "
                   "two directions.")
    aug = next((r for r in summary if r["setting"].startswith("reverse_aug")), None)
    if aug and aug["test.exact_match"] is not None:
        out.append(f"reverse_aug, which trains on the test facts, reaches {aug['test.exact_match'][0]:.3f}: the model "
                   "can hold both directions when it sees them.")
    return out


def render(rows: list[dict]) -> str:
    summary = summary_rows(rows)
    return markdown(summary) + "\n\n" + "\n".join(f"- {s}" for s in findings(summary))


def read_csv(path: str | Path) -> list[dict]:
    import pandas as pd
    frame = pd.read_csv(path)
    return [{k: (None if _isnan(v) else v) for k, v in rec.items()} for rec in frame.to_dict("records")]


def readme_block(csv_path: str | Path, link: str, source: str) -> str:
    """The README's results section: the table rendered from the CSV at ``csv_path`` (linked as ``link``)."""
    return (f"{README_BEGIN}\nMeasured by `{source}`; every number below is computed from "
            f"[{link}]({link}) (one row per run).\n\n{render(read_csv(csv_path))}\n{README_END}")


def readme_source(text: str) -> str:
    """The command quoted in a README results block (to re-render it identically)."""
    block = text[text.index(README_BEGIN):text.index(README_END)]
    return block.split("Measured by `", 1)[1].split("`", 1)[0]


def replace_block(text: str, block: str) -> str:
    start, end = text.index(README_BEGIN), text.index(README_END) + len(README_END)
    return text[:start] + block + text[end:]


RUN_FILES = ("config.json", "results.json", "metrics.jsonl", "status.json", "best.json")


def copy_runs(folder: str | Path, dest: str | Path) -> Path:
    """Copy every finished run's small files (no checkpoints) from ``folder`` to ``dest``: a record
    of the study small enough to commit, that notebook 03 and this module read like any runs."""
    folder, dest = Path(folder), Path(dest)
    for d in runs.find_runs(folder):
        if not (d / "results.json").exists():
            continue
        target = dest / d.relative_to(folder)
        target.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            if (d / name).exists():
                atomic_write_text(target / name, (d / name).read_text())
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="jepa-kit study", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="folder of run directories (searched recursively)")
    ap.add_argument("--out", default="papermill_runs/results", help="where study.csv and study.md go")
    ap.add_argument("--readme", default=None, help="README to update between the results markers")
    ap.add_argument("--copy-runs", default=None, metavar="DIR",
                    help="first copy the runs' config/metrics/results (no checkpoints) to DIR and build the table from there")
    ap.add_argument("--source", default="jepa-kit sweep papermill_runs/{baseline,reverse_aug,ablations}.yaml --local",
                    help="the command that produced the runs, quoted in the README")
    args = ap.parse_args(argv)
    import pandas as pd

    folder = copy_runs(args.folder, args.copy_runs) if args.copy_runs else Path(args.folder)
    rows = run_rows(folder)
    if not rows:
        print(f"error: no finished runs under {args.folder}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "study.csv"
    atomic_write_text(csv_path, pd.DataFrame(rows).to_csv(index=False))
    atomic_write_text(out / "study.md", render(read_csv(csv_path)) + "\n")
    print(render(read_csv(csv_path)))
    if args.readme:
        readme = Path(args.readme)
        link = csv_path.resolve().relative_to(readme.resolve().parent).as_posix()
        atomic_write_text(readme, replace_block(readme.read_text(), readme_block(csv_path, link, args.source)))
        print(f"updated {readme}")
    return 0
