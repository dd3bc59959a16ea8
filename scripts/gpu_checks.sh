#!/usr/bin/env bash
# The GPU checks of issue 16 in one go: the CUDA tests, the benchmark table and the profile of the
# expansion step. Everything it prints and writes goes under $OUT (default gpu_out/):
#   env.txt            GPU, driver, torch, nvcc
#   pytest.txt         the CUDA tests (-k cuda: tests/gpu/test_*_cuda.py, test_cuda_build.py,
#                      test_sg3_cuda.py and the GPU tests of test_bias_act.py / test_upfirdn2d.py)
#   bench_gpu.jsonl    one JSON line per benchmark case (appended as they finish)
#   bench_gpu.md       the markdown table of all of them
#   profile_*.txt      torch.profiler top ops of the expansion step
#   log.txt            everything, in order
#
#   bash scripts/gpu_checks.sh [WHEEL_DIR]       # WHEEL_DIR: wheels to install first (offline machine)
#
# Each stage has its own time limit so that a slow one cannot take the others' results with it.
# Budget on one H200: about 7 minutes. BENCH_QUICK=1 runs a short version (fewer variants).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
exec > >(tee -a "$OUT/log.txt") 2>&1

if [ -n "${1:-}" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/sg2_site "$1"/*.whl \
        || { echo "wheel install failed"; exit 1; }
    export PYTHONPATH=/tmp/sg2_site${PYTHONPATH:+:$PYTHONPATH}
fi
# A fresh extensions cache: every plugin in this run is built from empty (the build test times it).
TORCH_EXTENSIONS_DIR=$(mktemp -d)
export TORCH_EXTENSIONS_DIR

stage() { echo; echo "=== $1 ($(date -u +%H:%M:%S))"; }

stage environment
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(), torch.cuda.get_device_capability())"
  nvcc --version | tail -2; nproc; } 2>&1 | tee "$OUT/env.txt"

stage "CUDA tests"
OMP_NUM_THREADS=2 timeout "${TEST_TIMEOUT_S:-130}" "$PY" -m pytest -v -rfEsP -p no:cacheprovider ${PYTEST_WORKERS--n 8} \
    -k cuda tests/gpu tests/core/test_bias_act.py tests/core/test_upfirdn2d.py tests/core/test_cuda_build.py \
    tests/stylegan3/test_sg3_cuda.py 2>&1 | tee "$OUT/pytest.txt"
echo "pytest exit code: ${PIPESTATUS[0]}"

if [ "${BENCH_QUICK:-0}" = 1 ]; then
    VARIANTS=${BENCH_VARIANTS:-plain,tf32}
else
    VARIANTS=${BENCH_VARIANTS:-plain,tf32,bf16,channels_last,fused_adam}
fi
stage "benchmark: stylegan2 1024^2, with the expansion-step profile"
BIG=${BENCH_BIG:-stylegan2}
SMALL=${BENCH_SMALL:-paper256}
# BENCH_EXTRA: more bench_gpu options, last (a CPU dry run: --device cpu --tiny-clip --steps 1 --domains 3,4)
timeout "${BENCH_1024_TIMEOUT_S:-160}" "$PY" -m scripts.bench_gpu --configs "$BIG" --variants "$VARIANTS" \
    --domains 3,100 --profile "$BIG:3" --out "$OUT" ${BENCH_EXTRA:-}
echo "exit code: $?"
stage "benchmark: paper256"
timeout "${BENCH_256_TIMEOUT_S:-90}" "$PY" -m scripts.bench_gpu --configs "$SMALL" --variants "$VARIANTS" \
    --domains 3,100 --out "$OUT" ${BENCH_EXTRA:-}
echo "exit code: $?"
if [ "${COMPILE_TIMEOUT_S:-60}" -gt 0 ]; then
    stage "benchmark: torch.compile (paper256 expansion step; time-boxed)"
    timeout "${COMPILE_TIMEOUT_S:-60}" "$PY" -m scripts.bench_gpu --configs "$SMALL" --kinds expand \
        --variants compile --domains 3 --no-flops --warmup 2 --out "$OUT" ${BENCH_EXTRA:-}
    echo "exit code: $?"
fi
stage done
cat "$OUT/bench_gpu.md"
