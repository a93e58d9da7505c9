//! The fast paths of one update (`Retriever::step`): the fused multi-threaded CPU path and
//! the wgpu step, each against the plain CPU reference update, on seeded data with edges
//! (several blocks and threads with ragged ends, large β·s, ties, projections, bad input).

mod common;

use common::*;
use dam::cpu::fast::{block_rows, softmax_dot_step};
use dam::{Config, Device, Dynamics, Patterns, Projection, Retriever, Separation, Similarity};
use ndarray::{Array2, ArrayView2};

/// The reference: `dam_cpu::update` one query at a time (f64 sums).
fn reference(config: &Config, patterns: &Patterns, queries: ArrayView2<'_, f32>) -> Array2<f32> {
    let mut out = Array2::zeros(queries.dim());
    for (row, mut o) in queries.rows().into_iter().zip(out.rows_mut()) {
        let next = dam::cpu::update(config, patterns, &row.to_vec());
        assert_eq!(next.len(), o.len());
        o.assign(&ndarray::ArrayView1::from(&next));
    }
    out
}

fn assert_states(label: &str, actual: &Array2<f32>, expected: &Array2<f32>) -> f64 {
    assert_eq!(actual.dim(), expected.dim(), "{label}: shape");
    let scale = expected.iter().fold(1.0f64, |m, v| m.max(v.abs() as f64));
    let tol = STATE_TOL.scaled(scale);
    tol.compare(actual.iter().copied(), expected.iter().copied())
        .unwrap_or_else(|m| panic!("{label}: {m:?} (tolerance {tol:?})"))
}

fn config(beta: f32, projection: Projection) -> Config {
    Config {
        similarity: Similarity::Dot,
        separation: Separation::Softmax { beta },
        dynamics: Dynamics::OneStep,
        projection,
        ..Config::default()
    }
}

#[test]
fn fused_cpu_step_matches_the_reference_across_blocks_and_threads() {
    // N = 700 → 93 patterns per block: P = 1,001 is 10 full blocks and a ragged one.
    let n = 700;
    assert_eq!(block_rows(n), 93);
    let raw = unit_patterns(1001, n, 1);
    let queries = noisy_queries(&raw, 13, 0.3, 2);
    let patterns = Patterns::new(raw).unwrap();
    for beta in [0.5f32, 8.0, 60.0] {
        for projection in [Projection::None, Projection::Sphere, Projection::Sign] {
            let cfg = config(beta, projection);
            let expected = reference(&cfg, &patterns, queries.view());
            for threads in [1, 2, 3, 7, 64] {
                let out = softmax_dot_step(&patterns, queries.view(), beta, projection, threads);
                let label = format!("β={beta} {projection:?} threads={threads}");
                assert_states(&label, &out.states, &expected);
                assert_eq!(out.lse.len(), 13);
                for (q, row) in queries.rows().into_iter().enumerate() {
                    let s = dam::cpu::scores(Similarity::Dot, &patterns, &row.to_vec());
                    assert_eq!(out.nearest[q], dam::cpu::argmax(&s), "{label}: nearest");
                    let z: Vec<f64> = s.iter().map(|v| beta as f64 * v).collect();
                    let lse = dam::cpu::log_sum_exp(&z);
                    assert!(
                        (out.lse[q] - lse).abs() <= 1e-4 * lse.abs().max(1.0),
                        "{label}: lse {} vs {lse}",
                        out.lse[q]
                    );
                }
            }
        }
    }
}

#[test]
fn fused_cpu_step_splits_large_batches() {
    // 2,500 queries: passes of 1,024, 1,024 and 452.
    let raw = unit_patterns(700, 24, 9);
    let queries = noisy_queries(&raw, 2_500, 0.3, 10);
    let patterns = Patterns::new(raw).unwrap();
    let cfg = config(6.0, Projection::None);
    let expected = reference(&cfg, &patterns, queries.view());
    let out = softmax_dot_step(&patterns, queries.view(), 6.0, Projection::None, 2);
    assert_eq!(out.lse.len(), 2_500);
    assert_eq!(out.nearest.len(), 2_500);
    assert_states("2,500 queries", &out.states, &expected);
}

#[test]
fn fused_cpu_step_survives_large_beta_and_ties() {
    // β·s ≈ 5,000: e^{β s} overflows f32 and f64 without the running max.
    let mut raw = unit_patterns(300, 16, 3);
    raw.mapv_inplace(|v| v * 10.0);
    // Ties: pattern 250 duplicates pattern 7 (different blocks and threads); nearest is 7.
    let dup = raw.row(7).to_owned();
    raw.row_mut(250).assign(&dup);
    let queries = noisy_queries(&raw, 9, 0.05, 4);
    let patterns = Patterns::new(raw).unwrap();
    let cfg = config(50.0, Projection::None);
    let expected = reference(&cfg, &patterns, queries.view());
    for threads in [1, 4] {
        let out = softmax_dot_step(&patterns, queries.view(), 50.0, Projection::None, threads);
        assert!(out.states.iter().all(|v| v.is_finite()));
        assert!(out.lse.iter().all(|v| v.is_finite() && *v > 1000.0));
        assert_states(
            &format!("large β, threads={threads}"),
            &out.states,
            &expected,
        );
        assert_eq!(out.nearest[7], 7, "ties go to the lowest index");
    }
}

