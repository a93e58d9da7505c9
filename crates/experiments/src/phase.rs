//! Metropolis Monte Carlo on the sphere at temperature T: where a dense associative memory
//! retrieves in the plane of load α and temperature (the protocol of DenseAM-GPU).
//!
//! M = round(e^{αN}) spherical patterns (norm √N, procedural from the seed, so every
//! device sees the same set); a chain proposes x' = x + σ·g (g standard normal) rescaled to
//! norm √N, σ = 2.4·T/√N, and accepts with min(1, e^{−(E(x') − E(x))/T}), with the
//! extensive energies
//! * LSE: E = −(1/β) log Σ_μ e^{βN(φ_μ − 1)} (β = 1), φ_μ = x·ξ^μ/N;
//! * LSR: E = −(N/b) log Σ_μ max(0, 1 − b + bφ_μ), b = 2 + √2 (the support wall at
//!   φ = 1/√2).
//!
//! Each chain starts at overlap φ₀ with the target pattern 0 (φ₀ uniform in a range,
//! [0.75, 1] by default). After the equilibration steps the sampled steps give, per
//! cell (α, T, disorder), the mean overlaps ⟨φ⟩ of two replicas with the target (same
//! patterns, independent chains), their mutual overlap q₁₂, and at the end the largest
//! overlap of either replica with any other pattern. The chains of every temperature and
//! replica of a disorder advance together: one batched energy evaluation per step on the
//! chosen device (`Retriever::energy`, the fast CPU pass or the wgpu kernels; the LSE
//! energy is the engine's softmax energy with β = 1 shifted by N/2, the LSR one its
//! log-sum-ReLU energy with negative Euclidean similarity and β = b/N).
//!
//! Every chain draws from its own generator, seeded by (seed, α, disorder, T, replica): a
//! cell's row is the same whichever other cells run with it (and in any grid that holds
//! it), so a run split with [`PhaseSpec::shard`] or continued with [`run`]'s `done` rows
//! gives the rows of one whole run.

use std::collections::BTreeMap;
use std::path::Path;

use dam::cpu::procedural::fill_patterns;
use dam::procedural::{PatternKind, MAX_PROCEDURAL_COUNT};
use dam::weights::OnlineLse;
use dam::{Device, Dynamics, Patterns, Projection, Retriever, Separation, Similarity};
use ndarray::{Array1, Array2, ArrayView1, Axis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use crate::error::{invalid, io, output};
use crate::Result;

/// b of the spherical log-sum-ReLU energy: 2 + √2, the support wall at φ = 1/√2.
pub const LSR_B: f64 = 2.0 + std::f64::consts::SQRT_2;

/// Most replicas per pattern set and temperature.
pub const MAX_REPLICAS: usize = 64;

/// The mean |drift| (second half minus first half of the sampled ⟨φ⟩) over a run's rows
/// above which `dam phase` warns that the chains have not settled.
pub const DRIFT_WARNING: f64 = 0.01;

/// The LSR support wall on the sphere: φ = 1 − 1/b = 1/√2.
pub const LSR_WALL: f64 = std::f64::consts::FRAC_1_SQRT_2;

/// Patterns per block of the final overlaps (B × block f32 at a time).
const OVERLAP_BLOCK: usize = 1 << 16;

/// The drop φ_eq(T) − ⟨φ⟩ that marks the retrieval boundary in summary.json.
pub const BOUNDARY_DROP: f64 = 0.02;

/// Which energy the chains sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseEnergy {
    /// Log-sum-exp, β = 1.
    Lse,
    /// Log-sum-ReLU, b = 2 + √2.
    Lsr,
}

impl PhaseEnergy {
    /// `lse` or `lsr`.
    pub fn name(self) -> &'static str {
        match self {
            PhaseEnergy::Lse => "lse",
            PhaseEnergy::Lsr => "lsr",
        }
    }

    /// Reads [`PhaseEnergy::name`] (also `log-sum-exp`, `softmax`, `log-sum-relu`).
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "lse" | "log-sum-exp" | "softmax" => Ok(PhaseEnergy::Lse),
            "lsr" | "log-sum-relu" => Ok(PhaseEnergy::Lsr),
            _ => Err(invalid("--energy", text, "use lse or lsr")),
        }
    }
}

/// How the size of each point is fixed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PhaseSize {
    /// N fixed; M = round(e^{αN}).
    Dim(usize),
    /// M fixed; N = round(ln M / α).
    Patterns(u64),
}

/// One Monte Carlo phase experiment.
#[derive(Debug, Clone)]
pub struct PhaseSpec {
    /// The energy sampled.
    pub energy: PhaseEnergy,
    /// N or M.
    pub size: PhaseSize,
    /// Loads α.
    pub alphas: Vec<f64>,
    /// Temperatures T > 0.
    pub temperatures: Vec<f64>,
    /// Independent pattern sets per (α, T).
    pub disorders: usize,
    /// Chains per pattern set and temperature, 1 to [`MAX_REPLICAS`]: replicas a and b
    /// give φ_a, φ_b and q₁₂; every replica counts in `phi_mean`.
    pub replicas: usize,
    /// Steps before sampling.
    pub equilibrate: usize,
    /// Sampled steps.
    pub sample: usize,
    /// Range of the starting overlap φ₀ with the target.
    pub start_overlap: (f64, f64),
    /// Seed of patterns, starts and moves.
    pub seed: u64,
    /// Run only the cells c with c mod n = i, as (i, n): a shard of a Slurm array, joined
    /// by `dam merge`. (0, 1) runs every cell.
    pub shard: (usize, usize),
    /// Most pattern entries M·N held in memory (default 2³⁰, 4 GiB of f32); a larger
    /// set is regenerated block by block at every step instead (the fast CPU only).
    pub max_stored_entries: u64,
}

impl Default for PhaseSpec {
    fn default() -> Self {
        Self {
            energy: PhaseEnergy::Lse,
            size: PhaseSize::Dim(100),
            alphas: vec![0.1],
            temperatures: vec![0.1],
            disorders: 1,
            replicas: 2,
            equilibrate: 8192,
            sample: 4096,
            start_overlap: (0.75, 1.0),
            seed: 0,
            shard: (0, 1),
            max_stored_entries: 1 << 30,
        }
    }
}

