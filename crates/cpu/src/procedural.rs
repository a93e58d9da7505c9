//! Streaming log-sum-exp over procedural patterns on the CPU: the fast path, tested
//! against [`crate::reference::procedural`] (see `dam_core::procedural` for the
//! generator and the online-softmax state).
//!
//! Patterns are generated [`LANES`] at a time, one pattern per lane: the Philox counters
//! of consecutive patterns μ, μ+1, … run side by side, Box–Muller is evaluated lane-wise,
//! and the dot product, the best pattern and the online-softmax sums are kept per lane,
//! so the hot loops have no horizontal operation and vectorise. The hot kernels are
//! compiled twice, for any CPU and (on x86-64) with AVX2, chosen at run time; both
//! compute the same bits (no fused multiply-add, no reassociation; the AVX2 Philox is
//! integer arithmetic).
//!
//! # What matches the reference bit for bit
//! * ±1 patterns (binary, correlated): the integer arithmetic of `fill`.
//! * The similarity s = ξ·x: each f32 × f32 product is exact in f64 and the products are
//!   added in the reference's order, so s, z = β·s, the chunk maxima `m`, `best_s` and
//!   `best_i` are identical whenever the patterns are.
//!
//! # What does not
//! Gaussian and spherical entries. `fill` calls the platform's f32 `ln`, `sin` and `cos`,
//! which are not correctly rounded (glibc's miss the correctly rounded value for about
//! 1 % of the inputs Box–Muller can see), so no other implementation can promise its
//! bits. Here those three are evaluated in f64 and rounded once to f32: correctly
//! rounded except where the f64 value lies within ~2⁻⁴⁴ of a rounding boundary (none of
//! the 2²⁴ possible `ln` inputs, 2 of the 2²⁴ angles, tested exhaustively), and the
//! same on every platform. Every other step of Box–Muller (the uniforms, −2·ln u, √,
//! θ = π·v, r·cos θ, r·sin θ, the spherical rescale) is the same f32 operation, in the
//! same order, as in `fill`. An entry is therefore within a few f32 ulps of `fill`'s, and
//! equal to it in about 98 % of cases with glibc.
//!
//! The softmax weights e^{z−m} use a lane-wise f64 `exp` (relative error ~1e-15), and
//! l and acc are summed per lane, then across lanes at the end of a chunk: for the same
//! patterns, l, acc, `lse` and `mean` agree with the reference to f64 rounding. A group
//! of [`LANES`] patterns whose weights are all below e^{−70} is skipped: every pattern
//! adds less than 2⁻¹⁰⁰ to l ≥ 1, so at most 2⁴⁰ of them stay below half an ulp of l.
//!
//! Work is split and merged as in the reference (chunks of 2¹⁶ patterns per query on
//! all cores, merged in chunk order), so results do not depend on thread timing.

// Lane loops (`for l in 0..LANES`) index several arrays by the same lane: the form the
// vectoriser handles best, and the clearest statement of "the same operation per lane".
#![allow(clippy::needless_range_loop)]

use dam_core::procedural::{
    squared_distance, uniform_open0, uniform_sym, words, PatternKind, ReluStats, Stream,
    StreamRequest, StreamSeparation, StreamStats,
};
use dam_core::weights::relu_kernel_sq;

/// Patterns generated and folded side by side (one per lane).
pub const LANES: usize = 16;

use crate::reference::procedural::fold_chunks;

/// A group whose largest z is this far below the running max is skipped (e^{−70} < 2⁻¹⁰⁰).
const SKIP_BELOW: f64 = 70.0;

/// One lane-wise vector of u32 (one value per pattern).
type U32s = [u32; LANES];
/// One lane-wise vector of f32.
type F32s = [f32; LANES];
/// One lane-wise vector of f64.
type F64s = [f64; LANES];

/// A run's seed with the ten Philox-4x32-10 round keys it expands to.
#[derive(Debug, Clone, Copy)]
struct RoundKeys {
    seed: u64,
    /// Round r's key, each word zero-extended to 64 bits.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    rounds: [[u64; 2]; 10],
}

impl RoundKeys {
    fn of(seed: u64) -> Self {
        const W0: u32 = 0x9E37_79B9;
        const W1: u32 = 0xBB67_AE85;
        let (k0, k1) = (seed as u32, (seed >> 32) as u32);
        let mut rounds = [[0; 2]; 10];
        for (r, key) in rounds.iter_mut().enumerate() {
            *key = [
                k0.wrapping_add(W0.wrapping_mul(r as u32)) as u64,
                k1.wrapping_add(W1.wrapping_mul(r as u32)) as u64,
            ];
        }
        Self { seed, rounds }
    }
}

/// The Philox words of block `block` of patterns `first .. first + LANES` (stream
/// `Patterns`), one pattern per lane: `dam_core::procedural::words` lane by lane.
#[inline(always)]
fn portable_words(keys: &RoundKeys, first: u64, block: u32) -> [U32s; 4] {
    let mut out = [[0u32; LANES]; 4];
    for l in 0..LANES {
        let w = words(
            keys.seed,
            Stream::Patterns,
            first.wrapping_add(l as u64),
            block,
        );
        for (out, w) in out.iter_mut().zip(w) {
            out[l] = w;
        }
    }
    out
}

/// [`portable_words`] with AVX2: Philox-4x32-10 on four counters per register, each
/// 32-bit word in the low half of a 64-bit lane, so that the 32×32→64-bit products are
/// packed unsigned multiplies (`vpmuludq`). The high halves carry junk that never
/// reaches a low half: a multiply reads only the low halves of its operands, and the
/// only right shift is of a fresh product.
#[cfg(target_arch = "x86_64")]
mod philox_avx2 {
    use super::{RoundKeys, Stream, U32s, LANES};
    use std::arch::x86_64::{
        __m256i, _mm256_mul_epu32, _mm256_set1_epi64x, _mm256_srli_epi64, _mm256_xor_si256,
    };

