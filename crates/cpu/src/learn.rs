//! The CPU reference of the classifier of `dam_core::learn` (Krotov & Hopfield 2016):
//! outputs, loss and the analytic gradient with respect to the memories, in plain f64 loops.
//! Every faster path (fused CPU, WGSL) is checked against this one, and this one against
//! central finite differences.

use dam_core::learn::ClassifierModel;
use dam_core::{Error, Result};
use ndarray::{Array2, ArrayView2};

/// Checks shapes and values; returns (K, N, B).
fn check(
    model: &ClassifierModel,
    memories: ArrayView2<'_, f64>,
    images: ArrayView2<'_, f64>,
    labels: Option<&[usize]>,
) -> Result<(usize, usize, usize)> {
    model.validate()?;
    let (k, width) = memories.dim();
    let (b, n) = images.dim();
    if k == 0 {
        return Err(Error::Empty {
            argument: "memories (K)",
            detail: "K = 0".into(),
        });
    }
    if width != n + model.classes {
        return Err(Error::DimensionMismatch {
            argument: "memories (K × (N + C))",
            expected: n + model.classes,
            actual: width,
        });
    }
    if b == 0 || n == 0 {
        return Err(Error::Empty {
            argument: "images (B × N)",
            detail: format!("B = {b}, N = {n}"),
        });
    }
    for (name, a) in [("memories", memories), ("images", images)] {
        if let Some(pos) = a.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidParameter {
                argument: name,
                value: a.iter().nth(pos).map_or(String::new(), |v| v.to_string()),
                reason: format!("entry {pos} is not finite"),
            });
        }
    }
    if let Some(labels) = labels {
        if labels.len() != b {
            return Err(Error::DimensionMismatch {
                argument: "labels (one per image)",
                expected: b,
                actual: labels.len(),
            });
        }
        if let Some(i) = labels.iter().position(|&l| l >= model.classes) {
            return Err(Error::InvalidParameter {
                argument: "labels",
                value: labels[i].to_string(),
                reason: format!("label of sample {i} is not below C = {}", model.classes),
            });
        }
    }
    Ok((k, n, b))
}

/// s (B × K) = images · visible(memories)ᵀ and L (K × C), L_μα = −Σ_{γ≠α} ξ^μ_γ.
fn similarities(
    model: &ClassifierModel,
    memories: ArrayView2<'_, f64>,
    images: ArrayView2<'_, f64>,
    n: usize,
) -> (Array2<f64>, Array2<f64>) {
    let k = memories.nrows();
    let visible = memories.slice(ndarray::s![.., ..n]);
    let s = images.dot(&visible.t());
    let mut l = Array2::zeros((k, model.classes));
    for mu in 0..k {
        let total: f64 = (0..model.classes).map(|g| memories[[mu, n + g]]).sum();
        for a in 0..model.classes {
            l[[mu, a]] = -(total - memories[[mu, n + a]]);
        }
    }
    (s, l)
}

/// The label outputs c (B × C) of every image.
pub fn outputs(
    model: &ClassifierModel,
    memories: ArrayView2<'_, f64>,
    images: ArrayView2<'_, f64>,
) -> Result<Array2<f64>> {
    let (k, n, b) = check(model, memories, images, None)?;
    let (s, l) = similarities(model, memories, images, n);
    let beta = model.beta();
    Ok(Array2::from_shape_fn((b, model.classes), |(q, a)| {
        let z: f64 = (0..k)
            .map(|mu| {
                let base = s[[q, mu]] + l[[mu, a]];
                let x = memories[[mu, n + a]];
                model.f(base + x) - model.f(base - x)
            })
            .sum();
        (beta * z).tanh()
    }))
}

