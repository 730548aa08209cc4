"""What the training and comparison figures draw, without plotly: split names and colours, the
loss and metric series of a run, the results table, and for many runs their settings (a run
without its seed), one colour per setting, mean ± std per setting and the chance level.

``jepa_kit.viz`` draws these (and re-exports them, so a notebook imports only viz); a test can pin
them without a browser. pandas on first use.
"""
from __future__ import annotations

import re

from jepa_kit.analysis import REVERSE_AUG_LABEL, run_label
from jepa_kit.collect import of_kind
from jepa_kit.data import SPLITS


# -- splits ---------------------------------------------------------------------------------------
SPLIT_LABELS = {"train": "train (both directions seen)", "atomic": "atomic (forward, seen)", "test": "test (reverse, never seen)"}
SPLIT_COLORS = {"train": "#7f7f7f", "atomic": "#1f77b4", "test": "#d62728"}


# -- one run (02_train) ---------------------------------------------------------------------------
def loss_series(objective: str | None = None) -> tuple[tuple[str, str, str], ...]:
    """(metrics.jsonl key, legend name, dash) of the loss curves: NTP, JEPA and the total; a concept
    run has one loss, its contrastive loss (logged as jepa_loss; its ntp_loss is 0)."""
    if objective == "concept":
        return (("jepa_loss", "concept (contrastive)", "solid"), ("loss", "total", "dot"))
    return (("ntp_loss", "NTP", "solid"), ("jepa_loss", "JEPA", "solid"), ("loss", "total", "dot"))


TOKEN_EVAL_METRICS = ("exact_match", "entity_mrr")
CONCEPT_EVAL_METRICS = ("concept_mrr", "concept_mrr_paper_ties")  # the kit's tie rule, then the paper's
METRIC_LABELS = {"exact_match": "exact match", "entity_mrr": "entity MRR (over every entity)",
                 "concept_mrr": "concept MRR (ties count half)",
                 "concept_mrr_paper_ties": "concept MRR (the paper's ties: count for the truth)"}
TABLE_DECIMALS = 4


def eval_metrics(rows: list[dict]) -> tuple[str, ...]:
    """The per-split metrics a run's eval rows hold: concept MRR (both tie rules) for a concept
    run, which has no token metrics; exact match and entity MRR otherwise."""
    concept = any(isinstance(m, dict) and m.get("concept_mrr") is not None
                  for r in of_kind(rows, "eval") for m in (r.get("splits") or {}).values())
    return CONCEPT_EVAL_METRICS if concept else TOKEN_EVAL_METRICS


TABLE_COLUMNS = ("exact_match", "mrr_first", "mrr_last", "entity_mrr", "joint_mrr_approx", "ntp_loss", "n")
CONCEPT_TABLE_COLUMNS = ("concept_mrr", "concept_mrr_paper_ties", "concept_rank_mean", "n")


def results_frame(results: dict):
    """results.json (or evaluate()'s dict) as a table: one row per split (a concept run: its concept
    MRR under both tie rules and mean rank; it has no token metrics)."""
    import pandas as pd
    splits = [s for s in SPLITS if isinstance(results.get(s), dict)]
    concept = any(results[s].get("concept_mrr") is not None for s in splits)
    columns = CONCEPT_TABLE_COLUMNS if concept else TABLE_COLUMNS
    rows = {s: {c: results[s].get(c) for c in columns} for s in splits}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame = frame.round(TABLE_DECIMALS)
    frame.index = [SPLIT_LABELS[s] for s in frame.index]
    if results.get("trains_on_test_facts"):
        frame.index.name = f"reverse_aug: {REVERSE_AUG_LABEL}"
    return frame


# -- many runs (03_reverse_accuracy) --------------------------------------------------------------
# 40 distinct colours that read on white (plotly's Dark24, then Light24 without its palest)
SETTING_PALETTE = (
    "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100", "#750D86", "#EB663B", "#511CFB",
    "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32", "#778AAE", "#862A16", "#A777F1", "#620042", "#1616A7",
    "#DA60CA", "#6C4516", "#0D2A63", "#AF0038", "#FD3216", "#6A76FC", "#FE00CE", "#FF9616", "#479B55", "#DC587D",
    "#D626FF", "#6E899C", "#00B5F7", "#B68E00", "#FF0092", "#86CE00", "#BC7196", "#7E7DCD", "#FC6955", "#E48F72",
)
_SEED = re.compile(r"(^|_)seed=?\d+(?=$|_| )")  # k_pred=2_seed=1, or abstract_ntp_seed0
_NUMBER = re.compile(r"(-?\d+(?:\.\d+)?(?:e-?\d+)?)")


