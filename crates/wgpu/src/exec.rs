//! The execution layer: every GPU workload (retrieval, procedural streaming, spin
//! dynamics, random features, matrix products) is planned, encoded and read back here.
//!
//! * Planning: [`LOOP_BUDGET`], [`Cost`] and [`items_per_slice`] bound one dispatch by the
//!   storage-binding size, the workgroup-count limit and the loop budget; [`slices`] cuts a
//!   range into such pieces.
//! * Buffers: [`storage`], [`storage_init`], [`uniform`], and a staging buffer kept by the
//!   context and grown geometrically for read-backs.
//! * Encoding: a workload builds a list of [`Dispatch`]es (pipeline, bind group, workgroup
//!   counts) once and [`encode`]s it as one compute pass, as often as it runs.
//! * Read-back: [`submit_and_read`] submits the work and the copies of any number of
//!   buffers together: one submit, one wait.
//! * Errors: [`scoped`] runs device work inside validation and out-of-memory scopes.

use std::ops::Range;
use std::sync::Arc;

use bytemuck::Pod;
use wgpu::util::DeviceExt;

use crate::context::WgpuContext;
use crate::WgpuError;

/// Loop iterations one invocation may run in one dispatch. Mesa's llvmpipe/lavapipe
/// (gallivm) stops every shader invocation after 65,535 loop iterations in total and
/// silently drops the rest of its work, so every workload sizes its dispatches to stay well
/// under this budget (see [`Cost::loops`]).
pub const LOOP_BUDGET: u64 = 40_000;

/// What one item of a sliced workload (a query, a row, a spin, a pattern) costs one
/// dispatch; [`items_per_slice`] turns it into the largest slice that fits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Bytes the item adds to the largest buffer bound in one storage binding (0: none).
    pub bytes: u64,
    /// Workgroups the item adds along one dispatch dimension (0: none).
    pub groups: u64,
    /// Loop iterations the item adds to one invocation (0: none).
    pub loops: u64,
}

/// The most items of `cost` one dispatch may cover: within the context's storage-binding
/// size, its workgroup-count limit per dimension and [`LOOP_BUDGET`]; at least 1.
pub fn items_per_slice(ctx: &WgpuContext, cost: Cost) -> usize {
    // A zero cost puts no limit (checked_div gives None).
    let groups = ctx.limits().max_compute_workgroups_per_dimension as u64;
    [
        ctx.max_binding_bytes().checked_div(cost.bytes),
        groups.checked_div(cost.groups),
        LOOP_BUDGET.checked_div(cost.loops),
    ]
    .into_iter()
    .flatten()
    .fold(u64::MAX, u64::min)
    .clamp(1, usize::MAX as u64) as usize
}

/// Loop iterations of one integer power xⁿ by repeated squaring (`ipow` of math.wgsl: the
/// bit length of n), plus one.
pub fn power_loops(degree: u32) -> u64 {
    (u32::BITS - degree.leading_zeros()) as u64 + 1
}

/// Workgroup counts for `items` workgroups: along x, spilling into y when one dimension
/// is not enough; [`dam_core::Error::TooLarge`] naming `argument` beyond both.
pub fn groups_2d(
    ctx: &WgpuContext,
    items: u64,
    argument: &'static str,
) -> dam_core::Result<[u32; 3]> {
    let max = ctx.limits().max_compute_workgroups_per_dimension as u64;
    let x = items.clamp(1, max);
    let y = items.div_ceil(x).max(1);
    if y > max {
        return Err(dam_core::Error::TooLarge {
            argument,
            size: items,
            limit: max * max,
            detail: "workgroups of one kernel (a 2-D grid)".into(),
        });
    }
    Ok([x as u32, y as u32, 1])
}

/// Items of `loops` loop iterations each that one invocation may run per dispatch.
pub fn items_per_slice_of_loops(loops: u64) -> usize {
    (LOOP_BUDGET / loops.max(1)).max(1) as usize
}

/// `0..total` cut into consecutive ranges of at most `per` items.
pub fn slices(total: usize, per: usize) -> impl Iterator<Item = Range<usize>> {
    let per = per.max(1);
    (0..total)
        .step_by(per)
        .map(move |start| start..(start + per).min(total))
}

/// Runs `f` inside validation and out-of-memory error scopes; a captured error becomes
/// [`WgpuError::Device`] naming `operation`.
pub fn scoped<T>(
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

const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// A zero-initialised storage buffer of `size` bytes (at least 4), readable back and
/// rewritable.
pub fn storage(ctx: &WgpuContext, label: &str, size: u64) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: size.max(4),
        usage: STORAGE_USAGE,
        mapped_at_creation: false,
    })
}

/// A storage buffer initialised with `contents` (readable back and rewritable).
pub fn storage_init(ctx: &WgpuContext, label: &str, contents: &[u8]) -> wgpu::Buffer {
    if contents.is_empty() {
        return storage(ctx, label, 4);
    }
    ctx.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents,
            usage: STORAGE_USAGE,
        })
}

