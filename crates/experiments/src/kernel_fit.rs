//! `dam kernel-fit`: U-Hop+ — learning the feature map Φ(x) = W x + b of a kernelized
//! memory by minimising the separation loss of [`dam::kernelized`] (Hu et al., NeurIPS
//! 2024), with SGD or Adam, and the metastable-state histograms before and after.
//!
//! # Devices
//!
//! The parameters W, b and the optimiser's state are f64 on every device; what changes is
//! where the M × M Gram matrix Φ̂Φ̂ᵀ of the normalised features is computed:
//!
//! * [`Device::Reference`]: in f64 (ndarray);
//! * [`Device::Cpu`]: Φ̂ rounded to f32, Φ̂Φ̂ᵀ on the CPU's f32 matrix product
//!   (`dam::cpu::product::gemm`);
//! * wgpu: Φ̂ rounded to f32, Φ̂Φ̂ᵀ on the adapter's generic matrix product.
//!
//! The epilogue (the log-sum-exp, the pair weights) and the back-propagation run on the host
//! in f64 from the product read as f64: one definition, [`dam::kernelized::evaluate_with`].
//!
//! # Metastable states
//!
//! From each query, x ← Ξᵀ p(β ⟨Φ̂(ξ_μ), Φ̂(x)⟩) is iterated to its fixed point and
//! ‖p‖ (the weights above the threshold) recorded; the histogram before (the random Φ)
//! and after learning. The weight function is [`dam::kernelized::Weights`]: softmax
//! (threshold 0.01) or α-entmax (threshold 0; 1.5-entmax, which the paper uses, is the
//! default).
//!
//! # Capacity with a learned Φ
//!
//! [`capacity`] compares, for several memory counts P, retrieval by the kernelized
//! `dam::Retriever` ([`dam::RetrieverBuilder::feature_map`]) with Φ learned on the first P
//! memories against the identity map, from noisy copies of the memories.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dam::kernelized::{self, Evaluation, FeatureMap, Retrieval, Weights};
use dam::Device;
use ndarray::{Array1, Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::{invalid, output, ExperimentError};
use crate::muon::{cpu_product, wgpu_product};
use crate::Result;

/// Where the memories come from.
#[derive(Debug, Clone, PartialEq)]
pub enum MemorySource {
    /// M random unit vectors in R^N (Gaussian, normalised); the queries are independent
    /// random unit vectors.
    Spherical {
        /// M.
        m: usize,
        /// N.
        n: usize,
    },
    /// The shipped training digits (the first `count`, all when `None`), each scaled to
    /// unit norm (`mnist`) or with their pixels in [−1, 1] as shipped (`mnist-raw`, `raw`);
    /// the queries are the shipped test digits, alike.
    Mnist {
        /// How many training digits.
        count: Option<usize>,
        /// Pixels as shipped instead of unit-norm digits.
        raw: bool,
    },
    /// A CSV file, one memory per row (a first row without numbers is a header); the
    /// queries are random unit vectors.
    File(PathBuf),
}

impl MemorySource {
    /// Reads `spherical:M:N`, `mnist`, `mnist:M` or a file path.
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim();
        if let Some(rest) = t.strip_prefix("spherical:") {
            let parts: Vec<&str> = rest.split(':').map(str::trim).collect();
            let parsed = match parts[..] {
                [m, n] => m.parse::<usize>().ok().zip(n.parse::<usize>().ok()),
                _ => None,
            };
            return match parsed {
                Some((m, n)) if m >= 2 && n >= 1 => Ok(MemorySource::Spherical { m, n }),
                _ => Err(invalid(
                    "--memories",
                    text,
                    "use spherical:M:N with M ≥ 2 memories and dimension N ≥ 1",
                )),
            };
        }
        for (prefix, raw) in [("mnist-raw", true), ("mnist", false)] {
            if t == prefix {
                return Ok(MemorySource::Mnist { count: None, raw });
            }
            if let Some(count) = t.strip_prefix(prefix).and_then(|r| r.strip_prefix(':')) {
                return match count.trim().parse::<usize>() {
                    Ok(c) if c >= 2 => Ok(MemorySource::Mnist {
                        count: Some(c),
                        raw,
                    }),
                    _ => Err(invalid(
                        "--memories",
                        text,
                        format!("use {prefix} or {prefix}:M with M ≥ 2 training digits"),
                    )),
                };
            }
        }
        if t.is_empty() {
            return Err(invalid(
                "--memories",
                text,
                "use a CSV file, mnist[:M] or spherical:M:N",
            ));
        }
        Ok(MemorySource::File(PathBuf::from(t)))
    }

    /// The text it was read from.
    pub fn name(&self) -> String {
        match self {
            MemorySource::Spherical { m, n } => format!("spherical:{m}:{n}"),
            MemorySource::Mnist { count, raw } => {
                let name = if *raw { "mnist-raw" } else { "mnist" };
                match count {
                    None => name.into(),
                    Some(c) => format!("{name}:{c}"),
                }
            }
            MemorySource::File(p) => p.display().to_string(),
        }
    }
}

