//! Streaming log-sum-exp over procedural patterns on the device (`procedural.wgsl`).

use bytemuck::Zeroable;
use dam_core::procedural::{key_of, PatternKind, StreamRequest, StreamStats};
use dam_core::{Error, Result};

use crate::context::WgpuContext;
use crate::exec::{self, Cost, Dispatch};
use crate::params::{PParams, PStat};
use crate::source::Kernel;

/// Workgroup size of `procedural.wgsl` (`partial` and `fold`), and the most patterns of one
/// tile.
pub(crate) const PROCEDURAL_WG: u32 = 64;
/// Workgroup memory for one tile of generated patterns (floats), as in the shader.
pub(crate) const SHARED: usize = 4096;
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
        PatternKind::Correlated { .. } => 3,
    }
}

/// Runs a [`StreamRequest`] on the device — the GPU twin of
/// `dam_cpu::procedural::stream_dot` — for any number of queries.
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
    // One workgroup row per query; batches beyond the dispatch limit (and beyond 4,096,
    // which bounds the partials' memory) are streamed slice by slice.
    let per = exec::items_per_slice(
        ctx,
        Cost {
            groups: 1,
            bytes: 4 * dim as u64,
            loops: 0,
        },
    )
    .min(MAX_QUERIES);
    let mut out = Vec::with_capacity(b);
    for range in exec::slices(b, per) {
        let part = StreamRequest {
            queries: &queries[range.start * dim..range.end * dim],
            seeds: &seeds[range.clone()],
            ..*request
        };
        out.extend(exec::scoped(ctx, "procedural stream", || run(ctx, &part))??);
    }
    Ok(out)
}

/// Most queries streamed together.
const MAX_QUERIES: usize = 4096;

fn run(
    ctx: &WgpuContext,
    request: &StreamRequest<'_>,
) -> Result<Vec<StreamStats>, crate::WgpuError> {
    let (kind, dim, start, end, beta) = (
        request.kind,
        request.dim,
        request.start,
        request.end,
        request.beta,
    );
    let (queries, seeds) = (request.queries, request.seeds);
    let b = seeds.len() as u64;
    let n = dim as u64;
    let wg = PROCEDURAL_WG as u64;
    let tile_rows = (SHARED as u64 / n).clamp(1, wg);
    // Loop iterations per tile for one invocation: generating and scoring its pattern
    // (≈ 10 rounds per 4 entries, plus norm and dot), the tile max and sum, and its share
    // of the weighted rows.
    let per_tile = 4 * n + 3 * tile_rows + tile_rows * n.div_ceil(wg) + 16;
    let split_len = exec::items_per_slice_of_loops(per_tile) as u64 * tile_rows;
    let splits_cap = (8192 / b).clamp(1, MAX_SPLITS);

    let init = |label: &str, contents: &[u8]| exec::storage_init(ctx, label, contents);
    let xs = init("dam procedural queries", bytemuck::cast_slice(queries));
    let keys: Vec<[u32; 2]> = seeds.iter().map(|&s| key_of(s)).collect();
    let keys = init("dam procedural keys", bytemuck::cast_slice(&keys));
    let empty = PStat {
        m: -f32::MAX,
        l: 0.0,
        best_s: -f32::MAX,
        best_lo: u32::MAX,
        best_hi: u32::MAX,
        pad0: 0,
        pad1: 0,
        pad2: 0,
    };
    let run_stats = init(
        "dam procedural running stats",
        bytemuck::cast_slice(&vec![empty; b as usize]),
    );
    let run_accs = exec::storage(ctx, "dam procedural running sums", b * n * 4);
    let stats = exec::storage(
        ctx,
        "dam procedural stats",
        b * splits_cap * std::mem::size_of::<PStat>() as u64,
    );
    let accs = exec::storage(ctx, "dam procedural partial sums", b * splits_cap * n * 4);
    let params = exec::uniform(ctx, &PParams::zeroed());
    let partial = ctx.pipeline(Kernel::ProceduralPartial, &[])?;
    let fold = ctx.pipeline(Kernel::ProceduralFold, &[])?;
    // One wave: partials over its splits, then their fold into the running state; the
    // list is built once and only the parameters change between waves.
    let mut wave = [
        Dispatch::new(
            ctx,
            &partial,
            &[(0, &params), (1, &xs), (2, &keys), (3, &stats), (4, &accs)],
            Vec::new(),
            [1, b as u32, 1],
        ),
        Dispatch::new(
            ctx,
            &fold,
            &[
                (0, &params),
                (3, &stats),
                (4, &accs),
                (5, &run_stats),
                (6, &run_accs),
            ],
            Vec::new(),
            [b as u32, 1, 1],
        ),
    ];

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
            share: match kind {
                PatternKind::Correlated { share } => share,
                _ => 0,
            },
            pad1: 0,
        };
        ctx.queue.write_buffer(&params, 0, bytemuck::bytes_of(&p));
        wave[0].groups[0] = splits as u32;
        ctx.queue.submit([exec::commands(ctx, &wave)]);
        base += wave_len;
    }
    let bytes = exec::submit_and_read(
        ctx,
        Vec::new(),
        &[
            (&run_stats, "procedural stats"),
            (&run_accs, "procedural sums"),
        ],
    )?;
    let stats: Vec<PStat> = exec::cast(&bytes[0]);
    let accs: Vec<f32> = exec::cast(&bytes[1]);
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
                relu: None,
            }
        })
        .collect())
}
