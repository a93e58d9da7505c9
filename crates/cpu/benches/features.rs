//! Criterion bench: the random-feature memory (DrDAM), reference
//! (`dam_cpu::reference::features`, f64, one row at a time) against the fast path
//! (`dam_cpu::features`), at the sizes of the NumPy peer `benches/peers/numpy_features.py`:
//! N = 64, Y = 4,096 features (2,048 Fourier frequencies, 4,096 positive ones), β = 1;
//! `sum`: T = Σ φ(ξ) over P = 10,000 patterns; `grad`: s = φ(x)·T and ∇s of B = 64 states.
//! Run: `cargo bench -p dam-cpu --bench features` (a filter, e.g. `-- fast`, narrows it;
//! the reference takes seconds per call).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dam_core::features::{FeatureKind, FeatureSpec};
use dam_cpu::{features as fast, reference::features as reference};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DIM: usize = 64;
const FEATURES: usize = 4096;
const PATTERNS: usize = 10_000;
const STATES: usize = 64;

/// Rows of norm about 1 (uniform entries of variance 1/N; the peer draws N(0, 1/N)).
fn rows(rng: &mut StdRng, count: usize) -> Vec<f32> {
    let half_width = (3.0 / DIM as f32).sqrt();
    (0..count * DIM)
        .map(|_| rng.random_range(-half_width..half_width))
        .collect()
}

fn features(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(0);
    let patterns = rows(&mut rng, PATTERNS);
    let states = rows(&mut rng, STATES);
    let mut group = c.benchmark_group("features");
    group.sample_size(10);
    for (name, kind) in [
        ("fourier", FeatureKind::Fourier),
        ("positive", FeatureKind::PositiveExp),
    ] {
        let spec = FeatureSpec {
            kind,
            dim: DIM,
            features: FEATURES,
            beta: 1.0,
            seed: 1,
        };
        let omega = spec.omega();
        let t = fast::feature_sum(&spec, &omega, &patterns);
        let id = format!("{name}/sum P={PATTERNS} N={DIM} Y={FEATURES}");
        group.bench_function(BenchmarkId::new("fast", &id), |b| {
            b.iter(|| fast::feature_sum(&spec, &omega, &patterns))
        });
        group.bench_function(BenchmarkId::new("reference", &id), |b| {
            b.iter(|| reference::feature_sum(&spec, &omega, &patterns))
        });
        let id = format!("{name}/grad B={STATES} N={DIM} Y={FEATURES}");
        group.bench_function(BenchmarkId::new("fast", &id), |b| {
            b.iter(|| fast::values_and_grads(&spec, &omega, &t, &states))
        });
        group.bench_function(BenchmarkId::new("reference", &id), |b| {
            b.iter(|| {
                states
                    .chunks_exact(DIM)
                    .map(|x| reference::value_and_grad(&spec, &omega, &t, x))
                    .collect::<Vec<_>>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, features);
criterion_main!(benches);
