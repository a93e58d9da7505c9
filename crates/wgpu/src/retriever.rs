//! Stored patterns on the device and the retrieval loop.

use std::sync::Arc;

use dam_core::{
    validate_queries, Config, Error, Patterns, Projection, Result, RetrievalResult, SearchResult,
    Separation, Storage, TopK,
};
use ndarray::{s, Array2, ArrayView2};

use crate::context::WgpuContext;
use crate::exec::{self, Cost, Dispatch};
use crate::matmul::{Epilogue, MatMul, MAX_K_SLICE, TILE};
use crate::params::{Params, RowParams, Stat, StepUniform};
use crate::source::{similarity_code, Kernel};
use crate::WgpuError;

// Workgroup sizes of the retrieval kernels, as declared in their WGSL files (checked by
// `source::tests`).
/// Side of the square workgroup of `similarity.wgsl`, and the queries and patterns of one
/// tile.
pub(crate) const SIM_TILE: u32 = 16;
/// Workgroup size of `weighted_sum.wgsl` (one invocation per coordinate).
pub(crate) const SUM_WG: u32 = 64;
/// Workgroup size of `stream.wgsl` (`partial` and `merge`), and the patterns of one tile.
pub(crate) const STREAM_WG: u32 = 64;
/// Workgroup size of `separation.wgsl` and `entmax.wgsl` (one workgroup per query).
pub(crate) const SEPARATION_WG: u32 = 256;
/// Halvings of the threshold's bracket in `entmax.wgsl` (`BISECTIONS` there).
pub(crate) const ENTMAX_BISECTIONS: u32 = 40;
/// Exact refinements of the sparsemax threshold in `entmax.wgsl` (`REFINES` there).
pub(crate) const ENTMAX_REFINES: u32 = 3;

/// Loop iterations of one `entmax.wgsl` invocation for `p` patterns of dimension `n`:
/// the passes over the row (the maximum, each halving, each refinement or the
/// normalisation, the weights), the workgroup reductions after each, and the norm.
const fn entmax_loops(p: u64, n: u64) -> u64 {
    let wg = SEPARATION_WG as u64;
    let passes = 3 + ENTMAX_BISECTIONS as u64 + ENTMAX_REFINES as u64;
    let reduction = SEPARATION_WG.trailing_zeros() as u64;
    passes * p.div_ceil(wg) + (passes + 1) * reduction + n.div_ceil(wg)
}
/// Workgroup size of `finalize.wgsl` (one workgroup per query).
pub(crate) const FINALIZE_WG: u32 = 64;
/// Workgroup size of `softmax_rows.wgsl` (one workgroup per row).
pub(crate) const SOFTMAX_ROWS_WG: u32 = 64;
/// Patterns `weighted_sum.wgsl` sums in one block before adding the block to its total
/// (`BLOCK` there).
pub(crate) const SUM_BLOCK: u64 = 256;
/// Most queries per streaming workgroup (two groups of vec4 lanes in `stream.wgsl`).
const STREAM_QT: u32 = 8;

/// Queries per streaming workgroup for a batch of `batch` (the `LANES` constant).
fn lanes(batch: u32) -> u32 {
    batch.clamp(1, STREAM_QT)
}
/// Aim for about this many streaming workgroups per step, so that a small batch still
/// spreads over the whole device (split over the pattern axis, merged after).
const TARGET_WORKGROUPS: u32 = 1024;
/// Most patterns one dispatch covers, derived from [`exec::LOOP_BUDGET`]. Two kernels loop
/// over a block's rows in one invocation: the weighted sum, one iteration per pattern plus
/// one per [`SUM_BLOCK`] ([`weighted_sum_loops`]), and the matrix-product path's Y = W·Ξ,
/// whose contraction over the block fits one dispatch up to [`MAX_K_SLICE`]
/// (`LOOP_BUDGET / LOOPS_PER_TILE · TK`). MAX_BLOCK_ROWS is the largest power of two within
/// both bounds; a power of two, so that block offsets (multiples of MAX_BLOCK_ROWS rows of
/// at least 4 bytes) meet any storage-offset alignment. With `LOOP_BUDGET` = 40,000 the
/// matrix product is the tighter bound (32,000 rows), which gives 16,384. Streaming splits
/// are sized within the same budget; short splits also spread the work over more
/// workgroups.
const MAX_BLOCK_ROWS: usize = max_block_rows();

/// Loop iterations of one `weighted_sum.wgsl` invocation over a block of `rows` patterns:
/// one per pattern, one per [`SUM_BLOCK`] of them, and the four query lanes' stores.
const fn weighted_sum_loops(rows: u64) -> u64 {
    rows + rows.div_ceil(SUM_BLOCK) + 4
}

/// [`MAX_BLOCK_ROWS`]: the largest power of two of rows within both loop bounds.
const fn max_block_rows() -> usize {
    let mut rows: u64 = 1;
    while 2 * rows <= MAX_K_SLICE && weighted_sum_loops(2 * rows) <= exec::LOOP_BUDGET {
        rows *= 2;
    }
    rows as usize
}
/// Bytes of one `Stat` in `stream.wgsl`.
const STAT_BYTES: u64 = std::mem::size_of::<Stat>() as u64;

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
    config: Config,
    count: usize,
    dim: usize,
    storage: Storage,
    row_bytes: u64,
    /// Rows one pattern buffer holds at most (one storage binding).
    rows_per_chunk: usize,
    /// Pattern buffers: rows `i · rows_per_chunk ..` live in buffer `i`; every buffer but
    /// the last is full, the last may have spare capacity.
    buffers: Vec<wgpu::Buffer>,
    blocks: Vec<Block>,
    workspaces: std::sync::Mutex<Vec<Workspace>>,
    /// The host copy of the stored patterns.
    patterns: Arc<Patterns>,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    batch: u32,
    split_len: u32,
    splits_total: u32,
    /// The update runs on the generic matrix product (materialised B×P scores) instead of
    /// the streaming kernel.
    gemm: bool,
}

