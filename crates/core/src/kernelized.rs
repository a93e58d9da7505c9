//! Kernelized memories and the U-Hop+ separation loss (Hu et al., "Provably optimal memory
//! capacity for modern Hopfield models", NeurIPS 2024).
//!
//! The similarity goes through a learned affine feature map Φ(x) = W x + b (W: D_Φ × N):
//! K(u, v) = ⟨Φ̂(u), Φ̂(v)⟩ on the normalised features Φ̂ = Φ/‖Φ‖. For M memories ξ_μ (rows
//! of an M × N matrix Ξ) with features Φ_μ = W ξ_μ + b, Gram matrix G = Φ̂Φ̂ᵀ and a
//! temperature τ > 0, the separation loss is
//!
//! L = log[(2/(M(M−1))) Σ_{μ<ν} exp(G_{μν}/τ)],
//!
//! a soft maximum of the pairwise cosines: as τ → 0 minimising it maximises the smallest
//! pairwise separation 1 − max_{μ≠ν} G_{μν} (the spherical-code, or Tammes, problem).
//!
//! # Gradient
//!
//! With a_{μν} = exp(G_{μν}/τ)/Σ_{κ<λ} exp(G_{κλ}/τ) for μ ≠ ν (symmetric, each unordered
//! pair counted once, Σ_{μ<ν} a_{μν} = 1):
//!
//! * ∂L/∂Φ̂_μ = (1/τ) Σ_{ν≠μ} a_{μν} Φ̂_ν;
//! * ∂L/∂Φ_μ = (I − Φ̂_μΦ̂_μᵀ) ∂L/∂Φ̂_μ / ‖Φ_μ‖;
//! * ∂L/∂W = Σ_μ (∂L/∂Φ_μ) ξ_μᵀ, ∂L/∂b = Σ_μ ∂L/∂Φ_μ.
//!
//! The log-sum-exp is shifted by the largest G_{μν}/τ. Everything here is f64 and
//! device-independent: [`evaluate_with`] takes the Gram product as a function so a device
//! can run Φ̂Φ̂ᵀ on its own matrix product while the epilogue ([`separation_epilogue`]) and
//! the back-propagation ([`backpropagate`]) stay this one definition.
//!
//! # Metastable states
//!
//! Retrieval in input space with the similarity through Φ: x ← Ξᵀ p(x) with
//! p(x) = weights(β K(Ξ, x)) (softmax now; the weight function is pluggable, see
//! [`Weights`]). ‖p‖ at the fixed point reached from a query is the number of weights above
//! the threshold ([`Weights::threshold`]): 1 means one memory retrieved, more a metastable
//! mixture ([`metastable_size`]).

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

/// An affine feature map Φ(x) = W x + b.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMap {
    /// W, D_Φ × N.
    pub w: Array2<f64>,
    /// b, D_Φ.
    pub b: Array1<f64>,
}

impl FeatureMap {
    /// D_Φ, the feature dimension.
    pub fn feature_dim(&self) -> usize {
        self.w.nrows()
    }

    /// N, the input dimension.
    pub fn input_dim(&self) -> usize {
        self.w.ncols()
    }

    /// Φ(x) for every row x of `x` (rows of the result: Φ(x)ᵀ).
    pub fn features(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let mut phi = x.dot(&self.w.t());
        phi += &self.b;
        phi
    }

    /// Φ̂(x) = Φ(x)/‖Φ(x)‖ for one x (0 stays 0).
    pub fn normalised_feature(&self, x: ArrayView1<'_, f64>) -> Array1<f64> {
        let mut phi = self.w.dot(&x) + &self.b;
        let norm = phi.dot(&phi).sqrt();
        if norm > 0.0 {
            phi /= norm;
        }
        phi
    }
}

impl FeatureMap {
    /// The identity map on R^N: W = I (N × N), b = 0.
    pub fn identity(n: usize) -> Self {
        Self {
            w: Array2::eye(n),
            b: Array1::zeros(n),
        }
    }

