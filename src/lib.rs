//! # dam — Dense Associative Memories on any GPU
//!
//! Store P patterns, retrieve from corrupted queries with modern-Hopfield dynamics, on a
//! wgpu device (Vulkan, Metal, DX12, GL; Mesa lavapipe on CPU-only machines) or on the
//! CPU reference. The same calling code runs on either [`Device`]:
//!
//! ```
//! use dam::{Device, Patterns, Retriever, Separation};
//! use ndarray::array;
//!
//! let patterns = Patterns::new(array![[1.0, -1.0, 1.0], [-1.0, 1.0, 1.0]])?;
//! let retriever = Retriever::builder(patterns)
//!     .separation(Separation::Softmax { beta: 4.0 })
//!     .device(Device::Cpu)
//!     .build()?;
//! let result = retriever.retrieve(array![[0.9, -0.7, 0.2]].view())?;
//! assert_eq!(result.nearest, vec![0]);
//! # Ok::<(), dam::Error>(())
//! ```
//!
//! The maths is defined in [`dam_core`] (re-exported here), the CPU reference is
//! [`dam_cpu`], the kernels and device plumbing are [`dam_wgpu`].
#![warn(missing_docs)]

use std::sync::Arc;

pub use dam_core::binary;
pub use dam_core::entmax;
pub use dam_core::kernelized;
pub use dam_core::lagrangian;
pub use dam_core::procedural;
pub use dam_core::weights;
pub use dam_core::{
    Backend, Config, Dynamics, Error, Mismatch, Patterns, Projection, Result, RetrievalResult,
    SearchResult, Separation, Similarity, Storage, Tolerance, TopEntry,
};
pub use dam_cpu as cpu;
#[cfg(feature = "wgpu")]
pub use dam_wgpu as wgpu_backend;
#[cfg(feature = "wgpu")]
pub use dam_wgpu::{AdapterChoice, AdapterSummary, WgpuContext, WgpuOptions};

/// The wgpu context a device runs on.
#[cfg(feature = "wgpu")]
pub(crate) type Ctx = Arc<WgpuContext>;
/// Builds without the `wgpu` feature have no wgpu context: matches on
/// [`Device::placement`] need no GPU arm there.
#[cfg(not(feature = "wgpu"))]
#[derive(Debug, Clone)]
pub(crate) enum Ctx {}

mod energy_network;
pub use dam_cpu::reference::lagrangian::{HierarchyRun, LagrangianRun};
pub use energy_network::{EnergyNetwork, HierarchicalNetwork};
pub mod features;
mod kernel;
pub mod learn;
pub mod mnist;
pub mod persist;
pub mod sequential;
use ndarray::{Array2, ArrayView2};

/// Where a [`Retriever`] runs.
#[derive(Debug, Clone, Default)]
pub enum Device {
    /// The fast CPU backend ([`cpu::CpuRetriever`]): every operation cache-blocked on all
    /// cores with f32 products and SIMD epilogues, tested against [`Device::Reference`].
    #[default]
    Cpu,
    /// The plain f64 reference ([`cpu::ReferenceRetriever`]): one query and one pattern at
    /// a time, slow on purpose — the oracle every other device is tested against.
    Reference,
    /// A wgpu adapter, found and opened once per process for these options.
    #[cfg(feature = "wgpu")]
    Wgpu(WgpuOptions),
    /// A context the application built, e.g. with [`WgpuContext::from_device`] on the
    /// `wgpu::Device` and `Queue` it already renders with, so both share one device.
    #[cfg(feature = "wgpu")]
    Context(Arc<WgpuContext>),
}

/// Where the work of a [`Device`] runs.
#[derive(Debug, Clone)]
pub(crate) enum Placement {
    /// The plain f64 reference.
    Reference,
    /// The fast CPU backend.
    Cpu,
    /// A wgpu context.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    Wgpu(Ctx),
}

