"""Data benchmark: generate the `paper` preset, load it cold and from cache, report tensor memory.

    .venv/bin/python benchmarks/bench_data.py [--out DIR] [--json]

Targets on a 2-core CPU: generate <= 60 s, cold load <= 10 s, cached load <= 1 s, tensors <= 50 MB.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from jepa_kit.data import load_dataset
from jepa_kit.datagen import generate


def tensor_mb(ds) -> float:
    splits = [ds.train, *ds.valid.values()]
    return sum(t.numel() * t.element_size() for s in splits for t in (s.ids, s.types)) / 2**20


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="where to write the data (default: a temporary directory)")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="jepa_bench_"))
    try:
        t0 = time.perf_counter()
        generate(args.preset, root, seed=0, force=True)  # the benchmark regenerates on purpose
        t_gen = time.perf_counter() - t0
        shutil.rmtree(root / ".jepa_cache", ignore_errors=True)
        t0 = time.perf_counter()
        ds = load_dataset(root)
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        ds = load_dataset(root)
        t_cached = time.perf_counter() - t0
        rows = [
            ("generate", f"{t_gen:.2f} s", "<= 60 s"),
            ("load, cold", f"{t_cold:.2f} s", "<= 10 s"),
            ("load, cached", f"{t_cached:.3f} s", "<= 1 s"),
            ("tensors in memory", f"{tensor_mb(ds):.1f} MB", "<= 50 MB"),
        ]
        size = sum(p.stat().st_size for p in root.glob("*.json")) / 2**20
        if args.json:
            print(json.dumps({"preset": args.preset, "items": len(ds.train), "json_mb": size, "generate_s": t_gen,
                              "load_cold_s": t_cold, "load_cached_s": t_cached, "tensor_mb": tensor_mb(ds)}))
        else:
            print(f"preset {args.preset}: {len(ds.train)} train.json items, {size:.1f} MB of JSON")
            print(f"{'step':<20}{'measured':>12}  target")
            for name, value, target in rows:
                print(f"{name:<20}{value:>12}  {target}")
    finally:
        if not args.out:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
