"""Training-step and evaluation benchmark: what ``train`` does, timed as ``train`` runs it.

Each training row runs ``jepa_kit.step.train_step`` (forward under autocast, backward, gradient
clipping at 1.0, fused AdamW) of the ``paper`` model (or another preset) on a device-resident
set of random valid rows, sliced by a random permutation as the trainer slices its data: 300/390
of the rows are JEPA (``train``) items, the rest atomic; k = 1 <PRED>, λ = 1, cosine.

Modes are ``{structure}_{fp32|bf16}[_compile|_cudagraphs]`` with structure ``two_pass`` (the
seed's structure, the reference), ``packed`` (one pass, rows packed to the batch: shapes
change every step), ``static`` (one pass, fixed shapes: no host sync) or ``ntp`` (the plain
next-token objective in the fixed-shape layout) or ``concept`` (the binding paper's concept-level
JEPA at 1 + 1 blocks of the preset's width, as papermill_runs/binding_paper.yaml trains it: no LM
head, 4 patches per item); ``compile`` is ``torch.compile`` of the
model's forward as ``train --compile true`` does it, ``cudagraphs`` the same in mode
``reduce-overhead``; a compiled mode may end in ``_eagerattn`` (attention as matmul + softmax), an
ntp mode in ``_maskattn`` instead (SDPA given the causal mask as a tensor, as before the kit called
it with is_causal and no mask), a static one in ``_blockattn`` (F and R one is_causal SDPA call
each, no mask tensor), and then ``_reuse`` (Inductor's defaults: in-place buffers on, under which
the compiled step read memory it never wrote, issue 12); any fixed-shape mode on CUDA may end in
``_stepgraph``: the whole step (forward, backward, clipping, AdamW) captured as one CUDA graph and
replayed (``runtime.GraphedStep``; its peak memory counts the graph's pool as reserved while it was
captured). Defaults: ``two_pass_fp32``, ``packed_fp32``, ``static_fp32`` on CPU; on CUDA
``two_pass_fp32``, ``packed_bf16``, ``static_bf16``, ``static_bf16_compile``, ``ntp_bf16_compile``.

Two timings per row:

* ``items_per_s``: ``steps`` steps back to back between two synchronisations (the device
  queues work while the host prepares the next step, as in training); the median over
  ``rounds`` rounds, the modes taking turns round by round so that a load change on a shared
  machine hits every mode alike.
* ``step_ms``: the median latency of single steps, each synchronised before and after.

Other fields: ``tokens_per_s`` (tokens entering the transformer: the two-pass mode feeds the
forward rows twice, the static one pads atomic rows), ``peak_mem_mb`` (CUDA: the mode's weights
and optimizer state plus the largest growth of allocated memory during its timed steps; CPU: peak
resident memory of a fresh process running one step, Python and
libraries included), ``mfu`` (CUDA only: 6 x non-embedding params x tokens + 6 x n_embd x vocab
x logit positions per second over the card's dense bf16 peak).

The ``eval_entity_mrr`` row times ``jepa_kit.evaluate.bench_eval``: a random model over the
paper's 80,000 entities, where nothing can be pruned (the worst case).

    jepa-kit bench [--device cpu|cuda] [--preset paper] [--batch 256 1024] [--steps N] [--json]
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
STRUCTURES = ("two_pass", "packed", "static", "ntp", "concept")
CPU_MODES = ("two_pass_fp32", "packed_fp32", "static_fp32")
CUDA_MODES = ("two_pass_fp32", "packed_bf16", "static_bf16", "static_bf16_compile", "ntp_bf16_compile")
POOL_BATCHES = 16  # the device-resident random data holds this many batches


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


EAGER_ATTN = "_eagerattn"  # a mode suffix: attention written out as matmul + softmax (attn_implementation "eager")
# ntp modes only, where _eagerattn goes: SDPA gets the rows' causal mask as a tensor, as before the
# kit called it with is_causal and no mask (GPT2WithJEPA.causal_sdpa), to time the two side by side.
MASK_ATTN = "_maskattn"
# static modes only, where _eagerattn goes: the [F | R] rows' blocks go to SDPA one is_causal call
# each, no mask tensor (GPT2WithJEPA.causal_sdpa_blocks, opt-in until timed here).
BLOCK_ATTN = "_blockattn"
_SDPA_SUFFIXES = {MASK_ATTN: "ntp", BLOCK_ATTN: "static"}  # suffix: the one structure it applies to
# The last mode suffix: compiled with Inductor's defaults (buffer reuse and in-place buffers on; the
# kit turns in-place buffers off: jepa_kit.runtime.INDUCTOR_OPTIONS), to time what that costs side by side.
REUSE = "_reuse"
INDUCTOR_DEFAULTS = {"allow_buffer_reuse": True, "inplace_buffers": True}
# The outermost mode suffix, fixed-shape structures on CUDA only: the whole step (forward, backward,
# clipping, AdamW with capturable=True) captured as one CUDA graph and replayed (runtime.GraphedStep).
STEPGRAPH = "_stepgraph"


def parse_mode(mode: str) -> tuple[str, str, str | None]:
    """``static_bf16_compile`` -> ("static", "bf16", "default"); compile is None, "default" or
    "reduce-overhead" (``_cudagraphs``). The suffixes ``_eagerattn`` (see ``attn_of``) and then
    ``_reuse`` (``REUSE``, compiled modes only) and ``_stepgraph`` (``STEPGRAPH``, fixed-shape
    structures) are checked and ignored here."""
    if mode.endswith(STEPGRAPH):
        structure, precision, compile_mode = parse_mode(mode.removesuffix(STEPGRAPH))
        if structure not in ("static", "ntp", "concept") or compile_mode == "reduce-overhead":
            raise ValueError(f"benchmark mode {mode!r}: {STEPGRAPH} applies to the fixed-shape structures "
                             f"(static, ntp, concept), uncompiled or _compile")
        return structure, precision, compile_mode
    if mode.endswith(REUSE):
        structure, precision, compile_mode = parse_mode(mode.removesuffix(REUSE))
        if compile_mode is None:
            raise ValueError(f"benchmark mode {mode!r}: {REUSE} applies to compiled modes only")
        return structure, precision, compile_mode
    for suffix, structure in _SDPA_SUFFIXES.items():
        if mode.endswith(suffix):
            if not mode.startswith(structure + "_") or mode.removesuffix(suffix).endswith(EAGER_ATTN):
                raise ValueError(f"benchmark mode {mode!r}: {suffix} applies to {structure} with SDPA, not with "
                                 f"{EAGER_ATTN} (which always takes the mask tensor)")
            return parse_mode(mode.removesuffix(suffix))
    if mode.startswith("concept_") and mode.endswith(EAGER_ATTN):
        raise ValueError(f"benchmark mode {mode!r}: {EAGER_ATTN} applies to the GPT-2 modes, not to concept")
    mode = mode.removesuffix(EAGER_ATTN)
    for structure in STRUCTURES:
        if mode.startswith(structure + "_"):
            rest = mode[len(structure) + 1:].split("_")
            if rest[0] in ("fp32", "bf16") and len(rest) <= 2:
                extra = rest[1] if len(rest) == 2 else None
                if extra in (None, "compile", "cudagraphs") and not (extra and structure in ("two_pass", "packed")):
                    return structure, rest[0], {None: None, "compile": "default", "cudagraphs": "reduce-overhead"}[extra]
    raise ValueError(f"benchmark mode {mode!r} not understood; expected {{{'|'.join(STRUCTURES)}}}_{{fp32|bf16}}, "
                     f"with _compile or _cudagraphs for static, ntp and concept, and optionally {EAGER_ATTN}, then {REUSE}")


def attn_of(mode: str) -> str:
    """The attention implementation of a mode: "eager" with the ``_eagerattn`` suffix (for the
    compiled fixed-shape rows of 5-13 tokens, attention that inductor can fuse, instead of an SDPA
    kernel call per block and direction), else "sdpa"."""
    return "eager" if mode.removesuffix(STEPGRAPH).removesuffix(REUSE).endswith(EAGER_ATTN) else "sdpa"


def sdpa_suffix_of(mode: str) -> str | None:
    """A mode's ``_maskattn`` or ``_blockattn`` suffix, else None."""
    base = mode.removesuffix(STEPGRAPH).removesuffix(REUSE)
    return next((x for x in _SDPA_SUFFIXES if base.endswith(x)), None)


