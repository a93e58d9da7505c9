//! The fast random-feature path (`dam_cpu::features`) against the reference
//! (`dam_cpu::reference::features`): T = Σ φ(ξ), s = φ(x)·T and ∇s, both kinds, ragged
//! sizes, more rows than one block per thread, and the rows the fast path declines.
//!
//! Every comparison is `|fast − ref| ≤ atol·scale + rtol·|ref|`, where `scale` is the
//! magnitude the error is proportional to (a sum with cancellation can be far smaller
//! than its terms). The fast path's only approximation before the gradient is the f32
//! phase u = ω·x: its error δ is ~√N·2⁻²⁴·Σ|ω_i x_i|, at most ~4e-6 at the sizes here
//! (N ≤ 33, β ≤ 4, ‖x‖ ≤ 1.5) and typically ~1e-7. Fourier terms move by c·δ in absolute
//! terms, positive ones by √β·δ relatively; the f64 epilogue adds ~1e-15.

use dam_core::features::{FeatureKind, FeatureSpec};
use dam_cpu::features::{feature_sum, values_and_grads};
use dam_cpu::reference::features as reference;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// T, Fourier: atol relative to c·R (the largest |T_j| can be). The errors of R terms of
/// c·δ add up at random, ~c·√R·δ; the worst seen here is ~1e-7·c·R. A wrong phase or a
/// lost row moves T by ~c, 1/R of c·R: 2.7e-2 at the 37 rows of the ragged cases.
const T_FOURIER_ATOL: f64 = 4e-7;
/// T, positive: every term is positive, so relative (√β·δ per term; worst seen ~7e-7).
const T_POSITIVE_RTOL: f64 = 4e-6;
/// s: atol relative to Σ_j |terms of s| (each term moves by its size times δ, or √β·δ),
/// plus rtol (positive s has no cancellation). Worst seen: a fifth of this.
const S_ATOL: f64 = 3e-6;
const S_RTOL: f64 = 3e-6;
/// ∇s: atol relative to Σ_j |coef_j|·‖ω_j‖∞ (+ the positive x term), the size of the
/// terms of the f32 product Coef·Ω: coefficients rounded to f32 (2⁻²⁴) and phases off by
/// δ, summed in f32 over at most 1,024 frequencies per block (~√1024·2⁻²⁴ ≈ 2e-6 at
/// worst, far less in practice). Worst seen: a sixth of this.
const G_ATOL: f64 = 3e-6;
const G_RTOL: f64 = 1.5e-6;
/// A declined row or state is the reference's own result.
const DECLINED_EXACT: f64 = 0.0;

fn spec(kind: FeatureKind, dim: usize, frequencies: usize, beta: f64, seed: u64) -> FeatureSpec {
    FeatureSpec {
        kind,
        dim,
        features: match kind {
            FeatureKind::Fourier => 2 * frequencies,
            FeatureKind::PositiveExp => frequencies,
        },
        beta,
        seed,
    }
}

/// R rows of norm about `radius` (entries uniform, then scaled to the norm).
fn rows(rng: &mut StdRng, count: usize, dim: usize, radius: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(count * dim);
    for _ in 0..count {
        let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
        let r = radius * rng.random_range(0.5f32..1.5);
        out.extend(v.iter().map(|x| x * r / norm));
    }
    out
}

/// Asserts `|fast − ref| ≤ atol·scale + rtol·|ref|` element by element (lengths first).
fn close(label: &str, fast: &[f64], want: &[f64], scale: &[f64], atol: f64, rtol: f64) {
    assert_eq!(fast.len(), want.len(), "{label}: lengths");
    assert_eq!(scale.len(), want.len(), "{label}: scale length");
    for (i, ((&a, &e), &m)) in fast.iter().zip(want).zip(scale).enumerate() {
        let allowed = atol * m + rtol * e.abs();
        assert!(
            (a - e).abs() <= allowed,
            "{label}: element {i}: fast {a} vs reference {e} (|Δ| {:e} > {allowed:e})",
            (a - e).abs()
        );
    }
}

