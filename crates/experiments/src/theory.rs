//! Theory lines (Lucibello & Mézard 2024 for spherical and Gaussian patterns) and the exact
//! Beta sampler used to check the engine at small N.

use dam::procedural::PatternKind;
use rand::rngs::StdRng;
use serde_json::json;

use crate::capacity::{Criterion, Energy, PatternSet, QueryKind, Sweep};
use rand::SeedableRng;
use rand_distr::{Beta, Distribution};

/// The prediction for a sweep, where one is known (`null` otherwise): the finite-N and
/// N → ∞ thresholds α_half with their source, as written into summary.json.
pub fn prediction(sweep: &Sweep) -> serde_json::Value {
    let weight_from_stored =
        sweep.criterion == Criterion::Weight && sweep.query == QueryKind::Stored;
    if !matches!(sweep.set, PatternSet::Procedural) {
        return serde_json::Value::Null;
    }
    match (sweep.kind, sweep.energy) {
        (PatternKind::Spherical, Energy::Lse | Energy::Exp) if weight_from_stored => json!({
            "alpha_half": spherical_alpha_finite(sweep.dim, sweep.beta),
            "alpha_infinite_n": spherical_alpha_infinite(sweep.beta),
            "source": "THEORY.md §1: finite-N annealed threshold P* = e^{λN}/E[e^{λNu}] (Lucibello & Mézard 2024)",
        }),
        (PatternKind::Gaussian, Energy::Lse | Energy::Exp) => json!({
            "alpha_half": gaussian_alpha(sweep.beta),
            "alpha_infinite_n": gaussian_alpha(sweep.beta),
            "source": "THEORY.md §2: α₁ = λ(1 − λ/2) for λ ≤ 1, 1/2 above (N → ∞)",
        }),
        _ => serde_json::Value::Null,
    }
}

/// Spherical patterns, LSE energy, N → ∞: α₁(λ) = λ − ½ ln(1 − φ²) − λφ with
/// φ = (√(1 + 4λ²) − 1) / (2λ) (Lucibello & Mézard 2024).
pub fn spherical_alpha_infinite(lambda: f64) -> f64 {
    let phi = ((1.0 + 4.0 * lambda * lambda).sqrt() - 1.0) / (2.0 * lambda);
    lambda - 0.5 * (1.0 - phi * phi).ln() - lambda * phi
}

/// ln I_ν(t), the modified Bessel function of the first kind, by its power series summed
/// in the log domain (ν ≥ 0, t > 0).
pub fn ln_bessel_i(nu: f64, t: f64) -> f64 {
    let half = (t / 2.0).ln();
    let term = |k: f64| (2.0 * k + nu) * half - libm::lgamma(k + 1.0) - libm::lgamma(k + nu + 1.0);
    // Terms rise to a peak near k ≈ t/2, then fall faster than geometrically.
    let mut terms = Vec::new();
    let mut k = 0.0;
    let mut peak = f64::NEG_INFINITY;
    loop {
        let v = term(k);
        peak = peak.max(v);
        terms.push(v);
        if k > t && v < peak - 50.0 {
            break;
        }
        k += 1.0;
    }
    dam::weights::log_sum_exp(&terms)
}

/// Spherical patterns, LSE energy, finite N (annealed): P* = e^{λN} / E[e^{λN u}] with
/// E[e^{tu}] = Γ(N/2) (2/t)^{N/2−1} I_{N/2−1}(t); returns α* = ln P* / N.
pub fn spherical_alpha_finite(n: usize, lambda: f64) -> f64 {
    let nf = n as f64;
    let t = lambda * nf;
    let nu = nf / 2.0 - 1.0;
    let ln_mgf = libm::lgamma(nf / 2.0) + nu * (2.0 / t).ln() + ln_bessel_i(nu, t);
    (t - ln_mgf) / nf
}

/// Gaussian patterns, LSE energy: α₁ = λ(1 − λ/2) for λ ≤ 1, ½ for λ ≥ 1.
pub fn gaussian_alpha(lambda: f64) -> f64 {
    if lambda <= 1.0 {
        lambda * (1.0 - lambda / 2.0)
    } else {
        0.5
    }
}

/// The exact success probability estimate for spherical patterns at x = ξ¹ with the
/// weight criterion: the cosines u_μ (μ ≥ 2) are 2B − 1 with B ~ Beta((N−1)/2, (N−1)/2),
/// and a trial succeeds when Σ_{μ≥2} e^{λN(u_μ − 1)} ≤ 1 (w₁ ≥ ½). Returns successes.
pub fn beta_sampler_successes(
    n: usize,
    lambda: f64,
    patterns: u64,
    trials: usize,
    seed: u64,
) -> usize {
    let a = (n as f64 - 1.0) / 2.0;
    let beta = Beta::new(a, a).expect("valid Beta parameters");
    let mut rng = StdRng::seed_from_u64(seed);
    let scale = lambda * n as f64;
    (0..trials)
        .filter(|_| {
            let mut s = 0.0;
            for _ in 1..patterns {
                let u = 2.0 * beta.sample(&mut rng) - 1.0;
                s += (scale * (u - 1.0)).exp();
                if s > 1.0 {
                    return false;
                }
            }
            true
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproduces_the_published_thresholds() {
        for (lambda, expected) in [(1.0, 0.6226), (0.5, 0.3870), (0.2, 0.1804), (2.0, 0.9088)] {
            let a = spherical_alpha_infinite(lambda);
            assert!((a - expected).abs() < 5e-4, "λ={lambda}: {a}");
        }
        let a24 = spherical_alpha_finite(24, 1.0);
        assert!((a24 - 0.619).abs() < 1e-3, "N=24: {a24}");
        assert!(((24.0 * a24).exp() / 2.85e6 - 1.0).abs() < 0.02);
        let a40 = spherical_alpha_finite(40, 0.5);
        assert!((a40 - 0.387).abs() < 1e-3, "N=40: {a40}");
        assert!(((40.0 * a40).exp() / 5.2e6 - 1.0).abs() < 0.03);
        // I_0(1) = 1.2660658777520082
        assert!((ln_bessel_i(0.0, 1.0) - 1.266_065_877_752_008_2f64.ln()).abs() < 1e-12);
        assert_eq!(gaussian_alpha(0.5), 0.375);
    }
}
