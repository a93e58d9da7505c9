#!/usr/bin/env python3
"""Peer baseline: training a Krotov-Hopfield (2016) dense associative memory classifier on
MNIST, written the way users write it today, in NumPy (after Krotov's public notebook).

Model. K memories xi (K x (784 + 10)), visible pixels v in [-1, 1], label neurons held at -1
except the one being read. One update of label neuron a:
    c_a = tanh( beta * sum_mu [ F(+xi_a^mu + L^mu_a + xi_v^mu . v) - F(-xi_a^mu + L^mu_a + xi_v^mu . v) ] )
where L^mu_a = -sum_{b != a} xi_b^mu, F(x) = max(x, 0)^n (rectified polynomial), beta = 1/T^n.
Loss sum_a (c_a - t_a)^(2m), t = +1 for the true class, -1 otherwise.
Update (Krotov-Hopfield Appendix A): momentum p, step normalised per memory by its largest
|gradient| entry, learning rate eps0 * decay^epoch, memories clipped to [-1, 1].

Prints one JSON line per epoch: epoch, train loss, train and test error (%), seconds.
A timing peer: the defaults are not tuned for accuracy (pick T, lr, m for that yourself).
Needs numpy. Data: IDX .gz files (default: the repository's data/mnist).
"""
import argparse, gzip, json, os, struct, time
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "data", "mnist"))
ap.add_argument("--memories", type=int, default=2000)
ap.add_argument("--degree", type=int, default=3)
ap.add_argument("--loss-power", type=int, default=3, help="m in (c - t)^(2m)")
ap.add_argument("--temperature", type=float, default=540.0, help="T; beta = 1/T^n (Krotov's notebook: 540 at n=20)")
ap.add_argument("--epochs", type=int, default=50)
ap.add_argument("--batch", type=int, default=100)
ap.add_argument("--lr", type=float, default=0.01)
ap.add_argument("--decay", type=float, default=0.998)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(prefix):
    x = idx(os.path.join(a.data, f"{prefix}-images-idx3-ubyte.gz")).reshape(-1, 784)
    y = idx(os.path.join(a.data, f"{prefix}-labels-idx1-ubyte.gz"))
    return (x.astype(np.float32) / 127.5 - 1.0), y.astype(np.int64)


xtr, ytr = load("train")
xte, yte = load("t10k")
n, m, K = a.degree, a.loss_power, a.memories
T = a.temperature
beta = 1.0 / T ** n
rng = np.random.default_rng(a.seed)
xi = rng.normal(-0.3, 0.3, size=(K, 794)).astype(np.float32)
velocity = np.zeros_like(xi)


def forward(xi, v):
    """Returns c (B x 10) and the pieces needed for the gradient."""
    hv = v @ xi[:, :784].T                           # B x K
    lab = xi[:, 784:]                                # K x 10
    rest = -(lab.sum(1, keepdims=True) - lab)        # K x 10: -sum_{b != a} xi_b
    base = hv[:, :, None] + rest[None, :, :]         # B x K x 10
    plus = np.maximum(base + lab[None], 0.0)
    minus = np.maximum(base - lab[None], 0.0)
    s = (plus ** n - minus ** n).sum(1)              # B x 10
    c = np.tanh(beta * s)
    return c, plus, minus


def epoch_grad_step(xi, velocity, v, t, lr, p):
    c, plus, minus = forward(xi, v)
    loss = ((c - t) ** (2 * m)).sum()
    g_c = 2 * m * (c - t) ** (2 * m - 1) * (1 - c ** 2) * beta        # B x 10
    dplus = n * plus ** (n - 1)                                       # B x K x 10
    dminus = n * minus ** (n - 1)
    gp = g_c[:, None, :] * dplus                                      # dL/d(plus arg)
    gm = g_c[:, None, :] * dminus                                     # dL/d(minus arg) (with - sign below)
    d_base = (gp - gm).sum(2)                                         # B x K
    grad = np.zeros_like(xi)
    grad[:, :784] = d_base.T @ v
    # label part: d(base_a)/d xi_b = -1 for b != a; d(plus_a)/d xi_a = +1, d(minus_a)/d xi_a = -1
    g_lab_self = (gp + gm).sum(0)                                     # K x 10
    g_base_sum = (gp - gm).sum(0)                                     # K x 10, d/d base_a
    total = g_base_sum.sum(1, keepdims=True)
    grad[:, 784:] = g_lab_self - (total - g_base_sum)
    velocity[:] = p * velocity - grad
    scale = np.abs(velocity).max(1, keepdims=True)
    scale[scale == 0] = 1.0
    xi += lr * velocity / scale
    np.clip(xi, -1.0, 1.0, out=xi)
    return loss


def error(xi, x, y):
    wrong = 0
    for i in range(0, len(x), 500):
        c, _, _ = forward(xi, x[i : i + 500])
        wrong += (c.argmax(1) != y[i : i + 500]).sum()
    return 100.0 * wrong / len(x)


targets = -np.ones((len(ytr), 10), dtype=np.float32)
targets[np.arange(len(ytr)), ytr] = 1.0
for epoch in range(a.epochs):
    start = time.perf_counter()
    lr = a.lr * a.decay ** epoch
    p = 0.5 + 0.4 * min(1.0, epoch / 100)
    order = rng.permutation(len(xtr))
    loss = 0.0
    for i in range(0, len(order), a.batch):
        idxs = order[i : i + a.batch]
        loss += epoch_grad_step(xi, velocity, xtr[idxs], targets[idxs], lr, p)
    seconds = time.perf_counter() - start
    print(json.dumps({"epoch": epoch + 1, "loss": float(loss), "train_error": error(xi, xtr, ytr),
                      "test_error": error(xi, xte, yte), "seconds": round(seconds, 3),
                      "memories": K, "degree": n}), flush=True)