def non_embedding_params(model) -> int:
    tr = getattr(model.gpt2, "transformer", model.gpt2)  # GPT2WithJEPA wraps an LM head; ConceptJEPA has none
    return sum(p.numel() for p in tr.parameters()) - tr.wte.weight.numel() - tr.wpe.weight.numel()


class _Runner:
    """One mode: the model, its optimizer and the trainer's step (``step.TrainerStep``)."""

    def __init__(self, mode: str, dev: torch.device, vocab: Vocab, preset: str, k_pred: int, lambda_jepa: float, seed: int):
        from jepa_kit.runtime import compile_step
        from jepa_kit.step import TrainerStep, weight_decay_groups

        structure, precision, compile_mode = parse_mode(mode)
        self.mode, self.dev = mode, dev
        torch.manual_seed(seed)  # every mode starts from the same weights
        if structure == "concept":  # the binding paper's 1+1: one recognition block, one concept block
            from jepa_kit.concept import ConceptJEPA
            from jepa_kit.model import MODEL_PRESETS

            objective = ObjectiveConfig(objective="concept", n_recognition=1)
            arch = {**MODEL_PRESETS[preset], "n_layer": 2, "pos_emb": False}
            self.model = ConceptJEPA(vocab, preset=arch, objective=objective).to(dev).train()
        else:
            objective = ObjectiveConfig(k_pred=k_pred, lambda_jepa=lambda_jepa,
                                        objective="ntp" if structure == "ntp" else "jepa",
                                        mode="static" if structure == "ntp" else structure)
            self.model = GPT2WithJEPA(vocab, preset=preset, objective=objective,
                                      attn_implementation=attn_of(mode)).to(dev).train()
            self.model.causal_sdpa = sdpa_suffix_of(mode) != MASK_ATTN
            self.model.causal_sdpa_blocks = sdpa_suffix_of(mode) == BLOCK_ATTN
        graph = mode.endswith(STEPGRAPH)
        if graph and dev.type != "cuda":
            raise ValueError(f"benchmark mode {mode!r}: {STEPGRAPH} captures a CUDA graph and needs a CUDA device")
        self.opt = torch.optim.AdamW(weight_decay_groups(self.model, 0.01), lr=1e-4, fused=True)
        self.scaler = torch.amp.GradScaler(dev.type, enabled=False)
        self.fwd = self.model
        if compile_mode:
            options = INDUCTOR_DEFAULTS if mode.removesuffix(STEPGRAPH).endswith(REUSE) else {}
            self.fwd = compile_step(self.model, compile_mode, **options)
        # the trainer's step object (a _stepgraph mode: its lr a device tensor, the optimizer capturable)
        self.step_fn = TrainerStep(
            self.fwd, self.model, self.opt, self.scaler, autocast_dtype=torch.bfloat16 if precision == "bf16" else None,
            grad_clip=1.0, graph=graph,
            loss_fn=lambda out: (out["loss"], out["n_tokens"], out.get("n_logit_positions", 0)))
        self.graphed = self.step_fn.graphed  # runtime.GraphedStep or None
        self.rates: list[float] = []
        self.latencies: list[float] = []
        self.tokens = self.logit_positions = 0  # per step
        self.peak_step_mb = 0.0  # CUDA: largest growth of allocated memory during a timed round

    def static_mb(self) -> float:
        """Weights and optimizer state held between steps."""
        tensors = list(self.model.parameters()) + [t for s in self.opt.state.values() for t in s.values() if torch.is_tensor(t)]
        return sum(t.numel() * t.element_size() for t in tensors) / 2**20

    def step(self, ids, types):
        """One training step; returns the loss tensor (with _stepgraph: the graph's, overwritten by the next step)."""
        building = self.graphed is not None and self.graphed.graph is None
        if building:  # the graph's memory pool is reserved while it is captured; replays allocate nothing
            reserved = torch.cuda.memory_reserved(self.dev)
        (loss, n_tokens, n_logits), _ = self.step_fn(ids, types)
        if building:
            self.peak_step_mb = max(self.peak_step_mb, (torch.cuda.memory_reserved(self.dev) - reserved) / 2**20)
        self.tokens, self.logit_positions = n_tokens, n_logits
        return loss

    def sync(self):
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)


