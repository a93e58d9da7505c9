//! Binary dense associative memories: ±1 patterns bit-packed 32 spins per `u32`, and the
//! exact spin update of Krotov & Hopfield (2016, eq. 3).
//!
//! For spin i with the other spins fixed, let a_μ = h_μ − ξ_i^μ σ_i, where h_μ = ξ^μ·σ is the
//! integer overlap (N − 2·Hamming, computed with XOR + popcount). The update is
//!
//!   σ_i ← sign(Δ_i),  Δ_i = Σ_μ [F(a_μ + ξ_i^μ) − F(a_μ − ξ_i^μ)] = Σ_μ ξ_i^μ W(a_μ),
//!
//! with W(a) = F(a + 1) − F(a − 1), and σ_i unchanged when Δ_i = 0.
//!
//! # Why CPU and GPU make the same decisions
//!
//! Both backends evaluate Δ_i **exactly, in 64-bit integers** (the GPU with carry-propagating
//! `u32` pairs), from the same integer table W built here on the host:
//! * polynomial Fⁿ and rectified polynomial: W(a) is an integer; the table is exact, and the
//!   build fails with [`Error::TooLarge`] when P·max|W| could leave 62 bits;
//! * exponential F = e^{βs} (and softmax on binary states, whose decisions are the same, the
//!   log being monotone): Δ_i = 2 sinh β · e^{β a_top} Σ_μ ξ_i^μ e^{−β(a_top − a_μ)} with
//!   a_top = max_μ a_μ, so the sign is that of Σ_μ ξ_i^μ Q(a_top − a_μ) with the fixed-point
//!   table Q(k) = round(2⁴⁰ e^{−βk}). That sum is exact; it differs from the real-number sign
//!   only when |Σ ξ e^{−β(a_top − a)}| < P·2⁻⁴¹ (a tie to within 10⁻¹² relative), where both
//!   backends apply the same quantised rule. Nothing depends on floating-point rounding, so
//!   β·N in the thousands is fine.

use crate::procedural::{fill, key_of, philox4x32_10, PatternKind, Stream};
use crate::{Error, Result};

/// ±1 patterns, bit-packed: bit j of word w of pattern μ is spin 32w + j (1 → +1, 0 → −1);
/// bits past N in the last word are zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryPatterns {
    words: Vec<u32>,
    count: usize,
    dim: usize,
}

/// Words per packed state of dimension `dim`.
pub fn words_per_state(dim: usize) -> usize {
    dim.div_ceil(32)
}

/// Packs one ±1 state (any value ≥ 0 counts as +1).
pub fn pack(state: &[f32], out: &mut [u32]) {
    out.iter_mut().for_each(|w| *w = 0);
    for (i, &v) in state.iter().enumerate() {
        if v >= 0.0 {
            out[i / 32] |= 1 << (i % 32);
        }
    }
}

/// Unpacks one state of dimension `dim` into ±1 values.
pub fn unpack(words: &[u32], dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|i| {
            if (words[i / 32] >> (i % 32)) & 1 == 1 {
                1.0
            } else {
                -1.0
            }
        })
        .collect()
}

/// ξ·σ = N − 2·Hamming(ξ, σ) by XOR + popcount.
pub fn overlap(a: &[u32], b: &[u32], dim: usize) -> i32 {
    let hamming: u32 = a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum();
    dim as i32 - 2 * hamming as i32
}

impl BinaryPatterns {
    /// What both backends check and build before running the spin dynamics: the batch
    /// size B of `queries` (see [`BinaryPatterns::validate_queries`]) and the exact weight
    /// table of `energy` for these patterns.
    pub fn prepare_run(&self, energy: SpinEnergy, queries: &[u32]) -> Result<(usize, SpinTable)> {
        let b = self.validate_queries(queries)?;
        Ok((b, energy.table(self.dim(), self.count())?))
    }

    /// Checks a clamp mask ([`Clamp`]) against the patterns' dimension.
    pub fn validate_clamp(&self, clamp: &Clamp) -> Result<()> {
        let w = words_per_state(self.dim());
        if clamp.free.len() != w {
            return Err(Error::DimensionMismatch {
                argument: "clamp (free mask, ⌈N/32⌉ words)",
                expected: w,
                actual: clamp.free.len(),
            });
        }
        if !self.dim().is_multiple_of(32) && clamp.free[w - 1] >> (self.dim() % 32) != 0 {
            return Err(Error::InvalidParameter {
                argument: "clamp",
                value: format!("{:#x}", clamp.free[w - 1]),
                reason: "bits past N in the last word must be zero".into(),
            });
        }
        Ok(())
    }

