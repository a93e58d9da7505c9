#!/usr/bin/env python3
"""Peer baseline: every retrieval rule of `dam` (similarity x separation x projection x
dynamics) written the way a NumPy user writes it, for side-by-side benchmarks with the
engine (`dam bench`, benches/peers/python_step.py).

    X: (P, N) float32 patterns xi^mu, Q: (B, N) float32 queries, s_mu(x) the similarity
    dot        s = xi . x                      (BLAS: Q @ X.T)
    euclidean  s = -||xi - x||_2               (norms trick ||x||^2 + ||xi||^2 - 2 x.xi,
                                                clipped at 0; ||xi||^2 precomputed once)
    manhattan  s = -||xi - x||_1               (no BLAS form: scipy cdist 'cityblock' when
                                                scipy is installed, else pattern blocks of
                                                |Q[:, None] - X[None, blk]|.sum(-1))
    separation   weights w_mu                       energy E(x)
    softmax      softmax(beta s)                    -logsumexp(beta s)/beta + ||x||^2/2
    exponential  beta e^{beta s} (max shifted out,  -sum e^{beta s}
                 the factor beta e^{max} carried)
    polynomial:n n s^{n-1}                          -sum s^n
    rectified:n  n max(s, 0)^{n-1}                  -sum max(s, 0)^n
    max          the most similar pattern (ties to the lowest index)     -max s
    top-k:K      the mean of the K most similar patterns                 -mean of their s
    update x' = proj(W @ X), projection none | sphere (||x|| = sqrt(N)) | sign (sign(0) = +1).

--call step      one update of the batch
--call energy    E of each query
--call search    exact top-k by similarity (argpartition, then sort the k), ids and scores
--call retrieve  what the engine's retrieve returns: one update (--dynamics one-step), or
                 updates until max|x' - x| <= tol or --max-steps with a mask of the queries
                 still active (--dynamics iterate); then, at the final states, the nearest
                 pattern (argmax s) and the energy. (one-step is max_steps = 1, tol = 0, as
                 the engine: `converged` means the update did not move the state.)

Data as python_step.py: rng = default_rng(0), X = standard_normal((P, N), float32),
Q = X[:B] + 0.5 * noise (float32); beta defaults to 1/sqrt(N). One warm-up call, then the
median of --repeats. Prints one JSON line: sizes, the rule, `seconds_per_step` (the median
seconds of one call of the batch: a step, a search, the energies, or a whole retrieve),
`seconds_all`, `checksum` (sum |output|: the states for step and retrieve, the energies, the
search scores). Without a projection, polynomial and exponential updates can leave float32
when iterated; the line then says `"overflow": true` (and `checksum` is null when not finite)
instead of failing -- the engine refuses such a state with an overflow error.
Needs numpy (pip install numpy); uses scipy for manhattan when it is installed.
"""
import argparse, json, time
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--patterns", type=int, default=65536)
ap.add_argument("--dim", type=int, default=512)
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--beta", type=float, default=None, help="default 1/sqrt(dim)")
ap.add_argument("--repeats", type=int, default=5)
ap.add_argument("--similarity", default="dot", choices=["dot", "euclidean", "manhattan"])
ap.add_argument("--separation", default="softmax",
                help="softmax | exponential | polynomial:N | rectified:N | max | top-k:K")
ap.add_argument("--call", default="step", choices=["step", "retrieve", "energy", "search"])
ap.add_argument("--dynamics", default="one-step", choices=["one-step", "iterate"])
ap.add_argument("--max-steps", type=int, default=100)
ap.add_argument("--tol", type=float, default=1e-5)
ap.add_argument("--projection", default="none", choices=["none", "sphere", "sign"])
ap.add_argument("--k", type=int, default=10, help="patterns per query for --call search")
ap.add_argument("--manhattan", default="auto", choices=["auto", "cdist", "blocks"],
                help="manhattan similarities: scipy cdist, NumPy pattern blocks, or cdist "
                     "when scipy is installed (auto)")
a = ap.parse_args()


def parse_separation(text):
    name, _, arg = text.partition(":")
    if name == "rectified-polynomial":
        name = "rectified"
    if name in ("softmax", "exponential", "max") and not arg:
        return name, None
    if name in ("polynomial", "rectified", "top-k"):
        value = int(arg) if arg else (3 if name != "top-k" else 10)
        if value < 1:
            ap.error(f"--separation {text}: the number must be >= 1")
        return name, value
    ap.error(f"unknown --separation {text!r}; use softmax, exponential, polynomial:N, "
             "rectified:N, max or top-k:K")


