//! The update weights of each separation function, from the similarities: the one
//! definition the CPU reference's update and every host-side weighted sum (values of a
//! key → value memory) use.

use crate::Separation;

/// log Σ e^{v}, with the max subtracted (−∞ for no values or all −∞).
pub fn log_sum_exp(values: &[f64]) -> f64 {
    let m = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    OnlineLse {
        m,
        l: values.iter().map(|v| (v - m).exp()).sum::<f64>(),
    }
    .lse()
}

/// xⁿ for a non-negative integer power: the one integer power of the separations, the
/// spin energies and the classifier. The small degrees are written out (the same products,
/// in the same order, as `powi`'s binary method, so the same bits), the others call `powi`.
#[inline(always)]
pub fn power(x: f64, n: u32) -> f64 {
    match n {
        0 => 1.0,
        1 => x,
        2 => x * x,
        3 => x * x * x,
        4 => {
            let y = x * x;
            y * y
        }
        _ => x.powi(n as i32),
    }
}

/// The polynomial separation F(x) = xⁿ, or max(x, 0)ⁿ when rectified, and its derivative:
/// one definition for the retrieval separations, the spin energies and the classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolyF {
    /// The degree n.
    pub degree: u32,
    /// F = max(x, 0)ⁿ.
    pub rectified: bool,
}

impl PolyF {
    /// F(x).
    #[inline(always)]
    pub fn f(self, x: f64) -> f64 {
        power(if self.rectified { x.max(0.0) } else { x }, self.degree)
    }

    /// F′(x) = n xⁿ⁻¹ (0 at and below zero when rectified).
    #[inline(always)]
    pub fn f_prime(self, x: f64) -> f64 {
        if self.rectified && x <= 0.0 {
            0.0
        } else {
            self.degree as f64 * power(x, self.degree.saturating_sub(1))
        }
    }
}

/// Index of the largest score; ties resolve to the lowest index (the nearest pattern).
pub fn argmax(scores: &[f64]) -> usize {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best
}

/// E(x) = −Σ_μ F(s_μ) from the scores s_μ(x) of a state x (the log-sum-exp energy adds
/// ½‖x‖²), in f64.
pub fn energy(separation: Separation, scores: &[f64], x: &[f32]) -> f64 {
    match separation {
        Separation::Polynomial { n } | Separation::RectifiedPolynomial { n } => {
            let f = PolyF {
                degree: n,
                rectified: matches!(separation, Separation::RectifiedPolynomial { .. }),
            };
            -scores.iter().map(|&s| f.f(s)).sum::<f64>()
        }
        Separation::Exponential { beta } => {
            let scaled: Vec<f64> = scores.iter().map(|s| beta as f64 * s).collect();
            -log_sum_exp(&scaled).exp()
        }
        Separation::Softmax { beta } => {
            let beta = beta as f64;
            let scaled: Vec<f64> = scores.iter().map(|s| beta * s).collect();
            let half_norm: f64 = 0.5 * x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
            -log_sum_exp(&scaled) / beta + half_norm
        }
        Separation::Max => -scores[argmax(scores)],
        Separation::TopK { k } => {
            -top_k(scores, k).iter().map(|&i| scores[i]).sum::<f64>() / k as f64
        }
        Separation::LogSumRelu { beta, eps } => {
            let sum: f64 = scores.iter().map(|&s| relu_kernel(beta as f64, s)).sum();
            log_sum_relu_energy(beta as f64, eps as f64, sum)
        }
        Separation::Entmax { beta, alpha } => {
            let norm_sq: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
            crate::entmax::energy(beta as f64, alpha as f64, scores, norm_sq)
        }
    }
}

/// The log-sum-ReLU kernel max(0, 1 − (β/2)d²) of a distance similarity s = −d
/// ([`relu_kernel_sq`] of d² = s²).
pub fn relu_kernel(beta: f64, s: f64) -> f64 {
    relu_kernel_sq(beta, s * s)
}