/// The optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optimizer {
    /// θ ← θ − η∇L.
    Sgd,
    /// Adam (β₁ = 0.9, β₂ = 0.999, ε = 1e-8, bias-corrected).
    Adam,
}

impl Optimizer {
    /// Reads `sgd` or `adam`.
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "sgd" => Ok(Optimizer::Sgd),
            "adam" => Ok(Optimizer::Adam),
            _ => Err(invalid("--optimizer", text, "use sgd or adam")),
        }
    }

    /// `sgd` or `adam`.
    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Sgd => "sgd",
            Optimizer::Adam => "adam",
        }
    }
}

/// One `dam kernel-fit` run.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelFitSpec {
    /// The memories (and where the queries come from).
    pub memories: MemorySource,
    /// D_Φ.
    pub feature_dim: usize,
    /// τ.
    pub tau: f64,
    /// E epochs (full-batch steps).
    pub epochs: usize,
    /// SGD or Adam.
    pub optimizer: Optimizer,
    /// η.
    pub lr: f64,
    /// Seed of W₀, the spherical memories and the queries.
    pub seed: u64,
    /// β of the metastable-state retrieval.
    pub beta: f64,
    /// The weights of the metastable-state retrieval (softmax or α-entmax).
    pub weights: Weights,
    /// Queries of the metastable-state histograms (0: none).
    pub queries: usize,
    /// The kernel of the metastable-state retrieval: the cosine of the features (`true`,
    /// `--kernel cosine`) or their inner product ⟨Φ(u), Φ(v)⟩ (`--kernel dot`). The loss is
    /// on normalised features either way.
    pub normalise: bool,
}

impl Default for KernelFitSpec {
    fn default() -> Self {
        Self {
            memories: MemorySource::Spherical { m: 10, n: 5 },
            feature_dim: 5,
            tau: 0.1,
            epochs: 500,
            optimizer: Optimizer::Adam,
            lr: 0.01,
            seed: 0,
            beta: 10.0,
            weights: Weights::Entmax { alpha: 1.5 },
            queries: 1000,
            normalise: true,
        }
    }
}

impl KernelFitSpec {
    /// Checks the sizes and rates; the error names the flag.
    pub fn validate(&self) -> Result<()> {
        if self.feature_dim == 0 {
            return Err(invalid("--feature-dim", "0", "at least one feature"));
        }
        if !(self.tau.is_finite() && self.tau > 0.0) {
            return Err(invalid("--tau", &self.tau.to_string(), "use τ > 0"));
        }
        if self.epochs == 0 {
            return Err(invalid("--epochs", "0", "at least one epoch"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(invalid("--lr", &self.lr.to_string(), "use η > 0"));
        }
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return Err(invalid("--beta", &self.beta.to_string(), "use β > 0"));
        }
        if let MemorySource::Spherical { m, n } = self.memories {
            if m < 2 || n == 0 {
                return Err(invalid(
                    "--memories",
                    &self.memories.name(),
                    "use spherical:M:N with M ≥ 2 memories and dimension N ≥ 1",
                ));
            }
        }
        Ok(())
    }
}

/// Each row scaled to unit norm (a zero row stays zero).
fn unit_rows(mut a: Array2<f64>) -> Array2<f64> {
    for mut row in a.rows_mut() {
        let norm = row.dot(&row).sqrt();
        if norm > 0.0 {
            row /= norm;
        }
    }
    a
}

fn random_unit(rows: usize, n: usize, rng: &mut StdRng) -> Array2<f64> {
    unit_rows(Array2::from_shape_simple_fn((rows, n), || {
        StandardNormal.sample(rng)
    }))
}

/// Reads a CSV of memories (rows); `--memories` names it in errors.
pub fn read_memories(path: &Path) -> Result<Array2<f64>> {
    let source = path.display().to_string();
    let bad = |reason: String| invalid("--memories", &source, reason);
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let mut rows: Vec<Vec<f64>> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim().trim_start_matches('\u{feff}');
        if line.is_empty() {
            continue;
        }
        let parsed: Vec<Option<f64>> = line
            .split(',')
            .map(|f| f.trim().parse::<f64>().ok().filter(|v| v.is_finite()))
            .collect();
        if rows.is_empty() && parsed.iter().all(Option::is_none) {
            continue; // a header
        }
        let row: Option<Vec<f64>> = parsed.into_iter().collect();
        let row = row.ok_or_else(|| bad(format!("line {}: not all finite numbers", i + 1)))?;
        if let Some(first) = rows.first() {
            if first.len() != row.len() {
                return Err(bad(format!(
                    "line {}: {} values, the first memory has {}",
                    i + 1,
                    row.len(),
                    first.len()
                )));
            }
        }
        rows.push(row);
    }
    let m = rows.len();
    if m < 2 {
        return Err(bad(format!("{m} memories: need at least 2")));
    }
    let n = rows[0].len();
    Array2::from_shape_vec((m, n), rows.into_iter().flatten().collect())
        .map_err(|e| bad(e.to_string()))
}

