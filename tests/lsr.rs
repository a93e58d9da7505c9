//! The log-sum-ReLU separation: its definition (support centroids, spherical form, empty
//! support), energy descent, and the fast CPU backend against the reference.

mod common;

use common::{assert_matches, gaussian, gpu, noisy_queries, unit_patterns};
use dam::{
    Device, Dynamics, Error, Patterns, Projection, Retriever, Separation, Similarity, Tolerance,
};
use ndarray::{array, Array2};

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
#[test]
fn one_update_is_the_centroid_of_the_support() {
    // Three patterns on a line; with β = 0.5 the support is d² < 4 (d < 2).
    let patterns = array![[0.0f32, 0.0], [1.5, 0.0], [10.0, 0.0]];
    let query = array![[0.5f32, 0.0]];
    for device in [Device::Reference, Device::Cpu] {
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
}

/// A state with no pattern in reach has infinite energy, stays where it is and matches
/// nothing; with ε > 0 its energy is finite.
#[test]
fn an_empty_support_is_an_infinite_energy_and_no_match() {
    let patterns = array![[0.0f32, 0.0], [1.0, 0.0]];
    let queries = array![[50.0f32, 50.0], [0.2, 0.1]];
    for device in [Device::Reference, Device::Cpu] {
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
    }
}

/// On the sphere |x|² = N with β = b/N, the energy is the spherical form
/// −(N/b) log Σ max(0, 1 − b + bφ), φ = x·ξ/N.
#[test]
fn on_the_sphere_it_is_the_spherical_form() {
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
    for device in [Device::Reference, Device::Cpu] {
        let r = retriever(
            &patterns,
            lsr(beta),
            Similarity::NegEuclidean,
            Dynamics::OneStep,
            device.clone(),
        );
        let energies = r.energy(queries.view()).expect("energy");
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

/// The fast CPU backend against the reference: ragged sizes, both distances, one step
/// and iteration, every projection, and some states with an empty support.
#[test]
fn fast_cpu_matches_the_reference() {
    for (p, n, b) in [(1, 3, 1), (257, 19, 7), (2_000, 64, 33)] {
        let patterns = unit_patterns(p, n, 21);
        let mut queries = noisy_queries(&patterns, b, 0.3, 22);
        // The last query is far from everything.
        queries.row_mut(b - 1).fill(30.0);
        for similarity in [Similarity::NegEuclidean, Similarity::NegManhattan] {
            for dynamics in common::DYNAMICS {
                for projection in [Projection::None, Projection::Sphere] {
                    let label =
                        format!("P={p} N={n} B={b} {similarity:?} {dynamics:?} {projection:?}");
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
                    let reference = build(Device::Reference)
                        .retrieve(queries.view())
                        .expect("ref");
                    let fast = build(Device::Cpu).retrieve(queries.view()).expect("fast");
                    assert_matches(&label, &fast, &reference);
                    assert_eq!(fast.matched, reference.matched, "{label}");
                    assert_eq!(reference.matched[b - 1], None, "{label}");
                    // (The sphere projection scales states to norm √N, away from these
                    // unit-norm patterns.)
                    if b > 1 && projection == Projection::None {
                        assert!(reference.matched[0].is_some(), "{label}");
                    }
                }
            }
        }
    }
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

/// wgpu declines the separation with a clear error rather than a wrong number.
#[test]
fn wgpu_declines_clearly() {
    let patterns = unit_patterns(5, 4, 1);
    let err = Retriever::builder(Patterns::new(patterns).expect("patterns"))
        .similarity(Similarity::NegEuclidean)
        .separation(lsr(1.0))
        .device(gpu())
        .build();
    let Err(err) = err else {
        panic!("wgpu must decline log-sum-ReLU");
    };
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
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
