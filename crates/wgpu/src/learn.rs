//! The classifier of `dam_core::learn` on the device. Per minibatch, one submit of one
//! compute pass, nothing read back:
//!
//! 1. `learn.rows`: the memories' label rows in units of T;
//! 2. s = X · visible(Ξ)ᵀ (B × K) on the generic tiled matrix product ([`crate::matmul`]);
//! 3. `learn.forward` / `learn.loss`: the F epilogue per memory chunk, then tanh, the loss
//!    terms and the output gradient h;
//! 4. `learn.backward` / `learn.label_grad`: the F′ epilogue A (K × B) and the label
//!    gradient;
//! 5. the visible gradient A · X, the second matrix product, written into the gradient;
//! 6. `learn.update`: momentum, the per-memory normalised step and clipping.
//!
//! The memories and the velocity stay on the device for a whole epoch ([`Trainer`]); the
//! loss terms of every sample are kept and summed on the host at the end. Kernels are in
//! `shaders/learn.wgsl`; [`loss_and_gradient`] and [`outputs`] run steps 1–5 once and are
//! tested against the CPU reference (`tests/learn.rs`).

use dam_core::learn::ClassifierModel;
use dam_core::{Error, Result};
use ndarray::{Array2, ArrayView2};

use crate::context::WgpuContext;
use crate::exec::{self, power_loops, Dispatch, LOOP_BUDGET};
use crate::matmul::MatMul;
use crate::params::LearnParams;
use crate::source::{Kernel, Loader};

/// Workgroup size of every `learn.wgsl` entry point.
pub(crate) const LEARN_WG: u64 = 64;

fn too_large(argument: &'static str, size: u64, limit: u64, detail: &str) -> Error {
    Error::TooLarge {
        argument,
        size,
        limit,
        detail: detail.into(),
    }
}

/// Checks the sizes the device can run; returns (memories per forward chunk, chunks).
fn plan(model: &ClassifierModel, k: usize, n: usize, batch: usize) -> Result<(u32, u32)> {
    let width = n + model.classes;
    for (what, v) in [("K × (N + C)", k * width), ("B × K", batch * k)] {
        if v as u64 > u32::MAX as u64 {
            return Err(too_large(
                "classifier size",
                v as u64,
                u32::MAX as u64,
                &format!("{what} is indexed in 32 bits on the device"),
            ));
        }
    }
    let f_loops = power_loops(model.degree);
    let chunk = (LOOP_BUDGET / (2 * f_loops + 1)).clamp(1, 256);
    let chunks = (k as u64).div_ceil(chunk);
    if chunks > LOOP_BUDGET / 2 {
        return Err(too_large(
            "memories (K)",
            k as u64,
            chunk * LOOP_BUDGET / 2,
            "the loss kernel sums one partial per chunk of memories",
        ));
    }
    let per_sample = f_loops + 1;
    if batch as u64 * per_sample > LOOP_BUDGET {
        return Err(too_large(
            "batch",
            batch as u64,
            LOOP_BUDGET / per_sample,
            "the label-gradient kernel loops over the samples of a batch",
        ));
    }
    if (model.loss_power as u64) * 2 > 126 {
        return Err(too_large(
            "loss power (m)",
            model.loss_power as u64,
            63,
            "(c − t)^{2m} is evaluated in f32 on the device",
        ));
    }
    Ok((chunk as u32, chunks as u32))
}

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
    Ok((k, n, b))
}

/// Which dispatch list: (batch size, work).
type ListKey = (usize, Work);

/// The device buffers of one classifier and its batches (sized for the largest batch).
struct Buffers {
    memories: wgpu::Buffer,
    velocity: wgpu::Buffer,
    grad: wgpu::Buffer,
    xs: wgpu::Buffer,
    ls: wgpu::Buffer,
    s: wgpu::Buffer,
    zpart: wgpu::Buffer,
    labels: wgpu::Buffer,
    h: wgpu::Buffer,
    losses: wgpu::Buffer,
    outc: wgpu::Buffer,
    amat: wgpu::Buffer,
    x: wgpu::Buffer,
    uniform: wgpu::Buffer,
}

/// A classifier's memories (and optimiser state) resident on the device.
struct Session<'a> {
    ctx: &'a WgpuContext,
    model: ClassifierModel,
    k: usize,
    n: usize,
    max_batch: usize,
    chunk: u32,
    chunks: u32,
    buf: Buffers,
    /// Dispatch lists already built, by (batch size, work): the bind groups and the
    /// matrix products' shapes depend on nothing else (parameters go through
    /// `buf.uniform`), so an epoch builds at most two (full and last batch).
    lists: std::cell::RefCell<Vec<(ListKey, Vec<Dispatch>)>>,
}

