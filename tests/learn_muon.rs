//! The Muon optimiser of the classifier: Newton–Schulz gives the orthogonal polar factor,
//! a Muon epoch lowers the loss on the CPU and on the reference (which agree), memories
//! with nothing to learn stay put, and the optimiser is refused where it does not run.

use dam::cpu::learn::{self, fast};
use dam::cpu::msgn::{msgn_f32, msgn_f64, NewtonSchulz};
use dam::learn::{Classifier, ClassifierModel, EpochOptions, Optimizer};
use dam::{Device, Error};
use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};

/// Newton–Schulz in f64 (cubic, enough iterations to converge): X Xᵀ = I and X Gᵀ
/// symmetric to this absolute tolerance.
const NS_TOL_F64: f64 = 1e-9;
/// The same in f32.
const NS_TOL_F32: f64 = 2e-4;
/// Memories after a Muon epoch, CPU (f32 products and iteration) against the reference
/// (f64 gradient and iteration): absolute, entries in [−1, 1].
const DEVICES_TOL: f64 = 2e-3;

fn uniform(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0..1.0))
}

fn max_abs_diff(a: ArrayView2<'_, f64>, b: ArrayView2<'_, f64>) -> f64 {
    assert_eq!(a.dim(), b.dim());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// For a full-rank G (either shape), X = msgn(G) = U Vᵀ exactly when its Gram matrix on
/// the smaller side is the identity (every singular value 1) and X Gᵀ (Gᵀ X when tall) is
/// symmetric: that product is U Σ Uᵀ (V Σ Vᵀ), so X shares G's singular vectors.
fn check_polar(g: &Array2<f64>, x: &Array2<f64>, tol: f64, what: &str) {
    let (m, n) = g.dim();
    let (gram, sym) = if m <= n {
        (x.dot(&x.t()), x.dot(&g.t()))
    } else {
        (x.t().dot(x), g.t().dot(x))
    };
    let eye = Array2::<f64>::eye(m.min(n));
    let gram_err = max_abs_diff(gram.view(), eye.view());
    assert!(gram_err <= tol, "{what}: ‖XXᵀ − I‖_max = {gram_err}");
    let sym_err = max_abs_diff(sym.view(), sym.t());
    assert!(
        sym_err <= tol * 10.0,
        "{what}: X Gᵀ not symmetric by {sym_err}"
    );
    // Positive semi-definite diagonal (U Σ Uᵀ with Σ ≥ 0).
    assert!(
        sym.diag().iter().all(|&d| d > 0.0),
        "{what}: X Gᵀ has a non-positive diagonal"
    );
}

#[test]
fn newton_schulz_gives_the_orthogonal_polar_factor() {
    for (rows, cols, seed) in [(12, 30, 1), (30, 12, 2), (9, 9, 3)] {
        let g = uniform(rows, cols, seed);
        let x64 = msgn_f64(g.view(), NewtonSchulz::Cubic, 60);
        check_polar(&g, &x64, NS_TOL_F64, &format!("f64 {rows}×{cols}"));
        let x32 = msgn_f32(g.mapv(|v| v as f32).view(), NewtonSchulz::Cubic, 60).mapv(f64::from);
        check_polar(&g, &x32, NS_TOL_F32, &format!("f32 {rows}×{cols}"));
        let diff = max_abs_diff(x32.view(), x64.view());
        assert!(diff <= NS_TOL_F32, "{rows}×{cols}: f32 vs f64 by {diff}");
        // The quintic iteration only brings the singular values into about [0.7, 1.2]:
        // the eigenvalues σ² of the Gram matrix lie within [0.4, 1.5] (Gershgorin bound
        // on the trace, and the largest by the Frobenius norm).
        let q = msgn_f64(g.view(), NewtonSchulz::Quintic, 5);
        let gram = if rows <= cols {
            q.dot(&q.t())
        } else {
            q.t().dot(&q)
        };
        let mean_sq = gram.diag().sum() / rows.min(cols) as f64;
        assert!(
            (0.5..1.5).contains(&mean_sq),
            "{rows}×{cols}: quintic mean σ² = {mean_sq}"
        );
    }
    let zero = Array2::<f64>::zeros((4, 7));
    assert_eq!(msgn_f64(zero.view(), NewtonSchulz::Quintic, 5), zero);
}

fn toy() -> (Array2<f64>, Vec<usize>) {
    let labels: Vec<usize> = (0..90).map(|q| q % 3).collect();
    let images = Array2::from_shape_fn((90, 24), |(q, i)| {
        let v = if i / 8 == labels[q] { 1.0 } else { -1.0 };
        if (q * 7 + i * 3) % 11 == 0 {
            -v
        } else {
            v
        }
    });
    (images, labels)
}

fn toy_model() -> ClassifierModel {
    ClassifierModel {
        degree: 3,
        rectified: true,
        temperature: 4.0,
        loss_power: 1,
        classes: 3,
    }
}

fn full_loss(clf: &Classifier, images: &Array2<f64>, labels: &[usize]) -> f64 {
    learn::loss_and_gradient(clf.model(), clf.memories(), images.view(), labels)
        .unwrap()
        .0
}

#[test]
fn a_muon_epoch_lowers_the_loss_and_the_devices_agree() {
    let (images, labels) = toy();
    let opts = EpochOptions {
        batch: 30,
        lr: 0.02,
        lr_decay: 1.0,
        seed: 2,
        momentum: Some(0.5),
        shift: 0,
    };
    let mut trained = Vec::new();
    for device in [Device::Cpu, Device::Reference] {
        let mut clf = Classifier::random(toy_model(), 9, 24, 1, &device).unwrap();
        assert_eq!(clf.optimizer(), Optimizer::Krotov);
        clf.set_optimizer(Optimizer::muon()).unwrap();
        assert_eq!(clf.optimizer(), Optimizer::muon());
        let before = full_loss(&clf, &images, &labels);
        let mut losses = vec![before];
        for _ in 0..3 {
            clf.train_epoch(images.view(), &labels, &opts).unwrap();
            losses.push(full_loss(&clf, &images, &labels));
        }
        assert!(
            losses.windows(2).all(|w| w[1] < w[0]),
            "{device:?}: losses {losses:?}"
        );
        assert!(clf.last_epoch().unwrap().updated > 0, "{device:?}");
        trained.push(clf.memories().to_owned());
    }
    let diff = max_abs_diff(trained[0].view(), trained[1].view());
    assert!(diff <= DEVICES_TOL, "CPU vs reference memories by {diff}");
}

/// Muon keeps the Krotov default bit for bit when not chosen: two classifiers, one set to
/// Krotov explicitly, train to the same memories.
#[test]
fn krotov_stays_the_default() {
    let (images, labels) = toy();
    let opts = EpochOptions {
        batch: 10,
        lr: 0.1,
        lr_decay: 1.0,
        seed: 2,
        momentum: None,
        shift: 0,
    };
    let mut a = Classifier::random(toy_model(), 9, 24, 1, &Device::Cpu).unwrap();
    let mut b = a.clone();
    b.set_optimizer(Optimizer::Krotov).unwrap();
    a.train_epoch(images.view(), &labels, &opts).unwrap();
    b.train_epoch(images.view(), &labels, &opts).unwrap();
    assert_eq!(a.memories(), b.memories());
}

#[test]
fn memories_with_zero_gradient_and_momentum_stay_put() {
    let memories = uniform(6, 10, 5).mapv(|v| (0.9 * v) as f32);
    let mut gradient = uniform(6, 10, 6).mapv(|v| v as f32);
    gradient.row_mut(2).fill(0.0);
    gradient.row_mut(4).fill(0.0);
    let mut velocity = Array2::<f32>::zeros((6, 10));
    // Rows 2 and 4 carry a stale velocity in the second case: it must be kept too.
    for stale in [false, true] {
        if stale {
            velocity.row_mut(4).fill(0.25);
        }
        let (mut m, mut v) = (memories.clone(), velocity.clone());
        fast::muon_step(
            m.view_mut(),
            v.view_mut(),
            gradient.view(),
            0.05,
            0.9,
            |d| msgn_f32(d, NewtonSchulz::Quintic, 5),
        );
        for row in [2, 4] {
            assert_eq!(m.row(row), memories.row(row), "stale={stale} row {row}");
            assert_eq!(v.row(row), velocity.row(row), "stale={stale} row {row}");
        }
        for row in [0, 1, 3, 5] {
            assert_ne!(
                m.row(row),
                memories.row(row),
                "stale={stale} row {row} moved"
            );
            let expected: Vec<f32> = velocity
                .row(row)
                .iter()
                .zip(gradient.row(row))
                .map(|(&v, &g)| 0.9 * v - g)
                .collect();
            assert_eq!(v.row(row).to_vec(), expected, "stale={stale} row {row}");
        }
    }
    // All-zero gradient: nothing moves at all.
    let (mut m, mut v) = (memories.clone(), velocity.clone());
    fast::muon_step(
        m.view_mut(),
        v.view_mut(),
        Array2::<f32>::zeros((6, 10)).view(),
        0.05,
        0.9,
        |d| msgn_f32(d, NewtonSchulz::Quintic, 5),
    );
    assert_eq!(m, memories);
    assert_eq!(v, velocity);
}

#[test]
fn muon_is_refused_where_it_does_not_run() {
    let mut clf = Classifier::random(toy_model(), 4, 24, 1, &Device::Cpu).unwrap();
    let zero = clf
        .set_optimizer(Optimizer::Muon { ns_steps: 0 })
        .unwrap_err();
    assert!(
        matches!(
            zero,
            Error::InvalidParameter {
                argument: "ns_steps",
                ..
            }
        ),
        "{zero}"
    );
    assert_eq!(clf.optimizer(), Optimizer::Krotov);
    assert!(Optimizer::muon().validate(&Device::Reference).is_ok());
    assert!(Optimizer::Krotov.validate(&Device::wgpu()).is_ok());
    let wgpu = Optimizer::muon().validate(&Device::wgpu()).unwrap_err();
    assert!(
        matches!(wgpu, Error::Unsupported { ref detail, .. } if detail.contains("Device::Cpu")),
        "{wgpu}"
    );
}
