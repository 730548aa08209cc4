"""Sweep files: parsing, expansion into runs, run names and the full TrainConfig of every run.

A sweep file (YAML, read with ``yaml.safe_load``) names TrainConfig fields only::

    name: ablations            # folder under the output dir (default: the file's stem)
    preset: tiny               # TrainConfig preset (tiny; paper = the defaults); `--preset` overrides
    presets:                   # optional fields per preset, applied right after the preset
      paper: {data: data/paper}
    base: {objective: jepa}    # fields shared by every run
    runs:                      # explicit list of runs          } combined as a product:
      - {objective: ntp}       #                                 } runs x vary x grid,
    vary:                      # one factor at a time around base } each merged over base
      k_pred: [0, 1, 2, 4]
    grid:                      # full product
      seed: [0, 1, 2]
    slurm: {time: "04:00:00"}  # optional #SBATCH settings for --slurm (jepa_kit.launch.SLURM_DEFAULTS:
                               # account, partition, time, gpus_per_node, cpus_per_task, max_parallel, ...)

Every run becomes one papermill execution of ``notebooks/02_train.ipynb`` with the
*complete* resolved TrainConfig as parameters, so a run is defined by the sweep file and
preset alone. Runs are named from the parameters that set them apart
(``k_pred=2_seed=1``) and land in ``OUT/<sweep name>/<run name>/`` (the run directory)
next to ``<run name>.ipynb`` (the executed notebook). Running them is ``jepa_kit.launch``;
reading what they wrote is ``jepa_kit.collect``.

This module imports neither torch nor pandas at import time: ``jepa-kit sweep --list`` must
be quick on a login node (TrainConfig, which needs torch, is imported on first use).
"""
from __future__ import annotations

import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from jepa_kit.files import read_yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_NOTEBOOK = REPO_ROOT / "notebooks" / "02_train.ipynb"
DEFAULT_OUTPUT = Path("papermill_runs") / "output"
SWEEP_KEYS = {"name", "preset", "presets", "base", "runs", "vary", "grid", "slurm", "notebook"}
ALWAYS_NAMED = ("objective", "data", "seed")  # shown in a run's name whenever they vary in the sweep


class SweepError(ValueError):
    """A sweep file that cannot be expanded into runs."""


# -- TrainConfig access (lazy: jepa_kit.config pulls in torch) ------------------------------
def _train_config_cls():
    from jepa_kit.config import TrainConfig
    return TrainConfig


def _train_presets() -> dict:
    from jepa_kit.config import TRAIN_PRESETS
    return TRAIN_PRESETS


def config_fields() -> list[str]:
    """TrainConfig's field names, in declaration order (the notebook's parameters)."""
    import dataclasses
    return [f.name for f in dataclasses.fields(_train_config_cls())]


def resolve_params(overrides: dict, preset: str | None = None, where: str = "sweep") -> dict:
    """The full TrainConfig of one run as a plain dict: preset defaults, then ``overrides``.

    Unknown names and bad values are errors that name the file (TrainConfig checks them).
    """
    cls = _train_config_cls()
    names = config_fields()
    unknown = [k for k in overrides if k not in names]
    if unknown:
        raise SweepError(f"{where}: unknown parameter {unknown[0]!r}; TrainConfig fields are: {', '.join(names)}")
    # a sweep preset that is not a TrainConfig preset (e.g. "paper") is only its `presets:` section
    known = preset if preset in _train_presets() else None
    try:
        cfg = cls.from_dict(dict(overrides), where=where, **({"preset": known} if known else {}))
    except (TypeError, ValueError) as e:
        raise SweepError(f"{where}: {e}") from None
    return _jsonable(cfg.to_dict())


def notebook_config(namespace: dict):
    """The TrainConfig of a notebook's parameters: every TrainConfig field found in ``namespace``
    (pass ``globals()``). The parameters cell of 02_train names exactly these fields."""
    cls = _train_config_cls()
    missing = [n for n in config_fields() if n not in namespace]
    if missing:
        raise SweepError(f"the parameters cell lacks TrainConfig field(s): {', '.join(missing)}")
    return cls.from_dict({n: namespace[n] for n in config_fields()}, where="notebook parameters")


def _jsonable(d: dict) -> dict:
    # round-trip through JSON: tuples become lists, Paths strings; papermill parameters are literals
    return json.loads(json.dumps(d, default=str))


# -- sweep files -------------------------------------------------------------------------------
@dataclass
class Sweep:
    name: str
    preset: str | None
    runs: list[dict]                       # overrides per run (not yet resolved against the preset)
    slurm: dict = field(default_factory=dict)
    notebook: Path = TRAIN_NOTEBOOK
    source: str = "sweep"


