//! The classifier's fast CPU path (f32 products, threads over memory ranges) and its wgpu
//! path (the generic matrix product) against the f64 reference, on sizes that are not
//! multiples of the blocks or tiles, for xⁿ and max(x, 0)ⁿ; and one training epoch on both
//! devices.

mod common;

use dam::cpu::learn::{self, fast};
use dam::learn::{Classifier, ClassifierModel, EpochOptions};
use dam::{Device, Tolerance, WgpuContext, WgpuOptions};
use ndarray::Array2;
use rand::{Rng, SeedableRng};

/// f32 products of length N ≈ 800 against f64, through F and its derivative: relative to
/// the largest magnitude of each output.
const LEARN_TOL: Tolerance = Tolerance::new(2e-4, 2e-3);

fn uniform(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0..1.0))
}

#[test]
fn fast_path_matches_the_reference() {
    for (k, n, b, degree, rectified, t) in [
        (37, 29, 7, 3, true, 6.0),
        (301, 97, 23, 2, false, 12.0),
        (1100, 200, 13, 3, true, 14.0),
        (90, 784, 5, 4, true, 25.0),
        (70, 41, 6, 6, true, 4.0),
        (45, 33, 9, 1, false, 3.0),
    ] {
        let model = ClassifierModel {
            degree,
            rectified,
            temperature: t,
            loss_power: 2,
            classes: 10,
        };
        let memories = uniform(k, n + 10, 1 + k as u64);
        let images = uniform(b, n, 2 + n as u64);
        let labels: Vec<usize> = (0..b).map(|q| (q * 7) % 10).collect();
        let (loss, grad) =
            learn::loss_and_gradient(&model, memories.view(), images.view(), &labels).unwrap();
        let c = learn::outputs(&model, memories.view(), images.view()).unwrap();
        let (m32, x32) = (memories.mapv(|v| v as f32), images.mapv(|v| v as f32));
        fast::check_fast(&model, m32.view(), x32.view(), Some(&labels)).unwrap();
        let (fl, fg) = fast::loss_and_gradient(&model, m32.view(), x32.view(), &labels);
        let fc = fast::outputs(&model, m32.view(), x32.view());
        common::gpu();
        let ctx = WgpuContext::shared(&WgpuOptions::default()).expect("adapter");
        let (gl, gg) = dam::wgpu_backend::learn::loss_and_gradient(
            &ctx,
            &model,
            m32.view(),
            x32.view(),
            &labels,
        )
        .unwrap();
        let gc = dam::wgpu_backend::learn::outputs(&ctx, &model, m32.view(), x32.view()).unwrap();
        let label = format!("K={k} N={n} B={b} n={degree} rectified={rectified}");
        assert!(
            c.iter().any(|v| v.abs() > 0.05 && v.abs() < 0.95),
            "{label}: outputs saturated or flat"
        );
        let scale = |a: &Array2<f64>| a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let gs = scale(&grad);
        for (got, want) in fg.iter().zip(grad.iter()) {
            assert!(
                LEARN_TOL.accepts(*got as f64 / gs, *want / gs),
                "{label}: gradient {got} vs {want} (scale {gs})"
            );
        }
        assert_eq!(fg.dim(), grad.dim());
        assert_eq!(gg.dim(), grad.dim());
        for (got, want) in gg.iter().zip(grad.iter()) {
            assert!(
                LEARN_TOL.accepts(*got as f64 / gs, *want / gs),
                "{label}: wgpu gradient {got} vs {want} (scale {gs})"
            );
        }
        assert_eq!((fc.dim(), gc.dim()), (c.dim(), c.dim()));
        for ((got, dev), want) in fc.iter().zip(gc.iter()).zip(c.iter()) {
            assert!(
                LEARN_TOL.accepts(*got, *want),
                "{label}: output {got} vs {want}"
            );
            assert!(
                LEARN_TOL.accepts(*dev, *want),
                "{label}: wgpu output {dev} vs {want}"
            );
        }
        assert!(LEARN_TOL.accepts(fl, loss), "{label}: loss {fl} vs {loss}");
        assert!(
            LEARN_TOL.accepts(gl, loss),
            "{label}: wgpu loss {gl} vs {loss}"
        );
    }
}

/// One epoch from the same seed on both devices ends with the same memories (within f32
/// rounding of the products, amplified by one normalised step) and the same predictions.
#[test]
fn one_epoch_gives_the_same_memories_on_both_devices() {
    let gpu = common::gpu();
    let model = ClassifierModel {
        degree: 3,
        rectified: true,
        temperature: 9.0,
        loss_power: 2,
        classes: 10,
    };
    let images = uniform(150, 70, 5);
    let labels: Vec<usize> = (0..150).map(|q| (q * 3) % 10).collect();
    let opts = EpochOptions {
        batch: 40,
        lr: 0.01,
        lr_decay: 1.0,
        seed: 2,
        momentum: None,
    };
    let run = |device: &Device| {
        let mut clf = Classifier::random(model, 77, 70, 9, device).unwrap();
        let loss = clf.train_epoch(images.view(), &labels, &opts).unwrap();
        (loss, clf)
    };
    let (lc, cpu) = run(&Device::Cpu);
    let (lg, dev) = run(&gpu);
    assert!(LEARN_TOL.accepts(lg, lc), "loss {lg} vs {lc}");
    let worst = cpu
        .memories()
        .iter()
        .zip(dev.memories().iter())
        .fold(0.0f64, |w, (a, b)| w.max((a - b).abs()));
    assert!(worst < 1e-3, "memories differ by {worst}");
    assert_eq!(
        cpu.predict(images.view()).unwrap(),
        dev.predict(images.view()).unwrap()
    );
}

/// More samples than one pass of the device's outputs (1,024): every pass is filled in.
#[test]
fn outputs_of_many_samples_run_in_passes() {
    common::gpu();
    let ctx = WgpuContext::shared(&WgpuOptions::default()).expect("adapter");
    let model = ClassifierModel {
        degree: 3,
        rectified: true,
        temperature: 5.0,
        loss_power: 1,
        classes: 4,
    };
    let memories = uniform(9, 13 + 4, 21).mapv(|v| v as f32);
    let images = uniform(2500, 13, 22).mapv(|v| v as f32);
    let cpu = fast::outputs(&model, memories.view(), images.view());
    let dev =
        dam::wgpu_backend::learn::outputs(&ctx, &model, memories.view(), images.view()).unwrap();
    assert_eq!(cpu.dim(), (2500, 4));
    assert_eq!(dev.dim(), cpu.dim());
    for (q, (d, c)) in dev.rows().into_iter().zip(cpu.rows()).enumerate() {
        for (a, b) in d.iter().zip(c.iter()) {
            assert!(LEARN_TOL.accepts(*a, *b), "sample {q}: {a} vs {b}");
        }
    }
}
