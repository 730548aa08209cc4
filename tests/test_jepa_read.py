"""``jepa_read mask``: the JEPA term between the two queries, read at each view's <mask>.

pred is F's state at <mask> (it has read h and r, not t), target R's state at <mask> (t and inv(r),
not h). Every mode reads the states a plain Hugging Face pass gives there, the modes agree on losses
and gradients, and neither side depends on the entity the other holds."""
import pytest
import torch

from jepa_kit.config import ConfigError, TrainConfig
from jepa_kit.model import GPT2WithJEPA, ObjectiveConfig
from jepa_kit.reversal import reverse_view
from jepa_kit.vocab import Vocab

from test_model import TOL, alone, assert_same_step, losses_and_grads, make, random_batch

MODES = ("packed", "static", "two_pass")
MASK = 3  # [h_f, h_l, r, <mask>, t_f, t_l]: <mask> is at index 3 of both views


@pytest.fixture(scope="module")
def vocab(osu_dir):
    return Vocab.load(osu_dir)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("mode", MODES)
def test_pred_and_target_are_the_two_queries_read_at_mask(vocab, impl, mode):
    model = make(vocab, impl, k_pred=0, jepa_read="mask").eval()
    ids, types = random_batch(vocab, 11, seed=3)
    types[:3] = torch.tensor([0, 1, 2])
    j = types == 0
    with torch.no_grad():
        out = model(ids, types, mode=mode, return_jepa_outputs=True)
        assert ids[:, MASK].eq(vocab.mask_id).all()
        torch.testing.assert_close(out["pred"], alone(model, ids[j, : MASK + 1])[:, -1], **TOL)
        torch.testing.assert_close(out["target"], alone(model, reverse_view(ids[j], vocab)[:, : MASK + 1])[:, -1], **TOL)
        # the last-token read of the default differs: the option changes what is read
        last = make(vocab, impl, k_pred=0).eval()(ids, types, mode=mode, return_jepa_outputs=True)
        assert not torch.allclose(last["pred"], out["pred"], atol=1e-3)


@pytest.mark.parametrize("metric", ["cosine", "infonce"])
def test_modes_agree_on_losses_and_gradients(vocab, metric):
    model = make(vocab, k_pred=0, jepa_read="mask", jepa_metric=metric, gamma_ntp=0.7, lambda_jepa=1.3).train()
    ids, types = random_batch(vocab, 15, seed=7)
    types[:2] = torch.tensor([0, 1])
    ref, g_ref = losses_and_grads(model, ids, types, "two_pass")
    assert ref["n_jepa"] == int((types == 0).sum()) > 1 and ref["jepa_loss"].item() > 0
    for mode in ("packed", "static"):
        assert_same_step(*losses_and_grads(model, ids, types, mode), ref, g_ref, f"{mode} vs two_pass")


def test_neither_side_reads_the_entity_the_other_holds(vocab):
    """pred does not change with the tail, target does not change with the head: the term cannot be
    met by re-encoding the other view's answer (the default's pred has read every token of R)."""
    model = make(vocab, k_pred=0, jepa_read="mask").eval()
    ids, types = random_batch(vocab, 8, types=(0,), seed=5)
    other_tail, other_head = ids.clone(), ids.clone()
    other_tail[:, 4:] = ids.roll(1, dims=0)[:, 4:]
    other_head[:, :2] = ids.roll(1, dims=0)[:, :2]
    with torch.no_grad():
        base = model(ids, types, return_jepa_outputs=True)
        tail = model(other_tail, types, return_jepa_outputs=True)
        head = model(other_head, types, return_jepa_outputs=True)
        torch.testing.assert_close(tail["pred"], base["pred"], **TOL)
        torch.testing.assert_close(head["target"], base["target"], **TOL)
        assert not torch.allclose(tail["target"], base["target"], atol=1e-3)
        assert not torch.allclose(head["pred"], base["pred"], atol=1e-3)
        default = make(vocab, k_pred=0).eval()
        assert not torch.allclose(default(other_tail, types, return_jepa_outputs=True)["pred"],
                                  default(ids, types, return_jepa_outputs=True)["pred"], atol=1e-3)


def test_bad_settings_are_refused_and_old_configs_read_last(vocab):
    with pytest.raises(ValueError, match="jepa_read must be one of last, mask"):
        ObjectiveConfig(jepa_read="first")
    with pytest.raises(ValueError, match="needs k_pred 0"):
        ObjectiveConfig(jepa_read="mask", k_pred=1)
    with pytest.raises(ConfigError, match="needs k_pred 0"):
        TrainConfig(jepa_read="mask")  # k_pred defaults to 1
    assert TrainConfig(jepa_read="mask", k_pred=0).objective_config().jepa_read == "mask"
    model = make(vocab, k_pred=0, jepa_read="mask")
    d = model.config_dict()
    assert GPT2WithJEPA.from_config_dict(vocab, d).objective.jepa_read == "mask"
    del d["objective"]["jepa_read"]  # a run saved before the field
    assert GPT2WithJEPA.from_config_dict(vocab, d).objective.jepa_read == "last"
