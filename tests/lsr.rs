//! The log-sum-ReLU separation: its definition (support centroids, spherical form, empty
//! support, the support's boundary, large β), energy descent, and the fast CPU and wgpu
//! backends against the reference (ragged sizes, patterns over several dispatches and
//! bindings, f16 storage, non-finite input).

mod common;

use common::{
    assert_matches, gaussian, gpu_with, noisy_queries, unit_patterns, ENERGY_TOL, PROJECTIONS,
    STATE_TOL,
};
use dam::binary::Clamp;
use dam::{
    Device, Dynamics, Error, Patterns, Projection, Retriever, Separation, Similarity, Storage,
    Tolerance, WgpuOptions,
};
use ndarray::{array, s, Array2};

fn lsr(beta: f32) -> Separation {
    Separation::LogSumRelu { beta, eps: 0.0 }
}

fn retriever(
    patterns: &Array2<f32>,
    separation: Separation,
    similarity: Similarity,
    dynamics: Dynamics,
    device: Device,
) -> Retriever {
    Retriever::builder(Patterns::new(patterns.clone()).expect("patterns"))
        .similarity(similarity)
        .separation(separation)
        .dynamics(dynamics)
        .energy_trace(true)
        .device(device)
        .build()
        .expect("retriever")
}

/// One update moves a state to the unweighted mean of the patterns within reach, and the
/// energy is −β⁻¹ log Σ max(0, 1 − (β/2)d²).
fn one_update_is_the_centroid_of_the_support(device: Device) {
    // Three patterns on a line; with β = 0.5 the support is d² < 4 (d < 2).
    let patterns = array![[0.0f32, 0.0], [1.5, 0.0], [10.0, 0.0]];
    let query = array![[0.5f32, 0.0]];
    let r = retriever(
        &patterns,
        lsr(0.5),
        Similarity::NegEuclidean,
        Dynamics::OneStep,
        device.clone(),
    );
    let out = r.retrieve(query.view()).expect("retrieve");
    assert_eq!(out.states.row(0).to_vec(), vec![0.75, 0.0], "{device:?}");
    let energy = r.energy(query.view()).expect("energy")[0];
    // d = 0.5 and 1.0: Σ = (1 − 0.0625) + (1 − 0.25).
    let expected = -(0.9375f64 + 0.75).ln() / 0.5;
    assert!(
        (energy - expected).abs() < 1e-6,
        "{device:?}: {energy} vs {expected}"
    );
}

/// A state with no pattern in reach has infinite energy, stays where it is (under every
/// projection) and matches nothing; with ε > 0 its energy is finite.
fn an_empty_support_is_an_infinite_energy_and_no_match(device: Device) {
    let patterns = array![[0.0f32, 0.0], [1.0, 0.0]];
    let queries = array![[50.0f32, 50.0], [0.2, 0.1]];
    let r = retriever(
        &patterns,
        lsr(1.0),
        Similarity::NegEuclidean,
        Dynamics::Iterate {
            max_steps: 10,
            tol: 0.0,
        },
        device.clone(),
    );
    let out = r.retrieve(queries.view()).expect("retrieve");
    assert_eq!(out.energy[0], f64::INFINITY, "{device:?}");
    assert_eq!(out.states.row(0).to_vec(), vec![50.0, 50.0], "{device:?}");
    assert_eq!(out.matched[0], None, "{device:?}");
    assert!(out.energy[1].is_finite(), "{device:?}");
    assert_eq!(out.matched[1], Some(out.nearest_id[1]), "{device:?}");
    assert!(out.energy.iter().all(|e| !e.is_nan()));
    let soft = Retriever::builder(Patterns::new(patterns.clone()).expect("patterns"))
        .similarity(Similarity::NegEuclidean)
        .separation(Separation::LogSumRelu {
            beta: 1.0,
            eps: 1e-3,
        })
        .device(device.clone())
        .build()
        .expect("retriever");
    let e = soft.energy(queries.view()).expect("energy");
    assert!(
        (e[0] - (-(1e-3f64).ln())).abs() < 1e-6,
        "{device:?}: {}",
        e[0]
    );
    assert_eq!(
        soft.retrieve(queries.view())
            .expect("retrieve")
            .states
            .row(0)
            .to_vec(),
        vec![50.0, 50.0],
        "{device:?}: ε > 0, empty support"
    );
    for projection in PROJECTIONS {
        let r = Retriever::builder(Patterns::new(patterns.clone()).expect("patterns"))
            .similarity(Similarity::NegEuclidean)
            .separation(lsr(1.0))
            .projection(projection)
            .device(device.clone())
            .build()
            .expect("retriever");
        let next = r.step(queries.view()).expect("step");
        assert_eq!(
            next.row(0).to_vec(),
            vec![50.0, 50.0],
            "{device:?} {projection:?}: the state stays, unprojected"
        );
        assert!(
            next.iter().all(|v| v.is_finite()),
            "{device:?} {projection:?}"
        );
    }
}

