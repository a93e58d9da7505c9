#!/usr/bin/env python3
"""The retrieval rules through the Python package (`pip install ./python`), the workload of
numpy_retrieval.py, numpy_rules.py and `dam bench`: Gaussian patterns, queries = first B
patterns + 0.5 * noise, beta = 1/sqrt(N) by default; median seconds of --repeats after one
warm-up. With no flags: one softmax step with dot similarity (`memory.step`), as before.

--call step|retrieve|energy|search times `memory.step(Q)`, `memory.retrieve(Q)`,
`memory.energy(Q)` or `memory.search(Q, k=K)`; --similarity, --separation (softmax,
exponential, polynomial:N, rectified:N, max, top-k:K), --dynamics, --projection,
--max-steps and --tol build the rule, spelled as numpy_rules.py spells it.
Prints one JSON line with the keys of `dam bench --json` and the rule keys of
numpy_rules.py (`checksum` = sum |output|: the states, the energies or the search scores).
An update that leaves f32 (polynomial or exponential without a projection, iterated) is
refused by the engine; the line then says `"overflow": true` and carries the error.
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
ap.add_argument("--beta", type=float, default=None, help="default 1/sqrt(dim)")
ap.add_argument("--call", default="step", choices=["step", "retrieve", "energy", "search"])
ap.add_argument("--similarity", default="dot", choices=["dot", "euclidean", "manhattan"])
ap.add_argument("--separation", default="softmax",
                help="softmax | exponential | polynomial:N | rectified:N | max | top-k:K")
ap.add_argument("--dynamics", default="one-step", choices=["one-step", "iterate"])
ap.add_argument("--max-steps", type=int, default=100)
ap.add_argument("--tol", type=float, default=1e-5)
ap.add_argument("--projection", default="none", choices=["none", "sphere", "sign"])
ap.add_argument("--k", type=int, default=10, help="patterns per query for --call search")
a = ap.parse_args()

# numpy_rules.py's spellings -> the package's keywords.
name, _, arg = a.separation.partition(":")
name = {"rectified-polynomial": "rectified"}.get(name, name)
if name in ("polynomial", "rectified"):
    degree = int(arg) if arg else 3
    rule = {"separation": {"rectified": "rectified-polynomial"}.get(name, name), "degree": degree}
    separation = f"{name}:{degree}"
elif name == "top-k":
    k = int(arg) if arg else 10
    rule, separation = {"separation": "top-k", "k": k}, f"top-k:{k}"
elif name in ("softmax", "exponential", "max") and not arg:
    rule, separation = {"separation": name}, name
else:
    ap.error(f"unknown --separation {a.separation!r}; use softmax, exponential, polynomial:N, "
             "rectified:N, max or top-k:K")
beta = a.beta if a.beta is not None else 1.0 / np.sqrt(a.dim)

rng = np.random.default_rng(0)
X = rng.standard_normal((a.patterns, a.dim), dtype=np.float32)
Q = X[: a.batch] + 0.5 * rng.standard_normal((a.batch, a.dim), dtype=np.float32)
t0 = time.perf_counter()
memory = dam.Retriever(X, similarity=a.similarity, beta=beta, dynamics=a.dynamics,
                       max_steps=a.max_steps, tol=a.tol, projection=a.projection,
                       device=a.device, **rule)
setup = time.perf_counter() - t0

calls = {
    "step": lambda: memory.step(Q),
    "retrieve": lambda: memory.retrieve(Q),
    "energy": lambda: memory.energy(Q),
    "search": lambda: memory.search(Q, k=a.k),
}
call = calls[a.call]
line = {
    "impl": "dam-python", "path": "python " + memory.device, "patterns": a.patterns,
    "dim": a.dim, "batch": a.batch, "steps": a.repeats,
}
rule_keys = {"beta": float(beta), "similarity": a.similarity, "separation": separation,
             "call": a.call, "dynamics": a.dynamics, "projection": a.projection}
try:
    call()  # warm-up
    seconds = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        out = call()
        seconds.append(time.perf_counter() - t)
except ValueError as e:
    if "not finite" not in str(e):
        raise
    line.update({"setup_seconds": setup, **rule_keys, "overflow": True, "error": str(e)})
    print(json.dumps(line))
    raise SystemExit(0)

median = sorted(seconds)[len(seconds) // 2]
flops = {"step": 4.0, "energy": 2.0, "search": 2.0}.get(a.call)
extra = {}
if a.call == "retrieve":
    value = out.states
    extra = {"max_steps": a.max_steps if a.dynamics == "iterate" else 1,
             "tol": a.tol if a.dynamics == "iterate" else 0.0,
             "update_steps_mean": float(np.mean(out.steps)),
             "update_steps_max": int(np.max(out.steps)),
             "converged": int(np.sum(out.converged)),
             "nearest_is_query_pattern": float(np.mean(out.nearest == np.arange(a.batch))),
             "energy_mean": float(np.mean(out.energy))}
elif a.call == "search":
    ids, value = out
    extra = {"k": a.k, "top1_is_query_pattern": float(np.mean(ids[:, 0] == np.arange(a.batch)))}
else:
    value = out
line.update({
    "seconds_per_step": median, "seconds_all": seconds,
    "gflops": flops * a.batch * a.patterns * a.dim / median / 1e9 if flops else None,
    "setup_seconds": setup, "checksum": float(np.abs(value).sum(dtype=np.float64)),
    **rule_keys, **extra, "overflow": False,
})
print(json.dumps(line))
