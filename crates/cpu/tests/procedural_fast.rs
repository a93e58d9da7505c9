//! The fast procedural stream (`dam_cpu::procedural`) against the reference
//! (`dam_cpu::reference::procedural`) and against `dam_core::procedural::fill`.

use dam_core::procedural::{fill, PatternKind, Stream, StreamRequest, StreamStats};
use dam_cpu::procedural::{fill_patterns, stream_dot};
use dam_cpu::reference::procedural::stream_dot as reference_stream_dot;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Gaussian entries: `fill` uses the platform's f32 `ln`, `sin`, `cos` (within 1 ulp of
/// the correctly rounded value), the fast path correctly rounded ones. One ulp on ln u
/// is at most one on r = √(−2 ln u), and r·cos θ rounds the product of two values each
/// at most 1 ulp off: at most 3 ulps. The spherical rescale multiplies by √N/‖v‖, whose
/// relative change is at most that of the entries, and rounds once more; 8 ulps of the
/// larger of the two values covers both.
const GAUSSIAN_ENTRY_ULPS: f32 = 8.0;

/// Share of Gaussian entries that must equal `fill`'s exactly. They differ only where
/// the platform's libm is not correctly rounded (about 1 % of inputs for each of ln,
/// sin, cos with glibc, so ~98 % agree); a systematic error would show far more.
const GAUSSIAN_EXACT_SHARE: f64 = 0.9;

/// ±1 patterns are identical, and so are s, z = β·s and the running max; l, acc and so
/// lse and mean differ by f64 rounding only (per-lane sums added at the end of a chunk,
/// a lane-wise exp within ~1e-15): relative 1e-12 on lse, 1e-12 on the mean's entries
/// (|mean| ≤ 1 for ±1 patterns).
const EXACT_PATTERN_TOL: f64 = 1e-12;

/// Gaussian patterns: lse relative tolerance. Entries move by a few ulps (relative
/// δ ≤ 8·2⁻²⁴ ≈ 5e-7), so each z moves by at most β·Σ|ξ_i x_i|·δ and lse, a smooth
/// max, by at most the largest such change; `gaussian_bounds` computes that bound per
/// query and this constant only floors it.
const GAUSSIAN_LSE_FLOOR: f64 = 1e-12;

fn kinds() -> Vec<PatternKind> {
    vec![
        PatternKind::Binary,
        PatternKind::correlated(0.3).unwrap(),
        PatternKind::Gaussian,
        PatternKind::Spherical,
    ]
}

fn ulp(v: f32) -> f32 {
    let a = v.abs();
    f32::from_bits(a.to_bits() + 1) - a
}

#[test]
fn generated_patterns_match_fill() {
    let mut exact = 0usize;
    let mut gaussian = 0usize;
    for kind in kinds() {
        for dim in [1usize, 3, 4, 24, 33, 128, 130, 257] {
            for (seed, first, count) in [
                (1u64, 0u64, 1usize),
                (0xDEAD_BEEF_1234, 5, 13),
                (7, (1u64 << 32) - 6, 17),
                (u64::MAX, (1 << 40) - 9, 9),
            ] {
                let mut fast = vec![0.0f32; count * dim];
                fill_patterns(kind, seed, first, dim, &mut fast);
                assert_eq!(fast.len(), count * dim);
                for (p, row) in fast.chunks_exact(dim).enumerate() {
                    let mu = first + p as u64;
                    let mut want = vec![0.0f32; dim];
                    fill(kind, seed, Stream::Patterns, mu, &mut want);
                    assert_eq!(row.len(), want.len());
                    if kind.is_binary() {
                        assert_eq!(row, &want[..], "{kind:?} N={dim} seed={seed} μ={mu}");
                        continue;
                    }
                    for (i, (&a, &b)) in row.iter().zip(&want).enumerate() {
                        let tol = GAUSSIAN_ENTRY_ULPS * ulp(a).max(ulp(b));
                        assert!(
                            (a - b).abs() <= tol,
                            "{kind:?} N={dim} seed={seed} μ={mu} entry {i}: {a} vs {b}"
                        );
                        gaussian += 1;
                        exact += (a == b) as usize;
                    }
                }
            }
        }
    }
    let share = exact as f64 / gaussian as f64;
    assert!(
        share >= GAUSSIAN_EXACT_SHARE,
        "only {share} of Gaussian entries equal fill's"
    );
}

