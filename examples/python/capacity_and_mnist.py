#!/usr/bin/env python3
"""Two experiments through the Python package, with matplotlib plots:

1. The capacity curve of the log-sum-exp energy on spherical patterns (THEORY.md §1):
   success rate of one-step retrieval against the load α = ln P / N, with the predicted
   α_½ as a vertical line.
2. MNIST completion: 1,000 stored digits (the repository's data/mnist), the lower half of
   each query digit hidden, the memory fills it in.

    pip install ./python matplotlib
    python examples/python/capacity_and_mnist.py   # writes capacity.png and mnist.png

matplotlib is needed by this example only, not by the package.
"""
import gzip
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import dam

ROOT = pathlib.Path(__file__).resolve().parents[2]


def idx_images(path):
    """The images of an IDX file (gzip), as float32 in [-1, 1], one flattened row each."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    count, rows, cols = (int.from_bytes(data[4 * i:4 * i + 4], "big") for i in (1, 2, 3))
    pixels = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows * cols)
    return pixels.astype(np.float32) / 127.5 - 1.0, (rows, cols)


def capacity_curve():
    dim, beta = 16, 1.0
    rows = dam.capacity(dim=dim, patterns="spherical", energy="lse", beta=beta,
                        alpha="0.30:0.85:0.05", trials=32, seed=1)
    alpha = [r["alpha"] for r in rows]
    rate = [r["success_rate"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(alpha, rate, "o-", label=f"dam, N = {dim}, λ = {beta}")
    # THEORY.md §1: α_½ = λ(1 − λ/2) for spherical patterns at large N.
    ax.axvline(beta * (1 - beta / 2), color="gray", ls="--", label="theory α½ = λ(1 − λ/2)")
    ax.set_xlabel("load α = ln P / N")
    ax.set_ylabel("success rate")
    ax.legend()
    fig.tight_layout()
    fig.savefig("capacity.png", dpi=120)
    print("capacity.png:", ", ".join(f"α={a:.2f}: {r:.2f}" for a, r in zip(alpha, rate)))


def mnist_completion():
    images, (h, w) = idx_images(ROOT / "data/mnist/t10k-images-idx3-ubyte.gz")
    stored = images[:1000]
    # Manhattan similarity, β = 1, one step: the best setting of examples/mnist_completion.rs.
    memory = dam.Retriever(stored, similarity="manhattan", beta=1.0, dynamics="one-step")
    picks = [3, 17, 42, 99, 512, 777]
    queries = stored[picks].copy()
    queries[:, (h // 2) * w:] = 0.0  # hide the lower half
    result = memory.retrieve(queries)
    fig, axes = plt.subplots(3, len(picks), figsize=(1.4 * len(picks), 4.4))
    for j, p in enumerate(picks):
        for i, img in enumerate((stored[p], queries[j], result.states[j])):
            axes[i, j].imshow(img.reshape(h, w), cmap="gray", vmin=-1, vmax=1)
            axes[i, j].axis("off")
    for i, title in enumerate(("stored", "query", "retrieved")):
        axes[i, 0].set_title(title, loc="left", fontsize=9)
    fig.tight_layout()
    fig.savefig("mnist.png", dpi=120)
    hits = sum(int(n) == p for n, p in zip(result.nearest, picks))
    print(f"mnist.png: {hits}/{len(picks)} completions retrieved their own digit "
          f"(device: {memory.device})")


if __name__ == "__main__":
    capacity_curve()
    mnist_completion()
