"""Does the compiled training step read memory it never wrote on a CPU too (issue 12's NaN)?

On an H100 the Inductor-compiled ntp step went NaN on allocator memory filled with 0xFF bytes. A CPU
has no caching allocator to fill, but glibc can fill every allocation with a chosen byte
(``MALLOC_PERTURB_``; ``MALLOC_MMAP_THRESHOLD_`` keeps allocations up to 32 MiB on the heap, where
that applies). This runs two training steps of the tiny model (ntp, fixed-shape rows, batch 64),
eager and compiled, fp32 and bf16 autocast, once per byte in a fresh process, and prints each
setting's losses and gradient sums: a step that read unwritten memory would differ between bytes.

    python benchmarks/cpu_poison_check.py [--perturb 0,1,85] [--compile-only]

On this 2-core machine (2026-11-27, torch 2.13 CPU) every setting gave the same losses for every
byte, and gradient sums equal to 1e-6 (compiled: Inductor's C++ code).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def steps(data: str, compiled: bool, bf16: bool) -> list[dict]:
    import torch

    from jepa_kit.config import TrainConfig
    from jepa_kit.data import load_dataset
    from jepa_kit.objectives import get_objective
    from jepa_kit.runtime import compile_step
    from jepa_kit.train import training_rows

    cfg = TrainConfig.from_preset("tiny", data=data, out="unused", objective="ntp")
    ds = load_dataset(data)
    ids, types = training_rows(ds, "ntp")
    torch.manual_seed(0)
    model = get_objective("ntp").build_model(ds.vocab, cfg).train()
    fwd = compile_step(model) if compiled else model
    out, B = [], 64
    for i in range(2):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = fwd(ids[i * B:(i + 1) * B], types[i * B:(i + 1) * B], mode="static")["loss"]
        loss.backward()
        g = torch.cat([p.grad.flatten().double() for p in model.parameters() if p.grad is not None])
        out.append({"loss": float(loss), "grad_sum": float(g.sum()), "finite": bool(torch.isfinite(g).all())})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--perturb", default="0,1,85", help="MALLOC_PERTURB_ bytes, one fresh process each (0: off)")
    ap.add_argument("--compile-only", action="store_true", help="only the compiled step")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child: 'DATA' -> JSON on stdout
    a = ap.parse_args(argv)
    settings = [(c, b) for c in ((True,) if a.compile_only else (False, True)) for b in (False, True)]
    if a.one:
        print(json.dumps({f"{'compiled' if c else 'eager'} {'bf16' if b else 'fp32'}": steps(a.one, c, b) for c, b in settings}))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "tiny")
        subprocess.run([sys.executable, "-m", "jepa_kit", "data", "generate", "--preset", "tiny", "--out", data],
                       check=True, capture_output=True, cwd=ROOT)
        runs = {}
        for byte in a.perturb.split(","):
            env = {**os.environ, "MALLOC_PERTURB_": byte, "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
                   "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
            p = subprocess.run([sys.executable, __file__, "--one", data] + (["--compile-only"] if a.compile_only else []),
                               env=env, capture_output=True, text=True)
            if p.returncode:
                print(p.stderr[-2000:], file=sys.stderr)
                return 1
            runs[byte] = json.loads(p.stdout.strip().splitlines()[-1])
    for name in next(iter(runs.values())):
        for byte, r in runs.items():
            print(f"{name:<14} perturb {byte:>3}: " + "  ".join(
                f"loss {s['loss']:.6f} grad sum {s['grad_sum']:+.7f}{'' if s['finite'] else ' NON-FINITE'}" for s in r[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
