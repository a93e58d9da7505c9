//! Stored patterns on the device and the retrieval loop.

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};
use dam_core::{
    validate_queries, Config, Error, NormBounds, Patterns, Projection, Result, RetrievalResult,
    Separation, Similarity, Storage,
};
use ndarray::{s, Array2, ArrayView2};
use wgpu::util::DeviceExt;

use crate::context::WgpuContext;
use crate::source::Kernel;
use crate::WgpuError;

/// Mirrors `struct Params` in `shaders/common.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Params {
    batch: u32,
    dim: u32,
    p_total: u32,
    chunk_rows: u32,
    chunk_base: u32,
    split_len: u32,
    split_base: u32,
    splits_total: u32,
    beta: f32,
    tol: f32,
    k: u32,
    degree: u32,
}

/// Mirrors `struct Step` (padded to 16 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct StepUniform {
    row: u32,
    pad: [u32; 3],
}

/// Workgroup sizes fixed in the WGSL files.
const SIM_TILE: u32 = 16;
const SUM_WG: u32 = 64;
const STREAM_WG: u32 = 64;
/// Most queries per streaming workgroup (two groups of vec4 lanes in `stream.wgsl`).
const STREAM_QT: u32 = 8;

/// Queries per streaming workgroup for a batch of `batch` (the `LANES` constant).
fn lanes(batch: u32) -> u32 {
    batch.clamp(1, STREAM_QT)
}
/// Aim for about this many streaming workgroups per step, so that a small batch still
/// spreads over the whole device (split over the pattern axis, merged after).
const TARGET_WORKGROUPS: u32 = 1024;
/// Loop iterations one invocation may run in one dispatch. Mesa's llvmpipe/lavapipe
/// (gallivm) stops every shader invocation after 65,535 loop iterations in total and
/// silently drops the rest of its work, so every kernel is dispatched over bounded slices:
/// at most [`MAX_BLOCK_ROWS`] patterns per dispatch, and streaming splits sized to stay
/// well under this budget. Short splits also spread the work over more workgroups.
const LOOP_BUDGET: u64 = 40_000;
/// Most patterns one dispatch covers (the weighted sum loops over every one of them).
const MAX_BLOCK_ROWS: usize = 16_384;
/// Bytes of one `Stat` in `stream.wgsl`.
const STAT_BYTES: u64 = 16;

/// A slice of stored patterns covered by one dispatch: rows `base..base + rows`, stored
/// at byte `offset` of `buffers[buffer]`.
struct Block {
    buffer: usize,
    offset: u64,
    base: u32,
    rows: u32,
}

/// Stored patterns uploaded to a wgpu device, ready to serve retrievals.
///
/// Patterns larger than one storage binding are split into chunks of whole rows. Batches
/// of queries larger than what the scratch buffers can hold in one binding are processed
/// in slices; queries never interact, so the result is the same.
pub struct WgpuRetriever {
    ctx: Arc<WgpuContext>,
    bounds: NormBounds,
    config: Config,
    count: usize,
    dim: usize,
    storage: Storage,
    row_bytes: u64,
    buffers: Vec<wgpu::Buffer>,
    blocks: Vec<Block>,
}

impl std::fmt::Debug for WgpuRetriever {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgpuRetriever")
            .field("ctx", &self.ctx)
            .field("config", &self.config)
            .field("count", &self.count)
            .field("dim", &self.dim)
            .field("buffers", &self.buffers.len())
            .field("blocks", &self.blocks.len())
            .finish()
    }
}

/// Runs `f` inside validation and out-of-memory error scopes; a captured error becomes
/// [`WgpuError::Device`] naming `operation`.
/// What `run_batch` runs for one batch.
#[derive(Debug, Clone, Copy)]
enum Run {
    /// Up to this many update steps (stopping early when all converge), then a final
    /// evaluation (0: only the evaluation).
    Steps(usize),
    /// Exactly one update, no evaluation after it, no per-step readback; `timed`: record
    /// the compute pass with timestamp queries where the device has them.
    Bare { timed: bool },
}

