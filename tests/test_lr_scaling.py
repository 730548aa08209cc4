"""benchmarks/lr_scaling.py, the measurement behind ``config.scaled_lr`` and the ``gpu_large`` preset:
its plan, its reading of a run's evaluations, and one short run end to end."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT, load_benchmark


def load():
    return load_benchmark("lr_scaling")


def test_plan_scales_the_lr_by_each_rule():
    m = load()
    runs = m.plan(128, 1e-3, [4], seeds=[0, 1])
    by = {(r["rule"], r["seed"]): r for r in runs}
    assert len(runs) == 2 + 3 * 2 and len({r["name"] for r in runs}) == len(runs)
    assert by["base", 0]["batch"] == 128 and by["base", 1]["lr"] == 1e-3
    assert by["keep", 0]["lr"] == 1e-3 and by["sqrt", 0]["lr"] == pytest.approx(2e-3)
    assert by["linear", 1]["lr"] == pytest.approx(4e-3) and by["linear", 1]["batch"] == 512


def test_epochs_to_reads_the_first_evaluation_over_each_threshold(tmp_path):
    m = load()

    def ev(step, em):
        return {"kind": "eval", "step": step, "splits": {"atomic": {"exact_match": em}, "test": {"exact_match": 0.9}}}

    rows = [{"kind": "train", "step": 10}, ev(10, 0.2), ev(20, 0.55), ev(30, 0.81), ev(40, 0.7)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    got = m.epochs_to(tmp_path, batch=100, n_train=1000)
    # the test split's 0.9 is never read; 0.95 is not reached; the last evaluation is 0.7
    assert got == {"em0.5": 2.0, "em0.8": 3.0, "em0.95": None, "final_atomic_em": 0.7}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(ValueError, match="no evaluation rows"):
        m.epochs_to(tmp_path, batch=100, n_train=1000)


def test_a_short_scaling_run_prints_its_table(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "lr_scaling.py"), "--factors", "2", "--rules", "sqrt",
           "--epochs", "2", "--eval-epochs", "1", "--base-batch", "256", "--base-warmup", "2",
           "--out", str(tmp_path / "runs"), "--json", str(tmp_path / "rows.json")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [(r["batch"], r["rule"]) for r in rows] == [(256, "base"), (512, "sqrt")]
    assert all("error" not in r and 0 <= r["final_atomic_em"] <= 1 for r in rows), rows
    assert rows[1]["lr"] == pytest.approx(1e-3 * 2 ** 0.5) and rows[1]["warmup"] == 1
    assert "EM>=0.8" in p.stdout and "512 sqrt" in p.stdout
