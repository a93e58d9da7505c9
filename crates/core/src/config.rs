//! What to compute: similarity, separation, dynamics and projection.

use crate::{Error, Result};

/// How a stored pattern ξ and a state x are compared (larger = more similar).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Similarity {
    /// s = ξ·x.
    #[default]
    Dot,
    /// s = −‖ξ − x‖₂.
    NegEuclidean,
    /// s = −‖ξ − x‖₁.
    NegManhattan,
}

/// The separation function F: energy E(x) = −Σ_μ F(s_μ(x)), update weights w = F′(s).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Separation {
    /// F(s) = sⁿ, w = n·sⁿ⁻¹ (n = 2: the classical Hopfield network).
    Polynomial {
        /// Degree n ≥ 1.
        n: u32,
    },
    /// F(s) = max(s, 0)ⁿ, w = n·max(s, 0)ⁿ⁻¹ (Krotov & Hopfield 2016).
    RectifiedPolynomial {
        /// Degree n ≥ 1.
        n: u32,
    },
    /// F(s) = e^{βs}, w = β·e^{βs} (Demircigil et al. 2017), computed in the log domain.
    /// The energy −Σ e^{βs} is returned in f64 (it overflows f32 for βs > 88); with
    /// [`Projection::None`] the update's scale e^{max βs} can overflow f32, which is
    /// reported as [`Error::Overflow`].
    Exponential {
        /// Inverse temperature β > 0.
        beta: f32,
    },
    /// Log-sum-exp energy E(x) = −β⁻¹ log Σ_μ e^{β s_μ} + ½‖x‖² (Ramsauer et al. 2020),
    /// w = softmax(βs). Computed with a running max, so β·s in the thousands is fine.
    Softmax {
        /// Inverse temperature β > 0.
        beta: f32,
    },
    /// Winner takes all: E = −max_μ s_μ, the update is the most similar pattern
    /// (ties → lowest index). Same as `TopK { k: 1 }`.
    Max,
    /// E = −(1/k) Σ_{μ ∈ top k} s_μ; the update is the mean of the k most similar
    /// patterns (ties → lower index first).
    TopK {
        /// How many patterns, 1 ≤ k ≤ P.
        k: usize,
    },
    /// Log-sum-ReLU (the Epanechnikov energy of Hoover, Krotov et al. 2025):
    /// E(x) = −β⁻¹ log(Σ_μ max(0, 1 − (β/2)d_μ²) + ε), with d_μ = −s_μ the distance of a
    /// distance similarity (negative Euclidean or Manhattan). The update moves x to the
    /// unweighted mean of its support {μ : 1 − (β/2)d_μ² > 0}, so stored patterns stay exact
    /// minima and new minima appear at the centroids of overlapping supports. An empty
    /// support (with ε = 0) is an infinite energy: the state stays where it is and the
    /// result reports no match. On the sphere |x|² = N, with β = b/N it is the spherical
    /// form E = −(N/b) log Σ_μ max(0, 1 − b + bφ_μ), φ_μ = x·ξ^μ/N.
    LogSumRelu {
        /// β > 0: the support is d² < 2/β.
        beta: f32,
        /// ε ≥ 0 added inside the logarithm (0: an empty support has E = +∞).
        eps: f32,
    },
    /// α-entmax (Peters et al. 2019; the sparse modern Hopfield networks of Hu et al. 2023
    /// and Santos et al. 2024): w = entmax_α(βs) = argmax_{p∈Δ} pᵀβs + H_α(p) with the
    /// Tsallis entropy H_α(p) = (1 − Σ p^α)/(α(α−1)), i.e. p_μ = [(α−1)βs_μ − τ]_+^{1/(α−1)},
    /// exactly zero outside a support. Energy E(x) = −β⁻¹ Ψ*_α(βs) + ½‖x‖² with
    /// Ψ*_α(z) = pᵀz + H_α(p) at p = entmax_α(z), whose gradient is entmax: the update is
    /// the concave–convex step and E never rises. α → 1 is `Softmax`, α = 2 is sparsemax
    /// (the Euclidean projection of βs onto the simplex). See [`crate::entmax`].
    Entmax {
        /// Inverse temperature β > 0.
        beta: f32,
        /// 1 < α ≤ 2 (2: sparsemax; 1.5 for a bare `entmax`).
        alpha: f32,
    },
}

impl Default for Separation {
    fn default() -> Self {
        Separation::Softmax { beta: 1.0 }
    }
}

