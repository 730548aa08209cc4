"""Training: config, run directory, resume, preemption, guards, baselines."""
import argparse
import dataclasses
import json
import os
import pickle
import shutil
import signal
import socket

import pytest
import torch

from jepa_kit import checkpoint as ckpt
from jepa_kit import config as C
from jepa_kit import runtime
from jepa_kit import train as T
from jepa_kit.data import TYPE_CODES, DataError, first_match, load_dataset, rows_in
from jepa_kit.model import MODEL_PRESETS, GPT2WithJEPA, ObjectiveConfig
from jepa_kit.reversal import reverse_view
from jepa_kit.config import ConfigError, TrainConfig
from jepa_kit.rundir import load_run
from jepa_kit.runtime import Preempted, TrainingDiverged
from jepa_kit.train import LeakageError, train

# A 1-layer, 32-wide model: every run here takes a second or two on two cores.
SMALL = dict(n_layer=1, n_embd=32, n_head=2, batch_size=32, lr=3e-3, steps=12, log_every=2, eval_every=0,
             eval_max_items=16, ckpt_every=100, progress="none")


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny tensors: a second intra-op thread only adds synchronisation (10x slower when the cores are busy).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from jepa_kit.datagen import generate

    return generate("tiny", tmp_path_factory.mktemp("train_data") / "data", seed=0, valid_per_split=24)


def config(data, out, **kw):
    return TrainConfig.from_preset("tiny", data=str(data), out=str(out), **{**SMALL, **kw})


def rows(run_dir, kind="train"):
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def assert_weights_of(model, ckpt_dir):
    """Every weight of ``model`` equals the checkpoint's stored tensor (read with safetensors only)."""
    from safetensors.torch import load_file

    stored = load_file(str(ckpt_dir / "model.safetensors"))
    state = model.state_dict()
    assert stored and set(stored) <= set(state)
    for name, tensor in stored.items():
        assert torch.equal(state[name], tensor), name


def weights(run_dir, checkpoint="last"):
    return load_run(run_dir, checkpoint)[0].state_dict()


# -- config --------------------------------------------------------------------------------

def test_objective_defaults_come_from_objective_config():
    cfg, obj = TrainConfig(), ObjectiveConfig()
    for f in dataclasses.fields(ObjectiveConfig):
        assert getattr(cfg, f.name) == getattr(obj, f.name), f.name
    assert cfg.objective_config() == obj


def test_seed_preset_is_the_seeds_setup():
    cfg = TrainConfig.from_preset("seed")
    assert MODEL_PRESETS[cfg.model] == dict(n_layer=4, n_embd=768, n_head=12)
    assert cfg.model_preset() == dict(n_layer=4, n_embd=768, n_head=12, pos_emb=True, dropout=0.0, embd_dropout=None)
    assert (cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.epochs, cfg.steps) == (256, 1e-4, 0.01, 3, None)
    assert (cfg.objective, cfg.k_pred, cfg.jepa_metric, cfg.lambda_jepa, cfg.gamma_ntp, cfg.loss_dropout,
            cfg.stop_grad) == ("jepa", 1, "cosine", 1.0, 1.0, 0.0, False)
    tiny = TrainConfig.from_preset("tiny", n_layer=1)
    assert tiny.model == "tiny" and tiny.model_preset()["n_layer"] == 1


def test_gpu_large_preset_scales_the_lr_by_the_square_root_and_keeps_items_per_event():
    from jepa_kit.config import scaled_lr

    assert scaled_lr(1024) == 1e-3 and scaled_lr(4096) == pytest.approx(2e-3) and scaled_lr(256) == pytest.approx(5e-4)
    gpu, large = TrainConfig.from_preset("gpu"), TrainConfig.from_preset("gpu_large")
    ratio = large.batch_size // gpu.batch_size
    assert ratio == 4 and large.lr == pytest.approx(gpu.lr * 2)
    for name in ("warmup_steps", "log_every", "eval_every", "ckpt_every"):  # the same items between events
        assert getattr(large, name) * large.batch_size == getattr(gpu, name) * gpu.batch_size, name
    rest = {f for f in TrainConfig.field_names()} - {"batch_size", "lr", "warmup_steps", "log_every", "eval_every", "ckpt_every"}
    assert {f: getattr(large, f) for f in rest} == {f: getattr(gpu, f) for f in rest}


