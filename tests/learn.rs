//! The classifier's fast CPU path (f32 products, threads over memory ranges) against the
//! f64 reference, on sizes that are not multiples of the blocks, for xⁿ and max(x, 0)ⁿ.

use dam::cpu::learn::{self, fast};
use dam::learn::ClassifierModel;
use dam::Tolerance;
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
        for (got, want) in fc.iter().zip(c.iter()) {
            assert!(
                LEARN_TOL.accepts(*got, *want),
                "{label}: output {got} vs {want}"
            );
        }
        assert!(LEARN_TOL.accepts(fl, loss), "{label}: loss {fl} vs {loss}");
    }
}
