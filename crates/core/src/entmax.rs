//! α-entmax (Peters, Niculae & Martins 2019) and its energy: the one definition of the
//! sparse separations that the reference, the fast CPU backend and the host path of wgpu
//! use, in f64. wgpu takes the same threshold, weights and energy on the device in f32
//! (its `entmax.wgsl`: bisection on τ, the closed form on the support at α = 2) where a
//! row of scores fits one storage binding, and is tested against this definition.
//!
//! For scores z ∈ R^P and 1 < α ≤ 2,
//!
//! entmax_α(z) = argmax_{p ∈ Δ} pᵀz + H_α(p),  H_α(p) = (1 − Σ_j p_j^α) / (α(α − 1)),
//!
//! the Tsallis entropy (H → the Shannon entropy as α → 1, so entmax → softmax; α = 2 is
//! sparsemax, the Euclidean projection onto the simplex). The solution is
//! p_j = [(α − 1) z_j − τ]_+^{1/(α−1)} with the threshold τ that makes Σ p = 1: found by
//! sorting for α = 2 (exact, the closed form of sparsemax) and otherwise in f64 by
//! bisection, with Newton steps from below where they beat it (Σ p is convex and
//! decreasing in τ, so a Newton step never overshoots). Its value Ψ*_α(z) = pᵀz + H_α(p) is the convex conjugate of −H_α on the
//! simplex, whose gradient is entmax_α(z) (Danskin): the Hopfield energy
//! E(x) = −β⁻¹ Ψ*_α(β s(x)) + ½‖x‖² (Hu et al. 2023; Santos et al. 2024) is then the
//! log-sum-exp energy with the Tsallis entropy in place of Shannon's, the update
//! x ← Ξᵀ entmax_α(β Ξ x) is its concave–convex step and the energy never rises.
//!
//! Both are shift invariant up to the shift (entmax(z + c) = entmax(z),
//! Ψ*(z + c) = Ψ*(z) + c), so the largest score is subtracted first and β·s in the
//! thousands is fine.

/// α of `sparsemax` (the name of entmax at α = 2).
pub const SPARSEMAX_ALPHA: f32 = 2.0;

/// α of a bare `entmax`: 1.5, the usual middle between softmax and sparsemax.
pub const DEFAULT_ALPHA: f32 = 1.5;

/// Whether α is in the domain 1 < α ≤ 2 of the entmax separation.
pub fn valid_alpha(alpha: f32) -> bool {
    alpha > 1.0 && alpha <= 2.0
}

/// entmax_α(z) and Ψ*_α(z) of one row of scores, in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct Entmax {
    /// The weights p = entmax_α(z): non-negative, summing to 1 (up to rounding).
    pub weights: Vec<f64>,
    /// Ψ*_α(z) = pᵀz + H_α(p).
    pub conjugate: f64,
}

/// entmax_α(z) (α = 2: sparsemax) and its value Ψ*_α(z). Scores of −∞ get weight 0; an
/// empty row gives no weights and Ψ* = −∞; NaN anywhere gives NaN weights and Ψ*.
pub fn entmax(alpha: f64, z: &[f64]) -> Entmax {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if z.iter().any(|v| v.is_nan()) || m == f64::INFINITY {
        return Entmax {
            weights: vec![f64::NAN; z.len()],
            conjugate: f64::NAN,
        };
    }
    if m == f64::NEG_INFINITY {
        // Empty, or every score −∞: no weight is defined; spread it evenly.
        let even = 1.0 / z.len() as f64;
        return Entmax {
            weights: vec![even; z.len()],
            conjugate: f64::NEG_INFINITY,
        };
    }
    let a = alpha - 1.0;
    // Shifted scores y = z − max z ≤ 0. The top score alone has p ≤ 1, so τ ≥ −1 and
    // only scores with a·y > −1 can be in the support.
    let y: Vec<f64> = z.iter().map(|&v| v - m).collect();
    let candidates: Vec<usize> = (0..y.len()).filter(|&j| a * y[j] > -1.0).collect();
    let mut weights = vec![0.0; y.len()];
    if alpha == 2.0 {
        let tau = sparsemax_threshold(candidates.iter().map(|&j| y[j]).collect());
        for &j in &candidates {
            weights[j] = (y[j] - tau).max(0.0);
        }
    } else {
        let tau = threshold(a, &candidates, &y);
        let inv = 1.0 / a;
        for &j in &candidates {
            let t = a * y[j] - tau;
            weights[j] = if t > 0.0 { t.powf(inv) } else { 0.0 };
        }
        // Bisection leaves Σ p = 1 only to its last bit of τ, amplified by 1/a.
        let total: f64 = candidates.iter().map(|&j| weights[j]).sum();
        for &j in &candidates {
            weights[j] /= total;
        }
    }
    let mut dot = 0.0;
    let mut power_sum = 0.0;
    for &j in &candidates {
        let p = weights[j];
        if p > 0.0 {
            dot += p * y[j];
            power_sum += if alpha == 2.0 { p * p } else { p.powf(alpha) };
        }
    }
    let entropy = (1.0 - power_sum) / (alpha * a);
    Entmax {
        weights,
        conjugate: m + dot + entropy,
    }
}