    /// Checks the map for inputs of dimension `input_dim`: W has `input_dim` columns and at
    /// least one row, b has one entry per row of W, and every entry is finite. The error
    /// names the argument and the sizes.
    pub fn validate(&self, input_dim: usize) -> crate::Result<()> {
        let (d, n) = self.w.dim();
        if d == 0 {
            return Err(crate::Error::Empty {
                argument: "feature map W (D_Φ × N)",
                detail: "D_Φ = 0 rows".into(),
            });
        }
        if n != input_dim {
            return Err(crate::Error::DimensionMismatch {
                argument: "feature map W (its columns must equal the pattern dimension N)",
                expected: input_dim,
                actual: n,
            });
        }
        if self.b.len() != d {
            return Err(crate::Error::DimensionMismatch {
                argument: "feature map b (one entry per row of W, D_Φ)",
                expected: d,
                actual: self.b.len(),
            });
        }
        let bad = |argument: &'static str, row: usize, col: usize, value: f64| {
            Err(crate::Error::NonFinite {
                argument,
                row,
                col,
                value: value as f32,
            })
        };
        if let Some(((row, col), &v)) = self.w.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return bad("feature map W", row, col, v);
        }
        if let Some((i, &v)) = self.b.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return bad("feature map b", i, 0, v);
        }
        Ok(())
    }
}

/// The kernel of a kernelized memory: K(u, v) = ⟨Φ(u), Φ(v)⟩ on the affine features
/// Φ(x) = W x + b, or ⟨Φ̂(u), Φ̂(v)⟩ on the normalised features Φ̂ = Φ/‖Φ‖ when
/// `normalise` is set. Retrieval stays in input space: T(x) = Ξᵀ p(β K(Ξ, x)).
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    /// Φ.
    pub map: FeatureMap,
    /// Whether K is taken on the normalised features Φ̂ (a cosine).
    pub normalise: bool,
}

impl Kernel {
    /// The kernel of `map`, on normalised features if `normalise`.
    pub fn new(map: FeatureMap, normalise: bool) -> Self {
        Self { map, normalise }
    }

    /// The features of every row of `x` (rows of the result): Φ(x), or Φ̂(x) when
    /// normalised (a zero feature stays zero).
    pub fn features(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let phi = self.map.features(x);
        if self.normalise {
            normalise_rows(phi.view()).0
        } else {
            phi
        }
    }

    /// The feature of one input, Φ(x) or Φ̂(x).
    pub fn feature(&self, x: ArrayView1<'_, f64>) -> Array1<f64> {
        if self.normalise {
            self.map.normalised_feature(x)
        } else {
            self.map.w.dot(&x) + &self.map.b
        }
    }
}

/// Where the kernelized dynamics went from one query ([`fixed_point`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FixedPoint {
    /// The state reached (N).
    pub state: Array1<f64>,
    /// The weights p at that state (M).
    pub weights: Vec<f64>,
    /// Updates applied.
    pub steps: usize,
    /// Whether the last update moved no coordinate by more than the tolerance.
    pub converged: bool,
}

/// The kernelized dynamics x ← Ξᵀ p(x), p(x) = weights(β K(Ξ, x)), from `query`, in f64:
/// at most `retrieval.max_steps` updates, stopping when no coordinate moves by more than
/// `retrieval.tolerance`; `features` holds the memories' features (M × D_Φ, from
/// [`Kernel::features`]). The definition `dam::Retriever` with a feature map follows.
pub fn fixed_point(
    kernel: &Kernel,
    memories: ArrayView2<'_, f64>,
    features: ArrayView2<'_, f64>,
    query: ArrayView1<'_, f64>,
    retrieval: &Retrieval,
) -> FixedPoint {
    let weights_at = |x: ArrayView1<'_, f64>| {
        let f = kernel.feature(x);
        let mut p: Vec<f64> = features
            .rows()
            .into_iter()
            .map(|h| retrieval.beta * h.dot(&f))
            .collect();
        retrieval.weights.apply(&mut p);
        p
    };
    let mut x = query.to_owned();
    let mut steps = 0;
    let mut converged = false;
    while steps < retrieval.max_steps.max(1) {
        let p = weights_at(x.view());
        let next = memories.t().dot(&ArrayView1::from(&p[..]));
        let moved = next
            .iter()
            .zip(x.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        x = next;
        steps += 1;
        if moved <= retrieval.tolerance {
            converged = true;
            break;
        }
    }
    // The weights at the state reached.
    let weights = weights_at(x.view());
    FixedPoint {
        state: x,
        weights,
        steps,
        converged,
    }
}