def natural_key(text) -> tuple:
    """Sort key that orders the numbers inside labels by value: k_pred=2 before k_pred=10, 0.5 before 1."""
    parts = _NUMBER.split(str(text))
    return tuple((0, float(p), "") if i % 2 else (1, 0.0, p) for i, p in enumerate(parts) if p != "")


def strip_seed(name: str) -> str:
    """A run name without its seed: ``k_pred=2_seed=1`` -> ``k_pred=2``; ``default_seed=0`` -> ``default``;
    ``abstract_ntp_seed0`` -> ``abstract_ntp``."""
    head, _, tail = str(name).rpartition("/")
    tail = _SEED.sub("", tail).strip("_")
    tail = tail if tail and not tail.startswith(" ") else "default" + tail
    return f"{head}/{tail}" if head else tail


def setting_label(row) -> str:
    """A run's setting (``row``: a record of ``collect``): its display name without the seed, so
    the seeds of one setting share a label, a colour and a bar."""
    return run_label({**row, "run": strip_seed(row.get("run"))})


def setting_colors(labels) -> dict[str, str]:
    """One colour per setting: the settings in natural order take the palette in order. Pass
    every setting of a table (``table_settings``) and each chart of that table agrees."""
    ordered = sorted(set(labels), key=natural_key)
    return {s: SETTING_PALETTE[i % len(SETTING_PALETTE)] for i, s in enumerate(ordered)}


def table_settings(table) -> dict[str, str]:
    """run name -> setting label, for every run of a ``collect`` table."""
    return {r["run"]: setting_label(r) for r in table.to_dict("records")}


def chance_level(table, metric: str) -> float | None:
    """What a uniformly random entity scores, when the table knows the entity count: H_n / n for
    an MRR, 1 / n for exact match; None otherwise (or when the runs' data differ)."""
    if table is None:
        return None
    if "mrr" in metric and "chance_mrr" in table:
        values = {round(float(v), 12) for v in table["chance_mrr"] if v is not None and v == v}
        return values.pop() if len(values) == 1 else None
    if "exact_match" in metric and "n_entities" in table:
        values = {int(v) for v in table["n_entities"] if v is not None and v == v}
        return 1.0 / values.pop() if len(values) == 1 else None
    return None


def by_setting(table, metric: str, splits=("atomic", "test")):
    """mean, std and n over seeds of ``<split>.<metric>`` per setting, settings in natural order."""
    import pandas as pd

    from jepa_kit.analysis import finite, mean_std
    recs = table.to_dict("records")
    groups: dict[str, list[dict]] = {}
    for r in recs:
        groups.setdefault(setting_label(r), []).append(r)
    rows = []
    for setting in sorted(groups, key=natural_key):
        row = {"setting": setting, "n": len(groups[setting])}
        for split in splits:
            col = f"{split}.{metric}"
            vals = finite([r.get(col) for r in groups[setting]])
            mean, std = mean_std(vals) if vals else (None, None)
            row[f"{col} mean"], row[f"{col} std"] = mean, std
        rows.append(row)
    return pd.DataFrame(rows)


def entity_counts(table, n_entities) -> list[int]:
    if n_entities is not None:
        return [int(n) for n in (n_entities if isinstance(n_entities, (list, tuple, set)) else [n_entities])]
    if table is None or "n_entities" not in table:
        return []
    return sorted({int(n) for n in table["n_entities"] if n is not None and n == n})


def swatch(label: str, color: str) -> str:
    return f'<span style="color:{color}">&#9632;</span> {label}'  # a coloured square before the label


def run_styles(names, table, colors: dict | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """run name -> setting label and setting label -> colour (``colors``, else over every run of
    ``table``, or of ``names``)."""
    settings = table_settings(table) if table is not None else {}
    settings = {n: settings.get(n, strip_seed(n)) for n in names} | settings
    colors = {**setting_colors(settings.values()), **(colors or {})}
    return settings, colors


MRR_NAMES = {"entity_mrr": "entity MRR", "concept_mrr": "concept MRR"}


def mean_band(series) -> list[tuple[float, float, float, int]]:
    """Seeds of one setting as one line: (x, mean, std, n) at every x where a seed has a value,
    x in order, over the seeds that have one there (n; std NaN where n = 1). ``series``: one list
    of (x, y) per seed; None and NaN values are skipped."""
    from jepa_kit.analysis import finite, mean_std
    at: dict = {}
    for pts in series:
        for x, y in pts:
            at.setdefault(x, []).append(y)
    rows = []
    for x in sorted(at):
        ys = finite(at[x])
        if ys:
            rows.append((x, *mean_std(ys), len(ys)))
    return rows


def rgba(color: str, alpha: float) -> str:
    """A ``#rrggbb`` colour as ``rgba(r,g,b,alpha)`` (a band drawn in its line's colour)."""
    r, g, b = (int(color.lstrip("#")[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"
