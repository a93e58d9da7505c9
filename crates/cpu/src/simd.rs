//! Vector code of the fast CPU paths: plain loops over eight f32 lanes, written so that the
//! compiler vectorises them, and compiled a second time for AVX2 + FMA where the processor
//! has them (checked at run time, once per call).

/// Runs `work` compiled for AVX2 + FMA when the processor has both, else for the baseline.
/// Everything `work` inlines (the `#[inline(always)]` kernels of this module) is then
/// vectorised with the wider instructions.
#[inline(always)]
pub fn wide<R>(work: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(work: impl FnOnce() -> R) -> R {
            work()
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the processor supports AVX2 and FMA (checked just above).
            return unsafe { avx2(work) };
        }
    }
    work()
}

/// The instruction set [`wide`] runs with on this processor: `avx2` or `baseline`.
pub fn instruction_set() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "avx2";
        }
    }
    "baseline"
}

const LANES: usize = 8;

#[inline(always)]
fn fold(acc: [f32; LANES]) -> f32 {
    let a = [
        acc[0] + acc[4],
        acc[1] + acc[5],
        acc[2] + acc[6],
        acc[3] + acc[7],
    ];
    (a[0] + a[2]) + (a[1] + a[3])
}

/// Σ |a_i − b_i| in eight f32 lanes.
#[inline(always)]
pub fn l1(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (at, bt) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..LANES {
            acc[l] += (x[l] - y[l]).abs();
        }
    }
    fold(acc) + at.iter().zip(bt).map(|(x, y)| (x - y).abs()).sum::<f32>()
}

/// Σ (a_i − b_i)² in eight f32 lanes.
#[inline(always)]
pub fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (at, bt) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..LANES {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    fold(acc)
        + at.iter()
            .zip(bt)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
}

/// −‖x_q − ξ_j‖₁ for four queries against one pattern at a time: `out[q·ld + j]` for the
/// B queries (`queries`, B×N row-major) and the rows of `block` (rows×N row-major). Each
/// pattern chunk is loaded once for four queries.
#[inline(always)]
pub fn neg_manhattan_block(queries: &[f32], block: &[f32], n: usize, out: &mut [f32], ld: usize) {
    let b = queries.len() / n.max(1);
    let rows = block.len() / n.max(1);
    for j in 0..rows {
        let p = &block[j * n..(j + 1) * n];
        let mut q = 0;
        while q + 4 <= b {
            let x = [
                &queries[q * n..(q + 1) * n],
                &queries[(q + 1) * n..(q + 2) * n],
                &queries[(q + 2) * n..(q + 3) * n],
                &queries[(q + 3) * n..(q + 4) * n],
            ];
            let mut acc = [[0.0f32; LANES]; 4];
            let full = n / LANES * LANES;
            for c in (0..full).step_by(LANES) {
                let pv = &p[c..c + LANES];
                for (r, xr) in x.iter().enumerate() {
                    let xv = &xr[c..c + LANES];
                    for l in 0..LANES {
                        acc[r][l] += (xv[l] - pv[l]).abs();
                    }
                }
            }
            for (r, xr) in x.iter().enumerate() {
                let tail: f32 = xr[full..]
                    .iter()
                    .zip(&p[full..])
                    .map(|(a, b)| (a - b).abs())
                    .sum();
                out[(q + r) * ld + j] = -(fold(acc[r]) + tail);
            }
            q += 4;
        }
        while q < b {
            out[q * ld + j] = -l1(&queries[q * n..(q + 1) * n], p);
            q += 1;
        }
    }
}

