//! Criterion bench: the exact binary spin dynamics, reference (`dam_cpu::reference::binary`)
//! against the fast path (`dam_cpu::binary`), at the sizes of the README and of the NumPy
//! peer `benches/peers/numpy_spin.py` (same N, P, B, degree; one synchronous step, or
//! asynchronous sweeps from random starts to a fixed point).
//! Run: `cargo bench -p dam-cpu --bench spin` (a filter, e.g. `-- sync`, narrows it).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dam_core::binary::{BinaryPatterns, Clamp, SpinEnergy, SpinUpdate};
use dam_cpu::{binary as fast, reference::binary as reference};

/// B random ±1 starts (the binary procedural patterns of another seed).
fn random_starts(b: usize, n: usize) -> Vec<u32> {
    BinaryPatterns::procedural(b, n, 1_000_003)
        .expect("starts")
        .words()
        .to_vec()
}

/// (group, N, P, B, degree, update, starts): stored patterns as starts for the one-step
/// cases (the capacity workload), random starts for the sweeps (the census workload).
fn cases() -> Vec<(&'static str, usize, usize, usize, u32, SpinUpdate, bool)> {
    let sweeps = SpinUpdate::Async {
        max_sweeps: 100,
        seed: 1,
    };
    let one = SpinUpdate::Sync { max_steps: 1 };
    vec![
        ("sync-1", 100, 500, 100, 3, one, false),
        ("sync-1", 100, 2000, 100, 3, one, false),
        ("sync-1 capacity", 100, 550, 1, 3, one, false),
        ("async", 100, 500, 100, 3, sweeps, true),
        ("async census", 100, 60, 256, 6, sweeps, true),
        ("async census", 70, 20, 256, 3, sweeps, true),
    ]
}

fn spin(c: &mut Criterion) {
    for (name, n, p, b, degree, update, random) in cases() {
        let patterns = BinaryPatterns::procedural(p, n, 7).expect("patterns");
        let queries = if random {
            random_starts(b, n)
        } else {
            patterns.words()[..b * n.div_ceil(32)].to_vec()
        };
        let energy = SpinEnergy::Polynomial { n: degree };
        let clamp = Clamp::none(n);
        let want = reference::run_clamped(
            &patterns,
            energy,
            update,
            &queries,
            &Clamp::none(patterns.dim()),
        )
        .expect("reference");
        let got = fast::run_clamped(
            &patterns,
            energy,
            update,
            &queries,
            &Clamp::none(patterns.dim()),
        )
        .expect("fast");
        assert_eq!(got, want, "{name} N={n} P={p} B={b}");
        let sweeps = want.flips.iter().map(Vec::len).max().unwrap_or(0);
        let mut group = c.benchmark_group(format!(
            "spin {name} N={n} P={p} B={b} n={degree} (≤{sweeps} sweeps/steps)"
        ));
        group.sample_size(10);
        group.bench_function(BenchmarkId::new("reference", ""), |bench| {
            bench.iter(|| {
                reference::run_clamped(
                    &patterns,
                    energy,
                    update,
                    &queries,
                    &Clamp::none(patterns.dim()),
                )
                .expect("run")
            })
        });
        group.bench_function(BenchmarkId::new("fast", "all cores"), |bench| {
            bench.iter(|| {
                fast::run_clamped(
                    &patterns,
                    energy,
                    update,
                    &queries,
                    &Clamp::none(patterns.dim()),
                )
                .expect("run")
            })
        });
        group.bench_function(BenchmarkId::new("fast", "1 thread"), |bench| {
            bench.iter(|| {
                fast::run_clamped_on(&patterns, energy, update, &queries, &clamp, 1).expect("run")
            })
        });
        group.finish();
    }
}

criterion_group!(benches, spin);
criterion_main!(benches);
