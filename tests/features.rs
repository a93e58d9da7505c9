//! Random-feature DAM (DrDAM): the fast CPU path and the wgpu kernels match the f64
//! reference (`Device::Reference`), T is additive (insert/remove, incremental = at once),
//! and the energy error falls like 1/√Y.

mod common;

use common::*;
use dam::features::{FeatureKind, FeatureSpec, RandomFeatures};
use dam::{Device, Tolerance};
use ndarray::{s, Array2};

/// f32 feature sums on the GPU vs f64 in the reference (absolute part scaled by max
/// |value|); the fast CPU path (f32 phases, f64 features and sums) is well within it
/// (`crates/cpu/tests/features_fast.rs` holds it to tighter bounds).
const FEATURE_TOL: Tolerance = Tolerance::new(2e-5, 1e-4);

fn spec(kind: FeatureKind, features: usize, seed: u64) -> FeatureSpec {
    FeatureSpec {
        kind,
        dim: 8,
        features,
        beta: 1.0,
        seed,
    }
}

fn scaled(values: &[f64]) -> Tolerance {
    FEATURE_TOL.scaled(values.iter().fold(0.0f64, |m, v| m.max(v.abs())))
}

#[test]
fn cpu_and_wgpu_match_the_reference() {
    let patterns = unit_patterns(300, 8, 80);
    let queries = noisy_queries(&patterns, 7, 0.2, 81);
    for kind in [FeatureKind::Fourier, FeatureKind::PositiveExp] {
        for features in [2usize, 130, 1024] {
            let sp = spec(kind, features, 5);
            let mut oracle = RandomFeatures::new(sp, &Device::Reference).unwrap();
            oracle.insert(patterns.view()).unwrap();
            for device in [Device::Cpu, gpu()] {
                let mut memory = RandomFeatures::new(sp, &device).unwrap();
                memory.insert(patterns.view()).unwrap();
                let label = format!("{device:?} {kind:?} Y={features}");
                scaled(oracle.weights())
                    .compare(
                        memory.weights().iter().copied(),
                        oracle.weights().iter().copied(),
                    )
                    .unwrap_or_else(|m| panic!("{label}: T {m:?}"));
                if kind == FeatureKind::PositiveExp || features >= 130 {
                    let (want, got) = (
                        oracle.energy(queries.view()).unwrap(),
                        memory.energy(queries.view()).unwrap(),
                    );
                    scaled(&want)
                        .compare(got.iter().copied(), want.iter().copied())
                        .unwrap_or_else(|m| panic!("{label}: E {m:?}"));
                    let (want, got) = (
                        oracle.gradient(queries.view()).unwrap(),
                        memory.gradient(queries.view()).unwrap(),
                    );
                    let wantv: Vec<f64> = want.iter().map(|&v| v as f64).collect();
                    scaled(&wantv)
                        .compare(got.iter().copied(), want.iter().copied())
                        .unwrap_or_else(|m| panic!("{label}: ∇E {m:?}"));
                }
            }
        }
    }
}

#[test]
fn more_rows_than_one_binding_or_dispatch_are_split_and_summed() {
    // 64 KiB bindings: 70,001 patterns (N = 8, 2.2 MB) need 35 calls; 3,000 queries with
    // Y = 1,024 need several; the rows at the block edges must all count.
    let (p, b) = (70_001, 3_000);
    let patterns = unit_patterns(p, 8, 95);
    let queries = noisy_queries(&patterns, b, 0.2, 96);
    let small = gpu_with(dam::WgpuOptions {
        max_binding_bytes: Some(64 << 10),
        ..dam::WgpuOptions::default()
    });
    for kind in [FeatureKind::Fourier, FeatureKind::PositiveExp] {
        let sp = spec(kind, 1024, 11);
        let mut oracle = RandomFeatures::new(sp, &Device::Reference).unwrap();
        oracle.insert(patterns.view()).unwrap();
        let want_e = oracle.energy(queries.view()).unwrap();
        let want_g = oracle.gradient(queries.view()).unwrap();
        let want_gv: Vec<f64> = want_g.iter().map(|&v| v as f64).collect();
        // The fast CPU path splits the same rows and states into blocks and threads.
        for device in [Device::Cpu, small.clone()] {
            let label = format!("{device:?} {kind:?}");
            let mut memory = RandomFeatures::new(sp, &device).unwrap();
            memory.insert(patterns.view()).unwrap();
            assert_eq!(memory.weights().len(), 1024);
            scaled(oracle.weights())
                .compare(
                    memory.weights().iter().copied(),
                    oracle.weights().iter().copied(),
                )
                .unwrap_or_else(|m| panic!("{label}: T {m:?}"));
            let e = memory.energy(queries.view()).unwrap();
            assert_eq!(e.len(), b);
            scaled(&want_e)
                .compare(e.iter().copied(), want_e.iter().copied())
                .unwrap_or_else(|m| panic!("{label}: E {m:?}"));
            let g = memory.gradient(queries.view()).unwrap();
            assert_eq!(g.dim(), want_g.dim());
            scaled(&want_gv)
                .compare(g.iter().copied(), want_g.iter().copied())
                .unwrap_or_else(|m| panic!("{label}: ∇E {m:?}"));
        }
    }
    // A feature row wider than a binding is refused with the sizes, not mis-computed.
    let tiny = gpu_with(dam::WgpuOptions {
        max_binding_bytes: Some(1 << 10),
        ..dam::WgpuOptions::default()
    });
    let mut m = RandomFeatures::new(spec(FeatureKind::Fourier, 1024, 1), &tiny).unwrap();
    let err = m.insert(patterns.slice(s![..10, ..])).unwrap_err();
    assert!(matches!(err, dam::Error::TooLarge { .. }), "{err}");
}