/// What a batch runs: the forward pass only, the gradient, or a whole training step.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Work {
    Outputs,
    Gradient,
    Step,
}

impl<'a> Session<'a> {
    fn new(
        ctx: &'a WgpuContext,
        model: &ClassifierModel,
        memories: ArrayView2<'_, f32>,
        velocity: Option<ArrayView2<'_, f32>>,
        max_batch: usize,
        samples: usize,
    ) -> Result<Self> {
        model.validate()?;
        let (k, width) = memories.dim();
        let n = width - model.classes;
        let (chunk, chunks) = plan(model, k, n, max_batch)?;
        let c = model.classes;
        let f = |count: usize| count as u64 * 4;
        let mem = memories.as_standard_layout();
        let buf = exec::scoped(ctx, "classifier buffers", || Buffers {
            memories: exec::storage_init(
                ctx,
                "dam learn memories",
                bytemuck::cast_slice(mem.as_slice().expect("standard layout")),
            ),
            velocity: match velocity {
                Some(v) => exec::storage_init(
                    ctx,
                    "dam learn velocity",
                    bytemuck::cast_slice(
                        v.as_standard_layout().as_slice().expect("standard layout"),
                    ),
                ),
                None => exec::storage(ctx, "dam learn velocity", f(k * width)),
            },
            grad: exec::storage(ctx, "dam learn grad", f(k * width)),
            xs: exec::storage(ctx, "dam learn xs", f(k * c)),
            ls: exec::storage(ctx, "dam learn ls", f(k * c)),
            s: exec::storage(ctx, "dam learn s", f(max_batch * k)),
            zpart: exec::storage(ctx, "dam learn zpart", f(chunks as usize * max_batch * c)),
            labels: exec::storage(ctx, "dam learn labels", f(max_batch)),
            h: exec::storage(ctx, "dam learn h", f(max_batch * c)),
            losses: exec::storage(ctx, "dam learn losses", f(samples.max(max_batch) * c)),
            outc: exec::storage(ctx, "dam learn outputs", f(max_batch * c)),
            amat: exec::storage(ctx, "dam learn A", f(k * max_batch)),
            x: exec::storage(ctx, "dam learn images", f(max_batch * n)),
            uniform: exec::uniform(ctx, &LearnParams::default()),
        })?;
        Ok(Self {
            ctx,
            model: *model,
            k,
            n,
            max_batch,
            chunk,
            chunks,
            buf,
            lists: Default::default(),
        })
    }

    fn params(&self, b: usize, loss_off: usize, lr: f32, momentum: f32) -> LearnParams {
        LearnParams {
            b: b as u32,
            k: self.k as u32,
            n: self.n as u32,
            c: self.model.classes as u32,
            chunk: self.chunk,
            chunks: self.chunks,
            degree: self.model.degree,
            rectified: self.model.rectified as u32,
            m2: 2 * self.model.loss_power,
            loss_off: loss_off as u32,
            inv_t: (1.0 / self.model.temperature) as f32,
            lr,
            momentum,
            ..LearnParams::default()
        }
    }