/// The log-sum-ReLU kernel max(0, 1 − (β/2)d²) from the squared distance d²: the one
/// definition behind [`relu_kernel`] and the procedural stream's log-sum-ReLU statistic.
/// A pattern is in the support when the kernel is > 0, i.e. d² < 2/β (a pattern exactly
/// at the wall has kernel 0 and is outside).
pub fn relu_kernel_sq(beta: f64, d2: f64) -> f64 {
    (1.0 - 0.5 * beta * d2).max(0.0)
}

/// E = −β⁻¹ log(Σ + ε) from Σ = Σ_μ max(0, 1 − (β/2)d_μ²): +∞ for an empty support with
/// ε = 0, never NaN.
pub fn log_sum_relu_energy(beta: f64, eps: f64, sum: f64) -> f64 {
    let total = sum + eps;
    if total > 0.0 {
        -total.ln() / beta
    } else {
        f64::INFINITY
    }
}

/// The running state of a log-sum-exp over a stream of values z (the online softmax):
/// `m`, the reference point (the largest z so far; −∞ while empty), and `l` = Σ e^{z−m}.
/// Sums a caller keeps relative to the same reference (Σ e^{z−m} ξ, Σ e^{2(z−m)}) are
/// multiplied by the factors that [`OnlineLse::raise`] and [`OnlineLse::merge`] return —
/// the one definition of the rescaling every online softmax here uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OnlineLse {
    /// The reference point.
    pub m: f64,
    /// Σ e^{z−m}.
    pub l: f64,
}

impl Default for OnlineLse {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl OnlineLse {
    /// The state of no values.
    pub const EMPTY: OnlineLse = OnlineLse {
        m: f64::NEG_INFINITY,
        l: 0.0,
    };

    /// Moves the reference up to `m` (no change if it is already there or above) and
    /// returns the factor e^{m_old − m} for sums kept relative to the old reference (0
    /// while empty, 1 when unchanged).
    pub fn raise(&mut self, m: f64) -> f64 {
        if m <= self.m {
            return 1.0;
        }
        let factor = if self.m == f64::NEG_INFINITY {
            0.0
        } else {
            (self.m - m).exp()
        };
        self.l *= factor;
        self.m = m;
        factor
    }

    /// Folds in a value z: the factor for the caller's sums (see [`OnlineLse::raise`]) and
    /// the value's weight e^{z − m}.
    pub fn push(&mut self, z: f64) -> (f64, f64) {
        let factor = self.raise(z);
        let weight = (z - self.m).exp();
        self.l += weight;
        (factor, weight)
    }

    /// Folds in the state of other values: returns the factors for this state's sums and
    /// for the other's (0 for an empty side).
    pub fn merge(&mut self, other: &OnlineLse) -> (f64, f64) {
        let mine = self.raise(other.m);
        let theirs = if other.m == f64::NEG_INFINITY {
            0.0
        } else {
            (other.m - self.m).exp()
        };
        self.l += other.l * theirs;
        (mine, theirs)
    }

