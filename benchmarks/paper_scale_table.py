"""The paper-scale table for the README (issue 14), from a folder of its runs.

    python benchmarks/paper_scale_table.py OUT_DIR/paper_scale

Per run: objective, steps, training seconds (what the budget counts) and wall seconds (with the
periodic evaluations and checkpoints; the final evaluation after it), forward (atomic) and reverse
(test) exact match, forward and reverse MRR over every entity (entity MRR; concept MRR for the
concept run, which has no LM head and so no exact match), and the JEPA collapse indicator (mean
cosine between the predictions of different items; near 1: the predictions collapsed) with the
targets' per-dimension std. The card, date and budget come from sweep_meta.json, which
benchmarks/paper_scale.py writes beside the runs. Reads only the runs' files (jepa_kit.collect).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from jepa_kit import collect
from jepa_kit.analysis import objective_label
from jepa_kit.evaluate import chance_entity_mrr

HEADER = ("| objective | steps | train s | wall s (+ final eval) | forward EM | reverse EM | forward MRR "
          "| reverse MRR | collapse: cos between items (target std) |")


def _fmt(v, f="{:.3f}") -> str:
    return "-" if v is None or v != v else f.format(v)


def _label(rec: dict) -> str:
    name = objective_label(rec.get("objective"))
    if rec.get("objective") == "jepa":
        name += f" ({rec.get('jepa_metric')}, k={rec.get('k_pred')}, λ={rec.get('lambda_jepa'):g})"
    if rec.get("objective") == "concept":
        w = int(rec.get("n_recognition"))
        name += f" ({w}+{int(rec.get('n_layer')) - w})"
    return name


def meta_of(folder) -> dict:
    path = Path(folder) / "sweep_meta.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def rows(folder) -> list[dict]:
    """One dict per run under ``folder``: the table's numbers (None where a run has none)."""
    out = []
    for rec in collect.collect(folder, data=False).to_dict("records"):
        run = collect.read_results(Path(folder) / rec["run"]).get("run", {})
        mrr = rec.get("mrr_metric")
        out.append({
            "run": rec["run"], "label": _label(rec), "state": rec.get("state"), "objective": rec.get("objective"),
            "steps": run.get("steps", rec.get("step")), "train_s": run.get("train_s"),
            "wall_s": run.get("wall_time_s"), "final_eval_s": run.get("final_eval_s"),
            "stopped_by": run.get("stopped_by"), "mrr_metric": mrr,
            "forward_em": rec.get("atomic.exact_match"), "reverse_em": rec.get("test.exact_match"),
            "forward_mrr": rec.get("atomic.mrr"), "reverse_mrr": rec.get("test.mrr"),
            "pred_cos": rec.get("jepa.pred_cos_between_items"), "target_std": rec.get("jepa.target_std"),
        })
    order = {"ntp": 0, "jepa": 1, "reverse_aug": 2, "concept": 3}
    return sorted(out, key=lambda r: (order.get(r["objective"], 9), r["run"]))


def render(folder) -> str:
    meta = meta_of(folder)
    n = meta.get("n_entities")
    chance = chance_entity_mrr(n) if n else None
    lines = [f"Card: {meta.get('device', 'unknown')}, {meta.get('date', 'date unknown')}; preset "
             f"{meta.get('preset', '?')}, training budget {_fmt(meta.get('budget_s'), '{:g}')} s per run"
             + {True: " (torch.compile on, its time included)", False: " (no torch.compile)"}.get(meta.get("compile"), "")
             + "; "
             + (f"chance MRR over {n:,} entities {chance:.5f}" if chance else "chance MRR: entity count unknown"),
             "", HEADER, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows(folder):
        unfinished = "" if r["state"] == "finished" else f" [{r['state']}]"
        mrr_kind = " (concept)" if r["mrr_metric"] == "concept_mrr" else ""
        collapse = "-" if r["pred_cos"] is None or r["pred_cos"] != r["pred_cos"] else \
            f"{r['pred_cos']:.3f} ({_fmt(r['target_std'])})"
        wall = f"{_fmt(r['wall_s'], '{:.0f}')} (+ {_fmt(r['final_eval_s'], '{:.0f}')})"
        lines.append(f"| {r['label']}{unfinished} | {_fmt(r['steps'], '{:,}')} | {_fmt(r['train_s'], '{:.0f}')} | {wall} "
                     f"| {_fmt(r['forward_em'])} | {_fmt(r['reverse_em'])} | {_fmt(r['forward_mrr'], '{:.4f}')}{mrr_kind} "
                     f"| {_fmt(r['reverse_mrr'], '{:.5f}')}{mrr_kind} | {collapse} |")
    if meta.get("skipped"):
        lines.append(f"\nNot run (no time left in the call): {', '.join(meta['skipped'])}")
    for name, error in (meta.get("failed") or {}).items():
        lines.append(f"\nFailed: {name}: {error}")
    return "\n".join(lines)


def main(folder: str) -> None:
    print(render(folder))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "papermill_runs/results/paper_scale_runs")