#[test]
fn retriever_step_matches_the_reference_on_both_devices() {
    let raw = unit_patterns(20_011, 33, 5);
    let queries = noisy_queries(&raw, 19, 0.3, 6);
    let patterns = Patterns::new(raw).unwrap();
    for (similarity, separation) in [
        (Similarity::Dot, Separation::Softmax { beta: 12.0 }),
        (Similarity::NegEuclidean, Separation::Softmax { beta: 12.0 }),
        (Similarity::Dot, Separation::Polynomial { n: 3 }),
    ] {
        let cfg = Config {
            similarity,
            separation,
            projection: Projection::Sphere,
            ..Config::default()
        };
        let expected = reference(&cfg, &patterns, queries.view());
        for device in [Device::Cpu, gpu(), staged()] {
            let r = Retriever::builder(patterns.clone())
                .config(cfg)
                .device(device.clone())
                .build()
                .unwrap();
            // B = 1, 2, 3 use 1–3 query lanes per workgroup on wgpu, 5 and 19 a ragged tile.
            for b in [1usize, 2, 3, 5, 19] {
                let label = format!("{similarity:?} {separation:?} on {device:?}, B={b}");
                let q = queries.slice(ndarray::s![..b, ..]);
                let want = expected.slice(ndarray::s![..b, ..]).to_owned();
                assert_states(&label, &r.step(q).unwrap(), &want);
            }
        }
    }
}

/// wgpu with pattern tiles staged through workgroup memory (the GPU default; lavapipe
/// defaults to direct row reads).
fn staged() -> Device {
    gpu_with(dam::WgpuOptions {
        stage_patterns: Some(true),
        ..dam::WgpuOptions::default()
    })
}

#[test]
fn staged_and_direct_streaming_kernels_match_the_reference() {
    // N = 130: two full 64-coordinate slices and a ragged one; B = 11: a tile of 8 queries
    // and one of 3; P = 5,003: ragged pattern tiles. Full retrieval (energies, nearest,
    // convergence) for three similarities.
    let raw = unit_patterns(5_003, 130, 13);
    let queries = noisy_queries(&raw, 11, 0.3, 14);
    let patterns = Patterns::new(raw).unwrap();
    let direct = gpu_with(dam::WgpuOptions {
        stage_patterns: Some(false),
        ..dam::WgpuOptions::default()
    });
    for similarity in [
        Similarity::Dot,
        Similarity::NegEuclidean,
        Similarity::NegManhattan,
    ] {
        let cfg = Config {
            similarity,
            separation: Separation::Softmax { beta: 6.0 },
            dynamics: Dynamics::Iterate {
                max_steps: 4,
                tol: 1e-4,
            },
            projection: Projection::Sphere,
            ..Config::default()
        };
        let expected = Retriever::builder(patterns.clone())
            .config(cfg)
            .build()
            .unwrap()
            .retrieve(queries.view())
            .unwrap();
        for device in [staged(), direct.clone()] {
            let r = Retriever::builder(patterns.clone())
                .config(cfg)
                .device(device.clone())
                .build()
                .unwrap();
            let label = format!("{similarity:?} on {device:?}");
            assert_matches(&label, &r.retrieve(queries.view()).unwrap(), &expected);
        }
    }
}

#[test]
fn retriever_step_rejects_bad_queries_on_both_devices() {
    let patterns = Patterns::new(unit_patterns(50, 8, 7)).unwrap();
    for device in [Device::Cpu, gpu()] {
        let r = Retriever::builder(patterns.clone())
            .config(config(1.0, Projection::None))
            .device(device.clone())
            .build()
            .unwrap();
        let mut q = noisy_queries(&unit_patterns(50, 8, 7), 3, 0.1, 8);
        q[[1, 2]] = f32::NAN;
        let err = r.step(q.view()).unwrap_err();
        assert!(
            matches!(err, dam::Error::NonFinite { .. }),
            "{device:?}: {err}"
        );
        let wide = Array2::<f32>::zeros((2, 9));
        let err = r.step(wide.view()).unwrap_err();
        assert!(
            matches!(err, dam::Error::DimensionMismatch { .. }),
            "{device:?}: {err}"
        );
        let empty = Array2::<f32>::zeros((0, 8));
        assert!(r.step(empty.view()).is_err(), "{device:?}: empty batch");
    }
}

#[test]
fn step_timed_reports_device_time_where_the_adapter_has_timestamps() {
    let raw = unit_patterns(30_000, 40, 11);
    let queries = noisy_queries(&raw, 9, 0.3, 12);
    let patterns = Patterns::new(raw).unwrap();
    let cfg = config(4.0, Projection::None);
    let cpu = Retriever::builder(patterns.clone())
        .config(cfg)
        .build()
        .unwrap();
    let (_, none) = cpu.step_timed(queries.view()).unwrap();
    assert_eq!(none, None, "the CPU has no device timer");
    let r = Retriever::builder(patterns)
        .config(cfg)
        .device(gpu())
        .build()
        .unwrap();
    let start = std::time::Instant::now();
    let (states, device_time) = r.step_timed(queries.view()).unwrap();
    let wall = start.elapsed().as_secs_f64();
    let ctx = dam::WgpuContext::shared(&dam::WgpuOptions::default()).unwrap();
    let has = ctx
        .features()
        .contains(dam::wgpu_backend::wgpu::Features::TIMESTAMP_QUERY);
    eprintln!("TIMESTAMP_QUERY: {has}, device {device_time:?} s, wall {wall} s");
    match (has, device_time) {
        (true, Some(t)) => assert!(t > 0.0 && t <= wall, "device {t} s vs wall {wall} s"),
        (false, None) => {}
        (has, got) => panic!("TIMESTAMP_QUERY = {has} but device time {got:?}"),
    }
    let plain = r.step(queries.view()).unwrap();
    assert_eq!(states, plain, "timing does not change the result");
}
