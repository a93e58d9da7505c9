#!/usr/bin/env bash
# The GPU rows of BENCHMARKS.md on any Linux machine with a Vulkan driver (NVIDIA, AMD,
# Intel). Build first:  cargo build --release -p dam-experiments
# Usage:  bash scripts/device-bench.sh        (DAM=path/to/dam, OUT=folder to override)
# Every result is one JSON line in $OUT/gpu-bench.jsonl (and on stdout); errors go to
# $OUT/gpu-bench.err.
set -uo pipefail
cd "$(dirname "$0")/.."
D=${DAM:-target/release/dam}
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
LOG=$OUT/gpu-bench.jsonl
if [ ! -x "$D" ]; then
  echo "no dam binary at $D: run cargo build --release -p dam-experiments (or set DAM)" >&2
  exit 2
fi
run() { echo "+ $*" >&2; "$@" 2>>"$OUT/gpu-bench.err" | tee -a "$LOG"; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv >&2
# B = 1: pattern bandwidth (target ≥ 70 % of HBM), f32 and f16.
run "$D" bench --patterns 16777216 --dim 512 --batch 1 --device wgpu --steps 20 --json
run "$D" bench --patterns 16777216 --dim 512 --batch 1 --device wgpu --steps 20 --dtype f16 --json
# B = 64 and 1024 at P = 2^20, N = 512: both kernels, against PyTorch eager and SDPA.
have_torch=$(python3 -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)
for B in 64 1024; do
  for K in stream gemm; do
    run "$D" bench --patterns 1048576 --dim 512 --batch $B --device wgpu --kernel $K --steps 20 --json
  done
  run "$D" bench --patterns 1048576 --dim 512 --batch $B --device wgpu --steps 20 --dtype f16 --json
  if [ "$have_torch" = 1 ]; then
    run python3 benches/peers/torch_retrieval.py --patterns 1048576 --dim 512 --batch $B
  else
    echo "skipping torch_retrieval.py: no torch with CUDA" >&2
  fi
done
# Scaling in P.
for e in 10 12 14 16 18 20 22 24; do
  run "$D" bench --patterns $((1 << e)) --dim 64 --batch 64 --device wgpu --steps 10 --json
done
# Classifier training, K = 2000, n = 3 (BENCHMARKS.md, training): seconds per epoch in the
# `seconds` column of each metrics.csv, the whole epoch on the device against the CPU path
# and the NumPy peer.
for DEV in wgpu cpu; do
  run "$D" train --memories 2000 --degree 3 --rectified --temperature 400 --lr 0.1 \
    --epochs 3 --device $DEV --out "$OUT/train-$DEV"
done
if python3 -c 'import numpy' 2>/dev/null; then
  run python3 benches/peers/numpy_kh_train.py --epochs 3 --degree 3 --temperature 400 --lr 0.1
else
  echo "skipping numpy_kh_train.py: no numpy" >&2
fi
# Metropolis Monte Carlo (`dam phase`) at the size of DenseAM-GPU's largest run: M = 4.4e6
# patterns, alpha = 0.20 (N = 76), 50 temperatures x 2 replicas = 100 chains, 64 steps;
# summary.json's multiply_adds_per_second projects the whole run (BENCHMARKS.md).
for DEV in wgpu cpu; do
  "$D" phase --energy lse --patterns 4400000 --alpha 0.20:0.20:1 \
    --temperature 0.005:0.495:0.01 --disorders 1 --replicas 2 --equilibrate 32 --sample 32 \
    --start-overlap 1:1 --device $DEV --out "$OUT/phase-$DEV" 2>>"$OUT/gpu-bench.err" >&2 &&
    python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print(json.dumps({'phase': sys.argv[2], 'seconds_per_step': s['seconds_per_step'], 'multiply_adds_per_second': s['multiply_adds_per_second'], 'products_per_second': s['products_per_second']}))" \
      "$OUT/phase-$DEV/summary.json" "$DEV" | tee -a "$LOG"
done
