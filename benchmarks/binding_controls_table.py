"""The binding-controls tables of docs/controls.md, from a folder of its runs (default: the committed copy).

    python benchmarks/binding_controls_table.py [papermill_runs/results/binding_controls_runs]
    python benchmarks/binding_controls_table.py papermill_runs/results/binding_scale_runs
    python benchmarks/binding_controls_table.py --at 10000,20000,30000,40000,50000,60000 \
        papermill_runs/results/binding_scale_runs papermill_runs/results/binding_scale_jepa_runs
    python benchmarks/binding_controls_table.py --at 1000,2000,4000,8000 --match abstract_ \
        --baseline abstract_ntp papermill_runs/results/binding_controls_runs papermill_runs/results/binding_controls_jepa_runs
    python benchmarks/binding_controls_table.py --at 0,10000,20000,30000 --since-forward --match abstract_concept \
        papermill_runs/results/binding_mid_concept_long_runs papermill_runs/results/binding_mid_abstract_scale_longer_runs

Chance is each run's own: its data's entity count (``data_facts`` in the run's config.json).

Per run: forward memorisation step, final forward (atomic) and reverse (test) MRR, the best test
MRR on the curve with its step (read off the test curve: optimistic selection, shown only to
describe the curve), the first step above 5x chance, the slope of the last half.

With ``--at STEPS``: instead, the reverse (test) MRR of every run of one or more folders at those
steps, side by side (runs trained alike compared at equal steps; the periodic evaluations use
``eval_max_items`` items per split, the final one every item), with a JEPA run's collapse indicator
(the cosine between different items' predictions, on held-out train items) at its last evaluation;
``--baseline SETTING`` adds the kit's rule (Welch's t-test over seeds, one-sided, alpha 0.05) on
the MRR at the last of those steps, each setting against that one; ``--forward`` shows the forward
(atomic) exact match at those steps instead (how soon runs memorise; a concept run, which has no
exact match, its atomic concept MRR), with no rule.
"""
import argparse
import json
from dataclasses import fields
from pathlib import Path

from jepa_kit import analysis, collect
from jepa_kit.config import TrainConfig
from jepa_kit.model import ObjectiveConfig
from jepa_kit.run_views import strip_seed
from jepa_kit.evaluate import chance_entity_mrr


def main(folder: str) -> None:
    table = collect.collect(folder)
    curves = collect.learning_curves(folder)
    if "n_entities" not in table or table["n_entities"].isna().any():
        raise SystemExit(f"{folder}: a run's config.json has no data_facts.n_entities (chance needs it)")
    for n in sorted({int(n) for n in table["n_entities"]}):
        chance = chance_entity_mrr(n)
        print(f"chance MRR ({n:,} entities, ties count half): {chance:.4f}; 5x chance: {5 * chance:.4f}")
    print()
    print("| run | MRR | forward step | final forward MRR | final reverse MRR | best reverse MRR (step) "
          "| first step > 5x chance | last-half slope /1k steps |")
    print("|---|---|---|---|---|---|---|---|")
    for rec in sorted(table.to_dict("records"), key=lambda r: r["run"]):
        s = collect.curve_stats(curves[rec["run"]], int(rec["n_entities"]))
        key = s["mrr_metric"]
        fwd = rec.get(f"atomic.{key}")
        fmt = lambda v, f="{:.3f}": "-" if v is None or v != v else f.format(v)
        print(f"| {rec['run']} | {'concept' if key == 'concept_mrr' else 'entity'} | {fmt(s['forward_step'], '{:.0f}')} "
              f"| {fmt(fwd)} | {fmt(s['final_test_mrr'])} | {fmt(s['best_test_mrr'])} ({s['best_step']}) "
              f"| {fmt(s['reverse_step'], '{:.0f}')} | {fmt(s['slope_per_1k'], '{:+.4f}')} |")


def forward_curve(rows: list[dict]) -> tuple[str | None, list[tuple[int, float]]]:
    """How far a run has memorised the forward facts at each evaluation: ``("exact_match", [(step,
    atomic exact match), ...])``, or for a concept run (no exact match) ``("concept_mrr", [(step,
    atomic concept MRR), ...])``, the number its ``forward step`` reads too; (None, []) for neither."""
    points = [(r["step"], r["splits"]["atomic"]["exact_match"]) for r in collect.of_kind(rows, "eval")
              if isinstance((r.get("splits") or {}).get("atomic"), dict)
              and r["splits"]["atomic"].get("exact_match") is not None]
    if points:
        return "exact_match", points
    metric, points = collect.mrr_curve(rows, "atomic")
    return (metric, points) if metric == "concept_mrr" and points else (None, [])


# What runs of one name must share to be pooled as seeds of one setting (mode is a speed setting)
SETTING = tuple(f.name for f in fields(ObjectiveConfig) if f.name != "mode") + collect.SETTING_FIELDS + (
    "embd_dropout", "lr", "schedule", "weight_decay", "batch_size")
DEFAULTS = TrainConfig().to_dict()  # what a field a run's config.json lacks was