impl Plan {
    /// The row ranges `start..end` of `total` queries, `batch` at a time.
    fn slices(&self, total: usize) -> impl Iterator<Item = (usize, usize)> {
        exec::slices(total, self.batch as usize).map(|r| (r.start, r.end))
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
        Self::shared(ctx, Arc::new(patterns.clone()), config, storage)
    }

    /// [`WgpuRetriever::with_storage`] on patterns the caller shares: the retriever keeps
    /// them as its host copy (what [`WgpuRetriever::patterns`] returns and what edits
    /// update) without copying them. With [`Storage::F16`] they are rounded first unless
    /// every entry already is a half.
    pub fn shared(
        ctx: Arc<WgpuContext>,
        patterns: Arc<Patterns>,
        config: Config,
        storage: Storage,
    ) -> Result<Self> {
        config.validate(patterns.count())?;
        let patterns = match storage {
            Storage::F16
                if patterns
                    .as_slice()
                    .iter()
                    .any(|&v| half::f16::from_f32(v).to_f32() != v) =>
            {
                Arc::new(patterns.rounded_to_f16()?)
            }
            _ => patterns,
        };
        let dim = patterns.dim();
        let row_words = match storage {
            Storage::F32 => dim,
            Storage::F16 => dim.div_ceil(2),
        };
        let row_bytes = row_words as u64 * 4;
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
        let mut retriever = Self {
            ctx,
            config,
            count: 0,
            dim,
            storage,
            row_bytes,
            rows_per_chunk,
            buffers: Vec::new(),
            blocks: Vec::new(),
            workspaces: std::sync::Mutex::new(Vec::new()),
            patterns,
        };
        retriever.resize(retriever.patterns.count(), false)?;
        retriever.upload(0..retriever.count)?;
        Ok(retriever)
    }

    /// The stored patterns (the host copy of what the device holds; rounded to f16 with
    /// [`Storage::F16`]).
    pub fn patterns(&self) -> &Patterns {
        &self.patterns
    }

    /// Applies `edit` to the stored patterns on the host and on the device, without
    /// rebuilding: appended rows go into spare capacity (each pattern buffer grows
    /// geometrically, up to one binding, then a new buffer starts); removal shifts the
    /// later rows down and rewrites them; a replaced row is rewritten alone. Checked before
    /// anything changes (the configuration must stay valid for the new count).
    pub fn edit(&mut self, edit: dam_core::Edit<'_>) -> Result<()> {
        self.config.validate(edit.count_after(self.count))?;
        let changed = Arc::make_mut(&mut self.patterns).apply(edit, self.storage)?;
        self.resize(self.patterns.count(), true)?;
        self.upload(changed)?;
        self.workspaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(())
    }

