//! The classifier of `dam_core::learn` on the device: its two matrix products
//! (s = X · visible(Ξ)ᵀ forward, X-weighted gradient A · X backward) run on the generic tiled
//! matrix product ([`crate::matmul`]); the F/F′/tanh epilogues between them are the shared
//! ones of `dam_core::learn`, on the host. Tested against the CPU reference
//! (`tests/learn.rs`).

use dam_core::learn::{label_rows, ClassifierModel};
use dam_core::{Error, Result};
use ndarray::{Array2, ArrayView2};

use crate::context::WgpuContext;
use crate::matmul::{self, MatMul};

fn shapes(
    model: &ClassifierModel,
    memories: ArrayView2<'_, f32>,
    images: ArrayView2<'_, f32>,
) -> Result<(usize, usize, usize)> {
    let (k, width) = memories.dim();
    let (b, n) = images.dim();
    if width != n + model.classes || k == 0 || b == 0 || n == 0 {
        return Err(Error::DimensionMismatch {
            argument: "memories (K × (N + C)) against images (B × N)",
            expected: n + model.classes,
            actual: width,
        });
    }
    for (what, v) in [("K", k), ("B", b), ("N + C", width)] {
        if v > u32::MAX as usize {
            return Err(Error::TooLarge {
                argument: "classifier size",
                size: v as u64,
                limit: u32::MAX as u64,
                detail: format!("{what} is indexed in 32 bits on the device"),
            });
        }
    }
    Ok((k, n, b))
}

/// s = X · visible(Ξ)ᵀ (B × K) on the device, and the memories' label rows.
fn similarities(
    ctx: &WgpuContext,
    model: &ClassifierModel,
    memories: ArrayView2<'_, f32>,
    images: ArrayView2<'_, f32>,
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let (k, n, b) = shapes(model, memories, images)?;
    let mem = memories.as_standard_layout();
    let x = images.as_standard_layout();
    let mem = mem.as_slice().expect("standard layout");
    let spec = MatMul {
        ldb: (n + model.classes) as u32,
        ..MatMul::plain(b as u32, k as u32, n as u32, false, true)
    };
    let (s, _) = matmul::run(
        ctx,
        &spec,
        x.as_slice().expect("standard layout"),
        mem,
        None,
    )?;
    let (xs, ls) = label_rows(mem, n + model.classes, model);
    Ok((s, xs, ls))
}

/// The label outputs c (B × C).
pub fn outputs(
    ctx: &WgpuContext,
    model: &ClassifierModel,
    memories: ArrayView2<'_, f32>,
    images: ArrayView2<'_, f32>,
) -> Result<Array2<f64>> {
    let (k, b, c) = (memories.nrows(), images.nrows(), model.classes);
    let (s, xs, ls) = similarities(ctx, model, memories, images)?;
    let mut z = vec![0.0f64; b * c];
    model.accumulate_z(&s, k, &xs, &ls, &mut z);
    Ok(Array2::from_shape_vec((b, c), z)
        .expect("B × C")
        .mapv(f64::tanh))
}

/// The batch loss and its gradient with respect to the memories (K × (N + C), f32).
pub fn loss_and_gradient(
    ctx: &WgpuContext,
    model: &ClassifierModel,
    memories: ArrayView2<'_, f32>,
    images: ArrayView2<'_, f32>,
    labels: &[usize],
) -> Result<(f64, Array2<f32>)> {
    let (k, n, b) = shapes(model, memories, images)?;
    let c = model.classes;
    if labels.len() != b {
        return Err(Error::DimensionMismatch {
            argument: "labels (one per image)",
            expected: b,
            actual: labels.len(),
        });
    }
    let (s, xs, ls) = similarities(ctx, model, memories, images)?;
    let mut z = vec![0.0f64; b * c];
    model.accumulate_z(&s, k, &xs, &ls, &mut z);
    let (loss, g) = model.loss_and_output_gradient(&z, labels);
    let mut a = vec![0.0f32; k * b];
    let mut lab = vec![0.0f64; k * c];
    model.backward_epilogue(&s, k, &xs, &ls, &g, &mut a, &mut lab);
    let x = images.as_standard_layout();
    let spec = MatMul::plain(k as u32, n as u32, b as u32, false, false);
    let (visible, _) = matmul::run(ctx, &spec, &a, x.as_slice().expect("standard layout"), None)?;
    let mut grad = Array2::<f32>::zeros((k, n + c));
    for j in 0..k {
        let sum: f64 = a[j * b..(j + 1) * b].iter().map(|&v| v as f64).sum();
        for i in 0..n {
            grad[[j, i]] = visible[j * n + i];
        }
        for al in 0..c {
            grad[[j, n + al]] = (lab[j * c + al] - sum) as f32;
        }
    }
    Ok((loss, grad))
}
