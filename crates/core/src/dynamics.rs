//! The retrieval loop, written once for every backend that evaluates a batch of states in
//! one pass over the patterns: one step or iterate to a fixed point with per-query
//! convergence (a converged query leaves the batch), clamped coordinates, the energy trace,
//! and the nearest pattern, energy and confidence at the final state.
//!
//! A backend supplies one operation, [`Evaluated`] = `evaluate(states, updates)`: the
//! energy, nearest pattern and confidence of every state, and the next state (the
//! configured update with its projection) of the first `updates` states. The loop orders
//! each batch so that the states still moving come first; a state whose dynamics are over
//! is evaluated once more (its final energy and nearest pattern) without an update.

use ndarray::{Array2, ArrayView2, Axis};

use crate::{checked_energy, Config, Error, Result, RetrievalResult};

/// What one evaluation of a batch of B states gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    /// The next state of each of the first `updates` states (updates × N), projection
    /// applied; a row that left f32 holds a non-finite value.
    pub next: Array2<f32>,
    /// E(x) of every state (unchecked: the loop applies [`checked_energy`]).
    pub energy: Vec<f64>,
    /// The most similar stored pattern of every state (ties → lowest row).
    pub nearest: Vec<usize>,
    /// For softmax: the nearest pattern's weight ([`crate::weights::confidence`]).
    pub confidence: Option<Vec<f64>>,
}

/// Runs the dynamics of `config` from each query (B×N, validated by the caller), holding
/// the coordinates in `clamped` at their query values after every update, with
/// `evaluate(states, updates)` as the one pass over the patterns. Errors are those of the
/// reference, for the lowest query that has one: an energy out of range
/// ([`checked_energy`]) or a state that left f32 ([`Error::state_overflow`]).
pub fn run(
    config: &Config,
    queries: ArrayView2<'_, f32>,
    clamped: &[usize],
    mut evaluate: impl FnMut(ArrayView2<'_, f32>, usize) -> Result<Evaluated>,
) -> Result<RetrievalResult> {
    let (max_steps, tol) = config.dynamics.budget();
    let b = queries.nrows();
    let mut states = queries.to_owned();
    let mut steps = vec![0usize; b];
    let mut converged = vec![false; b];
    let mut finished = vec![false; b];
    let mut nearest = vec![0usize; b];
    let mut energy = vec![0.0f64; b];
    let mut confidence = vec![0.0f64; b];
    let mut has_confidence = false;
    let mut traces: Vec<Vec<f64>> = vec![Vec::new(); b];
    let mut failure: Option<(usize, Error)> = None;
    let mut pending: Vec<usize> = (0..b).collect();
    while !pending.is_empty() {
        // Moving states first: `evaluate` updates a prefix of the batch.
        pending.sort_by_key(|&q| (finished[q], q));
        let updates = pending.iter().filter(|&&q| !finished[q]).count();
        let batch = states.select(Axis(0), &pending);
        let out = evaluate(batch.view(), updates)?;
        check_shapes(&out, &batch, updates)?;
        let mut still = Vec::with_capacity(pending.len());
        for (r, &q) in pending.iter().enumerate() {
            if failure.as_ref().is_some_and(|&(first, _)| first < q) {
                continue;
            }
            let e = match checked_energy(config.separation, out.energy[r], q, steps[q]) {
                Ok(e) => e,
                Err(err) => {
                    failure = Some((q, err));
                    continue;
                }
            };
            traces[q].push(e);
            if finished[q] {
                energy[q] = e;
                nearest[q] = out.nearest[r];
                if let Some(c) = &out.confidence {
                    confidence[q] = c[r];
                    has_confidence = true;
                }
                continue;
            }
            let mut next = out.next.row(r).to_owned();
            let old = batch.row(r);
            for &i in clamped {
                next[i] = old[i];
            }
            steps[q] += 1;
            if next.iter().any(|v| !v.is_finite()) {
                failure = Some((q, Error::state_overflow(q, steps[q])));
                continue;
            }
            let change = next
                .iter()
                .zip(old.iter())
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            states.row_mut(q).assign(&next);
            converged[q] = change <= tol;
            finished[q] = converged[q] || steps[q] >= max_steps;
            still.push(q);
        }
        pending = still;
    }
    if let Some((_, err)) = failure {
        return Err(err);
    }
    Ok(RetrievalResult::new(
        states,
        steps,
        converged,
        nearest,
        energy,
        config.energy_trace.then_some(traces),
        has_confidence.then_some(confidence),
    ))
}

/// An evaluation must answer for every state it was given.
fn check_shapes(out: &Evaluated, batch: &Array2<f32>, updates: usize) -> Result<()> {
    let b = batch.nrows();
    let wrong = |what: &str, got: usize, want: usize| Error::Backend {
        backend: "evaluate",
        source: format!("{what}: {got} values for {want} states").into(),
    };
    if out.energy.len() != b {
        return Err(wrong("energy", out.energy.len(), b));
    }
    if out.nearest.len() != b {
        return Err(wrong("nearest", out.nearest.len(), b));
    }
    if let Some(c) = &out.confidence {
        if c.len() != b {
            return Err(wrong("confidence", c.len(), b));
        }
    }
    if out.next.nrows() != updates || (updates > 0 && out.next.ncols() != batch.ncols()) {
        return Err(wrong("next states", out.next.nrows(), updates));
    }
    Ok(())
}