def setting_of(run_dir: Path) -> str:
    """A run's objective and setting (``SETTING``; a field its config.json lacks reads as the default;
    the data by its fingerprint, or its folder's name where config.json has none), as one string."""
    record = collect.config_record(run_dir)
    cfg = collect.run_config(run_dir, record)
    values = {f: cfg.get(f, DEFAULTS.get(f)) for f in SETTING}
    values["data"] = record.get("data_fingerprint") or Path(str(values["data"])).name
    return json.dumps(values, sort_keys=True, default=str)


def at_steps(folders: list[str], steps: list[int], match: str = "", baseline: str | None = None,
             forward: bool = False, since_forward: bool = False) -> None:
    """The reverse MRR of each run in ``folders`` (whose name contains ``match``) at each of ``steps``
    ("-" where it has no evaluation there; the last evaluation at a step wins: the final one over
    every item). ``baseline``: the setting (a run name without its ``_seedN``) every other setting's
    MRR at the last of ``steps`` is compared with, by the kit's rule (``analysis.compare``). Runs of
    one name in several folders are pooled as seeds of one setting only when they were trained alike
    (``setting_of``); runs trained otherwise than the name's first runs form a setting of their own,
    "name (folder)" after the first folder that holds it, pooling with later runs trained alike.
    ``forward``: the forward (atomic) exact match instead of the reverse MRR (a concept run's
    atomic concept MRR), and no rule. A run whose name an earlier folder's run has is shown with
    its folder's name after it. ``since_forward``: each of ``steps`` counted from the run's forward
    step (``collect.curve_stats``), which a column after the name shows; runs with none are left out."""
    at_last: dict[str, list[float]] = {}
    labels: dict[tuple[str, str], str] = {}  # (run name without seed, how trained) -> the setting's label
    seen: set[str] = set()
    head = [f"forward step + {s:,}" if since_forward else f"step {s:,}" for s in steps]
    print(f"| run | {'forward' if forward else 'MRR'} | " + ("forward step | " if since_forward else "")
          + " | ".join(head) + " | pred. cosine between items (last eval) |")
    print("|---|---|" + "---|" * (len(steps) + since_forward) + "---|")
    for folder in folders:
        for run, rows in sorted(collect.learning_curves(folder).items()):
            if match not in run:
                continue
            metric, points = forward_curve(rows) if forward else collect.mrr_curve(rows, "test")
            if forward and metric is None:
                continue
            start = collect.curve_stats(rows)["forward_step"] if since_forward else 0
            if start is None:
                continue
            label = f"{run} ({Path(folder).name})" if run in seen else run
            seen.add(run)
            at = dict(points)  # a later point at the same step (the final evaluation) replaces the earlier
            jepa = [r["jepa"] for r in collect.of_kind(rows, "eval") if isinstance(r.get("jepa"), dict)]
            cos = jepa[-1].get("pred_cos_between_items") if jepa else None
            cells = ([f"{start:,}"] if since_forward else []) + [
                "-" if at.get(start + s) is None else f"{at[start + s]:.3f}" for s in steps]
            name, trained = strip_seed(run), setting_of(Path(folder) / run)
            first = not any(n == name for n, _ in labels)
            setting = labels.setdefault((name, trained), name if first else f"{name} ({Path(folder).name})")
            at_last.setdefault(setting, []).append(at.get(start + steps[-1]))
            kind = ("atomic concept MRR" if metric == "concept_mrr" else "atomic EM") if forward else \
                "concept" if metric == "concept_mrr" else "entity"
            print(f"| {label} | {kind} | " + " | ".join(cells)
                  + f" | {'-' if cos is None else f'{cos:.3f}'} |")
    if baseline is None or forward:
        return
    if baseline not in at_last:
        raise SystemExit(f"no runs of the baseline setting {baseline!r} among {sorted(at_last)}")
    print()
    side = lambda mean, std, n: f"{mean:.3f}" + (f" ± {std:.3f}" if std == std else "") + \
        f" ({n} seed{'s' if n != 1 else ''})"
    for setting, values in at_last.items():
        if setting != baseline:
            c = analysis.compare(values, at_last[baseline])
            print(f"- {setting} vs {baseline}, reverse MRR at step {steps[-1]:,}: {side(c.mean, c.std, c.n)} vs "
                  f"{side(c.base_mean, c.base_std, c.base_n)}: {c.verdict}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="*", default=["papermill_runs/results/binding_controls_runs"])
    p.add_argument("--at", help="comma-separated steps: the reverse MRR of every run of the folders at each")
    p.add_argument("--match", default="", help="with --at: only the runs whose name contains this")
    p.add_argument("--baseline", help="with --at: the setting (run name without _seedN) the others are "
                                      "compared with at the last step, by the kit's rule")
    p.add_argument("--forward", action="store_true", help="with --at: the forward (atomic) exact match "
                   "(concept runs: atomic concept MRR) instead")
    p.add_argument("--since-forward", action="store_true", help="with --at: steps counted from each run's "
                   "forward (memorisation) step")
    args = p.parse_args()
    if args.since_forward and not args.at:
        p.error("--since-forward goes with --at")
    if args.at:
        at_steps(args.folders, [int(s) for s in args.at.split(",")], args.match, args.baseline, args.forward,
                 args.since_forward)
    else:
        if len(args.folders) != 1:
            p.error("one folder at a time (or --at STEPS for several)")
        main(args.folders[0])