fn digits(file: &str, limit: usize, raw: bool) -> Result<Array2<f64>> {
    let path = dam::mnist::data_dir().join(file);
    let images = dam::mnist::load_images(&path, limit)?.mapv(f64::from);
    Ok(if raw { images } else { unit_rows(images) })
}

/// The memories Ξ (M × N) and the queries (Q × N) of a spec.
pub fn load(spec: &KernelFitSpec) -> Result<(Array2<f64>, Array2<f64>)> {
    // The memories and the queries draw from their own streams, so that Q does not
    // change the memories.
    let mut memory_rng = StdRng::seed_from_u64(spec.seed ^ 0x6d65_6d6f_7269_6573);
    let mut query_rng = StdRng::seed_from_u64(spec.seed ^ 0x7175_6572_6965_7300);
    let memories = match &spec.memories {
        MemorySource::Spherical { m, n } => random_unit(*m, *n, &mut memory_rng),
        MemorySource::Mnist { count, raw } => {
            let memories = digits(
                "train-images-idx3-ubyte.gz",
                count.unwrap_or(usize::MAX),
                *raw,
            )?;
            if let Some(c) = count {
                if memories.nrows() < *c {
                    return Err(invalid(
                        "--memories",
                        &spec.memories.name(),
                        format!("only {} training digits are shipped", memories.nrows()),
                    ));
                }
            }
            let queries = digits("t10k-images-idx3-ubyte.gz", spec.queries, *raw)?;
            return Ok((memories, queries));
        }
        MemorySource::File(path) => read_memories(path)?,
    };
    let queries = random_unit(spec.queries, memories.ncols(), &mut query_rng);
    Ok((memories, queries))
}

/// W₀ with i.i.d. N(0, 1/N) entries (seeded), b₀ = 0.
pub fn initial_map(feature_dim: usize, n: usize, seed: u64) -> FeatureMap {
    let mut rng = StdRng::seed_from_u64(seed);
    let scale = 1.0 / (n as f64).sqrt();
    let w = Array2::from_shape_simple_fn((feature_dim, n), || {
        let z: f64 = StandardNormal.sample(&mut rng);
        scale * z
    });
    FeatureMap {
        w,
        b: Array1::zeros(feature_dim),
    }
}

/// L and its gradient on `device`: the Gram matrix on the device's product (see the
/// module's documentation), the rest in f64 on the host.
pub fn evaluate(
    map: &FeatureMap,
    memories: ArrayView2<'_, f64>,
    tau: f64,
    device: &Device,
    ctx: Option<&dam::WgpuContext>,
) -> Result<Evaluation> {
    if matches!(device, Device::Reference) {
        return Ok(kernelized::evaluate(map, memories, tau));
    }
    kernelized::evaluate_with(map, memories, tau, |hat| {
        let h32 = hat.mapv(|v| v as f32);
        let ht = h32.t().as_standard_layout().into_owned();
        let g = match ctx {
            Some(ctx) => wgpu_product(ctx, h32.view(), ht.view())?,
            None => cpu_product(h32.view(), ht.view())?,
        };
        Ok::<_, ExperimentError>(g.mapv(f64::from))
    })
}

/// The optimiser's state.
#[derive(Debug, Clone)]
struct Stepper {
    optimizer: Optimizer,
    lr: f64,
    t: i32,
    m: (Array2<f64>, Array1<f64>),
    v: (Array2<f64>, Array1<f64>),
}

