"""DistributedDataParallel (torchrun, 2 CPU processes, gloo) equals one process on the same global batch."""
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from jepa_kit.config import TrainConfig
from jepa_kit.rundir import load_run
from jepa_kit.train import train

RUNNER = """
import sys
import torch
torch.set_num_threads(1)
from jepa_kit.config import TrainConfig
from jepa_kit.train import train
train(TrainConfig.from_yaml(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from jepa_kit.datagen import generate

    return generate("tiny", tmp_path_factory.mktemp("ddp_data") / "data", seed=0, valid_per_split=8)


def torchrun(cfg: TrainConfig, tmp_path) -> None:
    """Train ``cfg`` under torchrun with 2 CPU processes (gloo); fail with their output."""
    ddp_yaml = tmp_path / "ddp.yaml"
    ddp_yaml.write_text(yaml.safe_dump(cfg.to_dict()))
    (tmp_path / "runner.py").write_text(RUNNER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("SLURM_JOB_ID", None)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(tmp_path / "runner.py"), str(ddp_yaml)],
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _rows(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


def test_two_processes_equal_one(data, tmp_path):
    # jepa objective with loss dropout 0: ranks get different numbers of JEPA rows, so the loss
    # weighting (not a plain average of per-rank means) is what makes the gradients agree.
    cfg = TrainConfig.from_preset("tiny", data=str(data), out=str(tmp_path / "single"), n_layer=1, n_embd=32,
                                  n_head=2, batch_size=32, lr=3e-3, steps=6, log_every=1, eval_every=0,
                                  ckpt_every=100, progress="log")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(cfg)
    finally:
        torch.set_num_threads(n)

    torchrun(cfg.replace(out=str(tmp_path / "ddp")), tmp_path)

    single, ddp = _rows(tmp_path / "single"), _rows(tmp_path / "ddp")
    assert [r["step"] for r in ddp] == list(range(1, 7))  # one writer: no duplicated rows
    assert len({r["n_jepa"] for r in single}) > 1  # the JEPA share of a batch does vary
    for a, b in zip(single, ddp):
        for key in ("loss", "ntp_loss", "jepa_loss", "n_jepa"):
            assert a[key] == pytest.approx(b[key], rel=2e-6, abs=1e-7), (a["step"], key)
    config = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert config["world_size"] == 2
    ws, wd = load_run(tmp_path / "single")[0].state_dict(), load_run(tmp_path / "ddp")[0].state_dict()
    for k in ws:
        torch.testing.assert_close(ws[k], wd[k], rtol=0, atol=1e-6)  # measured: 1e-7
    assert json.loads((tmp_path / "ddp" / "status.json").read_text())["state"] == "finished"


def test_concept_trains_under_ddp_with_per_rank_negatives(data, tmp_path):
    """The concept objective under torchrun: each rank's negatives are the patches of its own half
    of the batch, so the logged step-1 loss is the mean of the two halves' losses, each computed
    alone (not the loss over the whole batch), as the concept module's docstring says."""
    from jepa_kit.data import load_dataset
    from jepa_kit.objectives import get_objective
    from jepa_kit.train import epoch_permutation

    cfg = TrainConfig.from_preset("tiny", data=str(data), out=str(tmp_path / "ddp"), objective="concept", n_layer=2,
                                  n_embd=32, n_head=2, n_recognition=1, batch_size=32, lr=3e-3, steps=3, log_every=1,
                                  eval_every=0, eval_max_items=8, ckpt_every=100, progress="log")
    torchrun(cfg, tmp_path)
    first = _rows(tmp_path / "ddp")[0]

    ds = load_dataset(data)
    torch.manual_seed(cfg.seed)  # the trainer's initialisation
    model = get_objective("concept").build_model(ds.vocab, cfg)
    batch = ds.train.ids[epoch_permutation(len(ds.train), cfg.seed, 0)[:32]]
    with torch.no_grad():
        halves = [model(batch[:16])["jepa_loss"], model(batch[16:])["jepa_loss"]]
        whole = model(batch)["jepa_loss"]
    assert first["jepa_loss"] == pytest.approx(float(sum(halves) / 2), rel=1e-5)
    assert abs(float(whole) - first["jepa_loss"]) > 1e-3  # the whole-batch loss is another number
    assert json.loads((tmp_path / "ddp" / "status.json").read_text())["state"] == "finished"