/// On the sphere |x|² = N with β = b/N, the energy is the spherical form
/// −(N/b) log Σ max(0, 1 − b + bφ), φ = x·ξ/N.
fn on_the_sphere_it_is_the_spherical_form(device: Device) {
    let (p, n) = (40, 24);
    let b = 2.0 + 2f64.sqrt();
    let sphere = |m: Array2<f32>| {
        let mut m = m;
        for mut row in m.rows_mut() {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            row.mapv_inplace(|v| v * (n as f32).sqrt() / norm);
        }
        m
    };
    let patterns = sphere(gaussian(p, n, 1.0, 3));
    let queries = sphere(noisy_queries(&patterns, 6, 0.4, 4));
    let beta = (b / n as f64) as f32;
    let r = retriever(
        &patterns,
        lsr(beta),
        Similarity::NegEuclidean,
        Dynamics::OneStep,
        device.clone(),
    );
    let energies = r.energy(queries.view()).expect("energy");
    assert_eq!(energies.len(), queries.nrows(), "{device:?}");
    for (q, &e) in energies.iter().enumerate() {
        let sum: f64 = patterns
            .rows()
            .into_iter()
            .map(|xi| {
                let phi = xi
                    .iter()
                    .zip(queries.row(q))
                    .map(|(&a, &x)| a as f64 * x as f64)
                    .sum::<f64>()
                    / n as f64;
                (1.0 - b + b * phi).max(0.0)
            })
            .sum();
        let expected = -(n as f64 / b) * sum.ln();
        assert!(
            Tolerance::new(1e-4, 1e-4).accepts(e, expected),
            "{device:?} query {q}: {e} vs {expected}"
        );
    }
}

/// The update is a mean shift with the Epanechnikov kernel: the energy never rises.
#[test]
fn the_energy_never_rises() {
    let patterns = gaussian(300, 8, 1.0, 11);
    let queries = gaussian(20, 8, 1.0, 12);
    for similarity in [Similarity::NegEuclidean, Similarity::NegManhattan] {
        let r = retriever(
            &patterns,
            lsr(0.1),
            similarity,
            Dynamics::Iterate {
                max_steps: 30,
                tol: 0.0,
            },
            Device::Reference,
        );
        let out = r.retrieve(queries.view()).expect("retrieve");
        let traces = out.energy_trace.expect("trace");
        assert_eq!(traces.len(), 20);
        let mut moved = 0;
        for trace in &traces {
            assert!(trace.len() >= 2);
            for pair in trace.windows(2) {
                if similarity == Similarity::NegEuclidean {
                    assert!(pair[1] <= pair[0] + 1e-9, "{similarity:?}: {trace:?}");
                }
                moved += usize::from(pair[1] < pair[0]);
            }
        }
        assert!(moved > 0, "{similarity:?}: no state moved");
    }
}