impl Stepper {
    fn new(optimizer: Optimizer, lr: f64, map: &FeatureMap) -> Self {
        let zeros = (Array2::zeros(map.w.dim()), Array1::zeros(map.b.len()));
        Self {
            optimizer,
            lr,
            t: 0,
            m: zeros.clone(),
            v: zeros,
        }
    }

    fn step(&mut self, map: &mut FeatureMap, grad: &Evaluation) {
        match self.optimizer {
            Optimizer::Sgd => {
                map.w.scaled_add(-self.lr, &grad.grad_w);
                map.b.scaled_add(-self.lr, &grad.grad_b);
            }
            Optimizer::Adam => {
                const B1: f64 = 0.9;
                const B2: f64 = 0.999;
                const EPS: f64 = 1e-8;
                self.t += 1;
                let c1 = 1.0 - B1.powi(self.t);
                let c2 = 1.0 - B2.powi(self.t);
                let lr = self.lr;
                let update = |p: &mut f64, g: f64, m: &mut f64, v: &mut f64| {
                    *m = B1 * *m + (1.0 - B1) * g;
                    *v = B2 * *v + (1.0 - B2) * g * g;
                    *p -= lr * (*m / c1) / ((*v / c2).sqrt() + EPS);
                };
                ndarray::Zip::from(&mut map.w)
                    .and(&grad.grad_w)
                    .and(&mut self.m.0)
                    .and(&mut self.v.0)
                    .for_each(|p, &g, m, v| update(p, g, m, v));
                ndarray::Zip::from(&mut map.b)
                    .and(&grad.grad_b)
                    .and(&mut self.m.1)
                    .and(&mut self.v.1)
                    .for_each(|p, &g, m, v| update(p, g, m, v));
            }
        }
    }
}

/// One row of loss.csv.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochRow {
    /// The epoch (0: the initial map).
    pub epoch: usize,
    /// L.
    pub loss: f64,
    /// 1 − max cos of the memories' features.
    pub min_separation: f64,
    /// Seconds since the start of the training.
    pub seconds: f64,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct KernelFitReport {
    /// Epochs 0..=E.
    pub rows: Vec<EpochRow>,
    /// The learned map.
    pub map: FeatureMap,
    /// M memories.
    pub m: usize,
    /// N input dimensions.
    pub n: usize,
    /// Queries of the histograms.
    pub queries: usize,
    /// 1 − max cos before learning (f64, whatever the device).
    pub min_separation_before: f64,
    /// 1 − max cos after learning (f64).
    pub min_separation_after: f64,
    /// Entry k: queries whose fixed point has ‖p‖ = k, with the initial Φ (length M + 1).
    pub metastable_before: Vec<usize>,
    /// The same with the learned Φ.
    pub metastable_after: Vec<usize>,
    /// With the `dot` kernel, whose scale grows with W: the same with the learned Φ scaled
    /// to the initial map's size (W and b times ‖W₀‖_F/‖W‖_F), so that a change of the
    /// histogram is the features' separation, not their length. `None` for `cosine`.
    pub metastable_after_initial_scale: Option<Vec<usize>>,
    /// The device kind and its description.
    pub device: (String, String),
    /// Wall-clock seconds of the run.
    pub seconds: f64,
}

impl KernelFitReport {
    /// The share of queries with ‖p‖ = 1 in a histogram.
    pub fn share_single(histogram: &[usize]) -> f64 {
        let total: usize = histogram.iter().sum();
        if total == 0 {
            return 0.0;
        }
        histogram.get(1).copied().unwrap_or(0) as f64 / total as f64
    }
}

/// The metastable-state retrieval of a spec (its weights and β).
pub fn retrieval(spec: &KernelFitSpec) -> Retrieval {
    Retrieval {
        beta: spec.beta,
        weights: spec.weights,
        ..Retrieval::default()
    }
}

