"""Training-step benchmark: the packed single pass against the seed's two-pass structure.

Each row times FULL training steps (forward, backward, AdamW step) of the ``paper`` model
(or another preset) on random valid batches: 300/390 of the items are JEPA (``train``)
items, the rest atomic, k = 1 <PRED>, λ = 1. Every mode sees the same batches and starts
from the same weights.

Modes are named ``{packed|two_pass}_{fp32|bf16}`` or ``packed_{fp32|bf16}_compile``: bf16 is
autocast, compile is ``torch.compile`` of the packed transformer (``compile_blocks``).
Defaults: ``two_pass_fp32``, ``packed_fp32`` on CPU; on CUDA also ``packed_bf16`` and
``packed_bf16_compile``.

Row fields: ``mode``, ``device``, ``batch``, ``items_per_s``, ``tokens_per_s`` (tokens
entering the transformer per second: the two-pass mode feeds the forward rows twice),
``peak_mem_mb`` (CUDA: the mode's weights and optimizer state plus the largest growth of
allocated memory during one of its steps; CPU: peak resident memory of a fresh process
running one step of the mode, Python and libraries included), ``mfu`` (CUDA only: model FLOPs
6 × non-embedding params × tokens + 6 × n_embd × vocab × logit positions, per second,
over the device's dense bf16 peak; logit positions are where logits are computed, every
position in the two-pass mode; null on CPU and on devices not in the table).

    jepa-kit bench [--device cpu|cuda] [--preset paper] [--batch 256 1024] [--steps N] [--warmup N] [--json]
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time

import torch

from jepa_kit.model import GPT2WithJEPA, ObjectiveConfig
from jepa_kit.vocab import Vocab

TRAIN_FRACTION = 300 / 390  # train.json: 300,000 train + 90,000 atomic items
BF16_PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense, per GPU
CPU_MODES = ("two_pass_fp32", "packed_fp32")
CUDA_MODES = CPU_MODES + ("packed_bf16", "packed_bf16_compile")


def paper_vocab() -> Vocab:
    """The paper's vocabulary layout: 8,000 first + 8,000 last names, 6 relation pairs (16,015 tokens)."""
    return Vocab.build(8000, 8000, 6)


def random_batch(vocab: Vocab, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Valid random rows ``[h_f, h_l, r, <mask>, t_f, t_l]`` and types (0 train w.p. 300/390, else 1 atomic)."""

    def pick(pool):
        return pool[torch.randint(len(pool), (batch,), generator=generator)]

    first, last = vocab.first_name_ids, vocab.last_name_ids
    ids = torch.stack([pick(first), pick(last), pick(vocab.relation_ids),
                       torch.full((batch,), vocab.mask_id), pick(first), pick(last)], dim=1)
    types = (torch.rand(batch, generator=generator) >= TRAIN_FRACTION).long()
    return ids, types


def parse_mode(mode: str) -> tuple[str, str, bool]:
    """``packed_bf16_compile`` -> ("packed", "bf16", True)."""
    for structure in ("two_pass", "packed"):
        if mode.startswith(structure + "_"):
            rest = mode[len(structure) + 1:].split("_")
            if rest[0] in ("fp32", "bf16") and rest[1:] in ([], ["compile"] if structure == "packed" else []):
                return structure, rest[0], bool(rest[1:])
    raise ValueError(f"benchmark mode {mode!r} not understood; expected {{packed|two_pass}}_{{fp32|bf16}} "
                     f"or packed_{{fp32|bf16}}_compile")


def non_embedding_params(model: GPT2WithJEPA) -> int:
    tr = model.gpt2.transformer
    return sum(p.numel() for p in tr.parameters()) - tr.wte.weight.numel() - tr.wpe.weight.numel()


class _Runner:
    """One mode's model, optimizer and accumulated timings."""

    def __init__(self, mode: str, dev: torch.device, vocab: Vocab, preset: str, k_pred: int, lambda_jepa: float, seed: int):
        structure, precision, compile_ = parse_mode(mode)
        self.mode, self.dev = mode, dev
        torch.manual_seed(seed)  # every mode starts from the same weights
        self.model = GPT2WithJEPA(vocab, preset=preset, objective=ObjectiveConfig(
            k_pred=k_pred, lambda_jepa=lambda_jepa, mode=structure)).to(dev).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=3e-4, weight_decay=0.1, fused=True)
        if compile_:
            self.model.compile_blocks()
        self.autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")
        self.times: list[float] = []
        self.tokens = self.logit_positions = 0
        self.peak_step_mb = 0.0

    def static_mb(self) -> float:
        """Weights and optimizer state held between steps."""
        tensors = list(self.model.parameters()) + [t for s in self.opt.state.values() for t in s.values() if torch.is_tensor(t)]
        return sum(t.numel() * t.element_size() for t in tensors) / 2**20

    def step(self, ids, types, timed: bool):
        cuda = self.dev.type == "cuda"
        self.opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize(self.dev)
            torch.cuda.reset_peak_memory_stats(self.dev)
            start_mb = torch.cuda.memory_allocated(self.dev) / 2**20
        t0 = time.perf_counter()
        with self.autocast:
            out = self.model(ids, types)
        out["loss"].backward()
        self.opt.step()
        if cuda:
            torch.cuda.synchronize(self.dev)
        dt = time.perf_counter() - t0
        if not timed:
            return
        self.times.append(dt)
        self.tokens += out["n_tokens"]
        self.logit_positions += out["n_logit_positions"]
        if cuda:  # activations and gradients on top of what stays between steps
            self.peak_step_mb = max(self.peak_step_mb, torch.cuda.max_memory_allocated(self.dev) / 2**20 - start_mb)


