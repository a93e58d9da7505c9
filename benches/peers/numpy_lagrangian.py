#!/usr/bin/env python3
"""A network from Lagrangians (Krotov & Hopfield 2021) written as users write it in NumPy:
the whole batch at once in float32, Euler steps of tau_v dv/dt = Xi^T f - v with fast memory
neurons (h = Xi g), and the effective energy of every step (float64 sums). Models A (sum|v|,
sum max(h,0)^n), B (1/2 v^2, log-sum-exp) and C (|v|, sum max(h,0)^n). The workload of
`dam.EnergyNetwork.run` (scripts/lagrangian-bench.py times both in one run).

Usage: numpy_lagrangian.py [--model B] [--memories 1000] [--dim 784] [--batch 64]
    [--steps 100] [--beta 20] [--degree 3] [--dt 0.1] [--repeats 3] [--seed 0]
Prints one JSON line: the fastest of the timed calls and the final mean energy.
"""
import argparse
import json
import time

import numpy as np


def lagrangian_run(xi, v, steps, model, beta, degree, dt):
    """Final states (B, N) and energies (B, steps + 1) of Euler steps with fast memory."""
    energies = np.empty((v.shape[0], steps + 1))
    for t in range(steps + 1):
        if model == "A":
            g = np.sign(v)
            e_vis = np.zeros(v.shape[0])
        elif model == "B":
            g = v
            e_vis = 0.5 * (v.astype(np.float64) ** 2).sum(axis=1)
        else:
            norm = np.linalg.norm(v, axis=1, keepdims=True)
            g = np.where(norm > 0, v / np.maximum(norm, 1e-30), 0.0).astype(np.float32)
            e_vis = np.zeros(v.shape[0])
        h = g @ xi.T
        if model == "B":
            z = beta * h
            m = z.max(axis=1, keepdims=True)
            e = np.exp(z - m)
            s = e.sum(axis=1, keepdims=True)
            f = e / s
            l_h = (m[:, 0] + np.log(s[:, 0].astype(np.float64))) / beta
        else:
            r = np.maximum(h, 0.0)
            f = degree * r ** (degree - 1)
            l_h = (r.astype(np.float64) ** degree).sum(axis=1)
        energies[:, t] = e_vis - l_h
        if t < steps:
            v = v + dt * (f @ xi - v)
    return v, energies


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="B", choices=["A", "B", "C"])
    ap.add_argument("--memories", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=784)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--beta", type=float, default=20.0)
    ap.add_argument("--degree", type=int, default=3)
    ap.add_argument("--dt", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    xi = rng.standard_normal((a.memories, a.dim)).astype(np.float32)
    xi /= np.linalg.norm(xi, axis=1, keepdims=True)
    v0 = (xi[np.arange(a.batch) % a.memories]
          + 0.3 * rng.standard_normal((a.batch, a.dim)).astype(np.float32) / np.sqrt(a.dim))
    v0 = v0.astype(np.float32)
    best = float("inf")
    lagrangian_run(xi, v0, 1, a.model, a.beta, a.degree, a.dt)
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        _, energies = lagrangian_run(xi, v0, a.steps, a.model, a.beta, a.degree, a.dt)
        best = min(best, time.perf_counter() - t0)
    print(json.dumps({"impl": "numpy", "model": a.model, "memories": a.memories, "dim": a.dim,
                      "batch": a.batch, "steps": a.steps, "seconds": best,
                      "final_energy": float(energies[:, -1].mean())}))


if __name__ == "__main__":
    main()