    /// log Σ e^{z} (−∞ while empty).
    pub fn lse(&self) -> f64 {
        self.m + self.l.ln()
    }
}

/// The confidence of a softmax retrieval: the weight e^{β s − lse} of a pattern with
/// similarity `s`, where lse = log Σ_μ e^{β s_μ}; clamped to [0, 1] against rounding.
pub fn confidence(beta: f64, s: f64, lse: f64) -> f64 {
    (beta * s - lse).exp().clamp(0.0, 1.0)
}

/// Indices of the k largest scores, ordered by score (desc) then index (asc).
pub fn top_k(scores: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// The update weights w_μ and a common factor: the new state is
/// proj(factor · Σ_μ w_μ ξ^μ). The factor only differs from 1 for `Exponential`, where
/// w_μ = e^{βs_μ − max βs} and factor = β·e^{max βs} (log domain). For `LogSumRelu` the
/// weights are 1/|support| on the support; an empty support gives all-zero weights, and
/// the update leaves the state where it is ([`keeps_state`]). For `Entmax` they are
/// entmax_α(βs) ([`crate::entmax`]), exactly zero outside the support.
pub fn weights(separation: Separation, scores: &[f64]) -> (Vec<f64>, f64) {
    match separation {
        Separation::Polynomial { n } | Separation::RectifiedPolynomial { n } => {
            let f = PolyF {
                degree: n,
                rectified: matches!(separation, Separation::RectifiedPolynomial { .. }),
            };
            (scores.iter().map(|&s| f.f_prime(s)).collect(), 1.0)
        }
        Separation::Exponential { beta } | Separation::Softmax { beta } => {
            let beta = beta as f64;
            let m = scores
                .iter()
                .map(|s| beta * s)
                .fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = scores.iter().map(|s| (beta * s - m).exp()).collect();
            if matches!(separation, Separation::Softmax { .. }) {
                let total: f64 = w.iter().sum();
                (w.iter().map(|v| v / total).collect(), 1.0)
            } else {
                (w, beta * m.exp())
            }
        }
        Separation::Max => weights(Separation::TopK { k: 1 }, scores),
        Separation::TopK { k } => {
            let mut w = vec![0.0; scores.len()];
            for i in top_k(scores, k) {
                w[i] = 1.0 / k as f64;
            }
            (w, 1.0)
        }
        Separation::LogSumRelu { beta, .. } => {
            let inside: Vec<bool> = scores
                .iter()
                .map(|&s| relu_kernel(beta as f64, s) > 0.0)
                .collect();
            let count = inside.iter().filter(|&&i| i).count();
            let w = inside
                .iter()
                .map(|&i| if i { 1.0 / count as f64 } else { 0.0 })
                .collect();
            (w, 1.0)
        }
        Separation::Entmax { beta, alpha } => (
            crate::entmax::weights(beta as f64, alpha as f64, scores),
            1.0,
        ),
    }
}

/// Whether an update with these weights leaves the state where it is: a log-sum-ReLU
/// state whose support is empty (no pattern within reach) does not move.
pub fn keeps_state(separation: Separation, weights: &[f64]) -> bool {
    matches!(separation, Separation::LogSumRelu { .. }) && weights.iter().all(|&w| w == 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_lse_in_any_split_equals_the_whole() {
        let z = [3.0, -1.0, 700.0, 2.5, 699.0, -40.0, 701.5];
        let whole = log_sum_exp(&z);
        let mut one = OnlineLse::EMPTY;
        let mut weighted = 0.0; // Σ e^{z−m}·z kept relative to the running reference
        for &v in &z {
            let (factor, w) = one.push(v);
            weighted = weighted * factor + w * v;
        }
        assert!(
            (one.lse() - whole).abs() < 1e-12,
            "{} vs {whole}",
            one.lse()
        );
        let mean: f64 = z.iter().map(|&v| (v - whole).exp() * v).sum();
        assert!((weighted / one.l - mean).abs() < 1e-9);
        for split in 0..=z.len() {
            let (mut a, mut b) = (OnlineLse::EMPTY, OnlineLse::EMPTY);
            for &v in &z[..split] {
                a.push(v);
            }
            for &v in &z[split..] {
                b.push(v);
            }
            let (fa, fb) = a.merge(&b);
            assert!((a.lse() - whole).abs() < 1e-12, "split {split}");
            assert!((0.0..=1.0).contains(&fa) && (0.0..=1.0).contains(&fb));
        }
        let mut empty = OnlineLse::EMPTY;
        assert_eq!(empty.merge(&OnlineLse::EMPTY), (1.0, 0.0));
        assert_eq!(empty.lse(), f64::NEG_INFINITY);
        assert_eq!(log_sum_exp(&[]), f64::NEG_INFINITY);
    }
}
