"""Run the binding-controls study (papermill_runs/binding_controls.yaml) with N workers, no papermill.

The configs come from the sweep file (jepa_kit.sweeps.plan), so they are exactly what
`jepa-kit sweep papermill_runs/binding_controls.yaml --local` would run; each run directory is
named setting_objective[_variant]_seedN. A finished run is skipped (train() resumes).

    python benchmarks/run_binding_controls.py [--jobs 2] [--out papermill_runs/output/binding_controls]
"""
import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path


def name_of(params: dict) -> str:
    setting = "abstract" if "abstract" in Path(params["data"]).name else "surface"
    variant = "_pos" if params["objective"] == "ntp" and params["pos_emb"] and setting == "abstract" else ""
    return f"{setting}_{params['objective']}{variant}_seed{params['seed']}"


def one(job):
    import torch

    from jepa_kit.config import TrainConfig
    from jepa_kit.train import train

    torch.set_num_threads(1)
    params, out = job
    t = time.time()
    train(TrainConfig.from_dict({**params, "out": str(out), "progress": "log"}))
    return out.name, time.time() - t


def main() -> int:
    from jepa_kit import sweeps

    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default="papermill_runs/output/binding_controls")
    args = p.parse_args()
    sweep = sweeps.load_sweep("papermill_runs/binding_controls.yaml")
    planned = sweeps.plan(sweep.runs, args.out, sweep.preset, sweep.name)
    jobs = [(r.params, Path(args.out).resolve() / name_of(r.params)) for r in planned]
    assert len({j[1] for j in jobs}) == len(jobs), "two runs got one name"
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for name, wall in pool.imap_unordered(one, jobs):
            print(f"{name}: {wall:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
