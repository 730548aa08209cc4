"""The ablation study's table: one row per setting, mean ± std over seeds, from run directories.

    jepa-kit study papermill_runs/output/study --out papermill_runs/results [--readme README.md]

writes ``study.csv`` (one row per run: every number the table is made of) and ``study.md`` (the
table), and, with ``--readme``, puts the same table between the README's results markers. A test
re-renders the README block from the committed CSV, so the README cannot drift from the data.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

from jepa_kit import collect
from jepa_kit.analysis import BASELINE, TRAINS_ON_TEST_FACTS, compare, finite, mean_std, objective_label
from jepa_kit.files import atomic_write_text

FACTORS = collect.ABLATION_FACTORS  # k_pred, jepa_metric, lambda_jepa, loss_dropout
# the commands that ran the study (`jepa-kit sweep` takes one sweep file), quoted in the README
SOURCE = "for s in baseline reverse_aug ablations; do jepa-kit sweep papermill_runs/$s.yaml --local; done"
README_BEGIN, README_END = "<!-- results:begin -->", "<!-- results:end -->"
COLUMNS = [  # (csv column, table header)
    ("atomic.exact_match", "forward EM (atomic)"),
    ("test.exact_match", "reverse EM (test)"),
    ("test.entity_mrr", "reverse entity MRR"),
    ("jepa.pred_cos_between_items", "pred. cosine between items"),
]


EXTRA_MEANS = ("atomic.concept_mrr", "test.concept_mrr")  # for the findings on concept runs


def _defaults() -> dict:
    from jepa_kit.model import ObjectiveConfig
    d = ObjectiveConfig()
    return {f: getattr(d, f) for f in FACTORS}


def setting_of(config: dict, defaults: dict) -> str:
    """The row a run belongs to: its objective and the factor(s) where it leaves the defaults."""
    objective = config.get("objective")
    if objective == BASELINE or objective in TRAINS_ON_TEST_FACTS:
        return objective_label(objective)
    differs = [f"{f}={config[f]:g}" if isinstance(config[f], float) else f"{f}={config[f]}"
               for f in FACTORS if config.get(f) != defaults[f]]
    return f"{objective} " + (", ".join(differs) if differs else "default")


def run_rows(folder: str | Path) -> list[dict]:
    """One record per finished run under ``folder`` (from ``collect.collect``): setting, config and final numbers."""
    from jepa_kit.data import SPLITS
    defaults = _defaults()
    n_entities: dict[str, int] = {}  # per data directory: for the chance level of entity MRR
    rows = []
    for rec in collect.collect(folder).to_dict("records"):
        if rec.get("state") != "finished":
            continue  # not part of the table
        row = {"run": rec["run"], "setting": setting_of(rec, defaults), "objective": rec.get("objective"),
               "seed": rec.get("seed"), **{f: rec.get(f) for f in FACTORS}, "steps": rec.get("step"),
               "n_entities": _entity_count(rec.get("data"), n_entities)}
        for split in SPLITS:
            for m in RUN_METRICS:
                row[f"{split}.{m}"] = _value(rec.get(f"{split}.{m}"))
        for k in ("pred_cos_between_items", "target_std", "jepa_distance"):
            row[f"jepa.{k}"] = rec.get(f"jepa.{k}")
        rows.append(row)
    return rows


# per split; a metric a run does not have is None (token metrics of a concept run, concept MRR of
# the others); "mrr" is the run's MRR over every entity, whichever of the two (jepa_kit.collect)
RUN_METRICS = ("exact_match", "entity_mrr", "mrr_first", "mrr_last", "concept_mrr", "concept_mrr_paper_ties", "mrr")


def _value(v):
    return None if _isnan(v) else v


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
    """Group run records by setting: n and mean/std of each column over seeds (``analysis.mean_std``);
    ``values`` keeps each column's per-seed values for ``analysis.compare``."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["setting"], []).append(r)
    out = []
    for setting in sorted(groups, key=_order):
        g = groups[setting]
        ents = {r.get("n_entities") for r in g if r.get("n_entities")}
        rec = {"setting": setting, "n": len(g), "n_entities": ents.pop() if len(ents) == 1 else None, "values": {}}
        for col in [c for c, _ in COLUMNS] + list(EXTRA_MEANS):
            vals = finite(r.get(col) for r in g)
            rec["values"][col] = vals
            rec[col] = mean_std(vals) if vals else None
        out.append(rec)
    return out


def _isnan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _pm(mean_std_: tuple[float, float]) -> str:
    mean, std = mean_std_
    return f"{mean:.3f} ± " + ("–" if math.isnan(std) else f"{std:.3f}")  # one seed: no std


