//! One capacity sweep: points of load, trials per point, a success criterion.

use dam::binary::{overlap, pack, unpack, words_per_state, BinaryPatterns, SpinEnergy, SpinUpdate};
use dam::procedural::{
    fill, squared_distance, words, PatternKind, Procedural, Stream, StreamRequest,
    StreamSeparation, StreamStats, MAX_PROCEDURAL_COUNT,
};
use dam::weights::relu_kernel_sq;
use dam::{Device, Projection};

use crate::ensembles::{self, DigitPool};
use crate::error::{invalid, ExperimentError, Result};
pub use crate::seed::trial_seed;

/// α of an entmax sweep, 1 < α ≤ 2 (checked by [`Energy::parse`], so never NaN: the
/// energies compare with `Eq`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntmaxAlpha(pub f32);

impl Eq for EntmaxAlpha {}

/// The energy (separation) of the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Energy {
    /// Log-sum-exp (softmax update).
    Lse,
    /// Exponential F = e^{βs}: exact spin dynamics on binary patterns; on continuous states
    /// its update direction and softmax weights equal those of `Lse`.
    Exp,
    /// Polynomial F = sⁿ (exact binary spin dynamics; needs binary patterns).
    Poly,
    /// Rectified polynomial (binary spin dynamics).
    Rpoly,
    /// Log-sum-ReLU in its spherical form E = −(N/b) log Σ_μ max(0, 1 − b + bφ_μ),
    /// φ_μ = x·ξ^μ/N, with the sweep's β as b ([`Energy::default_beta`]: 2 + √2, the
    /// support wall at φ = 1/√2): the engine's `LogSumRelu { beta: b/N }` with the
    /// negative Euclidean similarity. One update moves the state to the unweighted mean of
    /// its support, projected onto |x|² = N.
    Lsr,
    /// α-entmax (α = 2: sparsemax) at the sweep's β on the dot similarity, no projection:
    /// the engine's `Entmax { beta, alpha }`, on built pattern sets only (the procedural
    /// stream has no entmax statistic). The weight criterion asks for the target's entmax
    /// weight ≥ ½ at the query.
    Entmax(EntmaxAlpha),
}

/// Written as its spelling ([`Energy::spelling`]): `lse`, …, `sparsemax`, `entmax:1.5`.
impl serde::Serialize for Energy {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.spelling())
    }
}

impl Energy {
    /// Every energy, in the order of the command line's help.
    /// (`entmax` stands for any α: `entmax:ALPHA`.)
    pub const ALL: [Energy; 7] = [
        Energy::Lse,
        Energy::Exp,
        Energy::Poly,
        Energy::Rpoly,
        Energy::Lsr,
        Energy::Entmax(EntmaxAlpha(2.0)),
        Energy::Entmax(EntmaxAlpha(1.5)),
    ];

    /// The family's name: `lse`, `exp`, `poly`, `rpoly`, `lsr`, `sparsemax` (entmax at
    /// α = 2) or `entmax` (any other α; [`Energy::spelling`] has it).
    pub fn name(self) -> &'static str {
        match self {
            Energy::Lse => "lse",
            Energy::Exp => "exp",
            Energy::Poly => "poly",
            Energy::Rpoly => "rpoly",
            Energy::Lsr => "lsr",
            Energy::Entmax(EntmaxAlpha(alpha)) if alpha == dam::entmax::SPARSEMAX_ALPHA => {
                "sparsemax"
            }
            Energy::Entmax(_) => "entmax",
        }
    }

    /// The name the command line and the files use, which [`Energy::parse`] reads back:
    /// [`Energy::name`], with α for entmax (`entmax:1.5`).
    pub fn spelling(self) -> String {
        match self {
            Energy::Entmax(EntmaxAlpha(alpha)) if alpha != dam::entmax::SPARSEMAX_ALPHA => {
                format!("entmax:{alpha}")
            }
            _ => self.name().into(),
        }
    }

    /// The sweep's β when none is given: λ = 1 for `lse`, `exp` (and unused by `poly`,
    /// `rpoly`), b = 2 + √2 for `lsr` (the support wall at φ = 1/√2).
    pub fn default_beta(self) -> f64 {
        match self {
            Energy::Lsr => crate::phase::LSR_B,
            _ => 1.0,
        }
    }

    /// Reads an energy by the engine's separation names ([`dam::Separation::parse`], case
    /// ignored): `lse` or `softmax`, `exp` or `exponential`, `poly` or `polynomial`, `rpoly`,
    /// `rectified` or `rectified-polynomial`, `lsr` or `log-sum-relu`. The degree is the
    /// sweep's own (`--degree`), not part of the name; so is b of `lsr` (`--beta`), and
    /// its ε is 0. `sparsemax`, `entmax` (α = 1.5) and `entmax:ALPHA` (1 < α ≤ 2) take β
    /// from `--beta`.
    pub fn parse(text: &str) -> Result<Self> {
        let name = text.trim().to_ascii_lowercase();
        if let Ok(dam::Separation::Entmax { alpha, .. }) = dam::Separation::parse(&name, 1.0) {
            if !dam::entmax::valid_alpha(alpha) {
                return Err(invalid(
                    "--energy",
                    text,
                    "entmax needs 1 < α ≤ 2, e.g. entmax:1.5 (sparsemax is α = 2)",
                ));
            }
            return Ok(Energy::Entmax(EntmaxAlpha(alpha)));
        }
        if name.contains(':') {
            return Err(invalid(
                "--energy",
                text,
                "use lse, exp, poly, rpoly or lsr (the degree is --degree, b of lsr is --beta)",
            ));
        }
        let refuse = || {
            invalid(
                "--energy",
                text,
                "use lse, exp, poly, rpoly, lsr, sparsemax or entmax[:ALPHA]",
            )
        };
        // The polynomial names take their degree after a colon in the engine's vocabulary:
        // any degree reads the name.
        let separation = dam::Separation::parse(&name, 1.0)
            .or_else(|_| dam::Separation::parse(&format!("{name}:1"), 1.0))
            .map_err(|_| refuse())?;
        match separation {
            dam::Separation::Softmax { .. } => Ok(Energy::Lse),
            dam::Separation::Exponential { .. } => Ok(Energy::Exp),
            dam::Separation::Polynomial { .. } => Ok(Energy::Poly),
            dam::Separation::RectifiedPolynomial { .. } => Ok(Energy::Rpoly),
            dam::Separation::LogSumRelu { .. } => Ok(Energy::Lsr),
            dam::Separation::Max
            | dam::Separation::TopK { .. }
            | dam::Separation::Entmax { .. } => Err(refuse()),
        }
    }

    /// The exact ±1 spin energy of this separation with polynomial degree `degree` and
    /// β = `beta`; `None` for `lse` and `lsr` (continuous updates).
    pub fn spin(self, degree: u32, beta: f64) -> Option<SpinEnergy> {
        match self {
            Energy::Poly => Some(SpinEnergy::Polynomial { n: degree }),
            Energy::Rpoly => Some(SpinEnergy::RectifiedPolynomial { n: degree }),
            Energy::Exp => Some(SpinEnergy::Exponential { beta }),
            Energy::Lse | Energy::Lsr | Energy::Entmax(_) => None,
        }
    }
}

