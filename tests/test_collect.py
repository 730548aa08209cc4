"""Reading run directories: `jepa-kit runs`, the collected table, and the ablation table with its verdicts."""
import json
from pathlib import Path

import pandas as pd
import pytest

from jepa_kit import cli, collect


def _fake_run(folder: Path, name: str, status: dict, objective: str = "jepa", checkpoint: bool = False,
              eval_row: dict | None = None) -> Path:
    d = folder / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"config": {"objective": objective, "seed": 0, "k_pred": 1}}))
    (d / "status.json").write_text(json.dumps(status))
    rows = [{"kind": "train", "step": 10, "loss": 2.5, "ntp_loss": 2.0, "jepa_loss": 0.5, "items_per_s": 900.0}]
    if eval_row:
        rows.append(eval_row)
    (d / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)) + '\n{"kind": "train", "st')  # half-written
    if checkpoint:
        (d / "checkpoints" / "step_00000010").mkdir(parents=True)
    return d


def test_runs_command_shows_every_state(tmp_path, capsys):
    folder = tmp_path / "out"
    ev = {"kind": "eval", "step": 10, "splits": {"atomic": {"exact_match": 0.75}, "test": {"exact_match": 0.125}}}
    _fake_run(folder / "sweep", "ok", {"state": "finished", "step": 100, "total_steps": 100, "items_per_s": 1234.0}, eval_row=ev)
    _fake_run(folder / "sweep", "boom", {"state": "failed", "step": 10, "total_steps": 100,
                                         "error": "Traceback ...\nTrainingDiverged: loss is nan at step 10"})
    _fake_run(folder / "sweep", "cut", {"state": "preempted", "step": 50, "total_steps": 100}, checkpoint=True)
    _fake_run(folder / "sweep", "going", {"state": "running", "step": 20, "total_steps": 100, "items_per_s": 99.0},
              objective="reverse_aug")
    assert cli.main(["runs", str(folder)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line and not line.startswith("sweep/boom:")}
    assert "finished" in lines["sweep/ok"] and "100/100" in lines["sweep/ok"] and "1234" in lines["sweep/ok"]
    assert "0.750" in lines["sweep/ok"] and "0.125" in lines["sweep/ok"]
    assert "preempted (resumable)" in lines["sweep/cut"]
    assert "running" in lines["sweep/going"] and "trains on test facts" in lines["sweep/going"]
    assert "sweep/boom: failed: TrainingDiverged: loss is nan at step 10" in out
    assert cli.main(["runs", str(folder), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["run"]: r["state"] for r in rows} == {"sweep/boom": "failed", "sweep/cut": "preempted",
                                                     "sweep/going": "running", "sweep/ok": "finished"}
    assert cli.main(["runs", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err


def test_status_of_one_run_comes_from_its_files(tmp_path):
    d = _fake_run(tmp_path, "r", {"state": "preempted", "step": 50, "total_steps": 100}, checkpoint=True)
    (d / "checkpoints" / "step_00000060.tmp").mkdir()  # cut short: not a checkpoint
    assert collect.read_metrics(d) == [{"kind": "train", "step": 10, "loss": 2.5, "ntp_loss": 2.0, "jepa_loss": 0.5,
                                        "items_per_s": 900.0}], "the half-written last line is skipped"
    st = collect.run_status(d, tmp_path)
    assert (st["run"], st["state"], st["step"], st["items_per_s"], st["resumable"]) == ("r", "preempted", 50, 900.0, True)
    assert st["latest"] == {"loss": 2.5, "ntp_loss": 2.0, "jepa_loss": 0.5}
    assert collect.run_config(d) == {"objective": "jepa", "seed": 0, "k_pred": 1}
    assert collect.read_results(d) == {}
    (d / "results.json").write_text('{"test": {"exact')  # being written
    assert collect.read_results(d) == {}
    assert collect.read_metrics(tmp_path / "absent") == []


def test_split_results_accepts_both_layouts():
    metrics = {"exact_match": 0.5}
    assert collect.split_results({"test": metrics, "jepa": {"x": 1}}) == {"test": metrics}
    assert collect.split_results({"splits": {"atomic": metrics, "test": metrics}, "step": 3}) == {"atomic": metrics,
                                                                                                 "test": metrics}


def test_collect_has_one_row_per_run_with_its_final_numbers(tmp_path):
    d = _fake_run(tmp_path, "done", {"state": "finished", "step": 100})
    (d / "results.json").write_text(json.dumps({"test": {"exact_match": 0.25, "n": 4}, "jepa": {"target_std": 0.5}}))
    _fake_run(tmp_path, "aug", {"state": "running", "step": 10}, objective="reverse_aug",
              eval_row={"kind": "eval", "step": 10, "splits": {"test": {"exact_match": 0.9}}})
    table = collect.collect(tmp_path).set_index("run")
    assert table.loc["done", "test.exact_match"] == 0.25 and table.loc["done", "jepa.target_std"] == 0.5
    assert table.loc["aug", "test.exact_match"] == 0.9, "a running run: its latest evaluation"
    assert table.loc["aug", "note"] == "trains on test facts" and table.loc["done", "note"] == ""
    assert list(collect.summary(table.reset_index()).columns)[:5] == ["run", "objective", "note", "state", "step"]


def _seed_table(baseline, setting, factor_value=2):
    recs = [{"run": f"ntp_{i}", "objective": "ntp", "k_pred": 1, "seed": i, "test.exact_match": v}
            for i, v in enumerate(baseline)]
    recs += [{"run": f"k_{i}", "objective": "jepa", "k_pred": factor_value, "seed": i, "test.exact_match": v}
             for i, v in enumerate(setting)]
    return pd.DataFrame(recs)


def test_ablation_summary_says_which_groups_beat_the_baseline():
    table = _seed_table([0.0, 0.01, 0.0], [0.30, 0.31, 0.32])
    summary = collect.ablation_summary(table, metrics=("test.exact_match",)).set_index(["objective", "value"])
    assert summary.loc[("ntp (baseline)", "1"), "test.exact_match vs ntp"] == "baseline"
    k2 = summary.loc[("jepa", "2")]
    assert k2["n"] == 3 and k2["test.exact_match mean"] == pytest.approx(0.31)
    assert k2["test.exact_match vs ntp"].startswith("better (p = ")
    assert k2["test.exact_match p"] == pytest.approx(6.33e-6, rel=0.01)  # Welch: t = 46.0 on 3.2 df
    close = collect.ablation_summary(_seed_table([0.0, 0.01, 0.0], [0.0, 0.0, 0.01]), metrics=("test.exact_match",))
    assert close.loc[close["objective"] == "jepa", "test.exact_match vs ntp"].item() == "not better (p = 0.5)"
    one = collect.ablation_summary(_seed_table([0.0], [0.9]), metrics=("test.exact_match",))
    assert one.loc[one["objective"] == "jepa", "test.exact_match vs ntp"].item() == "cannot tell (one seed)"
    no_base = collect.ablation_summary(_seed_table([], [0.3, 0.4]), metrics=("test.exact_match",))
    assert "test.exact_match vs ntp" not in no_base


def test_learning_curves_and_per_layer_are_keyed_by_run(tmp_path):
    _fake_run(tmp_path / "s", "a", {"state": "finished"})
    curves = collect.learning_curves(tmp_path)
    assert list(curves) == ["s/a"] and curves["s/a"][0]["loss"] == 2.5
    table = pd.DataFrame([{"run": "x", "objective": "jepa", "note": "", "test.per_layer": [{"entity_mrr": 0.1}, {}]}])
    assert collect.per_layer(table) == {"x": {"test": [0.1, None]}}
