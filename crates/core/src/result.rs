//! What a retrieval returns.

use ndarray::Array2;

use crate::{Config, Patterns, Separation, Similarity};

/// The outcome of `retrieve` for a batch of B queries.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrievalResult {
    /// Final states, B×N.
    pub states: Array2<f32>,
    /// Update steps applied to each query (a converged query stops being updated).
    pub steps: Vec<usize>,
    /// Whether each query reached ‖x_{t+1} − x_t‖_∞ ≤ tol within the step budget.
    pub converged: Vec<bool>,
    /// Index of the stored pattern most similar to each final state (ties → lowest index).
    pub nearest: Vec<usize>,
    /// Stable id of that pattern (see `dam::Retriever::ids`): what applications keep,
    /// since row positions move when patterns are removed. A memory that was never
    /// edited has ids 0..P, equal to the rows; a backend used directly reports rows.
    pub nearest_id: Vec<u64>,
    /// Energy of each final state. Finite except for `Exponential`, whose energy
    /// −Σ e^{βs} is −∞ once log Σ e^{βs} exceeds the f64 range (≈ 709.78), and for
    /// `LogSumRelu`, whose energy is +∞ where no pattern is within reach (empty support).
    pub energy: Vec<f64>,
    /// When asked for: E(x_0), E(x_1), …, E(x_{steps}) for each query.
    pub energy_trace: Option<Vec<Vec<f64>>>,
    /// For `Softmax`: the weight softmax(β s)_μ of the nearest pattern at the final state,
    /// in [0, 1] — how sure the memory is (1/P when nothing stands out, → 1 when one
    /// pattern dominates). `None` for the other separations.
    pub confidence: Option<Vec<f64>>,
    /// `Some(nearest_id)` for each query, or `None` where the memory abstains: its
    /// confidence is below the threshold set with `dam::RetrieverBuilder::abstain_below`
    /// ("no memory matches"), or where a log-sum-ReLU state has an empty support (infinite
    /// energy). Otherwise every query has `Some`.
    pub matched: Vec<Option<u64>>,
    /// When asked for (`dam::RetrieverBuilder::report_top`): per query, the k stored
    /// patterns with the largest softmax weight at the final state, best first (ties to the
    /// lower id).
    pub top: Option<Vec<Vec<TopEntry>>>,
    /// When asked for (`dam::RetrieverBuilder::report_top`): per query, the participation
    /// ratio 1/Σ_μ p_μ² of the softmax weights p at the final state — the number of
    /// patterns the state mixes (1 for a single stored pattern, up to P for an even blend;
    /// the size of the metastable state).
    pub participation: Option<Vec<f64>>,
}

/// One of the top patterns of a final state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopEntry {
    /// Stable id of the pattern (its row when a backend is used directly).
    pub id: u64,
    /// Its softmax weight softmax(β s)_μ at the final state.
    pub weight: f64,
    /// Its similarity s(ξ^μ, x) to the final state.
    pub similarity: f64,
}

impl Similarity {
    /// s(ξ, x) for one pattern and one state, summed in f64 (the reference definition).
    pub fn of(self, pattern: &[f32], x: &[f32]) -> f64 {
        let pairs = pattern.iter().zip(x).map(|(&p, &q)| (p as f64, q as f64));
        match self {
            Similarity::Dot => pairs.map(|(p, q)| p * q).sum(),
            Similarity::NegEuclidean => -pairs.map(|(p, q)| (p - q) * (p - q)).sum::<f64>().sqrt(),
            Similarity::NegManhattan => -pairs.map(|(p, q)| (p - q).abs()).sum::<f64>(),
        }
    }
}

impl RetrievalResult {
    /// What a backend's dynamics produce: nearest ids are the rows, nothing is matched or
    /// reported yet (the facade maps ids, abstains and reports top patterns).
    pub fn new(
        states: Array2<f32>,
        steps: Vec<usize>,
        converged: Vec<bool>,
        nearest: Vec<usize>,
        energy: Vec<f64>,
        energy_trace: Option<Vec<Vec<f64>>>,
        confidence: Option<Vec<f64>>,
    ) -> Self {
        Self {
            states,
            steps,
            converged,
            nearest_id: nearest.iter().map(|&r| r as u64).collect(),
            nearest,
            energy,
            energy_trace,
            confidence,
            matched: Vec::new(),
            top: None,
            participation: None,
        }
    }

    /// Fills `confidence` (softmax only) from the final states, nearest patterns and
    /// energies, and `matched` with every nearest id: what both backends do last. With
    /// E = −lse(βs)/β + ½‖x‖², the top weight is e^{β s_nearest − lse}.
    pub fn with_confidence(mut self, config: &Config, patterns: &Patterns) -> Self {
        // An infinite energy is an empty log-sum-ReLU support: no pattern matched.
        self.matched = self
            .nearest_id
            .iter()
            .zip(&self.energy)
            .map(|(&id, &e)| (e < f64::INFINITY).then_some(id))
            .collect();
        self.confidence = match config.separation {
            Separation::Softmax { beta } => {
                let beta = beta as f64;
                let view = patterns.view();
                Some(
                    self.states
                        .rows()
                        .into_iter()
                        .zip(&self.nearest)
                        .zip(&self.energy)
                        .map(|((x, &mu), &e)| {
                            let x = x.to_vec();
                            let pattern = view.row(mu);
                            let s = config
                                .similarity
                                .of(pattern.as_slice().expect("standard layout"), &x);
                            let half_norm: f64 =
                                0.5 * x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
                            crate::weights::confidence(beta, s, beta * (half_norm - e))
                        })
                        .collect(),
                )
            }
            _ => None,
        };
        self
    }

    /// Number of queries B.
    pub fn batch(&self) -> usize {
        self.states.nrows()
    }
}
