"""Training: one config dataclass, one loop.

``TrainConfig`` is the single source of every training default (the objective's defaults come
from ``jepa_kit.model.ObjectiveConfig``). ``train(config)`` writes a run directory::

    config.json      the full TrainConfig, data fingerprint, model config, package version
    vocab.json       the vocabulary the model was built for (load_run needs no data directory)
    metrics.jsonl    {"kind": "train", step, loss, ntp_loss, jepa_loss, lr, ...} every log_every steps,
                     {"kind": "eval", step, splits, jepa} every eval_every steps and at the end
    status.json      state (running | finished | failed | preempted), step, total_steps, items_per_s, ...
    results.json     full evaluation of every valid split + {"run": metadata}, at the end
    best.json        which checkpoint is best by (best_split, best_metric), when evaluation ran
    checkpoints/step_XXXXXXXX/   see jepa_kit.checkpoint (safetensors + JSON, no pickle)
    .lock            while a process trains into it (jepa_kit.runlock): a second one is refused

Calling ``train`` on an existing run directory resumes from its last checkpoint; an interrupted
and resumed run gives the same numbers as an uninterrupted one (CPU, fp32), because the data
order and the loss-dropout draws depend only on (seed, epoch) and (seed, step), and RNG states
are checkpointed.

Preemption: on SIGTERM or SIGUSR1 (SLURM preemption, or ``#SBATCH --signal=USR1@120`` before
the walltime) the current step finishes, a checkpoint is written, status.json says
"preempted", and ``train`` raises ``Preempted``. The CLI turns it into exit code
``PREEMPTED_EXIT_CODE`` (75, EX_TEMPFAIL: "try again"); an sbatch script requeues on it
(``scontrol requeue $SLURM_JOB_ID``) and the requeued job resumes the same run directory.

Under ``torchrun`` (WORLD_SIZE > 1) the same function runs DistributedDataParallel: every rank
takes its slice of each global batch, the loss is weighted so the averaged gradient equals the
single-process mean over the global batch, and only rank 0 writes files. One exception: InfoNCE
takes its negatives from the items on the same rank (no gather across ranks), so with it the
update equals the mean of per-rank InfoNCE terms, i.e. a single process at the per-rank batch size
(tests/test_ddp.py runs the other distances).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import signal
import socket
import sys
import time
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from jepa_kit import __version__
from jepa_kit import checkpoint as ckpt
from jepa_kit.data import TYPE_CODES, VALID_SPLITS, DataError, Dataset, leakage_problems, load_dataset
from jepa_kit.files import atomic_write_json, atomic_write_text, read_json, read_yaml
from jepa_kit.losses import METRICS as JEPA_METRICS
from jepa_kit.model import ATTN_IMPLEMENTATIONS, MAX_K_PRED, MODEL_PRESETS, MODES, OBJECTIVES, GPT2WithJEPA, ObjectiveConfig
from jepa_kit.reversal import reverse_view
from jepa_kit.runlock import RunLocked, run_lock  # RunLocked: re-exported for the CLI
from jepa_kit.vocab import Vocab

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: the run is resumable, requeue it

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("constant", "cosine")
PROGRESS = ("auto", "bar", "log", "none")

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")
EVAL_PRECISIONS = ("auto", "fp32", "checked", "bf16")
# per-split numbers of jepa_kit.evaluate that can pick the best checkpoint (a typo must not pass silently)
BEST_METRICS = ("exact_match", "mrr_first", "mrr_last", "entity_mrr", "entity_hits1", "entity_rank_mean",
                "joint_mrr_approx", "ntp_loss")

# Fields that may differ when a run is resumed: how long, how often, where, on what hardware.
# ``mode`` is among them: every mode computes the same losses (tests/test_model.py).
RESUMABLE_FIELDS = ("data", "out", "steps", "epochs", "log_every", "eval_every", "eval_max_items",
                    "eval_precision", "eval_budget", "logit_lens", "ckpt_every", "keep_last", "progress", "device",
                    "compile", "compile_mode", "mode")


class ConfigError(ValueError):
    """A TrainConfig that cannot be built, or that does not match the run it would resume."""


class LeakageError(DataError):
    """A test sequence (or the reverse of an atomic fact) would be trained on."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; nothing after the last good checkpoint was written."""

    def __init__(self, message: str, step: int, last_checkpoint: Path | None):
        super().__init__(message)
        self.step, self.last_checkpoint = step, last_checkpoint


class Preempted(Exception):
    """SIGTERM/SIGUSR1 arrived: a checkpoint was written, the run can be resumed."""

    exit_code = PREEMPTED_EXIT_CODE

    def __init__(self, run_dir: Path, step: int, signum: int):
        name = signal.Signals(signum).name if signum else "stop request"
        super().__init__(f"{name} received: checkpoint written at step {step} in {run_dir}; "
                         f"run `train` on the same run directory to resume")
        self.run_dir, self.step, self.signum = run_dir, step, signum


# -- configuration --------------------------------------------------------------------------

