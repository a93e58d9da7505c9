//! Patterns that need no memory: pattern μ of a run is a pure function of (seed, μ),
//! generated with the counter-based Philox-4x32-10 RNG (Salmon et al., SC'11). The same
//! arithmetic is written in `shaders/philox.wgsl`, so the CPU reference and the GPU see
//! the same patterns: bit-identical for ±1, within a few f32 ulps for Gaussian and
//! spherical ones (Box–Muller uses `ln`, `sqrt`, `sin`, `cos`, whose last bits differ
//! between libm and GPU built-ins).

use crate::weights::{log_sum_relu_energy, OnlineLse};
use crate::{Error, Result};

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox-4x32 with 10 rounds: four random u32 for a 128-bit counter and a 64-bit key.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = M0 as u64 * c[0] as u64;
        let p1 = M1 as u64 * c[2] as u64;
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// The key of a run's seed.
pub fn key_of(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

/// Which stream of a run a counter belongs to (the fourth counter word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stream {
    /// Pattern entries.
    Patterns = 0,
    /// Query corruption.
    Queries = 1,
}

/// Four random words for block `block` of item `index` in `stream`.
pub fn words(seed: u64, stream: Stream, index: u64, block: u32) -> [u32; 4] {
    philox4x32_10(
        [block, index as u32, (index >> 32) as u32, stream as u32],
        key_of(seed),
    )
}

/// A uniform in (0, 1] from the top 24 bits of a word (never 0, so `ln` is finite).
pub fn uniform_open0(word: u32) -> f32 {
    ((word >> 8) + 1) as f32 * (1.0 / 16_777_216.0)
}

/// A uniform in [−1, 1) from the top 24 bits of a word.
pub fn uniform_sym(word: u32) -> f32 {
    (word >> 8) as f32 * (2.0 / 16_777_216.0) - 1.0
}

/// Two standard normals from two words (Box–Muller with the angle in [−π, π)).
pub fn box_muller(a: u32, b: u32) -> (f32, f32) {
    let r = (-2.0 * uniform_open0(a).ln()).sqrt();
    let theta = std::f32::consts::PI * uniform_sym(b);
    (r * theta.cos(), r * theta.sin())
}

/// The distribution of procedural patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatternKind {
    /// Uniform on the sphere ‖ξ‖ = √N (Gaussian, then rescaled).
    Spherical,
    /// i.i.d. N(0, 1) entries.
    Gaussian,
    /// i.i.d. ±1 entries (one random bit each).
    Binary,
    /// ±1 entries with pairwise *feature* correlation c (Bielmeier & Friedland's setting):
    /// pattern μ draws one latent sign z_μ, and each entry copies it with probability
    /// q = √c, else is an independent random sign. Over patterns, any two features then
    /// have correlation E[ξ_i ξ_j] = q² = c, every feature has mean 0 and variance 1, and
    /// patterns stay independent of each other. `share` is q in 24-bit fixed point
    /// (q = share / 2²⁴); build it with [`PatternKind::correlated`]. Integer arithmetic
    /// only, so the CPU and the GPU generate the same bits.
    Correlated {
        /// q · 2²⁴, below 2²⁴.
        share: u32,
    },
}

impl PatternKind {
    /// The correlated ensemble with feature correlation `c` ∈ [0, 1) (q = √c, rounded to
    /// 24 bits; [`PatternKind::correlation`] gives the value realised by that rounding).
    pub fn correlated(c: f64) -> Result<Self> {
        if !(c.is_finite() && (0.0..1.0).contains(&c)) {
            return Err(Error::InvalidParameter {
                argument: "correlation c",
                value: c.to_string(),
                reason: "must be in [0, 1)".into(),
            });
        }
        let share = (c.sqrt() * SHARE_ONE as f64).round() as u32;
        Ok(PatternKind::Correlated {
            share: share.min(SHARE_ONE - 1),
        })
    }

    /// The expected pairwise feature correlation of the ensemble (0 for i.i.d. ones).
    pub fn correlation(&self) -> f64 {
        match *self {
            PatternKind::Correlated { share } => {
                let q = share as f64 / SHARE_ONE as f64;
                q * q
            }
            _ => 0.0,
        }
    }

    /// Whether the entries are ±1 (binary and correlated).
    pub fn is_binary(&self) -> bool {
        matches!(self, PatternKind::Binary | PatternKind::Correlated { .. })
    }
}