    /// Makes the pattern buffers hold `count` rows: the buffers needed grow geometrically
    /// (copying what they held when `keep`), buffers no longer needed are released, and
    /// the dispatch blocks are laid out again.
    fn resize(&mut self, count: usize, keep: bool) -> Result<()> {
        let rpc = self.rows_per_chunk;
        let chunks = count.div_ceil(rpc);
        let ctx = self.ctx.clone();
        exec::scoped(&ctx, "growing the pattern buffers", || {
            let mut copies = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("dam pattern growth"),
                });
            self.buffers.truncate(chunks);
            for i in 0..chunks {
                let rows = rpc.min(count - i * rpc) as u64;
                let held = self.buffers.get(i).map_or(0, |b| b.size() / self.row_bytes);
                if held >= rows {
                    continue;
                }
                let capacity = if held == 0 { rows } else { rows.max(2 * held) }.min(rpc as u64);
                let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("dam patterns"),
                    size: capacity * self.row_bytes,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_DST
                        | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                match self.buffers.get_mut(i) {
                    Some(old) => {
                        if keep {
                            copies.copy_buffer_to_buffer(old, 0, &buffer, 0, old.size());
                        }
                        *old = buffer;
                    }
                    None => self.buffers.push(buffer),
                }
            }
            ctx.queue.submit([copies.finish()]);
        })?;
        self.count = count;
        self.blocks.clear();
        for i in 0..chunks {
            let chunk_rows = rpc.min(count - i * rpc);
            // Block offsets are multiples of MAX_BLOCK_ROWS · 4 bytes, so they meet any
            // storage-offset alignment (≤ 256 bytes).
            for start in (0..chunk_rows).step_by(MAX_BLOCK_ROWS) {
                self.blocks.push(Block {
                    buffer: i,
                    offset: start as u64 * self.row_bytes,
                    base: (i * rpc + start) as u32,
                    rows: MAX_BLOCK_ROWS.min(chunk_rows - start) as u32,
                });
            }
        }
        Ok(())
    }

    /// Writes rows `rows` of the host copy into the pattern buffers (as f32, or as pairs
    /// of halves per word for f16).
    fn upload(&self, rows: std::ops::Range<usize>) -> Result<()> {
        let rpc = self.rows_per_chunk;
        let view = self.patterns.view();
        exec::scoped(&self.ctx, "uploading stored patterns", || {
            let mut start = rows.start;
            while start < rows.end {
                let chunk = start / rpc;
                let end = rows.end.min((chunk + 1) * rpc);
                let part = view.slice(s![start..end, ..]);
                let offset = (start - chunk * rpc) as u64 * self.row_bytes;
                let buffer = &self.buffers[chunk];
                match self.storage {
                    Storage::F32 => {
                        let part = part.as_slice().expect("standard layout");
                        self.ctx
                            .queue
                            .write_buffer(buffer, offset, bytemuck::cast_slice(part));
                    }
                    Storage::F16 => {
                        let words = self.row_bytes as usize / 4;
                        let packed: Vec<u32> = part
                            .rows()
                            .into_iter()
                            .flat_map(|row| {
                                let half = move |i: usize| {
                                    row.get(i)
                                        .map_or(0, |&v| half::f16::from_f32(v).to_bits() as u32)
                                };
                                (0..words).map(move |w| half(2 * w) | (half(2 * w + 1) << 16))
                            })
                            .collect();
                        self.ctx
                            .queue
                            .write_buffer(buffer, offset, bytemuck::cast_slice(&packed));
                    }
                }
                start = end;
            }
        })?;
        Ok(())
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
        exec::range(
            &self.buffers[block.buffer],
            block.offset,
            block.rows as u64 * self.row_bytes,
        )
    }

    fn streamed(&self) -> bool {
        matches!(
            self.config.separation,
            Separation::Softmax { .. } | Separation::Exponential { .. }
        )
    }

    fn beta(&self) -> f32 {
        match self.config.separation {
            Separation::Softmax { beta }
            | Separation::Exponential { beta }
            | Separation::LogSumRelu { beta, .. }
            | Separation::Entmax { beta, .. } => beta,
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
        let max_tiles = exec::items_per_slice_of_loops(per_tile) as u64;
        let split_len = (p.div_ceil(target).div_ceil(STREAM_WG as u64) * STREAM_WG as u64)
            .min(max_tiles * STREAM_WG as u64);
        let split_len = split_len.min(u32::MAX as u64) as u32;
        let total = self.blocks.iter().map(|c| c.rows.div_ceil(split_len)).sum();
        (split_len, total)
    }

    /// Largest batch whose scratch buffers each fit in one binding; `bare`: a single
    /// update (which may run on the matrix product, see [`WgpuContext::gemm_for`]).
    fn plan(&self, batch: usize, trace_rows: u64, bare: bool) -> Result<Plan> {
        let limit = self.ctx.max_binding_bytes();
        let mut b = exec::items_per_slice(
            &self.ctx,
            Cost {
                groups: 1,
                ..Cost::default()
            },
        )
        .min(batch)
        .max(1) as u32;
        let gemm = bare
            && matches!(self.config.separation, Separation::Softmax { .. })
            && self.dim as u64 <= crate::matmul::MAX_K_SLICE
            && self.ctx.gemm_for(batch);
        loop {
            let (split_len, splits_total) = self.splits_for(b);
            let n = self.dim as u64;
            let mut sizes = vec![b as u64 * n * 4, trace_rows * b as u64 * 4];
            if gemm {
                sizes.push(b as u64 * self.count as u64 * 4);
                sizes.push(b as u64 * self.score_tiles() as u64 * 8);
            } else if self.streamed() {
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
                    gemm,
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

    /// Exact top-k search (see [`dam_core::Backend::search`]): the similarities of each
    /// block of patterns on the generic matrix product ([`WgpuRetriever::similarity_blocks`]),
    /// offered to each query's [`TopK`] on the host.
    pub fn search(&self, queries: ArrayView2<'_, f32>, k: usize) -> Result<SearchResult> {
        let width = dam_core::search::search_width(k, self.count)?;
        let mut tops: Vec<TopK> = (0..queries.nrows()).map(|_| TopK::new(k)).collect();
        self.similarity_blocks(queries, |q, base, scores| {
            let top = &mut tops[q];
            let mut threshold = top.threshold();
            for (j, &v) in scores.iter().enumerate() {
                if v > threshold {
                    top.push(base as u64 + j as u64, v);
                    threshold = top.threshold();
                }
            }
        })?;
        Ok(SearchResult::from_selections(tops, width))
    }

    /// s(ξ^μ, x) for each query and every stored pattern (B×P; f32 sums on the device).
    pub fn similarities(&self, queries: ArrayView2<'_, f32>) -> Result<Array2<f64>> {
        let mut out = Array2::<f64>::zeros((queries.nrows(), self.count));
        self.similarity_blocks(queries, |q, base, scores| {
            let mut row = out.row_mut(q);
            for (j, &v) in scores.iter().enumerate() {
                row[base + j] = v as f64;
            }
        })?;
        Ok(out)
    }

    /// Checks `queries` for similarities alone, then computes S = s(X, Ξ_b) for each block
    /// of patterns on the generic matrix product, in passes of queries that fit one binding,
    /// and hands each query's row of each block to `visit(query, first row, scores)` (one
    /// submit and wait per block).
    fn similarity_blocks(
        &self,
        queries: ArrayView2<'_, f32>,
        mut visit: impl FnMut(usize, usize, &[f32]),
    ) -> Result<()> {
        validate_queries(queries, self.dim)?;
        let plain = Config {
            separation: Separation::Max,
            ..self.config
        };
        self.patterns.norm_bounds().check(&plain, queries)?;
        let ctx = &self.ctx;
        let n = self.dim as u32;
        let loader = ctx.loader(self.storage);
        let block_rows = self.blocks.iter().map(|b| b.rows as u64).max().unwrap_or(1);
        let limit = ctx.max_binding_bytes();
        let per_pass = (limit / (block_rows * 4))
            .min(limit / (n as u64 * 4))
            .clamp(1, 1024) as usize;
        for range in exec::slices(queries.nrows(), per_pass) {
            let chunk = queries.slice(s![range.clone(), ..]);
            let b = chunk.nrows() as u32;
            let owned = chunk.as_standard_layout();
            let xs = exec::storage_init(
                ctx,
                "dam similarity queries",
                bytemuck::cast_slice(owned.as_slice().expect("standard layout")),
            );
            let scores = exec::storage(ctx, "dam similarities", b as u64 * block_rows * 4);
            for block in &self.blocks {
                let product = MatMul {
                    similarity: self.config.similarity,
                    ..MatMul::plain(b, block.rows, n, false, true)
                };
                let list = product.dispatches(
                    ctx,
                    loader,
                    xs.as_entire_binding(),
                    self.block_binding(block),
                    &scores,
                    None,
                )?;
                let read: Vec<f32> = exec::read(
                    ctx,
                    vec![exec::commands(ctx, &list)],
                    &scores,
                    "similarities",
                )?;
                let rows = block.rows as usize;
                for q in 0..b as usize {
                    visit(
                        range.start + q,
                        block.base as usize,
                        &read[q * rows..(q + 1) * rows],
                    );
                }
            }
        }
        Ok(())
    }

    /// The entmax separations: a weight needs the threshold τ of the state's whole row of
    /// similarities. Where a row of P scores fits one storage binding and the kernel's
    /// loops fit [`exec::LOOP_BUDGET`] ([`WgpuRetriever::entmax_on_device`]), everything
    /// runs on the device like the other separations over a full row: the similarities,
    /// τ, the weights and the energy in f32 (`entmax.wgsl`: τ by bisection, made exact at
    /// α = 2), the weighted sum Σ p_μ ξ^μ (`weighted_sum.wgsl`, which skips zero weights),
    /// the projection and convergence (`finalize.wgsl`), step after step without reading
    /// the scores back. Otherwise only the similarities run on the device
    /// ([`WgpuRetriever::similarities`]); τ, the weights and the energy are taken on the
    /// host in f64 by `dam_core::entmax`, the one definition the CPU backends use, and
    /// the weighted sum on the host in f64.
    fn entmax(&self) -> Option<(f64, f64)> {
        match self.config.separation {
            Separation::Entmax { beta, alpha } => Some((beta as f64, alpha as f64)),
            _ => None,
        }
    }

    /// For the entmax separations (sparsemax, α-entmax): whether the threshold, the
    /// weights, the weighted sum and the energy run on the device (in f32, `entmax.wgsl`),
    /// so that a retrieval stays on the device step after step. That needs one row of P
    /// f32 scores to fit one storage binding and one invocation of the kernel to stay
    /// within [`exec::LOOP_BUDGET`] (P up to about 220,000 at N ≤ 256). Otherwise (and
    /// `false` for every other separation) only the similarities run on the device and
    /// the weights, the weighted sum and the energy are taken on the host in f64 with
    /// `dam_core::entmax`.
    pub fn entmax_on_device(&self) -> bool {
        let p = self.count as u64;
        self.entmax().is_some()
            && p * 4 <= self.ctx.max_binding_bytes()
            && entmax_loops(p, self.dim as u64) <= exec::LOOP_BUDGET
    }

    /// The host path of the entmax separations: whether this retriever takes the entmax
    /// weights on the host ([`WgpuRetriever::entmax`]).
    fn entmax_on_host(&self) -> bool {
        self.entmax().is_some() && !self.entmax_on_device()
    }

    /// One entmax update of each (validated) state on the host path: proj(Σ_μ p_μ ξ^μ)
    /// from the device's similarities ([`WgpuRetriever::entmax`]).
    fn entmax_step(
        &self,
        queries: ArrayView2<'_, f32>,
        beta: f64,
        alpha: f64,
    ) -> Result<Array2<f32>> {
        let mut out = Array2::<f32>::zeros(queries.dim());
        let mut q = 0;
        dam_core::backend::similarity_rows(self, queries, |scores| {
            let w = dam_core::entmax::weights(beta, alpha, scores);
            let mut acc = vec![0.0f64; self.dim];
            for (row, &wm) in self.patterns.view().rows().into_iter().zip(&w) {
                if wm != 0.0 {
                    acc.iter_mut()
                        .zip(row)
                        .for_each(|(a, &x)| *a += wm * x as f64);
                }
            }
            self.config.projection.apply(&mut acc);
            out.row_mut(q)
                .iter_mut()
                .zip(&acc)
                .for_each(|(o, &a)| *o = a as f32);
            q += 1;
        })?;
        match dam_core::backend::first_non_finite(out.view()) {
            Some(q) => Err(Error::state_overflow(q, 1)),
            None => Ok(out),
        }
    }

    /// Runs the configured dynamics from each query (B×N).
    pub fn retrieve(&self, queries: ArrayView2<'_, f32>) -> Result<RetrievalResult> {
        validate_queries(queries, self.dim)?;
        self.patterns.norm_bounds().check(&self.config, queries)?;
        if self.entmax_on_host() {
            // The loop of the other backends on this one's evaluate (device similarities,
            // host weights: [`WgpuRetriever::entmax`]).
            return Ok(dam_core::dynamics::run(&self.config, queries, &[], |x, u| {
                dam_core::Backend::evaluate(self, x, u)
            })?
            .with_confidence(&self.config, &self.patterns));
        }
        let (max_steps, _) = self.config.dynamics.budget();
        let trace = self.config.energy_trace;
        let rows = if trace { max_steps as u64 + 1 } else { 1 };
        let plan = self.plan(queries.nrows(), rows, false)?;
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
        Ok(RetrievalResult::new(
            states,
            steps,
            converged,
            nearest,
            energy,
            trace.then_some(traces),
            None,
        )
        .with_confidence(&self.config, &self.patterns))
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
        self.patterns.norm_bounds().check(&self.config, queries)?;
        if let Some((beta, alpha)) = self.entmax().filter(|_| self.entmax_on_host()) {
            return Ok((self.entmax_step(queries, beta, alpha)?, None));
        }
        let plan = self.plan(queries.nrows(), 1, true)?;
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
        self.patterns.norm_bounds().check(&self.config, states)?;
        if self.entmax_on_host() {
            let mut out = Vec::with_capacity(states.nrows());
            let mut q = 0;
            dam_core::backend::similarity_rows(self, states, |scores| {
                let x = states.row(q).to_vec();
                out.push(dam_core::weights::energy(
                    self.config.separation,
                    scores,
                    &x,
                ));
                q += 1;
            })?;
            return out
                .into_iter()
                .enumerate()
                .map(|(q, e)| dam_core::checked_energy(self.config.separation, e, q, 0))
                .collect();
        }
        let plan = self.plan(states.nrows(), 1, false)?;
        let mut out = Vec::with_capacity(states.nrows());
        for (start, end) in plan.slices(states.nrows()) {
            let batch = self.run_batch(states.slice(s![start..end, ..]), Run::Steps(0), plan)?;
            for (q, &raw) in batch.energy_rows.iter().enumerate() {
                out.push(self.energy_value(raw, start + q, 0)?);
            }
        }
        Ok(out)
    }

    /// Converts a kernel's energy output to the energy (exponential: −e^{lse} in f64;
    /// log-sum-ReLU: −β⁻¹ log(Σ + ε) in f64 from the sum Σ of the kernels, +∞ for an empty
    /// support), with the range rule of [`dam_core::checked_energy`].
    fn energy_value(&self, raw: f32, query: usize, steps: usize) -> Result<f64> {
        let e = match self.config.separation {
            Separation::Exponential { .. } => -(raw as f64).exp(),
            Separation::LogSumRelu { beta, eps } => {
                dam_core::weights::log_sum_relu_energy(beta as f64, eps as f64, raw as f64)
            }
            _ => raw as f64,
        };
        dam_core::checked_energy(self.config.separation, e, query, steps)
    }

    /// Column tiles of the matrix-product scores over all blocks (softmax partials per row).
    fn score_tiles(&self) -> u32 {
        self.blocks.iter().map(|c| c.rows.div_ceil(TILE)).sum()
    }

    /// The dispatch of `kernel` with `buffers`, the block of patterns `block` at binding 1
    /// where given, and `groups` workgroups.
    fn dispatch(
        &self,
        pipeline: &Arc<wgpu::ComputePipeline>,
        buffers: &[(u32, &wgpu::Buffer)],
        block: Option<&Block>,
        groups: [u32; 3],
    ) -> Dispatch {
        let ranges = block
            .map(|block| (1, self.block_binding(block)))
            .into_iter()
            .collect();
        Dispatch::new(&self.ctx, pipeline, buffers, ranges, groups)
    }

    /// Runs `run` for one batch entirely on the device, on the cached workspace of its
    /// shape (built on first use); `Run::Steps` reads back one `u32` per step.
    fn run_batch(&self, queries: ArrayView2<'_, f32>, run: Run, plan: Plan) -> Result<BatchOut> {
        let ctx = &*self.ctx;
        let trace = self.config.energy_trace && matches!(run, Run::Steps(_));
        let rows = match run {
            Run::Steps(max_steps) if trace => max_steps as u64 + 1,
            _ => 1,
        };
        let key = (queries.nrows() as u32, rows, plan);
        let mut cache = self.workspaces.lock().unwrap_or_else(|p| p.into_inner());
        let at = match cache.iter().position(|w| w.key == key) {
            Some(at) => at,
            None => {
                let ws = exec::scoped(ctx, "preparing a retrieval batch", || self.workspace(key))??;
                if cache.len() >= WORKSPACES {
                    cache.remove(0);
                }
                cache.push(ws);
                cache.len() - 1
            }
        };
        let ws = &cache[at];
        let out = exec::scoped(ctx, "retrieval", || self.execute(ws, queries, run, trace))?;
        Ok(out?)
    }

    /// The buffers and dispatch lists of one batch shape `key` = (queries, energy rows,
    /// plan).
    fn workspace(&self, key: WorkspaceKey) -> Result<Workspace> {
        let ctx = &*self.ctx;
        let (b, rows, plan) = key;
        let gemm = plan.gemm;
        let n = self.dim as u32;
        let p = self.count as u32;
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
        let loader = ctx.loader(self.storage);
        let storage = |label: &str, size: u64| exec::storage(ctx, label, size);

        let xs = storage("dam states", b as u64 * n as u64 * 4);
        let status = storage("dam status", b as u64 * 16);
        let ys = storage("dam update", b as u64 * n as u64 * 4);
        let log_scale = storage("dam log scale", b as u64 * 4);
        let pending = storage("dam pending", 4);
        let energy = storage("dam energy", rows * b as u64 * 4);
        let nearest = storage("dam nearest", b as u64 * 4);
        // Log-sum-ReLU: the size of each query's support (separation.wgsl → finalize.wgsl).
        let support = storage("dam support", b as u64 * 4);
        let global = exec::uniform(ctx, &base);
        let step = exec::uniform(
            ctx,
            &StepUniform {
                row: 0,
                pad: [0; 3],
            },
        );
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
                    exec::uniform(ctx, &params)
                })
                .collect()
        };

        // Dispatches of one step: the evaluation (similarities, separation; energy and
        // nearest) and the accumulation of the update (weighted sums, projection).
        let mut evaluate: Vec<Dispatch> = Vec::new();
        let mut accumulate: Vec<Dispatch> = Vec::new();
        let max_groups = ctx.limits().max_compute_workgroups_per_dimension;
        let clear_ys = gemm || !self.streamed();

        if gemm {
            // S = β·X·Ξᵀ with online-softmax partials, softmax of each row in place,
            // Y = W·Ξ accumulated block by block.
            let tiles = self.score_tiles();
            let scores = storage("dam scores", b as u64 * p as u64 * 4);
            let stats = storage("dam score partials", b as u64 * tiles as u64 * 8);
            let lse = storage("dam lse", b as u64 * 4);
            let mut tile0 = 0;
            for block in &self.blocks {
                let product = MatMul {
                    m: b,
                    n: block.rows,
                    k: n,
                    trans_b: true,
                    lda: n,
                    ldb: n,
                    ldc: p,
                    c_col0: block.base,
                    stat_col0: tile0,
                    stat_ld: tiles,
                    alpha: self.beta(),
                    similarity: self.config.similarity,
                    epilogue: Epilogue::SoftmaxPartials,
                    ..MatMul::plain(b, block.rows, n, false, true)
                };
                evaluate.extend(product.dispatches(
                    ctx,
                    loader,
                    xs.as_entire_binding(),
                    self.block_binding(block),
                    &scores,
                    Some(&stats),
                )?);
                tile0 += block.rows.div_ceil(TILE);
            }
            let softmax = ctx.pipeline(Kernel::SoftmaxRows, &[])?;
            let row_params = exec::uniform(
                ctx,
                &RowParams {
                    rows: b,
                    cols: p,
                    ldc: p,
                    tiles,
                },
            );
            evaluate.push(self.dispatch(
                &softmax,
                &[(0, &row_params), (1, &scores), (2, &stats), (3, &lse)],
                None,
                [b, 1, 1],
            ));
            for block in &self.blocks {
                let product = MatMul {
                    lda: p,
                    a_off: block.base,
                    epilogue: Epilogue::Scale { accumulate: true },
                    ..MatMul::plain(b, n, block.rows, false, false)
                };
                accumulate.extend(product.dispatches(
                    ctx,
                    loader,
                    scores.as_entire_binding(),
                    self.block_binding(block),
                    &ys,
                    None,
                )?);
            }
        } else if self.streamed() {
            let mode = match self.config.separation {
                Separation::Exponential { .. } => 1,
                _ => 0,
            };
            let splits = plan.splits_total as u64;
            let stats = storage("dam stats", b as u64 * splits * STAT_BYTES);
            let accs = storage("dam partial sums", b as u64 * splits * n as u64 * 4);
            let staged = ctx.stage_patterns(lanes(b));
            // WG rows of WG + 1 floats (`STAGE_STRIDE` in the shader).
            let stage_floats = if staged {
                STREAM_WG * (STREAM_WG + 1)
            } else {
                1
            };
            let partial = ctx.pipeline_with(
                Kernel::StreamPartial,
                loader,
                &[
                    sim,
                    ("LANES", lanes(b)),
                    ("GROUPS", lanes(b).div_ceil(4)),
                    ("STAGED", staged as u32),
                    ("STAGE_FLOATS", stage_floats),
                ],
            )?;
            for (c, params) in self.blocks.iter().zip(&chunk_params) {
                evaluate.push(self.dispatch(
                    &partial,
                    &[(0, params), (2, &xs), (3, &stats), (4, &accs)],
                    Some(c),
                    [c.rows.div_ceil(plan.split_len), b.div_ceil(lanes(b)), 1],
                ));
            }
            let merge = ctx.pipeline(Kernel::StreamMerge, &[sim, ("MODE", mode)])?;
            evaluate.push(self.dispatch(
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
                [b, 1, 1],
            ));
        } else {
            let scores = storage("dam scores", b as u64 * p as u64 * 4);
            let similarity = ctx.pipeline_with(Kernel::Similarity, loader, &[sim])?;
            for (c, params) in self.blocks.iter().zip(&chunk_params) {
                let tiles = c.rows.div_ceil(SIM_TILE);
                let gx = tiles.min(max_groups);
                evaluate.push(self.dispatch(
                    &similarity,
                    &[(0, params), (2, &xs), (3, &scores)],
                    Some(c),
                    [gx, tiles.div_ceil(gx), b.div_ceil(SIM_TILE)],
                ));
            }
            if let Separation::Entmax { alpha, .. } = self.config.separation {
                let entmax = ctx.pipeline(Kernel::Entmax, &[("ALPHA_BITS", alpha.to_bits())])?;
                evaluate.push(self.dispatch(
                    &entmax,
                    &[
                        (0, &global),
                        (1, &scores),
                        (2, &step),
                        (3, &energy),
                        (4, &nearest),
                        (5, &xs),
                    ],
                    None,
                    [b, 1, 1],
                ));
            } else {
                let sep = match self.config.separation {
                    Separation::Polynomial { .. } => 0,
                    Separation::RectifiedPolynomial { .. } => 1,
                    Separation::LogSumRelu { .. } => 3,
                    _ => 2,
                };
                let separation = ctx.pipeline(Kernel::Separation, &[("SEP", sep)])?;
                evaluate.push(self.dispatch(
                    &separation,
                    &[
                        (0, &global),
                        (1, &scores),
                        (2, &step),
                        (3, &energy),
                        (4, &nearest),
                        (5, &support),
                    ],
                    None,
                    [b, 1, 1],
                ));
            }
            let weighted = ctx.pipeline_with(Kernel::WeightedSum, loader, &[])?;
            for (c, params) in self.blocks.iter().zip(&chunk_params) {
                accumulate.push(self.dispatch(
                    &weighted,
                    &[(0, params), (2, &scores), (3, &ys)],
                    Some(c),
                    [n.div_ceil(SUM_WG), b.div_ceil(4), 1],
                ));
            }
        }
        let lsr = matches!(self.config.separation, Separation::LogSumRelu { .. });
        let finalize = ctx.pipeline(
            Kernel::Finalize,
            &[
                ("PROJ", projection_code(self.config.projection)),
                ("LSR", lsr as u32),
            ],
        )?;
        accumulate.push(self.dispatch(
            &finalize,
            &[
                (0, &global),
                (1, &ys),
                (2, &xs),
                (3, &log_scale),
                (4, &status),
                (5, &pending),
                (6, &support),
            ],
            None,
            [b, 1, 1],
        ));
        Ok(Workspace {
            key,
            xs,
            status,
            ys,
            pending,
            energy,
            nearest,
            step,
            evaluate,
            accumulate,
            clear_ys,
        })
    }

    /// Runs one batch on its workspace: uploads the queries, then one submit per step
    /// (reading back the count of queries still moving) and one submit and wait for all
    /// results; or, for `Run::Bare`, one submit and wait in all.
    fn execute(
        &self,
        ws: &Workspace,
        queries: ArrayView2<'_, f32>,
        run: Run,
        trace: bool,
    ) -> Result<BatchOut, WgpuError> {
        let ctx = &*self.ctx;
        let b = queries.nrows();
        let upload: Vec<f32>;
        let x_data: &[f32] = match queries.as_slice() {
            Some(data) => data,
            None => {
                upload = queries.iter().copied().collect();
                &upload
            }
        };
        ctx.queue
            .write_buffer(&ws.xs, 0, bytemuck::cast_slice(x_data));
        let status_init: Vec<u32> = (0..b).flat_map(|_| [1u32, 0, 0, 0]).collect();
        ctx.queue
            .write_buffer(&ws.status, 0, bytemuck::cast_slice(&status_init));
        let encode = |update: bool, timestamps: Option<&wgpu::QuerySet>| {
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            if update {
                encoder.clear_buffer(&ws.pending, 0, None);
                if ws.clear_ys {
                    encoder.clear_buffer(&ws.ys, 0, None);
                }
            }
            let list = ws
                .evaluate
                .iter()
                .chain(ws.accumulate.iter().filter(|_| update));
            exec::encode(&mut encoder, list, timestamps);
            encoder
        };
        let set_row = |row: usize| {
            let value = StepUniform {
                row: if trace { row as u32 } else { 0 },
                pad: [0; 3],
            };
            ctx.queue
                .write_buffer(&ws.step, 0, bytemuck::bytes_of(&value));
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
            let mut encoder = encode(true, timestamps.as_ref());
            let resolved = timestamps.as_ref().map(|query_set| {
                let resolved = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("dam timestamps"),
                    size: 16,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                encoder.resolve_query_set(query_set, 0..2, &resolved, 0);
                resolved
            });
            let mut reads = vec![(&ws.xs, "states"), (&ws.status, "status")];
            if let Some(r) = &resolved {
                reads.push((r, "timestamps"));
            }
            let bytes = exec::submit_and_read(ctx, vec![encoder.finish()], &reads)?;
            let gpu_ns = bytes.get(2).map(|raw| {
                let ticks: Vec<u64> = exec::cast(raw);
                let period = ctx.queue.get_timestamp_period() as f64;
                ticks[1].saturating_sub(ticks[0]) as f64 * period
            });
            return Ok(BatchOut {
                gpu_ns,
                states: exec::cast(&bytes[0]),
                status: exec::cast(&bytes[1]),
                nearest: Vec::new(),
                energy_rows: Vec::new(),
                steps_run: 1,
            });
        }
        let max_steps = match run {
            Run::Steps(m) => m,
            Run::Bare { .. } => 1,
        };
        let mut steps_run = 0;
        while steps_run < max_steps {
            set_row(steps_run);
            let work = encode(true, None).finish();
            let still_moving: Vec<u32> = exec::read(ctx, vec![work], &ws.pending, "pending")?;
            steps_run += 1;
            if still_moving[0] == 0 {
                break;
            }
        }
        set_row(steps_run);
        let bytes = exec::submit_and_read(
            ctx,
            vec![encode(false, None).finish()],
            &[
                (&ws.energy, "energy"),
                (&ws.xs, "states"),
                (&ws.status, "status"),
                (&ws.nearest, "nearest"),
            ],
        )?;
        let mut energy_rows: Vec<f32> = exec::cast(&bytes[0]);
        let used_rows = if trace { steps_run + 1 } else { 1 };
        energy_rows.truncate(used_rows * b);
        Ok(BatchOut {
            states: exec::cast(&bytes[1]),
            status: exec::cast(&bytes[2]),
            nearest: exec::cast(&bytes[3]),
            energy_rows,
            steps_run,
            gpu_ns: None,
        })
    }
}

