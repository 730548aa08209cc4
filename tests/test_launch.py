"""Launching runs: SLURM array scripts (quoting!), `jepa-kit sweep --slurm`, and how a failed papermill run is described.

The local sweep (`jepa-kit sweep FILE --local`, real papermill runs) is tested in test_notebooks.py,
where its runs also feed the analysis notebook.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import sbatch_options
from jepa_kit import cli, launch, sweeps

ROOT = Path(__file__).resolve().parents[1]


def _stub(bin_dir: Path, name: str, body: str = "") -> None:
    """An executable that appends its name and arguments (JSON) to $STUB_LOG, then runs ``body``."""
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\n"
                    "import json, os, sys\n"
                    "with open(os.environ['STUB_LOG'], 'a') as f:\n"
                    "    f.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + '\\n')\n"
                    + textwrap.dedent(body))
    path.chmod(0o755)


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


HOSTILE = ["x; touch PWNED", "$(touch PWNED2)", "`touch PWNED3`", "it's \"quoted\" & > PWNED4", "multi\nline; touch PWNED5"]


def test_parameter_values_reach_the_shell_quoted(tmp_path, monkeypatch):
    # a fake repository root, so that whatever the script runs stays inside tmp_path
    fake_repo = tmp_path / "repo"
    (fake_repo / "slurm").mkdir(parents=True)
    shutil.copy(ROOT / "slurm" / "lib.sh", fake_repo / "slurm" / "lib.sh")
    monkeypatch.setattr(launch, "REPO_ROOT", fake_repo)
    monkeypatch.chdir(tmp_path)
    planned = sweeps.plan([{"data": str(tmp_path / v)} for v in HOSTILE], tmp_path / "out", preset="tiny", sweep_name="hostile")
    script = launch.slurm_array_script(planned, tmp_path / "out" / "hostile", job_name="hostile", account="PAS1234")
    path = tmp_path / "array.sbatch"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("papermill", "scontrol"):
        _stub(bin_dir, name)
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # a symlink would lose the venv
    (bin_dir / "python").chmod(0o755)
    log = tmp_path / "calls.jsonl"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STUB_LOG": str(log), "JEPA_KIT_SKIP_ENV": "1",
           "SLURM_JOB_ID": "77"}
    from papermill.iorw import NoDatesSafeLoader
    for i, run in enumerate(planned):
        done = subprocess.run(["bash", str(path)], env={**env, "SLURM_ARRAY_TASK_ID": str(i)}, cwd=tmp_path,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        call = _calls(log)[-1]
        assert call[:3] == ["papermill", str(ROOT / "notebooks" / "02_train.ipynb"), str(run.notebook_out)]
        assert call[call.index("-k") + 1] == "jepa_kit"
        params = yaml.load(call[call.index("-y") + 1], Loader=NoDatesSafeLoader)
        assert params == run.params  # every value arrives intact, types included
        assert params["data"].endswith(HOSTILE[i])
    assert not [p for p in tmp_path.rglob("PWNED*")], "a parameter value was executed by the shell"
    assert not list(Path.cwd().glob("PWNED*"))
    out_of_range = subprocess.run(["bash", str(path)], env={**env, "SLURM_ARRAY_TASK_ID": "99"}, cwd=tmp_path,
                                  capture_output=True, text=True)
    assert out_of_range.returncode == 2 and "no task 99" in out_of_range.stderr


def test_slurm_settings_are_checked_before_they_reach_an_sbatch_line(tmp_path):
    planned = sweeps.plan([{}], tmp_path, preset="tiny")
    with pytest.raises(sweeps.SweepError, match=r"slurm.account = 'PAS 1; rm': only letters"):
        launch.slurm_array_script(planned, tmp_path, account="PAS 1; rm")
    with pytest.raises(sweeps.SweepError, match="unknown slurm setting 'qos'"):
        launch.slurm_array_script(planned, tmp_path, qos="high")
    with pytest.raises(sweeps.SweepError, match="the sweep has no runs"):
        launch.slurm_array_script([], tmp_path)
    with pytest.raises(sweeps.SweepError, match=r"slurm.cpus_per_task = 'eight': a whole number is needed"):
        launch.slurm_array_script(planned, tmp_path, account="PAS1", cpus_per_task="eight")
    with pytest.raises(sweeps.SweepError, match="gpus_per_node must be 0 or more"):
        launch.slurm_array_script(planned, tmp_path, account="PAS1", gpus_per_node=-1)


@pytest.fixture
def no_account_env(monkeypatch):
    monkeypatch.delenv("SBATCH_ACCOUNT", raising=False)


def test_an_account_is_required_or_taken_from_sbatch_account(tmp_path, monkeypatch, no_account_env):
    planned = sweeps.plan([{}], tmp_path, preset="tiny")
    with pytest.raises(sweeps.SweepError, match="no SLURM account: pass --account PAS1234.*export SBATCH_ACCOUNT"):
        launch.slurm_array_script(planned, tmp_path)
    monkeypatch.setenv("SBATCH_ACCOUNT", "PAS4321")
    assert sbatch_options(launch.slurm_array_script(planned, tmp_path))["--account"] == "PAS4321"
    # the command line (or the sweep file) wins over the environment
    assert sbatch_options(launch.slurm_array_script(planned, tmp_path, account="PAS1"))["--account"] == "PAS1"


def test_dry_run_without_an_account_says_so_loudly(capsys, tmp_path, no_account_env):
    rc = cli.main(["sweep", str(ROOT / "papermill_runs" / "jepa.yaml"), "--preset", "paper", "--slurm", "--dry-run",
                   "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 0
    assert "warning: no SLURM account given" in err and "sbatch rejects" in err
    assert sbatch_options(out)["--account"] == "NO_ACCOUNT_GIVEN"
    assert "# NO ACCOUNT GIVEN: sbatch will reject this script" in out


def test_slurm_without_an_account_refuses_before_writing_or_submitting(tmp_path, capsys, monkeypatch, no_account_env):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "sbatch")
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("STUB_LOG", str(log))
    rc = cli.main(["sweep", str(ROOT / "papermill_runs" / "jepa.yaml"), "--preset", "paper", "--slurm",
                   "--out", str(tmp_path / "out")])
    assert rc == 2
    assert "error: no SLURM account: pass --account PAS1234" in capsys.readouterr().err
    assert _calls(log) == [] and not (tmp_path / "out").exists()


def test_gpu_cpu_partition_and_walltime_flags_set_the_sbatch_lines(capsys, tmp_path, no_account_env):
    sweep = str(ROOT / "papermill_runs" / "jepa.yaml")
    rc = cli.main(["sweep", sweep, "--preset", "paper", "--slurm", "--dry-run", "--out", str(tmp_path),
                   "--account", "PAS1234", "--gpus", "2", "--cpus", "16", "--partition", "gpuserial", "--time", "08:00:00"])
    out, err = capsys.readouterr()
    assert rc == 0 and err == ""
    options = sbatch_options(out)
    assert (options["--gpus-per-node"], options["--cpus-per-task"], options["--partition"], options["--time"]) == \
        ("2", "16", "gpuserial", "08:00:00")
    assert options["--account"] == "PAS1234"
    # defaults: one GPU, 8 cores, no partition line (OSC Ascend's GPU examples name none)
    assert cli.main(["sweep", sweep, "--preset", "paper", "--slurm", "--dry-run", "--out", str(tmp_path),
                     "--account", "PAS1234"]) == 0
    options = sbatch_options(capsys.readouterr().out)
    assert (options["--gpus-per-node"], options["--cpus-per-task"]) == ("1", "8") and "--partition" not in options
    # --gpus 0: a CPU job, no GPU line
    assert cli.main(["sweep", sweep, "--slurm", "--dry-run", "--out", str(tmp_path), "--account", "PAS1234",
                     "--gpus", "0", "--partition", "cpuonly"]) == 0
    out, err = capsys.readouterr()
    options = sbatch_options(out)
    assert "--gpus-per-node" not in options and options["--partition"] == "cpuonly"
    assert "warning" not in err, "tiny runs on CPU nodes are what tiny is for"


def test_cpu_sized_runs_on_gpu_nodes_are_warned_about(capsys, tmp_path):
    ablations = str(ROOT / "papermill_runs" / "ablations.yaml")
    assert cli.main(["sweep", ablations, "--slurm", "--dry-run", "--out", str(tmp_path), "--account", "PAS1234"]) == 0
    err = capsys.readouterr().err
    assert ("warning: 36 of 36 runs use the CPU-sized model preset 'tiny', yet each array task asks for 1 GPU(s) "
            "for 04:00:00 (36 GPUs in all): use --preset paper") in err
    assert "--gpus 0 --partition cpuonly" in err
    assert cli.main(["sweep", ablations, "--preset", "paper", "--slurm", "--dry-run", "--out", str(tmp_path),
                     "--account", "PAS1234"]) == 0
    assert "CPU-sized" not in capsys.readouterr().err


def test_dry_run_prints_a_valid_array_script(capsys, tmp_path):
    rc = cli.main(["sweep", str(ROOT / "papermill_runs" / "ablations.yaml"), "--preset", "paper", "--slurm", "--dry-run",
                   "--out", str(tmp_path), "--account", "PAS1234", "--time", "02:00:00"])
    script = capsys.readouterr().out
    assert rc == 0
    assert script.startswith("#!/bin/bash\n")
    options = sbatch_options(script)
    assert options["--array"] == "0-35%12"
    assert options["--account"] == "PAS1234" and options["--time"] == "02:00:00"
    assert options["--signal"] == "B:USR1@300" and "--requeue" in options
    assert options["--output"] == f"{tmp_path}/ablations/slurm/%x-%A_%a.out"
    assert len(re.findall(r"^    \d+\) # ", script, flags=re.M)) == 36
    assert "The task below is an example" not in script and "# example" not in script, "the template's own comment"
    assert script.splitlines()[1].startswith("# Generated by jepa-kit sweep (ablations, 36 runs)")
    path = tmp_path / "dry.sbatch"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    assert not (tmp_path / "ablations").exists(), "--dry-run writes nothing"


def test_sweep_command_needs_a_mode(capsys):
    sweep = str(ROOT / "papermill_runs" / "jepa.yaml")
    assert cli.main(["sweep", sweep]) == 2
    assert "choose --local (run here) or --slurm" in capsys.readouterr().err
    assert cli.main(["sweep", sweep, "--local", "--dry-run"]) == 2
    assert "--dry-run applies to --slurm" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["sweep", sweep, "--local", "--slurm"])
    assert exit_.value.code == 2


def test_slurm_writes_the_script_and_submits_it_with_sbatch(tmp_path, tiny_data, capsys, monkeypatch):
    sweep = tmp_path / "two.yaml"
    sweep.write_text(f"name: two\npreset: tiny\nbase: {{data: {tiny_data}}}\ngrid: {{seed: [0, 1]}}\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "sbatch", "print('Submitted batch job 4242')\n")
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("STUB_LOG", str(log))
    monkeypatch.setenv("SBATCH_ACCOUNT", "PAS7777")
    assert cli.main(["sweep", str(sweep), "--slurm", "--out", str(tmp_path / "out")]) == 0
    script = tmp_path / "out" / "two" / "sweep_array.sbatch"
    assert _calls(log) == [["sbatch", str(script)]]
    out, err = capsys.readouterr()
    assert "Submitted batch job 4242" in out
    assert "warning: 2 of 2 runs use the CPU-sized model preset 'tiny'" in err
    assert "#SBATCH --array=0-1\n" in script.read_text()
    assert "#SBATCH --account=PAS7777\n" in script.read_text()
    assert (tmp_path / "out" / "two" / "slurm").is_dir(), "the log folder must exist before the job starts"
    plan = json.loads((tmp_path / "out" / "two" / "sweep_plan.json").read_text())
    assert [p["name"] for p in plan] == ["default_seed=0", "default_seed=1"]


def test_sbatch_missing_or_failing_is_a_sweep_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    with pytest.raises(sweeps.SweepError, match="sbatch not found"):
        launch.submit(tmp_path / "x.sbatch")
    (tmp_path / "sbatch").write_text("#!/bin/sh\necho 'invalid account' >&2\nexit 1\n")
    (tmp_path / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with pytest.raises(sweeps.SweepError, match=r"sbatch failed \(exit 1\): invalid account"):
        launch.submit(tmp_path / "x.sbatch")


def test_a_failed_cell_is_described_in_one_line():
    class CellError(Exception):  # what papermill raises: the cell, the exception's name and value
        ename, evalue, cell_index = "ConfigError", "batch_size 1000000 is larger than the data\nmore", 5

    assert launch.describe_error(CellError()) == "cell 5: ConfigError: batch_size 1000000 is larger than the data"
    assert launch.describe_error(RuntimeError("kernel died")) == "RuntimeError: kernel died"