impl PartialEq for Device {
    /// Options compare by value, contexts by identity.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) | (Device::Reference, Device::Reference) => true,
            #[cfg(feature = "wgpu")]
            (Device::Wgpu(a), Device::Wgpu(b)) => a == b,
            #[cfg(feature = "wgpu")]
            (Device::Context(a), Device::Context(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Device {
    /// The wgpu context this device runs on (`None` for the CPU devices), opened on first
    /// use.
    #[cfg(feature = "wgpu")]
    pub fn context(&self) -> Result<Option<Arc<WgpuContext>>> {
        Ok(match self.placement()? {
            Placement::Wgpu(ctx) => Some(ctx),
            _ => None,
        })
    }

    /// Where work on this device runs (a wgpu context is opened on first use).
    pub(crate) fn placement(&self) -> Result<Placement> {
        Ok(match self {
            Device::Cpu => Placement::Cpu,
            Device::Reference => Placement::Reference,
            #[cfg(feature = "wgpu")]
            Device::Wgpu(options) => Placement::Wgpu(WgpuContext::shared(options)?),
            #[cfg(feature = "wgpu")]
            Device::Context(ctx) => Placement::Wgpu(ctx.clone()),
        })
    }

    /// The default wgpu device.
    #[cfg(feature = "wgpu")]
    pub fn wgpu() -> Self {
        Device::Wgpu(WgpuOptions::default())
    }

    /// The device a name asks for — the one vocabulary of `DAM_DEVICE`, the CLI's
    /// `--device` and Python's `device=` (case and surrounding spaces ignored):
    ///
    /// * `cpu`: the fast CPU backend; `reference`: the plain f64 reference;
    /// * `wgpu` (or `gpu`): wgpu's preferred adapter, even a software rasterizer;
    ///   `wgpu:N` the adapter at index N of [`WgpuContext::adapters`] (`dam devices`),
    ///   `wgpu:NAME` the first whose name contains NAME (opened here: no such adapter is an
    ///   error);
    /// * empty or `auto`: [`Device::auto`] without the environment — wgpu on a hardware
    ///   adapter, else the CPU.
    ///
    /// Returns the device and one line saying which it is and why. Unknown names are
    /// [`Error::UnknownDevice`]; wgpu names in a build without the `wgpu` feature are
    /// [`Error::FeatureDisabled`].
    pub fn parse(value: &str) -> Result<(Self, String)> {
        let trimmed = value.trim();
        let lower = trimmed.to_ascii_lowercase();
        match lower.as_str() {
            "cpu" => return Ok((Device::Cpu, format!("cpu ({trimmed})"))),
            "reference" => return Ok((Device::Reference, format!("cpu reference ({trimmed})"))),
            "auto" | "" => return Ok(Self::probe()),
            _ => {}
        }
        let adapter = match lower.as_str() {
            "wgpu" | "gpu" => None,
            other => match other.strip_prefix("wgpu:") {
                Some(sel) if !sel.trim().is_empty() => Some(trimmed[5..].trim().to_string()),
                _ => {
                    return Err(Error::UnknownDevice {
                        value: value.to_string(),
                    })
                }
            },
        };
        #[cfg(not(feature = "wgpu"))]
        {
            let _ = adapter;
            Err(Error::FeatureDisabled {
                feature: "wgpu",
                wanted: trimmed.to_string(),
            })
        }
        #[cfg(feature = "wgpu")]
        {
            let options = WgpuOptions {
                adapter: match adapter {
                    None => AdapterChoice::Preferred,
                    Some(sel) => match sel.parse::<usize>() {
                        Ok(i) => AdapterChoice::Index(i),
                        Err(_) => AdapterChoice::Name(sel),
                    },
                },
                ..WgpuOptions::default()
            };
            let ctx = WgpuContext::shared(&options)?;
            let reason = format!("wgpu: {} ({trimmed})", ctx.describe());
            Ok((Device::Wgpu(options), reason))
        }
    }

    /// The device to run on: `DAM_DEVICE` if set (any name of [`Device::parse`]), else the
    /// fast one for this machine: wgpu on a hardware adapter; the CPU when there is none or
    /// when the only adapter is a software rasterizer (device type Cpu, e.g. lavapipe),
    /// which is slower than the CPU's own path.
    ///
    /// Unknown values are [`Error::UnknownDevice`]. The choice and its reason are logged
    /// (`log::info!`); [`Device::choose`] returns them.
    pub fn auto() -> Result<Self> {
        let (device, reason) = Self::choose()?;
        log::info!("dam: {reason}");
        Ok(device)
    }

    /// [`Device::auto`] and one line saying which device it chose and why (the CLI prints
    /// it on stderr).
    pub fn choose() -> Result<(Self, String)> {
        let value = std::env::var("DAM_DEVICE").unwrap_or_default();
        if value.trim().is_empty() || value.trim().eq_ignore_ascii_case("auto") {
            return Ok(Self::probe());
        }
        let (device, reason) = Self::parse(&value).map_err(|e| match e {
            Error::UnknownDevice { .. } => Error::UnknownDevice {
                value: value.clone(),
            },
            Error::FeatureDisabled { feature, .. } => Error::FeatureDisabled {
                feature,
                wanted: format!("DAM_DEVICE={}", value.trim()),
            },
            other => other,
        })?;
        Ok((device, format!("{reason} from DAM_DEVICE")))
    }

    /// (`cpu`, `cpu (2 threads, avx2)`), (`reference`, `cpu reference (f64)`) or (`wgpu`,
    /// the adapter's description), as the CLI reports them.
    pub fn describe(&self) -> Result<(String, String)> {
        Ok(match self.placement()? {
            Placement::Cpu => ("cpu".into(), cpu::fast::describe(0)),
            Placement::Reference => ("reference".into(), "cpu reference (f64)".into()),
            #[cfg(feature = "wgpu")]
            Placement::Wgpu(ctx) => ("wgpu".into(), ctx.describe()),
            #[cfg(not(feature = "wgpu"))]
            Placement::Wgpu(ctx) => match ctx {},
        })
    }

    #[cfg(not(feature = "wgpu"))]
    fn probe() -> (Self, String) {
        (
            Device::Cpu,
            "cpu: this build has no wgpu support (the `wgpu` feature is off)".into(),
        )
    }

    #[cfg(feature = "wgpu")]
    fn probe() -> (Self, String) {
        match WgpuContext::shared(&WgpuOptions::default()) {
            Ok(ctx) if ctx.is_software() => (
                Device::Cpu,
                format!(
                    "cpu: the only wgpu adapter, {}, is a software rasterizer, slower than \
                     the CPU path (DAM_DEVICE=wgpu or --device wgpu uses it anyway)",
                    ctx.describe()
                ),
            ),
            Ok(ctx) => (Device::wgpu(), format!("wgpu: {}", ctx.describe())),
            Err(e) => {
                log::warn!("no wgpu adapter ({e}); falling back to the CPU");
                (Device::Cpu, format!("cpu: no wgpu adapter ({e})"))
            }
        }
    }
}

/// Stored patterns plus a retrieval rule, on a device: a [`Backend`] (the CPU's
/// [`cpu::CpuRetriever`] or [`wgpu_backend::WgpuRetriever`]) behind one API.
pub struct Retriever {
    storage: Storage,
    config: Config,
    backend: Box<dyn Backend>,
    /// Stable id of each stored row, strictly increasing (appends take fresh ids and
    /// removal keeps the order), so a lookup is a binary search.
    ids: Vec<u64>,
    /// The next id [`Retriever::insert`] gives out; ids are never reused.
    next_id: u64,
    /// Confidence below which a retrieval abstains.
    abstain: Option<f64>,
    /// Top patterns to report per query ([`RetrieverBuilder::report_top`]).
    report_top: Option<usize>,
    /// One value vector per stored pattern (P×M, row-aligned with the patterns), for
    /// [`Retriever::retrieve_values`].
    values: Option<Patterns>,
    /// A kernelized memory's feature map and its memories in input space (the backend
    /// then holds the features Φ(Ξ)).
    kernel: Option<Box<kernel::KernelState>>,
}

impl std::fmt::Debug for Retriever {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retriever")
            .field("patterns", &(self.len(), self.patterns().dim()))
            .field("config", &self.config)
            .field("device", &self.device_name())
            .finish()
    }
}

/// Builds a [`Retriever`]; every setting has a default (dot similarity, softmax β = 1,
/// iterate up to 100 steps with tol 1e-5, no projection, CPU).
#[derive(Debug, Clone)]
pub struct RetrieverBuilder {
    patterns: Patterns,
    config: Config,
    device: Device,
    storage: Storage,
    abstain: Option<f64>,
    report_top: Option<usize>,
    values: Option<Array2<f32>>,
    kernel: Option<kernelized::Kernel>,
}

impl RetrieverBuilder {
    /// Report, for each query of [`Retriever::retrieve`], the `k` stored patterns with the
    /// largest softmax weight at the final state (id, weight, similarity;
    /// [`RetrievalResult::top`]) and the participation ratio 1/Σ p² of the weights
    /// ([`RetrievalResult::participation`]). Needs [`Separation::Softmax`] and k ≥ 1. Off by
    /// default: it costs one more pass of similarities over all patterns (on the device).
    pub fn report_top(mut self, k: usize) -> Self {
        self.report_top = Some(k);
        self
    }

    /// A key → value memory: one value vector per stored pattern (P×M, any width M,
    /// finite), read out by [`Retriever::retrieve_values`] with the separation's weights
    /// over the patterns (the keys) — Ramsauer et al.'s pattern projection. Edits then go
    /// through [`Retriever::insert_with_values`] and [`Retriever::update_value`].
    pub fn values(mut self, values: Array2<f32>) -> Self {
        self.values = Some(values);
        self
    }

    /// A kernelized memory: the similarity goes through the feature map Φ(x) = W x + b
    /// (W: D_Φ × N, b: D_Φ, finite), K(ξ, x) = ⟨Φ(ξ), Φ(x)⟩, or the cosine
    /// ⟨Φ̂(ξ), Φ̂(x)⟩ of the normalised features Φ̂ = Φ/‖Φ‖ when `normalise` is set, while
    /// retrieval stays in input space: x ← Ξᵀ p(β K(Ξ, x)), p the separation's weights
    /// (softmax or entmax), iterated as [`Dynamics`] says. The memory keeps Ξ and the
    /// features Φ(Ξ) (computed in f64, held in f32), and every edit keeps them in sync;
    /// [`Retriever::patterns`] returns Ξ, queries and states are N-dimensional. Search,
    /// nearest patterns, confidence and reported top patterns rank by K. Needs
    /// [`Similarity::Dot`] (K is the inner product of features), [`Separation::Softmax`]
    /// or [`Separation::Entmax`], [`Projection::None`] and [`Storage::F32`]; anything
    /// else is refused by [`RetrieverBuilder::build`]. W = I, b = 0 without
    /// normalisation is the plain memory.
    ///
    /// **Energy.** [`Retriever::energy`] and [`RetrievalResult::energy`] are the energy of
    /// the memory of features at the feature of the state, E(Φ(x)) (e.g.
    /// −β⁻¹ log Σ_μ e^{β K(ξ_μ, x)} + ½‖Φ(x)‖² for softmax). Without normalisation the
    /// retrieval descends it: K(Ξ, x) depends on x only through Φ(x), and since Σ_μ p_μ = 1
    /// the update gives Φ(Ξᵀp) = Φ(Ξ)ᵀp, the plain update of the memory of features, so
    /// E is non-increasing along the kernelized dynamics exactly as for a plain memory.
    /// With normalised features it is the energy at Φ̂(x), which the input-space dynamics
    /// need not descend (Φ̂(Ξᵀp) ≠ Φ̂(Ξ)ᵀp).
    pub fn feature_map(mut self, map: kernelized::FeatureMap, normalise: bool) -> Self {
        self.kernel = Some(kernelized::Kernel::new(map, normalise));
        self
    }

    /// Abstain where the memory is unsure: a query whose confidence (the nearest pattern's
    /// softmax weight, [`RetrievalResult::confidence`]) is below `threshold` gets `None`
    /// in [`RetrievalResult::matched`] — "no memory matches" instead of a wrong memory.
    /// Needs [`Separation::Softmax`]; `threshold` in (0, 1].
    pub fn abstain_below(mut self, threshold: f64) -> Self {
        self.abstain = Some(threshold);
        self
    }

    /// Similarity between patterns and states.
    pub fn similarity(mut self, similarity: Similarity) -> Self {
        self.config.similarity = similarity;
        self
    }
    /// Separation function.
    pub fn separation(mut self, separation: Separation) -> Self {
        self.config.separation = separation;
        self
    }
    /// One step or iterate to a fixed point.
    pub fn dynamics(mut self, dynamics: Dynamics) -> Self {
        self.config.dynamics = dynamics;
        self
    }
    /// Projection after each step.
    pub fn projection(mut self, projection: Projection) -> Self {
        self.config.projection = projection;
        self
    }
    /// Record the energy after every step.
    pub fn energy_trace(mut self, on: bool) -> Self {
        self.config.energy_trace = on;
        self
    }
    /// All settings at once.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }
    /// The device to run on.
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }
    /// How the device holds the patterns (default [`Storage::F32`]). With
    /// [`Storage::F16`] the patterns are rounded to the nearest half at build time on every
    /// device — wgpu stores 2 bytes per entry; the CPU keeps the rounded values in f32, so
    /// it is the reference for the f16 kernels (it saves no memory there).
    /// [`Retriever::patterns`] then returns the rounded patterns.
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }
    /// Validates the settings and uploads the patterns to the device.
    pub fn build(self) -> Result<Retriever> {
        self.config.validate(self.patterns.count())?;
        if let Some(k) = self.report_top {
            if k == 0 || !matches!(self.config.separation, Separation::Softmax { .. }) {
                return Err(Error::InvalidParameter {
                    argument: "report_top",
                    value: k.to_string(),
                    reason: format!(
                        "k ≥ 1 top patterns by softmax weight; needs Softmax, not {:?}",
                        self.config.separation
                    ),
                });
            }
        }
        if let Some(t) = self.abstain {
            if !(t > 0.0 && t <= 1.0) {
                return Err(Error::InvalidParameter {
                    argument: "abstain_below",
                    value: t.to_string(),
                    reason: "a confidence threshold lies in (0, 1]".into(),
                });
            }
            if !matches!(self.config.separation, Separation::Softmax { .. }) {
                return Err(Error::InvalidParameter {
                    argument: "abstain_below",
                    value: t.to_string(),
                    reason: format!(
                        "confidence is the softmax weight; {:?} has none",
                        self.config.separation
                    ),
                });
            }
        }
        let (patterns, kernel) = match self.kernel {
            None => (self.patterns, None),
            Some(k) => {
                kernel::check_rule(&self.config, self.storage)?;
                k.map.validate(self.patterns.dim())?;
                let state = Box::new(kernel::KernelState {
                    kernel: k,
                    inputs: self.patterns,
                });
                (
                    Patterns::new(state.features(state.inputs.view())?)?,
                    Some(state),
                )
            }
        };
        let patterns = match self.storage {
            Storage::F32 => patterns,
            Storage::F16 => patterns.rounded_to_f16()?,
        };
        let count = patterns.count() as u64;
        let values = match self.values {
            None => None,
            Some(v) => {
                if v.nrows() != patterns.count() {
                    return Err(Error::DimensionMismatch {
                        argument: "values (one row per stored pattern)",
                        expected: patterns.count(),
                        actual: v.nrows(),
                    });
                }
                validate_rows(v.view(), v.ncols(), "values")?;
                Some(Patterns::new(v)?)
            }
        };
        let patterns = Arc::new(patterns);
        let backend: Box<dyn Backend> = match self.device.placement()? {
            Placement::Cpu => Box::new(dam_cpu::CpuRetriever::new(
                patterns,
                self.config,
                self.storage,
            )?),
            Placement::Reference => Box::new(dam_cpu::ReferenceRetriever::new(
                patterns,
                self.config,
                self.storage,
            )?),
            #[cfg(not(feature = "wgpu"))]
            Placement::Wgpu(ctx) => match ctx {},
            #[cfg(feature = "wgpu")]
            Placement::Wgpu(ctx) => Box::new(dam_wgpu::WgpuRetriever::shared(
                ctx,
                patterns,
                self.config,
                self.storage,
            )?),
        };
        Ok(Retriever {
            storage: self.storage,
            config: self.config,
            backend,
            ids: (0..count).collect(),
            next_id: count,
            abstain: self.abstain,
            report_top: self.report_top,
            values,
            kernel,
        })
    }
}