def test_unknown_keys_are_rejected_with_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict({"lr": 1e-3, "learning_rate": 1e-3})
    msg = str(e.value)
    assert "'learning_rate'" in msg and all(name in msg for name in TrainConfig.field_names())
    with pytest.raises(ConfigError, match="lamda"):
        TrainConfig().replace(lamda_jepa=0.5)
    (tmp_path / "c.yaml").write_text("objective: ntp\nbatchsize: 4\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*'batchsize'.*valid keys are: data, out"):
        TrainConfig.from_yaml(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="unknown training preset 'huge'"):
        TrainConfig.from_preset("huge")


def test_values_are_coerced_and_validated(tmp_path):
    (tmp_path / "c.yaml").write_text("preset: tiny\nlr: 1e-4\nstop_grad: 'true'\nsteps: 1e3\neval_max_items: none\n")
    cfg = TrainConfig.from_yaml(tmp_path / "c.yaml", k_pred="2")
    assert (cfg.lr, cfg.stop_grad, cfg.steps, cfg.eval_max_items, cfg.k_pred, cfg.model) == \
        (1e-4, True, 1000, None, 2, "tiny")
    with pytest.raises(ConfigError, match="objective must be one of jepa, ntp, reverse_aug"):
        TrainConfig(objective="jepa2")
    with pytest.raises(ConfigError, match="k_pred must be in 0..4"):
        TrainConfig(k_pred=5)
    with pytest.raises(ConfigError, match="batch_size must be an int"):
        TrainConfig(batch_size=2.5)
    with pytest.raises(ConfigError, match="stop_grad"):
        TrainConfig(stop_grad="maybe")
    with pytest.raises(ConfigError, match="loss_dropout"):
        TrainConfig(loss_dropout=1.0)


def test_command_line_flags_override_yaml_override_preset(tmp_path):
    (tmp_path / "c.yaml").write_text("lr: 0.002\nbatch_size: 64\nobjective: ntp\n")
    parser = C.add_config_arguments(argparse.ArgumentParser())
    ns = parser.parse_args(["--preset", "tiny", "--config", str(tmp_path / "c.yaml"), "--lr", "3e-3",
                            "--stop_grad", "true", "--k-pred", "2", "--data", "D", "--out", "R"])
    cfg = C.config_from_args(ns)
    assert (cfg.model, cfg.batch_size, cfg.lr, cfg.objective, cfg.stop_grad, cfg.k_pred, cfg.data, cfg.out) == \
        ("tiny", 64, 3e-3, "ntp", True, 2, "D", "R")
    assert C.config_from_args(parser.parse_args([])) == TrainConfig()


def test_learning_rate_schedule():
    cfg = TrainConfig(lr=1.0, warmup_steps=4, schedule="cosine", min_lr=0.1)
    lrs = [T.lr_at(cfg, s, 14) for s in range(14)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))
    assert T.lr_at(cfg.replace(schedule="constant"), 10, 14) == 1.0


# -- a run ---------------------------------------------------------------------------------

def test_run_directory(data, tmp_path):
    run = train(config(data, tmp_path / "run", eval_every=4, ckpt_every=4, keep_last=1))
    cfg_json = json.loads((run / "config.json").read_text())
    assert cfg_json["config"]["n_embd"] == 32 and cfg_json["data_fingerprint"] == load_dataset(data).fingerprint
    assert cfg_json["model"]["n_layer"] == 1 and cfg_json["version"]
    train_rows = rows(run)
    assert [r["step"] for r in train_rows] == list(range(2, 13, 2))
    assert {"loss", "ntp_loss", "jepa_loss", "lr", "items_per_s", "elapsed_s"} <= set(train_rows[0])
    assert train_rows[-1]["ntp_loss"] < train_rows[0]["ntp_loss"]
    evals = rows(run, "eval")
    assert [r["step"] for r in evals] == [4, 8, 12] and "jepa" in evals[0]
    assert set(evals[0]["splits"]) == {"train", "atomic", "test"}
    results = json.loads((run / "results.json").read_text())
    for split in ("train", "atomic", "test"):
        assert {"exact_match", "mrr_first", "mrr_last", "entity_mrr", "ntp_loss", "n"} <= set(results[split])
        assert results[split]["n"] == 24  # the final evaluation uses every item
    assert results["trains_on_test_facts"] is False and results["run"]["steps"] == 12
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == status["total_steps"] == 12
    best = json.loads((run / "best.json").read_text())
    # keep_last=1 plus the best checkpoint
    assert {s for s, _ in ckpt.list_checkpoints(run)} == {12, best["step"]}
    model, cfg = load_run(run, "best")
    assert isinstance(model, GPT2WithJEPA) and not model.training and cfg.n_embd == 32
    assert load_run(run)[0].vocab.same_as(load_dataset(data).vocab)


