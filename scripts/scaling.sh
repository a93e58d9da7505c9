#!/usr/bin/env bash
# Seconds per retrieval step as P and N grow: runs `dam bench --json` over a grid and
# prints a Markdown table (BENCHMARKS.md, "How cost grows").
#   scripts/scaling.sh DEVICE BATCH "P exponents" "dims" [extra dam bench flags]
# e.g. scripts/scaling.sh cpu 64 "10 12 14 16 18 20 22 24" "64"
set -euo pipefail
DAM=${DAM:-target/release/dam}
device=$1 batch=$2 exps=$3 dims=$4
shift 4
echo "| P | N | B | device | dtype | s/step (median) | GFLOP/s | GB/s patterns | s/step per 10⁶ patterns |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for n in $dims; do
  for e in $exps; do
    p=$((1 << e))
    if ! line=$("$DAM" bench --patterns "$p" --dim "$n" --batch "$batch" --device "$device" --json "$@" 2>/tmp/dam-scaling-err); then
      echo "| 2^$e | $n | $batch | $device | failed: $(grep -v XDG /tmp/dam-scaling-err | tail -1) | | | | |"
      continue
    fi
    python3 - "$line" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"| 2^{r['patterns'].bit_length()-1} | {r['dim']} | {r['batch']} | {r['path']} | {r['dtype']} | "
      f"{r['seconds_per_step']:.4g} | {r['gflops']:.1f} | {r['pattern_gbps']:.2f} | "
      f"{r['seconds_per_step'] / r['patterns'] * 1e6:.4g} |")
PY
  done
done