/// The fast backends against the reference: ragged sizes (P, N and B not multiples of any
/// workgroup), both distances, one step and iteration, every projection, and some states
/// with an empty support.
fn matches_the_reference(device: Device) {
    for (p, n, b) in [(1, 3, 1), (257, 19, 7), (2_000, 64, 33)] {
        let patterns = unit_patterns(p, n, 21);
        let mut queries = noisy_queries(&patterns, b, 0.3, 22);
        // The last query is far from everything.
        queries.row_mut(b - 1).fill(30.0);
        for similarity in [Similarity::NegEuclidean, Similarity::NegManhattan] {
            for dynamics in common::DYNAMICS {
                for projection in PROJECTIONS {
                    let label = format!(
                        "{device:?} P={p} N={n} B={b} {similarity:?} {dynamics:?} {projection:?}"
                    );
                    // Supports of a few patterns: L1 distances are about √N times larger.
                    let beta = match similarity {
                        Similarity::NegEuclidean => 3.0,
                        _ => 12.0 / n as f32,
                    };
                    let build = |device: Device| {
                        Retriever::builder(Patterns::new(patterns.clone()).expect("patterns"))
                            .similarity(similarity)
                            .separation(lsr(beta))
                            .dynamics(dynamics)
                            .projection(projection)
                            .energy_trace(true)
                            .device(device)
                            .build()
                            .expect("retriever")
                    };
                    let reference = build(Device::Reference);
                    let fast = build(device.clone());
                    let expected = reference.retrieve(queries.view()).expect("ref");
                    let got = fast.retrieve(queries.view()).expect("fast");
                    assert_matches(&label, &got, &expected);
                    assert_eq!(got.matched, expected.matched, "{label}");
                    assert_eq!(expected.matched[b - 1], None, "{label}");
                    assert_eq!(got.energy[b - 1], f64::INFINITY, "{label}");
                    // (The sphere and sign projections move states away from these
                    // unit-norm patterns.)
                    if b > 1 && projection == Projection::None {
                        assert!(expected.matched[0].is_some(), "{label}");
                    }
                    // One bare step and the energies of the queries.
                    let scale = queries.iter().fold(1.0f64, |m, &v| m.max(v.abs() as f64));
                    STATE_TOL
                        .scaled(scale)
                        .compare(
                            fast.step(queries.view()).expect("step").iter().copied(),
                            reference
                                .step(queries.view())
                                .expect("ref step")
                                .iter()
                                .copied(),
                        )
                        .unwrap_or_else(|m| panic!("{label}: step: {m:?}"));
                    compare_energies(
                        &label,
                        &fast.energy(queries.view()).expect("energy"),
                        &reference.energy(queries.view()).expect("ref energy"),
                    );
                }
            }
        }
    }
}

/// Energies within [`ENERGY_TOL`] (absolute part scaled by the largest finite reference
/// energy), infinities equal.
fn compare_energies(label: &str, got: &[f64], expected: &[f64]) {
    let scale = expected
        .iter()
        .filter(|e| e.is_finite())
        .fold(1.0f64, |m, e| m.max(e.abs()));
    ENERGY_TOL
        .scaled(scale)
        .compare(got.iter().copied(), expected.iter().copied())
        .unwrap_or_else(|m| panic!("{label}: energies differ: {m:?}"));
}

/// A pattern exactly on the support's boundary, (β/2)d² = 1 (kernel 0), is outside: it
/// neither moves the state nor adds to the energy, and a state with only boundary patterns
/// has an empty support.
fn a_pattern_on_the_boundary_is_outside(device: Device) {
    // β = 2: the support is d < 1; every distance here is exact in f32.
    let patterns = array![
        [1.0f32, 0.0],
        [0.5, 0.0],
        [0.0, -0.5],
        [0.0, 1.0],
        [-1.0, 0.0]
    ];
    for similarity in [Similarity::NegEuclidean, Similarity::NegManhattan] {
        let label = format!("{device:?} {similarity:?}");
        let r = retriever(
            &patterns,
            lsr(2.0),
            similarity,
            Dynamics::OneStep,
            device.clone(),
        );
        // From the origin: patterns 1 and 2 inside (kernel 0.75 each), 0, 3 and 4 on the
        // boundary.
        let origin = array![[0.0f32, 0.0]];
        let out = r.retrieve(origin.view()).expect("retrieve");
        assert_eq!(out.states.row(0).to_vec(), vec![0.25, -0.25], "{label}");
        let expected = -(1.5f64).ln() / 2.0;
        assert!(
            Tolerance::new(1e-6, 1e-6)
                .accepts(r.energy(origin.view()).expect("energy")[0], expected),
            "{label}"
        );
        // Only boundary patterns: from (2, 0), pattern 0 is at distance 1, the rest farther.
        let edge = array![[2.0f32, 0.0]];
        let out = r.retrieve(edge.view()).expect("retrieve");
        assert_eq!(out.energy[0], f64::INFINITY, "{label}");
        assert_eq!(out.states.row(0).to_vec(), vec![2.0, 0.0], "{label}");
        assert_eq!(out.matched[0], None, "{label}");
        assert_eq!(out.nearest[0], 0, "{label}");
    }
}