def test_resume_after_sigterm_equals_uninterrupted_run(data, tmp_path):
    # loss dropout and an evaluation inside the interrupted stretch: both must not shift the RNG
    kw = dict(loss_dropout=0.3, eval_every=4, warmup_steps=3, schedule="cosine")
    straight = train(config(data, tmp_path / "straight", **kw))

    def preempt_at_step_5(row):
        if row["kind"] == "train" and row["step"] == 4:
            os.kill(os.getpid(), signal.SIGTERM)  # handled like SLURM's: finish the step, checkpoint

    cfg = config(data, tmp_path / "resumed", **kw)
    with pytest.raises(Preempted) as e:
        train(cfg, callback=preempt_at_step_5)
    assert e.value.step == 5 and e.value.exit_code == runtime.PREEMPTED_EXIT_CODE
    run = tmp_path / "resumed"
    assert json.loads((run / "status.json").read_text())["state"] == "preempted"
    assert ckpt.latest_checkpoint(run).name == "step_00000005"
    assert not (run / "results.json").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is restored

    train(cfg)
    a, b = rows(straight), rows(run)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for key in ("loss", "ntp_loss", "jepa_loss", "n_jepa", "lr"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-6, abs=1e-7), (ra["step"], key)
    assert [r["step"] for r in rows(straight, "eval")] == [r["step"] for r in rows(run, "eval")]
    wa, wb = weights(straight), weights(run)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-6, atol=1e-7)
    assert json.loads((run / "status.json").read_text())["state"] == "finished"


def test_a_finished_concept_run_continued_to_more_steps_equals_the_longer_run(data, tmp_path):
    """How binding_mid_concept_steps.yaml went on from step 30,000: a finished run of the concept
    objective (dropout on, constant learning rate) resumed with only ``steps`` raised, here twice
    (4 -> 6 -> 8), gives the losses and weights of the run that asked for the longer count from the
    start."""
    kw = dict(objective="concept", n_layer=2, n_recognition=1, best_metric="concept_mrr", dropout=0.1,
              schedule="constant", warmup_steps=2, eval_every=3)
    straight = train(config(data, tmp_path / "straight", steps=8, **kw))
    short = config(data, tmp_path / "continued", steps=4, **kw)
    train(short)
    assert json.loads((tmp_path / "continued" / "results.json").read_text())["run"]["steps"] == 4
    assert json.loads((tmp_path / "continued" / "config.json").read_text())["resumes"] == []
    train(short.replace(steps=6))
    run = train(short.replace(steps=8))  # continued twice: every resume is on record, oldest first
    stored = json.loads((run / "config.json").read_text())
    assert stored["resumed_at_step"] == 6 and stored["resumes"] == [4, 6]
    a, b = rows(straight), rows(run)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [2, 4, 6, 8]
    for ra, rb in zip(a, b):
        for key in ("loss", "ntp_loss", "jepa_loss", "lr"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-6, abs=1e-7), (ra["step"], key)
    wa, wb = weights(straight), weights(run)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-6, atol=1e-7)


def test_sigusr1_also_checkpoints(data, tmp_path):
    def warn(row):
        if row["step"] == 2:
            os.kill(os.getpid(), signal.SIGUSR1)  # SLURM --signal=USR1@120: walltime is near

    with pytest.raises(Preempted, match="SIGUSR1"):
        train(config(data, tmp_path / "r", steps=6), callback=warn)
    assert ckpt.latest_checkpoint(tmp_path / "r").name == "step_00000003"


