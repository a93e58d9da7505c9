//! The update weights of each separation function, from the similarities: the one
//! definition the CPU reference's update and every host-side weighted sum (values of a
//! key → value memory) use.

use crate::Separation;

/// Indices of the k largest scores, ordered by score (desc) then index (asc).
pub fn top_k(scores: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// The update weights w_μ and a common factor: the new state is
/// proj(factor · Σ_μ w_μ ξ^μ). The factor only differs from 1 for `Exponential`, where
/// w_μ = e^{βs_μ − max βs} and factor = β·e^{max βs} (log domain).
pub fn weights(separation: Separation, scores: &[f64]) -> (Vec<f64>, f64) {
    let poly = |n: u32, s: f64| n as f64 * s.powi(n as i32 - 1);
    match separation {
        Separation::Polynomial { n } => (scores.iter().map(|&s| poly(n, s)).collect(), 1.0),
        Separation::RectifiedPolynomial { n } => (
            scores
                .iter()
                .map(|&s| if s > 0.0 { poly(n, s) } else { 0.0 })
                .collect(),
            1.0,
        ),
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
    }
}
