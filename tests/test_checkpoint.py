"""Checkpoint files: atomic writes, optimizer state without pickle, finding and pruning."""
import json
import pickle

import pytest
import torch

from jepa_kit import checkpoint as ckpt
from jepa_kit import files


def _model_and_optimizer(steps=3):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(11, 8), torch.nn.Linear(8, 11))
    model[1].weight = model[0].weight  # tied, like GPT-2's lm_head and wte
    opt = torch.optim.AdamW([{"params": [model[0].weight], "weight_decay": 0.1},
                             {"params": [model[1].bias], "weight_decay": 0.0}], lr=1e-2, betas=(0.8, 0.95))
    for _ in range(steps):
        model(torch.arange(11)).logsumexp(-1).mean().backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def test_atomic_write_failure_keeps_old_content(tmp_path):
    path = tmp_path / "f.json"
    files.atomic_write_json(path, {"v": 1})
    with pytest.raises(RuntimeError):
        with files.atomic_path(path) as tmp:
            tmp.write_text('{"v": 2, "trunc')  # half written, then the writer dies
            raise RuntimeError("killed")
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # no temp file left behind


def test_checkpoint_round_trip_without_pickle(tmp_path, monkeypatch):
    model, opt = _model_and_optimizer()
    ckpt.save_checkpoint(tmp_path, 3, model, opt, {"trainer": {"x": 1}})
    torch.set_rng_state(torch.manual_seed(123).get_state())
    want_rng = torch.get_rng_state()
    ckpt.save_checkpoint(tmp_path, 4, model, opt, {"trainer": {"x": 2}})
    torch.rand(5)  # move the RNG on

    def refuse(*a, **k):
        raise AssertionError("pickle used while loading a checkpoint")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)

    d = ckpt.latest_checkpoint(tmp_path)
    assert d.name == "step_00000004"
    model2, opt2 = _model_and_optimizer(steps=0)
    with torch.no_grad():
        model2[0].weight.zero_()
    ckpt.load_weights(model2, d)
    ckpt.load_optimizer(opt2, d)
    ckpt.restore_rng(d)
    assert torch.equal(torch.get_rng_state(), want_rng)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    assert model2[1].weight is model2[0].weight  # still tied after loading
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for i in s1["state"]:
        for k in s1["state"][i]:
            assert torch.equal(s1["state"][i][k], s2["state"][i][k])
    assert ckpt.read_checkpoint_meta(d)["trainer"] == {"x": 2}


def test_killed_write_leaves_previous_checkpoint_latest(tmp_path, monkeypatch):
    model, opt = _model_and_optimizer()
    ckpt.save_checkpoint(tmp_path, 10, model, opt, {})

    def dies_midway(tensors, filename, *a, **k):
        with open(filename, "wb") as f:
            f.write(b"\x00" * 10)  # a torn file
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", dies_midway)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(tmp_path, 20, model, opt, {})
    assert ckpt.latest_checkpoint(tmp_path).name == "step_00000010"
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [10]
    monkeypatch.undo()
    ckpt.save_checkpoint(tmp_path, 20, model, opt, {})  # the next save clears the leftover
    assert sorted(p.name for p in ckpt.checkpoint_root(tmp_path).iterdir()) == ["step_00000010", "step_00000020"]


def test_prune_keeps_last_n_and_protected(tmp_path):
    model, opt = _model_and_optimizer(steps=1)
    for s in (1, 2, 3, 4, 5):
        ckpt.save_checkpoint(tmp_path, s, model, None, {})
    ckpt.prune_checkpoints(tmp_path, keep_last=2, keep={2})
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [2, 4, 5]


def test_weights_of_another_model_are_a_clear_error(tmp_path):
    model, opt = _model_and_optimizer(steps=0)
    ckpt.save_checkpoint(tmp_path, 1, model, opt, {})
    other = torch.nn.Sequential(torch.nn.Embedding(12, 8), torch.nn.Linear(8, 12))
    other[1].weight = other[0].weight
    with pytest.raises(ckpt.CheckpointError, match="do not fit"):
        ckpt.load_weights(other, ckpt.latest_checkpoint(tmp_path))
