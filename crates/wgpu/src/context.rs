//! Adapter, device, queue and the pipeline cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::source::{Kernel, Loader};
use crate::WgpuError;

/// Which adapter a context uses when several exist.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum AdapterChoice {
    /// wgpu's choice for [`WgpuOptions::power_preference`] (default).
    #[default]
    Preferred,
    /// The adapter at this index of [`WgpuContext::adapters`] (`dam devices` lists them).
    Index(usize),
    /// The first adapter whose name contains this text, ignoring case.
    Name(String),
}

/// One adapter as [`WgpuContext::adapters`] (and `dam devices`) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSummary {
    /// Position in the enumeration ([`AdapterChoice::Index`]).
    pub index: usize,
    /// The adapter's name.
    pub name: String,
    /// Vulkan, Metal, DX12 or GL.
    pub backend: String,
    /// Discrete, integrated, virtual GPU, or Cpu (a software rasterizer such as lavapipe).
    pub device_type: String,
    /// The driver and its version.
    pub driver: String,
    /// Largest storage-buffer binding, bytes.
    pub max_binding_bytes: u64,
    /// Largest buffer, bytes.
    pub max_buffer_bytes: u64,
    /// Workgroups per dispatch dimension.
    pub max_workgroups: u32,
    /// The adapter has SHADER_F16 (f16 storage read natively).
    pub shader_f16: bool,
    /// The adapter has TIMESTAMP_QUERY (device time of a step).
    pub timestamps: bool,
}

/// How to pick and configure the wgpu device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WgpuOptions {
    /// Backends to search (default: `WGPU_BACKEND` if set, e.g. `vulkan`, else all that
    /// wgpu was built with).
    pub backends: wgpu::Backends,
    /// Adapter preference (default: high performance).
    pub power_preference: wgpu::PowerPreference,
    /// Lower the largest storage binding used below what the adapter allows, e.g. to
    /// exercise pattern-chunk splitting in tests. `None` uses the adapter's limit.
    pub max_binding_bytes: Option<u64>,
    /// Use the adapter's `SHADER_F16` feature, when it has one, to read f16-stored
    /// patterns (default true). `false` forces the portable integer decode of
    /// `pat_f16.wgsl` (tests run both paths).
    pub shader_f16: bool,
    /// Stage pattern tiles through workgroup memory in the streaming kernel so that global
    /// loads are coalesced (`STAGED` in `stream.wgsl`). `None` (default) chooses per
    /// adapter and batch: always on GPUs; on CPU rasterizers (lavapipe) only for tiles of
    /// more than four queries, where it measured faster (B = 8: 0.34 s vs 0.43 s; B = 1:
    /// 0.20 s vs 0.17 s at P = 65,536, N = 512). Tests run both.
    pub stage_patterns: Option<bool>,
    /// Run a single update ([`crate::WgpuRetriever::step`]) of a softmax memory on the
    /// generic matrix product (scores B×P materialised, softmax per row, weights × patterns)
    /// for batches of at least this many queries, instead of the streaming kernel. `None`
    /// (default) chooses per adapter: from 64 queries on GPUs, from 48 on CPU rasterizers
    /// (lavapipe, where the two measured equal at B = 32 and the matrix product 1.9× faster
    /// at B = 64, 14× slower at B = 1; P = 65,536, N = 512).
    pub gemm_min_batch: Option<usize>,
    /// Which adapter to use (default: wgpu's preferred one).
    pub adapter: AdapterChoice,
}

impl Default for WgpuOptions {
    fn default() -> Self {
        Self {
            backends: wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()),
            power_preference: wgpu::PowerPreference::HighPerformance,
            max_binding_bytes: None,
            shader_f16: true,
            stage_patterns: None,
            gemm_min_batch: None,
            adapter: AdapterChoice::Preferred,
        }
    }
}

impl WgpuOptions {
    /// The optional features used when present: f16 arithmetic for f16 storage (unless
    /// `shader_f16` is off), timestamps for the GPU time of a step.
    fn wanted_features(&self) -> wgpu::Features {
        if self.shader_f16 {
            wgpu::Features::SHADER_F16 | wgpu::Features::TIMESTAMP_QUERY
        } else {
            wgpu::Features::TIMESTAMP_QUERY
        }
    }
}

