"""``jepa_predictor mlp``: the JEPA term compares a separate head's output, P(pred), with the target.

With ``none`` (the default) the prediction is the model's hidden state itself, so the state the LM
head reads must lie next to the target; with ``mlp`` a learned map stands between them. Every mode
applies the same head to the same states, the head is trained and saved with the model, and a run
saved before the field reads ``none``."""
import pytest
import torch

from jepa_kit.checkpoint import latest_checkpoint, load_optimizer
from jepa_kit.config import ConfigError, TrainConfig
from jepa_kit.losses import jepa_distance
from jepa_kit.model import GPT2WithJEPA, ObjectiveConfig
from jepa_kit.reversal import reverse_view
from jepa_kit.rundir import load_run
from jepa_kit.step import weight_decay_groups
from jepa_kit.vocab import Vocab

from conftest import train_tiny_abstract_runs
from test_jepa_read import MASK, MODES
from test_model import TOL, alone, assert_same_step, losses_and_grads, make, random_batch


@pytest.fixture(scope="module")
def vocab(osu_dir):
    return Vocab.load(osu_dir)


@pytest.mark.parametrize("mode", MODES)
def test_the_term_compares_the_head_of_the_read_state_with_the_target(vocab, mode):
    model = make(vocab, k_pred=0, jepa_read="mask", jepa_predictor="mlp", jepa_metric="cosine").eval()
    ids, types = random_batch(vocab, 9, seed=2)
    j = types == 0
    with torch.no_grad():
        out = model(ids, types, mode=mode, return_jepa_outputs=True)
        state = alone(model, ids[j, : MASK + 1])[:, -1]
        torch.testing.assert_close(out["pred"], model.predictor(state), **TOL)
        torch.testing.assert_close(out["target"], alone(model, reverse_view(ids[j], vocab)[:, : MASK + 1])[:, -1], **TOL)
        torch.testing.assert_close(out["jepa_loss"], jepa_distance(model.predictor(state), out["target"]), **TOL)
        # the head is no identity: without it the term would compare the state itself
        assert not torch.allclose(out["pred"], state, atol=1e-3)
        plain = make(vocab, k_pred=0, jepa_read="mask", jepa_metric="cosine").eval()
        plain.load_state_dict({n: w for n, w in model.state_dict().items() if not n.startswith("predictor.")})
        torch.testing.assert_close(plain(ids, types, mode=mode, return_jepa_outputs=True)["pred"], state, **TOL)


@pytest.mark.parametrize("read,k", [("mask", 0), ("last", 1)])
def test_modes_agree_on_losses_and_gradients_and_the_head_learns(vocab, read, k):
    model = make(vocab, k_pred=k, jepa_read=read, jepa_predictor="mlp", jepa_metric="infonce").train()
    ids, types = random_batch(vocab, 15, seed=7)
    types[:2] = torch.tensor([0, 1])
    ref, g_ref = losses_and_grads(model, ids, types, "two_pass")
    heads = [n for n in g_ref if n.startswith("predictor.")]
    assert len(heads) == 4 and all(g_ref[n].abs().sum() > 0 for n in heads)
    for mode in ("packed", "static"):
        assert_same_step(*losses_and_grads(model, ids, types, mode), ref, g_ref, f"{mode} vs two_pass, read {read}")


def test_the_head_is_saved_only_when_there_is_one_and_old_configs_read_none(vocab):
    assert not any(n.startswith("predictor.") for n in make(vocab).state_dict())
    model = make(vocab, k_pred=0, jepa_read="mask", jepa_predictor="mlp")
    d = model.config_dict()
    again = GPT2WithJEPA.from_config_dict(vocab, d)
    assert again.objective.jepa_predictor == "mlp"
    again.load_state_dict(model.state_dict())  # strict: the same keys
    del d["objective"]["jepa_predictor"]  # a run saved before the field
    assert isinstance(GPT2WithJEPA.from_config_dict(vocab, d).predictor, torch.nn.Identity)


def test_bad_kinds_are_refused(vocab):
    with pytest.raises(ValueError, match="jepa_predictor must be one of none, mlp"):
        ObjectiveConfig(jepa_predictor="transformer")
    with pytest.raises(ConfigError, match="jepa_predictor must be one of none, mlp"):
        TrainConfig(jepa_predictor="linear")
    assert TrainConfig(jepa_predictor="mlp").objective_config().jepa_predictor == "mlp"


def test_a_config_draws_no_random_numbers():
    """The trainer seeds, then builds the config's objective, then the model: checking the config must
    not move the generator the model's initial weights are drawn from."""
    torch.manual_seed(0)
    state = torch.get_rng_state()
    ObjectiveConfig(jepa_predictor="mlp", jepa_read="mask", k_pred=0)
    TrainConfig(jepa_predictor="mlp").objective_config()
    assert torch.equal(torch.get_rng_state(), state)


def test_a_run_trains_its_head_and_loads_it_back(tmp_path):
    run = train_tiny_abstract_runs(tmp_path, {"jepa": {"jepa_predictor": "mlp", "jepa_read": "mask", "k_pred": 0,
                                                       "jepa_metric": "infonce"}})["jepa"]
    ckpt = latest_checkpoint(run)
    model, config = load_run(run, ckpt)  # strict: the head's weights are in model.safetensors
    assert config.jepa_predictor == "mlp" and model.objective.jepa_predictor == "mlp"
    opt = torch.optim.AdamW(weight_decay_groups(model, config.weight_decay), lr=config.lr)
    load_optimizer(opt, ckpt)
    head = list(model.predictor.parameters())
    assert len(head) == 4 and all(opt.state[p]["exp_avg"].abs().sum() > 0 for p in head)  # it had gradients
