"""How the true tail ranks, query by query, for trained runs: beyond MRR and the mean rank.

    python benchmarks/reverse_ranks.py RUN_DIR [RUN_DIR ...] [--split test] [--checkpoint last]

Two runs can share an MRR and differ in their mean rank: one has more queries near the top, the
other fewer far misses. This prints, per run, the distribution of the kit's rank of the true tail
among every entity (1 + #higher + #tied / 2; a token-level run's entity rank, a concept run's
concept rank: the numbers behind ``entity_mrr`` and ``concept_mrr``) over every query of the split:

    run | checkpoint step | queries | MRR | mean rank | median | rank 1 | rank <= 10 | rank > 10 | rank > 100 | worst

It loads the run's checkpoint (safetensors and JSON only) and its data (the ``data`` folder in the
run's config, relative to the working directory), and evaluates in fp32 on the CPU: a few seconds
per 1,000 queries for the small models. Nothing is written.
"""
import argparse
from pathlib import Path

import torch

from jepa_kit.checkpoint import CheckpointError, read_checkpoint_meta
from jepa_kit.data import load_dataset
from jepa_kit.evaluate import evaluate_split
from jepa_kit.objectives import get_objective
from jepa_kit.objectives.base import Objective
from jepa_kit.ranking import full_fp32
from jepa_kit.rundir import checkpoint_dir, load_run

HEADER = ("| run | checkpoint step | queries | MRR | mean rank | median | rank 1 | rank <= 10 | rank > 10 "
          "| rank > 100 | worst |")


def ranks(run_dir: str | Path, split: str = "test", checkpoint: str | int = "last") -> tuple[torch.Tensor, int]:
    """The kit rank of the true tail for every query of ``split`` (float [N]) and the checkpoint's step."""
    ckpt_dir = checkpoint_dir(Path(run_dir), checkpoint)  # resolved once: "last" cannot move between the reads
    model, config = load_run(run_dir, ckpt_dir)
    step = int(read_checkpoint_meta(ckpt_dir)["step"])
    dataset = load_dataset(config.data)
    if split not in dataset.valid:
        raise SystemExit(f"{config.data}: valid.json has no split {split!r} (it has {', '.join(dataset.valid)})")
    ids, entities = dataset.valid[split].ids, dataset.entities()
    objective = get_objective(config.objective)
    with torch.inference_mode(), full_fp32():
        if type(objective).split_metrics is not Objective.split_metrics:  # ranks in its own space (concept)
            from jepa_kit.concept import concept_ranks
            return concept_ranks(model, ids, entities)[0], step
        items = evaluate_split(model, ids, entities, logit_lens=False, per_item=True, precision="fp32")["items"]
    return items["entity_rank"][-1].double(), step


def row(name: str, step: int, r: torch.Tensor) -> str:
    r = r.double()
    frac = lambda mask: f"{float(mask.double().mean()):.3f}"
    return (f"| {name} | {step} | {len(r)} | {float((1 / r).mean()):.3f} | {float(r.mean()):.1f} | "
            f"{float(r.median()):g} | {frac(r == 1)} | {frac(r <= 10)} | {frac(r > 10)} | {frac(r > 100)} | "
            f"{float(r.max()):g} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories")
    parser.add_argument("--split", default="test")
    parser.add_argument("--checkpoint", default="last", help='"last", "best" or a step')
    args = parser.parse_args(argv)
    checkpoint = int(args.checkpoint) if args.checkpoint.isdigit() else args.checkpoint
    print(f"{args.split} split, the kit's rank of the true tail among every entity (ties count half)\n")
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    for run in args.runs:
        try:
            r, step = ranks(run, args.split, checkpoint)
        except (CheckpointError, ValueError) as e:  # a bad run directory or data: one line, not a traceback
            raise SystemExit(f"reverse_ranks: {e}") from None
        print(row(Path(run).name, step, r), flush=True)


if __name__ == "__main__":
    main()
