"""``stop_grad``: no gradient of the JEPA term reaches the model through the target (reverse) view.

The term still moves the prediction's side; every mode (packed, static, two_pass) must give the
gradient of d(P(pred), target) with the target held constant, computed here from plain Hugging Face
passes over the rows on their own."""
import pytest
import torch

from jepa_kit.losses import jepa_distance
from jepa_kit.reversal import reverse_view
from jepa_kit.vocab import Vocab

from test_jepa_read import MASK, MODES
from test_model import alone, losses_and_grads, make, random_batch


@pytest.fixture(scope="module")
def vocab(osu_dir):
    return Vocab.load(osu_dir)


def reference_grads(model, ids, types, vocab, read: str, k: int, detach: bool):
    """Gradients of the JEPA term alone, from separate plain passes (target detached or not)."""
    j = types == 0
    f_rows, r_rows = ids[j], reverse_view(ids[j], vocab)
    if read == "mask":
        f_rows, r_rows = f_rows[:, : MASK + 1], r_rows[:, : MASK + 1]
    else:
        f_rows = torch.cat([f_rows, torch.full((len(f_rows), k), vocab.pred_id)], dim=1)
    model.zero_grad(set_to_none=True)
    pred = model.predictor(alone(model, f_rows)[:, -1])
    target = alone(model, r_rows)[:, -1]
    obj = model.objective
    loss = jepa_distance(pred, target.detach() if detach else target, obj.jepa_metric, obj.infonce_temperature)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("read,k,head", [("mask", 0, "none"), ("mask", 0, "mlp"), ("last", 1, "none")])
@pytest.mark.parametrize("mode", MODES)
def test_the_term_sends_no_gradient_through_the_target(vocab, mode, read, k, head):
    kw = dict(k_pred=k, jepa_read=read, jepa_predictor=head, jepa_metric="infonce", gamma_ntp=0.0)
    model = make(vocab, stop_grad=True, **kw).eval()  # eval: no dropout, so plain passes see the same states
    ids, types = random_batch(vocab, 12, seed=4)
    types[:3] = torch.tensor([0, 0, 1])
    out, grads = losses_and_grads(model, ids, types, mode)
    ref_loss, ref = reference_grads(model, ids, types, vocab, read, k, detach=True)
    torch.testing.assert_close(out["jepa_loss"], ref_loss, atol=1e-5, rtol=0)
    for name, g in ref.items():
        torch.testing.assert_close(grads[name], g, atol=1e-5, rtol=1e-4, msg=f"{name}: {mode}, read {read}")
    assert all(grads[n].abs().max() < 1e-7 for n in grads if n not in ref), "only the term's parameters move"

    # without stop_grad the same model's gradient is the other one: the test can tell them apart
    both = make(vocab, stop_grad=False, **kw).eval()
    both.load_state_dict(model.state_dict())
    _, g_both = losses_and_grads(both, ids, types, mode)
    _, ref_both = reference_grads(both, ids, types, vocab, read, k, detach=False)
    name = "gpt2.transformer.h.0.attn.c_attn.weight"
    torch.testing.assert_close(g_both[name], ref_both[name], atol=1e-5, rtol=1e-4)
    assert (g_both[name] - grads[name]).abs().max() > 1e-4