impl Retriever {
    /// Starts building a retriever over `patterns`.
    pub fn builder(patterns: Patterns) -> RetrieverBuilder {
        RetrieverBuilder {
            patterns,
            config: Config::default(),
            device: Device::Cpu,
            storage: Storage::F32,
            abstain: None,
            report_top: None,
            values: None,
            kernel: None,
        }
    }

    /// Runs the dynamics from each query (B×N); see [`RetrievalResult`].
    pub fn retrieve(&self, queries: ArrayView2<'_, f32>) -> Result<RetrievalResult> {
        let result = match &self.kernel {
            None => self.backend.retrieve(queries)?,
            Some(_) => self.kernel_run(queries, &[])?,
        };
        self.finish(result)
    }

    /// The kernelized dynamics from each query, with `clamped` coordinates held.
    fn kernel_run(
        &self,
        queries: ArrayView2<'_, f32>,
        clamped: &[usize],
    ) -> Result<RetrievalResult> {
        let k = self.kernel.as_ref().expect("a kernelized memory");
        let phi = self.kernel_features(queries, "queries")?;
        self.backend
            .patterns()
            .check_range(&self.config, phi.view())?;
        dam_core::dynamics::run(&self.config, queries, clamped, |x, u| {
            k.evaluate(self.backend.as_ref(), x, u)
        })
    }