#[test]
fn insert_remove_and_incremental_build_are_consistent() {
    let patterns = unit_patterns(200, 8, 90);
    let extra = unit_patterns(3, 8, 91);
    for device in [Device::Reference, Device::Cpu, gpu()] {
        for kind in [FeatureKind::Fourier, FeatureKind::PositiveExp] {
            let sp = spec(kind, 256, 9);
            let mut at_once = RandomFeatures::new(sp, &device).unwrap();
            at_once.insert(patterns.view()).unwrap();
            let mut incremental = RandomFeatures::new(sp, &device).unwrap();
            incremental.insert(patterns.slice(s![..120, ..])).unwrap();
            incremental.insert(patterns.slice(s![120.., ..])).unwrap();
            let tol = scaled(at_once.weights());
            tol.compare(
                incremental.weights().iter().copied(),
                at_once.weights().iter().copied(),
            )
            .unwrap_or_else(|m| panic!("{device:?} {kind:?}: incremental {m:?}"));
            let before = at_once.weights().to_vec();
            at_once.insert(extra.view()).unwrap();
            at_once.remove(extra.view()).unwrap();
            assert_eq!(at_once.stored(), 200);
            // Within f32 rounding of the removed contribution (it is the same f32 sum).
            Tolerance::new(1e-6, 1e-6)
                .compare(at_once.weights().iter().copied(), before.iter().copied())
                .unwrap_or_else(|m| panic!("{device:?} {kind:?}: insert+remove {m:?}"));
            // The same queries retrieve the same states whichever way T was built.
            let q = noisy_queries(&patterns, 4, 0.3, 92);
            let (a, b) = (
                incremental.retrieve(q.view(), 3, 0.5).unwrap(),
                at_once.retrieve(q.view(), 3, 0.5).unwrap(),
            );
            assert_eq!(a.dim(), b.dim());
            for (x, y) in a.iter().zip(b.iter()) {
                assert!((x - y).abs() < 1e-4, "{device:?} {kind:?}: {x} vs {y}");
            }
        }
    }
}

/// Mean relative energy error against the exact memory, over queries near stored patterns.
fn energy_error(kind: FeatureKind, features: usize, beta: f64, seeds: u64) -> f64 {
    let mut total = 0.0;
    let mut count = 0;
    for seed in 0..seeds {
        let patterns = unit_patterns(50, 8, 200 + seed);
        let queries = noisy_queries(&patterns, 10, 0.1, 300 + seed);
        let sp = FeatureSpec {
            kind,
            dim: 8,
            features,
            beta,
            seed: 400 + seed,
        };
        let mut memory = RandomFeatures::new(sp, &Device::Cpu).unwrap();
        memory.insert(patterns.view()).unwrap();
        let approx = memory.energy(queries.view()).unwrap();
        let flat: Vec<f32> = patterns.iter().copied().collect();
        for (q, e) in queries.rows().into_iter().zip(approx) {
            let (lse, _) = dam::cpu::features::exact_lse_and_grad(beta, &flat, &q.to_vec());
            let exact = -lse / beta;
            total += ((e - exact) / exact).abs();
            count += 1;
        }
    }
    total / count as f64
}

#[test]
fn energy_error_falls_like_one_over_sqrt_y() {
    for kind in [FeatureKind::Fourier, FeatureKind::PositiveExp] {
        let ys = [256usize, 1024, 4096, 16384];
        let errors: Vec<f64> = ys.iter().map(|&y| energy_error(kind, y, 1.0, 4)).collect();
        let lx: Vec<f64> = ys.iter().map(|&y| (y as f64).ln()).collect();
        let ly: Vec<f64> = errors.iter().map(|e| e.ln()).collect();
        let (mx, my) = (lx.iter().sum::<f64>() / 4.0, ly.iter().sum::<f64>() / 4.0);
        let slope = lx
            .iter()
            .zip(&ly)
            .map(|(x, y)| (x - mx) * (y - my))
            .sum::<f64>()
            / lx.iter().map(|x| (x - mx) * (x - mx)).sum::<f64>();
        println!("{kind:?}: errors {errors:?}, log–log slope {slope:.3}");
        assert!((slope + 0.5).abs() <= 0.15, "{kind:?}: slope {slope}");
    }
}

#[test]
fn bad_feature_parameters_are_errors() {
    for (sp, arg) in [
        (
            FeatureSpec {
                kind: FeatureKind::Fourier,
                dim: 8,
                features: 3,
                beta: 1.0,
                seed: 0,
            },
            "features",
        ),
        (
            FeatureSpec {
                kind: FeatureKind::PositiveExp,
                dim: 8,
                features: 0,
                beta: 1.0,
                seed: 0,
            },
            "features",
        ),
        (
            FeatureSpec {
                kind: FeatureKind::PositiveExp,
                dim: 8,
                features: 4,
                beta: -1.0,
                seed: 0,
            },
            "beta",
        ),
    ] {
        match RandomFeatures::new(sp, &Device::Cpu) {
            Err(dam::Error::InvalidParameter { argument, .. }) => assert_eq!(argument, arg),
            other => panic!("{sp:?}: {other:?}"),
        }
    }
    let mut m = RandomFeatures::new(spec(FeatureKind::PositiveExp, 4, 0), &Device::Cpu).unwrap();
    assert!(m.insert(Array2::<f32>::zeros((2, 3)).view()).is_err());
    assert!(m
        .insert(Array2::<f32>::from_elem((1, 8), f32::NAN).view())
        .is_err());
    assert!(m
        .retrieve(Array2::<f32>::zeros((1, 8)).view(), 1, 0.0)
        .is_err());
}
