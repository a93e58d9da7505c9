//! msgn(G) = U sign(Σ) Vᵀ (the orthogonal polar factor of G = U Σ Vᵀ) by Newton–Schulz
//! iterations: matrix products only, on any device that multiplies matrices. Used by the
//! Muon optimiser of `dam train --optimizer muon` and by `dam muon`; this is the one
//! implementation of the iteration.
//!
//! From X₀ = G/‖G‖_F (singular values in [0, 1]) each iteration applies an odd polynomial
//! to the singular values, leaving U and V alone. For an m × n matrix the Gram matrix is
//! the smaller of X Xᵀ (m × m, when m ≤ n) and Xᵀ X (n × n, when m > n): the iteration is
//! X ← p(X Xᵀ) X or X ← X p(Xᵀ X), the same polynomial of the singular values. A zero row
//! or column of G stays exactly zero.

use ndarray::{Array2, ArrayView2, LinalgScalar, Zip};

/// The Newton–Schulz iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewtonSchulz {
    /// X ← 1.5X − 0.5(XXᵀ)X: every nonzero singular value converges to 1 (the exact polar
    /// factor), a singular value s ≪ 1 growing by about 1.5 per iteration.
    Cubic,
    /// X ← aX + b(XXᵀ)X + c(XXᵀ)²X with (a, b, c) = (3.4445, −4.7750, 2.0315) (Keller
    /// Jordan's Muon): fast growth of small singular values, which then oscillate in
    /// about [0.7, 1.2] instead of converging.
    Quintic,
}

impl NewtonSchulz {
    /// `cubic` or `quintic`.
    pub fn name(&self) -> &'static str {
        match self {
            NewtonSchulz::Cubic => "cubic",
            NewtonSchulz::Quintic => "quintic",
        }
    }
}

/// The quintic Newton–Schulz coefficients (a, b, c).
pub const QUINTIC: (f32, f32, f32) = (3.4445, -4.7750, 2.0315);

/// The element types the iteration runs in (f32 and f64).
pub trait Scalar: LinalgScalar + PartialEq {
    /// The value of an f64 constant.
    fn of(x: f64) -> Self;
    /// The value as f64.
    fn to_f64(self) -> f64;
}

impl Scalar for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Scalar for f64 {
    fn of(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
}

/// msgn(G) by `steps` iterations of `kind` from X₀ = G/‖G‖_F (the norm in f64), each
/// product through `mul(A, B) = A·B` (A, B in standard layout). G = 0 (or a norm that is
/// not finite) gives 0.
pub fn newton_schulz<T: Scalar, E>(
    g: ArrayView2<'_, T>,
    kind: NewtonSchulz,
    steps: usize,
    mut mul: impl FnMut(ArrayView2<'_, T>, ArrayView2<'_, T>) -> Result<Array2<T>, E>,
) -> Result<Array2<T>, E> {
    let norm = g.iter().map(|&v| v.to_f64().powi(2)).sum::<f64>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Ok(Array2::zeros(g.dim()));
    }
    // Rows > columns: iterate on the transpose (the smaller Gram matrix), transpose back.
    let tall = g.nrows() > g.ncols();
    let g = if tall { g.reversed_axes() } else { g };
    let mut x = g.mapv(|v| T::of(v.to_f64() / norm));
    let (qa, qb, qc) = QUINTIC;
    let (qa, qb, qc) = (T::of(qa as f64), T::of(qb as f64), T::of(qc as f64));
    let (three_halves, half) = (T::of(1.5), T::of(0.5));
    for _ in 0..steps {
        let xt = x.t().as_standard_layout().into_owned();
        let a = mul(x.view(), xt.view())?;
        match kind {
            NewtonSchulz::Cubic => {
                let ax = mul(a.view(), x.view())?;
                Zip::from(&mut x)
                    .and(&ax)
                    .for_each(|x, &ax| *x = three_halves * *x - half * ax);
            }
            NewtonSchulz::Quintic => {
                let aa = mul(a.view(), a.view())?;
                let b = Zip::from(&a)
                    .and(&aa)
                    .map_collect(|&a, &aa| qb * a + qc * aa);
                let bx = mul(b.view(), x.view())?;
                Zip::from(&mut x)
                    .and(&bx)
                    .for_each(|x, &bx| *x = qa * *x + bx);
            }
        }
    }
    Ok(if tall {
        x.reversed_axes().as_standard_layout().into_owned()
    } else {
        x
    })
}

/// A·B in f32 on the CPU's tuned product ([`crate::product::gemm`]).
pub fn product_f32(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Array2<f32> {
    let mut c = Array2::<f32>::zeros((a.nrows(), b.ncols()));
    crate::product::gemm(a, b, &mut c.view_mut(), false);
    c
}

/// A·B in f64 (ndarray's product).
pub fn product_f64(a: ArrayView2<'_, f64>, b: ArrayView2<'_, f64>) -> Array2<f64> {
    a.dot(&b)
}

/// msgn(G) in f32, `steps` iterations of `kind` on the CPU.
pub fn msgn_f32(g: ArrayView2<'_, f32>, kind: NewtonSchulz, steps: usize) -> Array2<f32> {
    let out: Result<_, std::convert::Infallible> =
        newton_schulz(g, kind, steps, |a, b| Ok(product_f32(a, b)));
    match out {
        Ok(x) => x,
        Err(never) => match never {},
    }
}

/// msgn(G) in f64, `steps` iterations of `kind`.
pub fn msgn_f64(g: ArrayView2<'_, f64>, kind: NewtonSchulz, steps: usize) -> Array2<f64> {
    let out: Result<_, std::convert::Infallible> =
        newton_schulz(g, kind, steps, |a, b| Ok(product_f64(a, b)));
    match out {
        Ok(x) => x,
        Err(never) => match never {},
    }
}
