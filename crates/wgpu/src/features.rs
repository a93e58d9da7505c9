//! Random-feature DAM kernels on the device (`features.wgsl`); the twin of
//! `dam_cpu::features`. Outputs are scaled by the feature normalisation on the host.

use dam_core::features::{FeatureKind, FeatureSpec};
use dam_core::{Error, Result};

use crate::context::WgpuContext;
use crate::exec::{self, Cost, Dispatch, LOOP_BUDGET};
use crate::params::FParams;
use crate::source::Kernel;
use crate::WgpuError;

/// Workgroup size of both `features.wgsl` entry points.
pub(crate) const FEATURES_WG: u32 = 64;

fn params(spec: &FeatureSpec) -> FParams {
    FParams {
        dim: spec.dim as u32,
        freqs: spec.frequencies() as u32,
        features: spec.features as u32,
        rows: 0,
        first_row: 0,
        block: 0,
        kind: (spec.kind == FeatureKind::PositiveExp) as u32,
        beta: spec.beta as f32,
    }
}

/// Rows one `feature_sum` workgroup folds per dispatch (within the loop budget).
fn rows_per_block(spec: &FeatureSpec) -> usize {
    exec::items_per_slice_of_loops(2 * spec.dim as u64 + 8)
}

fn check_budget(spec: &FeatureSpec) -> Result<()> {
    let (n, f) = (spec.dim, spec.frequencies());
    let wg = FEATURES_WG as usize;
    let per_query = (f.div_ceil(wg) * (2 * n + 8) + n.div_ceil(wg) * f) as u64;
    if per_query > LOOP_BUDGET {
        return Err(Error::TooLarge {
            argument: "features (Y) × dim (N) on wgpu",
            size: per_query,
            limit: LOOP_BUDGET,
            detail: "one workgroup evaluates all features of a query in one dispatch".into(),
        });
    }
    Ok(())
}

/// Rows (or queries) per call so that every buffer fits one storage binding and every
/// dispatch stays within the workgroup-count limit; `per_row_floats` is the float count per
/// row of the widest output buffer besides the rows themselves.
fn rows_per_call(ctx: &WgpuContext, spec: &FeatureSpec, per_row_floats: usize) -> Result<usize> {
    let binding = ctx.max_binding_bytes() as usize / 4;
    let omega = spec.frequencies() * spec.dim;
    let widest = spec.dim.max(per_row_floats).max(spec.features);
    if omega > binding || widest > binding {
        return Err(Error::TooLarge {
            argument: "features (Y) × dim (N) on wgpu",
            size: 4 * omega.max(widest) as u64,
            limit: 4 * binding as u64,
            detail: "the frequencies Ω or one row of features must fit one storage binding".into(),
        });
    }
    Ok(exec::items_per_slice(
        ctx,
        Cost {
            bytes: 4 * spec.dim.max(per_row_floats) as u64,
            groups: 1,
            loops: 0,
        },
    ))
}

/// Σ_r φ(row_r) over R×N rows, accumulated per block of rows on the device and in f64 here;
/// rows beyond one binding are summed call by call.
pub fn feature_sum(
    ctx: &WgpuContext,
    spec: &FeatureSpec,
    omega: &[f32],
    rows: &[f32],
) -> Result<Vec<f64>> {
    check_budget(spec)?;
    let per_block = rows_per_block(spec);
    // Partial sums are one row of Y features per block of rows.
    let blocks = (ctx.max_binding_bytes() as usize / 4 / spec.features.max(1)).max(1);
    let chunk = rows_per_call(ctx, spec, 0)?.min(per_block * blocks);
    let mut t = vec![0.0f64; spec.features];
    for part in rows.chunks(chunk * spec.dim) {
        for (a, v) in t.iter_mut().zip(feature_sum_call(ctx, spec, omega, part)?) {
            *a += v;
        }
    }
    Ok(t)
}

