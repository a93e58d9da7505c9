#!/usr/bin/env bash
# Seconds per Monte Carlo step of `dam phase` against the NumPy peer (benches/peers/
# numpy_phase_mc.py), same protocol and sizes, in the same run: M = 20,000 patterns,
# alpha = 0.01 (N = 990), T = 0.525, 256 + 256 steps; 2 chains (one temperature, two
# replicas) and 32 chains (16 temperatures x 2 replicas; the peer: 32 replicas), both
# energies, on the CPU (and on wgpu with DEVICES="cpu wgpu"). One JSON line per run on
# stdout: who, energy, chains, device, seconds_per_step, products_per_second (pattern-state
# products: chains x M per step) and multiply_adds_per_second.
#   cargo build --release -p dam-experiments && bash scripts/phase-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DAM=${DAM:-target/release/dam}
PYTHON=${PYTHON:-python3}
DEVICES=${DEVICES:-cpu}
STEPS=${STEPS:-256}
OUT=${OUT:-$(mktemp -d)}
M=20000
N=990
for energy in lse lsr; do
  for chains in 2 32; do
    if [ "$chains" = 2 ]; then temps=0.525:0.525:1; else temps=0.05:0.8:0.05; fi
    for device in $DEVICES; do
      dir="$OUT/$energy-$chains-$device"
      "$DAM" phase --energy "$energy" --patterns $M --alpha 0.01:0.01:1 --temperature "$temps" \
        --disorders 1 --replicas 2 --equilibrate "$STEPS" --sample "$STEPS" \
        --device "$device" --out "$dir" >/dev/null 2>&1
      "$PYTHON" - "$dir/summary.json" "$energy" "$chains" "$device" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(json.dumps({"who": "dam", "energy": sys.argv[2], "chains": int(sys.argv[3]),
                  "device": sys.argv[4], "seconds_per_step": s["seconds_per_step"],
                  "products_per_second": s["products_per_second"],
                  "multiply_adds_per_second": s["multiply_adds_per_second"]}))
PY
    done
    "$PYTHON" benches/peers/numpy_phase_mc.py --energy "$energy" --patterns $M --alpha 0.01 \
      --temperature 0.525 --disorders 1 --replicas "$chains" --equilibrate "$STEPS" \
      --sample "$STEPS" | "$PYTHON" -c "
import json, sys
r = json.loads(sys.stdin.read()); steps = 2 * $STEPS
print(json.dumps({'who': 'numpy', 'energy': r['energy'], 'chains': $chains, 'device': 'cpu',
                  'seconds_per_step': r['seconds'] / steps,
                  'products_per_second': $chains * $M * steps / r['seconds'],
                  'multiply_adds_per_second': r['products_per_second']}))"
  done
done
