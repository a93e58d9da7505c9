//! The seam between the facade and the devices: what every retrieval backend implements.

use ndarray::{Array2, ArrayView2};

use crate::{Edit, Patterns, Result, RetrievalResult, SearchResult};

/// Stored patterns and a retrieval rule, ready on one device. The CPU backend
/// (`dam_cpu::CpuRetriever`) and the wgpu backend (`dam_wgpu::WgpuRetriever`) implement it;
/// `dam::Retriever` holds one of them.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Runs the configured dynamics from each query (B×N); see [`RetrievalResult`].
    fn retrieve(&self, queries: ArrayView2<'_, f32>) -> Result<RetrievalResult>;

    /// One update of the configured rule from each query (B×N), projection applied,
    /// without energies, nearest patterns or convergence bookkeeping: the fastest path the
    /// backend has for it.
    fn step(&self, queries: ArrayView2<'_, f32>) -> Result<Array2<f32>>;

    /// [`Backend::step`], plus the device time of its compute passes in seconds where the
    /// device can measure it (`None` otherwise).
    fn step_timed(&self, queries: ArrayView2<'_, f32>) -> Result<(Array2<f32>, Option<f64>)>;

    /// E(x) for each row of `states` (B×N).
    fn energy(&self, states: ArrayView2<'_, f32>) -> Result<Vec<f64>>;

    /// `cpu (reference)` or `wgpu: <adapter> (<backend>, <device type>)`.
    fn describe(&self) -> String;

    /// Exact top-k: the min(k, P) stored patterns most similar to each query (B×N), by
    /// the configured similarity, best first, ties to the lower row; `ids` are rows.
    fn search(&self, queries: ArrayView2<'_, f32>, k: usize) -> Result<SearchResult>;

    /// s(ξ^μ, x) for each query (B×N) and every stored pattern: B×P, in row order.
    fn similarities(&self, queries: ArrayView2<'_, f32>) -> Result<Array2<f64>>;

    /// The stored patterns (the host copy; as the device holds them, e.g. rounded to f16).
    fn patterns(&self) -> &Patterns;

    /// Applies `edit` to the stored patterns without rebuilding (see
    /// [`Patterns::apply`]); checked first, so on error nothing has changed.
    fn edit(&mut self, edit: Edit<'_>) -> Result<()>;
}
