//! CPU reference backend: the maths of `dam-core`, written plainly, accumulated in f64.
//!
//! Every GPU result is compared against this crate. It favours obviousness over speed:
//! one query at a time, one pattern at a time, f64 sums. States are stored as f32 between
//! steps (as on the GPU), so both backends iterate the same f32 dynamical system.
#![warn(missing_docs)]

pub mod binary;
pub mod fast;
pub mod features;
pub mod learn;
pub mod procedural;
pub mod reference;
mod retriever;
pub mod search;

pub use retriever::CpuRetriever;

use dam_core::{
    checked_energy, validate_queries, Config, Error, Patterns, Projection, Result, RetrievalResult,
    Separation, Similarity,
};
use ndarray::{Array2, ArrayView2};

/// s(ξ, x) for one pattern and one state.
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

/// log Σ e^{v}, with the max subtracted.
pub fn log_sum_exp(values: &[f64]) -> f64 {
    let m = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + values.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// Index of the largest score; ties resolve to the lowest index.
pub fn argmax(scores: &[f64]) -> usize {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best
}

pub use dam_core::weights::{top_k, weights};

/// E(x) from the scores s_μ(x) and the state x.
pub fn energy_from_scores(separation: Separation, scores: &[f64], x: &[f32]) -> f64 {
    match separation {
        Separation::Polynomial { n } => -scores.iter().map(|s| s.powi(n as i32)).sum::<f64>(),
        Separation::RectifiedPolynomial { n } => -scores
            .iter()
            .map(|s| s.max(0.0).powi(n as i32))
            .sum::<f64>(),
        Separation::Exponential { beta } => {
            let scaled: Vec<f64> = scores.iter().map(|s| beta as f64 * s).collect();
            -log_sum_exp(&scaled).exp()
        }
        Separation::Softmax { beta } => {
            let beta = beta as f64;
            let scaled: Vec<f64> = scores.iter().map(|s| beta * s).collect();
            let half_norm: f64 = 0.5 * x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
            -log_sum_exp(&scaled) / beta + half_norm
        }
        Separation::Max => -scores[argmax(scores)],
        Separation::TopK { k } => {
            -top_k(scores, k).iter().map(|&i| scores[i]).sum::<f64>() / k as f64
        }
    }
}

/// Applies a projection to a state in place.
pub fn project(projection: Projection, x: &mut [f64]) {
    match projection {
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

/// One update of one state: proj(factor · Σ_μ w_μ ξ^μ), rounded to f32.
pub fn update(config: &Config, patterns: &Patterns, x: &[f32]) -> Vec<f32> {
    let s = scores(config.similarity, patterns, x);
    let (w, factor) = weights(config.separation, &s);
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
    project(config.projection, &mut acc);
    let factor = if config.projection == Projection::None {
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
    Ok(RetrievalResult {
        states,
        steps,
        converged,
        nearest_id: nearest.iter().map(|&r| r as u64).collect(),
        nearest,
        energy: energies,
        energy_trace: config.energy_trace.then_some(traces),
        confidence: None,
        matched: Vec::new(),
        top: None,
        participation: None,
    }
    .with_confidence(config, patterns))
}

#[cfg(test)]
mod tests {
    use super::*;

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
