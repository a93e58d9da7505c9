//! The log-sum-ReLU statistic of the procedural stream: the fast path
//! (`dam_cpu::procedural::stream`) against the reference
//! (`dam_cpu::reference::procedural::stream`), and the reference against a brute-force
//! evaluation of the definition on `fill`'s patterns.

use dam_core::procedural::{
    fill, squared_distance, PatternKind, ReluStats, Stream, StreamRequest, StreamSeparation,
};
use dam_core::weights::relu_kernel_sq;
use dam_core::Tolerance;
use dam_cpu::procedural::stream as fast_stream;
use dam_cpu::reference::procedural::stream as reference_stream;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// ±1 patterns: s, |ξ|², d² and every kernel are the same bits on both paths, so the
/// support count and the nearest pattern are equal; Σk and Σ_{support} ξ are added in a
/// different order (per lane, then across lanes), which for these dyadic values is
/// exact in practice; this allows f64 rounding only.
const EXACT_PATTERN_TOL: Tolerance = Tolerance::new(1e-12, 1e-12);

/// Relative change of a Gaussian or spherical entry between the two paths' generators
/// (8 f32 ulps, as in `procedural_fast.rs`).
const GAUSSIAN_ENTRY_REL: f64 = 8.0 * f32::EPSILON as f64;

fn kinds() -> Vec<PatternKind> {
    vec![
        PatternKind::Binary,
        PatternKind::correlated(0.3).unwrap(),
        PatternKind::Gaussian,
        PatternKind::Spherical,
    ]
}

/// The statistic by its definition, in the reference's order, from `fill`'s patterns.
fn brute_force(request: &StreamRequest<'_>, beta: f64) -> Vec<ReluStats> {
    let n = request.dim;
    let mut xi = vec![0.0f32; n];
    (0..request.seeds.len())
        .map(|q| {
            let x = &request.queries[q * n..(q + 1) * n];
            let mut stats = ReluStats::empty(n);
            for mu in request.start..request.end {
                fill(
                    request.kind,
                    request.seeds[q],
                    Stream::Patterns,
                    mu,
                    &mut xi,
                );
                assert_eq!(xi.len(), x.len());
                let d2: f64 = xi
                    .iter()
                    .zip(x)
                    .map(|(&a, &b)| (a as f64 - b as f64) * (a as f64 - b as f64))
                    .sum();
                stats.push(mu, d2, relu_kernel_sq(beta, d2), &xi);
            }
            stats
        })
        .collect()
}

/// Per query, the largest change of (β/2)·d² that entries moving by `GAUSSIAN_ENTRY_REL`
/// allow (d² = |x|² − 2x·ξ + |ξ|² moves by at most 2(Σ|x_i ξ_i| + Σξ_i²)·rel), and the
/// largest |ξ_i|, over the range.
fn gaussian_bounds(request: &StreamRequest<'_>, beta: f64) -> Vec<(f64, f64)> {
    let n = request.dim;
    let mut xi = vec![0.0f32; n];
    (0..request.seeds.len())
        .map(|q| {
            let x = &request.queries[q * n..(q + 1) * n];
            let (mut dk, mut big) = (0.0f64, 0.0f64);
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
                    .map(|(&a, &b)| (a as f64 * b as f64).abs() + a as f64 * a as f64)
                    .sum();
                dk = dk.max(0.5 * beta * 2.0 * mag * GAUSSIAN_ENTRY_REL);
                big = xi.iter().fold(big, |m, &v| m.max(v.abs() as f64));
            }
            (dk, big)
        })
        .collect()
}

