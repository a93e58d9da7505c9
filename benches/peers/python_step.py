#!/usr/bin/env python3
"""One softmax step through the Python package (`pip install ./python`), the workload of
numpy_retrieval.py and `dam bench`: dot similarity, beta = 1/sqrt(N), Gaussian patterns,
queries = first B patterns + 0.5 * noise; median seconds of --repeats after one warm-up.
Prints one JSON line with the keys of `dam bench --json`.
"""
import argparse, json, time
import numpy as np
import dam

ap = argparse.ArgumentParser()
ap.add_argument("--patterns", type=int, default=65536)
ap.add_argument("--dim", type=int, default=512)
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--repeats", type=int, default=5)
ap.add_argument("--device", default="cpu")
a = ap.parse_args()
rng = np.random.default_rng(0)
X = rng.standard_normal((a.patterns, a.dim), dtype=np.float32)
Q = X[: a.batch] + 0.5 * rng.standard_normal((a.batch, a.dim), dtype=np.float32)
t0 = time.perf_counter()
memory = dam.Retriever(X, separation="softmax", beta=1.0 / np.sqrt(a.dim), dynamics="one-step", device=a.device)
setup = time.perf_counter() - t0
memory.step(Q)  # warm-up
seconds = []
for _ in range(a.repeats):
    t = time.perf_counter()
    out = memory.step(Q)
    seconds.append(time.perf_counter() - t)
median = sorted(seconds)[len(seconds) // 2]
print(json.dumps({
    "impl": "dam-python", "path": "python " + memory.device, "patterns": a.patterns,
    "dim": a.dim, "batch": a.batch, "steps": a.repeats, "seconds_per_step": median,
    "seconds_all": seconds, "gflops": 4.0 * a.batch * a.patterns * a.dim / median / 1e9,
    "setup_seconds": setup, "checksum": float(np.abs(out).sum()),
}))
