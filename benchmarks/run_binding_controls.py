"""Run a binding-controls sweep (default papermill_runs/binding_controls.yaml) with N workers, no papermill.

The configs come from the sweep file (jepa_kit.sweeps.plan), so they are exactly what
`jepa-kit sweep SWEEP --local` would run; each run directory is named
setting_objective[_pos][_key=value...]_seedN: the setting is "abstract" (data/tiny_abstract),
"surface" (data/tiny) or the data folder's name; _pos marks position embeddings on abstract data;
each other setting that differs between the sweep's runs (a weight decay, a width) is written out,
a setting of the JEPA term alone (jepa_*, stop_grad, ...) on the JEPA runs only.
A finished run is skipped, a stopped one resumed (train()). On Linux a worker outlives no killed
runner: it gets SIGTERM when the runner dies, however it died, so its run checkpoints and stops
(status.json "preempted") rather than training on, orphaned, beside a restarted runner.

    python benchmarks/run_binding_controls.py [--jobs 2] [--out papermill_runs/output/binding_controls]
    python benchmarks/run_binding_controls.py --sweep papermill_runs/binding_scale.yaml
"""
import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path


NAMED = {"data", "objective", "pos_emb", "seed", "best_metric", "n_recognition", "out"}  # in the name already, or follow
# settings of the JEPA term alone: an ntp run has none of them, so they name only the JEPA runs
JEPA_ONLY = {"k_pred", "lambda_jepa", "infonce_temperature", "loss_dropout", "stop_grad"}


def varied(sweep, planned) -> list[str]:
    """The other settings that differ between a sweep's runs (``sweeps.varying_keys``; ``planned``:
    ``sweeps.plan``'s runs): each becomes part of its runs' names."""
    from jepa_kit import sweeps
    return [k for k in sweeps.varying_keys(sweep.runs, [r.params for r in planned]) if k not in NAMED]


def name_of(params: dict, keys=()) -> str:
    data = Path(params["data"]).name
    setting = {"tiny_abstract": "abstract", "tiny": "surface"}.get(data, data)
    variant = "_pos" if params["objective"] == "ntp" and params["pos_emb"] and "abstract" in data else ""
    # a JEPA setting names only the JEPA runs: an ntp run has no metric to vary
    extra = "".join(f"_{k}={params[k]}" for k in keys
                    if params["objective"] == "jepa" or not (k.startswith("jepa_") or k in JEPA_ONLY))
    return f"{setting}_{params['objective']}{variant}{extra}_seed{params['seed']}"


def _stop_with_the_runner() -> None:
    """Linux: ask for SIGTERM when the runner dies (prctl PR_SET_PDEATHSIG), and send it now if the
    runner died first. Elsewhere, nothing (a killed runner's workers go on as before)."""
    import ctypes
    import os
    import signal

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    if prctl(1, int(signal.SIGTERM), 0, 0, 0) != 0:  # 1: PR_SET_PDEATHSIG
        return
    runner = mp.parent_process()
    if runner is not None and os.getppid() != runner.pid:
        os.kill(os.getpid(), signal.SIGTERM)


def one(job):
    import torch

    from jepa_kit.config import TrainConfig
    from jepa_kit.train import train

    torch.set_num_threads(1)
    _stop_with_the_runner()
    params, out = job
    t = time.time()
    train(TrainConfig.from_dict({**params, "out": str(out), "progress": "log"}))
    return out.name, time.time() - t


def main() -> int:
    from jepa_kit import sweeps

    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--sweep", default="papermill_runs/binding_controls.yaml")
    p.add_argument("--out", help="default papermill_runs/output/<the sweep's name>")
    args = p.parse_args()
    sweep = sweeps.load_sweep(args.sweep)
    args.out = args.out or f"papermill_runs/output/{sweep.name}"
    planned = sweeps.plan(sweep.runs, args.out, sweep.preset, sweep.name)
    keys = varied(sweep, planned)
    jobs = [(r.params, Path(args.out).resolve() / name_of(r.params, keys)) for r in planned]
    assert len({j[1] for j in jobs}) == len(jobs), "two runs got one name"
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for name, wall in pool.imap_unordered(one, jobs):
            print(f"{name}: {wall:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