    /// Checks a batch of packed queries (B × ⌈N/32⌉ words) against the patterns and
    /// returns B.
    pub fn validate_queries(&self, queries: &[u32]) -> Result<usize> {
        let w = words_per_state(self.dim());
        if queries.is_empty() || !queries.len().is_multiple_of(w) {
            return Err(Error::DimensionMismatch {
                argument: "queries (packed, a multiple of ⌈N/32⌉ words)",
                expected: w,
                actual: queries.len(),
            });
        }
        if let Some(q) = queries
            .chunks(w)
            .position(|s| !self.dim().is_multiple_of(32) && s[w - 1] >> (self.dim() % 32) != 0)
        {
            return Err(Error::InvalidParameter {
                argument: "queries",
                value: format!("query {q}"),
                reason: "bits past N in the last word must be zero".into(),
            });
        }
        Ok(queries.len() / w)
    }

    /// Packs P×N ±1 values (row-major); entries must be exactly +1 or −1.
    pub fn from_signs(count: usize, dim: usize, values: &[f32]) -> Result<Self> {
        if count == 0 || dim == 0 {
            return Err(Error::Empty {
                argument: "binary patterns",
                detail: format!("P = {count}, N = {dim}"),
            });
        }
        if values.len() != count * dim {
            return Err(Error::DimensionMismatch {
                argument: "binary patterns (values = P × N)",
                expected: count * dim,
                actual: values.len(),
            });
        }
        if let Some(k) = values.iter().position(|&v| v != 1.0 && v != -1.0) {
            return Err(Error::InvalidParameter {
                argument: "binary patterns",
                value: values[k].to_string(),
                reason: format!("entry {} of pattern {} is not ±1", k % dim, k / dim),
            });
        }
        let w = words_per_state(dim);
        let mut words = vec![0u32; count * w];
        for (mu, row) in values.chunks(dim).enumerate() {
            pack(row, &mut words[mu * w..(mu + 1) * w]);
        }
        Ok(Self { words, count, dim })
    }

    /// The procedural ±1 patterns of run `seed` (the bits of `PatternKind::Binary`).
    pub fn procedural(count: usize, dim: usize, seed: u64) -> Result<Self> {
        if count == 0 || dim == 0 {
            return Err(Error::Empty {
                argument: "binary patterns",
                detail: format!("P = {count}, N = {dim}"),
            });
        }
        let w = words_per_state(dim);
        let mut words = vec![0u32; count * w];
        for mu in 0..count {
            let row = &mut words[mu * w..(mu + 1) * w];
            for block in 0..w.div_ceil(4) {
                let r = philox4x32_10(
                    [block as u32, mu as u32, (mu as u64 >> 32) as u32, 0],
                    key_of(seed),
                );
                for lane in 0..4 {
                    if block * 4 + lane < w {
                        row[block * 4 + lane] = r[lane];
                    }
                }
            }
            if !dim.is_multiple_of(32) {
                row[w - 1] &= (1u32 << (dim % 32)) - 1;
            }
        }
        Ok(Self { words, count, dim })
    }

    /// The first `count` procedural patterns of run `seed` drawn from a ±1 ensemble
    /// (`Binary` or `Correlated`), packed: the same bits the GPU generator streams.
    pub fn of_kind(kind: PatternKind, count: usize, dim: usize, seed: u64) -> Result<Self> {
        match kind {
            PatternKind::Binary => Self::procedural(count, dim, seed),
            PatternKind::Correlated { .. } => {
                if count == 0 || dim == 0 {
                    return Self::procedural(count, dim, seed);
                }
                let w = words_per_state(dim);
                let mut words = vec![0u32; count * w];
                let mut row = vec![0.0f32; dim];
                for mu in 0..count {
                    fill(kind, seed, Stream::Patterns, mu as u64, &mut row);
                    pack(&row, &mut words[mu * w..(mu + 1) * w]);
                }
                Ok(Self { words, count, dim })
            }
            other => Err(Error::InvalidParameter {
                argument: "binary patterns",
                value: format!("{other:?}"),
                reason: "the spin dynamics need a ±1 ensemble (binary or correlated)".into(),
            }),
        }
    }

    /// Number of patterns P.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Dimension N.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// All packed words (P × ⌈N/32⌉).
    pub fn words(&self) -> &[u32] {
        &self.words
    }