_OBJ = ObjectiveConfig()  # the objective's defaults live there and only there


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    # data and run directory
    data: str | None = _f(None, "data directory (vocab.json, train.json, valid.json)")
    out: str | None = _f(None, "run directory; an existing one is resumed")
    # model
    model: str = _f("paper", "model preset (jepa_kit.model.MODEL_PRESETS)")
    n_layer: int | None = _f(None, "override the preset's number of layers")
    n_embd: int | None = _f(None, "override the preset's width")
    n_head: int | None = _f(None, "override the preset's number of heads")
    attn_implementation: str = _f("sdpa", "attention implementation: sdpa | eager")
    # objective (defaults: ObjectiveConfig)
    objective: str = _f(_OBJ.objective, "jepa | ntp (plain model) | reverse_aug (also trains on the test facts)")
    k_pred: int = _f(_OBJ.k_pred, "number of <PRED> tokens appended to the forward view, 0..4")
    lambda_jepa: float = _f(_OBJ.lambda_jepa, "weight of the JEPA term")
    gamma_ntp: float = _f(_OBJ.gamma_ntp, "weight of the next-token term")
    jepa_metric: str = _f(_OBJ.jepa_metric, "JEPA distance: cosine | l2 | mse | infonce")
    infonce_temperature: float = _f(_OBJ.infonce_temperature, "temperature of the infonce distance")
    loss_dropout: float = _f(_OBJ.loss_dropout, "fraction of JEPA items whose JEPA term is skipped")
    stop_grad: bool = _f(_OBJ.stop_grad, "detach the target (reverse view) side")
    mode: str = _f(_OBJ.mode, "auto (static on CUDA, packed on CPU) | packed (one pass) | static (one pass, "
                              "fixed shapes: no host sync) | two_pass (the seed's structure, reference)")
    # optimisation (defaults: the seed's setup)
    lr: float = _f(1e-4, "peak learning rate (AdamW)")
    schedule: str = _f("constant", "after warmup: constant | cosine (decays to min_lr at the last step)")
    warmup_steps: int = _f(0, "linear warmup steps")
    min_lr: float = _f(0.0, "final learning rate of the cosine schedule")
    weight_decay: float = _f(0.01, "AdamW weight decay (matrices and embeddings; not biases or layer norms)")
    grad_clip: float = _f(1.0, "clip the gradient norm to this; 0 = no clipping")
    batch_size: int = _f(256, "global batch size (split over ranks under torchrun)")
    epochs: float = _f(3.0, "training length in epochs, used when steps is not set")
    steps: int | None = _f(None, "training length in optimizer steps (overrides epochs)")
    # logging, evaluation, checkpoints
    log_every: int = _f(50, "write a metrics row (and status.json) every this many steps")
    eval_every: int = _f(500, "evaluate every this many steps; 0 = only at the end")
    eval_max_items: int | None = _f(1000, "items per split in periodic evaluations, a fixed random sample "
                                          "(the final one uses all)")
    eval_precision: str = _f("auto", "entity ranking in periodic evaluations: auto (bf16 on CUDA, fp32 on CPU) | "
                                     "fp32 (exact) | checked (bf16, near-ties recomputed in fp32: exact) | bf16 "
                                     "(approximate); the final evaluation is always exact")
    eval_budget: float | None = _f(None, "skip a periodic evaluation while the last one took more than this "
                                         "fraction of the training time since it; None = 0.1 on CUDA, off on CPU "
                                         "(CPU runs stay reproducible eval row by eval row); 0 = off")
    logit_lens: bool | None = _f(None, "per-layer metrics (logit lens) in the final evaluation; None = on on CPU, "
                                       "off on CUDA (there it multiplies the cost of the entity ranking)")
    ckpt_every: int = _f(1000, "checkpoint every this many steps (and always at the end)")
    keep_last: int = _f(2, "checkpoints kept besides the best one")
    best_split: str = _f("atomic", "split that picks the best checkpoint (test = optimistic selection)")
    best_metric: str = _f("exact_match", "metric that picks the best checkpoint (losses: lower is better)")
    # runtime
    seed: int = _f(0, "seed of the initialisation, data order and loss dropout")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N")
    precision: str = _f("auto", "auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16 | fp16 (with a grad scaler)")
    compile: bool = _f(False, "torch.compile the model (fixed shapes: mode static, or auto on CUDA)")
    compile_mode: str = _f("default", "torch.compile mode: default | reduce-overhead (CUDA graphs) | "
                                      "max-autotune-no-cudagraphs")
    progress: str = _f("auto", "auto | bar | log | none (auto: log lines under SLURM, papermill or without a terminal)")

    def __post_init__(self):
        hints = _field_types()
        for f in fields(self):
            setattr(self, f.name, _coerce(f.name, hints[f.name], getattr(self, f.name)))
        self._validate()

    def _validate(self) -> None:
        def choice(name, allowed):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")

        def at_least(name, low, optional=False):
            value = getattr(self, name)
            if optional and value is None:
                return
            if value < low:
                raise ConfigError(f"{name} must be >= {low}; got {value!r}")

        choice("objective", OBJECTIVES)
        choice("jepa_metric", JEPA_METRICS)
        choice("mode", MODES)
        choice("precision", PRECISIONS)
        choice("compile_mode", COMPILE_MODES)
        choice("eval_precision", EVAL_PRECISIONS)
        choice("schedule", SCHEDULES)
        choice("progress", PROGRESS)
        choice("attn_implementation", ATTN_IMPLEMENTATIONS)
        choice("best_split", VALID_SPLITS)
        choice("best_metric", BEST_METRICS)
        choice("model", tuple(MODEL_PRESETS))
        if not 0 <= self.k_pred <= MAX_K_PRED:
            raise ConfigError(f"k_pred must be in 0..{MAX_K_PRED}; got {self.k_pred}")
        if not 0.0 <= self.loss_dropout < 1.0:
            raise ConfigError(f"loss_dropout must be in [0, 1); got {self.loss_dropout}")
        for name in ("lambda_jepa", "gamma_ntp", "weight_decay", "grad_clip", "min_lr", "warmup_steps",
                     "eval_every", "seed"):
            at_least(name, 0)
        at_least("eval_budget", 0, optional=True)
        for name in ("n_layer", "n_embd", "n_head", "steps", "eval_max_items"):
            at_least(name, 1, optional=True)
        for name in ("batch_size", "log_every", "ckpt_every", "keep_last"):
            at_least(name, 1)
        if self.lr <= 0 or self.infonce_temperature <= 0 or self.epochs <= 0:
            raise ConfigError(f"lr, infonce_temperature and epochs must be > 0; got {self.lr}, "
                              f"{self.infonce_temperature}, {self.epochs}")

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def _check_keys(cls, keys, where: str = "TrainConfig") -> None:
        names = cls.field_names()
        unknown = [k for k in keys if k not in names]
        if unknown:
            raise ConfigError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                              f"valid keys are: {', '.join(names)}")

    @classmethod
    def from_dict(cls, d: dict | None = None, where: str = "TrainConfig", **overrides) -> "TrainConfig":
        """Build from a mapping (and keyword overrides). A ``preset`` key applies that preset first."""
        d = {**(d or {}), **overrides}
        preset = d.pop("preset", None)
        cls._check_keys(d, where)
        base = dict(TRAIN_PRESETS[_preset_name(preset)]) if preset else {}
        return cls(**{**base, **d})

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> "TrainConfig":
        """Read a YAML mapping of field: value (``yaml.safe_load``); a ``preset:`` key is allowed."""
        path = Path(path)
        raw = read_yaml(path, ConfigError)
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of TrainConfig fields, got {type(raw).__name__}")
        return cls.from_dict(raw, where=str(path), **overrides)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "TrainConfig":
        return cls.from_dict(overrides, preset=name)

    def replace(self, **overrides) -> "TrainConfig":
        self._check_keys(overrides)
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def objective_config(self) -> ObjectiveConfig:
        return ObjectiveConfig(**{f.name: getattr(self, f.name) for f in fields(ObjectiveConfig)})

    def model_preset(self) -> dict:
        """The model preset with this config's size overrides applied."""
        sizes = {k: getattr(self, k) for k in ("n_layer", "n_embd", "n_head") if getattr(self, k) is not None}
        return {**MODEL_PRESETS[self.model], **sizes}


