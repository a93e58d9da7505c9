//! Kernelized memories (`RetrieverBuilder::feature_map`): the reference against the core
//! definition `dam::kernelized::fixed_point`, the identity map against the plain memory,
//! the fast CPU backend and wgpu against the reference (ragged sizes), energy descent of
//! the affine kernel, edits keeping Φ(Ξ) in sync, validation errors, and saving.

mod common;

use common::{assert_matches, gaussian, noisy_queries, unit_patterns};
use dam::kernelized::{self, FeatureMap, Kernel, Retrieval, Weights};
use dam::{
    Device, Dynamics, Error, Patterns, Projection, RetrievalResult, Retriever, Separation,
    Similarity, Storage, Tolerance,
};
use ndarray::{Array1, Array2, Axis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The reference against the f64 core definition on data that f32 holds exactly (dyadic
/// memories, map and queries): the fixed points are single memories, reached exactly.
const CORE_TOL: Tolerance = Tolerance::new(1e-12, 0.0);
/// One step of the reference against the core in f64: the state is rounded to f32.
const ONE_STEP_TOL: Tolerance = Tolerance::new(1e-6, 1e-6);
/// The reference with normalised features (Φ̂ rounded to f32 before the products)
/// against the core in f64, after a few steps.
const NORMALISED_TOL: Tolerance = Tolerance::new(1e-5, 1e-5);
/// The confidence of the identity kernel against the plain memory's on the CPU devices.
const CONFIDENCE_TOL: Tolerance = Tolerance::new(1e-13, 0.0);
/// Energies along a trace may rise by f32 rounding of the state only.
const DESCENT_SLACK: f64 = 1e-6;

fn patterns(rows: Array2<f32>) -> Patterns {
    Patterns::new(rows).unwrap()
}

/// A random map with N(0, 1/N) weights and N(0, 0.1²) bias (seeded).
fn random_map(d: usize, n: usize, seed: u64) -> FeatureMap {
    let w = gaussian(d, n, 1.0 / (n as f32).sqrt(), seed).mapv(f64::from);
    let b = gaussian(1, d, 0.1, seed + 1)
        .index_axis(Axis(0), 0)
        .mapv(f64::from);
    FeatureMap { w, b }
}

/// Entries k/8 with |k| ≤ 8, seeded: every product and sum below is exact in f32.
fn dyadic(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_simple_fn((rows, cols), || rng.random_range(-8i32..=8) as f32 / 8.0)
}

fn kernelized(
    memories: Array2<f32>,
    map: FeatureMap,
    normalise: bool,
    separation: Separation,
    dynamics: Dynamics,
    device: Device,
) -> Retriever {
    Retriever::builder(patterns(memories))
        .feature_map(map, normalise)
        .separation(separation)
        .dynamics(dynamics)
        .device(device)
        .build()
        .unwrap()
}

fn core_retrieval(separation: Separation, max_steps: usize, tol: f64) -> Retrieval {
    match separation {
        Separation::Softmax { beta } => Retrieval {
            beta: beta as f64,
            weights: Weights::Softmax,
            max_steps,
            tolerance: tol,
        },
        Separation::Entmax { beta, alpha } => Retrieval {
            beta: beta as f64,
            weights: Weights::Entmax {
                alpha: alpha as f64,
            },
            max_steps,
            tolerance: tol,
        },
        other => panic!("no core weights for {other:?}"),
    }
}

/// The core's fixed points from every query (f64).
fn core_fixed_points(
    memories: &Array2<f32>,
    kernel: &Kernel,
    queries: &Array2<f32>,
    retrieval: &Retrieval,
) -> Vec<kernelized::FixedPoint> {
    let xi = memories.mapv(f64::from);
    let features = kernel.features(xi.view());
    queries
        .rows()
        .into_iter()
        .map(|q| {
            let q = q.mapv(f64::from);
            kernelized::fixed_point(kernel, xi.view(), features.view(), q.view(), retrieval)
        })
        .collect()
}

fn argmax(p: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    best
}

#[test]
fn the_reference_reaches_the_core_fixed_points_exactly() {
    // M = 7 memories in N = 6, D_Φ = 5; dyadic W, b, Ξ and queries, so Φ(Ξ) and Φ(x) are
    // exact in f32 and sparsemax at β = 4 ends on single memories, which f32 holds exactly.
    let (m, n, d) = (7, 6, 5);
    let memories = dyadic(m, n, 1);
    let map = FeatureMap {
        w: dyadic(d, n, 2).mapv(f64::from),
        b: dyadic(1, d, 3).index_axis(Axis(0), 0).mapv(f64::from),
    };
    let queries = dyadic(11, n, 4);
    let separation = Separation::Entmax {
        beta: 4.0,
        alpha: 2.0,
    };
    let memory = kernelized(
        memories.clone(),
        map.clone(),
        false,
        separation,
        Dynamics::Iterate {
            max_steps: 50,
            tol: 0.0,
        },
        Device::Reference,
    );
    let got = memory.retrieve(queries.view()).unwrap();
    let kernel = Kernel::new(map, false);
    let want = core_fixed_points(
        &memories,
        &kernel,
        &queries,
        &core_retrieval(separation, 50, 0.0),
    );
    assert_eq!(want.len(), queries.nrows());
    for (q, fp) in want.iter().enumerate() {
        // The premise: a single memory, exactly.
        let support = kernelized::metastable_size(&fp.weights, 0.0);
        assert_eq!(support, 1, "query {q}: core weights {:?}", fp.weights);
        assert!(fp.converged, "query {q}: the core did not converge");
        let state: Vec<f64> = got.states.row(q).iter().map(|&v| v as f64).collect();
        CORE_TOL
            .compare(state.iter().copied(), fp.state.iter().copied())
            .unwrap_or_else(|e| panic!("query {q}: states differ: {e:?}"));
        assert_eq!(got.nearest[q], argmax(&fp.weights), "query {q}: nearest");
        assert_eq!(got.steps[q], fp.steps, "query {q}: steps");
        assert!(got.converged[q], "query {q}: converged");
    }
}

#[test]
fn one_reference_step_is_the_core_step() {
    // Softmax, one step from dyadic queries: the weights are exact in f64 on both sides;
    // the state differs by its rounding to f32.
    let (m, n, d) = (9, 5, 7);
    let memories = dyadic(m, n, 11);
    let map = FeatureMap {
        w: dyadic(d, n, 12).mapv(f64::from),
        b: dyadic(1, d, 13).index_axis(Axis(0), 0).mapv(f64::from),
    };
    let queries = dyadic(6, n, 14);
    for separation in [
        Separation::Softmax { beta: 0.7 },
        Separation::Entmax {
            beta: 0.7,
            alpha: 1.5,
        },
    ] {
        let memory = kernelized(
            memories.clone(),
            map.clone(),
            false,
            separation,
            Dynamics::OneStep,
            Device::Reference,
        );
        let got = memory.step(queries.view()).unwrap();
        let want = core_fixed_points(
            &memories,
            &Kernel::new(map.clone(), false),
            &queries,
            &core_retrieval(separation, 1, 0.0),
        );
        assert_eq!(want.len(), got.nrows());
        for (q, fp) in want.iter().enumerate() {
            assert_eq!(fp.steps, 1);
            ONE_STEP_TOL
                .compare(got.row(q).iter().copied(), fp.state.iter().copied())
                .unwrap_or_else(|e| panic!("{separation:?} query {q}: {e:?}"));
        }
    }
}

#[test]
fn normalised_features_follow_the_core_definition() {
    // K = cosine of the features; β = 10 on cosines, 1.5-entmax, a few steps.
    let (m, n, d) = (10, 7, 6);
    let memories = unit_patterns(m, n, 21);
    let map = random_map(d, n, 22);
    let queries = noisy_queries(&memories, 8, 0.6, 23);
    let separation = Separation::Entmax {
        beta: 10.0,
        alpha: 1.5,
    };
    let memory = kernelized(
        memories.clone(),
        map.clone(),
        true,
        separation,
        Dynamics::Iterate {
            max_steps: 3,
            tol: 0.0,
        },
        Device::Reference,
    );
    let got = memory.retrieve(queries.view()).unwrap();
    let want = core_fixed_points(
        &memories,
        &Kernel::new(map, true),
        &queries,
        &core_retrieval(separation, 3, 0.0),
    );
    assert_eq!(want.len(), queries.nrows());
    for (q, fp) in want.iter().enumerate() {
        NORMALISED_TOL
            .compare(got.states.row(q).iter().copied(), fp.state.iter().copied())
            .unwrap_or_else(|e| panic!("query {q}: {e:?}"));
        assert_eq!(got.steps[q], fp.steps, "query {q}: steps");
    }
}

fn assert_identical(label: &str, a: &RetrievalResult, b: &RetrievalResult) {
    assert_same_dynamics(label, a, b);
    assert_eq!(a.confidence, b.confidence, "{label}: confidence");
}

/// Everything bit for bit but the confidence.
fn assert_same_dynamics(label: &str, a: &RetrievalResult, b: &RetrievalResult) {
    assert_eq!(a.states, b.states, "{label}: states");
    assert_eq!(a.steps, b.steps, "{label}: steps");
    assert_eq!(a.converged, b.converged, "{label}: converged");
    assert_eq!(a.nearest, b.nearest, "{label}: nearest");
    assert_eq!(a.energy, b.energy, "{label}: energy");
    assert_eq!(a.energy_trace, b.energy_trace, "{label}: energy trace");
}

/// Φ = identity (W = I, b = 0, not normalised) is the plain memory with the dot
/// similarity: bit for bit on the CPU devices, within the state and energy tolerances
/// on wgpu (whose plain retrieval runs its own kernels).
fn identity_is_the_plain_memory(device: Device) {
    let exact = matches!(device, Device::Reference | Device::Cpu);
    let (p, n) = (37, 23);
    let memories = unit_patterns(p, n, 31);
    let queries = noisy_queries(&memories, 13, 0.5, 32);
    for separation in [
        Separation::Softmax { beta: 9.0 },
        Separation::Entmax {
            beta: 6.0,
            alpha: 1.5,
        },
        Separation::Entmax {
            beta: 6.0,
            alpha: 2.0,
        },
    ] {
        let dynamics = Dynamics::Iterate {
            max_steps: 5,
            tol: 1e-4,
        };
        let build = |map: Option<FeatureMap>| {
            let mut builder = Retriever::builder(patterns(memories.clone()))
                .separation(separation)
                .dynamics(dynamics)
                .energy_trace(true)
                .device(device.clone());
            if let Some(map) = map {
                builder = builder.feature_map(map, false);
            }
            builder.build().unwrap()
        };
        let plain = build(None);
        let kernel = build(Some(FeatureMap::identity(n)));
        let label = format!("{separation:?}");
        let (a, b) = (
            kernel.retrieve(queries.view()).unwrap(),
            plain.retrieve(queries.view()).unwrap(),
        );
        let (ea, eb) = (
            kernel.energy(queries.view()).unwrap(),
            plain.energy(queries.view()).unwrap(),
        );
        if exact {
            // The plain reference's confidence goes through the log-sum-exp, the
            // kernelized one divides the weights by their sum: the last bits differ.
            assert_same_dynamics(&label, &a, &b);
            assert_eq!(a.confidence.is_some(), b.confidence.is_some(), "{label}");
            CONFIDENCE_TOL
                .compare(
                    a.confidence.clone().unwrap_or_default(),
                    b.confidence.clone().unwrap_or_default(),
                )
                .unwrap_or_else(|e| panic!("{label}: confidence: {e:?}"));
            assert_eq!(ea, eb, "{label}: energy()");
            assert_eq!(
                kernel.step(queries.view()).unwrap(),
                plain.step(queries.view()).unwrap(),
                "{label}: step"
            );
        } else {
            assert_matches(&label, &a, &b);
            common::ENERGY_TOL
                .scaled(eb.iter().fold(1.0f64, |m, e| m.max(e.abs())))
                .compare(ea.iter().copied(), eb.iter().copied())
                .unwrap_or_else(|e| panic!("{label}: energy(): {e:?}"));
        }
        let (sa, sb) = (
            kernel.search(queries.view(), 4).unwrap(),
            plain.search(queries.view(), 4).unwrap(),
        );
        assert_eq!(sa.ids, sb.ids, "{label}: search");
        assert_eq!(kernel.patterns().view(), plain.patterns().view());
    }
}

/// A non-trivial kernel (D_Φ = 37 ≠ N = 29, b ≠ 0; affine and normalised) on a fast
/// device against the reference: ragged sizes, softmax and 1.5-entmax.
fn devices_match_the_reference(device: Device) {
    let (p, n, d, b) = (45, 29, 37, 13);
    let memories = unit_patterns(p, n, 41);
    let queries = noisy_queries(&memories, b, 0.4, 42);
    for normalise in [false, true] {
        for separation in [
            Separation::Softmax { beta: 8.0 },
            Separation::Entmax {
                beta: 8.0,
                alpha: 1.5,
            },
        ] {
            for dynamics in common::DYNAMICS {
                let map = random_map(d, n, 43);
                let build = |device: Device| {
                    Retriever::builder(patterns(memories.clone()))
                        .feature_map(map.clone(), normalise)
                        .separation(separation)
                        .dynamics(dynamics)
                        .energy_trace(true)
                        .device(device)
                        .build()
                        .unwrap()
                };
                let label = format!("normalise {normalise}, {separation:?}, {dynamics:?}");
                let want = build(Device::Reference).retrieve(queries.view()).unwrap();
                let got = build(device.clone()).retrieve(queries.view()).unwrap();
                assert_matches(&label, &got, &want);
            }
        }
    }
}

test_devices!(all: identity_is_the_plain_memory);
test_devices!(fast: devices_match_the_reference);

#[test]
fn the_affine_kernel_descends_its_energy() {
    // Φ(Ξᵀp) = Φ(Ξ)ᵀp: the plain update of the memory of features, so E(Φ(x)) does not
    // rise along the kernelized dynamics.
    let (p, n, d) = (30, 11, 17);
    let memories = unit_patterns(p, n, 51);
    let queries = noisy_queries(&memories, 9, 1.0, 52);
    let map = random_map(d, n, 53);
    for separation in [
        Separation::Softmax { beta: 3.0 },
        Separation::Entmax {
            beta: 3.0,
            alpha: 1.5,
        },
    ] {
        let memory = Retriever::builder(patterns(memories.clone()))
            .feature_map(map.clone(), false)
            .separation(separation)
            .dynamics(Dynamics::Iterate {
                max_steps: 30,
                tol: 1e-7,
            })
            .energy_trace(true)
            .device(Device::Reference)
            .build()
            .unwrap();
        let result = memory.retrieve(queries.view()).unwrap();
        let traces = result.energy_trace.expect("asked for");
        assert_eq!(traces.len(), queries.nrows());
        let mut moved = 0;
        for (q, trace) in traces.iter().enumerate() {
            assert!(trace.len() >= 2, "query {q}: {trace:?}");
            for w in trace.windows(2) {
                assert!(
                    w[1] <= w[0] + DESCENT_SLACK * w[0].abs().max(1.0),
                    "{separation:?} query {q}: energy rose {trace:?}"
                );
            }
            if trace[0] - trace[trace.len() - 1] > 1e-3 {
                moved += 1;
            }
        }
        assert!(moved > 0, "{separation:?}: no energy fell");
        // energy() is the same quantity as the trace's last entry.
        let at_end = memory.energy(result.states.view()).unwrap();
        for (q, trace) in traces.iter().enumerate() {
            assert_eq!(at_end[q], trace[trace.len() - 1], "query {q}");
        }
    }
}

/// Insert, remove and update on `device`, against a fresh build of what remains on the
/// same device: identical results.
fn edits_keep_the_features_in_sync(device: Device) {
    let (n, d) = (13, 9);
    let map = random_map(d, n, 61);
    let first = unit_patterns(8, n, 62);
    let extra = unit_patterns(3, n, 63);
    let replacement = unit_patterns(1, n, 64);
    let build = |rows: Array2<f32>| {
        Retriever::builder(patterns(rows))
            .feature_map(map.clone(), true)
            .separation(Separation::Softmax { beta: 12.0 })
            .report_top(3)
            .device(device.clone())
            .build()
            .unwrap()
    };
    let mut memory = build(first.clone());
    let ids = memory.insert(extra.view()).unwrap();
    assert_eq!(ids, vec![8, 9, 10]);
    memory.remove(&[2, 9]).unwrap();
    memory.update(5, replacement.row(0)).unwrap();
    // What remains: rows 0, 1, 3, 4, 5 (replaced), 6, 7 of `first`, rows 0 and 2 of `extra`.
    let mut rows: Vec<Array1<f32>> = Vec::new();
    for r in [0, 1, 3, 4, 5, 6, 7] {
        rows.push(if r == 5 {
            replacement.row(0).to_owned()
        } else {
            first.row(r).to_owned()
        });
    }
    rows.push(extra.row(0).to_owned());
    rows.push(extra.row(2).to_owned());
    let views: Vec<_> = rows.iter().map(|r| r.view()).collect();
    let remaining = ndarray::stack(Axis(0), &views).unwrap();
    let fresh = build(remaining.clone());
    assert_eq!(memory.patterns().view(), remaining.view());
    let queries = noisy_queries(&remaining, 7, 0.5, 65);
    let (a, b) = (
        memory.retrieve(queries.view()).unwrap(),
        fresh.retrieve(queries.view()).unwrap(),
    );
    assert_identical("edited vs fresh", &a, &b);
    // The reported top patterns rank by K, with the stable ids of the edited memory.
    let (ta, tb) = (
        a.top.clone().expect("asked for"),
        b.top.clone().expect("asked for"),
    );
    assert_eq!(ta.len(), tb.len());
    let fresh_to_edited = [0u64, 1, 3, 4, 5, 6, 7, 8, 10];
    for (q, (ra, rb)) in ta.iter().zip(&tb).enumerate() {
        let ids_a: Vec<u64> = ra.iter().map(|e| e.id).collect();
        let ids_b: Vec<u64> = rb.iter().map(|e| fresh_to_edited[e.id as usize]).collect();
        assert_eq!(ids_a, ids_b, "query {q}: top ids");
        let weights_a: Vec<f64> = ra.iter().map(|e| e.weight).collect();
        let weights_b: Vec<f64> = rb.iter().map(|e| e.weight).collect();
        assert_eq!(weights_a, weights_b, "query {q}: top weights");
    }
    // A bad insert (wrong width) changes nothing.
    let wrong = unit_patterns(2, n + 1, 66);
    assert!(matches!(
        memory.insert(wrong.view()),
        Err(Error::DimensionMismatch { .. })
    ));
    assert_eq!(memory.patterns().view(), remaining.view());
    let c = memory.retrieve(queries.view()).unwrap();
    assert_identical("after a refused insert", &c, &b);
}

test_devices!(all: edits_keep_the_features_in_sync);

#[test]
fn values_are_read_out_through_the_kernel() {
    // retrieve_values of a kernelized memory is the plain read-out of the memory of
    // features at Φ(x).
    let (p, n, d) = (21, 10, 14);
    let memories = unit_patterns(p, n, 71);
    let values = gaussian(p, 3, 1.0, 72);
    let map = random_map(d, n, 73);
    let queries = noisy_queries(&memories, 5, 0.3, 74);
    let separation = Separation::Softmax { beta: 5.0 };
    let memory = Retriever::builder(patterns(memories.clone()))
        .feature_map(map.clone(), false)
        .separation(separation)
        .values(values.clone())
        .device(Device::Reference)
        .build()
        .unwrap();
    let kernel = Kernel::new(map, false);
    let features = kernel
        .features(memories.mapv(f64::from).view())
        .mapv(|v| v as f32);
    let query_features = kernel
        .features(queries.mapv(f64::from).view())
        .mapv(|v| v as f32);
    let plain = Retriever::builder(patterns(features))
        .separation(separation)
        .values(values)
        .device(Device::Reference)
        .build()
        .unwrap();
    assert_eq!(
        memory.retrieve_values(queries.view()).unwrap(),
        plain.retrieve_values(query_features.view()).unwrap()
    );
}

#[test]
fn bad_maps_and_rules_are_refused() {
    let n = 6;
    let memories = unit_patterns(5, n, 81);
    let build = |map: FeatureMap| {
        Retriever::builder(patterns(memories.clone()))
            .feature_map(map, false)
            .separation(Separation::Softmax { beta: 2.0 })
            .build()
    };
    let err = build(random_map(4, n + 1, 82)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::DimensionMismatch {
                expected: 6,
                actual: 7,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("feature map W"), "{err}");
    let mut short_b = random_map(4, n, 83);
    short_b.b = Array1::zeros(3);
    let err = build(short_b).unwrap_err();
    assert!(
        matches!(
            err,
            Error::DimensionMismatch {
                expected: 4,
                actual: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("feature map b"), "{err}");
    let mut nan = random_map(4, n, 84);
    nan.w[[2, 3]] = f64::NAN;
    let err = build(nan).unwrap_err();
    assert!(
        matches!(err, Error::NonFinite { row: 2, col: 3, .. }),
        "{err}"
    );
    let empty = FeatureMap {
        w: Array2::zeros((0, n)),
        b: Array1::zeros(0),
    };
    assert!(matches!(build(empty), Err(Error::Empty { .. })));
    let with = |f: fn(dam::RetrieverBuilder) -> dam::RetrieverBuilder| {
        f(Retriever::builder(patterns(memories.clone()))
            .feature_map(random_map(4, n, 85), false)
            .separation(Separation::Softmax { beta: 2.0 }))
        .build()
    };
    let refused = [
        with(|b| b.similarity(Similarity::NegEuclidean)),
        with(|b| b.separation(Separation::Polynomial { n: 3 })),
        with(|b| b.projection(Projection::Sphere)),
    ];
    for (i, r) in refused.into_iter().enumerate() {
        assert!(
            matches!(r, Err(Error::InvalidParameter { .. })),
            "case {i}: {r:?}"
        );
    }
    assert!(matches!(
        with(|b| b.storage(Storage::F16)),
        Err(Error::Unsupported { .. })
    ));
    // Queries of the wrong width name the queries.
    let memory = with(|b| b).unwrap();
    let wrong = unit_patterns(2, n + 2, 86);
    assert!(matches!(
        memory.retrieve(wrong.view()),
        Err(Error::DimensionMismatch { .. })
    ));
}

#[test]
fn a_kernelized_memory_round_trips_through_a_file() {
    let dir = std::env::temp_dir().join(format!("dam-kernelized-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (n, d) = (12, 19);
    let memories = unit_patterns(17, n, 91);
    let queries = noisy_queries(&memories, 6, 0.5, 92);
    for normalise in [false, true] {
        let mut memory = kernelized(
            memories.clone(),
            random_map(d, n, 93),
            normalise,
            Separation::Entmax {
                beta: 9.0,
                alpha: 1.5,
            },
            Dynamics::Iterate {
                max_steps: 12,
                tol: 1e-6,
            },
            Device::Cpu,
        );
        memory.insert(unit_patterns(2, n, 94).view()).unwrap();
        memory.remove(&[3]).unwrap();
        let path = dir.join(format!("memory-{normalise}.safetensors"));
        memory.save_file(&path).unwrap();
        let loaded = Retriever::load_file(&path, &Device::Cpu).unwrap();
        assert_eq!(loaded.kernel(), memory.kernel(), "normalise {normalise}");
        assert_eq!(loaded.ids(), memory.ids());
        assert_eq!(loaded.patterns().view(), memory.patterns().view());
        let (a, b) = (
            loaded.retrieve(queries.view()).unwrap(),
            memory.retrieve(queries.view()).unwrap(),
        );
        assert_identical(&format!("normalise {normalise}"), &a, &b);
    }
    // A plain memory's file has no feature map and loads as a plain memory.
    let plain = Retriever::builder(patterns(memories.clone()))
        .build()
        .unwrap();
    let path = dir.join("plain.safetensors");
    plain.save_file(&path).unwrap();
    let loaded = Retriever::load_file(&path, &Device::Cpu).unwrap();
    assert!(loaded.kernel().is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_with_half_a_feature_map_is_refused() {
    let n = 5;
    let memory = kernelized(
        unit_patterns(6, n, 101),
        random_map(4, n, 102),
        false,
        Separation::Softmax { beta: 3.0 },
        Dynamics::OneStep,
        Device::Cpu,
    );
    let mut bytes = Vec::new();
    memory.save(&mut bytes).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = file
        .tensors()
        .into_iter()
        .filter(|(name, _)| name != "feature_bias")
        .collect();
    assert_eq!(kept.len(), 3);
    let damaged = safetensors::serialize(kept, header.metadata().clone()).unwrap();
    let err = Retriever::load(&damaged[..], &Device::Cpu).unwrap_err();
    assert!(
        matches!(err, Error::Format { .. }) && err.to_string().contains("feature_bias"),
        "{err}"
    );
}
