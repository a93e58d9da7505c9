//! The reference: the maths of `dam-core` written plainly, one query and one pattern at a
//! time, accumulated in f64 (or exact integers). It favours obviousness over speed; it is
//! the oracle every fast path (the fast CPU backend and wgpu) is tested against, and
//! `dam::Device::Reference` runs it. States are stored as f32 between steps, as on the
//! other devices, so all of them iterate the same f32 dynamical system.

pub mod binary;
pub mod features;
pub mod lagrangian;
pub mod procedural;
pub(crate) mod retriever;

pub use retriever::ReferenceRetriever;

use dam_core::weights::{argmax, energy as energy_from_scores, keeps_state, weights};
use dam_core::{
    checked_energy, validate_queries, Config, Error, Patterns, Result, RetrievalResult,
    SearchResult, Similarity, TopK,
};
use ndarray::{Array2, ArrayView2};

/// s(ξ, x) for one pattern and one state (f64 sums).
pub fn similarity(similarity: Similarity, pattern: &[f32], x: &[f32]) -> f64 {
    similarity.of(pattern, x)
}

/// All P similarities of a state x.
pub fn scores(similarity_kind: Similarity, patterns: &Patterns, x: &[f32]) -> Vec<f64> {
    patterns
        .view()
        .rows()
        .into_iter()
        .map(|row| similarity(similarity_kind, row.as_slice().expect("standard layout"), x))
        .collect()
}

/// One update of one state: proj(factor · Σ_μ w_μ ξ^μ), rounded to f32.
pub fn update(config: &Config, patterns: &Patterns, x: &[f32]) -> Vec<f32> {
    let s = scores(config.similarity, patterns, x);
    let (w, factor) = weights(config.separation, &s);
    if keeps_state(config.separation, &w) {
        return x.to_vec();
    }
    let mut acc = vec![0.0f64; patterns.dim()];
    for (row, &wm) in patterns.view().rows().into_iter().zip(&w) {
        if wm != 0.0 {
            for (a, &p) in acc.iter_mut().zip(row.iter()) {
                *a += wm * p as f64;
            }
        }
    }
    // Project before applying the factor: Sphere and Sign are scale invariant, so the
    // (possibly huge) exponential factor only matters without a projection.
    config.projection.apply(&mut acc);
    let factor = if config.projection == dam_core::Projection::None {
        factor
    } else {
        1.0
    };
    acc.iter().map(|&a| (a * factor) as f32).collect()
}

/// One update of every state (B×N rows, already validated), one query at a time;
/// a state that leaves f32 is [`Error::Overflow`].
pub fn step(
    config: &Config,
    patterns: &Patterns,
    states: ArrayView2<'_, f32>,
) -> Result<Array2<f32>> {
    let mut out = Array2::<f32>::zeros(states.dim());
    for (q, (row, mut o)) in states.rows().into_iter().zip(out.rows_mut()).enumerate() {
        let next = update(config, patterns, &row.to_vec());
        if next.iter().any(|v| !v.is_finite()) {
            return Err(Error::state_overflow(q, 1));
        }
        o.assign(&ndarray::ArrayView1::from(&next));
    }
    Ok(out)
}

/// Energy of one state.
pub fn energy_of(config: &Config, patterns: &Patterns, x: &[f32]) -> f64 {
    energy_from_scores(
        config.separation,
        &scores(config.similarity, patterns, x),
        x,
    )
}

/// Energies of a B×N batch of states.
pub fn energy(
    config: &Config,
    patterns: &Patterns,
    states: ArrayView2<'_, f32>,
) -> Result<Vec<f64>> {
    config.validate(patterns.count())?;
    validate_queries(states, patterns.dim())?;
    patterns.check_range(config, states)?;
    states
        .rows()
        .into_iter()
        .enumerate()
        .map(|(query, row)| {
            checked_energy(
                config.separation,
                energy_of(config, patterns, &row.to_vec()),
                query,
                0,
            )
        })
        .collect()
}

