//! What a retrieval returns.

use ndarray::Array2;

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
    /// −Σ e^{βs} is −∞ once log Σ e^{βs} exceeds the f64 range (≈ 709.78).
    pub energy: Vec<f64>,
    /// When asked for: E(x_0), E(x_1), …, E(x_{steps}) for each query.
    pub energy_trace: Option<Vec<Vec<f64>>>,
}

impl RetrievalResult {
    /// Number of queries B.
    pub fn batch(&self) -> usize {
        self.states.nrows()
    }
}