impl dam_core::Backend for WgpuRetriever {
    fn config(&self) -> &Config {
        &self.config
    }

    fn retrieve(&self, queries: ArrayView2<'_, f32>) -> Result<RetrievalResult> {
        WgpuRetriever::retrieve(self, queries)
    }

    fn step(&self, queries: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        WgpuRetriever::step(self, queries)
    }

    fn step_timed(&self, queries: ArrayView2<'_, f32>) -> Result<(Array2<f32>, Option<f64>)> {
        WgpuRetriever::step_timed(self, queries)
    }

    fn energy(&self, states: ArrayView2<'_, f32>) -> Result<Vec<f64>> {
        WgpuRetriever::energy(self, states)
    }

    fn describe(&self) -> String {
        format!("wgpu: {}", self.ctx.describe())
    }

    fn search(&self, queries: ArrayView2<'_, f32>, k: usize) -> Result<SearchResult> {
        WgpuRetriever::search(self, queries, k)
    }

    fn similarities(&self, queries: ArrayView2<'_, f32>) -> Result<Array2<f64>> {
        WgpuRetriever::similarities(self, queries)
    }

    fn patterns(&self) -> &Patterns {
        &self.patterns
    }

    fn edit(&mut self, edit: dam_core::Edit<'_>) -> Result<()> {
        WgpuRetriever::edit(self, edit)
    }
}