    /// The dispatches of one batch of `b` samples.
    fn dispatches(&self, b: usize, work: Work) -> Result<Vec<Dispatch>> {
        let ctx = self.ctx;
        let (k, n, c) = (self.k, self.n, self.model.classes);
        let width = (n + c) as u32;
        let bf = &self.buf;
        let learn = |kernel: Kernel, bound: &[(u32, &wgpu::Buffer)], groups: [u32; 3]| {
            let pipeline = ctx.pipeline(kernel, &[])?;
            let mut all = vec![(0, &bf.uniform)];
            all.extend_from_slice(bound);
            Ok::<_, Error>(Dispatch::new(ctx, &pipeline, &all, vec![], groups))
        };
        let mut list = vec![learn(
            Kernel::LearnRows,
            &[(1, &bf.memories), (2, &bf.xs), (3, &bf.ls)],
            exec::groups_2d(ctx, (k as u64).div_ceil(LEARN_WG), "classifier size")?,
        )?];
        let forward_mm = MatMul {
            ldb: width,
            ..MatMul::plain(b as u32, k as u32, n as u32, false, true)
        };
        list.extend(forward_mm.dispatches(
            ctx,
            Loader::F32,
            bf.x.as_entire_binding(),
            bf.memories.as_entire_binding(),
            &bf.s,
            None,
        )?);
        let pairs = (b * c) as u64;
        let max = ctx.limits().max_compute_workgroups_per_dimension as u64;
        if pairs.div_ceil(LEARN_WG) > max {
            return Err(too_large(
                "batch",
                b as u64,
                max * LEARN_WG / c as u64,
                "one invocation per (sample, class) of the forward kernel",
            ));
        }
        list.push(learn(
            Kernel::LearnForward,
            &[(2, &bf.xs), (3, &bf.ls), (4, &bf.s), (5, &bf.zpart)],
            [pairs.div_ceil(LEARN_WG) as u32, self.chunks, 1],
        )?);
        list.push(learn(
            Kernel::LearnLoss,
            &[
                (5, &bf.zpart),
                (6, &bf.labels),
                (7, &bf.h),
                (8, &bf.losses),
                (9, &bf.outc),
            ],
            exec::groups_2d(ctx, pairs.div_ceil(LEARN_WG), "classifier size")?,
        )?);
        if work == Work::Outputs {
            return Ok(list);
        }
        if (k as u64).div_ceil(LEARN_WG) > max || b as u64 > max {
            return Err(too_large(
                "memories (K)",
                k as u64,
                max * LEARN_WG,
                "one invocation per (memory, sample) of the backward kernel",
            ));
        }
        list.push(learn(
            Kernel::LearnBackward,
            &[
                (2, &bf.xs),
                (3, &bf.ls),
                (4, &bf.s),
                (7, &bf.h),
                (10, &bf.amat),
            ],
            [(k as u64).div_ceil(LEARN_WG).min(max) as u32, b as u32, 1],
        )?);
        list.push(learn(
            Kernel::LearnLabelGrad,
            &[
                (2, &bf.xs),
                (3, &bf.ls),
                (4, &bf.s),
                (7, &bf.h),
                (10, &bf.amat),
                (11, &bf.grad),
            ],
            exec::groups_2d(ctx, ((k * c) as u64).div_ceil(LEARN_WG), "classifier size")?,
        )?);
        let backward_mm = MatMul {
            ldc: width,
            ..MatMul::plain(k as u32, n as u32, b as u32, false, false)
        };
        list.extend(backward_mm.dispatches(
            ctx,
            Loader::F32,
            bf.amat.as_entire_binding(),
            bf.x.as_entire_binding(),
            &bf.grad,
            None,
        )?);
        if work == Work::Step {
            list.push(learn(
                Kernel::LearnUpdate,
                &[(1, &bf.memories), (11, &bf.grad), (12, &bf.velocity)],
                exec::groups_2d(ctx, k as u64, "classifier size")?,
            )?);
        }
        Ok(list)
    }

    /// Uploads a batch and its parameters and submits its work (no wait).
    fn submit(
        &self,
        images: ArrayView2<'_, f32>,
        labels: Option<&[usize]>,
        params: LearnParams,
        work: Work,
    ) -> Result<()> {
        let b = images.nrows();
        if b == 0 || b > self.max_batch || images.ncols() != self.n {
            return Err(Error::DimensionMismatch {
                argument: "images (B × N) of a batch",
                expected: self.n,
                actual: images.ncols(),
            });
        }
        let x = images.as_standard_layout();
        let q = &self.ctx.queue;
        q.write_buffer(
            &self.buf.x,
            0,
            bytemuck::cast_slice(x.as_slice().expect("standard layout")),
        );
        let labels: Vec<u32> = match labels {
            Some(l) => l.iter().map(|&v| v as u32).collect(),
            None => vec![0; b],
        };
        q.write_buffer(&self.buf.labels, 0, bytemuck::cast_slice(&labels));
        q.write_buffer(&self.buf.uniform, 0, bytemuck::bytes_of(&params));
        let mut lists = self.lists.borrow_mut();
        let at = match lists.iter().position(|(key, _)| *key == (b, work)) {
            Some(at) => at,
            None => {
                lists.push(((b, work), self.dispatches(b, work)?));
                lists.len() - 1
            }
        };
        q.submit([exec::commands(self.ctx, &lists[at].1)]);
        Ok(())
    }

