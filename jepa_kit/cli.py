"""The `jepa-kit` command (also `python -m jepa_kit`).

Exit codes: 0 success; 1 a failure (a diverged run, a leak found by `data check`, an unexpected
error); 2 a usage or input error (bad arguments, config, data, checkpoint, a run directory in use or
a dataset that would be overwritten); 75 a preempted run that can be resumed. Errors are one line
on stderr naming the file or field; JEPA_KIT_DEBUG=1 shows the traceback of unexpected ones.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import fields
from pathlib import Path

from jepa_kit.signals import StopSignal

EXIT_FAILURE, EXIT_USAGE = 1, 2


def _data_generate(args) -> int:
    from jepa_kit.datagen import GenParams, generate, resolve

    overrides = {f.name: getattr(args, f.name) for f in fields(GenParams) if getattr(args, f.name, None) is not None}
    try:
        params = resolve(args.preset, **overrides)
    except ValueError as e:  # an unknown preset or impossible sizes: a usage error
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    out = generate(params, args.out, seed=args.seed, force=args.force)
    print(f"wrote {out}/vocab.json, train.json, valid.json ({args.preset}, seed {args.seed}, "
          f"{params.entity_tokens} token{'s' if params.entity_tokens > 1 else ''} per entity)")
    return 0


def _data_check(args) -> int:
    from jepa_kit.data import load_dataset

    ds = load_dataset(args.dir)  # a DataError becomes a one-line error, exit 2 (see main)
    summary = ds.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        c = summary["counts"]
        print(f"{summary['path']}: OK as data" if not summary["leakage_problems"] else f"{summary['path']}: LEAKAGE")
        print(f"  vocabulary      {summary['vocab_size']} tokens ({summary['relation_pairs']} relation pairs"
              f"{', <PRED> appended' if summary['pred_appended'] else ''})")
        print(f"  train.json      {c['train.json']['train']} train + {c['train.json']['atomic']} atomic items")
        print("  valid.json      " + ", ".join(f"{k} {v}" for k, v in c["valid.json"].items()))
        print(f"  entities        {summary['entities']} (patch length {summary['patch_len']})")
        for label, s in summary["name_sharing"].items():
            print(f"  {label:<5} names     {s['tokens']} tokens, each shared by {s['entities_per_token_min']}"
                  f"..{s['entities_per_token_max']} entities")
        rels = summary["relations"]["train.json"]
        print("  relations       " + ", ".join(f"{k} {v}" for k, v in sorted(rels.items())))
        for w in summary["warnings"]:
            print(f"  warning: {w}")
        for p in summary["leakage_problems"]:
            print(f"  LEAK: {p}")
        if not summary["leakage_problems"]:
            print("  leakage         none: no test sequence in train.json, no test fact seen in both directions,"
                  " no reverse of an atomic item in train.json")
    return 1 if summary["leakage_problems"] else 0


def _train(args) -> int:
    from jepa_kit.config import config_from_args
    from jepa_kit.runtime import PREEMPTED_EXIT_CODE, Preempted, TrainingDiverged
    from jepa_kit.train import train

    try:
        run_dir = train(config_from_args(args), pending_signal=getattr(args, "early_stop", None))
    except Preempted as e:
        # checkpoint written; the distinct exit code tells a requeue script "resume me", not "failed"
        print(f"preempted: {e}", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"run directory: {run_dir}")
    return 0


def _eval(args) -> int:
    from jepa_kit.data import load_dataset
    from jepa_kit.evaluate import evaluate, format_table
    from jepa_kit.files import read_json
    from jepa_kit.rundir import load_run

    model, config = load_run(args.run, checkpoint=args.checkpoint)
    stored = read_json(Path(args.run) / "config.json")
    # the run's own data: its absolute path (runs before it was stored: the path as given, from here)
    data_dir = args.data or stored.get("data_path") or config.data
    ds = load_dataset(data_dir)
    if not ds.vocab.same_as(model.vocab):
        print(f"error: {data_dir} has a different vocabulary from the one {args.run} was trained on", file=sys.stderr)
        return EXIT_USAGE
    trained_on = stored.get("data_fingerprint")
    if trained_on and ds.fingerprint != trained_on:
        if not args.data:
            print(f"error: {data_dir} is not the data {args.run} was trained on (fingerprint {ds.fingerprint}, "
                  f"the run's {trained_on}); pass --data DIR to evaluate on other data on purpose", file=sys.stderr)
            return EXIT_USAGE
        print(f"warning: {data_dir} is not the data {args.run} was trained on (fingerprint {ds.fingerprint}, the "
              f"run's {trained_on}): these numbers are for other data", file=sys.stderr)
    splits = tuple(s for s in args.splits.split(",") if s)
    results = evaluate(model, ds, splits=splits, logit_lens=not args.no_logit_lens)
    print(json.dumps(results, indent=2) if args.json else format_table(results))
    return 0


def _bench(args) -> int:
    from jepa_kit import bench

    return bench.main(args.rest) or 0


# sweep, runs, params and study: parsed without importing torch (quick on a login node)
def _add_sweep_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from jepa_kit.sweeps import DEFAULT_OUTPUT

    p.add_argument("file", help="sweep file (YAML): base config + runs/vary/grid of TrainConfig fields")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--local", action="store_true", help="run the papermill executions one after another here")
    mode.add_argument("--slurm", action="store_true", help="write (and submit) a SLURM array job, one papermill run per task")
    p.add_argument("--dry-run", action="store_true", help="with --slurm: print the array script, submit nothing")
    p.add_argument("--preset", help="TrainConfig preset (tiny|paper), overrides the file's `preset:`")
    p.add_argument("--out", default=str(DEFAULT_OUTPUT), help="output folder (default: %(default)s)")
    p.add_argument("--kernel", help="Jupyter kernel name (default: --local this Python; --slurm 'jepa_kit')")
    p.add_argument("--account", help="SLURM account, e.g. PAS1234 (required for --slurm; default: $SBATCH_ACCOUNT)")
    p.add_argument("--partition", help="SLURM partition (default: none, the cluster's default; OSC Ascend: cpuonly for --gpus 0)")
    p.add_argument("--time", help="SLURM walltime per task, e.g. 04:00:00 (default: the sweep file's slurm.time, else 04:00:00)")
    p.add_argument("--gpus", type=int, metavar="N", help="GPUs per array task (#SBATCH --gpus-per-node; default 1, 0 = CPU-only)")
    p.add_argument("--cpus", type=int, metavar="N", help="CPU cores per array task (#SBATCH --cpus-per-task; default 8)")
    p.add_argument("--max-parallel", type=int, help="at most N array tasks at once")
    p.add_argument("--jobs", type=int, default=1, help="with --local: run N papermill executions at a time")
    p.add_argument("--list", action="store_true", help="only list the runs the file expands to")
    p.set_defaults(func=_sweep)
    return p


def _sweep(args) -> int:
    """`jepa-kit sweep FILE (--local | --slurm [--dry-run] | --list)`."""
    from jepa_kit import launch, sweeps

    try:
        sweep = sweeps.load_sweep(args.file, preset=args.preset)
        if args.list:
            for r in sweeps.plan(sweep.runs, args.out, sweep.preset, sweep.name, sweep.source):
                print(f"{r.name}\t{r.run_dir}")
            return 0
        if not (args.local or args.slurm):
            print("error: choose --local (run here) or --slurm (array job); --list shows the runs", file=sys.stderr)
            return EXIT_USAGE
        if args.local:
            if args.dry_run:
                print("--dry-run applies to --slurm; with --local use --list to see the runs", file=sys.stderr)
                return EXIT_USAGE
            return 0 if launch.run_sweep_local(sweep, args.out, kernel_name=args.kernel, jobs=args.jobs) else EXIT_FAILURE
        settings = dict(account=args.account, partition=args.partition, time=args.time, gpus_per_node=args.gpus,
                        cpus_per_task=args.cpus, max_parallel=args.max_parallel, kernel=args.kernel)
        if args.dry_run:
            print(launch.slurm_dry_run(sweep, args.out, **settings), end="")
            return 0
        path, _ = launch.write_slurm_sweep(sweep, args.out, **settings)
        print(f"wrote {path}")
        print(launch.submit(path))
        return 0
    except (sweeps.SweepError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE


def _add_runs_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("folder", help="a folder of run directories (searched recursively)")
    p.add_argument("--json", action="store_true", help="one JSON object per run instead of a table")
    p.add_argument("--watch", type=float, metavar="SECONDS", help="refresh every SECONDS until interrupted")
    p.set_defaults(func=_runs)
    return p


def _runs(args) -> int:
    """`jepa-kit runs FOLDER`: every run's state, step, items/s and latest metrics (a missing folder: exit 2)."""
    import datetime
    import time

    from jepa_kit.collect import format_status, status_table

    try:
        while True:
            rows = status_table(args.folder)
            if args.json:
                for r in rows:
                    print(json.dumps(r, default=str))
            else:
                if args.watch:
                    print(f"\x1b[2J\x1b[H{args.folder}  {datetime.datetime.now():%H:%M:%S}")
                print(format_status(rows))
            if not args.watch:
                return 0
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


