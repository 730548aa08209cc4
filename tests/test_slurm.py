"""The sbatch scripts: syntax, #SBATCH headers, and their bodies run with SLURM variables set and
papermill/torchrun/scontrol/sbatch/srun/conda/module replaced by stubs that record their arguments."""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from conftest import sbatch_options

ROOT = Path(__file__).resolve().parents[1]
SLURM = ROOT / "slurm"
SBATCH_FILES = ["train_notebook.sbatch", "sweep_array.sbatch", "train_ddp.sbatch"]


@pytest.mark.parametrize("name", SBATCH_FILES + ["setup_osc_env.sh", "lib.sh"])
def test_bash_syntax(name):
    subprocess.run(["bash", "-n", str(SLURM / name)], check=True)


@pytest.mark.parametrize("name", SBATCH_FILES)
def test_sbatch_header(name):
    options = sbatch_options((SLURM / name).read_text(), name)
    assert options["--signal"] == "B:USR1@300", "a checkpoint signal before the walltime, to the batch shell"
    assert "--requeue" in options and options["--open-mode"] == "append"
    for key in ("--time", "--gpus-per-node", "--cpus-per-task", "--output", "--job-name"):
        assert options.get(key), f"{name}: {key} missing"
    # no placeholder account that sbatch would keep silently (sbatch -A or $SBATCH_ACCOUNT gives it), and
    # no partition: OSC Ascend's GPU examples name none
    assert "--account" not in options and "--partition" not in options
    assert re.fullmatch(r"\d+:\d\d:\d\d", options["--time"])


def test_readme_names_every_script():
    text = (SLURM / "README.md").read_text()
    for name in SBATCH_FILES + ["setup_osc_env.sh"]:
        assert name in text


# -- running the bodies with stubs ---------------------------------------------------------------

STUB = """#!{python}
import json, os, sys
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")
"""

# papermill stand-in: reads its -f params file, writes status.json in the run directory. With
# STUB_MODE=signal it starts a child (the "kernel") that waits for USR1, marks the run preempted
# and exits 1, as jepa_kit.train under papermill does.
PAPERMILL = STUB + """
import subprocess, time
args = sys.argv[1:]
params = {}
if "-f" in args:
    import yaml
    params = yaml.safe_load(open(args[args.index("-f") + 1]))
run_dir = os.environ.get("STUB_RUN_DIR") or params.get("out")
mode = os.environ.get("STUB_MODE", "finished")
def status(state):
    os.makedirs(run_dir, exist_ok=True)
    json.dump({"state": state}, open(os.path.join(run_dir, "status.json"), "w"))
if mode == "signal":
    kernel = '''
import json, os, signal, sys, time
got = []
signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
open(os.environ["STUB_READY"], "w").close()
while not got:
    time.sleep(0.05)
json.dump({"state": "preempted"}, open(os.path.join(sys.argv[1], "status.json"), "w"))
sys.exit(1)
'''
    os.makedirs(run_dir, exist_ok=True)
    rc = subprocess.call([sys.executable, "-c", kernel, run_dir])
    open(os.environ["STUB_LOG"] + ".papermill_survived", "w").write(str(rc))
    sys.exit(rc)
status(mode)
sys.exit(0 if mode == "finished" else 1)
"""


@pytest.fixture
def stubs(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("scontrol", "sbatch", "srun", "torchrun", "module", "conda"):
        (bin_dir / name).write_text(STUB.replace("{python}", sys.executable))
    (bin_dir / "papermill").write_text(PAPERMILL.replace("{python}", sys.executable))
    for p in bin_dir.iterdir():
        p.chmod(0o755)
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # a symlink would lose the venv
    (bin_dir / "python").chmod(0o755)  # the env's python (`conda activate` is a stub here)
    log = tmp_path / "calls.jsonl"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STUB_LOG": str(log), "SLURM_JOB_ID": "123",
           "SLURM_SUBMIT_DIR": str(ROOT), "OUT_ROOT": str(tmp_path / "out"), "SLURM_GPUS_ON_NODE": "4"}

    def calls(name=None):
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return [r for r in rows if name is None or r[0] == name]

    return env, calls


def run_script(name, env, **extra):
    return subprocess.run(["bash", str(SLURM / name)], env={**env, **extra}, capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_train_notebook_runs_papermill_with_the_resolved_config(stubs, tmp_path):
    env, calls = stubs
    done = run_script("train_notebook.sbatch", env, CONFIG="papermill_runs/jepa.yaml", PRESET="paper")
    assert done.returncode == 0, done.stderr
    assert [c[:3] for c in calls("module")] == [["module", "load", "miniconda3"]]
    assert ["conda", "activate", "jepa_kit"] in calls("conda")
    (pm,) = calls("papermill")
    run_dir = tmp_path / "out" / "single" / "jepa-paper"
    assert pm[1:3] == ["notebooks/02_train.ipynb", f"{run_dir}.ipynb"]
    assert pm[pm.index("-k") + 1] == "jepa_kit" and pm[pm.index("--cwd") + 1] == "notebooks"
    params = yaml.safe_load(Path(pm[pm.index("-f") + 1]).read_text())
    assert params["out"] == str(run_dir) and params["model"] == "paper" and params["objective"] == "jepa"
    assert params["data"] == str(ROOT / "data" / "paper")
    assert calls("scontrol") == [], "a finished run is not requeued"


def test_preempted_run_requeues_the_job(stubs):
    env, calls = stubs
    done = run_script("train_notebook.sbatch", env, CONFIG="papermill_runs/baseline.yaml", STUB_MODE="preempted")
    assert done.returncode == 0, done.stderr
    assert calls("scontrol") == [["scontrol", "requeue", "123"]]


def test_failed_run_fails_the_job_without_requeue(stubs):
    env, calls = stubs
    done = run_script("train_notebook.sbatch", env, CONFIG="papermill_runs/baseline.yaml", STUB_MODE="failed")
    assert done.returncode == 1
    assert calls("scontrol") == []


def test_usr1_reaches_the_training_kernel_then_the_job_requeues(stubs, tmp_path):
    env, calls = stubs
    ready = tmp_path / "kernel_ready"
    proc = subprocess.Popen(["bash", str(SLURM / "train_notebook.sbatch")], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**env, "CONFIG": "papermill_runs/jepa.yaml", "STUB_MODE": "signal",
                                 "STUB_READY": str(ready), "JEPA_KIT_SKIP_ENV": "1"})
    deadline = time.time() + 60
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the stub kernel never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)  # what `--signal=B:USR1@300` does: the batch shell only
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "SIGUSR1: asking the training to checkpoint" in err
    # the kernel got USR1 and papermill itself was left alone to record the notebook
    assert Path(env["STUB_LOG"] + ".papermill_survived").read_text() == "1"
    assert calls("scontrol") == [["scontrol", "requeue", "123"]]


