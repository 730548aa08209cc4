"""Batch runs of the training notebook: sweep files, papermill, SLURM arrays, and watching runs.

A sweep file (YAML, read with ``yaml.safe_load``) names TrainConfig fields only::

    name: ablations            # folder under the output dir (default: the file's stem)
    preset: tiny               # TrainConfig.from_preset(preset); `--preset paper` overrides
    presets:                   # optional fields per preset, applied right after the preset
      paper: {data_dir: data/paper}
    base: {objective: jepa}    # fields shared by every run
    runs:                      # explicit list of runs          } combined as a product:
      - {objective: ntp}       #                                 } runs x vary x grid,
    vary:                      # one factor at a time around base } each merged over base
      k_pred: [0, 1, 2, 4]
    grid:                      # full product
      seed: [0, 1, 2]
    slurm: {time: "04:00:00"}  # optional #SBATCH settings for --slurm

Every run becomes one papermill execution of ``notebooks/02_train.ipynb`` with the
*complete* resolved TrainConfig as parameters, so a run is defined by the sweep file and
preset alone. Runs are named from the parameters that set them apart
(``k_pred=2_seed=1``) and land in ``OUT/<sweep name>/<run name>/`` (the run directory)
next to ``<run name>.ipynb`` (the executed notebook).

This module imports neither torch nor pandas at import time: ``jepa-kit runs`` must be
quick on a login node.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import itertools
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_NOTEBOOK = REPO_ROOT / "notebooks" / "02_train.ipynb"
SWEEP_TEMPLATE = REPO_ROOT / "slurm" / "sweep_array.sbatch"
DEFAULT_OUTPUT = Path("papermill_runs") / "output"
SWEEP_KEYS = {"name", "preset", "presets", "base", "runs", "vary", "grid", "slurm", "notebook"}
ALWAYS_NAMED = ("objective", "seed")  # shown in a run's name whenever they vary in the sweep
REVERSE_AUG_LABEL = "trains on test facts"


class SweepError(ValueError):
    """A sweep file that cannot be expanded into runs."""


# -- TrainConfig access (lazy: train.py pulls in torch) ----------------------------------------
def _train_config_cls():
    from jepa_kit.train import TrainConfig
    return TrainConfig


def config_fields() -> list[str]:
    """TrainConfig's field names, in declaration order (the notebook's parameters)."""
    import dataclasses
    return [f.name for f in dataclasses.fields(_train_config_cls())]


def resolve_params(overrides: dict, preset: str | None = None, where: str = "sweep") -> dict:
    """The full TrainConfig of one run as a plain dict: preset defaults, then ``overrides``.

    Unknown names are an error that names the file; values are checked by TrainConfig itself.
    """
    import dataclasses
    cls = _train_config_cls()
    names = config_fields()
    unknown = [k for k in overrides if k not in names]
    if unknown:
        raise SweepError(f"{where}: unknown parameter {unknown[0]!r}; TrainConfig fields are: {', '.join(names)}")
    try:
        cfg = cls.from_preset(preset) if preset else cls()
        cfg = dataclasses.replace(cfg, **overrides)
    except (TypeError, ValueError) as e:
        raise SweepError(f"{where}: {e}") from None
    return _jsonable(dataclasses.asdict(cfg))


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
    import yaml
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SweepError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise SweepError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(spec, dict):
        raise SweepError(f"{path}: expected a mapping with base/runs/vary/grid, got {type(spec).__name__}")
    chosen = preset or spec.get("preset")
    presets = spec.get("presets") or {}
    if preset and presets and preset not in presets:
        raise SweepError(f"{path}: --preset {preset!r} has no section under 'presets' (have: {', '.join(presets)})")
    notebook = spec.get("notebook")
    return Sweep(
        name=str(spec.get("name") or path.stem),
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


def run_names(runs: list[dict], base: dict | None = None) -> list[str]:
    """A readable unique name per run from the parameters that set it apart.

    A key is named when its value varies across the sweep and either it is one of
    ALWAYS_NAMED or the run's value differs from ``base`` (the sweep's common settings).
    """
    base = base or {}
    keys: list[str] = []
    for r in runs:
        keys += [k for k in r if k not in keys]
    varying = [k for k in keys if len({json.dumps(r.get(k, base.get(k)), sort_keys=True, default=str) for r in runs}) > 1]
    names, used = [], set()
    for r in runs:
        parts = [f"{k}={_fmt(r.get(k))}" for k in varying
                 if k in ALWAYS_NAMED or r.get(k, base.get(k)) != base.get(k)]
        if parts and all(p.split("=", 1)[0] in ALWAYS_NAMED for p in parts) and any(k not in ALWAYS_NAMED for k in varying):
            parts.insert(0, "default")
        name = _safe("_".join(parts) or "default")
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


def run_dir_field() -> str:
    """The TrainConfig field that holds the run directory."""
    names = config_fields()
    for candidate in ("run_dir", "out_dir", "out", "output_dir"):
        if candidate in names:
            return candidate
    raise SweepError(f"TrainConfig has no run-directory field (looked for run_dir/out_dir/out); fields: {', '.join(names)}")


_PATH_FIELDS = ("data_dir", "data", "init_from", "resume_from")


def plan(runs: list[dict], out_dir: str | Path, preset: str | None = None, sweep_name: str | None = None,
         where: str = "sweep") -> list[PlannedRun]:
    """Resolve every run against TrainConfig and give it a name, a run directory and an output notebook.

    Relative data paths are made absolute (from the current directory) so the notebook,
    which papermill runs inside ``notebooks/``, finds them.
    """
    out = Path(out_dir).resolve() / (sweep_name or "")
    names = run_names(runs, base=_common(runs))
    rd_field = run_dir_field()
    planned = []
    for name, overrides in zip(names, runs):
        if rd_field in overrides:
            raise SweepError(f"{where}: '{rd_field}' is chosen by the sweep (OUT/<sweep>/<run name>); remove it")
        params = resolve_params(overrides, preset, where=where)
        for f in _PATH_FIELDS:
            if isinstance(params.get(f), str) and params[f] and not os.path.isabs(params[f]):
                params[f] = str(Path(params[f]).resolve())
        run_dir = out / name
        params[rd_field] = str(run_dir)
        planned.append(PlannedRun(name, params, run_dir, out / f"{name}.ipynb"))
    return planned


def _common(runs: list[dict]) -> dict:
    # values shared by the most runs: the "default" each run is compared with when naming it
    common: dict = {}
    keys = {k for r in runs for k in r}
    for k in keys:
        counts: dict[str, tuple[int, object]] = {}
        for r in runs:
            if k in r:
                j = json.dumps(r[k], sort_keys=True, default=str)
                counts[j] = (counts.get(j, (0, None))[0] + 1, r[k])
        best = max(counts.values(), key=lambda c: c[0])
        if best[0] > 1 or len(counts) == 1:
            common[k] = best[1]
    return common


# -- running locally ---------------------------------------------------------------------------
@dataclass
class RunOutcome:
    name: str
    run_dir: Path
    notebook_out: Path
    ok: bool
    seconds: float
    error: str | None = None   # "cell 5: ValueError: ..." for a failed run


def default_kernel() -> str:
    """A Jupyter kernel that runs *this* Python (so a sweep uses the environment jepa-kit runs in).

    ``python3`` when it resolves here (jupyter_client maps a bare ``python`` to sys.executable),
    otherwise a private kernelspec for sys.executable on JUPYTER_PATH.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    try:
        argv0 = KernelSpecManager().get_kernel_spec("python3").argv[0]
        if argv0 in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}") \
                or os.path.realpath(argv0) == os.path.realpath(sys.executable):
            return "python3"
    except NoSuchKernel:
        pass
    import tempfile
    name = "jepa_kit_" + hashlib.sha1(sys.executable.encode()).hexdigest()[:8]
    root = Path(tempfile.gettempdir()) / "jepa_kit_jupyter"
    spec_dir = root / "kernels" / name
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"jepa_kit ({sys.executable})", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    paths = [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
    if str(root) not in paths:
        os.environ["JUPYTER_PATH"] = os.pathsep.join([str(root)] + paths)
    return name


def describe_error(exc: BaseException) -> str:
    """One line naming the failing cell: ``cell 7: ValueError: lr must be positive``."""
    ename = getattr(exc, "ename", None)
    if ename is not None:  # papermill.PapermillExecutionError
        evalue = str(getattr(exc, "evalue", "")).strip().splitlines()
        first = evalue[0] if evalue else ""
        return f"cell {exc.cell_index}: {ename}: {first}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


def execute(run: PlannedRun, notebook: str | Path = TRAIN_NOTEBOOK, kernel_name: str | None = None,
            progress_bar: bool = True, log_output: bool = False) -> RunOutcome:
    """One papermill execution of the training notebook; errors are caught and described."""
    import papermill as pm
    run.notebook_out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(notebook), str(run.notebook_out), parameters=run.params,
            kernel_name=kernel_name or default_kernel(), progress_bar=progress_bar,
            log_output=log_output, cwd=str(Path(notebook).resolve().parent),
        )
    except Exception as e:  # a failed run is reported, never fatal to the sweep
        return RunOutcome(run.name, run.run_dir, run.notebook_out, False, time.perf_counter() - t0, describe_error(e))
    return RunOutcome(run.name, run.run_dir, run.notebook_out, True, time.perf_counter() - t0)