    /// Packed pattern μ.
    pub fn pattern(&self, mu: usize) -> &[u32] {
        let w = words_per_state(self.dim);
        &self.words[mu * w..(mu + 1) * w]
    }
}

/// The separation of the spin dynamics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SpinEnergy {
    /// F(x) = xⁿ.
    Polynomial {
        /// Degree n ≥ 1.
        n: u32,
    },
    /// F(x) = max(x, 0)ⁿ.
    RectifiedPolynomial {
        /// Degree n ≥ 1.
        n: u32,
    },
    /// F(x) = e^{βx} (Demircigil et al. 2017); softmax on binary states decides the same.
    Exponential {
        /// β > 0.
        beta: f64,
    },
}

/// How spins are updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpinUpdate {
    /// Sweeps over all spins in a seeded random order (a new order each sweep), each spin
    /// seeing the latest values of the others; stops after a sweep with no flip.
    Async {
        /// Most sweeps.
        max_sweeps: usize,
        /// Seed of the orders.
        seed: u64,
    },
    /// All spins at once from the same state; stops at a step with no flip.
    Sync {
        /// Most steps.
        max_steps: usize,
    },
}

/// Which neurons the spin dynamics may change: the others are *clamped* to their value in
/// the query (inputs held fixed while outputs settle: XOR, label read-out, in-painting).
/// The same mask applies to every query of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clamp {
    /// Packed like a state: bit i is 1 when neuron i is free.
    pub free: Vec<u32>,
}

impl Clamp {
    /// Every neuron free (the unclamped dynamics).
    pub fn none(dim: usize) -> Self {
        let mut free = vec![u32::MAX; words_per_state(dim)];
        if !dim.is_multiple_of(32) {
            if let Some(last) = free.last_mut() {
                *last = (1u32 << (dim % 32)) - 1;
            }
        }
        Self { free }
    }

    /// Neurons `clamped` held fixed, the rest free; an index ≥ N is an error.
    pub fn fixing(dim: usize, clamped: &[usize]) -> Result<Self> {
        let mut c = Self::none(dim);
        for &i in clamped {
            if i >= dim {
                return Err(Error::InvalidParameter {
                    argument: "clamped neuron",
                    value: i.to_string(),
                    reason: format!("must be below N = {dim}"),
                });
            }
            c.free[i / 32] &= !(1u32 << (i % 32));
        }
        Ok(c)
    }

    /// Whether neuron i may change.
    pub fn is_free(&self, i: usize) -> bool {
        (self.free[i / 32] >> (i % 32)) & 1 == 1
    }

    /// The sweep order with the clamped neurons left out (the free ones keep their order,
    /// so a run with nothing clamped is the unclamped run).
    pub fn order(&self, order: Vec<u32>) -> Vec<u32> {
        order
            .into_iter()
            .filter(|&i| self.is_free(i as usize))
            .collect()
    }
}

/// The table W of the update and how it is indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpinTable {
    /// true: W(a) = values[a_top − a] (exponential); false: W(a) = values[a + N + 1].
    pub relative_to_top: bool,
    /// The exact integer table.
    pub values: Vec<i64>,
}

/// Fixed-point scale of the exponential table (2⁴⁰).
pub const EXP_SCALE_BITS: u32 = 40;

