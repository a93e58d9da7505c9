//! Dense associative memories trained as classifiers (Krotov & Hopfield 2016, §3 and
//! Appendix A): the model, shared by every backend.
//!
//! Neurons: N visible (pixels in [−1, 1]) and C label neurons; K memories
//! ξ^μ ∈ [−1, 1]^{N+C}, stored row-major as K × (N + C) (visible part first). A sample v is
//! classified by one update of each label neuron α with the visible neurons clamped to v and
//! the other labels held at −1:
//!
//!   c_α = tanh(β Σ_μ [F(u⁺_μα) − F(u⁻_μα)]),  u^±_μα = s_μ + L_μα ± ξ^μ_α,
//!   s_μ = Σ_i ξ^μ_i v_i,  L_μα = −Σ_{γ≠α} ξ^μ_γ,
//!
//! F(x) = xⁿ or max(x, 0)ⁿ, β = 1/Tⁿ. The loss of a batch is Σ_b Σ_α (c_bα − t_bα)^{2m} with
//! t = +1 for the sample's class and −1 for the others. Its gradient with respect to the
//! memories, with g_bα = ∂loss/∂z_bα = 2m (c − t)^{2m−1} · β (1 − c²) and
//! D = F′(u⁺) − F′(u⁻):
//!
//!   ∂/∂ξ^μ_i (visible) = Σ_b A_μb v_bi,   A_μb = Σ_α g_bα D_bαμ,
//!   ∂/∂ξ^μ_γ (label)   = Σ_b [2 g_bγ F′(u⁺_bγμ) − A_μb].
//!
//! Both passes are matrix products (samples × memories × pixels and its transposes) with
//! elementwise epilogues.

use crate::{Error, Result};

/// The classifier's energy, temperature and loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassifierModel {
    /// Degree n ≥ 1 of F.
    pub degree: u32,
    /// F = max(x, 0)ⁿ instead of xⁿ.
    pub rectified: bool,
    /// Temperature T > 0 (β = 1/Tⁿ).
    pub temperature: f64,
    /// Loss power m ≥ 1: the loss is Σ (c − t)^{2m}.
    pub loss_power: u32,
    /// Number of classes C ≥ 2.
    pub classes: usize,
}

impl ClassifierModel {
    /// Checks every parameter, naming the one out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |argument: &'static str, value: String, reason: &str| {
            Err(Error::InvalidParameter {
                argument,
                value,
                reason: reason.into(),
            })
        };
        if self.degree == 0 {
            return bad("degree (n)", "0".into(), "n must be at least 1");
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad(
                "temperature (T)",
                self.temperature.to_string(),
                "T must be finite and > 0",
            );
        }
        if self.loss_power == 0 {
            return bad("loss power (m)", "0".into(), "m must be at least 1");
        }
        if self.classes < 2 {
            return bad(
                "classes (C)",
                self.classes.to_string(),
                "at least two classes",
            );
        }
        Ok(())
    }

    /// β = 1/Tⁿ.
    pub fn beta(&self) -> f64 {
        1.0 / self.temperature.powi(self.degree as i32)
    }

    /// F(x).
    pub fn f(&self, x: f64) -> f64 {
        let x = if self.rectified { x.max(0.0) } else { x };
        x.powi(self.degree as i32)
    }

    /// F′(x) = n xⁿ⁻¹ (0 below zero when rectified).
    pub fn f_prime(&self, x: f64) -> f64 {
        if self.rectified && x <= 0.0 {
            return 0.0;
        }
        self.degree as f64 * x.powi(self.degree as i32 - 1)
    }
}

