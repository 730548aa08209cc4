"""environment.yml (conda, OSC) and pyproject.toml (pip, CI) must list the same packages."""
import re
import tomllib

import yaml

from conftest import ROOT


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
    assert conda.pop("python") == "==3.12" and conda.pop("pip") == ""
    # torch and transformers through pip so conda cannot resolve a CPU-only torch
    assert {"torch", "transformers"} <= set(pip) and not {"torch", "transformers"} & set(conda)
    assert {**conda, **pip} == wanted
    assert "ipykernel" in conda
