"""Sweep files, run naming, SLURM array scripts (quoting!), run status and the local papermill sweep."""
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
from jepa_kit import runs

ROOT = Path(__file__).resolve().parents[1]

def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


# -- expansion and names -------------------------------------------------------------------------

def test_expand_combines_runs_vary_and_grid_and_drops_duplicates():
    spec = {"base": {"objective": "jepa"}, "runs": [{"lr": 1e-3}, {"lr": 1e-3}, {"lr": 3e-3}],
            "vary": {"k_pred": [0, 2], "lambda_jepa": [2.0]}, "grid": {"seed": [0, 1]}}
    out = runs.expand(spec)
    # 2 distinct runs x 3 one-factor variants x 2 seeds
    assert len(out) == 12
    assert out[0] == {"objective": "jepa", "lr": 1e-3, "k_pred": 0, "seed": 0}
    assert {"objective": "jepa", "lr": 3e-3, "lambda_jepa": 2.0, "seed": 1} in out
    assert not any("k_pred" in r and "lambda_jepa" in r for r in out), "vary changes one factor at a time"


def test_presets_section_applies_under_base():
    spec = {"presets": {"tiny": {"data": "d/tiny", "lr": 1.0}, "paper": {"data": "d/paper"}}, "base": {"lr": 2.0}}
    assert runs.expand(spec, "tiny") == [{"data": "d/tiny", "lr": 2.0}]
    assert runs.expand(spec, "paper") == [{"data": "d/paper", "lr": 2.0}]


def test_ablations_file_is_one_factor_at_a_time_with_three_seeds(tmp_path):
    for preset, model in (("tiny", "tiny"), ("paper", "paper")):
        sweep = runs.load_sweep(ROOT / "papermill_runs" / "ablations.yaml", preset=preset)
        planned = runs.plan(sweep.runs, tmp_path, sweep.preset, sweep.name)
        # the default appears in every factor's list but runs once: (1 + 3 + 3 + 3 + 2) x 3 seeds
        assert len(planned) == 36
        names = [p.name for p in planned]
        assert len(set(names)) == 36
        assert {"default_seed=0", "k_pred=0_seed=2", "jepa_metric=infonce_seed=1", "lambda_jepa=0.5_seed=0",
                "loss_dropout=0.75_seed=2"} <= set(names)
        for p in planned:
            assert re.fullmatch(r"[A-Za-z0-9._=+-]+", p.name)
            assert p.run_dir == tmp_path / "ablations" / p.name
            assert p.params["out"] == str(p.run_dir)
            assert p.params["model"] == model and p.params["data"].endswith(f"data/{preset}")
            varied = [k for k, d in (("k_pred", 1), ("jepa_metric", "cosine"), ("lambda_jepa", 1.0), ("loss_dropout", 0.0))
                      if p.params[k] != d]
            assert len(varied) <= 1
        assert {p.params["seed"] for p in planned} == {0, 1, 2}


def test_every_papermill_runs_file_expands_for_both_presets(tmp_path):
    # the baselines run the three seeds the ablation study compares against
    objectives = {"baseline": ("ntp", [0, 1, 2]), "jepa": ("jepa", [0]), "reverse_aug": ("reverse_aug", [0, 1, 2])}
    for name, (objective, seeds) in objectives.items():
        for preset in ("tiny", "paper"):
            sweep = runs.load_sweep(ROOT / "papermill_runs" / f"{name}.yaml", preset=preset)
            planned = runs.plan(sweep.runs, tmp_path, sweep.preset, sweep.name)
            assert [r.params["objective"] for r in planned] == [objective] * len(seeds)
            assert [r.params["seed"] for r in planned] == seeds
    tiny = runs.load_sweep(ROOT / "papermill_runs" / "jepa.yaml")
    assert tiny.preset == "tiny"