/// 2²⁴: the fixed-point one of [`PatternKind::Correlated`]'s `share`.
pub const SHARE_ONE: u32 = 1 << 24;

/// The largest number of procedural patterns (2⁴⁰).
pub const MAX_PROCEDURAL_COUNT: u64 = 1 << 40;

/// A set of `count` procedural patterns of dimension `dim`, identified by `seed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Procedural {
    /// Distribution.
    pub kind: PatternKind,
    /// Dimension N.
    pub dim: usize,
    /// Number of patterns P (≤ 2⁴⁰).
    pub count: u64,
    /// Run seed.
    pub seed: u64,
}

impl Procedural {
    /// Checks the sizes.
    pub fn validate(&self) -> Result<()> {
        if self.dim == 0 || self.count == 0 {
            return Err(Error::Empty {
                argument: "procedural patterns",
                detail: format!("P = {}, N = {}", self.count, self.dim),
            });
        }
        if self.count > MAX_PROCEDURAL_COUNT {
            return Err(Error::TooLarge {
                argument: "patterns (P)",
                size: self.count,
                limit: MAX_PROCEDURAL_COUNT,
                detail: "pattern indices are 40-bit".into(),
            });
        }
        Ok(())
    }

    /// Writes pattern μ into `out` (length N).
    pub fn pattern_into(&self, mu: u64, out: &mut [f32]) {
        fill(self.kind, self.seed, Stream::Patterns, mu, out);
    }

    /// Pattern μ.
    pub fn pattern(&self, mu: u64) -> Vec<f32> {
        let mut v = vec![0.0; self.dim];
        self.pattern_into(mu, &mut v);
        v
    }
}

