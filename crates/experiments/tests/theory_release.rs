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

/// THEORY §9: Metropolis chains on the sphere at T = 0.125, α = 0.01, M = 2·10⁴ (N = 990)
/// settle at the single-pattern overlap φ_eq(T): 0.9395 (LSE), 0.9496 (LSR), ±0.002. The
/// chains start at φ_eq (equilibrium does not depend on the start; from the default
/// φ₀ ∈ [0.75, 1] they need ~12·N steps to settle), eight replicas share one pattern set.
#[test]
#[ignore = "release-mode theory check (THEORY.md §9); run with --release -- --ignored"]
fn metropolis_overlap_matches_the_single_pattern_theory() {
    use dam_experiments::phase::{phi_eq, run, PhaseEnergy, PhaseSize, PhaseSpec};
    for (energy, expected) in [(PhaseEnergy::Lse, 0.9395), (PhaseEnergy::Lsr, 0.9496)] {
        let t = 0.125;
        assert!((phi_eq(energy, t) - expected).abs() < 1e-4);
        let start = (expected * 100.0f64).round() / 100.0;
        let spec = PhaseSpec {
            energy,
            size: PhaseSize::Patterns(20_000),
            alphas: vec![0.01],
            temperatures: vec![t],
            disorders: 1,
            replicas: 8,
            equilibrate: 2048,
            sample: 10_240,
            start_overlap: (start, start),
            seed: 3,
            ..PhaseSpec::default()
        };
        let rows = run(&spec, &Device::Cpu, &[], |_| Ok(())).expect("run");
        assert_eq!(rows.len(), 1);
        let row = rows[0];
        println!("{energy:?}: N = {}, ⟨φ⟩ = {:.4} (theory {expected}), acceptance {:.3}, drift {:+.4}, {:.1} s", row.n, row.phi_mean, row.acceptance, row.drift, row.seconds);
        assert_eq!(row.n, 990);
        assert!(
            (row.phi_mean - expected).abs() <= 0.002,
            "{energy:?}: {row:?}"
        );
        // Far from every other pattern.
        assert!(row.phi_max_other.unwrap() < 0.3, "{row:?}");
    }
}
