"""Reading run directories: the state of every run, and the tables the notebooks and the study use.

A run directory (``jepa_kit.rundir`` writes it) holds config.json, status.json, metrics.jsonl
and, once finished, results.json. Everything here reads those files only, so it works on a run
that is still going (a half-written last line is skipped) and on the small copies of finished
runs committed under papermill_runs/results/study_runs.

``status_table``/``format_status`` are ``jepa-kit runs``; ``collect`` is one row per run;
``ablation_summary`` is mean ± std over seeds per objective and ablation factor, with each
group's verdict against the baseline under the kit's one rule (``jepa_kit.analysis``).

Imports neither torch nor pandas at import time: ``jepa-kit runs`` must be quick on a login node.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from jepa_kit.analysis import (BASELINE, REVERSE_AUG_LABEL, TRAINS_ON_TEST_FACTS, compare, finite, mean_std,
                               objective_label, run_label)
from jepa_kit.files import read_json


def find_runs(folder: str | Path) -> list[Path]:
    """Every run directory (a folder with config.json or status.json) under ``folder``, sorted."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such folder")
    found = {p.parent for pattern in ("config.json", "status.json") for p in folder.rglob(pattern)}
    return sorted(d for d in found if not any(part.startswith(".") for part in d.relative_to(folder).parts))


def _read_optional(path: Path):
    # a run that has not written this file yet, or is writing it now: no answer rather than an error
    try:
        return read_json(path)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def of_kind(rows: list[dict], kind: str) -> list[dict]:
    """The metrics.jsonl rows of one kind: "train" (loss rows; the oldest runs wrote no kind) or "eval"."""
    return [r for r in rows if r.get("kind", "train") == kind]


def read_metrics(run_dir: str | Path) -> list[dict]:
    """metrics.jsonl rows; a half-written last line (a run still writing) is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return rows
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _has_checkpoint(run_dir: Path) -> bool:
    # complete checkpoints are checkpoints/step_N/ (a ".tmp" suffix marks one cut short)
    return any(p.is_dir() and not p.name.endswith(".tmp") for p in (run_dir / "checkpoints").glob("step_*"))


def read_results(run_dir: str | Path) -> dict:
    """results.json of a finished run ({} when there is none yet)."""
    return _read_optional(Path(run_dir) / "results.json") or {}


def run_config(run_dir: str | Path) -> dict:
    """The TrainConfig fields a run was started with (config.json's ``config``), or {}."""
    raw = _read_optional(Path(run_dir) / "config.json") or {}
    return raw.get("config", raw) if isinstance(raw, dict) else {}


def trains_on_test_facts(config: dict, status: dict | None = None) -> bool:
    """The run trains on the test facts: its status says so, or its objective does by design."""
    return bool((status or {}).get("trains_on_test_facts")) or config.get("objective") in TRAINS_ON_TEST_FACTS


def _rel_name(run_dir: Path, folder) -> str:
    if folder is None:
        return run_dir.name
    rel = run_dir.resolve().relative_to(Path(folder).resolve())
    return run_dir.resolve().name if str(rel) == "." else str(rel)


def run_status(run_dir: str | Path, folder: str | Path | None = None) -> dict:
    """State, step, items/s and latest metrics of one run, from its files only."""
    run_dir = Path(run_dir)
    status = _read_optional(run_dir / "status.json") or {}
    rows = read_metrics(run_dir)
    train_rows, eval_rows = of_kind(rows, "train"), of_kind(rows, "eval")
    config = run_config(run_dir)
    state = status.get("state") or ("finished" if (run_dir / "results.json").exists() else "unknown")
    try:
        updated = max(p.stat().st_mtime for p in run_dir.iterdir())
    except ValueError:
        updated = None
    out = {
        "run": _rel_name(run_dir, folder),
        "state": state,
        "step": status.get("step", train_rows[-1].get("step") if train_rows else None),
        "total_steps": status.get("total_steps"),
        "items_per_s": status.get("items_per_s", train_rows[-1].get("items_per_s") if train_rows else None),
        "error": status.get("error"),
        "resumable": state in ("preempted", "failed", "running") and _has_checkpoint(run_dir),
        "objective": config.get("objective", status.get("objective")),
        "trains_on_test_facts": trains_on_test_facts(config, status),
        "updated": updated,
        "latest": {k: train_rows[-1][k] for k in ("loss", "ntp_loss", "jepa_loss") if train_rows and k in train_rows[-1]},
        "latest_eval": eval_rows[-1] if eval_rows else None,
    }
    return out


def _ago(ts: float | None) -> str:
    if ts is None:
        return "-"
    s = max(0, time.time() - ts)
    return f"{s:.0f}s ago" if s < 120 else f"{s / 60:.0f}m ago" if s < 7200 else f"{s / 3600:.1f}h ago"


def _num(v, fmt: str = "{:.4g}") -> str:
    return "-" if v is None else fmt.format(v) if isinstance(v, (int, float)) else str(v)


def format_status(rows: list[dict]) -> str:
    """A table for a terminal: one line per run, then the errors of failed runs."""
    if not rows:
        return "no runs found"
    header = ["run", "state", "step", "items/s", "loss", "ntp", "jepa", "atomic EM", "test EM", "updated"]
    table = []
    for r in rows:
        state = r["state"] + (" (resumable)" if r["state"] == "preempted" and r["resumable"] else "")
        if r["trains_on_test_facts"]:
            state += f" [{REVERSE_AUG_LABEL}]"
        step = "-" if r["step"] is None else f"{r['step']}" + (f"/{r['total_steps']}" if r["total_steps"] else "")
        splits = (r["latest_eval"] or {}).get("splits", {})
        table.append([r["run"], state, step, _num(r["items_per_s"], "{:.0f}"),
                      _num(r["latest"].get("loss")), _num(r["latest"].get("ntp_loss")), _num(r["latest"].get("jepa_loss")),
                      _num(splits.get("atomic", {}).get("exact_match"), "{:.3f}"),
                      _num(splits.get("test", {}).get("exact_match"), "{:.3f}"), _ago(r["updated"])])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in [header, *table]]
    for r in rows:
        if r["state"] == "failed" and r["error"]:
            lines.append(f"{r['run']}: failed: {str(r['error']).strip().splitlines()[-1]}")
    return "\n".join(lines)


