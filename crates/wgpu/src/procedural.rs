//! Streaming log-sum-exp over procedural patterns on the device (`procedural.wgsl`).

use bytemuck::{Pod, Zeroable};
use dam_core::procedural::{key_of, PatternKind, StreamRequest, StreamStats};
use dam_core::{Error, Result};

use crate::context::WgpuContext;
use crate::retriever::{read_back, scoped};
use crate::source::Kernel;

/// Mirrors `PParams` in `shaders/procedural.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct PParams {
    batch: u32,
    dim: u32,
    kind: u32,
    tile_rows: u32,
    split_len: u32,
    splits: u32,
    base_lo: u32,
    base_hi: u32,
    wave_len: u32,
    beta: f32,
    pad: [u32; 2],
}

/// Mirrors `PStat`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct PStat {
    m: f32,
    l: f32,
    best_s: f32,
    best_lo: u32,
    best_hi: u32,
    pad: [u32; 3],
}

const WG: u64 = 64;
/// Workgroup memory for one tile of generated patterns (floats), as in the shader.
const SHARED: usize = 4096;
/// Loop iterations one invocation may run per dispatch (llvmpipe stops at 65,535).
const LOOP_BUDGET: u64 = 40_000;
/// Most splits (workgroups per query) in one wave.
const MAX_SPLITS: u64 = 4096;

/// Largest N the GPU procedural kernel supports (one generated pattern per invocation must
/// fit in workgroup memory).
pub const MAX_PROCEDURAL_DIM: usize = SHARED;

fn kind_code(kind: PatternKind) -> u32 {
    match kind {
        PatternKind::Spherical => 0,
        PatternKind::Gaussian => 1,
        PatternKind::Binary => 2,
    }
}

/// Runs a [`StreamRequest`] on the device — the GPU twin of
/// `dam_cpu::procedural::stream_dot`.
pub fn stream_dot(ctx: &WgpuContext, request: &StreamRequest<'_>) -> Result<Vec<StreamStats>> {
    let StreamRequest {
        dim,
        queries,
        seeds,
        ..
    } = *request;
    let b = seeds.len();
    if queries.len() != b * dim || b == 0 || dim == 0 {
        return Err(Error::DimensionMismatch {
            argument: "queries (B×N for B seeds)",
            expected: b * dim,
            actual: queries.len(),
        });
    }
    if dim > MAX_PROCEDURAL_DIM {
        return Err(Error::TooLarge {
            argument: "dim (N) of procedural patterns on wgpu",
            size: dim as u64,
            limit: MAX_PROCEDURAL_DIM as u64,
            detail: "one generated pattern must fit in workgroup memory".into(),
        });
    }
    let max_groups = ctx.limits().max_compute_workgroups_per_dimension as usize;
    if b > max_groups {
        return Err(Error::TooLarge {
            argument: "queries (B) per procedural stream",
            size: b as u64,
            limit: max_groups as u64,
            detail: "one workgroup row per query".into(),
        });
    }
    let out = scoped(ctx, "procedural stream", || run(ctx, request))?;
    Ok(out?)
}