fn check_sum(sp: &FeatureSpec, omega: &[f32], x: &[f32], label: &str) -> Vec<f64> {
    let fast = feature_sum(sp, omega, x);
    let want = reference::feature_sum(sp, omega, x);
    let count = (x.len() / sp.dim) as f64;
    match sp.kind {
        FeatureKind::Fourier => {
            let scale = vec![sp.scale() * count; want.len()];
            close(label, &fast, &want, &scale, T_FOURIER_ATOL, 0.0);
        }
        FeatureKind::PositiveExp => {
            let scale = vec![0.0; want.len()];
            close(label, &fast, &want, &scale, 0.0, T_POSITIVE_RTOL);
        }
    }
    want
}

/// Per state: the magnitudes s and ∇s are made of (see the module docs).
fn scales(sp: &FeatureSpec, omega: &[f32], t: &[f64], x: &[f32]) -> (f64, f64) {
    let (n, f, c) = (sp.dim, sp.frequencies(), sp.scale());
    let widest: Vec<f64> = omega
        .chunks_exact(n)
        .map(|w| w.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64)))
        .collect();
    assert_eq!(widest.len(), f);
    match sp.kind {
        FeatureKind::Fourier => {
            let size: Vec<f64> = (0..f).map(|j| c * t[j].hypot(t[f + j])).collect();
            let value = size.iter().sum();
            let grad = size.iter().zip(&widest).map(|(s, w)| s * w).sum();
            (value, grad)
        }
        FeatureKind::PositiveExp => {
            let phi = reference::phi(sp, omega, x);
            assert_eq!(phi.len(), f);
            let terms: Vec<f64> = phi.iter().zip(t).map(|(p, t)| (p * t).abs()).collect();
            let value: f64 = terms.iter().sum();
            let xmax = x.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
            let grad = sp.beta.sqrt() * terms.iter().zip(&widest).map(|(a, w)| a * w).sum::<f64>()
                + 2.0 * sp.beta * xmax * value;
            (value, grad)
        }
    }
}

fn check_values(sp: &FeatureSpec, omega: &[f32], t: &[f64], states: &[f32], label: &str) {
    let n = sp.dim;
    let b = states.len() / n;
    let (values, grads) = values_and_grads(sp, omega, t, states);
    assert_eq!(values.len(), b, "{label}: values");
    assert_eq!(grads.len(), b * n, "{label}: gradients");
    for (q, x) in states.chunks_exact(n).enumerate() {
        let (s, g) = reference::value_and_grad(sp, omega, t, x);
        assert_eq!(g.len(), n);
        let (vs, gs) = scales(sp, omega, t, x);
        let q_label = format!("{label} state {q}");
        close(
            &format!("{q_label} s"),
            &values[q..q + 1],
            &[s],
            &[vs],
            S_ATOL,
            S_RTOL,
        );
        close(
            &format!("{q_label} ∇s"),
            &grads[q * n..(q + 1) * n],
            &g,
            &vec![gs; n],
            G_ATOL,
            G_RTOL,
        );
    }
}

#[test]
fn ragged_sizes_match_the_reference() {
    let mut rng = StdRng::seed_from_u64(21);
    for kind in [FeatureKind::Fourier, FeatureKind::PositiveExp] {
        for dim in [1usize, 7, 33] {
            for frequencies in [1usize, 13, 257] {
                for beta in [0.5, 4.0] {
                    let sp = spec(kind, dim, frequencies, beta, 7 + dim as u64);
                    let omega = sp.omega();
                    let label = format!("{kind:?} N={dim} F={frequencies} β={beta}");
                    let patterns = rows(&mut rng, 37, dim, 1.0);
                    let t = check_sum(&sp, &omega, &patterns, &format!("{label} T"));
                    for b in [1usize, 3, 65] {
                        let states = rows(&mut rng, b, dim, 1.0);
                        check_values(&sp, &omega, &t, &states, &format!("{label} B={b}"));
                    }
                }
            }
        }
    }
}