    const M0: i64 = 0xD251_1F53;
    const M1: i64 = 0xCD9E_8D57;
    /// Registers per counter word in one pass: eight counters, which with the constants
    /// fit in the sixteen registers.
    const GROUPS: usize = 2;

    #[target_feature(enable = "avx2")]
    pub(super) fn words(keys: &RoundKeys, first: u64, block: u32) -> [U32s; 4] {
        let (m0, m1) = (_mm256_set1_epi64x(M0), _mm256_set1_epi64x(M1));
        let mut out = [[0u32; LANES]; 4];
        for pass in 0..LANES / (4 * GROUPS) {
            let lane0 = pass * 4 * GROUPS;
            let mut c = [[_mm256_set1_epi64x(0); GROUPS]; 4];
            for g in 0..GROUPS {
                let (mut lo, mut hi) = ([0u64; 4], [0u64; 4]);
                for l in 0..4 {
                    let mu = first.wrapping_add((lane0 + 4 * g + l) as u64);
                    (lo[l], hi[l]) = (mu & 0xffff_ffff, mu >> 32);
                }
                c[0][g] = _mm256_set1_epi64x(block as i64);
                c[1][g] = bytemuck::cast(lo);
                c[2][g] = bytemuck::cast(hi);
                c[3][g] = _mm256_set1_epi64x(Stream::Patterns as i64);
            }
            for key in &keys.rounds {
                let k0 = _mm256_set1_epi64x(key[0] as i64);
                let k1 = _mm256_set1_epi64x(key[1] as i64);
                for g in 0..GROUPS {
                    let p0 = _mm256_mul_epu32(c[0][g], m0);
                    let p1 = _mm256_mul_epu32(c[2][g], m1);
                    let hi1 = _mm256_srli_epi64::<32>(p1);
                    let hi0 = _mm256_srli_epi64::<32>(p0);
                    c[0][g] = _mm256_xor_si256(_mm256_xor_si256(hi1, c[1][g]), k0);
                    c[1][g] = p1;
                    c[2][g] = _mm256_xor_si256(_mm256_xor_si256(hi0, c[3][g]), k1);
                    c[3][g] = p0;
                }
            }
            for (out, word) in out.iter_mut().zip(&c) {
                for (g, &reg) in word.iter().enumerate() {
                    let lanes: [u64; 4] = bytemuck::cast::<__m256i, _>(reg);
                    for l in 0..4 {
                        out[lane0 + 4 * g + l] = lanes[l] as u32;
                    }
                }
            }
        }
        out
    }
}

/// 1.5·2⁵²: adding it rounds an f64 below 2⁵¹ in magnitude to an integer (ties to even),
/// which then sits in the low mantissa bits.
const ROUND_MAGIC: f64 = 6_755_399_441_055_744.0;

/// ln m = t·P(t²) on t = (m−1)/(m+1), m in [√½, √2] (|t| ≤ 0.1716): least squares at
/// Chebyshev nodes, relative error below 3e-14.
const LN_COEF: [f64; 6] = [
    1.999_999_999_999_947_2,
    0.666_666_666_795_928_9,
    0.399_999_948_881_136_7,
    0.285_721_665_004_463_5,
    0.221_742_361_166_787_92,
    0.196_082_833_943_249_55,
];
/// sin y = y·S(y²) on |y| ≤ π/4 + 1e-6 (same fit), relative error below 5e-15.
const SIN_COEF: [f64; 6] = [
    0.999_999_999_999_995_4,
    -0.166_666_666_666_148_66,
    0.008_333_333_323_643_4,
    -0.000_198_412_631_922_137_74,
    2.755_525_227_405_487_6e-6,
    -2.475_528_916_295_359e-8,
];
/// cos y = C(y²) on |y| ≤ π/4 + 1e-6 (same fit), relative error below 2e-16.
const COS_COEF: [f64; 7] = [
    0.999_999_999_999_999_9,
    -0.499_999_999_999_991_5,
    0.041_666_666_666_453_89,
    -0.001_388_888_886_871_671_8,
    2.480_157_814_683_146_7e-5,
    -2.755_517_775_824_891e-7,
    2.062_743_560_330_743_6e-9,
];

#[inline(always)]
fn horner<const K: usize>(coef: &[f64; K], x: f64) -> f64 {
    let mut p = coef[K - 1];
    for k in (0..K - 1).rev() {
        p = p * x + coef[k];
    }
    p
}

/// Pairs in one Box–Muller batch: the two pairs of a Philox block, for every lane.
const PAIRS: usize = 2 * LANES;