/// Fills `out` with item `index` of `stream`, distributed as `kind`.
pub fn fill(kind: PatternKind, seed: u64, stream: Stream, index: u64, out: &mut [f32]) {
    let n = out.len();
    match kind {
        PatternKind::Binary => {
            for block in 0..n.div_ceil(128) {
                let w = words(seed, stream, index, block as u32);
                for lane in 0..128.min(n - block * 128) {
                    let bit = (w[lane / 32] >> (lane % 32)) & 1;
                    out[block * 128 + lane] = if bit == 1 { 1.0 } else { -1.0 };
                }
            }
        }
        PatternKind::Correlated { share } => {
            // Block 0 holds the latent sign; entry i uses word i mod 4 of block 1 + i/4:
            // its top 24 bits decide "copy the latent", its lowest bit is the own sign.
            let z = if words(seed, stream, index, 0)[0] & 1 == 1 {
                1.0
            } else {
                -1.0
            };
            for block in 0..n.div_ceil(4) {
                let w = words(seed, stream, index, 1 + block as u32);
                for (lane, &word) in w.iter().enumerate().take(4.min(n - block * 4)) {
                    out[block * 4 + lane] = if (word >> 8) < share {
                        z
                    } else if word & 1 == 1 {
                        1.0
                    } else {
                        -1.0
                    };
                }
            }
        }
        PatternKind::Gaussian | PatternKind::Spherical => {
            for block in 0..n.div_ceil(4) {
                let w = words(seed, stream, index, block as u32);
                let (a, b) = box_muller(w[0], w[1]);
                let (c, d) = box_muller(w[2], w[3]);
                for (lane, v) in [a, b, c, d].into_iter().enumerate() {
                    if block * 4 + lane < n {
                        out[block * 4 + lane] = v;
                    }
                }
            }
            if kind == PatternKind::Spherical {
                let norm2: f32 = out.iter().map(|v| v * v).sum();
                let scale = (n as f32).sqrt() / norm2.sqrt();
                out.iter_mut().for_each(|v| *v *= scale);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors of Random123 (kat_vectors, philox4x32_10).
    #[test]
    fn philox_matches_random123_known_answers() {
        assert_eq!(
            philox4x32_10([0, 0, 0, 0], [0, 0]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn patterns_have_the_right_distribution() {
        let p = Procedural {
            kind: PatternKind::Spherical,
            dim: 24,
            count: 1000,
            seed: 3,
        };
        for mu in 0..50 {
            let v = p.pattern(mu);
            let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 24f32.sqrt()).abs() < 1e-4);
        }
        let g = Procedural {
            kind: PatternKind::Gaussian,
            dim: 1000,
            ..p
        };
        let v: Vec<f32> = (0..100).flat_map(|mu| g.pattern(mu)).collect();
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / v.len() as f32;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
        let b = Procedural {
            kind: PatternKind::Binary,
            dim: 1000,
            ..p
        };
        let v: Vec<f32> = (0..100).flat_map(|mu| b.pattern(mu)).collect();
        assert!(v.iter().all(|&x| x == 1.0 || x == -1.0));
        assert!((v.iter().sum::<f32>() / v.len() as f32).abs() < 0.01);
        assert_ne!(p.pattern(0), p.pattern(1));
        assert_eq!(p.pattern(7), p.pattern(7));
    }
}

/// One streaming pass: for each query q (row of `queries`, B×N row-major) with its own
/// pattern seed `seeds[q]`, the online-softmax state of z = β·(ξ^μ·x_q) over the patterns
/// μ in `start..end` of that seed's run.
#[derive(Debug, Clone, Copy)]
pub struct StreamRequest<'a> {
    /// Pattern distribution.
    pub kind: PatternKind,
    /// Dimension N.
    pub dim: usize,
    /// First pattern index.
    pub start: u64,
    /// One past the last pattern index.
    pub end: u64,
    /// β on the raw dot product.
    pub beta: f32,
    /// B×N query states.
    pub queries: &'a [f32],
    /// One run seed per query.
    pub seeds: &'a [u64],
}

impl StreamRequest<'_> {
    /// Checks that `queries` holds one state of dimension `dim` per seed.
    pub fn validate(&self) -> Result<()> {
        let expected = self.seeds.len().checked_mul(self.dim);
        if expected != Some(self.queries.len()) {
            return Err(Error::DimensionMismatch {
                argument: "stream queries (B×N, one row per seed)",
                expected: expected.unwrap_or(usize::MAX),
                actual: self.queries.len(),
            });
        }
        Ok(())
    }
}

/// What a stream evaluates besides the online softmax of β·s, which it always keeps: a
/// separate argument of the stream (`dam::stream_procedural_with`), so that a
/// [`StreamRequest`] written for the softmax alone stays as it is.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum StreamSeparation {
    /// Only the online softmax ([`StreamStats::relu`] is `None`).
    #[default]
    Softmax,
    /// Also the log-sum-ReLU statistic of every query ([`ReluStats`]), with the kernel
    /// k_μ = max(0, 1 − (β/2) d_μ²), d_μ² = ‖x − ξ^μ‖² ([`squared_distance`],
    /// [`crate::weights::relu_kernel_sq`]): the kernel of `Separation::LogSumRelu` with
    /// the negative Euclidean similarity. On the sphere |x|² = |ξ|² = N, β = b/N gives the
    /// spherical form max(0, 1 − b + bφ_μ), φ_μ = x·ξ^μ/N.
    LogSumRelu {
        /// β > 0 on the squared distance: the support is d² < 2/β.
        beta: f32,
    },
}

impl StreamSeparation {
    /// Checks β (finite and > 0).
    pub fn validate(&self) -> Result<()> {
        match *self {
            StreamSeparation::Softmax => Ok(()),
            StreamSeparation::LogSumRelu { beta } if beta.is_finite() && beta > 0.0 => Ok(()),
            StreamSeparation::LogSumRelu { beta } => Err(Error::InvalidParameter {
                argument: "StreamSeparation::LogSumRelu beta",
                value: beta.to_string(),
                reason: "β must be finite and > 0 (the support is d² < 2/β)".into(),
            }),
        }
    }

    /// The log-sum-ReLU β, if this separation has one.
    pub fn relu_beta(&self) -> Option<f64> {
        match *self {
            StreamSeparation::Softmax => None,
            StreamSeparation::LogSumRelu { beta } => Some(beta as f64),
        }
    }
}

/// ‖x − ξ‖² from its parts: `xx` = |x|², `s` = x·ξ and `pp` = |ξ|², each an f64 sum of
/// exact f32 products in entry order; clamped at 0 against rounding. Every stream computes
/// the distance of its log-sum-ReLU statistic this way, so that equal parts give equal
/// distances and the same support on every CPU path.
#[inline(always)]
pub fn squared_distance(xx: f64, s: f64, pp: f64) -> f64 {
    (xx - 2.0 * s + pp).max(0.0)
}

/// The log-sum-ReLU state of one query over a range of patterns: Σ_μ k_μ, the support
/// {μ : k_μ > 0} (its size and the sum of its patterns) and the nearest pattern. Two
/// states over disjoint ranges merge exactly up to the order of the f64 sums
/// ([`ReluStats::merge`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ReluStats {
    /// Σ_μ k_μ.
    pub sum: f64,
    /// |support|: the patterns with k_μ > 0 (a pattern exactly at the wall is outside).
    pub count: u64,
    /// Σ_{μ in the support} ξ^μ (length N).
    pub acc: Vec<f64>,
    /// The smallest squared distance seen (+∞ when empty).
    pub nearest_d2: f64,
    /// Its pattern index (ties → lowest); `u64::MAX` when empty.
    pub nearest_i: u64,
}

