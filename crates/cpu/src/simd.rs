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

/// Σ a_i² in eight f32 lanes.
#[inline(always)]
pub fn squared_norm(a: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = a.chunks_exact(LANES);
    let tail = chunks.remainder();
    for x in chunks {
        for l in 0..LANES {
            acc[l] += x[l] * x[l];
        }
    }
    fold(acc) + tail.iter().map(|x| x * x).sum::<f32>()
}

/// 1.5·2⁵²: adding it to an f64 of magnitude below 2⁵¹ rounds it to an integer, held in
/// the low mantissa bits (two's complement).
const ROUND_MAGIC: f64 = 6_755_399_441_055_744.0;

/// (sin u, cos u) in f64 for |u| ≤ 2²⁰ (absolute error below 2e-16 there; meaningless
/// beyond, where the reduction is no longer exact). u = n·π/2 + r with n the integer
/// nearest to u·2/π and π/2 in three parts (the first two of 33 bits, so n·part is exact
/// for |n| < 2²⁰), |r| ≤ π/4; sin r and cos r by fdlibm's kernel polynomials; n mod 4
/// picks and signs them. Branch-free, so a loop over it vectorises.
#[inline(always)]
pub fn sin_cos_f64(u: f64) -> (f64, f64) {
    const PIO2_1: f64 = 1.570_796_326_734_125_6; // π/2 to 33 bits
    const PIO2_2: f64 = 6.077_100_506_303_966e-11; // the next 33 bits
    const PIO2_2T: f64 = 2.022_266_248_795_950_6e-21; // π/2 − PIO2_1 − PIO2_2
    const S: [f64; 6] = [
        -1.666_666_666_666_663_2e-1,
        8.333_333_333_322_49e-3,
        -1.984_126_982_985_795e-4,
        2.755_731_370_707_006_8e-6,
        -2.505_076_025_340_686_3e-8,
        1.589_690_995_211_55e-10,
    ];
    const C: [f64; 6] = [
        4.166_666_666_666_66e-2,
        -1.388_888_888_887_411e-3,
        2.480_158_728_947_673e-5,
        -2.755_731_435_139_066_3e-7,
        2.087_572_321_298_175e-9,
        -1.135_964_755_778_819_5e-11,
    ];
    let shifted = u * std::f64::consts::FRAC_2_PI + ROUND_MAGIC;
    let n = shifted - ROUND_MAGIC;
    let r = ((u - n * PIO2_1) - n * PIO2_2) - n * PIO2_2T;
    let z = r * r;
    // Estrin's scheme: a shorter chain of dependent operations than Horner's.
    let z2 = z * z;
    let ps = (S[0] + z * S[1]) + z2 * ((S[2] + z * S[3]) + z2 * (S[4] + z * S[5]));
    let pc = (C[0] + z * C[1]) + z2 * ((C[2] + z * C[3]) + z2 * (C[4] + z * C[5]));
    let sin_r = r + r * z * ps;
    let cos_r = (1.0 - 0.5 * z) + z * z * pc;
    // Odd quadrants swap sin and cos; quadrants 2, 3 negate sin, quadrants 1, 2 cos.
    let k = shifted.to_bits(); // n + 1.5·2⁵² in the low bits: ≡ n (mod 4)
    let (s, c) = (sin_r.to_bits(), cos_r.to_bits());
    let swap = (s ^ c) & 0u64.wrapping_sub(k & 1);
    (
        f64::from_bits(s ^ swap ^ ((k & 2) << 62)),
        f64::from_bits(c ^ swap ^ ((k.wrapping_add(1) & 2) << 62)),
    )
}

