//! Streaming log-sum-exp over procedural patterns on the CPU, the fast path (see
//! `dam_core::procedural`; [`crate::reference::procedural`] is the oracle it is tested
//! against).
//!
//! Patterns are generated [`LANES`] at a time, one pattern per lane: the counters of
//! consecutive patterns μ, μ+1, … run through Philox side by side, Box–Muller is
//! evaluated lane-wise, and the dot product, the best-pattern search and the
//! online-softmax accumulators are kept per lane, so the hot loop has no horizontal
//! operation and LLVM vectorises it. On x86-64 the same code is compiled a second time
//! with AVX2 enabled and chosen at run time.
//!
//! What matches the reference bit for bit:
//! * ±1 patterns (binary, correlated): the same integer arithmetic as `fill`.
//! * The similarity s = ξ·x: each f32 × f32 product is exact in f64 and the products are
//!   added in the same order as the reference, so s, z = β·s, the running max `m`,
//!   `best_s` and `best_i` are identical whenever the patterns are.
//!
//! What does not: Gaussian and spherical entries. `fill` calls the platform's f32 `ln`,
//! `sin` and `cos`, which are not correctly rounded (glibc's differ from the correctly
//! rounded value for about 1 % of the inputs Box–Muller can see). Here those three are
//! evaluated in f64 and rounded once to f32, so they are correctly rounded except in the
//! rare cases where the f64 value lies within ~2⁻⁴⁰ of a rounding boundary, and the
//! patterns are the same on every platform. An entry is within a few f32 ulps of
//! `fill`'s (and equal to it in about 97 % of cases); the rest of Box–Muller (the
//! uniforms, −2·ln u, √, θ = π·v, r·cos θ, r·sin θ, the spherical rescale) uses the same
//! f32 operations in the same order as `fill`.
//!
//! Softmax weights e^{z−m} use a lane-wise f64 `exp` (relative error ~1e-15), and the
//! softmax sums run per lane and are added up at the end of a chunk, so l, acc, `lse` and
//! `mean` agree with the reference to f64 rounding for the same patterns. A group of
//! [`LANES`] patterns whose weights are all below e^{−70} relative to the running max is
//! skipped: at most 2⁴⁰ such patterns add less than 2⁻⁶⁰ to l ≥ 1, below its rounding.
//!
//! Results never depend on the instruction set chosen (no fused multiply-add, no
//! reassociation) nor on thread timing (chunks merge in a fixed order, as in the
//! reference).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use dam_core::procedural::{
    uniform_open0, uniform_sym, PatternKind, Stream, StreamRequest, StreamStats,
};

/// Patterns generated side by side (one per lane).
pub const LANES: usize = 8;

/// Patterns per work item (as in the reference).
const CHUNK: u64 = 1 << 16;

/// A group whose largest z is this far below the running max is skipped (e^{−70} < 2⁻¹⁰⁰).
const SKIP_BELOW: f64 = 70.0;

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// One lane-wise vector of u32 (one value per pattern).
type U32s = [u32; LANES];
/// One lane-wise vector of f32.
type F32s = [f32; LANES];
/// One lane-wise vector of f64.
type F64s = [f64; LANES];

/// The ten round keys of Philox-4x32-10 for one seed.
#[derive(Debug, Clone, Copy)]
struct RoundKeys([[u32; 2]; 10]);

impl RoundKeys {
    #[inline(always)]
    fn of(seed: u64) -> Self {
        let (k0, k1) = (seed as u32, (seed >> 32) as u32);
        let mut keys = [[0; 2]; 10];
        for (r, key) in keys.iter_mut().enumerate() {
            *key = [
                k0.wrapping_add(W0.wrapping_mul(r as u32)),
                k1.wrapping_add(W1.wrapping_mul(r as u32)),
            ];
        }
        Self(keys)
    }
}

