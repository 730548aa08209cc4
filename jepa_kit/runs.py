"""Batch runs of the training notebook: sweep files, papermill, SLURM arrays, and watching runs.

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

from jepa_kit.files import atomic_write_text, read_yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_NOTEBOOK = REPO_ROOT / "notebooks" / "02_train.ipynb"
ANALYSIS_NOTEBOOK = REPO_ROOT / "notebooks" / "03_reverse_accuracy.ipynb"
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


def _train_presets() -> dict:
    from jepa_kit.train import TRAIN_PRESETS
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


def ensure_data(data_dir: str | Path, preset: str | None = None, seed: int = 0) -> Path:
    """``data_dir`` if it holds a dataset; otherwise generate one there first, so a notebook runs
    on a fresh checkout. The generator preset is ``preset``, or the folder's name when that is a
    preset (``data/tiny`` -> "tiny"); any other missing folder is an error. Never overwrites."""
    from jepa_kit.datagen import PRESETS, generate
    data_dir = Path(data_dir)
    if (data_dir / "vocab.json").exists():
        return data_dir
    preset = preset or (data_dir.name if data_dir.name in PRESETS else None)
    if preset is None:
        raise FileNotFoundError(f"{data_dir}: no dataset (vocab.json, train.json, valid.json) there; generate one with "
                                f"`jepa-kit data generate --preset tiny --out {data_dir}`, or name the folder after a "
                                f"preset ({', '.join(PRESETS)}) to have it generated")
    print(f"{data_dir}: no dataset yet, generating the {preset!r} preset (seed {seed})")
    generate(preset, data_dir, seed=seed)
    return data_dir


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


def run_names(runs: list[dict], resolved: list[dict] | None = None) -> list[str]:
    """A readable unique name per run from the parameters that set it apart, e.g. ``k_pred=2_seed=1``.

    ``runs``: each run's overrides (which keys the sweep sets); ``resolved``: the full configs
    (values compared), defaults to ``runs``. A key is named when its value varies across the
    sweep and the run's value is not the most common one, except ``objective`` and ``seed``,
    named whenever they vary. A run named by its seed alone is ``default_seed=N``.
    """
    resolved = resolved or runs
    keys: list[str] = []
    for r in runs:
        keys += [k for k in r if k not in keys]
    keys.sort(key=lambda k: (k != "objective", k == "seed"))  # objective first, seed last
    enc = lambda v: json.dumps(v, sort_keys=True, default=str)
    varying = [k for k in keys if len({enc(r.get(k)) for r in resolved}) > 1]
    common = _common([{k: r.get(k) for k in varying} for r in resolved])
    names, used = [], set()
    for r in resolved:
        parts = [f"{k}={_fmt(r.get(k))}" for k in varying
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
        params = resolve_params(overrides, preset, where=where)
        for f in _PATH_FIELDS:
            if isinstance(params.get(f), str) and params[f] and not os.path.isabs(params[f]):
                params[f] = str(Path(params[f]).resolve())
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
              kernel_name: str | None = None, progress_bar: bool = True, jobs: int = 1, log=print) -> list[RunOutcome]:
    """Run every run of a sweep here, through papermill: one after another, or ``jobs`` at a time.

    ``sweep``: a Sweep, a sweep file path, or a list of TrainConfig override dicts (then
    ``preset`` and ``name`` say which preset and output folder). A failed run is reported
    with its cell error and the sweep goes on. Returns one RunOutcome per run, in order.
    With ``jobs > 1`` each kernel gets ``cores // jobs`` threads (OMP_NUM_THREADS, unless set):
    small models gain more from runs side by side than from threads inside one run.
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
    n = len(planned)

    def one(i: int, run: PlannedRun) -> RunOutcome:
        log(f"[{i}/{n}] {run.name}: running -> {run.run_dir}")
        outcome = execute(run, notebook, kernel, progress_bar=progress_bar and jobs == 1)
        if outcome.ok:
            log(f"[{i}/{n}] {run.name}: finished in {outcome.seconds:.1f} s")
        else:
            log(f"[{i}/{n}] {run.name}: FAILED after {outcome.seconds:.1f} s, {outcome.error} "
                f"(notebook: {run.notebook_out})")
        return outcome

    if jobs > 1:
        from concurrent.futures import ThreadPoolExecutor
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            outcomes = list(pool.map(one, range(1, n + 1), planned))
    else:
        outcomes = [one(i, run) for i, run in enumerate(planned, 1)]
    failed = [o for o in outcomes if not o.ok]
    log(f"{len(outcomes) - len(failed)} finished, {len(failed)} failed")
    return outcomes