/// Box–Muller of `dam_core::procedural::box_muller` on [`PAIRS`] pairs of words, with
/// `ln`, `sin` and `cos` evaluated in f64 and rounded once to f32 (correctly rounded
/// except within ~2⁻⁴⁴ of a rounding boundary); every other operation is the same f32
/// operation as there.
///
/// ln u: u = 2^e·m with m in [√½, √2), ln u = e·ln 2 + ln m. sin θ, cos θ: θ = q·π/2 + y
/// with q the integer nearest to θ·2/π in f32 (so |y| ≤ π/4 + 4e-7, inside the range
/// of the fits), π/2 in two parts (exact for |q| ≤ 2); the quadrant q mod 4 picks and
/// signs sin y, cos y. The work is split into loops that stay in one precision (f32 in
/// eight lanes per register, f64 in four) and, in the f64 loop, two independent halves.
#[inline(always)]
fn box_muller_batch(a: &[u32; PAIRS], b: &[u32; PAIRS]) -> ([f32; PAIRS], [f32; PAIRS]) {
    const F32_MAGIC: f32 = 12_582_912.0; // 1.5·2²³, ROUND_MAGIC for f32
    const PIO2_HI: f64 = std::f64::consts::FRAC_PI_2;
    const PIO2_LO: f64 = 6.123_233_995_736_766e-17;
    let mut m = [0.0f32; PAIRS];
    let mut e = [0i32; PAIRS];
    let mut theta = [0.0f32; PAIRS];
    let mut q = [0.0f32; PAIRS];
    let mut quadrant = [0u32; PAIRS];
    for i in 0..PAIRS {
        let bits = uniform_open0(a[i]).to_bits();
        let mantissa = (bits & 0x007f_ffff) | 0x3f80_0000;
        let high = mantissa >= 0x3fb5_04f3; // m ≥ √2: halve it
        m[i] = f32::from_bits(if high {
            mantissa - 0x0080_0000
        } else {
            mantissa
        });
        e[i] = (bits >> 23) as i32 - 127 + high as i32;
        let th = std::f32::consts::PI * uniform_sym(b[i]);
        let shifted = th * std::f32::consts::FRAC_2_PI + F32_MAGIC;
        theta[i] = th;
        q[i] = shifted - F32_MAGIC;
        quadrant[i] = shifted.to_bits(); // q + 2²² in the low bits: ≡ q (mod 4)
    }
    let mut ln = [0.0f32; PAIRS];
    let mut sin_y = [0.0f32; PAIRS];
    let mut cos_y = [0.0f32; PAIRS];
    const HALF: usize = PAIRS / 2;
    for j in 0..HALF {
        for i in [j, j + HALF] {
            let m = m[i] as f64;
            let t = (m - 1.0) / (m + 1.0);
            ln[i] = (e[i] as f64 * std::f64::consts::LN_2 + t * horner(&LN_COEF, t * t)) as f32;
            let q = q[i] as f64;
            let y = (theta[i] as f64 - q * PIO2_HI) - q * PIO2_LO;
            let y2 = y * y;
            sin_y[i] = (y * horner(&SIN_COEF, y2)) as f32;
            cos_y[i] = horner(&COS_COEF, y2) as f32;
        }
    }
    let mut x = [0.0f32; PAIRS];
    let mut y = [0.0f32; PAIRS];
    for i in 0..PAIRS {
        let r = (-2.0 * ln[i]).sqrt();
        // Odd quadrants swap sin and cos; quadrants 2, 3 negate sin, quadrants 1, 2 cos.
        let (s, c) = (sin_y[i].to_bits(), cos_y[i].to_bits());
        let k = quadrant[i];
        let swap = (s ^ c) & 0u32.wrapping_sub(k & 1);
        let sin = f32::from_bits(s ^ swap ^ ((k & 2) << 30));
        let cos = f32::from_bits(c ^ swap ^ ((k.wrapping_add(1) & 2) << 30));
        x[i] = r * cos;
        y[i] = r * sin;
    }
    (x, y)
}

/// e^t for t ≤ 0 in lanes (relative error ~1e-15; 0 below −708, so also for t = −∞):
/// t = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by its Taylor series to r¹² (truncation
/// below 2e-16).
#[inline(always)]
fn exp_lanes(t: &F64s) -> F64s {
    const LN2_HI: f64 = 6.931_471_803_691_238e-1; // ln 2 to 33 bits: n·LN2_HI is exact
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    const COEF: [f64; 12] = [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
    ];
    let mut out = [0.0; LANES];
    for l in 0..LANES {
        let x = if t[l] < -708.0 { -708.0 } else { t[l] };
        let shifted = x * std::f64::consts::LOG2_E + ROUND_MAGIC;
        let n = shifted - ROUND_MAGIC;
        let r = (x - n * LN2_HI) - n * LN2_LO;
        let mut p = COEF[0];
        for &c in &COEF[1..] {
            p = p * r + c;
        }
        let p = p * r + 1.0;
        let n_int = shifted.to_bits().wrapping_sub(ROUND_MAGIC.to_bits()); // n, two's complement
        let scale = f64::from_bits(n_int.wrapping_add(1023) << 52);
        out[l] = if t[l] < -708.0 { 0.0 } else { p * scale };
    }
    out
}

/// The two kernels the generators call, each a function of its own per instruction set
/// (see `kernels!`): the Philox words of one block of [`LANES`] patterns, and
/// [`box_muller_batch`].
trait Kernels {
    fn words(&self, keys: &RoundKeys, first: u64, block: u32) -> [U32s; 4];
    fn box_muller(&self, a: &[u32; PAIRS], b: &[u32; PAIRS]) -> ([f32; PAIRS], [f32; PAIRS]);
}

/// [`Kernels`] from two closures.
struct KernelFns<W, B>(W, B);

impl<W, B> Kernels for KernelFns<W, B>
where
    W: Fn(&RoundKeys, u64, u32) -> [U32s; 4],
    B: Fn(&[u32; PAIRS], &[u32; PAIRS]) -> ([f32; PAIRS], [f32; PAIRS]),
{
    #[inline(always)]
    fn words(&self, keys: &RoundKeys, first: u64, block: u32) -> [U32s; 4] {
        (self.0)(keys, first, block)
    }

    #[inline(always)]
    fn box_muller(&self, a: &[u32; PAIRS], b: &[u32; PAIRS]) -> ([f32; PAIRS], [f32; PAIRS]) {
        (self.1)(a, b)
    }
}

/// The generator of one run: writes patterns `first .. first + LANES` lane-wise,
/// `rows[i][l]` = entry i of pattern `first + l`, with the arithmetic of `fill`.
#[derive(Debug, Clone, Copy)]
struct Generator {
    kind: PatternKind,
    keys: RoundKeys,
    dim: usize,
}

impl Generator {
    fn new(kind: PatternKind, seed: u64, dim: usize) -> Self {
        Self {
            kind,
            keys: RoundKeys::of(seed),
            dim,
        }
    }

