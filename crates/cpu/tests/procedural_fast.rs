//! The fast procedural stream (`dam_cpu::procedural`) against the reference
//! (`dam_cpu::reference::procedural`) and against `dam_core::procedural::fill`.

use dam_core::procedural::{fill, PatternKind, Stream, StreamRequest, StreamStats};
use dam_cpu::procedural::{fill_patterns, stream_dot};
use dam_cpu::reference::procedural::stream_dot as reference_stream_dot;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Gaussian entries: `fill` uses the platform's f32 `ln`, `sin`, `cos` (within 1 ulp of
/// the correctly rounded value), the fast path correctly rounded ones. A 1-ulp change of
/// ln u moves r = √(−2 ln u) by at most 1 ulp, and r·cos θ rounds a product of two
/// values that are each at most 1 ulp off: at most 3 ulps. The spherical rescale adds a
/// norm computed from such entries (its relative change is at most that of the
/// entries) and one more rounding: 8 ulps of the larger of the two values covers both.
const GAUSSIAN_ENTRY_ULPS: f32 = 8.0;

/// Share of Gaussian entries that must equal `fill`'s exactly: they differ only where
/// the platform's libm is not correctly rounded (about 1 % of inputs for each of ln,
/// sin, cos with glibc), so nearly all must agree; a systematic error would not.
const GAUSSIAN_EXACT_SHARE: f64 = 0.9;

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
                    let mut want = vec![0.0f32; dim];
                    fill(kind, seed, Stream::Patterns, first + p as u64, &mut want);
                    if kind.is_binary() {
                        assert_eq!(
                            row,
                            &want[..],
                            "{kind:?} N={dim} seed={seed} μ={}",
                            first + p as u64
                        );
                        continue;
                    }
                    assert_eq!(row.len(), want.len());
                    for (i, (&a, &b)) in row.iter().zip(&want).enumerate() {
                        let tol = GAUSSIAN_ENTRY_ULPS * ulp(a).max(ulp(b));
                        assert!(
                            (a - b).abs() <= tol,
                            "{kind:?} N={dim} seed={seed} μ={} entry {i}: {a} vs {b}",
                            first + p as u64
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