def status_table(folder: str | Path) -> list[dict]:
    return [run_status(d, folder) for d in find_runs(folder)]


def split_results(results: dict) -> dict[str, dict]:
    """results.json → {split: metrics}; accepts both ``{"train": {...}}`` and ``{"splits": {...}}``."""
    from jepa_kit.data import SPLITS
    if isinstance(results.get("splits"), dict):
        results = results["splits"]
    return {s: results[s] for s in SPLITS if isinstance(results.get(s), dict)}


def collect(folder: str | Path):
    """One row per run under ``folder``: its TrainConfig, state and final per-split metrics.

    Metric columns are ``<split>.<metric>`` (e.g. ``test.exact_match``, ``atomic.entity_mrr``);
    per-layer lists stay in ``<split>.<metric>`` as lists. reverse_aug runs carry
    ``note = "trains on test facts"``.
    """
    import pandas as pd
    rows = []
    for d in find_runs(folder):
        st = run_status(d, folder)
        row = {"run": st["run"], "state": st["state"], "step": st["step"], "items_per_s": st["items_per_s"],
               "error": st["error"]}
        config = run_config(d)
        for k, v in config.items():
            if not isinstance(v, (dict, list)):
                row[k] = v
        results = _read_optional(d / "results.json") or {}
        if not results and st["latest_eval"]:
            results = st["latest_eval"]  # a running or preempted run: its latest evaluation
        for split, metrics in split_results(results).items():
            for k, v in metrics.items():
                row[f"{split}.{k}"] = v
        for k, v in (results.get("jepa") or {}).items():
            row[f"jepa.{k}"] = v
        row["note"] = REVERSE_AUG_LABEL if st["trains_on_test_facts"] else ""
        rows.append(row)
    return pd.DataFrame(rows)


ABLATION_FACTORS = ("k_pred", "jepa_metric", "lambda_jepa", "loss_dropout")