/// The batch loss Σ_b Σ_α (c − t)^{2m} and its gradient with respect to the memories
/// (K × (N + C)), as derived in `dam_core::learn`.
pub fn loss_and_gradient(
    model: &ClassifierModel,
    memories: ArrayView2<'_, f64>,
    images: ArrayView2<'_, f64>,
    labels: &[usize],
) -> Result<(f64, Array2<f64>)> {
    let (k, n, b) = check(model, memories, images, Some(labels))?;
    let (s, l) = similarities(model, memories, images, n);
    let (beta, m2) = (model.beta(), 2 * model.loss_power as i32);
    let mut loss = 0.0;
    let mut a_mat = Array2::<f64>::zeros((k, b));
    let mut grad = Array2::<f64>::zeros((k, n + model.classes));
    for q in 0..b {
        for a in 0..model.classes {
            let z: f64 = (0..k)
                .map(|mu| {
                    let base = s[[q, mu]] + l[[mu, a]];
                    let x = memories[[mu, n + a]];
                    model.f(base + x) - model.f(base - x)
                })
                .sum();
            let c = (beta * z).tanh();
            let t = if labels[q] == a { 1.0 } else { -1.0 };
            loss += (c - t).powi(m2);
            let g = m2 as f64 * (c - t).powi(m2 - 1) * beta * (1.0 - c * c);
            for mu in 0..k {
                let base = s[[q, mu]] + l[[mu, a]];
                let x = memories[[mu, n + a]];
                let (up, um) = (model.f_prime(base + x), model.f_prime(base - x));
                a_mat[[mu, q]] += g * (up - um);
                grad[[mu, n + a]] += 2.0 * g * up;
            }
        }
    }
    let visible = a_mat.dot(&images);
    grad.slice_mut(ndarray::s![.., ..n]).assign(&visible);
    let row_sums = a_mat.sum_axis(ndarray::Axis(1));
    for mu in 0..k {
        for a in 0..model.classes {
            grad[[mu, n + a]] -= row_sums[mu];
        }
    }
    Ok((loss, grad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn uniform(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0..1.0))
    }

    /// The analytic gradient equals central finite differences of the loss (f64), for
    /// xⁿ and max(x, 0)ⁿ at several n and m, on a model of K = 3, N = 5, C = 3, B = 4.
    #[test]
    fn gradient_matches_finite_differences() {
        let (k, n, c, b) = (3, 5, 3, 4);
        let images = uniform(b, n, 1);
        let labels = [0, 2, 1, 2];
        for (degree, rectified, loss_power, temperature) in [
            (2, false, 1, 1.5),
            (3, false, 1, 2.0),
            (3, true, 2, 1.7),
            (4, true, 1, 2.5),
            (1, false, 3, 0.8),
        ] {
            let model = ClassifierModel {
                degree,
                rectified,
                temperature,
                loss_power,
                classes: c,
            };
            let memories = uniform(k, n + c, 7 + degree as u64);
            let (_, grad) =
                loss_and_gradient(&model, memories.view(), images.view(), &labels).unwrap();
            let h = 1e-6;
            for mu in 0..k {
                for i in 0..n + c {
                    let mut plus = memories.clone();
                    plus[[mu, i]] += h;
                    let mut minus = memories.clone();
                    minus[[mu, i]] -= h;
                    let lp = loss_and_gradient(&model, plus.view(), images.view(), &labels)
                        .unwrap()
                        .0;
                    let lm = loss_and_gradient(&model, minus.view(), images.view(), &labels)
                        .unwrap()
                        .0;
                    let fd = (lp - lm) / (2.0 * h);
                    let got = grad[[mu, i]];
                    assert!(
                        (fd - got).abs() <= 1e-6 + 1e-5 * fd.abs(),
                        "n={degree} rectified={rectified} m={loss_power}: ∂/∂ξ[{mu},{i}] \
                         analytic {got} vs finite differences {fd}"
                    );
                }
            }
        }
    }

    /// The outputs are those of the loss (one definition of c), in (−1, 1).
    #[test]
    fn outputs_are_the_losses_tanh() {
        let model = ClassifierModel {
            degree: 3,
            rectified: true,
            temperature: 2.0,
            loss_power: 1,
            classes: 4,
        };
        let memories = uniform(6, 9 + 4, 3);
        let images = uniform(5, 9, 4);
        let c = outputs(&model, memories.view(), images.view()).unwrap();
        assert!(c.iter().all(|v| v.abs() < 1.0));
        let labels = [0, 1, 2, 3, 0];
        let (loss, _) = loss_and_gradient(&model, memories.view(), images.view(), &labels).unwrap();
        let expected: f64 = (0..5)
            .flat_map(|q| (0..4).map(move |a| (q, a)))
            .map(|(q, a)| {
                let t = if labels[q] == a { 1.0 } else { -1.0 };
                (c[[q, a]] - t).powi(2)
            })
            .sum();
        assert!((loss - expected).abs() < 1e-12 * expected.max(1.0));
    }

    #[test]
    fn bad_input_names_the_argument() {
        let model = ClassifierModel {
            degree: 3,
            rectified: false,
            temperature: 1.0,
            loss_power: 1,
            classes: 3,
        };
        let memories = uniform(2, 4 + 3, 1);
        let images = uniform(2, 4, 2);
        let arg = |r: Result<(f64, Array2<f64>)>| match r.unwrap_err() {
            Error::InvalidParameter { argument, .. }
            | Error::DimensionMismatch { argument, .. }
            | Error::Empty { argument, .. } => argument,
            other => panic!("{other}"),
        };
        let run = |model: &ClassifierModel, m: &Array2<f64>, x: &Array2<f64>, l: &[usize]| {
            loss_and_gradient(model, m.view(), x.view(), l)
        };
        assert_eq!(arg(run(&model, &memories, &images, &[0, 3])), "labels");
        assert_eq!(
            arg(run(&model, &memories, &images, &[0])),
            "labels (one per image)"
        );
        assert_eq!(
            arg(run(&model, &Array2::zeros((0, 7)), &images, &[0, 1])),
            "memories (K)"
        );
        let mut nan = images.clone();
        nan[[1, 2]] = f64::NAN;
        assert_eq!(arg(run(&model, &memories, &nan, &[0, 1])), "images");
        for bad in [
            ClassifierModel { degree: 0, ..model },
            ClassifierModel {
                temperature: 0.0,
                ..model
            },
            ClassifierModel {
                temperature: f64::NAN,
                ..model
            },
            ClassifierModel {
                loss_power: 0,
                ..model
            },
        ] {
            assert!(run(&bad, &memories, &images, &[0, 1]).is_err());
        }
        assert_eq!(
            arg(run(&model, &uniform(2, 8, 1), &images, &[0, 1])),
            "memories (K × (N + C))"
        );
    }
}