/// Trains `map` on `memories` for `spec.epochs` epochs with `spec`'s optimiser and τ, the
/// Gram matrix on `device`; `on_epoch` sees each row (epoch 0 = the map as given) as it is
/// made. Returns the rows for epochs 0..=E.
pub fn train(
    spec: &KernelFitSpec,
    map: &mut FeatureMap,
    memories: ArrayView2<'_, f64>,
    device: &Device,
    mut on_epoch: impl FnMut(EpochRow),
) -> Result<Vec<EpochRow>> {
    spec.validate()?;
    let ctx = device.context()?;
    let mut stepper = Stepper::new(spec.optimizer, spec.lr, map);
    let mut rows = Vec::with_capacity(spec.epochs + 1);
    let start = Instant::now();
    for epoch in 0..=spec.epochs {
        let e = evaluate(map, memories, spec.tau, device, ctx.as_deref())?;
        let row = EpochRow {
            epoch,
            loss: e.loss,
            min_separation: e.min_separation,
            seconds: start.elapsed().as_secs_f64(),
        };
        rows.push(row);
        on_epoch(row);
        if !e.loss.is_finite() {
            return Err(ExperimentError::Unsupported(format!(
                "the loss is {} at epoch {epoch}: lower --lr or raise --tau",
                e.loss
            )));
        }
        if epoch == spec.epochs {
            break;
        }
        stepper.step(map, &e);
    }
    Ok(rows)
}

/// Runs `spec` on `device`, calling `progress(epoch)` after each epoch.
pub fn run(
    spec: &KernelFitSpec,
    device: &Device,
    mut progress: impl FnMut(usize),
) -> Result<KernelFitReport> {
    spec.validate()?;
    let start = Instant::now();
    let described = device.describe()?;
    let (memories, queries) = load(spec)?;
    let (m, n) = memories.dim();
    let mut map = initial_map(spec.feature_dim, n, spec.seed);
    let retrieval = retrieval(spec);
    let histogram = |map: &FeatureMap| {
        let kernel = kernelized::Kernel::new(map.clone(), spec.normalise);
        kernelized::metastable_histogram_of(&kernel, memories.view(), queries.view(), &retrieval)
    };
    let metastable_before = histogram(&map);
    let min_separation_before = kernelized::min_separation(&map, memories.view());
    let rows = train(spec, &mut map, memories.view(), device, |row| {
        if row.epoch > 0 {
            progress(row.epoch);
        }
    })?;
    let metastable_after = histogram(&map);
    let metastable_after_initial_scale = (!spec.normalise).then(|| {
        let size = |w: &Array2<f64>| w.iter().map(|v| v * v).sum::<f64>().sqrt();
        let scale = size(&initial_map(spec.feature_dim, n, spec.seed).w) / size(&map.w);
        histogram(&FeatureMap {
            w: &map.w * scale,
            b: &map.b * scale,
        })
    });
    Ok(KernelFitReport {
        rows,
        min_separation_after: kernelized::min_separation(&map, memories.view()),
        map,
        m,
        n,
        queries: queries.nrows(),
        min_separation_before,
        metastable_before,
        metastable_after,
        metastable_after_initial_scale,
        device: described,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The capacity comparison of `--capacity`: for each P, Φ learned on the first P memories
/// against the identity map, both on normalised features (K = cosine), at the same β and
/// weights.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacitySpec {
    /// The memory counts P (2 ≤ P ≤ M, increasing).
    pub counts: Vec<usize>,
    /// The relative size σ of the query noise: the query of memory μ is
    /// ξ_μ + σ‖ξ_μ‖ g/‖g‖ with g a seeded Gaussian direction.
    pub noise: f64,
}

impl CapacitySpec {
    /// Reads `--capacity P1,P2,…` and `--capacity-noise σ` for M memories.
    pub fn parse(counts: &str, noise: f64, m: usize) -> Result<Self> {
        let bad = |reason: String| invalid("--capacity", counts, reason);
        let mut list = Vec::new();
        for part in counts.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let p: usize = part
                .parse()
                .map_err(|_| bad(format!("{part:?} is not a count")))?;
            if p < 2 || p > m {
                return Err(bad(format!("P = {p}: use 2 ≤ P ≤ M = {m}")));
            }
            list.push(p);
        }
        if list.is_empty() {
            return Err(bad("list at least one count P".into()));
        }
        list.sort_unstable();
        list.dedup();
        if !(noise.is_finite() && noise >= 0.0) {
            return Err(invalid("--capacity-noise", &noise.to_string(), "use σ ≥ 0"));
        }
        Ok(Self {
            counts: list,
            noise,
        })
    }
}

/// One row of capacity.csv.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CapacityRow {
    /// P, the memories stored (the first P of the set).
    pub patterns: usize,
    /// Queries: one noisy copy of each of the first min(P, Q) memories.
    pub queries: usize,
    /// Share of queries whose fixed point puts weight ≥ ½ on their memory, Φ = identity.
    pub success_identity: f64,
    /// The same with Φ learned on these P memories.
    pub success_learned: f64,
    /// 1 − max cos between the P memories (identity features).
    pub min_separation_identity: f64,
    /// 1 − max cos between their learned features.
    pub min_separation_learned: f64,
}