    fn read(&self, buffers: &[(&wgpu::Buffer, &'static str)]) -> Result<Vec<Vec<f32>>> {
        let bytes = exec::submit_and_read(self.ctx, vec![], buffers)?;
        Ok(bytes.iter().map(|b| exec::cast(b)).collect())
    }
}

/// Samples per pass of [`outputs`] (the memories are uploaded once for all passes).
const OUTPUT_BLOCK: usize = 1024;

/// The label outputs c (B × C), in passes of 1,024 samples.
pub fn outputs(
    ctx: &WgpuContext,
    model: &ClassifierModel,
    memories: ArrayView2<'_, f32>,
    images: ArrayView2<'_, f32>,
) -> Result<Array2<f64>> {
    let (_, _, b) = shapes(model, memories, images)?;
    let block = b.min(OUTPUT_BLOCK);
    let session = Session::new(ctx, model, memories, None, block, block)?;
    let c = model.classes;
    let mut out = Array2::zeros((b, c));
    for start in (0..b).step_by(block) {
        let rows = images.slice(ndarray::s![start..(start + block).min(b), ..]);
        let params = session.params(rows.nrows(), 0, 0.0, 0.0);
        exec::scoped(ctx, "classifier outputs", || {
            session.submit(rows, None, params, Work::Outputs)
        })??;
        let got = session.read(&[(&session.buf.outc, "classifier outputs")])?;
        for q in 0..rows.nrows() {
            for a in 0..c {
                out[[start + q, a]] = got[0][q * c + a] as f64;
            }
        }
    }
    Ok(out)
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
    model.check_labels(labels, b)?;
    let session = Session::new(ctx, model, memories, None, b, b)?;
    exec::scoped(ctx, "classifier gradient", || {
        session.submit(
            images,
            Some(labels),
            session.params(b, 0, 0.0, 0.0),
            Work::Gradient,
        )
    })??;
    let out = session.read(&[
        (&session.buf.losses, "classifier loss"),
        (&session.buf.grad, "classifier gradient"),
    ])?;
    let loss = out[0][..b * model.classes].iter().map(|&v| v as f64).sum();
    let grad = Array2::from_shape_vec(
        (k, n + model.classes),
        out[1][..k * (n + model.classes)].to_vec(),
    )
    .expect("K × (N + C)");
    Ok((loss, grad))
}

/// A classifier being trained on the device: memories and velocity stay there between
/// minibatches; [`Trainer::finish`] reads them back with the epoch's summed loss.
pub struct Trainer<'a> {
    session: Session<'a>,
    seen: usize,
    samples: usize,
}

impl<'a> Trainer<'a> {
    /// Uploads the memories (K × (N + C)) and velocity for an epoch of `samples` samples in
    /// minibatches of at most `batch`.
    pub fn new(
        ctx: &'a WgpuContext,
        model: &ClassifierModel,
        memories: ArrayView2<'_, f32>,
        velocity: ArrayView2<'_, f32>,
        batch: usize,
        samples: usize,
    ) -> Result<Self> {
        if memories.dim() != velocity.dim() || memories.ncols() <= model.classes {
            return Err(Error::DimensionMismatch {
                argument: "velocity (K × (N + C))",
                expected: memories.len(),
                actual: velocity.len(),
            });
        }
        let session = Session::new(
            ctx,
            model,
            memories,
            Some(velocity),
            batch.min(samples).max(1),
            samples,
        )?;
        Ok(Self {
            session,
            seen: 0,
            samples,
        })
    }

    /// Submits one optimiser step on a minibatch (B × N, labels < C) with rate `lr` and
    /// momentum `momentum`; returns without waiting for the device.
    pub fn step(
        &mut self,
        images: ArrayView2<'_, f32>,
        labels: &[usize],
        lr: f64,
        momentum: f64,
    ) -> Result<()> {
        let b = images.nrows();
        self.session.model.check_labels(labels, b)?;
        if self.seen + b > self.samples {
            return Err(too_large(
                "samples of the epoch",
                (self.seen + b) as u64,
                self.samples as u64,
                "the trainer was sized for fewer samples",
            ));
        }
        let params = self.session.params(
            b,
            self.seen * self.session.model.classes,
            lr as f32,
            momentum as f32,
        );
        let ctx = self.session.ctx;
        exec::scoped(ctx, "classifier training step", || {
            self.session
                .submit(images, Some(labels), params, Work::Step)
        })??;
        self.seen += b;
        Ok(())
    }

    /// Waits for the device; returns the memories, the velocity (both K × (N + C)) and the
    /// summed loss of the steps (each measured before its update).
    pub fn finish(self) -> Result<(Array2<f32>, Array2<f32>, f64)> {
        let s = &self.session;
        let out = s.read(&[
            (&s.buf.memories, "classifier memories"),
            (&s.buf.velocity, "classifier velocity"),
            (&s.buf.losses, "classifier loss"),
        ])?;
        let shape = (s.k, s.n + s.model.classes);
        let len = shape.0 * shape.1;
        let mem = Array2::from_shape_vec(shape, out[0][..len].to_vec()).expect("K × (N + C)");
        let vel = Array2::from_shape_vec(shape, out[1][..len].to_vec()).expect("K × (N + C)");
        let loss = out[2][..self.seen * s.model.classes]
            .iter()
            .map(|&v| v as f64)
            .sum();
        Ok((mem, vel, loss))
    }
}