/// A large β shrinks the support to the patterns right at the state, and β·d² beyond f32
/// is a zero kernel, never an overflow or a NaN.
fn a_large_beta_keeps_only_the_nearest_patterns(device: Device) {
    let patterns = unit_patterns(50, 16, 31);
    let mut queries = patterns.slice(s![0..6, ..]).to_owned();
    // Query 0 is exactly pattern 0; the others are moved by 10⁻³ in one coordinate.
    for q in 1..6 {
        queries[[q, q]] += 1e-3;
    }
    for beta in [1e5f32, 1e30] {
        let label = format!("{device:?} β={beta}");
        let r = retriever(
            &patterns,
            lsr(beta),
            Similarity::NegEuclidean,
            Dynamics::Iterate {
                max_steps: 3,
                tol: 0.0,
            },
            device.clone(),
        );
        let out = r.retrieve(queries.view()).expect("retrieve");
        let reference = retriever(
            &patterns,
            lsr(beta),
            Similarity::NegEuclidean,
            Dynamics::Iterate {
                max_steps: 3,
                tol: 0.0,
            },
            Device::Reference,
        )
        .retrieve(queries.view())
        .expect("reference");
        assert_matches(&label, &out, &reference);
        assert_eq!(out.matched, reference.matched, "{label}");
        assert!(out.energy.iter().all(|e| !e.is_nan()), "{label}");
        // On a pattern the kernel is 1 whatever β: E = 0 and the state is that pattern.
        assert_eq!(out.energy[0], 0.0, "{label}");
        assert_eq!(out.states.row(0), patterns.row(0), "{label}");
        for q in 1..6 {
            if beta < 1e6 {
                // (β/2)d² = 0.05: the query moves onto its pattern.
                assert_eq!(out.states.row(q), patterns.row(q), "{label} query {q}");
                assert!(out.energy[q].is_finite(), "{label} query {q}");
            } else {
                // (β/2)d² ≈ 5·10²³: nothing in reach.
                assert_eq!(out.energy[q], f64::INFINITY, "{label} query {q}");
                assert_eq!(out.states.row(q), queries.row(q), "{label} query {q}");
            }
        }
    }
}

/// NaN and infinite queries are refused with an error naming them, as for every other
/// separation, by every call.
fn non_finite_queries_are_refused(device: Device) {
    let patterns = unit_patterns(9, 4, 5);
    let r = retriever(
        &patterns,
        lsr(1.0),
        Similarity::NegEuclidean,
        Dynamics::OneStep,
        device.clone(),
    );
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut queries = noisy_queries(&patterns, 3, 0.1, 6);
        queries[[1, 2]] = bad;
        let label = format!("{device:?} {bad}");
        assert!(
            matches!(r.retrieve(queries.view()), Err(Error::NonFinite { .. })),
            "{label}: retrieve"
        );
        assert!(
            matches!(r.step(queries.view()), Err(Error::NonFinite { .. })),
            "{label}: step"
        );
        assert!(
            matches!(r.energy(queries.view()), Err(Error::NonFinite { .. })),
            "{label}: energy"
        );
    }
}