def _one_step_peak_rss(mode: str, preset: str, batch: int, k_pred: int, lambda_jepa: float) -> float:
    """Peak RSS (MB) of this process after building one mode and running one training step."""
    vocab = paper_vocab()
    ids, types = random_batch(vocab, batch, torch.Generator().manual_seed(0))
    _Runner(mode, torch.device("cpu"), vocab, preset, k_pred, lambda_jepa, seed=0).step(ids, types)
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
                         warmup: int = 1, rounds: int = 3, latency_steps: int = 3, k_pred: int = 1,
                         lambda_jepa: float = 1.0, seed: int = 0, vocab: Vocab | None = None,
                         memory: bool = True) -> list[dict]:
    """Time each mode's training step; one row per mode (see the module docstring).

    ``warmup`` untimed steps first (compilation happens there); then ``rounds`` rounds of
    ``steps`` back-to-back steps per mode; then ``latency_steps`` synchronised single steps.
    A mode that fails (e.g. a compiler error) gives a row with ``error`` instead of numbers."""
    dev = torch.device(device)
    vocab = vocab or paper_vocab()
    g = torch.Generator().manual_seed(seed)
    pool_ids, pool_types = (t.to(dev) for t in random_batch(vocab, batch * POOL_BATCHES, g))
    order = torch.randperm(len(pool_ids), generator=g).to(dev)

    def batch_at(i):  # the trainer's way: a slice of a permutation, indexed on the device
        idx = order[(i % POOL_BATCHES) * batch:(i % POOL_BATCHES + 1) * batch]
        return pool_ids[idx], pool_types[idx]

    runners, errors = [], {}
    for m in modes:
        try:
            r = _Runner(m, dev, vocab, preset, k_pred, lambda_jepa, seed)
            for i in range(max(warmup, r.graphed.warmup + 1) if r.graphed else warmup):  # capture untimed
                r.step(*batch_at(i))
            r.sync()
            runners.append(r)
        except Exception as e:  # one broken mode must not hide the others
            errors[m] = f"{type(e).__name__}: {e}"[:500]
            print(f"bench: mode {m} failed: {errors[m]}", file=sys.stderr)
    for _ in range(rounds):
        for r in runners:
            r.sync()
            if dev.type == "cuda":  # the other modes' weights are allocated too: count growth only
                base_mb = torch.cuda.memory_allocated(dev) / 2**20
                torch.cuda.reset_peak_memory_stats(dev)
            t0 = time.perf_counter()
            for i in range(steps):
                r.step(*batch_at(i))
            r.sync()
            r.rates.append(steps * batch / (time.perf_counter() - t0))
            if dev.type == "cuda":
                r.peak_step_mb = max(r.peak_step_mb, torch.cuda.max_memory_allocated(dev) / 2**20 - base_mb)
    for r in runners:
        for i in range(latency_steps):
            ids, types = batch_at(i)
            r.sync()
            t0 = time.perf_counter()
            r.step(ids, types)
            r.sync()
            r.latencies.append(time.perf_counter() - t0)

    rows = []
    for m in modes:
        if m in errors:
            rows.append({"mode": m, "device": device, "batch": batch, "items_per_s": None, "tokens_per_s": None,
                         "step_ms": None, "peak_mem_mb": None, "mfu": None, "error": errors[m]})
            continue
        r = next(r for r in runners if r.mode == m)
        rate = statistics.median(r.rates)
        steps_per_s = rate / batch
        mfu = None
        if dev.type != "cuda":
            peak_mem = cpu_peak_rss_mb(r.mode, preset, batch, k_pred, lambda_jepa) if memory else None
        else:
            peak_mem = r.static_mb() + r.peak_step_mb
            name = torch.cuda.get_device_name(dev)
            peak_flops = next((v for key, v in BF16_PEAK_FLOPS.items() if key in name), None)
            if peak_flops:
                n_embd, n_params = r.model.gpt2.config.n_embd, non_embedding_params(r.model)
                flops = 6 * n_params * r.tokens + 6 * n_embd * len(vocab) * r.logit_positions
                mfu = flops * steps_per_s / peak_flops
        rows.append({"mode": m, "device": device, "batch": batch, "items_per_s": rate,
                     "tokens_per_s": r.tokens * steps_per_s, "step_ms": 1e3 * statistics.median(r.latencies),
                     "peak_mem_mb": peak_mem, "mfu": mfu})
    del runners
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def run(device: str = "cpu", preset: str = "paper", batches=(256,), steps: int = 3, warmup: int = 1,
        modes=None, k_pred: int = 1, lambda_jepa: float = 1.0, rounds: int = 3, latency_steps: int = 3,
        memory: bool = True) -> list[dict]:
    modes = modes or (CUDA_MODES if device.startswith("cuda") else CPU_MODES)
    for m in modes:
        parse_mode(m)
    vocab = paper_vocab()
    return [row for b in batches
            for row in bench_training_steps(modes, device, preset, b, steps, warmup, rounds, latency_steps,
                                            k_pred, lambda_jepa, vocab=vocab, memory=memory)]


