//! The f32 matrix product of the fast CPU paths: the `gemm` crate's tuned kernels on one
//! thread (the callers split their work across cores themselves), behind a safe function
//! of ndarray views with any strides.

use ndarray::{ArrayView2, ArrayViewMut2};

/// C ← A·B, or C ← C + A·B when `accumulate`: A is m×k, B k×n, C m×n, any strides.
///
/// # Panics
/// When the shapes do not fit (a bug in the caller, not bad input).
pub fn gemm(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    c: &mut ArrayViewMut2<'_, f32>,
    accumulate: bool,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert_eq!(b.nrows(), k, "inner dimensions of the product");
    assert_eq!(c.dim(), (m, n), "shape of the product");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return;
    }
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (c_rs, c_cs) = (c.strides()[0], c.strides()[1]);
    // SAFETY: each pointer is the first element of a view whose m×k, k×n and m×n elements
    // lie at the given (element) strides from it, as ndarray guarantees for a view; C is
    // borrowed mutably, so it overlaps neither A nor B; `gemm` reads C only when asked to
    // accumulate, and writes only C's elements.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs,
            c_rs,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array2};

    #[test]
    fn products_of_strided_views_match_plain_sums() {
        let a = Array2::from_shape_fn((7, 5), |(i, j)| (i * 5 + j) as f32 * 0.25 - 3.0);
        let b = Array2::from_shape_fn((9, 11), |(i, j)| ((i * 11 + j) % 7) as f32 - 2.5);
        // Aᵀ-like and sliced operands: 5×7 · 7×4 (a transposed view, a column slice).
        let at = a.t();
        let bs = b.slice(s![..7, 3..7]);
        let mut c = Array2::<f32>::from_elem((5, 4), 1.0);
        gemm(at, bs, &mut c.view_mut(), true);
        for i in 0..5 {
            for j in 0..4 {
                let want: f32 = 1.0 + (0..7).map(|t| at[[i, t]] * bs[[t, j]]).sum::<f32>();
                assert!(
                    (c[[i, j]] - want).abs() < 1e-4,
                    "({i},{j}) {} vs {want}",
                    c[[i, j]]
                );
            }
        }
        gemm(at, bs, &mut c.view_mut(), false);
        let want: f32 = (0..7).map(|t| at[[2, t]] * bs[[t, 1]]).sum();
        assert!((c[[2, 1]] - want).abs() < 1e-4);
        let empty = Array2::<f32>::zeros((5, 0));
        let none = Array2::<f32>::zeros((0, 4));
        gemm(empty.view(), none.view(), &mut c.view_mut(), false);
        assert!(
            c.iter().all(|&v| v == 0.0),
            "k = 0 without accumulating is zero"
        );
    }
}