    /// The states a backend sees: the features Φ(x) of validated rows `x` (B×N) for a
    /// kernelized memory.
    fn kernel_features(
        &self,
        x: ArrayView2<'_, f32>,
        argument: &'static str,
    ) -> Result<Array2<f32>> {
        let k = self.kernel.as_ref().expect("a kernelized memory");
        validate_rows(x, k.inputs.dim(), argument)?;
        k.features(x)
    }

    /// Ids, abstention and the reported top patterns of a backend's result.
    fn finish(&self, mut result: RetrievalResult) -> Result<RetrievalResult> {
        result.nearest_id = result.nearest.iter().map(|&r| self.ids[r]).collect();
        result.matched = match (&result.confidence, self.abstain) {
            (Some(confidence), Some(threshold)) => result
                .nearest_id
                .iter()
                .zip(confidence)
                .map(|(&id, &c)| (c >= threshold).then_some(id))
                .collect(),
            // An infinite energy is an empty log-sum-ReLU support: no pattern matched.
            _ => result
                .nearest_id
                .iter()
                .zip(&result.energy)
                .map(|(&id, &e)| (e < f64::INFINITY).then_some(id))
                .collect(),
        };
        if let (Some(k), Separation::Softmax { beta }) = (self.report_top, self.config.separation) {
            let (mut top, participation) = match &self.kernel {
                None => self.backend.top(result.states.view(), beta, k)?,
                Some(state) => {
                    let phi = state.features(result.states.view())?;
                    self.backend.top(phi.view(), beta, k)?
                }
            };
            for entry in top.iter_mut().flatten() {
                entry.id = self.ids[entry.id as usize];
            }
            result.top = Some(top);
            result.participation = Some(participation);
        }
        Ok(result)
    }