impl ReluStats {
    /// The state of an empty range.
    pub fn empty(dim: usize) -> Self {
        Self {
            sum: 0.0,
            count: 0,
            acc: vec![0.0; dim],
            nearest_d2: f64::INFINITY,
            nearest_i: u64::MAX,
        }
    }

    /// Folds in one pattern with squared distance `d2` and kernel `k`.
    pub fn push(&mut self, index: u64, d2: f64, k: f64, pattern: &[f32]) {
        self.sum += k;
        if k > 0.0 {
            self.count += 1;
            for (a, &x) in self.acc.iter_mut().zip(pattern) {
                *a += x as f64;
            }
        }
        if d2 < self.nearest_d2 || (d2 == self.nearest_d2 && index < self.nearest_i) {
            self.nearest_d2 = d2;
            self.nearest_i = index;
        }
    }

    /// Combines the states of two disjoint ranges.
    pub fn merge(&mut self, other: &ReluStats) {
        self.sum += other.sum;
        self.count += other.count;
        for (a, &b) in self.acc.iter_mut().zip(&other.acc) {
            *a += b;
        }
        if other.nearest_d2 < self.nearest_d2
            || (other.nearest_d2 == self.nearest_d2 && other.nearest_i < self.nearest_i)
        {
            self.nearest_d2 = other.nearest_d2;
            self.nearest_i = other.nearest_i;
        }
    }

    /// Whether no pattern is in the support.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The unweighted mean of the support, where one log-sum-ReLU update moves the state;
    /// `None` for an empty support (the update leaves the state where it is).
    pub fn mean(&self) -> Option<Vec<f64>> {
        (self.count > 0).then(|| self.acc.iter().map(|a| a / self.count as f64).collect())
    }

    /// E = −β⁻¹ log(Σ_μ k_μ + ε) ([`crate::weights::log_sum_relu_energy`]): +∞ for an
    /// empty support with ε = 0, never NaN. With β = b/N on the sphere this is the
    /// spherical −(N/b) log Σ_μ max(0, 1 − b + bφ_μ).
    pub fn energy(&self, beta: f64, eps: f64) -> f64 {
        log_sum_relu_energy(beta, eps, self.sum)
    }
}

/// Online-softmax state of one query over a range of patterns: with z_μ = β·s_μ,
/// `m` = max z, `l` = Σ e^{z−m}, `acc` = Σ e^{z−m} ξ, and the most similar pattern.
/// Two states over disjoint ranges merge exactly ([`StreamStats::merge`]), which is how
/// chunks, GPU splits and `--shard`ed pattern ranges are combined.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamStats {
    /// Running max of β·s (−∞ when empty).
    pub m: f64,
    /// Σ e^{β s − m}.
    pub l: f64,
    /// Σ e^{β s − m} ξ (length N).
    pub acc: Vec<f64>,
    /// Largest similarity seen.
    pub best_s: f64,
    /// Its pattern index (ties → lowest); `u64::MAX` when empty.
    pub best_i: u64,
    /// The log-sum-ReLU statistic, when the stream was asked for it
    /// ([`StreamSeparation::LogSumRelu`]); `None` otherwise.
    pub relu: Option<ReluStats>,
}

impl StreamStats {
    /// The state of an empty range (softmax only).
    pub fn empty(dim: usize) -> Self {
        Self {
            m: f64::NEG_INFINITY,
            l: 0.0,
            acc: vec![0.0; dim],
            best_s: f64::NEG_INFINITY,
            best_i: u64::MAX,
            relu: None,
        }
    }