fn feature_sum_call(
    ctx: &WgpuContext,
    spec: &FeatureSpec,
    omega: &[f32],
    rows: &[f32],
) -> Result<Vec<f64>> {
    let out = exec::scoped(
        ctx,
        "random-feature sum",
        || -> Result<Vec<f64>, WgpuError> {
            let r = rows.len() / spec.dim;
            let per_block = rows_per_block(spec);
            let blocks = r.div_ceil(per_block).max(1);
            let omega_buf = exec::storage_init(ctx, "dam omega", bytemuck::cast_slice(omega));
            let xs = exec::storage_init(ctx, "dam feature rows", bytemuck::cast_slice(rows));
            let sums = exec::storage(ctx, "dam feature sums", (blocks * spec.features * 4) as u64);
            let pipeline = ctx.pipeline(Kernel::FeatureSum, &[])?;
            let mut list = Vec::with_capacity(blocks);
            for block in 0..blocks {
                let first = block * per_block;
                let p = FParams {
                    rows: per_block.min(r - first) as u32,
                    first_row: first as u32,
                    block: block as u32,
                    ..params(spec)
                };
                let groups = (spec.frequencies() as u32).div_ceil(FEATURES_WG);
                let uniform = exec::uniform(ctx, &p);
                list.push(Dispatch::new(
                    ctx,
                    &pipeline,
                    &[(0, &uniform), (1, &omega_buf), (2, &xs), (3, &sums)],
                    Vec::new(),
                    [groups, 1, 1],
                ));
            }
            let work = exec::commands(ctx, &list);
            let partial: Vec<f32> = exec::read(ctx, vec![work], &sums, "feature sums")?;
            let c = spec.scale();
            let mut t = vec![0.0f64; spec.features];
            for block in partial.chunks(spec.features) {
                for (a, &v) in t.iter_mut().zip(block) {
                    *a += c * v as f64;
                }
            }
            Ok(t)
        },
    )?;
    Ok(out?)
}

/// s(x) = φ(x)·T and ∇s(x) for each of B queries (B×N): (values, gradients B×N); batches
/// beyond one binding or one dispatch are evaluated call by call.
pub fn value_and_grad(
    ctx: &WgpuContext,
    spec: &FeatureSpec,
    omega: &[f32],
    t: &[f64],
    queries: &[f32],
) -> Result<(Vec<f64>, Vec<f64>)> {
    check_budget(spec)?;
    let chunk = rows_per_call(ctx, spec, spec.frequencies())?;
    let (mut values, mut grads) = (Vec::new(), Vec::new());
    for part in queries.chunks(chunk * spec.dim) {
        let (v, g) = value_and_grad_call(ctx, spec, omega, t, part)?;
        values.extend(v);
        grads.extend(g);
    }
    Ok((values, grads))
}

fn value_and_grad_call(
    ctx: &WgpuContext,
    spec: &FeatureSpec,
    omega: &[f32],
    t: &[f64],
    queries: &[f32],
) -> Result<(Vec<f64>, Vec<f64>)> {
    let b = queries.len() / spec.dim;
    let out = exec::scoped(
        ctx,
        "random-feature energy",
        || -> Result<(Vec<f64>, Vec<f64>), WgpuError> {
            let t32: Vec<f32> = t.iter().map(|&v| v as f32).collect();
            let omega_buf = exec::storage_init(ctx, "dam omega", bytemuck::cast_slice(omega));
            let xs = exec::storage_init(ctx, "dam feature queries", bytemuck::cast_slice(queries));
            let weights =
                exec::storage_init(ctx, "dam feature weights", bytemuck::cast_slice(&t32));
            let coefs = exec::storage(
                ctx,
                "dam feature coefs",
                (b * spec.frequencies() * 4) as u64,
            );
            let values = exec::storage(ctx, "dam feature values", (b * 4) as u64);
            let grads = exec::storage(ctx, "dam feature grads", (b * spec.dim * 4) as u64);
            let uniform = exec::uniform(ctx, &params(spec));
            let entries = [
                (0, &uniform),
                (1, &omega_buf),
                (2, &xs),
                (4, &weights),
                (5, &coefs),
                (6, &values),
                (7, &grads),
            ];
            let pipeline = ctx.pipeline(Kernel::FeatureValueGrad, &[])?;
            let list = [Dispatch::new(
                ctx,
                &pipeline,
                &entries,
                Vec::new(),
                [b as u32, 1, 1],
            )];
            let bytes = exec::submit_and_read(
                ctx,
                vec![exec::commands(ctx, &list)],
                &[(&values, "feature values"), (&grads, "feature gradients")],
            )?;
            let c = spec.scale();
            let v: Vec<f32> = exec::cast(&bytes[0]);
            let g: Vec<f32> = exec::cast(&bytes[1]);
            Ok((
                v.iter().map(|&x| c * x as f64).collect(),
                g.iter().map(|&x| c * x as f64).collect(),
            ))
        },
    )?;
    Ok(out?)
}
