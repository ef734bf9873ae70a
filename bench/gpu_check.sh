#!/usr/bin/env bash
# The GPU checks of issue 4 as one script, for a lent device machine (bench/RESULTS.md
# "GPU"): the engine suite's CUDA cases (torch, AOTInductor fp32/fp16; TensorRT where
# installed), the parity figures, then the engine benchmark's GPU rows with CPU eager
# torch as the reference in the same run. Logs and JSON go to $OUT.
#
# That machine has torch, pytest and pytest-benchmark but not our other dependencies,
# and no network: before the call, put the missing pure-Python wheels in .whl/ (ignored
# by git) and a copy of the real data the checks read in .devdata/ (ignored; never
# committed): hdfs/sessions and the first 1,100 lines of bgl/windows/train.jsonl.
#   .venv/bin/pip wheel --no-deps -w .whl drain3 jsonpickle cachetools fluent-logger pytest-asyncio
# K and BENCH_K narrow the test and benchmark selections (pytest -k).
# Call: run(command="bash bench/gpu_check.sh", carry=[".whl", ".devdata"]).
#
# `bash bench/gpu_check.sh diag` runs only bench/aoti_cuda_diag.py (where the AOTInductor
# CUDA package crashes: a tiny model vs our program, dynamic vs static shapes; ~3-6 min)
# on an exported bundle copied into .devbundle/ (ignored by git):
#   cp -r <bundle> .devbundle   # then run(command="bash bench/gpu_check.sh diag",
#                               #          carry=[".whl", ".devbundle"])
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
# pyproject maps engine/, export/ and agent_plugin/ to logsieve.* at install time; this
# throwaway copy of the tree puts them in place instead of installing.
for d in engine export agent_plugin; do cp -r "$d" "logsieve/$d"; done
export PYTHONPATH="$PWD:/tmp/site" LOGSIEVE_DATA="$PWD/.devdata"

if [ "${1:-}" = diag ]; then
    timeout 560 python3 bench/aoti_cuda_diag.py .devbundle --device cuda --timeout 170 \
        2>&1 | tee "$OUT/aoti_diag.md"
    exit
fi

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import torch, onnxruntime as o; print('torch', torch.__version__, torch.version.cuda, torch.cuda.get_device_name(), 'ort', o.__version__, o.get_available_providers())"
  g++ --version | head -1; nproc; } 2>&1 | tee "$OUT/machine.txt"

# -W default: warnings of this machine's torch build are reported, not turned into errors.
timeout 280 python3 -m pytest tests/engine -k "${K:-cuda}" -p no:cacheprovider --basetemp=/tmp/engt \
    -W default -rA --durations=8 2>&1 | tee "$OUT/tests.log"
BUNDLE=/tmp/engt/engine0/bundle  # the suite's bundle: trained on real HDFS, engines built
timeout 90 python3 bench/engine_parity.py "$BUNDLE" --device cuda 2>&1 | tee "$OUT/parity.md"
LOGSIEVE_BENCH_BUNDLE=$BUNDLE LOGSIEVE_BENCH_THREADS=${LOGSIEVE_BENCH_THREADS:-2} \
    timeout 200 python3 -m pytest bench/test_engine_bench.py -p no:cacheprovider -W default \
    -k "${BENCH_K:-cuda or torch-eager or gpu_order}" -s --benchmark-columns=min,mean,ops \
    --benchmark-json="$OUT/bench.json" 2>&1 | tee "$OUT/bench.log"