    /// [`Retriever::retrieve`] with some coordinates *clamped*: those outside `clamp.free`
    /// hold their query values at every step while the free ones follow the update
    /// (in-painting, read-out of some neurons given the others). Each step is the
    /// configured update and projection, after which the clamped coordinates are set back;
    /// convergence, steps, the energy trace, nearest pattern, energy and confidence are
    /// then as in [`Retriever::retrieve`]. With nothing clamped it is the plain run. On
    /// the CPU every step is one pass of the fast path; elsewhere the loop of
    /// [`dam_core::dynamics`] runs on the device's step and similarities.
    pub fn retrieve_clamped(
        &self,
        queries: ArrayView2<'_, f32>,
        clamp: &binary::Clamp,
    ) -> Result<RetrievalResult> {
        let (b, n) = queries.dim();
        if n != self.patterns().dim() {
            return Err(Error::DimensionMismatch {
                argument: "queries (B × N)",
                expected: self.patterns().dim(),
                actual: n,
            });
        }
        if clamp.free.len() != binary::words_per_state(n) {
            return Err(Error::DimensionMismatch {
                argument: "clamp (packed free mask)",
                expected: binary::words_per_state(n),
                actual: clamp.free.len(),
            });
        }
        if b == 0 {
            return Err(Error::Empty {
                argument: "queries",
                detail: "B = 0".into(),
            });
        }
        let clamped: Vec<usize> = (0..n).filter(|&i| !clamp.is_free(i)).collect();
        let result = match &self.kernel {
            None => self.backend.retrieve_clamped(queries, &clamped)?,
            Some(_) => self.kernel_run(queries, &clamped)?,
        };
        self.finish(result)
    }

    /// One update of the configured rule from each query (B×N): proj(f · Σ_μ w_μ ξ^μ),
    /// whatever [`Dynamics`] says, without energies, nearest patterns or convergence
    /// bookkeeping. This is the unit `dam bench` times.
    ///
    /// On [`Device::Cpu`] every rule runs the fused, cache-blocked, multi-threaded pass of
    /// [`cpu::fast`] (f32 GEMM sums; tested against the reference within `STATE_TOL`); on
    /// [`Device::Reference`] the plain f64 update. On wgpu it is the same kernels as one
    /// step of [`Retriever::retrieve`], or for softmax at large batches on GPUs the generic
    /// matrix product ([`WgpuOptions::gemm_min_batch`]).
    ///
    /// A kernelized memory ([`RetrieverBuilder::feature_map`]) steps x ← Ξᵀ p(β K(Ξ, x))
    /// through the same device paths as [`Retriever::retrieve_values`].
    pub fn step(&self, queries: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        match &self.kernel {
            None => self.backend.step(queries),
            Some(k) => {
                let phi = self.kernel_features(queries, "queries")?;
                let out = self
                    .backend
                    .evaluate_values(phi.view(), phi.nrows(), k.inputs.view())?;
                match dam_core::backend::first_non_finite(out.next.view()) {
                    Some(q) => Err(Error::state_overflow(q, 1)),
                    None => Ok(out.next),
                }
            }
        }
    }

    /// [`Retriever::step`], plus the device time of the step's compute passes in seconds,
    /// measured with timestamp queries on wgpu adapters that have `TIMESTAMP_QUERY`
    /// (`None` on the CPU and on adapters without it). Wall-clock time additionally counts
    /// the query upload, submit, wait and readback.
    pub fn step_timed(&self, queries: ArrayView2<'_, f32>) -> Result<(Array2<f32>, Option<f64>)> {
        match &self.kernel {
            None => self.backend.step_timed(queries),
            Some(_) => Ok((self.step(queries)?, None)),
        }
    }