def test_names_come_from_what_sets_runs_apart():
    names = runs.run_names([{"objective": "ntp"}, {"objective": "jepa"}, {"objective": "reverse_aug"}])
    assert names == ["objective=ntp", "objective=jepa", "objective=reverse_aug"]
    assert runs.run_names([{"seed": 0}, {"seed": 1}]) == ["default_seed=0", "default_seed=1"]
    assert runs.run_names([{}]) == ["default"]
    # the most common value is the reference; only the odd one out is named, and its name is file- and shell-safe
    assert runs.run_names([{"data": "c", "lr": 1}, {"data": "c", "lr": 2}, {"data": "a/b; rm -rf ~", "lr": 1}]) == [
        "default", "lr=2", "data=a-b-rm--rf"]


def test_unknown_field_and_bad_value_name_the_file(tmp_path):
    bad = write(tmp_path / "bad.yaml", "base: {k: 2}\n")
    with pytest.raises(runs.SweepError, match=r"bad\.yaml: unknown parameter 'k'.*k_pred"):
        runs.plan(runs.load_sweep(bad).runs, tmp_path, where=str(bad))
    neg = write(tmp_path / "neg.yaml", "preset: tiny\nbase: {lambda_jepa: -1}\n")
    with pytest.raises(runs.SweepError, match=r"neg\.yaml.*lambda_jepa"):
        sweep = runs.load_sweep(neg)
        runs.plan(sweep.runs, tmp_path, sweep.preset, where=sweep.source)
    with pytest.raises(runs.SweepError, match="unknown preset 'huge'"):
        runs.load_sweep(ROOT / "papermill_runs" / "jepa.yaml", preset="huge")
    with pytest.raises(runs.SweepError, match="'out' is chosen by the sweep"):
        runs.plan([{"out": "/x"}], tmp_path)


def test_yaml_is_read_with_a_safe_loader(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = write(tmp_path / "evil.yaml", """\
        base:
          data: !!python/object/apply:os.system ["touch PWNED"]
        """)
    with pytest.raises(runs.SweepError, match="not valid YAML"):
        runs.load_sweep(evil)
    assert not (tmp_path / "PWNED").exists()


# -- SLURM ---------------------------------------------------------------------------------------

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
    monkeypatch.setattr(runs, "REPO_ROOT", fake_repo)
    monkeypatch.chdir(tmp_path)
    planned = runs.plan([{"data": str(tmp_path / v)} for v in HOSTILE], tmp_path / "out", preset="tiny", sweep_name="hostile")
    script = runs.slurm_array_script(planned, tmp_path / "out" / "hostile", job_name="hostile")
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


def test_dry_run_prints_a_valid_array_script(capsys, tmp_path):
    rc = runs.sweep_main([str(ROOT / "papermill_runs" / "ablations.yaml"), "--preset", "paper", "--slurm", "--dry-run",
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
    path = tmp_path / "dry.sbatch"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    assert not (tmp_path / "ablations").exists(), "--dry-run writes nothing"


def test_slurm_writes_the_script_and_submits_it_with_sbatch(tmp_path, tiny_data, capsys, monkeypatch):
    sweep = write(tmp_path / "two.yaml", f"""\
        name: two
        preset: tiny
        base: {{data: {tiny_data}}}
        grid: {{seed: [0, 1]}}
        """)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "sbatch", "print('Submitted batch job 4242')\n")
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("STUB_LOG", str(log))
    assert runs.sweep_main([str(sweep), "--slurm", "--out", str(tmp_path / "out")]) == 0
    script = tmp_path / "out" / "two" / "sweep_array.sbatch"
    assert _calls(log) == [["sbatch", str(script)]]
    assert "Submitted batch job 4242" in capsys.readouterr().out
    assert "#SBATCH --array=0-1\n" in script.read_text()
    assert (tmp_path / "out" / "two" / "slurm").is_dir(), "the log folder must exist before the job starts"
    plan = json.loads((tmp_path / "out" / "two" / "sweep_plan.json").read_text())
    assert [p["name"] for p in plan] == ["default_seed=0", "default_seed=1"]


def test_params_command_resolves_one_run(tmp_path, capsys):
    rc = runs.main(["params", str(ROOT / "papermill_runs" / "ablations.yaml"), "--index", "4", "--out", str(tmp_path / "r")])
    params = yaml.safe_load(capsys.readouterr().out)
    assert rc == 0
    assert params["out"] == str(tmp_path / "r") and params["model"] == "tiny"
    assert params["seed"] == 1 and params["k_pred"] == 1  # run 4: the default setting, seed 1
    flat = write(tmp_path / "flat.yaml", "preset: tiny\nlr: 3.0e-3\nobjective: ntp\n")
    assert runs.main(["params", str(flat), "--out", str(tmp_path / "f")]) == 0
    params = yaml.safe_load(capsys.readouterr().out)
    assert params["lr"] == 3e-3 and params["objective"] == "ntp" and params["model"] == "tiny"


# -- watching runs -------------------------------------------------------------------------------

def _fake_run(folder: Path, name: str, status: dict, objective: str = "jepa", checkpoint: bool = False,
              eval_row: dict | None = None) -> Path:
    d = folder / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"config": {"objective": objective, "seed": 0, "k_pred": 1}}))
    (d / "status.json").write_text(json.dumps(status))
    rows = [{"kind": "train", "step": 10, "loss": 2.5, "ntp_loss": 2.0, "jepa_loss": 0.5, "items_per_s": 900.0}]
    if eval_row:
        rows.append(eval_row)
    (d / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)) + '\n{"kind": "train", "st')  # half-written
    if checkpoint:
        (d / "checkpoints" / "step_00000010").mkdir(parents=True)
    return d


