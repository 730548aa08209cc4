"""The `jepa-kit` command (also `python -m jepa_kit`).

Exit codes: 0 success; 1 a failure (a diverged run, a leak found by `data check`, an unexpected
error); 2 a usage or input error (bad arguments, config, data, checkpoint, a run directory in use or
a dataset that would be overwritten); 75 a preempted run that can be resumed. Errors are one line
on stderr naming the file or field; JEPA_KIT_DEBUG=1 shows the traceback of unexpected ones.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from pathlib import Path

EXIT_FAILURE, EXIT_USAGE = 1, 2


def _data_generate(args) -> int:
    from jepa_kit.datagen import GenParams, generate, resolve

    overrides = {f.name: getattr(args, f.name) for f in fields(GenParams) if getattr(args, f.name, None) is not None}
    params = resolve(args.preset, **overrides)
    out = generate(params, args.out, seed=args.seed, force=args.force)
    print(f"wrote {out}/vocab.json, train.json, valid.json ({args.preset}, seed {args.seed})")
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
    from jepa_kit import train as T

    try:
        run_dir = T.train(T.config_from_args(args))
    except T.Preempted as e:
        # checkpoint written; the distinct exit code tells a requeue script "resume me", not "failed"
        print(f"preempted: {e}", file=sys.stderr)
        return T.PREEMPTED_EXIT_CODE
    except T.TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"run directory: {run_dir}")
    return 0


def _eval(args) -> int:
    from jepa_kit.data import load_dataset
    from jepa_kit.evaluate import evaluate, format_table
    from jepa_kit.files import read_json
    from jepa_kit.train import load_run

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


def _sweep(args) -> int:
    from jepa_kit import runs

    return runs.sweep_main(args.rest) or 0


def _runs(args) -> int:
    from jepa_kit import runs

    return runs.runs_main(args.rest) or 0


def _study(args) -> int:
    from jepa_kit import study

    return study.main(args.rest) or 0


def _demo(args) -> int:
    from jepa_kit import demo

    return demo.main(args) or 0


_PASSTHROUGH = {"bench": _bench, "sweep": _sweep, "runs": _runs, "study": _study}


def build_parser(train_fields: bool = True) -> argparse.ArgumentParser:
    """``train_fields=False`` skips importing torch (for quick commands like `jepa-kit runs`)."""
    p = argparse.ArgumentParser(prog="jepa-kit", description="LLM-JEPA vs the reversal curse, on synthetic facts.")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="generate or check a dataset").add_subparsers(dest="data_command", required=True)
    g = data.add_parser("generate", help="write vocab.json, train.json, valid.json")
    g.add_argument("--preset", default="tiny", help="tiny | small | paper")
    g.add_argument("--out", required=True)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--force", action="store_true", help="replace a dataset already in --out (never a run directory)")
    from jepa_kit.datagen import GenParams
    for f in fields(GenParams):
        g.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=int, default=None,
                       help=f"override the preset's {f.name}")
    g.set_defaults(func=_data_generate)
    c = data.add_parser("check", help="validate a dataset and print a summary; non-zero exit on bad data")
    c.add_argument("dir")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_data_check)

    t = sub.add_parser("train", help="train one run (any TrainConfig field as --field value)")
    if train_fields:
        from jepa_kit.train import add_config_arguments
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

    for name, func, text in (("bench", _bench, "training-step and evaluation speed table"),
                             ("sweep", _sweep, "papermill runs of the training notebook from a sweep YAML"),
                             ("runs", _runs, "state of every run in a folder"),
                             ("study", _study, "the ablation table (CSV, markdown, README) from a folder of runs")):
        s = sub.add_parser(name, help=text, add_help=False)
        s.add_argument("rest", nargs=argparse.REMAINDER)
        s.set_defaults(func=func)

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
    args = build_parser(train_fields=bool(argv) and argv[0] == "train").parse_args(argv)
    return _run(args.func, args)


def _input_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "your input is wrong" (exit 2); their messages name the file or field."""
    from jepa_kit.checkpoint import CheckpointError
    from jepa_kit.data import DataError
    from jepa_kit.runlock import RunLocked
    from jepa_kit.vocab import VocabError

    errors = [DataError, VocabError, CheckpointError, RunLocked, FileExistsError, FileNotFoundError, PermissionError]
    if "jepa_kit.train" in sys.modules:  # imported by the commands that can raise it (torch is heavy)
        errors.append(sys.modules["jepa_kit.train"].ConfigError)
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
