"""The run directory: what a training run writes, how a resume is checked, how a run is loaded.

A run directory holds::

    config.json      the full TrainConfig, data fingerprint and absolute path, model config, versions
    vocab.json       the vocabulary the model was built for (load_run needs no data directory)
    metrics.jsonl    {"kind": "train", step, loss, ntp_loss, jepa_loss, lr, ...} every log_every steps,
                     {"kind": "eval", step, splits, jepa} every eval_every steps and at the end
    status.json      state (running | finished | failed | preempted), step, total_steps, items_per_s, ...
    results.json     full evaluation of every valid split + {"run": metadata}, at the end
    best.json        which checkpoint is best by (best_split, best_metric), when evaluation ran
    checkpoints/step_XXXXXXXX/   see jepa_kit.checkpoint (safetensors + JSON, no pickle)
    .lock            while a process trains into it (jepa_kit.runlock): a second one is refused

Every file is written whole (temp file + rename, jepa_kit.files) except metrics.jsonl, which is
appended row by row and cut back to the checkpoint's step on resume. ``RunFiles`` writes them
(rank 0 only); ``check_resume`` refuses a resume with another config or other data;
``load_run`` reads a model back from JSON and safetensors only.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import fields
from pathlib import Path

import torch

from jepa_kit import checkpoint as ckpt
from jepa_kit.config import RESUMABLE_FIELDS, ConfigError, TrainConfig
from jepa_kit.data import Dataset
from jepa_kit.files import atomic_write_json, atomic_write_text, read_json
from jepa_kit.objectives import get_objective
from jepa_kit.vocab import Vocab


def clean(obj):
    """JSON-safe: non-finite floats become None, tensors numbers, tuples lists."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return clean(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def check_resume(run_dir: Path, cfg: TrainConfig, dataset: Dataset) -> dict | None:
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


def resume_history(stored: dict | None, step: int) -> list[int]:
    """Every step the run has been resumed at, oldest first, ending with ``step`` (this resume):
    config.json's ``resumed_at_step`` names only the last. A config.json from before the kit kept
    the list gives its ``resumed_at_step`` as the one earlier resume it knows of."""
    stored = stored or {}
    earlier = stored.get("resumes")
    if earlier is None:
        earlier = [] if stored.get("resumed_at_step") is None else [stored["resumed_at_step"]]
    return [*earlier, step]


def truncate_metrics(path: Path, last_step: int) -> None:
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

class RunFiles:
    """The writers of one run directory. ``enabled`` is False on every DDP rank but 0, so callers
    need not ask. ``callback(row)`` (if given) sees every metrics row."""

    def __init__(self, run_dir: Path, enabled: bool = True, callback=None):
        self.dir, self.enabled, self.callback = run_dir, enabled, callback
        self.status: dict = {}

    def prepare(self, resumed_at: int | None) -> None:
        """Create the directory, drop half-written checkpoints, and drop what a fresh start (or
        a start that crashed before its first checkpoint) left, or the metrics rows after the
        checkpoint a resume starts from (they will be redone)."""
        if not self.enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        ckpt.clean_partial(self.dir)
        if resumed_at is None:
            for name in ("metrics.jsonl", "results.json", "best.json"):
                (self.dir / name).unlink(missing_ok=True)
        else:
            truncate_metrics(self.dir / "metrics.jsonl", resumed_at)

    def write_config(self, record: dict, vocab: Vocab) -> None:
        if self.enabled:
            atomic_write_json(self.dir / "config.json", clean(record))
            atomic_write_text(self.dir / "vocab.json", vocab.to_json())

    def write_status(self, **kw) -> None:
        if self.enabled:
            self.status.update(kw, updated=now())
            atomic_write_json(self.dir / "status.json", clean(self.status))

    def append_row(self, row: dict) -> None:
        if not self.enabled:
            return
        with open(self.dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(clean(row), allow_nan=False) + "\n")
            f.flush()
        if self.callback is not None:
            self.callback(row)

    def write_best(self, best: dict | None) -> None:
        if self.enabled and best is not None:
            atomic_write_json(self.dir / "best.json", {
                **best, "checkpoint": str(ckpt.step_dir(self.dir, best["step"]).relative_to(self.dir)),
                "note": "selected on the test split: optimistic" if best["selected_on_test"] else None})

    def write_results(self, results: dict) -> None:
        if self.enabled:
            atomic_write_json(self.dir / "results.json", clean(results))


# -- loading a run --------------------------------------------------------------------------

def checkpoint_dir(run_dir: Path, checkpoint) -> Path:
    """The checkpoint folder of a run for ``checkpoint`` ("last", "best", a step or a path), checked complete."""
    if not (run_dir / "config.json").is_file():
        raise ckpt.CheckpointError(f"{run_dir}: not a run directory (no config.json)")
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
             vocab: Vocab | None = None) -> tuple[torch.nn.Module, TrainConfig]:
    """The model of a run at a checkpoint ("last", "best", a step or a path), in eval mode, and its config.

    Reads only JSON and safetensors (no pickle). With ``vocab``, checks the run was trained on it.
    """
    run_dir = Path(run_dir)
    d = checkpoint_dir(run_dir, checkpoint)  # checks run_dir is a run directory first
    meta = ckpt.read_checkpoint_meta(d)
    run_vocab = Vocab.load(run_dir / "vocab.json")
    if vocab is not None and not vocab.same_as(run_vocab):
        raise ckpt.CheckpointError(f"{run_dir} was trained on a vocabulary of {len(run_vocab)} tokens that differs "
                                   f"from the one given ({len(vocab)} tokens): the checkpoint was made for other data")
    config = TrainConfig.from_dict(meta["config"])
    model = get_objective(config.objective).model_from_config(run_vocab, meta["model"])
    model.to(device)
    ckpt.load_weights(model, d)
    model.eval()
    return model, config