/// One row of phase.csv: one cell (α, T, disorder).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PhaseRow {
    /// Load α = ln M / N (as given on the grid).
    pub alpha: f64,
    /// Temperature.
    #[serde(rename = "T")]
    pub t: f64,
    /// Dimension.
    #[serde(rename = "N")]
    pub n: usize,
    /// Which pattern set.
    pub disorder: usize,
    /// ⟨φ⟩ of replica a with the target over the sampled steps.
    pub phi_a: f64,
    /// Same for replica b (empty with one replica).
    pub phi_b: Option<f64>,
    /// ⟨x_a·x_b⟩/N over the sampled steps (empty with one replica).
    pub q12: Option<f64>,
    /// The largest overlap of either replica's final state with a pattern other than the
    /// target (empty when M = 1).
    pub phi_max_other: Option<f64>,
    /// ⟨φ⟩ with the target over every replica (the heat map's value).
    pub phi_mean: f64,
    /// Equilibration check: ⟨φ⟩ over the second half of the sampled steps minus ⟨φ⟩ over
    /// the first half, averaged over the replicas (near 0 once the chains have settled).
    pub drift: f64,
    /// M, the number of patterns.
    pub patterns: u64,
    /// Fraction of accepted moves over the replicas and all steps.
    pub acceptance: f64,
    /// `lse` or `lsr`.
    pub energy: PhaseEnergy,
    /// The run's seed.
    pub seed: u64,
    /// Equilibration steps.
    pub equilibrate: usize,
    /// Sampled steps.
    pub sample: usize,
    /// Seconds of this cell's (α, disorder) batch, shared by the temperatures run with it.
    pub seconds: f64,
}

impl PhaseRow {
    /// The mean overlap with the target over the replicas.
    pub fn phi(&self) -> f64 {
        self.phi_mean
    }
}

/// The columns of phase.csv, in order: the contract's eight, then the run's settings.
pub const CSV_COLUMNS: [&str; 17] = [
    "alpha",
    "T",
    "N",
    "disorder",
    "phi_a",
    "phi_b",
    "q12",
    "phi_max_other",
    "phi_mean",
    "drift",
    "patterns",
    "acceptance",
    "energy",
    "seed",
    "equilibrate",
    "sample",
    "seconds",
];

/// The size of one point: (N, M).
pub fn point_size(size: PhaseSize, alpha: f64) -> Result<(usize, u64)> {
    let bad = |reason: String| invalid("--alpha", &alpha.to_string(), reason);
    if !(alpha.is_finite() && alpha > 0.0) {
        return Err(bad("α must be finite and > 0".into()));
    }
    match size {
        PhaseSize::Dim(n) => {
            let m = (alpha * n as f64).exp().round();
            if m > 1e15 {
                return Err(bad(format!("M = e^(αN) = {m:.3e} at N = {n} is too large")));
            }
            Ok((n, (m as u64).max(1)))
        }
        PhaseSize::Patterns(m) => {
            let n = ((m as f64).ln() / alpha).round() as usize;
            if n < 2 {
                return Err(bad(format!("N = round(ln {m} / α) = {n}: lower α")));
            }
            Ok((n, m))
        }
    }
}

/// One cell of the grid, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cell {
    /// Index into [`PhaseSpec::alphas`].
    pub alpha: usize,
    /// The pattern set.
    pub disorder: usize,
    /// Index into [`PhaseSpec::temperatures`].
    pub t: usize,
}

impl PhaseSpec {
    /// Checks every setting (which flag, which value).
    pub fn validate(&self) -> Result<()> {
        if self.alphas.is_empty() {
            return Err(invalid("--alpha", "", "at least one load"));
        }
        if self.temperatures.is_empty() {
            return Err(invalid("--temperature", "", "at least one temperature"));
        }
        if let Some(t) = self
            .temperatures
            .iter()
            .find(|t| !(t.is_finite() && **t > 0.0))
        {
            return Err(invalid(
                "--temperature",
                &t.to_string(),
                "T must be finite and > 0",
            ));
        }
        if self.disorders == 0 {
            return Err(invalid("--disorders", "0", "at least one pattern set"));
        }
        if !(1..=MAX_REPLICAS).contains(&self.replicas) {
            return Err(invalid(
                "--replicas",
                &self.replicas.to_string(),
                format!("1 to {MAX_REPLICAS} (q12 needs 2)"),
            ));
        }
        if self.sample == 0 {
            return Err(invalid("--sample", "0", "at least one sampled step"));
        }
        let (lo, hi) = self.start_overlap;
        if !(0.0..=1.0).contains(&lo) || !(lo..=1.0).contains(&hi) {
            return Err(invalid(
                "--start-overlap",
                &format!("{lo}:{hi}"),
                "need 0 ≤ LO ≤ HI ≤ 1",
            ));
        }
        // A chain outside every support has E = +∞ and no finite move nearby: it would
        // never move.
        if self.energy == PhaseEnergy::Lsr && lo <= LSR_WALL {
            return Err(invalid(
                "--start-overlap",
                &format!("{lo}:{hi}"),
                format!(
                    "lsr chains must start inside the target's support, φ₀ > 1/√2 = {LSR_WALL:.6}"
                ),
            ));
        }
        let (i, n) = self.shard;
        if n == 0 || i >= n {
            return Err(invalid("--shard", &format!("{i}/{n}"), "need i < n"));
        }
        if let PhaseSize::Dim(n) = self.size {
            if n < 2 {
                return Err(invalid("--dim", &n.to_string(), "N ≥ 2"));
            }
        }
        for &alpha in &self.alphas {
            let (_, m) = point_size(self.size, alpha)?;
            if m > MAX_PROCEDURAL_COUNT {
                return Err(invalid(
                    "--alpha",
                    &alpha.to_string(),
                    format!("M = {m} patterns is beyond 2^40: lower α, --dim or --patterns"),
                ));
            }
        }
        Ok(())
    }

    /// This shard's cells, in the order they are written: α, disorder, T.
    pub fn cells(&self) -> Vec<Cell> {
        let (i, n) = self.shard;
        (0..self.alphas.len())
            .flat_map(|a| {
                (0..self.disorders).flat_map(move |d| {
                    (0..self.temperatures.len()).map(move |t| Cell {
                        alpha: a,
                        disorder: d,
                        t,
                    })
                })
            })
            .enumerate()
            .filter(|(k, _)| k % n == i)
            .map(|(_, c)| c)
            .collect()
    }

    /// The cell of a row of this grid, if it is one.
    pub fn cell_of(&self, row: &PhaseRow) -> Option<Cell> {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        Some(Cell {
            alpha: self.alphas.iter().position(|&a| close(a, row.alpha))?,
            disorder: (row.disorder < self.disorders).then_some(row.disorder)?,
            t: self.temperatures.iter().position(|&t| close(t, row.t))?,
        })
    }

    /// Steps of one (α, disorder) batch.
    pub fn steps(&self) -> usize {
        self.equilibrate + self.sample
    }
}

/// What [`run`] reports as it goes.
#[derive(Debug)]
pub enum PhaseEvent<'a> {
    /// Monte Carlo steps done for a batch of `cells` cells (reported every 64 steps).
    Steps {
        /// Steps since the last report.
        steps: usize,
        /// Cells in the batch.
        cells: usize,
    },
    /// One (α, disorder) batch finished: its rows.
    Rows(&'a [PhaseRow]),
}

