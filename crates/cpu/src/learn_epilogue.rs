//! The classifier's epilogues on the fast CPU path (see `dam_core::learn` for the maths):
//! F and F′ in f32 lanes, specialised for the small degrees so the loops vectorise, compiled
//! for AVX2 where the processor has it ([`crate::simd::wide`]).

use dam_core::learn::ClassifierModel;

/// The label side of a K × (N + C) matrix of memories (row-major, f32), in units of T,
/// class-major: xs[α·K + μ] = ξ^μ_α / T and ls[α·K + μ] = L_μα / T with
/// L_μα = −Σ_{γ≠α} ξ^μ_γ, each C × K.
///
/// The fast paths' epilogues work in these units: with w = u / T, β F(u) = F(w) (F is
/// homogeneous of degree n), so β z is a sum of O(1) terms for any n and stays in f32 range
/// (x³⁰ of a raw similarity in the hundreds would not). Class-major rows let the epilogues
/// run along the memories, eight lanes at a time.
pub fn label_rows(memories: &[f32], width: usize, model: &ClassifierModel) -> (Vec<f32>, Vec<f32>) {
    let classes = model.classes;
    let n = width - classes;
    let inv_t = 1.0 / model.temperature;
    let k = memories.len() / width;
    let mut xs = vec![0.0f32; k * classes];
    let mut ls = vec![0.0f32; k * classes];
    for (mu, row) in memories.chunks(width).enumerate() {
        let labels = &row[n..];
        let total: f64 = labels.iter().map(|&v| v as f64).sum();
        for (a, &x) in labels.iter().enumerate() {
            xs[a * k + mu] = (x as f64 * inv_t) as f32;
            ls[a * k + mu] = (-(total - x as f64) * inv_t) as f32;
        }
    }
    (xs, ls)
}

/// F and F′ in f32 for one (n, rectified), specialised for the small degrees so that the
/// epilogue loops below vectorise.
trait Poly: Copy {
    fn f(self, x: f32) -> f32;
    fn fp(self, x: f32) -> f32;
}

/// xⁿ (or max(x, 0)ⁿ) for a degree known at compile time.
#[derive(Clone, Copy)]
struct Fixed<const N: u32, const R: bool>;

/// xᵉ by repeated multiplication; with a constant `e` (as from [`Fixed`]) it unrolls.
#[inline(always)]
fn pow_const(x: f32, e: u32) -> f32 {
    let mut out = 1.0f32;
    for _ in 0..e {
        out *= x;
    }
    out
}

impl<const N: u32, const R: bool> Poly for Fixed<N, R> {
    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        pow_const(if R { x.max(0.0) } else { x }, N)
    }
    #[inline(always)]
    fn fp(self, x: f32) -> f32 {
        // max(x, 0)ⁿ⁻¹ is 0 below zero for n ≥ 2; n = 1 needs the step itself.
        if R && N == 1 {
            return if x > 0.0 { 1.0 } else { 0.0 };
        }
        let y = if R { x.max(0.0) } else { x };
        N as f32 * pow_const(y, N - 1)
    }
}

/// Any degree, through `powi`.
#[derive(Clone, Copy)]
struct Any {
    degree: u32,
    rectified: bool,
}

impl Poly for Any {
    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        let x = if self.rectified { x.max(0.0) } else { x };
        x.powi(self.degree as i32)
    }
    #[inline(always)]
    fn fp(self, x: f32) -> f32 {
        if self.rectified && x <= 0.0 {
            return 0.0;
        }
        self.degree as f32 * x.powi(self.degree as i32 - 1)
    }
}

const LANES: usize = 8;

/// Output gradients h / T below this are left out of the fast backward epilogue (see
/// [`ClassifierModel::backward_epilogue`]).
pub const H_FLUSH: f32 = 1e-30;

/// Σ_μ F(w_μ + x_μ) − F(w_μ − x_μ), w_μ = s_μ / T + l_μ, in eight f32 lanes.
#[inline(always)]
fn z_row<P: Poly>(poly: P, s: &[f32], xs: &[f32], ls: &[f32], inv_t: f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let split = s.len() / LANES * LANES;
    for ((sv, xv), lv) in s[..split]
        .chunks_exact(LANES)
        .zip(xs[..split].chunks_exact(LANES))
        .zip(ls[..split].chunks_exact(LANES))
    {
        for l in 0..LANES {
            let w = sv[l] * inv_t + lv[l];
            lanes[l] += poly.f(w + xv[l]) - poly.f(w - xv[l]);
        }
    }
    let mut tail = 0.0f32;
    for ((&sv, &xv), &lv) in s[split..].iter().zip(&xs[split..]).zip(&ls[split..]) {
        let w = sv * inv_t + lv;
        tail += poly.f(w + xv) - poly.f(w - xv);
    }
    lanes.iter().sum::<f32>() + tail
}

