//! The classifier's fast CPU path (f32 products, threads over memory ranges) and its wgpu
//! path (the generic matrix product) against the f64 reference, on sizes that are not
//! multiples of the blocks or tiles, for xⁿ and max(x, 0)ⁿ; and one training epoch on both
//! devices.

mod common;

use dam::cpu::learn::{self, fast};
use dam::learn::{
    image_shift, shift_image, Classifier, ClassifierModel, EpochOptions, ParameterNames, Progress,
    TrainingMonitor,
};
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
        shift: 0,
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

/// Three prototypes over 24 pixels, 90 noisy copies (a pixel in 11 flipped): separable.
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

/// Trained until no memory has a gradient any more (every output at its target: a loss of
/// 0, or on the fast CPU path below 1e-20 with the output gradients flushed), further
/// epochs leave the memories bit for bit as they were and the monitor reports convergence.
/// (The normalised step used to keep moving every memory by ε along its stale velocity.)
fn once_converged_the_memories_stay_put(device: Device) {
    let (images, labels) = toy();
    let model = ClassifierModel {
        degree: 3,
        rectified: true,
        temperature: 4.0,
        loss_power: 1,
        classes: 3,
    };
    let mut clf = Classifier::random(model, 9, 24, 1, &device).unwrap();
    let opts = EpochOptions {
        batch: 10,
        lr: 0.1,
        lr_decay: 1.0,
        seed: 2,
        momentum: None,
        shift: 0,
    };
    // Until the first epoch that took no step or whose loss is 0: an epoch of zero loss
    // had a zero gradient in every minibatch, so it must have taken no step either.
    let mut losses = Vec::new();
    while clf
        .last_epoch()
        .is_none_or(|r| r.updated > 0 && r.loss > 0.0)
    {
        assert!(
            losses.len() < 100,
            "still learning after 100 epochs: {losses:?}"
        );
        losses.push(clf.train_epoch(images.view(), &labels, &opts).unwrap());
    }
    let converged_at = losses.len();
    let report = *clf.last_epoch().unwrap();
    assert_eq!(report.updated, 0, "a step at a loss of {}", report.loss);
    assert!(converged_at > 1 && report.loss < 1e-20, "{losses:?}");
    let mut monitor = TrainingMonitor::new(ParameterNames::FLAGS);
    assert_eq!(monitor.check(&clf).unwrap(), Progress::Converged);
    let memories = clf.memories().to_owned();
    for epoch in 1..=5 {
        let again = clf.train_epoch(images.view(), &labels, &opts).unwrap();
        assert!(
            again < 1e-20,
            "epoch {epoch} after convergence: loss {again}"
        );
        assert_eq!(clf.last_epoch().unwrap().updated, 0, "epoch {epoch}");
        assert_eq!(monitor.check(&clf).unwrap(), Progress::Converged);
        let moved = clf
            .memories()
            .iter()
            .zip(memories.iter())
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(
            moved, 0,
            "epoch {epoch} after convergence (at epoch {converged_at}): {moved} entries moved"
        );
    }
    assert_eq!(clf.error_percent(images.view(), &labels).unwrap(), 0.0);
}

/// Pixels that f32 holds exactly (the shipped digits' k/127.5 − 1 are not, so these are
/// built in f32): the f32 entries train, evaluate and predict exactly as the f64 ones.
fn f32_pixels_give_the_f64_results(device: Device) {
    let (b, n) = (130, 37);
    let pixels32 = Array2::from_shape_fn((b, n), |(q, i)| {
        ((q * 31 + i * 17) % 255) as f32 / 127.0 - 1.0
    });
    let pixels64 = pixels32.mapv(|v| v as f64);
    let labels: Vec<usize> = (0..b).map(|q| (q * 7 + q / 5) % 4).collect();
    let model = ClassifierModel {
        degree: 3,
        rectified: true,
        temperature: 6.0,
        loss_power: 2,
        classes: 4,
    };
    let opts = EpochOptions {
        batch: 32,
        lr: 0.05,
        lr_decay: 0.9,
        seed: 3,
        momentum: None,
        shift: 0,
    };
    let mut a = Classifier::random(model, 19, n, 5, &device).unwrap();
    let mut c = a.clone();
    for epoch in 0..3 {
        let la = a.train_epoch(pixels64.view(), &labels, &opts).unwrap();
        let lc = c.train_epoch_f32(pixels32.view(), &labels, &opts).unwrap();
        assert_eq!(
            la.to_bits(),
            lc.to_bits(),
            "epoch {epoch}: loss {la} vs {lc}"
        );
        assert_eq!(a.last_epoch(), c.last_epoch());
    }
    assert_eq!(a.memories(), c.memories());
    let (oa, oc) = (
        a.outputs(pixels64.view()).unwrap(),
        a.outputs_f32(pixels32.view()).unwrap(),
    );
    assert_eq!(oa.dim(), (b, 4));
    assert_eq!(oa, oc);
    assert_eq!(
        a.predict(pixels64.view()).unwrap(),
        c.predict_f32(pixels32.view()).unwrap()
    );
    let (ea, ec) = (
        a.error_percent(pixels64.view(), &labels).unwrap(),
        c.error_percent_f32(pixels32.view(), &labels).unwrap(),
    );
    assert_eq!(ea, ec);
    assert!(ea < 100.0);
    // Bad input is refused the same way.
    assert!(c
        .train_epoch_f32(pixels32.view(), &labels[1..], &opts)
        .is_err());
    assert!(c.error_percent_f32(pixels32.view(), &labels[1..]).is_err());
    let mut nan = pixels32.clone();
    nan[[3, 4]] = f32::NAN;
    assert!(c.outputs_f32(nan.view()).is_err());
}