/// Compares the fast and the reference statistic of one request (and the reference's
/// support against the brute force); returns the reference's statistics.
fn compare(request: &StreamRequest<'_>, beta: f32, label: &str) -> Vec<ReluStats> {
    let separation = StreamSeparation::LogSumRelu { beta };
    let fast = fast_stream(request, separation);
    let reference = reference_stream(request, separation);
    let brute = brute_force(request, beta as f64);
    let plain = dam_cpu::reference::procedural::stream_dot(request);
    let fast_plain = dam_cpu::procedural::stream_dot(request);
    assert_eq!(plain.len(), request.seeds.len(), "{label}");
    assert_eq!(fast_plain.len(), request.seeds.len(), "{label}");
    let b = request.seeds.len();
    assert_eq!(fast.len(), b, "{label}");
    assert_eq!(reference.len(), b, "{label}");
    assert_eq!(brute.len(), b, "{label}");
    let bounds = if request.kind.is_binary() {
        vec![(0.0, 1.0); b]
    } else {
        gaussian_bounds(request, beta as f64)
    };
    let mut out = Vec::new();
    for q in 0..b {
        let label = format!("{label} query {q}");
        let (f, r) = (&fast[q], &reference[q]);
        // The softmax part is unchanged by asking for the statistic.
        assert_eq!(
            (r.m, r.l, r.best_i),
            (plain[q].m, plain[q].l, plain[q].best_i)
        );
        assert_eq!((f.m, f.best_i), (fast_plain[q].m, fast_plain[q].best_i));
        assert_eq!(f.l, fast_plain[q].l, "{label}");
        let f = f.relu.as_ref().expect("fast: relu statistic asked for");
        let r = r
            .relu
            .as_ref()
            .expect("reference: relu statistic asked for");
        let brute = &brute[q];
        // The reference's d² from its parts against the direct Σ(ξ_i − x_i)²: the support
        // can only differ for a pattern within rounding of the wall; none is in these cases.
        assert_eq!(r.count, brute.count, "{label}: reference vs definition");
        assert!(
            Tolerance::new(1e-9, 1e-9).accepts(r.sum, brute.sum),
            "{label}: Σk {} vs definition {}",
            r.sum,
            brute.sum
        );
        assert_eq!(f.count, r.count, "{label}: support count");
        assert_eq!(f.nearest_i, r.nearest_i, "{label}: nearest pattern");
        assert_eq!(f.acc.len(), request.dim, "{label}");
        assert_eq!(r.acc.len(), request.dim, "{label}");
        let (dk, big) = bounds[q];
        let (sum_tol, acc_tol) = if request.kind.is_binary() {
            assert_eq!(f.nearest_d2, r.nearest_d2, "{label}: nearest d²");
            (EXACT_PATTERN_TOL, EXACT_PATTERN_TOL)
        } else {
            // Each kernel in the support moves by at most dk; each summed entry by
            // rel·big.
            let count = r.count as f64;
            (
                Tolerance::new(count * dk + 1e-12, 1e-12),
                Tolerance::new(count * GAUSSIAN_ENTRY_REL * big + 1e-12, 1e-12),
            )
        };
        assert!(
            sum_tol.accepts(f.sum, r.sum),
            "{label}: Σk {} vs {}",
            f.sum,
            r.sum
        );
        if let Err(m) = acc_tol.compare(f.acc.iter().copied(), r.acc.iter().copied()) {
            panic!("{label}: support sum {m:?}");
        }
        assert!(f.sum >= 0.0 && f.sum.is_finite(), "{label}");
        assert_eq!(f.mean().is_none(), f.count == 0, "{label}");
        out.push(r.clone());
    }
    out
}

/// Queries near stored patterns (each the run's pattern `near` plus noise) with a wide
/// support at small N and a narrow one at large N; every kind; dimensions, batch sizes
/// and ranges that are multiples of no block (16 lanes, 4 Gaussian entries).
#[test]
fn relu_statistic_matches_reference() {
    let mut rng = StdRng::seed_from_u64(41);
    let mut supports = 0u64;
    for kind in kinds() {
        for (n, b) in [(1usize, 2usize), (7, 3), (33, 2), (130, 1)] {
            let seeds: Vec<u64> = (0..b).map(|_| rng.random()).collect();
            for (start, end) in [(0u64, 1u64), (5, 5 + 1_003), (9, 9)] {
                let mut x = vec![0.0f32; b * n];
                for (q, row) in x.chunks_mut(n).enumerate() {
                    fill(kind, seeds[q], Stream::Patterns, start + 1, row);
                    for v in row.iter_mut() {
                        *v += rng.random_range(-0.3f32..0.3);
                    }
                }
                let beta = ((2.0 + std::f64::consts::SQRT_2) / n as f64) as f32;
                let request = StreamRequest {
                    kind,
                    dim: n,
                    start,
                    end,
                    beta: 1.0,
                    queries: &x,
                    seeds: &seeds,
                };
                let stats = compare(&request, beta, &format!("{kind:?} N={n} {start}..{end}"));
                supports += stats.iter().map(|s| s.count).sum::<u64>();
                if start == end {
                    for s in &stats {
                        assert_eq!(s, &ReluStats::empty(n), "{kind:?} N={n}: empty range");
                    }
                }
            }
        }
    }
    assert!(
        supports > 1_000,
        "the cases must have supports ({supports})"
    );
}

