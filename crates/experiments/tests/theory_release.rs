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

/// Largest rise E[t+1] − E[t] over every query and step, relative to max(1, |E[t]|).
fn largest_relative_rise(energies: &ndarray::Array2<f64>) -> f64 {
    let mut worst = f64::NEG_INFINITY;
    for row in energies.rows() {
        let row = row.to_vec();
        assert!(row.len() >= 2);
        for w in row.windows(2) {
            assert!(w[0].is_finite() && w[1].is_finite(), "{w:?}");
            worst = worst.max((w[1] - w[0]) / w[0].abs().max(1.0));
        }
    }
    worst
}

#[test]
#[ignore = "release-mode theory check (THEORY.md §10); run with --release -- --ignored"]
fn lagrangian_energy_never_rises_over_long_runs_on_every_device() {
    // Models A, B, C on 100 unit-norm digits (N = 784), 8 corrupted queries, fast and slow
    // memory neurons, 600 steps of dt = 0.02 (t = 12): the reference's energy never rises
    // by more than 1e-9 relative, the f32 devices' by more than 1e-5; the devices end within
    // 1e-3 of the reference's states (scaled by the largest |coordinate|).
    use dam::lagrangian::LagrangianSpec;
    use dam_experiments::lagrangian::{problem, LagrangianPatterns, LagrangianRunSpec};
    let models = [
        ("A", LagrangianSpec::model_a(3)),
        ("B", LagrangianSpec::model_b(20.0)),
        ("C", LagrangianSpec::model_c(4)),
    ];
    let mut runs = 0;
    for (name, model) in models {
        for tau_h in [0.0, 0.5] {
            let spec = LagrangianSpec {
                tau_hidden: tau_h,
                dt: 0.02,
                ..model
            };
            let cfg = LagrangianRunSpec {
                spec,
                memories: 100,
                dim: 784,
                patterns: LagrangianPatterns::Mnist,
                steps: 600,
                batch: 8,
                noise: 0.2,
                seed: 5,
            };
            let (memories, queries) = problem(&cfg).unwrap();
            let net = dam::EnergyNetwork::new(memories.clone(), spec).unwrap();
            let reference = net
                .clone()
                .with_device(Device::Reference)
                .run(queries.view(), cfg.steps)
                .unwrap();
            let rise = largest_relative_rise(&reference.1);
            println!("model {name}, τ_h = {tau_h}: reference rise {rise:e}");
            assert!(
                rise <= 1e-9,
                "model {name} τ_h {tau_h}: reference rose {rise:e}"
            );
            let scale = reference.0.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
            for name_d in ["cpu", "wgpu"] {
                let device = Device::parse(name_d).unwrap().0;
                let (states, energies) = net
                    .clone()
                    .with_device(device.clone())
                    .run(queries.view(), cfg.steps)
                    .unwrap();
                let rise = largest_relative_rise(&energies);
                let worst = dam::Tolerance::new(1e-3, 1e-3)
                    .scaled(scale)
                    .compare(states.iter().copied(), reference.0.iter().copied())
                    .unwrap_or_else(|m| panic!("model {name} τ_h {tau_h} {name_d}: {m:?}"));
                println!("  {name_d}: rise {rise:e}, largest state difference {worst:e}");
                assert!(
                    rise <= 1e-5,
                    "model {name} τ_h {tau_h} {name_d}: rose {rise:e}"
                );
            }
            runs += 1;
        }
    }
    assert_eq!(runs, 6);
}

#[test]
#[ignore = "release-mode theory check (THEORY.md §10); run with --release -- --ignored"]
fn lagrangian_fast_memory_gap_is_linear_over_a_decade() {
    // Model B (β = 8) on 30 digits, RK4 with dt = 0.001 to t = 1: the largest distance
    // between the trajectory with memory neurons of time constant τ_h and the effective
    // (τ_h = 0) one halves with τ_h from 0.08 to 0.005 (ratios within 2 ± 0.2).
    use dam::lagrangian::{Integrator, LagrangianSpec};
    use dam_experiments::lagrangian::{problem, LagrangianPatterns, LagrangianRunSpec};
    let base = LagrangianSpec {
        integrator: Integrator::Rk4,
        dt: 0.001,
        ..LagrangianSpec::model_b(8.0)
    };
    let cfg = LagrangianRunSpec {
        spec: base,
        memories: 30,
        dim: 784,
        patterns: LagrangianPatterns::Mnist,
        steps: 1000,
        batch: 4,
        noise: 0.3,
        seed: 9,
    };
    let (memories, queries) = problem(&cfg).unwrap();
    let run = |tau_h: f64| {
        let spec = LagrangianSpec {
            tau_hidden: tau_h,
            ..base
        };
        dam::EnergyNetwork::new(memories.clone(), spec)
            .unwrap()
            .with_device(Device::Reference)
            .run(queries.view(), cfg.steps)
            .unwrap()
            .0
    };
    let effective = run(0.0);
    let gaps: Vec<f64> = [0.08, 0.04, 0.02, 0.01, 0.005]
        .iter()
        .map(|&tau_h| {
            let s = run(tau_h);
            assert_eq!(s.dim(), effective.dim());
            s.iter()
                .zip(effective.iter())
                .map(|(a, b)| (a - b).abs() as f64)
                .fold(0.0, f64::max)
        })
        .collect();
    println!("fast-memory gaps at τ_h = 0.08 … 0.005: {gaps:?}");
    assert!(gaps[0] > 1e-4, "the gap must be measurable: {gaps:?}");
    for w in gaps.windows(2) {
        let ratio = w[0] / w[1];
        assert!((1.8..2.2).contains(&ratio), "gaps {gaps:?}: ratio {ratio}");
    }
}
