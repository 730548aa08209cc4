"""JEPA distances between predicted and target embeddings, loss dropout, collapse diagnostics.

``pred`` and ``target`` are ``[N, D]``: one row per JEPA item (the last-layer hidden
state at the last token of the forward view, resp. of the reverse view).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

METRICS = ("cosine", "l2", "mse", "infonce")
PREDICTORS = ("none", "mlp")


def jepa_predictor(kind: str, width: int) -> torch.nn.Module:
    """What maps pred before the distance: ``none`` (identity, the LLM-JEPA default: the model's own
    hidden state is the prediction) or ``mlp`` (a separate head, Linear(d, 4d), GELU, Linear(4d, d),
    PyTorch's default init; trained with the model, weight decay on its matrices), so that the state
    the LM head reads need not itself lie next to the target."""
    if kind == "none":
        return torch.nn.Identity()
    if kind == "mlp":
        return torch.nn.Sequential(torch.nn.Linear(width, 4 * width), torch.nn.GELU(), torch.nn.Linear(4 * width, width))
    raise ValueError(f"jepa_predictor must be one of {', '.join(PREDICTORS)}; got {kind!r}")


def jepa_distance(
    pred: torch.Tensor,
    target: torch.Tensor,
    metric: str = "cosine",
    temperature: float = 0.1,
    stop_grad: bool = False,
    reduction: str = "mean",
    valid: torch.Tensor | None = None,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Distance between each prediction and its target.

    metric:
      ``cosine``  1 - cos(pred_i, target_i)
      ``l2``      ||pred_i - target_i||_2 (Euclidean norm, not squared)
      ``mse``     mean over dimensions of (pred_i - target_i)^2
      ``infonce`` cross-entropy of item i picking its own target among all targets of the
                  batch (in-batch negatives), scores = cos(pred_i, target_j) / temperature;
                  ``exclude`` [N, N] (bool) drops target j from item i's negatives where set
    stop_grad: detach the target side (no gradient flows into the reverse view). Off by
      default, like the LLM-JEPA code.
    reduction: ``mean`` (scalar) or ``none`` (``[N]``, one term per item).
    valid: optional bool ``[N]``: only these items count (the mean is over them, InfoNCE takes its
      negatives among their targets only; invalid items get 0 with ``none``). The fixed-shape
      (``static``) training pass uses it instead of selecting rows, which would need a host sync;
      the values equal those of the selected rows alone.

    An empty batch gives 0 (mean) or an empty tensor (none), still attached to the graph.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown JEPA metric {metric!r}; choose one of {', '.join(METRICS)}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    if pred.shape != target.shape or pred.dim() != 2:
        raise ValueError(f"pred and target must both be [N, D]; got {tuple(pred.shape)} and {tuple(target.shape)}")
    if stop_grad:
        target = target.detach()
    if metric == "cosine":
        d = 1.0 - F.cosine_similarity(pred, target, dim=-1)
    elif metric == "l2":
        d = torch.linalg.vector_norm(pred - target, dim=-1)
    elif metric == "mse":
        d = (pred - target).pow(2).mean(dim=-1)
    else:
        if temperature <= 0:
            raise ValueError(f"InfoNCE temperature must be > 0, got {temperature}")
        scores = F.normalize(pred, dim=-1) @ F.normalize(target, dim=-1).T / temperature  # [N, N]
        drop = None if valid is None else ~valid[None, :]  # invalid targets are no negatives
        if exclude is not None:
            eye = torch.eye(len(pred), dtype=torch.bool, device=pred.device)
            drop = (exclude & ~eye) if drop is None else drop | (exclude & ~eye)  # never an item's own target
        if drop is not None:
            scores = scores.masked_fill(drop, torch.finfo(scores.dtype).min)
        d = F.cross_entropy(scores, torch.arange(len(pred), device=pred.device), reduction="none")
    if valid is not None:
        d = torch.where(valid, d, torch.zeros_like(d))
        if reduction == "none":
            return d
        return d.sum() / valid.sum().clamp(min=1)
    if reduction == "none":
        return d
    return d.mean() if len(d) else d.sum()


def reverse_partners(ids: torch.Tensor, reversed_ids: torch.Tensor) -> torch.Tensor:
    """[N, N] bool: item j is item i's reverse partner (``ids[j] == reversed_ids[i]``), i.e. the same
    fact read the other way. Both directions of every set-A fact are ``train`` items, so a fact and
    its reverse can share a batch; with k = 0 the target of one IS the other's prediction state, and
    as an InfoNCE negative it would push the objective against itself. InfoNCE leaves them out."""
    return (ids[None, :, :] == reversed_ids[:, None, :]).all(-1)


def loss_dropout_keep(n: int, dropout: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Which of ``n`` JEPA items keep their JEPA term this step: bool ``[n]`` on the generator's device.

    Per item: exactly ``round(dropout * n)`` items, chosen uniformly at random with
    ``generator`` (seeded by the caller), are skipped; the rest are kept. Skipped items
    are not given a reverse view at all, which is where the compute saving comes from.
    The JEPA loss is the mean over kept items, so its scale does not shrink with dropout;
    to follow the LLM-JEPA convention of an effective weight λ·(1 - dropout), scale λ.
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"JEPA loss dropout must be in [0, 1), got {dropout}")
    device = generator.device if generator is not None else torch.device("cpu")
    keep = torch.ones(n, dtype=torch.bool, device=device)
    n_skip = round(dropout * n)
    if n_skip:
        keep[torch.randperm(n, generator=generator, device=device)[:n_skip]] = False
    return keep


@torch.no_grad()
def jepa_diagnostics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Collapse indicators for a batch of JEPA predictions/targets ([N, D], N >= 2).

    pred_pairwise_cosine:   mean cos(pred_i, pred_j) over i != j (near 1: every item
                            predicts the same vector, the objective is met trivially)
    target_pairwise_cosine: the same for targets
    target_std:             per-dimension std of the targets across items, averaged over
                            dimensions (near 0: targets have collapsed)
    pred_std:               the same for predictions
    pred_target_cosine:     mean cos(pred_i, target_i) (what the cosine loss pushes up)
    """
    if pred.shape != target.shape or pred.dim() != 2:
        raise ValueError(f"pred and target must both be [N, D]; got {tuple(pred.shape)} and {tuple(target.shape)}")
    n = len(pred)
    if n < 2:
        raise ValueError(f"jepa_diagnostics needs at least 2 items to compare, got {n}")
    pred, target = pred.float(), target.float()

    def mean_offdiag_cos(x):
        u = F.normalize(x, dim=-1)
        gram = u @ u.T
        return float((gram.sum() - gram.diagonal().sum()) / (n * (n - 1)))

    return {
        "pred_pairwise_cosine": mean_offdiag_cos(pred),
        "target_pairwise_cosine": mean_offdiag_cos(target),
        "target_std": float(target.std(dim=0).mean()),
        "pred_std": float(pred.std(dim=0).mean()),
        "pred_target_cosine": float(F.cosine_similarity(pred, target, dim=-1).mean()),
    }


def loss_dropout_keep_static(is_jepa: torch.Tensor, dropout: float, generator: torch.Generator | None) -> torch.Tensor:
    """Loss dropout without a host sync: of the n JEPA rows, exactly round(dropout * n) chosen
    uniformly at random are skipped (as ``losses.loss_dropout_keep``, with other draws). Bool [B]."""
    u = torch.rand(is_jepa.shape, generator=generator, device=is_jepa.device)
    u = torch.where(is_jepa, u, torch.full_like(u, 2.0))  # non-JEPA rows sort last
    rank = torch.empty_like(u, dtype=torch.long)
    rank[u.argsort()] = torch.arange(len(u), device=u.device)
    n_skip = torch.round(is_jepa.sum() * dropout)
    return rank >= n_skip
