"""benchmarks/gpu_check.sh, the prepared GPU check, in its CPU-sized form (no CUDA here): a device
session spends minutes of a 15-minute lease on it, so it must be known to run first."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_cpu_form_trains_evaluates_and_runs_the_nan_variants(tmp_path):
    env = {**os.environ, "PY": sys.executable, "WORK": str(tmp_path / "work"), "SKIP": "bench,profile,eval,precisions,large",
           "EVAL_NAN": "1", "NAN_VARIANTS": "control,resume", "JEPA_KIT_PROGRESS": "log"}
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path / "out")], env=env,
                       capture_output=True, text=True, timeout=900)
    log = p.stdout + p.stderr
    assert p.returncode == 0, log[-3000:]
    assert "device: cpu (no CUDA)" in log and log.count("skipped (SKIP=") == 6, log[-3000:]
    for name, steps in (("ntp", 40), ("ntp_large", 10), ("jepa", 40)):
        s = json.loads((tmp_path / "out" / f"summary_{name}.json").read_text())
        assert s["finished"] and s["steps"] == steps and s["stopped_by"] == "steps", s
        assert set(s["final"]) == {"train", "atomic", "test"} and s["final"]["atomic"]["n"] > 0
        assert s["final_eval_s"] > 0 and s["median_items_per_s"] > 0
    assert log.count("final atomic exact match") == 3
    nan = {r["variant"]: r for r in json.loads((tmp_path / "out" / "nan_after_eval.json").read_text())}
    assert set(nan) == {"control", "resume"} and all(r.get("nan_at_step", "error") is None for r in nan.values()), nan
    assert (tmp_path / "out" / "runs.tgz").is_file()
    fix = json.loads((tmp_path / "out" / "fix_compile_repeat.json").read_text())  # section 0, the CPU's settings
    assert [r["variant"] for r in fix] == ["compile_repeat"] and len(fix[0]["step_checks"]) == 1
    assert all(c["finite"] for c in fix[0]["step_checks"]), fix


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_passes_ntp_args_to_the_ntp_runs_only(tmp_path):
    """NTP_ARGS: extra trainer flags for the ntp runs (the next device session trains ntp with
    attention written out, the bench's fastest ntp mode); the jepa run keeps the preset's."""
    skip = "fix,bench,anomaly,profile,stepgraph,eval,ntp_large,ntp_graph,precisions,large"
    env = {**os.environ, "PY": sys.executable, "WORK": str(tmp_path / "work"), "SKIP": skip,
           "NTP_ARGS": "--attn_implementation eager", "JEPA_KIT_PROGRESS": "log"}
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path / "out")], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    runs = tmp_path / "work" / "runs"
    attn = {n: json.loads((runs / n / "config.json").read_text())["config"]["attn_implementation"] for n in ("ntp", "jepa")}
    assert attn == {"ntp": "eager", "jepa": "sdpa"}, attn