/// The read-outs built on one update agree with the reference: a key → value memory's
/// values and a clamped retrieval.
fn values_and_clamped_retrieval_match_the_reference(device: Device) {
    let (p, n, m) = (67, 10, 3);
    let patterns = unit_patterns(p, n, 41);
    let values = gaussian(p, m, 1.0, 42);
    let mut queries = noisy_queries(&patterns, 5, 0.3, 43);
    queries.row_mut(4).fill(20.0);
    let build = |device: Device| {
        Retriever::builder(Patterns::new(patterns.clone()).expect("patterns"))
            .similarity(Similarity::NegEuclidean)
            .separation(lsr(3.0))
            .dynamics(Dynamics::Iterate {
                max_steps: 4,
                tol: 1e-3,
            })
            .values(values.clone())
            .device(device)
            .build()
            .expect("retriever")
    };
    let (fast, reference) = (build(device.clone()), build(Device::Reference));
    let label = format!("{device:?}");
    let expected = reference
        .retrieve_values(queries.view())
        .expect("ref values");
    STATE_TOL
        .compare(
            fast.retrieve_values(queries.view())
                .expect("values")
                .iter()
                .copied(),
            expected.iter().copied(),
        )
        .unwrap_or_else(|m| panic!("{label}: values: {m:?}"));
    // An empty support reads out zero.
    assert_eq!(expected.row(4).to_vec(), vec![0.0; m], "{label}");
    let clamp = Clamp::fixing(n, &[0, 3, 7]).expect("clamp");
    assert_matches(
        &format!("{label} clamped"),
        &fast
            .retrieve_clamped(queries.view(), &clamp)
            .expect("clamped"),
        &reference
            .retrieve_clamped(queries.view(), &clamp)
            .expect("ref clamped"),
    );
}

test_devices!(
    all: one_update_is_the_centroid_of_the_support,
    an_empty_support_is_an_infinite_energy_and_no_match,
    on_the_sphere_it_is_the_spherical_form,
    a_pattern_on_the_boundary_is_outside,
    a_large_beta_keeps_only_the_nearest_patterns,
    non_finite_queries_are_refused,
);
test_devices!(
    fast: matches_the_reference,
    values_and_clamped_retrieval_match_the_reference,
);

/// wgpu with the patterns over several dispatches (more rows than one dispatch covers) and
/// over several storage bindings (bindings capped at 16 KiB, which also slices the batch),
/// and with f16 storage, against the reference.
#[test]
fn wgpu_splits_patterns_and_stores_halves() {
    let cases = [
        // P beyond one dispatch of the retrieval kernels (16,384 rows), default bindings.
        (20_003, 5, 9, None, Storage::F32),
        // 3,001 rows of 32 bytes over 16 KiB bindings: 6 pattern buffers; one query's row
        // of 3,001 similarities fits one binding, so the batch runs a few queries at a time.
        (3_001, 8, 6, Some(16 << 10), Storage::F32),
        // Halves, ragged N (rows padded to whole words).
        (513, 13, 10, None, Storage::F16),
        (3_001, 8, 6, Some(16 << 10), Storage::F16),
    ];
    for (p, n, b, binding, storage) in cases {
        let patterns = unit_patterns(p, n, 51);
        let mut queries = noisy_queries(&patterns, b, 0.3, 52);
        queries.row_mut(b - 1).fill(25.0);
        let options = WgpuOptions {
            max_binding_bytes: binding,
            ..WgpuOptions::default()
        };
        for similarity in [Similarity::NegEuclidean, Similarity::NegManhattan] {
            let beta = match similarity {
                Similarity::NegEuclidean => 3.0,
                _ => 12.0 / n as f32,
            };
            let label = format!("P={p} N={n} B={b} binding={binding:?} {storage:?} {similarity:?}");
            let build = |device: Device| {
                Retriever::builder(Patterns::new(patterns.clone()).expect("patterns"))
                    .similarity(similarity)
                    .separation(lsr(beta))
                    .dynamics(Dynamics::Iterate {
                        max_steps: 3,
                        tol: 1e-3,
                    })
                    .storage(storage)
                    .energy_trace(true)
                    .device(device)
                    .build()
                    .expect("retriever")
            };
            let reference = build(Device::Reference);
            let wgpu = build(gpu_with(options.clone()));
            let expected = reference.retrieve(queries.view()).expect("ref");
            let got = wgpu.retrieve(queries.view()).expect("wgpu");
            let (ds, de) = assert_matches(&label, &got, &expected);
            println!("{label}: state diff/scale {ds:.3e}, energy diff/scale {de:.3e}");
            assert_eq!(got.matched, expected.matched, "{label}");
            assert_eq!(expected.matched[b - 1], None, "{label}");
            assert!(expected.matched[0].is_some(), "{label}");
            compare_energies(
                &label,
                &wgpu.energy(queries.view()).expect("energy"),
                &reference.energy(queries.view()).expect("ref energy"),
            );
        }
    }
}

