"""Training configuration: ``TrainConfig``, the one source of every training default.

CLI flags (``add_config_arguments``), YAML files, the papermill ``parameters`` cell of
notebooks/02_train.ipynb and the sweep files in papermill_runs/ all map onto its fields; the
objective's own defaults and checks live in ``jepa_kit.model.ObjectiveConfig`` and are not
written twice. Named starting points are ``TRAIN_PRESETS``.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

from jepa_kit.attention import ATTN_IMPLEMENTATIONS
from jepa_kit.data import SPLITS
from jepa_kit.files import read_yaml
from jepa_kit.model import MODEL_PRESETS, ObjectiveConfig
from jepa_kit.objectives import NAMES as OBJECTIVE_NAMES
from jepa_kit.objectives import get_objective
from jepa_kit.ranking import PRECISIONS as RANKING_PRECISIONS

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("constant", "cosine")
PROGRESS = ("auto", "bar", "log", "none")

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")
EVAL_PRECISIONS = RANKING_PRECISIONS  # jepa_kit.ranking: auto | fp32 | checked | bf16
# per-split numbers of jepa_kit.evaluate that can pick the best checkpoint (a typo must not pass silently)
BEST_METRICS = ("exact_match", "mrr_first", "mrr_last", "entity_mrr", "entity_hits1", "entity_rank_mean",
                "joint_mrr_approx", "ntp_loss", "concept_mrr", "concept_mrr_paper_ties", "concept_rank_mean")


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of a ``best_metric`` is better (losses and ranks)."""
    return "loss" in metric or "rank" in metric


# Fields that may differ when a run is resumed: how long, how often, where, on what hardware.
# ``mode`` is among them: every mode computes the same losses (tests/test_model.py).
RESUMABLE_FIELDS = ("data", "out", "steps", "epochs", "max_train_seconds", "log_every", "eval_every",
                    "eval_max_items", "eval_precision", "eval_budget", "logit_lens", "ckpt_every", "keep_last",
                    "progress", "device", "compile", "compile_mode", "step_graph", "mode")


class ConfigError(ValueError):
    """A TrainConfig that cannot be built, or that does not match the run it would resume."""


# -- configuration --------------------------------------------------------------------------

_OBJ = ObjectiveConfig()  # the objective's defaults live there and only there
OBJECTIVE_HELP = {name: get_objective(name).help for name in OBJECTIVE_NAMES}


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
    pos_emb: bool = _f(True, "learned position embeddings (GPT-2's); the binding paper's models have none")
    dropout: float = _f(0.0, "dropout of embeddings, attention and residuals (the binding paper uses 0.1)")
    embd_dropout: float | None = _f(None, "dropout of the embeddings alone; None: `dropout`. The binding paper's "
                                    "code has none there (0.0) and 0.1 on attention and residuals")
    # objective (defaults: ObjectiveConfig)
    objective: str = _f(_OBJ.objective, "; ".join(f"{n}: {h}" for n, h in OBJECTIVE_HELP.items()))
    k_pred: int = _f(_OBJ.k_pred, "number of <PRED> tokens appended to the forward view, 0..4")
    lambda_jepa: float = _f(_OBJ.lambda_jepa, "weight of the JEPA term")
    gamma_ntp: float = _f(_OBJ.gamma_ntp, "weight of the next-token term")
    jepa_metric: str = _f(_OBJ.jepa_metric, "JEPA distance: cosine | l2 | mse | infonce")
    infonce_temperature: float = _f(_OBJ.infonce_temperature, "temperature of the infonce distance")
    loss_dropout: float = _f(_OBJ.loss_dropout, "fraction of JEPA items whose JEPA term is skipped")
    stop_grad: bool = _f(_OBJ.stop_grad, "detach the target (reverse view) side")
    jepa_read: str = _f(_OBJ.jepa_read, "where the JEPA term reads pred and target: last (the last tokens of F and "
                                        "R) | mask (the <mask> of each: the two queries, neither holding the "
                                        "other's answer; needs k_pred 0)")
    jepa_predictor: str = _f(_OBJ.jepa_predictor, "what maps pred before the JEPA distance: none (the hidden state "
                                                  "itself, the LLM-JEPA default) | mlp (a separate head, so the "
                                                  "state the LM head reads need not lie next to the target)")
    n_recognition: int = _f(_OBJ.n_recognition, "concept objective: recognition blocks run on each entity/relation "
                                                "patch alone (W); the other n_layer - W blocks run over the concepts")
    concept_norm: str = _f(_OBJ.concept_norm, "concept objective: norm of the prediction: rms (the paper's: no mean, "
                                              "no gain) | layernorm")
    concept_negatives: str = _f(_OBJ.concept_negatives, "concept objective: all (every patch of the batch is a "
                                                        "candidate, as the paper) | distinct (other copies of the "
                                                        "true tail are masked)")
    concept_logit_scale: float = _f(_OBJ.concept_logit_scale, "concept objective: factor on the loss's logits (1: the "
                                                              "paper's raw dot products; not in the paper); ranks "
                                                              "are unchanged by it")
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
    max_train_seconds: float | None = _f(None, "also end at the first step after this many seconds of training "
                                               "(summed over resumes; compile included, evaluations and checkpoints "
                                               "not), then evaluate as usual; the lr schedule still spans steps; "
                                               "single process only; None: off")
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
    step_graph: bool = _f(False, "CUDA, one process, mode static: capture the whole step (forward, backward, "
                                 "clipping, AdamW) as one CUDA graph, replayed every step "
                                 "(timed once on an H100: README Performance)")
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

        choice("precision", PRECISIONS)
        choice("compile_mode", COMPILE_MODES)
        choice("eval_precision", EVAL_PRECISIONS)
        choice("schedule", SCHEDULES)
        choice("progress", PROGRESS)
        choice("attn_implementation", ATTN_IMPLEMENTATIONS)
        choice("best_split", SPLITS)
        choice("best_metric", BEST_METRICS)
        choice("model", tuple(MODEL_PRESETS))
        for name in ("weight_decay", "grad_clip", "min_lr", "warmup_steps", "eval_every", "seed"):
            at_least(name, 0)
        at_least("eval_budget", 0, optional=True)
        for name in ("n_layer", "n_embd", "n_head", "steps", "eval_max_items"):
            at_least(name, 1, optional=True)
        for name in ("batch_size", "log_every", "ckpt_every", "keep_last"):
            at_least(name, 1)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1); got {self.dropout}")
        if self.embd_dropout is not None and not 0.0 <= self.embd_dropout < 1.0:
            raise ConfigError(f"embd_dropout must be in [0, 1) or None (the same as dropout); got {self.embd_dropout}")
        if self.lr <= 0 or self.epochs <= 0:
            raise ConfigError(f"lr and epochs must be > 0; got {self.lr}, {self.epochs}")
        if self.max_train_seconds is not None and not self.max_train_seconds > 0:
            raise ConfigError(f"max_train_seconds must be > 0 or None; got {self.max_train_seconds}")
        try:  # the objective's fields are checked where their defaults live
            self.objective_config()
        except ValueError as e:
            raise ConfigError(str(e)) from None

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

    def out_of_time(self, train_s: float) -> bool:
        """Whether ``train_s`` seconds of training have used up ``max_train_seconds``."""
        return self.max_train_seconds is not None and train_s >= self.max_train_seconds

    def model_preset(self) -> dict:
        """The model preset with this config's size overrides applied."""
        sizes = {k: getattr(self, k) for k in ("n_layer", "n_embd", "n_head") if getattr(self, k) is not None}
        return {**MODEL_PRESETS[self.model], **sizes, "pos_emb": self.pos_emb, "dropout": self.dropout,
                "embd_dropout": self.embd_dropout}


