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


def export_notebook(notebook: str | Path, out_html: str | Path, kernel_name: str | None = None,
                    **parameters) -> Path:
    """Execute ``notebook`` with ``parameters`` (papermill, from the notebook's own folder) and
    export it to a standalone HTML page (plotly.js embedded, readable offline). The executed
    notebook is written next to the HTML (``.ipynb``). Raises papermill's error when a cell fails."""
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    executed = out_html.with_suffix(".ipynb")
    notebook = Path(notebook).resolve()
    pm.execute_notebook(str(notebook), str(executed), parameters=parameters,
                        kernel_name=kernel_name or default_kernel(), cwd=str(notebook.parent), progress_bar=False)
    html, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    from jepa_kit import viz  # the headless notebook loads plotly.js from a CDN: the report works offline
    atomic_write_text(out_html, viz.inline_plotly_js(html))
    return out_html


def render_report(runs_dir: str | Path, out_html: str | Path, notebook: str | Path = ANALYSIS_NOTEBOOK,
                  kernel_name: str | None = None, **parameters) -> Path:
    """The analysis notebook executed on ``runs_dir`` and exported (``export_notebook``)."""
    return export_notebook(notebook, out_html, kernel_name, runs_dir=str(Path(runs_dir).resolve()), **parameters)


# -- SLURM -------------------------------------------------------------------------------------
# Checked against OSC's Ascend batch limit rules
# (https://www.osc.edu/resources/technical_support/supercomputers/ascend/batch_limit_rules): GPU jobs
# there name no partition and ask for GPUs per task or node; CPU-only jobs go to `cpuonly`.
# With one task per job, --gpus-per-node and --gpus-per-task ask for the same GPUs.
SLURM_DEFAULTS = {  # #SBATCH settings a sweep file's `slurm:` section or the command line may change
    "account": None,          # required: --account, `slurm: {account: ...}` or $SBATCH_ACCOUNT
    "partition": None,        # none: the cluster's default (OSC Ascend GPU jobs give none)
    "time": "04:00:00",
    "gpus_per_node": 1,       # 0: a CPU-only job (no --gpus-per-node line)
    "cpus_per_task": 8,
    "max_parallel": 0,        # array throttle (%N); 0 = no limit
    "kernel": "jepa_kit",     # the Jupyter kernel registered by slurm/setup_osc_env.sh
    "conda_env": "jepa_kit",
    "signal_seconds": 300,    # USR1 this long before walltime: checkpoint, then requeue
}
NO_ACCOUNT = "NO_ACCOUNT_GIVEN"  # what --dry-run shows without an account; sbatch rejects it
_SBATCH_VALUE = re.compile(r"^[A-Za-z0-9_.:,@%/+=-]+$")  # no spaces or shell syntax on an #SBATCH line
_TASKS_BEGIN, _TASKS_END = "# >>> tasks", "# <<< tasks"


def _sbatch_value(key: str, value) -> str:
    text = str(value)
    if not _SBATCH_VALUE.match(text):
        raise SweepError(f"slurm.{key} = {text!r}: only letters, digits and _.:,@%/+=- are allowed")
    return text


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def slurm_settings(*layers: dict) -> dict:
    """SLURM_DEFAULTS, then each layer (the sweep file's `slurm:`, then the command line) where it
    gives a value; the account falls back to $SBATCH_ACCOUNT (sbatch's own variable)."""
    unknown = set().union(*map(set, layers)) - set(SLURM_DEFAULTS) if layers else set()
    if unknown:
        raise SweepError(f"unknown slurm setting {sorted(unknown)[0]!r}; known: {', '.join(SLURM_DEFAULTS)}")
    s = dict(SLURM_DEFAULTS)
    for layer in layers:
        s.update({k: v for k, v in layer.items() if v is not None})
    if not s["account"]:
        s["account"] = os.environ.get("SBATCH_ACCOUNT") or None
    for key in ("gpus_per_node", "cpus_per_task", "max_parallel", "signal_seconds"):
        try:
            s[key] = int(s[key])
        except (TypeError, ValueError):
            raise SweepError(f"slurm.{key} = {s[key]!r}: a whole number is needed") from None
    return s