/// sparsemax(z): the Euclidean projection of z onto the simplex (entmax at α = 2).
pub fn sparsemax(z: &[f64]) -> Vec<f64> {
    entmax(2.0, z).weights
}

/// The sparsemax threshold τ of shifted scores (max 0), by sorting: with the scores in
/// decreasing order y₍₁₎ ≥ y₍₂₎ ≥ …, the support is the largest k with
/// 1 + k·y₍ₖ₎ > Σ_{i≤k} y₍ᵢ₎ and τ = (Σ_{i≤k} y₍ᵢ₎ − 1)/k. Exact up to the rounding of the
/// sums; ties are all in or all out.
fn sparsemax_threshold(mut y: Vec<f64>) -> f64 {
    y.sort_by(|a, b| b.total_cmp(a));
    let (mut sum, mut k, mut support_sum) = (0.0, 0usize, 0.0);
    for (i, &v) in y.iter().enumerate() {
        sum += v;
        if 1.0 + (i + 1) as f64 * v > sum {
            k = i + 1;
            support_sum = sum;
        }
    }
    // k ≥ 1: the top score (0) always passes, 1 + 0 > 0.
    (support_sum - 1.0) / k.max(1) as f64
}

/// The entmax threshold τ for a = α − 1 ∈ (0, 1): the root of
/// f(τ) = Σ_j [a·y_j − τ]_+^{1/a} − 1 over the candidates (shifted scores, max 0), kept
/// in the bracket [lo, hi] with f(lo) ≥ 0 ≥ f(hi), lo = −1 and hi = −k^{−a} for k
/// candidates. f is convex and decreasing (1/a ≥ 1), so Newton's step from lo stays at or
/// below τ* and is taken when it reaches past the bracket's midpoint; otherwise the
/// midpoint is evaluated and the bracket halved (lo also moves up to the Newton point).
/// Stops when lo no longer rises; returns lo.
fn threshold(a: f64, candidates: &[usize], y: &[f64]) -> f64 {
    let inv = 1.0 / a;
    let eval = |tau: f64| -> (f64, f64) {
        let (mut mass, mut slope) = (0.0f64, 0.0f64);
        for &j in candidates {
            let t = a * y[j] - tau;
            if t > 0.0 {
                let p = t.powf(inv);
                mass += p;
                slope += p / t;
            }
        }
        (mass, slope)
    };
    let mut lo = -1.0f64;
    let mut hi = -(candidates.len() as f64).powf(-a);
    for _ in 0..200 {
        let (mass, slope) = eval(lo);
        // f′(lo) = −slope/a < 0 while the top candidate is inside (lo < 0).
        if mass <= 1.0 || slope <= 0.0 {
            break;
        }
        let newton = lo + (mass - 1.0) * a / slope;
        let mid = 0.5 * (lo + hi);
        if !(newton > lo && mid > lo && mid < hi) {
            break;
        }
        if newton >= mid {
            lo = newton.min(hi);
        } else if eval(mid).0 >= 1.0 {
            lo = mid;
        } else {
            hi = mid;
            lo = newton;
        }
    }
    lo
}