pub(crate) fn scoped<T>(
    ctx: &WgpuContext,
    operation: &str,
    f: impl FnOnce() -> T,
) -> Result<T, WgpuError> {
    let oom = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let value = f();
    let errors = [
        pollster::block_on(validation.pop()),
        pollster::block_on(oom.pop()),
    ];
    match errors.into_iter().flatten().next() {
        Some(e) => Err(WgpuError::Device {
            operation: operation.to_string(),
            reason: e.to_string(),
        }),
        None => Ok(value),
    }
}

/// Copies `buffer` to a staging buffer and reads it back as `T`s.
pub(crate) fn read_back<T: Pod>(
    ctx: &WgpuContext,
    buffer: &wgpu::Buffer,
    name: &'static str,
) -> Result<Vec<T>, WgpuError> {
    let size = buffer.size();
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("dam staging"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
    ctx.queue.submit([encoder.finish()]);
    map_read(ctx, &staging, name)
}

fn map_read<T: Pod>(
    ctx: &WgpuContext,
    staging: &wgpu::Buffer,
    name: &'static str,
) -> Result<Vec<T>, WgpuError> {
    let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        sender.send(r).ok();
    });
    ctx.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| WgpuError::Readback {
            buffer: name,
            reason: e.to_string(),
        })?;
    match pollster::block_on(receiver.receive()) {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            return Err(WgpuError::Readback {
                buffer: name,
                reason: e.to_string(),
            })
        }
        None => {
            return Err(WgpuError::Readback {
                buffer: name,
                reason: "the map callback was dropped (device lost?)".into(),
            })
        }
    }
    let values = {
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| WgpuError::Readback {
                buffer: name,
                reason: e.to_string(),
            })?;
        bytemuck::cast_slice::<u8, T>(&view).to_vec()
    };
    staging.unmap();
    Ok(values)
}

fn similarity_code(s: Similarity) -> u32 {
    match s {
        Similarity::Dot => 0,
        Similarity::NegEuclidean => 1,
        Similarity::NegManhattan => 2,
    }
}

fn projection_code(p: Projection) -> u32 {
    match p {
        Projection::None => 0,
        Projection::Sphere => 1,
        Projection::Sign => 2,
    }
}

fn too_large(argument: &'static str, size: u64, limit: u64, detail: String) -> Error {
    Error::TooLarge {
        argument,
        size,
        limit,
        detail,
    }
}

/// How one batch of queries is laid out on the device.
#[derive(Debug, Clone, Copy)]
struct Plan {
    batch: u32,
    split_len: u32,
    splits_total: u32,
}

impl Plan {
    /// The row ranges `start..end` of `total` queries, `batch` at a time.
    fn slices(&self, total: usize) -> impl Iterator<Item = (usize, usize)> {
        let batch = self.batch as usize;
        (0..total)
            .step_by(batch)
            .map(move |start| (start, (start + batch).min(total)))
    }
}

/// What one batch returns before conversion.
struct BatchOut {
    /// GPU nanoseconds of the step's compute pass (`Run::Bare { timed: true }`).
    gpu_ns: Option<f64>,
    states: Vec<f32>,
    status: Vec<u32>,
    nearest: Vec<u32>,
    energy_rows: Vec<f32>,
    steps_run: usize,
}

impl WgpuRetriever {
    /// Uploads `patterns` to the device of `ctx` and prepares retrievals with `config`.
    pub fn new(ctx: Arc<WgpuContext>, patterns: &Patterns, config: Config) -> Result<Self> {
        Self::with_storage(ctx, patterns, config, Storage::F32)
    }