def format_table(rows: list[dict]) -> str:
    lines = [f"{'mode':<24} {'device':<6} {'batch':>6} {'items/s':>10} {'tokens/s':>11} {'step ms':>8} "
             f"{'peak MB':>8} {'MFU':>6}  vs two_pass_fp32"]
    base = {r["batch"]: r["items_per_s"] for r in rows if r["mode"] == "two_pass_fp32" and r.get("items_per_s")}
    evals = [r for r in rows if r["mode"].startswith("eval_entity_mrr")]
    for r in rows:
        if r in evals:
            continue
        if r.get("error"):
            lines.append(f"{r['mode']:<24} {r['device']:<6} {r['batch']:>6}  failed: {r['error'][:120]}")
            continue

        def num(key, fmt):
            return format(r[key], fmt) if r.get(key) is not None else "-"

        ratio = f"{r['items_per_s'] / base[r['batch']]:.2f}x" if r["batch"] in base else "-"
        lines.append(f"{r['mode']:<24} {r['device']:<6} {r['batch']:>6} {num('items_per_s', '10.1f'):>10} "
                     f"{num('tokens_per_s', '11.0f'):>11} {num('step_ms', '8.1f'):>8} {num('peak_mem_mb', '8.0f'):>8} "
                     f"{(format(r['mfu'], '.1%') if r.get('mfu') is not None else '-'):>6}  {ratio}")
    for r in evals:
        lines.append(f"\nentity-MRR evaluation ({r.get('precision', 'fp32')}) on {r['device']}, {r['n_entities']:,} "
                     f"entities, random model (nothing pruned): {r['batch']:,} queries"
                     + (f" in chunks of {r['chunk']:,}" if r.get("chunk", r["batch"]) < r["batch"] else "")
                     + f" in {r['seconds']:.1f} s = "
                     f"{r['items_per_s']:.3g} queries/s ({r['candidates_per_query']:.0f} candidate first names per "
                     f"query); 9,000 queries: {r['projected_s_9000_queries']:.0f} s"
                     + ("" if r["batch"] >= 9000 else " (projected)")
                     + (f"; peak {r['peak_mem_mb']:.0f} MB" if r.get("peak_mem_mb") else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="jepa-kit bench", description="Training-step and evaluation speed, as training runs them.")
    p.add_argument("--device", default="cpu", help="cpu | cuda (or cuda:N)")
    p.add_argument("--preset", default="paper", help="model preset (paper | tiny)")
    p.add_argument("--batch", type=int, nargs="+", default=None,
                   help="batch sizes (default: 1024 on CUDA; 256 on CPU, where 1024 takes ~8 minutes)")
    p.add_argument("--eval-queries", type=int, default=None,
                   help="entity-MRR evaluation speed over the paper's 80,000 entities on this many queries "
                        "(default: 9000 on CUDA, 2 on CPU, projected to 9,000; 0 = skip)")
    p.add_argument("--eval-precision", nargs="+", default=None,
                   help="precisions of the evaluation rows (default: bf16 on CUDA, fp32 on CPU); see jepa_kit.evaluate")
    p.add_argument("--steps", type=int, default=None, help="back-to-back steps per timed round (default 3 on CPU, 50 on CUDA)")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds per mode (default 3 on CPU, 2 on CUDA)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 1 on CPU, 10 on CUDA)")
    p.add_argument("--latency-steps", type=int, default=3, help="synchronised single steps timed for step_ms")
    p.add_argument("--modes", nargs="+", default=None, help="e.g. two_pass_fp32 packed_bf16 static_bf16_compile")
    p.add_argument("--no-memory", action="store_true", help="CPU: skip the per-mode peak-memory probe processes")
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
    steps = args.steps if args.steps is not None else (50 if cuda else 3)
    rounds = args.rounds if args.rounds is not None else (2 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    batches = args.batch or ([1024] if cuda else [256])
    rows = run(args.device, args.preset, batches, steps, warmup, args.modes, args.k_pred, args.lambda_jepa,
               rounds, args.latency_steps, memory=not args.no_memory)
    n_eval = args.eval_queries if args.eval_queries is not None else (9000 if cuda else 2)
    if n_eval:
        for precision in args.eval_precision or (["bf16"] if cuda else ["fp32"]):
            rows.append(eval_row(args.device, args.preset, n_eval, precision))
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


def eval_row(device: str, preset: str, n_queries: int, precision: str = "fp32", chunk: int | None = None) -> dict:
    """Entity-MRR evaluation speed (jepa_kit.evaluate.bench_eval) as a row of the same shape.

    ``items_per_s`` is queries per second; a random model prunes no candidate, so this is the
    worst case (a model at chance, as on the reversal split). ``chunk``: queries ranked at once
    (``evaluate``'s ``batch_size``; the trainer's evaluations use 256); default all of them."""
    from jepa_kit.evaluate import bench_eval

    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    r = bench_eval(n_queries=n_queries, device=device, preset=preset, precision=precision, batch_size=chunk)
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    return {"mode": "eval_entity_mrr", "device": device, "batch": n_queries, "items_per_s": r["queries_per_s"],
            "tokens_per_s": None, "step_ms": None, "peak_mem_mb": peak, "mfu": None, "n_entities": r["n_entities"],
            "precision": precision, "candidates_per_query": r["candidates_per_query"], "seconds": r["seconds"],
            "projected_s_9000_queries": r["projected_s_9000_queries"],
            "recheck_fraction": r.get("entity_recheck_fraction"), "chunk": chunk or n_queries}


if __name__ == "__main__":
    raise SystemExit(main())