/// A uniform buffer holding `value` (rewritable with `queue.write_buffer`).
pub fn uniform<T: Pod>(ctx: &WgpuContext, value: &T) -> wgpu::Buffer {
    ctx.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("dam uniform"),
            contents: bytemuck::bytes_of(value),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
}

/// A sub-range of a buffer for a bind group entry.
pub fn range(buffer: &wgpu::Buffer, offset: u64, size: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset,
        size: std::num::NonZeroU64::new(size),
    })
}

/// One dispatch of a workload: a pipeline, its bind group (group 0) and workgroup counts.
#[derive(Debug, Clone)]
pub struct Dispatch {
    /// The compiled kernel.
    pub pipeline: Arc<wgpu::ComputePipeline>,
    /// Its resources.
    pub group: wgpu::BindGroup,
    /// Workgroups in x, y, z.
    pub groups: [u32; 3],
}

impl Dispatch {
    /// Binds whole `buffers` at their bindings, plus `ranges` (binding, sub-range), for
    /// `pipeline` and records `groups` workgroups.
    pub fn new(
        ctx: &WgpuContext,
        pipeline: &Arc<wgpu::ComputePipeline>,
        buffers: &[(u32, &wgpu::Buffer)],
        ranges: Vec<(u32, wgpu::BindingResource<'_>)>,
        groups: [u32; 3],
    ) -> Self {
        let mut entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .map(|&(binding, buffer)| wgpu::BindGroupEntry {
                binding,
                resource: buffer.as_entire_binding(),
            })
            .collect();
        entries.extend(
            ranges
                .into_iter()
                .map(|(binding, resource)| wgpu::BindGroupEntry { binding, resource }),
        );
        let group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Self {
            pipeline: pipeline.clone(),
            group,
            groups,
        }
    }
}

/// Encodes `list` as one compute pass into `encoder`; `timestamps`: write the pass's start
/// and end into queries 0 and 1 of that set.
pub fn encode<'a>(
    encoder: &mut wgpu::CommandEncoder,
    list: impl IntoIterator<Item = &'a Dispatch>,
    timestamps: Option<&wgpu::QuerySet>,
) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("dam"),
        timestamp_writes: timestamps.map(|query_set| wgpu::ComputePassTimestampWrites {
            query_set,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        }),
    });
    for d in list {
        pass.set_pipeline(&d.pipeline);
        pass.set_bind_group(0, &d.group, &[]);
        let [x, y, z] = d.groups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// A command buffer holding `list` as one compute pass.
pub fn commands<'a>(
    ctx: &WgpuContext,
    list: impl IntoIterator<Item = &'a Dispatch>,
) -> wgpu::CommandBuffer {
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    encode(&mut encoder, list, None);
    encoder.finish()
}

/// Submits `work` together with copies of `buffers` (buffer, name for errors) into the
/// context's staging buffer — one submit, one wait — and returns each buffer's bytes.
pub fn submit_and_read(
    ctx: &WgpuContext,
    work: Vec<wgpu::CommandBuffer>,
    buffers: &[(&wgpu::Buffer, &'static str)],
) -> Result<Vec<Vec<u8>>, WgpuError> {
    let total: u64 = buffers.iter().map(|(b, _)| b.size()).sum();
    let name = buffers.first().map_or("nothing", |(_, n)| *n);
    let size = total.max(4);
    let staging = ctx.staging(size);
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    let mut offset = 0;
    for (buffer, _) in buffers {
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, offset, buffer.size());
        offset += buffer.size();
    }
    let mut all = work;
    all.push(encoder.finish());
    ctx.queue.submit(all);
    let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
    staging.map_async(wgpu::MapMode::Read, ..size, move |r| {
        sender.send(r).ok();
    });
    let fail = |reason: String| WgpuError::Readback {
        buffer: name,
        reason,
    };
    ctx.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| fail(e.to_string()))?;
    match pollster::block_on(receiver.receive()) {
        Some(Ok(())) => {}
        Some(Err(e)) => return Err(fail(e.to_string())),
        None => return Err(fail("the map callback was dropped (device lost?)".into())),
    }
    let out = {
        let view = staging
            .get_mapped_range(..size)
            .map_err(|e| fail(e.to_string()))?;
        let mut out = Vec::with_capacity(buffers.len());
        let mut at = 0usize;
        for (buffer, _) in buffers {
            let size = buffer.size() as usize;
            out.push(view[at..at + size].to_vec());
            at += size;
        }
        out
    };
    staging.unmap();
    Ok(out)
}

/// Reads one buffer back as `T`s (one submit of `work` and the copy, one wait).
pub fn read<T: Pod>(
    ctx: &WgpuContext,
    work: Vec<wgpu::CommandBuffer>,
    buffer: &wgpu::Buffer,
    name: &'static str,
) -> Result<Vec<T>, WgpuError> {
    let bytes = submit_and_read(ctx, work, &[(buffer, name)])?;
    Ok(cast(&bytes[0]))
}

/// Bytes read back, as `T`s.
pub fn cast<T: Pod>(bytes: &[u8]) -> Vec<T> {
    bytemuck::pod_collect_to_vec(bytes)
}