def run_local(sweep: Sweep | list[dict] | str | Path, out_dir: str | Path = DEFAULT_OUTPUT, *,
              preset: str | None = None, name: str | None = None, notebook: str | Path | None = None,
              kernel_name: str | None = None, progress_bar: bool = True, log=print) -> list[RunOutcome]:
    """Run every run of a sweep one after another here, through papermill.

    ``sweep``: a Sweep, a sweep file path, or a list of TrainConfig override dicts (then
    ``preset`` and ``name`` say which preset and output folder). A failed run is reported
    with its cell error and the sweep goes on. Returns one RunOutcome per run.
    """
    if isinstance(sweep, (str, Path)):
        sweep = load_sweep(sweep, preset=preset)
    if isinstance(sweep, Sweep):
        runs, preset, name = sweep.runs, preset or sweep.preset, name or sweep.name
        notebook, where = notebook or sweep.notebook, sweep.source
    else:
        runs, where = [dict(r) for r in sweep], "runs"
    notebook = Path(notebook or TRAIN_NOTEBOOK)
    planned = plan(runs, out_dir, preset=preset, sweep_name=name, where=where)
    kernel = kernel_name or default_kernel()
    outcomes = []
    for i, run in enumerate(planned, 1):
        log(f"[{i}/{len(planned)}] {run.name}: running -> {run.run_dir}")
        outcome = execute(run, notebook, kernel, progress_bar=progress_bar)
        if outcome.ok:
            log(f"[{i}/{len(planned)}] {run.name}: finished in {outcome.seconds:.1f} s")
        else:
            log(f"[{i}/{len(planned)}] {run.name}: FAILED after {outcome.seconds:.1f} s, {outcome.error} "
                f"(notebook: {run.notebook_out})")
        outcomes.append(outcome)
    failed = [o for o in outcomes if not o.ok]
    log(f"{len(outcomes) - len(failed)} finished, {len(failed)} failed")
    return outcomes