# Named starting points. "seed" is the dataclass defaults: the seed's own setup (model preset
# "paper": 4 layers, 768 wide, 12 heads; batch 256, lr 1e-4, weight decay 0.01, 3 epochs;
# k = 1, cosine, λ = γ = 1, no loss dropout), pinned by tests/test_train.py.
TRAIN_PRESETS: dict[str, dict] = {
    "seed": {},
    # CPU-sized: the ntp baseline should memorise the tiny data in a few minutes on two cores.
    "tiny": dict(model="tiny", batch_size=128, lr=1e-3, warmup_steps=100, steps=2000,
                 log_every=50, eval_every=500, eval_max_items=200, ckpt_every=500),
    # One GPU, paper data: batch 1,024 with lr 1e-3 (4x the batch of the seed at 10x its lr: the
    # setting that memorised the forward facts on an H100 with the kit's version 0.1), fixed-shape
    # compiled steps.
    "gpu": dict(model="paper", batch_size=1024, lr=1e-3, warmup_steps=200, mode="static", compile=True,
                log_every=500, eval_every=2000, eval_max_items=500, ckpt_every=5000),
}


def scaled_lr(batch_size: int, base_batch: int = 1024, base_lr: float = 1e-3) -> float:
    """The kit's rule for larger batches: the learning rate grows with the square root of the batch
    ratio (and the warm-up keeps its number of items). On the tiny data (CPU, ntp, 2 seeds,
    ``benchmarks/lr_scaling.py``), 4x the batch at 2x the lr memorised the forward facts in the
    same epochs as the base (34.8 against 32.1-34.1), keeping the lr took 1.5x the epochs and the
    linear rule (4x the lr) 0.9-1.0x; at 8x the batch the square-root rule took 1.3x the epochs and the
    linear one never reached 0.5 exact match in one seed of two. For jepa, 4x the batch with the
    square-root rule took 1.2x the epochs (1.6x with the lr kept). Not yet checked at the paper's scale."""
    return base_lr * (batch_size / base_batch) ** 0.5


# One GPU, batch 4,096: the ``gpu`` preset with the lr scaled by ``scaled_lr`` (1e-3 -> 2e-3) and
# every step count divided by 4, so warm-up, logs, evaluations and checkpoints fall at the same items.
TRAIN_PRESETS["gpu_large"] = dict(TRAIN_PRESETS["gpu"], batch_size=4096, lr=scaled_lr(4096), warmup_steps=50,
                                  log_every=125, eval_every=500, ckpt_every=1250)


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




def as_config(config) -> TrainConfig:
    """A validated TrainConfig from a TrainConfig, a dict or a YAML path."""
    if isinstance(config, TrainConfig):
        return TrainConfig.from_dict(config.to_dict())  # re-validate fields mutated after construction
    if isinstance(config, dict):
        return TrainConfig.from_dict(config)
    if isinstance(config, (str, Path)):
        return TrainConfig.from_yaml(config)
    raise ConfigError(f"train() takes a TrainConfig, a dict or a YAML path; got {type(config).__name__}")


def eval_precision(cfg: TrainConfig, device, final: bool) -> str:
    """The entity-ranking precision of an evaluation on ``device`` (a torch.device): the final one
    is exact (``checked`` on CUDA, ``fp32`` on CPU); periodic ones follow ``eval_precision`` (auto:
    ``bf16`` on CUDA, where a sample's curve does not need exact ranks and an exact one would cost
    more than training)."""
    cuda = device.type == "cuda"
    if final:
        return "checked" if cuda else "fp32"
    if cfg.eval_precision == "auto":
        return "bf16" if cuda else "fp32"
    return cfg.eval_precision