    /// The state of an empty range of a stream that evaluates `separation`.
    pub fn empty_for(dim: usize, separation: StreamSeparation) -> Self {
        Self {
            relu: separation.relu_beta().map(|_| ReluStats::empty(dim)),
            ..Self::empty(dim)
        }
    }

    /// Folds in one pattern with similarity `s` and z = β·s.
    pub fn push(&mut self, index: u64, s: f64, z: f64, pattern: &[f32]) {
        let mut state = OnlineLse {
            m: self.m,
            l: self.l,
        };
        let (factor, p) = state.push(z);
        if factor != 1.0 {
            self.acc.iter_mut().for_each(|a| *a *= factor);
        }
        (self.m, self.l) = (state.m, state.l);
        for (a, &x) in self.acc.iter_mut().zip(pattern) {
            *a += p * x as f64;
        }
        if s > self.best_s || (s == self.best_s && index < self.best_i) {
            self.best_s = s;
            self.best_i = index;
        }
    }

    /// Combines the states of two disjoint ranges.
    pub fn merge(&mut self, other: &StreamStats) {
        match (&mut self.relu, &other.relu) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (None, Some(theirs)) => self.relu = Some(theirs.clone()),
            _ => {}
        }
        if other.l == 0.0 && other.best_i == u64::MAX {
            return;
        }
        let mut state = OnlineLse {
            m: self.m,
            l: self.l,
        };
        let (a, b) = state.merge(&OnlineLse {
            m: other.m,
            l: other.l,
        });
        for (x, y) in self.acc.iter_mut().zip(&other.acc) {
            *x = *x * a + y * b;
        }
        (self.m, self.l) = (state.m, state.l);
        if other.best_s > self.best_s || (other.best_s == self.best_s && other.best_i < self.best_i)
        {
            self.best_s = other.best_s;
            self.best_i = other.best_i;
        }
    }

    /// log Σ e^{β s}.
    pub fn lse(&self) -> f64 {
        OnlineLse {
            m: self.m,
            l: self.l,
        }
        .lse()
    }

    /// The softmax-weighted mean Σ softmax(βs)_μ ξ^μ.
    pub fn mean(&self) -> Vec<f64> {
        self.acc.iter().map(|a| a / self.l).collect()
    }
}

#[cfg(test)]
mod correlated_tests {
    use super::*;

    /// The realised feature correlation, feature means and pattern independence of the
    /// correlated ensemble match the construction (8,000 patterns, N = 12).
    #[test]
    fn correlated_patterns_have_the_asked_feature_correlation() {
        for c in [0.0, 0.2, 0.5, 0.9] {
            let kind = PatternKind::correlated(c).unwrap();
            assert!((kind.correlation() - c).abs() < 1e-6);
            let (n, p) = (12usize, 8000u64);
            let rows: Vec<Vec<f32>> = (0..p)
                .map(|mu| {
                    let mut v = vec![0.0; n];
                    fill(kind, 11, Stream::Patterns, mu, &mut v);
                    v
                })
                .collect();
            assert!(rows.iter().flatten().all(|&v| v == 1.0 || v == -1.0));
            let mut corr = 0.0;
            let mut pairs = 0;
            for i in 0..n {
                let mean: f64 = rows.iter().map(|r| r[i] as f64).sum::<f64>() / p as f64;
                assert!(mean.abs() < 0.05, "c={c}: feature {i} mean {mean}");
                for j in i + 1..n {
                    corr += rows.iter().map(|r| (r[i] * r[j]) as f64).sum::<f64>() / p as f64;
                    pairs += 1;
                }
            }
            let corr = corr / pairs as f64;
            assert!((corr - c).abs() < 0.03, "c={c}: realised {corr}");
            // Patterns are independent: neighbours' overlaps average to zero.
            let overlap: f64 = rows
                .windows(2)
                .map(|w| {
                    w[0].iter()
                        .zip(&w[1])
                        .map(|(a, b)| (a * b) as f64)
                        .sum::<f64>()
                })
                .sum::<f64>()
                / (p - 1) as f64;
            assert!(overlap.abs() < 0.3, "c={c}: mean overlap {overlap}");
        }
        for bad in [-0.1, 1.0, f64::NAN, 2.0] {
            assert!(matches!(
                PatternKind::correlated(bad),
                Err(Error::InvalidParameter { .. })
            ));
        }
    }
}
