//! Theory reproductions that take a few seconds in release mode and minutes in debug:
//! `#[ignore]`d here, run by CI as `cargo test --release -p dam-experiments -- --ignored`.

use dam::procedural::{PatternKind, Procedural, StreamRequest};
use dam::Device;
use dam_experiments::theory::spherical_alpha_finite;
use dam_experiments::{Criterion, DynamicsArg, Energy, QueryKind, Sweep};

#[test]
#[ignore = "release-mode theory check (THEORY.md §2); run with --release -- --ignored"]
fn gaussian_free_energy_matches_the_random_energy_model() {
    // N = 40, α = 0.4 (P = e^16), λ = 0.4 < √(2α): f = α + λ²/2 = 0.48 (sim 0.4800 ± 0.0001).
    let (n, alpha, lambda) = (40usize, 0.4f64, 0.4f32);
    let p = (alpha * n as f64).exp().round() as u64;
    // A fixed state of norm √N: a spherical vector of another run.
    let x = Procedural {
        kind: PatternKind::Spherical,
        dim: n,
        count: 1,
        seed: 1234,
    }
    .pattern(0);
    let seeds = [7u64, 8];
    let queries: Vec<f32> = seeds.iter().flat_map(|_| x.clone()).collect();
    let request = StreamRequest {
        kind: PatternKind::Gaussian,
        dim: n,
        start: 0,
        end: p,
        beta: lambda,
        queries: &queries,
        seeds: &seeds,
    };
    for st in dam::cpu::procedural::stream_dot(&request) {
        let f = st.lse() / n as f64;
        println!("P = {p}: f = {f:.5}");
        assert!((f - 0.48).abs() < 0.003, "f = {f}");
    }
}

#[test]
#[ignore = "release-mode theory check (THEORY.md §1); run with --release -- --ignored"]
fn n24_success_drops_across_the_finite_n_threshold() {
    let predicted = spherical_alpha_finite(24, 1.0);
    assert!((predicted - 0.619).abs() < 1e-3);
    let sweep = Sweep {
        kind: PatternKind::Spherical,
        set: dam_experiments::PatternSet::Procedural,
        dim: 24,
        energy: Energy::Lse,
        beta: 1.0,
        degree: 2,
        trials: 16,
        query: QueryKind::Stored,
        dynamics: DynamicsArg::OneStep,
        criterion: Criterion::Weight,
        seed: 11,
        shard: (0, 1),
    };
    let rate = |alpha: f64| {
        let p = (alpha * 24.0).exp().round() as u64;
        sweep
            .run_point(&Device::Cpu, p, |_| {})
            .unwrap()
            .success_rate
    };
    let (below, above) = (rate(predicted - 0.03), rate(predicted + 0.025));
    println!("N = 24: success {below} at α*−0.03, {above} at α*+0.025");
    assert!(below >= 0.9 && above <= 0.1, "{below} {above}");
}