/// Per query: the largest change of z = β·ξ·x over `range` that Gaussian entries
/// moving by `GAUSSIAN_ENTRY_ULPS` ulps allow, computed from the reference's patterns;
/// and the largest |ξ_i| (for the mean).
fn gaussian_bounds(request: &StreamRequest<'_>) -> Vec<(f64, f64)> {
    let n = request.dim;
    let rel = GAUSSIAN_ENTRY_ULPS as f64 * f32::EPSILON as f64;
    let mut xi = vec![0.0f32; n];
    (0..request.seeds.len())
        .map(|q| {
            let x = &request.queries[q * n..(q + 1) * n];
            let (mut dz, mut big) = (0.0f64, 0.0f64);
            for mu in request.start..request.end {
                fill(
                    request.kind,
                    request.seeds[q],
                    Stream::Patterns,
                    mu,
                    &mut xi,
                );
                assert_eq!(xi.len(), x.len());
                let mag: f64 = xi
                    .iter()
                    .zip(x)
                    .map(|(&a, &b)| (a as f64 * b as f64).abs())
                    .sum();
                dz = dz.max(request.beta.abs() as f64 * mag * rel);
                big = xi.iter().fold(big, |m, &v| m.max(v.abs() as f64));
            }
            (dz, big)
        })
        .collect()
}

/// Compares one request's fast and reference states.
fn compare(request: &StreamRequest<'_>, label: &str) {
    let fast = stream_dot(request);
    let reference = reference_stream_dot(request);
    assert_eq!(fast.len(), request.seeds.len(), "{label}");
    assert_eq!(reference.len(), request.seeds.len(), "{label}");
    let bounds = if request.kind.is_binary() {
        vec![(0.0, 1.0); request.seeds.len()]
    } else {
        gaussian_bounds(request)
    };
    for (q, ((f, r), &(dz, big))) in fast.iter().zip(&reference).zip(&bounds).enumerate() {
        let label = format!("{label} query {q}");
        if request.start == request.end {
            assert_eq!(f, &StreamStats::empty(request.dim), "{label}");
            assert_eq!(r, &StreamStats::empty(request.dim), "{label}");
            continue;
        }
        assert_eq!(f.best_i, r.best_i, "{label}: best pattern");
        let (lse_f, lse_r) = (f.lse(), r.lse());
        assert!(
            lse_f.is_finite() && lse_r.is_finite(),
            "{label}: {lse_f} {lse_r}"
        );
        let (mean_f, mean_r) = (f.mean(), r.mean());
        assert_eq!(mean_f.len(), request.dim, "{label}");
        assert_eq!(mean_r.len(), request.dim, "{label}");
        if request.kind.is_binary() {
            assert_eq!(f.best_s, r.best_s, "{label}: best similarity");
            assert_eq!(f.m, r.m, "{label}: max");
            let tol = EXACT_PATTERN_TOL * lse_r.abs().max(1.0);
            assert!(
                (lse_f - lse_r).abs() <= tol,
                "{label}: lse {lse_f} vs {lse_r}"
            );
            for (i, (a, b)) in mean_f.iter().zip(&mean_r).enumerate() {
                assert!(
                    (a - b).abs() <= EXACT_PATTERN_TOL,
                    "{label}: mean[{i}] {a} vs {b}"
                );
            }
        } else {
            // best_s moves like any s: by at most dz/β.
            let ds = if request.beta != 0.0 {
                dz / request.beta.abs() as f64
            } else {
                0.0
            };
            assert!(
                (f.best_s - r.best_s).abs() <= ds + 1e-12,
                "{label}: best_s {} vs {}",
                f.best_s,
                r.best_s
            );
            let tol = dz + GAUSSIAN_LSE_FLOOR * lse_r.abs().max(1.0);
            assert!(
                (lse_f - lse_r).abs() <= tol,
                "{label}: lse {lse_f} vs {lse_r} (tol {tol})"
            );
            // Each weight moves by a factor within e^{±2 dz}; the mean, a weighted
            // average of entries |ξ_i| ≤ big, by at most (e^{4 dz} − 1)·big, plus the
            // entries' own change.
            let mean_tol = ((4.0 * dz).exp_m1() + GAUSSIAN_ENTRY_ULPS as f64 * f32::EPSILON as f64)
                * big
                + 1e-12;
            for (i, (a, b)) in mean_f.iter().zip(&mean_r).enumerate() {
                assert!(
                    (a - b).abs() <= mean_tol,
                    "{label}: mean[{i}] {a} vs {b} (tol {mean_tol})"
                );
            }
        }
    }
}