/// Philox-4x32-10 in lanes: lane l of the result is `philox4x32_10` of lane l of the
/// counter words.
#[inline(always)]
fn philox_lanes(counter: [U32s; 4], keys: &RoundKeys) -> [U32s; 4] {
    let mut c = counter;
    for key in &keys.0 {
        let mut next = [[0u32; LANES]; 4];
        for l in 0..LANES {
            let p0 = M0 as u64 * c[0][l] as u64;
            let p1 = M1 as u64 * c[2][l] as u64;
            next[0][l] = (p1 >> 32) as u32 ^ c[1][l] ^ key[0];
            next[1][l] = p1 as u32;
            next[2][l] = (p0 >> 32) as u32 ^ c[3][l] ^ key[1];
            next[3][l] = p0 as u32;
        }
        c = next;
    }
    c
}

/// The words of block `block` of patterns `first .. first + LANES` (stream `Patterns`).
#[inline(always)]
fn pattern_words(keys: &RoundKeys, first: u64, block: u32) -> [U32s; 4] {
    let mut counter = [[0u32; LANES]; 4];
    for l in 0..LANES {
        let mu = first.wrapping_add(l as u64);
        counter[0][l] = block;
        counter[1][l] = mu as u32;
        counter[2][l] = (mu >> 32) as u32;
        counter[3][l] = Stream::Patterns as u32;
    }
    philox_lanes(counter, keys)
}

/// 1.5·2⁵²: adding it rounds an f64 below 2⁵¹ in magnitude to an integer (ties to even),
/// which then sits in the low mantissa bits.
const ROUND_MAGIC: f64 = 6_755_399_441_055_744.0;

/// ln u for u in (0, 1] (a normal f32), correctly rounded to f32 except within ~2⁻⁴⁰ of a
/// rounding boundary: u = 2^e·m with m in [√½, √2), ln m = 2·atanh(t), t = (m−1)/(m+1),
/// |t| ≤ 0.1716, by its Taylor series to t¹⁵ (truncation < 4e-14 relative).
#[inline(always)]
fn ln_unit(u: f32) -> f32 {
    let bits = u.to_bits();
    let mantissa = (bits & 0x007f_ffff) | 0x3f80_0000;
    let high = mantissa >= 0x3fb5_04f3; // m ≥ √2: halve it
    let mantissa = if high { mantissa - 0x0080_0000 } else { mantissa };
    let e = (bits >> 23) as i32 - 127 + high as i32;
    let m = f32::from_bits(mantissa) as f64;
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let mut poly = 1.0 / 15.0;
    for k in [13.0, 11.0, 9.0, 7.0, 5.0, 3.0] {
        poly = poly * t2 + 1.0 / k;
    }
    let ln_m = 2.0 * t + 2.0 * t * t2 * poly;
    (e as f64 * std::f64::consts::LN_2 + ln_m) as f32
}