/// Seed of one pattern set: distinct for every (α, disorder), by α's value (so a cell
/// is the same in any grid that holds it).
fn point_seed(seed: u64, alpha: f64, disorder: usize) -> u64 {
    seed ^ alpha.to_bits().wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (disorder as u64 + 1).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
}

/// The generator of one chain: (pattern-set seed, T, replica).
fn chain_rng(point_seed: u64, t: f64, replica: usize) -> StdRng {
    StdRng::seed_from_u64(
        point_seed
            ^ 0x5DEE_CE66_D1CE_4E5B
            ^ t.to_bits().wrapping_mul(0xD6E8_FEB8_6659_FD93)
            ^ (replica as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F),
    )
}

/// M spherical patterns of norm √N of the run `seed` (procedural: the same on every
/// machine; the generator of the CPU's procedural streams).
pub fn spherical_patterns(seed: u64, m: u64, n: usize) -> Array2<f32> {
    let mut data = vec![0.0f32; m as usize * n];
    for (k, block) in data.chunks_mut(PROCEDURAL_BLOCK * n).enumerate() {
        fill_patterns(
            PatternKind::Spherical,
            seed,
            (k * PROCEDURAL_BLOCK) as u64,
            n,
            block,
        );
    }
    Array2::from_shape_vec((m as usize, n), data).expect("M×N patterns")
}

/// The spherical log-sum-ReLU kernel max(0, 1 − b + bφ) of one overlap: core's
/// `relu_kernel` at β = b/N with ‖x − ξ‖² = 2N(1 − φ), written in φ for the procedural
/// source and [`exact_energy`].
fn sphere_relu(phi: f64) -> f64 {
    (1.0 - LSR_B + LSR_B * phi).max(0.0)
}

/// Patterns generated per block of the procedural source.
const PROCEDURAL_BLOCK: usize = 4096;

/// Where a batch's patterns live: stored on the device, or regenerated block by block at
/// every step (O(B·N + block·N) memory whatever M; the fast CPU only).
enum Source {
    Stored(ChainEnergy),
    Procedural {
        energy: PhaseEnergy,
        seed: u64,
        m: u64,
        n: usize,
        threads: usize,
    },
}

/// Per chain: the LSE state or the LSR kernel sum, and the largest overlap with patterns
/// 1.. (the target excluded).
#[derive(Debug, Clone, Copy)]
struct Fold {
    lse: OnlineLse,
    relu: f64,
    best_other: f64,
}

impl Source {
    /// Generates patterns `lo..hi` block by block and folds every chain's overlaps.
    fn fold_range(&self, x: &Array2<f32>, lo: u64, hi: u64, folds: &mut [Fold]) {
        let Source::Procedural {
            energy, seed, n, ..
        } = *self
        else {
            unreachable!("only the procedural source folds");
        };
        let mut block = vec![0.0f32; PROCEDURAL_BLOCK * n];
        let mut first = lo;
        while first < hi {
            let rows = ((hi - first) as usize).min(PROCEDURAL_BLOCK);
            let data = &mut block[..rows * n];
            fill_patterns(PatternKind::Spherical, seed, first, n, data);
            let patterns = ndarray::ArrayView2::from_shape((rows, n), data).expect("rows×N");
            let scores = x.dot(&patterns.t());
            for (fold, row) in folds.iter_mut().zip(scores.rows()) {
                let phis = row.iter().map(|&s| s as f64 / n as f64);
                match energy {
                    PhaseEnergy::Lse => {
                        // z = N(φ − 1): the block's maximum, then Σ e^{z − max}.
                        let top = phis.clone().fold(f64::NEG_INFINITY, f64::max);
                        let zmax = n as f64 * (top - 1.0);
                        let l = phis
                            .clone()
                            .map(|p| (n as f64 * (p - 1.0) - zmax).exp())
                            .sum();
                        fold.lse.merge(&OnlineLse { m: zmax, l });
                    }
                    PhaseEnergy::Lsr => {
                        fold.relu += phis.clone().map(sphere_relu).sum::<f64>();
                    }
                }
                let skip = usize::from(first == 0);
                if let Some(top) = phis.skip(skip).reduce(f64::max) {
                    fold.best_other = fold.best_other.max(top);
                }
            }
            first += rows as u64;
        }
    }

    /// Folds every pattern for every chain, the pattern range split over the threads.
    fn fold_all(&self, x: &Array2<f32>) -> Vec<Fold> {
        let (m, threads) = match *self {
            Source::Procedural { m, threads, .. } => (m, threads),
            Source::Stored(_) => unreachable!("only the procedural source folds"),
        };
        let empty = Fold {
            lse: OnlineLse::EMPTY,
            relu: 0.0,
            best_other: f64::NEG_INFINITY,
        };
        let blocks = m.div_ceil(PROCEDURAL_BLOCK as u64);
        let per = blocks.div_ceil(threads as u64) * PROCEDURAL_BLOCK as u64;
        let parts: Vec<Vec<Fold>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads as u64)
                .map(|t| (t * per, ((t + 1) * per).min(m)))
                .filter(|(lo, hi)| lo < hi)
                .map(|(lo, hi)| {
                    scope.spawn(move || {
                        let mut folds = vec![empty; x.nrows()];
                        self.fold_range(x, lo, hi, &mut folds);
                        folds
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a fold thread panicked"))
                .collect()
        });
        let mut folds = vec![empty; x.nrows()];
        for part in parts {
            for (a, b) in folds.iter_mut().zip(part) {
                a.lse.merge(&b.lse);
                a.relu += b.relu;
                a.best_other = a.best_other.max(b.best_other);
            }
        }
        folds
    }

    /// The chains' energies.
    fn energies(&self, x: &Array2<f32>) -> Result<Vec<f64>> {
        match self {
            Source::Stored(chain) => chain.energies(x),
            Source::Procedural { energy, n, .. } => Ok(self
                .fold_all(x)
                .into_iter()
                .map(|f| match energy {
                    PhaseEnergy::Lse => -f.lse.lse(),
                    PhaseEnergy::Lsr => {
                        dam::weights::log_sum_relu_energy(LSR_B / *n as f64, 0.0, f.relu)
                    }
                })
                .collect()),
        }
    }

    /// The largest overlap of each chain with a pattern other than the target (`None`
    /// when M = 1).
    fn best_other(&self, x: &Array2<f32>) -> Vec<Option<f64>> {
        match self {
            Source::Stored(chain) => {
                let patterns = chain.patterns();
                let n = patterns.ncols() as f64;
                let mut best = vec![None::<f64>; x.nrows()];
                for block in patterns
                    .slice(ndarray::s![1.., ..])
                    .axis_chunks_iter(Axis(0), OVERLAP_BLOCK)
                {
                    for (b, row) in best.iter_mut().zip(x.dot(&block.t()).rows()) {
                        let top = row.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
                        *b = Some(b.map_or(top, |b| b.max(top)));
                    }
                }
                best.into_iter().map(|b| b.map(|v| v / n)).collect()
            }
            Source::Procedural { .. } => self
                .fold_all(x)
                .into_iter()
                .map(|f| f.best_other.is_finite().then_some(f.best_other))
                .collect(),
        }
    }
}

/// The chains' energy on a device: the engine's retriever whose energy is the chain's
/// energy up to a constant, and that constant.
pub struct ChainEnergy {
    memory: Retriever,
    shift: f64,
}

impl ChainEnergy {
    /// The energy `energy` of the patterns (rows of norm √N) on `device`: the LSE energy
    /// is the engine's softmax energy with β = 1 shifted by N/2 (engine: −log Σ e^{x·ξ} +
    /// ½‖x‖²; chain: −log Σ e^{x·ξ − N}), the LSR one its log-sum-ReLU energy with
    /// negative Euclidean similarity and β = b/N (‖x − ξ‖² = 2N(1 − φ) on the sphere).
    pub fn new(energy: PhaseEnergy, patterns: Array2<f32>, device: &Device) -> Result<Self> {
        let n = patterns.ncols() as f64;
        let (similarity, separation, shift) = match energy {
            PhaseEnergy::Lse => (Similarity::Dot, Separation::Softmax { beta: 1.0 }, n / 2.0),
            PhaseEnergy::Lsr => (
                Similarity::NegEuclidean,
                Separation::LogSumRelu {
                    beta: (LSR_B / n) as f32,
                    eps: 0.0,
                },
                0.0,
            ),
        };
        let memory = Retriever::builder(Patterns::new(patterns)?)
            .similarity(similarity)
            .separation(separation)
            .dynamics(Dynamics::OneStep)
            .device(device.clone())
            .build()?;
        Ok(Self { memory, shift })
    }

