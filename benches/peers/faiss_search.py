#!/usr/bin/env python3
"""Peer baseline for `dam bench --search`: exact inner-product top-k with faiss
(`IndexFlatIP`, the exact brute-force index), on the same sizes and the same kind of data
(Gaussian N(0, 1) patterns, queries = pattern q + 0.5 * noise).

Prints one JSON line with the keys of `dam bench --json`: `seconds_per_step` is one search
of the whole batch (median of --repeats after one warm-up), `recall` is
|top-k ∩ exact top-k| / k over the first 16 queries, the exact answer computed in float64
with NumPy.
Needs faiss-cpu and numpy (pip install faiss-cpu numpy).
"""
import argparse, json, os, time
import numpy as np
import faiss

ap = argparse.ArgumentParser()
ap.add_argument("--patterns", type=int, default=1_000_000)
ap.add_argument("--dim", type=int, default=128)
ap.add_argument("--batch", type=int, default=1000)
ap.add_argument("--k", type=int, default=10)
ap.add_argument("--repeats", type=int, default=5)
a = ap.parse_args()

rng = np.random.default_rng(0)
X = rng.standard_normal((a.patterns, a.dim), dtype=np.float32)
Q = X[np.arange(a.batch) % a.patterns] + 0.5 * rng.standard_normal((a.batch, a.dim), dtype=np.float32)

t0 = time.perf_counter()
index = faiss.IndexFlatIP(a.dim)
index.add(X)
setup = time.perf_counter() - t0

index.search(Q, a.k)  # warm-up
seconds = []
for _ in range(a.repeats):
    t = time.perf_counter()
    D, I = index.search(Q, a.k)
    seconds.append(time.perf_counter() - t)
median = sorted(seconds)[len(seconds) // 2]

sample = min(16, a.batch)
exact = np.argsort(-(Q[:sample].astype(np.float64) @ X.T.astype(np.float64)), axis=1, kind="stable")[:, : a.k]
hits = sum(len(set(I[q]) & set(exact[q])) for q in range(sample))

print(json.dumps({
    "impl": "faiss",
    "path": "IndexFlatIP",
    "device": "cpu",
    "adapter": "cpu",
    "dtype": "f32",
    "patterns": a.patterns,
    "dim": a.dim,
    "batch": a.batch,
    "k": a.k,
    "steps": a.repeats,
    "seconds_per_step": median,
    "seconds_min": min(seconds),
    "seconds_all": seconds,
    "gflops": 2.0 * a.batch * a.patterns * a.dim / median / 1e9,
    "setup_seconds": setup,
    "threads": faiss.omp_get_max_threads(),
    "recall": hits / (sample * a.k),
    "faiss_version": faiss.__version__,
}))
