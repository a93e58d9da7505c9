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
        model.check_labels(labels, b)?;
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

/// z_qα = Σ_μ [F(s_qμ + L_μα + ξ^μ_α) − F(s_qμ + L_μα − ξ^μ_α)], term by term in f64.
fn label_sum(
    model: &ClassifierModel,
    memories: ArrayView2<'_, f64>,
    s: &Array2<f64>,
    l: &Array2<f64>,
    (k, n): (usize, usize),
    q: usize,
    a: usize,
) -> f64 {
    (0..k)
        .map(|mu| {
            let base = s[[q, mu]] + l[[mu, a]];
            let x = memories[[mu, n + a]];
            model.f(base + x) - model.f(base - x)
        })
        .sum()
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
        (beta * label_sum(model, memories, &s, &l, (k, n), q, a)).tanh()
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
            let z = label_sum(model, memories, &s, &l, (k, n), q, a);
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

    /// A memory whose gradient row is exactly zero keeps its entries and its velocity,
    /// however large the velocity; the others take the normalised momentum step.
    #[test]
    fn a_zero_gradient_row_leaves_its_memory_and_velocity_alone() {
        let memories = Array2::from_shape_fn((3, 4), |(m, i)| 0.1 * (m + i) as f32 - 0.2);
        let velocity = Array2::from_shape_fn((3, 4), |(m, i)| 0.5 - 0.25 * (m * 4 + i) as f32);
        let mut gradient = Array2::from_shape_fn((3, 4), |(m, i)| (m as f32 - i as f32) * 0.1);
        gradient.row_mut(1).fill(0.0);
        let (mut m, mut v) = (memories.clone(), velocity.clone());
        fast::optimiser_step(
            m.view_mut(),
            v.view_mut(),
            &[
                (0, gradient.slice(ndarray::s![..2, ..]).to_owned()),
                (2, gradient.slice(ndarray::s![2.., ..]).to_owned()),
            ],
            0.05,
            0.9,
        );
        assert_eq!(m.row(1), memories.row(1));
        assert_eq!(v.row(1), velocity.row(1));
        for row in [0, 2] {
            let expected_v: Vec<f32> = velocity
                .row(row)
                .iter()
                .zip(gradient.row(row))
                .map(|(&v, &g)| 0.9 * v - g)
                .collect();
            assert_eq!(v.row(row).to_vec(), expected_v, "row {row}");
            let scale = expected_v.iter().fold(0.0f32, |a, x| a.max(x.abs()));
            let expected_m: Vec<f32> = memories
                .row(row)
                .iter()
                .zip(&expected_v)
                .map(|(&m, &v)| (m + 0.05 / scale * v).clamp(-1.0, 1.0))
                .collect();
            assert_eq!(m.row(row).to_vec(), expected_m, "row {row}");
            assert_ne!(m.row(row), memories.row(row), "row {row} moved");
        }
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
/// order, so results do not depend on timing), the F/F′/tanh epilogues of
/// `dam_core::learn` in f64. Inputs must already be validated ([`fast::check_fast`]).
/// Tested against the reference in `tests/learn.rs` with a named tolerance.
pub mod fast {
    use super::*;
    use crate::learn_epilogue::{accumulate_z, backward_epilogue, label_rows};
    use ndarray::linalg::general_mat_mul;
    use ndarray::{s, ArrayViewMut2, Axis};

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

    /// Per memory range: s (B × K_r), its label rows, and the partial sums z (B × C).
    struct Range {
        s: Array2<f32>,
        xs: Vec<f32>,
        ls: Vec<f32>,
        z: Vec<f64>,
    }

    fn forward_ranges(
        model: &ClassifierModel,
        memories: ArrayView2<'_, f32>,
        images: ArrayView2<'_, f32>,
    ) -> (Vec<Range>, Vec<f64>) {
        let (n, c, b) = (images.ncols(), model.classes, images.nrows());
        let block = crate::fast::block_rows(n + c);
        let ranges = crate::fast::per_range(memories.nrows(), block, 0, |(a, e)| {
            let rows = memories.slice(s![a..e, ..]);
            let mut sr = Array2::<f32>::zeros((b, rows.nrows()));
            general_mat_mul(1.0, &images, &rows.slice(s![.., ..n]).t(), 0.0, &mut sr);
            let owned = rows.as_standard_layout();
            let (xs, ls) = label_rows(owned.as_slice().expect("standard layout"), n + c, model);
            let mut z = vec![0.0f64; b * c];
            accumulate_z(
                model,
                sr.as_slice().expect("standard layout"),
                rows.nrows(),
                &xs,
                &ls,
                &mut z,
            );
            Range { s: sr, xs, ls, z }
        });
        let mut z = vec![0.0f64; b * c];
        for r in &ranges {
            for (a, v) in z.iter_mut().zip(&r.z) {
                *a += v;
            }
        }
        (ranges, z)
    }

    /// [`outputs`](super::outputs) in f32 products: c (B × C).
    pub fn outputs(
        model: &ClassifierModel,
        memories: ArrayView2<'_, f32>,
        images: ArrayView2<'_, f32>,
    ) -> Array2<f64> {
        let (_, bz) = forward_ranges(model, memories, images);
        Array2::from_shape_vec((images.nrows(), model.classes), bz)
            .expect("B × C")
            .mapv(f64::tanh)
    }

    /// [`loss_and_gradient`](super::loss_and_gradient) in f32 products: (loss, gradient
    /// K × (N + C) in f32).
    pub fn loss_and_gradient(
        model: &ClassifierModel,
        memories: ArrayView2<'_, f32>,
        images: ArrayView2<'_, f32>,
        labels: &[usize],
    ) -> (f64, Array2<f32>) {
        let (loss, parts) = loss_and_gradient_parts(model, memories, images, labels);
        let views: Vec<ArrayView2<'_, f32>> = parts.iter().map(|(_, p)| p.view()).collect();
        let grad = ndarray::concatenate(Axis(0), &views).expect("same widths");
        (loss, grad)
    }

    /// [`loss_and_gradient`] with the gradient left in the pieces the threads computed:
    /// (first memory, its rows of the gradient), in order of the memories, so that an
    /// optimiser can apply each piece where it was made without joining them.
    pub fn loss_and_gradient_parts(
        model: &ClassifierModel,
        memories: ArrayView2<'_, f32>,
        images: ArrayView2<'_, f32>,
        labels: &[usize],
    ) -> (f64, Vec<(usize, Array2<f32>)>) {
        let (n, c, b) = (images.ncols(), model.classes, images.nrows());
        let (ranges, z) = forward_ranges(model, memories, images);
        let (loss, g) = model.loss_and_output_gradient(&z, labels);
        let block = crate::fast::block_rows(n + c);
        let starts: Vec<usize> = ranges
            .iter()
            .scan(0, |acc, r| {
                let s = *acc;
                *acc += r.s.ncols();
                Some(s)
            })
            .collect();
        let parts = crate::fast::per_range(memories.nrows(), block, 0, |(first, e)| {
            let rows = memories.slice(s![first..e, ..]);
            let r = &ranges[starts
                .iter()
                .position(|&s| s == first)
                .expect("same ranges")];
            let k = rows.nrows();
            let mut a_t = Array2::<f32>::zeros((b, k));
            let mut lab = vec![0.0f64; k * c];
            backward_epilogue(
                model,
                r.s.as_slice().expect("standard layout"),
                k,
                &r.xs,
                &r.ls,
                &g,
                a_t.as_slice_mut().expect("standard layout"),
                &mut lab,
            );
            let mut grad = Array2::<f32>::zeros((k, n + c));
            general_mat_mul(
                1.0,
                &a_t.t(),
                &images,
                0.0,
                &mut grad.slice_mut(s![.., ..n]),
            );
            let sums = a_t.mapv(|v| v as f64).sum_axis(Axis(0));
            for j in 0..k {
                for a in 0..c {
                    grad[[j, n + a]] = (lab[a * k + j] - sums[j]) as f32;
                }
            }
            (first, grad)
        });
        (loss, parts)
    }

    /// The Muon step for one gradient (K × (N + C), f32), with the velocity convention of
    /// [`optimiser_step`]: V ← p V − ∇ on the memories whose gradient row is not exactly
    /// zero (the others keep their entries and velocity, as there), then
    /// ξ ← clip(ξ + ε·s·msgn(V′), −1, 1) with V′ the velocity with the untouched rows set
    /// to 0, msgn(V′) = U sign(Σ) Wᵀ computed by `msgn` (Newton–Schulz,
    /// [`crate::msgn`]) and s = √max(1, K/(N + C)) (Muon's shape factor: the entries of
    /// msgn of a tall matrix are smaller). A zero row of V′ is a zero row of msgn(V′), so
    /// the untouched memories stay bit for bit.
    pub fn muon_step(
        mut memories: ArrayViewMut2<'_, f32>,
        mut velocity: ArrayViewMut2<'_, f32>,
        gradient: ArrayView2<'_, f32>,
        lr: f64,
        p: f64,
        msgn: impl FnOnce(ArrayView2<'_, f32>) -> Array2<f32>,
    ) {
        let (k, width) = gradient.dim();
        let active: Vec<bool> = gradient
            .axis_iter(Axis(0))
            .map(|g| g.iter().any(|&g| g != 0.0))
            .collect();
        let pf = p as f32;
        let mut direction = Array2::<f32>::zeros((k, width));
        for (((mut v, g), mut d), &on) in velocity
            .axis_iter_mut(Axis(0))
            .zip(gradient.axis_iter(Axis(0)))
            .zip(direction.axis_iter_mut(Axis(0)))
            .zip(&active)
        {
            if on {
                v.zip_mut_with(&g, |v, &g| *v = pf * *v - g);
                d.assign(&v);
            }
        }
        let ortho = msgn(direction.view());
        let scale = (k as f64 / width as f64).max(1.0).sqrt();
        let step = (lr * scale) as f32;
        for ((mut m, o), &on) in memories
            .axis_iter_mut(Axis(0))
            .zip(ortho.axis_iter(Axis(0)))
            .zip(&active)
        {
            if on {
                m.zip_mut_with(&o, |a, &b| *a = (*a + step * b).clamp(-1.0, 1.0));
            }
        }
    }

    /// The optimiser step for one gradient, given as pieces (first memory, rows) in order
    /// of the memories (K × (N + C) in all), in f32: V ← p V − ∇, then each memory moves by
    /// ε V / max|V| (when V ≠ 0) and is clipped to [−1, 1]. A memory whose gradient row is
    /// exactly zero is left alone, velocity included: it has nothing to learn from this
    /// batch, and the normalised step would otherwise move it by ε along its stale velocity
    /// (at any loss, even 0). Row by row, one thread per piece.
    pub fn optimiser_step(
        memories: ArrayViewMut2<'_, f32>,
        velocity: ArrayViewMut2<'_, f32>,
        parts: &[(usize, Array2<f32>)],
        lr: f64,
        p: f64,
    ) {
        let (lr, p) = (lr as f32, p as f32);
        let update = |mut mem: ndarray::ArrayViewMut2<'_, f32>,
                      mut vel: ndarray::ArrayViewMut2<'_, f32>,
                      g: ArrayView2<'_, f32>| {
            for ((mut m, mut v), g) in mem
                .axis_iter_mut(Axis(0))
                .zip(vel.axis_iter_mut(Axis(0)))
                .zip(g.axis_iter(Axis(0)))
            {
                if g.iter().all(|&g| g == 0.0) {
                    continue;
                }
                let mut scale = 0.0f32;
                v.zip_mut_with(&g, |v, &g| {
                    *v = p * *v - g;
                    scale = scale.max(v.abs());
                });
                if scale > 0.0 {
                    let step = lr / scale;
                    m.zip_mut_with(&v, |a, &b| *a = (*a + step * b).clamp(-1.0, 1.0));
                }
            }
        };
        let total = memories.nrows();
        let (mut mem, mut vel) = (memories, velocity);
        let mut pieces = Vec::with_capacity(parts.len());
        for (first, g) in parts {
            debug_assert_eq!(
                *first,
                total - mem.nrows(),
                "gradient pieces in order of the memories"
            );
            let (m_here, m_rest) = mem.split_at(Axis(0), g.nrows());
            let (v_here, v_rest) = vel.split_at(Axis(0), g.nrows());
            pieces.push((m_here, v_here, g.view()));
            (mem, vel) = (m_rest, v_rest);
        }
        debug_assert_eq!(mem.nrows(), 0, "the gradient covers every memory");
        std::thread::scope(|scope| {
            let update = &update;
            let mut rest = pieces.into_iter();
            let first = rest.next();
            for (m, v, g) in rest {
                scope.spawn(move || update(m, v, g));
            }
            if let Some((m, v, g)) = first {
                update(m, v, g);
            }
        });
    }
}