/// The entmax threshold τ for a = α − 1 ∈ (0, 1) by plain bisection (the check of
/// [`threshold`]) on
/// f(τ) = Σ_j [a·y_j − τ]_+^{1/a}, decreasing in τ, over the candidates (shifted scores,
/// max 0): f(−1) ≥ 1 (the top score alone gives 1) and f(−k^{−a}) ≤ 1 for k candidates.
/// Returns the lower end, where f ≥ 1, once the interval stops shrinking.
#[cfg(test)]
fn bisect_threshold(a: f64, candidates: &[usize], y: &[f64]) -> f64 {
    let inv = 1.0 / a;
    let mass = |tau: f64| -> f64 {
        candidates
            .iter()
            .map(|&j| {
                let t = a * y[j] - tau;
                if t > 0.0 {
                    t.powf(inv)
                } else {
                    0.0
                }
            })
            .sum()
    };
    let mut lo = -1.0f64;
    let mut hi = -(candidates.len() as f64).powf(-a);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if mass(mid) >= 1.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The update weights entmax_α(βs) of the similarities `scores` of a state with squared
/// norm `norm_sq`, and its energy E(x) = −β⁻¹ Ψ*_α(βs) + ½‖x‖².
pub fn weights_and_energy(beta: f64, alpha: f64, scores: &[f64], norm_sq: f64) -> (Vec<f64>, f64) {
    let z: Vec<f64> = scores.iter().map(|&s| beta * s).collect();
    let e = entmax(alpha, &z);
    (e.weights, -e.conjugate / beta + 0.5 * norm_sq)
}

/// The entmax energy E(x) = −β⁻¹ Ψ*_α(βs) + ½‖x‖² ([`weights_and_energy`]).
pub fn energy(beta: f64, alpha: f64, scores: &[f64], norm_sq: f64) -> f64 {
    weights_and_energy(beta, alpha, scores, norm_sq).1
}

/// The update weights entmax_α(βs) ([`weights_and_energy`]).
pub fn weights(beta: f64, alpha: f64, scores: &[f64]) -> Vec<f64> {
    weights_and_energy(beta, alpha, scores, 0.0).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparsemax_closed_forms() {
        assert_eq!(sparsemax(&[0.0, -5.0]), vec![1.0, 0.0]);
        assert_eq!(sparsemax(&[1.0, 1.0, 1.0, 1.0]), vec![0.25; 4]);
        // τ = (1 + 0.5 − 1)/2 = 0.25.
        assert_eq!(sparsemax(&[1.0, 0.5, -1.0]), vec![0.75, 0.25, 0.0]);
        let e = entmax(2.0, &[3.0, 3.0]);
        assert_eq!(e.weights, vec![0.5, 0.5]);
        // pᵀz + (1 − Σp²)/2 = 3 + 0.25.
        assert_eq!(e.conjugate, 3.25);
    }

    #[test]
    fn newton_and_bisection_agree() {
        let z = [0.3, -0.2, 0.9, 0.85, -3.0, 0.0, 0.9];
        let y: Vec<f64> = z.iter().map(|v| v - 0.9).collect();
        let all: Vec<usize> = (0..z.len()).collect();
        for alpha in [1.0001, 1.1, 1.5, 1.9, 2.0] {
            let a = alpha - 1.0;
            let fast = threshold(a, &all, &y);
            let bisect = bisect_threshold(a, &all, &y);
            assert!(
                (fast - bisect).abs() < 1e-12,
                "α={alpha}: {fast} vs {bisect}"
            );
        }
    }

    #[test]
    fn bisection_at_alpha_two_is_sparsemax() {
        let z = [0.3, -0.2, 0.9, 0.85, -3.0, 0.0];
        let exact = sparsemax(&z);
        let a = 1.0;
        let y: Vec<f64> = z.iter().map(|v| v - 0.9).collect();
        let all: Vec<usize> = (0..z.len()).collect();
        let tau = bisect_threshold(a, &all, &y);
        for (j, &p) in exact.iter().enumerate() {
            assert!(((y[j] - tau).max(0.0) - p).abs() < 1e-12);
        }
    }
}
