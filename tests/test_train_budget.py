"""The training time budget (TrainConfig.max_train_seconds): where it stops, what it records, resume.

A fake clock makes every optimizer step take exactly one second and every evaluation a hundred, so
the step a budget stops at is known in advance; nothing sleeps and nothing depends on real time.
"""
import json
import os
import signal

import pytest
import torch

from jepa_kit import checkpoint as ckpt
from jepa_kit import runtime
from jepa_kit import step as S
from jepa_kit import train as T
from jepa_kit.config import ConfigError, TrainConfig
from jepa_kit.runtime import Preempted

SMALL = dict(n_layer=1, n_embd=32, n_head=2, batch_size=32, lr=3e-3, steps=12, log_every=4, eval_every=1,
             eval_max_items=8, ckpt_every=100, progress="none")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from jepa_kit.datagen import generate

    return generate("tiny", tmp_path_factory.mktemp("budget_data") / "data", seed=0, valid_per_split=24)


@pytest.fixture
def fake_clock(monkeypatch):
    """One second per training step, a hundred per evaluation (which the budget must not count)."""
    now = [0.0]
    step, evaluate = S.train_step, T.Trainer.evaluate

    def timed_step(*a, **kw):
        now[0] += 1.0
        return step(*a, **kw)

    def timed_evaluate(self, *a, **kw):
        now[0] += 100.0
        return evaluate(self, *a, **kw)

    monkeypatch.setattr(S, "train_step", timed_step)  # where the trainer's step (step.TrainerStep) finds it
    monkeypatch.setattr(T.Trainer, "evaluate", timed_evaluate)
    monkeypatch.setattr(T, "_clock", lambda: now[0])
    return now


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # a fixed reduction order: a resumed run equals an uninterrupted one exactly
    yield
    torch.set_num_threads(n)


def config(data, out, **kw):
    return TrainConfig.from_preset("tiny", data=str(data), out=str(out), **{**SMALL, **kw})


def read(run, name):
    return json.loads((run / name).read_text())


def metric_rows(run, kind):
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def test_the_budget_ends_training_at_a_step_boundary_then_evaluates_as_usual(data, tmp_path, fake_clock):
    run = T.train(config(data, tmp_path / "run", max_train_seconds=2.5))
    res, status = read(run, "results.json"), read(run, "status.json")
    # 2.5 s of steps is used up by step 3, although 2 evaluations (200 fake seconds) ran in between
    assert res["run"]["steps"] == 3 and res["run"]["stopped_by"] == "max_train_seconds"
    assert res["run"]["train_s"] == 3.0
    assert status["state"] == "finished" and status["step"] == 3 and status["stopped_by"] == "max_train_seconds"
    assert ckpt.latest_checkpoint(run).name == "step_00000003"
    evals = metric_rows(run, "eval")
    assert [(r["step"], r["final"]) for r in evals] == [(1, False), (2, False), (3, True)]
    assert all(res[s]["n"] == 24 for s in ("train", "atomic", "test"))  # the final evaluation: every item
    assert metric_rows(run, "train")[-1]["step"] == 3  # the last step's metrics row is written


def test_the_budget_counts_training_seconds_over_resumes(data, tmp_path, fake_clock):
    run = T.train(config(data, tmp_path / "run", max_train_seconds=2.5))
    n_rows = len((run / "metrics.jsonl").read_text().splitlines())
    T.train(config(data, run, max_train_seconds=2.5))  # spent: nothing more to do
    assert read(run, "results.json")["run"]["steps"] == 3
    assert len((run / "metrics.jsonl").read_text().splitlines()) == n_rows

    T.train(config(data, run, max_train_seconds=4.5))  # 3 s already spent: two more steps, not five
    res = read(run, "results.json")["run"]
    assert (res["steps"], res["train_s"], res["stopped_by"]) == (5, 5.0, "max_train_seconds")

    T.train(config(data, run, max_train_seconds=None))  # the budget off: to the 12 steps asked for
    res = read(run, "results.json")["run"]
    assert (res["steps"], res["train_s"], res["stopped_by"]) == (12, 12.0, "steps")
    assert read(run, "status.json")["stopped_by"] == "steps"


def test_a_preempted_run_resumes_with_the_seconds_it_had_spent(data, tmp_path, fake_clock):
    def preempt_at_step_2(row):
        if row["kind"] == "eval" and row["step"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    cfg = config(data, tmp_path / "run", max_train_seconds=4.5)
    with pytest.raises(Preempted) as e:
        T.train(cfg, callback=preempt_at_step_2)
    assert e.value.step == 3
    T.train(cfg)
    res = read(tmp_path / "run", "results.json")["run"]
    assert (res["steps"], res["train_s"], res["stopped_by"]) == (5, 5.0, "max_train_seconds")


def test_a_tiny_budget_on_the_real_clock_trains_one_step(data, tmp_path):
    run = T.train(config(data, tmp_path / "run", max_train_seconds=1e-9, eval_every=0))
    res = read(run, "results.json")["run"]
    assert res["steps"] == 1 and res["stopped_by"] == "max_train_seconds" and res["train_s"] > 0


def test_budget_values_are_checked_and_it_is_resumable(tmp_path):
    assert TrainConfig(max_train_seconds="90").max_train_seconds == 90.0
    assert TrainConfig(max_train_seconds="none").max_train_seconds is None
    for bad in (0, -5):
        with pytest.raises(ConfigError, match="max_train_seconds must be > 0"):
            TrainConfig(max_train_seconds=bad)
    from jepa_kit.config import RESUMABLE_FIELDS
    assert "max_train_seconds" in RESUMABLE_FIELDS


def test_the_budget_needs_a_single_process(data, tmp_path):
    cfg = config(data, tmp_path / "run", max_train_seconds=60)
    with pytest.raises(ConfigError, match="single process"):
        T.Trainer(cfg, runtime.Dist(world=2), torch.device("cpu"))