def test_runs_command_shows_every_state(tmp_path, capsys):
    folder = tmp_path / "out"
    ev = {"kind": "eval", "step": 10, "splits": {"atomic": {"exact_match": 0.75}, "test": {"exact_match": 0.125}}}
    _fake_run(folder / "sweep", "ok", {"state": "finished", "step": 100, "total_steps": 100, "items_per_s": 1234.0}, eval_row=ev)
    _fake_run(folder / "sweep", "boom", {"state": "failed", "step": 10, "total_steps": 100,
                                         "error": "Traceback ...\nTrainingDiverged: loss is nan at step 10"})
    _fake_run(folder / "sweep", "cut", {"state": "preempted", "step": 50, "total_steps": 100}, checkpoint=True)
    _fake_run(folder / "sweep", "going", {"state": "running", "step": 20, "total_steps": 100, "items_per_s": 99.0},
              objective="reverse_aug")
    assert runs.runs_main([str(folder)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line and not line.startswith("sweep/boom:")}
    assert "finished" in lines["sweep/ok"] and "100/100" in lines["sweep/ok"] and "1234" in lines["sweep/ok"]
    assert "0.750" in lines["sweep/ok"] and "0.125" in lines["sweep/ok"]
    assert "preempted (resumable)" in lines["sweep/cut"]
    assert "running" in lines["sweep/going"] and "trains on test facts" in lines["sweep/going"]
    assert "sweep/boom: failed: TrainingDiverged: loss is nan at step 10" in out
    assert runs.runs_main([str(folder), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["run"]: r["state"] for r in rows} == {"sweep/boom": "failed", "sweep/cut": "preempted",
                                                     "sweep/going": "running", "sweep/ok": "finished"}
    assert runs.runs_main([str(tmp_path / "nowhere")]) == 2


def test_runs_module_does_not_import_torch():
    # `jepa-kit runs` runs on login nodes: it must not pay for importing torch
    code = "import sys, jepa_kit.runs; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0

# The local sweep (`jepa-kit sweep FILE --local`, real papermill runs) is tested in test_notebooks.py,
# where its runs also feed the analysis notebook.
