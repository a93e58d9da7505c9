#!/usr/bin/env python3
"""The CPU table of BENCHMARKS.md: `retrieve` for every similarity x separation, one-step and
iterate, on the fast CPU backend (`dam bench --device cpu --call retrieve`), the Python
package (`benches/peers/python_step.py --call retrieve`, when `import dam` works) and the NumPy
peer written as users write it (`benches/peers/numpy_rules.py`), interleaved in one run; each
cell is the fastest of the timed calls (the least disturbed on a shared machine).

Build first: cargo build --release -p dam-experiments   (and pip install ./python for the
package column). Usage:
    python3 scripts/cpu-rules-bench.py [--patterns 65536] [--dim 512] [--batches 64,1]
        [--repeats 3] [--out bench-out]
Every measurement is one JSON line in OUT/cpu-rules.jsonl; the markdown table goes to stdout.
Iterate rows use --projection sphere (without a projection the polynomial and exponential
dynamics leave f32 within a few steps); one-step rows use no projection.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIMILARITIES = ["dot", "euclidean", "manhattan"]
SEPARATIONS = ["softmax", "exponential", "polynomial:3", "rectified:3", "max", "top-k:10"]

ap = argparse.ArgumentParser()
ap.add_argument("--patterns", type=int, default=65536)
ap.add_argument("--dim", type=int, default=512)
ap.add_argument("--batches", default="64,1")
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--dam", default=os.path.join(ROOT, "target", "release", "dam"))
ap.add_argument("--out", default="bench-out")
ap.add_argument("--dynamics", default="one-step,iterate")
a = ap.parse_args()
os.makedirs(a.out, exist_ok=True)
log = open(os.path.join(a.out, "cpu-rules.jsonl"), "a")
try:
    import dam  # noqa: F401
    have_package = True
except ImportError:
    have_package = False


def run(cmd):
    print("+ " + " ".join(cmd), file=sys.stderr)
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
    if done.returncode != 0 or not lines:
        print(done.stderr.strip(), file=sys.stderr)
        return None
    line = json.loads(lines[-1])
    log.write(json.dumps(line) + "\n")
    log.flush()
    return line


def seconds(line):
    """The fastest timed call: on a shared machine the minimum is the least disturbed."""
    if line is None or line.get("overflow"):
        return None
    return min(line.get("seconds_all") or [line["seconds_per_step"]])


def cell(v):
    return "—" if v is None else f"{v:.4f}"


print(f"P = {a.patterns}, N = {a.dim}, fastest of {a.repeats} calls after a warm-up, seconds per "
      "`retrieve`; ratio = NumPy / dam CPU\n")
print("| B | dynamics | similarity | separation | dam CPU | Python package | NumPy | ratio |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for batch in [int(b) for b in a.batches.split(",")]:
    for dynamics in a.dynamics.split(","):
        projection = "sphere" if dynamics == "iterate" else "none"
        for similarity in SIMILARITIES:
            for separation in SEPARATIONS:
                rule = ["--patterns", str(a.patterns), "--dim", str(a.dim), "--batch", str(batch),
                        "--similarity", similarity, "--separation", separation,
                        "--call", "retrieve", "--dynamics", dynamics, "--projection", projection]
                engine = seconds(run([a.dam, "bench", *rule, "--device", "cpu",
                                      "--steps", str(a.repeats), "--json"]))
                package = None
                if have_package:
                    package = seconds(run([sys.executable, "benches/peers/python_step.py", *rule,
                                           "--device", "cpu", "--repeats", str(a.repeats)]))
                numpy = seconds(run([sys.executable, "benches/peers/numpy_rules.py", *rule,
                                     "--repeats", str(a.repeats)]))
                ratio = "—" if engine is None or numpy is None else f"{numpy / engine:.1f}×"
                print(f"| {batch} | {dynamics} | {similarity} | {separation} | {cell(engine)} | "
                      f"{cell(package)} | {cell(numpy)} | {ratio} |", flush=True)
