//! Random-feature dense associative memory (DrDAM; Hoover et al. 2024, THEORY.md §5).
//!
//! The Gaussian-kernel log-sum-exp energy E(x) = −β⁻¹ log Σ_μ exp(−β/2 ‖x − ξ^μ‖²) is
//! approximated with Y random features φ: T = Σ_μ φ(ξ^μ), E(x) ≈ −β⁻¹ log(φ(x)·T). Adding a
//! memory is T += φ(ξ); a query costs O(Y·N) whatever P is.
//!
//! * [`FeatureKind::Fourier`] (random Fourier features, cos + sin): Y/2 frequencies
//!   ω ~ N(0, β I), φ(x) = √(2/Y) [cos(ω_j·x)]_j ⧺ √(2/Y) [sin(ω_j·x)]_j, so
//!   E[φ(x)·φ(ξ)] = exp(−β/2 ‖x − ξ‖²). Unbiased, but φ(x)·T can be ≤ 0 for few features.
//! * [`FeatureKind::PositiveExp`] (Performer-style positive features): Y frequencies
//!   ω ~ N(0, I), φ_j(x) = exp(√β ω_j·x − β‖x‖²)/√Y, also unbiased for the same kernel and
//!   always positive.
//!
//! Gradients: with s(x) = φ(x)·T, ∇E = −∇s / (β s), where
//! Fourier: ∇s = √(2/Y) Σ_j (T_{F+j} cos u_j − T_j sin u_j) ω_j, u_j = ω_j·x;
//! positive: ∇s = Σ_j T_j φ_j(x) (√β ω_j) − 2β x s.

use crate::procedural::{fill, PatternKind, Stream};
use crate::{Error, Result};

/// The family of random features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum FeatureKind {
    /// Random Fourier features (cos and sin of Y/2 frequencies).
    Fourier,
    /// Positive exponential features (Performer FAVOR+ style).
    PositiveExp,
}

/// What defines a feature map: kind, dimension N, Y features, β and the seed of ω.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FeatureSpec {
    /// Family.
    pub kind: FeatureKind,
    /// Dimension N.
    pub dim: usize,
    /// Number of features Y (even for Fourier).
    pub features: usize,
    /// Kernel inverse temperature β > 0.
    pub beta: f64,
    /// Seed of the frequencies.
    pub seed: u64,
}

impl FeatureSpec {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        let bad = |argument: &'static str, value: String, reason: &str| {
            Err(Error::InvalidParameter {
                argument,
                value,
                reason: reason.into(),
            })
        };
        if self.dim == 0 {
            return bad("dim", "0".into(), "N must be at least 1");
        }
        if self.features == 0 || (self.kind == FeatureKind::Fourier && self.features % 2 == 1) {
            return bad(
                "features",
                self.features.to_string(),
                "Y must be ≥ 1 (and even for Fourier features: cos and sin pairs)",
            );
        }
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return bad("beta", self.beta.to_string(), "β must be finite and > 0");
        }
        Ok(())
    }

    /// The normalisation c of φ: √(2/Y) (Fourier) or 1/√Y (positive); both backends
    /// scale their feature sums by it.
    pub fn scale(&self) -> f64 {
        match self.kind {
            FeatureKind::Fourier => (2.0 / self.features as f64).sqrt(),
            FeatureKind::PositiveExp => 1.0 / (self.features as f64).sqrt(),
        }
    }

    /// Number of frequency vectors: Y/2 for Fourier, Y for positive features.
    pub fn frequencies(&self) -> usize {
        match self.kind {
            FeatureKind::Fourier => self.features / 2,
            FeatureKind::PositiveExp => self.features,
        }
    }

    /// The frequency matrix Ω (frequencies × N, row-major, f32), from Philox Gaussians:
    /// N(0, β) entries for Fourier, N(0, 1) for positive features.
    pub fn omega(&self) -> Vec<f32> {
        let (f, n) = (self.frequencies(), self.dim);
        let scale = match self.kind {
            FeatureKind::Fourier => self.beta.sqrt() as f32,
            FeatureKind::PositiveExp => 1.0,
        };
        let mut out = vec![0.0f32; f * n];
        for (j, row) in out.chunks_mut(n).enumerate() {
            fill(
                PatternKind::Gaussian,
                self.seed,
                Stream::Patterns,
                j as u64,
                row,
            );
            row.iter_mut().for_each(|v| *v *= scale);
        }
        out
    }
}