/// (sin θ, cos θ) for |θ| ≤ π + 1e-6, each correctly rounded to f32 except within ~2⁻⁴⁰
/// of a rounding boundary: θ = q·π/2 + y (q = nearest integer, π/2 in two parts, exact
/// for |q| ≤ 2), |y| ≤ π/4, Taylor series to y¹³ (sin) and y¹⁴ (cos).
#[inline(always)]
fn sin_cos(theta: f32) -> (f32, f32) {
    const PIO2_HI: f64 = std::f64::consts::FRAC_PI_2;
    const PIO2_LO: f64 = 6.123_233_995_736_766e-17;
    let x = theta as f64;
    let shifted = x * std::f64::consts::FRAC_2_PI + ROUND_MAGIC;
    let q = shifted - ROUND_MAGIC;
    let quadrant = shifted.to_bits() as u32; // q + 2⁵¹ in the low bits: ≡ q (mod 4)
    let y = (x - q * PIO2_HI) - q * PIO2_LO;
    let y2 = y * y;
    let mut sin_poly = -1.0 / 6_227_020_800.0; // −1/13!
    for c in [
        1.0 / 39_916_800.0,
        -1.0 / 362_880.0,
        1.0 / 5_040.0,
        -1.0 / 120.0,
        1.0 / 6.0,
    ] {
        sin_poly = sin_poly * y2 + c;
    }
    // sin y = y − y³·(1/6 − y²/120 + …)
    let sin_y = y - y * y2 * sin_poly;
    let mut cos_poly = -1.0 / 87_178_291_200.0; // −1/14!
    for c in [
        1.0 / 479_001_600.0,
        -1.0 / 3_628_800.0,
        1.0 / 40_320.0,
        -1.0 / 720.0,
        1.0 / 24.0,
    ] {
        cos_poly = cos_poly * y2 + c;
    }
    // cos y = 1 − y²/2 + y⁴·(1/24 − y²/720 + …)
    let cos_y = 1.0 - 0.5 * y2 + y2 * y2 * cos_poly;
    let (s, c) = if quadrant & 1 == 1 {
        (cos_y, sin_y)
    } else {
        (sin_y, cos_y)
    };
    let s = if quadrant & 2 != 0 { -s } else { s };
    let c = if quadrant.wrapping_add(1) & 2 != 0 {
        -c
    } else {
        c
    };
    (s as f32, c as f32)
}

/// Box–Muller of `dam_core::procedural::box_muller` with correctly rounded `ln`, `sin`
/// and `cos` (see the module documentation); the other operations are the same.
#[inline(always)]
fn box_muller(a: u32, b: u32) -> (f32, f32) {
    let r = (-2.0 * ln_unit(uniform_open0(a))).sqrt();
    let theta = std::f32::consts::PI * uniform_sym(b);
    let (sin, cos) = sin_cos(theta);
    (r * cos, r * sin)
}

/// Box–Muller in lanes.
#[inline(always)]
fn box_muller_lanes(a: &U32s, b: &U32s) -> (F32s, F32s) {
    let mut x = [0.0; LANES];
    let mut y = [0.0; LANES];
    for l in 0..LANES {
        (x[l], y[l]) = box_muller(a[l], b[l]);
    }
    (x, y)
}

