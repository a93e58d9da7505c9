//! Procedural patterns: the GPU generates the same patterns as the CPU reference (bits
//! identical for ±1, Gaussian values within `GAUSSIAN_TOL`), and the streaming
//! log-sum-exp agrees across devices.

mod common;

use dam::procedural::{PatternKind, Procedural, StreamRequest};
use dam::{Tolerance, WgpuContext, WgpuOptions};

/// Gaussian / spherical entries: Box–Muller's ln, sqrt, sin, cos differ in the last bits.
const GAUSSIAN_TOL: Tolerance = Tolerance::new(2e-6, 2e-6);
/// Streaming state on the GPU (f32 sums) vs the CPU (f64).
const STREAM_TOL: Tolerance = Tolerance::new(1e-5, 1e-4);

fn ctx() -> std::sync::Arc<WgpuContext> {
    common::gpu();
    WgpuContext::shared(&WgpuOptions::default()).expect("adapter")
}

#[test]
fn wgpu_generates_the_same_patterns_as_the_cpu() {
    let ctx = ctx();
    let mut worst = 0.0f64;
    let mut kinds = vec![
        PatternKind::Binary,
        PatternKind::Gaussian,
        PatternKind::Spherical,
    ];
    for c in [0.0, 0.3, 0.81, 0.99] {
        kinds.push(PatternKind::correlated(c).unwrap());
    }
    for kind in kinds {
        for dim in [1usize, 3, 24, 129] {
            // One pattern per query (different seeds) at indices beyond 2^32 too: with a
            // single pattern in the range, the softmax mean is that pattern.
            for mu in [0u64, 1, 77_777, (1 << 32) + 5, (1 << 40) - 1] {
                let seeds: Vec<u64> = (0..5).map(|s| 1000 * s + 7).collect();
                let queries = vec![0.5f32; seeds.len() * dim];
                let request = StreamRequest {
                    kind,
                    dim,
                    start: mu,
                    end: mu + 1,
                    beta: 1.0,
                    queries: &queries,
                    seeds: &seeds,
                };
                let gpu = dam::wgpu_backend::procedural::stream_dot(&ctx, &request).unwrap();
                assert_eq!(gpu.len(), seeds.len());
                for (q, (st, &seed)) in gpu.iter().zip(&seeds).enumerate() {
                    let expected = Procedural {
                        kind,
                        dim,
                        count: 1 << 40,
                        seed,
                    }
                    .pattern(mu);
                    let got: Vec<f64> = st.mean();
                    assert_eq!(st.best_i, mu, "{kind:?} N={dim} μ={mu}: index");
                    if kind.is_binary() {
                        let exact: Vec<f64> = expected.iter().map(|&v| v as f64).collect();
                        assert_eq!(got, exact, "{kind:?} N={dim} μ={mu} q={q}: bits differ");
                    } else {
                        let d = GAUSSIAN_TOL
                            .compare(got.iter().copied(), expected.iter().copied())
                            .unwrap_or_else(|m| panic!("{kind:?} N={dim} μ={mu} q={q}: {m:?}"));
                        worst = worst.max(d);
                    }
                }
            }
        }
    }
    println!("largest |gpu − cpu| Gaussian/spherical entry: {worst:.3e}");
}