/// The largest P whose success is ≥ ½ (P_½ on the measured counts), if any.
pub fn patterns_half(rows: &[CapacityRow], learned: bool) -> Option<usize> {
    rows.iter()
        .filter(|r| {
            let s = if learned {
                r.success_learned
            } else {
                r.success_identity
            };
            s >= 0.5
        })
        .map(|r| r.patterns)
        .max()
}

/// The separation of a retrieval as the engine's rule.
fn separation_of(spec: &KernelFitSpec) -> dam::Separation {
    match spec.weights {
        Weights::Softmax => dam::Separation::Softmax {
            beta: spec.beta as f32,
        },
        Weights::Entmax { alpha } => dam::Separation::Entmax {
            beta: spec.beta as f32,
            alpha: alpha as f32,
        },
    }
}

/// Share of `queries` (rows; query i belongs to memory i) whose fixed point under the
/// kernelized memory of `map` (normalised features) puts weight ≥ ½ on its memory. The
/// retrieval is `dam::Retriever` with [`dam::RetrieverBuilder::feature_map`] on `device`
/// (at most 200 steps, tolerance 1e-6); the weights at the final state are recomputed in
/// f64 from the state.
pub fn retrieval_success(
    spec: &KernelFitSpec,
    map: &FeatureMap,
    memories: ArrayView2<'_, f64>,
    queries: ArrayView2<'_, f64>,
    device: &Device,
) -> Result<f64> {
    let memory = dam::Retriever::builder(dam::Patterns::new(memories.mapv(|v| v as f32))?)
        .feature_map(map.clone(), true)
        .separation(separation_of(spec))
        .dynamics(dam::Dynamics::Iterate {
            max_steps: 200,
            tol: 1e-6,
        })
        .device(device.clone())
        .build()?;
    let result = memory.retrieve(queries.mapv(|v| v as f32).view())?;
    let kernel = kernelized::Kernel::new(map.clone(), true);
    let features = kernel.features(memories);
    let states = kernel.features(result.states.mapv(f64::from).view());
    let mut hits = 0;
    for (i, f) in states.rows().into_iter().enumerate() {
        let mut p: Vec<f64> = features
            .rows()
            .into_iter()
            .map(|h| spec.beta * h.dot(&f))
            .collect();
        spec.weights.apply(&mut p);
        hits += (p[i] >= 0.5) as usize;
    }
    Ok(hits as f64 / queries.nrows().max(1) as f64)
}

/// Noisy copies of the first `count` memories: ξ_μ + σ‖ξ_μ‖ g/‖g‖ (seeded by `seed`).
pub fn noisy_copies(
    memories: ArrayView2<'_, f64>,
    count: usize,
    noise: f64,
    seed: u64,
) -> Array2<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = memories.ncols();
    let mut out = memories.slice(ndarray::s![..count, ..]).to_owned();
    for mut row in out.rows_mut() {
        let g: Array1<f64> = Array1::from_shape_simple_fn(n, || StandardNormal.sample(&mut rng));
        let (gn, xn) = (g.dot(&g).sqrt(), row.dot(&row).sqrt());
        if gn > 0.0 {
            row.scaled_add(noise * xn / gn, &g);
        }
    }
    out
}

/// The capacity comparison: for each P of `cap`, Φ learned on the first P memories (from
/// the same W₀, with `spec`'s τ, epochs and optimiser, the Gram matrix on `device`)
/// against the identity map; queries are noisy copies of the first min(P, Q) memories
/// (Q = `spec.queries`). `progress(P)` is called after each count.
pub fn capacity(
    spec: &KernelFitSpec,
    cap: &CapacitySpec,
    memories: ArrayView2<'_, f64>,
    device: &Device,
    mut progress: impl FnMut(usize),
) -> Result<Vec<CapacityRow>> {
    let n = memories.ncols();
    let identity = FeatureMap::identity(n);
    let mut rows = Vec::with_capacity(cap.counts.len());
    for &p in &cap.counts {
        let stored = memories.slice(ndarray::s![..p, ..]);
        let mut map = initial_map(spec.feature_dim, n, spec.seed);
        train(spec, &mut map, stored, device, |_| {})?;
        let q = p.min(spec.queries.max(1));
        let queries = noisy_copies(stored, q, cap.noise, spec.seed ^ 0x6361_7061 ^ p as u64);
        rows.push(CapacityRow {
            patterns: p,
            queries: q,
            success_identity: retrieval_success(spec, &identity, stored, queries.view(), device)?,
            success_learned: retrieval_success(spec, &map, stored, queries.view(), device)?,
            min_separation_identity: kernelized::min_separation(&identity, stored),
            min_separation_learned: kernelized::min_separation(&map, stored),
        });
        progress(p);
    }
    Ok(rows)
}

