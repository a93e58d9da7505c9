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

use crate::weights::PolyF;
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

    /// Checks that there is one label per sample (`samples` of them), each below C.
    pub fn check_labels(&self, labels: &[usize], samples: usize) -> Result<()> {
        if labels.len() != samples {
            return Err(Error::DimensionMismatch {
                argument: "labels (one per image)",
                expected: samples,
                actual: labels.len(),
            });
        }
        if let Some(i) = labels.iter().position(|&l| l >= self.classes) {
            return Err(Error::InvalidParameter {
                argument: "labels",
                value: labels[i].to_string(),
                reason: format!("label of sample {i} is not below C = {}", self.classes),
            });
        }
        Ok(())
    }

    /// β = 1/Tⁿ.
    pub fn beta(&self) -> f64 {
        1.0 / self.temperature.powi(self.degree as i32)
    }

    /// The separation F of the memories.
    pub fn polynomial(&self) -> PolyF {
        PolyF {
            degree: self.degree,
            rectified: self.rectified,
        }
    }

    /// F(x).
    pub fn f(&self, x: f64) -> f64 {
        self.polynomial().f(x)
    }

    /// F′(x) = n xⁿ⁻¹ (0 below zero when rectified).
    pub fn f_prime(&self, x: f64) -> f64 {
        self.polynomial().f_prime(x)
    }
}

impl ClassifierModel {
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
}
