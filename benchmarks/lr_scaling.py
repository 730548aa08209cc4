"""How the learning rate should grow with the batch (issue 12 allows larger batches "with the
learning rate scaled and documented"): epochs to memorise the forward facts at a base batch and
at larger ones, with the lr kept, scaled by the square root of the batch ratio, or scaled linearly.

Each run trains ``ntp`` (or ``--objective``) on the same data for the same number of epochs, with
the warm-up kept at the same number of items, and evaluates every ``--eval-epochs`` epochs; the
table gives the first evaluated epoch at which the forward (atomic) exact match reaches 0.5, 0.8
and 0.95. Settings are compared on the forward split only (what memorisation means); the reverse
split is not read.

    .venv/bin/python benchmarks/lr_scaling.py [--data DIR] [--factors 4 8] [--seeds 0 1] [--jobs 2] [--json F]

Default: the ``tiny`` data and model on CPU (base batch 128 at lr 1e-3, the ``tiny`` preset's),
85 epochs per run, about 5 minutes on 2 cores with ``--jobs 2``.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RULES = ("keep", "sqrt", "linear")
THRESHOLDS = (0.5, 0.8, 0.95)


def scaled(lr: float, factor: float, rule: str) -> float:
    """The lr for a batch ``factor`` times the base one under ``rule`` (keep | sqrt | linear)."""
    return lr * {"keep": 1.0, "sqrt": math.sqrt(factor), "linear": factor}[rule]


def plan(base_batch: int, base_lr: float, factors, seeds, rules=RULES) -> list[dict]:
    """The runs: the base batch once per seed, then every factor under every rule."""
    runs = [dict(batch=base_batch, lr=base_lr, factor=1, rule="base", seed=s) for s in seeds]
    runs += [dict(batch=base_batch * f, lr=scaled(base_lr, f, r), factor=f, rule=r, seed=s)
             for f in factors for r in rules for s in seeds]
    for r in runs:
        r["name"] = f"b{r['batch']}_{r['rule']}_s{r['seed']}"
    return runs


def epochs_to(run_dir: Path, batch: int, n_train: int, thresholds=THRESHOLDS) -> dict:
    """First evaluated epoch (steps x batch / training items) with atomic exact match >= each
    threshold (None: not reached), and the last evaluation's atomic exact match."""
    from jepa_kit.collect import of_kind, read_metrics

    evals = of_kind(read_metrics(run_dir), "eval")
    if not evals:
        raise ValueError(f"{Path(run_dir) / 'metrics.jsonl'}: no evaluation rows")
    out = {}
    for th in thresholds:
        hit = next((r["step"] for r in evals if r["splits"]["atomic"]["exact_match"] >= th), None)
        out[f"em{th}"] = None if hit is None else round(hit * batch / n_train, 2)
    out["final_atomic_em"] = evals[-1]["splits"]["atomic"]["exact_match"]
    return out


def train_one(run: dict, data: Path, out: Path, objective: str, model: str, epochs: float, n_train: int,
              base_batch: int, base_warmup: int, eval_epochs: float) -> dict:
    steps_per_epoch = n_train / run["batch"]
    steps = max(1, round(epochs * steps_per_epoch))
    every = max(1, round(eval_epochs * steps_per_epoch))
    warmup = round(base_warmup * base_batch / run["batch"])  # the same number of items
    cmd = [sys.executable, "-m", "jepa_kit", "train", "--data", str(data), "--out", str(out / run["name"]),
           "--preset", "tiny", "--model", model, "--objective", objective, "--batch_size", str(run["batch"]),
           "--lr", str(run["lr"]), "--steps", str(steps), "--warmup_steps", str(warmup), "--eval_every", str(every),
           "--log_every", str(every), "--eval_max_items", "200", "--ckpt_every", str(10 * steps), "--seed", str(run["seed"])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "JEPA_KIT_PROGRESS": "none"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {**run, "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return {**run, "steps": steps, "warmup": warmup,
            **epochs_to(out / run["name"], run["batch"], n_train)}


def format_table(rows: list[dict]) -> str:
    head = f"{'batch':>6} {'rule':<7} {'lr':>9} {'seed':>4}  " + "  ".join(f"{'EM>=' + str(t):>8}" for t in THRESHOLDS) + "  final EM"
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['batch']:>6} {r['rule']:<7} {r['lr']:>9.2e} {r['seed']:>4}  failed: {r['error']}")
            continue
        cells = "  ".join(f"{r[f'em{t}']:>8.1f}" if r[f"em{t}"] is not None else f"{'-':>8}" for t in THRESHOLDS)
        lines.append(f"{r['batch']:>6} {r['rule']:<7} {r['lr']:>9.2e} {r['seed']:>4}  {cells}  {r['final_atomic_em']:.3f}")
    lines.append("(epochs of training until the forward (atomic) exact match first reached the threshold; '-': not reached)")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="data directory (default: the tiny preset, generated into a temp dir)")
    ap.add_argument("--objective", default="ntp")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--base-batch", type=int, default=128)
    ap.add_argument("--base-lr", type=float, default=1e-3)
    ap.add_argument("--base-warmup", type=int, default=100, help="warm-up steps at the base batch")
    ap.add_argument("--factors", type=float, nargs="+", default=[4, 8])
    ap.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=float, default=85.0)
    ap.add_argument("--eval-epochs", type=float, default=2.0, help="evaluate every this many epochs")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=None, help="run directories (default: a temp dir)")
    ap.add_argument("--json", default=None, help="write the rows here as well")
    args = ap.parse_args(argv)

    from jepa_kit.data import load_dataset
    from jepa_kit.datagen import generate
    from jepa_kit.files import atomic_write_json

    out = Path(args.out or tempfile.mkdtemp(prefix="jepa_lr_scaling_"))
    data = Path(args.data) if args.data else out / "data"
    if not args.data:
        generate("tiny", data, seed=0, force=True)
    n_train = len(load_dataset(data).train.ids)
    factors = [int(f) if float(f).is_integer() else f for f in args.factors]
    runs = plan(args.base_batch, args.base_lr, factors, args.seeds, args.rules)
    print(f"{len(runs)} runs of {args.objective} on {data} ({n_train} training items), {args.epochs:g} epochs each, "
          f"{args.jobs} at a time", file=sys.stderr, flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda r: train_one(r, data, out, args.objective, args.model, args.epochs, n_train,
                                                 args.base_batch, args.base_warmup, args.eval_epochs), runs))
    print(format_table(rows))
    if args.json:
        atomic_write_json(args.json, rows)


if __name__ == "__main__":
    main()
