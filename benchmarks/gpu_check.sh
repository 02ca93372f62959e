#!/usr/bin/env bash
# The GPU check of genlearn, for a person with a CUDA machine (under 5 minutes):
#
#     bash benchmarks/gpu_check.sh [--data-dir ../shared/data] [--ais-steps 100000]
#
# runs the GPU-marked tests, one epoch of every recipe on the GPU, the RBM 784x500 CD-1 epoch and AIS speed
# (100,000 temperatures x 100 chains), and, with several GPUs, torchrun with N processes against one
# (benchmarks/gpu_check.py); writes benchmarks/results/gpu_check.json. Arguments go to gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: torch ($("$PYTHON" -c 'import torch; print(torch.__version__)')) sees no CUDA GPU;" \
         "install a CUDA build of torch (https://pytorch.org) on a machine with one" >&2
    exit 2
fi
exec timeout 290 "$PYTHON" benchmarks/gpu_check.py "$@"