    /// Rows `generate` writes (Gaussian entries come four at a time); the first `dim`
    /// are the patterns.
    fn rows(&self) -> usize {
        match self.kind {
            PatternKind::Gaussian | PatternKind::Spherical => self.dim.div_ceil(4) * 4,
            _ => self.dim,
        }
    }

    #[inline(always)]
    fn generate(&self, kernels: &impl Kernels, first: u64, rows: &mut [F32s]) {
        match self.kind {
            PatternKind::Binary => self.binary(kernels, first, rows),
            PatternKind::Correlated { share } => self.correlated(kernels, share, first, rows),
            PatternKind::Gaussian => self.gaussian(kernels, false, first, rows),
            PatternKind::Spherical => self.gaussian(kernels, true, first, rows),
        }
    }

    /// Entry i: bit i mod 32 of word (i mod 128) / 32 of block i / 128.
    #[inline(always)]
    fn binary(&self, kernels: &impl Kernels, first: u64, rows: &mut [F32s]) {
        for (block, rows) in rows[..self.dim].chunks_mut(128).enumerate() {
            let w = kernels.words(&self.keys, first, block as u32);
            for (rows, word) in rows.chunks_mut(32).zip(&w) {
                // Bit by bit from the lowest, shifting the words down one bit each time
                // (shifts by a constant vectorise; shifts by a counter did not).
                let mut rest = *word;
                for row in rows.iter_mut() {
                    for l in 0..LANES {
                        row[l] = sign(rest[l]);
                        rest[l] >>= 1;
                    }
                }
            }
        }
    }

    /// Block 0 holds the latent sign; entry i uses word i mod 4 of block 1 + i/4: its top
    /// 24 bits decide "copy the latent", its lowest bit is the entry's own sign.
    #[inline(always)]
    fn correlated(&self, kernels: &impl Kernels, share: u32, first: u64, rows: &mut [F32s]) {
        let latent = kernels.words(&self.keys, first, 0)[0];
        for (block, rows) in rows[..self.dim].chunks_mut(4).enumerate() {
            let w = kernels.words(&self.keys, first, 1 + block as u32);
            for (row, word) in rows.iter_mut().zip(&w) {
                for l in 0..LANES {
                    let copy = (word[l] >> 8) < share;
                    row[l] = sign(if copy { latent[l] } else { word[l] });
                }
            }
        }
    }

    /// Entries 4b .. 4b + 4 from the words (w0, w1, w2, w3) of block b: Box–Muller of
    /// (w0, w1) and of (w2, w3); spherical patterns are then rescaled to norm √N.
    #[inline(always)]
    fn gaussian(&self, kernels: &impl Kernels, spherical: bool, first: u64, rows: &mut [F32s]) {
        let rows = &mut rows[..self.rows()];
        for (block, out) in rows.chunks_exact_mut(4).enumerate() {
            let w = kernels.words(&self.keys, first, block as u32);
            let (mut a, mut b) = ([0u32; PAIRS], [0u32; PAIRS]);
            a[..LANES].copy_from_slice(&w[0]);
            a[LANES..].copy_from_slice(&w[2]);
            b[..LANES].copy_from_slice(&w[1]);
            b[LANES..].copy_from_slice(&w[3]);
            let (x, y) = kernels.box_muller(&a, &b);
            out[0].copy_from_slice(&x[..LANES]);
            out[1].copy_from_slice(&y[..LANES]);
            out[2].copy_from_slice(&x[LANES..]);
            out[3].copy_from_slice(&y[LANES..]);
        }
        if spherical {
            // As in `fill`: Σ v² in f32 in entry order (no fused multiply-add), √N / √Σ.
            let rows = &mut rows[..self.dim];
            let mut norm2 = [0.0f32; LANES];
            for row in rows.iter() {
                for l in 0..LANES {
                    norm2[l] += row[l] * row[l];
                }
            }
            let root_n = (self.dim as f32).sqrt();
            let mut scale = [0.0f32; LANES];
            for l in 0..LANES {
                scale[l] = root_n / norm2[l].sqrt();
            }
            for row in rows.iter_mut() {
                for l in 0..LANES {
                    row[l] *= scale[l];
                }
            }
        }
    }
}

/// +1.0 where the lowest bit of `word` is 1, −1.0 where it is 0 (integer operations
/// only: only the lowest bit of !word survives the shift to the sign bit).
#[inline(always)]
fn sign(word: u32) -> f32 {
    f32::from_bits(0x3f80_0000 | (!word << 31))
}

/// The online-softmax state of one chunk, per lane (lane l folds the patterns
/// `first + l` of every group), with one running max `m` for all lanes; and, when the
/// stream evaluates the log-sum-ReLU statistic, its sums per lane.
#[derive(Debug, Default)]
struct Lanes {
    m: f64,
    l: F64s,
    acc: Vec<F64s>,
    best_s: F64s,
    best_i: [u64; LANES],
    relu: Option<ReluLanes>,
}

/// The log-sum-ReLU statistic of one chunk, per lane ([`ReluStats`] lane by lane).
#[derive(Debug, Default)]
struct ReluLanes {
    sum: F64s,
    count: [u64; LANES],
    acc: Vec<F64s>,
    nearest_d2: F64s,
    nearest_i: [u64; LANES],
}

impl Lanes {
    fn reset(&mut self, dim: usize, relu: bool) {
        self.m = f64::NEG_INFINITY;
        self.l = [0.0; LANES];
        self.acc.clear();
        self.acc.resize(dim, [0.0; LANES]);
        self.best_s = [f64::NEG_INFINITY; LANES];
        self.best_i = [u64::MAX; LANES];
        if !relu {
            self.relu = None;
            return;
        }
        let r = self.relu.get_or_insert_with(ReluLanes::default);
        r.sum = [0.0; LANES];
        r.count = [0; LANES];
        r.acc.clear();
        r.acc.resize(dim, [0.0; LANES]);
        r.nearest_d2 = [f64::INFINITY; LANES];
        r.nearest_i = [u64::MAX; LANES];
    }