fn run(
    ctx: &WgpuContext,
    request: &StreamRequest<'_>,
) -> Result<Vec<StreamStats>, crate::WgpuError> {
    let StreamRequest {
        kind,
        dim,
        start,
        end,
        beta,
        queries,
        seeds,
    } = *request;
    let device = &ctx.device;
    let b = seeds.len() as u64;
    let n = dim as u64;
    let tile_rows = (SHARED as u64 / n).clamp(1, WG);
    // Loop iterations per tile for one invocation: generating and scoring its pattern
    // (≈ 10 rounds per 4 entries, plus norm and dot), the tile max and sum, and its share
    // of the weighted rows.
    let per_tile = 4 * n + 3 * tile_rows + tile_rows * n.div_ceil(WG) + 16;
    let split_len = (LOOP_BUDGET / per_tile).max(1) * tile_rows;
    let splits_cap = (8192 / b).clamp(1, MAX_SPLITS);

    let usage =
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let init = |label: &str, contents: &[u8]| ctx.storage_init(label, contents);
    let xs = init("dam procedural queries", bytemuck::cast_slice(queries));
    let keys: Vec<[u32; 2]> = seeds.iter().map(|&s| key_of(s)).collect();
    let keys = init("dam procedural keys", bytemuck::cast_slice(&keys));
    let empty = PStat {
        m: -f32::MAX,
        l: 0.0,
        best_s: -f32::MAX,
        best_lo: u32::MAX,
        best_hi: u32::MAX,
        pad: [0; 3],
    };
    let run_stats = init(
        "dam procedural running stats",
        bytemuck::cast_slice(&vec![empty; b as usize]),
    );
    let run_accs = init(
        "dam procedural running sums",
        bytemuck::cast_slice(&vec![0f32; (b * n) as usize]),
    );
    let stats = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("dam procedural stats"),
        size: b * splits_cap * std::mem::size_of::<PStat>() as u64,
        usage,
        mapped_at_creation: false,
    });
    let accs = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("dam procedural partial sums"),
        size: b * splits_cap * n * 4,
        usage,
        mapped_at_creation: false,
    });
    let params = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("dam procedural params"),
        size: std::mem::size_of::<PParams>() as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let partial = ctx.pipeline(Kernel::ProceduralPartial, &[])?;
    let fold = ctx.pipeline(Kernel::ProceduralFold, &[])?;
    let bind = |pipeline: &wgpu::ComputePipeline, entries: &[(u32, &wgpu::Buffer)]| {
        ctx.bind_group(pipeline, entries, Vec::new())
    };
    let partial_group = bind(
        &partial,
        &[(0, &params), (1, &xs), (2, &keys), (3, &stats), (4, &accs)],
    );
    let fold_group = bind(
        &fold,
        &[
            (0, &params),
            (3, &stats),
            (4, &accs),
            (5, &run_stats),
            (6, &run_accs),
        ],
    );

    let mut base = start;
    while base < end {
        let splits = (end - base).div_ceil(split_len).min(splits_cap);
        let wave_len = (splits * split_len).min(end - base);
        let p = PParams {
            batch: b as u32,
            dim: n as u32,
            kind: kind_code(kind),
            tile_rows: tile_rows as u32,
            split_len: split_len as u32,
            splits: splits as u32,
            base_lo: base as u32,
            base_hi: (base >> 32) as u32,
            wave_len: wave_len as u32,
            beta,
            pad: [0; 2],
        };
        ctx.queue.write_buffer(&params, 0, bytemuck::bytes_of(&p));
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&partial);
            pass.set_bind_group(0, &partial_group, &[]);
            pass.dispatch_workgroups(splits as u32, b as u32, 1);
            pass.set_pipeline(&fold);
            pass.set_bind_group(0, &fold_group, &[]);
            pass.dispatch_workgroups(b as u32, 1, 1);
        }
        ctx.queue.submit([encoder.finish()]);
        base += wave_len;
    }
    let stats: Vec<PStat> = read_back(ctx, &run_stats, "procedural stats")?;
    let accs: Vec<f32> = read_back(ctx, &run_accs, "procedural sums")?;
    Ok(stats
        .iter()
        .enumerate()
        .map(|(q, st)| {
            let best_i = if st.best_lo == u32::MAX && st.best_hi == u32::MAX {
                u64::MAX
            } else {
                st.best_lo as u64 | (st.best_hi as u64) << 32
            };
            StreamStats {
                m: if st.l == 0.0 {
                    f64::NEG_INFINITY
                } else {
                    st.m as f64
                },
                l: st.l as f64,
                acc: accs[q * dim..(q + 1) * dim]
                    .iter()
                    .map(|&v| v as f64)
                    .collect(),
                best_s: st.best_s as f64,
                best_i,
            }
        })
        .collect())
}