    /// E of each state (rows on the sphere); +∞ for an LSR state outside every support.
    pub fn energies(&self, states: &Array2<f32>) -> Result<Vec<f64>> {
        Ok(self
            .memory
            .energy(states.view())?
            .into_iter()
            .map(|e| e + self.shift)
            .collect())
    }

    /// The stored patterns.
    pub fn patterns(&self) -> ndarray::ArrayView2<'_, f32> {
        self.memory.patterns().view()
    }
}

/// The chain's energy from its overlaps φ_μ = x·ξ^μ/N, in f64 (the definition the devices
/// are tested against): LSE −log Σ_μ e^{N(φ_μ − 1)}, LSR −(N/b) log Σ_μ max(0, 1 − b + bφ_μ)
/// (+∞ for an empty support).
pub fn exact_energy(energy: PhaseEnergy, phis: &[f64], n: usize) -> f64 {
    let n = n as f64;
    match energy {
        PhaseEnergy::Lse => {
            let z: Vec<f64> = phis.iter().map(|p| n * (p - 1.0)).collect();
            -dam::weights::log_sum_exp(&z)
        }
        PhaseEnergy::Lsr => {
            let sum: f64 = phis.iter().map(|&p| sphere_relu(p)).sum();
            dam::weights::log_sum_relu_energy(LSR_B / n, 0.0, sum)
        }
    }
}

/// Writes `values` projected onto the sphere |x|² = N (`Projection::Sphere`) into `row`.
fn write_on_sphere(mut values: Vec<f64>, mut row: ndarray::ArrayViewMut1<'_, f32>) {
    Projection::Sphere.apply(&mut values);
    row.iter_mut()
        .zip(&values)
        .for_each(|(o, &v)| *o = v as f32);
}

/// φ = a·b/N (f64 sums) of two rows of standard-layout arrays.
fn overlap(a: ArrayView1<'_, f32>, b: ArrayView1<'_, f32>) -> f64 {
    let (a, b) = (
        a.to_slice().expect("rows of a standard layout"),
        b.to_slice().expect("rows of a standard layout"),
    );
    Similarity::Dot.of(a, b) / a.len() as f64
}