# -- SLURM -------------------------------------------------------------------------------------
SLURM_DEFAULTS = {  # #SBATCH settings a sweep file's `slurm:` section or the command line may change
    "account": "PAS0000",
    "partition": "gpu",
    "time": "04:00:00",
    "gpus_per_node": 1,
    "cpus_per_task": 8,
    "max_parallel": 0,        # array throttle (%N); 0 = no limit
    "kernel": "jepa_kit",     # the Jupyter kernel registered by slurm/setup_osc_env.sh
    "conda_env": "jepa_kit",
    "signal_seconds": 300,    # USR1 this long before walltime: checkpoint, then requeue
}
_SBATCH_VALUE = re.compile(r"^[A-Za-z0-9_.:,@%/+=-]+$")  # no spaces or shell syntax on an #SBATCH line
_TASKS_BEGIN, _TASKS_END = "# >>> tasks", "# <<< tasks"


def _sbatch_value(key: str, value) -> str:
    text = str(value)
    if not _SBATCH_VALUE.match(text):
        raise SweepError(f"slurm.{key} = {text!r}: only letters, digits and _.:,@%/+=- are allowed")
    return text


def papermill_command(run: PlannedRun, notebook: str | Path = TRAIN_NOTEBOOK) -> str:
    """The shell line of one array task. Every word is shell-quoted; parameters go as one
    flow-style YAML string (papermill ``-y``), which keeps types exact (1e-4 stays a float)."""
    import yaml
    params = yaml.safe_dump(run.params, default_flow_style=True, width=math.inf, sort_keys=False).strip()
    words = ["papermill", str(notebook), str(run.notebook_out), "-k", "KERNEL", "--cwd",
             str(Path(notebook).resolve().parent), "--log-output", "--no-progress-bar", "--request-save-on-cell-execute",
             "-y", params]
    line = " ".join(shlex.quote(w) for w in words)
    return line.replace(" KERNEL ", ' "$KERNEL" ', 1)


