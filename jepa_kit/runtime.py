"""What a training process needs around its loop: device, precision, DDP, signals, progress.

* ``init_distributed``: one process, or one rank of ``torchrun`` (WORLD_SIZE > 1), and its device.
* ``training_precision``: auto = bf16 autocast on CUDA (fp16 with a scaler where bf16 is
  missing), fp32 on CPU.
* ``global_loss``: under DDP the loss each rank backpropagates so that the averaged gradient
  equals the single-process mean over the global batch.
* ``Preempted``: raised after the checkpoint that a SIGTERM/SIGUSR1 (``jepa_kit.signals``) asked
  for. ``TrainingDiverged``: a NaN/inf loss.
* ``Progress``: a tqdm bar in a terminal or live notebook, log lines under SLURM or papermill.
* ``EvalClock``: keeps periodic evaluations under a fraction of the training time.
* ``compile_step``: torch.compile as training steps use it (Inductor's in-place buffers off).
* ``GraphedStep``: a whole fixed-shape training step captured as one CUDA graph (the bench's
  ``_stepgraph`` modes).
"""
from __future__ import annotations

import datetime as _dt
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from jepa_kit.config import ConfigError

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: the run is resumable, requeue it


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; nothing after the last good checkpoint was written."""

    def __init__(self, message: str, step: int, last_checkpoint: Path | None):
        super().__init__(message)
        self.step, self.last_checkpoint = step, last_checkpoint

    def __reduce__(self):  # picklable: an unpicklable exception hangs a multiprocessing pool for good
        return type(self), (self.args[0], self.step, self.last_checkpoint)


class Preempted(Exception):
    """SIGTERM/SIGUSR1 arrived: a checkpoint was written, the run can be resumed."""

    exit_code = PREEMPTED_EXIT_CODE

    def __init__(self, run_dir: Path, step: int, signum: int):
        name = signal.Signals(signum).name if signum else "stop request"
        super().__init__(f"{name} received: checkpoint written at step {step} in {run_dir}; "
                         f"run `train` on the same run directory to resume")
        self.run_dir, self.step, self.signum = run_dir, step, signum

    def __reduce__(self):  # picklable: an unpicklable exception hangs a multiprocessing pool for good
        return type(self), (self.run_dir, self.step, self.signum)


def notebook_kernel() -> str | None:
    """"live" in an interactive notebook, "headless" in one executed by papermill or nbconvert
    (nbclient starts those kernels with an in-memory history), None outside a notebook."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        return None
    hist = str(getattr(getattr(shell, "history_manager", None), "hist_file", ""))
    return "headless" if hist == ":memory:" else "live"


def progress_mode(setting: str) -> str:
    """auto: a bar in a terminal or a live notebook; log lines under SLURM, papermill or a pipe.
    The environment variable JEPA_KIT_PROGRESS (bar | log | none) overrides auto."""
    if setting != "auto":
        return setting
    forced = os.environ.get("JEPA_KIT_PROGRESS", "").strip().lower()
    if forced in ("bar", "log", "none"):
        return forced
    if os.environ.get("SLURM_JOB_ID"):
        return "log"  # batch logs: no bar redraws
    kernel = notebook_kernel()
    if kernel is not None:
        return "bar" if kernel == "live" else "log"
    return "bar" if sys.stderr.isatty() else "log"