def test_killed_checkpoint_write_leaves_previous_loadable(data, tmp_path, monkeypatch):
    cfg = config(data, tmp_path / "r", ckpt_every=4)
    real = ckpt.save_file
    calls = []

    def dies_on_second_checkpoint(tensors, filename, *a, **k):
        calls.append(filename)
        if len(calls) == 3:  # optimizer + rng of the first checkpoint, then the second one dies
            with open(filename, "wb") as f:
                f.write(b"torn")
            raise OSError("node killed while writing")
        return real(tensors, filename, *a, **k)

    monkeypatch.setattr(ckpt, "save_file", dies_on_second_checkpoint)
    with pytest.raises(OSError):
        train(cfg)
    run = tmp_path / "r"
    assert ckpt.latest_checkpoint(run).name == "step_00000004"
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed" and "node killed" in status["error"]
    model, _ = load_run(run)  # the last complete checkpoint, not the torn one
    assert_weights_of(model, ckpt.step_dir(run, 4))
    monkeypatch.undo()
    train(cfg)  # resumes from step 4 and finishes; the torn .tmp directory is gone
    assert not list(ckpt.checkpoint_root(run).glob("*.tmp"))
    assert json.loads((run / "results.json").read_text())["run"]["steps"] == 12


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    real_forward = GPT2WithJEPA.forward
    calls = {"n": 0}

    def forward(self, *a, **k):
        out = real_forward(self, *a, **k)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 7:
                out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(GPT2WithJEPA, "forward", forward)
    with pytest.raises(TrainingDiverged) as e:
        train(config(data, tmp_path / "r", ckpt_every=5, log_every=4))
    run = tmp_path / "r"
    assert e.value.step == 7 and "step 7" in str(e.value) and "step_00000005" in str(e.value)
    assert [s for s, _ in ckpt.list_checkpoints(run)] == [5]  # step 8's state was never written
    assert all(r["step"] < 7 for r in rows(run))
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed" and "NaN" in status["error"]
    assert not (run / "results.json").exists()


def test_a_nan_right_after_a_periodic_evaluation_names_the_known_problem(data, tmp_path, monkeypatch):
    """The H100's ntp NaN (issue 12) comes at the first step after a periodic evaluation: the message
    then says so, and not only "try a lower lr"; a NaN elsewhere does not get that note."""
    real_forward = GPT2WithJEPA.forward

    def nan_at(step):
        calls = {"n": 0}

        def forward(self, *a, **k):
            out = real_forward(self, *a, **k)
            if self.training:
                calls["n"] += 1
                if calls["n"] == step:
                    out["loss"] = out["loss"] * float("nan")
            return out
        return forward

    monkeypatch.setattr(GPT2WithJEPA, "forward", nan_at(5))
    with pytest.raises(TrainingDiverged) as e:
        train(config(data, tmp_path / "a", eval_every=4, log_every=1))
    assert e.value.step == 5 and "first step after a periodic evaluation (step 4)" in str(e.value)
    assert "issue 12" in json.loads((tmp_path / "a" / "status.json").read_text())["error"]
    monkeypatch.setattr(GPT2WithJEPA, "forward", nan_at(6))
    with pytest.raises(TrainingDiverged) as e:
        train(config(data, tmp_path / "b", eval_every=4, log_every=1))
    assert e.value.step == 6 and "issue 12" not in str(e.value)


def test_checkpoints_load_without_pickle(data, tmp_path, monkeypatch):
    cfg = config(data, tmp_path / "r", steps=4)
    train(cfg)

    def refuse(*a, **k):
        raise AssertionError("pickle used")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    model, loaded_cfg = load_run(tmp_path / "r")
    assert_weights_of(model, ckpt.latest_checkpoint(tmp_path / "r"))
    assert loaded_cfg == cfg and not model.training
    train(cfg.replace(steps=6))  # resuming loads weights, optimizer and RNG state: still no pickle
    assert rows(tmp_path / "r")[-1]["step"] == 6


# -- resume guards -------------------------------------------------------------------------

