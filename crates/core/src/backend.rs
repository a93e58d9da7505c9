//! The seam between the facade and the devices: what every retrieval backend implements.
//!
//! A backend must provide the primitive operations (one update, energies, similarities,
//! search, edits). Everything else has a default here built from them and from the maths
//! of this crate — the retrieval loop of [`crate::dynamics`], clamped retrieval, the
//! reported top patterns, the read-out of values — so a backend overrides only what it
//! does faster.

use ndarray::{s, Array2, ArrayView2};

use crate::dynamics::{self, Evaluated};
use crate::weights::{self, argmax};
use crate::{
    validate_queries, Config, Edit, Error, Patterns, Result, RetrievalResult, SearchResult,
    Separation, TopEntry,
};

/// Stored patterns and a retrieval rule, ready on one device: the reference
/// (`dam_cpu::ReferenceRetriever`), the fast CPU backend (`dam_cpu::CpuRetriever`) and the
/// wgpu backend (`dam_wgpu::WgpuRetriever`) implement it; `dam::Retriever` holds one of
/// them.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The retrieval rule.
    fn config(&self) -> &Config;

    /// One update of the configured rule from each query (B×N), projection applied,
    /// without energies, nearest patterns or convergence bookkeeping: the fastest path the
    /// backend has for it. A state that leaves f32 is [`Error::Overflow`].
    fn step(&self, queries: ArrayView2<'_, f32>) -> Result<Array2<f32>>;

    /// E(x) for each row of `states` (B×N).
    fn energy(&self, states: ArrayView2<'_, f32>) -> Result<Vec<f64>>;

    /// `cpu (2 threads, avx2)`, `cpu reference (f64)` or `wgpu: <adapter> (<backend>,
    /// <device type>)`.
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

    /// [`Backend::step`], plus the device time of its compute passes in seconds where the
    /// device can measure it (`None` otherwise).
    fn step_timed(&self, queries: ArrayView2<'_, f32>) -> Result<(Array2<f32>, Option<f64>)> {
        Ok((self.step(queries)?, None))
    }

    /// One pass over the patterns for a batch of (validated) states: the energy, nearest
    /// pattern and confidence of every state, and the update of the first `updates`
    /// states (a row that left f32 holds non-finite values). The default computes the
    /// updates with [`Backend::step`] and the rest from [`Backend::similarities`] with the
    /// maths of [`crate::weights`].
    fn evaluate(&self, states: ArrayView2<'_, f32>, updates: usize) -> Result<Evaluated> {
        let config = *self.config();
        let next = step_rows(self, states.slice(s![..updates, ..]))?;
        let b = states.nrows();
        let (mut energy, mut nearest) = (Vec::with_capacity(b), Vec::with_capacity(b));
        let mut confidence = Vec::new();
        let mut q = 0;
        similarity_rows(self, states, |scores| {
            let x = states.row(q).to_vec();
            energy.push(weights::energy(config.separation, scores, &x));
            let best = argmax(scores);
            nearest.push(best);
            if let Separation::Softmax { .. } = config.separation {
                confidence.push(weights::weights(config.separation, scores).0[best]);
            }
            q += 1;
        })?;
        let confidence =
            matches!(config.separation, Separation::Softmax { .. }).then_some(confidence);
        Ok(Evaluated {
            next,
            energy,
            nearest,
            confidence,
        })
    }

    /// [`Backend::evaluate`] with the update read out on `values` (P×M, row-aligned with
    /// the patterns) in place of the patterns: `next` (updates × M) is f · Σ_μ w_μ v^μ
    /// with the weights of the rule at each state (no projection; a row that left f32
    /// holds non-finite values), while the energy, nearest pattern and confidence are
    /// those of the states against the patterns. A kernelized memory steps with it (the
    /// patterns are the features Φ(Ξ), the values the memories Ξ). The default is one
    /// pass of [`Backend::similarities`] with the maths of [`crate::weights`], summed in
    /// f64 on the host.
    fn evaluate_values(
        &self,
        states: ArrayView2<'_, f32>,
        updates: usize,
        values: ArrayView2<'_, f32>,
    ) -> Result<Evaluated> {
        let separation = self.config().separation;
        let m = values.ncols();
        let b = states.nrows();
        let mut next = Array2::<f32>::zeros((updates, m));
        let (mut energy, mut nearest) = (Vec::with_capacity(b), Vec::with_capacity(b));
        let mut confidence = Vec::new();
        let softmax = matches!(separation, Separation::Softmax { .. });
        let mut q = 0;
        similarity_rows(self, states, |scores| {
            let x = states.row(q).to_vec();
            energy.push(weights::energy(separation, scores, &x));
            let best = argmax(scores);
            nearest.push(best);
            let (w, factor) = weights::weights(separation, scores);
            if softmax {
                confidence.push(w[best]);
            }
            if q < updates {
                let mut acc = vec![0.0f64; m];
                for (row, &wm) in values.rows().into_iter().zip(&w) {
                    if wm != 0.0 {
                        acc.iter_mut()
                            .zip(row)
                            .for_each(|(a, &v)| *a += wm * v as f64);
                    }
                }
                for (o, a) in next.row_mut(q).iter_mut().zip(&acc) {
                    *o = (a * factor) as f32;
                }
            }
            q += 1;
        })?;
        Ok(Evaluated {
            next,
            energy,
            nearest,
            confidence: softmax.then_some(confidence),
        })
    }

    /// Runs the configured dynamics from each query (B×N); see [`RetrievalResult`]. The
    /// default is the loop of [`crate::dynamics::run`] on [`Backend::evaluate`].
    fn retrieve(&self, queries: ArrayView2<'_, f32>) -> Result<RetrievalResult> {
        self.retrieve_clamped(queries, &[])
    }

    /// [`Backend::retrieve`] with the coordinates `clamped` (strictly increasing, < N)
    /// held at their query values after every update. The default is the loop of
    /// [`crate::dynamics::run`] on [`Backend::evaluate`].
    fn retrieve_clamped(
        &self,
        queries: ArrayView2<'_, f32>,
        clamped: &[usize],
    ) -> Result<RetrievalResult> {
        validate_queries(queries, self.patterns().dim())?;
        self.patterns().check_range(self.config(), queries)?;
        dynamics::run(self.config(), queries, clamped, |x, u| self.evaluate(x, u))
    }

    /// For softmax at β: the k patterns of largest weight at each state (rows as ids, best
    /// first, ties to the lower row) and the participation ratio 1/Σ p² of the weights.
    fn top(
        &self,
        states: ArrayView2<'_, f32>,
        beta: f32,
        k: usize,
    ) -> Result<(Vec<Vec<TopEntry>>, Vec<f64>)> {
        let p = self.patterns().count();
        let (mut top, mut participation) = (Vec::new(), Vec::new());
        similarity_rows(self, states, |scores| {
            let (w, _) = weights::weights(Separation::Softmax { beta }, scores);
            participation.push(1.0 / w.iter().map(|v| v * v).sum::<f64>());
            top.push(
                weights::top_k(scores, k.min(p))
                    .into_iter()
                    .map(|mu| TopEntry {
                        id: mu as u64,
                        weight: w[mu],
                        similarity: scores[mu],
                    })
                    .collect(),
            );
        })?;
        Ok((top, participation))
    }

    /// Hetero-association: for each query (B×N), f · Σ_μ w_μ v^μ (B×M) with the weights
    /// of one update of the rule at the query and `values` (P×M, row-aligned with the
    /// patterns); no projection. A sum beyond f32 is [`Error::Overflow`]. The default
    /// sums in f64 on the host from [`Backend::similarities`].
    fn weighted_values(
        &self,
        queries: ArrayView2<'_, f32>,
        values: ArrayView2<'_, f32>,
    ) -> Result<Array2<f32>> {
        let separation = self.config().separation;
        let m = values.ncols();
        let mut out = Array2::<f32>::zeros((queries.nrows(), m));
        let mut q = 0;
        similarity_rows(self, queries, |scores| {
            let (w, factor) = weights::weights(separation, scores);
            let mut acc = vec![0.0f64; m];
            for (row, &wm) in values.rows().into_iter().zip(&w) {
                if wm != 0.0 {
                    acc.iter_mut()
                        .zip(row)
                        .for_each(|(a, &x)| *a += wm * x as f64);
                }
            }
            for (o, a) in out.row_mut(q).iter_mut().zip(&acc) {
                *o = (a * factor) as f32;
            }
            q += 1;
        })?;
        match first_non_finite(out.view()) {
            Some(query) => Err(value_overflow(query)),
            None => Ok(out),
        }
    }
}

/// The first row holding a non-finite value (a state or value that left f32), if any.
pub fn first_non_finite(rows: ArrayView2<'_, f32>) -> Option<usize> {
    rows.rows()
        .into_iter()
        .position(|r| r.iter().any(|v| !v.is_finite()))
}

/// The error of a value read-out that left f32.
pub fn value_overflow(query: usize) -> Error {
    Error::Overflow {
        what: "value",
        query,
        steps: 1,
        hint: "the weighted sum of values left f32; lower β or rescale",
    }
}

/// Calls `row` with the similarities (f64, one per stored pattern) of each state in
/// order, computed by the backend in passes of at most 256 MiB of scores.
pub fn similarity_rows<B: Backend + ?Sized>(
    backend: &B,
    states: ArrayView2<'_, f32>,
    mut row: impl FnMut(&[f64]),
) -> Result<()> {
    let per_pass = ((256usize << 20) / (8 * backend.patterns().count().max(1))).max(1);
    for start in (0..states.nrows()).step_by(per_pass) {
        let end = (start + per_pass).min(states.nrows());
        let s = backend.similarities(states.slice(s![start..end, ..]))?;
        for r in s.rows() {
            row(&r.to_vec());
        }
    }
    Ok(())
}

/// [`Backend::step`] of every row, with the rows whose update left f32 set to NaN
/// instead of failing the batch (the retrieval loop reports them per query).
fn step_rows<B: Backend + ?Sized>(backend: &B, states: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
    let mut out = Array2::<f32>::zeros(states.dim());
    let mut start = 0;
    while start < states.nrows() {
        match backend.step(states.slice(s![start.., ..])) {
            Ok(rows) => {
                out.slice_mut(s![start.., ..]).assign(&rows);
                break;
            }
            Err(Error::Overflow {
                what: "state",
                query,
                ..
            }) => {
                let bad = start + query;
                if query > 0 {
                    let rows = backend.step(states.slice(s![start..bad, ..]))?;
                    out.slice_mut(s![start..bad, ..]).assign(&rows);
                }
                out.row_mut(bad).fill(f32::NAN);
                start = bad + 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