/// Workspaces kept per retriever (the shapes of a full batch slice and of the last one).
const WORKSPACES: usize = 2;

/// Device buffers and dispatch lists for one batch shape, built once and reused by every
/// call of that shape (bind groups keep the other scratch buffers alive).
/// What a workspace is built for: (queries in the batch, energy-trace rows, plan).
type WorkspaceKey = (u32, u64, Plan);

struct Workspace {
    key: WorkspaceKey,
    xs: wgpu::Buffer,
    status: wgpu::Buffer,
    ys: wgpu::Buffer,
    pending: wgpu::Buffer,
    energy: wgpu::Buffer,
    nearest: wgpu::Buffer,
    step: wgpu::Buffer,
    evaluate: Vec<Dispatch>,
    accumulate: Vec<Dispatch>,
    clear_ys: bool,
}

#[cfg(test)]
mod tests {
    use super::{entmax_loops, weighted_sum_loops, MAX_BLOCK_ROWS};
    use crate::exec::LOOP_BUDGET;
    use crate::matmul::MAX_K_SLICE;

    /// MAX_BLOCK_ROWS is the largest power of two of rows within the loop budget of both
    /// kernels that loop over a block, and its block offsets meet the largest
    /// storage-offset alignment WebGPU allows (256 bytes) for rows of 4 bytes.
    #[test]
    fn max_block_rows_is_derived_from_the_loop_budget() {
        let fits = |rows: u64| rows <= MAX_K_SLICE && weighted_sum_loops(rows) <= LOOP_BUDGET;
        let rows = MAX_BLOCK_ROWS as u64;
        assert!(rows.is_power_of_two());
        assert!(fits(rows));
        assert!(!fits(2 * rows));
        assert_eq!(rows * 4 % 256, 0);
    }