# Named starting points. "seed" is the dataclass defaults: the seed's own setup (model preset
# "paper": 4 layers, 768 wide, 12 heads; batch 256, lr 1e-4, weight decay 0.01, 3 epochs;
# k = 1, cosine, λ = γ = 1, no loss dropout), pinned by tests/test_train.py.
TRAIN_PRESETS: dict[str, dict] = {
    "seed": {},
    # CPU-sized: the ntp baseline should memorise the tiny data in a few minutes on two cores.
    "tiny": dict(model="tiny", batch_size=128, lr=1e-3, warmup_steps=100, steps=2000,
                 log_every=50, eval_every=500, eval_max_items=200, ckpt_every=500),
    # One GPU, paper data: batch 1,024 with lr 1e-3 (4x the batch of the seed at 10x its lr: the
    # setting measured to memorise the forward facts, shared/DESIGN.md), fixed-shape compiled steps.
    "gpu": dict(model="paper", batch_size=1024, lr=1e-3, warmup_steps=200, mode="static", compile=True,
                log_every=500, eval_every=2000, eval_max_items=500, ckpt_every=5000),
}


def _preset_name(name: str) -> str:
    if name not in TRAIN_PRESETS:
        raise ConfigError(f"unknown training preset {name!r}; choose one of {', '.join(TRAIN_PRESETS)}")
    return name


_TYPES: dict | None = None


def _field_types() -> dict:
    global _TYPES
    if _TYPES is None:
        _TYPES = typing.get_type_hints(TrainConfig)
    return _TYPES


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _coerce(name: str, tp, value):
    """Coerce a value from YAML, a CLI string or Python to the field's type, or raise ConfigError."""
    args = typing.get_args(tp)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), tp) if args else tp
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(f"{name} may not be None")
    bad = ConfigError(f"{name} must be {'a' if base is not int else 'an'} {base.__name__}"
                      f"{' or None' if optional else ''}; got {value!r}")
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise bad
    if base is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                try:
                    value = float(value)  # "1e3"
                except ValueError:
                    raise bad from None
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if base is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML reads 1e-4 (no dot) as a string
            except ValueError:
                raise bad from None
        raise bad
    if base is str:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, str):
            return value
        raise bad
    return value


# -- command line ---------------------------------------------------------------------------