/// Each row divided by its norm, and the norms (a zero row stays zero).
pub fn normalise_rows(phi: ArrayView2<'_, f64>) -> (Array2<f64>, Vec<f64>) {
    let mut hat = phi.to_owned();
    let mut norms = Vec::with_capacity(phi.nrows());
    for mut row in hat.rows_mut() {
        let norm = row.dot(&row).sqrt();
        if norm > 0.0 {
            row /= norm;
        }
        norms.push(norm);
    }
    (hat, norms)
}

/// The loss and the pair weights of a Gram matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Epilogue {
    /// L.
    pub loss: f64,
    /// a_{μν} (symmetric, zero diagonal, Σ_{μ<ν} a_{μν} = 1).
    pub weights: Array2<f64>,
    /// 1 − max_{μ≠ν} G_{μν}.
    pub min_separation: f64,
}

/// L, a and the smallest separation from the Gram matrix G = Φ̂Φ̂ᵀ (M × M, M ≥ 2; only the
/// upper triangle is read, so an f32 product's asymmetry in the last bit does not matter).
pub fn separation_epilogue(gram: ArrayView2<'_, f64>, tau: f64) -> Epilogue {
    let m = gram.nrows();
    let mut top = f64::NEG_INFINITY;
    for mu in 0..m {
        for nu in mu + 1..m {
            top = top.max(gram[[mu, nu]]);
        }
    }
    let shift = top / tau;
    let mut weights = Array2::<f64>::zeros((m, m));
    let mut sum = 0.0;
    for mu in 0..m {
        for nu in mu + 1..m {
            let e = (gram[[mu, nu]] / tau - shift).exp();
            weights[[mu, nu]] = e;
            sum += e;
        }
    }
    for mu in 0..m {
        for nu in mu + 1..m {
            let a = weights[[mu, nu]] / sum;
            weights[[mu, nu]] = a;
            weights[[nu, mu]] = a;
        }
    }
    let pairs = (m * (m - 1)) as f64 / 2.0;
    Epilogue {
        loss: shift + sum.ln() - pairs.ln(),
        weights,
        min_separation: 1.0 - top,
    }
}

/// ∂L/∂W and ∂L/∂b from the pair weights, the normalised features Φ̂ (M × D), their norms
/// and the memories Ξ (M × N).
pub fn backpropagate(
    weights: ArrayView2<'_, f64>,
    hat: ArrayView2<'_, f64>,
    norms: &[f64],
    memories: ArrayView2<'_, f64>,
    tau: f64,
) -> (Array2<f64>, Array1<f64>) {
    // ∂L/∂Φ̂ = (1/τ) a Φ̂ (a has a zero diagonal).
    let mut d = weights.dot(&hat) / tau;
    for ((mut g, h), &norm) in d.rows_mut().into_iter().zip(hat.rows()).zip(norms) {
        let along = g.dot(&h);
        g.scaled_add(-along, &h);
        if norm > 0.0 {
            g /= norm;
        } else {
            g.fill(0.0);
        }
    }
    let grad_w = d.t().dot(&memories);
    let grad_b = d.sum_axis(Axis(0));
    (grad_w, grad_b)
}

/// The loss, the smallest separation and the gradient at a feature map.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// L.
    pub loss: f64,
    /// 1 − max_{μ≠ν} cos(Φ_μ, Φ_ν).
    pub min_separation: f64,
    /// ∂L/∂W (D × N).
    pub grad_w: Array2<f64>,
    /// ∂L/∂b (D).
    pub grad_b: Array1<f64>,
}

