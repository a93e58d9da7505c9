//! Random-feature DAM on the CPU, the fast path: the feature sum T = Σ φ(ξ) and the
//! approximate energy's value and gradient for a batch of states, tested against
//! [`crate::reference::features`] (f64, one row at a time). See `dam_core::features` for
//! the maths.
//!
//! Both functions start with the phases U = X·Ωᵀ (rows × frequencies), an f32 product
//! ([`crate::product::gemm`]) per block of rows and block of [`FREQ_BLOCK`] frequencies.
//! Everything after it is f64:
//! * [`feature_sum`]: the epilogue turns each phase u into cos u and sin u (Fourier) or
//!   e^{√β u − β‖x‖²} (positive) with the branch-free f64 kernels of [`crate::simd`], and
//!   adds them to per-feature f64 sums; the normalisation c is applied once at the end.
//!   Rows are split across threads in contiguous ranges, merged in range order.
//! * [`values_and_grads`]: the epilogue gives s = Σ_j (coefficients · T) in f64 and
//!   overwrites each phase with its gradient coefficient (c(T_{F+j} cos u − T_j sin u), or
//!   c√β T_j e^{…}); ∇s = Coef·Ω is a second f32 product per frequency block, added to f64
//!   sums, plus −2β s x for positive features. States are split across threads, or for
//!   fewer than [`STATES_PER_THREAD`] states per thread the frequencies (merged in
//!   range order).
//!
//! # Where the fast path declines
//! The f32 product rounds each phase u_j = ω_j·x; cos u, sin u (Fourier) feel that error
//! absolutely and e^{√β u} (positive) relatively, times √β. The rounding error of a
//! length-N f32 sum stays, in practice, within √N·2⁻²⁴·Σ_i|ω_ji x_i| (the probabilistic
//! bound; the worst case has N instead of √N); with half an ulp for storing u in f32 and
//! Cauchy–Schwarz, the phase error of a row x is estimated as
//! (√N + 1)·2⁻²⁴·max_j ‖ω_j‖·‖x‖. A row or state whose estimate (times √β for positive
//! features) exceeds [`PHASE_ERROR_LIMIT`], or is not finite, is computed by the
//! reference instead: large ‖x‖, β or N, where an f32 phase is no longer accurate enough.
//! (N = 1,024 at β = 10 with ‖x‖ = 1 estimates ~2e-4 and stays on the fast path; for
//! Gaussian Ω the estimate passes the limit near √β·N·‖x‖ ≈ 1.5·10⁴.) This
//! also keeps every phase the fast path sees below ~2¹⁴ in magnitude, well inside the
//! range of its sin/cos reduction.

use dam_core::features::{FeatureKind, FeatureSpec};
use ndarray::{ArrayView2, ArrayViewMut2};

use crate::product::gemm;
use crate::reference::features as reference;
use crate::{fast, simd};

pub use crate::reference::features::exact_lse_and_grad;

/// The largest estimated phase error (radians; relative error of φ for positive features)
/// the fast path accepts for a row or state; beyond it that row is left to the reference.
/// See the module documentation for the estimate.
pub const PHASE_ERROR_LIMIT: f64 = 1.0 / 1024.0;

/// Rows (patterns or states) per product block.
pub const ROW_BLOCK: usize = 128;

/// Frequencies per product block: a 128 × 512 block of phases is 256 KiB.
pub const FREQ_BLOCK: usize = 512;

/// Below this many states per thread the frequencies, not the states, are split.
pub const STATES_PER_THREAD: usize = 4;

/// Multiply–adds of the first product below which one thread does everything (starting
/// threads would cost more than they save).
const MIN_PARALLEL_WORK: usize = 1 << 20;

const LANES: usize = 8;

/// What every block needs: the spec's numbers and the decline threshold on ‖x‖².
struct Plan<'a> {
    spec: &'a FeatureSpec,
    omega: &'a [f32],
    n: usize,
    f: usize,
    c: f64,
    sqrt_beta: f64,
    /// ‖x‖² above which a row is declined (the bound of the module docs solved for ‖x‖).
    max_norm2: f64,
    /// Whether the epilogues run compiled for AVX2 + FMA (the processor has both).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    wide: bool,
}

