#!/usr/bin/env bash
# The device check of issue 6, as one prepared script: paper data, the bench table, a short
# paper-scale training slice. On a machine without CUDA it runs a CPU-sized version (tiny data
# for the slice, 2 evaluation queries for the projection) so that it is known to work.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # prints tables; JSON under OUT_DIR
#
# Needs python3 with torch, transformers, safetensors, numpy, pandas, pyyaml, tqdm (the GPU
# images here have them); the kit itself is used from this checkout via PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/jepa_gpu_check}}
PY=${PY:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
if "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  DEVICE=cuda
  "$PY" -c 'import torch; print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__)'
  SLICE_DATA=paper; SLICE="--preset seed --batch_size 1024 --steps ${SLICE_STEPS:-6000} --log_every 500 --eval_every 0"
  BENCH_EXTRA=""
else
  DEVICE=cpu
  echo "device: cpu (no CUDA): CPU-sized check"
  SLICE_DATA=tiny; SLICE="--preset tiny --steps 200 --eval_every 0"
  BENCH_EXTRA="--eval-queries 2"
fi

t0=$(date +%s)
"$PY" -m jepa_kit data generate --preset paper --out "$OUT/data/paper"
[ "$SLICE_DATA" = paper ] || "$PY" -m jepa_kit data generate --preset "$SLICE_DATA" --out "$OUT/data/$SLICE_DATA"
echo "data generated in $(( $(date +%s) - t0 )) s"

"$PY" -m jepa_kit bench --device "$DEVICE" --json $BENCH_EXTRA > "$OUT/bench.json"
"$PY" - "$OUT/bench.json" <<'PY'
import json, sys
from jepa_kit.bench import format_table
print(format_table(json.load(open(sys.argv[1]))))
PY

rm -rf "$OUT/runs/slice"
t0=$(date +%s)
"$PY" -m jepa_kit train --data "$OUT/data/$SLICE_DATA" --out "$OUT/runs/slice" --device "$DEVICE" --progress log $SLICE
echo "training slice: $(( $(date +%s) - t0 )) s wall (includes the final evaluation of every valid split)"
"$PY" - "$OUT/runs/slice" <<'PY'
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
train = [r for r in rows if r.get("kind") == "train"]
print(f"items/s over the last logged window: {train[-1]['items_per_s']:,.0f} (step {train[-1]['step']})")
res = json.loads((run / "results.json").read_text())
for split in ("train", "atomic", "test"):
    m = res[split]
    print(f"{split:<7} exact {m['exact_match']:.3f}  entity MRR {m['entity_mrr']:.3f}  n {m['n']}")
PY
