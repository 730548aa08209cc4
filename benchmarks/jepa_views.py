"""Does a JEPA run's predictor reach the reverse view of a fact whose reverse it never saw?

    python benchmarks/jepa_views.py RUN_DIR [RUN_DIR ...] [--checkpoint last]

The JEPA term pulls the prediction made from a fact's forward view (``[h, r, <mask>, t, <PRED>]``)
towards the model's encoding of its reverse view (``[t, inv(r), <mask>, h]``), on ``train`` facts
only, whose two directions are both training data. This asks whether that mapping carries over to
the facts the model saw one way: for every item of a split, the prediction from its forward view
and the encoding of its reverse view, computed as training computes them (the model's own
``return_jepa_outputs``, eval mode), and then

    run | checkpoint step | split | items | pred-target cosine | retrieval MRR | rank 1 | chance MRR

where the retrieval rank of an item is where its own reverse view's encoding ranks among the
encodings of every item's reverse view of the same split, by cosine to its prediction (1 + #higher
+ #tied / 2, as every rank in the kit). On ``train`` a fact's other direction is left out of its
candidates, as InfoNCE leaves it out of its negatives. On ``atomic`` the reverse views are the
``test`` facts: the model encodes them here, at evaluation, as the test evaluation does; nothing
here trains. Chance MRR is that of a uniformly random rank among the candidates.

The last row is a control: the atomic rows with their tail entities rotated by half the split
(row i takes row i + N/2's tail), so each row is a pair the data does not hold, and its "reverse
view" a fact no split has. If the predictor reaches those reverse views as well as the real ones,
its mapping reads the tokens in front of it (the reverse view is the forward view's tokens in
another order: t, inv(r), h; the target is read at h's last token) rather than recalling the fact.
A run with ``jepa_read mask`` reads both at <mask>, as its training did: pred from ``[h, r, <mask>]``,
target from ``[t, inv(r), <mask>]``. There the rotated rows change the target only: a predictor
that recalled the forward tail would find the real atomic targets and not the rotated ones.
With ``jepa_predictor mlp`` the prediction is the run's predictor head applied to that state, as in
its training.

It loads the run's checkpoint (safetensors and JSON only) and its data (the ``data`` folder in the
run's config, relative to the working directory) on the CPU, in fp32. Nothing is written.
"""
import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from jepa_kit.checkpoint import CheckpointError, read_checkpoint_meta
from jepa_kit.data import load_dataset
from jepa_kit.losses import reverse_partners
from jepa_kit.reversal import patch_len_of, reverse_view
from jepa_kit.rundir import checkpoint_dir, load_run

ROTATED = "atomic, tails rotated"
SPLITS = ("train", "atomic", ROTATED)
HEADER = ("| run | checkpoint step | split | items | pred-target cosine | retrieval MRR | rank 1 "
          "| chance MRR |")


@torch.inference_mode()
def views(model, ids: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The prediction from each row's forward view and the encoding of its reverse view, [N, d] each,
    as the model's JEPA term computes them (every row treated as a ``train`` row; eval mode)."""
    if not getattr(getattr(model, "objective", None), "uses_jepa", False):
        raise ValueError("the run has no JEPA term (objective jepa with lambda_jepa > 0): nothing to predict")
    model.eval()
    preds, targets = [], []
    for i in range(0, len(ids), batch_size):
        rows = ids[i:i + batch_size]
        out = model(rows, torch.zeros(len(rows), dtype=torch.long), return_jepa_outputs=True)
        preds.append(out["pred"].float())
        targets.append(out["target"].float())
    return torch.cat(preds), torch.cat(targets)


def retrieval_ranks(pred: torch.Tensor, target: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Rank of each item's own target among all targets by cosine to its prediction, [N] float:
    1 + #higher + #tied (other than itself) / 2. ``exclude`` [N, N] bool: candidates left out
    (never the item's own target)."""
    sim = F.normalize(pred, dim=-1) @ F.normalize(target, dim=-1).T
    own = sim.diagonal().unsqueeze(1)
    others = ~torch.eye(len(sim), dtype=torch.bool)
    if exclude is not None:
        others &= ~exclude
    higher = ((sim > own) & others).sum(1)
    tied = ((sim == own) & others).sum(1)
    return 1 + higher.double() + tied.double() / 2


def chance_mrr(n_candidates: torch.Tensor) -> float:
    """Mean over items of E[1/rank] for a uniformly random rank among each item's candidates (H_n / n)."""
    n = n_candidates.long()
    harmonic = torch.cat([torch.zeros(1, dtype=torch.float64),
                          (1 / torch.arange(1, int(n.max()) + 1, dtype=torch.float64)).cumsum(0)])
    return float((harmonic[n] / n.double()).mean())


def split_row(model, ids: torch.Tensor, split: str) -> dict:
    pred, target = views(model, ids)
    exclude = reverse_partners(ids, reverse_view(ids, model.inverse, check=False)) if split == "train" else None
    r = retrieval_ranks(pred, target, exclude)
    n_candidates = len(ids) - exclude.sum(1) if exclude is not None else torch.full((len(ids),), len(ids))
    return {"items": len(ids), "cosine": float(F.cosine_similarity(pred, target, dim=-1).mean()),
            "mrr": float((1 / r).mean()), "rank1": float((r == 1).double().mean()), "chance": chance_mrr(n_candidates)}


def rotate_tails(ids: torch.Tensor) -> torch.Tensor:
    """Fact rows ``[h_1..h_p, r, <mask>, t_1..t_p]`` with row i's tail replaced by row (i + N // 2)'s."""
    p = patch_len_of(ids.shape[1])
    out = ids.clone()
    out[:, -p:] = ids.roll(-(len(ids) // 2), dims=0)[:, -p:]
    return out


def rows(run_dir: str | Path, checkpoint: str | int = "last", splits=SPLITS) -> list[str]:
    ckpt_dir = checkpoint_dir(Path(run_dir), checkpoint)
    model, config = load_run(run_dir, ckpt_dir)
    step = int(read_checkpoint_meta(ckpt_dir)["step"])
    dataset = load_dataset(config.data)
    out = []
    for split in splits:
        source = "atomic" if split == ROTATED else split
        if source not in dataset.valid:
            raise SystemExit(f"{config.data}: valid.json has no split {source!r} (it has {', '.join(dataset.valid)})")
        ids = dataset.valid[source].ids
        s = split_row(model, rotate_tails(ids) if split == ROTATED else ids, split)
        out.append(f"| {Path(run_dir).name} | {step} | {split} | {s['items']} | {s['cosine']:.3f} | {s['mrr']:.3f} | "
                   f"{s['rank1']:.3f} | {s['chance']:.4f} |")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories of JEPA runs")
    parser.add_argument("--checkpoint", default="last", help='"last", "best" or a step')
    args = parser.parse_args(argv)
    checkpoint = int(args.checkpoint) if args.checkpoint.isdigit() else args.checkpoint
    print("the prediction from each forward view against the encodings of the split's reverse views "
          "(cosine; ranks: ties count half)\n")
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    for run in args.runs:
        try:
            lines = rows(run, checkpoint)
        except (CheckpointError, ValueError) as e:  # a bad run directory, data or objective: one line
            raise SystemExit(f"jepa_views: {e}") from None
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
