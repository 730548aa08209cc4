"""Training: the loop.

``train(config)`` trains (or resumes) the run directory ``config.out`` on ``config.data`` and
returns it. Read ``Trainer.loop`` first: get a batch, set the learning rate, one step
(``train_step``: forward, backward, clip, update), then log, evaluate and checkpoint when due.
The plumbing lives elsewhere:

* ``jepa_kit.config``     TrainConfig, presets, CLI flags;
* ``jepa_kit.objectives`` what is trained: the rows, the model and its loss, extra evaluation;
* ``jepa_kit.rundir``     the files of a run directory, resume checks, ``load_run``;
* ``jepa_kit.runtime``    device, precision, DDP, signals, progress.

Resume: calling ``train`` on an existing run directory resumes from its last checkpoint; an
interrupted and resumed run gives the same numbers as an uninterrupted one (CPU, fp32), because
the data order and the loss-dropout draws depend only on (seed, epoch) and (seed, step), and RNG
states are checkpointed. A time budget (``max_train_seconds``) ends a run early, at a step
boundary, with the usual final evaluation; the training seconds it counts are checkpointed too, so a
resumed run spends only what is left (results.json and status.json say which limit ended it).

Preemption: on SIGTERM or SIGUSR1 (SLURM preemption, or ``#SBATCH --signal=USR1@120`` before
the walltime) the current step finishes, a checkpoint is written, status.json says "preempted",
and ``train`` raises ``Preempted``. The CLI turns it into exit code ``PREEMPTED_EXIT_CODE`` (75,
EX_TEMPFAIL: "try again"); an sbatch script requeues on it (``scontrol requeue $SLURM_JOB_ID``)
and the requeued job resumes the same run directory.

Under ``torchrun`` (WORLD_SIZE > 1) the same function runs DistributedDataParallel: every rank
takes its slice of each global batch, the loss is weighted so the averaged gradient equals the
single-process mean over the global batch (``runtime.global_loss``), and only rank 0 writes
files. One exception: InfoNCE takes its negatives from the items on the same rank (no gather
across ranks), so with it the update equals the mean of per-rank InfoNCE terms, i.e. a single
process at the per-rank batch size (tests/test_ddp.py runs the other distances).
"""
from __future__ import annotations

import contextlib
import math
import os
import socket
import sys
import time
from pathlib import Path

import torch

from jepa_kit import __version__
from jepa_kit import checkpoint as ckpt
from jepa_kit.config import ConfigError, TrainConfig, as_config, eval_precision, lower_is_better
from jepa_kit.data import SPLITS, DataError, Dataset, leakage_problems, load_dataset
from jepa_kit.objectives import get_objective
from jepa_kit.rundir import RunFiles, check_resume, clean, now, resume_history
from jepa_kit.runlock import RunLocked, run_lock  # RunLocked: re-exported for the CLI
from jepa_kit.runtime import (PREEMPTED_EXIT_CODE, Dist, EvalClock, Preempted, Progress,
                              TrainingDiverged, compile_step, global_loss, init_distributed, numerics,
                              training_precision)
from jepa_kit.signals import StopSignal
from jepa_kit.step import TrainerStep, check_step_graph, train_step, weight_decay_groups  # noqa: F401 (re-exported)

_clock = time.perf_counter  # what max_train_seconds counts (a test may replace it)

__all__ = ["ConfigError", "LeakageError", "PREEMPTED_EXIT_CODE", "Preempted", "RunLocked", "TrainConfig",
           "TrainingDiverged", "Trainer", "check_leakage", "epoch_permutation", "lr_at", "train", "train_step",
           "training_rows"]


class LeakageError(DataError):
    """A test sequence (or the reverse of an atomic fact) would be trained on."""


# -- what is trained on ---------------------------------------------------------------------

def check_leakage(ids: torch.Tensor, types: torch.Tensor, dataset: Dataset, where: str = "train.json") -> None:
    """Raise LeakageError if the training rows would show the model a held-out fact, by the rule of
    ``jepa_kit.data.leakage_problems`` (the one `jepa-kit data check` applies)."""
    problems = leakage_problems(ids, types, dataset.valid["test"].ids, dataset.vocab, where, limit=1)
    if problems:
        raise LeakageError(f"{problems[0]}: training on this data would show the model a held-out reverse fact"
                           + (f" ({len(problems)} kinds of leak; `jepa-kit data check` lists them)" if len(problems) > 1 else ""))


