"""The Python package against an independent NumPy implementation written here, on both
devices; errors, threads, zero-copy input, pickling, capacity sweeps.

The wgpu tests need an adapter (Mesa's lavapipe on machines without a GPU): a missing
adapter fails them, it never skips them.
"""
import pickle
import concurrent.futures
import threading

import numpy as np
import pytest

import dam

DEVICES = ["cpu", "reference", "wgpu"]
SIMILARITIES = ["dot", "euclidean", "manhattan"]
SEPARATIONS = [
    ("softmax", dict(beta=3.0)),
    ("exponential", dict(beta=0.5)),
    ("polynomial", dict(degree=3)),
    ("rectified-polynomial", dict(degree=2)),
    ("max", {}),
    ("top-k", dict(k=3)),
]


def rng(seed):
    return np.random.default_rng(seed)


def unit_patterns(p, n, seed):
    return (rng(seed).standard_normal((p, n)) / np.sqrt(n)).astype(np.float32)


# ---- the NumPy reference, written independently of the engine ----------------------------

def similarities(similarity, patterns, x):
    P = patterns.astype(np.float64)
    x = x.astype(np.float64)
    if similarity == "dot":
        return P @ x
    if similarity == "euclidean":
        return -np.sqrt(((P - x) ** 2).sum(axis=1))
    return -np.abs(P - x).sum(axis=1)


def weights(separation, params, s):
    if separation == "softmax":
        z = params["beta"] * s
        e = np.exp(z - z.max())
        return e / e.sum()
    if separation == "exponential":
        return params["beta"] * np.exp(params["beta"] * s)
    if separation == "polynomial":
        n = params["degree"]
        return n * s ** (n - 1)
    if separation == "rectified-polynomial":
        n = params["degree"]
        return n * np.maximum(s, 0.0) ** (n - 1)
    k = 1 if separation == "max" else params["k"]
    order = sorted(range(len(s)), key=lambda i: (-s[i], i))[:k]
    w = np.zeros_like(s)
    w[order] = 1.0 / k
    return w


def numpy_step(similarity, separation, params, patterns, queries):
    out = np.empty(queries.shape, dtype=np.float64)
    for b, x in enumerate(queries):
        w = weights(separation, params, similarities(similarity, patterns, x))
        out[b] = w @ patterns.astype(np.float64)
    return out


# ---- agreement ------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("similarity", SIMILARITIES)
@pytest.mark.parametrize("separation,params", SEPARATIONS)
def test_one_step_matches_numpy(device, similarity, separation, params):
    patterns = unit_patterns(37, 13, 1)  # odd sizes: not a multiple of any workgroup
    queries = patterns[:5] + 0.3 * unit_patterns(5, 13, 2)
    r = dam.Retriever(patterns, similarity=similarity, separation=separation,
                      dynamics="one-step", device=device, **params)
    got = r.step(queries)
    want = numpy_step(similarity, separation, params, patterns, queries)
    assert got.dtype == np.float32 and got.shape == want.shape
    scale = max(1.0, np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-4 * scale)