def slurm_array_script(planned: list[PlannedRun], out_dir: str | Path, notebook: str | Path = TRAIN_NOTEBOOK,
                       job_name: str = "jepa-sweep", template: str | Path = SWEEP_TEMPLATE, **settings) -> str:
    """Fill slurm/sweep_array.sbatch: #SBATCH settings, the array range, one papermill line per task."""
    unknown = set(settings) - set(SLURM_DEFAULTS)
    if unknown:
        raise SweepError(f"unknown slurm setting {sorted(unknown)[0]!r}; known: {', '.join(SLURM_DEFAULTS)}")
    s = {**SLURM_DEFAULTS, **{k: v for k, v in settings.items() if v is not None}}
    if not planned:
        raise SweepError("the sweep has no runs")
    text = Path(template).read_text()
    logs = Path(out_dir).resolve() / "slurm"
    throttle = f"%{int(s['max_parallel'])}" if int(s["max_parallel"]) > 0 else ""
    directives = {
        "--job-name": _safe(job_name),
        "--account": _sbatch_value("account", s["account"]),
        "--partition": _sbatch_value("partition", s["partition"]),
        "--time": _sbatch_value("time", s["time"]),
        "--gpus-per-node": _sbatch_value("gpus_per_node", s["gpus_per_node"]),
        "--cpus-per-task": _sbatch_value("cpus_per_task", s["cpus_per_task"]),
        "--array": f"0-{len(planned) - 1}{throttle}",
        "--output": _sbatch_value("output", f"{logs}/%x-%A_%a.out"),
        "--signal": f"B:USR1@{int(s['signal_seconds'])}",
    }
    lines = []
    for line in text.splitlines():
        m = re.match(r"^#SBATCH (--[a-z-]+)=", line)
        if m and m.group(1) in directives:
            line = f"#SBATCH {m.group(1)}={directives[m.group(1)]}"
        lines.append(line)
    text = "\n".join(lines) + "\n"
    text = re.sub(r'^KERNEL=.*$', f'KERNEL="${{KERNEL:-{_safe(str(s["kernel"]))}}}"', text, count=1, flags=re.M)
    text = re.sub(r'^CONDA_ENV=.*$', f'CONDA_ENV="${{CONDA_ENV:-{_safe(str(s["conda_env"]))}}}"', text, count=1, flags=re.M)
    text = re.sub(r'^REPO=.*$', f"REPO={shlex.quote(str(REPO_ROOT))}", text, count=1, flags=re.M)
    tasks = []
    for i, run in enumerate(planned):
        tasks.append(f"    {i}) # {_safe(run.name)}\n"
                     f"       RUN_DIR={shlex.quote(str(run.run_dir))}\n"
                     f"       set -- {papermill_command(run, notebook)} ;;")
    begin, end = text.index(_TASKS_BEGIN), text.index(_TASKS_END)
    begin = text.index("\n", begin) + 1
    return text[:begin] + "\n".join(tasks) + "\n    " + text[end:].lstrip(" ")


