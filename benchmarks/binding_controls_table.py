"""The binding-controls table for the README, from a folder of its runs (default: the committed copy).

    python benchmarks/binding_controls_table.py [papermill_runs/results/binding_controls_runs]
    python benchmarks/binding_controls_table.py papermill_runs/results/binding_scale_runs

Chance is each run's own: its data's entity count (``data_facts`` in the run's config.json).

Per run: forward memorisation step, final forward (atomic) and reverse (test) MRR, the best test
MRR on the curve with its step (read off the test curve: optimistic selection, shown only to
describe the curve), the first step above 5x chance, the slope of the last half.
"""
import sys

from jepa_kit import collect
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


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "papermill_runs/results/binding_controls_runs")
