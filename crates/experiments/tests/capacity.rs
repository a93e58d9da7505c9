//! Capacity experiments: cross-device agreement, the exact Beta sampler at small N, and the
//! finite-N threshold of THEORY.md §1.

use dam::procedural::PatternKind;
use dam::Device;
use dam_experiments::output::alpha_half;
use dam_experiments::theory::{beta_sampler_successes, spherical_alpha_finite};
use dam_experiments::{Criterion, DynamicsArg, Energy, QueryKind, Sweep};

/// The wgpu device; a missing adapter fails the test.
fn gpu() -> Device {
    dam::WgpuContext::shared(&dam::WgpuOptions::default()).unwrap_or_else(|e| {
        panic!("GPU tests need a wgpu adapter ({e}); install mesa-vulkan-drivers libvulkan1")
    });
    Device::wgpu()
}

fn sweep(dim: usize, trials: usize, criterion: Criterion) -> Sweep {
    Sweep {
        kind: PatternKind::Spherical,
        set: dam_experiments::PatternSet::Procedural,
        dim,
        energy: Energy::Lse,
        beta: 1.0,
        degree: 2,
        trials,
        query: QueryKind::Stored,
        dynamics: DynamicsArg::OneStep,
        criterion,
        seed: 5,
        shard: (0, 1),
    }
}

fn counts(dim: usize, alphas: &[f64]) -> Vec<u64> {
    alphas
        .iter()
        .map(|a| (a * dim as f64).exp().round() as u64)
        .collect()
}

#[test]
fn same_seed_gives_the_same_successes_on_cpu_and_wgpu() {
    let gpu = gpu();
    for (criterion, query, kind) in [
        (Criterion::Weight, QueryKind::Stored, PatternKind::Spherical),
        (
            Criterion::Nearest,
            QueryKind::Flip(0.2),
            PatternKind::Spherical,
        ),
        (
            Criterion::Overlap(0.9),
            QueryKind::Flip(0.1),
            PatternKind::Gaussian,
        ),
        (Criterion::Exact, QueryKind::Flip(0.1), PatternKind::Binary),
    ] {
        let s = Sweep {
            kind,
            query,
            dynamics: DynamicsArg::Converge(3),
            ..sweep(12, 40, criterion)
        };
        s.validate().unwrap();
        for p in counts(12, &[0.4, 0.55, 0.62, 0.7]) {
            let c = s.run_point(&Device::Cpu, p, |_| {}).unwrap();
            let g = s.run_point(&gpu, p, |_| {}).unwrap();
            assert_eq!(
                (c.trials, c.successes),
                (g.trials, g.successes),
                "{criterion:?} {query:?} {kind:?} P={p}"
            );
            assert!(
                (c.mean_overlap - g.mean_overlap).abs() < 1e-4,
                "{criterion:?} P={p}"
            );
        }
    }
}

#[test]
fn small_n_curve_matches_the_exact_beta_sampler() {
    // N = 12, λ = 1: the weight criterion at x = ξ¹ depends only on the cosines, which the
    // Beta sampler draws exactly. Rates must agree within 4 binomial standard errors.
    let (dim, trials) = (12, 300);
    let s = sweep(dim, trials, Criterion::Weight);
    for (alpha, p) in [0.45, 0.55, 0.6, 0.65, 0.75]
        .into_iter()
        .zip(counts(dim, &[0.45, 0.55, 0.6, 0.65, 0.75]))
    {
        let engine = s.run_point(&Device::Cpu, p, |_| {}).unwrap();
        let exact = beta_sampler_successes(dim, 1.0, p, trials, 99) as f64 / trials as f64;
        let rate = engine.success_rate;
        let pooled = (rate + exact) / 2.0;
        let sigma = (2.0 * pooled * (1.0 - pooled) / trials as f64)
            .sqrt()
            .max(1.0 / trials as f64);
        println!("α={alpha} P={p}: engine {rate:.3}, Beta sampler {exact:.3}");
        assert!(
            (rate - exact).abs() <= 4.0 * sigma + 1e-12,
            "α={alpha}: engine {rate} vs exact {exact} (σ={sigma})"
        );
    }
}

#[test]
fn n16_threshold_is_within_003_of_the_finite_n_prediction_on_both_devices() {
    let alphas: Vec<f64> = (0..11).map(|i| 0.52 + 0.02 * i as f64).collect();
    let predicted = spherical_alpha_finite(16, 1.0);
    for engine in [Device::Cpu, gpu()] {
        let s = sweep(16, 64, Criterion::Weight);
        let points: Vec<_> = counts(16, &alphas)
            .into_iter()
            .map(|p| s.run_point(&engine, p, |_| {}).unwrap())
            .collect();
        let half = alpha_half(&points).expect("the success rate crosses 1/2");
        println!(
            "{:?}: alpha_half = {half:.4}, predicted {predicted:.4}",
            engine.describe()
        );
        assert!((half - predicted).abs() < 0.03, "{half} vs {predicted}");
        // THEORY.md §1 (sim): N = 16 succeeds at α = 0.59 and fails at 0.65.
        let at = |a: f64| {
            points
                .iter()
                .find(|r| (r.alpha - a).abs() < 0.011)
                .unwrap()
                .success_rate
        };
        assert!(
            at(0.56) >= 0.95 && at(0.66) <= 0.05,
            "{} {}",
            at(0.56),
            at(0.66)
        );
    }
}

#[test]
fn binary_spin_sweeps_agree_across_devices() {
    let gpu = gpu();
    for (energy, degree, beta, dynamics) in [
        (Energy::Poly, 3, 1.0, DynamicsArg::OneStep),
        (Energy::Rpoly, 4, 1.0, DynamicsArg::Converge(5)),
        (Energy::Exp, 2, 1.0, DynamicsArg::OneStep),
    ] {
        let s = Sweep {
            kind: PatternKind::Binary,
            set: dam_experiments::PatternSet::Procedural,
            energy,
            degree,
            beta,
            dynamics,
            query: QueryKind::Flip(0.1),
            ..sweep(40, 12, Criterion::Exact)
        };
        s.validate().unwrap();
        for p in [20u64, 200, 2000] {
            let c = s.run_point(&Device::Cpu, p, |_| {}).unwrap();
            let g = s.run_point(&gpu, p, |_| {}).unwrap();
            assert_eq!(
                (c.successes, c.bit_flip_rate),
                (g.successes, g.bit_flip_rate),
                "{energy:?} P={p}"
            );
        }
    }
}