/// Writes capacity.csv: `patterns,queries,success_identity,success_learned,
/// min_separation_identity,min_separation_learned`.
pub fn write_capacity_csv(path: &Path, rows: &[CapacityRow]) -> Result<()> {
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(
            f,
            "patterns,queries,success_identity,success_learned,min_separation_identity,min_separation_learned"
        )?;
        for r in rows {
            writeln!(
                f,
                "{},{},{},{},{:e},{:e}",
                r.patterns,
                r.queries,
                r.success_identity,
                r.success_learned,
                r.min_separation_identity,
                r.min_separation_learned
            )?;
        }
        f.flush()
    };
    write().map_err(|e| output(path, e))
}

/// summary.json's `capacity` entry.
pub fn capacity_summary(cap: &CapacitySpec, rows: &[CapacityRow]) -> serde_json::Value {
    serde_json::json!({
        "noise": cap.noise,
        "kernel": "normalised features (cosine); identity map against Φ learned on the P memories",
        "criterion": "the fixed point's weight on the query's memory is ≥ 1/2",
        "patterns_half_identity": patterns_half(rows, false),
        "patterns_half_learned": patterns_half(rows, true),
        "rows": rows,
    })
}

/// Writes capacity.csv into `out` and adds [`capacity_summary`] to its summary.json (as
/// `capacity`).
pub fn write_capacity(out: &Path, cap: &CapacitySpec, rows: &[CapacityRow]) -> Result<()> {
    write_capacity_csv(&out.join("capacity.csv"), rows)?;
    let path = out.join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(|e| output(&path, e))?;
    let mut value: serde_json::Value = serde_json::from_str(&text).map_err(|e| output(&path, e))?;
    value["capacity"] = capacity_summary(cap, rows);
    let text = serde_json::to_string_pretty(&value).map_err(|e| output(&path, e))?;
    std::fs::write(&path, text + "\n").map_err(|e| output(&path, e))
}

/// Writes loss.csv: `epoch,loss,min_separation,seconds`.
pub fn write_loss_csv(path: &Path, rows: &[EpochRow]) -> Result<()> {
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(f, "epoch,loss,min_separation,seconds")?;
        for r in rows {
            writeln!(
                f,
                "{},{:e},{:e},{:.6}",
                r.epoch, r.loss, r.min_separation, r.seconds
            )?;
        }
        f.flush()
    };
    write().map_err(|e| output(path, e))
}