/// L and its gradient with the Gram matrix Φ̂Φ̂ᵀ computed by `gram(Φ̂)` (a device's matrix
/// product); the rest in f64 here.
pub fn evaluate_with<E>(
    map: &FeatureMap,
    memories: ArrayView2<'_, f64>,
    tau: f64,
    gram: impl FnOnce(ArrayView2<'_, f64>) -> Result<Array2<f64>, E>,
) -> Result<Evaluation, E> {
    let phi = map.features(memories);
    let (hat, norms) = normalise_rows(phi.view());
    let g = gram(hat.view())?;
    let epilogue = separation_epilogue(g.view(), tau);
    let (grad_w, grad_b) =
        backpropagate(epilogue.weights.view(), hat.view(), &norms, memories, tau);
    Ok(Evaluation {
        loss: epilogue.loss,
        min_separation: epilogue.min_separation,
        grad_w,
        grad_b,
    })
}

/// [`evaluate_with`] with the Gram matrix in f64 (the reference).
pub fn evaluate(map: &FeatureMap, memories: ArrayView2<'_, f64>, tau: f64) -> Evaluation {
    let result: Result<Evaluation, std::convert::Infallible> =
        evaluate_with(map, memories, tau, |hat| Ok(hat.dot(&hat.t())));
    match result {
        Ok(e) => e,
        Err(never) => match never {},
    }
}

/// The loss alone (f64), for finite differences.
pub fn loss(map: &FeatureMap, memories: ArrayView2<'_, f64>, tau: f64) -> f64 {
    let (hat, _) = normalise_rows(map.features(memories).view());
    separation_epilogue(hat.dot(&hat.t()).view(), tau).loss
}

/// 1 − max_{μ≠ν} cos(Φ_μ, Φ_ν) of the memories' features.
pub fn min_separation(map: &FeatureMap, memories: ArrayView2<'_, f64>) -> f64 {
    let (hat, _) = normalise_rows(map.features(memories).view());
    let g = hat.dot(&hat.t());
    let m = g.nrows();
    let mut top = f64::NEG_INFINITY;
    for mu in 0..m {
        for nu in mu + 1..m {
            top = top.max(g[[mu, nu]]);
        }
    }
    1.0 - top
}

/// The retrieval weights p = weights(β s) of the similarities s: softmax, or the sparse
/// α-entmax of [`crate::entmax`] (sparsemax at α = 2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Weights {
    /// p = softmax(β s); a weight counts above 0.01.
    Softmax,
    /// p = α-entmax(β s), 1 < α ≤ 2; a weight counts above 0.
    Entmax {
        /// α.
        alpha: f64,
    },
}

impl Weights {
    /// `softmax`, `sparsemax` (α = 2), `entmax` (α = 1.5) or `entmax:ALPHA`.
    pub fn parse(name: &str) -> crate::Result<Self> {
        let name = name.trim().to_ascii_lowercase();
        let bad = |reason: &str| crate::Error::InvalidParameter {
            argument: "separation",
            value: name.clone(),
            reason: reason.into(),
        };
        match name.as_str() {
            "softmax" | "lse" => Ok(Weights::Softmax),
            "sparsemax" => Ok(Weights::Entmax {
                alpha: crate::entmax::SPARSEMAX_ALPHA as f64,
            }),
            "entmax" => Ok(Weights::Entmax {
                alpha: crate::entmax::DEFAULT_ALPHA as f64,
            }),
            other => match other.strip_prefix("entmax:") {
                Some(a) => {
                    let alpha: f64 = a
                        .parse()
                        .map_err(|_| bad("entmax:ALPHA needs a number, e.g. entmax:1.5"))?;
                    if !(alpha > 1.0 && alpha <= 2.0) {
                        return Err(bad("entmax needs 1 < α ≤ 2"));
                    }
                    Ok(Weights::Entmax { alpha })
                }
                None => Err(bad("use softmax, sparsemax, entmax or entmax:ALPHA")),
            },
        }
    }

    /// The weights of the scores `z` = β s, in place.
    pub fn apply(&self, z: &mut [f64]) {
        match self {
            Weights::Softmax => {
                let top = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let mut sum = 0.0;
                for v in z.iter_mut() {
                    *v = (*v - top).exp();
                    sum += *v;
                }
                z.iter_mut().for_each(|v| *v /= sum);
            }
            Weights::Entmax { alpha } => {
                let p = crate::entmax::entmax(*alpha, z).weights;
                z.copy_from_slice(&p);
            }
        }
    }

    /// A weight counts towards ‖p‖ when it is above this.
    pub fn threshold(&self) -> f64 {
        match self {
            Weights::Softmax => 0.01,
            Weights::Entmax { .. } => 0.0,
        }
    }

