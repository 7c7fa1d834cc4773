#!/bin/bash
# Every check that needs a GPU, in one command (a few minutes on an H200), from a checkout
# on a machine whose Python has torch with CUDA and triton:
#
#     bash benchmarks/gpu_checks.sh [OUT]      # logs and tables into OUT (default gpu-checks/)
#
# 1. the `cuda` tests (tests/test_cuda.py and the cuda-marked training tests), in parallel;
# 2. benchmarks/gpu.py: every cell and engine against cuDNN, float32 and bf16 autocast;
# 3. benchmarks/cells.py on CUDA: the cell modules in a decoder loop against torch.nn's cells;
# 4. benchmarks/step_parts.py: the host time of the pieces of one cell-module step;
# 5. benchmarks/step_launches.py on CUDA: kernel launches per cell-module step, torch.nn's beside.
# PYTHON names the interpreter (default python3); the package is used from src/.
set -u
OUT=$(realpath -m "${1:-gpu-checks}")
PYTHON=${PYTHON:-python3}
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if ! "$PYTHON" -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    echo "gpu_checks.sh: $PYTHON has no torch that sees a CUDA GPU (set PYTHON=...); every check here needs one" >&2
    exit 1
fi
mkdir -p "$OUT"
status=0

step() {  # name, limit in seconds, log file, command...
    local name=$1 limit=$2 log=$3
    shift 3
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$log" 2>&1
    local code=$?
    echo "$name: exit $code in $((SECONDS - start)) s ($OUT/$log)"
    tail -n 3 "$OUT/$log"
    [ "$code" -eq 0 ] || status=1
}

step "cuda tests" 300 cuda_tests.log "$PYTHON" -m pytest -q -m cuda -n 8 -p no:cacheprovider --tb=short -rf \
    tests/test_cuda.py tests/test_training.py
step "gpu.py" 300 gpu.log "$PYTHON" benchmarks/gpu.py --repeats 7 --out "$OUT/gpu.md"
step "cells.py" 120 cells.log "$PYTHON" benchmarks/cells.py --device cuda --engines fused,triton --repeats 7
step "step_parts.py" 120 step_parts.log "$PYTHON" benchmarks/step_parts.py
step "step_launches.py" 120 step_launches.log "$PYTHON" benchmarks/step_launches.py --device cuda
exit $status