/// e^t for t ≤ 0 in lanes (relative error ~1e-15; 0 below −708, so also for t = −∞):
/// t = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by its Taylor series to r¹¹.
#[inline(always)]
fn exp_lanes(t: &F64s) -> F64s {
    const LN2_HI: f64 = 6.931_471_803_691_238e-1; // ln 2 to 33 bits: n·LN2_HI is exact
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    const COEF: [f64; 11] = [
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

/// Writes patterns `first .. first + LANES` lane-wise: `rows[i][l]` is entry i of pattern
/// `first + l`. `rows` has at least [`Generator::rows`] rows; only the first `dim` are
/// the pattern (the rest is scratch).
trait Generator {
    /// Rows of scratch `generate` needs.
    fn rows(&self) -> usize;
    fn generate(&self, first: u64, rows: &mut [F32s]);
}

struct Binary {
    keys: RoundKeys,
    dim: usize,
}

impl Generator for Binary {
    fn rows(&self) -> usize {
        self.dim
    }

    #[inline(always)]
    fn generate(&self, first: u64, rows: &mut [F32s]) {
        for (block, rows) in rows[..self.dim].chunks_mut(128).enumerate() {
            let w = pattern_words(&self.keys, first, block as u32);
            for (bit, row) in rows.iter_mut().enumerate() {
                let word = &w[bit / 32];
                for l in 0..LANES {
                    row[l] = if (word[l] >> (bit % 32)) & 1 == 1 {
                        1.0
                    } else {
                        -1.0
                    };
                }
            }
        }
    }
}

struct Correlated {
    keys: RoundKeys,
    dim: usize,
    share: u32,
}

impl Generator for Correlated {
    fn rows(&self) -> usize {
        self.dim
    }

    #[inline(always)]
    fn generate(&self, first: u64, rows: &mut [F32s]) {
        let latent = pattern_words(&self.keys, first, 0)[0];
        let mut z = [0.0; LANES];
        for l in 0..LANES {
            z[l] = if latent[l] & 1 == 1 { 1.0 } else { -1.0 };
        }
        for (block, rows) in rows[..self.dim].chunks_mut(4).enumerate() {
            let w = pattern_words(&self.keys, first, 1 + block as u32);
            for (word, row) in w.iter().zip(rows.iter_mut()) {
                for l in 0..LANES {
                    row[l] = if (word[l] >> 8) < self.share {
                        z[l]
                    } else if word[l] & 1 == 1 {
                        1.0
                    } else {
                        -1.0
                    };
                }
            }
        }
    }
}

struct Gaussian {
    keys: RoundKeys,
    dim: usize,
    spherical: bool,
}

impl Generator for Gaussian {
    fn rows(&self) -> usize {
        self.dim.div_ceil(4) * 4
    }

    #[inline(always)]
    fn generate(&self, first: u64, rows: &mut [F32s]) {
        let rows = &mut rows[..self.rows()];
        for (block, out) in rows.chunks_exact_mut(4).enumerate() {
            let w = pattern_words(&self.keys, first, block as u32);
            (out[0], out[1]) = box_muller_lanes(&w[0], &w[1]);
            (out[2], out[3]) = box_muller_lanes(&w[2], &w[3]);
        }
        if self.spherical {
            // As in `fill`: Σ v² in f32 in entry order, then √N / √Σ.
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

/// Per-worker scratch: generated patterns and per-lane accumulators.
#[derive(Default)]
struct Scratch {
    rows: Vec<F32s>,
    acc: Vec<F64s>,
}

/// One query's part of a request.
struct Query<'a> {
    /// x as f64 (length N).
    x: &'a [f64],
    beta: f64,
    seed: u64,
}

/// The online-softmax state of patterns `lo..hi` (non-empty) for one query, with the
/// patterns of `generator`.
#[inline(always)]
fn chunk_with<G: Generator>(
    generator: &G,
    query: &Query<'_>,
    lo: u64,
    hi: u64,
    scratch: &mut Scratch,
) -> StreamStats {
    let dim = query.x.len();
    scratch.rows.resize(generator.rows().max(dim), [0.0; LANES]);
    scratch.acc.clear();
    scratch.acc.resize(dim, [0.0; LANES]);
    let rows = &mut scratch.rows[..];
    let acc = &mut scratch.acc[..dim];
    let beta = query.beta;
    let mut m = f64::NEG_INFINITY;
    let mut l_sum = [0.0f64; LANES];
    let mut best_s = [f64::NEG_INFINITY; LANES];
    let mut best_i = [u64::MAX; LANES];
    let mut first = lo;
    while first < hi {
        let valid = (hi - first).min(LANES as u64) as usize;
        generator.generate(first, rows);
        let pattern = &rows[..dim];
        // s in f64, entry by entry as in the reference (each product is exact).
        let mut s = [0.0f64; LANES];
        for (row, &x) in pattern.iter().zip(query.x) {
            for l in 0..LANES {
                s[l] += row[l] as f64 * x;
            }
        }
        let mut z = [f64::NEG_INFINITY; LANES];
        let mut z_max = f64::NEG_INFINITY;
        for l in 0..valid {
            z[l] = beta * s[l];
            z_max = z_max.max(z[l]);
            // Lane l sees increasing indices, so a strict > keeps the lowest on ties.
            if s[l] > best_s[l] {
                best_s[l] = s[l];
                best_i[l] = first + l as u64;
            }
        }
        if z_max > m {
            if m > f64::NEG_INFINITY {
                let scale = (m - z_max).exp();
                l_sum.iter_mut().for_each(|v| *v *= scale);
                for a in acc.iter_mut() {
                    a.iter_mut().for_each(|v| *v *= scale);
                }
            }
            m = z_max;
        }
        if z_max >= m - SKIP_BELOW {
            let mut t = [0.0; LANES];
            for l in 0..LANES {
                t[l] = z[l] - m;
            }
            let p = exp_lanes(&t);
            for l in 0..LANES {
                l_sum[l] += p[l];
            }
            for (a, row) in acc.iter_mut().zip(pattern) {
                for l in 0..LANES {
                    a[l] += p[l] * row[l] as f64;
                }
            }
        }
        first += valid as u64;
    }
    let mut stats = StreamStats::empty(dim);
    stats.m = m;
    stats.l = l_sum.iter().sum();
    for (out, a) in stats.acc.iter_mut().zip(acc.iter()) {
        *out = a.iter().sum();
    }
    for l in 0..LANES {
        if best_i[l] != u64::MAX
            && (best_s[l] > stats.best_s || (best_s[l] == stats.best_s && best_i[l] < stats.best_i))
        {
            stats.best_s = best_s[l];
            stats.best_i = best_i[l];
        }
    }
    stats
}

/// Lane-wise generation of `out.len() / dim` consecutive patterns from `first`.
#[inline(always)]
fn fill_with<G: Generator>(generator: &G, dim: usize, first: u64, out: &mut [f32]) {
    let mut rows = vec![[0.0; LANES]; generator.rows().max(dim)];
    for (group, block) in out.chunks_mut(LANES * dim).enumerate() {
        generator.generate(first + (group * LANES) as u64, &mut rows);
        for (l, pattern) in block.chunks_exact_mut(dim).enumerate() {
            for (v, row) in pattern.iter_mut().zip(&rows[..dim]) {
                *v = row[l];
            }
        }
    }
}

/// Runs `$body` with `$g` bound to the generator of `$kind`.
macro_rules! with_generator {
    ($kind:expr, $seed:expr, $dim:expr, |$g:ident| $body:expr) => {{
        let keys = RoundKeys::of($seed);
        let dim = $dim;
        match $kind {
            PatternKind::Binary => {
                let $g = &Binary { keys, dim };
                $body
            }
            PatternKind::Correlated { share } => {
                let $g = &Correlated { keys, dim, share };
                $body
            }
            PatternKind::Gaussian | PatternKind::Spherical => {
                let $g = &Gaussian {
                    keys,
                    dim,
                    spherical: $kind == PatternKind::Spherical,
                };
                $body
            }
        }
    }};
}

/// The work of one chunk, and of [`fill_patterns`]; compiled once per instruction set.
#[inline(always)]
fn chunk_generic(
    kind: PatternKind,
    query: &Query<'_>,
    lo: u64,
    hi: u64,
    scratch: &mut Scratch,
) -> StreamStats {
    with_generator!(kind, query.seed, query.x.len(), |g| chunk_with(
        g, query, lo, hi, scratch
    ))
}

#[inline(always)]
fn fill_generic(kind: PatternKind, seed: u64, dim: usize, first: u64, out: &mut [f32]) {
    with_generator!(kind, seed, dim, |g| fill_with(g, dim, first, out))
}

/// The instruction sets the kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    /// The crate's target features.
    Portable,
    /// x86-64 with AVX2 (checked at run time).
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
            Isa::Portable => chunk_generic(kind, query, lo, hi, scratch),
            // SAFETY: `Isa::Avx2` is only built by `Isa::detect` after
            // `is_x86_feature_detected!("avx2")` returned true on this CPU (or by tests that
            // check the same), which is the whole precondition of calling a function with
            // `#[target_feature(enable = "avx2")]`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::chunk(kind, query, lo, hi, scratch) },
        }
    }

    fn fill(self, kind: PatternKind, seed: u64, dim: usize, first: u64, out: &mut [f32]) {
        match self {
            Isa::Portable => fill_generic(kind, seed, dim, first, out),
            // SAFETY: as in `Isa::chunk`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::fill(kind, seed, dim, first, out) },
        }
    }
}

/// The kernels compiled with AVX2.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;

    #[target_feature(enable = "avx2")]
    pub(super) fn chunk(
        kind: PatternKind,
        query: &Query<'_>,
        lo: u64,
        hi: u64,
        scratch: &mut Scratch,
    ) -> StreamStats {
        chunk_generic(kind, query, lo, hi, scratch)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn fill(kind: PatternKind, seed: u64, dim: usize, first: u64, out: &mut [f32]) {
        fill_generic(kind, seed, dim, first, out)
    }
}

/// Writes the `out.len() / dim` patterns `first, first + 1, …` of the run `seed`
/// (stream `Patterns`) into `out`, row-major, with the generator of [`stream_dot`]:
/// identical to `dam_core::procedural::fill` for ±1 kinds, within a few f32 ulps for
/// Gaussian and spherical ones (see the module documentation).
///
/// # Panics
/// If `dim` is 0 or does not divide `out.len()`.
pub fn fill_patterns(kind: PatternKind, seed: u64, first: u64, dim: usize, out: &mut [f32]) {
    assert!(
        dim > 0 && out.len() % dim == 0,
        "out must hold whole patterns"
    );
    Isa::detect().fill(kind, seed, dim, first, out);
}

/// Runs a [`StreamRequest`]: one online-softmax state per query, merged over chunks of
/// the pattern range in a fixed order (so every bit is independent of thread timing).
/// Same results as [`crate::reference::procedural::stream_dot`] up to f64 rounding for
/// ±1 patterns, and up to the few-ulp differences of Gaussian entries otherwise (see
/// the module documentation).
///
/// # Panics
/// If `queries` is not B×N for B = `seeds.len()`.
pub fn stream_dot(request: &StreamRequest<'_>) -> Vec<StreamStats> {
    stream_dot_on(Isa::detect(), request)
}

fn stream_dot_on(isa: Isa, request: &StreamRequest<'_>) -> Vec<StreamStats> {
    let StreamRequest {
        kind,
        dim,
        start,
        end,
        beta,
        queries,
        seeds,
    } = *request;
    assert_eq!(queries.len(), seeds.len() * dim, "queries must be B×N");
    let b = seeds.len();
    let x64: Vec<f64> = queries.iter().map(|&v| v as f64).collect();
    let chunks = (end.saturating_sub(start)).div_ceil(CHUNK);
    let total = chunks * b as u64;
    let next = AtomicU64::new(0);
    // Per query: the merged prefix of chunks and the chunks that finished out of order,
    // so the merge order (and so every last bit) does not depend on thread timing.
    type Fold = (StreamStats, u64, BTreeMap<u64, StreamStats>);
    let results: Vec<Mutex<Fold>> = (0..b)
        .map(|_| Mutex::new((StreamStats::empty(dim), 0, BTreeMap::new())))
        .collect();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(total.max(1) as usize);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut scratch = Scratch::default();
                loop {
                    let item = next.fetch_add(1, Ordering::Relaxed);
                    if item >= total {
                        break;
                    }
                    let (q, chunk) = ((item % b as u64) as usize, item / b as u64);
                    let query = Query {
                        x: &x64[q * dim..(q + 1) * dim],
                        beta: beta as f64,
                        seed: seeds[q],
                    };
                    let lo = start + chunk * CHUNK;
                    let hi = (lo + CHUNK).min(end);
                    let stats = isa.chunk(kind, &query, lo, hi, &mut scratch);
                    let mut fold = results[q].lock().unwrap_or_else(|p| p.into_inner());
                    let (merged, next_chunk, pending) = &mut *fold;
                    pending.insert(chunk, stats);
                    while let Some(ready) = pending.remove(next_chunk) {
                        merged.merge(&ready);
                        *next_chunk += 1;
                    }
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()).0)
        .collect()
}
