import os
import re
import shutil
from pathlib import Path

import pytest

# Tiny models run faster on one thread, and the machines are shared: one thread per test
# process (and per kernel or worker process it starts, which inherit the variable).
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

ROOT = Path(__file__).resolve().parents[1]
# CI lays shared/ beside the clone; a developer checkout has it at the same place.
FIXTURES = Path(os.environ.get("JEPA_KIT_FIXTURES", ROOT.parent / "shared" / "fixtures"))
OSU_EXCERPT = FIXTURES / "osu_reversal_comb10_excerpt"


def load_benchmark(name: str):
    """benchmarks/<name>.py as a module (the scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_tiny_abstract_runs(tmp: Path, extras: dict[str, dict]) -> dict[str, Path]:
    """A few-step run per objective (``extras``: objective -> its extra TrainConfig fields) on one
    small tiny_abstract draw under ``tmp``, 2 blocks of width 32: the run folders, by objective."""
    from jepa_kit.config import TrainConfig
    from jepa_kit.datagen import generate
    from jepa_kit.train import train

    data = generate("tiny_abstract", tmp / "data", seed=0, valid_per_split=24)
    return {objective: train(TrainConfig.from_preset(
        "tiny", data=str(data), out=str(tmp / objective), objective=objective, n_layer=2, n_embd=32, n_head=2,
        pos_emb=False, batch_size=32, steps=8, log_every=4, eval_every=4, eval_max_items=8, progress="none",
        **extra)) for objective, extra in extras.items()}


@pytest.fixture(scope="session")
def osu_dir() -> Path:
    if not OSU_EXCERPT.is_dir():
        pytest.fail(f"fixtures not found at {OSU_EXCERPT}; set JEPA_KIT_FIXTURES")
    return OSU_EXCERPT


@pytest.fixture
def osu_copy(osu_dir, tmp_path) -> Path:
    """A writable copy of the real excerpt (the original is read-only)."""
    dst = tmp_path / "osu"
    shutil.copytree(osu_dir, dst, ignore=shutil.ignore_patterns(".jepa_cache"))
    dst.chmod(0o755)
    for p in dst.iterdir():
        p.chmod(0o644)
    return dst


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from jepa_kit.datagen import generate

    return generate("tiny", tmp_path_factory.mktemp("tiny") / "data", seed=0)


SBATCH_LINE = re.compile(r"^#SBATCH --[a-z][a-z-]*(=\S+)?$")


def sbatch_options(script: str, where: str = "script") -> dict[str, str]:
    """#SBATCH options of a batch script, checking that each parses and precedes the first
    command (sbatch stops reading there)."""
    options, seen_command = {}, False
    for line in script.splitlines()[1:]:
        if line.startswith("#SBATCH"):
            assert not seen_command, f"{where}: #SBATCH after the first command is ignored: {line}"
            assert SBATCH_LINE.match(line), f"{where}: unparsable #SBATCH line {line!r}"
            key, _, value = line[len("#SBATCH "):].partition("=")
            options[key] = value
        elif line.strip() and not line.startswith("#"):
            seen_command = True
    return options