/// How many updates to apply.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Dynamics {
    /// A single update x₁ = proj(Σ w ξ). `converged` reports whether x₁ = x₀.
    OneStep,
    /// Update each query until ‖x_{t+1} − x_t‖_∞ ≤ `tol` or `max_steps` updates.
    /// A query that has converged is no longer updated.
    Iterate {
        /// Step budget, ≥ 1.
        max_steps: usize,
        /// Convergence threshold on the largest coordinate change, ≥ 0.
        tol: f32,
    },
}

impl Default for Dynamics {
    fn default() -> Self {
        Dynamics::Iterate {
            max_steps: 100,
            tol: 1e-5,
        }
    }
}

impl Dynamics {
    /// Step budget and tolerance (`OneStep` is one step with tolerance 0).
    pub fn budget(&self) -> (usize, f32) {
        match *self {
            Dynamics::OneStep => (1, 0.0),
            Dynamics::Iterate { max_steps, tol } => (max_steps, tol),
        }
    }
}

/// Applied to the weighted sum after each update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Projection {
    /// Keep the weighted sum as it is.
    #[default]
    None,
    /// Rescale to ‖x‖ = √N (a zero vector stays zero).
    Sphere,
    /// Elementwise sign, with sign(0) = +1.
    Sign,
}

impl Similarity {
    /// Every similarity, in documentation order.
    pub const ALL: [Similarity; 3] = [
        Similarity::Dot,
        Similarity::NegEuclidean,
        Similarity::NegManhattan,
    ];

    /// The name the CLI, the Python package and the files use: `dot`, `euclidean`,
    /// `manhattan`.
    pub fn name(self) -> &'static str {
        match self {
            Similarity::Dot => "dot",
            Similarity::NegEuclidean => "euclidean",
            Similarity::NegManhattan => "manhattan",
        }
    }

    /// Reads [`Similarity::name`] (case ignored; `neg-euclidean`, `neg-manhattan` too).
    pub fn parse(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "dot" => Ok(Similarity::Dot),
            "euclidean" | "neg-euclidean" => Ok(Similarity::NegEuclidean),
            "manhattan" | "neg-manhattan" => Ok(Similarity::NegManhattan),
            _ => Err(Error::InvalidParameter {
                argument: "similarity",
                value: name.to_string(),
                reason: "use dot, euclidean or manhattan".into(),
            }),
        }
    }
}

impl Separation {
    /// The name the CLI, the Python package and the files use: `softmax`, `exponential`,
    /// `polynomial:N`, `rectified:N`, `max`, `top-k:K`, `lsr` (or `lsr:EPS` with ε > 0),
    /// `sparsemax` (entmax at α = 2) and `entmax:ALPHA`.
    pub fn name(&self) -> String {
        match *self {
            Separation::Softmax { .. } => "softmax".into(),
            Separation::Exponential { .. } => "exponential".into(),
            Separation::Polynomial { n } => format!("polynomial:{n}"),
            Separation::RectifiedPolynomial { n } => format!("rectified:{n}"),
            Separation::Max => "max".into(),
            Separation::TopK { k } => format!("top-k:{k}"),
            Separation::LogSumRelu { eps: 0.0, .. } => "lsr".into(),
            Separation::LogSumRelu { eps, .. } => format!("lsr:{eps}"),
            Separation::Entmax { alpha, .. } if alpha == crate::entmax::SPARSEMAX_ALPHA => {
                "sparsemax".into()
            }
            Separation::Entmax { alpha, .. } => format!("entmax:{alpha}"),
        }
    }