    /// `softmax`, `sparsemax` or `entmax:ALPHA`.
    pub fn name(&self) -> String {
        match self {
            Weights::Softmax => "softmax".into(),
            Weights::Entmax { alpha } if *alpha == crate::entmax::SPARSEMAX_ALPHA as f64 => {
                "sparsemax".into()
            }
            Weights::Entmax { alpha } => format!("entmax:{alpha}"),
        }
    }
}

/// How the fixed point is sought.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retrieval {
    /// β.
    pub beta: f64,
    /// The weight function.
    pub weights: Weights,
    /// Updates at most.
    pub max_steps: usize,
    /// Stop when max_i |x_i' − x_i| ≤ this.
    pub tolerance: f64,
}

impl Default for Retrieval {
    fn default() -> Self {
        Self {
            beta: 1.0,
            weights: Weights::Softmax,
            max_steps: 200,
            tolerance: 1e-9,
        }
    }
}

/// The weights p at the fixed point of x ← Ξᵀ p(x), p(x) = weights(β ⟨Φ̂(ξ_μ), Φ̂(x)⟩), from
/// `query`; `hat` holds the memories' normalised features (M × D). ([`fixed_point`] with
/// a normalised [`Kernel`]; it copies the map, so loops should call that instead.)
pub fn fixed_point_weights(
    map: &FeatureMap,
    memories: ArrayView2<'_, f64>,
    hat: ArrayView2<'_, f64>,
    query: ArrayView1<'_, f64>,
    retrieval: &Retrieval,
) -> Vec<f64> {
    let kernel = Kernel::new(map.clone(), true);
    fixed_point(&kernel, memories, hat, query, retrieval).weights
}

/// ‖p‖: the number of weights above `threshold`.
pub fn metastable_size(p: &[f64], threshold: f64) -> usize {
    p.iter().filter(|&&v| v > threshold).count()
}

/// The histogram of ‖p‖ over `queries` (rows): entry k counts the queries whose fixed point
/// has ‖p‖ = k (length M + 1; ‖p‖ = 0 happens with softmax when M > 100 and the weights are
/// all near 1/M).
pub fn metastable_histogram(
    map: &FeatureMap,
    memories: ArrayView2<'_, f64>,
    queries: ArrayView2<'_, f64>,
    retrieval: &Retrieval,
) -> Vec<usize> {
    metastable_histogram_of(
        &Kernel::new(map.clone(), true),
        memories,
        queries,
        retrieval,
    )
}

/// [`metastable_histogram`] through any [`Kernel`]: on normalised features (a cosine, as
/// there) or on the features themselves, K(u, v) = ⟨Φ(u), Φ(v)⟩.
pub fn metastable_histogram_of(
    kernel: &Kernel,
    memories: ArrayView2<'_, f64>,
    queries: ArrayView2<'_, f64>,
    retrieval: &Retrieval,
) -> Vec<usize> {
    let hat = kernel.features(memories);
    let mut counts = vec![0usize; memories.nrows() + 1];
    for q in queries.rows() {
        let p = fixed_point(kernel, memories, hat.view(), q, retrieval).weights;
        counts[metastable_size(&p, retrieval.weights.threshold())] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_of_a_regular_simplex_is_its_cosine_over_tau() {
        // Every pair at cos = −1/(M−1): L = −1/((M−1)τ) exactly.
        let m = 4;
        let g = Array2::from_shape_fn((m, m), |(i, j)| if i == j { 1.0 } else { -1.0 / 3.0 });
        let e = separation_epilogue(g.view(), 0.1);
        assert!((e.loss + 1.0 / 0.3).abs() < 1e-12, "{}", e.loss);
        assert!((e.min_separation - 4.0 / 3.0).abs() < 1e-12);
        assert!((e.weights[[0, 1]] - 1.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn softmax_counts_weights_above_a_hundredth() {
        let mut p = vec![10.0, 0.0, 0.0];
        Weights::Softmax.apply(&mut p);
        assert_eq!(metastable_size(&p, Weights::Softmax.threshold()), 1);
        let mut p = vec![1.0, 1.0, -20.0];
        Weights::Softmax.apply(&mut p);
        assert_eq!(metastable_size(&p, Weights::Softmax.threshold()), 2);
    }
}