    /// The lanes added up: the state of the whole chunk.
    fn stats(&self) -> StreamStats {
        let mut stats = StreamStats::empty(self.acc.len());
        stats.m = self.m;
        stats.l = self.l.iter().sum();
        for (out, a) in stats.acc.iter_mut().zip(&self.acc) {
            *out = a.iter().sum();
        }
        for l in 0..LANES {
            let (s, i) = (self.best_s[l], self.best_i[l]);
            if i != u64::MAX && (s > stats.best_s || (s == stats.best_s && i < stats.best_i)) {
                stats.best_s = s;
                stats.best_i = i;
            }
        }
        stats.relu = self.relu.as_ref().map(|r| {
            let mut relu = ReluStats::empty(self.acc.len());
            relu.sum = r.sum.iter().sum();
            relu.count = r.count.iter().sum();
            for (out, a) in relu.acc.iter_mut().zip(&r.acc) {
                *out = a.iter().sum();
            }
            for l in 0..LANES {
                let (d2, i) = (r.nearest_d2[l], r.nearest_i[l]);
                if i != u64::MAX
                    && (d2 < relu.nearest_d2 || (d2 == relu.nearest_d2 && i < relu.nearest_i))
                {
                    relu.nearest_d2 = d2;
                    relu.nearest_i = i;
                }
            }
            relu
        });
        stats
    }
}

/// Folds the patterns `first .. first + valid` (`pattern[i][l]`: entry i of pattern
/// `first + l`; `valid` ≤ [`LANES`], the other lanes are ignored) into `lanes`, for the
/// query `x` (as f64, length N) and β.
#[inline(always)]
fn fold_group(lanes: &mut Lanes, pattern: &[F32s], x: &[f64], beta: f64, first: u64, valid: usize) {
    debug_assert_eq!(pattern.len(), x.len());
    // s in f64, entry by entry as in the reference (each product is exact).
    let mut s = [0.0f64; LANES];
    for (row, &x) in pattern.iter().zip(x) {
        for l in 0..LANES {
            s[l] += row[l] as f64 * x;
        }
    }
    fold_softmax(lanes, pattern, &s, beta, first, valid)
}

/// [`fold_group`] with the log-sum-ReLU statistic: |ξ|² is summed beside s (each square
/// exact in f64, in entry order as in the reference), d² = [`squared_distance`]`(xx, s,
/// |ξ|²)` and the kernel [`relu_kernel_sq`] at `relu_beta` are folded per lane, then the
/// online softmax as in [`fold_group`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn fold_group_relu(
    lanes: &mut Lanes,
    pattern: &[F32s],
    x: &[f64],
    xx: f64,
    beta: f64,
    relu_beta: f64,
    first: u64,
    valid: usize,
) {
    debug_assert_eq!(pattern.len(), x.len());
    let mut s = [0.0f64; LANES];
    let mut pp = [0.0f64; LANES];
    for (row, &x) in pattern.iter().zip(x) {
        for l in 0..LANES {
            let v = row[l] as f64;
            s[l] += v * x;
            pp[l] += v * v;
        }
    }
    if let Some(r) = lanes.relu.as_mut() {
        let mut inside = [false; LANES];
        let mut any = false;
        for l in 0..valid {
            let d2 = squared_distance(xx, s[l], pp[l]);
            let k = relu_kernel_sq(relu_beta, d2);
            r.sum[l] += k;
            inside[l] = k > 0.0;
            r.count[l] += inside[l] as u64;
            any |= inside[l];
            // Lane l sees increasing indices, so a strict < keeps the lowest on ties.
            if d2 < r.nearest_d2[l] {
                r.nearest_d2[l] = d2;
                r.nearest_i[l] = first + l as u64;
            }
        }
        // The support is usually a few patterns among many: most groups add nothing.
        if any {
            for (a, row) in r.acc.iter_mut().zip(pattern) {
                for l in 0..valid {
                    if inside[l] {
                        a[l] += row[l] as f64;
                    }
                }
            }
        }
    }
    fold_softmax(lanes, pattern, &s, beta, first, valid)
}

/// The online-softmax part of [`fold_group`], from the similarities `s` of the group.
#[inline(always)]
fn fold_softmax(
    lanes: &mut Lanes,
    pattern: &[F32s],
    s: &F64s,
    beta: f64,
    first: u64,
    valid: usize,
) {
    let mut z = [f64::NEG_INFINITY; LANES];
    let mut z_max = f64::NEG_INFINITY;
    for l in 0..valid {
        z[l] = beta * s[l];
        z_max = z_max.max(z[l]);
        // Lane l sees increasing indices, so a strict > keeps the lowest on ties.
        if s[l] > lanes.best_s[l] {
            lanes.best_s[l] = s[l];
            lanes.best_i[l] = first + l as u64;
        }
    }
    if z_max > lanes.m {
        if lanes.m > f64::NEG_INFINITY {
            let scale = (lanes.m - z_max).exp();
            lanes.l.iter_mut().for_each(|v| *v *= scale);
            for a in lanes.acc.iter_mut() {
                a.iter_mut().for_each(|v| *v *= scale);
            }
        }
        lanes.m = z_max;
    }
    if z_max < lanes.m - SKIP_BELOW {
        return;
    }
    let mut t = [0.0; LANES];
    for l in 0..LANES {
        t[l] = z[l] - lanes.m;
    }
    let p = exp_lanes(&t);
    for l in 0..LANES {
        lanes.l[l] += p[l];
    }
    for (a, row) in lanes.acc.iter_mut().zip(pattern) {
        for l in 0..LANES {
            a[l] += p[l] * row[l] as f64;
        }
    }
}

/// Per-worker scratch: a group of generated patterns and the per-lane softmax state.
#[derive(Debug, Default)]
struct Scratch {
    rows: Vec<F32s>,
    lanes: Lanes,
}