#[test]
fn many_rows_span_several_blocks_per_thread() {
    // 1,000 rows: 16 blocks of 64, so several per thread on any core count; F = 1,100
    // spans two frequency blocks; 70 states span two state blocks.
    let mut rng = StdRng::seed_from_u64(22);
    for kind in [FeatureKind::Fourier, FeatureKind::PositiveExp] {
        let sp = spec(kind, 33, 1100, 1.0, 3);
        let omega = sp.omega();
        let label = format!("{kind:?} many rows");
        let patterns = rows(&mut rng, 1000, 33, 1.0);
        let t = check_sum(&sp, &omega, &patterns, &format!("{label} T"));
        // T is additive: the fast sum of two halves is the fast sum of all rows.
        let (first, second) = patterns.split_at(500 * 33);
        let (a, b) = (
            feature_sum(&sp, &omega, first),
            feature_sum(&sp, &omega, second),
        );
        assert_eq!(a.len(), t.len());
        assert_eq!(b.len(), t.len());
        let halves: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let count = match kind {
            FeatureKind::Fourier => sp.scale() * 1000.0,
            FeatureKind::PositiveExp => 0.0,
        };
        close(
            &format!("{label} halves"),
            &halves,
            &feature_sum(&sp, &omega, &patterns),
            &vec![count; t.len()],
            1e-12,
            1e-12,
        );
        let states = rows(&mut rng, 70, 33, 1.0);
        check_values(&sp, &omega, &t, &states, &label);
        let one = &states[..33];
        check_values(&sp, &omega, &t, one, &format!("{label} one state"));
    }
}

#[test]
fn empty_inputs() {
    for kind in [FeatureKind::Fourier, FeatureKind::PositiveExp] {
        let sp = spec(kind, 5, 9, 1.0, 1);
        let omega = sp.omega();
        assert_eq!(feature_sum(&sp, &omega, &[]), vec![0.0; sp.features]);
        let t = vec![1.0; sp.features];
        let (v, g) = values_and_grads(&sp, &omega, &t, &[]);
        assert!(v.is_empty() && g.is_empty());
    }
}

#[test]
fn rows_beyond_the_phase_limit_are_the_reference() {
    // N = 7, β = 4 (Fourier ‖ω_j‖ ≈ √(4·7), positive √β‖ω_j‖ ≈ 2√7): a row of norm
    // 10⁴ is far beyond `dam_cpu::features::PHASE_ERROR_LIMIT`; norm 1 is well within it.
    let mut rng = StdRng::seed_from_u64(23);
    for kind in [FeatureKind::Fourier, FeatureKind::PositiveExp] {
        let sp = spec(kind, 7, 40, 4.0, 9);
        let omega = sp.omega();
        let far = rows(&mut rng, 3, 7, 1e4);
        let sum = feature_sum(&sp, &omega, &far);
        let want = reference::feature_sum(&sp, &omega, &far);
        close(
            &format!("{kind:?} declined T"),
            &sum,
            &want,
            &vec![0.0; want.len()],
            0.0,
            DECLINED_EXACT,
        );
        // Mixed: near rows through the fast path, far ones through the reference.
        let mut mixed = rows(&mut rng, 100, 7, 1.0);
        mixed.extend(&far);
        check_sum(&sp, &omega, &mixed, &format!("{kind:?} mixed T"));
        let t = reference::feature_sum(&sp, &omega, &mixed);
        let mut states = rows(&mut rng, 9, 7, 1.0);
        states.splice(3 * 7..3 * 7, far[..7].iter().copied());
        let (values, grads) = values_and_grads(&sp, &omega, &t, &states);
        assert_eq!(values.len(), 10);
        assert_eq!(grads.len(), 70);
        let (s, g) = reference::value_and_grad(&sp, &omega, &t, &far[..7]);
        assert_eq!(values[3], s, "{kind:?}: declined state's value");
        assert_eq!(
            &grads[21..28],
            &g[..],
            "{kind:?}: declined state's gradient"
        );
        check_values(&sp, &omega, &t, &states, &format!("{kind:?} mixed states"));
    }
}
