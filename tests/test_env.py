"""environment.yml (conda, OSC) and pyproject.toml (pip, CI) must list the same packages, for one
Python version; constraints.txt pins them all, and every run records the versions it used."""
import json
import re
import shutil
import sys
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from conftest import ROOT

PYTHON = "3.11"  # the one version story: environment.yml pins it, pyproject.toml starts there, the README says it


def split_req(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


def test_environment_agrees_with_pyproject():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(split_req(r) for r in py["dependencies"])
    for extra in py["optional-dependencies"].values():
        wanted.update(split_req(r) for r in extra)

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    conda, pip = {}, {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for r in dep["pip"]:
                if r != "-e .":
                    pip.update([split_req(r)])
        else:
            conda.update([split_req(dep.replace("=", "==", 1) if re.match(r"^[\w-]+=[^=]", dep) else dep)])
    assert "-e ." in next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    assert conda.pop("python") == f"=={PYTHON}" and conda.pop("pip") == ""
    # torch and transformers through pip so conda cannot resolve a CPU-only torch
    assert {"torch", "transformers"} <= set(pip) and not {"torch", "transformers"} & set(conda)
    assert {**conda, **pip} == wanted
    assert "ipykernel" in conda


def test_one_python_version_story():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert py["requires-python"] == f">={PYTHON}"
    readme = (ROOT / "README.md").read_text()
    assert f"Python {PYTHON}" in readme
    assert not re.search(r"Python 3\.(?!11)\d+\+?", readme), "the README names another Python version"
    assert sys.version_info[:2] >= tuple(map(int, PYTHON.split(".")))


def pinned() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            pins[name.strip().lower().replace("_", "-")] = Version(version.strip())
    return pins


def test_constraints_pin_every_requirement_within_its_range():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in py["dependencies"] + sum(py["optional-dependencies"].values(), [])]
    pins = pinned()
    for req in reqs:
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"constraints.txt does not pin {name}"
        assert req.specifier.contains(pins[name]), f"constraints.txt: {name}=={pins[name]} is outside {req}"


def test_a_run_records_the_versions_and_thread_count_it_used(tiny_data, tmp_path):
    import numpy
    import torch
    import transformers

    from jepa_kit.config import TrainConfig
    from jepa_kit.train import train

    cfg = TrainConfig.from_preset("tiny", data=str(tiny_data), out=str(tmp_path / "run"), n_layer=1, n_embd=32,
                                  n_head=2, batch_size=32, steps=2, log_every=1, eval_every=0, eval_max_items=8,
                                  ckpt_every=100, progress="none")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run = train(cfg)
    finally:
        torch.set_num_threads(threads)
    stored = json.loads((run / "config.json").read_text())
    versions = stored["versions"]
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
    assert (versions["torch"], versions["transformers"], versions["numpy"]) == \
        (torch.__version__, transformers.__version__, numpy.__version__)
    assert versions["safetensors"]
    # and what decides its rounding beyond them: the thread count (set above) and instruction set
    assert stored["numerics"] == {"device": "cpu", "torch_threads": 2,
                                  "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _setup_commands(**variables) -> str:
    """What `make setup` would run (dry run, as if pyproject.toml had changed)."""
    import subprocess
    args = ["make", "-n", "-W", "pyproject.toml", "setup", *(f"{k}={v}" for k, v in variables.items())]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True, timeout=60).stdout


def test_setup_takes_torch_from_the_named_index_or_pips_usual_sources():
    named = _setup_commands(TORCH_INDEX="https://download.pytorch.org/whl/cpu", TORCH_SPEC="torch==2.13.0")
    assert 'pip install -q "torch==2.13.0" --index-url "https://download.pytorch.org/whl/cpu"' in named
    usual = _setup_commands(TORCH_INDEX="pypi", TORCH_SPEC="torch==2.13.0")
    assert re.search(r'pip install -q "torch==2\.13\.0" *\n', usual) and "--index-url" not in usual
    # left to itself, on a machine without a GPU: the CPU build, from the CPU index only if it answers
    auto = _setup_commands()
    assert '"torch==2.13.0"' in auto or shutil.which("nvidia-smi")
    assert "--index-url" not in auto or "download.pytorch.org/whl/cpu" in auto


def test_without_a_gpu_setup_takes_the_cpu_index_when_it_answers(tmp_path):
    """The automatic choice, against a local stand-in for PyTorch's CPU index (CI cannot reach the real one)."""
    import functools
    import http.server
    import threading

    if shutil.which("nvidia-smi"):
        pytest.skip("a GPU machine takes PyPI's CUDA build")
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "index.html").write_text("<html></html>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        answered = _setup_commands(CPU_INDEX=url)
        assert f'pip install -q "torch==2.13.0" --index-url "{url}"' in answered
    finally:
        server.shutdown()
    silent = _setup_commands(CPU_INDEX="http://127.0.0.1:9")  # nothing listens there
    assert re.search(r'pip install -q "torch==2\.13\.0" *\n', silent) and "--index-url" not in silent
