"""The objective registry: the built-in objectives go through it, and a new one plugs in by name."""
import json

import pytest
import torch

from jepa_kit import objectives
from jepa_kit.config import ConfigError, TrainConfig
from jepa_kit.data import TYPE_CODES, load_dataset
from jepa_kit.model import GPT2WithJEPA
from jepa_kit.objectives.ntp import GPT2Objective
from jepa_kit.reversal import reverse_view
from jepa_kit.rundir import load_run
from jepa_kit.train import LeakageError, train, training_rows

SMALL = dict(n_layer=1, n_embd=32, n_head=2, batch_size=16, lr=3e-3, steps=4, log_every=2, eval_every=0,
             eval_max_items=8, ckpt_every=100, progress="none")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from jepa_kit.datagen import generate

    return generate("tiny", tmp_path_factory.mktemp("obj_data") / "data", seed=0, valid_per_split=8)


class AtomicOnly(GPT2Objective):
    """A toy objective: plain NTP on the atomic rows only, with an extra evaluation entry."""

    name, help = "atomic_only", "NTP on the atomic rows only (a test objective)"

    def training_rows(self, dataset):
        keep = dataset.train.types == TYPE_CODES["atomic"]
        return dataset.train.ids[keep], dataset.train.types[keep]

    def eval_diagnostics(self, model, ids, types, batch_size):
        return {"rows_seen": len(ids)}


class SneaksTestFacts(GPT2Objective):
    """A toy objective that adds the reverse of the atomic facts without declaring the exemption."""

    name, help = "sneaky", "adds test facts without saying so"

    def training_rows(self, dataset):
        atomic = dataset.train.ids[dataset.train.types == TYPE_CODES["atomic"]]
        types = torch.full((len(atomic),), TYPE_CODES["atomic"], dtype=torch.int8)
        return torch.cat([dataset.train.ids, reverse_view(atomic, dataset.vocab)]), torch.cat([dataset.train.types, types])


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(objectives.REGISTRY, "atomic_only", "test_objectives:AtomicOnly")
    monkeypatch.setitem(objectives.REGISTRY, "sneaky", "test_objectives:SneaksTestFacts")
    yield
    for name in ("atomic_only", "sneaky"):
        objectives._loaded.pop(name, None)


def test_the_builtin_objectives_are_registered():
    assert objectives.NAMES == ("jepa", "ntp", "reverse_aug", "concept")
    for name in objectives.NAMES:
        obj = objectives.get_objective(name)
        assert obj.name == name and obj.help
        assert obj.trains_on_test_facts == (name == "reverse_aug")
        assert (obj.leakage_exemption is not None) == obj.trains_on_test_facts
    with pytest.raises(ValueError, match="objective must be one of jepa, ntp, reverse_aug, concept; got 'jepaa'"):
        objectives.get_objective("jepaa")
    with pytest.raises(ConfigError, match="objective must be one of jepa, ntp, reverse_aug, concept; got 'jepaa'"):
        TrainConfig(objective="jepaa")


def test_training_rows_come_from_the_objective(data):
    ds = load_dataset(data)
    ids, types = training_rows(ds, "ntp")
    assert torch.equal(ids, ds.train.ids) and torch.equal(types, ds.train.types)
    ids, types = training_rows(ds, "reverse_aug")
    n_atomic = int((ds.train.types == TYPE_CODES["atomic"]).sum())
    assert len(ids) == len(ds.train) + n_atomic
    assert torch.equal(ids[len(ds.train):], reverse_view(ds.train.ids[ds.train.types == TYPE_CODES["atomic"]], ds.vocab))


def test_an_objective_that_adds_test_facts_without_the_exemption_is_refused(data, registered):
    with pytest.raises(LeakageError, match="objective sneaky"):
        training_rows(load_dataset(data), "sneaky")


def test_a_new_objective_plugs_in_by_name(data, tmp_path, registered):
    """Registered under a new name, a toy objective trains, evaluates and reloads through the
    same trainer, evaluation and run directory as the built-in ones."""
    run = train(TrainConfig.from_preset("tiny", data=str(data), out=str(tmp_path / "r"), objective="atomic_only",
                                        **SMALL))
    config = json.loads((run / "config.json").read_text())
    n_atomic = int((load_dataset(data).train.types == TYPE_CODES["atomic"]).sum())
    assert config["n_train_rows"] == n_atomic and config["config"]["objective"] == "atomic_only"
    results = json.loads((run / "results.json").read_text())
    assert results["atomic_only"] == {"rows_seen": 8}  # the extra evaluation, under the objective's name
    model, cfg = load_run(run)
    assert isinstance(model, GPT2WithJEPA) and cfg.objective == "atomic_only"
    assert model.objective.objective == "atomic_only" and not model.objective.uses_jepa
