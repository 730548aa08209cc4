"""Checkpoints on disk: atomic files, no pickle anywhere.

A checkpoint is a directory ``<run>/checkpoints/step_00001234/`` holding

    model.safetensors      the weights (tied tensors stored once)
    optimizer.safetensors  every tensor of the optimizer state ("state/<param index>/<name>")
    rng.safetensors        torch RNG states (CPU, and each CUDA device)
    checkpoint.json        step, trainer state, optimizer scalars (param groups), grad-scaler state

It is written into ``step_00001234.tmp/`` (each file: temp file, fsync, os.replace) and then
renamed into place, ``checkpoint.json`` last: a directory without the ``.tmp`` suffix is complete.
A write killed midway leaves only a ``.tmp`` directory, which readers ignore and the next save
removes, so the previous checkpoint stays the latest loadable one.

Everything is read with safetensors and json: nothing here unpickles, so a checkpoint from an
untrusted source cannot run code (the guarantee ``torch.load(weights_only=True)`` aims at).
"""
from __future__ import annotations

import os
import re
import shutil
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from jepa_kit.files import _fsync_dir, atomic_path, atomic_write_json, read_json

CHECKPOINT_DIR = "checkpoints"
FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step_(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete or made for something else."""


class CheckpointWarning(UserWarning):
    """A newer checkpoint is damaged, so an older one is used."""


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file, or a CheckpointError naming it (missing, truncated, not safetensors)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        return load_file(str(path))
    except Exception as e:  # SafetensorError and friends name no file
        raise CheckpointError(f"{path}: unreadable, truncated or not a safetensors file ({e})") from None


# -- finding checkpoints ------------------------------------------------------------------

def checkpoint_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first: [(step, dir)]."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    out = []
    for d in root.iterdir():
        m = _STEP_DIR.match(d.name)
        if m and (d / "checkpoint.json").is_file():
            out.append((int(m.group(1)), d))
    return sorted(out)


def incomplete_checkpoints(run_dir: str | Path) -> list[Path]:
    """Step directories without a checkpoint.json (a write that never finished leaves a ``.tmp``
    directory instead, so these were damaged afterwards: a file deleted or lost)."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if _STEP_DIR.match(d.name) and not (d / "checkpoint.json").is_file())


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint directory of a run, or None. Warns when a newer step
    directory is incomplete, since the run then falls back to an older step."""
    found = list_checkpoints(run_dir)
    newest = found[-1][0] if found else -1
    newer_broken = [d for d in incomplete_checkpoints(run_dir) if int(_STEP_DIR.match(d.name).group(1)) > newest]
    if newer_broken:
        fallback = f"using {found[-1][1].name}" if found else "no complete checkpoint is left"
        warnings.warn(f"{newer_broken[-1]} is incomplete (no checkpoint.json): {fallback}", CheckpointWarning,
                      stacklevel=2)
    return found[-1][1] if found else None


def step_dir(run_dir: str | Path, step: int) -> Path:
    return checkpoint_root(run_dir) / f"step_{step:08d}"


# -- optimizer state without pickle -------------------------------------------------------

def _optimizer_to_flat(opt_state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and JSON scalars."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for idx, st in opt_state["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state/{idx}/{name}"] = v.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = v
    groups = []
    for g in opt_state["param_groups"]:
        g = dict(g)
        for k, v in g.items():
            if isinstance(v, tuple):
                g[k] = list(v)
            elif isinstance(v, torch.Tensor):  # e.g. a tensor lr
                g[k] = v.item()
        groups.append(g)
    return tensors, {"param_groups": groups, "scalar_state": scalars}


def _optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, t in tensors.items():
        _, idx, name = key.split("/", 2)
        state.setdefault(int(idx), {})[name] = t
    for idx, st in meta.get("scalar_state", {}).items():
        state.setdefault(int(idx), {}).update(st)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def _rng_tensors() -> dict[str, torch.Tensor]:
    out = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"cuda/{i}"] = s
    return out


# -- save / load --------------------------------------------------------------------------

def save_checkpoint(run_dir: str | Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    meta: dict, scaler_state: dict | None = None) -> Path:
    """Write checkpoint ``step`` of a run atomically and return its directory.

    ``meta`` (JSON-serialisable) is stored in checkpoint.json beside the step, the format
    version, the optimizer's scalars and the grad-scaler state.
    """
    final = step_dir(run_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    clean_partial(run_dir)
    tmp.mkdir(parents=True)
    with atomic_path(tmp / "model.safetensors") as p:
        save_model(model, str(p))
    info = {"format_version": FORMAT_VERSION, "step": step, **meta, "scaler": scaler_state or {}}
    if optimizer is not None:
        tensors, scalars = _optimizer_to_flat(optimizer.state_dict())
        with atomic_path(tmp / "optimizer.safetensors") as p:
            save_file(tensors, str(p))
        info["optimizer"] = scalars
    with atomic_path(tmp / "rng.safetensors") as p:
        save_file(_rng_tensors(), str(p))
    atomic_write_json(tmp / "checkpoint.json", info)
    if final.exists():  # the same step saved again (e.g. resumed at the end): replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    return final


def clean_partial(run_dir: str | Path) -> None:
    """Remove ``.tmp`` leftovers of checkpoint writes that were killed midway."""
    root = checkpoint_root(run_dir)
    if root.is_dir():
        for d in root.glob("*.tmp"):
            shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink(missing_ok=True)


def read_checkpoint_meta(ckpt_dir: str | Path) -> dict:
    path = Path(ckpt_dir) / "checkpoint.json"
    try:
        info = read_json(path)
    except FileNotFoundError:
        raise CheckpointError(f"{ckpt_dir}: not a complete checkpoint (no checkpoint.json)") from None
    if info.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {info.get('format_version')!r}, this kit reads {FORMAT_VERSION}")
    return info


def update_meta(ckpt_dir: str | Path, change) -> None:
    """Apply ``change(info)`` to a checkpoint's checkpoint.json and write it back atomically."""
    info = read_checkpoint_meta(ckpt_dir)
    change(info)
    atomic_write_json(Path(ckpt_dir) / "checkpoint.json", info)


def load_weights(model: torch.nn.Module, ckpt_dir: str | Path) -> None:
    """Load model.safetensors into ``model`` (strict: every weight must be there and fit)."""
    path = Path(ckpt_dir) / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{ckpt_dir}: no model.safetensors")
    device = next(model.parameters()).device
    try:
        load_model(model, str(path), strict=True, device=str(device))
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit this model ({str(e).splitlines()[0]})") from None
    except Exception as e:  # SafetensorError (a truncated file) names no file
        raise CheckpointError(f"{path}: unreadable, truncated or not a safetensors file ({e})") from None


def load_optimizer(optimizer: torch.optim.Optimizer, ckpt_dir: str | Path) -> None:
    info = read_checkpoint_meta(ckpt_dir)
    if "optimizer" not in info:
        raise CheckpointError(f"{ckpt_dir}: holds no optimizer state")
    tensors = _load_tensors(Path(ckpt_dir) / "optimizer.safetensors")
    optimizer.load_state_dict(_optimizer_from_flat(tensors, info["optimizer"]))


def restore_rng(ckpt_dir: str | Path) -> None:
    states = _load_tensors(Path(ckpt_dir) / "rng.safetensors")
    torch.set_rng_state(states["cpu"])
    cuda = [states[k] for k in sorted((k for k in states if k.startswith("cuda/")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def prune_checkpoints(run_dir: str | Path, keep_last: int, keep: set[int] = frozenset()) -> None:
    """Delete all but the newest ``keep_last`` checkpoints, never those whose step is in ``keep``."""
    found = list_checkpoints(run_dir)
    for step, d in found[: max(0, len(found) - keep_last)]:
        if step not in keep:
            shutil.rmtree(d, ignore_errors=True)
