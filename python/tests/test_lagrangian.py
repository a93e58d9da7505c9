"""dam.EnergyNetwork against an independent NumPy implementation: Model B with fast memory
neurons and dt = τ_v is one softmax (attention) update, the energy is the effective energy,
the energy never rises, and bad arguments are ValueErrors."""
import numpy as np
import pytest

import dam

DEVICES = ["cpu", "reference", "wgpu"]


def unit_patterns(k, n, seed):
    return (np.random.default_rng(seed).standard_normal((k, n)) / np.sqrt(n)).astype(np.float32)


def lse(z):
    m = z.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))[..., 0]


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("device", DEVICES)
def test_model_b_one_step_is_attention(device):
    xi = unit_patterns(12, 20, 1)
    x = (xi[:4] + 0.3 * unit_patterns(4, 20, 2)).astype(np.float32)
    beta = 3.0
    net = dam.EnergyNetwork(xi, visible="quadratic", hidden="lse", beta=beta, dt=1.0, device=device)
    states, energies = net.run(x, 1)
    X, V = xi.astype(np.float64), x.astype(np.float64)
    want = softmax(beta * V @ X.T) @ X
    np.testing.assert_allclose(states, want, rtol=1e-5, atol=1e-6)
    assert energies.shape == (4, 2) and energies.dtype == np.float64
    # E = ½‖v‖² − (1/β) log Σ e^{β ξ·v}
    e0 = 0.5 * (V * V).sum(axis=1) - lse(beta * V @ X.T) / beta
    np.testing.assert_allclose(energies[:, 0], e0, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(net.energy(x), e0, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "visible,hidden,extra",
    [
        ("quadratic", "lse", dict(beta=4.0)),
        ("spherical", "rpoly", dict(degree=3)),
        ("abs", "rpoly", dict(degree=3)),
        ("spherical", "exp", dict(beta=2.0)),
        ("quadratic", "poly", dict()),
    ],
)
def test_energy_never_rises(device, visible, hidden, extra):
    xi = 0.5 * unit_patterns(8, 16, 3)
    x = (xi[:3] + 0.2 * unit_patterns(3, 16, 4)).astype(np.float32)
    net = dam.EnergyNetwork(
        xi, visible=visible, hidden=hidden, tau_hidden=0.3, dt=0.02, device=device, **extra
    )
    _, energies = net.run(x, 100)
    assert energies.shape == (3, 101)
    rises = np.diff(energies, axis=1) / np.maximum(1.0, np.abs(energies[:, :-1]))
    assert rises.max() <= 1e-5


def test_bad_arguments_are_value_errors():
    xi = unit_patterns(4, 8, 5)
    with pytest.raises(ValueError, match="convex"):
        dam.EnergyNetwork(xi, hidden="poly", degree=3)
    with pytest.raises(ValueError, match="dt"):
        dam.EnergyNetwork(xi, dt=0.0)
    with pytest.raises(ValueError, match="visible"):
        dam.EnergyNetwork(xi, visible="tanh")
    with pytest.raises(ValueError, match="current"):
        dam.EnergyNetwork(xi, current=np.zeros(5, np.float32))
    net = dam.EnergyNetwork(xi)
    with pytest.raises(ValueError, match="dimension"):
        net.run(np.zeros((2, 7), np.float32), 3)
