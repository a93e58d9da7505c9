#!/usr/bin/env python3
"""Peer baseline: the exact binary spin dynamics of a dense associative memory
(Krotov & Hopfield 2016, eq. 3) written the way users write it in NumPy, for side-by-side
benchmarks with `dam::spin_dynamics` (crates/cpu/benches/spin.rs times the same sizes).

    Xi: (P, N) int64 patterns of +-1, S: (B, N) int64 states of +-1
    H = S @ Xi.T                               (B, P) integer overlaps
    for spin i:  a = H - Xi[:, i] * S[:, i:i+1]
                 Delta_i = sum_mu F(a + Xi[:, i]) - F(a - Xi[:, i])     (B,)
                 sigma_i <- sign(Delta_i), unchanged when Delta_i == 0
    F(x) = x**n (poly) or max(x, 0)**n (rpoly), exact in int64.

--update sync: one synchronous step per --steps (all spins from the same H, then H is
recomputed): vectorised over queries and patterns, a loop over spins.
--update async: sweeps over the spins in a seeded random order (the same order for every
query, a new one each sweep), H updated after each spin by 2 sigma_i Xi[:, i] where it
flipped, until a sweep with no flip in any query or --max-sweeps.

The starts are the first B patterns with --flip of their bits flipped (--flip 0.5 is a
uniform random start, as in `dam census`). Prints one JSON line: sizes, median seconds per
run over --repeats, steps/sweeps done, flips and a checksum of the final states.
Needs numpy (pip install numpy).
"""
import argparse, json, time
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--patterns", type=int, default=1000)
ap.add_argument("--dim", type=int, default=100)
ap.add_argument("--batch", type=int, default=100)
ap.add_argument("--energy", choices=["poly", "rpoly"], default="poly")
ap.add_argument("--degree", type=int, default=3)
ap.add_argument("--update", choices=["sync", "async"], default="sync")
ap.add_argument("--steps", type=int, default=1, help="synchronous steps (sync)")
ap.add_argument("--max-sweeps", type=int, default=100, help="most sweeps (async)")
ap.add_argument("--flip", type=float, default=0.5, help="share of each start's bits flipped")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--repeats", type=int, default=5)
a = ap.parse_args()

rng = np.random.default_rng(a.seed)
Xi = rng.choice(np.array([-1, 1], dtype=np.int64), size=(a.patterns, a.dim))
S0 = Xi[np.arange(a.batch) % a.patterns].copy()
S0[rng.random(S0.shape) < a.flip] *= -1


def F(x):
    if a.energy == "rpoly":
        x = np.maximum(x, 0)
    return x ** a.degree


def delta(H, S, i):
    xi = Xi[:, i]  # (P,)
    A = H - xi[None, :] * S[:, i : i + 1]  # (B, P): overlap without spin i
    return (F(A + xi[None, :]) - F(A - xi[None, :])).sum(axis=1)  # (B,)


def sync(S):
    flips = 0
    steps = 0
    for _ in range(a.steps):
        H = S @ Xi.T
        new = S.copy()
        for i in range(a.dim):
            d = delta(H, S, i)
            new[:, i] = np.where(d > 0, 1, np.where(d < 0, -1, S[:, i]))
        changed = int((new != S).sum())
        S = new
        steps += 1
        flips += changed
        if changed == 0:
            break
    return S, steps, flips


def asynchronous(S):
    order_rng = np.random.default_rng(a.seed + 1)
    H = S @ Xi.T
    flips = 0
    sweeps = 0
    for _ in range(a.max_sweeps):
        sweeps += 1
        count = 0
        for i in order_rng.permutation(a.dim):
            d = delta(H, S, i)
            new = np.where(d > 0, 1, np.where(d < 0, -1, S[:, i]))
            changed = new != S[:, i]
            if changed.any():
                S[changed, i] = new[changed]
                H[changed] += 2 * new[changed, None] * Xi[None, :, i]
                count += int(changed.sum())
        flips += count
        if count == 0:
            break
    return S, sweeps, flips


run = sync if a.update == "sync" else asynchronous
times = []
for _ in range(a.repeats + 1):
    S = S0.copy()
    t = time.perf_counter()
    S, steps, flips = run(S)
    times.append(time.perf_counter() - t)
times = sorted(times[1:])
med = times[len(times) // 2]
print(json.dumps({"impl": "numpy", "update": a.update, "patterns": a.patterns, "dim": a.dim,
                  "batch": a.batch, "energy": a.energy, "degree": a.degree,
                  "steps_or_sweeps": steps, "flips": flips, "seconds": med,
                  "checksum": int((S > 0).sum())}))