/// How the query is made from the target pattern.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum QueryKind {
    /// The stored pattern itself.
    Stored,
    /// The stored pattern with the sign of a fraction ρ of its entries flipped.
    Flip(f64),
    /// A random state, unrelated to the stored patterns: uniform ±1 when the target is ±1,
    /// else an isotropic Gaussian direction scaled to the target's norm (from the trial's
    /// `Queries` stream). With it, a criterion measures the target's basin from random
    /// starts (and `dam census` classifies where random starts end).
    Random,
}

/// Where each trial's stored patterns come from. The sweep's `kind` is the entries'
/// distribution for [`PatternSet::Procedural`]; the other sets are built on the host
/// ([`crate::ensembles`]), the same values for either device.
#[derive(Debug, Clone)]
pub enum PatternSet {
    /// Procedural patterns of the sweep's `kind`: pattern μ of a trial is a pure function of
    /// (trial seed, μ), generated where it is used.
    Procedural,
    /// ±1 patterns with every pairwise Hamming distance ≥ d ([`ensembles::separated`]).
    Separated(usize),
    /// Digits drawn from a pool, a different seeded subset per trial: ±1 (binarised) for
    /// the spin energies and `lsr` (on the sphere |x|² = N), pixels in [−1, 1] for `lse`.
    Digits(DigitPool),
}

/// The dynamics applied from the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum DynamicsArg {
    /// One update.
    OneStep,
    /// Update until ‖Δx‖_∞ ≤ 1e-6 or this many steps.
    Converge(usize),
}

/// When a trial counts as a success. With `lsr`, a trial whose query has an empty support
/// (no pattern within the wall) fails whatever the criterion, and is counted in
/// [`PointResult::empty_supports`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum Criterion {
    /// The target's softmax weight at the query is ≥ ½ (THEORY §1). With `lsr`, whose
    /// update weights are 1/|support| on the support: the target is the only pattern in
    /// the query's support (its weight is 1, and one update lands on it exactly).
    Weight,
    /// Cosine overlap of the final state with the target ≥ θ.
    Overlap(f64),
    /// The final state's most similar stored pattern is the target.
    Nearest,
    /// The sign of the final state equals the (binary) target.
    Exact,
}

/// Everything a sweep needs but the loads.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// Pattern distribution.
    pub kind: PatternKind,
    /// Where the patterns come from (procedural draws of `kind`, or a built set).
    pub set: PatternSet,
    /// Dimension N.
    pub dim: usize,
    /// Energy.
    pub energy: Energy,
    /// λ (β on the raw dot product) for `lse` and `exp`; b of the spherical log-sum-ReLU
    /// for `lsr` (the engine's β = b/N on the squared distance).
    pub beta: f64,
    /// Polynomial degree.
    pub degree: u32,
    /// Trials per point (over all shards).
    pub trials: usize,
    /// Query construction.
    pub query: QueryKind,
    /// Dynamics.
    pub dynamics: DynamicsArg,
    /// Success criterion.
    pub criterion: Criterion,
    /// Master seed.
    pub seed: u64,
    /// This shard (index, count): trials t with t mod count = index.
    pub shard: (usize, usize),
}