def markdown(summary: list[dict]) -> str:
    head = "| setting | seeds | " + " | ".join(h for _, h in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (2 + len(COLUMNS))]
    for r in summary:
        cells = ["–" if r[c] is None else _pm(r[c]) for c, _ in COLUMNS]
        lines.append(f"| {r['setting']} | {r['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def findings(summary: list[dict]) -> list[str]:
    """Plain sentences: does any JEPA setting beat the baseline on reversal, beyond seed noise?
    "Beats" is the kit's rule (``jepa_kit.analysis.compare``) on per-seed reverse exact match."""
    by = {r["setting"]: r for r in summary}
    base = by.get(objective_label(BASELINE))
    out = []
    if not base or base["test.exact_match"] is None:
        return ["No finished baseline runs: nothing to compare against."]
    fwd = base["atomic.exact_match"][0]
    chance = ""
    if base.get("n_entities"):
        from jepa_kit.evaluate import chance_entity_mrr
        n = int(base["n_entities"])
        chance = f" (chance: {chance_entity_mrr(n):.3f} over {n} entities)"
    out.append(f"Baseline (ntp): forward exact match {fwd:.3f}, reverse exact match {_pm(base['test.exact_match'])}, "
               f"reverse entity MRR {_pm(base['test.entity_mrr'])}{chance}.")
    jepa = [r for r in summary if r["setting"].startswith("jepa") and r["test.exact_match"] is not None]
    verdicts = {r["setting"]: compare(r["values"]["test.exact_match"], base["values"]["test.exact_match"]) for r in jepa}
    winners = [r for r in jepa if verdicts[r["setting"]].beats]
    undecided = [r["setting"] for r in jepa if verdicts[r["setting"]].beats is None]
    best = max(jepa, key=lambda r: r["test.exact_match"][0], default=None)
    if best is not None:
        out.append(f"Best JEPA setting on reversal: {best['setting']}, reverse exact match {_pm(best['test.exact_match'])} "
                   f"(entity MRR {best['test.entity_mrr'][0]:.3f}).")
    if winners:
        out.append("JEPA settings that beat the baseline on reversal beyond seed noise: "
                   + ", ".join(r["setting"] for r in winners) + ".")
    else:
        out.append("No JEPA setting beats the baseline on reversal: every one stays within seed noise of it "
                   "(the reversal curse holds under this JEPA objective at this scale).")
    if undecided:
        out.append("Cannot tell (one seed on a side): " + ", ".join(undecided) + ".")
    low_fwd = [r["setting"] for r in jepa if r["atomic.exact_match"] and r["atomic.exact_match"][0] < 0.95]
    if low_fwd:
        out.append("Forward exact match below 0.95 (facts not memorised; their reversal numbers say little): "
                   + ", ".join(low_fwd) + ".")
    collapsed = [r for r in jepa if r.get("jepa.pred_cos_between_items") and r["jepa.pred_cos_between_items"][0] > 0.9]
    if collapsed:
        out.append(f"{len(collapsed)} of {len(jepa)} JEPA settings end with predictions of different items at cosine "
                   "> 0.9: the JEPA term is met by near-constant representations (collapse), not by binding the "
                   "two directions.")
    for r in summary:
        if r["setting"].startswith("concept") and r.get("test.concept_mrr") is not None:
            out.append(f"{r['setting']} (the binding paper's concept-level JEPA, a positive control): reverse concept "
                       f"MRR {_pm(r['test.concept_mrr'])}, forward {_pm(r['atomic.concept_mrr'])}.")
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
    for d in collect.find_runs(folder):
        if not (d / "results.json").exists():
            continue
        target = dest / d.relative_to(folder)
        target.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            if (d / name).exists():
                atomic_write_text(target / name, (d / name).read_text())
    return dest


def write_study(folder: str | Path, out: str | Path = "papermill_runs/results", readme: str | Path | None = None,
                copy_to: str | Path | None = None, source: str = SOURCE) -> int:
    """``jepa-kit study``: write study.csv and study.md under ``out`` from the finished runs under
    ``folder`` (first copied to ``copy_to``, when given), print the table, and put it in ``readme``
    between the results markers. Returns the exit code (1: no finished runs)."""
    import pandas as pd

    runs_dir = copy_runs(folder, copy_to) if copy_to else Path(folder)
    rows = run_rows(runs_dir)
    if not rows:
        print(f"error: no finished runs under {folder}", file=sys.stderr)
        return 1
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "study.csv"
    atomic_write_text(csv_path, pd.DataFrame(rows).to_csv(index=False))
    atomic_write_text(out / "study.md", render(read_csv(csv_path)) + "\n")
    print(render(read_csv(csv_path)))
    if readme:
        readme = Path(readme)
        link = csv_path.resolve().relative_to(readme.resolve().parent).as_posix()
        atomic_write_text(readme, replace_block(readme.read_text(), readme_block(csv_path, link, source)))
        print(f"updated {readme}")
    return 0
