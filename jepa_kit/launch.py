"""Running the runs of a sweep: papermill executions here, or one SLURM array job.

Locally, ``run_local`` executes ``notebooks/02_train.ipynb`` once per run (one after another, or
``jobs`` at a time) and reports a failed run by its cell error without stopping the sweep;
``render_report`` executes the analysis notebook and exports it to HTML. On a cluster,
``write_slurm_sweep`` fills ``slurm/sweep_array.sbatch`` with one shell-quoted papermill line
per array task and ``submit`` hands it to sbatch. The runs themselves come from
``jepa_kit.sweeps``; their results are read by ``jepa_kit.collect``.

Imports neither torch nor pandas at import time (papermill and jupyter on first use).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from jepa_kit.files import atomic_write_text
from jepa_kit.sweeps import (DEFAULT_OUTPUT, REPO_ROOT, TRAIN_NOTEBOOK, PlannedRun, Sweep, SweepError, _safe, load_sweep,
                             plan)

ANALYSIS_NOTEBOOK = REPO_ROOT / "notebooks" / "03_reverse_accuracy.ipynb"
SWEEP_TEMPLATE = REPO_ROOT / "slurm" / "sweep_array.sbatch"


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

        from jepa_kit.datagen import ensure_data
        for data in sorted({r.params.get("data") for r in planned if r.params.get("data")}):
            ensure_data(data)  # here, once, rather than two runs generating the same dataset at once
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            outcomes = list(pool.map(one, range(1, n + 1), planned))
    else:
        outcomes = [one(i, run) for i, run in enumerate(planned, 1)]
    failed = [o for o in outcomes if not o.ok]
    log(f"{len(outcomes) - len(failed)} finished, {len(failed)} failed")
    return outcomes


def run_sweep_local(sweep: Sweep, out_dir: str | Path = DEFAULT_OUTPUT, kernel_name: str | None = None,
                    jobs: int = 1) -> bool:
    """``jepa-kit sweep FILE --local``: every run here, then one table of them all in
    OUT/<sweep>/results.csv (``jepa_kit.collect.collect``). True when every run finished."""
    from jepa_kit.collect import collect
    outcomes = run_local(sweep, out_dir, kernel_name=kernel_name, jobs=jobs)
    folder = Path(out_dir) / sweep.name
    table = collect(folder)
    table_path = folder / "results.csv"
    atomic_write_text(table_path, table.to_csv(index=False))
    print(f"collected {len(table)} runs -> {table_path}")
    return all(o.ok for o in outcomes)


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


def slurm_dry_run(sweep: Sweep, out_dir: str | Path = DEFAULT_OUTPUT, **settings) -> str:
    """The array script ``write_slurm_sweep`` would write, without writing anything."""
    planned = plan(sweep.runs, out_dir, sweep.preset, sweep.name, sweep.source)
    folder = Path(out_dir).resolve() / sweep.name
    merged = {**sweep.slurm, **{k: v for k, v in settings.items() if v is not None}}
    return slurm_array_script(planned, folder, notebook=sweep.notebook, job_name=sweep.name, **merged)


def write_slurm_sweep(sweep: Sweep, out_dir: str | Path = DEFAULT_OUTPUT, **settings) -> tuple[Path, str]:
    """Plan the sweep and write its array script to OUT/<sweep>/sweep_array.sbatch."""
    planned = plan(sweep.runs, out_dir, preset=sweep.preset, sweep_name=sweep.name, where=sweep.source)
    folder = Path(out_dir).resolve() / sweep.name
    settings = {**sweep.slurm, **{k: v for k, v in settings.items() if v is not None}}
    from jepa_kit.datagen import ensure_data  # numpy and torch: only when a script is written
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