/// A range across a chunk boundary (2¹⁶ patterns per chunk) merges the chunks' statistics.
#[test]
fn relu_statistic_merges_across_chunks() {
    let (n, b) = (6usize, 2usize);
    let seeds = [3u64, 4];
    let mut x = vec![0.0f32; b * n];
    for (q, row) in x.chunks_mut(n).enumerate() {
        fill(
            PatternKind::Spherical,
            seeds[q],
            Stream::Patterns,
            1 << 16,
            row,
        );
    }
    let request = StreamRequest {
        kind: PatternKind::Spherical,
        dim: n,
        start: (1 << 16) - 700,
        end: (1 << 16) + 900,
        beta: 1.0,
        queries: &x,
        seeds: &seeds,
    };
    let stats = compare(&request, (3.4 / n as f64) as f32, "across chunks");
    for s in &stats {
        assert_eq!(s.nearest_i, 1 << 16, "each query is a stored pattern");
        assert!(s.count > 1, "a wide support ({})", s.count);
    }
}

/// Empty supports: the zero state has d² = |ξ|² = N for ±1 patterns, outside the wall
/// d² < 2/β = N/2; Σk = 0, no mean, E = +∞ (never NaN), and the nearest pattern is still
/// reported.
#[test]
fn empty_support_is_zero_not_nan() {
    let n = 9;
    let x = vec![0.0f32; 2 * n];
    let seeds = [1u64, 2];
    let request = StreamRequest {
        kind: PatternKind::Binary,
        dim: n,
        start: 0,
        end: 777,
        beta: 1.0,
        queries: &x,
        seeds: &seeds,
    };
    let beta = 4.0 / n as f32;
    for s in compare(&request, beta, "empty support") {
        assert_eq!((s.count, s.sum), (0, 0.0));
        assert_eq!(s.mean(), None);
        assert_eq!(s.energy(beta as f64, 0.0), f64::INFINITY);
        assert_eq!(s.nearest_d2, n as f64);
        assert_eq!(
            s.nearest_i, 0,
            "every pattern is at d² = N: the lowest index"
        );
        assert!(s.energy(beta as f64, 1e-3).is_finite());
    }
}

/// Ties at the wall: ±1 patterns at N = 16 and β = 1/4 put the wall d² = 2/β = 8 at
/// Hamming distance 2 from the query (d² = 4h), exactly representable on both paths. A
/// pattern at the wall has kernel 0 and is outside the support; the support is the
/// patterns at h ≤ 1. The case holds patterns at h = 1 and at h = 2.
#[test]
fn ties_at_the_wall_are_outside() {
    let n = 16;
    let seeds = [11u64, 12, 13];
    let mut x = vec![0.0f32; seeds.len() * n];
    for (q, row) in x.chunks_mut(n).enumerate() {
        fill(PatternKind::Binary, seeds[q], Stream::Patterns, 0, row);
    }
    let request = StreamRequest {
        kind: PatternKind::Binary,
        dim: n,
        start: 0,
        end: 20_011,
        beta: 1.0,
        queries: &x,
        seeds: &seeds,
    };
    let stats = compare(&request, 0.25, "wall");
    let (mut at_wall, mut inside) = (0u64, 0u64);
    let mut xi = vec![0.0f32; n];
    for (q, s) in stats.iter().enumerate() {
        let query = &x[q * n..(q + 1) * n];
        let xx: f64 = query.iter().map(|&v| (v * v) as f64).sum();
        let (mut want, mut sum) = (0u64, 0.0f64);
        for mu in request.start..request.end {
            fill(PatternKind::Binary, seeds[q], Stream::Patterns, mu, &mut xi);
            let h = xi.iter().zip(query).filter(|(a, b)| a != b).count();
            let s_mu: f64 = xi.iter().zip(query).map(|(&a, &b)| (a * b) as f64).sum();
            let d2 = squared_distance(xx, s_mu, n as f64);
            assert_eq!(d2, 4.0 * h as f64, "d² of ±1 vectors is exact");
            at_wall += (h == 2) as u64;
            if h < 2 {
                want += 1;
                sum += 1.0 - 0.125 * d2;
                inside += (h == 1) as u64;
            }
        }
        assert_eq!(s.count, want, "query {q}: the support is h ≤ 1");
        assert_eq!(s.sum, sum, "query {q}: Σk of dyadic kernels is exact");
        assert_eq!(s.nearest_i, 0, "query {q} is pattern 0");
    }
    assert!(
        at_wall > 10 && inside > 0,
        "wall {at_wall}, inside {inside}"
    );
}
