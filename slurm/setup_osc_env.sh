#!/bin/bash
# One-time setup on an OSC login node (Ascend or Cardinal), from the repository:
#
#   bash slurm/setup_osc_env.sh
#
# Creates (or updates) the conda env from environment.yml, installs jepa_kit into it (editable),
# and registers the Jupyter kernel "jepa_kit" in ~/.local/share/jupyter/kernels, where both
# OnDemand's JupyterLab and papermill (in the batch jobs) find it.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONDA_MODULE="${CONDA_MODULE:-miniconda3}"
CONDA_ENV="${CONDA_ENV:-jepa_kit}"
KERNEL="${KERNEL:-jepa_kit}"

cd "$REPO"
if ! command -v module >/dev/null 2>&1 && [ -f /etc/profile.d/lmod.sh ]; then
    # shellcheck disable=SC1091
    source /etc/profile.d/lmod.sh
fi
module load "$CONDA_MODULE"
eval "$(conda shell.bash hook)"

if conda env list | awk '{print $1}' | grep -qx "$CONDA_ENV"; then
    echo "updating conda env $CONDA_ENV from environment.yml"
    conda env update -n "$CONDA_ENV" -f "$REPO/environment.yml" --prune
else
    echo "creating conda env $CONDA_ENV from environment.yml"
    conda env create -n "$CONDA_ENV" -f "$REPO/environment.yml"
fi
conda activate "$CONDA_ENV"

python -m ipykernel install --user --name "$KERNEL" --display-name "Python (jepa_kit)"
mkdir -p "$REPO/papermill_runs/output/slurm"   # sbatch does not create the log folder itself
python -c "import jepa_kit, torch; print('jepa_kit', jepa_kit.__version__, '| torch', torch.__version__)"
echo "done: pick the kernel 'Python (jepa_kit)' in JupyterLab; batch jobs use KERNEL=$KERNEL"