def write_slurm_sweep(sweep: Sweep, out_dir: str | Path = DEFAULT_OUTPUT, **settings) -> tuple[Path, str]:
    """Plan the sweep and write its array script to OUT/<sweep>/sweep_array.sbatch."""
    planned = plan(sweep.runs, out_dir, preset=sweep.preset, sweep_name=sweep.name, where=sweep.source)
    folder = Path(out_dir).resolve() / sweep.name
    settings = {**sweep.slurm, **{k: v for k, v in settings.items() if v is not None}}
    script = slurm_array_script(planned, folder, notebook=sweep.notebook, job_name=sweep.name, **settings)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "slurm").mkdir(exist_ok=True)
    path = folder / "sweep_array.sbatch"
    path.write_text(script)
    (folder / "sweep_plan.json").write_text(json.dumps(
        [{"task": i, "name": r.name, "run_dir": str(r.run_dir), "notebook": str(r.notebook_out), "params": r.params}
         for i, r in enumerate(planned)], indent=1))
    return path, script


def submit(script_path: str | Path) -> str:
    """``sbatch SCRIPT``; returns sbatch's output (``Submitted batch job N``)."""
    try:
        done = subprocess.run(["sbatch", str(script_path)], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise SweepError("sbatch not found: --slurm submits from a SLURM login node (use --dry-run to only print the script)") from None
    if done.returncode != 0:
        raise SweepError(f"sbatch failed (exit {done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


# -- reading run directories -------------------------------------------------------------------
def find_runs(folder: str | Path) -> list[Path]:
    """Every run directory (a folder with config.json or status.json) under ``folder``, sorted."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such folder")
    found = {p.parent for pattern in ("config.json", "status.json") for p in folder.rglob(pattern)}
    return sorted(d for d in found if not any(part.startswith(".") for part in d.relative_to(folder).parts))


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def read_metrics(run_dir: str | Path) -> list[dict]:
    """metrics.jsonl rows; a half-written last line (a run still writing) is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return rows
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _has_checkpoint(run_dir: Path) -> bool:
    return any(run_dir.glob("checkpoint*")) or any(run_dir.glob("ckpt*")) or (run_dir / "checkpoints").is_dir()


def run_status(run_dir: str | Path, folder: str | Path | None = None) -> dict:
    """State, step, items/s and latest metrics of one run, from its files only."""
    run_dir = Path(run_dir)
    status = _read_json(run_dir / "status.json") or {}
    rows = read_metrics(run_dir)
    train_rows = [r for r in rows if r.get("kind", "train") != "eval"]
    eval_rows = [r for r in rows if r.get("kind") == "eval"]
    config = _read_json(run_dir / "config.json") or {}
    state = status.get("state") or ("finished" if (run_dir / "results.json").exists() else "unknown")
    try:
        updated = max(p.stat().st_mtime for p in run_dir.iterdir())
    except ValueError:
        updated = None
    out = {
        "run": str(run_dir.relative_to(folder)) if folder else run_dir.name,
        "state": state,
        "step": status.get("step", train_rows[-1].get("step") if train_rows else None),
        "total_steps": status.get("total_steps"),
        "items_per_s": status.get("items_per_s", train_rows[-1].get("items_per_s") if train_rows else None),
        "error": status.get("error"),
        "resumable": state in ("preempted", "failed", "running") and _has_checkpoint(run_dir),
        "objective": config.get("objective"),
        "updated": updated,
        "latest": {k: train_rows[-1][k] for k in ("loss", "ntp_loss", "jepa_loss") if train_rows and k in train_rows[-1]},
        "latest_eval": eval_rows[-1] if eval_rows else None,
    }
    return out


def _ago(ts: float | None) -> str:
    if ts is None:
        return "-"
    s = max(0, time.time() - ts)
    return f"{s:.0f}s ago" if s < 120 else f"{s / 60:.0f}m ago" if s < 7200 else f"{s / 3600:.1f}h ago"


def _num(v, fmt: str = "{:.4g}") -> str:
    return "-" if v is None else fmt.format(v) if isinstance(v, (int, float)) else str(v)


def format_status(rows: list[dict]) -> str:
    """A table for a terminal: one line per run, then the errors of failed runs."""
    if not rows:
        return "no runs found"
    header = ["run", "state", "step", "items/s", "loss", "ntp", "jepa", "atomic EM", "test EM", "updated"]
    table = []
    for r in rows:
        state = r["state"] + (" (resumable)" if r["state"] == "preempted" and r["resumable"] else "")
        if r["objective"] == "reverse_aug":
            state += f" [{REVERSE_AUG_LABEL}]"
        step = "-" if r["step"] is None else f"{r['step']}" + (f"/{r['total_steps']}" if r["total_steps"] else "")
        splits = (r["latest_eval"] or {}).get("splits", {})
        table.append([r["run"], state, step, _num(r["items_per_s"], "{:.0f}"),
                      _num(r["latest"].get("loss")), _num(r["latest"].get("ntp_loss")), _num(r["latest"].get("jepa_loss")),
                      _num(splits.get("atomic", {}).get("exact_match"), "{:.3f}"),
                      _num(splits.get("test", {}).get("exact_match"), "{:.3f}"), _ago(r["updated"])])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in [header, *table]]
    for r in rows:
        if r["state"] == "failed" and r["error"]:
            lines.append(f"{r['run']}: failed: {str(r['error']).strip().splitlines()[-1]}")
    return "\n".join(lines)


def status_table(folder: str | Path) -> list[dict]:
    return [run_status(d, folder) for d in find_runs(folder)]


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}{k}." if prefix or True else k, v, out) if isinstance(v, dict) else out.__setitem__(f"{prefix}{k}", v)
    else:
        out[prefix.rstrip(".")] = value