def test_resume_rejects_a_changed_config_but_allows_longer_training(data, tmp_path):
    cfg = config(data, tmp_path / "r", steps=4)
    train(cfg)
    with pytest.raises(ConfigError, match=r"lr: run has 0\.003, config has 0\.001"):
        train(cfg.replace(lr=1e-3))
    with pytest.raises(ConfigError, match="objective"):
        train(cfg.replace(objective="ntp"))
    train(cfg.replace(steps=6, log_every=3))
    assert [r["step"] for r in rows(tmp_path / "r")] == [2, 4, 6]


def test_a_run_cannot_be_shortened_on_resume(data, tmp_path):
    cfg = config(data, tmp_path / "r", steps=6)
    train(cfg)
    before = {name: (tmp_path / "r" / name).read_bytes() for name in ("config.json", "status.json", "results.json")}
    with pytest.raises(ConfigError, match="is at step 6, past the 4 steps asked for.*at least 6 steps"):
        train(cfg.replace(steps=4))
    after = {name: (tmp_path / "r" / name).read_bytes() for name in before}
    assert after == before  # nothing rewritten: config, status and results still agree
    train(cfg)  # the same length: already finished, still fine


def test_a_stop_signal_during_start_up_is_a_resumable_preemption(data, tmp_path, monkeypatch, capsys):
    """SIGTERM while Python, torch and the data load (before the loop's handlers): exit 75 after one
    step with a checkpoint, and the rerun finishes the run."""
    from jepa_kit import cli

    out = tmp_path / "r"
    argv = ["train", "--preset", "tiny", "--data", str(data), "--out", str(out),
            *[f"--{k}={v}" for k, v in SMALL.items()]]
    real = cli.build_parser

    def parser_then_sigterm(*a, **k):  # the signal arrives while the command line is being read
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **k)

    monkeypatch.setattr(cli, "build_parser", parser_then_sigterm)
    assert cli.main(argv) == runtime.PREEMPTED_EXIT_CODE
    assert json.loads((out / "status.json").read_text())["state"] == "preempted"
    assert ckpt.latest_checkpoint(out).name == "step_00000001"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # both handlers are gone again
    monkeypatch.setattr(cli, "build_parser", real)
    assert cli.main(argv) == 0
    assert json.loads((out / "results.json").read_text())["run"]["steps"] == SMALL["steps"]


def test_a_damaged_newest_checkpoint_is_named_not_skipped_silently(data, tmp_path):
    run = train(config(data, tmp_path / "r", steps=4, ckpt_every=2, keep_last=3))
    (ckpt.step_dir(run, 4) / "checkpoint.json").unlink()
    with pytest.warns(ckpt.CheckpointWarning, match=r"step_00000004 is incomplete .*using step_00000002"):
        model, _ = load_run(run)
    assert_weights_of(model, ckpt.step_dir(run, 2))


