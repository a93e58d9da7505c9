#!/usr/bin/env python3
"""Peer baseline: the random-feature dense associative memory (DrDAM; Hoover et al. 2024)
written the way most users write it, in NumPy, for side-by-side benchmarks with
`dam_cpu::features` (crates/cpu/benches/features.rs times the engine at the same sizes).

Kernel exp(-beta/2 |x - xi|^2) approximated with Y random features of dimension N:
    fourier:  W ~ N(0, beta I), Y/2 x N;  phi(x) = sqrt(2/Y) [cos(W x), sin(W x)]
    positive: W ~ N(0, I),      Y x N;    phi(x) = exp(sqrt(beta) W x - beta |x|^2) / sqrt(Y)
Two calls:
    sum:  T = sum_mu phi(xi_mu) over P patterns (U = X @ W.T, then cos/sin or exp, column sums)
    grad: s = phi(x) . T and grad s for B states (U = Q @ W.T, coefficients, coef @ W)

Patterns and states have N(0, 1/N) entries (norm about 1). Prints one JSON line per
(kind, call): sizes, dtype and the median seconds over --repeats after one warm-up call.
Needs numpy (pip install numpy).
"""
import argparse, json, time
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--patterns", type=int, default=10_000)
ap.add_argument("--dim", type=int, default=64)
ap.add_argument("--features", type=int, default=4096, help="Y (even for fourier)")
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--beta", type=float, default=1.0)
ap.add_argument("--kind", choices=["fourier", "positive", "both"], default="both")
ap.add_argument("--call", choices=["sum", "grad", "both"], default="both")
ap.add_argument("--repeats", type=int, default=5)
ap.add_argument("--dtype", default="float64", help="float64 (NumPy's default) or float32")
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
# Python floats: a NumPy float64 scalar would promote float32 arrays to float64.
beta = float(a.beta)
rng = np.random.default_rng(a.seed)
X = (rng.standard_normal((a.patterns, a.dim)) / np.sqrt(a.dim)).astype(a.dtype)
Q = (rng.standard_normal((a.batch, a.dim)) / np.sqrt(a.dim)).astype(a.dtype)


def fourier(W):
    F = W.shape[0]
    c = float(np.sqrt(2.0 / (2 * F)))

    def feature_sum(X):
        U = X @ W.T
        return c * np.concatenate([np.cos(U).sum(axis=0), np.sin(U).sum(axis=0)])

    def value_and_grad(Q, T):
        U = Q @ W.T
        C, S = np.cos(U), np.sin(U)
        s = c * (C @ T[:F] + S @ T[F:])
        coef = c * (C * T[F:] - S * T[:F])
        return s, coef @ W

    return feature_sum, value_and_grad


def positive(W):
    Y = W.shape[0]
    c, sb = float(1.0 / np.sqrt(Y)), float(np.sqrt(beta))

    def phi(X):
        return c * np.exp(sb * (X @ W.T) - beta * (X * X).sum(axis=1, keepdims=True))

    def feature_sum(X):
        return phi(X).sum(axis=0)

    def value_and_grad(Q, T):
        P = phi(Q)
        s = P @ T
        return s, sb * ((P * T) @ W) - 2.0 * beta * Q * s[:, None]

    return feature_sum, value_and_grad


def timed(f):
    times = []
    for _ in range(a.repeats + 1):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    times = sorted(times[1:])
    return times[len(times) // 2], out


kinds = ["fourier", "positive"] if a.kind == "both" else [a.kind]
calls = ["sum", "grad"] if a.call == "both" else [a.call]
for kind in kinds:
    if kind == "fourier":
        W = (np.sqrt(beta) * rng.standard_normal((a.features // 2, a.dim))).astype(a.dtype)
        feature_sum, value_and_grad = fourier(W)
    else:
        W = rng.standard_normal((a.features, a.dim)).astype(a.dtype)
        feature_sum, value_and_grad = positive(W)
    T = feature_sum(X)
    for call in calls:
        if call == "sum":
            seconds, out = timed(lambda: feature_sum(X))
            checksum = float(np.abs(out).sum())
        else:
            seconds, (s, g) = timed(lambda: value_and_grad(Q, T))
            checksum = float(np.abs(s).sum() + np.abs(g).sum())
        print(json.dumps({"impl": "numpy", "kind": kind, "call": call, "patterns": a.patterns,
                          "dim": a.dim, "features": a.features, "batch": a.batch,
                          "beta": beta, "dtype": a.dtype, "seconds": seconds,
                          "checksum": checksum}))