@pytest.mark.parametrize("device", DEVICES)
def test_retrieve_nearest_and_search_agree_with_numpy(device):
    patterns = unit_patterns(50, 16, 3)
    queries = patterns[[4, 9, 30]] + 0.2 * unit_patterns(3, 16, 4)
    r = dam.Retriever(patterns, beta=8.0, device=device)
    res = r.retrieve(queries)
    assert res.states.shape == (3, 16) and res.steps.dtype == np.int64
    assert res.converged.dtype == np.bool_ and res.energy.dtype == np.float64
    for b, x in enumerate(res.states):
        s = similarities("dot", patterns, x)
        assert res.nearest[b] == int(np.argmax(s))
        w = weights("softmax", dict(beta=8.0), s)
        np.testing.assert_allclose(res.confidence[b], w.max(), rtol=1e-3, atol=1e-4)
    ids, scores = r.search(queries, 4)
    assert ids.shape == (3, 4) and ids.dtype == np.uint64
    for b, x in enumerate(queries):
        s = similarities("dot", patterns, x)
        order = sorted(range(50), key=lambda i: (-s[i], i))[:4]
        assert list(ids[b]) == order
        np.testing.assert_allclose(scores[b], s[order], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_report_top_weights_and_participation(device):
    patterns = unit_patterns(40, 10, 15)
    queries = patterns[:4] + 0.5 * unit_patterns(4, 10, 16)
    r = dam.Retriever(patterns, beta=3.0, dynamics="one-step", report_top=3, device=device)
    res = r.retrieve(queries)
    assert res.top_ids.shape == (4, 3) and res.top_weights.shape == (4, 3)
    for b, x in enumerate(res.states):
        s = similarities("dot", patterns, x)
        p = weights("softmax", dict(beta=3.0), s)
        order = sorted(range(40), key=lambda i: (-p[i], i))[:3]
        assert list(res.top_ids[b]) == order
        np.testing.assert_allclose(res.top_weights[b], p[order], rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(res.top_similarities[b], s[order], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(res.participation[b], 1.0 / (p ** 2).sum(), rtol=1e-3)
    assert dam.Retriever(patterns, device=device).retrieve(queries).top_ids is None


@pytest.mark.parametrize("device", DEVICES)
def test_shapes_one_and_odd(device):
    patterns = unit_patterns(1, 1, 5)
    r = dam.Retriever(patterns, device=device)
    assert r.retrieve(np.ones((1, 1), np.float32)).states.shape == (1, 1)
    odd = dam.Retriever(unit_patterns(7, 3, 6), device=device)
    assert odd.step(np.ones((5, 3), np.float32)).shape == (5, 3)
    assert len(odd) == 7


# ---- errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_bad_input_raises_value_error_never_crashes(device):
    patterns = unit_patterns(6, 4, 7)
    r = dam.Retriever(patterns, device=device)
    with pytest.raises(ValueError, match="empty"):
        r.retrieve(np.zeros((0, 4), np.float32))
    for bad in (np.nan, np.inf, -np.inf):
        q = np.ones((2, 4), np.float32)
        q[1, 2] = bad
        with pytest.raises(ValueError, match="non-finite"):
            r.step(q)
    with pytest.raises(ValueError, match="dimension"):
        r.step(np.ones((2, 5), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        r.step(np.ones(4, np.float32))
    with pytest.raises(ValueError):
        r.step(np.array([["a", "b", "c", "d"]]))
    with pytest.raises(ValueError, match="beta"):
        dam.Retriever(patterns, beta=-1.0, device=device)
    for kwargs in (dict(similarity="cosine"), dict(separation="relu"), dict(dynamics="jump"),
                   dict(projection="cube"), dict(device="tpu"), dict(dtype="int8"),
                   dict(separation="polynomial"), dict(separation="top-k"),
                   dict(separation="top-k", k=99)):
        with pytest.raises(ValueError):
            dam.Retriever(patterns, **kwargs)
    with pytest.raises(ValueError, match="id"):
        r.remove([1234])
    # Other dtypes and layouts are converted, with the same answer.
    q = patterns[:2] + 0.1
    np.testing.assert_array_equal(r.step(q.astype(np.float64)), r.step(q))
    np.testing.assert_array_equal(r.step(np.asfortranarray(q)), r.step(q))
    np.testing.assert_array_equal(r.step(q.tolist()), r.step(q))


def test_device_error_is_a_runtime_error():
    assert issubclass(dam.DeviceError, RuntimeError)


# ---- threads, zero copy, pickle, edits -----------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_threads_equal_serial(device):
    patterns = unit_patterns(200, 24, 8)
    r = dam.Retriever(patterns, beta=5.0, device=device)
    batches = [patterns[i:i + 3] + 0.2 * unit_patterns(3, 24, 100 + i) for i in range(8)]
    serial = [r.retrieve(b).states for b in batches]

    def work(i):
        return sum(np.array_equal(r.retrieve(batches[i]).states, serial[i]) for _ in range(50))

    # .result() re-raises a worker's exception here, in the test.
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        equal = [f.result() for f in [pool.submit(work, i) for i in range(8)]]
    assert equal == [50] * 8


@pytest.mark.parametrize("device", DEVICES)
def test_edits_wait_for_readers(device):
    patterns = unit_patterns(300, 16, 9)
    r = dam.Retriever(patterns, beta=5.0, device=device)
    queries = patterns[:4] + 0.1 * unit_patterns(4, 16, 10)
    stop = threading.Event()

    def reader():
        calls = 0
        while not stop.is_set() or calls == 0:
            got = r.retrieve(queries)
            assert got.states.shape == (4, 16)
            r.search(queries, k=3)
            calls += 1
        return calls

    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        readers = [pool.submit(reader) for _ in range(3)]
        added = []
        for i in range(20):  # edits while the readers run: they wait, never "already borrowed"
            added.extend(r.insert(unit_patterns(2, 16, 200 + i)).tolist())
            if i % 3 == 0:
                r.remove([added.pop(0)])
            r.update(0, patterns[1])
        stop.set()
        calls = [f.result() for f in readers]
    assert all(c > 0 for c in calls)
    assert len(r) == 300 + len(added)
    np.testing.assert_array_equal(r.patterns[0], patterns[1])


def test_float32_input_is_not_copied():
    a = np.ones((64, 32), np.float32)
    assert dam._input_address(a) == a.ctypes.data
    b = a.astype(np.float64)
    assert dam._input_address(b) != b.ctypes.data


@pytest.mark.parametrize("device", DEVICES)
def test_pickle_and_save_round_trip(device, tmp_path):
    r = dam.Retriever(unit_patterns(20, 8, 9), separation="softmax", beta=6.0,
                      projection="sphere", device=device, dtype="float16")
    r.remove([3, 4])
    new = r.insert(unit_patterns(2, 8, 10))
    assert list(new) == [20, 21]
    q = unit_patterns(4, 8, 11)
    again = pickle.loads(pickle.dumps(r))
    np.testing.assert_array_equal(again.ids, r.ids)
    np.testing.assert_array_equal(again.patterns, r.patterns)
    np.testing.assert_array_equal(again.retrieve(q).states, r.retrieve(q).states)
    path = tmp_path / "memory.safetensors"
    r.save(path)
    loaded = dam.Retriever.load(path, device=device)
    np.testing.assert_array_equal(loaded.step(q), r.step(q))
    r.update(21, np.zeros(8, np.float32) + 0.5)
    assert not np.array_equal(r.patterns, loaded.patterns)


# ---- experiments and devices ---------------------------------------------------------------------

def test_capacity_rows_have_the_results_csv_columns():
    rows = dam.capacity(dim=12, patterns="spherical", alpha="0.5:0.7:0.1", trials=8,
                        beta=1.0, device="cpu")
    assert len(rows) == 3
    assert set(rows[0]) == {"alpha", "patterns", "trials", "successes", "success_rate",
                            "mean_overlap", "bit_flip_rate", "seconds",
                            "mean_abs_correlation", "min_hamming", "empty_supports"}
    assert all(r["trials"] == 8 for r in rows)
    with pytest.raises(ValueError, match="patterns"):
        dam.capacity(dim=12, patterns="fractal", count="10")


def test_capacity_runs_the_correlated_and_separated_ensembles():
    for patterns in ["correlated:0.4", "separated:12"]:
        rows = [dam.capacity(dim=32, patterns=patterns, energy="poly", degree=3,
                             count="40:40:1", trials=6, criterion="exact", query=q,
                             device=d)[0] for d in ("cpu", "wgpu") for q in ("stored", "random")]
        assert rows[0]["successes"] == rows[2]["successes"]
        assert rows[1]["successes"] == rows[3]["successes"]
        assert rows[0]["min_hamming"] is not None
        if patterns == "separated:12":
            assert rows[0]["min_hamming"] >= 12
        else:
            assert rows[0]["mean_abs_correlation"] > 0.25
    for bad in ["correlated:1.0", "separated:33"]:
        with pytest.raises(ValueError, match="patterns"):
            dam.capacity(dim=32, patterns=bad, energy="poly", degree=3, count="5:5:1",
                         criterion="exact")


def test_devices_lists_the_adapter_the_wgpu_tests_use():
    listed = dam.devices()
    assert listed, "the wgpu tests need an adapter: install mesa-vulkan-drivers"
    assert {"index", "name", "backend", "device_type"} <= set(listed[0])
    assert dam.Retriever(np.eye(3, dtype=np.float32), device="wgpu").device.startswith("wgpu")


# ---- spin dynamics and random features -------------------------------------------------------

def test_spin_dynamics_is_identical_on_both_devices_and_keeps_stored_patterns():
    signs = np.where(rng(12).standard_normal((20, 33)) >= 0, 1.0, -1.0).astype(np.float32)
    noisy = signs[:6].copy()
    noisy[:, :4] *= -1  # four flipped spins
    runs = {(d, u): dam.spin_dynamics(signs, noisy, energy="polynomial", degree=3, update=u,
                                      max_sweeps=20, seed=5, device=d)
            for d in DEVICES for u in ("async", "sync")}
    for d in DEVICES:
        for u in ("async", "sync"):
            np.testing.assert_array_equal(runs[d, u]["states"], runs["reference", u]["states"])
            assert runs[d, u]["flips"] == runs["reference", u]["flips"], (d, u)
    cpu_async = runs["cpu", "async"]
    assert set(np.unique(cpu_async["states"])) <= {-1.0, 1.0}
    # Few patterns, degree 3: the corrupted queries return to their patterns.
    np.testing.assert_array_equal(cpu_async["states"], signs[:6])
    assert cpu_async["converged"].all()
    still = dam.spin_dynamics(signs, signs, degree=3, device="cpu")
    assert all(f[0] == 0 for f in still["flips"])
    with pytest.raises(ValueError):
        dam.spin_dynamics(signs, noisy, energy="cubic")
    with pytest.raises(ValueError):
        dam.spin_dynamics(signs, noisy[:, :10])


def test_random_features_on_both_devices():
    patterns = unit_patterns(30, 8, 13)
    states = patterns[:4] + 0.1 * unit_patterns(4, 8, 14)
    out = {}
    for device in DEVICES:
        f = dam.RandomFeatures(8, 512, kind="fourier", beta=2.0, seed=3, device=device)
        f.insert(patterns)
        assert f.stored == 30
        out[device] = (f.energy(states), f.gradient(states), f.retrieve(states, steps=2))
        f.remove(patterns[:10])
        assert f.stored == 20
    for device in ("cpu", "wgpu"):
        assert len(out[device]) == len(out["reference"])
        for a, b in zip(out[device], out["reference"]):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError):
        dam.RandomFeatures(8, 511, kind="fourier")
    with pytest.raises(ValueError):
        dam.RandomFeatures(8, 64, kind="gabor")


def test_spin_dynamics_keeps_clamped_neurons_and_solves_xor_at_degree_3():
    table = np.array([[-1, -1, -1], [-1, 1, 1], [1, -1, 1], [1, 1, -1]], dtype=np.float32)
    queries = table.copy()
    queries[:, 2] = -1
    for device in ("cpu", "wgpu"):
        for degree, right in ((2, 2), (3, 4)):
            r = dam.spin_dynamics(table, queries, degree=degree, update="sync", max_sweeps=1,
                                  device=device, clamped=[0, 1])
            assert np.array_equal(r["states"][:, :2], table[:, :2])
            assert int((r["states"][:, 2] == table[:, 2]).sum()) == right
    with pytest.raises(ValueError, match="clamped"):
        dam.spin_dynamics(table, queries, clamped=[3])


@pytest.mark.parametrize("device", ["cpu", "wgpu"])
def test_retrieve_with_clamped_coordinates_completes_the_rest(device):
    rng = np.random.default_rng(3)
    stored = np.where(rng.random((30, 40)) < 0.5, -1.0, 1.0).astype(np.float32)
    queries = stored[:4].copy()
    queries[:, 20:] = rng.uniform(-1, 1, (4, 20)).astype(np.float32)
    memory = dam.Retriever(stored, separation="softmax", beta=0.3, device=device)
    r = memory.retrieve(queries, clamped=list(range(20)))
    assert np.array_equal(r.states[:, :20], queries[:, :20])
    assert np.allclose(r.states[:, 20:], stored[:4, 20:], atol=0.05)
    assert list(r.nearest) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="clamped"):
        memory.retrieve(queries, clamped=[40])


@pytest.mark.parametrize("device", ["cpu", "wgpu"])
def test_classifier_learns_a_toy_problem_and_round_trips(device, tmp_path):
    # Three prototypes over 24 pixels, noisy copies (8 % of the pixels flipped).
    rng = np.random.default_rng(5)
    protos = np.where(np.arange(24)[None, :] // 8 == np.arange(3)[:, None], 1.0, -1.0)
    labels = np.arange(90) % 3
    images = protos[labels] * np.where(rng.random((90, 24)) < 0.08, -1.0, 1.0)
    clf = dam.Classifier(6, 24, classes=3, degree=3, temperature=3.0, loss_power=1,
                         seed=1, device=device)
    # 12 epochs: the loss is then ~1e-12.
    first = clf.train_epoch(images, labels, batch=10, lr=0.05, lr_decay=0.9, seed=2)
    for _ in range(11):
        last = clf.train_epoch(images, labels, batch=10, lr=0.05, lr_decay=0.9, seed=2)
    assert last < 1e-6 * first
    assert clf.epochs == 12
    assert clf.error(images, labels) == 0.0
    assert list(clf.predict(images)) == list(labels)
    assert clf.outputs(images).shape == (90, 3)
    assert clf.memories.shape == (6, 27) and np.abs(clf.memories).max() <= 1.0
    clf.train_epoch(images, labels, batch=10, lr=0.05, temperature=2.5)
    assert clf.temperature == 2.5
    path = tmp_path / "clf.safetensors"
    clf.save(path)
    back = dam.Classifier.load(path, device="cpu")
    assert np.array_equal(back.predict(images), clf.predict(images))
    with pytest.raises(ValueError, match="labels"):
        clf.train_epoch(images, np.full(90, 3), batch=10)
    with pytest.raises(ValueError, match="degree"):
        dam.Classifier(4, 24, degree=0)


def test_classifier_defaults_follow_the_recipe_for_the_degree():
    assert dam.Classifier(4, 24, degree=3, device="cpu").temperature == 400.0
    assert dam.Classifier(4, 24, degree=2, device="cpu").temperature == 700.0
    assert dam.Classifier(4, 24, degree=30, device="cpu").temperature == 540.0
    assert dam.Classifier(4, 24, degree=3, temperature=9.0, device="cpu").temperature == 9.0
    # The ramp of n = 3 (400 → 50 over 50 epochs) moves T every epoch.
    rng = np.random.default_rng(1)
    images = np.where(rng.random((20, 24)) < 0.3, 1.0, -1.0)
    labels = np.arange(20) % 10
    clf = dam.Classifier(4, 24, degree=3, device="cpu")
    clf.train_epoch(images, labels)
    clf.train_epoch(images, labels)
    assert clf.temperature == 393.0
    ramped = dam.Classifier(4, 24, degree=3, temperature_final=100.0, ramp_epochs=2,
                            device="cpu")
    for _ in range(3):
        ramped.train_epoch(images, labels)
    assert ramped.temperature == 100.0
    with pytest.raises(ValueError, match="temperature_final"):
        dam.Classifier(4, 24, temperature_final=-1.0)


def test_classifier_stops_a_saturated_run_naming_the_temperature():
    # Far below the overlaps every output is pinned at ±1: no gradient on the CPU, and
    # the first epoch raises, naming the keyword to raise.
    rng = np.random.default_rng(5)
    protos = np.where(np.arange(24)[None, :] // 8 == np.arange(3)[:, None], 1.0, -1.0)
    labels = np.arange(90) % 3
    images = protos[labels] * np.where(rng.random((90, 24)) < 0.08, -1.0, 1.0)
    clf = dam.Classifier(6, 24, classes=3, temperature=0.05, seed=1, device="cpu")
    before = clf.memories
    with pytest.raises(ValueError, match=r"^outputs saturated at the start \(epoch 1: .*\): raise temperature \(now 0.05\)$"):
        clf.train_epoch(images, labels)
    assert clf.epochs == 1
    assert np.array_equal(clf.memories, before)


@pytest.mark.parametrize("device", ["cpu", "wgpu"])
def test_classifier_reads_float32_and_float64_alike(device):
    # Pixels float32 holds exactly: the float32 and float64 paths give identical results.
    rng = np.random.default_rng(3)
    images32 = (rng.integers(0, 255, (60, 24)) / 127.0 - 1.0).astype(np.float32)
    images64 = images32.astype(np.float64)
    labels = np.arange(60) % 3
    a = dam.Classifier(5, 24, classes=3, temperature=4.0, seed=2, device=device)
    b = dam.Classifier(5, 24, classes=3, temperature=4.0, seed=2, device=device)
    for _ in range(2):
        la = a.train_epoch(images32, labels, batch=16, lr=0.05)
        lb = b.train_epoch(images64, labels, batch=16, lr=0.05)
        assert la == lb
    assert np.array_equal(a.memories, b.memories)
    assert np.array_equal(a.outputs(images32), a.outputs(images64))
    assert np.array_equal(a.predict(images32), b.predict(images64))
    assert a.error(images32, labels) == b.error(images64, labels)
    # Other dtypes and lists are converted once.
    assert np.array_equal(a.predict(images32.tolist()), a.predict(images32))


def test_classifier_shifts_square_images_by_default():
    # 64 pixels are an 8 × 8 image: shifted by a pixel unless shift=0; 24 pixels are not.
    rng = np.random.default_rng(4)
    images = np.where(rng.random((40, 64)) < 0.3, 1.0, -1.0)
    labels = np.arange(40) % 4
    runs = {}
    for shift in (None, 1, 0):
        clf = dam.Classifier(5, 64, classes=4, temperature=6.0, seed=3, device="cpu")
        clf.train_epoch(images, labels, batch=10, lr=0.05, shift=shift)
        runs[shift] = clf.memories
    assert np.array_equal(runs[None], runs[1])
    assert not np.array_equal(runs[1], runs[0])
    flat = dam.Classifier(5, 24, classes=4, temperature=6.0, seed=3, device="cpu")
    flat.train_epoch(images[:, :24], labels, batch=10, lr=0.05)
    with pytest.raises(ValueError, match="shift"):
        flat.train_epoch(images[:, :24], labels, batch=10, lr=0.05, shift=1)


@pytest.mark.parametrize("device", DEVICES)
def test_log_sum_relu_moves_to_the_centroid_of_the_support(device):
    patterns = np.array([[0.0, 0.0], [1.5, 0.0], [10.0, 0.0]], dtype=np.float32)
    memory = dam.Retriever(
        patterns, similarity="euclidean", separation="lsr", beta=0.5,
        dynamics="one-step", device=device,
    )
    out = memory.retrieve(np.array([[0.5, 0.0], [50.0, 50.0]], dtype=np.float32))
    np.testing.assert_array_equal(out.states[0], [0.75, 0.0])
    # Nothing within reach: infinite energy, the state stays, no match.
    np.testing.assert_array_equal(out.states[1], [50.0, 50.0])
    assert out.energy[1] == np.inf
    with pytest.raises(ValueError):
        dam.Retriever(patterns, similarity="dot", separation="lsr", device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_entmax_and_sparsemax_give_sparse_weights(device):
    patterns = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    query = np.array([[0.5, 0.3]], dtype=np.float32)
    # s = (0.5, 0.3, -0.5): sparsemax gives p = (0.6, 0.4, 0), one step lands on (0.6, 0.4).
    for kwargs in [dict(separation="sparsemax"), dict(separation="entmax", alpha=2.0)]:
        memory = dam.Retriever(patterns, beta=1.0, dynamics="one-step", device=device, **kwargs)
        np.testing.assert_allclose(memory.step(query)[0], [0.6, 0.4], atol=1e-6)
        psi = 0.6 * 0.5 + 0.4 * 0.3 + (1.0 - 0.36 - 0.16) / 2.0
        np.testing.assert_allclose(memory.energy(query)[0], -psi + 0.5 * 0.34, atol=1e-6)
    # 1.5-entmax: between softmax and sparsemax, and the energy never rises.
    rng_ = np.random.default_rng(3)
    stored = rng_.standard_normal((40, 9)).astype(np.float32) / 3.0
    queries = rng_.standard_normal((5, 9)).astype(np.float32)
    memory = dam.Retriever(stored, separation="entmax", alpha=1.5, beta=4.0, max_steps=20,
                           tol=0.0, device=device)
    before = memory.energy(queries)
    after = memory.retrieve(queries).energy
    assert np.all(after <= before + 1e-6)
    with pytest.raises(ValueError, match="alpha"):
        dam.Retriever(stored, separation="entmax", alpha=2.5, device=device)
    with pytest.raises(ValueError, match="alpha"):
        dam.Retriever(stored, separation="softmax", alpha=1.5, device=device)
    # The rule survives pickling.
    again = pickle.loads(pickle.dumps(memory))
    np.testing.assert_array_equal(again.energy(queries), memory.energy(queries))



def test_classifier_with_the_muon_optimiser_learns_a_toy_problem():
    rng = np.random.default_rng(5)
    protos = np.where(np.arange(24)[None, :] // 8 == np.arange(3)[:, None], 1.0, -1.0)
    labels = np.arange(90) % 3
    images = protos[labels] * np.where(rng.random((90, 24)) < 0.08, -1.0, 1.0)
    losses = {}
    for device in ("cpu", "reference"):
        clf = dam.Classifier(6, 24, classes=3, degree=3, temperature=3.0, loss_power=1,
                             seed=1, device=device, optimizer="muon")
        assert clf.optimizer == "muon"
        first = clf.train_epoch(images, labels, batch=10, lr=0.05, lr_decay=0.9, seed=2)
        for _ in range(7):
            last = clf.train_epoch(images, labels, batch=10, lr=0.05, lr_decay=0.9, seed=2)
        assert last < 0.5 * first, (device, first, last)
        losses[device] = last
    assert abs(losses["cpu"] - losses["reference"]) <= 1e-2 * max(1.0, losses["reference"])
    assert dam.Classifier(4, 24, device="cpu").optimizer == "krotov"
    with pytest.raises(ValueError, match="optimizer"):
        dam.Classifier(4, 24, device="cpu", optimizer="adam")
    with pytest.raises(ValueError, match="ns_steps"):
        dam.Classifier(4, 24, device="cpu", optimizer="krotov", ns_steps=3)
    with pytest.raises(ValueError, match="ns_steps"):
        dam.Classifier(4, 24, device="cpu", optimizer="muon", ns_steps=0)
    with pytest.raises(ValueError, match="Device::Cpu"):
        dam.Classifier(4, 24, device="wgpu", optimizer="muon")


@pytest.mark.parametrize("device", ["cpu", "wgpu"])
def test_a_feature_map_makes_a_kernelized_memory(device):
    rng = np.random.default_rng(8)
    stored = rng.standard_normal((30, 12)).astype(np.float32)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    queries = stored[:5] + 0.1 * rng.standard_normal((5, 12)).astype(np.float32)
    # The identity map is the plain memory.
    plain = dam.Retriever(stored, separation="entmax", alpha=1.5, beta=4.0, device=device)
    ident = dam.Retriever(stored, separation="entmax", alpha=1.5, beta=4.0, device=device,
                          feature_map=(np.eye(12), np.zeros(12)))
    assert np.allclose(ident.retrieve(queries).states, plain.retrieve(queries).states,
                       atol=1e-5)
    # A random affine map on normalised features: the device agrees with the reference,
    # states stay in input space, and pickling keeps the map.
    w, b = rng.standard_normal((20, 12)), rng.standard_normal(20)
    args = dict(separation="entmax", alpha=1.5, beta=4.0, feature_map=(w, b), normalise=True)
    mine = dam.Retriever(stored, device=device, **args)
    ref = dam.Retriever(stored, device="reference", **args)
    got, want = mine.retrieve(queries), ref.retrieve(queries)
    assert got.states.shape == (5, 12)
    assert np.allclose(got.states, want.states, atol=1e-4)
    back = pickle.loads(pickle.dumps(mine))
    assert np.allclose(back.retrieve(queries).states, got.states, atol=1e-6)
    assert not np.allclose(got.states, plain.retrieve(queries).states, atol=1e-3)
    with pytest.raises(ValueError, match="feature map"):
        dam.Retriever(stored, feature_map=(np.ones((20, 11)), b), device=device)
    with pytest.raises(ValueError, match="normalise"):
        dam.Retriever(stored, normalise=True, device=device)
