//! Reference vs fast `stream_dot` over procedural patterns, B = 64 queries with a seed
//! each: one call generates B·(end − start) patterns (one per query and index), and
//! Criterion's throughput is in those patterns per second. The range is 2²⁰ patterns at
//! N = 24 and 2¹⁸ at N = 100 (the reference takes about a minute per call there).
//!
//! `cargo bench -p dam-cpu --bench procedural` (`-- fast` or `-- reference` for one side,
//! `-- N=24` for one size).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dam_core::procedural::{PatternKind, StreamRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const QUERIES: usize = 64;

fn streams(c: &mut Criterion) {
    let cases = [
        ("spherical", PatternKind::Spherical, 24, 1u64 << 20),
        ("gaussian", PatternKind::Gaussian, 24, 1 << 20),
        ("binary", PatternKind::Binary, 24, 1 << 20),
        ("spherical", PatternKind::Spherical, 100, 1 << 18),
        ("binary", PatternKind::Binary, 100, 1 << 18),
        (
            "correlated",
            PatternKind::Correlated { share: 1 << 23 },
            100,
            1 << 18,
        ),
    ];
    let mut group = c.benchmark_group("procedural");
    group.sample_size(10);
    let mut rng = StdRng::seed_from_u64(5);
    for (name, kind, dim, patterns) in cases {
        group.throughput(Throughput::Elements(QUERIES as u64 * patterns));
        let queries: Vec<f32> = (0..QUERIES * dim)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let seeds: Vec<u64> = (0..QUERIES as u64).map(|q| 1000 + q).collect();
        let request = StreamRequest {
            kind,
            dim,
            start: 0,
            end: patterns,
            beta: 4.0 / (dim as f32).sqrt(),
            queries: &queries,
            seeds: &seeds,
        };
        let id = format!("{name}/N={dim}");
        group.bench_function(BenchmarkId::new("fast", &id), |b| {
            b.iter(|| dam_cpu::procedural::stream_dot(&request))
        });
        group.bench_function(BenchmarkId::new("reference", &id), |b| {
            b.iter(|| dam_cpu::reference::procedural::stream_dot(&request))
        });
    }
    group.finish();
}

criterion_group!(benches, streams);
criterion_main!(benches);
