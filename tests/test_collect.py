"""Reading run directories: `jepa-kit runs`, the collected table, and the ablation table with its verdicts."""
import json
import os
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


def test_a_running_run_whose_process_is_gone_shows_as_stopped(tmp_path, capsys):
    """A run killed without a word (SIGKILL, out of memory, the machine's session ended) leaves
    status.json at "running". On the host it ran on, a PID that no longer runs shows it as stopped
    and resumable; a live PID, or another host (nothing can be known there), stays running."""
    import socket
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(done.stdout)
    host = socket.gethostname()
    _fake_run(tmp_path, "killed", {"state": "running", "step": 20, "total_steps": 100, "host": host, "pid": dead},
              checkpoint=True)
    _fake_run(tmp_path, "live", {"state": "running", "step": 20, "total_steps": 100, "host": host,
                                 "pid": os.getpid()}, checkpoint=True)
    _fake_run(tmp_path, "elsewhere", {"state": "running", "step": 20, "total_steps": 100, "host": host + "-other",
                                      "pid": dead}, checkpoint=True)
    states = {r["run"]: (r["state"], r["resumable"]) for r in collect.status_table(tmp_path)}
    assert states == {"killed": ("stopped", True), "live": ("running", True), "elsewhere": ("running", True)}
    assert cli.main(["runs", str(tmp_path)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "stopped (resumable)" in lines["killed"] and "stopped" not in lines["live"] + lines["elsewhere"]


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


def test_ablation_summary_keeps_runs_read_elsewhere_apart():
    """Two JEPA runs alike in the study's factors but read at the <mask>s (or with the target detached)
    are not seeds of one group; a run saved before those fields (NaN in the table) reads as the default."""
    base = {"objective": "jepa", "k_pred": 0, "jepa_metric": "infonce", "lambda_jepa": 1.0, "loss_dropout": 0.0}
    table = pd.DataFrame([{**base, "run": "last", "seed": 0, "test.exact_match": 0.1, "jepa_read": float("nan")},
                          {**base, "run": "last1", "seed": 1, "test.exact_match": 0.2, "jepa_read": "last"},
                          {**base, "run": "mask", "seed": 0, "test.exact_match": 0.0, "jepa_read": "mask"},
                          {**base, "run": "sg", "seed": 0, "test.exact_match": 0.3, "jepa_read": "last",
                           "stop_grad": True}])
    out = collect.ablation_summary(table, metrics=("test.exact_match",))
    groups = dict(zip(out["value"], out["n"]))
    assert groups == {"k_pred=0, jepa_metric=infonce": 2, "k_pred=0, jepa_metric=infonce, jepa_read=mask": 1,
                      "k_pred=0, jepa_metric=infonce, stop_grad=True": 1}, groups


def test_summary_shows_where_the_term_is_read_only_when_a_run_sets_it():
    base = {"run": "a", "objective": "jepa", "seed": 0, "test.exact_match": 0.0}
    plain = pd.DataFrame([{**base, "jepa_read": "last", "jepa_predictor": "none", "stop_grad": False},
                          {**base, "run": "old", "jepa_read": float("nan")}])  # saved before the fields
    assert not {"jepa_read", "jepa_predictor", "stop_grad"} & set(collect.summary(plain).columns)
    head = pd.concat([plain, pd.DataFrame([{**base, "run": "h", "jepa_read": "mask", "jepa_predictor": "mlp"}])])
    shown = collect.summary(head)
    assert {"jepa_read", "jepa_predictor"} <= set(shown.columns) and "stop_grad" not in shown
    assert list(shown["jepa_predictor"])[-1] == "mlp"


def test_learning_curves_and_per_layer_are_keyed_by_run(tmp_path):
    _fake_run(tmp_path / "s", "a", {"state": "finished"})
    curves = collect.learning_curves(tmp_path)
    assert list(curves) == ["s/a"] and curves["s/a"][0]["loss"] == 2.5
    table = pd.DataFrame([{"run": "x", "objective": "jepa", "note": "", "test.per_layer": [{"entity_mrr": 0.1}, {}]}])
    assert collect.per_layer(table) == {"x": {"test": [0.1, None]}}


# -- concept runs (the binding paper's positive control) and the MRR every objective shares ----------

CONCEPT_METRICS = {"concept_mrr": 0.5, "concept_mrr_paper_ties": 0.55, "concept_rank_mean": 4.0, "n": 20}


def _concept_run(folder: Path, name: str, data=None, seed: int = 0, steps=(250, 500), test=(0.01, 0.2),
                 finished: bool = True) -> Path:
    """A concept run as the trainer writes it: train rows with ntp_loss 0, eval rows of concept metrics only."""
    d = folder / name
    d.mkdir(parents=True)
    config = {"objective": "concept", "seed": seed, "k_pred": 1, "n_layer": 2, "n_recognition": 1, "pos_emb": False,
              **({"data": str(data)} if data else {})}
    (d / "config.json").write_text(json.dumps({"config": config}))
    (d / "status.json").write_text(json.dumps({"state": "finished" if finished else "running", "step": steps[-1]}))
    rows = []
    for step, t in zip(steps, test):
        rows.append({"kind": "train", "step": step, "loss": 1.5, "ntp_loss": 0.0, "jepa_loss": 1.5})
        rows.append({"kind": "eval", "step": step, "splits": {"atomic": {**CONCEPT_METRICS, "concept_mrr": 0.97},
                                                              "test": {**CONCEPT_METRICS, "concept_mrr": t}}})
    (d / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    if finished:
        (d / "results.json").write_text(json.dumps({s: {**CONCEPT_METRICS, "concept_mrr": v}
                                                    for s, v in (("atomic", 0.97), ("test", test[-1]))}))
    return d


def test_collect_and_summary_show_a_concept_run_without_token_metrics(tmp_path, osu_dir):
    _concept_run(tmp_path, "concept", data=osu_dir)
    done = _fake_run(tmp_path, "ntp", {"state": "finished", "step": 100}, objective="ntp")
    # a token-level run on 1-token data: mrr_last is None (there is no second name token)
    (done / "results.json").write_text(json.dumps({"test": {"exact_match": 0.0, "entity_mrr": 0.3, "mrr_last": None}}))
    table = collect.collect(tmp_path).set_index("run")
    c, n = table.loc["concept"], table.loc["ntp"]
    assert c["test.concept_mrr"] == 0.2 and c["atomic.concept_mrr_paper_ties"] == 0.55
    assert pd.isna(c.get("test.exact_match")) and pd.isna(c.get("test.entity_mrr")), "no token metrics: missing, not 0"
    assert (c["mrr_metric"], c["test.mrr"], c["atomic.mrr"]) == ("concept_mrr", 0.2, 0.97)
    assert (n["mrr_metric"], n["test.mrr"]) == ("entity_mrr", 0.3)
    # the concept run's data is the 2-token excerpt: read from its data directory
    assert c["entity_tokens"] == 2 and c["n_entities"] > 100
    assert c["chance_mrr"] == pytest.approx(sum(1 / r for r in range(1, int(c["n_entities"]) + 1)) / c["n_entities"])
    assert n["entity_tokens"] == 1 and n["mrr_note"] == "entity MRR, 1-token"
    assert c["mrr_note"] == "concept MRR"
    cols = list(collect.summary(table.reset_index()).columns)
    assert {"atomic.concept_mrr", "test.concept_mrr", "test.mrr", "mrr_note", "n_recognition"} <= set(cols)
    # without a concept run the concept columns are not shown
    plain = collect.summary(table.reset_index().drop(columns=[k for k in table.columns if "concept" in k])
                            .query("objective != 'concept'"))
    assert not any("concept_mrr" in k for k in plain.columns) and "n_recognition" not in plain.columns


def test_runs_command_shows_concept_mrr(tmp_path, capsys):
    _concept_run(tmp_path, "c", finished=False)
    assert cli.main(["runs", str(tmp_path)]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert "0.200 c" in line and "running" in line  # test MRR of the latest evaluation, marked concept


def test_ablation_summary_groups_settings_and_keeps_concept_runs(tmp_path):
    recs = []
    for seed in range(2):
        base = {"seed": seed, "k_pred": 1, "jepa_metric": "cosine", "lambda_jepa": 1.0, "loss_dropout": 0.0}
        recs += [{**base, "run": f"a_ntp_pos_{seed}", "objective": "ntp", "data": "/x/tiny_abstract", "pos_emb": True,
                  "test.exact_match": 0.0, "test.entity_mrr": 0.5 + seed / 10, "test.mrr": 0.5 + seed / 10},
                 {**base, "run": f"a_ntp_{seed}", "objective": "ntp", "data": "/x/tiny_abstract", "pos_emb": False,
                  "test.exact_match": 0.0, "test.entity_mrr": 0.1 + seed / 100, "test.mrr": 0.1 + seed / 100},
                 {**base, "run": f"a_concept_{seed}", "objective": "concept", "data": "/x/tiny_abstract", "pos_emb": False,
                  "test.concept_mrr": 0.8 + seed / 100, "test.mrr": 0.8 + seed / 100},
                 {**base, "run": f"s_ntp_{seed}", "objective": "ntp", "data": "/y/tiny", "pos_emb": False,
                  "test.exact_match": 0.0, "test.entity_mrr": 0.01, "test.mrr": 0.01}]
    table = pd.DataFrame(recs)
    out = collect.ablation_summary(table, compare_on="test.mrr").set_index(["setting", "objective"])
    assert set(out.index) == {("data=tiny_abstract, pos_emb=True", "ntp (baseline)"),
                              ("data=tiny_abstract, pos_emb=False", "ntp (baseline)"),
                              ("data=tiny_abstract, pos_emb=False", "concept"),
                              ("data=tiny, pos_emb=False", "ntp (baseline)")}
    concept = out.loc[("data=tiny_abstract, pos_emb=False", "concept")]
    assert concept["n"] == 2 and concept["test.concept_mrr mean"] == pytest.approx(0.805)
    assert pd.isna(concept["test.exact_match mean"]), "a metric the objective lacks is NaN, not 0"
    # compared with the ntp runs of its own setting (0.10, 0.11), not with those with positions
    assert concept["test.mrr vs ntp"].startswith("better (p = ")
    assert out.loc[("data=tiny_abstract, pos_emb=True", "ntp (baseline)"), "test.mrr vs ntp"] == "baseline"
    # the default compare_on (reverse exact match): a concept run has none to compare
    assert collect.ablation_summary(table).set_index(["setting", "objective"]).loc[
        ("data=tiny_abstract, pos_emb=False", "concept"), "test.exact_match vs ntp"] == "cannot tell (no runs)"


def test_mrr_curve_and_curve_stats_read_a_run_still_training(tmp_path):
    from jepa_kit.evaluate import chance_entity_mrr

    d = _concept_run(tmp_path, "c", steps=(250, 500, 750, 1000), test=(0.01, 0.02, 0.2, 0.3), finished=False)
    rows = collect.read_metrics(d)
    assert collect.mrr_curve(rows, "test") == ("concept_mrr", [(250, 0.01), (500, 0.02), (750, 0.2), (1000, 0.3)])
    assert collect.mrr_curve([{"kind": "eval", "step": 1, "splits": {"test": {"exact_match": 1.0}}}]) == (None, [])
    stats = collect.curve_stats(rows, n_entities=600)
    chance = chance_entity_mrr(600)
    assert 0.02 < 5 * chance < 0.2  # so the reverse counts as learned from step 750
    assert stats["reverse_step"] == 750 and stats["chance_mrr"] == pytest.approx(chance)
    assert (stats["forward_step"], stats["best_step"], stats["best_test_mrr"], stats["final_test_mrr"]) == (250, 1000, 0.3, 0.3)
    assert stats["slope_per_1k"] == pytest.approx(0.4)  # last half: (750, 0.2), (1000, 0.3)
    ntp = [{"kind": "eval", "step": s, "splits": {"atomic": {"exact_match": em, "entity_mrr": 1.0},
                                                  "test": {"exact_match": 0.0, "entity_mrr": 0.001}}}
           for s, em in ((100, 0.5), (200, 0.96))]
    stats = collect.curve_stats(ntp, n_entities=600)
    assert stats["mrr_metric"] == "entity_mrr" and stats["forward_step"] == 200 and stats["reverse_step"] is None
    table = collect.collect(tmp_path)
    summary = collect.curve_summary(table, collect.learning_curves(tmp_path))
    assert summary.loc[0, "run"] == "c" and summary.loc[0, "best_test_mrr"] == 0.3 and summary.loc[0, "state"] == "running"


def test_a_run_copied_without_its_data_still_knows_its_entity_count(tmp_path):
    """Runs brought back from a GPU machine (or the committed ones) have no data directory here:
    the entity count and chance level come from what the run recorded in config.json."""
    import shutil

    from jepa_kit.config import TrainConfig
    from jepa_kit.datagen import generate
    from jepa_kit.train import train

    data = generate("tiny", tmp_path / "data", seed=0)
    train(TrainConfig.from_preset("tiny", data=str(data), out=str(tmp_path / "runs" / "r"), n_layer=1, n_embd=32,
                                  n_head=2, steps=2, batch_size=32, eval_every=0, eval_max_items=10, progress="none"))
    recorded = json.loads((tmp_path / "runs" / "r" / "config.json").read_text())["data_facts"]
    assert recorded == {"n_entities": 600, "entity_tokens": 2}
    here = collect.collect(tmp_path / "runs").iloc[0]
    shutil.rmtree(data)
    away = collect.collect(tmp_path / "runs").iloc[0]
    assert (away["n_entities"], away["entity_tokens"], away["chance_mrr"]) == \
        (here["n_entities"], here["entity_tokens"], here["chance_mrr"]) == (600, 2, pytest.approx(0.011616, abs=1e-5))
