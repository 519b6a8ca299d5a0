#!/usr/bin/env bash
# ADRA on one GPU, every step time-bounded: the CUDA tests, the fused supernet's inner step at
# 28x28, then ADRA's seconds per capture and what it rebuilt at P = 32, 64, 128 on 28x28
# real digits (mnist-5k), theta known, and at P = 32 with theta unknown (surrogate draws).
# The tests and the supernet take about 2 minutes on an H200; each ADRA step at most
# BUDGET + 150 s (P = 32: 12-23 s per capture there, measured 2026-11-30).
#
#   bash benchmarks/adra_gpu.sh [OUT_DIR]     # from the project root; OUT_DIR: benchmarks/results
#
# Every step has its own bound: ADRA starts no capture once BUDGET wall seconds of one P
# are spent (benchmarks.adra --budget), and `timeout` ends a step that overruns, so one slow
# case cannot starve the rest. Everything printed goes to OUT_DIR/adra-gpu.log, the JSON
# results of each step to OUT_DIR. Environment: PYTHON (python3), DEVICE (cuda), DATASET
# (mnist-5k), NODES ("32 64 128"), BUDGET (45), CAPTURES (10), THREADS (4).
set -u
OUT_DIR=${1:-benchmarks/results}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
DATASET=${DATASET:-mnist-5k}
NODES=${NODES:-32 64 128}
BUDGET=${BUDGET:-45}
CAPTURES=${CAPTURES:-10}
THREADS=${THREADS:-4}
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/adra-gpu.log"
export PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS COMMAND...: run it under a time bound, log it, go on whatever it returns
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit} s): $*" | tee -a "$LOG"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
    echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s" | tee -a "$LOG"
}

adra() {  # adra NAME P [--set KEY=VALUE ...]
    local name=$1 nodes=$2
    shift 2
    step "$name" $((BUDGET + 150)) "$PY" -m benchmarks.adra --device "$DEVICE" --dataset "$DATASET" --nodes "$nodes" \
        --captures "$CAPTURES" --solvers lm --threads "$THREADS" --budget "$BUDGET" --results "$OUT_DIR" "$@"
}

step environment 60 "$PY" -c "import torch, platform; print(platform.python_version(), 'torch', torch.__version__,
      'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
step cuda-tests 120 "$PY" -m pytest -q -p no:cacheprovider tests/attacks/test_adra_cuda.py
step supernet 120 "$PY" -m benchmarks supernet --device "$DEVICE" --sizes 28 --nodes 32,64 --batches 1 \
    --modes inner --repeats 3 --ref-cap 10 --threads "$THREADS" --results "$OUT_DIR"
for P in $NODES; do
    adra "adra-P$P" "$P"
    if [ "$P" = 32 ]; then  # theta unknown: the paper's threat model (an expectation over 4 fresh theta draws)
        adra "adra-P32-surrogate" 32 --set knows-weights=false --set theta-prior=surrogate --set surrogate-draws=4
    fi
done
echo "== done" | tee -a "$LOG"