#[test]
fn streaming_lse_agrees_across_devices() {
    let ctx = ctx();
    let (dim, p) = (24usize, 100_003u64);
    let seeds: Vec<u64> = (0..6).collect();
    for kind in [PatternKind::Spherical, PatternKind::Binary] {
        // Query = pattern 0 of its own run (the capacity experiment's start).
        let queries: Vec<f32> = seeds
            .iter()
            .flat_map(|&seed| {
                Procedural {
                    kind,
                    dim,
                    count: p,
                    seed,
                }
                .pattern(0)
            })
            .collect();
        for beta in [0.1f32, 1.0] {
            let request = StreamRequest {
                kind,
                dim,
                start: 0,
                end: p,
                beta,
                queries: &queries,
                seeds: &seeds,
            };
            let cpu = dam::cpu::reference::procedural::stream_dot(&request);
            let gpu = dam::wgpu_backend::procedural::stream_dot(&ctx, &request).unwrap();
            assert_eq!((gpu.len(), cpu.len()), (seeds.len(), seeds.len()));
            for (q, (g, c)) in gpu.iter().zip(&cpu).enumerate() {
                let label = format!("{kind:?} β={beta} q={q}");
                assert_eq!(g.best_i, c.best_i, "{label}: best");
                assert_eq!(c.best_i, 0, "{label}: the query is pattern 0");
                STREAM_TOL
                    .compare([g.lse()], [c.lse()])
                    .unwrap_or_else(|m| panic!("{label}: lse {m:?}"));
                STREAM_TOL
                    .compare(g.mean(), c.mean())
                    .unwrap_or_else(|m| panic!("{label}: mean {m:?}"));
            }
        }
    }
}

/// The log-sum-ReLU statistic through the facade: the CPU devices agree (same support and
/// nearest pattern for ±1 patterns, Σk within `STREAM_TOL`) and carry the log-sum-exp of
/// the same call; wgpu declines it naming the devices to use; bad β and queries that are
/// not B×N are errors naming the argument.
#[test]
fn log_sum_relu_stream_through_the_facade() {
    use dam::procedural::StreamSeparation;
    use dam::{Device, Error};
    let (dim, seeds) = (10usize, [21u64, 22, 23]);
    let mut queries = vec![0.0f32; seeds.len() * dim];
    for (q, row) in queries.chunks_mut(dim).enumerate() {
        Procedural {
            kind: PatternKind::Binary,
            dim,
            count: 1,
            seed: seeds[q],
        }
        .pattern_into(q as u64, row);
    }
    let request = StreamRequest {
        kind: PatternKind::Binary,
        dim,
        start: 0,
        end: 3_000,
        beta: 0.5,
        queries: &queries,
        seeds: &seeds,
    };
    let separation = StreamSeparation::LogSumRelu { beta: 0.34 };
    let cpu = dam::stream_procedural_with(&Device::Cpu, &request, separation).unwrap();
    let reference = dam::stream_procedural_with(&Device::Reference, &request, separation).unwrap();
    let plain = dam::stream_procedural(&Device::Reference, &request).unwrap();
    assert_eq!((cpu.len(), reference.len(), plain.len()), (3, 3, 3));
    for q in 0..seeds.len() {
        let (c, r) = (
            cpu[q].relu.as_ref().unwrap(),
            reference[q].relu.as_ref().unwrap(),
        );
        assert_eq!((c.count, c.nearest_i), (r.count, r.nearest_i), "query {q}");
        assert_eq!(r.nearest_i, q as u64, "query {q} is pattern {q}");
        assert!(
            r.count >= 1 && STREAM_TOL.accepts(c.sum, r.sum),
            "query {q}"
        );
        assert!(
            STREAM_TOL.accepts(reference[q].lse(), plain[q].lse()),
            "query {q}"
        );
        assert_eq!(plain[q].relu, None);
        assert!(r.energy(0.34, 0.0).is_finite());
    }
    let gpu = common::gpu();
    match dam::stream_procedural_with(&gpu, &request, separation) {
        Err(Error::Unsupported { detail, .. }) => assert!(detail.contains("Device::Cpu")),
        other => panic!("wgpu: {other:?}"),
    }
    for beta in [0.0f32, -1.0, f32::NAN] {
        let bad = StreamSeparation::LogSumRelu { beta };
        assert!(matches!(
            dam::stream_procedural_with(&Device::Cpu, &request, bad),
            Err(Error::InvalidParameter { .. })
        ));
    }
    let short = StreamRequest {
        queries: &queries[1..],
        ..request
    };
    assert!(matches!(
        dam::stream_procedural(&Device::Cpu, &short),
        Err(Error::DimensionMismatch { .. })
    ));
}