def _as_mapping(value, key: str, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SweepError(f"{where}: '{key}' must be a mapping of field: value, got {type(value).__name__}")
    return value


def _values(key: str, values, section: str, where: str) -> list:
    if not isinstance(values, list) or not values:
        raise SweepError(f"{where}: {section}.{key} must be a non-empty list of values, got {values!r}")
    return values


def expand(spec: dict, preset: str | None = None, where: str = "sweep") -> list[dict]:
    """Expand a sweep mapping into one override dict per run (deduplicated, in file order).

    ``runs`` x ``vary`` (one factor at a time around base) x ``grid`` (full product), each
    merged over ``presets[preset]`` and ``base``. Pure: no TrainConfig needed.
    """
    unknown = set(spec) - SWEEP_KEYS
    if unknown:
        raise SweepError(f"{where}: unknown top-level key {sorted(unknown)[0]!r}; expected some of {', '.join(sorted(SWEEP_KEYS))}")
    presets = _as_mapping(spec.get("presets"), "presets", where)
    for p, fields_ in presets.items():
        _as_mapping(fields_, f"presets.{p}", where)
    base = {**_as_mapping(presets.get(preset), f"presets.{preset}", where), **_as_mapping(spec.get("base"), "base", where)}

    runs = spec.get("runs") or [{}]
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise SweepError(f"{where}: 'runs' must be a list of mappings")

    vary = _as_mapping(spec.get("vary"), "vary", where)
    variants: list[dict] = [{}] if not vary else []
    for key, values in vary.items():
        variants += [{key: v} for v in _values(key, values, "vary", where)]

    grid = _as_mapping(spec.get("grid"), "grid", where)
    both = set(grid) & set(vary)
    if both:
        raise SweepError(f"{where}: {sorted(both)[0]!r} is in both 'vary' and 'grid'")
    keys = list(grid)
    combos = [dict(zip(keys, c)) for c in itertools.product(*(_values(k, grid[k], "grid", where) for k in keys))]

    out, seen = [], set()
    for run, variant, combo in itertools.product(runs, variants, combos):
        params = {**base, **run, **variant, **combo}
        key = json.dumps(params, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(params)
    return out


def load_sweep(path: str | Path, preset: str | None = None) -> Sweep:
    """Read a sweep file (safe YAML loader). ``preset`` overrides the file's ``preset:``."""
    path = Path(path)
    spec = read_yaml(path, SweepError)
    if not isinstance(spec, dict):
        raise SweepError(f"{path}: expected a mapping with base/runs/vary/grid, got {type(spec).__name__}")
    chosen = preset or spec.get("preset")
    presets = spec.get("presets") or {}
    if chosen and chosen not in presets and chosen not in _train_presets():
        raise SweepError(f"{path}: unknown preset {chosen!r}: not a TrainConfig preset "
                         f"({', '.join(_train_presets())}) and no section under 'presets' (have: {', '.join(presets) or 'none'})")
    notebook = spec.get("notebook")
    return Sweep(
        name=_safe(str(spec.get("name") or path.stem)),  # a folder name and a SLURM job name
        preset=chosen,
        runs=expand(spec, chosen, where=str(path)),
        slurm=_as_mapping(spec.get("slurm"), "slurm", str(path)),
        notebook=(REPO_ROOT / notebook) if notebook else TRAIN_NOTEBOOK,
        source=str(path),
    )


# -- planning: names and paths -----------------------------------------------------------------
def _fmt(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _safe(text: str) -> str:
    # file names, shell words and SLURM output patterns all stay harmless
    text = re.sub(r"[^A-Za-z0-9._=+-]+", "-", text).strip("-.")
    return text[:120] or "run"


def varying_keys(runs: list[dict], resolved: list[dict] | None = None) -> list[str]:
    """The keys the sweep sets (``runs``: each run's overrides) whose values differ between its runs
    (compared in ``resolved``, the full configs; defaults to ``runs``), objective first, seed last."""
    resolved = resolved or runs
    keys: list[str] = []
    for r in runs:
        keys += [k for k in r if k not in keys]
    keys.sort(key=lambda k: (k != "objective", k == "seed"))
    enc = lambda v: json.dumps(v, sort_keys=True, default=str)
    return [k for k in keys if len({enc(r.get(k)) for r in resolved}) > 1]


def run_names(runs: list[dict], resolved: list[dict] | None = None) -> list[str]:
    """A readable unique name per run from the parameters that set it apart, e.g. ``k_pred=2_seed=1``.

    ``runs``: each run's overrides (which keys the sweep sets); ``resolved``: the full configs
    (values compared), defaults to ``runs``. A key is named when its value varies across the
    sweep and the run's value is not the most common one, except ``objective`` and ``seed``,
    named whenever they vary. A run named by its seed alone is ``default_seed=N``. A path (the
    data directory) is named by its last folder.
    """
    resolved = resolved or runs
    enc = lambda v: json.dumps(v, sort_keys=True, default=str)
    varying = varying_keys(runs, resolved)
    common = _common([{k: r.get(k) for k in varying} for r in resolved])
    names, used = [], set()
    for r in resolved:
        parts = [f"{k}={_fmt(Path(r[k]).name if k in _PATH_FIELDS and r.get(k) else r.get(k))}" for k in varying
                 if k in ALWAYS_NAMED or enc(r.get(k)) != enc(common.get(k))]
        if not parts or all(p.startswith("seed=") for p in parts):
            parts.insert(0, "default")
        name = _safe("_".join(parts))
        unique, i = name, 2
        while unique in used:
            unique, i = f"{name}-{i}", i + 1
        used.add(unique)
        names.append(unique)
    return names


@dataclass
class PlannedRun:
    name: str
    params: dict          # the complete TrainConfig, as papermill parameters
    run_dir: Path
    notebook_out: Path


RUN_DIR_FIELD = "out"       # TrainConfig field of the run directory (chosen by the sweep)
_PATH_FIELDS = ("data",)    # TrainConfig fields holding paths made absolute before papermill


def _absolute_paths(params: dict) -> dict:
    # papermill runs the notebook inside notebooks/: a relative data path would point elsewhere there
    for f in _PATH_FIELDS:
        if isinstance(params.get(f), str) and params[f] and not os.path.isabs(params[f]):
            params[f] = str(Path(params[f]).resolve())
    return params


def plan(runs: list[dict], out_dir: str | Path, preset: str | None = None, sweep_name: str | None = None,
         where: str = "sweep") -> list[PlannedRun]:
    """Resolve every run against TrainConfig and give it a name, a run directory and an output notebook.

    Runs whose resolved configs are identical are kept once.

    Relative data paths are made absolute (from the current directory) so the notebook,
    which papermill runs inside ``notebooks/``, finds them.
    """
    out = Path(out_dir).resolve() / (sweep_name or "")
    kept, resolved, seen = [], [], set()
    for overrides in runs:
        if RUN_DIR_FIELD in overrides:
            raise SweepError(f"{where}: '{RUN_DIR_FIELD}' is chosen by the sweep (OUT/<sweep>/<run name>); remove it")
        params = _absolute_paths(resolve_params(overrides, preset, where=where))
        key = json.dumps(params, sort_keys=True)
        if key not in seen:  # e.g. `vary: {k_pred: [0, 1]}` where 1 is the default: one run, not two
            seen.add(key)
            kept.append(overrides)
            resolved.append(params)
    planned = []
    for name, params in zip(run_names(kept, resolved), resolved):
        run_dir = out / name
        params[RUN_DIR_FIELD] = str(run_dir)
        planned.append(PlannedRun(name, params, run_dir, out / f"{name}.ipynb"))
    return planned


def _common(runs: list[dict]) -> dict:
    # per key, the value most runs share (first seen wins a tie): what a run is compared with when naming it
    common: dict = {}
    for k in {k for r in runs for k in r}:
        counts: dict[str, list] = {}
        for r in runs:
            j = json.dumps(r.get(k), sort_keys=True, default=str)
            counts.setdefault(j, [0, r.get(k)])[0] += 1
        common[k] = max(counts.values(), key=lambda c: c[0])[1]
    return common


def single_run_params(path: str | Path, out: str | Path, preset: str | None = None, index: int = 0) -> dict:
    """The full TrainConfig (papermill parameters) of one run with ``out`` as its run directory.

    ``path``: a sweep file (its run number ``index``) or a flat YAML of TrainConfig fields
    (optionally with ``preset:``), as ``jepa-kit train --config`` reads.
    """
    path = Path(path)
    raw = read_yaml(path, SweepError) or {}
    if isinstance(raw, dict) and set(raw) & {"base", "runs", "vary", "grid", "presets"}:
        sweep = load_sweep(path, preset=preset)
        if not 0 <= index < len(sweep.runs):
            raise SweepError(f"{path}: run index {index} out of range (the sweep has {len(sweep.runs)} runs)")
        overrides, preset = sweep.runs[index], sweep.preset
    elif isinstance(raw, dict):
        overrides = dict(raw)
        preset = preset or overrides.pop("preset", None)
        overrides.pop("preset", None)
    else:
        raise SweepError(f"{path}: expected a mapping, got {type(raw).__name__}")
    overrides = {k: v for k, v in overrides.items() if k != RUN_DIR_FIELD}
    params = _absolute_paths(resolve_params(overrides, preset, where=str(path)))
    params[RUN_DIR_FIELD] = str(Path(out).resolve())
    return params
