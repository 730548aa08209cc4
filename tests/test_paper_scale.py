"""Issue 14's paper-scale sweep: the five runs, one budget, no selection on test; and its table."""
import json
from pathlib import Path

import pytest

from jepa_kit import sweeps
from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "papermill_runs" / "paper_scale.yaml"
load = load_benchmark


def planned(preset: str, tmp_path):
    sweep = sweeps.load_sweep(SWEEP, preset=preset)
    return sweeps.plan(sweep.runs, tmp_path, sweep.preset, sweep.name)


@pytest.mark.parametrize("preset", ["gpu", "tiny"])
def test_the_sweep_is_five_runs_with_one_budget_and_no_selection_on_test(preset, tmp_path):
    runs = planned(preset, tmp_path)
    names = [load("paper_scale").run_name(r.params) for r in runs]
    assert names == ["ntp", "jepa", "jepa_infonce", "reverse_aug", "concept_1+1"]
    params = {n: r.params for n, r in zip(names, runs)}
    budgets = {p["max_train_seconds"] for p in params.values()}
    assert len(budgets) == 1 and None not in budgets  # the same training-time budget for every run
    assert all(p["best_split"] != "test" for p in params.values())
    assert {p["lr"] for p in params.values()} == {1e-3}
    assert all(p["eval_every"] > 0 and p["eval_max_items"] for p in params.values())  # test-MRR curves
    seed = params["jepa"]
    assert (seed["k_pred"], seed["jepa_metric"], seed["lambda_jepa"]) == (1, "cosine", 1.0)
    assert params["jepa_infonce"]["jepa_metric"] == "infonce"
    concept = params["concept_1+1"]
    assert (concept["n_layer"], concept["n_recognition"], concept["best_metric"]) == (2, 1, "concept_mrr")
    if preset == "gpu":
        assert budgets == {45.0} and all(p["steps"] >= 100_000 for p in params.values())  # the budget ends each
        assert all(p["data"].endswith("data/paper") and p["batch_size"] == 1024 and p["model"] == "paper"
                   for p in params.values())


def test_the_osc_preset_continues_to_the_papers_3m_steps(tmp_path):
    runs = planned("osc", tmp_path)
    assert len(runs) == 5
    assert all(r.params["steps"] == 3_000_000 and r.params["max_train_seconds"] is None
               and r.params["best_split"] == "atomic" for r in runs)


def test_the_osc_runs_differ_from_the_gpu_runs_only_where_a_resume_may(tmp_path):
    from jepa_kit.config import RESUMABLE_FIELDS
    for gpu, osc in zip(planned("gpu", tmp_path), planned("osc", tmp_path)):
        differ = {k for k in gpu.params if gpu.params[k] != osc.params[k]}
        assert differ <= set(RESUMABLE_FIELDS), differ - set(RESUMABLE_FIELDS)


def _fabricate(folder: Path) -> None:
    """A run folder as benchmarks/paper_scale.py leaves it, with realistic paper-scale numbers."""
    def run(name, objective, steps, splits, jepa=None, **config):
        d = folder / name
        d.mkdir(parents=True)
        cfg = {"objective": objective, "data": "/nowhere/data/paper", "k_pred": 1, "jepa_metric": "cosine",
               "lambda_jepa": 1.0, "n_layer": None, "n_recognition": 1, "seed": 0, **config}
        (d / "config.json").write_text(json.dumps({"config": cfg}))
        (d / "status.json").write_text(json.dumps({"state": "finished", "step": steps, "objective": objective,
                                                   "trains_on_test_facts": objective == "reverse_aug"}))
        res = {**splits, "run": {"steps": steps, "train_s": 45.3, "wall_time_s": 63.0, "final_eval_s": 41.5,
                                 "stopped_by": "max_train_seconds"}}
        if jepa:
            res["jepa"] = jepa
        (d / "results.json").write_text(json.dumps(res))
        evals = [{"kind": "eval", "step": s, "final": False, "splits": splits} for s in (300, 600)]
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))

    def token(fwd_em, rev_em, fwd_mrr, rev_mrr):
        return {"atomic": {"exact_match": fwd_em, "entity_mrr": fwd_mrr, "mrr_last": 0.5, "n": 3000},
                "test": {"exact_match": rev_em, "entity_mrr": rev_mrr, "mrr_last": 0.01, "n": 3000}}

    run("ntp", "ntp", 3012, token(0.041, 0.0, 0.062, 0.00021))
    run("jepa", "jepa", 2398, token(0.012, 0.0, 0.031, 0.00018),
        jepa={"pred_cos_between_items": 0.981, "target_std": 0.042})
    run("jepa_infonce", "jepa", 2301, token(0.010, 0.0, 0.028, 0.00016),
        jepa={"pred_cos_between_items": 0.102, "target_std": 0.61}, jepa_metric="infonce")
    run("reverse_aug", "reverse_aug", 2950, token(0.030, 0.021, 0.051, 0.035))
    run("concept_1+1", "concept", 6911, {"atomic": {"concept_mrr": 0.12, "n": 3000},
                                         "test": {"concept_mrr": 0.0004, "n": 3000}}, n_layer=2)
    (folder / "sweep_meta.json").write_text(json.dumps({"device": "NVIDIA H100 80GB HBM3", "date": "2026-11-28",
                                                        "preset": "gpu", "budget_s": 45.0, "n_entities": 80000}))


def test_the_table_renders_every_run_with_card_budget_and_labels(tmp_path):
    _fabricate(tmp_path)
    text = load("paper_scale_table").render(tmp_path)
    lines = text.splitlines()
    assert lines[0].startswith("Card: NVIDIA H100 80GB HBM3, 2026-11-28") and "budget 45 s" in lines[0]
    assert "80,000 entities 0.00015" in lines[0]
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| objective")]
    assert len(rows) == 5
    by_name = {row.split(" | ")[0][2:]: row for row in rows}
    assert by_name["ntp (baseline)"].split(" | ")[1:6] == ["3,012", "45", "63 (+ 42)", "0.041", "0.000"]
    assert "0.981 (0.042)" in by_name["jepa (cosine, k=1, λ=1)"]
    assert "0.102 (0.610)" in by_name["jepa (infonce, k=1, λ=1)"]
    assert "reverse_aug (trains on test facts)" in by_name
    concept = by_name["concept (1+1)"]
    assert "0.00040 (concept)" in concept and concept.split(" | ")[4:6] == ["-", "-"]  # no exact match


def test_the_table_names_runs_that_were_skipped_or_failed(tmp_path):
    _fabricate(tmp_path)
    meta = json.loads((tmp_path / "sweep_meta.json").read_text())
    meta.update(skipped=["concept_1+1"], failed={"jepa_infonce": "TrainingDiverged: loss became NaN"})
    (tmp_path / "sweep_meta.json").write_text(json.dumps(meta))
    text = load("paper_scale_table").render(tmp_path)
    assert "Not run (no time left in the call): concept_1+1" in text
    assert "Failed: jepa_infonce: TrainingDiverged" in text


def test_the_runner_writes_curves_notebook_03_can_read(tmp_path):
    _fabricate(tmp_path)
    load("paper_scale").write_curves(tmp_path)
    lines = (tmp_path / "curves.csv").read_text().splitlines()
    assert lines[0] == "run,split,metric,step,mrr"
    assert "concept_1+1,test,concept_mrr,300,0.0004" in lines and "ntp,test,entity_mrr,600,0.00021" in lines
    from jepa_kit import collect
    table = collect.collect(tmp_path)  # what notebook 03 reads first (data paths from another machine)
    assert len(table) == 5 and set(table["state"]) == {"finished"}
