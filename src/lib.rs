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
pub use dam_core::procedural;
pub use dam_core::{
    Backend, Config, Dynamics, Error, Mismatch, Patterns, Projection, Result, RetrievalResult,
    Separation, Similarity, Storage, Tolerance,
};
pub use dam_cpu as cpu;
pub use dam_wgpu as wgpu_backend;
pub use dam_wgpu::{WgpuContext, WgpuOptions};

pub mod features;
pub mod mnist;
use ndarray::{Array2, ArrayView2};

/// Where a [`Retriever`] runs.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Device {
    /// The CPU: the plain reference (f64 accumulation) for `retrieve` and `energy`, and
    /// the fused multi-threaded path of [`cpu::fast`] for [`Retriever::step`] with dot
    /// similarity and softmax.
    #[default]
    Cpu,
    /// A wgpu adapter.
    Wgpu(WgpuOptions),
}

impl Device {
    /// The default wgpu device.
    pub fn wgpu() -> Self {
        Device::Wgpu(WgpuOptions::default())
    }

    /// `DAM_DEVICE=cpu|wgpu|auto` if set; otherwise (or with `auto`) wgpu when an adapter
    /// exists, else the CPU with a warning on stderr. `DAM_DEVICE=wgpu` without an adapter
    /// and unknown `DAM_DEVICE` values are errors.
    pub fn auto() -> Result<Self> {
        match std::env::var("DAM_DEVICE") {
            Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
                "cpu" => Ok(Device::Cpu),
                "wgpu" | "gpu" => {
                    WgpuContext::shared(&WgpuOptions::default())?;
                    Ok(Device::wgpu())
                }
                "auto" | "" => Ok(Self::probe()),
                _ => Err(Error::UnknownDevice { value: v }),
            },
            Err(_) => Ok(Self::probe()),
        }
    }

    /// (`cpu`, `cpu reference`) or (`wgpu`, the adapter's description), as the CLI
    /// reports them.
    pub fn describe(&self) -> Result<(String, String)> {
        Ok(match self {
            Device::Cpu => ("cpu".into(), "cpu reference".into()),
            Device::Wgpu(options) => ("wgpu".into(), WgpuContext::shared(options)?.describe()),
        })
    }

    fn probe() -> Self {
        match WgpuContext::shared(&WgpuOptions::default()) {
            Ok(_) => Device::wgpu(),
            Err(e) => {
                log::warn!("no wgpu adapter ({e}); falling back to the CPU reference");
                eprintln!("warning: dam: no wgpu adapter ({e}); using the CPU reference");
                Device::Cpu
            }
        }
    }
}

/// Stored patterns plus a retrieval rule, on a device: a [`Backend`] (the CPU's
/// [`cpu::CpuRetriever`] or [`wgpu_backend::WgpuRetriever`]) behind one API.
pub struct Retriever {
    storage: Storage,
    patterns: Arc<Patterns>,
    config: Config,
    backend: Box<dyn Backend>,
}

impl std::fmt::Debug for Retriever {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retriever")
            .field("patterns", &(self.patterns.count(), self.patterns.dim()))
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
}

impl RetrieverBuilder {
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
        let patterns = match self.storage {
            Storage::F32 => self.patterns,
            Storage::F16 => self.patterns.rounded_to_f16()?,
        };
        let patterns = Arc::new(patterns);
        let backend: Box<dyn Backend> = match &self.device {
            Device::Cpu => Box::new(dam_cpu::CpuRetriever::new(patterns.clone(), self.config)?),
            Device::Wgpu(options) => {
                let ctx: Arc<WgpuContext> = WgpuContext::shared(options)?;
                Box::new(dam_wgpu::WgpuRetriever::with_storage(
                    ctx,
                    &patterns,
                    self.config,
                    self.storage,
                )?)
            }
        };
        Ok(Retriever {
            storage: self.storage,
            patterns,
            config: self.config,
            backend,
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
        }
    }

    /// Runs the dynamics from each query (B×N); see [`RetrievalResult`].
    pub fn retrieve(&self, queries: ArrayView2<'_, f32>) -> Result<RetrievalResult> {
        self.backend.retrieve(queries)
    }

    /// One update of the configured rule from each query (B×N): proj(f · Σ_μ w_μ ξ^μ),
    /// whatever [`Dynamics`] says, without energies, nearest patterns or convergence
    /// bookkeeping. This is the unit `dam bench` times.
    ///
    /// On [`Device::Cpu`], dot similarity with softmax runs the fused, cache-blocked,
    /// multi-threaded path of [`cpu::fast`] (f32 GEMM sums; tested against the reference
    /// within `STATE_TOL`); every other rule runs the reference update. On wgpu it is the
    /// same kernels as one step of [`Retriever::retrieve`], or for softmax at large batches
    /// on GPUs the generic matrix product ([`WgpuOptions::gemm_min_batch`]).
    pub fn step(&self, queries: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        validate_rows(queries, self.patterns.dim(), "queries")?;
        self.backend.step(queries)
    }

    /// [`Retriever::step`], plus the device time of the step's compute passes in seconds,
    /// measured with timestamp queries on wgpu adapters that have `TIMESTAMP_QUERY`
    /// (`None` on the CPU and on adapters without it). Wall-clock time additionally counts
    /// the query upload, submit, wait and readback.
    pub fn step_timed(&self, queries: ArrayView2<'_, f32>) -> Result<(Array2<f32>, Option<f64>)> {
        validate_rows(queries, self.patterns.dim(), "queries")?;
        self.backend.step_timed(queries)
    }

    /// E(x) for each row of `states` (B×N).
    pub fn energy(&self, states: ArrayView2<'_, f32>) -> Result<Vec<f64>> {
        self.backend.energy(states)
    }

    /// The stored patterns.
    pub fn patterns(&self) -> &Patterns {
        &self.patterns
    }

    /// The retrieval rule.
    pub fn config(&self) -> &Config {
        &self.config
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
    match device {
        Device::Cpu => dam_cpu::binary::run(patterns, energy, update, queries),
        Device::Wgpu(options) => {
            let ctx: Arc<WgpuContext> = WgpuContext::shared(options)?;
            dam_wgpu::binary::run(&ctx, patterns, energy, update, queries)
        }
    }
}

/// Streams the log-sum-exp of dot similarities over procedural patterns (see
/// [`procedural`]) on `device`: memory O(B·N) for any P; both devices see the same
/// patterns and agree within f32 rounding.
pub fn stream_procedural(
    device: &Device,
    request: &procedural::StreamRequest<'_>,
) -> Result<Vec<procedural::StreamStats>> {
    match device {
        Device::Cpu => Ok(dam_cpu::procedural::stream_dot(request)),
        Device::Wgpu(options) => {
            let ctx: Arc<WgpuContext> = WgpuContext::shared(options)?;
            dam_wgpu::procedural::stream_dot(&ctx, request)
        }
    }
}

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
