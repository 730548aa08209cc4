# Shared by the sbatch scripts in this folder (sourced, not run).
#
#   activate_env            module load + conda activate (skipped when JEPA_KIT_SKIP_ENV=1)
#   run_resumable DIR CMD   run CMD; on USR1/TERM ask the training to checkpoint; requeue the
#                           job when DIR/status.json then says "preempted"
#
# Why the forwarding: `#SBATCH --signal=B:USR1@300` signals only this batch shell. The
# training runs in a child of CMD (the Jupyter kernel under papermill, the workers under
# torchrun), and jepa_kit.train checkpoints on USR1/TERM and marks the run "preempted". The
# requeued job runs the same command on the same run directory, and train() resumes it.

activate_env() {
    if [ "${JEPA_KIT_SKIP_ENV:-0}" = 1 ]; then
        return 0
    fi
    if ! command -v module >/dev/null 2>&1 && [ -f /etc/profile.d/lmod.sh ]; then
        # shellcheck disable=SC1091
        source /etc/profile.d/lmod.sh
    fi
    module load "${CONDA_MODULE:-miniconda3}"
    eval "$(conda shell.bash hook)"
    conda activate "${CONDA_ENV:-jepa_kit}"
}

# The children of a process (the kernel under papermill, the workers under torchrun).
_children() {
    pgrep -P "$1" 2>/dev/null || true
}

_forward_stop() {
    local sig=$1 pid=$2 child
    echo "[slurm] $(date '+%F %T') SIG$sig: asking the training to checkpoint and stop" >&2
    for child in $(_children "$pid"); do
        kill -s "$sig" "$child" 2>/dev/null || true
    done
}

# State of a run directory ("finished", "preempted", ...; empty when there is no status.json).
run_state() {
    python - "$1" <<'PY' 2>/dev/null || true
import json, sys
try:
    print(json.load(open(sys.argv[1] + "/status.json")).get("state", ""))
except (OSError, ValueError):
    pass
PY
}

run_resumable() {
    local run_dir=$1 pid rc state
    shift
    echo "[slurm] $(date '+%F %T') job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}) on $(hostname): $1 -> $run_dir" >&2
    "$@" &
    pid=$!
    trap '_forward_stop USR1 '"$pid" USR1
    trap '_forward_stop TERM '"$pid" TERM
    while :; do
        rc=0
        wait "$pid" || rc=$?
        # wait returns early (rc > 128) when a trapped signal arrives; go on waiting for the command
        kill -0 "$pid" 2>/dev/null || break
    done
    trap - USR1 TERM
    state=$(run_state "$run_dir")
    if [ "$state" = preempted ]; then
        echo "[slurm] run checkpointed (state: preempted); requeueing job ${SLURM_JOB_ID}" >&2
        scontrol requeue "${SLURM_JOB_ID}"
        return 0
    fi
    echo "[slurm] $(date '+%F %T') exit $rc, run state: ${state:-unknown}" >&2
    return "$rc"
}