SPLITS = ("train", "atomic", "test")


def split_results(results: dict) -> dict[str, dict]:
    """results.json → {split: metrics}; accepts both ``{"train": {...}}`` and ``{"splits": {...}}``."""
    if isinstance(results.get("splits"), dict):
        results = results["splits"]
    return {s: results[s] for s in SPLITS if isinstance(results.get(s), dict)}


def collect(folder: str | Path):
    """One row per run under ``folder``: its TrainConfig, state and final per-split metrics.

    Metric columns are ``<split>.<metric>`` (e.g. ``test.exact_match``, ``atomic.entity_mrr``);
    per-layer lists stay in ``<split>.<metric>`` as lists. reverse_aug runs carry
    ``note = "trains on test facts"``.
    """
    import pandas as pd
    rows = []
    for d in find_runs(folder):
        st = run_status(d, folder)
        row = {"run": st["run"], "state": st["state"], "step": st["step"], "items_per_s": st["items_per_s"],
               "error": st["error"]}
        config = _read_json(d / "config.json") or {}
        for k, v in config.items():
            if not isinstance(v, dict):
                row[k] = v
        results = _read_json(d / "results.json") or {}
        if not results and st["latest_eval"]:
            results = st["latest_eval"]  # a running or preempted run: its latest evaluation
        for split, metrics in split_results(results).items():
            for k, v in metrics.items():
                row[f"{split}.{k}"] = v
        row["note"] = REVERSE_AUG_LABEL if config.get("objective") == "reverse_aug" else ""
        rows.append(row)
    return pd.DataFrame(rows)


