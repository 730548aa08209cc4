#!/usr/bin/env bash
# Issue 14 in one command: the five runs of papermill_runs/paper_scale.yaml (ntp, the seed's JEPA,
# JEPA with InfoNCE, reverse_aug, concept 1+1) on the paper data, one after another on one GPU, the
# same training-time budget each (45 s; the file's comments give the arithmetic), then the README
# table. Without CUDA it runs the CPU-sized form (tiny data, 15 s per run, ~2-3 min in all), so the
# script is known to work before a GPU is spent on it.
#
#   bash benchmarks/paper_scale.sh OUT_DIR
#
# OUT_DIR/paper_scale/ receives each run's config, metrics, results and status (no checkpoints:
# those stay under WORK), the executed notebooks when papermill is installed, sweep_meta.json
# (card, date, budget), curves.csv and table.md; notebook 03 opens it (runs_dir). Environment:
#   RUNS=ntp,jepa     only these runs (names: ntp jepa jepa_infonce reverse_aug concept_1+1)
#   BUDGET_S=180      another training budget for every run (the same for each)
#   COMPILE=true      torch.compile every run (pays from ~2 min budgets; the compile counts in them)
#   DEADLINE_S=550    skip a run that could not finish by then (default 550 s on CUDA: the
#                     device call is cut at 600 s); 0 = none
#   WORK=/tmp/...     run directories with checkpoints (default /tmp/paper_scale_work)
#   PY=python3        the interpreter (default: .venv/bin/python when present, else python3)
#   MODE=library      force the path: papermill | library (default: papermill when importable)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/paper_scale}}
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
args=(--out "$OUT" --path "${MODE:-auto}")
[ -n "${RUNS:-}" ] && args+=(--runs "$RUNS")
[ -n "${BUDGET_S:-}" ] && args+=(--budget "$BUDGET_S")
[ -n "${COMPILE:-}" ] && args+=(--compile "$COMPILE")
[ -n "${DEADLINE_S:-}" ] && args+=(--deadline "$DEADLINE_S")
[ -n "${WORK:-}" ] && args+=(--work "$WORK")
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # tiny models: one thread is faster, and no oversubscription
fi
"$PY" -c 'import torch, transformers; print("device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (no CUDA)", "| torch", torch.__version__, "| transformers", transformers.__version__)'
exec "$PY" benchmarks/paper_scale.py "${args[@]}"