    /// Exact top-k lookup: the min(k, P) stored patterns most similar to each query (B×N)
    /// by the configured similarity, best first, ties to the lower id; `ids` are stable
    /// ids (see [`Retriever::ids`]), `scores` the similarities (f32). On the CPU, dot
    /// similarity runs a blocked multi-threaded GEMM path; on wgpu the similarities come
    /// from the generic matrix product and are selected on the host.
    pub fn search(&self, queries: ArrayView2<'_, f32>, k: usize) -> Result<SearchResult> {
        let mut result = match &self.kernel {
            None => self.backend.search(queries, k)?,
            Some(_) => {
                let phi = self.kernel_features(queries, "queries")?;
                self.backend.search(phi.view(), k)?
            }
        };
        result.ids.mapv_inplace(|row| self.ids[row as usize]);
        Ok(result)
    }

    /// [`Retriever::retrieve`] for applications on an async runtime: the work runs on its
    /// own thread and the returned future only waits for its answer, so it never blocks
    /// the executor. The future is `Send + 'static` (it holds the `Arc` and the queries).
    pub fn retrieve_async(
        self: &Arc<Self>,
        queries: Array2<f32>,
    ) -> impl std::future::Future<Output = Result<RetrievalResult>> + Send + 'static {
        let memory = self.clone();
        off_thread(move || memory.retrieve(queries.view()))
    }

    /// [`Retriever::search`] for applications on an async runtime (see
    /// [`Retriever::retrieve_async`]).
    pub fn search_async(
        self: &Arc<Self>,
        queries: Array2<f32>,
        k: usize,
    ) -> impl std::future::Future<Output = Result<SearchResult>> + Send + 'static {
        let memory = self.clone();
        off_thread(move || memory.search(queries.view(), k))
    }

    /// E(x) for each row of `states` (B×N). For a kernelized memory, the energy of the
    /// memory of features at Φ(x) (see [`RetrieverBuilder::feature_map`]).
    pub fn energy(&self, states: ArrayView2<'_, f32>) -> Result<Vec<f64>> {
        match &self.kernel {
            None => self.backend.energy(states),
            Some(_) => {
                let phi = self.kernel_features(states, "states")?;
                self.backend.energy(phi.view())
            }
        }
    }

    /// The stored patterns, in row order (the order of [`Retriever::ids`]); for a
    /// kernelized memory the memories Ξ in input space.
    pub fn patterns(&self) -> &Patterns {
        match &self.kernel {
            None => self.backend.patterns(),
            Some(k) => &k.inputs,
        }
    }

    /// The kernel of a kernelized memory ([`RetrieverBuilder::feature_map`]), if it is one.
    pub fn kernel(&self) -> Option<&kernelized::Kernel> {
        self.kernel.as_ref().map(|k| &k.kernel)
    }

    /// Applies an edit to the device (and, for a kernelized memory, to Ξ and Φ(Ξ)).
    fn edit(&mut self, edit: dam_core::Edit<'_>) -> Result<()> {
        match self.kernel.as_mut() {
            None => self.backend.edit(edit),
            Some(k) => k.edit(self.backend.as_mut(), edit),
        }
    }

    /// Number of stored patterns.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Always `false`: a memory holds at least one pattern ([`Retriever::remove`]
    /// refuses to remove the last ones).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The stable id of each stored pattern, in row order (strictly increasing). A new
    /// memory numbers its patterns 0..P; [`Retriever::insert`] continues from the largest
    /// id ever given out, so an id is never reused.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// The row that holds pattern `id` now, if it is stored.
    pub fn row_of(&self, id: u64) -> Option<usize> {
        self.ids.binary_search(&id).ok()
    }

    /// Stores `patterns` (k×N, finite; rounded to f16 with [`Storage::F16`]) and returns
    /// their new ids, in order. Nothing is rebuilt: the device's pattern buffers grow
    /// geometrically. On error (wrong width, non-finite values, a rule that does not fit
    /// the new count) the memory is unchanged. Zero rows: nothing happens.
    pub fn insert(&mut self, patterns: ArrayView2<'_, f32>) -> Result<Vec<u64>> {
        if self.values.is_some() {
            return Err(Error::InvalidParameter {
                argument: "insert",
                value: format!("{} patterns without values", patterns.nrows()),
                reason: "this memory stores a value per pattern; use insert_with_values".into(),
            });
        }
        self.append(patterns)
    }

    /// [`Retriever::insert`] for a key → value memory: `values` (k×M) are the new
    /// patterns' values, row for row. Checked before anything changes.
    pub fn insert_with_values(
        &mut self,
        patterns: ArrayView2<'_, f32>,
        values: ArrayView2<'_, f32>,
    ) -> Result<Vec<u64>> {
        let stored = self.values.as_ref().ok_or_else(no_values)?;
        if values.nrows() != patterns.nrows() {
            return Err(Error::DimensionMismatch {
                argument: "values (one row per inserted pattern)",
                expected: patterns.nrows(),
                actual: values.nrows(),
            });
        }
        if values.nrows() > 0 {
            validate_rows(values, stored.dim(), "values")?;
        }
        let ids = self.append(patterns)?;
        if !ids.is_empty() {
            self.values
                .as_mut()
                .expect("checked above")
                .apply(dam_core::Edit::Append(values), Storage::F32)?;
        }
        Ok(ids)
    }

    fn append(&mut self, patterns: ArrayView2<'_, f32>) -> Result<Vec<u64>> {
        if patterns.nrows() == 0 && patterns.ncols() == self.patterns().dim() {
            return Ok(Vec::new());
        }
        self.edit(dam_core::Edit::Append(patterns))?;
        let ids: Vec<u64> = (self.next_id..self.next_id + patterns.nrows() as u64).collect();
        self.next_id += patterns.nrows() as u64;
        self.ids.extend_from_slice(&ids);
        Ok(ids)
    }

    /// Removes the patterns with these ids (in any order; repeats count once). The other
    /// patterns keep their ids and their order; results after the removal equal a fresh
    /// build of what remains. Unknown ids ([`Error::UnknownId`]) or removing every
    /// pattern ([`Error::Empty`]) change nothing.
    pub fn remove(&mut self, ids: &[u64]) -> Result<()> {
        let mut rows = ids
            .iter()
            .map(|&id| {
                self.row_of(id).ok_or(Error::UnknownId {
                    argument: "remove",
                    id,
                })
            })
            .collect::<Result<Vec<usize>>>()?;
        rows.sort_unstable();
        rows.dedup();
        self.edit(dam_core::Edit::Remove(&rows))?;
        if let Some(values) = self.values.as_mut() {
            values.apply(dam_core::Edit::Remove(&rows), Storage::F32)?;
        }
        let mut gone = rows.iter().peekable();
        let mut row = 0;
        self.ids.retain(|_| {
            let keep = gone.peek() != Some(&&row);
            if !keep {
                gone.next();
            }
            row += 1;
            keep
        });
        Ok(())
    }

    /// Replaces the pattern with id `id` by `pattern` (length N, finite); it keeps its id
    /// and row.
    pub fn update(&mut self, id: u64, pattern: ndarray::ArrayView1<'_, f32>) -> Result<()> {
        let row = self.row_of(id).ok_or(Error::UnknownId {
            argument: "update",
            id,
        })?;
        self.edit(dam_core::Edit::Replace {
            row,
            values: pattern,
        })
    }

    /// Replaces the value of pattern `id` (length M, finite).
    pub fn update_value(&mut self, id: u64, value: ndarray::ArrayView1<'_, f32>) -> Result<()> {
        let row = self.row_of(id).ok_or(Error::UnknownId {
            argument: "update_value",
            id,
        })?;
        let values = self.values.as_mut().ok_or_else(no_values)?;
        values.apply(dam_core::Edit::Replace { row, values: value }, Storage::F32)?;
        Ok(())
    }

    /// The value vectors (P×M, in row order), for a key → value memory.
    pub fn values(&self) -> Option<ArrayView2<'_, f32>> {
        self.values.as_ref().map(Patterns::view)
    }

    /// Hetero-association: for each query (B×N), Σ_μ w_μ v^μ (B×M), where w are the
    /// weights of one update of the configured rule at the query (softmax(βs) for
    /// `Softmax`, F′(s) for the others, the factor of `Exponential` included) and v^μ the
    /// value of pattern μ. No projection is applied. On the CPU it is the update's fused
    /// pass with the values in place of the patterns (weights × values as a product); on
    /// the reference and wgpu the similarities come from the device and the weighted sum
    /// is taken on the host in f64 ([`Backend::weighted_values`]). A sum beyond f32 is
    /// [`Error::Overflow`]; a memory without values is [`Error::InvalidParameter`].
    pub fn retrieve_values(&self, queries: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let values = self.values.as_ref().ok_or_else(no_values)?;
        match &self.kernel {
            None => self.backend.weighted_values(queries, values.view()),
            Some(_) => {
                let phi = self.kernel_features(queries, "queries")?;
                self.backend.weighted_values(phi.view(), values.view())
            }
        }
    }

    /// The retrieval rule.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How many top patterns retrievals report per query, if asked for.
    pub fn report_top(&self) -> Option<usize> {
        self.report_top
    }

    /// The confidence threshold below which retrievals abstain, if one was set.
    pub fn abstain_below(&self) -> Option<f64> {
        self.abstain
    }

    /// How the patterns are held.
    pub fn storage(&self) -> Storage {
        self.storage
    }

    /// `cpu (reference)` or `wgpu: <adapter> (<backend>, <device type>)`.
    pub fn device_name(&self) -> String {
        self.backend.describe()
    }
}