    /// Same, holding the patterns as `storage` on the device. With [`Storage::F16`] each
    /// entry is rounded to the nearest half (entries beyond ±65,504 are refused) and rows
    /// are padded to whole 32-bit words; the kernels decode to f32.
    pub fn with_storage(
        ctx: Arc<WgpuContext>,
        patterns: &Patterns,
        config: Config,
        storage: Storage,
    ) -> Result<Self> {
        config.validate(patterns.count())?;
        let dim = patterns.dim();
        let row_words = match storage {
            Storage::F32 => dim,
            Storage::F16 => dim.div_ceil(2),
        };
        let row_bytes = row_words as u64 * 4;
        let packed: Vec<u32>;
        let data: &[u32] = match storage {
            Storage::F32 => bytemuck::cast_slice(patterns.as_slice()),
            Storage::F16 => {
                let rounded = patterns.rounded_to_f16()?;
                packed = rounded
                    .view()
                    .rows()
                    .into_iter()
                    .flat_map(|row| {
                        let halves: Vec<u16> = row
                            .iter()
                            .map(|&v| half::f16::from_f32(v).to_bits())
                            .collect();
                        (0..row_words)
                            .map(move |w| {
                                let lo = halves[2 * w] as u32;
                                let hi = halves.get(2 * w + 1).map_or(0, |&h| h as u32);
                                lo | (hi << 16)
                            })
                            .collect::<Vec<u32>>()
                    })
                    .collect();
                &packed
            }
        };
        let max_binding = ctx.max_binding_bytes();
        let rows_per_chunk = (max_binding / row_bytes).min(u32::MAX as u64) as usize;
        if rows_per_chunk == 0 {
            return Err(too_large(
                "patterns (dimension N)",
                row_bytes,
                max_binding,
                "one pattern row must fit in one storage binding".into(),
            ));
        }
        let mut buffers = Vec::new();
        let mut blocks = Vec::new();
        for (i, rows) in data.chunks(rows_per_chunk * row_words).enumerate() {
            let buffer = scoped(&ctx, "uploading stored patterns", || {
                let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("dam patterns"),
                    size: (rows.len() * 4) as u64,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                ctx.queue
                    .write_buffer(&buffer, 0, bytemuck::cast_slice(rows));
                buffer
            })?;
            let chunk_rows = rows.len() / row_words;
            // Block offsets are multiples of MAX_BLOCK_ROWS · 4 bytes, so they meet any
            // storage-offset alignment (≤ 256 bytes).
            for start in (0..chunk_rows).step_by(MAX_BLOCK_ROWS) {
                blocks.push(Block {
                    buffer: buffers.len(),
                    offset: start as u64 * row_bytes,
                    base: (i * rows_per_chunk + start) as u32,
                    rows: MAX_BLOCK_ROWS.min(chunk_rows - start) as u32,
                });
            }
            buffers.push(buffer);
        }
        Ok(Self {
            ctx,
            bounds: patterns.norm_bounds(),
            config,
            count: patterns.count(),
            dim,
            storage,
            row_bytes,
            buffers,
            blocks,
        })
    }

    /// The context (adapter, device) this retriever runs on.
    pub fn context(&self) -> &Arc<WgpuContext> {
        &self.ctx
    }

    /// Number of pattern buffers (more than one when P·N·4 exceeds one binding).
    pub fn chunk_count(&self) -> usize {
        self.buffers.len()
    }