def test_sweep_array_template_runs_its_example_task(stubs, tmp_path):
    env, calls = stubs
    # REPO: a folder with slurm/lib.sh, so that the example task's relative paths land in tmp_path
    repo = tmp_path / "repo"
    (repo / "slurm").mkdir(parents=True)
    (repo / "slurm" / "lib.sh").write_text((SLURM / "lib.sh").read_text())
    env = {**env, "REPO": str(repo)}
    done = run_script("sweep_array.sbatch", env, SLURM_ARRAY_TASK_ID="0", JEPA_KIT_SKIP_ENV="1",
                      STUB_RUN_DIR=str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    (pm,) = calls("papermill")
    assert pm[1] == "notebooks/02_train.ipynb" and pm[pm.index("-k") + 1] == "jepa_kit"
    assert yaml.safe_load(pm[pm.index("-y") + 1])["data"] == "../data/tiny"
    assert (repo / "papermill_runs" / "output" / "example").is_dir()
    missing = run_script("sweep_array.sbatch", env, SLURM_ARRAY_TASK_ID="5", JEPA_KIT_SKIP_ENV="1")
    assert missing.returncode == 2 and "no task 5" in missing.stderr
    no_array = run_script("sweep_array.sbatch", {k: v for k, v in env.items()}, JEPA_KIT_SKIP_ENV="1")
    assert no_array.returncode != 0 and "SLURM_ARRAY_TASK_ID" in no_array.stderr


def test_ddp_script_runs_torchrun_on_every_gpu_of_the_node(stubs, tmp_path):
    env, calls = stubs
    done = run_script("train_ddp.sbatch", env, CONFIG="papermill_runs/reverse_aug.yaml", PRESET="paper")
    assert done.returncode == 0, done.stderr
    (tr,) = calls("torchrun")
    assert "--nproc_per_node=4" in tr and "--standalone" in tr
    assert tr[tr.index("-m") + 1:tr.index("--config")] == ["jepa_kit", "train"]
    params = yaml.safe_load(Path(tr[tr.index("--config") + 1]).read_text())
    assert params["objective"] == "reverse_aug" and params["out"] == str(tmp_path / "out" / "single" / "reverse_aug-paper-ddp")


def test_setup_creates_the_env_and_registers_the_kernel(stubs, tmp_path):
    env, calls = stubs
    # a copy of the repository's two files, so that the script's mkdir stays in tmp_path
    repo = tmp_path / "repo"
    (repo / "slurm").mkdir(parents=True)
    for rel in ("slurm/setup_osc_env.sh", "environment.yml"):
        (repo / rel).write_text((ROOT / rel).read_text())
    bin_dir = Path(env["PATH"].split(":")[0])
    (bin_dir / "python").unlink()
    (bin_dir / "python").write_text(STUB.replace("{python}", sys.executable))  # no real kernel registration
    (bin_dir / "python").chmod(0o755)
    (bin_dir / "conda").write_text(STUB.replace("{python}", sys.executable) + textwrap.dedent("""
        if sys.argv[1:3] == ["env", "list"]:
            print(os.environ.get("STUB_CONDA_ENVS", "# conda environments:"))
        """))
    done = subprocess.run(["bash", str(repo / "slurm" / "setup_osc_env.sh")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert calls("module") == [["module", "load", "miniconda3"]]
    conda = calls("conda")
    assert ["conda", "env", "create", "-n", "jepa_kit", "-f", str(repo / "environment.yml")] in conda
    assert conda.index(["conda", "activate", "jepa_kit"]) > conda.index(["conda", "shell.bash", "hook"])
    assert ["python", "-m", "ipykernel", "install", "--user", "--name", "jepa_kit",
            "--display-name", "Python (jepa_kit)"] in calls("python")
    assert (repo / "papermill_runs" / "output" / "slurm").is_dir()
    # run again with the env present: update instead of create
    again = subprocess.run(["bash", str(repo / "slurm" / "setup_osc_env.sh")], capture_output=True, text=True,
                           env={**env, "STUB_CONDA_ENVS": "jepa_kit  /home/u/.conda/envs/jepa_kit"}, timeout=60)
    assert again.returncode == 0, again.stderr
    assert ["conda", "env", "update", "-n", "jepa_kit", "-f", str(repo / "environment.yml"), "--prune"] in calls("conda")
