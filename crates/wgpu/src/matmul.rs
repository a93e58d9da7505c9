//! The generic tiled matrix product (`matmul.wgsl`): C = epilogue(α · op(A) ⊗ op(B)), with
//! shapes, strides, transposes, the similarity term of [`Similarity`] as the inner product,
//! and a small set of [`Epilogue`]s. Retrieval uses it for large batches; training and
//! exact search build on it.
//!
//! op(B) is read through a pattern [`Loader`] at binding 1, so B may be stored patterns in
//! f32 or f16; A is an f32 buffer. Long contractions are cut into slices of at most
//! [`MAX_K_SLICE`] that accumulate (scale epilogue only; the others need the whole sum).

use std::sync::Arc;

use dam_core::{Error, Result, Similarity};

use crate::context::WgpuContext;
use crate::exec::{self, Dispatch};
use crate::params::MatMulParams;
use crate::source::{similarity_code, Kernel, Loader};

/// Invocations along each side of the square workgroup of `matmul.wgsl` (`SIDE` there).
pub const MATMUL_SIDE: u32 = 16;
/// Rows and columns of C one workgroup computes (MATMUL_SIDE² invocations, 4×4 outputs
/// each; `TM` in the shader).
pub const TILE: u32 = 4 * MATMUL_SIDE;
/// Contraction entries per staged tile (`TK` in the shader).
pub(crate) const TK: u64 = 16;
/// Loop iterations per staged tile in one invocation (four loads, sixteen products).
const LOOPS_PER_TILE: u64 = 20;
/// The longest contraction one dispatch covers (lavapipe's loop budget).
pub const MAX_K_SLICE: u64 = crate::exec::LOOP_BUDGET / LOOPS_PER_TILE * TK;

/// What is done with each output v = α · s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Epilogue {
    /// C = v, or C += v with `accumulate`.
    Scale {
        /// Add to C instead of overwriting it.
        accumulate: bool,
    },
    /// A separation function: C = vⁿ, or max(v, 0)ⁿ when `rectified`.
    Power {
        /// The degree n.
        degree: u32,
        /// max(v, 0)ⁿ instead of vⁿ.
        rectified: bool,
    },
    /// C = v, and per row and 64-column tile the online-softmax partial
    /// (max v, Σ e^{v − max}) into the stats buffer.
    SoftmaxPartials,
}

/// One matrix product: C (m×n, row stride `ldc`, columns from `c_col0`) from op(A)
/// (m×k) and op(B) (k×n).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatMul {
    /// Rows of op(A) and C.
    pub m: u32,
    /// Columns of op(B) and C.
    pub n: u32,
    /// Contraction length.
    pub k: u32,
    /// A is stored k×m (row stride `lda`) instead of m×k.
    pub trans_a: bool,
    /// B is stored n×k (row stride `ldb`) instead of k×n.
    pub trans_b: bool,
    /// Row stride of A as stored.
    pub lda: u32,
    /// Row stride of B as stored.
    pub ldb: u32,
    /// Row stride of C.
    pub ldc: u32,
    /// First entry of A in its buffer.
    pub a_off: u32,
    /// First column of C written.
    pub c_col0: u32,
    /// First tile column of the softmax partials (stats row stride `stat_ld`).
    pub stat_col0: u32,
    /// Row stride of the softmax partials.
    pub stat_ld: u32,
    /// Scale α.
    pub alpha: f32,
    /// The inner product: `Dot` is Σ a·b; the negative distances sum their terms and
    /// finish (−√, −) before α.
    pub similarity: Similarity,
    /// The epilogue.
    pub epilogue: Epilogue,
}

impl MatMul {
    /// A plain product C = op(A)·op(B) with packed strides (lda, ldb, ldc from the shapes).
    pub fn plain(m: u32, n: u32, k: u32, trans_a: bool, trans_b: bool) -> Self {
        Self {
            m,
            n,
            k,
            trans_a,
            trans_b,
            lda: if trans_a { m } else { k },
            ldb: if trans_b { k } else { n },
            ldc: n,
            a_off: 0,
            c_col0: 0,
            stat_col0: 0,
            stat_ld: n.div_ceil(TILE),
            alpha: 1.0,
            similarity: Similarity::Dot,
            epilogue: Epilogue::Scale { accumulate: false },
        }
    }