/// e^t in f64 over the whole range (relative error within 1e-15; ∞ above ~709.78,
/// subnormal then 0 below −708, NaN for NaN): t = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by
/// its Taylor series to r¹² (truncation below 2e-16) in Estrin's scheme (a shorter chain
/// of dependent operations than Horner's), 2ⁿ applied as two powers of two so that each
/// is a normal number (the first product is exact, the second rounds once, also into
/// the subnormals).
#[inline(always)]
pub fn exp_f64(t: f64) -> f64 {
    const LN2_HI: f64 = 6.931_471_803_691_238e-1; // ln 2 to 33 bits: n·LN2_HI is exact
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    /// 1/k!, k = 0 … 12.
    const C: [f64; 13] = [
        1.0,
        1.0,
        0.5,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5_040.0,
        1.0 / 40_320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
        1.0 / 39_916_800.0,
        1.0 / 479_001_600.0,
    ];
    // Clamped where the result is already 0 or ∞ (a NaN stays NaN).
    let x = t.clamp(-746.0, 710.0);
    let shifted = x * std::f64::consts::LOG2_E + ROUND_MAGIC;
    let n = shifted - ROUND_MAGIC;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let (r2, pair) = (r * r, |k: usize| C[k] + r * C[k + 1]);
    let r4 = r2 * r2;
    let low = (pair(0) + r2 * pair(2)) + r4 * (pair(4) + r2 * pair(6));
    let high = (pair(8) + r2 * pair(10)) + r4 * C[12];
    let p = low + (r4 * r4) * high;
    // n = h + (n − h) with h the integer nearest n/2: both within the normal exponents.
    let half = n * 0.5 + ROUND_MAGIC;
    let n_int = shifted.to_bits().wrapping_sub(ROUND_MAGIC.to_bits());
    let h_int = half.to_bits().wrapping_sub(ROUND_MAGIC.to_bits());
    let first = f64::from_bits(h_int.wrapping_add(1023) << 52);
    let second = f64::from_bits(n_int.wrapping_sub(h_int).wrapping_add(1023) << 52);
    p * first * second
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

/// e^t for t ≤ 0 in f32 (relative error within 2·2⁻²³; 0 below −87 and for −∞):
/// t = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by Cephes' degree-7 polynomial, 2ⁿ from the
/// exponent bits. Branch-free and without float-to-integer casts, so a loop over it
/// vectorises.
#[inline(always)]
pub fn exp_nonpositive(t: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer
    let low = t < -87.0;
    let x = if low { -87.0 } else { t };
    let shifted = x * std::f32::consts::LOG2_E + MAGIC;
    let n = shifted - MAGIC;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = (((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5)
        * r
        * r
        + r
        + 1.0;
    // n in two's complement from the low mantissa bits of `shifted`, then 2ⁿ.
    let n_bits = shifted.to_bits().wrapping_sub(MAGIC.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    if low {
        0.0
    } else {
        p * scale
    }
}

/// Replaces every s of `row` by w = e^{β s − m} (β s ≤ m) and returns (Σ w, Σ w²) in f64
/// (sums in eight f32 lanes per call).
#[inline(always)]
pub fn exp_weights(row: &mut [f32], beta: f32, m: f32) -> (f64, f64) {
    for v in row.iter_mut() {
        *v = exp_nonpositive(beta * *v - m);
    }
    let mut sum = [0.0f32; LANES];
    let mut sq = [0.0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            sum[l] += c[l];
            sq[l] += c[l] * c[l];
        }
    }
    let (mut total, mut total_sq) = (fold(sum) as f64, fold(sq) as f64);
    for &w in rest {
        total += w as f64;
        total_sq += (w as f64) * (w as f64);
    }
    (total, total_sq)
}

/// The largest value of `row` and its first index (ties → the lowest index); (−∞,
/// usize::MAX) for an empty row. The max in eight lanes, then the first position holding it.
#[inline(always)]
pub fn max_and_index(row: &[f32]) -> (f32, usize) {
    let mut best = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for l in 0..LANES {
            best[l] = if chunk[l] > best[l] {
                chunk[l]
            } else {
                best[l]
            };
        }
    }
    let mut value = best
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for &v in chunks.remainder() {
        value = if v > value { v } else { value };
    }
    match row.iter().position(|&v| v == value) {
        Some(index) => (value, index),
        None => (f32::NEG_INFINITY, usize::MAX),
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
    fn max_and_index_keeps_the_first_of_ties() {
        assert_eq!(max_and_index(&[]), (f32::NEG_INFINITY, usize::MAX));
        for n in [1usize, 7, 8, 9, 17, 40] {
            let row: Vec<f32> = (0..n).map(|i| ((i * 7) % 5) as f32).collect();
            let want = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let first = row.iter().position(|&v| v == want).unwrap();
            assert_eq!(wide(|| max_and_index(&row)), (want, first), "n={n}");
        }
        let mut row = vec![1.0f32; 20];
        row[13] = 2.0;
        row[19] = 2.0;
        assert_eq!(max_and_index(&row), (2.0, 13));
    }

    #[test]
    fn sin_cos_f64_matches_libm() {
        let mut worst = 0.0f64;
        for i in -200_000..=200_000 {
            // Up to |u| ≈ 2¹⁴ (the largest phase the feature path sends), and around 0.
            let u = i as f64 * 0.082_031_25 + (i as f64 * 1e-3).sin();
            let (s, c) = wide(|| sin_cos_f64(u));
            worst = worst.max((s - u.sin()).abs()).max((c - u.cos()).abs());
        }
        for u in [0.0, -0.0, 1e-300, std::f64::consts::FRAC_PI_4, 1e5, -1e6] {
            let (s, c) = sin_cos_f64(u);
            worst = worst.max((s - u.sin()).abs()).max((c - u.cos()).abs());
        }
        assert!(worst < 4e-16, "absolute error {worst:e}");
        assert!(sin_cos_f64(f64::NAN).0.is_nan());
    }

    #[test]
    fn exp_f64_matches_libm_over_its_range() {
        let mut worst = 0.0f64;
        for i in -400_000..=400_000 {
            let t = i as f64 * 1.772_5e-3; // −709 … 709
            let (got, want) = (wide(|| exp_f64(t)), t.exp());
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 4e-15, "relative error {worst:e}");
        assert_eq!(exp_f64(0.0), 1.0);
        assert_eq!(exp_f64(710.0), f64::INFINITY);
        assert_eq!(exp_f64(f64::INFINITY), f64::INFINITY);
        assert_eq!(exp_f64(-746.0), 0.0);
        assert_eq!(exp_f64(f64::NEG_INFINITY), 0.0);
        assert!(exp_f64(f64::NAN).is_nan());
        // Subnormal results: within one unit of the smallest subnormal.
        for t in [-709.0, -720.0, -740.0, -744.0] {
            let (got, want) = (exp_f64(t), t.exp());
            assert!(
                (got - want).abs() <= want * 4e-15 + 5e-324,
                "e^{t}: {got:e} vs {want:e}"
            );
        }
        let a = [0.5f32, -1.5, 2.0, 3.0, 0.25, 1.0, -1.0, 2.0, 4.0];
        assert_eq!(squared_norm(&a), a.iter().map(|v| v * v).sum::<f32>());
    }

    #[test]
    fn exp_is_accurate_over_its_range() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let t = -87.0 * i as f32 / 200_000.0;
            let got = exp_nonpositive(t) as f64;
            let want = (t as f64).exp();
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 2.5e-7, "relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-88.0), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        let mut row = [
            0.0f32, -1.0, -2.0, 0.5, -3.0, -0.25, -7.0, -9.0, -1.5, -2.5, -4.0,
        ];
        let (sum, sq) = wide(|| exp_weights(&mut row, 2.0, 1.0));
        let want: Vec<f64> = [
            0.0f64, -1.0, -2.0, 0.5, -3.0, -0.25, -7.0, -9.0, -1.5, -2.5, -4.0,
        ]
        .iter()
        .map(|s| (2.0 * s - 1.0).exp())
        .collect();
        for (g, w) in row.iter().zip(&want) {
            assert!((*g as f64 - w).abs() <= 3e-7 * w, "{g} vs {w}");
        }
        assert!((sum - want.iter().sum::<f64>()).abs() < 1e-6);
        assert!((sq - want.iter().map(|w| w * w).sum::<f64>()).abs() < 1e-6);
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