def training_rows(dataset: Dataset, objective: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows the objective trains on: ids [N, L], types [N] (int8). train.json is checked for
    leakage first, whatever the objective, and so is every row an objective adds, unless the
    objective declares the exemption (``trains_on_test_facts``: reverse_aug, labelled as such)."""
    check_leakage(dataset.train.ids, dataset.train.types, dataset)
    obj = get_objective(objective)
    ids, types = obj.training_rows(dataset)
    if not obj.trains_on_test_facts and ids is not dataset.train.ids:
        check_leakage(ids, types, dataset, where=f"the rows of objective {objective}")
    return ids, types


def _derived_seed(*parts: int) -> int:
    """A seed that depends only on its arguments (so data order and dropout survive a resume)."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (int(p) + 0x9E3779B97F4A7C15 + (x << 6) + (x >> 2))) & 0xFFFFFFFFFFFFFFFF
    return x & 0x7FFFFFFFFFFFFFFF


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the training rows in one epoch (CPU, the same on every device and rank)."""
    g = torch.Generator().manual_seed(_derived_seed(seed, 1, epoch))
    return torch.randperm(n, generator=g)


def lr_at(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Learning rate of update ``step`` (0-based): linear warmup, then constant or cosine."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1, total_steps - cfg.warmup_steps - 1)
    frac = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * frac))


def _headline(metrics: dict) -> str:
    """The number a log line shows for a split: exact match, or the concept MRR of a concept model."""
    for key, label in (("exact_match", "exact"), ("concept_mrr", "concept MRR")):
        if metrics.get(key) is not None:
            return f"{label} {metrics[key]:.3f}"
    return "-"


# -- the run --------------------------------------------------------------------------------

def train(config: TrainConfig | dict | str | Path, callback=None, pending_signal=0) -> Path:
    """Train (or resume) the run ``config.out`` on ``config.data``; return the run directory.

    ``callback(row)``, if given, is called on rank 0 with every metrics row (train and eval).
    ``pending_signal``: a SIGTERM/SIGUSR1 the caller caught before calling (an int, or an object
    whose ``signum`` is read once training's own handlers are in place: the CLI catches signals
    while torch imports); the run then stops after its first step, like any preempted run.
    Raises ConfigError, DataError/LeakageError before anything is written; TrainingDiverged on
    a NaN/inf loss; Preempted after SIGTERM/SIGUSR1 (checkpoint written).
    """
    cfg = as_config(config)
    if not cfg.data:
        raise ConfigError("no data directory: set data (--data DIR)")
    if not cfg.out:
        raise ConfigError("no run directory: set out (--out RUN)")
    # SIGTERM/SIGUSR1 are caught from here on (and from before, with ``pending_signal``), so a stop
    # that arrives while the data loads still ends in a checkpoint after the first step (exit 75)
    with StopSignal(pending_signal) as stop:
        dist, device = init_distributed(cfg.device)
        try:
            trainer = Trainer(cfg, dist, device, callback)
            with contextlib.ExitStack() as held:  # the run-directory lock
                return trainer.run(held, stop)
        finally:
            if dist.created:
                torch.distributed.destroy_process_group()


class Trainer:
    """One training run: its inputs (checked before any file is written), its model and optimizer,
    and the state the loop carries (step, the metrics window, the best evaluation)."""

    def __init__(self, cfg: TrainConfig, dist: Dist, device: torch.device, callback=None):
        self.cfg, self.dist, self.device = cfg, dist, device
        self.run_dir = Path(cfg.out)
        self.dataset = load_dataset(cfg.data)
        self.objective = get_objective(cfg.objective)
        self.ids, self.types = training_rows(self.dataset, cfg.objective)
        self.stored = check_resume(self.run_dir, cfg, self.dataset)
        self.n_rows = len(self.ids)
        if cfg.batch_size % dist.world:
            raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the {dist.world} processes")
        if cfg.max_train_seconds is not None and dist.world > 1:  # each rank's clock would pick its own last step
            raise ConfigError("max_train_seconds needs a single process (under torchrun use steps)")
        if cfg.batch_size > self.n_rows:
            raise ConfigError(f"batch_size {cfg.batch_size} is larger than the {self.n_rows} training rows")
        self.steps_per_epoch = self.n_rows // cfg.batch_size  # the last partial batch of an epoch is dropped
        self.total_steps = cfg.steps or max(1, math.ceil(cfg.epochs * self.steps_per_epoch))
        self.precision = training_precision(cfg.precision, device)
        self.local_batch = cfg.batch_size // dist.world

        torch.manual_seed(cfg.seed)
        self.model = self.objective.build_model(self.dataset.vocab, cfg).to(device)
        self.model.train()
        if cfg.step_graph:  # refused before any file is written
            check_step_graph(self.model, device, dist.world, self.precision, cfg.loss_dropout)
        # fused: one kernel for the whole update, on CUDA and on CPU alike (~7x less time than foreach on CPU)
        self.opt = torch.optim.AdamW(weight_decay_groups(self.model, cfg.weight_decay), lr=cfg.lr, fused=True)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self.files = RunFiles(self.run_dir, enabled=dist.main, callback=callback)

        self.step, self.elapsed_before, self.train_s, self.best = 0, 0.0, 0.0, None  # train_s: max_train_seconds
        self.last_saved: Path | None = None  # the last good checkpoint (for the divergence message)
        # sums over the steps since the last metrics row: loss, ntp, jepa (device), JEPA rows, steps
        self.window = torch.zeros(3, dtype=torch.float64, device=device)
        self.window_nj, self.window_steps = 0.0, 0
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)  # first step with a NaN/inf loss
        self.last_eval_step: int | None = None  # the step of the last periodic evaluation (for the NaN message)
        self.progress: Progress | None = None
        self.t0 = time.time()

    # -- start --------------------------------------------------------------------------------
    def run(self, held: contextlib.ExitStack, stop: StopSignal) -> Path:
        if self.dist.main:  # one process per run directory: rank 0 holds <run>/.lock
            held.enter_context(run_lock(self.run_dir))
            self.stored = check_resume(self.run_dir, self.cfg, self.dataset)  # again: nobody else can write it now
        resumed = self.resume()
        if resumed and self.step > self.total_steps:
            raise ConfigError(f"{self.run_dir} is at step {self.step}, past the {self.total_steps} steps asked for: a run "
                              f"cannot be shortened (its checkpoints, metrics and results are from step {self.step}); "
                              f"ask for at least {self.step} steps, or use a new out")
        done = self.step >= self.total_steps or self.cfg.out_of_time(self.train_s)
        if resumed and done and (self.run_dir / "results.json").is_file():
            if self.dist.main:
                print(f"[jepa_kit.train] {self.run_dir} already finished at step {self.step}", file=sys.stderr)
            return self.run_dir
        self.start_files(resumed)
        self.progress = Progress(self.cfg.progress, self.total_steps, self.step, enabled=self.dist.main)
        try:
            self.loop(stop)
        except (Preempted, TrainingDiverged):
            raise
        except BaseException as e:
            self.files.write_status(state="failed", error=f"{type(e).__name__}: {e}")
            raise
        finally:
            self.progress.close()
        return self.run_dir

    def resume(self) -> bool:
        """Load the last checkpoint of an existing run (weights, optimizer, RNG, loop state)."""
        latest = ckpt.latest_checkpoint(self.run_dir) if self.stored else None
        if latest is None:
            return False
        meta = ckpt.read_checkpoint_meta(latest)
        ckpt.load_weights(self.model, latest)
        ckpt.load_optimizer(self.opt, latest)
        ckpt.restore_rng(latest)
        if meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])
        st = meta["trainer"]
        self.step, self.elapsed_before, self.best = meta["step"], st["elapsed_s"], st["best"]
        self.train_s = st.get("train_s", st["elapsed_s"])  # older checkpoints: wall time, evaluations included
        self.window = torch.tensor(st["window"][:3], dtype=torch.float64, device=self.device)
        self.window_nj, self.window_steps = st["window"][3], st["window_steps"]
        self.last_saved = latest
        return True

    def start_files(self, resumed: bool) -> None:
        """config.json, vocab.json and the first status.json (rank 0), then every rank lines up."""
        cfg, ds, dist = self.cfg, self.dataset, self.dist
        started = now()
        self.files.prepare(self.step if resumed else None)
        self.files.write_config({
            "config": cfg.to_dict(),
            "data_fingerprint": ds.fingerprint,
            "data_path": str(Path(ds.path).resolve()),  # `eval RUN` finds the data from any directory
            # for reading the run where its data directory is not (chance levels): jepa_kit.collect
            "data_facts": {"n_entities": len(ds.entities()), "entity_tokens": ds.entity_tokens},
            "model": self.model.config_dict(),
            "version": __version__,
            "torch": torch.__version__,
            "versions": {"python": sys.version.split()[0],  # beside constraints.txt: what this run really used
                         **{m: __import__(m).__version__ for m in ("torch", "transformers", "safetensors", "numpy")}},
            "numerics": numerics(self.device),  # thread count, instruction set, card: rounding
            "vocab_size": len(ds.vocab),
            "trains_on_test_facts": self.objective.trains_on_test_facts,
            "n_train_rows": self.n_rows,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "world_size": dist.world,
            "created": (self.stored or {}).get("created", started),
            "resumed_at_step": self.step if resumed else None,
            "resumes": resume_history(self.stored, self.step) if resumed else [],
        }, ds.vocab)
        dist.barrier()
        self.files.status = {
            "state": "running", "run_dir": str(self.run_dir), "objective": cfg.objective, "step": self.step,
            "total_steps": self.total_steps, "items_per_s": None, "metrics": None, "error": None,
            "started": started, "host": socket.gethostname(), "pid": os.getpid(), "world_size": dist.world,
            "trains_on_test_facts": self.objective.trains_on_test_facts}

    # -- the loop -------------------------------------------------------------------------------
    def loop(self, stop: StopSignal) -> None:
        cfg, dist, device = self.cfg, self.dist, self.device
        train_ids, train_types = self.ids.to(device), self.types.to(device)  # the data lives on the device
        fwd = self.model
        if dist.world > 1:
            fwd = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None)
        if cfg.compile:
            fwd = compile_step(fwd, cfg.compile_mode)
        autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        weights = (cfg.gamma_ntp, cfg.lambda_jepa)
        step_fn = TrainerStep(fwd, self.model, self.opt, self.scaler, autocast_dtype=autocast_dtype,
                              grad_clip=cfg.grad_clip, graph=cfg.step_graph,
                              loss_fn=lambda out: global_loss(out, *weights, dist, device, stop.signum != 0))

        self.progress.line(
            f"{self.run_dir}: {cfg.objective}, {self.n_rows} rows, batch {cfg.batch_size}, {self.total_steps} steps "
            f"({self.steps_per_epoch} per epoch), {device}, {self.precision}, world {dist.world}"
            + (f", resumed at step {self.step}" if self.last_saved is not None else ""))
        self.files.write_status()
        self.t0 = time.time()
        self.t_window, self.items_window = time.time(), 0
        budget = cfg.eval_budget if cfg.eval_budget is not None else (0.1 if device.type == "cuda" else 0.0)
        eval_clock = EvalClock(budget, device)
        perm_epoch, perm = -1, None
        self.lr, self.grad_norm = lr_at(cfg, self.step, self.total_steps), None

        while self.step < self.total_steps and not cfg.out_of_time(self.train_s):
            t_step = _clock()  # training time: the step and its metrics row, not evaluations or checkpoints
            # the batch: a slice of this epoch's permutation, indexed on the device
            epoch = self.step // self.steps_per_epoch
            if epoch != perm_epoch:
                perm, perm_epoch = epoch_permutation(self.n_rows, cfg.seed, epoch).to(device), epoch
            start = (self.step % self.steps_per_epoch) * cfg.batch_size + dist.rank * self.local_batch
            idx = perm[start:start + self.local_batch]
            self.lr = lr_at(cfg, self.step, self.total_steps)
            step_fn.set_lr(self.lr)
            gen = None
            if cfg.loss_dropout > 0:  # which JEPA items are dropped depends only on (seed, step, rank)
                gen = torch.Generator(device=device).manual_seed(_derived_seed(cfg.seed, 2, self.step, dist.rank))

            (loss, stats, n_jepa, stop_all), norm = step_fn(train_ids[idx], train_types[idx], gen)
            if dist.world == 1:  # a captured step froze the flag it read (torchrun: the ranks' agreed flag)
                stop_all = stop.signum != 0
            self.grad_norm = norm if norm is not None else self.grad_norm
            self.step += 1
            self.progress.step()
            self.account(stats, n_jepa)

            last = self.step == self.total_steps or cfg.out_of_time(self.train_s + _clock() - t_step)
            if self.step % cfg.log_every == 0 or last:  # a stop logs nothing: the window is checkpointed
                self.log()
            self.train_s += _clock() - t_step
            if last:
                break
            saved = False
            if cfg.eval_every and self.step % cfg.eval_every == 0 and eval_clock.due():
                with eval_clock:
                    new_best = self.evaluate(cfg.eval_max_items)
                if new_best:  # keep a checkpoint of it
                    self.save()
                    saved = True
                self.t_window = time.time()
            if not saved and (self.step % cfg.ckpt_every == 0 or stop_all):
                self.save()
                self.t_window = time.time()
            if stop_all:
                self.files.write_status(state="preempted", step=self.step)
                raise Preempted(self.run_dir, self.step, stop.signum)
        self.finish()

    def account(self, stats: torch.Tensor, n_jepa) -> None:
        """Add a step to the metrics window. Everything stays on the device: the host syncs only at
        log, evaluation and checkpoint steps."""
        self.window += stats
        self.window_nj = self.window_nj + n_jepa  # a device tensor in mode static: read at log steps only
        self.window_steps += 1
        self.items_window += self.cfg.batch_size
        newly_bad = (self.first_bad < 0) & ~torch.isfinite(stats[0])
        self.first_bad = torch.where(newly_bad, torch.full_like(self.first_bad, self.step), self.first_bad)

    def log(self) -> None:
        self.check_finite()
        means = (self.window / self.window_steps).tolist()
        t = time.time()
        row = {"kind": "train", "step": self.step, "epoch": self.step / self.steps_per_epoch, "loss": means[0],
               "ntp_loss": means[1], "jepa_loss": means[2], "n_jepa": float(self.window_nj) / self.window_steps,
               "lr": self.lr, "grad_norm": float(self.grad_norm) if self.grad_norm is not None else None,
               "items_per_s": self.items_window / max(t - self.t_window, 1e-9),
               "elapsed_s": self.elapsed_before + t - self.t0}
        if self.device.type == "cuda":
            row["peak_mem_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        self.window.zero_()
        self.window_nj, self.window_steps = 0.0, 0
        self.files.append_row(row)
        self.progress.row(row, self.total_steps)
        self.files.write_status(step=self.step, items_per_s=row["items_per_s"], metrics=row)
        self.t_window, self.items_window = time.time(), 0

    def check_finite(self) -> None:
        bad = int(self.first_bad)
        if bad >= 0:
            where = (f"the last good checkpoint is {self.last_saved} "
                     f"(step {ckpt.read_checkpoint_meta(self.last_saved)['step']})"
                     if self.last_saved else "there is no checkpoint yet")
            msg = (f"loss became NaN or infinite at step {bad} of {self.run_dir}; training stopped and nothing after "
                   f"the last checkpoint was written: {where}. Try a lower lr, warmup or grad_clip.")
            if self.last_eval_step is not None and bad == self.last_eval_step + 1:
                msg += (f" This is the first step after a periodic evaluation (step {self.last_eval_step}): on CUDA that was "
                        "issue 12's known problem (README), a compiled step reading memory it never wrote, not a "
                        "learning-rate problem; in a compiled run, --compile false is the way around it.")
            self.files.write_status(state="failed", error=msg)
            raise TrainingDiverged(msg, bad, self.last_saved)

    def save(self) -> Path | None:
        """Checkpoint (rank 0), then point best.json at the best one, then prune old ones."""
        self.check_finite()
        if not self.dist.main:
            return None  # other ranks do not wait here: the next step's collectives line them up
        meta = {"config": self.cfg.to_dict(), "model": self.model.config_dict(),
                "data_fingerprint": self.dataset.fingerprint, "vocab_size": len(self.dataset.vocab),
                "trainer": {"elapsed_s": self.elapsed_before + (time.time() - self.t0), "train_s": self.train_s,
                            "best": self.best, "window": [*self.window.tolist(), float(self.window_nj)],
                            "window_steps": self.window_steps, "epoch": self.step / self.steps_per_epoch}}
        self.last_saved = ckpt.save_checkpoint(self.run_dir, self.step, self.model, self.opt, clean(meta),
                                               scaler_state=self.scaler.state_dict() if self.scaler.is_enabled() else None)
        self.files.write_best(self.best)
        ckpt.prune_checkpoints(self.run_dir, self.cfg.keep_last, keep={self.best["step"]} if self.best else set())
        return self.last_saved

    def evaluate(self, max_items: int | None, final: bool = False) -> bool:
        """Rank 0 evaluates (a metrics row) without touching the training RNG. Returns whether the
        evaluation is the best so far by (best_split, best_metric)."""
        self.check_finite()
        if not self.dist.main:
            return False
        from jepa_kit.evaluate import evaluate

        cfg = self.cfg
        rng = torch.get_rng_state()
        try:
            # periodic evaluations skip the logit lens (per-layer metrics); the final one has it on request
            lens = cfg.logit_lens if cfg.logit_lens is not None else self.device.type != "cuda"
            precision = eval_precision(cfg, self.device, final)
            res = evaluate(self.model, self.dataset, splits=SPLITS, max_items=max_items,
                           logit_lens=final and lens, precision=precision, jepa_batch_size=self.local_batch)
        finally:
            self.model.train()
            torch.set_rng_state(rng)
        self.results = res
        if not final:
            self.last_eval_step = self.step
        self.files.append_row({"kind": "eval", "step": self.step, "max_items": max_items, "final": final,
                               "precision": precision, "splits": {s: res[s] for s in SPLITS if s in res},
                               "jepa": res.get("jepa")})
        self.progress.line(f"eval step {self.step}: " + "  ".join(
            f"{s} {_headline(res[s])}" for s in SPLITS if s in res))
        value = (res.get(cfg.best_split) or {}).get(cfg.best_metric)
        if value is None or not math.isfinite(value):
            return False
        best = self.best
        if best is not None and (value >= best["value"] if lower_is_better(cfg.best_metric) else value <= best["value"]):
            return False
        self.best = {"split": cfg.best_split, "metric": cfg.best_metric, "value": value, "step": self.step,
                     "selected_on_test": cfg.best_split == "test"}
        return True

    def finish(self) -> None:
        """The end: final checkpoint, full evaluation (exact), results.json, status finished."""
        final_dir = self.save()
        stopped_by = "steps" if self.step >= self.total_steps else "max_train_seconds"
        wall = self.elapsed_before + time.time() - self.t0
        t_eval = time.time()
        new_best = self.evaluate(None, final=True)
        final_eval_s = time.time() - t_eval
        if self.dist.main:
            best, ds = self.best, self.dataset
            if new_best:
                ckpt.update_meta(final_dir, lambda m: m["trainer"].update(best=best))
                self.files.write_best(best)
                ckpt.prune_checkpoints(self.run_dir, self.cfg.keep_last, keep={best["step"]})
            trains_on_test = self.objective.trains_on_test_facts
            run = {"run_dir": str(self.run_dir), "objective": self.cfg.objective, "steps": self.step,
                   "epochs": self.step / self.steps_per_epoch, "wall_time_s": wall, "final_eval_s": final_eval_s,
                   "train_s": self.train_s, "stopped_by": stopped_by,
                   "trains_on_test_facts": trains_on_test, "data": str(ds.path), "data_fingerprint": ds.fingerprint,
                   "checkpoint": str(final_dir.relative_to(self.run_dir)), "best": best,
                   "finished": now(), "version": __version__}
            if best and best["selected_on_test"]:
                run["best_note"] = "best checkpoint selected on the test split: its numbers are optimistic"
            self.files.write_results({**self.results, "trains_on_test_facts": trains_on_test, "run": run})
        self.files.write_status(state="finished", step=self.step, elapsed_s=wall, train_s=self.train_s,
                                stopped_by=stopped_by)
        self.progress.line(f"finished: {self.run_dir} at step {self.step} ({stopped_by})")