/// One row of results.csv.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PointResult {
    /// ln P / N.
    pub alpha: f64,
    /// P.
    pub patterns: u64,
    /// Trials run.
    pub trials: usize,
    /// Trials that met the criterion.
    pub successes: usize,
    /// successes / trials.
    pub success_rate: f64,
    /// Mean cosine overlap of the final state with the target.
    pub mean_overlap: f64,
    /// Mean fraction of wrong signs in the final state (binary patterns only).
    pub bit_flip_rate: Option<f64>,
    /// Wall-clock seconds for this point (this shard).
    pub seconds: f64,
    /// Realised mean |pairwise feature correlation| of the stored patterns (trial 0's set,
    /// its first 1,024 patterns; [`ensembles::realised`]).
    #[serde(default)]
    pub mean_abs_correlation: Option<f64>,
    /// Realised minimum pairwise Hamming distance of the same patterns (±1 sets only).
    #[serde(default)]
    pub min_hamming: Option<u64>,
    /// `lsr`: trials whose query had an empty support (no pattern within the wall; the
    /// state stays, the trial fails). `None` for the other energies.
    #[serde(default)]
    pub empty_supports: Option<usize>,
}

/// One update of a streamed state `x` from its statistics: the softmax mean, or for
/// log-sum-ReLU the mean of the support projected onto |x|² = N (the state stays where the
/// support is empty).
fn update(stats: &StreamStats, x: &[f32]) -> Vec<f32> {
    match &stats.relu {
        None => stats.mean().into_iter().map(|v| v as f32).collect(),
        Some(relu) => match relu.mean() {
            Some(mut mean) => {
                Projection::Sphere.apply(&mut mean);
                mean.into_iter().map(|v| v as f32).collect()
            }
            None => x.to_vec(),
        },
    }
}

/// The query of a trial: the target with the signs of round(ρN) entries flipped, chosen
/// by the smallest Philox keys of the `Queries` stream.
pub fn make_query(target: &[f32], query: QueryKind, seed: u64) -> Vec<f32> {
    if query == QueryKind::Random {
        let n = target.len();
        let mut x = vec![0.0f32; n];
        if target.iter().all(|&v| v == 1.0 || v == -1.0) {
            fill(PatternKind::Binary, seed, Stream::Queries, 1, &mut x);
        } else {
            fill(PatternKind::Gaussian, seed, Stream::Queries, 1, &mut x);
            let norm = |v: &[f32]| v.iter().map(|&a| a as f64 * a as f64).sum::<f64>().sqrt();
            let scale = norm(target) / norm(&x).max(f64::MIN_POSITIVE);
            x.iter_mut().for_each(|v| *v = (*v as f64 * scale) as f32);
        }
        return x;
    }
    let mut x = target.to_vec();
    if let QueryKind::Flip(rho) = query {
        let n = x.len();
        let k = (rho * n as f64).round() as usize;
        let mut order: Vec<(u32, usize)> = (0..n)
            .map(|i| (words(seed, Stream::Queries, 0, (i / 4) as u32)[i % 4], i))
            .collect();
        order.sort_unstable();
        for &(_, i) in order.iter().take(k) {
            x[i] = -x[i];
        }
    }
    x
}

fn cosine(a: &[f64], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, &y)| x * y as f64).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b
        .iter()
        .map(|&y| (y as f64) * (y as f64))
        .sum::<f64>()
        .sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