class Progress:
    """A tqdm bar (terminal or notebook) or plain log lines on stderr."""

    def __init__(self, mode: str, total: int, initial: int, enabled: bool):
        self.mode = progress_mode(mode) if enabled else "none"
        self.bar = None
        # in a notebook, log lines are output, not errors (stderr shows on a red background there);
        # elsewhere they stay on stderr so a command's stdout holds only its result
        self.out = sys.stdout if notebook_kernel() is not None else sys.stderr
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def row(self, row: dict, total: int) -> None:
        if self.mode == "bar":
            self.bar.set_postfix(loss=f"{row['loss']:.4f}", ntp=f"{row['ntp_loss']:.4f}",
                                 jepa=f"{row['jepa_loss']:.4f}", refresh=False)
        elif self.mode == "log":
            self.line(f"step {row['step']}/{total}  loss {row['loss']:.4f}  ntp {row['ntp_loss']:.4f}  "
                      f"jepa {row['jepa_loss']:.4f}  lr {row['lr']:.2e}  {row['items_per_s']:,.0f} items/s  "
                      f"{row['elapsed_s']:.0f}s")

    def line(self, text: str) -> None:
        if self.mode == "bar":
            self.bar.write(text, file=self.out)
        elif self.mode == "log":
            print(f"[jepa_kit.train] {text}", file=self.out, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class EvalClock:
    """Keeps periodic evaluations under ``budget`` x the training time between them: a scheduled
    evaluation is skipped while the last one took longer than ``budget`` times the training time
    since it ended. ``budget`` 0: every scheduled evaluation runs. Use ``due()``, then ``with clock:``
    around the evaluation."""

    def __init__(self, budget: float, device: torch.device):
        self.budget, self.device = budget, device
        self.last_s: float | None = None
        self.since = time.time()

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # count queued training work as training time
        return time.time()

    def due(self) -> bool:
        if self.budget <= 0 or self.last_s is None:
            return True
        return self.last_s <= self.budget * (self._now() - self.since)

    def __enter__(self):
        self.start = self._now()
        return self

    def __exit__(self, *exc):
        self.since = self._now()
        self.last_s = self.since - self.start


# -- distributed ----------------------------------------------------------------------------

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    created: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def init_distributed(device_name: str) -> tuple[Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), resolve_device(device_name, 0)
    dist = Dist(rank=int(os.environ["RANK"]), world=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_name, dist.local_rank)
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # long timeout: rank 0 evaluates and checkpoints while the others wait in the next collective
        torch.distributed.init_process_group(backend, timeout=_dt.timedelta(hours=2),
                                             **({"device_id": device} if device.type == "cuda" else {}))
        dist.created = True
    return dist, device


def numerics(device: torch.device) -> dict:
    """What decides a run's float rounding beyond the versions: on CPU the number of threads (a
    matmul's reduction order follows it) and the vector instruction set torch dispatches to; on CUDA
    the card. Measured on the tiny data (README, "What the demo prints"): the same code, data and seed
    at 1 and at 2 threads agree to 7 digits over the first 500 steps, then drift apart."""
    out = {"device": device.type, "torch_threads": torch.get_num_threads(),
           "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if device.type == "cuda":
        out["cuda_device"] = torch.cuda.get_device_name(device)
    return out


def training_precision(setting: str, device: torch.device) -> str:
    """The precision a run trains in: ``auto`` is bf16 autocast on CUDA (fp16 with a grad scaler on
    cards without bf16), fp32 on CPU."""
    precision = setting
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision fp16 needs a CUDA device (use fp32 or bf16 on CPU)")
    return precision


def global_loss(out: dict, gamma_ntp: float, lambda_jepa: float, dist: Dist, device: torch.device, stop: bool):
    """(loss to backpropagate, detached [loss, ntp, jepa] of the global batch on the device,
    JEPA rows in the global batch, whether any rank was asked to stop).

    Single process: the model's own loss. Under DDP (which averages gradients over ranks) each
    rank's terms are weighted by its share of the global items / JEPA rows, so the averaged
    gradient is that of the single-process mean over the whole global batch. One all_reduce per
    step carries the counts, the stats and the stop flag (so every rank stops at the same step).
    """
    ntp, jepa = out["ntp_loss"], out["jepa_loss"]
    n, nj = out["n_items"], out["n_jepa"]
    if dist.world == 1:
        loss = out["loss"]
        return loss, torch.stack([loss.detach(), ntp.detach(), jepa.detach()]).double(), nj, stop
    counts = torch.stack([torch.as_tensor(x, dtype=torch.float64, device=device) for x in (n, nj, float(stop))])
    sums = torch.cat([torch.stack([ntp.detach().double() * n, jepa.detach().double() * nj]), counts])
    torch.distributed.all_reduce(sums)  # [sum ntp*n, sum jepa*nj, N, NJ, stops]
    n_all, nj_all = sums[2], sums[3].clamp(min=1)
    w = dist.world
    loss = (gamma_ntp * ntp * (w * n / n_all).to(ntp.dtype)
            + lambda_jepa * jepa * (w * nj / nj_all).to(jepa.dtype))
    ntp_g, jepa_g = sums[0] / n_all, sums[1] / nj_all
    stats = torch.stack([gamma_ntp * ntp_g + lambda_jepa * jepa_g, ntp_g, jepa_g])
    stops = float(sums[4])  # one host sync per step: every rank must agree to stop at the same step
    return loss, stats, sums[3], stops > 0


# Inductor settings of every compiled training step (``compile_step``): in-place buffers off. On one
# H100 (torch 2.11) the compiled ntp step of ``--preset gpu`` reads memory it never wrote: two steps
# of a fresh model on allocator memory filled with 0xFF bytes go NaN compiled with Inductor's
# defaults, and stay finite uncompiled (every SDPA backend, bf16 and fp32, static and packed) and
# under aot_eager (no Inductor code). That is the NaN at the first step after a periodic evaluation
# (the evaluation leaves such bytes in the cache). Of the Inductor settings tried, only
# ``inplace_buffers`` off stayed finite every time (2 of 2 processes, 2026-11-27, third device
# session); ``allow_buffer_reuse`` off, the kit's setting before it, was finite once (the second
# session) and then NaN in 3 of 3, and a real run with it turned NaN at step 1,001 again. A real run
# with in-place buffers off has not been checked yet (README "Performance", nan_after_eval.py).
INDUCTOR_OPTIONS: dict = {"inplace_buffers": False}


def compile_step(module, mode: str = "default", **overrides):
    """``torch.compile(module)`` as training uses it: ``mode``'s Inductor settings (default |
    reduce-overhead | max-autotune-no-cudagraphs) plus ``INDUCTOR_OPTIONS``; ``overrides`` (Inductor
    options) come last and win (the bench's ``_reuse`` modes compile with Inductor's defaults). The
    trainer and ``jepa-kit bench`` compile through here, so the bench times the step the trainer runs."""
    from torch._inductor import list_mode_options

    return torch.compile(module, options={**list_mode_options(mode), **INDUCTOR_OPTIONS, **overrides})


class GraphedStep:
    """A whole training step (forward, backward, clipping, optimizer update) as one CUDA graph:
    one replay per step instead of hundreds of kernel launches from Python, for fixed-shape steps.

    ``fn(*inputs)`` is the step; its tensor inputs keep one shape. Every call is one step on its
    inputs: the first ``warmup`` calls run ``fn`` itself on a side stream (compilation, optimizer
    state, allocator pools), the next one captures ``fn`` on copies of its inputs and replays the
    graph, and later calls copy their inputs into those and replay. Returns ``fn``'s outputs; from
    the capture on, the same tensors every call, overwritten by each replay (read them before the
    next call). Conditions (``jepa_kit.step.check_step_graph`` checks them for the trainer): the
    optimizer is capturable (``capturable=True``: its step count lives on the device) and its
    learning rate is a tensor updated in place, nothing in ``fn`` reads a value back to the host
    or changes shape with the data, and no parameter, gradient or optimizer state is replaced by a
    new tensor outside ``fn``. ``graph_factory`` and ``capture`` replace ``torch.cuda.CUDAGraph``
    and ``torch.cuda.graph`` in the CPU tests."""

    def __init__(self, fn, warmup: int = 3, graph_factory=None, capture=None):
        self.fn, self.warmup = fn, warmup
        self.graph_factory = graph_factory or torch.cuda.CUDAGraph
        self.capture = capture or torch.cuda.graph
        self.graph = self.inputs = self.outputs = None
        self.calls = 0

    def __call__(self, *inputs):
        self.calls += 1
        if self.graph is None:
            if self.calls <= self.warmup:
                return self._warm(inputs)
            self.inputs = tuple(x.clone() for x in inputs)
            self.graph = self.graph_factory()
            with self.capture(self.graph):  # records the kernels, runs nothing
                self.outputs = self.fn(*self.inputs)
        for static, x in zip(self.inputs, inputs):
            if static.shape != x.shape or static.dtype != x.dtype:
                raise ValueError(f"GraphedStep: input of shape {tuple(x.shape)} {x.dtype}, captured with "
                                 f"{tuple(static.shape)} {static.dtype}; a captured step takes one shape")
            static.copy_(x)
        self.graph.replay()
        return self.outputs

    def _warm(self, inputs):
        """One plain step on a side stream (as PyTorch's whole-network capture recipe warms up)."""
        if not all(x.is_cuda for x in inputs):
            return self.fn(*inputs)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            out = self.fn(*inputs)
        torch.cuda.current_stream().wait_stream(side)
        return out