impl<'a> Plan<'a> {
    fn new(spec: &'a FeatureSpec, omega: &'a [f32]) -> Self {
        let (n, f) = (spec.dim, spec.frequencies());
        assert!(n > 0, "N must be at least 1");
        assert_eq!(omega.len(), f * n, "Ω must be frequencies × N");
        let widest = simd::wide(|| {
            omega
                .chunks_exact(n)
                .map(simd::squared_norm)
                .fold(0.0f32, f32::max)
        }) as f64;
        // ‖ω_j‖² in f32 lanes: for an estimate, their rounding does not matter; 1 % margin.
        let widest = 1.01 * widest.sqrt();
        let sensitivity = match spec.kind {
            FeatureKind::Fourier => 1.0,
            FeatureKind::PositiveExp => spec.beta.sqrt(),
        };
        let unit = ((n as f64).sqrt() + 1.0) * f64::powi(2.0, -24) * widest * sensitivity;
        let max_norm = PHASE_ERROR_LIMIT / unit;
        Self {
            spec,
            omega,
            n,
            f,
            c: spec.scale(),
            sqrt_beta: spec.beta.sqrt(),
            // Ω = 0 gives ∞ (nothing to round); a non-finite Ω declines every row.
            max_norm2: if max_norm.is_nan() {
                f64::NEG_INFINITY
            } else {
                max_norm * max_norm
            },
            wide: simd::instruction_set() == "avx2",
        }
    }

    /// Whether a row of squared norm `norm2` is left to the reference.
    fn declines(&self, norm2: f64) -> bool {
        norm2.is_nan() || norm2 > self.max_norm2
    }