def _places(differs: list[str], rec: dict, defaults: dict, varied: list[str]) -> list[tuple[str, object]]:
    # the (factor, value) rows of the ablation table one run belongs to (see ablation_summary)
    if not differs:
        return [(f, defaults[f]) for f in varied] or [("defaults", "-")]
    if len(differs) == 1:
        return [(differs[0], rec[differs[0]])]
    return [("combined", ", ".join(f"{f}={rec[f]}" for f in differs))]


def ablation_summary(table, metrics=("atomic.exact_match", "test.exact_match", "atomic.entity_mrr", "test.entity_mrr"),
                     factors=ABLATION_FACTORS, compare_on: str = "test.exact_match"):
    """mean ± std over seeds, grouped by objective and ablation factor, and each group against the baseline.

    Each run is placed by the factors on which it differs from TrainConfig's defaults: one ->
    under that factor and value; several -> factor "combined"; none -> it is a default run,
    listed under every factor some run varies (at the default value, the reference point), or,
    when no run varies any, under factor "defaults" (then the table compares objectives).
    Columns: objective, factor, value, n, then ``<metric> mean`` / ``<metric> std`` per metric
    (``jepa_kit.analysis.mean_std``), then, when the table has baseline (ntp) runs at the
    defaults, ``<compare_on> vs ntp`` (the verdict of ``jepa_kit.analysis.compare``: does the
    group beat those runs?) and ``<compare_on> p`` (its one-sided p-value, where a test was run).
    """
    import pandas as pd
    from jepa_kit.config import TrainConfig
    defaults = TrainConfig().to_dict()
    metrics = [m for m in metrics if m in table]
    records = table.to_dict("records")
    varied = [f for f in factors if any(f in r and r[f] != defaults[f] for r in records)]
    groups: dict[tuple[str, str, str], list[dict]] = {}
    baseline = []
    for rec in records:
        differs = [f for f in factors if f in rec and rec[f] != defaults[f]]
        for factor, value in _places(differs, rec, defaults, varied):
            groups.setdefault((objective_label(rec.get("objective")), factor, str(value)), []).append(rec)
        if rec.get("objective") == BASELINE and not differs:
            baseline.append(rec.get(compare_on))  # the runs every group is compared with
    if not groups:
        return pd.DataFrame(columns=["objective", "factor", "value", "n"])
    rows = []
    for (objective, factor, value), recs in groups.items():
        row = {"objective": objective, "factor": factor, "value": value, "n": len(recs)}
        for m in metrics:
            row[f"{m} mean"], row[f"{m} std"] = mean_std(finite(r.get(m) for r in recs))
        if compare_on in metrics and finite(baseline):
            c = compare([r.get(compare_on) for r in recs], baseline)
            is_base = objective == objective_label(BASELINE)
            row[f"{compare_on} vs {BASELINE}"] = "baseline" if is_base else c.verdict
            row[f"{compare_on} p"] = None if is_base else c.p
        rows.append(row)
    return pd.DataFrame(rows)


def learning_curves(folder: str | Path) -> dict[str, list[dict]]:
    """metrics.jsonl rows of every run under ``folder``, keyed by run name."""
    return {_rel_name(d, folder): read_metrics(d) for d in find_runs(folder)}


def per_layer(table, metric: str = "entity_mrr", splits=("atomic", "test")) -> dict[str, dict[str, list]]:
    """Logit-lens values per run: {run: {split: [metric at layer 1..n]}} from the ``<split>.per_layer`` columns."""
    out: dict[str, dict[str, list]] = {}
    for rec in table.to_dict("records"):
        name = run_label(rec)
        for split in splits:
            layers = rec.get(f"{split}.per_layer")
            if isinstance(layers, list) and layers:
                out.setdefault(name, {})[split] = [layer.get(metric) for layer in layers]
    return out


SUMMARY_COLUMNS = ("run", "objective", "note", "state", "step", "k_pred", "jepa_metric", "lambda_jepa", "loss_dropout",
                   "seed", "atomic.exact_match", "test.exact_match", "atomic.entity_mrr", "test.entity_mrr")


def summary(table):
    """The columns a reader compares first, one row per run."""
    return table[[c for c in SUMMARY_COLUMNS if c in table]]
