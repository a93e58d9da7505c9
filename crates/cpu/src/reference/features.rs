//! Random-feature DAM, the reference (f64, one row at a time): feature maps, the weight
//! vector T = Σ φ(ξ), the approximate energy's value and gradient, and the exact
//! Gaussian-kernel LSE they approximate. See `dam_core::features` for the maths; the fast
//! path ([`crate::features`]) is tested against these functions.

use dam_core::features::{FeatureKind, FeatureSpec};

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// φ(x) (Y values).
pub fn phi(spec: &FeatureSpec, omega: &[f32], x: &[f32]) -> Vec<f64> {
    let (n, c) = (spec.dim, spec.scale());
    let u: Vec<f64> = omega.chunks(n).map(|w| dot(w, x)).collect();
    match spec.kind {
        FeatureKind::Fourier => u
            .iter()
            .map(|u| c * u.cos())
            .chain(u.iter().map(|u| c * u.sin()))
            .collect(),
        FeatureKind::PositiveExp => {
            let norm2 = dot(x, x);
            u.iter()
                .map(|u| c * (spec.beta.sqrt() * u - spec.beta * norm2).exp())
                .collect()
        }
    }
}

/// Σ_r φ(row_r) over the rows (R×N, row-major).
pub fn feature_sum(spec: &FeatureSpec, omega: &[f32], rows: &[f32]) -> Vec<f64> {
    let mut t = vec![0.0; spec.features];
    for row in rows.chunks(spec.dim) {
        for (a, v) in t.iter_mut().zip(phi(spec, omega, row)) {
            *a += v;
        }
    }
    t
}

/// s(x) = φ(x)·T and ∇s(x).
pub fn value_and_grad(spec: &FeatureSpec, omega: &[f32], t: &[f64], x: &[f32]) -> (f64, Vec<f64>) {
    let (n, c, f) = (spec.dim, spec.scale(), spec.frequencies());
    let mut grad = vec![0.0; n];
    let mut s = 0.0;
    for (j, w) in omega.chunks(n).enumerate() {
        let u = dot(w, x);
        let coef = match spec.kind {
            FeatureKind::Fourier => {
                s += c * (t[j] * u.cos() + t[f + j] * u.sin());
                c * (t[f + j] * u.cos() - t[j] * u.sin())
            }
            FeatureKind::PositiveExp => {
                let p = c * (spec.beta.sqrt() * u - spec.beta * dot(x, x)).exp();
                s += t[j] * p;
                t[j] * p * spec.beta.sqrt()
            }
        };
        for (g, &wi) in grad.iter_mut().zip(w) {
            *g += coef * wi as f64;
        }
    }
    if spec.kind == FeatureKind::PositiveExp {
        for (g, &xi) in grad.iter_mut().zip(x) {
            *g -= 2.0 * spec.beta * xi as f64 * s;
        }
    }
    (s, grad)
}

/// The exact memory: log Σ_μ exp(−β/2 ‖x − ξ^μ‖²) and ∇E = Σ_μ softmax_μ (x − ξ^μ) for
/// E = −β⁻¹ log Σ_μ exp(−β/2 ‖x − ξ^μ‖²).
pub fn exact_lse_and_grad(beta: f64, patterns: &[f32], x: &[f32]) -> (f64, Vec<f64>) {
    let n = x.len();
    let z: Vec<f64> = patterns
        .chunks(n)
        .map(|p| {
            -0.5 * beta
                * p.iter()
                    .zip(x)
                    .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                    .sum::<f64>()
        })
        .collect();
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
    let total: f64 = w.iter().sum();
    let mut grad: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for (p, wm) in patterns.chunks(n).zip(&w) {
        for (g, &pi) in grad.iter_mut().zip(p) {
            *g -= wm / total * pi as f64;
        }
    }
    (m + total.ln(), grad)
}