impl Sweep {
    /// Rejects combinations this engine does not run.
    pub fn validate(&self) -> Result<()> {
        if self.dim == 0 {
            return Err(invalid("--dim", "0", "N must be at least 1"));
        }
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return Err(invalid(
                "--beta",
                &self.beta.to_string(),
                "β must be finite and > 0",
            ));
        }
        if self.trials == 0 {
            return Err(invalid("--trials", "0", "at least one trial"));
        }
        let (i, n) = self.shard;
        if n == 0 || i >= n {
            return Err(invalid(
                "--shard",
                &format!("{i}/{n}"),
                "expected i/n with 0 ≤ i < n",
            ));
        }
        if let QueryKind::Flip(rho) = self.query {
            if !(0.0..=1.0).contains(&rho) {
                return Err(invalid(
                    "--query",
                    &format!("flip:{rho}"),
                    "ρ must be in [0, 1]",
                ));
            }
        }
        if let Criterion::Overlap(theta) = self.criterion {
            if !(-1.0..=1.0).contains(&theta) {
                return Err(invalid(
                    "--criterion",
                    &format!("overlap:{theta}"),
                    "θ must be in [−1, 1]",
                ));
            }
        }
        if matches!(self.energy, Energy::Poly | Energy::Rpoly) && !self.kind.is_binary() {
            return Err(ExperimentError::Unsupported(
                "--energy poly|rpoly runs the exact binary spin dynamics: use ±1 patterns \
                 (binary, correlated:c, separated:d or mnist)"
                    .into(),
            ));
        }
        if matches!(self.energy, Energy::Entmax(_)) && matches!(self.set, PatternSet::Procedural) {
            return Err(ExperimentError::Unsupported(format!(
                "--energy {}: the procedural stream has no entmax statistic (the threshold needs \
                 every pattern's similarity); use a built set: --patterns separated:D or mnist",
                self.energy.spelling()
            )));
        }
        if let PatternSet::Digits(_) = self.set {
            if self.dim != ensembles::DIGIT_DIM {
                return Err(invalid(
                    "--dim",
                    &self.dim.to_string(),
                    "digits have N = 784 pixels: use --dim 784 with --patterns mnist",
                ));
            }
        }
        if let PatternSet::Separated(d) = self.set {
            if d > self.dim {
                return Err(invalid(
                    "--patterns",
                    &format!("separated:{d}"),
                    format!("d = {d} exceeds N = {}", self.dim),
                ));
            }
        }
        if self.spin_energy().is_some() && self.criterion == Criterion::Weight {
            return Err(invalid(
                "--criterion",
                "weight",
                "the softmax weight is defined for lse/exp on continuous states; with binary \
                 spin dynamics use exact, overlap:THETA or nearest",
            ));
        }
        if self.criterion == Criterion::Exact && !self.kind.is_binary() {
            return Err(invalid(
                "--criterion",
                "exact",
                "needs ±1 patterns (binary, correlated:c, separated:d; mnist with a spin energy)",
            ));
        }
        Ok(())
    }

    fn request<'a>(
        &self,
        patterns: u64,
        queries: &'a [f32],
        seeds: &'a [u64],
    ) -> StreamRequest<'a> {
        StreamRequest {
            kind: self.kind,
            dim: self.dim,
            start: 0,
            end: patterns,
            beta: self.beta as f32,
            queries,
            seeds,
        }
    }

    /// `lsr`: the engine's β = b/N on the squared distance (on the sphere
    /// ‖x − ξ‖² = 2N(1 − φ), so the kernel is max(0, 1 − b + bφ)).
    pub fn relu_beta(&self) -> f32 {
        (self.beta / self.dim as f64) as f32
    }

    /// What the procedural stream evaluates for this sweep: the log-sum-ReLU statistic
    /// for `lsr`, the softmax alone otherwise.
    fn stream_separation(&self) -> StreamSeparation {
        match self.energy {
            Energy::Lsr => StreamSeparation::LogSumRelu {
                beta: self.relu_beta(),
            },
            _ => StreamSeparation::Softmax,
        }
    }

    /// The stream's statistics of the states `x` (B×N) against each trial's patterns.
    fn stream(
        &self,
        device: &Device,
        patterns: u64,
        x: &[f32],
        seeds: &[u64],
    ) -> Result<Vec<StreamStats>> {
        let request = self.request(patterns, x, seeds);
        dam::stream_procedural_with(device, &request, self.stream_separation())
            .map_err(|e| self.engine_error(e))
    }

    /// An engine error, with what to do about it when `lsr` meets a device without it.
    fn engine_error(&self, e: dam::Error) -> ExperimentError {
        match e {
            dam::Error::Unsupported { .. }
                if matches!(self.energy, Energy::Lsr | Energy::Entmax(_)) =>
            {
                ExperimentError::Unsupported(format!(
                    "--energy {}: {e} (run the sweep with --device cpu or --device reference)",
                    self.energy.spelling()
                ))
            }
            e => e.into(),
        }
    }

    /// The spin energy when this sweep runs the exact binary dynamics (binary patterns with
    /// poly, rpoly or exp), else `None` (streaming softmax).
    pub fn spin_energy(&self) -> Option<SpinEnergy> {
        if !self.kind.is_binary() {
            return None;
        }
        self.energy.spin(self.degree, self.beta)
    }

    /// The trials this shard runs at each load: t in 0..trials with t mod n = i.
    pub fn shard_trials(&self) -> usize {
        (0..self.trials)
            .filter(|t| t % self.shard.1 == self.shard.0)
            .count()
    }

    /// Trial `seed`'s stored patterns as P×N values, for the sets built on the host
    /// (`None` for procedural sets, which are generated where they are used).
    pub fn built_set(&self, patterns: u64, seed: u64) -> Result<Option<Vec<f32>>> {
        let (p, n) = (patterns as usize, self.dim);
        let limit = 1u64 << 28;
        if !matches!(self.set, PatternSet::Procedural) && patterns.saturating_mul(n as u64) > limit
        {
            return Err(invalid(
                "patterns",
                &patterns.to_string(),
                "built pattern sets are held in memory: P·N ≤ 2^28",
            ));
        }
        Ok(match &self.set {
            PatternSet::Procedural => None,
            PatternSet::Separated(d) => {
                let set = ensembles::separated(p, n, *d, seed)?;
                Some((0..p).flat_map(|mu| unpack(set.pattern(mu), n)).collect())
            }
            PatternSet::Digits(pool) => Some(pool.draw(p, seed, self.kind.is_binary())?),
        })
    }

    /// What a set of trial 0 at load P turned out to be ([`ensembles::realised`]).
    fn realised(&self, patterns: u64) -> Result<ensembles::Realised> {
        let seed = trial_seed(self.seed, patterns, 0);
        let rows = match self.built_set(patterns, seed)? {
            Some(rows) => rows,
            None => {
                let m = patterns.min(ensembles::STATS_PATTERNS as u64);
                let mut rows = vec![0.0f32; m as usize * self.dim];
                for (mu, row) in rows.chunks_mut(self.dim).enumerate() {
                    fill(self.kind, seed, Stream::Patterns, mu as u64, row);
                }
                rows
            }
        };
        Ok(ensembles::realised(&rows, self.dim))
    }

    /// The spin dynamics from `query` on `stored`, scored against pattern 0:
    /// (success, overlap, wrong bits).
    fn spin_run(
        &self,
        device: &Device,
        energy: SpinEnergy,
        stored: &BinaryPatterns,
        query: &[f32],
        seed: u64,
    ) -> Result<(bool, f64, usize)> {
        let n = self.dim;
        let mut packed = vec![0u32; words_per_state(n)];
        pack(query, &mut packed);
        let update = match self.dynamics {
            DynamicsArg::OneStep => SpinUpdate::Sync { max_steps: 1 },
            DynamicsArg::Converge(max) => SpinUpdate::Async {
                max_sweeps: max,
                seed,
            },
        };
        let result = dam::spin_dynamics(device, stored, energy, update, &packed)?;
        let state = &result.states;
        let overlap0 = overlap(stored.pattern(0), state, n);
        let wrong = ((n as i32 - overlap0) / 2) as usize;
        let ok = match self.criterion {
            Criterion::Exact => wrong == 0,
            Criterion::Overlap(theta) => overlap0 as f64 / n as f64 >= theta,
            Criterion::Nearest => {
                (1..stored.count()).all(|mu| overlap(stored.pattern(mu), state, n) < overlap0)
            }
            Criterion::Weight => false,
        };
        Ok((ok, overlap0 as f64 / n as f64, wrong))
    }

    /// One trial of the exact spin dynamics: (success, overlap, wrong bits).
    fn spin_trial(
        &self,
        device: &Device,
        energy: SpinEnergy,
        patterns: u64,
        seed: u64,
    ) -> Result<(bool, f64, usize)> {
        let n = self.dim;
        let bytes = patterns.saturating_mul(words_per_state(n) as u64 * 4);
        if bytes > 1 << 31 {
            return Err(invalid(
                "patterns",
                &patterns.to_string(),
                "binary spin dynamics keep the packed patterns in memory (P·⌈N/32⌉·4 bytes ≤ 2 GiB)",
            ));
        }
        let stored = match self.built_set(patterns, seed)? {
            Some(rows) => BinaryPatterns::from_signs(patterns as usize, n, &rows)?,
            None => BinaryPatterns::of_kind(self.kind, patterns as usize, n, seed)?,
        };
        let target = unpack(stored.pattern(0), n);
        self.spin_run(
            device,
            energy,
            &stored,
            &make_query(&target, self.query, seed),
            seed,
        )
    }

    /// One `lse` or `lsr` trial on a built set (`rows`, P×N): the engine's retriever on
    /// the device (dot similarity and softmax at β for `lse`; negative Euclidean
    /// similarity, `LogSumRelu { beta: b/N }` and the sphere projection for `lsr`).
    /// (success, overlap, wrong signs, empty support at the query).
    fn built_trial(
        &self,
        device: &Device,
        rows: Vec<f32>,
        seed: u64,
    ) -> Result<(bool, f64, usize, bool)> {
        let n = self.dim;
        let p = rows.len() / n;
        let target: Vec<f32> = rows[..n].to_vec();
        let x0 = make_query(&target, self.query, seed);
        let dot = |a: &[f32], b: &[f32]| -> f64 {
            a.iter().zip(b).map(|(&a, &b)| a as f64 * b as f64).sum()
        };
        let (weight_ok, empty) = if self.energy == Energy::Lsr {
            // The query's support on the host, with the stream's definitions.
            let beta = self.relu_beta() as f64;
            let xx = dot(&x0, &x0);
            let inside: Vec<bool> = rows
                .chunks(n)
                .map(|r| relu_kernel_sq(beta, squared_distance(xx, dot(r, &x0), dot(r, r))) > 0.0)
                .collect();
            let count = inside.iter().filter(|&&i| i).count();
            (count == 1 && inside[0], count == 0)
        } else if let Energy::Entmax(EntmaxAlpha(alpha)) = self.energy {
            // The target's entmax weight at the query, in f64 on the host.
            let s: Vec<f64> = rows.chunks(n).map(|r| dot(r, &x0)).collect();
            let w = dam::entmax::weights(self.beta, alpha as f64, &s);
            (w[0] >= 0.5, false)
        } else {
            // The target's softmax weight at the query, in f64 on the host (THEORY §1).
            let z: Vec<f64> = rows.chunks(n).map(|r| self.beta * dot(r, &x0)).collect();
            let ok = z[0] - dam::weights::log_sum_exp(&z) >= -std::f64::consts::LN_2;
            (ok, false)
        };
        let dynamics = match self.dynamics {
            DynamicsArg::OneStep => dam::Dynamics::OneStep,
            DynamicsArg::Converge(max) => dam::Dynamics::Iterate {
                max_steps: max,
                tol: 1e-6,
            },
        };
        let stored = dam::Patterns::new(
            ndarray::Array2::from_shape_vec((p, n), rows)
                .map_err(|e| invalid("patterns", &p.to_string(), e))?,
        )?;
        let (similarity, separation, projection) = match self.energy {
            Energy::Lsr => (
                dam::Similarity::NegEuclidean,
                dam::Separation::LogSumRelu {
                    beta: self.relu_beta(),
                    eps: 0.0,
                },
                Projection::Sphere,
            ),
            Energy::Entmax(EntmaxAlpha(alpha)) => (
                dam::Similarity::Dot,
                dam::Separation::Entmax {
                    beta: self.beta as f32,
                    alpha,
                },
                Projection::None,
            ),
            _ => (
                dam::Similarity::Dot,
                dam::Separation::Softmax {
                    beta: self.beta as f32,
                },
                Projection::None,
            ),
        };
        let retriever = dam::Retriever::builder(stored)
            .similarity(similarity)
            .separation(separation)
            .projection(projection)
            .dynamics(dynamics)
            .device(device.clone())
            .build()
            .map_err(|e| self.engine_error(e))?;
        let query = ndarray::ArrayView2::from_shape((1, n), &x0[..])
            .map_err(|e| invalid("query", "", e))?;
        let result = retriever
            .retrieve(query)
            .map_err(|e| self.engine_error(e))?;
        let x: Vec<f64> = result.states.row(0).iter().map(|&v| v as f64).collect();
        let overlap = cosine(&x, &target);
        let wrong = x
            .iter()
            .zip(&target)
            .filter(|(&v, &t)| (if v >= 0.0 { 1.0 } else { -1.0 }) != t)
            .count();
        let ok = match self.criterion {
            Criterion::Weight => weight_ok,
            Criterion::Overlap(theta) => overlap >= theta,
            Criterion::Nearest => result.nearest[0] == 0,
            Criterion::Exact => wrong == 0,
        };
        Ok((ok && !empty, overlap, wrong, empty))
    }

    /// Runs this shard's trials at load P = `patterns`; `progress` is called after each
    /// batch of trials with the number done.
    pub fn run_point(
        &self,
        device: &Device,
        patterns: u64,
        mut progress: impl FnMut(usize),
    ) -> Result<PointResult> {
        if patterns == 0 || patterns > MAX_PROCEDURAL_COUNT {
            return Err(invalid(
                "patterns",
                &patterns.to_string(),
                format!("P must be in 1..=2^40 ({MAX_PROCEDURAL_COUNT})"),
            ));
        }
        let start = std::time::Instant::now();
        let n = self.dim;
        let beta = self.beta as f32;
        let trials: Vec<u64> = (0..self.trials as u64)
            .filter(|t| (*t as usize) % self.shard.1 == self.shard.0)
            .collect();
        let mut successes = 0;
        let mut empty_supports = 0;
        let mut overlap_sum = 0.0;
        let mut flip_sum = 0.0;
        let built_lse = self.spin_energy().is_none() && !matches!(self.set, PatternSet::Procedural);
        if built_lse {
            for &t in &trials {
                let seed = trial_seed(self.seed, patterns, t);
                let rows = self.built_set(patterns, seed)?.unwrap_or_default();
                let (ok, overlap, wrong, empty) = self.built_trial(device, rows, seed)?;
                successes += ok as usize;
                empty_supports += empty as usize;
                overlap_sum += overlap;
                flip_sum += wrong as f64 / n as f64;
                progress(1);
            }
        }
        if let Some(energy) = self.spin_energy() {
            for &t in &trials {
                let seed = trial_seed(self.seed, patterns, t);
                let (ok, overlap, wrong) = self.spin_trial(device, energy, patterns, seed)?;
                successes += ok as usize;
                overlap_sum += overlap;
                flip_sum += wrong as f64 / n as f64;
                progress(1);
            }
        }
        let continuous = if self.spin_energy().is_some() || built_lse {
            &[][..]
        } else {
            &trials[..]
        };
        for batch in continuous.chunks(256) {
            let seeds: Vec<u64> = batch
                .iter()
                .map(|&t| trial_seed(self.seed, patterns, t))
                .collect();
            let targets: Vec<Vec<f32>> = seeds
                .iter()
                .map(|&s| {
                    Procedural {
                        kind: self.kind,
                        dim: n,
                        count: patterns,
                        seed: s,
                    }
                    .pattern(0)
                })
                .collect();
            let mut x: Vec<f32> = targets
                .iter()
                .zip(&seeds)
                .flat_map(|(t, &s)| make_query(t, self.query, s))
                .collect();
            let steps = match self.dynamics {
                DynamicsArg::OneStep => 1,
                DynamicsArg::Converge(max) => max.max(1),
            };
            let mut weights_ok = vec![false; batch.len()];
            let mut empty = vec![false; batch.len()];
            for step in 0..steps {
                let stats = self.stream(device, patterns, &x, &seeds)?;
                if step == 0 {
                    for (q, st) in stats.iter().enumerate() {
                        let xq = &x[q * n..(q + 1) * n];
                        (weights_ok[q], empty[q]) = match &st.relu {
                            // The target is the whole support (LSR weight 1).
                            Some(relu) => (relu.count == 1 && relu.nearest_i == 0, relu.is_empty()),
                            None => {
                                let s0: f64 = targets[q]
                                    .iter()
                                    .zip(xq)
                                    .map(|(&a, &b)| a as f64 * b as f64)
                                    .sum();
                                let ok = beta as f64 * s0 - st.lse() >= -std::f64::consts::LN_2;
                                (ok, false)
                            }
                        };
                    }
                }
                let mut delta = 0.0f32;
                let next: Vec<f32> = stats
                    .iter()
                    .zip(x.chunks(n))
                    .flat_map(|(st, xq)| update(st, xq))
                    .collect();
                for (a, b) in next.iter().zip(&x) {
                    delta = delta.max((a - b).abs());
                }
                x = next;
                if delta <= 1e-6 {
                    break;
                }
            }
            let nearest_ok: Vec<bool> = if self.criterion == Criterion::Nearest {
                self.stream(device, patterns, &x, &seeds)?
                    .iter()
                    .map(|st| st.relu.as_ref().map_or(st.best_i, |r| r.nearest_i) == 0)
                    .collect()
            } else {
                vec![false; batch.len()]
            };
            for (q, target) in targets.iter().enumerate() {
                let xq: Vec<f64> = x[q * n..(q + 1) * n].iter().map(|&v| v as f64).collect();
                let overlap = cosine(&xq, target);
                overlap_sum += overlap;
                let wrong = xq
                    .iter()
                    .zip(target)
                    .filter(|(&v, &t)| (if v >= 0.0 { 1.0 } else { -1.0 }) != t)
                    .count();
                flip_sum += wrong as f64 / n as f64;
                let ok = match self.criterion {
                    Criterion::Weight => weights_ok[q],
                    Criterion::Overlap(theta) => overlap >= theta,
                    Criterion::Nearest => nearest_ok[q],
                    Criterion::Exact => wrong == 0,
                };
                successes += (ok && !empty[q]) as usize;
                empty_supports += empty[q] as usize;
            }
            progress(batch.len());
        }
        let count = trials.len();
        let mean = |v: f64| if count == 0 { 0.0 } else { v / count as f64 };
        let realised = self.realised(patterns)?;
        Ok(PointResult {
            alpha: (patterns as f64).ln() / n as f64,
            patterns,
            trials: count,
            successes,
            success_rate: mean(successes as f64),
            mean_overlap: mean(overlap_sum),
            bit_flip_rate: self.kind.is_binary().then(|| mean(flip_sum)),
            seconds: start.elapsed().as_secs_f64(),
            mean_abs_correlation: realised.mean_abs_correlation,
            min_hamming: realised.min_hamming,
            empty_supports: (self.energy == Energy::Lsr).then_some(empty_supports),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energies_read_the_engines_names_and_keep_their_own() {
        for (text, energy) in [
            ("lse", Energy::Lse),
            ("softmax", Energy::Lse),
            (" LSE ", Energy::Lse),
            ("exp", Energy::Exp),
            ("exponential", Energy::Exp),
            ("poly", Energy::Poly),
            ("polynomial", Energy::Poly),
            ("rpoly", Energy::Rpoly),
            ("rectified", Energy::Rpoly),
            ("rectified-polynomial", Energy::Rpoly),
        ] {
            assert_eq!(Energy::parse(text).unwrap(), energy, "{text}");
        }
        for energy in Energy::ALL {
            assert_eq!(Energy::parse(energy.name()).unwrap(), energy);
            assert_eq!(serde_json::json!(energy), energy.spelling());
        }
        let entmax = Energy::Entmax(EntmaxAlpha(1.25));
        assert_eq!(Energy::parse("entmax:1.25").unwrap(), entmax);
        assert_eq!(Energy::parse(&entmax.spelling()).unwrap(), entmax);
        assert_eq!(serde_json::json!(entmax), "entmax:1.25");
        assert_eq!(
            Energy::parse("Sparsemax").unwrap(),
            Energy::Entmax(EntmaxAlpha(2.0))
        );
        assert_eq!(entmax.spin(3, 1.0), None);
        for (text, energy) in [("lsr", Energy::Lsr), ("Log-Sum-ReLU", Energy::Lsr)] {
            assert_eq!(Energy::parse(text).unwrap(), energy, "{text}");
        }
        assert_eq!(Energy::Lsr.default_beta(), 2.0 + std::f64::consts::SQRT_2);
        assert_eq!(Energy::Lse.default_beta(), 1.0);
        assert_eq!(Energy::Lsr.spin(3, 1.0), None);
        for bad in [
            "max", "top-k", "poly:3", "lsr:0.1", "cubic", "", "entmax:1", "entmax:3", "entmax:x",
        ] {
            match Energy::parse(bad) {
                Err(ExperimentError::Invalid { argument, .. }) => assert_eq!(argument, "--energy"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert_eq!(
            Energy::Rpoly.spin(3, 1.0),
            Some(SpinEnergy::RectifiedPolynomial { n: 3 })
        );
        assert_eq!(Energy::Lse.spin(3, 1.0), None);
    }

    fn lsr_sweep(
        patterns: &str,
        dim: usize,
        trials: usize,
        query: &str,
        dynamics: &str,
        criterion: &str,
    ) -> Sweep {
        crate::args::SweepText {
            patterns,
            dim,
            energy: "lsr",
            beta: None,
            degree: 2,
            alpha: None,
            count: Some("1:1:1"),
            trials,
            query,
            dynamics,
            criterion,
            seed: 17,
            shard: None,
            search: false,
        }
        .build()
        .unwrap()
        .0
    }

    /// `lsr` on the fast CPU stream and on the reference: the same successes and empty
    /// supports at every load (procedural spherical, ±1 and Gaussian patterns, one step and
    /// iterated, every criterion; a built ±1 set through the retriever), and mean overlaps
    /// within `OVERLAP_TOL` (spherical entries differ by a few f32 ulps between the two
    /// generators).
    #[test]
    fn lsr_sweeps_agree_on_cpu_and_reference() {
        const OVERLAP_TOL: dam::Tolerance = dam::Tolerance::new(1e-5, 1e-5);
        let cases = [
            ("spherical", "stored", "one-step", "weight", [8u64, 60, 400]),
            (
                "binary",
                "flip:0.25",
                "converge:4",
                "overlap:0.9",
                [5, 40, 300],
            ),
            (
                "gaussian",
                "flip:0.1",
                "converge:3",
                "nearest",
                [5, 40, 300],
            ),
            ("binary", "stored", "one-step", "exact", [5, 40, 300]),
            (
                "separated:2",
                "flip:0.1",
                "converge:3",
                "weight",
                [5, 20, 60],
            ),
        ];
        let (mut empties, mut mixed) = (0, 0);
        for (patterns, query, dynamics, criterion, loads) in cases {
            let sweep = lsr_sweep(patterns, 12, 24, query, dynamics, criterion);
            assert_eq!(sweep.beta, crate::phase::LSR_B, "b defaults to 2 + √2");
            for p in loads {
                let label = format!("{patterns} {query} {dynamics} {criterion} P={p}");
                let cpu = sweep.run_point(&Device::Cpu, p, |_| {}).unwrap();
                let reference = sweep.run_point(&Device::Reference, p, |_| {}).unwrap();
                assert_eq!(cpu.trials, 24, "{label}");
                assert_eq!(
                    (cpu.successes, cpu.empty_supports),
                    (reference.successes, reference.empty_supports),
                    "{label}"
                );
                assert!(
                    OVERLAP_TOL.accepts(cpu.mean_overlap, reference.mean_overlap),
                    "{label}: {} vs {}",
                    cpu.mean_overlap,
                    reference.mean_overlap
                );
                assert!(cpu.mean_overlap.is_finite(), "{label}");
                let empty = cpu.empty_supports.expect("lsr counts empty supports");
                assert!(cpu.successes + empty <= cpu.trials, "{label}");
                empties += empty;
                mixed += (cpu.successes > 0 && cpu.successes < cpu.trials) as usize;
            }
        }
        assert!(empties > 0, "some queries must have an empty support");
        assert!(
            mixed > 0,
            "some load must be neither all success nor all failure"
        );
    }

    /// `sparsemax` and `entmax:1.25` on a built ±1 set run through the retriever and agree
    /// on the fast CPU backend and the reference; the procedural stream and wgpu are
    /// refused with the way out in the message.
    #[test]
    fn entmax_sweeps_run_on_built_sets() {
        let sweep = |energy: &str, patterns: &str| {
            crate::args::SweepText {
                patterns,
                dim: 16,
                energy,
                beta: Some(0.1),
                degree: 2,
                alpha: None,
                count: Some("1:1:1"),
                trials: 12,
                query: "flip:0.1",
                dynamics: "converge:5",
                criterion: "overlap:0.9",
                seed: 5,
                shard: None,
                search: false,
            }
            .build()
        };
        for energy in ["sparsemax", "entmax:1.25", "entmax"] {
            let s = sweep(energy, "separated:4").unwrap().0;
            assert!(matches!(s.energy, Energy::Entmax(_)), "{energy}");
            for p in [4u64, 40] {
                let cpu = s.run_point(&Device::Cpu, p, |_| {}).unwrap();
                let reference = s.run_point(&Device::Reference, p, |_| {}).unwrap();
                assert_eq!(cpu.successes, reference.successes, "{energy} P={p}");
                assert!(
                    (cpu.mean_overlap - reference.mean_overlap).abs() < 1e-5,
                    "{energy} P={p}"
                );
                assert_eq!(cpu.empty_supports, None, "{energy}");
            }
            let Err(err) = sweep(energy, "spherical") else {
                panic!("{energy}: a procedural set was accepted");
            };
            assert!(err.to_string().contains("separated:D or mnist"), "{err}");
        }
        let s = sweep("sparsemax", "separated:4").unwrap().0;
        let small = s.run_point(&Device::Cpu, 4, |_| {}).unwrap();
        assert_eq!(small.successes, 12, "4 patterns 4 apart are all recalled");
    }

    /// N = 30, b = 2 + √2, the target as the query: the success rate ("the target is the
    /// only pattern in the support") follows the exact (1 − p_N)^{P−1}
    /// ([`crate::theory::lsr_success`]): ≈ 1 at α = 0.25 (P = 1,808), ≈ 0 at α = 0.45
    /// (P = 729,416); α_half ≈ 0.40 at this N, ln 2 / 2 ≈ 0.347 as N → ∞.
    #[test]
    fn lsr_success_falls_across_the_support_threshold() {
        let n = 30;
        let sweep = lsr_sweep("spherical", n, 16, "stored", "one-step", "weight");
        let b = sweep.beta;
        let half = crate::theory::lsr_alpha_finite(n, b);
        assert!((0.25..0.45).contains(&half), "α_half = {half}");
        for (alpha, low, high) in [(0.25, 0.85, 1.0), (0.45, 0.0, 0.2)] {
            let p = (alpha * n as f64).exp().round() as u64;
            let point = sweep.run_point(&Device::Cpu, p, |_| {}).unwrap();
            let exact = crate::theory::lsr_success(n, b, p);
            assert!((low..=high).contains(&exact), "α={alpha}: theory {exact}");
            assert!(
                (low..=high).contains(&point.success_rate),
                "α={alpha} (P={p}): rate {} (theory {exact})",
                point.success_rate
            );
            assert_eq!(
                point.empty_supports,
                Some(0),
                "the target is always in its support"
            );
        }
    }
}