    /// Reads [`Separation::name`] with `beta` for softmax, exponential, log-sum-ReLU and
    /// entmax (case ignored). Aliases: `lse` for softmax, `exp` for exponential, `poly:N` and
    /// `rectified-polynomial:N` / `rpoly:N`, `topk:K`, `log-sum-relu[:EPS]`, `entmax` for
    /// `entmax:1.5`, `alpha-entmax:ALPHA`. Not validated here ([`Config::validate`] checks
    /// the domains, 1 < α ≤ 2 included).
    pub fn parse(name: &str, beta: f32) -> Result<Self> {
        let lower = name.trim().to_ascii_lowercase();
        let (head, tail) = match lower.split_once(':') {
            Some((h, t)) => (h, Some(t)),
            None => (lower.as_str(), None),
        };
        let bad = |reason: &str| Error::InvalidParameter {
            argument: "separation",
            value: name.to_string(),
            reason: reason.to_string(),
        };
        let number = |what: &str| -> Result<usize> {
            tail.ok_or_else(|| bad(&format!("{head} needs its {what}, e.g. {head}:3")))?
                .parse::<usize>()
                .map_err(|_| bad(&format!("the {what} must be a whole number")))
        };
        let degree = || -> Result<u32> {
            u32::try_from(number("degree")?).map_err(|_| bad("the degree is too large"))
        };
        let plain = |s: Separation| {
            if tail.is_some() {
                Err(bad(&format!("{head} takes no parameter")))
            } else {
                Ok(s)
            }
        };
        match head {
            "softmax" | "lse" => plain(Separation::Softmax { beta }),
            "exponential" | "exp" => plain(Separation::Exponential { beta }),
            "polynomial" | "poly" => Ok(Separation::Polynomial { n: degree()? }),
            "rectified" | "rectified-polynomial" | "rpoly" => {
                Ok(Separation::RectifiedPolynomial { n: degree()? })
            }
            "max" => plain(Separation::Max),
            "top-k" | "topk" => Ok(Separation::TopK { k: number("k")? }),
            "lsr" | "log-sum-relu" => {
                let eps = match tail {
                    None => 0.0,
                    Some(t) => t
                        .parse::<f32>()
                        .map_err(|_| bad("ε must be a number, e.g. lsr:0.001"))?,
                };
                Ok(Separation::LogSumRelu { beta, eps })
            }
            "sparsemax" => plain(Separation::Entmax {
                beta,
                alpha: crate::entmax::SPARSEMAX_ALPHA,
            }),
            "entmax" | "alpha-entmax" => {
                let alpha = match tail {
                    None => crate::entmax::DEFAULT_ALPHA,
                    Some(t) => t
                        .parse::<f32>()
                        .map_err(|_| bad("α must be a number in (1, 2], e.g. entmax:1.5"))?,
                };
                Ok(Separation::Entmax { beta, alpha })
            }
            _ => Err(bad(
                "use softmax, exponential, polynomial:N, rectified:N, max, top-k:K, lsr[:EPS], \
                 sparsemax or entmax[:ALPHA]",
            )),
        }
    }
}

impl Projection {
    /// Applies the projection to a state in place.
    pub fn apply(self, x: &mut [f64]) {
        match self {
            Projection::None => {}
            Projection::Sphere => {
                let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt();
                if norm > 0.0 {
                    let scale = (x.len() as f64).sqrt() / norm;
                    x.iter_mut().for_each(|v| *v *= scale);
                }
            }
            Projection::Sign => x
                .iter_mut()
                .for_each(|v| *v = if *v >= 0.0 { 1.0 } else { -1.0 }),
        }
    }
}

/// A full description of a retrieval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Config {
    /// Similarity between patterns and states.
    pub similarity: Similarity,
    /// Separation function.
    pub separation: Separation,
    /// Number of updates.
    pub dynamics: Dynamics,
    /// Projection after each update.
    pub projection: Projection,
    /// Record E(x_t) after every step.
    pub energy_trace: bool,
}

impl Config {
    /// Checks every parameter against its domain for `count` stored patterns.
    pub fn validate(&self, count: usize) -> Result<()> {
        let invalid = |argument: &'static str, value: String, reason: &str| {
            Err(Error::InvalidParameter {
                argument,
                value,
                reason: reason.to_string(),
            })
        };
        match self.separation {
            Separation::Polynomial { n } | Separation::RectifiedPolynomial { n } if n == 0 => {
                return invalid("n", n.to_string(), "the degree must be at least 1");
            }
            Separation::Exponential { beta }
            | Separation::Softmax { beta }
            | Separation::LogSumRelu { beta, .. }
            | Separation::Entmax { beta, .. }
                if !(beta.is_finite() && beta > 0.0) =>
            {
                return invalid("beta", beta.to_string(), "β must be finite and > 0");
            }
            Separation::LogSumRelu { eps, .. } if !(eps.is_finite() && eps >= 0.0) => {
                return invalid("eps", eps.to_string(), "ε must be finite and ≥ 0");
            }
            Separation::Entmax { alpha, .. } if !crate::entmax::valid_alpha(alpha) => {
                return invalid(
                    "alpha",
                    alpha.to_string(),
                    "entmax needs 1 < α ≤ 2 (α → 1 is softmax, 2 is sparsemax)",
                );
            }
            Separation::LogSumRelu { .. } if self.similarity == Similarity::Dot => {
                return invalid(
                    "similarity",
                    "dot".into(),
                    "log-sum-ReLU needs a distance: use euclidean (or manhattan)",
                );
            }
            Separation::TopK { k } if k == 0 || k > count => {
                return invalid(
                    "k",
                    k.to_string(),
                    &format!("k must satisfy 1 ≤ k ≤ P = {count}"),
                );
            }
            _ => {}
        }
        if let Dynamics::Iterate { max_steps, tol } = self.dynamics {
            if max_steps == 0 {
                return invalid("max_steps", "0".into(), "at least one step is needed");
            }
            if !(tol.is_finite() && tol >= 0.0) {
                return invalid("tol", tol.to_string(), "tol must be finite and ≥ 0");
            }
        }
        Ok(())
    }
}