impl SpinEnergy {
    /// Builds the exact table W for dimension N and P patterns.
    pub fn table(&self, dim: usize, count: usize) -> Result<SpinTable> {
        let n = dim as i64;
        let limit: i128 = 1i128 << 62;
        let poly = |degree: u32, rectified: bool| -> Result<SpinTable> {
            if degree == 0 {
                return Err(Error::InvalidParameter {
                    argument: "n",
                    value: "0".into(),
                    reason: "the degree must be at least 1".into(),
                });
            }
            let f = |x: i64| -> i128 {
                let x = if rectified { x.max(0) } else { x } as i128;
                (0..degree).fold(1i128, |acc, _| acc.saturating_mul(x))
            };
            let values: Vec<i128> = (-n - 1..=n + 1).map(|a| f(a + 1) - f(a - 1)).collect();
            let worst = values.iter().map(|v| v.abs()).max().unwrap_or(0);
            if worst.saturating_mul(count as i128) >= limit {
                return Err(Error::TooLarge {
                    argument: "n (degree) for exact integer spin dynamics",
                    size: degree as u64,
                    limit: 62,
                    detail: format!(
                        "P·max|F(a+1) − F(a−1)| = {count}·{worst} does not fit in 62 bits at N = {dim}"
                    ),
                });
            }
            Ok(SpinTable {
                relative_to_top: false,
                values: values.into_iter().map(|v| v as i64).collect(),
            })
        };
        match *self {
            SpinEnergy::Polynomial { n } => poly(n, false),
            SpinEnergy::RectifiedPolynomial { n } => poly(n, true),
            SpinEnergy::Exponential { beta } => {
                if !(beta.is_finite() && beta > 0.0) {
                    return Err(Error::InvalidParameter {
                        argument: "beta",
                        value: beta.to_string(),
                        reason: "β must be finite and > 0".into(),
                    });
                }
                if count as u64 >= 1 << (62 - EXP_SCALE_BITS) {
                    return Err(Error::TooLarge {
                        argument: "patterns (P) for exact exponential spin dynamics",
                        size: count as u64,
                        limit: 1 << (62 - EXP_SCALE_BITS),
                        detail: "P·2^40 must fit in 62 bits".into(),
                    });
                }
                let scale = (1u64 << EXP_SCALE_BITS) as f64;
                let values = (0..=2 * n + 2)
                    .map(|k| (scale * (-beta * k as f64).exp()).round() as i64)
                    .collect();
                Ok(SpinTable {
                    relative_to_top: true,
                    values,
                })
            }
        }
    }
}

/// The outcome of spin dynamics for a batch of queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpinResult {
    /// Final states, packed (B × ⌈N/32⌉).
    pub states: Vec<u32>,
    /// Flips in each sweep (or synchronous step) of each query.
    pub flips: Vec<Vec<u32>>,
    /// Whether each query reached a sweep (step) with no flip.
    pub converged: Vec<bool>,
}

/// The spin order of sweep `sweep`: a Fisher–Yates permutation of 0..N driven by Philox.
pub fn sweep_order(dim: usize, seed: u64, sweep: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..dim as u32).collect();
    for i in (1..dim).rev() {
        let r = philox4x32_10(
            [i as u32, sweep as u32, (sweep as u64 >> 32) as u32, 2],
            key_of(seed),
        )[0];
        let j = ((r as u64 * (i as u64 + 1)) >> 32) as usize;
        order.swap(i, j);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_and_overlaps() {
        let v: Vec<f32> = (0..70)
            .map(|i| if i % 3 == 0 { 1.0 } else { -1.0 })
            .collect();
        let p = BinaryPatterns::from_signs(1, 70, &v).unwrap();
        assert_eq!(unpack(p.pattern(0), 70), v);
        assert_eq!(overlap(p.pattern(0), p.pattern(0), 70), 70);
        let mut w = vec![0u32; 3];
        let neg: Vec<f32> = v.iter().map(|x| -x).collect();
        pack(&neg, &mut w);
        // Bits past N are zero in both, so they do not count as differences.
        w[2] &= (1 << 6) - 1;
        assert_eq!(overlap(p.pattern(0), &w, 70), -70);
        let q = BinaryPatterns::procedural(3, 70, 9).unwrap();
        assert_eq!(q.pattern(1)[2] >> 6, 0);
        let mut o = sweep_order(100, 1, 0);
        o.sort();
        assert_eq!(o, (0..100).collect::<Vec<u32>>());
        assert_ne!(sweep_order(100, 1, 0), sweep_order(100, 1, 1));
    }

    #[test]
    fn tables_are_exact_and_bounded() {
        let t = SpinEnergy::Polynomial { n: 3 }.table(10, 5).unwrap();
        // W(a) = (a+1)^3 − (a−1)^3 = 6a² + 2 at a = 2 (index a + N + 1 = 13).
        assert_eq!(t.values[13], 26);
        let r = SpinEnergy::RectifiedPolynomial { n: 2 }
            .table(10, 5)
            .unwrap();
        assert_eq!(r.values[(-1 + 11) as usize], 0); // max(0,0)² − max(−2,0)² = 0
        assert_eq!(r.values[11], 1); // a = 0: 1 − 0
        assert!(SpinEnergy::Polynomial { n: 12 }
            .table(1000, 10_000)
            .is_err());
        let e = SpinEnergy::Exponential { beta: 1.0 }
            .table(30, 100)
            .unwrap();
        assert_eq!(e.values[0], 1 << 40);
        assert!(e.relative_to_top);
    }
}