/// Runs this shard's cells except those already in `done` (rows of an interrupted run of
/// the same spec: `--resume`), one (α, disorder) batch at a time, and returns the new rows
/// in the order α, disorder, T. A row of `done` that is not a cell of this grid, or that
/// was written with another energy or seed, is an error naming `--resume`.
pub fn run(
    spec: &PhaseSpec,
    device: &Device,
    done: &[PhaseRow],
    mut event: impl FnMut(PhaseEvent<'_>) -> Result<()>,
) -> Result<Vec<PhaseRow>> {
    spec.validate()?;
    let finished = finished_cells(spec, done)?;
    let mut batches: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    for cell in spec.cells() {
        if !finished.contains(&cell) {
            batches
                .entry((cell.alpha, cell.disorder))
                .or_default()
                .push(cell.t);
        }
    }
    let mut rows = Vec::new();
    for ((a, d), temps) in batches {
        let batch = run_point(spec, device, a, d, &temps, |steps| {
            event(PhaseEvent::Steps {
                steps,
                cells: temps.len(),
            })
        })?;
        event(PhaseEvent::Rows(&batch))?;
        rows.extend(batch);
    }
    Ok(rows)
}

/// The cells of `done` (rows of an earlier run), checked to belong to this grid, energy
/// and seed (else an error naming `--resume`).
fn finished_cells(spec: &PhaseSpec, done: &[PhaseRow]) -> Result<std::collections::HashSet<Cell>> {
    let mut finished = std::collections::HashSet::new();
    for row in done {
        let cell = spec.cell_of(row).ok_or_else(|| {
            invalid(
                "--resume",
                &format!(
                    "α = {}, T = {}, disorder {}",
                    row.alpha, row.t, row.disorder
                ),
                "the existing phase.csv has a cell outside this grid: give the same \
                 --alpha, --temperature and --disorders, or a new --out",
            )
        })?;
        if row.energy != spec.energy || row.seed != spec.seed {
            return Err(invalid(
                "--resume",
                &format!("energy {}, seed {}", row.energy.name(), row.seed),
                "the existing phase.csv was written with another --energy or --seed: give \
                 the same, or a new --out",
            ));
        }
        finished.insert(cell);
    }
    Ok(finished)
}

/// How many of this shard's cells (α, T, disorder) are still to run after `done`: what
/// [`run`] would compute. Errors as [`run`] does for rows of another run.
pub fn remaining(spec: &PhaseSpec, done: &[PhaseRow]) -> Result<usize> {
    let finished = finished_cells(spec, done)?;
    Ok(spec
        .cells()
        .iter()
        .filter(|c| !finished.contains(c))
        .count())
}

/// One (α, disorder) and the temperatures `t_indices`: every chain of them advancing
/// together. `progress` gets the steps done since its last call (every 64 steps).
pub fn run_point(
    spec: &PhaseSpec,
    device: &Device,
    alpha_index: usize,
    disorder: usize,
    t_indices: &[usize],
    mut progress: impl FnMut(usize) -> Result<()>,
) -> Result<Vec<PhaseRow>> {
    let start_time = std::time::Instant::now();
    let alpha = spec.alphas[alpha_index];
    let (n, m) = point_size(spec.size, alpha)?;
    let seed = point_seed(spec.seed, alpha, disorder);
    let mut target = Array1::<f32>::zeros(n);
    fill_patterns(
        PatternKind::Spherical,
        seed,
        0,
        n,
        target.as_slice_mut().expect("contiguous"),
    );
    let source = if m as f64 * n as f64 <= spec.max_stored_entries as f64 {
        Source::Stored(ChainEnergy::new(
            spec.energy,
            spherical_patterns(seed, m, n),
            device,
        )?)
    } else {
        if !matches!(device, Device::Cpu) {
            let name = match device {
                Device::Reference => "reference",
                _ => "wgpu",
            };
            return Err(invalid(
                "--device",
                name,
                format!(
                    "M·N = {m}·{n} is beyond the {} pattern entries held in memory: the \
                     patterns are then regenerated at every step, which runs on the fast CPU \
                     only (--device cpu)",
                    spec.max_stored_entries
                ),
            ));
        }
        Source::Procedural {
            energy: spec.energy,
            seed,
            m,
            n,
            threads: std::thread::available_parallelism().map_or(1, |t| t.get()),
        }
    };
    let temps: Vec<f64> = t_indices.iter().map(|&t| spec.temperatures[t]).collect();
    let r = spec.replicas;
    let chains = temps.len() * r;
    let mut rngs: Vec<StdRng> = (0..chains)
        .map(|c| chain_rng(seed, temps[c / r], c % r))
        .collect();
    // Starts: φ₀ x̂ + √(1 − φ₀²) û with û ⊥ the target, both of norm √N.
    let mut x = Array2::<f32>::zeros((chains, n));
    for (row, rng) in x.rows_mut().into_iter().zip(rngs.iter_mut()) {
        let (lo, hi) = spec.start_overlap;
        let phi0 = if hi > lo {
            rng.random_range(lo..=hi)
        } else {
            lo
        };
        let mut u: Vec<f64> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
        let along = u
            .iter()
            .zip(target.iter())
            .map(|(a, &t)| a * t as f64)
            .sum::<f64>()
            / n as f64;
        u.iter_mut()
            .zip(target.iter())
            .for_each(|(a, &t)| *a -= along * t as f64);
        Projection::Sphere.apply(&mut u);
        let start = target
            .iter()
            .zip(&u)
            .map(|(&t, &a)| phi0 * t as f64 + (1.0 - phi0 * phi0).sqrt() * a)
            .collect();
        write_on_sphere(start, row);
    }
    let energies = |states: &Array2<f32>| source.energies(states);
    let mut e = energies(&x)?;
    let sigma: Vec<f64> = temps.iter().map(|t| 2.4 * t / (n as f64).sqrt()).collect();
    let (mut phi_sum, mut q_sum) = (vec![0.0f64; chains], vec![0.0f64; temps.len()]);
    // Σφ over the second half of the sampled steps, for `drift`.
    let mut late_sum = vec![0.0f64; chains];
    let late = spec.equilibrate + spec.sample / 2;
    let mut accepted = vec![0usize; chains];
    let total = spec.steps();
    let mut y = Array2::<f32>::zeros((chains, n));
    let mut reported = 0;
    for step in 0..total {
        for (c, (row, rng)) in y.rows_mut().into_iter().zip(rngs.iter_mut()).enumerate() {
            let s = sigma[c / r];
            let proposal = x
                .row(c)
                .iter()
                .map(|&v| v as f64 + s * rng.sample::<f64, _>(StandardNormal))
                .collect();
            write_on_sphere(proposal, row);
        }
        let e_new = energies(&y)?;
        for (c, rng) in rngs.iter_mut().enumerate() {
            let t = temps[c / r];
            let delta = e_new[c] - e[c];
            let u: f64 = rng.random();
            // An infinite proposal (outside every support) is never accepted.
            if e_new[c].is_finite() && (delta <= 0.0 || u < (-delta / t).exp()) {
                x.row_mut(c).assign(&y.row(c));
                e[c] = e_new[c];
                accepted[c] += 1;
            }
        }
        if step >= spec.equilibrate {
            for (c, row) in x.rows().into_iter().enumerate() {
                let phi = overlap(row, target.view());
                phi_sum[c] += phi;
                if step >= late {
                    late_sum[c] += phi;
                }
            }
            if r >= 2 {
                for (ti, q) in q_sum.iter_mut().enumerate() {
                    *q += overlap(x.row(ti * r), x.row(ti * r + 1));
                }
            }
        }
        if step % 64 == 63 || step + 1 == total {
            progress(step + 1 - reported)?;
            reported = step + 1;
        }
    }
    // The largest overlap with another pattern, from the final states.
    let best_other = source.best_other(&x);
    let samples = spec.sample as f64;
    let (first, second) = (
        (spec.sample - spec.sample / 2) as f64,
        (spec.sample / 2).max(1) as f64,
    );
    // Second-half mean minus first-half mean of one chain.
    let drift = |c: usize| {
        if spec.sample < 2 {
            0.0
        } else {
            late_sum[c] / second - (phi_sum[c] - late_sum[c]) / first
        }
    };
    let seconds = start_time.elapsed().as_secs_f64();
    Ok(temps
        .iter()
        .enumerate()
        .map(|(ti, &t)| {
            let c = ti * r;
            PhaseRow {
                alpha,
                t,
                n,
                disorder,
                phi_a: phi_sum[c] / samples,
                phi_b: (r >= 2).then(|| phi_sum[c + 1] / samples),
                q12: (r >= 2).then(|| q_sum[ti] / samples),
                phi_max_other: best_other[c..c + r]
                    .iter()
                    .flatten()
                    .copied()
                    .reduce(f64::max),
                phi_mean: phi_sum[c..c + r].iter().sum::<f64>() / (r as f64 * samples),
                drift: (c..c + r).map(drift).sum::<f64>() / r as f64,
                patterns: m,
                acceptance: accepted[c..c + r].iter().sum::<usize>() as f64 / (r * total) as f64,
                energy: spec.energy,
                seed: spec.seed,
                equilibrate: spec.equilibrate,
                sample: spec.sample,
                seconds,
            }
        })
        .collect())
}

/// The equilibrium overlap of a single pattern on the sphere at large N.
pub fn phi_eq(energy: PhaseEnergy, t: f64) -> f64 {
    match energy {
        // φ_eq(T) = (√(T² + 4) − T)/2.
        PhaseEnergy::Lse => ((t * t + 4.0).sqrt() - t) / 2.0,
        // 1 − y, y the smaller root of (bT + 1)y² − (2 + T + Tb)y + T = 0.
        PhaseEnergy::Lsr => {
            let b = LSR_B;
            let (qa, qb, qc) = (b * t + 1.0, 2.0 + t + t * b, t);
            let y = (qb - (qb * qb - 4.0 * qa * qc).sqrt()) / (2.0 * qa);
            1.0 - y
        }
    }
}

/// ⟨φ⟩ of a chain with one pattern on the sphere at dimension N and temperature T,
/// exactly: with φ = cos θ the sphere's measure is ∝ sin^{N−2}θ dθ, so
/// ⟨φ⟩ = ∫ cos θ · sin^{N−2}θ · e^{−E(cos θ)/T} dθ / ∫ sin^{N−2}θ · e^{−E(cos θ)/T} dθ with
/// the single-pattern energy (LSE: −N(φ − 1); LSR: −(N/b) log(1 − b + bφ), inside the wall
/// φ > 1/√2), by the trapezoid rule on 40,001 angles. Tends to [`phi_eq`] as N grows
/// (at N = 990, T = 0.125: 0.93951 against φ_eq = 0.93946 for LSE); at small N it is the
/// reference a finite-N run should be held to.
pub fn phi_single(energy: PhaseEnergy, t: f64, n: usize) -> f64 {
    const STEPS: usize = 40_000;
    let nf = n as f64;
    let top = match energy {
        PhaseEnergy::Lse => std::f64::consts::PI,
        PhaseEnergy::Lsr => LSR_WALL.acos(),
    };
    let log_weight = |theta: f64| -> f64 {
        let phi = theta.cos();
        let minus_e = match energy {
            PhaseEnergy::Lse => nf * (phi - 1.0),
            PhaseEnergy::Lsr => (nf / LSR_B) * (1.0 - LSR_B + LSR_B * phi).ln(),
        };
        (nf - 2.0) * theta.sin().ln() + minus_e / t
    };
    // Interior points only: the ends carry zero weight (sin 0 = 0; the LSR wall).
    let thetas: Vec<f64> = (1..STEPS).map(|k| top * k as f64 / STEPS as f64).collect();
    let logs: Vec<f64> = thetas.iter().map(|&th| log_weight(th)).collect();
    let peak = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let (mut num, mut den) = (0.0, 0.0);
    for (&th, &l) in thetas.iter().zip(&logs) {
        let w = (l - peak).exp();
        num += w * th.cos();
        den += w;
    }
    num / den
}

/// The LSE retrieval boundary at large N (β = 1): α_c(T) = φ_eq(T) − 0.377428.
pub fn lse_alpha_c(t: f64) -> f64 {
    phi_eq(PhaseEnergy::Lse, t) - 0.377428
}

/// The large-N retrieval boundary α_c(T) where the theory gives one (LSE), else `None`.
pub fn theory_alpha_c(energy: PhaseEnergy, t: f64) -> Option<f64> {
    match energy {
        PhaseEnergy::Lse => Some(lse_alpha_c(t)),
        PhaseEnergy::Lsr => None,
    }
}

/// ⟨φ⟩ over disorders and replicas per (T, α): the heat map's values. Keys are the
/// distinct temperatures and loads of `rows`, ascending.
pub fn mean_phi(rows: &[PhaseRow]) -> (Vec<f64>, Vec<f64>, Vec<Vec<Option<f64>>>) {
    let mut ts: Vec<f64> = rows.iter().map(|r| r.t).collect();
    let mut alphas: Vec<f64> = rows.iter().map(|r| r.alpha).collect();
    for v in [&mut ts, &mut alphas] {
        v.sort_by(f64::total_cmp);
        v.dedup();
    }
    let grid = ts
        .iter()
        .map(|&t| {
            alphas
                .iter()
                .map(|&a| {
                    let phis: Vec<f64> = rows
                        .iter()
                        .filter(|r| r.t == t && r.alpha == a)
                        .map(PhaseRow::phi)
                        .collect();
                    (!phis.is_empty()).then(|| phis.iter().sum::<f64>() / phis.len() as f64)
                })
                .collect()
        })
        .collect();
    (ts, alphas, grid)
}

/// Per temperature: φ_eq(T), the measured boundary `alpha` (the smallest load whose ⟨φ⟩
/// falls more than [`BOUNDARY_DROP`] below φ_eq(T); null when none does), the theory's
/// α_c(T) where there is one, and `alpha_finite_n`: the same boundary measured against the
/// exact single-pattern overlap at each load's N ([`phi_single`]), which separates the
/// loss of retrieval from the finite-N shift of ⟨φ⟩ at small N — summary.json's `boundary`.
pub fn boundaries(energy: PhaseEnergy, rows: &[PhaseRow]) -> Vec<serde_json::Value> {
    let (ts, alphas, grid) = mean_phi(rows);
    let dims: Vec<usize> = alphas
        .iter()
        .map(|&a| rows.iter().find(|r| r.alpha == a).map_or(0, |r| r.n))
        .collect();
    ts.iter()
        .zip(&grid)
        .map(|(&t, phis)| {
            let eq = phi_eq(energy, t);
            let first = |reference: &dyn Fn(usize) -> f64| {
                alphas
                    .iter()
                    .zip(phis)
                    .enumerate()
                    .find(|(i, (_, phi))| phi.is_some_and(|p| reference(*i) - p > BOUNDARY_DROP))
                    .map(|(_, (&a, _))| a)
            };
            serde_json::json!({
                "T": t,
                "phi_eq": eq,
                "alpha": first(&|_| eq),
                "theory_alpha_c": theory_alpha_c(energy, t),
                "alpha_finite_n": first(&|i| phi_single(energy, t, dims[i])),
            })
        })
        .collect()
}

/// summary.json's body: the energy, the grid, ⟨φ⟩ per (T, α) and the boundaries. The
/// caller adds the device, the arguments and the time.
pub fn summary(energy: PhaseEnergy, rows: &[PhaseRow]) -> serde_json::Value {
    let (ts, alphas, grid) = mean_phi(rows);
    serde_json::json!({
        "energy": energy.name(),
        "rows": rows.len(),
        "temperatures": ts,
        "alphas": alphas,
        "mean_phi": grid,
        "boundary_drop": BOUNDARY_DROP,
        "boundary": boundaries(energy, rows),
    })
}

/// phase.csv, one row at a time (flushed), so an interrupted run keeps the rows it
/// finished and `--resume` continues from them.
pub struct PhaseCsv {
    writer: csv::Writer<std::fs::File>,
    path: std::path::PathBuf,
}

impl PhaseCsv {
    /// Creates `path` with the header, or with `append` opens it to add rows (writing the
    /// header if the file is new or empty).
    pub fn open(path: &Path, append: bool) -> Result<Self> {
        let fresh = !append || std::fs::metadata(path).map_or(true, |m| m.len() == 0);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(!fresh)
            .truncate(fresh)
            .open(path)
            .map_err(io(path))?;
        let mut writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(file);
        if fresh {
            writer
                .write_record(CSV_COLUMNS)
                .map_err(|e| output(path, e))?;
            writer.flush().map_err(io(path))?;
        }
        Ok(Self {
            writer,
            path: path.to_path_buf(),
        })
    }

    /// Appends rows and flushes.
    pub fn push(&mut self, rows: &[PhaseRow]) -> Result<()> {
        for row in rows {
            self.writer
                .serialize(row)
                .map_err(|e| output(&self.path, e))?;
        }
        self.writer.flush().map_err(io(&self.path))
    }
}

/// Reads phase.csv (the columns of [`CSV_COLUMNS`], by name).
pub fn read_csv(path: &Path) -> Result<Vec<PhaseRow>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| output(path, e))?;
    reader
        .deserialize()
        .enumerate()
        .map(|(i, row)| row.map_err(|e| output(path, format!("row {}: {e}", i + 1))))
        .collect()
}