def add_config_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--preset``, ``--config FILE.yaml`` and ``--FIELD VALUE`` for every TrainConfig field.

    Values are parsed by TrainConfig itself (bools: ``--stop_grad true|false``); flags that are
    not given do not appear in the namespace, so precedence is preset < YAML < flags.
    """
    parser.add_argument("--preset", default=None, help=f"training preset: {' | '.join(TRAIN_PRESETS)}")
    parser.add_argument("--config", default=None, metavar="FILE.yaml", help="YAML file of TrainConfig fields")
    hints = _field_types()
    for f in fields(TrainConfig):
        flags = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        tp = hints[f.name]
        metavar = "true|false" if bool in (tp, *typing.get_args(tp)) else f.name.upper()
        default_text = "" if f.default is None else f" (default {f.default})"
        parser.add_argument(*flags, dest=f.name, default=argparse.SUPPRESS, metavar=metavar,
                            help=f.metadata.get("help", "") + default_text)
    return parser


def config_from_args(ns: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of a parsed command line: preset, then the YAML file, then each --field."""
    flags = {f.name: getattr(ns, f.name) for f in fields(TrainConfig) if hasattr(ns, f.name)}
    preset = getattr(ns, "preset", None)
    config_file = getattr(ns, "config", None)
    if config_file:
        cfg = TrainConfig.from_yaml(config_file, **({"preset": preset} if preset else {}), **flags)
    else:
        cfg = TrainConfig.from_dict(flags, **({"preset": preset} if preset else {}))
    return cfg


# -- training data and the leakage guard ----------------------------------------------------

def check_leakage(ids: torch.Tensor, types: torch.Tensor, dataset: Dataset, where: str = "train.json") -> None:
    """Raise LeakageError if the training rows would show the model a held-out fact, by the rule of
    ``jepa_kit.data.leakage_problems`` (the one `jepa-kit data check` applies)."""
    problems = leakage_problems(ids, types, dataset.valid["test"].ids, dataset.vocab, where, limit=1)
    if problems:
        raise LeakageError(f"{problems[0]}: training on this data would show the model a held-out reverse fact"
                           + (f" ({len(problems)} kinds of leak; `jepa-kit data check` lists them)" if len(problems) > 1 else ""))