def render_report(runs_dir: str | Path, out_html: str | Path, notebook: str | Path = ANALYSIS_NOTEBOOK,
                  kernel_name: str | None = None, **parameters) -> Path:
    """Execute the analysis notebook on ``runs_dir`` (papermill) and export it to a standalone
    HTML page (plotly.js embedded, readable offline). The executed notebook is written next to
    the HTML (``.ipynb``). Raises papermill's error when a cell fails."""
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    executed = out_html.with_suffix(".ipynb")
    notebook = Path(notebook).resolve()
    pm.execute_notebook(str(notebook), str(executed), parameters={"runs_dir": str(Path(runs_dir).resolve()), **parameters},
                        kernel_name=kernel_name or default_kernel(), cwd=str(notebook.parent), progress_bar=False)
    html, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    atomic_write_text(out_html, html)
    return out_html


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
    """The shell line of one array task. Every word is shell-quoted (``shlex.quote``); the
    parameters go as one flow-style YAML string (papermill ``-y``), which keeps types exact."""
    import yaml
    params = yaml.safe_dump(run.params, default_flow_style=True, width=math.inf, sort_keys=False).strip()
    nb = Path(notebook).resolve()
    head = ["papermill", str(nb), str(run.notebook_out)]
    tail = ["--cwd", str(nb.parent), "--log-output", "--no-progress-bar", "--request-save-on-cell-execute", "-y", params]
    return " ".join(map(shlex.quote, head)) + ' -k "$KERNEL" ' + " ".join(map(shlex.quote, tail))


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
    for var, value in (("KERNEL", s["kernel"]), ("CONDA_ENV", s["conda_env"])):
        text = re.sub(rf"^{var}=.*$", f'{var}="${{{var}:-{_sbatch_value(var.lower(), value)}}}"', text, count=1, flags=re.M)
    text = re.sub(r"^REPO=.*$", lambda m: f"REPO={shlex.quote(str(REPO_ROOT))}", text, count=1, flags=re.M)
    tasks = []
    for i, run in enumerate(planned):
        tasks.append(f"    {i}) # {_safe(run.name)}\n"
                     f"       RUN_DIR={shlex.quote(str(run.run_dir))}\n"
                     f"       set -- {papermill_command(run, notebook)} ;;")
    begin = text.index("\n", text.index(_TASKS_BEGIN)) + 1
    end = text.index(_TASKS_END)
    text = text[:begin] + "\n".join(tasks) + "\n" + text[end:]
    shebang, rest = text.split("\n", 1)
    stamp = f"# Generated by jepa-kit sweep ({_safe(job_name)}, {len(planned)} runs) on {_dt.datetime.now():%Y-%m-%d %H:%M}.\n"
    return f"{shebang}\n{stamp}{rest}"