/// Per memory μ: a_μ += h (F′(w⁺) − F′(w⁻)) and lab_μ += 2 h F′(w⁺).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_row<P: Poly>(
    poly: P,
    s: &[f32],
    xs: &[f32],
    ls: &[f32],
    inv_t: f32,
    h: f32,
    a: &mut [f32],
    lab: &mut [f32],
) {
    for ((((&sv, &xv), &lv), av), labv) in s
        .iter()
        .zip(xs)
        .zip(ls)
        .zip(a.iter_mut())
        .zip(lab.iter_mut())
    {
        let w = sv * inv_t + lv;
        let up = poly.fp(w + xv);
        *av += h * (up - poly.fp(w - xv));
        *labv += 2.0 * h * up;
    }
}

/// The forward epilogue over every sample (see [`ClassifierModel::accumulate_z`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_all<P: Poly>(
    poly: P,
    c: usize,
    k: usize,
    s: &[f32],
    xs: &[f32],
    ls: &[f32],
    inv_t: f32,
    bz: &mut [f64],
) {
    for (srow, zq) in s.chunks(k).zip(bz.chunks_mut(c)) {
        for (a, z) in zq.iter_mut().enumerate() {
            let range = a * k..(a + 1) * k;
            *z += z_row(poly, srow, &xs[range.clone()], &ls[range], inv_t) as f64;
        }
    }
}

/// The backward epilogue over every sample (see [`ClassifierModel::backward_epilogue`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_all<P: Poly>(
    poly: P,
    c: usize,
    k: usize,
    s: &[f32],
    xs: &[f32],
    ls: &[f32],
    inv_t: f32,
    h: &[f64],
    at: &mut [f32],
    lab32: &mut [f32],
) {
    for ((srow, hq), arow) in s.chunks(k).zip(h.chunks(c)).zip(at.chunks_mut(k)) {
        for (a, &hv) in hq.iter().enumerate() {
            let h = (hv * inv_t as f64) as f32;
            // An output gradient this small adds nothing a step could see, and products of
            // subnormal f32 values run many times slower: such (sample, class) pairs are
            // skipped.
            if h.abs() < H_FLUSH {
                continue;
            }
            let range = a * k..(a + 1) * k;
            backward_row(
                poly,
                srow,
                &xs[range.clone()],
                &ls[range.clone()],
                inv_t,
                h,
                arow,
                &mut lab32[range],
            );
        }
    }
}

/// Runs `$body` with `$poly` bound to the specialised F of (degree, rectified), through
/// [`crate::simd::wide`] (AVX2 where the processor has it, checked at run time).
macro_rules! dispatch_poly {
    ($model:expr, |$poly:ident| $body:expr) => {{
        let model: &ClassifierModel = $model;
        macro_rules! with {
            ($p:expr) => {{
                let $poly = $p;
                $crate::simd::wide(|| $body)
            }};
        }
        match (model.degree, model.rectified) {
            (1, false) => with!(Fixed::<1, false>),
            (1, true) => with!(Fixed::<1, true>),
            (2, false) => with!(Fixed::<2, false>),
            (2, true) => with!(Fixed::<2, true>),
            (3, false) => with!(Fixed::<3, false>),
            (3, true) => with!(Fixed::<3, true>),
            (4, false) => with!(Fixed::<4, false>),
            (4, true) => with!(Fixed::<4, true>),
            (degree, rectified) => with!(Any { degree, rectified }),
        }
    }};
}

/// Forward epilogue in units of T ([`label_rows`], class-major): adds to `bz` (B × C)
/// the sums β z_bα = Σ_μ [F(w_bμα + x_αμ) − F(w_bμα − x_αμ)], w = s_bμ / T + l_αμ, over
/// the k memories of `s` (B × k raw similarities, row-major). f32 terms in eight lanes,
/// f64 totals per call.
pub fn accumulate_z(
    model: &ClassifierModel,
    s: &[f32],
    k: usize,
    xs: &[f32],
    ls: &[f32],
    bz: &mut [f64],
) {
    let (c, inv_t) = (model.classes, (1.0 / model.temperature) as f32);
    dispatch_poly!(model, |poly| forward_all(poly, c, k, s, xs, ls, inv_t, bz))
}

/// Backward epilogue for the k memories of `s` (B × k), in units of T: with
/// ∂(βz)/∂u = F′(w) / T, A_bμ = Σ_α h_bα [F′(w⁺) − F′(w⁻)] / T into `at` (B × k, f32,
/// the transpose of A) and 2 Σ_b h_bγ F′(w⁺) / T into `lab` (C × k, class-major); the
/// label gradient is then `lab − Σ_b A_μb` and the visible gradient Aᵀ · X. Pairs whose
/// h / T is below [`H_FLUSH`] in magnitude are left out (their terms would be subnormal
/// f32 numbers, negligible against any other sample's and slow to compute).
#[allow(clippy::too_many_arguments)]
pub fn backward_epilogue(
    model: &ClassifierModel,
    s: &[f32],
    k: usize,
    xs: &[f32],
    ls: &[f32],
    h: &[f64],
    at: &mut [f32],
    lab: &mut [f64],
) {
    let (c, inv_t) = (model.classes, (1.0 / model.temperature) as f32);
    let mut lab32 = vec![0.0f32; k * c];
    dispatch_poly!(model, |poly| backward_all(
        poly, c, k, s, xs, ls, inv_t, h, at, &mut lab32
    ));
    for (l, v) in lab.iter_mut().zip(&lab32) {
        *l += *v as f64;
    }
}