fn no_values() -> Error {
    Error::InvalidParameter {
        argument: "values",
        value: "none".into(),
        reason: "this memory stores no values; build it with RetrieverBuilder::values".into(),
    }
}

/// Runs `work` on a new thread; the future resolves to its result (a panic in `work`
/// becomes an error, not a hang).
fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> impl std::future::Future<Output = Result<T>> + Send + 'static {
    let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
    let spawned = std::thread::Builder::new()
        .name("dam-async".into())
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            sender.send(outcome).ok();
        });
    async move {
        let lost = |reason: String| Error::Backend {
            backend: "async",
            source: reason.into(),
        };
        spawned.map_err(|e| lost(format!("cannot start a worker thread: {e}")))?;
        match receiver.receive().await {
            Some(Ok(result)) => result,
            Some(Err(panic)) => Err(lost(format!(
                "the worker panicked: {}",
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default()
            ))),
            None => Err(lost("the worker ended without an answer".into())),
        }
    }
}

/// Checks a B×N matrix of f32 rows (shape, non-empty, finite) for `argument`.
pub(crate) fn validate_rows(
    rows: ArrayView2<'_, f32>,
    dim: usize,
    argument: &'static str,
) -> Result<()> {
    dam_core::validate_queries(rows, dim).map_err(|e| match e {
        Error::NonFinite {
            row, col, value, ..
        } => Error::NonFinite {
            argument,
            row,
            col,
            value,
        },
        Error::Empty { detail, .. } => Error::Empty { argument, detail },
        other => other,
    })
}