fn queries(rng: &mut StdRng, b: usize, n: usize, scale: f32) -> Vec<f32> {
    (0..b * n)
        .map(|_| rng.random_range(-scale..scale))
        .collect()
}

/// Every kind, dimensions and batch sizes that are multiples of nothing, ragged ranges
/// away from 0, per-query seeds.
#[test]
fn fast_stream_matches_reference() {
    let mut rng = StdRng::seed_from_u64(2024);
    for kind in kinds() {
        for (n, b) in [(1usize, 3usize), (3, 17), (24, 1), (33, 3), (128, 17)] {
            let x = queries(&mut rng, b, n, 1.0);
            let seeds: Vec<u64> = (0..b).map(|_| rng.random()).collect();
            for (start, end) in [(0u64, 1u64), (1, 38), (12_345, 12_345 + 1_001), (7, 7)] {
                let request = StreamRequest {
                    kind,
                    dim: n,
                    start,
                    end,
                    beta: 1.5,
                    queries: &x,
                    seeds: &seeds,
                };
                compare(&request, &format!("{kind:?} N={n} B={b} {start}..{end}"));
            }
        }
    }
}

/// A range over several chunks (2¹⁶ patterns each) that starts and ends off a chunk
/// boundary, and indices past 2³².
#[test]
fn fast_stream_matches_reference_across_chunks() {
    let mut rng = StdRng::seed_from_u64(7);
    for kind in [PatternKind::Binary, PatternKind::Spherical] {
        let (n, b) = (5, 2);
        let x = queries(&mut rng, b, n, 1.0);
        let seeds = [rng.random(), rng.random()];
        for start in [333u64, (1 << 32) - 70_000] {
            let request = StreamRequest {
                kind,
                dim: n,
                start,
                end: start + 2 * (1 << 16) + 4_321,
                beta: 0.7,
                queries: &x,
                seeds: &seeds,
            };
            compare(&request, &format!("{kind:?} from {start}"));
        }
    }
}

/// β·s in the thousands: nothing overflows, and the states still agree (the skipped
/// groups of negligible weight included).
#[test]
fn large_beta_does_not_overflow() {
    let mut rng = StdRng::seed_from_u64(99);
    for kind in kinds() {
        for (n, beta) in [(24usize, 200.0f32), (128, 60.0), (3, -900.0)] {
            let b = 3;
            let x = queries(&mut rng, b, n, 1.0);
            let seeds: Vec<u64> = (0..b).map(|_| rng.random()).collect();
            let request = StreamRequest {
                kind,
                dim: n,
                start: 11,
                end: 11 + 3_000,
                beta,
                queries: &x,
                seeds: &seeds,
            };
            let fast = stream_dot(&request);
            assert_eq!(fast.len(), b);
            assert!(
                fast.iter().any(|s| s.m.abs() > 1_000.0),
                "{kind:?} N={n}: β·s should reach the thousands"
            );
            compare(&request, &format!("{kind:?} N={n} β={beta}"));
        }
    }
}

/// Ties in s (binary patterns and ±1 queries have integer similarities): the lowest
/// index wins, as in the reference; and repeated runs give the same bits.
#[test]
fn ties_and_repeats() {
    let mut rng = StdRng::seed_from_u64(5);
    let (n, b) = (4, 5);
    let x: Vec<f32> = (0..b * n)
        .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
        .collect();
    let seeds: Vec<u64> = (0..b).map(|_| rng.random()).collect();
    let request = StreamRequest {
        kind: PatternKind::Binary,
        dim: n,
        start: 3,
        end: 3 + 500,
        beta: 0.25,
        queries: &x,
        seeds: &seeds,
    };
    compare(&request, "ties");
    let first = stream_dot(&request);
    for state in &first {
        assert_eq!(state.best_s, n as f64, "some pattern equals each query");
    }
    assert_eq!(stream_dot(&request), first, "same bits on a second run");
}