/// The range rule shared by both backends: an energy is an error when it is NaN, or when
/// it is beyond f32 for any separation but `Exponential` (whose energy is defined in f64
/// and may be −∞ once log Σ e^{βs} exceeds ≈ 709.78).
pub fn checked_energy(separation: Separation, e: f64, query: usize, steps: usize) -> Result<f64> {
    let in_range = match separation {
        Separation::Exponential { .. } => !e.is_nan(),
        // +∞: an empty support; below, −β⁻¹ log(P + ε) bounds it.
        Separation::LogSumRelu { .. } => !e.is_nan(),
        _ => e.abs() <= f32::MAX as f64,
    };
    if in_range {
        Ok(e)
    } else {
        Err(Error::Overflow {
            what: "energy",
            query,
            steps,
            hint: "the energy is beyond f32 (polynomial energies grow like s^n); use a projection or a lower degree",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(separation: Separation) -> Config {
        Config {
            separation,
            ..Config::default()
        }
    }

    #[test]
    fn rule_names_round_trip_and_aliases_parse() {
        for similarity in Similarity::ALL {
            assert_eq!(Similarity::parse(similarity.name()).unwrap(), similarity);
        }
        let all = [
            Separation::Softmax { beta: 2.0 },
            Separation::Exponential { beta: 2.0 },
            Separation::Polynomial { n: 3 },
            Separation::RectifiedPolynomial { n: 30 },
            Separation::Max,
            Separation::TopK { k: 7 },
            Separation::Entmax {
                beta: 2.0,
                alpha: 1.25,
            },
            Separation::Entmax {
                beta: 2.0,
                alpha: 2.0,
            },
        ];
        for separation in all {
            assert_eq!(
                Separation::parse(&separation.name(), 2.0).unwrap(),
                separation
            );
        }
        assert_eq!(
            Separation::parse("poly:4", 1.0).unwrap(),
            Separation::Polynomial { n: 4 }
        );
        assert_eq!(
            Separation::parse("RPOLY:2", 1.0).unwrap(),
            Separation::RectifiedPolynomial { n: 2 }
        );
        assert_eq!(
            Separation::parse("lse", 0.5).unwrap(),
            Separation::Softmax { beta: 0.5 }
        );
        for bad in ["polynomial", "poly:x", "max:2", "entropy", "top-k:-1"] {
            assert!(
                matches!(
                    Separation::parse(bad, 1.0),
                    Err(Error::InvalidParameter { .. })
                ),
                "{bad}"
            );
        }
        assert!(Similarity::parse("cosine").is_err());
    }

    #[test]
    fn rejects_out_of_domain_parameters() {
        let bad = [
            with(Separation::Polynomial { n: 0 }),
            with(Separation::RectifiedPolynomial { n: 0 }),
            with(Separation::Softmax { beta: 0.0 }),
            with(Separation::Softmax { beta: f32::NAN }),
            with(Separation::Exponential { beta: -1.0 }),
            with(Separation::TopK { k: 0 }),
            with(Separation::TopK { k: 11 }),
            Config {
                dynamics: Dynamics::Iterate {
                    max_steps: 0,
                    tol: 0.0,
                },
                ..Config::default()
            },
        ];
        for config in bad {
            let err = config.validate(10).unwrap_err();
            assert!(
                matches!(err, Error::InvalidParameter { .. }),
                "{config:?} gave {err}"
            );
        }
        assert!(with(Separation::TopK { k: 10 }).validate(10).is_ok());
    }
}