/// Runs the exact binary spin dynamics (see [`binary`]) from each packed query
/// (B × ⌈N/32⌉ words) on `device`; both devices return identical results.
pub fn spin_dynamics(
    device: &Device,
    patterns: &binary::BinaryPatterns,
    energy: binary::SpinEnergy,
    update: binary::SpinUpdate,
    queries: &[u32],
) -> Result<binary::SpinResult> {
    let none = binary::Clamp::none(patterns.dim());
    spin_dynamics_clamped(device, patterns, energy, update, queries, &none)
}

/// [`spin_dynamics`] with some neurons clamped: those outside `clamp.free`
/// ([`binary::Clamp`]) keep their query values while the free ones follow the exact update
/// (asynchronous sweeps visit the free neurons in the sweep order; synchronous steps flip
/// only free neurons). Both devices return identical results.
pub fn spin_dynamics_clamped(
    device: &Device,
    patterns: &binary::BinaryPatterns,
    energy: binary::SpinEnergy,
    update: binary::SpinUpdate,
    queries: &[u32],
    clamp: &binary::Clamp,
) -> Result<binary::SpinResult> {
    match device.placement()? {
        Placement::Cpu => dam_cpu::binary::run_clamped(patterns, energy, update, queries, clamp),
        Placement::Reference => {
            dam_cpu::reference::binary::run_clamped(patterns, energy, update, queries, clamp)
        }
        #[cfg(not(feature = "wgpu"))]
        Placement::Wgpu(ctx) => match ctx {},
        #[cfg(feature = "wgpu")]
        Placement::Wgpu(ctx) => {
            dam_wgpu::binary::run_clamped(&ctx, patterns, energy, update, queries, clamp)
        }
    }
}

/// Streams the log-sum-exp of dot similarities over procedural patterns (see
/// [`procedural`]) on `device`: memory O(B·N) for any P; both devices see the same
/// patterns and agree within f32 rounding. `queries` must be B×N with B = `seeds.len()`.
pub fn stream_procedural(
    device: &Device,
    request: &procedural::StreamRequest<'_>,
) -> Result<Vec<procedural::StreamStats>> {
    stream_procedural_with(device, request, procedural::StreamSeparation::Softmax)
}

/// [`stream_procedural`] that also evaluates `separation` in the same pass. With
/// [`procedural::StreamSeparation::LogSumRelu`] each query's [`procedural::StreamStats`]
/// carries, beside the log-sum-exp of β·(x·ξ) (`lse()`, `mean()`, `best_i`), the
/// log-sum-ReLU statistic `relu` ([`procedural::ReluStats`]): Σ_μ k_μ with
/// k_μ = max(0, 1 − (β/2)‖x − ξ^μ‖²), the support count, the sum of the support's
/// patterns (`mean()`, where one log-sum-ReLU update moves x) and the nearest pattern;
/// `relu.energy(β, ε)` is E = −β⁻¹ log(Σ k + ε) without storing the patterns. Every query
/// carries its own run seed, so a batch of states against one pattern set repeats it.
///
/// The log-sum-ReLU statistic runs on `Device::Cpu` and `Device::Reference`; a wgpu device
/// answers [`Error::Unsupported`].
pub fn stream_procedural_with(
    device: &Device,
    request: &procedural::StreamRequest<'_>,
    separation: procedural::StreamSeparation,
) -> Result<Vec<procedural::StreamStats>> {
    request.validate()?;
    separation.validate()?;
    match device.placement()? {
        Placement::Cpu => Ok(dam_cpu::procedural::stream(request, separation)),
        Placement::Reference => Ok(dam_cpu::reference::procedural::stream(request, separation)),
        #[cfg(not(feature = "wgpu"))]
        Placement::Wgpu(ctx) => match ctx {},
        #[cfg(feature = "wgpu")]
        Placement::Wgpu(ctx) => match separation {
            procedural::StreamSeparation::Softmax => {
                dam_wgpu::procedural::stream_dot(&ctx, request)
            }
            procedural::StreamSeparation::LogSumRelu { .. } => Err(Error::Unsupported {
                what: "the log-sum-ReLU statistic of the procedural stream on wgpu",
                detail: "use Device::Cpu or Device::Reference".into(),
            }),
        },
    }
}

/// The CPU-only build (`--no-default-features`): the device choice never reaches for wgpu.
#[cfg(all(test, not(feature = "wgpu")))]
mod cpu_only {
    use super::*;

    #[test]
    fn device_choice_says_why_and_refuses_wgpu() {
        // One test, so nothing else in this binary reads DAM_DEVICE meanwhile.
        std::env::set_var("DAM_DEVICE", "wgpu");
        assert!(matches!(
            Device::choose(),
            Err(Error::FeatureDisabled {
                feature: "wgpu",
                ..
            })
        ));
        std::env::set_var("DAM_DEVICE", "wgpu:1");
        assert!(matches!(Device::auto(), Err(Error::FeatureDisabled { .. })));
        std::env::set_var("DAM_DEVICE", "tpu");
        assert!(matches!(Device::auto(), Err(Error::UnknownDevice { .. })));
        std::env::remove_var("DAM_DEVICE");
        let (device, reason) = Device::choose().unwrap();
        assert_eq!(device, Device::Cpu);
        assert!(reason.contains("wgpu"), "{reason}");
        let memory = Retriever::builder(Patterns::new(ndarray::array![[1.0, 0.0]]).unwrap())
            .device(device)
            .build()
            .unwrap();
        assert!(
            memory.device_name().starts_with("cpu ("),
            "{}",
            memory.device_name()
        );
        std::env::set_var("DAM_DEVICE", "reference");
        let (device, reason) = Device::choose().unwrap();
        assert_eq!(device, Device::Reference, "{reason}");
        std::env::remove_var("DAM_DEVICE");
    }
}

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