/// Specialisation constants of one pipeline (name, value).
pub type Constants = Vec<(&'static str, u32)>;

/// One adapter + device + queue, with compiled pipelines cached by kernel and constants.
pub struct WgpuContext {
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    features: wgpu::Features,
    stage_patterns: Option<bool>,
    gemm_min_batch: Option<usize>,
    max_binding: u64,
    pipelines: Mutex<HashMap<(Kernel, Loader, Constants), Arc<wgpu::ComputePipeline>>>,
    staging: Mutex<Option<wgpu::Buffer>>,
}

/// The context's read-back staging buffer, held for one read-back (see
/// [`crate::exec::submit_and_read`]).
pub(crate) struct Staging<'a>(MutexGuard<'a, Option<wgpu::Buffer>>);

impl std::ops::Deref for Staging<'_> {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        self.0
            .as_ref()
            .expect("WgpuContext::staging always leaves a buffer in place")
    }
}

impl std::fmt::Debug for WgpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgpuContext")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .field("device_type", &self.info.device_type)
            .field("max_binding", &self.max_binding)
            .finish()
    }
}

impl WgpuContext {
    /// Creates a new context: finds an adapter and requests a device with the adapter's
    /// own limits (not wgpu's conservative defaults).
    pub fn new(options: &WgpuOptions) -> Result<Self, WgpuError> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = options.backends;
        let instance = wgpu::Instance::new(desc);
        let no_adapter = |reason: String| WgpuError::NoAdapter {
            backends: format!("{:?}", options.backends),
            reason,
        };
        let adapter = match &options.adapter {
            AdapterChoice::Preferred => {
                pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: options.power_preference,
                    ..Default::default()
                }))
                .map_err(|e| no_adapter(e.to_string()))?
            }
            choice => {
                let all = pollster::block_on(instance.enumerate_adapters(options.backends));
                let count = all.len();
                let found = match choice {
                    AdapterChoice::Index(i) => all.into_iter().nth(*i),
                    AdapterChoice::Name(text) => {
                        let text = text.to_lowercase();
                        all.into_iter()
                            .find(|a| a.get_info().name.to_lowercase().contains(&text))
                    }
                    AdapterChoice::Preferred => None,
                };
                found.ok_or_else(|| {
                    no_adapter(format!(
                        "no adapter matches {choice:?} among the {count} found (`dam devices` lists them)"
                    ))
                })?
            }
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features() & options.wanted_features();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("dam"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| WgpuError::RequestDevice {
            adapter: info.name.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self::assemble(
            info, device, queue, limits, features, options,
        ))
    }

    /// A context on a device and queue the application already has (e.g. the ones it
    /// renders with), so that retrievals share them. `adapter` is the adapter they were
    /// requested from; the device's own limits and features are used (SHADER_F16 and
    /// TIMESTAMP_QUERY only where the device was created with them); `options` supplies
    /// the remaining settings (binding cap, f16, staging, matrix-product batch).
    pub fn from_device(
        adapter: &wgpu::Adapter,
        device: wgpu::Device,
        queue: wgpu::Queue,
        options: &WgpuOptions,
    ) -> Self {
        let limits = device.limits();
        let features = device.features() & options.wanted_features();
        Self::assemble(adapter.get_info(), device, queue, limits, features, options)
    }

    fn assemble(
        info: wgpu::AdapterInfo,
        device: wgpu::Device,
        queue: wgpu::Queue,
        limits: wgpu::Limits,
        features: wgpu::Features,
        options: &WgpuOptions,
    ) -> Self {
        let adapter_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let max_binding = options
            .max_binding_bytes
            .map_or(adapter_binding, |m| m.min(adapter_binding))
            .max(256);
        Self {
            stage_patterns: options.stage_patterns,
            gemm_min_batch: options.gemm_min_batch,
            device,
            queue,
            info,
            limits,
            features,
            max_binding,
            pipelines: Mutex::new(HashMap::new()),
            staging: Mutex::new(None),
        }
    }

    /// Every adapter of `backends`, in the order [`AdapterChoice::Index`] counts them.
    pub fn adapters(backends: wgpu::Backends) -> Vec<AdapterSummary> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = backends;
        let instance = wgpu::Instance::new(desc);
        pollster::block_on(instance.enumerate_adapters(backends))
            .iter()
            .enumerate()
            .map(|(index, adapter)| {
                let info = adapter.get_info();
                let limits = adapter.limits();
                let features = adapter.features();
                AdapterSummary {
                    index,
                    name: info.name.clone(),
                    backend: format!("{:?}", info.backend),
                    device_type: format!("{:?}", info.device_type),
                    driver: format!("{} {}", info.driver, info.driver_info)
                        .trim()
                        .to_string(),
                    max_binding_bytes: limits.max_storage_buffer_binding_size,
                    max_buffer_bytes: limits.max_buffer_size,
                    max_workgroups: limits.max_compute_workgroups_per_dimension,
                    shader_f16: features.contains(wgpu::Features::SHADER_F16),
                    timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
                }
            })
            .collect()
    }

    /// Whether the adapter is a software rasterizer (device type Cpu, e.g. lavapipe).
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// A process-wide context for these options, created on first use and shared after
    /// (adapter discovery and shader compilation happen once per process).
    pub fn shared(options: &WgpuOptions) -> Result<Arc<Self>, WgpuError> {
        type Registry = Mutex<Vec<(WgpuOptions, Arc<WgpuContext>)>>;
        static CONTEXTS: OnceLock<Registry> = OnceLock::new();
        let registry = CONTEXTS.get_or_init(|| Mutex::new(Vec::new()));
        let mut list = registry.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, ctx)) = list.iter().find(|(o, _)| o == options) {
            return Ok(ctx.clone());
        }
        let ctx = Arc::new(Self::new(options)?);
        list.push((options.clone(), ctx.clone()));
        Ok(ctx)
    }

    /// The adapter's description (name, backend, device type, driver).
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// A one-line description, e.g. `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// The device limits in force.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The optional features the device was created with (those of `SHADER_F16` and
    /// `TIMESTAMP_QUERY` that the adapter has).
    pub fn features(&self) -> wgpu::Features {
        self.features
    }

    /// Whether the streaming kernel stages pattern tiles in workgroup memory for query
    /// tiles of `lanes` queries (see [`WgpuOptions::stage_patterns`]).
    pub fn stage_patterns(&self, lanes: u32) -> bool {
        self.stage_patterns
            .unwrap_or(self.info.device_type != wgpu::DeviceType::Cpu || lanes > 4)
    }

    /// Whether a single softmax update of `batch` queries runs on the matrix product (see
    /// [`WgpuOptions::gemm_min_batch`]).
    pub fn gemm_for(&self, batch: usize) -> bool {
        match self.gemm_min_batch {
            Some(min) => batch >= min,
            None if self.info.device_type == wgpu::DeviceType::Cpu => batch >= 48,
            None => batch >= 64,
        }
    }

    /// Largest storage binding, in bytes, that kernels will be given.
    pub fn max_binding_bytes(&self) -> u64 {
        self.max_binding
    }

    /// The compiled pipeline for a kernel and its constants (compiled once, then cached);
    /// pattern-reading kernels read f32 patterns.
    pub fn pipeline(
        &self,
        kernel: Kernel,
        constants: &[(&'static str, u32)],
    ) -> Result<Arc<wgpu::ComputePipeline>, WgpuError> {
        self.pipeline_with(kernel, Loader::F32, constants)
    }

    /// The loader for patterns held as `storage` on this device (f16 read natively where
    /// the device has SHADER_F16).
    pub fn loader(&self, storage: dam_core::Storage) -> Loader {
        Loader::for_storage(storage, self.features.contains(wgpu::Features::SHADER_F16))
    }

    /// The compiled pipeline for `kernel` composed with `loader` and specialised with
    /// `constants` (compiled once, then cached).
    pub fn pipeline_with(
        &self,
        kernel: Kernel,
        loader: Loader,
        constants: &[(&'static str, u32)],
    ) -> Result<Arc<wgpu::ComputePipeline>, WgpuError> {
        let loader = kernel.effective_loader(loader);
        let key = (kernel, loader, constants.to_vec());
        let mut cache = self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let source = kernel.source(loader);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(kernel.name()),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        let values: Vec<(&str, f64)> = constants.iter().map(|&(k, v)| (k, v as f64)).collect();
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.name()),
                layout: None,
                module: &module,
                entry_point: Some(kernel.entry_point()),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &values,
                    zero_initialize_workgroup_memory: true,
                },
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(WgpuError::Device {
                operation: format!(
                    "compiling kernel `{}` ({}) with {constants:?}",
                    kernel.name(),
                    loader.name()
                ),
                reason: e.to_string(),
            });
        }
        let pipeline = Arc::new(pipeline);
        cache.insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// The staging buffer for read-backs, at least `size` bytes: reused across calls and
    /// grown geometrically (a larger request doubles it at least).
    pub(crate) fn staging(&self, size: u64) -> Staging<'_> {
        let mut guard = self.staging.lock().unwrap_or_else(|p| p.into_inner());
        let current = guard.as_ref().map_or(0, |b| b.size());
        if current < size {
            let grown = size.max(2 * current).next_multiple_of(256);
            *guard = Some(self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("dam staging"),
                size: grown,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        Staging(guard)
    }
}
