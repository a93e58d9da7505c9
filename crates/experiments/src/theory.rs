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
        (PatternKind::Spherical, Energy::Lsr) if weight_from_stored && sweep.beta > 1.0 => json!({
            "alpha_half": lsr_alpha_finite(sweep.dim, sweep.beta),
            "alpha_infinite_n": lsr_alpha_infinite(sweep.beta),
            "source": "exact at T = 0: a trial succeeds when none of the P − 1 other patterns \
                       has φ > 1 − 1/b, so P(success) = (1 − p_N)^{P−1} with p_N the \
                       spherical cap; N → ∞: α = −½ ln(1 − (1 − 1/b)²), ln 2 / 2 at b = 2 + √2",
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

/// The support wall of the spherical log-sum-ReLU with parameter b: a pattern is in the
/// support when φ > 1 − 1/b (the kernel max(0, 1 − b + bφ) is positive).
pub fn lsr_wall(b: f64) -> f64 {
    1.0 - 1.0 / b
}

/// P(φ > t) for φ = x·ξ/N with ξ uniform on the sphere |ξ|² = N and x fixed on it: with
/// φ = cos θ, θ has density ∝ sin^{N−2}θ on [0, π], so
/// P = ∫₀^{arccos t} sin^{N−2}θ dθ / (√π Γ((N−1)/2) / Γ(N/2)); Simpson's rule in θ
/// (relative to the integrand's largest value, so large N does not underflow). N = 1: ½
/// for t in [−1, 1).
pub fn spherical_cap(n: usize, t: f64) -> f64 {
    ln_spherical_cap(n, t).exp()
}

/// ln [`spherical_cap`], finite where the cap itself underflows (large N).
pub fn ln_spherical_cap(n: usize, t: f64) -> f64 {
    if t >= 1.0 {
        return f64::NEG_INFINITY;
    }
    if t < -1.0 {
        return 0.0;
    }
    if n == 1 {
        return -std::f64::consts::LN_2;
    }
    let k = n as f64 - 2.0;
    let top = t.acos();
    let peak = top.min(std::f64::consts::FRAC_PI_2);
    let ln_peak = if k == 0.0 { 0.0 } else { k * peak.sin().ln() };
    let steps = (8 * n).max(4096);
    let h = top / steps as f64;
    let f = |theta: f64| {
        if k == 0.0 {
            1.0
        } else {
            (k * theta.sin().ln() - ln_peak).exp()
        }
    };
    let inner: f64 = (1..steps)
        .map(|i| if i % 2 == 1 { 4.0 } else { 2.0 } * f(i as f64 * h))
        .sum();
    let integral = (f(0.0) + inner + f(top)) * h / 3.0;
    let ln_norm = 0.5 * std::f64::consts::PI.ln() + libm::lgamma((n as f64 - 1.0) / 2.0)
        - libm::lgamma(n as f64 / 2.0);
    (integral.ln() + ln_peak - ln_norm).min(0.0)
}

/// Spherical patterns, log-sum-ReLU with parameter b, T = 0, the target as the query and
/// the criterion "the target is the only pattern in the support": the P − 1 other patterns
/// are independent of the target, each in the support with probability
/// p_N = [`spherical_cap`]`(N, 1 − 1/b)`, so P(success) = (1 − p_N)^{P−1}. Returns
/// that probability.
pub fn lsr_success(n: usize, b: f64, patterns: u64) -> f64 {
    let p = spherical_cap(n, lsr_wall(b));
    (patterns.saturating_sub(1) as f64 * (-p).ln_1p()).exp()
}

/// The load where [`lsr_success`] is ½: P − 1 = ln 2 / (−ln(1 − p_N)); returns ln P / N
/// (in the log domain, so that large N, where p_N underflows, is exact too).
pub fn lsr_alpha_finite(n: usize, b: f64) -> f64 {
    let ln_p = ln_spherical_cap(n, lsr_wall(b));
    // ln(−ln(1 − p)): ln p + ln(1 + p/2 + …), with the series' terms below f64 rounding
    // for p < e⁻⁴⁰.
    let ln_rate = if ln_p < -40.0 {
        ln_p
    } else {
        (-(-ln_p.exp()).ln_1p()).ln()
    };
    // ln P = ln(1 + e^y), y = ln ln 2 − ln_rate.
    let y = std::f64::consts::LN_2.ln() - ln_rate;
    let ln_patterns = if y > 0.0 {
        y + (-y).exp().ln_1p()
    } else {
        y.exp().ln_1p()
    };
    ln_patterns / n as f64
}

/// [`lsr_alpha_finite`] as N → ∞: p_N = e^{−N(−½ ln(1 − t²)) + o(N)} with t = 1 − 1/b
/// (the cap's integrand sin^{N−2}θ peaks at its edge), so α = −½ ln(1 − t²) for
/// t in [0, 1); ln 2 / 2 ≈ 0.3466 at b = 2 + √2 (t = 1/√2).
pub fn lsr_alpha_infinite(b: f64) -> f64 {
    let t = lsr_wall(b).max(0.0);
    -0.5 * (1.0 - t * t).ln()
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

    /// The spherical cap against its closed forms (N = 2: arccos t / π; N = 3: Archimedes,
    /// (1 − t)/2), a Monte Carlo estimate at N = 8, and the log-sum-ReLU thresholds.
    #[test]
    fn spherical_cap_and_lsr_thresholds() {
        for t in [
            -0.9,
            -0.3,
            0.0,
            0.2,
            0.5,
            std::f64::consts::FRAC_1_SQRT_2,
            0.95,
        ] {
            let two = spherical_cap(2, t);
            assert!(
                (two - t.acos() / std::f64::consts::PI).abs() < 1e-12,
                "N=2 t={t}"
            );
            let three = spherical_cap(3, t);
            assert!(
                (three - (1.0 - t) / 2.0).abs() < 1e-12,
                "N=3 t={t}: {three}"
            );
        }
        assert_eq!((spherical_cap(5, 1.0), spherical_cap(5, -2.0)), (0.0, 1.0));
        // Monte Carlo at N = 8: the first coordinate of a uniform direction exceeds 0.5.
        let mut rng = StdRng::seed_from_u64(8);
        let draws = 200_000;
        let hits = (0..draws)
            .filter(|_| {
                let g: Vec<f64> = (0..8)
                    .map(|_| rand_distr::StandardNormal.sample(&mut rng))
                    .collect();
                let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
                g[0] / norm > 0.5
            })
            .count();
        let (mc, cap) = (hits as f64 / draws as f64, spherical_cap(8, 0.5));
        let sd = (cap * (1.0 - cap) / draws as f64).sqrt();
        assert!((mc - cap).abs() < 5.0 * sd, "N=8: {mc} vs {cap}");
        let b = 2.0 + std::f64::consts::SQRT_2;
        assert!((lsr_wall(b) - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-15);
        assert!((lsr_alpha_infinite(b) - std::f64::consts::LN_2 / 2.0).abs() < 1e-12);
        // Finite N approaches ln 2 / 2 from above, slowly (the cap's prefactor).
        let a32 = lsr_alpha_finite(32, b);
        assert!((a32 - 0.3970).abs() < 1e-3, "N=32: {a32}");
        assert!((lsr_success(32, b, (32.0 * a32).exp().round() as u64) - 0.5).abs() < 1e-3);
        let a4000 = lsr_alpha_finite(4000, b);
        assert!(
            a4000 > lsr_alpha_infinite(b) && a4000 < 0.35,
            "N=4000: {a4000}"
        );
    }
}