/// Far below the overlaps every output starts pinned at ±1: every device stops the run
/// after its first epoch, naming the temperature to raise (the fast CPU and the reference
/// see no gradient at all; wgpu's tiny ones still move the memories).
fn a_saturated_start_is_stopped_after_one_epoch(device: Device) {
    let (images, labels) = toy();
    let model = ClassifierModel {
        degree: 3,
        rectified: true,
        temperature: 0.05,
        loss_power: 3,
        classes: 3,
    };
    let mut clf = Classifier::random(model, 6, 24, 1, &device).unwrap();
    let opts = dam::learn::Recipe::recommended(3, true).epoch_options(0);
    let loss = clf.train_epoch(images.view(), &labels, &opts).unwrap();
    assert_eq!(loss, 90.0 * 64.0, "every sample's true class at −1");
    assert_eq!(clf.last_epoch().unwrap().saturated, Some(1.0));
    let err = TrainingMonitor::new(ParameterNames::FLAGS)
        .check(&clf)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("outputs saturated at the start (epoch 1: ")
            && err.ends_with("): raise --temperature (now 0.05)"),
        "{err}"
    );
}

/// Random shifts: an epoch with `shift` > 0 equals, bit for bit, an epoch without shifts on
/// the images moved beforehand by [`image_shift`] / [`shift_image`] (the same minibatches,
/// the same order), on every device; and it is not the unshifted epoch.
fn a_shifted_epoch_trains_on_the_shifted_images(device: Device) {
    let (side, b) = (7, 120);
    let n = side * side;
    let labels: Vec<usize> = (0..b).map(|q| q % 4).collect();
    let images = Array2::from_shape_fn((b, n), |(q, i)| {
        let (y, x) = (i / side, i % side);
        if (x + y + labels[q]).is_multiple_of(4) || (q + i).is_multiple_of(13) {
            1.0
        } else {
            -1.0
        }
    });
    let model = ClassifierModel {
        degree: 3,
        rectified: true,
        temperature: 4.0,
        loss_power: 2,
        classes: 4,
    };
    let shifted_opts = EpochOptions {
        batch: 25,
        lr: 0.05,
        lr_decay: 1.0,
        seed: 4,
        momentum: None,
        shift: 2,
    };
    let plain_opts = EpochOptions {
        shift: 0,
        ..shifted_opts
    };
    let start = Classifier::random(model, 15, n, 6, &device).unwrap();
    let mut shifted = start.clone();
    let mut moved = start.clone();
    let mut plain = start;
    for epoch in 0..2 {
        let mut pre = images.clone();
        let mut out = vec![0.0; n];
        for (q, mut row) in pre.rows_mut().into_iter().enumerate() {
            let (dx, dy) = image_shift(shifted_opts.seed, epoch, q, 2);
            shift_image(images.row(q).as_slice().unwrap(), side, dx, dy, &mut out);
            row.assign(&ndarray::ArrayView1::from(&out[..]));
        }
        let ls = shifted
            .train_epoch(images.view(), &labels, &shifted_opts)
            .unwrap();
        let lm = moved.train_epoch(pre.view(), &labels, &plain_opts).unwrap();
        plain
            .train_epoch(images.view(), &labels, &plain_opts)
            .unwrap();
        assert_eq!(
            ls.to_bits(),
            lm.to_bits(),
            "epoch {epoch}: loss {ls} vs {lm}"
        );
    }
    assert_eq!(shifted.memories(), moved.memories());
    assert_ne!(shifted.memories(), plain.memories());
}

test_devices!(all: once_converged_the_memories_stay_put, f32_pixels_give_the_f64_results, a_saturated_start_is_stopped_after_one_epoch, a_shifted_epoch_trains_on_the_shifted_images);