    /// Ω rows `a..e` (frequencies × N).
    fn omega_block(&self, a: usize, e: usize) -> ArrayView2<'a, f32> {
        ArrayView2::from_shape((e - a, self.n), &self.omega[a * self.n..e * self.n])
            .expect("Ω block shape")
    }

    /// Σ φ over `rows` (R×N): c·(fast sums) plus the reference's sums of declined rows.
    fn sum_rows(&self, rows: &[f32]) -> Vec<f64> {
        let (n, f) = (self.n, self.f);
        let count = rows.len() / n;
        let mut acc = vec![0.0f64; self.spec.features];
        let mut declined = vec![0.0f64; self.spec.features];
        let mut phases = vec![0.0f32; ROW_BLOCK.min(count) * FREQ_BLOCK.min(f)];
        let mut norm2 = Vec::with_capacity(ROW_BLOCK);
        for start in (0..count).step_by(ROW_BLOCK) {
            let end = (start + ROW_BLOCK).min(count);
            let block = &rows[start * n..end * n];
            norm2.clear();
            norm2.extend(block.chunks_exact(n).map(squared_norm));
            for (row, &s) in block.chunks_exact(n).zip(&norm2) {
                if self.declines(s) {
                    let sum = reference::feature_sum(self.spec, self.omega, row);
                    declined.iter_mut().zip(&sum).for_each(|(d, v)| *d += v);
                }
            }
            if norm2.iter().all(|&s| self.declines(s)) {
                continue;
            }
            let x = ArrayView2::from_shape((end - start, n), block).expect("row block shape");
            for fa in (0..f).step_by(FREQ_BLOCK) {
                let fe = (fa + FREQ_BLOCK).min(f);
                let w = fe - fa;
                let u = &mut phases[..(end - start) * w];
                let mut view = ArrayViewMut2::from_shape((end - start, w), &mut *u)
                    .expect("phase block shape");
                gemm(x, self.omega_block(fa, fe).t(), &mut view, false);
                self.sum_block_wide(u, w, fa, &norm2, &mut acc);
            }
        }
        acc.iter()
            .zip(&declined)
            .map(|(a, d)| self.c * a + d)
            .collect()
    }

    /// [`Self::sum_block`], compiled for AVX2 + FMA where the processor has them. (Not
    /// through `simd::wide`: a closure this large is not inlined into its AVX2 frame.)
    fn sum_block_wide(&self, u: &[f32], w: usize, fa: usize, norm2: &[f64], acc: &mut [f64]) {
        #[cfg(target_arch = "x86_64")]
        if self.wide {
            // SAFETY: the processor has AVX2 and FMA (checked in `Plan::new`).
            return unsafe { self.sum_block_avx2(u, w, fa, norm2, acc) };
        }
        self.sum_block(u, w, fa, norm2, acc)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn sum_block_avx2(
        &self,
        u: &[f32],
        w: usize,
        fa: usize,
        norm2: &[f64],
        acc: &mut [f64],
    ) {
        self.sum_block(u, w, fa, norm2, acc)
    }

    /// [`Self::coefficient_block`], compiled for AVX2 + FMA where the processor has them.
    fn coefficient_block_wide(
        &self,
        u: &mut [f32],
        w: usize,
        t: &[f64],
        a: usize,
        norm2: &[f64],
        values: &mut [f64],
    ) {
        #[cfg(target_arch = "x86_64")]
        if self.wide {
            // SAFETY: the processor has AVX2 and FMA (checked in `Plan::new`).
            return unsafe { self.coefficient_block_avx2(u, w, t, a, norm2, values) };
        }
        self.coefficient_block(u, w, t, a, norm2, values)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn coefficient_block_avx2(
        &self,
        u: &mut [f32],
        w: usize,
        t: &[f64],
        a: usize,
        norm2: &[f64],
        values: &mut [f64],
    ) {
        self.coefficient_block(u, w, t, a, norm2, values)
    }

    /// Overwrites a block of phases (states × w, frequencies a..a+w) with gradient
    /// coefficients (0 for declined states) and adds each state's share of s to `values`.
    #[inline(always)]
    fn coefficient_block(
        &self,
        u: &mut [f32],
        w: usize,
        t: &[f64],
        a: usize,
        norm2: &[f64],
        values: &mut [f64],
    ) {
        for ((row, &s), v) in u.chunks_exact_mut(w).zip(norm2).zip(values) {
            if self.declines(s) {
                row.fill(0.0);
            } else {
                *v += self.coefficients(row, t, a, s);
            }
        }
    }

    /// Adds the features of a block of phases (rows × w, frequencies fa..fa+w) to `acc`.
    #[inline(always)]
    fn sum_block(&self, u: &[f32], w: usize, fa: usize, norm2: &[f64], acc: &mut [f64]) {
        let f = self.f;
        for (row, &s) in u.chunks_exact(w).zip(norm2) {
            if self.declines(s) {
                continue;
            }
            match self.spec.kind {
                FeatureKind::Fourier => {
                    let (cos_part, sin_part) = acc.split_at_mut(f);
                    let cos_acc = &mut cos_part[fa..fa + w];
                    let sin_acc = &mut sin_part[fa..fa + w];
                    for ((a, b), &v) in cos_acc.iter_mut().zip(sin_acc.iter_mut()).zip(row) {
                        let (sin, cos) = simd::sin_cos_f64(v as f64);
                        *a += cos;
                        *b += sin;
                    }
                }
                FeatureKind::PositiveExp => {
                    let shift = self.spec.beta * s;
                    for (a, &v) in acc[fa..fa + w].iter_mut().zip(row) {
                        *a += simd::exp_f64(self.sqrt_beta * v as f64 - shift);
                    }
                }
            }
        }
    }

    /// s and ∇s (without the −2β s x term) of `states` (B×N) over frequencies `fa..fe`;
    /// declined states get 0 (the caller replaces them).
    fn partial(
        &self,
        t: &[f64],
        states: &[f32],
        norm2: &[f64],
        (fa, fe): (usize, usize),
    ) -> (Vec<f64>, Vec<f64>) {
        let n = self.n;
        let b = states.len() / n;
        let mut values = vec![0.0f64; b];
        let mut grads = vec![0.0f64; b * n];
        let rows = ROW_BLOCK.min(b);
        let mut coefs = vec![0.0f32; rows * FREQ_BLOCK.min(fe - fa)];
        let mut g = vec![0.0f32; rows * n];
        for start in (0..b).step_by(ROW_BLOCK) {
            let end = (start + ROW_BLOCK).min(b);
            let m = end - start;
            let x = ArrayView2::from_shape((m, n), &states[start * n..end * n])
                .expect("state block shape");
            for a in (fa..fe).step_by(FREQ_BLOCK) {
                let e = (a + FREQ_BLOCK).min(fe);
                let w = e - a;
                let om = self.omega_block(a, e);
                let u = &mut coefs[..m * w];
                let mut view =
                    ArrayViewMut2::from_shape((m, w), &mut *u).expect("phase block shape");
                gemm(x, om.t(), &mut view, false);
                self.coefficient_block_wide(
                    u,
                    w,
                    t,
                    a,
                    &norm2[start..end],
                    &mut values[start..end],
                );
                let coef = ArrayView2::from_shape((m, w), &*u).expect("coefficient shape");
                let mut out =
                    ArrayViewMut2::from_shape((m, n), &mut g[..m * n]).expect("gradient shape");
                gemm(coef, om, &mut out, false);
                grads[start * n..end * n]
                    .iter_mut()
                    .zip(&g[..m * n])
                    .for_each(|(acc, &v)| *acc += v as f64);
            }
        }
        (values, grads)
    }

    /// Overwrites the phases `row` (frequencies a..a+len) of a state of squared norm
    /// `norm2` with their gradient coefficients and returns their share of s.
    #[inline(always)]
    fn coefficients(&self, row: &mut [f32], t: &[f64], a: usize, norm2: f64) -> f64 {
        let (f, c, w) = (self.f, self.c, row.len());
        let mut acc = [0.0f64; LANES];
        let mut tail = 0.0;
        match self.spec.kind {
            FeatureKind::Fourier => {
                let (tc, ts) = (&t[a..a + w], &t[f + a..f + a + w]);
                let mut chunks = row.chunks_exact_mut(LANES);
                for ((u, tc), ts) in (&mut chunks)
                    .zip(tc.chunks_exact(LANES))
                    .zip(ts.chunks_exact(LANES))
                {
                    for l in 0..LANES {
                        let (sin, cos) = simd::sin_cos_f64(u[l] as f64);
                        acc[l] += tc[l] * cos + ts[l] * sin;
                        u[l] = (c * (ts[l] * cos - tc[l] * sin)) as f32;
                    }
                }
                let done = w - chunks.into_remainder().len();
                for j in done..w {
                    let (sin, cos) = simd::sin_cos_f64(row[j] as f64);
                    tail += tc[j] * cos + ts[j] * sin;
                    row[j] = (c * (ts[j] * cos - tc[j] * sin)) as f32;
                }
            }
            FeatureKind::PositiveExp => {
                let (tp, shift, k) = (&t[a..a + w], self.spec.beta * norm2, c * self.sqrt_beta);
                let mut chunks = row.chunks_exact_mut(LANES);
                for (u, tp) in (&mut chunks).zip(tp.chunks_exact(LANES)) {
                    for l in 0..LANES {
                        let p = tp[l] * simd::exp_f64(self.sqrt_beta * u[l] as f64 - shift);
                        acc[l] += p;
                        u[l] = (k * p) as f32;
                    }
                }
                let done = w - chunks.into_remainder().len();
                for j in done..w {
                    let p = tp[j] * simd::exp_f64(self.sqrt_beta * row[j] as f64 - shift);
                    tail += p;
                    row[j] = (k * p) as f32;
                }
            }
        }
        c * (acc.iter().sum::<f64>() + tail)
    }
}

/// ‖x‖² summed in f64 in index order, as the reference sums it.
fn squared_norm(x: &[f32]) -> f64 {
    x.iter().map(|&v| v as f64 * v as f64).sum()
}

/// Threads for `work` multiply–adds split into at most `items` parts.
fn threads_for(work: usize, items: usize) -> usize {
    let wanted = work.div_ceil(MIN_PARALLEL_WORK).max(1);
    fast::thread_count(0).min(wanted).min(items.max(1))
}

/// Σ_r φ(row_r) over the rows (R×N, row-major): the same result as
/// [`reference::feature_sum`] within f32 phase rounding (see the module docs).
///
/// # Panics
/// When `omega` is not frequencies × N or `rows` is not a whole number of rows.
pub fn feature_sum(spec: &FeatureSpec, omega: &[f32], rows: &[f32]) -> Vec<f64> {
    let plan = Plan::new(spec, omega);
    let n = spec.dim;
    assert_eq!(rows.len() % n, 0, "rows must be R×N");
    let r = rows.len() / n;
    let threads = threads_for(r * plan.f * n, r.div_ceil(ROW_BLOCK));
    let parts = fast::per_range(r, ROW_BLOCK, threads, |(a, e)| {
        plan.sum_rows(&rows[a * n..e * n])
    });
    let mut t = vec![0.0f64; spec.features];
    for part in parts {
        t.iter_mut().zip(&part).for_each(|(t, v)| *t += v);
    }
    t
}

/// s(x) = φ(x)·T and ∇s(x) for every state of `states` (B×N, row-major): B values and
/// B×N gradient entries (row-major), the same as [`reference::value_and_grad`] per
/// state within f32 rounding (of the phases and of the gradient products; see the module
/// docs).
///
/// # Panics
/// When `omega` is not frequencies × N, `t` does not have Y values, or `states` is not
/// a whole number of rows.
pub fn values_and_grads(
    spec: &FeatureSpec,
    omega: &[f32],
    t: &[f64],
    states: &[f32],
) -> (Vec<f64>, Vec<f64>) {
    let plan = Plan::new(spec, omega);
    let (n, f) = (spec.dim, plan.f);
    assert_eq!(t.len(), spec.features, "T must have Y values");
    assert_eq!(states.len() % n, 0, "states must be B×N");
    let b = states.len() / n;
    let norm2: Vec<f64> = states.chunks_exact(n).map(squared_norm).collect();
    let work = 2 * b * f * n;
    let (mut values, mut grads) = if b >= STATES_PER_THREAD * fast::thread_count(0) {
        let threads = threads_for(work, b);
        let parts = fast::per_range(b, 1, threads, |(a, e)| {
            plan.partial(t, &states[a * n..e * n], &norm2[a..e], (0, f))
        });
        let mut out = (Vec::with_capacity(b), Vec::with_capacity(b * n));
        for (v, g) in parts {
            out.0.extend(v);
            out.1.extend(g);
        }
        out
    } else {
        let threads = threads_for(work, f.div_ceil(LANES));
        let parts = fast::per_range(f, LANES, threads, |range| {
            plan.partial(t, states, &norm2, range)
        });
        let mut out = (vec![0.0f64; b], vec![0.0f64; b * n]);
        for (v, g) in parts {
            out.0.iter_mut().zip(&v).for_each(|(a, v)| *a += v);
            out.1.iter_mut().zip(&g).for_each(|(a, g)| *a += g);
        }
        out
    };
    for (q, x) in states.chunks_exact(n).enumerate() {
        let grad = &mut grads[q * n..(q + 1) * n];
        if plan.declines(norm2[q]) {
            let (s, g) = reference::value_and_grad(spec, omega, t, x);
            values[q] = s;
            grad.copy_from_slice(&g);
        } else if spec.kind == FeatureKind::PositiveExp {
            let k = 2.0 * spec.beta * values[q];
            grad.iter_mut()
                .zip(x)
                .for_each(|(g, &xi)| *g -= k * xi as f64);
        }
    }
    (values, grads)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX2 build of the epilogues and the baseline one give the same bits: neither
    /// fuses multiply–adds, and every sum runs in the same order.
    #[test]
    fn instruction_sets_agree_bit_for_bit() {
        let (n, b, r) = (13, 9, 150);
        let rows: Vec<f32> = (0..r * n)
            .map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 0.6)
            .collect();
        for kind in [FeatureKind::Fourier, FeatureKind::PositiveExp] {
            let spec = FeatureSpec {
                kind,
                dim: n,
                features: 74,
                beta: 2.0,
                seed: 4,
            };
            let omega = spec.omega();
            let norm2: Vec<f64> = rows[..b * n].chunks_exact(n).map(squared_norm).collect();
            let mut plan = Plan::new(&spec, &omega);
            let t = plan.sum_rows(&rows);
            let (v, g) = plan.partial(&t, &rows[..b * n], &norm2, (0, plan.f));
            plan.wide = !plan.wide;
            assert_eq!(plan.sum_rows(&rows), t, "{kind:?}: T");
            let (v2, g2) = plan.partial(&t, &rows[..b * n], &norm2, (0, plan.f));
            assert_eq!(v2, v, "{kind:?}: s");
            assert_eq!(g2, g, "{kind:?}: ∇s");
        }
    }
}
