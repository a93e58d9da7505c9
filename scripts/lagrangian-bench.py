#!/usr/bin/env python3
"""The networks-from-Lagrangians table of BENCHMARKS.md: `dam.EnergyNetwork.run` (the Python
package, what users call) on each device against the NumPy peer written as users write it
(`benches/peers/numpy_lagrangian.py`), interleaved in one run; each cell is the fastest of the
timed calls. Models A, B, C with fast memory neurons, Euler, unit-norm random memories.

Build first: pip install ./python. Usage:
    python3 scripts/lagrangian-bench.py [--memories 1000] [--dim 784] [--batches 64,1]
        [--steps 100] [--devices cpu,wgpu] [--repeats 3]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

import dam

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER = os.path.join(ROOT, "benches", "peers", "numpy_lagrangian.py")
MODELS = {"A": ("abs", "rpoly"), "B": ("quadratic", "lse"), "C": ("spherical", "rpoly")}

ap = argparse.ArgumentParser()
ap.add_argument("--memories", type=int, default=1000)
ap.add_argument("--dim", type=int, default=784)
ap.add_argument("--batches", default="64,1")
ap.add_argument("--steps", type=int, default=100)
ap.add_argument("--beta", type=float, default=20.0)
ap.add_argument("--degree", type=int, default=3)
ap.add_argument("--devices", default="cpu,wgpu")
ap.add_argument("--repeats", type=int, default=3)
a = ap.parse_args()

print("| model | B | device | dam (s) | NumPy (s) | NumPy / dam |")
print("| --- | --- | --- | --- | --- | --- |")
for batch in [int(b) for b in a.batches.split(",")]:
    for model, (visible, hidden) in MODELS.items():
        rng = np.random.default_rng(0)
        xi = rng.standard_normal((a.memories, a.dim)).astype(np.float32)
        xi /= np.linalg.norm(xi, axis=1, keepdims=True)
        v0 = (xi[np.arange(batch) % a.memories]
              + 0.3 * rng.standard_normal((batch, a.dim)).astype(np.float32) / np.sqrt(a.dim))
        v0 = v0.astype(np.float32)
        peer = subprocess.run(
            [sys.executable, PEER, "--model", model, "--memories", str(a.memories),
             "--dim", str(a.dim), "--batch", str(batch), "--steps", str(a.steps),
             "--beta", str(a.beta), "--degree", str(a.degree), "--repeats", str(a.repeats)],
            check=True, capture_output=True, text=True)
        numpy_s = json.loads(peer.stdout.strip().splitlines()[-1])["seconds"]
        for device in a.devices.split(","):
            net = dam.EnergyNetwork(xi, visible=visible, hidden=hidden, beta=a.beta,
                                    degree=a.degree if hidden == "rpoly" else None,
                                    dt=0.1, device=device)
            net.run(v0, 1)
            best = float("inf")
            for _ in range(a.repeats):
                t0 = time.perf_counter()
                net.run(v0, a.steps)
                best = min(best, time.perf_counter() - t0)
            print(f"| {model} | {batch} | {device} | {best:.4f} | {numpy_s:.4f} | "
                  f"{numpy_s / best:.1f}× |", flush=True)