/// The fast path of [`outputs`] and [`loss_and_gradient`]: the two matrix products in f32
/// through `matrixmultiply` (threads over contiguous ranges of memories, merged in range
/// order, so results do not depend on timing), the F/F′/tanh epilogues in f64. Inputs must
/// already be validated ([`check_fast`]). Tested against the reference in
/// `tests/learn.rs` with a named tolerance.
pub mod fast {
    use super::*;
    use ndarray::linalg::general_mat_mul;
    use ndarray::{s, Axis};

    /// Checks shapes and values as the reference does; returns (K, N, B).
    pub fn check_fast(
        model: &ClassifierModel,
        memories: ArrayView2<'_, f32>,
        images: ArrayView2<'_, f32>,
        labels: Option<&[usize]>,
    ) -> Result<(usize, usize, usize)> {
        let m = memories.mapv(|v| v as f64);
        let x = images.mapv(|v| v as f64);
        check(model, m.view(), x.view(), labels)
    }

    /// Per memory range: s (B × K_r) and the partial sums z (B × C) of its memories.
    struct Range {
        s: Array2<f32>,
        z: Array2<f64>,
    }

    fn label_terms(
        model: &ClassifierModel,
        memories: ArrayView2<'_, f32>,
        n: usize,
    ) -> Array2<f64> {
        let c = model.classes;
        Array2::from_shape_fn((memories.nrows(), c), |(mu, a)| {
            let total: f64 = (0..c).map(|g| memories[[mu, n + g]] as f64).sum();
            -(total - memories[[mu, n + a]] as f64)
        })
    }

    /// xⁿ for the small degrees without a call, else `powi`.
    #[inline(always)]
    fn pow_n(x: f64, n: u32) -> f64 {
        match n {
            1 => x,
            2 => x * x,
            3 => x * x * x,
            4 => {
                let y = x * x;
                y * y
            }
            _ => x.powi(n as i32),
        }
    }

    /// Per memory of a range (row-major K_r × C): its label entries and its L terms.
    fn label_rows(
        rows: ArrayView2<'_, f32>,
        l: &Array2<f64>,
        first: usize,
        n: usize,
        c: usize,
    ) -> (Vec<f64>, Vec<f64>) {
        let k = rows.nrows();
        let xs = (0..k * c)
            .map(|i| rows[[i / c, n + i % c]] as f64)
            .collect();
        let ls = (0..k * c).map(|i| l[[first + i / c, i % c]]).collect();
        (xs, ls)
    }

    fn forward_ranges(
        model: &ClassifierModel,
        memories: ArrayView2<'_, f32>,
        images: ArrayView2<'_, f32>,
        n: usize,
    ) -> (Vec<Range>, Array2<f64>, Array2<f64>) {
        let c = model.classes;
        let (degree, rectified) = (model.degree, model.rectified);
        let f = move |x: f64| pow_n(if rectified { x.max(0.0) } else { x }, degree);
        let l = label_terms(model, memories, n);
        let block = crate::fast::block_rows(n + c);
        let ranges = crate::fast::per_range(memories, block, 0, |rows, first| {
            let mut sr = Array2::<f32>::zeros((images.nrows(), rows.nrows()));
            general_mat_mul(1.0, &images, &rows.slice(s![.., ..n]).t(), 0.0, &mut sr);
            let (xs, ls) = label_rows(rows, &l, first, n, c);
            let mut z = Array2::<f64>::zeros((images.nrows(), c));
            let zs = z.as_slice_mut().expect("standard layout");
            let ss = sr.as_slice().expect("standard layout");
            let k = rows.nrows();
            for q in 0..images.nrows() {
                let zq = &mut zs[q * c..(q + 1) * c];
                for j in 0..k {
                    let sv = ss[q * k + j] as f64;
                    let (xj, lj) = (&xs[j * c..(j + 1) * c], &ls[j * c..(j + 1) * c]);
                    for a in 0..c {
                        let base = sv + lj[a];
                        zq[a] += f(base + xj[a]) - f(base - xj[a]);
                    }
                }
            }
            Range { s: sr, z }
        });
        let mut z = Array2::<f64>::zeros((images.nrows(), c));
        for r in &ranges {
            z += &r.z;
        }
        (ranges, z, l)
    }