    /// The dispatches of this product (more than one when k is longer than one slice),
    /// with `a`, `b` (read through `loader`), `c` and, for the softmax epilogue, `stats`
    /// bound as given.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dispatches(
        &self,
        ctx: &WgpuContext,
        loader: Loader,
        a: wgpu::BindingResource<'_>,
        b: wgpu::BindingResource<'_>,
        c: &wgpu::Buffer,
        stats: Option<&wgpu::Buffer>,
    ) -> Result<Vec<Dispatch>> {
        let max_groups = ctx.limits().max_compute_workgroups_per_dimension;
        let groups = [self.n.div_ceil(TILE), self.m.div_ceil(TILE), 1];
        if groups[0] > max_groups || groups[1] > max_groups {
            return Err(Error::TooLarge {
                argument: "matrix product (rows or columns)",
                size: self.m.max(self.n) as u64,
                limit: max_groups as u64 * TILE as u64,
                detail: format!("one workgroup per {TILE}×{TILE} tile of the output"),
            });
        }
        let k_slice = MAX_K_SLICE;
        let (epi, degree, accumulate) = match self.epilogue {
            Epilogue::Scale { accumulate } => (0, 0, accumulate),
            Epilogue::Power { degree, rectified } => (1 + rectified as u32, degree, false),
            Epilogue::SoftmaxPartials => (3, 0, false),
        };
        if epi != 0 && self.k as u64 > k_slice {
            return Err(Error::TooLarge {
                argument: "matrix product contraction (k)",
                size: self.k as u64,
                limit: k_slice,
                detail: "epilogues other than scale need the whole contraction in one dispatch"
                    .into(),
            });
        }
        let sim = similarity_code(self.similarity);
        if sim != 0 && self.k as u64 > k_slice {
            return Err(Error::TooLarge {
                argument: "matrix product contraction (k)",
                size: self.k as u64,
                limit: k_slice,
                detail: "distances are finished once over the whole contraction".into(),
            });
        }
        let pipeline: Arc<wgpu::ComputePipeline> = ctx.pipeline_with(
            Kernel::MatMul,
            loader,
            &[
                ("TRANS_A", self.trans_a as u32),
                ("TRANS_B", self.trans_b as u32),
                ("EPI", epi),
                ("SIM", sim),
            ],
        )?;
        let dummy;
        let stats = match stats {
            Some(s) => s,
            None => {
                dummy = exec::storage(ctx, "dam matmul no stats", 8);
                &dummy
            }
        };
        let mut out = Vec::new();
        for (i, range) in exec::slices(self.k as usize, k_slice as usize).enumerate() {
            let params = MatMulParams {
                m: self.m,
                n: self.n,
                kdim: self.k,
                lda: self.lda,
                ldb: self.ldb,
                ldc: self.ldc,
                a_off: self.a_off,
                c_col0: self.c_col0,
                stat_col0: self.stat_col0,
                stat_ld: self.stat_ld,
                accumulate: (accumulate || i > 0) as u32,
                degree,
                alpha: self.alpha,
                k_begin: range.start as u32,
                k_end: range.end as u32,
                pad0: 0,
            };
            let uniform = exec::uniform(ctx, &params);
            out.push(Dispatch::new(
                ctx,
                &pipeline,
                &[(0, &uniform), (3, c), (4, stats)],
                vec![(1, b.clone()), (2, a.clone())],
                groups,
            ));
        }
        Ok(out)
    }
}

/// Runs `spec` on host data: A and B (f32, as stored), C's initial contents when the
/// epilogue accumulates; returns C (m × ldc) and, for the softmax epilogue, the partials
/// (m × stat_ld pairs). NaN or ±Inf entries are not checked: they propagate to exactly the
/// outputs whose sums they enter (tested), as in any matrix product.
pub fn run(
    ctx: &WgpuContext,
    spec: &MatMul,
    a: &[f32],
    b: &[f32],
    c_init: Option<&[f32]>,
) -> Result<(Vec<f32>, Vec<[f32; 2]>)> {
    let c_len = spec.m as usize * spec.ldc as usize;
    if let Some(c) = c_init {
        if c.len() != c_len {
            return Err(Error::DimensionMismatch {
                argument: "c_init (m × ldc)",
                expected: c_len,
                actual: c.len(),
            });
        }
    }
    for (argument, data) in [("a", a), ("b", b)] {
        if data.is_empty() {
            return Err(Error::Empty {
                argument,
                detail: "a matrix product operand has no entries".into(),
            });
        }
    }
    let out = exec::scoped(ctx, "matrix product", || -> Result<_> {
        let a_buf = exec::storage_init(ctx, "dam matmul a", bytemuck::cast_slice(a));
        let b_buf = exec::storage_init(ctx, "dam matmul b", bytemuck::cast_slice(b));
        let c_buf = match c_init {
            Some(c) => exec::storage_init(ctx, "dam matmul c", bytemuck::cast_slice(c)),
            None => exec::storage(ctx, "dam matmul c", c_len as u64 * 4),
        };
        let stats_len = (spec.m as u64 * spec.stat_ld as u64 * 8).max(8);
        let stats = exec::storage(ctx, "dam matmul stats", stats_len);
        let list = spec.dispatches(
            ctx,
            Loader::F32,
            a_buf.as_entire_binding(),
            b_buf.as_entire_binding(),
            &c_buf,
            Some(&stats),
        )?;
        let work = exec::commands(ctx, &list);
        let bytes = exec::submit_and_read(ctx, vec![work], &[(&c_buf, "c"), (&stats, "stats")])?;
        let mut c: Vec<f32> = exec::cast(&bytes[0]);
        c.truncate(c_len);
        let st: Vec<[f32; 2]> = exec::cast(&bytes[1]);
        Ok((c, st))
    })?;
    out
}
