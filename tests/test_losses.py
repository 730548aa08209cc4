import math

import pytest
import torch

from jepa_kit.losses import jepa_diagnostics, jepa_distance, loss_dropout_keep


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_known_values():
    pred = t([[1, 0], [1, 0], [1, 0], [3, 4]])
    target = t([[1, 0], [0, 1], [-2, 0], [0, 0]])
    cos = jepa_distance(pred[:3], target[:3], "cosine", reduction="none")
    torch.testing.assert_close(cos, t([0, 1, 2]))
    l2 = jepa_distance(pred, target, "l2", reduction="none")
    torch.testing.assert_close(l2, t([0, math.sqrt(2), 3, 5]))
    mse = jepa_distance(pred, target, "mse", reduction="none")
    torch.testing.assert_close(mse, t([0, 1, 4.5, 12.5]))
    torch.testing.assert_close(jepa_distance(pred, target, "mse"), mse.mean())


def test_infonce_equals_a_brute_force_loop():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    tau = 0.3
    expected = []
    for i in range(6):
        sims = [torch.dot(pred[i], target[j]) / (pred[i].norm() * target[j].norm()) / tau for j in range(6)]
        expected.append(-(sims[i] - torch.logsumexp(torch.stack(sims), 0)))
    got = jepa_distance(pred, target, "infonce", temperature=tau, reduction="none")
    torch.testing.assert_close(got, torch.stack(expected))
    torch.testing.assert_close(jepa_distance(pred, target, "infonce", temperature=tau), torch.stack(expected).mean())


@pytest.mark.parametrize("metric", ["cosine", "l2", "mse", "infonce"])
def test_stop_grad_cuts_the_target_side_only(metric):
    pred = torch.randn(4, 3, requires_grad=True)
    target = torch.randn(4, 3, requires_grad=True)
    jepa_distance(pred, target, metric, stop_grad=True).backward()
    assert target.grad is None and pred.grad.abs().sum() > 0
    jepa_distance(pred, target, metric).backward()
    assert target.grad.abs().sum() > 0


def test_l2_gradient_is_finite_at_zero_distance():
    pred = torch.ones(2, 3, requires_grad=True)
    jepa_distance(pred, torch.ones(2, 3), "l2").backward()
    assert torch.isfinite(pred.grad).all()


def test_bad_arguments():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="unknown JEPA metric"):
        jepa_distance(x, x, "dot")
    with pytest.raises(ValueError, match="temperature"):
        jepa_distance(x, x, "infonce", temperature=0)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        jepa_distance(x, x[:2])


def test_empty_batch_is_zero_and_attached():
    pred = torch.zeros(0, 4, requires_grad=True)
    loss = jepa_distance(pred, torch.zeros(0, 4))
    assert loss.item() == 0 and loss.requires_grad


def test_loss_dropout_skips_an_exact_seeded_fraction_per_item():
    keep = loss_dropout_keep(200, 0.25, torch.Generator().manual_seed(1))
    assert keep.dtype == torch.bool and keep.sum() == 150
    assert torch.equal(keep, loss_dropout_keep(200, 0.25, torch.Generator().manual_seed(1)))
    assert not torch.equal(keep, loss_dropout_keep(200, 0.25, torch.Generator().manual_seed(2)))
    assert loss_dropout_keep(7, 0.0).all()
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        loss_dropout_keep(5, 1.0)


def test_diagnostics_flag_collapse():
    same = torch.ones(5, 8)
    d = jepa_diagnostics(same, same)
    assert d["pred_pairwise_cosine"] == pytest.approx(1.0)
    assert d["target_std"] == pytest.approx(0.0)
    eye = torch.eye(4)
    d = jepa_diagnostics(eye, torch.tensor([[0.0], [2.0], [0.0], [2.0]]).expand(4, 4))
    assert d["pred_pairwise_cosine"] == pytest.approx(0.0)  # different items, orthogonal predictions
    assert d["target_std"] == pytest.approx(torch.tensor([0.0, 2.0, 0.0, 2.0]).std().item())
    assert d["pred_std"] == pytest.approx(eye.std(dim=0).mean().item())
    with pytest.raises(ValueError, match="at least 2"):
        jepa_diagnostics(eye[:1], eye[:1])