/// Writes feature_map.safetensors: tensors `weight` (F64, D × N) and `bias` (F64, D), with
/// metadata `format=dam-feature-map`, `tau`, `epochs`, `optimizer`.
pub fn write_feature_map(path: &Path, spec: &KernelFitSpec, map: &FeatureMap) -> Result<()> {
    let bytes = |values: &mut dyn Iterator<Item = f64>| -> Vec<u8> {
        values.flat_map(f64::to_le_bytes).collect()
    };
    let w = map.w.as_standard_layout();
    let w_bytes = bytes(&mut w.iter().copied());
    let b_bytes = bytes(&mut map.b.iter().copied());
    let bad = |e: safetensors::SafeTensorError| output(path, e);
    let tensors = [
        (
            "weight",
            safetensors::tensor::TensorView::new(
                safetensors::Dtype::F64,
                vec![map.w.nrows(), map.w.ncols()],
                &w_bytes,
            )
            .map_err(bad)?,
        ),
        (
            "bias",
            safetensors::tensor::TensorView::new(
                safetensors::Dtype::F64,
                vec![map.b.len()],
                &b_bytes,
            )
            .map_err(bad)?,
        ),
    ];
    let metadata: std::collections::HashMap<String, String> = [
        ("format", "dam-feature-map".to_string()),
        ("map", "phi(x) = weight x + bias".into()),
        ("tau", spec.tau.to_string()),
        ("epochs", spec.epochs.to_string()),
        ("optimizer", spec.optimizer.name().into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let data = safetensors::serialize(tensors, Some(metadata)).map_err(bad)?;
    std::fs::write(path, data).map_err(|e| output(path, e))
}

/// Reads the map of a feature_map.safetensors.
pub fn read_feature_map(path: &Path) -> Result<FeatureMap> {
    let data = std::fs::read(path).map_err(|e| output(path, e))?;
    let file = safetensors::SafeTensors::deserialize(&data).map_err(|e| output(path, e))?;
    let tensor = |name: &str| -> Result<(Vec<usize>, Vec<f64>)> {
        let t = file.tensor(name).map_err(|e| output(path, e))?;
        if t.dtype() != safetensors::Dtype::F64 {
            return Err(output(path, format!("{name} is not F64")));
        }
        let values = t
            .data()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Ok((t.shape().to_vec(), values))
    };
    let (w_shape, w) = tensor("weight")?;
    let (_, b) = tensor("bias")?;
    let [d, n] = w_shape[..] else {
        return Err(output(path, "weight is not a matrix"));
    };
    Ok(FeatureMap {
        w: Array2::from_shape_vec((d, n), w).map_err(|e| output(path, e))?,
        b: Array1::from(b),
    })
}

/// A histogram without its trailing zeros.
fn trimmed(histogram: &[usize]) -> &[usize] {
    let len = histogram.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
    &histogram[..len]
}

/// summary.json's contents.
pub fn summary(spec: &KernelFitSpec, report: &KernelFitReport) -> serde_json::Value {
    let last = report.rows.last().copied();
    serde_json::json!({
        "memories": spec.memories.name(),
        "m": report.m,
        "n": report.n,
        "feature_dim": spec.feature_dim,
        "tau": spec.tau,
        "epochs": spec.epochs,
        "optimizer": spec.optimizer.name(),
        "lr": spec.lr,
        "seed": spec.seed,
        "loss_before": report.rows.first().map(|r| r.loss),
        "loss_after": last.map(|r| r.loss),
        "min_separation_before": report.min_separation_before,
        "min_separation_after": report.min_separation_after,
        "metastable": {
            "weights": spec.weights.name(),
            "threshold": spec.weights.threshold(),
            "beta": spec.beta,
            "kernel": if spec.normalise { "cosine" } else { "dot" },
            "queries": report.queries,
            "histogram": "entry k counts the queries whose fixed point has k weights above the threshold (k = 0, 1, ...; trailing zeros dropped)",
        },
        "metastable_before": trimmed(&report.metastable_before),
        "metastable_after": trimmed(&report.metastable_after),
        "metastable_after_initial_scale": report.metastable_after_initial_scale.as_deref().map(trimmed),
        "share_single_before": KernelFitReport::share_single(&report.metastable_before),
        "share_single_after": KernelFitReport::share_single(&report.metastable_after),
        "device": report.device.0,
        "adapter": report.device.1,
        "seconds": report.seconds,
    })
}

/// Writes feature_map.safetensors, loss.csv and summary.json (with `args` under `args`).
pub fn write_outputs(
    out: &Path,
    spec: &KernelFitSpec,
    report: &KernelFitReport,
    args: serde_json::Value,
) -> Result<()> {
    write_feature_map(&out.join("feature_map.safetensors"), spec, &report.map)?;
    write_loss_csv(&out.join("loss.csv"), &report.rows)?;
    let mut value = summary(spec, report);
    value["args"] = args;
    let path = out.join("summary.json");
    let text = serde_json::to_string_pretty(&value).map_err(|e| output(&path, e))?;
    std::fs::write(&path, text + "\n").map_err(|e| output(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_sources_parse() {
        assert_eq!(
            MemorySource::parse("spherical:10:5").unwrap(),
            MemorySource::Spherical { m: 10, n: 5 }
        );
        assert_eq!(
            MemorySource::parse("mnist:100").unwrap(),
            MemorySource::Mnist {
                count: Some(100),
                raw: false
            }
        );
        assert_eq!(
            MemorySource::parse("mnist").unwrap(),
            MemorySource::Mnist {
                count: None,
                raw: false
            }
        );
        assert_eq!(
            MemorySource::parse("mnist-raw:300").unwrap(),
            MemorySource::Mnist {
                count: Some(300),
                raw: true
            }
        );
        assert_eq!(
            MemorySource::parse("mnist-raw:300").unwrap().name(),
            "mnist-raw:300"
        );
        for bad in [
            "spherical:1:5",
            "spherical:4",
            "spherical:a:b",
            "mnist:1",
            "mnist-raw:x",
            "",
        ] {
            assert!(MemorySource::parse(bad).is_err(), "{bad}");
        }
    }
}