    /// [`outputs`](super::outputs) in f32 products: c (B × C).
    pub fn outputs(
        model: &ClassifierModel,
        memories: ArrayView2<'_, f32>,
        images: ArrayView2<'_, f32>,
    ) -> Array2<f64> {
        let n = images.ncols();
        let beta = model.beta();
        let (_, z, _) = forward_ranges(model, memories, images, n);
        z.mapv(|v| (beta * v).tanh())
    }

    /// [`loss_and_gradient`](super::loss_and_gradient) in f32 products: (loss, gradient
    /// K × (N + C) in f32).
    pub fn loss_and_gradient(
        model: &ClassifierModel,
        memories: ArrayView2<'_, f32>,
        images: ArrayView2<'_, f32>,
        labels: &[usize],
    ) -> (f64, Array2<f32>) {
        let (n, c) = (images.ncols(), model.classes);
        let (beta, m2) = (model.beta(), 2 * model.loss_power as i32);
        let (degree, rectified) = (model.degree, model.rectified);
        // F′(x) = n xⁿ⁻¹ (0 at and below zero when rectified), as ClassifierModel::f_prime.
        let fp = move |x: f64| {
            if rectified && x <= 0.0 {
                0.0
            } else {
                degree as f64 * pow_n(x, degree - 1)
            }
        };
        let (ranges, z, l) = forward_ranges(model, memories, images, n);
        let mut loss = 0.0;
        let g = Array2::from_shape_fn(z.dim(), |(q, a)| {
            let cv = (beta * z[[q, a]]).tanh();
            let t = if labels[q] == a { 1.0 } else { -1.0 };
            loss += (cv - t).powi(m2);
            m2 as f64 * (cv - t).powi(m2 - 1) * beta * (1.0 - cv * cv)
        });
        let block = crate::fast::block_rows(n + c);
        let starts: Vec<usize> = {
            let mut acc = 0;
            ranges
                .iter()
                .map(|r| {
                    let s = acc;
                    acc += r.s.ncols();
                    s
                })
                .collect()
        };
        let parts = crate::fast::per_range(memories, block, 0, |rows, first| {
            let r = starts
                .iter()
                .position(|&s| s == first)
                .expect("same ranges");
            let sr = &ranges[r].s;
            let k = rows.nrows();
            let mut a_mat = Array2::<f32>::zeros((k, images.nrows()));
            let mut grad = Array2::<f32>::zeros((k, n + c));
            let mut lab = vec![0.0f64; k * c];
            let (xs, ls) = label_rows(rows, &l, first, n, c);
            let (bq, ss) = (images.nrows(), sr.as_slice().expect("standard layout"));
            let gs = g.as_slice().expect("standard layout");
            let am = a_mat.as_slice_mut().expect("standard layout");
            for q in 0..bq {
                let gq = &gs[q * c..(q + 1) * c];
                for j in 0..k {
                    let sv = ss[q * k + j] as f64;
                    let (xj, lj) = (&xs[j * c..(j + 1) * c], &ls[j * c..(j + 1) * c]);
                    let labj = &mut lab[j * c..(j + 1) * c];
                    let mut acc = 0.0f64;
                    for a in 0..c {
                        let base = sv + lj[a];
                        let (up, um) = (fp(base + xj[a]), fp(base - xj[a]));
                        acc += gq[a] * (up - um);
                        labj[a] += 2.0 * gq[a] * up;
                    }
                    am[j * bq + q] = acc as f32;
                }
            }
            general_mat_mul(1.0, &a_mat, &images, 0.0, &mut grad.slice_mut(s![.., ..n]));
            let sums = a_mat.mapv(|v| v as f64).sum_axis(Axis(1));
            for j in 0..k {
                for a in 0..c {
                    grad[[j, n + a]] = (lab[j * c + a] - sums[j]) as f32;
                }
            }
            grad
        });
        let views: Vec<ArrayView2<'_, f32>> = parts.iter().map(|p| p.view()).collect();
        let grad = ndarray::concatenate(Axis(0), &views).expect("same widths");
        (loss, grad)
    }
}