def slurm_warnings(planned: list[PlannedRun], settings: dict) -> list[str]:
    """What a user would regret after submitting: CPU-sized runs (model preset ``tiny``) on GPU nodes."""
    s = slurm_settings(settings)
    gpus = int(s["gpus_per_node"])
    tiny = [r for r in planned if r.params.get("model") == "tiny"]
    if gpus <= 0 or not tiny:
        return []
    return [f"{len(tiny)} of {len(planned)} runs use the CPU-sized model preset 'tiny', yet each array task "
            f"asks for {gpus} GPU(s) for {s['time']} ({gpus * len(planned)} GPUs in all): use --preset paper "
            f"(or gpu) for GPU-sized runs, or --gpus 0 --partition cpuonly to send tiny runs to CPU nodes"]


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
                       job_name: str = "jepa-sweep", template: str | Path = SWEEP_TEMPLATE,
                       placeholder_account: bool = False, **settings) -> str:
    """Fill slurm/sweep_array.sbatch: #SBATCH settings, the array range, one papermill line per task.

    An account is required (``account=`` or $SBATCH_ACCOUNT); ``placeholder_account`` writes
    NO_ACCOUNT_GIVEN instead, for a dry run that says so. ``partition=None`` writes no partition
    line and ``gpus_per_node=0`` no GPU line."""
    s = slurm_settings(settings)
    if not planned:
        raise SweepError("the sweep has no runs")
    if int(s["gpus_per_node"]) < 0 or int(s["cpus_per_task"]) < 1:
        raise SweepError(f"slurm: gpus_per_node must be 0 or more and cpus_per_task 1 or more, "
                         f"not {s['gpus_per_node']} and {s['cpus_per_task']}")
    if not s["account"]:
        if not placeholder_account:
            raise SweepError("no SLURM account: pass --account PAS1234, set `slurm: {account: PAS1234}` in the "
                             "sweep file, or export SBATCH_ACCOUNT=PAS1234")
        s["account"] = NO_ACCOUNT
    text = Path(template).read_text()
    logs = Path(out_dir).resolve() / "slurm"
    throttle = f"%{int(s['max_parallel'])}" if int(s["max_parallel"]) > 0 else ""
    gpus = int(s["gpus_per_node"])
    directives = {  # None: no such line in the script
        "--job-name": _safe(job_name),
        "--account": _sbatch_value("account", s["account"]),
        "--partition": _sbatch_value("partition", s["partition"]) if s["partition"] else None,
        "--time": _sbatch_value("time", s["time"]),
        "--gpus-per-node": str(gpus) if gpus > 0 else None,
        "--cpus-per-task": _sbatch_value("cpus_per_task", s["cpus_per_task"]),
        "--array": f"0-{len(planned) - 1}{throttle}",
        "--output": _sbatch_value("output", f"{logs}/%x-%A_%a.out"),
        "--signal": f"B:USR1@{int(s['signal_seconds'])}",
    }
    in_template = set(re.findall(r"^#SBATCH (--[a-z-]+)", text, flags=re.M))
    header, lines = True, []
    for line in text.splitlines()[1:]:
        m = re.match(r"^#SBATCH (--[a-z-]+)", line)
        if header and not m:
            continue  # the template's own comment: replaced by the header below
        header = False
        if m and m.group(1) in directives:
            if directives[m.group(1)] is None:
                continue
            line = f"#SBATCH {m.group(1)}={directives[m.group(1)]}"
            if m.group(1) == "--job-name":  # the lines the template lacks (account, partition) go after it
                lines.append(line)
                line = "\n".join(f"#SBATCH {k}={v}" for k, v in directives.items()
                                 if v is not None and k not in in_template)
                if not line:
                    continue
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
    head = [f"# Generated by jepa-kit sweep ({_safe(job_name)}, {len(planned)} runs) on {_dt.datetime.now():%Y-%m-%d %H:%M}.",
            f"# Array task i runs one papermill execution of {Path(notebook).name} (the table below).",
            f"# USR1 arrives {int(s['signal_seconds'])} s before the walltime: the run checkpoints and the task",
            "# requeues itself; the next start resumes the same run directory."]
    if s["account"] == NO_ACCOUNT:
        head.append("# NO ACCOUNT GIVEN: sbatch will reject this script. Use --account PAS1234 or SBATCH_ACCOUNT.")
    return "#!/bin/bash\n" + "\n".join(head) + "\n" + text


def slurm_dry_run(sweep: Sweep, out_dir: str | Path = DEFAULT_OUTPUT, warn=_warn, **settings) -> str:
    """The array script ``write_slurm_sweep`` would write, without writing anything. Without an
    account it shows NO_ACCOUNT_GIVEN and says so through ``warn``, with slurm_warnings'."""
    planned = plan(sweep.runs, out_dir, sweep.preset, sweep.name, sweep.source)
    folder = Path(out_dir).resolve() / sweep.name
    merged = slurm_settings(sweep.slurm, settings)
    if not merged["account"]:
        warn("no SLURM account given (--account, the sweep file's slurm.account or $SBATCH_ACCOUNT): "
             f"the script below shows --account={NO_ACCOUNT}, which sbatch rejects; --slurm without --dry-run refuses")
    for message in slurm_warnings(planned, merged):
        warn(message)
    return slurm_array_script(planned, folder, notebook=sweep.notebook, job_name=sweep.name,
                              placeholder_account=True, **merged)


def write_slurm_sweep(sweep: Sweep, out_dir: str | Path = DEFAULT_OUTPUT, warn=_warn, **settings) -> tuple[Path, str]:
    """Plan the sweep and write its array script to OUT/<sweep>/sweep_array.sbatch. A SweepError
    when no account is given; slurm_warnings' messages go to ``warn``."""
    planned = plan(sweep.runs, out_dir, preset=sweep.preset, sweep_name=sweep.name, where=sweep.source)
    folder = Path(out_dir).resolve() / sweep.name
    settings = slurm_settings(sweep.slurm, settings)
    script = slurm_array_script(planned, folder, notebook=sweep.notebook, job_name=sweep.name, **settings)
    for message in slurm_warnings(planned, settings):
        warn(message)
    from jepa_kit.datagen import ensure_data  # numpy and torch: only when a script is written
    for data in sorted({r.params.get("data") for r in planned if r.params.get("data")}):
        ensure_data(data)  # here, once, rather than racing in every array task
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