# -- command line ------------------------------------------------------------------------------
def add_sweep_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("file", help="sweep file (YAML): base config + runs/vary/grid of TrainConfig fields")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--local", action="store_true", help="run the papermill executions one after another here")
    mode.add_argument("--slurm", action="store_true", help="write (and submit) a SLURM array job, one papermill run per task")
    p.add_argument("--dry-run", action="store_true", help="with --slurm: print the array script, submit nothing")
    p.add_argument("--preset", help="TrainConfig preset (tiny|paper), overrides the file's `preset:`")
    p.add_argument("--out", default=str(DEFAULT_OUTPUT), help="output folder (default: %(default)s)")
    p.add_argument("--kernel", help="Jupyter kernel name (default: --local this Python; --slurm 'jepa_kit')")
    p.add_argument("--account", help="SLURM account (#SBATCH --account)")
    p.add_argument("--partition", help="SLURM partition")
    p.add_argument("--time", help="SLURM walltime per task, e.g. 04:00:00")
    p.add_argument("--max-parallel", type=int, help="at most N array tasks at once")
    p.add_argument("--list", action="store_true", help="only list the runs the file expands to")
    return p


def sweep_main(args: argparse.Namespace | list[str] | None = None) -> int:
    """`jepa-kit sweep FILE (--local | --slurm [--dry-run])`; returns the exit code."""
    if not isinstance(args, argparse.Namespace):
        args = add_sweep_arguments(argparse.ArgumentParser(prog="jepa-kit sweep")).parse_args(args)
    try:
        sweep = load_sweep(args.file, preset=args.preset)
        if args.list:
            planned = plan(sweep.runs, args.out, sweep.preset, sweep.name, sweep.source)
            for r in planned:
                print(f"{r.name}\t{r.run_dir}")
            return 0
        if args.local:
            if args.dry_run:
                print("--dry-run applies to --slurm; with --local use --list to see the runs", file=sys.stderr)
                return 2
            outcomes = run_local(sweep, args.out, kernel_name=args.kernel)
            folder = Path(args.out) / sweep.name
            table = collect(folder)
            table_path = folder / "results.csv"
            table.to_csv(table_path, index=False)
            print(f"collected {len(table)} runs -> {table_path}")
            return 0 if all(o.ok for o in outcomes) else 1
        settings = dict(account=args.account, partition=args.partition, time=args.time,
                        max_parallel=args.max_parallel, kernel=args.kernel)
        if args.dry_run:
            planned = plan(sweep.runs, args.out, sweep.preset, sweep.name, sweep.source)
            folder = Path(args.out).resolve() / sweep.name
            merged = {**sweep.slurm, **{k: v for k, v in settings.items() if v is not None}}
            print(slurm_array_script(planned, folder, notebook=sweep.notebook, job_name=sweep.name, **merged), end="")
            return 0
        path, _ = write_slurm_sweep(sweep, args.out, **settings)
        print(f"wrote {path}")
        print(submit(path))
        return 0
    except (SweepError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def add_runs_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("folder", help="a folder of run directories (searched recursively)")
    p.add_argument("--json", action="store_true", help="one JSON object per run instead of a table")
    p.add_argument("--watch", type=float, metavar="SECONDS", help="refresh every SECONDS until interrupted")
    return p


def runs_main(args: argparse.Namespace | list[str] | None = None) -> int:
    """`jepa-kit runs FOLDER`: every run's state, step, items/s and latest metrics."""
    if not isinstance(args, argparse.Namespace):
        args = add_runs_arguments(argparse.ArgumentParser(prog="jepa-kit runs")).parse_args(args)
    try:
        while True:
            rows = status_table(args.folder)
            if args.json:
                for r in rows:
                    print(json.dumps(r, default=str))
            else:
                if args.watch:
                    print(f"\x1b[2J\x1b[H{args.folder}  {_dt.datetime.now():%H:%M:%S}")
                print(format_status(rows))
            if not args.watch:
                return 0
            time.sleep(args.watch)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m jepa_kit.runs sweep ...`` / ``python -m jepa_kit.runs runs ...``."""
    parser = argparse.ArgumentParser(prog="python -m jepa_kit.runs")
    sub = parser.add_subparsers(dest="command", required=True)
    add_sweep_arguments(sub.add_parser("sweep", help="papermill runs of the training notebook"))
    add_runs_arguments(sub.add_parser("runs", help="state of every run in a folder"))
    args = parser.parse_args(argv)
    return sweep_main(args) if args.command == "sweep" else runs_main(args)


if __name__ == "__main__":
    sys.exit(main())