def _add_params_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("file", help="a sweep file or a flat YAML of TrainConfig fields")
    p.add_argument("--out", required=True, help="the run directory")
    p.add_argument("--preset")
    p.add_argument("--index", type=int, default=0, help="which run of a sweep file (default 0)")
    p.set_defaults(func=_params)
    return p


def _params(args) -> int:
    """`jepa-kit params FILE --out RUN_DIR`: one run's full TrainConfig as YAML (the sbatch scripts' papermill -f)."""
    import yaml

    from jepa_kit.sweeps import SweepError, single_run_params

    try:
        params = single_run_params(args.file, args.out, preset=args.preset, index=args.index)
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(yaml.safe_dump(params, sort_keys=False), end="")
    return 0


def _add_study_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from jepa_kit.study import SOURCE

    p.add_argument("folder", help="folder of run directories (searched recursively)")
    p.add_argument("--out", default="papermill_runs/results", help="where study.csv and study.md go")
    p.add_argument("--readme", default=None, help="README to update between the results markers")
    p.add_argument("--copy-runs", default=None, metavar="DIR",
                   help="first copy the runs' config/metrics/results (no checkpoints) to DIR and build the table from there")
    p.add_argument("--source", default=SOURCE, help="the command that produced the runs, quoted in the README")
    p.set_defaults(func=_study)
    return p