/// Runs the dynamics of `config` from each query; see [`RetrievalResult`].
pub fn retrieve(
    config: &Config,
    patterns: &Patterns,
    queries: ArrayView2<'_, f32>,
) -> Result<RetrievalResult> {
    config.validate(patterns.count())?;
    validate_queries(queries, patterns.dim())?;
    patterns.check_range(config, queries)?;
    let (max_steps, tol) = config.dynamics.budget();
    let (b, n) = queries.dim();
    let mut states = Array2::<f32>::zeros((b, n));
    let mut steps = vec![0; b];
    let mut converged = vec![false; b];
    let mut nearest = vec![0; b];
    let mut energies = vec![0.0; b];
    let mut traces = Vec::with_capacity(b);
    for (q, row) in queries.rows().into_iter().enumerate() {
        let mut x = row.to_vec();
        let energy_at = |x: &[f32], steps: usize| {
            checked_energy(config.separation, energy_of(config, patterns, x), q, steps)
        };
        let mut trace = vec![energy_at(&x, 0)?];
        while steps[q] < max_steps {
            let next = update(config, patterns, &x);
            steps[q] += 1;
            if next.iter().any(|v| !v.is_finite()) {
                return Err(Error::state_overflow(q, steps[q]));
            }
            let delta = next
                .iter()
                .zip(&x)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            x = next;
            trace.push(energy_at(&x, steps[q])?);
            if delta <= tol {
                converged[q] = true;
                break;
            }
        }
        let s = scores(config.similarity, patterns, &x);
        nearest[q] = argmax(&s);
        energies[q] = checked_energy(
            config.separation,
            energy_from_scores(config.separation, &s, &x),
            q,
            steps[q],
        )?;
        states.row_mut(q).assign(&ndarray::ArrayView1::from(&x));
        traces.push(trace);
    }
    Ok(RetrievalResult::new(
        states,
        steps,
        converged,
        nearest,
        energies,
        config.energy_trace.then_some(traces),
        None,
    )
    .with_confidence(config, patterns))
}

/// Exact top-k: every similarity in f64 ([`similarity`]), rounded to f32, kept by
/// [`TopK`]. Inputs must already be validated; `k` ≥ 1.
pub fn search(
    similarity: Similarity,
    patterns: &Patterns,
    queries: ArrayView2<'_, f32>,
    k: usize,
) -> SearchResult {
    let selections = queries
        .rows()
        .into_iter()
        .map(|x| {
            let x = x.to_vec();
            let mut top = TopK::new(k);
            for (row, s) in scores(similarity, patterns, &x).into_iter().enumerate() {
                top.push(row as u64, s as f32);
            }
            top
        })
        .collect();
    SearchResult::from_selections(selections, k.min(patterns.count()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dam_core::weights::{log_sum_exp, top_k};
    use dam_core::Separation;

    #[test]
    fn small_cases_by_hand() {
        assert_eq!(similarity(Similarity::Dot, &[1.0, 2.0], &[3.0, 4.0]), 11.0);
        assert_eq!(
            similarity(Similarity::NegEuclidean, &[0.0, 0.0], &[3.0, 4.0]),
            -5.0
        );
        assert_eq!(
            similarity(Similarity::NegManhattan, &[1.0, 1.0], &[3.0, -4.0]),
            -7.0
        );
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(top_k(&[1.0, 3.0, 3.0, 2.0], 3), vec![1, 2, 3]);
        assert!((log_sum_exp(&[5000.0, 5000.0]) - (5000.0 + 2f64.ln())).abs() < 1e-9);
        let (w, f) = weights(Separation::Exponential { beta: 2.0 }, &[1.0, 0.0]);
        assert_eq!(w[0], 1.0);
        assert!((f - 2.0 * 2f64.exp()).abs() < 1e-12);
        let (w, _) = weights(Separation::RectifiedPolynomial { n: 1 }, &[-1.0, 2.0]);
        assert_eq!(w, vec![0.0, 1.0]);
    }

    #[test]
    fn softmax_retrieves_a_stored_pattern() {
        let p = Patterns::from_vec(2, 2, vec![1.0, 0.0, 0.0, 1.0]).unwrap();
        let config = Config {
            separation: Separation::Softmax { beta: 50.0 },
            energy_trace: true,
            ..Config::default()
        };
        let q = Array2::from_shape_vec((1, 2), vec![0.9, 0.2]).unwrap();
        let r = retrieve(&config, &p, q.view()).unwrap();
        assert_eq!(r.nearest, vec![0]);
        assert!((r.states[[0, 0]] - 1.0).abs() < 1e-6);
        assert!(r.converged[0]);
        assert_eq!(r.energy_trace.unwrap()[0].len(), r.steps[0] + 1);
    }
}