/// x_q · ξ_j for the B queries (`queries`, B×N row-major) and the rows of `block`
/// (rows×N row-major) into `out[q·ld + j]`: four queries per load of a pattern chunk. The
/// small-batch twin of a GEMM (which packs both operands: for a few queries the packing
/// would cost more than the products).
#[inline(always)]
pub fn dot_block(queries: &[f32], block: &[f32], n: usize, out: &mut [f32], ld: usize) {
    let b = queries.len() / n.max(1);
    let rows = block.len() / n.max(1);
    let full = n / LANES * LANES;
    for j in 0..rows {
        let p = &block[j * n..(j + 1) * n];
        let mut q = 0;
        while q < b {
            let r = (b - q).min(4);
            let mut acc = [[0.0f32; LANES]; 4];
            for c in (0..full).step_by(LANES) {
                let pv = &p[c..c + LANES];
                for (k, a) in acc.iter_mut().enumerate().take(r) {
                    let xv = &queries[(q + k) * n + c..(q + k) * n + c + LANES];
                    for l in 0..LANES {
                        a[l] += xv[l] * pv[l];
                    }
                }
            }
            for (k, a) in acc.iter().enumerate().take(r) {
                let x = &queries[(q + k) * n..(q + k + 1) * n];
                let tail: f32 = x[full..].iter().zip(&p[full..]).map(|(a, b)| a * b).sum();
                out[(q + k) * ld + j] = fold(*a) + tail;
            }
            q += r;
        }
    }
}

/// acc_q += Σ_j w[q·ld + j] · ξ_j for the first `acc.len() / n` queries: the small-batch
/// twin of the weights × patterns GEMM (zero weights skipped).
#[inline(always)]
pub fn weighted_rows(weights: &[f32], ld: usize, block: &[f32], n: usize, acc: &mut [f32]) {
    let rows = block.len() / n.max(1);
    for (q, a) in acc.chunks_exact_mut(n.max(1)).enumerate() {
        for j in 0..rows {
            let w = weights[q * ld + j];
            if w != 0.0 {
                for (x, &p) in a.iter_mut().zip(&block[j * n..(j + 1) * n]) {
                    *x += w * p;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_sums_match_plain_sums_at_ragged_lengths() {
        for n in [0usize, 1, 7, 8, 9, 31, 33] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let l1_plain: f32 = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum();
            let d2_plain: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
            assert!((wide(|| l1(&a, &b)) - l1_plain).abs() <= 1e-5 * (1.0 + l1_plain));
            assert!(
                (wide(|| squared_distance(&a, &b)) - d2_plain).abs() <= 1e-5 * (1.0 + d2_plain)
            );
        }
    }

    #[test]
    fn dot_block_and_weighted_rows_match_plain_sums() {
        let n = 19;
        let (b, rows, ld) = (6, 5, 7);
        let q: Vec<f32> = (0..b * n).map(|i| (i as f32 * 0.3).sin()).collect();
        let p: Vec<f32> = (0..rows * n).map(|i| (i as f32 * 0.7).cos()).collect();
        let mut out = vec![f32::NAN; b * ld];
        wide(|| dot_block(&q, &p, n, &mut out, ld));
        for qi in 0..b {
            for j in 0..rows {
                let want: f32 = (0..n).map(|i| q[qi * n + i] * p[j * n + i]).sum();
                assert!((out[qi * ld + j] - want).abs() <= 1e-5, "q={qi} j={j}");
            }
            assert!(out[qi * ld + rows].is_nan(), "wrote past the block");
        }
        let mut acc = vec![1.0f32; 2 * n];
        wide(|| weighted_rows(&out, ld, &p, n, &mut acc));
        for qi in 0..2 {
            for i in 0..n {
                let want: f32 = 1.0 + (0..rows).map(|j| out[qi * ld + j] * p[j * n + i]).sum::<f32>();
                assert!((acc[qi * n + i] - want).abs() <= 1e-4, "q={qi} i={i}");
            }
        }
    }

    #[test]
    fn manhattan_block_covers_every_query_and_pattern() {
        let n = 11;
        let (b, rows, ld) = (7, 3, 5);
        let q: Vec<f32> = (0..b * n).map(|i| (i as f32 * 0.3).sin()).collect();
        let p: Vec<f32> = (0..rows * n).map(|i| (i as f32 * 0.7).cos()).collect();
        let mut out = vec![f32::NAN; b * ld];
        wide(|| neg_manhattan_block(&q, &p, n, &mut out, ld));
        for qi in 0..b {
            for j in 0..rows {
                let want = -l1(&q[qi * n..(qi + 1) * n], &p[j * n..(j + 1) * n]);
                assert!((out[qi * ld + j] - want).abs() <= 1e-5, "q={qi} j={j}");
            }
            for j in rows..ld {
                assert!(out[qi * ld + j].is_nan(), "wrote past the block");
            }
        }
    }
}