/// A shift moves the pixels and repeats the edge pixels; the shifts are seeded, stay in
/// [−s, s]², cover the whole square, and change with the epoch.
#[test]
fn image_shifts_move_pixels_and_are_seeded() {
    let side = 4;
    let image: Vec<f64> = (0..16).map(f64::from).collect();
    let mut out = vec![0.0; 16];
    shift_image(&image, side, 1, 0, &mut out);
    assert_eq!(
        out,
        [0., 0., 1., 2., 4., 4., 5., 6., 8., 8., 9., 10., 12., 12., 13., 14.]
    );
    shift_image(&image, side, -1, 2, &mut out);
    assert_eq!(
        out,
        [1., 2., 3., 3., 1., 2., 3., 3., 1., 2., 3., 3., 5., 6., 7., 7.]
    );
    shift_image(&image, side, 0, 0, &mut out);
    assert_eq!(out, image);
    let mut seen = std::collections::HashSet::new();
    for i in 0..2000 {
        let (dx, dy) = image_shift(9, 3, i, 2);
        assert!(dx.abs() <= 2 && dy.abs() <= 2, "({dx}, {dy})");
        assert_eq!(image_shift(9, 3, i, 2), (dx, dy));
        seen.insert((dx, dy));
    }
    assert_eq!(seen.len(), 25);
    let epoch3: Vec<_> = (0..50).map(|i| image_shift(9, 3, i, 2)).collect();
    let epoch4: Vec<_> = (0..50).map(|i| image_shift(9, 4, i, 2)).collect();
    assert_ne!(epoch3, epoch4);
    assert_eq!(image_shift(9, 3, 7, 0), (0, 0));
}

/// Shifts need square images and a shift below the side: the error names `shift`.
#[test]
fn shifts_of_non_square_images_are_refused() {
    let model = ClassifierModel {
        degree: 2,
        rectified: false,
        temperature: 5.0,
        loss_power: 2,
        classes: 3,
    };
    let opts = EpochOptions {
        batch: 10,
        lr: 0.1,
        lr_decay: 1.0,
        seed: 0,
        momentum: None,
        shift: 1,
    };
    let labels: Vec<usize> = (0..20).map(|q| q % 3).collect();
    for (n, shift, needle) in [
        (24, 1, "N = 24 pixels is not a square"),
        (25, 5, "smaller than the image side 5"),
    ] {
        let images = uniform(20, n, 1);
        let mut clf = Classifier::random(model, 4, n, 1, &Device::Cpu).unwrap();
        let err = clf
            .train_epoch(images.view(), &labels, &EpochOptions { shift, ..opts })
            .unwrap_err();
        assert!(
            matches!(
                err,
                dam::Error::InvalidParameter {
                    argument: "shift",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains(needle), "{err}");
        assert_eq!(clf.epochs(), 0);
    }
}

/// The recipe starts every degree unsaturated on the shipped digits (K = 2,000 random
/// memories, T of the recipe): few outputs at ±1, the first epoch moves every memory and
/// lowers the loss of the next, and the monitor lets both epochs pass.
#[test]
fn the_recipe_starts_unsaturated_at_every_degree() {
    let path = |name: &str| dam::mnist::data_dir().join(name);
    let images = dam::mnist::load_images(&path("train-images-idx3-ubyte.gz"), 400)
        .unwrap()
        .mapv(|v| v as f64);
    let labels: Vec<usize> = dam::mnist::read_idx(&path("train-labels-idx1-ubyte.gz"))
        .unwrap()
        .data[..400]
        .iter()
        .map(|&l| l as usize)
        .collect();
    for degree in [1, 2, 3, 4, 6, 10, 20, 30] {
        for rectified in [false, true] {
            let recipe = dam::learn::Recipe::recommended(degree, rectified);
            let model = ClassifierModel {
                degree,
                rectified,
                temperature: recipe.temperature,
                loss_power: 3,
                classes: 10,
            };
            let label = format!("n={degree} rectified={rectified} T={}", recipe.temperature);
            let mut clf = Classifier::random(model, 2000, 784, 1, &Device::Cpu).unwrap();
            let c = clf.outputs(images.view()).unwrap();
            let saturated = c.iter().filter(|v| (**v as f32).abs() == 1.0).count();
            assert!(
                saturated * 100 <= c.len(),
                "{label}: {saturated} of {} outputs at ±1",
                c.len()
            );
            let opts = recipe.epoch_options(1);
            let mut monitor = TrainingMonitor::new(ParameterNames::FLAGS);
            let first = clf.train_epoch(images.view(), &labels, &opts).unwrap();
            let report = *clf.last_epoch().unwrap();
            assert_eq!(report.updated, 2000, "{label}: {report:?}");
            let pinned = report.saturated.unwrap();
            assert!(pinned < 0.1, "{label}: {report:?}");
            assert_eq!(monitor.check(&clf).unwrap(), Progress::Learning, "{label}");
            clf.set_temperature(recipe.temperature_at(1)).unwrap();
            let second = clf.train_epoch(images.view(), &labels, &opts).unwrap();
            assert!(second < first, "{label}: loss {first} → {second}");
            assert_eq!(monitor.check(&clf).unwrap(), Progress::Learning, "{label}");
        }
    }
}