/// The online-softmax state of patterns `lo..hi` for one query of dimension `dim`:
/// generate a group of [`LANES`] patterns (`generate`, into `rows` rows), fold it in
/// (`fold`), repeat.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn chunk_with(
    relu: bool,
    rows: usize,
    generate: impl Fn(u64, &mut [F32s]),
    fold: impl Fn(&mut Lanes, &[F32s], u64, usize),
    dim: usize,
    lo: u64,
    hi: u64,
    scratch: &mut Scratch,
) -> StreamStats {
    scratch.rows.resize(rows.max(dim), [0.0; LANES]);
    scratch.lanes.reset(dim, relu);
    let mut first = lo;
    while first < hi {
        let valid = (hi - first).min(LANES as u64) as usize;
        generate(first, &mut scratch.rows);
        fold(&mut scratch.lanes, &scratch.rows[..dim], first, valid);
        first += valid as u64;
    }
    scratch.lanes.stats()
}

/// Writes the `out.len() / dim` patterns from `first` row-major into `out`.
#[inline(always)]
fn fill_with(
    rows: usize,
    generate: impl Fn(u64, &mut [F32s]),
    dim: usize,
    first: u64,
    out: &mut [f32],
) {
    let mut rows = vec![[0.0; LANES]; rows.max(dim)];
    for (group, block) in out.chunks_mut(LANES * dim).enumerate() {
        generate(first.wrapping_add((group * LANES) as u64), &mut rows);
        for (l, pattern) in block.chunks_exact_mut(dim).enumerate() {
            for (v, row) in pattern.iter_mut().zip(&rows[..dim]) {
                *v = row[l];
            }
        }
    }
}

/// One query's part of a request.
struct Query<'a> {
    /// x as f64 (length N).
    x: &'a [f64],
    /// |x|² (an f64 sum of exact squares in entry order, as in the reference).
    xx: f64,
    beta: f64,
    /// β of the log-sum-ReLU statistic, when the stream evaluates it.
    relu_beta: Option<f64>,
    seed: u64,
}