def write_slurm_sweep(sweep: Sweep, out_dir: str | Path = DEFAULT_OUTPUT, **settings) -> tuple[Path, str]:
    """Plan the sweep and write its array script to OUT/<sweep>/sweep_array.sbatch."""
    planned = plan(sweep.runs, out_dir, preset=sweep.preset, sweep_name=sweep.name, where=sweep.source)
    folder = Path(out_dir).resolve() / sweep.name
    settings = {**sweep.slurm, **{k: v for k, v in settings.items() if v is not None}}
    for data in sorted({r.params.get("data") for r in planned if r.params.get("data")}):
        ensure_data(data)  # here, once, rather than racing in every array task
    script = slurm_array_script(planned, folder, notebook=sweep.notebook, job_name=sweep.name, **settings)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "slurm").mkdir(exist_ok=True)
    path = folder / "sweep_array.sbatch"
    atomic_write_text(path, script)
    atomic_write_text(folder / "sweep_plan.json", json.dumps(
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
    # complete checkpoints are checkpoints/step_N/ (a ".tmp" suffix marks one cut short)
    return any(p.is_dir() and not p.name.endswith(".tmp") for p in (run_dir / "checkpoints").glob("step_*"))


def read_results(run_dir: str | Path) -> dict:
    """results.json of a finished run ({} when there is none yet)."""
    return _read_json(Path(run_dir) / "results.json") or {}


def run_config(run_dir: str | Path) -> dict:
    """The TrainConfig fields a run was started with (config.json's ``config``), or {}."""
    raw = _read_json(Path(run_dir) / "config.json") or {}
    return raw.get("config", raw) if isinstance(raw, dict) else {}


def trains_on_test_facts(config: dict, status: dict | None = None) -> bool:
    return bool((status or {}).get("trains_on_test_facts")) or config.get("objective") == "reverse_aug"


def _rel_name(run_dir: Path, folder) -> str:
    if folder is None:
        return run_dir.name
    rel = run_dir.resolve().relative_to(Path(folder).resolve())
    return run_dir.resolve().name if str(rel) == "." else str(rel)


def run_status(run_dir: str | Path, folder: str | Path | None = None) -> dict:
    """State, step, items/s and latest metrics of one run, from its files only."""
    run_dir = Path(run_dir)
    status = _read_json(run_dir / "status.json") or {}
    rows = read_metrics(run_dir)
    train_rows = [r for r in rows if r.get("kind", "train") != "eval"]
    eval_rows = [r for r in rows if r.get("kind") == "eval"]
    config = run_config(run_dir)
    state = status.get("state") or ("finished" if (run_dir / "results.json").exists() else "unknown")
    try:
        updated = max(p.stat().st_mtime for p in run_dir.iterdir())
    except ValueError:
        updated = None
    out = {
        "run": _rel_name(run_dir, folder),
        "state": state,
        "step": status.get("step", train_rows[-1].get("step") if train_rows else None),
        "total_steps": status.get("total_steps"),
        "items_per_s": status.get("items_per_s", train_rows[-1].get("items_per_s") if train_rows else None),
        "error": status.get("error"),
        "resumable": state in ("preempted", "failed", "running") and _has_checkpoint(run_dir),
        "objective": config.get("objective", status.get("objective")),
        "trains_on_test_facts": trains_on_test_facts(config, status),
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
        if r["trains_on_test_facts"]:
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
        config = run_config(d)
        for k, v in config.items():
            if not isinstance(v, (dict, list)):
                row[k] = v
        results = _read_json(d / "results.json") or {}
        if not results and st["latest_eval"]:
            results = st["latest_eval"]  # a running or preempted run: its latest evaluation
        for split, metrics in split_results(results).items():
            for k, v in metrics.items():
                row[f"{split}.{k}"] = v
        for k, v in (results.get("jepa") or {}).items():
            row[f"jepa.{k}"] = v
        row["note"] = REVERSE_AUG_LABEL if st["trains_on_test_facts"] else ""
        rows.append(row)
    return pd.DataFrame(rows)


ABLATION_FACTORS = ("k_pred", "jepa_metric", "lambda_jepa", "loss_dropout")


def objective_label(objective) -> str:
    """The objective's name for tables and legends; reverse_aug says that it trains on test facts."""
    return f"{objective} ({REVERSE_AUG_LABEL})" if objective == "reverse_aug" else str(objective)


def ablation_summary(table, metrics=("atomic.exact_match", "test.exact_match", "atomic.entity_mrr", "test.entity_mrr"),
                     factors=ABLATION_FACTORS):
    """mean ± std over seeds, grouped by objective and ablation factor.

    Each run is placed by the factors on which it differs from TrainConfig's defaults: one ->
    under that factor and value; several -> factor "combined"; none -> it is a default run,
    listed under every factor some run varies (at the default value, the reference point), or,
    when no run varies any, under factor "defaults" (then the table compares objectives).
    Columns: objective, factor, value, n, then ``<metric> mean`` / ``<metric> std`` per metric.
    """
    import pandas as pd
    defaults = _train_config_cls()().to_dict()
    metrics = [m for m in metrics if m in table]
    records = table.to_dict("records")
    varied = [f for f in factors if any(f in r and r[f] != defaults[f] for r in records)]
    long = []
    for rec in records:
        differs = [f for f in factors if f in rec and rec[f] != defaults[f]]
        base = {"objective": objective_label(rec.get("objective")), **{m: rec.get(m) for m in metrics}}
        if not differs:
            long += [{**base, "factor": f, "value": defaults[f]} for f in varied] or [{**base, "factor": "defaults", "value": "-"}]
        elif len(differs) == 1:
            long.append({**base, "factor": differs[0], "value": rec[differs[0]]})
        else:
            long.append({**base, "factor": "combined", "value": ", ".join(f"{f}={rec[f]}" for f in differs)})
    if not long:
        return pd.DataFrame(columns=["objective", "factor", "value", "n"])
    frame = pd.DataFrame(long)
    frame["value"] = frame["value"].astype(str)
    grouped = frame.groupby(["objective", "factor", "value"], sort=False)
    out = grouped.size().rename("n").to_frame()
    for m in metrics:
        out[f"{m} mean"] = grouped[m].mean()
        out[f"{m} std"] = grouped[m].std(ddof=1)
    return out.reset_index()


def learning_curves(folder: str | Path) -> dict[str, list[dict]]:
    """metrics.jsonl rows of every run under ``folder``, keyed by run name."""
    return {_rel_name(d, folder): read_metrics(d) for d in find_runs(folder)}


def per_layer(table, metric: str = "entity_mrr", splits=("atomic", "test")) -> dict[str, dict[str, list]]:
    """Logit-lens values per run: {run: {split: [metric at layer 1..n]}} from the ``<split>.per_layer`` columns."""
    out: dict[str, dict[str, list]] = {}
    for rec in table.to_dict("records"):
        name = f"{rec['run']} ({REVERSE_AUG_LABEL})" if rec.get("note") == REVERSE_AUG_LABEL else rec["run"]
        for split in splits:
            layers = rec.get(f"{split}.per_layer")
            if isinstance(layers, list) and layers:
                out.setdefault(name, {})[split] = [layer.get(metric) for layer in layers]
    return out


SUMMARY_COLUMNS = ("run", "objective", "note", "state", "step", "k_pred", "jepa_metric", "lambda_jepa", "loss_dropout",
                   "seed", "atomic.exact_match", "test.exact_match", "atomic.entity_mrr", "test.entity_mrr")


def summary(table):
    """The columns a reader compares first, one row per run."""
    return table[[c for c in SUMMARY_COLUMNS if c in table]]


# -- command line ------------------------------------------------------------------------------
def add_sweep_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("file", help="sweep file (YAML): base config + runs/vary/grid of TrainConfig fields")
    mode = p.add_mutually_exclusive_group()
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
    p.add_argument("--jobs", type=int, default=1, help="with --local: run N papermill executions at a time")
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
        if not (args.local or args.slurm):
            print("error: choose --local (run here) or --slurm (array job); --list shows the runs", file=sys.stderr)
            return 2
        if args.local:
            if args.dry_run:
                print("--dry-run applies to --slurm; with --local use --list to see the runs", file=sys.stderr)
                return 2
            outcomes = run_local(sweep, args.out, kernel_name=args.kernel, jobs=args.jobs)
            folder = Path(args.out) / sweep.name
            table = collect(folder)
            table_path = folder / "results.csv"
            atomic_write_text(table_path, table.to_csv(index=False))
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
    params = resolve_params(overrides, preset, where=str(path))
    for f in _PATH_FIELDS:
        if isinstance(params.get(f), str) and params[f] and not os.path.isabs(params[f]):
            params[f] = str(Path(params[f]).resolve())
    params[RUN_DIR_FIELD] = str(Path(out).resolve())
    return params


def params_main(args: argparse.Namespace) -> int:
    import yaml
    try:
        params = single_run_params(args.file, args.out, preset=args.preset, index=args.index)
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(yaml.safe_dump(params, sort_keys=False), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m jepa_kit.runs sweep|runs|params ...`` (the sbatch scripts call ``params``)."""
    parser = argparse.ArgumentParser(prog="python -m jepa_kit.runs")
    sub = parser.add_subparsers(dest="command", required=True)
    add_sweep_arguments(sub.add_parser("sweep", help="papermill runs of the training notebook"))
    add_runs_arguments(sub.add_parser("runs", help="state of every run in a folder"))
    p = sub.add_parser("params", help="print one run's full TrainConfig as YAML (papermill -f)")
    p.add_argument("file", help="a sweep file or a flat YAML of TrainConfig fields")
    p.add_argument("--out", required=True, help="the run directory")
    p.add_argument("--preset")
    p.add_argument("--index", type=int, default=0, help="which run of a sweep file (default 0)")
    args = parser.parse_args(argv)
    return {"sweep": sweep_main, "runs": runs_main, "params": params_main}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