    /// The entmax kernel's loop count grows with the row: about 220,000 patterns fit the
    /// loop budget (the bound `entmax_on_device` documents), 230,000 do not.
    #[test]
    fn entmax_rows_within_the_loop_budget() {
        assert!(entmax_loops(220_000, 256) <= LOOP_BUDGET);
        assert!(entmax_loops(230_000, 1) > LOOP_BUDGET);
        assert!(entmax_loops(2_001, 65) < entmax_loops(2_002 + 256, 65));
    }

    /// `entmax.wgsl` on rows no public call can give it (queries and β·s are checked
    /// first): a NaN or +∞ score makes every weight and the energy NaN, as
    /// `dam_core::entmax` makes the weights (the finalize pass then reports the state as
    /// overflowed); a −∞ score gets weight 0 and leaves the others as without it; a row of
    /// −∞ only is NaN on the device (the host spreads its weight evenly with an infinite
    /// energy, which is an error there too).
    #[test]
    fn entmax_kernel_on_non_finite_scores() {
        use crate::exec::{self, Dispatch};
        use crate::params::{Params, StepUniform};
        use crate::source::Kernel;
        use crate::{WgpuContext, WgpuOptions};
        use bytemuck::Zeroable;

        let ctx = WgpuContext::shared(&WgpuOptions::default()).unwrap_or_else(|e| {
            panic!("the kernel tests need a wgpu adapter (e.g. Mesa lavapipe): {e}")
        });
        let (inf, nan) = (f32::INFINITY, f32::NAN);
        let rows: [[f32; 3]; 5] = [
            [0.5, nan, 0.1],
            [inf, 0.0, 0.0],
            [-inf, 0.5, 0.3],
            [-inf, -inf, -inf],
            [0.3, 0.5, -0.5],
        ];
        let (b, p) = (rows.len() as u32, 3u32);
        let scores_in: Vec<f32> = rows.iter().flatten().copied().collect();
        let xs_in = vec![1.0f32; (b * p) as usize];
        let params = Params {
            batch: b,
            dim: p,
            p_total: p,
            beta: 1.0,
            ..Params::zeroed()
        };
        let scores = exec::storage_init(&ctx, "scores", bytemuck::cast_slice(&scores_in));
        let xs = exec::storage_init(&ctx, "states", bytemuck::cast_slice(&xs_in));
        let energy = exec::storage(&ctx, "energy", b as u64 * 4);
        let nearest = exec::storage(&ctx, "nearest", b as u64 * 4);
        let (global, step) = (
            exec::uniform(&ctx, &params),
            exec::uniform(&ctx, &StepUniform::zeroed()),
        );
        let pipeline = ctx
            .pipeline(Kernel::Entmax, &[("ALPHA_BITS", 2.0f32.to_bits())])
            .expect("pipeline");
        let dispatch = Dispatch::new(
            &ctx,
            &pipeline,
            &[
                (0, &global),
                (1, &scores),
                (2, &step),
                (3, &energy),
                (4, &nearest),
                (5, &xs),
            ],
            Vec::new(),
            [b, 1, 1],
        );
        let bytes = exec::submit_and_read(
            &ctx,
            vec![exec::commands(&ctx, [&dispatch])],
            &[
                (&scores, "weights"),
                (&energy, "energy"),
                (&nearest, "nearest"),
            ],
        )
        .expect("run");
        let (w, e, near): (Vec<f32>, Vec<f32>, Vec<u32>) = (
            exec::cast(&bytes[0]),
            exec::cast(&bytes[1]),
            exec::cast(&bytes[2]),
        );
        assert_eq!((w.len(), e.len(), near.len()), (15, 5, 5));
        for q in [0, 1, 3] {
            assert!(
                w[3 * q..3 * q + 3].iter().all(|v| v.is_nan()),
                "row {q}: {w:?}"
            );
            assert!(e[q].is_nan(), "row {q}: energy {}", e[q]);
            let host = dam_core::entmax::entmax(2.0, &rows[q].map(f64::from));
            assert_eq!(
                host.weights.iter().all(|v| v.is_nan()),
                q != 3,
                "row {q}: the host's weights {:?}",
                host.weights
            );
        }
        // s = (−∞, 0.5, 0.3) and (0.3, 0.5, −0.5): p = (0, 0.6, 0.4) and (0.4, 0.6, 0);
        // E = −Ψ* + ½‖x‖² with Ψ* = 0.5·0.6 + 0.3·0.4 + (1 − 0.36 − 0.16)/2 = 0.66.
        let expected_energy = -0.66 + 1.5;
        for (q, expected) in [(2, [0.0, 0.6, 0.4]), (4, [0.4, 0.6, 0.0])] {
            for (j, &v) in expected.iter().enumerate() {
                assert!((w[3 * q + j] - v).abs() < 1e-6, "row {q}: {w:?}");
            }
            assert_eq!(near[q], 1, "row {q}: nearest");
            assert!(
                (e[q] - expected_energy).abs() < 1e-6,
                "row {q}: energy {}",
                e[q]
            );
        }
    }
}
