"""Reading run directories: the state of every run, and the tables the notebooks and the study use.

A run directory (``jepa_kit.rundir`` writes it) holds config.json, status.json, metrics.jsonl
and, once finished, results.json. Everything here reads those files only, so it works on a run
that is still going (a half-written last line is skipped) and on the small copies of finished
runs committed under papermill_runs/results/study_runs.

``status_table``/``format_status`` are ``jepa-kit runs``; ``collect`` is one row per run;
``ablation_summary`` is mean ± std over seeds per objective and ablation factor, with each
group's verdict against the baseline under the kit's one rule (``jepa_kit.analysis``);
``mrr_curve``/``curve_summary`` read the MRR-against-steps curves of the binding controls.

**Which MRR.** Token-level objectives (ntp, jepa, reverse_aug) report ``entity_mrr``: the rank of
the true tail among every entity of the dataset, each scored by the LM head. The concept objective
has no LM head and reports ``concept_mrr``: the rank of the true tail's concept among the concepts
of every entity. Both use the kit's tie rule (a tie counts half). ``<split>.mrr`` is whichever
of the two the run has (``mrr_metric`` names it); on 1-token data (the abstract setting) a
token-level run's entity MRR is the number comparable to a concept run's concept MRR, which is
what ``mrr_note`` says. The binding paper's baseline MRR is per target token; the kit's is not.

Imports neither torch nor pandas at import time: ``jepa-kit runs`` must be quick on a login node.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from jepa_kit.analysis import (BASELINE, REVERSE_AUG_LABEL, TRAINS_ON_TEST_FACTS, compare, finite, mean_std,
                               objective_label, run_label)
from jepa_kit.files import read_json
from jepa_kit.runlock import process_gone


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


def config_record(run_dir: str | Path) -> dict:
    """config.json as written by the trainer, or {}."""
    raw = _read_optional(Path(run_dir) / "config.json") or {}
    return raw if isinstance(raw, dict) else {}


def run_config(run_dir: str | Path, record: dict | None = None) -> dict:
    """The TrainConfig fields a run was started with (config.json's ``config``), or {}; ``record``:
    config.json already read (``config_record``)."""
    raw = config_record(run_dir) if record is None else record
    return raw.get("config", raw)


MRR_METRICS = ("concept_mrr", "entity_mrr")  # the one a split has is its MRR over every entity


def mrr_metric(metrics: dict | None) -> str | None:
    """The MRR over every entity that a split's metrics hold: "concept_mrr" (concept runs),
    "entity_mrr" (token-level runs), or None (neither)."""
    return next((name for name in MRR_METRICS if (metrics or {}).get(name) is not None), None)


def mrr_note(metric: str | None, entity_tokens: int | None) -> str:
    """What a run's ``<split>.mrr`` is, short enough for a table cell: "concept MRR"; "entity MRR,
    1-token" (1-token data: comparable to concept MRR); "entity MRR, 2-token" (each entity scored by
    both its tokens: not comparable)."""
    if metric == "concept_mrr":
        return "concept MRR"
    if metric != "entity_mrr":
        return ""
    if entity_tokens == 1:  # comparable to concept MRR
        return "entity MRR, 1-token"
    if entity_tokens == 2:  # each entity scored by both its tokens
        return "entity MRR, 2-token"
    return "entity MRR"


def data_facts(data_dir, memo: dict | None = None) -> dict:
    """``{"n_entities", "entity_tokens"}`` of a data directory (both None when it cannot be read:
    moved, or a path on another machine). Loads the dataset (torch, on first use): every entity
    that evaluation ranks among. Never generates data."""
    memo = {} if memo is None else memo
    key = str(data_dir) if data_dir else None
    if key not in memo:
        facts = {"n_entities": None, "entity_tokens": None}
        if key:
            from jepa_kit.data import DataError, load_dataset
            try:
                ds = load_dataset(key)
                facts = {"n_entities": len(ds.entities()), "entity_tokens": ds.entity_tokens}
            except (DataError, OSError):
                pass
        memo[key] = facts
    return memo[key]


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
    if state == "running" and process_gone(status):  # killed, out of memory, the machine restarted
        state = "stopped"
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
        "resumable": state in ("preempted", "stopped", "failed", "running") and _has_checkpoint(run_dir),
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


def _mrr_cell(metrics: dict | None) -> str:
    # entity MRR, or concept MRR marked "c" (the concept objective has no token metrics)
    metric = mrr_metric(metrics)
    return "-" if metric is None else f"{metrics[metric]:.3f}" + (" c" if metric == "concept_mrr" else "")


def format_status(rows: list[dict]) -> str:
    """A table for a terminal: one line per run, then the errors of failed runs. ``test MRR`` is the
    latest evaluation's entity MRR, or concept MRR marked ``c`` for concept runs. ``stopped``: the
    run says running, but its process on this host is gone; train it again to resume."""
    if not rows:
        return "no runs found"
    header = ["run", "state", "step", "items/s", "loss", "ntp", "jepa", "atomic EM", "test EM", "test MRR", "updated"]
    table = []
    for r in rows:
        state = r["state"] + (" (resumable)" if r["state"] in ("preempted", "stopped") and r["resumable"] else "")
        if r["trains_on_test_facts"]:
            state += f" [{REVERSE_AUG_LABEL}]"
        step = "-" if r["step"] is None else f"{r['step']}" + (f"/{r['total_steps']}" if r["total_steps"] else "")
        splits = (r["latest_eval"] or {}).get("splits", {})
        table.append([r["run"], state, step, _num(r["items_per_s"], "{:.0f}"),
                      _num(r["latest"].get("loss")), _num(r["latest"].get("ntp_loss")), _num(r["latest"].get("jepa_loss")),
                      _num(splits.get("atomic", {}).get("exact_match"), "{:.3f}"),
                      _num(splits.get("test", {}).get("exact_match"), "{:.3f}"), _mrr_cell(splits.get("test")),
                      _ago(r["updated"])])
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


def collect(folder: str | Path, data: bool = True):
    """One row per run under ``folder``: its TrainConfig, state and final per-split metrics.

    Metric columns are ``<split>.<metric>`` (e.g. ``test.exact_match``, ``atomic.entity_mrr``,
    ``test.concept_mrr``); a metric a run does not have (token metrics of a concept run) is
    missing (NaN). Per-layer lists stay in ``<split>.<metric>`` as lists. reverse_aug runs carry
    ``note = "trains on test facts"``. ``<split>.mrr`` is the run's MRR over every entity,
    ``mrr_metric`` which one it is and ``mrr_note`` whether it compares with concept MRR (see the
    module docstring). With ``data``, ``n_entities`` and ``entity_tokens`` come from each run's
    data directory, else from what the run recorded of it in config.json (``data_facts``: runs
    copied from another machine), else None.
    """
    import pandas as pd
    rows = []
    memo: dict = {}
    for d in find_runs(folder):
        st = run_status(d, folder)
        row = {"run": st["run"], "state": st["state"], "step": st["step"], "items_per_s": st["items_per_s"],
               "error": st["error"]}
        record = config_record(d)
        config = run_config(d, record)
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
        splits = split_results(results)
        facts = data_facts(config.get("data"), memo) if data else {"n_entities": None, "entity_tokens": None}
        if data and facts["n_entities"] is None:  # data on another machine: what the run recorded of it
            recorded = record.get("data_facts") or {}
            facts = {k: recorded.get(k) for k in facts}
        if facts["entity_tokens"] is None:
            facts = {**facts, "entity_tokens": _entity_tokens_of(splits)}
        row.update(facts)
        metric = next((m for m in map(mrr_metric, splits.values()) if m), None)
        row["mrr_metric"] = metric
        for split, metrics in splits.items():
            row[f"{split}.mrr"] = metrics.get(metric) if metric else None
        row["mrr_note"] = mrr_note(metric, facts["entity_tokens"])
        # entity MRR's chance level; concept MRR's is the same (both rank one truth among n entities)
        row["chance_mrr"] = _chance_mrr(facts["n_entities"])
        rows.append(row)
    return pd.DataFrame(rows)


def _chance_mrr(n_entities) -> float | None:
    # jepa_kit.evaluate.chance_entity_mrr without importing torch: H_n / n
    return None if not n_entities else sum(1.0 / r for r in range(1, int(n_entities) + 1)) / int(n_entities)


def _entity_tokens_of(splits: dict) -> int | None:
    # token-level metrics say it without the data: mrr_last (the second name token) is None for 1-token entities
    for metrics in splits.values():
        if metrics.get("entity_mrr") is not None and "mrr_last" in metrics:
            return 1 if metrics["mrr_last"] is None else 2
    return None


ABLATION_FACTORS = ("k_pred", "jepa_metric", "lambda_jepa", "loss_dropout")
GROUP_FACTORS = ABLATION_FACTORS + ("jepa_read", "jepa_predictor", "stop_grad")  # also set runs apart (the study varies none)
# What a run is trained on and with, besides its objective: runs that differ here are not seeds of
# one group and not compared with each other's baseline (the binding controls: 1- and 2-token
# data, with and without position embeddings).
SETTING_FIELDS = ("data", "model", "n_layer", "n_embd", "n_head", "pos_emb", "dropout")


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _setting_value(rec: dict, f: str, defaults: dict):
    v = rec.get(f)
    if _missing(v):
        return defaults.get(f)  # a run from before the field existed ran at its default
    return Path(str(v)).name if f == "data" else v


def _settings(records: list[dict], defaults: dict) -> list[str]:
    """Per record, the setting fields that vary across the table as "f=v, ..." ("" when all agree)."""
    enc = lambda v: json.dumps(v, sort_keys=True, default=str)
    varied = [f for f in SETTING_FIELDS if len({enc(_setting_value(r, f, defaults)) for r in records}) > 1]
    return [", ".join(f"{f}={_setting_value(r, f, defaults)}" for f in varied) for r in records]


def _places(differs: list[str], rec: dict, defaults: dict, varied: list[str]) -> list[tuple[str, object]]:
    # the (factor, value) rows of the ablation table one run belongs to (see ablation_summary)
    if not differs:
        return [(f, defaults[f]) for f in varied] or [("defaults", "-")]
    if len(differs) == 1:
        return [(differs[0], rec[differs[0]])]
    return [("combined", ", ".join(f"{f}={rec[f]}" for f in differs))]


ABLATION_METRICS = ("atomic.exact_match", "test.exact_match", "atomic.entity_mrr", "test.entity_mrr",
                    "atomic.concept_mrr", "test.concept_mrr")


def ablation_summary(table, metrics=ABLATION_METRICS, factors=GROUP_FACTORS, compare_on: str = "test.exact_match"):
    """mean ± std over seeds, grouped by setting, objective and ablation factor, and each group against the baseline.

    Each run is placed by the factors on which it differs from TrainConfig's defaults: one ->
    under that factor and value; several -> factor "combined"; none -> it is a default run,
    listed under every factor some run varies (at the default value, the reference point), or,
    when no run varies any, under factor "defaults" (then the table compares objectives).
    When runs differ in what they train on or with (``SETTING_FIELDS``: data, model size,
    position embeddings, dropout), a ``setting`` column names it and each setting is grouped
    and compared with its own baseline runs.
    Columns: [setting,] objective, factor, value, n, then ``<metric> mean`` / ``<metric> std`` per
    metric present in the table (``jepa_kit.analysis.mean_std``; a run without the metric, e.g.
    the token metrics of a concept run, is left out of that mean), then, when a setting has
    baseline (ntp) runs at the defaults, ``<compare_on> vs ntp`` (the verdict of
    ``jepa_kit.analysis.compare``: does the group beat those runs?) and ``<compare_on> p`` (its
    one-sided p-value, where a test was run). ``compare_on="test.mrr"`` compares every objective,
    the concept one included, on its MRR over every entity.
    """
    import pandas as pd
    from jepa_kit.config import TrainConfig
    defaults = TrainConfig().to_dict()
    metrics = [m for m in metrics if m in table]
    if compare_on in table and compare_on not in metrics:
        metrics.append(compare_on)
    records = table.to_dict("records")
    settings = _settings(records, defaults)
    varied = [f for f in factors if any(f in r and not _missing(r[f]) and r[f] != defaults[f] for r in records)]
    groups: dict[tuple[str, str, str, str], list[dict]] = {}
    baseline: dict[str, list] = {}
    for rec, setting in zip(records, settings):
        differs = [f for f in factors if f in rec and not _missing(rec[f]) and rec[f] != defaults[f]]
        for factor, value in _places(differs, rec, defaults, varied):
            groups.setdefault((setting, objective_label(rec.get("objective")), factor, str(value)), []).append(rec)
        if rec.get("objective") == BASELINE and not differs:
            baseline.setdefault(setting, []).append(rec.get(compare_on))  # what every group of the setting is compared with
    if not groups:
        return pd.DataFrame(columns=["objective", "factor", "value", "n"])
    rows = []
    for (setting, objective, factor, value), recs in groups.items():
        row = {"setting": setting, "objective": objective, "factor": factor, "value": value, "n": len(recs)}
        for m in metrics:
            row[f"{m} mean"], row[f"{m} std"] = mean_std(finite(r.get(m) for r in recs))
        base = baseline.get(setting, [])
        if compare_on in metrics and finite(base):
            c = compare([r.get(compare_on) for r in recs], base)
            is_base = objective == objective_label(BASELINE)
            row[f"{compare_on} vs {BASELINE}"] = "baseline" if is_base else c.verdict
            row[f"{compare_on} p"] = None if is_base else c.p
        rows.append(row)
    out = pd.DataFrame(rows)
    if not any(settings):
        out = out.drop(columns="setting")
    return out


def learning_curves(folder: str | Path) -> dict[str, list[dict]]:
    """metrics.jsonl rows of every run under ``folder``, keyed by run name."""
    return {_rel_name(d, folder): read_metrics(d) for d in find_runs(folder)}


def mrr_curve(rows: list[dict], split: str = "test") -> tuple[str | None, list[tuple[int, float]]]:
    """``(metric, [(step, value), ...])``: a run's MRR over every entity on ``split`` at each
    evaluation of its metrics.jsonl rows (a run still training gives the curve so far). The metric
    is concept_mrr for a concept run, entity_mrr otherwise (``mrr_metric``); None when no
    evaluation has either."""
    evals = [r for r in of_kind(rows, "eval") if isinstance((r.get("splits") or {}).get(split), dict)]
    metric = next((m for m in (mrr_metric(r["splits"][split]) for r in evals) if m), None)
    if metric is None:
        return None, []
    points = [(r["step"], r["splits"][split][metric]) for r in evals if r["splits"][split].get(metric) is not None]
    return metric, points


FORWARD_EM = 0.95  # forward facts memorised: atomic exact match (concept runs: atomic concept MRR) at least this
ABOVE_CHANCE = 5.0  # the reverse counts as learned from this multiple of the chance MRR


def curve_stats(rows: list[dict], n_entities: int | None = None, forward: float = FORWARD_EM,
                above: float = ABOVE_CHANCE) -> dict:
    """What a run's curves say about reversal (the binding controls' table).

    ``forward_step``: the first evaluation with atomic exact match >= ``forward`` (facts
    memorised; a concept run has no exact match, so its atomic concept MRR stands in for it).
    ``final``/``best`` test MRR and the step of the best (read off the curve: choosing it is
    selection on the test split, optimistic). ``reverse_step``: the first evaluation whose test MRR
    exceeds ``above`` x chance (needs ``n_entities``). ``slope_per_1k``: the test MRR's
    least-squares slope per 1,000 steps over the last half of the curve (is it still rising?).
    """
    metric, test = mrr_curve(rows, "test")
    evals = [r for r in of_kind(rows, "eval") if isinstance((r.get("splits") or {}).get("atomic"), dict)]
    key = "exact_match" if metric != "concept_mrr" else "concept_mrr"
    fwd = [r["step"] for r in evals if (r["splits"]["atomic"].get(key) or 0) >= forward]
    chance = _chance_mrr(n_entities)
    out = {"mrr_metric": metric, "eval_steps": len(test), "last_step": test[-1][0] if test else None,
           "forward_step": fwd[0] if fwd else None, "final_test_mrr": test[-1][1] if test else None,
           "best_test_mrr": None, "best_step": None, "chance_mrr": chance, "reverse_step": None, "slope_per_1k": None}
    if test:
        best = max(test, key=lambda p: p[1])
        out["best_test_mrr"], out["best_step"] = best[1], best[0]
    if chance is not None:
        out["reverse_step"] = next((step for step, v in test if v > above * chance), None)
    tail = test[len(test) // 2:]
    if len(tail) >= 2 and len({s for s, _ in tail}) > 1:
        ms = sum(s for s, _ in tail) / len(tail)
        mv = sum(v for _, v in tail) / len(tail)
        out["slope_per_1k"] = 1000 * sum((s - ms) * (v - mv) for s, v in tail) / sum((s - ms) ** 2 for s, _ in tail)
    return out


def curve_summary(table, curves: dict[str, list[dict]]):
    """One row per run of ``table`` (``collect``) with ``curve_stats`` of its curve (``curves``:
    ``learning_curves``), the run's setting (objective, data, entity tokens, position embeddings,
    seed) first. A run that is still training shows its curve so far."""
    import pandas as pd
    keep = ("run", "objective", "data", "entity_tokens", "n_entities", "pos_emb", "n_layer", "n_recognition", "seed",
            "state", "mrr_note")
    out = []
    for rec in table.to_dict("records"):
        row = {k: (Path(str(rec[k])).name if k == "data" and not _missing(rec.get(k)) else rec.get(k))
               for k in keep if k in rec}
        n = rec.get("n_entities")
        row.update(curve_stats(curves.get(rec["run"], []), None if _missing(n) else int(n)))
        out.append(row)
    return pd.DataFrame(out)


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
                   "jepa_read", "jepa_predictor", "stop_grad", "pos_emb", "n_recognition", "seed", "atomic.exact_match",
                   "test.exact_match", "atomic.entity_mrr", "test.entity_mrr", "atomic.concept_mrr", "test.concept_mrr",
                   "atomic.mrr", "test.mrr", "chance_mrr", "mrr_note")
SHOWN_WHEN_SET = ("jepa_read", "jepa_predictor", "stop_grad")  # columns shown when a run sets one apart from its default


def summary(table):
    """The columns a reader compares first, one row per run. Columns no run has are left out
    (concept MRR without a concept run); ``atomic.mrr``/``test.mrr`` are each run's MRR over every
    entity and ``mrr_note`` says which one it is: entity MRR on 1-token data is comparable to
    concept MRR. ``n_recognition`` is shown only when a concept run uses it, ``jepa_read``,
    ``jepa_predictor`` and ``stop_grad`` only when a run sets one apart from its default."""
    cols = [c for c in SUMMARY_COLUMNS if c in table]
    if "n_recognition" in cols and not ("objective" in table and (table["objective"] == "concept").any()):
        cols.remove("n_recognition")
    from jepa_kit.config import TrainConfig
    defaults = TrainConfig().to_dict()
    cols = [c for c in cols if c not in SHOWN_WHEN_SET or any(not _missing(v) and v != defaults[c] for v in table[c])]
    return table[cols]