    /// The binding of one block of patterns.
    fn block_binding(&self, block: &Block) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffers[block.buffer],
            offset: block.offset,
            size: std::num::NonZeroU64::new(block.rows as u64 * self.row_bytes),
        })
    }

    /// f16 storage is read with the device's SHADER_F16 feature.
    fn native_f16(&self) -> bool {
        self.ctx.features().contains(wgpu::Features::SHADER_F16)
    }

    fn streamed(&self) -> bool {
        matches!(
            self.config.separation,
            Separation::Softmax { .. } | Separation::Exponential { .. }
        )
    }

    fn beta(&self) -> f32 {
        match self.config.separation {
            Separation::Softmax { beta } | Separation::Exponential { beta } => beta,
            _ => 1.0,
        }
    }

    /// Splits of the pattern axis for a batch of `batch` queries.
    fn splits_for(&self, batch: u32) -> (u32, u32) {
        let p = self.count as u64;
        let max_splits = p.div_ceil(STREAM_WG as u64).max(1);
        let query_tiles = batch.div_ceil(lanes(batch)) as u64;
        let target = (TARGET_WORKGROUPS as u64)
            .div_ceil(query_tiles)
            .clamp(1, max_splits);
        // Loop iterations per tile in `partial`: tile max, tile sum, the weighted rows of
        // each owned coordinate and their stores for each query lane, and the similarity of
        // the invocation's own pattern.
        let n = self.dim as u64;
        let owned = n.div_ceil(STREAM_WG as u64);
        // Staged (see WgpuOptions::stage_patterns): the tile's rows are also copied once.
        let per_tile = 5 * STREAM_WG as u64
            + (STREAM_WG as u64 + STREAM_QT as u64) * owned
            + 2 * n
            + 2 * owned;
        let max_tiles = (LOOP_BUDGET / per_tile).max(1);
        let split_len = (p.div_ceil(target).div_ceil(STREAM_WG as u64) * STREAM_WG as u64)
            .min(max_tiles * STREAM_WG as u64);
        let split_len = split_len.min(u32::MAX as u64) as u32;
        let total = self.blocks.iter().map(|c| c.rows.div_ceil(split_len)).sum();
        (split_len, total)
    }

    /// Largest batch whose scratch buffers each fit in one binding.
    fn plan(&self, batch: usize, trace_rows: u64) -> Result<Plan> {
        let limit = self.ctx.max_binding_bytes();
        let max_groups = self.ctx.limits().max_compute_workgroups_per_dimension;
        let mut b = (batch as u64).min(max_groups as u64).max(1) as u32;
        loop {
            let (split_len, splits_total) = self.splits_for(b);
            let n = self.dim as u64;
            let mut sizes = vec![b as u64 * n * 4, trace_rows * b as u64 * 4];
            if self.streamed() {
                sizes.push(b as u64 * splits_total as u64 * n * 4);
                sizes.push(b as u64 * splits_total as u64 * STAT_BYTES);
            } else {
                sizes.push(b as u64 * self.count as u64 * 4);
            }
            let worst = sizes.into_iter().max().unwrap_or(0);
            if worst <= limit {
                return Ok(Plan {
                    batch: b,
                    split_len,
                    splits_total,
                });
            }
            if b == 1 {
                return Err(too_large(
                    "scratch buffer for one query",
                    worst,
                    limit,
                    format!(
                        "P = {}, N = {}, energy-trace rows = {trace_rows}; lower P, N or max_steps",
                        self.count, self.dim
                    ),
                ));
            }
            b = b.div_ceil(2);
        }
    }

    /// Runs the configured dynamics from each query (B×N).
    pub fn retrieve(&self, queries: ArrayView2<'_, f32>) -> Result<RetrievalResult> {
        validate_queries(queries, self.dim)?;
        self.bounds.check(&self.config, queries)?;
        let (max_steps, _) = self.config.dynamics.budget();
        let trace = self.config.energy_trace;
        let rows = if trace { max_steps as u64 + 1 } else { 1 };
        let plan = self.plan(queries.nrows(), rows)?;
        let b_total = queries.nrows();
        let mut states = Array2::<f32>::zeros(queries.dim());
        let mut steps = Vec::with_capacity(b_total);
        let mut converged = Vec::with_capacity(b_total);
        let mut nearest = Vec::with_capacity(b_total);
        let mut energy = Vec::with_capacity(b_total);
        let mut traces = Vec::with_capacity(if trace { b_total } else { 0 });
        for (start, end) in plan.slices(b_total) {
            let slice = queries.slice(s![start..end, ..]);
            let out = self.run_batch(slice, Run::Steps(max_steps), plan)?;
            let b = end - start;
            for q in 0..b {
                let st = &out.status[q * 4..q * 4 + 4];
                if st[3] != 0 {
                    return Err(Error::state_overflow(start + q, st[1] as usize));
                }
                steps.push(st[1] as usize);
                converged.push(st[2] != 0);
                nearest.push(out.nearest[q] as usize);
                let last_row = if trace { out.steps_run } else { 0 };
                energy.push(self.energy_value(
                    out.energy_rows[last_row * b + q],
                    start + q,
                    st[1] as usize,
                )?);
                if trace {
                    let t: Result<Vec<f64>> = (0..=st[1] as usize)
                        .map(|row| self.energy_value(out.energy_rows[row * b + q], start + q, row))
                        .collect();
                    traces.push(t?);
                }
            }
            self.put_states(&mut states, start, &out.states)?;
        }
        Ok(RetrievalResult {
            states,
            steps,
            converged,
            nearest,
            energy,
            energy_trace: trace.then_some(traces),
        })
    }

    /// One update of the configured rule from each query (B×N), projection applied: the
    /// evaluate and accumulate passes once, without the final energy pass or any readback
    /// besides the states and status.
    pub fn step(&self, queries: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        Ok(self.bare_step(queries, false)?.0)
    }

    /// [`WgpuRetriever::step`], plus the GPU time of its compute passes in seconds (summed
    /// over batch slices) from timestamp queries when the device has `TIMESTAMP_QUERY`.
    pub fn step_timed(&self, queries: ArrayView2<'_, f32>) -> Result<(Array2<f32>, Option<f64>)> {
        self.bare_step(queries, true)
    }

    fn bare_step(
        &self,
        queries: ArrayView2<'_, f32>,
        timed: bool,
    ) -> Result<(Array2<f32>, Option<f64>)> {
        validate_queries(queries, self.dim)?;
        self.bounds.check(&self.config, queries)?;
        let plan = self.plan(queries.nrows(), 1)?;
        let mut states = Array2::<f32>::zeros(queries.dim());
        let mut gpu_ns = Some(0.0);
        for (start, end) in plan.slices(queries.nrows()) {
            let out =
                self.run_batch(queries.slice(s![start..end, ..]), Run::Bare { timed }, plan)?;
            gpu_ns = gpu_ns.zip(out.gpu_ns).map(|(a, b)| a + b);
            for q in 0..end - start {
                if out.status[q * 4 + 3] != 0 {
                    return Err(Error::state_overflow(start + q, 1));
                }
            }
            self.put_states(&mut states, start, &out.states)?;
        }
        Ok((states, gpu_ns.map(|ns| ns * 1e-9)))
    }

    /// Copies a batch slice's states (rows from `start`) into the full result.
    fn put_states(&self, states: &mut Array2<f32>, start: usize, data: &[f32]) -> Result<()> {
        let rows = data.len() / self.dim;
        let block = ArrayView2::from_shape((rows, self.dim), data).map_err(|e| {
            Error::InvalidParameter {
                argument: "states",
                value: format!("{rows}×{}", self.dim),
                reason: e.to_string(),
            }
        })?;
        states.slice_mut(s![start..start + rows, ..]).assign(&block);
        Ok(())
    }

    /// E(x) for each row of `states` (B×N).
    pub fn energy(&self, states: ArrayView2<'_, f32>) -> Result<Vec<f64>> {
        validate_queries(states, self.dim)?;
        self.bounds.check(&self.config, states)?;
        let plan = self.plan(states.nrows(), 1)?;
        let mut out = Vec::with_capacity(states.nrows());
        for (start, end) in plan.slices(states.nrows()) {
            let batch = self.run_batch(states.slice(s![start..end, ..]), Run::Steps(0), plan)?;
            for (q, &raw) in batch.energy_rows.iter().enumerate() {
                out.push(self.energy_value(raw, start + q, 0)?);
            }
        }
        Ok(out)
    }

    /// Converts a kernel's energy output to the energy (exponential: −e^{lse} in f64),
    /// with the range rule of [`dam_cpu::checked_energy`].
    fn energy_value(&self, raw: f32, query: usize, steps: usize) -> Result<f64> {
        let e = match self.config.separation {
            Separation::Exponential { .. } => -(raw as f64).exp(),
            _ => raw as f64,
        };
        dam_cpu::checked_energy(self.config.separation, e, query, steps)
    }

    fn uniform<T: Pod>(&self, value: &T) -> wgpu::Buffer {
        self.ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("dam uniform"),
                contents: bytemuck::bytes_of(value),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    }

    fn storage(&self, label: &str, size: u64) -> wgpu::Buffer {
        self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(4),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    fn bind(
        &self,
        pipeline: &wgpu::ComputePipeline,
        entries: &[(u32, &wgpu::Buffer)],
        block: Option<&Block>,
    ) -> wgpu::BindGroup {
        // Binding 1 is the block of stored patterns in the kernels that read them.
        let extra = block
            .map(|block| wgpu::BindGroupEntry {
                binding: 1,
                resource: self.block_binding(block),
            })
            .into_iter()
            .collect();
        self.ctx.bind_group(pipeline, entries, extra)
    }

    /// Runs `run` for one batch entirely on the device; `Run::Steps` reads back one `u32`
    /// per step.
    fn run_batch(&self, queries: ArrayView2<'_, f32>, run: Run, plan: Plan) -> Result<BatchOut> {
        let ctx = &*self.ctx;
        let out = scoped(ctx, "retrieval", || {
            self.run_batch_inner(queries, run, plan)
        })?;
        Ok(out?)
    }

    fn run_batch_inner(
        &self,
        queries: ArrayView2<'_, f32>,
        run: Run,
        plan: Plan,
    ) -> Result<BatchOut, WgpuError> {
        let max_steps = match run {
            Run::Steps(m) => m,
            Run::Bare { .. } => 1,
        };
        let ctx = &*self.ctx;
        let b = queries.nrows() as u32;
        let n = self.dim as u32;
        let p = self.count as u32;
        let trace = self.config.energy_trace && matches!(run, Run::Steps(_));
        let rows = if trace { max_steps as u64 + 1 } else { 1 };
        let (_, tol) = self.config.dynamics.budget();
        let (k, degree) = match self.config.separation {
            Separation::TopK { k } => (k as u32, 0),
            Separation::Max => (1, 0),
            Separation::Polynomial { n } | Separation::RectifiedPolynomial { n } => (0, n),
            _ => (0, 0),
        };
        let base = Params {
            batch: b,
            dim: n,
            p_total: p,
            chunk_rows: 0,
            chunk_base: 0,
            split_len: plan.split_len,
            split_base: 0,
            splits_total: plan.splits_total,
            beta: self.beta(),
            tol,
            k,
            degree,
        };
        let sim = ("SIM", similarity_code(self.config.similarity));

        // Buffers.
        let x_data: Vec<f32> = queries.iter().copied().collect();
        let xs = ctx.storage_init("dam states", bytemuck::cast_slice(&x_data));
        let status_init: Vec<u32> = (0..b).flat_map(|_| [1u32, 0, 0, 0]).collect();
        let status = ctx.storage_init("dam status", bytemuck::cast_slice(&status_init));
        let ys = self.storage("dam update", b as u64 * n as u64 * 4);
        let log_scale = self.storage("dam log scale", b as u64 * 4);
        let pending = self.storage("dam pending", 4);
        let energy = self.storage("dam energy", rows * b as u64 * 4);
        let nearest = self.storage("dam nearest", b as u64 * 4);
        let global = self.uniform(&base);
        let step = self.uniform(&StepUniform {
            row: 0,
            pad: [0; 3],
        });
        let pending_staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dam pending staging"),
            size: 4,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let chunk_params: Vec<wgpu::Buffer> = {
            let mut split_base = 0;
            self.blocks
                .iter()
                .map(|c| {
                    let params = Params {
                        chunk_rows: c.rows,
                        chunk_base: c.base,
                        split_base,
                        ..base
                    };
                    split_base += c.rows.div_ceil(plan.split_len);
                    self.uniform(&params)
                })
                .collect()
        };

        // Dispatches of one step: (pipeline, bind group, workgroup counts).
        type Dispatch = (Arc<wgpu::ComputePipeline>, wgpu::BindGroup, [u32; 3]);
        let mut evaluate: Vec<Dispatch> = Vec::new();
        let mut accumulate: Vec<Dispatch> = Vec::new();
        let max_groups = ctx.limits().max_compute_workgroups_per_dimension;
        let clear_ys = !self.streamed();

        if self.streamed() {
            let mode = match self.config.separation {
                Separation::Exponential { .. } => 1,
                _ => 0,
            };
            let splits = plan.splits_total as u64;
            let stats = self.storage("dam stats", b as u64 * splits * STAT_BYTES);
            let accs = self.storage("dam partial sums", b as u64 * splits * n as u64 * 4);
            let partial = ctx.pipeline(
                Kernel::StreamPartial.for_storage(self.storage, self.native_f16()),
                &[
                    sim,
                    ("LANES", lanes(b)),
                    ("GROUPS", lanes(b).div_ceil(4)),
                    ("STAGED", ctx.stage_patterns(lanes(b)) as u32),
                    (
                        "STAGE_FLOATS",
                        if ctx.stage_patterns(lanes(b)) {
                            STREAM_WG * 65
                        } else {
                            1
                        },
                    ),
                ],
            )?;
            for (c, params) in self.blocks.iter().zip(&chunk_params) {
                let group = self.bind(
                    &partial,
                    &[(0, params), (2, &xs), (3, &stats), (4, &accs)],
                    Some(c),
                );
                evaluate.push((
                    partial.clone(),
                    group,
                    [c.rows.div_ceil(plan.split_len), b.div_ceil(lanes(b)), 1],
                ));
            }
            let merge = ctx.pipeline(Kernel::StreamMerge, &[sim, ("MODE", mode)])?;
            let group = self.bind(
                &merge,
                &[
                    (0, &global),
                    (2, &xs),
                    (3, &stats),
                    (4, &accs),
                    (5, &step),
                    (6, &ys),
                    (7, &energy),
                    (8, &nearest),
                    (9, &log_scale),
                ],
                None,
            );
            evaluate.push((merge, group, [b, 1, 1]));
        } else {
            let scores = self.storage("dam scores", b as u64 * p as u64 * 4);

            let similarity = ctx.pipeline(
                Kernel::Similarity.for_storage(self.storage, self.native_f16()),
                &[sim],
            )?;
            for (c, params) in self.blocks.iter().zip(&chunk_params) {
                let group = self.bind(&similarity, &[(0, params), (2, &xs), (3, &scores)], Some(c));
                let tiles = c.rows.div_ceil(SIM_TILE);
                let gx = tiles.min(max_groups);
                evaluate.push((
                    similarity.clone(),
                    group,
                    [gx, tiles.div_ceil(gx), b.div_ceil(SIM_TILE)],
                ));
            }
            let sep = match self.config.separation {
                Separation::Polynomial { .. } => 0,
                Separation::RectifiedPolynomial { .. } => 1,
                _ => 2,
            };
            let separation = ctx.pipeline(Kernel::Separation, &[("SEP", sep)])?;
            let group = self.bind(
                &separation,
                &[
                    (0, &global),
                    (1, &scores),
                    (2, &step),
                    (3, &energy),
                    (4, &nearest),
                ],
                None,
            );
            evaluate.push((separation, group, [b, 1, 1]));
            let weighted = ctx.pipeline(
                Kernel::WeightedSum.for_storage(self.storage, self.native_f16()),
                &[],
            )?;
            for (c, params) in self.blocks.iter().zip(&chunk_params) {
                let group = self.bind(&weighted, &[(0, params), (2, &scores), (3, &ys)], Some(c));
                accumulate.push((
                    weighted.clone(),
                    group,
                    [n.div_ceil(SUM_WG), b.div_ceil(4), 1],
                ));
            }
        }
        let finalize = ctx.pipeline(
            Kernel::Finalize,
            &[("PROJ", projection_code(self.config.projection))],
        )?;
        let group = self.bind(
            &finalize,
            &[
                (0, &global),
                (1, &ys),
                (2, &xs),
                (3, &log_scale),
                (4, &status),
                (5, &pending),
            ],
            None,
        );
        accumulate.push((finalize, group, [b, 1, 1]));

        let encode = |update: bool, timestamps: Option<&wgpu::QuerySet>| {
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            if update {
                encoder.clear_buffer(&pending, 0, None);
                if clear_ys {
                    encoder.clear_buffer(&ys, 0, None);
                }
            }
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("dam step"),
                    timestamp_writes: timestamps.map(|query_set| {
                        wgpu::ComputePassTimestampWrites {
                            query_set,
                            beginning_of_pass_write_index: Some(0),
                            end_of_pass_write_index: Some(1),
                        }
                    }),
                });
                let list = evaluate.iter().chain(accumulate.iter().filter(|_| update));
                for (pipeline, group, [x, y, z]) in list {
                    pass.set_pipeline(pipeline);
                    pass.set_bind_group(0, group, &[]);
                    pass.dispatch_workgroups(*x, *y, *z);
                }
            }
            if update {
                encoder.copy_buffer_to_buffer(&pending, 0, &pending_staging, 0, 4);
            }
            encoder.finish()
        };
        let set_row = |row: usize| {
            let value = StepUniform {
                row: if trace { row as u32 } else { 0 },
                pad: [0; 3],
            };
            ctx.queue.write_buffer(&step, 0, bytemuck::bytes_of(&value));
        };

        if let Run::Bare { timed } = run {
            let timestamps = (timed && ctx.features().contains(wgpu::Features::TIMESTAMP_QUERY))
                .then(|| {
                    ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                        label: Some("dam step timestamps"),
                        ty: wgpu::QueryType::Timestamp,
                        count: 2,
                    })
                });
            ctx.queue.submit([encode(true, timestamps.as_ref())]);
            let gpu_ns = match &timestamps {
                None => None,
                Some(query_set) => {
                    let resolved = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("dam timestamps"),
                        size: 16,
                        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                        mapped_at_creation: false,
                    });
                    let mut encoder = ctx.device.create_command_encoder(&Default::default());
                    encoder.resolve_query_set(query_set, 0..2, &resolved, 0);
                    ctx.queue.submit([encoder.finish()]);
                    let ticks: Vec<u64> = read_back(ctx, &resolved, "timestamps")?;
                    let period = ctx.queue.get_timestamp_period() as f64;
                    Some(ticks[1].saturating_sub(ticks[0]) as f64 * period)
                }
            };
            return Ok(BatchOut {
                gpu_ns,
                states: read_back(ctx, &xs, "states")?,
                status: read_back(ctx, &status, "status")?,
                nearest: Vec::new(),
                energy_rows: Vec::new(),
                steps_run: 1,
            });
        }
        let mut steps_run = 0;
        while steps_run < max_steps {
            set_row(steps_run);
            ctx.queue.submit([encode(true, None)]);
            let still_moving = map_read::<u32>(ctx, &pending_staging, "pending")?[0];
            steps_run += 1;
            if still_moving == 0 {
                break;
            }
        }
        set_row(steps_run);
        ctx.queue.submit([encode(false, None)]);

        let energy_rows = read_back::<f32>(ctx, &energy, "energy")?;
        let used_rows = if trace { steps_run + 1 } else { 1 };
        Ok(BatchOut {
            states: read_back(ctx, &xs, "states")?,
            status: read_back(ctx, &status, "status")?,
            nearest: read_back(ctx, &nearest, "nearest")?,
            energy_rows: energy_rows[..used_rows * b as usize].to_vec(),
            steps_run,
            gpu_ns: None,
        })
    }
}