/// Joins the rows of several runs or shards: one row per cell (α, T, disorder), sorted
/// α, disorder, T. Two different rows for the same cell, or rows of different energies
/// or seeds, are an error.
pub fn merge_rows(parts: Vec<Vec<PhaseRow>>) -> Result<Vec<PhaseRow>> {
    let mut cells: BTreeMap<(u64, usize, u64), PhaseRow> = BTreeMap::new();
    let mut first: Option<PhaseRow> = None;
    for row in parts.into_iter().flatten() {
        let reference = *first.get_or_insert(row);
        if row.energy != reference.energy || row.seed != reference.seed {
            return Err(invalid(
                "DIR",
                &format!("energy {}, seed {}", row.energy.name(), row.seed),
                format!(
                    "the runs differ in --energy or --seed (first: {}, {}): merge shards of \
                     one run",
                    reference.energy.name(),
                    reference.seed
                ),
            ));
        }
        // Non-negative floats order like their bits.
        let key = (row.alpha.to_bits(), row.disorder, row.t.to_bits());
        if let Some(old) = cells.insert(key, row) {
            if old != row {
                return Err(invalid(
                    "DIR",
                    &format!(
                        "α = {}, T = {}, disorder {}",
                        row.alpha, row.t, row.disorder
                    ),
                    "two runs hold different rows for this cell: merge shards of one run",
                ));
            }
        }
    }
    Ok(cells.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExperimentError;

    #[test]
    fn theory_values() {
        assert!((lse_alpha_c(0.0) - 0.622572).abs() < 1e-6);
        assert!((lse_alpha_c(0.1) - 0.5738).abs() < 1e-4);
        assert!((phi_eq(PhaseEnergy::Lse, 0.125) - 0.9395).abs() < 1e-4);
        assert!((phi_eq(PhaseEnergy::Lsr, 0.125) - 0.9496).abs() < 1e-4);
        // At T → 0 both retrieve exactly.
        assert!((phi_eq(PhaseEnergy::Lsr, 1e-12) - 1.0).abs() < 1e-9);
        assert_eq!(theory_alpha_c(PhaseEnergy::Lsr, 0.1), None);
        // The exact single-pattern overlap at N = 990 (a direct integral over φ with the
        // density (1 − φ²)^{(N−3)/2}: 0.939507 and 0.949650) and its large-N limit.
        assert!((phi_single(PhaseEnergy::Lse, 0.125, 990) - 0.939507).abs() < 2e-6);
        assert!((phi_single(PhaseEnergy::Lsr, 0.125, 990) - 0.949650).abs() < 2e-6);
        for energy in [PhaseEnergy::Lse, PhaseEnergy::Lsr] {
            let big = phi_single(energy, 0.3, 200_000);
            assert!(
                (big - phi_eq(energy, 0.3)).abs() < 1e-4,
                "{energy:?}: {big}"
            );
            // Smaller N lies further from the limit (above it: the sphere's measure grows
            // like sin^{N−2}θ against an energy ∝ N).
            let eq = phi_eq(energy, 0.3);
            let (n20, n200) = (phi_single(energy, 0.3, 20), phi_single(energy, 0.3, 200));
            assert!(n20 > n200 && n200 > eq, "{energy:?}: {n20} {n200} {eq}");
        }
    }

    #[test]
    fn sizes_and_bad_settings() {
        assert_eq!(
            point_size(PhaseSize::Patterns(20_000), 0.01).unwrap().0,
            990
        );
        assert_eq!(point_size(PhaseSize::Dim(20), 0.1).unwrap().1, 7);
        assert!(point_size(PhaseSize::Dim(20), 0.0).is_err());
        let argument = |spec: &PhaseSpec| match spec.validate() {
            Err(ExperimentError::Invalid { argument, .. }) => argument,
            other => panic!("{other:?}"),
        };
        let mut spec = PhaseSpec {
            temperatures: vec![0.1, -1.0],
            ..PhaseSpec::default()
        };
        assert_eq!(argument(&spec), "--temperature");
        spec.temperatures = vec![0.1];
        spec.replicas = 65;
        assert_eq!(argument(&spec), "--replicas");
        spec.replicas = 2;
        spec.energy = PhaseEnergy::Lsr;
        spec.start_overlap = (0.5, 1.0);
        assert_eq!(argument(&spec), "--start-overlap");
        spec.energy = PhaseEnergy::Lse;
        spec.replicas = 2;
        spec.shard = (2, 2);
        assert_eq!(argument(&spec), "--shard");
        spec.shard = (0, 1);
        spec.size = PhaseSize::Dim(1000);
        spec.alphas = vec![0.5];
        assert_eq!(argument(&spec), "--alpha");
        assert!(PhaseEnergy::parse("log-sum-relu").unwrap() == PhaseEnergy::Lsr);
        assert!(PhaseEnergy::parse("poly").is_err());
    }

    fn small(energy: PhaseEnergy) -> PhaseSpec {
        PhaseSpec {
            energy,
            size: PhaseSize::Dim(40),
            alphas: vec![0.05],
            // LSR cannot leave the union of supports (φ > 1/√2): a milder hot end.
            temperatures: vec![0.05, if energy == PhaseEnergy::Lse { 3.0 } else { 0.8 }],
            equilibrate: 300,
            sample: 200,
            seed: 7,
            ..PhaseSpec::default()
        }
    }

    /// Small and fast: at low load and low temperature the chains stay near the target, at
    /// high temperature they leave it; runs are reproducible.
    #[test]
    fn chains_retrieve_at_low_temperature_and_melt_at_high() {
        for energy in [PhaseEnergy::Lse, PhaseEnergy::Lsr] {
            let spec = small(energy);
            let rows = run(&spec, &Device::Cpu, &[], |_| Ok(())).expect("run");
            assert_eq!(rows.len(), 2);
            let (cold, hot) = (rows[0], rows[1]);
            let (phi_b, q12) = (cold.phi_b.unwrap(), cold.q12.unwrap());
            assert!(cold.phi_a > 0.9 && phi_b > 0.9, "{energy:?}: {cold:?}");
            assert!(q12 > 0.8, "{energy:?}: {cold:?}");
            assert!(
                hot.phi() < cold.phi() - 0.05,
                "{energy:?}: {hot:?} vs {cold:?}"
            );
            assert!(cold.acceptance > 0.0 && cold.acceptance < 1.0);
            assert!(cold.phi_max_other.unwrap() < 0.9);
            let again = run(&spec, &Device::Cpu, &[], |_| Ok(())).expect("run");
            let strip = |rows: &[PhaseRow]| -> Vec<PhaseRow> {
                rows.iter()
                    .map(|r| PhaseRow { seconds: 0.0, ..*r })
                    .collect()
            };
            assert_eq!(strip(&rows), strip(&again), "{energy:?}: reproducible");
        }
    }

    /// Shards, a resumed run and a whole run give the same rows (each chain has its own
    /// generator), and the CSV reads back what was written.
    #[test]
    fn shards_and_resume_give_the_whole_run() {
        let spec = PhaseSpec {
            alphas: vec![0.05, 0.1],
            temperatures: vec![0.1, 0.5, 1.0],
            disorders: 2,
            equilibrate: 20,
            sample: 10,
            ..small(PhaseEnergy::Lse)
        };
        let strip = |rows: Vec<PhaseRow>| -> Vec<PhaseRow> {
            rows.into_iter()
                .map(|r| PhaseRow { seconds: 0.0, ..r })
                .collect()
        };
        let whole = strip(run(&spec, &Device::Cpu, &[], |_| Ok(())).unwrap());
        assert_eq!(whole.len(), 12);
        let shards: Vec<Vec<PhaseRow>> = (0..5)
            .map(|i| {
                let shard = PhaseSpec {
                    shard: (i, 5),
                    ..spec.clone()
                };
                strip(run(&shard, &Device::Cpu, &[], |_| Ok(())).unwrap())
            })
            .collect();
        assert_eq!(shards.iter().map(Vec::len).sum::<usize>(), 12);
        assert_eq!(merge_rows(shards.clone()).unwrap(), whole);
        // Resume after the first shard: the rest, then everything.
        let rest = strip(run(&spec, &Device::Cpu, &shards[0], |_| Ok(())).unwrap());
        assert_eq!(rest.len(), 12 - shards[0].len());
        assert_eq!(remaining(&spec, &shards[0]).unwrap(), rest.len());
        assert_eq!(merge_rows(vec![shards[0].clone(), rest]).unwrap(), whole);
        // Rows of another seed or grid are refused.
        let other = PhaseRow {
            seed: 1,
            ..whole[0]
        };
        assert!(run(&spec, &Device::Cpu, &[other], |_| Ok(())).is_err());
        assert!(merge_rows(vec![whole.clone(), vec![other]]).is_err());
        let outside = PhaseRow {
            alpha: 0.3,
            ..whole[0]
        };
        assert!(run(&spec, &Device::Cpu, &[outside], |_| Ok(())).is_err());
        // The header names the serialised fields in order.
        let mut w = csv::Writer::from_writer(vec![]);
        w.serialize(whole[0]).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(text.lines().next(), Some(CSV_COLUMNS.join(",").as_str()));
        // CSV round trip, appending.
        let dir = std::env::temp_dir().join(format!("dam-phase-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("phase.csv");
        PhaseCsv::open(&path, false)
            .unwrap()
            .push(&whole[..5])
            .unwrap();
        PhaseCsv::open(&path, true)
            .unwrap()
            .push(&whole[5..])
            .unwrap();
        assert_eq!(read_csv(&path).unwrap(), whole);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_replica_leaves_the_pair_columns_empty() {
        let spec = PhaseSpec {
            replicas: 1,
            equilibrate: 10,
            sample: 10,
            ..small(PhaseEnergy::Lsr)
        };
        let rows = run(&spec, &Device::Cpu, &[], |_| Ok(())).unwrap();
        assert!(rows.iter().all(|r| r.phi_b.is_none() && r.q12.is_none()));
        assert_eq!(rows[0].phi(), rows[0].phi_a);
        // More replicas: a and b are the first two, and the same chains as with two.
        let three = run(
            &PhaseSpec {
                replicas: 3,
                ..spec.clone()
            },
            &Device::Cpu,
            &[],
            |_| Ok(()),
        )
        .unwrap();
        let two = run(
            &PhaseSpec {
                replicas: 2,
                ..spec.clone()
            },
            &Device::Cpu,
            &[],
            |_| Ok(()),
        )
        .unwrap();
        assert_eq!(three.len(), two.len());
        assert_eq!(three.len(), rows.len());
        for ((a, b), one) in three.iter().zip(&two).zip(&rows) {
            assert_eq!((a.phi_a, a.phi_b, a.q12), (b.phi_a, b.phi_b, b.q12));
            assert_eq!(a.phi_a, one.phi_a);
            assert!(a.phi_mean > 0.0 && a.phi_mean != b.phi_mean);
        }
    }

    #[test]
    fn the_boundary_is_the_first_load_below_the_single_pattern_overlap() {
        let row = |alpha: f64, t: f64, phi: f64| PhaseRow {
            alpha,
            t,
            n: 10,
            disorder: 0,
            phi_a: phi,
            phi_b: Some(phi),
            q12: None,
            phi_max_other: None,
            phi_mean: phi,
            drift: 0.0,
            patterns: 1,
            acceptance: 0.5,
            energy: PhaseEnergy::Lse,
            seed: 0,
            equilibrate: 1,
            sample: 1,
            seconds: 0.0,
        };
        let eq = phi_eq(PhaseEnergy::Lse, 0.1);
        let rows = [
            row(0.1, 0.1, eq),
            row(0.2, 0.1, eq - 0.01),
            row(0.3, 0.1, eq - 0.03),
            row(0.4, 0.1, eq - 0.5),
            row(0.1, 0.2, 0.99),
        ];
        let b = boundaries(PhaseEnergy::Lse, &rows);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0]["alpha"], 0.3);
        assert_eq!(b[1]["alpha"], serde_json::Value::Null);
        assert!((b[0]["theory_alpha_c"].as_f64().unwrap() - lse_alpha_c(0.1)).abs() < 1e-12);
        let s = summary(PhaseEnergy::Lse, &rows);
        assert_eq!(s["alphas"].as_array().unwrap().len(), 4);
        assert_eq!(s["mean_phi"][1][1], serde_json::Value::Null);
    }
}