def _one_step_peak_rss(mode: str, preset: str, batch: int, k_pred: int, lambda_jepa: float) -> float:
    """Peak RSS (MB) of this process after building one mode and running one training step."""
    vocab = paper_vocab()
    ids, types = random_batch(vocab, batch, torch.Generator().manual_seed(0))
    _Runner(mode, torch.device("cpu"), vocab, preset, k_pred, lambda_jepa, seed=0).step(ids, types, timed=False)
    # VmHWM, not ru_maxrss: the latter survives exec and would report the parent's peak
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024  # kB -> MB


def cpu_peak_rss_mb(mode: str, preset: str, batch: int, k_pred: int, lambda_jepa: float) -> float | None:
    """Peak resident memory of a fresh process doing one training step of ``mode`` (Python and
    libraries included). A fresh process because the C allocator keeps freed memory, so the
    peak of one mode cannot be read off a process that already ran another."""
    cmd = [sys.executable, "-m", "jepa_kit.bench", "--memory-probe", mode, "--preset", preset,
           "--batch", str(batch), "--k-pred", str(k_pred), "--lambda-jepa", str(lambda_jepa)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"bench: memory probe for {mode} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return float(done.stdout.strip().splitlines()[-1])


def bench_training_steps(modes, device: str = "cpu", preset: str = "paper", batch: int = 256, steps: int = 3,
                         warmup: int = 1, k_pred: int = 1, lambda_jepa: float = 1.0, seed: int = 0,
                         vocab: Vocab | None = None) -> list[dict]:
    """Time ``steps`` full training steps (after ``warmup`` untimed ones) of each mode; one row per mode.

    The modes take turns step by step on the same batches, so a load change on a shared
    machine hits every mode alike instead of biasing their ratio; rates use the median step time.
    """
    dev = torch.device(device)
    vocab = vocab or paper_vocab()
    g = torch.Generator().manual_seed(seed)
    batches = [tuple(t.to(dev) for t in random_batch(vocab, batch, g)) for _ in range(warmup + steps)]
    runners = [_Runner(m, dev, vocab, preset, k_pred, lambda_jepa, seed) for m in modes]
    for i, (ids, types) in enumerate(batches):
        for r in runners:
            r.step(ids, types, timed=i >= warmup)

    rows = []
    for r in runners:
        step_s = statistics.median(r.times)  # robust to a stray slow step on a shared machine
        mfu = None
        if dev.type != "cuda":
            peak_mem = cpu_peak_rss_mb(r.mode, preset, batch, k_pred, lambda_jepa)
        else:
            peak_mem = r.static_mb() + r.peak_step_mb
            name = torch.cuda.get_device_name(dev)
            peak_flops = next((v for key, v in BF16_PEAK_FLOPS.items() if key in name), None)
            if peak_flops:
                n_embd, n_params = r.model.gpt2.config.n_embd, non_embedding_params(r.model)
                flops = 6 * n_params * r.tokens + 6 * n_embd * len(vocab) * r.logit_positions
                mfu = flops / steps / step_s / peak_flops
        rows.append({"mode": r.mode, "device": device, "batch": batch, "items_per_s": batch / step_s,
                     "tokens_per_s": r.tokens / steps / step_s, "peak_mem_mb": peak_mem, "mfu": mfu})
    del runners
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def run(device: str = "cpu", preset: str = "paper", batches=(256,), steps: int = 3, warmup: int = 1,
        modes=None, k_pred: int = 1, lambda_jepa: float = 1.0) -> list[dict]:
    modes = modes or (CUDA_MODES if device.startswith("cuda") else CPU_MODES)
    for m in modes:
        parse_mode(m)
    vocab = paper_vocab()
    return [row for b in batches
            for row in bench_training_steps(modes, device, preset, b, steps, warmup, k_pred, lambda_jepa, vocab=vocab)]


def format_table(rows: list[dict]) -> str:
    lines = [f"{'mode':<22} {'device':<6} {'batch':>6} {'items/s':>10} {'tokens/s':>10} {'peak MB':>9} {'MFU':>6}  vs two_pass_fp32"]
    base = {r["batch"]: r["items_per_s"] for r in rows if r["mode"] == "two_pass_fp32"}
    evals = [r for r in rows if r["mode"] == "eval_entity_mrr"]
    for r in rows:
        if r in evals:
            continue
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
        mem = f"{r['peak_mem_mb']:.0f}" if r["peak_mem_mb"] is not None else "-"
        ratio = f"{r['items_per_s'] / base[r['batch']]:.2f}x" if r["batch"] in base else "-"
        lines.append(f"{r['mode']:<22} {r['device']:<6} {r['batch']:>6} {r['items_per_s']:>10.1f} "
                     f"{r['tokens_per_s']:>10.0f} {mem:>9} {mfu:>6}  {ratio}")
    for r in evals:
        lines.append(f"\nentity-MRR evaluation on {r['device']}, {r['n_entities']:,} entities, random model (nothing pruned): "
                     f"{r['batch']:,} queries in {r['seconds']:.1f} s = {r['items_per_s']:.3g} queries/s "
                     f"({r['candidates_per_query']:.0f} candidate first names per query); "
                     f"9,000 queries: {r['projected_s_9000_queries']:.0f} s"
                     + ("" if r["batch"] >= 9000 else " (projected)"))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="jepa-kit bench", description="Training-step speed: packed single pass vs the seed's two passes.")
    p.add_argument("--device", default="cpu", help="cpu | cuda (or cuda:N)")
    p.add_argument("--preset", default="paper", help="model preset (paper | tiny)")
    p.add_argument("--batch", type=int, nargs="+", default=None,
                   help="batch sizes (default: 256 1024 on CUDA; 256 on CPU, where 1024 takes ~8 minutes)")
    p.add_argument("--eval-queries", type=int, default=None,
                   help="entity-MRR evaluation speed over the paper's 80,000 entities on this many queries "
                        "(default: 9000 on CUDA, 2 on CPU, projected to 9,000; 0 = skip)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per row (default 3 on CPU, 20 on CUDA)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 1 on CPU, 5 on CUDA)")
    p.add_argument("--modes", nargs="+", default=None, help="e.g. two_pass_fp32 packed_fp32 packed_bf16 packed_bf16_compile")
    p.add_argument("--k-pred", type=int, default=1)
    p.add_argument("--lambda-jepa", type=float, default=1.0)
    p.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    p.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)  # internal: see cpu_peak_rss_mb
    args = p.parse_args(argv)
    if args.memory_probe:
        print(_one_step_peak_rss(args.memory_probe, args.preset, args.batch[0], args.k_pred, args.lambda_jepa))
        return 0
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device available")
    steps = args.steps if args.steps is not None else (20 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    batches = args.batch or ([256, 1024] if cuda else [256])
    rows = run(args.device, args.preset, batches, steps, warmup, args.modes, args.k_pred, args.lambda_jepa)
    n_eval = args.eval_queries if args.eval_queries is not None else (9000 if cuda else 2)
    if n_eval:
        rows.append(eval_row(args.device, args.preset, n_eval))
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


def eval_row(device: str, preset: str, n_queries: int) -> dict:
    """Entity-MRR evaluation speed (jepa_kit.evaluate.bench_eval) as a row of the same shape.

    ``items_per_s`` is queries per second; a random model prunes no candidate, so this is the
    worst case (a model at chance, as on the reversal split)."""
    from jepa_kit.evaluate import bench_eval

    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    r = bench_eval(n_queries=n_queries, device=device, preset=preset)
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    return {"mode": "eval_entity_mrr", "device": device, "batch": n_queries, "items_per_s": r["queries_per_s"],
            "tokens_per_s": None, "peak_mem_mb": peak, "mfu": None, "n_entities": r["n_entities"],
            "candidates_per_query": r["candidates_per_query"], "seconds": r["seconds"],
            "projected_s_9000_queries": r["projected_s_9000_queries"]}


if __name__ == "__main__":
    raise SystemExit(main())