def _study(args) -> int:
    from jepa_kit import study

    return study.write_study(args.folder, args.out, readme=args.readme, copy_to=args.copy_runs, source=args.source)


# commands with their own small parser in main(): `jepa-kit runs` must not pay for torch
_LIGHT = {
    "sweep": (_add_sweep_arguments, "papermill runs of the training notebook from a sweep YAML"),
    "runs": (_add_runs_arguments, "state of every run in a folder"),
    "params": (_add_params_arguments, "one run's full TrainConfig as YAML (papermill -f; the sbatch scripts)"),
    "study": (_add_study_arguments, "the ablation table (CSV, markdown, README) from a folder of runs"),
}


def _demo(args) -> int:
    from jepa_kit import demo

    return demo.main(args) or 0


_PASSTHROUGH = {"bench": _bench}


def build_parser(train_fields: bool = True) -> argparse.ArgumentParser:
    """``train_fields=False`` skips importing torch (for quick commands like `jepa-kit runs`)."""
    p = argparse.ArgumentParser(prog="jepa-kit", description="LLM-JEPA vs the reversal curse, on synthetic facts.")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="generate or check a dataset").add_subparsers(dest="data_command", required=True)
    g = data.add_parser("generate", help="write vocab.json, train.json, valid.json")
    from jepa_kit.datagen import PRESETS, STRUCTURES, GenParams
    g.add_argument("--preset", default="tiny",
                   help=f"{' | '.join(PRESETS)} (*_abstract: one token per entity)")
    g.add_argument("--out", required=True)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--force", action="store_true", help="replace a dataset already in --out (never a run directory)")
    g.add_argument("--structure", choices=STRUCTURES, default=None,
                   help="how a relation pair's facts are laid out: shift (the kit's presets) or pairing (the binding "
                   "paper's generator: a random perfect matching per relation pair)")
    for f in fields(GenParams):
        if f.name == "structure":
            continue
        g.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=int, default=None,
                       choices=(1, 2) if f.name == "entity_tokens" else None,
                       help="1: one token per entity (the abstract setting), 2: first and last name"
                       if f.name == "entity_tokens" else f"override the preset's {f.name}")
    g.add_argument("--patch-len", dest="entity_tokens", type=int, choices=(1, 2), help=argparse.SUPPRESS)  # old name
    g.set_defaults(func=_data_generate)
    c = data.add_parser("check", help="validate a dataset and print a summary; non-zero exit on bad data")
    c.add_argument("dir")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_data_check)

    t = sub.add_parser("train", help="train one run (any TrainConfig field as --field value)")
    if train_fields:
        from jepa_kit.config import add_config_arguments
        add_config_arguments(t)
    t.set_defaults(func=_train)

    e = sub.add_parser("eval", help="evaluate a run directory")
    e.add_argument("run")
    e.add_argument("--data", default=None, help="data directory (default: the one the run was trained on)")
    e.add_argument("--splits", default="train,atomic,test")
    e.add_argument("--checkpoint", default="last", help="last | best")
    e.add_argument("--no-logit-lens", action="store_true")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_eval)

    b = sub.add_parser("bench", help="training-step and evaluation speed table", add_help=False)
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(func=_bench)
    for name, (add_arguments, text) in _LIGHT.items():
        add_arguments(sub.add_parser(name, help=text, description=text))

    d = sub.add_parser("demo", help="the README's main job: tiny data, three trainings, the reversal table")
    d.add_argument("--out", default="demo_out")
    d.add_argument("--fresh", action="store_true", help="start over instead of resuming finished runs")
    d.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in _PASSTHROUGH:
        # these parse their own arguments (argparse.REMAINDER would stop at a leading --flag)
        return _PASSTHROUGH[argv[0]](argparse.Namespace(rest=argv[1:]))
    if argv and argv[0] in _LIGHT:
        add_arguments, text = _LIGHT[argv[0]]
        args = add_arguments(argparse.ArgumentParser(prog=f"jepa-kit {argv[0]}", description=text)).parse_args(argv[1:])
        return _run(args.func, args)
    training = bool(argv) and argv[0] == "train"
    # before torch imports: a SIGTERM then is a preemption too
    with (StopSignal() if training else contextlib.nullcontext()) as early:
        args = build_parser(train_fields=training).parse_args(argv)
        args.early_stop = early
        return _run(args.func, args)


def _input_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "your input is wrong" (exit 2); their messages name the file or field."""
    from jepa_kit.checkpoint import CheckpointError
    from jepa_kit.data import DataError
    from jepa_kit.runlock import RunLocked
    from jepa_kit.vocab import VocabError

    errors = [DataError, VocabError, CheckpointError, RunLocked, FileExistsError, FileNotFoundError, PermissionError]
    if "jepa_kit.config" in sys.modules:  # imported by the commands that can raise it (torch is heavy)
        errors.append(sys.modules["jepa_kit.config"].ConfigError)
    return tuple(errors)


def _run(func, args) -> int:
    """A command, with its errors as one line on stderr (see the module docstring for exit codes)."""
    try:
        return func(args)
    except KeyboardInterrupt:
        raise
    except Exception as e:
        if isinstance(e, _input_errors()):
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        if os.environ.get("JEPA_KIT_DEBUG"):
            raise
        print(f"error: {type(e).__name__}: {e} (JEPA_KIT_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