def training_rows(dataset: Dataset, objective: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows the model trains on: ids [N, L], types [N] (int8). Checks for leakage first."""
    ids, types = dataset.train.ids, dataset.train.types
    check_leakage(ids, types, dataset)  # train.json itself must be clean, whatever the objective
    if objective == "reverse_aug":
        # THE EXEMPTION from the leakage guard, by design: reverse augmentation appends the reverse
        # of every atomic fact, i.e. the test facts. It is a sanity ceiling (can the model hold both
        # directions?), not a method; its results are labelled "trains_on_test_facts": true.
        # The rows get type "atomic" so the model builds no JEPA view for them.
        atomic = ids[types == TYPE_CODES["atomic"]]
        ids = torch.cat([ids, reverse_view(atomic, dataset.vocab)])
        types = torch.cat([types, torch.full((len(atomic),), TYPE_CODES["atomic"], dtype=types.dtype)])
    return ids, types


# -- small helpers --------------------------------------------------------------------------

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


def _eval_precision(cfg: TrainConfig, device: torch.device, final: bool) -> str:
    """The entity-ranking precision of an evaluation: the final one is exact (``checked`` on CUDA,
    ``fp32`` on CPU); periodic ones follow ``eval_precision`` (auto: ``bf16`` on CUDA, where a
    sample's curve does not need exact ranks and an exact one would cost more than training)."""
    cuda = device.type == "cuda"
    if final:
        return "checked" if cuda else "fp32"
    if cfg.eval_precision == "auto":
        return "bf16" if cuda else "fp32"
    return cfg.eval_precision


def _lower_is_better(metric: str) -> bool:
    return "loss" in metric or "rank" in metric


def _clean(obj):
    """JSON-safe: non-finite floats become None, tensors numbers, tuples lists."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _clean(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _notebook_kernel() -> str | None:
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


def _progress_mode(setting: str) -> str:
    """auto: a bar in a terminal or a live notebook; log lines under SLURM, papermill or a pipe.
    The environment variable JEPA_KIT_PROGRESS (bar | log | none) overrides auto."""
    if setting != "auto":
        return setting
    forced = os.environ.get("JEPA_KIT_PROGRESS", "").strip().lower()
    if forced in ("bar", "log", "none"):
        return forced
    if os.environ.get("SLURM_JOB_ID"):
        return "log"  # batch logs: no bar redraws
    kernel = _notebook_kernel()
    if kernel is not None:
        return "bar" if kernel == "live" else "log"
    return "bar" if sys.stderr.isatty() else "log"


class _Progress:
    """A tqdm bar (terminal or notebook) or plain log lines on stderr."""

    def __init__(self, mode: str, total: int, initial: int, enabled: bool):
        self.mode = _progress_mode(mode) if enabled else "none"
        self.bar = None
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
            self.bar.write(text, file=sys.stderr)
        elif self.mode == "log":
            print(f"[jepa_kit.train] {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _EvalClock:
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


class _StopSignal:
    """SIGTERM/SIGUSR1 set a flag; the loop checkpoints at the end of the current step."""

    SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s)

    def __init__(self):
        self.signum = 0
        self._old = {}

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self.handler)
        return self

    def handler(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)


# -- distributed ----------------------------------------------------------------------------

@dataclass
class _Dist:
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


def _resolve_device(name: str, local_rank: int) -> torch.device:
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


def _init_distributed(device_name: str) -> tuple[_Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(), _resolve_device(device_name, 0)
    dist = _Dist(rank=int(os.environ["RANK"]), world=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    device = _resolve_device(device_name, dist.local_rank)
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # long timeout: rank 0 evaluates and checkpoints while the others wait in the next collective
        torch.distributed.init_process_group(backend, timeout=_dt.timedelta(hours=2),
                                             **({"device_id": device} if device.type == "cuda" else {}))
        dist.created = True
    return dist, device


# -- the run directory ----------------------------------------------------------------------

def _check_resume(run_dir: Path, cfg: TrainConfig, dataset: Dataset) -> dict | None:
    """The stored config.json of an existing run (checked against cfg), or None for a new run."""
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        if run_dir.exists() and any(p for p in run_dir.iterdir() if not p.name.startswith(".")):
            raise ConfigError(f"{run_dir} exists and is not a jepa_kit run directory (no config.json); "
                              "choose another out")
        return None
    stored = read_json(cfg_path)
    try:
        old = TrainConfig.from_dict(stored["config"])
    except (KeyError, ConfigError) as e:
        raise ConfigError(f"{cfg_path}: cannot read the run's config ({e})") from None
    diffs = [f"{f.name}: run has {getattr(old, f.name)!r}, config has {getattr(cfg, f.name)!r}"
             for f in fields(TrainConfig)
             if f.name not in RESUMABLE_FIELDS and getattr(old, f.name) != getattr(cfg, f.name)]
    if diffs:
        raise ConfigError(f"{run_dir} was started with a different config, so it cannot be resumed with this one "
                          f"(only {', '.join(RESUMABLE_FIELDS)} may change):\n  " + "\n  ".join(diffs)
                          + "\nUse a new out directory, or the run's own settings.")
    if stored.get("data_fingerprint") != dataset.fingerprint:
        raise ConfigError(f"{run_dir} was trained on other data (fingerprint {stored.get('data_fingerprint')}) "
                          f"than {dataset.path} (fingerprint {dataset.fingerprint}); cannot resume")
    vocab_file = run_dir / "vocab.json"
    if vocab_file.is_file() and not Vocab.load(vocab_file).same_as(dataset.vocab):
        raise ConfigError(f"{run_dir} was trained with another vocabulary than {dataset.path}/vocab.json")
    return stored


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Drop metrics rows written after the checkpoint we resume from (they will be redone)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        if row.get("step", 0) <= last_step:
            keep.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in keep))


# -- the loop -------------------------------------------------------------------------------

def _as_config(config) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return TrainConfig.from_dict(config.to_dict())  # re-validate fields mutated after construction
    if isinstance(config, dict):
        return TrainConfig.from_dict(config)
    if isinstance(config, (str, Path)):
        return TrainConfig.from_yaml(config)
    raise ConfigError(f"train() takes a TrainConfig, a dict or a YAML path; got {type(config).__name__}")


def _weight_decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(config: TrainConfig | dict | str | Path, callback=None) -> Path:
    """Train (or resume) the run ``config.out`` on ``config.data``; return the run directory.

    ``callback(row)``, if given, is called on rank 0 with every metrics row (train and eval).
    Raises ConfigError, DataError/LeakageError before anything is written; TrainingDiverged on
    a NaN/inf loss; Preempted after SIGTERM/SIGUSR1 (checkpoint written).
    """
    cfg = _as_config(config)
    if not cfg.data:
        raise ConfigError("no data directory: set data (--data DIR)")
    if not cfg.out:
        raise ConfigError("no run directory: set out (--out RUN)")
    run_dir = Path(cfg.out)

    dist, device = _init_distributed(cfg.device)
    try:
        with contextlib.ExitStack() as held:  # the run-directory lock, once _train takes it
            return _train(cfg, run_dir, dist, device, callback, held)
    finally:
        if dist.created:
            torch.distributed.destroy_process_group()


def _train(cfg: TrainConfig, run_dir: Path, dist: _Dist, device: torch.device, callback,
           held: contextlib.ExitStack) -> Path:
    # Everything that can be wrong with the inputs is checked before a file is written.
    dataset = load_dataset(cfg.data)
    ids, types = training_rows(dataset, cfg.objective)
    stored = _check_resume(run_dir, cfg, dataset)
    n_rows = len(ids)
    if cfg.batch_size % dist.world:
        raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the {dist.world} processes")
    if cfg.batch_size > n_rows:
        raise ConfigError(f"batch_size {cfg.batch_size} is larger than the {n_rows} training rows")
    steps_per_epoch = n_rows // cfg.batch_size  # the last partial batch of an epoch is dropped
    total_steps = cfg.steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    precision = cfg.precision
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision fp16 needs a CUDA device (use fp32 or bf16 on CPU)")
    trains_on_test = cfg.objective == "reverse_aug"

    torch.manual_seed(cfg.seed)
    model = GPT2WithJEPA(dataset.vocab, preset=cfg.model_preset(), objective=cfg.objective_config(),
                         attn_implementation=cfg.attn_implementation).to(device)
    model.train()
    # fused: one kernel for the whole update, on CUDA and on CPU alike (~7x less time than foreach on CPU)
    opt = torch.optim.AdamW(_weight_decay_groups(model, cfg.weight_decay), lr=cfg.lr, fused=True)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    # -- one process per run directory: rank 0 holds <run>/.lock (jepa_kit.runlock) -------------
    if dist.main:
        held.enter_context(run_lock(run_dir))
        stored = _check_resume(run_dir, cfg, dataset)  # again: nobody else can write it now

    # -- resume -----------------------------------------------------------------------------
    latest = ckpt.latest_checkpoint(run_dir) if stored else None
    step, elapsed_before, best = 0, 0.0, None
    # sums over the steps since the last metrics row: loss, ntp, jepa (device), JEPA rows (host)
    window, window_nj, window_steps = torch.zeros(3, dtype=torch.float64, device=device), 0.0, 0
    if latest is not None:
        meta = ckpt.read_checkpoint_meta(latest)
        ckpt.load_weights(model, latest)
        ckpt.load_optimizer(opt, latest)
        ckpt.restore_rng(latest)
        if meta.get("scaler"):
            scaler.load_state_dict(meta["scaler"])
        st = meta["trainer"]
        step, elapsed_before, best = meta["step"], st["elapsed_s"], st["best"]
        window = torch.tensor(st["window"][:3], dtype=torch.float64, device=device)
        window_nj, window_steps = st["window"][3], st["window_steps"]
    results_path = run_dir / "results.json"
    if latest is not None and step >= total_steps and results_path.is_file():
        if dist.main:
            print(f"[jepa_kit.train] {run_dir} already finished at step {step}", file=sys.stderr)
        return run_dir

    # -- the run directory (rank 0 writes) ----------------------------------------------------
    metrics_path = run_dir / "metrics.jsonl"
    status_path = run_dir / "status.json"
    started = _now()
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.clean_partial(run_dir)
        if latest is None:  # a fresh start (or a start that crashed before its first checkpoint)
            for name in ("metrics.jsonl", "results.json", "best.json"):
                (run_dir / name).unlink(missing_ok=True)
        else:
            _truncate_metrics(metrics_path, step)
        atomic_write_json(run_dir / "config.json", _clean({
            "config": cfg.to_dict(),
            "data_fingerprint": dataset.fingerprint,
            "data_path": str(Path(dataset.path).resolve()),  # `eval RUN` finds the data from any directory
            "model": model.config_dict(),
            "version": __version__,
            "torch": torch.__version__,
            "vocab_size": len(dataset.vocab),
            "trains_on_test_facts": trains_on_test,
            "n_train_rows": n_rows,
            "steps_per_epoch": steps_per_epoch,
            "total_steps": total_steps,
            "world_size": dist.world,
            "created": (stored or {}).get("created", started),
            "resumed_at_step": step if latest is not None else None,
        }))
        atomic_write_text(run_dir / "vocab.json", dataset.vocab.to_json())
    dist.barrier()

    # -- device-resident data, the forward function --------------------------------------------
    train_ids, train_types = ids.to(device), types.to(device)
    fwd = model
    if dist.world > 1:
        fwd = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        fwd = torch.compile(fwd, mode=None if cfg.compile_mode == "default" else cfg.compile_mode)
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    local_batch = cfg.batch_size // dist.world

    status = {"state": "running", "run_dir": str(run_dir), "objective": cfg.objective, "step": step,
              "total_steps": total_steps, "items_per_s": None, "metrics": None, "error": None,
              "started": started, "host": socket.gethostname(), "pid": os.getpid(), "world_size": dist.world,
              "trains_on_test_facts": trains_on_test}

    def write_status(**kw) -> None:
        if dist.main:
            status.update(kw, updated=_now())
            atomic_write_json(status_path, _clean(status))

    def append_row(row: dict) -> None:
        if dist.main:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(_clean(row), allow_nan=False) + "\n")
                f.flush()
            if callback is not None:
                callback(row)

    last_saved = latest  # the last good checkpoint (for the divergence message)
    first_bad = torch.full((), -1, dtype=torch.long, device=device)  # first step with a non-finite loss

    def check_finite() -> None:
        bad = int(first_bad)
        if bad >= 0:
            where = (f"the last good checkpoint is {last_saved} (step {ckpt.read_checkpoint_meta(last_saved)['step']})"
                     if last_saved else "there is no checkpoint yet")
            msg = (f"loss became NaN or infinite at step {bad} of {run_dir}; training stopped and nothing after the "
                   f"last checkpoint was written: {where}. Try a lower lr, warmup or grad_clip.")
            write_status(state="failed", error=msg)
            raise TrainingDiverged(msg, bad, last_saved)

    def write_best() -> None:
        if best is not None:
            atomic_write_json(run_dir / "best.json", {
                **best, "checkpoint": str(ckpt.step_dir(run_dir, best["step"]).relative_to(run_dir)),
                "note": "selected on the test split: optimistic" if best["selected_on_test"] else None})

    def save(at_step: int) -> Path | None:
        """Checkpoint (rank 0), then point best.json at the best one, then prune old ones."""
        nonlocal last_saved
        check_finite()
        if not dist.main:
            return None  # other ranks do not wait here: the next step's collectives line them up
        meta = {"config": cfg.to_dict(), "model": model.config_dict(), "data_fingerprint": dataset.fingerprint,
                "vocab_size": len(dataset.vocab),
                "trainer": {"elapsed_s": elapsed_before + (time.time() - t0), "best": best,
                            "window": [*window.tolist(), float(window_nj)], "window_steps": window_steps,
                            "epoch": at_step / steps_per_epoch}}
        last_saved = ckpt.save_checkpoint(run_dir, at_step, model, opt, _clean(meta),
                                          scaler_state=scaler.state_dict() if scaler.is_enabled() else None)
        write_best()
        ckpt.prune_checkpoints(run_dir, cfg.keep_last, keep={best["step"]} if best else set())
        return last_saved

    def evaluate_now(at_step: int, max_items: int | None, final: bool = False) -> tuple[dict | None, bool]:
        """Rank 0 evaluates without touching the training RNG. Returns (results, new best?)."""
        nonlocal best
        check_finite()
        if not dist.main:
            return None, False
        from jepa_kit.evaluate import evaluate

        rng = torch.get_rng_state()
        try:
            # periodic evaluations skip the logit lens (per-layer metrics); the final one has it on request
            lens = cfg.logit_lens if cfg.logit_lens is not None else device.type != "cuda"
            eval_prec = _eval_precision(cfg, device, final)
            res = evaluate(model, dataset, splits=VALID_SPLITS, max_items=max_items, logit_lens=final and lens,
                           precision=eval_prec, jepa_batch_size=local_batch)
        finally:
            model.train()
            torch.set_rng_state(rng)
        append_row({"kind": "eval", "step": at_step, "max_items": max_items, "final": final, "precision": eval_prec,
                    "splits": {s: res[s] for s in VALID_SPLITS if s in res}, "jepa": res.get("jepa")})
        progress.line(f"eval step {at_step}: " + "  ".join(
            f"{s} exact {res[s]['exact_match']:.3f}" for s in VALID_SPLITS if s in res))
        value = (res.get(cfg.best_split) or {}).get(cfg.best_metric)
        if value is None or not math.isfinite(value):
            return res, False
        if best is not None and (value >= best["value"] if _lower_is_better(cfg.best_metric)
                                 else value <= best["value"]):
            return res, False
        best = {"split": cfg.best_split, "metric": cfg.best_metric, "value": value, "step": at_step,
                "selected_on_test": cfg.best_split == "test"}
        return res, True

    progress = _Progress(cfg.progress, total_steps, step, enabled=dist.main)
    progress.line(f"{run_dir}: {cfg.objective}, {n_rows} rows, batch {cfg.batch_size}, {total_steps} steps "
                  f"({steps_per_epoch} per epoch), {device}, {precision}, world {dist.world}"
                  + (f", resumed at step {step}" if latest is not None else ""))
    write_status()
    t0 = time.time()
    t_window, items_window = time.time(), 0
    eval_clock = _EvalClock(cfg.eval_budget if cfg.eval_budget is not None else (0.1 if device.type == "cuda" else 0.0),
                            device)
    perm_epoch, perm = -1, None
    lr, grad_norm = lr_at(cfg, step, total_steps), None
    stop = _StopSignal()

    def global_loss(out):
        return _global_loss(out, cfg, dist, device, stop.signum != 0)

    try:
        with stop:
            while step < total_steps:
                # the batch: a slice of this epoch's permutation, indexed on the device
                epoch = step // steps_per_epoch
                if epoch != perm_epoch:
                    perm, perm_epoch = epoch_permutation(n_rows, cfg.seed, epoch).to(device), epoch
                start = (step % steps_per_epoch) * cfg.batch_size + dist.rank * local_batch
                idx = perm[start:start + local_batch]
                lr = lr_at(cfg, step, total_steps)
                for group in opt.param_groups:
                    group["lr"] = lr
                gen = None
                if cfg.loss_dropout > 0:  # which JEPA items are dropped depends only on (seed, step, rank)
                    gen = torch.Generator(device=device).manual_seed(_derived_seed(cfg.seed, 2, step, dist.rank))

                (loss, stats, n_jepa, stop_all), norm = train_step(
                    fwd, model, opt, scaler, train_ids[idx], train_types[idx], autocast_dtype=autocast_dtype,
                    grad_clip=cfg.grad_clip, generator=gen, global_loss=global_loss)
                grad_norm = norm if norm is not None else grad_norm
                step += 1
                progress.step()

                # bookkeeping stays on the device: the host syncs only at log/eval/checkpoint steps
                window += stats
                window_nj = window_nj + n_jepa  # a device tensor in mode static: read at log steps only
                window_steps += 1
                items_window += cfg.batch_size
                newly_bad = (first_bad < 0) & ~torch.isfinite(stats[0])
                first_bad = torch.where(newly_bad, torch.full_like(first_bad, step), first_bad)

                if step % cfg.log_every == 0 or step == total_steps:  # a stop logs nothing: the window is checkpointed
                    check_finite()
                    means = (window / window_steps).tolist()
                    now = time.time()
                    row = {"kind": "train", "step": step, "epoch": step / steps_per_epoch, "loss": means[0],
                           "ntp_loss": means[1], "jepa_loss": means[2], "n_jepa": float(window_nj) / window_steps,
                           "lr": lr, "grad_norm": float(grad_norm) if grad_norm is not None else None,
                           "items_per_s": items_window / max(now - t_window, 1e-9),
                           "elapsed_s": elapsed_before + now - t0}
                    if device.type == "cuda":
                        row["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
                    window.zero_()
                    window_nj, window_steps = 0.0, 0
                    append_row(row)
                    progress.row(row, total_steps)
                    write_status(step=step, items_per_s=row["items_per_s"], metrics=row)
                    t_window, items_window = time.time(), 0

                if step == total_steps:
                    break
                stopping = bool(stop_all)
                saved = False
                if cfg.eval_every and step % cfg.eval_every == 0 and eval_clock.due():
                    with eval_clock:
                        _, new_best = evaluate_now(step, cfg.eval_max_items)
                    if new_best:  # keep a checkpoint of it
                        save(step)
                        saved = True
                    t_window = time.time()
                if not saved and (step % cfg.ckpt_every == 0 or stopping):
                    save(step)
                    t_window = time.time()
                if stopping:
                    write_status(state="preempted", step=step)
                    raise Preempted(run_dir, step, stop.signum)

            # -- the end: final checkpoint, full evaluation, results ------------------------------
            final_dir = save(step)
            wall = elapsed_before + time.time() - t0
            t_eval = time.time()
            res, new_best = evaluate_now(step, None, final=True)
            final_eval_s = time.time() - t_eval
            if dist.main:
                if new_best:
                    ckpt.update_meta(final_dir, lambda m: m["trainer"].update(best=best))
                    write_best()
                    ckpt.prune_checkpoints(run_dir, cfg.keep_last, keep={best["step"]})
                run = {"run_dir": str(run_dir), "objective": cfg.objective, "steps": step,
                       "epochs": step / steps_per_epoch, "wall_time_s": wall, "final_eval_s": final_eval_s,
                       "trains_on_test_facts": trains_on_test,
                       "data": str(dataset.path), "data_fingerprint": dataset.fingerprint,
                       "checkpoint": str(final_dir.relative_to(run_dir)), "best": best,
                       "finished": _now(), "version": __version__}
                if best and best["selected_on_test"]:
                    run["best_note"] = "best checkpoint selected on the test split: its numbers are optimistic"
                results = {**res, "trains_on_test_facts": trains_on_test, "run": run}
                atomic_write_json(results_path, _clean(results))
            write_status(state="finished", step=step, elapsed_s=wall)
            progress.line(f"finished: {run_dir}")
    except (Preempted, TrainingDiverged):
        raise
    except BaseException as e:
        write_status(state="failed", error=f"{type(e).__name__}: {e}")
        raise
    finally:
        progress.close()
    return run_dir


def train_step(fwd, model, opt, scaler, ids, types, *, autocast_dtype=None, grad_clip: float = 0.0,
               generator=None, global_loss=None):
    """One optimizer step: forward (under autocast when ``autocast_dtype`` is set), backward,
    gradient clipping, update. What ``train`` runs every step and ``jepa-kit bench`` times.

    ``fwd`` is the model or its compiled/DDP wrapper; ``global_loss(out)`` returns a tuple whose
    first element is the loss to backpropagate (default: ``(out["loss"],)``). Nothing here reads
    a value back to the host: with fixed shapes (mode static) and bf16 a step never waits.
    Returns (``global_loss(out)``, the gradient norm tensor or None)."""
    with torch.autocast(ids.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        out = fwd(ids, types, generator=generator)
    res = global_loss(out) if global_loss is not None else (out["loss"],)
    scaler.scale(res[0]).backward()
    norm = None
    if grad_clip > 0:
        scaler.unscale_(opt)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(opt)  # with fp16: skipped when the gradients hold inf/NaN (the scaler then shrinks)
    scaler.update()
    opt.zero_grad(set_to_none=True)
    return res, norm


def _global_loss(out: dict, cfg: TrainConfig, dist: _Dist, device: torch.device, stop: bool):
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
    loss = (cfg.gamma_ntp * ntp * (w * n / n_all).to(ntp.dtype)
            + cfg.lambda_jepa * jepa * (w * nj / nj_all).to(jepa.dtype))
    ntp_g, jepa_g = sums[0] / n_all, sums[1] / nj_all
    stats = torch.stack([cfg.gamma_ntp * ntp_g + cfg.lambda_jepa * jepa_g, ntp_g, jepa_g])
    stops = float(sums[4])  # one host sync per step: every rank must agree to stop at the same step
    return loss, stats, sums[3], stops > 0


# -- loading a run --------------------------------------------------------------------------

def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint directory of a run, or None."""
    return ckpt.latest_checkpoint(run_dir)


def _checkpoint_dir(run_dir: Path, checkpoint) -> Path:
    if isinstance(checkpoint, int):
        d = ckpt.step_dir(run_dir, checkpoint)
    elif checkpoint == "last":
        d = ckpt.latest_checkpoint(run_dir)
        if d is None:
            raise ckpt.CheckpointError(f"{run_dir}: no checkpoint yet")
    elif checkpoint == "best":
        best_file = run_dir / "best.json"
        if not best_file.is_file():
            raise ckpt.CheckpointError(f"{run_dir}: no best checkpoint (no evaluation has run yet)")
        d = ckpt.step_dir(run_dir, read_json(best_file)["step"])
    else:
        d = Path(checkpoint)
        if not d.is_absolute() and not d.exists():
            d = run_dir / d
    if not (d / "checkpoint.json").is_file():
        raise ckpt.CheckpointError(f"{d}: not a complete checkpoint")
    return d


def load_run(run_dir: str | Path, checkpoint: str | int | Path = "last", device: str | torch.device = "cpu",
             vocab: Vocab | None = None) -> tuple[GPT2WithJEPA, TrainConfig]:
    """The model of a run at a checkpoint ("last", "best", a step or a path), in eval mode, and its config.

    Reads only JSON and safetensors (no pickle). With ``vocab``, checks the run was trained on it.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ckpt.CheckpointError(f"{run_dir}: not a run directory (no config.json)")
    d = _checkpoint_dir(run_dir, checkpoint)
    meta = ckpt.read_checkpoint_meta(d)
    run_vocab = Vocab.load(run_dir / "vocab.json")
    if vocab is not None and not vocab.same_as(run_vocab):
        raise ckpt.CheckpointError(f"{run_dir} was trained on a vocabulary of {len(run_vocab)} tokens that differs "
                                   f"from the one given ({len(vocab)} tokens): the checkpoint was made for other data")
    config = TrainConfig.from_dict(meta["config"])
    model = GPT2WithJEPA.from_config_dict(run_vocab, meta["model"])
    model.to(device)
    ckpt.load_weights(model, d)
    model.eval()
    return model, config
