"""Run papermill_runs/paper_scale.yaml (issue 14) one run after another on this machine, then print
the README table (benchmarks/paper_scale_table.py). Usually started by benchmarks/paper_scale.sh.

    python benchmarks/paper_scale.py --out OUT_DIR [--preset gpu|tiny] [--runs ntp,jepa] [--budget 45] [--compile true]

The configs are the sweep file's (jepa_kit.sweeps.plan, as `jepa-kit sweep --local` runs them), with
readable run names (ntp, jepa, jepa_infonce, reverse_aug, concept_1+1). Each run goes through
papermill (notebooks/02_train.ipynb, the sweep's own path) when papermill and ipykernel import,
else through ``jepa_kit.train.train`` in this process (``--path`` forces one). Run directories,
checkpoints included, live under --work; after each run its small files (config, metrics, results,
status, best; no checkpoints) are copied to OUT_DIR/paper_scale/<run>/ and the table so far is
printed, so a call cut short still leaves every finished run. At the end OUT_DIR/paper_scale/ also
holds sweep_meta.json (card, date, budget), curves.csv (MRR against steps, forward and reverse, every
run) and table.md. Notebook 03 opens it (runs_dir = "OUT_DIR/paper_scale"); with papermill installed
it is executed on it at the end (OUT_DIR/report_03.html).

--deadline S (default 550 on CUDA, none on CPU): a run is skipped, not started, when the time left
is less than its budget plus its expected evaluation and start-up time (the sweep file's estimate
until a run of the same kind has measured it): the device call that runs this is cut at 600 s.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import gc
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "papermill_runs" / "paper_scale.yaml"
SMALL_FILES = ("config.json", "metrics.jsonl", "results.json", "status.json", "best.json")
# per run, besides its training budget (papermill_runs/paper_scale.yaml's arithmetic): evaluations,
# checkpoints, model build; replaced by what a finished run of the same kind measured
EXPECTED_OVERHEAD_S = {"token": 70.0, "concept": 20.0}
T0 = time.time()


def run_name(params: dict) -> str:
    name = params["objective"]
    if name == "jepa" and params["jepa_metric"] != "cosine":
        name += f"_{params['jepa_metric']}"
    if name == "concept":
        from jepa_kit.model import MODEL_PRESETS
        w, n = params["n_recognition"], params["n_layer"] or MODEL_PRESETS[params["model"]]["n_layer"]
        name += f"_{w}+{n - w}"
    return name


def table_module():
    spec = importlib.util.spec_from_file_location("paper_scale_table", ROOT / "benchmarks" / "paper_scale_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def papermill_usable() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("papermill", "ipykernel", "nbformat"))


def device_name() -> str:
    import torch
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "CPU (no CUDA): the CPU-sized form"


def run_library(params: dict) -> str | None:
    """Train one run in this process; the error as one line, or None."""
    import torch

    from jepa_kit.config import TrainConfig
    from jepa_kit.train import train
    try:
        train(TrainConfig.from_dict(params))
        return None
    except Exception as e:  # a failed run is reported, the sweep goes on
        return f"{type(e).__name__}: {e}"
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def copy_small_files(run_dir: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in SMALL_FILES:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, dest / name)


def write_curves(folder: Path) -> None:
    """curves.csv: every run's MRR over every entity at each evaluation, forward (atomic) and reverse (test)."""
    from jepa_kit import collect
    with open(folder / "curves.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["run", "split", "metric", "step", "mrr"])
        for run, metrics_rows in sorted(collect.learning_curves(folder).items()):
            for split in ("atomic", "test"):
                metric, points = collect.mrr_curve(metrics_rows, split)
                out.writerows([run, split, metric, step, value] for step, value in points)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for the results (OUT/paper_scale/...)")
    p.add_argument("--work", default=None, help="folder for the run directories with checkpoints "
                                                "(default: /tmp/paper_scale_work)")
    p.add_argument("--preset", default=None, help="sweep preset: gpu (default on CUDA) or tiny (default on CPU)")
    p.add_argument("--runs", default=None, help="comma-separated run names to run (default: all five)")
    p.add_argument("--budget", type=float, default=None, help="override max_train_seconds of every run")
    p.add_argument("--compile", choices=("true", "false"), default=None, help="override compile of every run "
                   "(worth it from budgets of ~2 min: a cold compile takes ~20-40 s of the budget)")
    p.add_argument("--deadline", type=float, default=None, help="seconds from start; 0 = none")
    p.add_argument("--path", choices=("auto", "papermill", "library"), default="auto")
    return p.parse_args()


def main() -> int:
    import torch

    from jepa_kit import launch, sweeps
    from jepa_kit.datagen import ensure_data

    args = parse_args()
    cuda = torch.cuda.is_available()
    preset = args.preset or ("gpu" if cuda else "tiny")
    deadline = args.deadline if args.deadline is not None else (550.0 if cuda else 0.0)
    use_papermill = args.path == "papermill" or (args.path == "auto" and papermill_usable())
    sweep = sweeps.load_sweep(SWEEP, preset=preset)
    work = Path(args.work or "/tmp/paper_scale_work").resolve() / f"{sweep.name}_{preset}"  # an existing run resumes
    out = Path(args.out).resolve() / sweep.name
    os.chdir(ROOT)  # the sweep's data paths are relative to the repository
    out.mkdir(parents=True, exist_ok=True)

    overrides = {"progress": "log", **({"max_train_seconds": args.budget} if args.budget else {}),
                 **({"compile": args.compile == "true"} if args.compile else {})}
    runs = [{**r, **overrides} for r in sweep.runs]
    planned = []
    for run in sweeps.plan(runs, work, preset, where=str(SWEEP)):
        name = run_name(run.params)
        params = {**run.params, "out": str(work / name)}
        planned.append(sweeps.PlannedRun(name, params, work / name, out / f"{name}.ipynb"))
    if args.runs:
        wanted = args.runs.split(",")
        unknown = set(wanted) - {r.name for r in planned}
        if unknown:
            sys.exit(f"unknown run(s) {', '.join(sorted(unknown))}; the sweep has {', '.join(r.name for r in planned)}")
        planned = [r for r in planned if r.name in wanted]
    budget = planned[0].params["max_train_seconds"]
    for data in sorted({r.params["data"] for r in planned}):
        ensure_data(data)
    from jepa_kit.data import load_dataset
    n_entities = len(load_dataset(planned[0].params["data"]).entities())
    meta = {"device": device_name(), "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "preset": preset, "budget_s": budget, "compile": planned[0].params["compile"], "n_entities": n_entities,
            "torch": torch.__version__,
            "path": "papermill (notebooks/02_train.ipynb)" if use_papermill else "library (jepa_kit.train.train)",
            "sweep": str(SWEEP.relative_to(ROOT)), "runs": [r.name for r in planned], "skipped": [], "failed": {}}
    (out / "sweep_meta.json").write_text(json.dumps(meta, indent=1))
    print(f"{len(planned)} runs on {meta['device']} via {meta['path']}, budget {budget} s each"
          + (f", deadline {deadline:.0f} s" if deadline else ""), flush=True)

    table = table_module()
    overhead, measured = dict(EXPECTED_OVERHEAD_S), {}
    for i, run in enumerate(planned, 1):
        kind = "concept" if run.params["objective"] == "concept" else "token"
        left = deadline - (time.time() - T0) if deadline else float("inf")
        if budget and budget + overhead[kind] > left:
            print(f"[{i}/{len(planned)}] {run.name}: SKIPPED, {left:.0f} s left < {budget:g} s budget + "
                  f"~{overhead[kind]:.0f} s evaluations", flush=True)
            meta["skipped"].append(run.name)
            continue
        print(f"[{i}/{len(planned)}] {run.name}: running -> {run.run_dir} (t = {time.time() - T0:.0f} s)", flush=True)
        t = time.time()
        if use_papermill:
            outcome = launch.execute(run, progress_bar=False)
            error = outcome.error
        else:
            error = run_library(run.params)
        wall = time.time() - t
        copy_small_files(run.run_dir, out / run.name)
        if error:
            meta["failed"][run.name] = error
        res = json.loads((run.run_dir / "results.json").read_text()) if (run.run_dir / "results.json").is_file() else {}
        if res:  # what this kind of run costs besides its training time, for the deadline check
            measured[kind] = overhead[kind] = max(measured.get(kind, 0.0), wall - res["run"]["train_s"])
            meta["overhead_s"] = measured
        print(f"[{i}/{len(planned)}] {run.name}: {'FAILED: ' + error if error else 'finished'} in {wall:.0f} s "
              f"(t = {time.time() - T0:.0f} s)", flush=True)
        (out / "sweep_meta.json").write_text(json.dumps(meta, indent=1))
        print(table.render(out), flush=True)
    write_curves(out)
    text = table.render(out)
    (out / "table.md").write_text(text + "\n")
    left = deadline - (time.time() - T0) if deadline else float("inf")
    if papermill_usable() and left > 60:  # the proof that notebook 03 opens the folder
        try:
            report = launch.render_report(out, out.parent / "report_03.html", compare_on="test.mrr")
            print(f"notebook 03 on {out}: {report}")
        except Exception as e:
            print(f"notebook 03 on {out} FAILED: {launch.describe_error(e)}")
    print(f"\n== done in {time.time() - T0:.0f} s; runs, curves.csv and table.md under {out}\n{text}")
    return 1 if meta["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