/// xⁿ for the small degrees without a call, else `powi`.
#[inline(always)]
pub fn pow_n(x: f64, n: u32) -> f64 {
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

/// [`pow_n`] in f32.
#[inline(always)]
fn pow_n32(x: f32, n: u32) -> f32 {
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

/// The label side of a K × (N + C) matrix of memories (row-major, f32), in units of T:
/// per memory, its label entries ξ^μ_α / T and its terms L_μα / T, L_μα = −Σ_{γ≠α} ξ^μ_γ,
/// each K × C.
///
/// The fast paths' epilogues work in these units: with w = u / T, β F(u) = F(w) (F is
/// homogeneous of degree n), so β z is a sum of O(1) terms for any n and stays in f32 range
/// (x³⁰ of a raw similarity in the hundreds would not).
pub fn label_rows(memories: &[f32], width: usize, model: &ClassifierModel) -> (Vec<f32>, Vec<f32>) {
    let classes = model.classes;
    let n = width - classes;
    let inv_t = 1.0 / model.temperature;
    let k = memories.len() / width;
    let mut xs = Vec::with_capacity(k * classes);
    let mut ls = Vec::with_capacity(k * classes);
    for row in memories.chunks(width) {
        let labels = &row[n..];
        let total: f64 = labels.iter().map(|&v| v as f64).sum();
        for &x in labels {
            xs.push((x as f64 * inv_t) as f32);
            ls.push((-(total - x as f64) * inv_t) as f32);
        }
    }
    (xs, ls)
}

impl ClassifierModel {
    /// Forward epilogue in units of T ([`label_rows`]): adds to `bz` (B × C) the sums
    /// β z_bα = Σ_μ [F(w_bμα + x_μα) − F(w_bμα − x_μα)], w = s_bμ / T + L_μα / T, over the k
    /// memories of `s` (B × k raw similarities, row-major). f32 terms, f64 totals.
    pub fn accumulate_z(&self, s: &[f32], k: usize, xs: &[f32], ls: &[f32], bz: &mut [f64]) {
        let (c, degree, rectified) = (self.classes, self.degree, self.rectified);
        let inv_t = (1.0 / self.temperature) as f32;
        let f = move |x: f32| pow_n32(if rectified { x.max(0.0) } else { x }, degree);
        let mut acc = vec![0.0f32; c];
        for (srow, zq) in s.chunks(k).zip(bz.chunks_mut(c)) {
            acc.iter_mut().for_each(|v| *v = 0.0);
            for (j, &sv) in srow.iter().enumerate() {
                let w0 = sv * inv_t;
                let (xj, lj) = (&xs[j * c..(j + 1) * c], &ls[j * c..(j + 1) * c]);
                for a in 0..c {
                    let w = w0 + lj[a];
                    acc[a] += f(w + xj[a]) - f(w - xj[a]);
                }
            }
            for (z, v) in zq.iter_mut().zip(&acc) {
                *z += *v as f64;
            }
        }
    }

    /// The loss Σ (c − t)^{2m} of the sums β z (B × C) and h = ∂loss/∂(βz) (B × C).
    pub fn loss_and_output_gradient(&self, bz: &[f64], labels: &[usize]) -> (f64, Vec<f64>) {
        let (m2, c) = (2 * self.loss_power as i32, self.classes);
        let mut loss = 0.0;
        let h = bz
            .iter()
            .enumerate()
            .map(|(i, &zv)| {
                let cv = zv.tanh();
                let t = if labels[i / c] == i % c { 1.0 } else { -1.0 };
                loss += (cv - t).powi(m2);
                m2 as f64 * (cv - t).powi(m2 - 1) * (1.0 - cv * cv)
            })
            .collect();
        (loss, h)
    }

    /// Backward epilogue for the k memories of `s` (B × k), in units of T: with
    /// ∂(βz)/∂u = F′(w) / T, A_μb = Σ_α h_bα [F′(w⁺) − F′(w⁻)] / T into `a` (k × B, f32) and
    /// 2 Σ_b h_bγ F′(w⁺) / T into `lab` (k × C); the label gradient is then
    /// `lab − Σ_b A_μb` and the visible gradient A · X.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_epilogue(
        &self,
        s: &[f32],
        k: usize,
        xs: &[f32],
        ls: &[f32],
        h: &[f64],
        a: &mut [f32],
        lab: &mut [f64],
    ) {
        let (c, degree, rectified) = (self.classes, self.degree, self.rectified);
        let inv_t = (1.0 / self.temperature) as f32;
        let bq = s.len() / k;
        let nf = degree as f32;
        let fp = move |x: f32| {
            if rectified && x <= 0.0 {
                0.0
            } else {
                nf * pow_n32(x, degree - 1)
            }
        };
        let mut lab32 = vec![0.0f32; k * c];
        for (q, srow) in s.chunks(k).enumerate() {
            let hq: Vec<f32> = h[q * c..(q + 1) * c]
                .iter()
                .map(|&v| (v * inv_t as f64) as f32)
                .collect();
            for (j, &sv) in srow.iter().enumerate() {
                let w0 = sv * inv_t;
                let (xj, lj) = (&xs[j * c..(j + 1) * c], &ls[j * c..(j + 1) * c]);
                let labj = &mut lab32[j * c..(j + 1) * c];
                let mut acc = 0.0f32;
                for al in 0..c {
                    let w = w0 + lj[al];
                    let (up, um) = (fp(w + xj[al]), fp(w - xj[al]));
                    acc += hq[al] * (up - um);
                    labj[al] += 2.0 * hq[al] * up;
                }
                a[j * bq + q] = acc;
            }
        }
        for (l, v) in lab.iter_mut().zip(&lab32) {
            *l += *v as f64;
        }
    }
}
