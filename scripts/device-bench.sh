#!/usr/bin/env bash
# The GPU rows of BENCHMARKS.md in one device session (H100 / H200 through the `device`
# tool). Prepare here, once:
#   echo /.gl/ >> .git/info/exclude; echo /.bench/ >> .git/info/exclude
#   mkdir -p .gl /tmp/amd64/partial; o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#   apt-get $o update; (cd .gl && apt-get $o download libvulkan1)
#   cargo build --release -p dam-experiments
#   mkdir -p .bench && cp target/release/dam .bench/ && cp -r ../shared/peers .bench/
# then run with carry [".gl", ".bench"]:  bash scripts/device-bench.sh
# Every result is one JSON line in $OUT/gpu-bench.jsonl (and on stdout).
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
D=.bench/dam
LOG=${OUT:-/tmp}/gpu-bench.jsonl
run() { echo "+ $*" >&2; "$@" 2>>"${OUT:-/tmp}/gpu-bench.err" | tee -a "$LOG"; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv >&2 || true
# B = 1: pattern bandwidth (target ≥ 70 % of HBM), f32 and f16.
run $D bench --patterns 16777216 --dim 512 --batch 1 --device wgpu --steps 20 --json
run $D bench --patterns 16777216 --dim 512 --batch 1 --device wgpu --steps 20 --dtype f16 --json
# B = 64 and 1024 at P = 2^20, N = 512, against PyTorch eager and SDPA in the same session.
for B in 64 1024; do
  run $D bench --patterns 1048576 --dim 512 --batch $B --device wgpu --steps 20 --json
  run $D bench --patterns 1048576 --dim 512 --batch $B --device wgpu --steps 20 --dtype f16 --json
  run python3 .bench/peers/torch_retrieval.py --patterns 1048576 --dim 512 --batch $B
done
# Scaling in P.
for e in 10 12 14 16 18 20 22 24; do
  run $D bench --patterns $((1 << e)) --dim 64 --batch 64 --device wgpu --steps 10 --json
done
