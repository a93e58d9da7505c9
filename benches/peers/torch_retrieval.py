#!/usr/bin/env python3
"""Peer baseline on a GPU: the same retrieval step as numpy_retrieval.py in PyTorch eager mode
(matmul -> softmax -> matmul), timed with CUDA events. Also reports the fused
scaled_dot_product_attention path (FlashAttention kernels), which is what an expert PyTorch user
would reach for. Run it on a machine with a CUDA GPU and PyTorch installed.

Prints one JSON line per implementation.
"""
import argparse, json
import torch

ap = argparse.ArgumentParser()
ap.add_argument("--patterns", type=int, default=1 << 20)
ap.add_argument("--dim", type=int, default=512)
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--beta", type=float, default=None)
ap.add_argument("--repeats", type=int, default=20)
ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
a = ap.parse_args()
dt = getattr(torch, a.dtype)
dev = "cuda"
beta = a.beta if a.beta is not None else a.dim ** -0.5
g = torch.Generator(device=dev).manual_seed(0)
X = torch.randn(a.patterns, a.dim, device=dev, dtype=dt, generator=g)
Q = X[: a.batch] + 0.5 * torch.randn(a.batch, a.dim, device=dev, dtype=dt, generator=g)


def eager(Q):
    return torch.softmax((beta * Q) @ X.T, dim=1) @ X


def sdpa(Q):
    return torch.nn.functional.scaled_dot_product_attention(
        Q[None, None], X[None, None], X[None, None], scale=beta)[0, 0]


for name, fn in (("torch-eager", eager), ("torch-sdpa", sdpa)):
    try:
        for _ in range(3):
            fn(Q)
        torch.cuda.synchronize()
        ts = []
        for _ in range(a.repeats):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record(); out = fn(Q); e.record(); torch.cuda.synchronize()
            ts.append(s.elapsed_time(e) / 1e3)
        ts.sort(); med = ts[len(ts) // 2]
        flops = 4.0 * a.batch * a.patterns * a.dim
        bytes_ = a.patterns * a.dim * X.element_size()
        print(json.dumps({"impl": name, "dtype": a.dtype, "patterns": a.patterns, "dim": a.dim,
                          "batch": a.batch, "seconds_per_step": med,
                          "tflops": flops / med / 1e12, "pattern_gbps": bytes_ / med / 1e9}))
    except Exception as ex:  # e.g. out of memory at very large sizes
        print(json.dumps({"impl": name, "error": str(ex)[:200]}))