def test_a_truncated_safetensors_file_is_named(data, tmp_path, capsys):
    from jepa_kit.cli import main

    run = train(config(data, tmp_path / "r", steps=2))
    weights_file = ckpt.latest_checkpoint(run) / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:100])
    with pytest.raises(ckpt.CheckpointError, match=f"{weights_file}: unreadable, truncated"):
        load_run(run)
    assert main(["eval", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(weights_file) in err[0]
    rng_file = ckpt.latest_checkpoint(run) / "rng.safetensors"
    rng_file.write_bytes(b"not safetensors")
    with pytest.raises(ckpt.CheckpointError, match=f"{rng_file}: unreadable"):
        ckpt.restore_rng(ckpt.latest_checkpoint(run))


def test_other_data_or_vocabulary_is_a_clear_error(data, tmp_path):
    from jepa_kit.datagen import generate

    with pytest.raises(DataError, match="not found"):
        train(config(tmp_path / "nowhere", tmp_path / "x"))
    assert not (tmp_path / "x").exists()
    train(config(data, tmp_path / "r", steps=2))
    other = generate("tiny", tmp_path / "other", seed=1, valid_per_split=24, relation_pairs=5)
    with pytest.raises(ConfigError, match="other data"):
        train(config(other, tmp_path / "r", steps=2))
    with pytest.raises(ckpt.CheckpointError, match="vocabulary"):
        load_run(tmp_path / "r", vocab=load_dataset(other).vocab)
    (tmp_path / "notarun").mkdir()
    (tmp_path / "notarun" / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="not a jepa_kit run"):
        train(config(data, tmp_path / "notarun"))


# -- leakage guard and baselines ------------------------------------------------------------

def _copy(data, dst):
    shutil.copytree(data, dst, ignore=shutil.ignore_patterns(".jepa_cache"))
    return dst


def test_leakage_guard_fires_on_a_test_item_in_train_json(data, tmp_path):
    d = _copy(data, tmp_path / "leaky")
    items = json.loads((d / "train.json").read_text())
    test_item = json.loads((d / "valid.json").read_text())["test"][5]
    items.insert(17, {**test_item, "type": "atomic"})
    (d / "train.json").write_text(json.dumps(items))
    for objective in ("jepa", "ntp", "reverse_aug"):  # train.json itself must be clean for every objective
        with pytest.raises(LeakageError, match=r"valid.json test item 5 appears in train.json \(item 17:"):
            train(config(d, tmp_path / objective, objective=objective))
        assert not (tmp_path / objective).exists()


def test_leakage_guard_fires_on_the_jepa_reverse_view_of_a_relabelled_atomic_fact(data, tmp_path):
    """An atomic fact relabelled `train` gets a JEPA reverse view: its held-out direction, a test item.
    `data check` and the training guard apply one rule, so both refuse it, for every objective."""
    from jepa_kit.data import summarize

    d = _copy(data, tmp_path / "relabelled")
    items = json.loads((d / "train.json").read_text())
    clean = load_dataset(data)  # the atomic fact whose held-out direction is valid.json test item 0
    atomic_at = first_match(reverse_view(clean.valid["test"].ids[:1], clean.vocab)[0], clean.train.ids)
    assert items[atomic_at]["type"] == "atomic"
    items[atomic_at]["type"] = "train"
    (d / "train.json").write_text(json.dumps(items))
    ds = load_dataset(d)
    (problem,) = summarize(ds)["leakage_problems"]
    assert problem.startswith(f"valid.json test item 0 is the reverse view of 'train' item {atomic_at} of train.json")
    assert "JEPA objective" in problem
    assert rows_in(reverse_view(ds.train.ids[atomic_at:atomic_at + 1], ds.vocab), ds.valid["test"].ids).all()
    for objective in ("jepa", "ntp", "reverse_aug"):
        with pytest.raises(LeakageError, match=f"reverse view of 'train' item {atomic_at} of train.json"):
            train(config(d, tmp_path / objective, objective=objective))
        assert not (tmp_path / objective).exists()


def test_leakage_guard_fires_on_the_reverse_of_an_atomic_item(data):
    ds = load_dataset(data)
    ids, types = ds.train.ids, ds.train.types
    atomic_at = int((types == TYPE_CODES["atomic"]).nonzero()[3])
    leaked = torch.cat([ids, reverse_view(ids[atomic_at:atomic_at + 1], ds.vocab)])
    leaked_types = torch.cat([types, types.new_tensor([TYPE_CODES["train"]])])
    with pytest.raises(LeakageError, match=f"item {len(ids)} .* reverse view of atomic item {atomic_at}"):
        T.check_leakage(leaked, leaked_types, ds)


def test_reverse_aug_passes_only_through_its_exemption(data, tmp_path):
    ds = load_dataset(data)
    ids, types = T.training_rows(ds, "reverse_aug")
    n_atomic = int((ds.train.types == TYPE_CODES["atomic"]).sum())
    assert len(ids) == len(ds.train.ids) + n_atomic
    assert bool((types[len(ds.train.ids):] == TYPE_CODES["atomic"]).all())  # no JEPA view for them
    with pytest.raises(LeakageError):  # the augmented rows are exactly what the guard exists for
        T.check_leakage(ids, types, ds)
    run = train(config(data, tmp_path / "aug", objective="reverse_aug"))
    results = json.loads((run / "results.json").read_text())
    assert results["trains_on_test_facts"] is True and results["run"]["trains_on_test_facts"] is True
    assert json.loads((run / "config.json").read_text())["trains_on_test_facts"] is True
    assert json.loads((run / "status.json").read_text())["trains_on_test_facts"] is True
    assert all(r["jepa_loss"] == 0 and r["n_jepa"] == 0 for r in rows(run))


def test_ntp_baseline_builds_no_reverse_views(data, tmp_path):
    run = train(config(data, tmp_path / "ntp", objective="ntp"))
    assert all(r["jepa_loss"] == 0 and r["n_jepa"] == 0 for r in rows(run))
    assert all(r["jepa_loss"] > 0 and r["n_jepa"] > 0 for r in rows(train(config(data, tmp_path / "jepa"))))


def test_best_on_test_is_labelled_optimistic(data, tmp_path):
    run = train(config(data, tmp_path / "r", steps=4, eval_every=2, best_split="test", best_metric="ntp_loss"))
    results = json.loads((run / "results.json").read_text())
    best = results["run"]["best"]
    assert best["selected_on_test"] is True and "optimistic" in results["run"]["best_note"]
    assert best["step"] in (2, 4)
    evals = {r["step"]: r["splits"]["test"]["ntp_loss"] for r in rows(run, "eval")}
    assert best["value"] == min(evals.values())  # loss: lower is better


# -- progress output -----------------------------------------------------------------------

def test_log_lines_not_a_bar_under_slurm(data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    train(config(data, tmp_path / "r", steps=4, progress="auto"))
    err = capsys.readouterr().err
    assert "step 2/4" in err and "step 4/4" in err and "\r" not in err


def test_log_lines_go_to_stdout_in_a_notebook_and_to_stderr_elsewhere(data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runtime, "notebook_kernel", lambda: "headless")  # papermill: stderr would show red
    train(config(data, tmp_path / "nb", steps=2, progress="log"))
    out, err = capsys.readouterr()
    assert "step 2/2" in out and "finished" in out and "jepa_kit.train" not in err
    monkeypatch.setattr(runtime, "notebook_kernel", lambda: None)  # a terminal or a batch log
    train(config(data, tmp_path / "cli", steps=2, progress="log"))
    out, err = capsys.readouterr()
    assert "step 2/2" in err and "jepa_kit.train" not in out


def test_progress_mode_auto(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("JEPA_KIT_PROGRESS", raising=False)
    monkeypatch.setattr(runtime, "notebook_kernel", lambda: "headless")  # papermill / nbconvert
    assert runtime.progress_mode("auto") == "log"
    monkeypatch.setattr(runtime, "notebook_kernel", lambda: "live")  # JupyterLab
    assert runtime.progress_mode("auto") == "bar"
    monkeypatch.setenv("SLURM_JOB_ID", "1")
    assert runtime.progress_mode("auto") == "log"
    monkeypatch.setenv("JEPA_KIT_PROGRESS", "none")
    assert runtime.progress_mode("auto") == "none"
    assert runtime.progress_mode("bar") == "bar"


def test_epoch_order_depends_only_on_seed_and_epoch():
    a = T.epoch_permutation(100, seed=0, epoch=3)
    assert torch.equal(a, T.epoch_permutation(100, seed=0, epoch=3))
    assert not torch.equal(a, T.epoch_permutation(100, seed=0, epoch=4))
    assert torch.equal(a.sort().values, torch.arange(100))


def test_a_misspelt_best_metric_is_refused():
    with pytest.raises(ConfigError, match="best_metric must be one of .*entity_mrr.*; got 'exact_mach'"):
        TrainConfig(best_metric="exact_mach")
    assert TrainConfig(best_metric="ntp_loss").best_metric == "ntp_loss"


def test_eval_finds_the_runs_own_data_from_any_directory_and_checks_its_fingerprint(data, tmp_path, monkeypatch, capsys):
    from jepa_kit.cli import main
    from jepa_kit.datagen import generate

    work = tmp_path / "work"
    _copy(data, work / "data")
    monkeypatch.chdir(work)
    train(config("data", "run"))  # a relative data path, as a user types it
    other = tmp_path / "elsewhere"
    generate("tiny", other / "data", seed=1, valid_per_split=5)  # a different data/ beside the caller
    monkeypatch.chdir(other)
    capsys.readouterr()
    assert main(["eval", str(work / "run"), "--splits", "atomic", "--no-logit-lens", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["atomic"]["n"] == 24  # the run's data, not ./data (n 5)

    # the run's data changed under it (same vocabulary): refused, unless --data asks for it, then a warning
    valid = json.loads((work / "data" / "valid.json").read_text())
    valid["atomic"] = valid["atomic"][:10]
    (work / "data" / "valid.json").write_text(json.dumps(valid))
    assert main(["eval", str(work / "run"), "--splits", "atomic", "--no-logit-lens"]) == 2
    assert "is not the data" in capsys.readouterr().err
    assert main(["eval", str(work / "run"), "--data", str(work / "data"), "--splits", "atomic", "--no-logit-lens",
                 "--json"]) == 0
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "these numbers are for other data" in captured.err
    assert json.loads(captured.out)["atomic"]["n"] == 10


def _write_lock(run, **holder):
    run.mkdir(parents=True, exist_ok=True)
    (run / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "slurm_job_id": None,
                                           "since": "then", **holder}))


def test_a_run_directory_is_trained_by_one_process_at_a_time(data, tmp_path, monkeypatch):
    import subprocess
    import sys

    run = tmp_path / "run"
    train(config(data, run, steps=4))
    assert not (run / ".lock").exists()  # released at the end
    before = (run / "metrics.jsonl").read_text()

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(run, pid=live.pid)  # another live process on this host holds it
        with pytest.raises(T.RunLocked, match=f"pid {live.pid}"):
            train(config(data, run, steps=8))
        assert (run / "metrics.jsonl").read_text() == before  # nothing written
    finally:
        live.kill()
        live.wait()
    train(config(data, run, steps=8))  # its holder is dead now: a stale lock is taken over
    assert [r["step"] for r in rows(run)][-1] == 8 and not (run / ".lock").exists()

    _write_lock(run, host="another-node", pid=1)  # another host: never broken automatically
    with pytest.raises(T.RunLocked, match="another-node.*remove"):
        train(config(data, run, steps=10))
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    _write_lock(run, host="another-node", pid=1, slurm_job_id="4242")  # the same job, requeued on another node
    train(config(data, run, steps=10))
    assert [r["step"] for r in rows(run)][-1] == 10


def _raise_preempted(run_dir):
    raise Preempted(run_dir, 7, signal.SIGTERM)


def test_the_kits_exceptions_survive_pickling_so_a_worker_pool_reports_them():
    """A run in a multiprocessing worker (benchmarks/run_binding_controls.py) that is preempted or
    diverges sends its exception to the parent by pickle: an exception that cannot be rebuilt there
    hangs the pool for good (seen 2026-12-05: a sweep stalled after one run was preempted)."""
    import multiprocessing as mp
    import pickle
    from pathlib import Path

    from jepa_kit import browser, checkpoint, data, runlock, sweeps, vocab
    errors = [Preempted(Path("runs/x"), 7, signal.SIGTERM), Preempted(Path("runs/x"), 3, 0),
              TrainingDiverged("loss is nan at step 5", 5, Path("runs/x/checkpoints/step_00000004")),
              TrainingDiverged("loss is inf", 1, None), LeakageError("leak"), ConfigError("bad"),
              data.DataError("bad item"), vocab.VocabError("bad vocab"), runlock.RunLocked("held"),
              checkpoint.CheckpointError("bad checkpoint"), sweeps.SweepError("bad sweep"),
              browser.BrowserError("no browser")]
    for e in errors:
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is type(e) and str(back) == str(e) and vars(back) == vars(e), e
    with mp.get_context("fork").Pool(1) as pool:
        with pytest.raises(Preempted, match="SIGTERM received: checkpoint written at step 7") as got:
            pool.apply_async(_raise_preempted, (Path("runs/x"),)).get(timeout=60)
    assert got.value.step == 7 and got.value.exit_code == runtime.PREEMPTED_EXIT_CODE


def test_the_resume_history_reads_config_files_from_before_it_was_kept():
    """A run first resumed by an older kit has only ``resumed_at_step`` on record: that step is the
    history's first entry, and a fresh run's (None) gives none."""
    from jepa_kit.rundir import resume_history
    assert resume_history(None, 5) == [5]
    assert resume_history({"resumed_at_step": None}, 5) == [5]
    assert resume_history({"resumed_at_step": 150000}, 170000) == [150000, 170000]
    assert resume_history({"resumed_at_step": 6, "resumes": [4, 6]}, 8) == [4, 6, 8]