sep, order = parse_separation(a.separation)
separation_name = sep if order is None else f"{sep}:{order}"
beta = np.float32(a.beta if a.beta is not None else 1.0 / np.sqrt(a.dim))
P, N, B = a.patterns, a.dim, a.batch
if sep == "top-k" and order > P:
    ap.error("top-k: K must be <= --patterns")
if a.call == "search" and not 1 <= a.k <= P:
    ap.error("--k must be in 1..=patterns")

rng = np.random.default_rng(0)
X = rng.standard_normal((P, N), dtype=np.float32)
Q0 = X[:B] + 0.5 * rng.standard_normal((B, N), dtype=np.float32)

# Precomputed once, outside the timed calls, as a user would.
XT = X.T
Xsq = np.einsum("ij,ij->i", X, X)  # ||xi||^2, (P,)

manhattan = None
if a.similarity == "manhattan":
    manhattan = a.manhattan
    if manhattan in ("auto", "cdist"):
        try:
            from scipy.spatial.distance import cdist
            manhattan = "cdist"
        except ImportError:
            if manhattan == "cdist":
                ap.error("--manhattan cdist needs scipy (pip install scipy)")
            manhattan = "blocks"
    # Pattern blocks sized so the (B, block, N) difference stays near 32 MiB.
    block = max(1, (8 << 20) // (B * N))
    diff = np.empty((B, min(block, P), N), dtype=np.float32)


def similarities(x):
    """s (b, P) float32 of the states x (b, N)."""
    if a.similarity == "dot":
        return x @ XT
    if a.similarity == "euclidean":
        s = x @ XT
        s *= -2.0
        s += np.einsum("ij,ij->i", x, x)[:, None]
        s += Xsq[None, :]
        np.maximum(s, 0.0, out=s)
        np.sqrt(s, out=s)
        np.negative(s, out=s)
        return s
    if manhattan == "cdist":
        return -cdist(x, X, "cityblock").astype(np.float32)
    b = x.shape[0]
    s = np.empty((b, P), dtype=np.float32)
    for lo in range(0, P, block):
        hi = min(lo + block, P)
        d = diff[:b, : hi - lo]
        np.subtract(x[:, None, :], X[None, lo:hi, :], out=d)
        np.abs(d, out=d)
        d.sum(axis=-1, out=s[:, lo:hi])
    np.negative(s, out=s)
    return s


def project(v):
    if a.projection == "sphere":
        norm = np.linalg.norm(v, axis=1, keepdims=True)
        norm[norm == 0] = np.sqrt(N)  # a zero state stays zero
        return (v * (np.sqrt(N) / norm)).astype(np.float32, copy=False)
    if a.projection == "sign":
        return np.where(v >= 0, np.float32(1), np.float32(-1))
    return v


def top_k_indices(s, k):
    """The k largest of each row, best first (argpartition, then sort the k)."""
    if k == s.shape[1]:
        idx = np.argsort(-s, axis=1, kind="stable")
    else:
        idx = np.argpartition(s, -k, axis=1)[:, -k:]
        part = np.take_along_axis(s, idx, axis=1)
        idx = np.take_along_axis(idx, np.argsort(-part, axis=1, kind="stable"), axis=1)
    return idx


def update(x):
    """One update of the states x (b, N) -> (b, N) float32."""
    s = similarities(x)
    if sep == "max":
        return project(X[np.argmax(s, axis=1)])  # argmax: first index on ties
    if sep == "top-k":
        idx = np.argpartition(s, -order, axis=1)[:, -order:]
        return project(X[idx].mean(axis=1))
    if sep in ("softmax", "exponential"):
        s *= beta
        m = s.max(axis=1, keepdims=True)
        s -= m
        np.exp(s, out=s)
        if sep == "softmax":
            s /= s.sum(axis=1, keepdims=True)
            return project(s @ X)
        v = s @ X
        if a.projection != "none":  # sphere and sign ignore a positive scale
            return project(v)
        factor = beta * np.exp(m.astype(np.float64))  # beta e^{max beta s}, (b, 1)
        return (v * factor).astype(np.float32)
    if sep == "rectified":
        np.maximum(s, 0.0, out=s)
    w = order * s ** (order - 1)
    return project(w @ X)


def energy_from(s, x):
    """E (b,) float64 from the similarities s (b, P) of the states x."""
    if sep in ("softmax", "exponential"):
        t = beta * s
        m = t.max(axis=1, keepdims=True)
        t -= m
        np.exp(t, out=t)
        lse = m[:, 0].astype(np.float64) + np.log(t.sum(axis=1, dtype=np.float64))
        if sep == "exponential":
            return -np.exp(lse)
        return -lse / float(beta) + 0.5 * np.einsum("ij,ij->i", x, x, dtype=np.float64)
    if sep == "max":
        return -s.max(axis=1).astype(np.float64)
    if sep == "top-k":
        idx = np.argpartition(s, -order, axis=1)[:, -order:]
        return -np.take_along_axis(s, idx, axis=1).mean(axis=1, dtype=np.float64)
    if sep == "rectified":
        s = np.maximum(s, 0.0)
    return -(s ** order).sum(axis=1, dtype=np.float64)


def energy(x):
    return energy_from(similarities(x), x)


def search(x, k):
    s = similarities(x)
    ids = top_k_indices(s, k)
    return ids, np.take_along_axis(s, ids, axis=1)


def retrieve(q):
    max_steps, tol = (1, 0.0) if a.dynamics == "one-step" else (a.max_steps, a.tol)
    x = q.copy()
    b = x.shape[0]
    steps = np.zeros(b, dtype=np.int64)
    converged = np.zeros(b, dtype=bool)
    overflowed = np.zeros(b, dtype=bool)
    active = np.ones(b, dtype=bool)
    while active.any():
        rows = np.flatnonzero(active)
        new = update(x[rows])
        steps[rows] += 1
        bad = ~np.isfinite(new).all(axis=1)
        delta = np.abs(new - x[rows]).max(axis=1)
        x[rows] = new
        done = (delta <= tol) & ~bad
        converged[rows[done]] = True
        overflowed[rows[bad]] = True
        active[rows[done | bad | (steps[rows] >= max_steps)]] = False
    s = similarities(x)
    nearest = np.argmax(s, axis=1)
    return x, steps, converged, nearest, energy_from(s, x), overflowed


def run():
    if a.call == "step":
        return update(Q0.copy())
    if a.call == "energy":
        return energy(Q0.copy())
    if a.call == "search":
        return search(Q0.copy(), a.k)
    return retrieve(Q0)


times = []
with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
    for _ in range(a.repeats + 1):
        t = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t)
    seconds = times[1:]
    median = sorted(seconds)[len(seconds) // 2]

    line = {"impl": {None: "numpy", "cdist": "numpy+scipy-cdist",
                     "blocks": "numpy-blocks"}[manhattan],
            "patterns": P, "dim": N, "batch": B, "beta": float(beta),
            "similarity": a.similarity, "separation": separation_name, "call": a.call,
            "dynamics": a.dynamics, "projection": a.projection, "steps": a.repeats}
    flops = {"step": 4.0, "energy": 2.0, "search": 2.0}.get(a.call)
    if a.call == "retrieve":
        states, steps, converged, nearest, energies, overflowed = out
        line.update({"max_steps": a.max_steps if a.dynamics == "iterate" else 1,
                     "tol": a.tol if a.dynamics == "iterate" else 0.0,
                     "update_steps_mean": float(steps.mean()),
                     "update_steps_max": int(steps.max()),
                     "converged": int(converged.sum()),
                     "nearest_is_query_pattern": float((nearest == np.arange(B)).mean()),
                     "energy_mean": float(np.mean(energies)) if np.isfinite(energies).all() else None})
        # A state or an energy that leaves float32/float64: the engine reports an overflow.
        overflowed |= ~np.isfinite(energies)
        value, overflow = states, bool(overflowed.any())
        if overflow:
            line["overflow_queries"] = int(overflowed.sum())
    elif a.call == "search":
        ids, scores = out
        line.update({"k": a.k, "top1_is_query_pattern": float((ids[:, 0] == np.arange(B)).mean())})
        value, overflow = scores, False
    else:
        value = out
        overflow = not np.isfinite(out).all()
    checksum = float(np.abs(value).sum(dtype=np.float64))
    line.update({
        "seconds_per_step": median, "seconds_min": min(seconds), "seconds_all": seconds,
        "gflops": flops * B * P * N / median / 1e9 if flops else None,
        "checksum": checksum if np.isfinite(checksum) else None,
        "overflow": overflow or not np.isfinite(checksum),
    })
print(json.dumps(line))