/// Where one query's row of similarities does not fit one storage binding, wgpu says so
/// (the separation needs the whole row) rather than guessing.
#[test]
fn wgpu_refuses_a_row_beyond_one_binding() {
    let patterns = unit_patterns(5_000, 4, 61);
    let options = WgpuOptions {
        max_binding_bytes: Some(16 << 10),
        ..WgpuOptions::default()
    };
    let r = retriever(
        &patterns,
        lsr(1.0),
        Similarity::NegEuclidean,
        Dynamics::OneStep,
        gpu_with(options),
    );
    let queries = noisy_queries(&patterns, 2, 0.1, 62);
    let err = r.retrieve(queries.view());
    assert!(
        matches!(err, Err(Error::TooLarge { .. })),
        "{:?}",
        err.map(|_| ())
    );
}

#[test]
fn names_parse_and_bad_settings_are_clear_errors() {
    assert_eq!(Separation::parse("lsr", 2.0).expect("lsr"), lsr(2.0));
    assert_eq!(
        Separation::parse("log-sum-relu:0.01", 2.0).expect("lsr:eps"),
        Separation::LogSumRelu {
            beta: 2.0,
            eps: 0.01
        }
    );
    for s in [
        lsr(2.0),
        Separation::LogSumRelu {
            beta: 1.0,
            eps: 0.5,
        },
    ] {
        let beta = match s {
            Separation::LogSumRelu { beta, .. } => beta,
            _ => unreachable!(),
        };
        assert_eq!(Separation::parse(&s.name(), beta).expect("round trip"), s);
    }
    assert!(Separation::parse("lsr:x", 1.0).is_err());
    let patterns = unit_patterns(5, 4, 1);
    let build = |similarity, separation| {
        Retriever::builder(Patterns::new(patterns.clone()).expect("patterns"))
            .similarity(similarity)
            .separation(separation)
            .device(Device::Cpu)
            .build()
    };
    let Err(err) = build(Similarity::Dot, lsr(1.0)) else {
        panic!("dot similarity is refused");
    };
    assert!(err.to_string().contains("euclidean"), "{err}");
    for bad in [
        lsr(0.0),
        lsr(f32::NAN),
        Separation::LogSumRelu {
            beta: 1.0,
            eps: -1.0,
        },
    ] {
        assert!(
            matches!(
                build(Similarity::NegEuclidean, bad),
                Err(Error::InvalidParameter { .. })
            ),
            "{bad:?}"
        );
    }
}

/// A saved log-sum-ReLU memory loads with the same rule.
#[test]
fn saving_keeps_the_rule() {
    let patterns = unit_patterns(7, 5, 2);
    let rule = Separation::LogSumRelu {
        beta: 0.75,
        eps: 0.125,
    };
    let r = retriever(
        &patterns,
        rule,
        Similarity::NegEuclidean,
        Dynamics::OneStep,
        Device::Reference,
    );
    let dir = std::env::temp_dir().join(format!("dam-lsr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("lsr.safetensors");
    r.save_file(&path).expect("save");
    let loaded = Retriever::load_file(&path, &Device::Reference).expect("load");
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert_eq!(loaded.config().separation, rule);
    assert_eq!(loaded.config().similarity, Similarity::NegEuclidean);
}