/// Stamps out the kernels for one instruction set: `$words` is its Philox, `$feature`
/// the attribute that enables it (none for the portable build). The hot kernels are
/// functions of their own (`#[inline(never)]`): compiled in isolation they vectorise,
/// inlined into the chunk loop LLVM left parts of them scalar. The closures handed to
/// the generic code are defined inside the stamped functions, so they carry the same
/// target features.
macro_rules! kernels {
    ($words:path, $(#[$feature:meta])*) => {
        use super::*;

        $(#[$feature])*
        #[inline(never)]
        fn words(keys: &RoundKeys, first: u64, block: u32) -> [U32s; 4] {
            $words(keys, first, block)
        }

        $(#[$feature])*
        #[inline(never)]
        fn box_muller(a: &[u32; PAIRS], b: &[u32; PAIRS]) -> ([f32; PAIRS], [f32; PAIRS]) {
            box_muller_batch(a, b)
        }

        $(#[$feature])*
        #[inline(never)]
        fn generate(generator: &Generator, first: u64, rows: &mut [F32s]) {
            let kernels = KernelFns(
                |keys: &RoundKeys, first, block| words(keys, first, block),
                |a: &[u32; PAIRS], b: &[u32; PAIRS]| box_muller(a, b),
            );
            generator.generate(&kernels, first, rows)
        }

        $(#[$feature])*
        #[inline(never)]
        fn fold(
            lanes: &mut Lanes,
            pattern: &[F32s],
            x: &[f64],
            beta: f64,
            first: u64,
            valid: usize,
        ) {
            fold_group(lanes, pattern, x, beta, first, valid)
        }

        $(#[$feature])*
        #[inline(never)]
        #[allow(clippy::too_many_arguments)]
        fn fold_relu(
            lanes: &mut Lanes,
            pattern: &[F32s],
            x: &[f64],
            xx: f64,
            beta: f64,
            relu_beta: f64,
            first: u64,
            valid: usize,
        ) {
            fold_group_relu(lanes, pattern, x, xx, beta, relu_beta, first, valid)
        }

        /// The online-softmax state of patterns `lo..hi` for one query.
        $(#[$feature])*
        pub(super) fn chunk(
            kind: PatternKind,
            query: &Query<'_>,
            lo: u64,
            hi: u64,
            scratch: &mut Scratch,
        ) -> StreamStats {
            let dim = query.x.len();
            let generator = Generator::new(kind, query.seed, dim);
            let rows_of = |first, rows: &mut [F32s]| generate(&generator, first, rows);
            match query.relu_beta {
                None => chunk_with(
                    false,
                    generator.rows(),
                    rows_of,
                    |lanes: &mut Lanes, pattern: &[F32s], first, valid| {
                        fold(lanes, pattern, query.x, query.beta, first, valid)
                    },
                    dim,
                    lo,
                    hi,
                    scratch,
                ),
                Some(relu_beta) => chunk_with(
                    true,
                    generator.rows(),
                    rows_of,
                    |lanes: &mut Lanes, pattern: &[F32s], first, valid| {
                        fold_relu(
                            lanes, pattern, query.x, query.xx, query.beta, relu_beta, first,
                            valid,
                        )
                    },
                    dim,
                    lo,
                    hi,
                    scratch,
                ),
            }
        }

        /// See [`fill_patterns`].
        $(#[$feature])*
        pub(super) fn fill(kind: PatternKind, seed: u64, dim: usize, first: u64, out: &mut [f32]) {
            let generator = Generator::new(kind, seed, dim);
            fill_with(
                generator.rows(),
                |first, rows: &mut [F32s]| generate(&generator, first, rows),
                dim,
                first,
                out,
            )
        }
    };
}

/// The kernels for any CPU (compiled for the crate's target features).
mod portable {
    kernels!(portable_words,);
}

/// The kernels compiled with AVX2 (called only where the CPU has it).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    kernels!(philox_avx2::words, #[target_feature(enable = "avx2")]);
}

/// The instruction sets the kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    /// The crate's target features.
    Portable,
    /// x86-64 with AVX2: only built by [`Isa::detect`] (and tests) after checking the CPU.
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Isa {
    /// The best one this CPU runs.
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Isa::Avx2;
        }
        Isa::Portable
    }

    fn chunk(
        self,
        kind: PatternKind,
        query: &Query<'_>,
        lo: u64,
        hi: u64,
        scratch: &mut Scratch,
    ) -> StreamStats {
        match self {
            Isa::Portable => portable::chunk(kind, query, lo, hi, scratch),
            // SAFETY: `Isa::Avx2` only exists where `is_x86_feature_detected!("avx2")`
            // returned true on this CPU, which is the whole precondition of calling a
            // function compiled with `#[target_feature(enable = "avx2")]`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::chunk(kind, query, lo, hi, scratch) },
        }
    }

    fn fill(self, kind: PatternKind, seed: u64, dim: usize, first: u64, out: &mut [f32]) {
        match self {
            Isa::Portable => portable::fill(kind, seed, dim, first, out),
            // SAFETY: as in `Isa::chunk`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::fill(kind, seed, dim, first, out) },
        }
    }
}

/// Writes the `out.len() / dim` patterns `first, first + 1, …` of the run `seed`
/// (stream `Patterns`) into `out`, row-major, with the generator of [`stream_dot`]:
/// identical to `dam_core::procedural::fill` for ±1 kinds, within a few f32 ulps of it
/// for Gaussian and spherical ones (see the module documentation).
///
/// # Panics
/// If `dim` is 0 or does not divide `out.len()`.
pub fn fill_patterns(kind: PatternKind, seed: u64, first: u64, dim: usize, out: &mut [f32]) {
    assert!(
        dim > 0 && out.len().is_multiple_of(dim),
        "out must hold whole patterns of dimension {dim}"
    );
    Isa::detect().fill(kind, seed, dim, first, out);
}

/// Runs a [`StreamRequest`]: one online-softmax state per query, merged over chunks of
/// the pattern range in a fixed order (so every bit is independent of thread timing).
/// Agrees with [`crate::reference::procedural::stream_dot`] to f64 rounding for ±1
/// patterns, and up to the few-ulp differences of Gaussian entries otherwise (see the
/// module documentation).
///
/// # Panics
/// If `queries` is not B×N for B = `seeds.len()`.
pub fn stream_dot(request: &StreamRequest<'_>) -> Vec<StreamStats> {
    stream_on(Isa::detect(), request, StreamSeparation::Softmax)
}

/// [`stream_dot`] that also evaluates `separation` (the log-sum-ReLU statistic of
/// [`StreamSeparation::LogSumRelu`], with the definitions of
/// [`crate::reference::procedural::stream`]): the support count and the nearest pattern
/// agree with the reference exactly for ±1 patterns (the same s, |ξ|² and d²), and the
/// sums Σk and Σ_{support} ξ to f64 rounding (added per lane, then across lanes).
///
/// # Panics
/// If `queries` is not B×N for B = `seeds.len()`.
pub fn stream(request: &StreamRequest<'_>, separation: StreamSeparation) -> Vec<StreamStats> {
    stream_on(Isa::detect(), request, separation)
}

#[cfg(test)]
fn stream_dot_on(isa: Isa, request: &StreamRequest<'_>) -> Vec<StreamStats> {
    stream_on(isa, request, StreamSeparation::Softmax)
}

fn stream_on(
    isa: Isa,
    request: &StreamRequest<'_>,
    separation: StreamSeparation,
) -> Vec<StreamStats> {
    let StreamRequest {
        kind,
        dim,
        beta,
        queries,
        seeds,
        ..
    } = *request;
    let x64: Vec<f64> = queries.iter().map(|&v| v as f64).collect();
    let relu_beta = separation.relu_beta();
    fold_chunks(
        request,
        separation,
        Scratch::default,
        |scratch, q, lo, hi| {
            let x = &x64[q * dim..(q + 1) * dim];
            let query = Query {
                x,
                xx: x.iter().map(|&v| v * v).sum(),
                beta: beta as f64,
                relu_beta,
                seed: seeds[q],
            };
            isa.chunk(kind, &query, lo, hi, scratch)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use dam_core::procedural::{box_muller, philox4x32_10};

    /// The instruction sets this CPU runs (the portable one always).
    fn isas() -> Vec<Isa> {
        let mut isas = vec![Isa::Portable];
        if Isa::detect() != Isa::Portable {
            isas.push(Isa::detect());
        }
        isas
    }

    /// Lane l of block `block` of the group at `first` is Philox of (block, μ = first + l,
    /// stream 0), on every instruction set, including μ that cross a 2³² boundary.
    #[test]
    fn lane_wise_philox_matches_core() {
        let mut cases = vec![(0u64, 0u64, 0u32), (u64::MAX, u64::MAX - 3, u32::MAX)];
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..200 {
            // A fixed xorshift sequence: seeds, first indices and blocks of every size.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cases.push((x, x.rotate_left(17) >> (x % 64), (x >> 40) as u32 % 40));
        }
        cases.push((9, (1 << 32) - 5, 3));
        for isa in isas() {
            for &(seed, first, block) in &cases {
                let keys = RoundKeys::of(seed);
                let got = match isa {
                    Isa::Portable => portable_words(&keys, first, block),
                    // SAFETY: `isas` lists `Isa::Avx2` only where the CPU has AVX2.
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => unsafe { philox_avx2::words(&keys, first, block) },
                };
                for l in 0..LANES {
                    let mu = first.wrapping_add(l as u64);
                    let want = philox4x32_10(
                        [block, mu as u32, (mu >> 32) as u32, 0],
                        [seed as u32, (seed >> 32) as u32],
                    );
                    let lane = [got[0][l], got[1][l], got[2][l], got[3][l]];
                    assert_eq!(lane, want, "{isa:?} seed {seed} μ {mu} block {block}");
                }
            }
        }
    }

    /// The correctly rounded Box–Muller pair: ln, cos and sin in f64 (glibc's are
    /// correctly rounded to f64 in all but rare cases), rounded to f32, then the f32
    /// steps of `box_muller`.
    fn box_muller_correctly_rounded(a: u32, b: u32) -> (f32, f32) {
        let ln = (uniform_open0(a) as f64).ln() as f32;
        let r = (-2.0 * ln).sqrt();
        let theta = std::f32::consts::PI * uniform_sym(b);
        let (sin, cos) = ((theta as f64).sin() as f32, (theta as f64).cos() as f32);
        (r * cos, r * sin)
    }

    /// Counts the pairs of the batch that differ from the correctly rounded Box–Muller,
    /// and checks every value against libm's `box_muller`: at most `LIBM_ULPS` apart.
    fn check_batch(a: &[u32; PAIRS], b: &[u32; PAIRS]) -> usize {
        const LIBM_ULPS: f32 = 3.0;
        let (x, y) = box_muller_batch(a, b);
        let mut misses = 0;
        for i in 0..PAIRS {
            misses += ((x[i], y[i]) != box_muller_correctly_rounded(a[i], b[i])) as usize;
            let libm = box_muller(a[i], b[i]);
            for (got, want) in [(x[i], libm.0), (y[i], libm.1)] {
                let ulp = f32::from_bits(want.abs().to_bits() + 1) - want.abs();
                assert!(
                    (got - want).abs() <= LIBM_ULPS * ulp.max(f32::MIN_POSITIVE),
                    "a={:#x} b={:#x}: {got} vs libm {want}",
                    a[i],
                    b[i]
                );
            }
        }
        misses
    }

    /// Every one of the 2²⁴ inputs of `ln` (with a fixed angle) and of `sin`, `cos` (with
    /// a fixed ln input): the uniforms read the top 24 bits of a word, so this is all of
    /// them. The batch is the correctly rounded Box–Muller except in at most `ALLOWED`
    /// cases each (f64 values within ~2⁻⁴⁴ of a rounding boundary: 0 and 2 with glibc).
    #[test]
    fn box_muller_is_correctly_rounded_for_every_input() {
        const ALLOWED: usize = 16;
        let (mut ln_misses, mut angle_misses) = (0, 0);
        for batch in 0..(1u32 << 24) / PAIRS as u32 {
            let mut sweep = [0u32; PAIRS];
            for (i, w) in sweep.iter_mut().enumerate() {
                let k = batch * PAIRS as u32 + i as u32;
                // The low 8 bits must not matter: vary them too.
                *w = (k << 8) | (k.wrapping_mul(0x9E37_79B9) >> 24);
            }
            ln_misses += check_batch(&sweep, &[0x8765_4321; PAIRS]);
            angle_misses += check_batch(&[0x1234_5678; PAIRS], &sweep);
        }
        assert!(
            ln_misses <= ALLOWED,
            "{ln_misses} ln inputs not correctly rounded"
        );
        assert!(
            angle_misses <= ALLOWED,
            "{angle_misses} angles not correctly rounded"
        );
    }

    /// Both instruction sets compute the same bits: patterns and stream states.
    #[test]
    fn instruction_sets_agree_bit_for_bit() {
        let kinds = [
            PatternKind::Binary,
            PatternKind::correlated(0.4).unwrap(),
            PatternKind::Gaussian,
            PatternKind::Spherical,
        ];
        let isas = isas();
        for kind in kinds {
            for dim in [1usize, 7, 24, 130] {
                let mut fills = Vec::new();
                for &isa in &isas {
                    let mut out = vec![0.0f32; 37 * dim];
                    isa.fill(kind, 77, dim, (1 << 32) - 20, &mut out);
                    fills.push(out);
                }
                assert!(fills.windows(2).all(|w| w[0] == w[1]), "{kind:?} N={dim}");
                let queries: Vec<f32> = (0..3 * dim)
                    .map(|i| ((i * 37) % 11) as f32 * 0.3 - 1.4)
                    .collect();
                let seeds = [5u64, 6, 7];
                let request = StreamRequest {
                    kind,
                    dim,
                    start: 3,
                    end: 3 + 1000,
                    beta: 2.5,
                    queries: &queries,
                    seeds: &seeds,
                };
                let states: Vec<_> = isas
                    .iter()
                    .map(|&isa| stream_dot_on(isa, &request))
                    .collect();
                assert!(states.windows(2).all(|w| w[0] == w[1]), "{kind:?} N={dim}");
            }
        }
    }

    /// The lane-wise exp against libm's, over its whole range and at its edges.
    #[test]
    fn exp_lanes_is_accurate() {
        let mut t = [0.0; LANES];
        for k in 0..100_000 {
            for (l, t) in t.iter_mut().enumerate() {
                *t = -((k * LANES + l) as f64) * 7.08e-3 / LANES as f64;
            }
            let e = exp_lanes(&t);
            for l in 0..LANES {
                let want = t[l].exp();
                assert!(
                    (e[l] - want).abs() <= 4e-15 * want,
                    "e^{} = {} vs {want}",
                    t[l],
                    e[l]
                );
            }
        }
        let mut edges = [0.0; LANES];
        edges[..5].copy_from_slice(&[f64::NEG_INFINITY, -708.0, -708.5, -1e300, -0.0]);
        let e = exp_lanes(&edges);
        assert_eq!([e[0], e[2], e[3], e[4]], [0.0, 0.0, 0.0, 1.0]);
        assert!((e[1] / (-708.0f64).exp() - 1.0).abs() < 4e-15, "{}", e[1]);
    }
}
