//! Where does the random-feature memory beat the exact one? Times the energy of 100 queries
//! (N = 16, β = 1) with the exact LSE memory (cost ∝ P·N) and with Y = 1024 Fourier
//! features (cost ∝ Y·N, 0.2–0.5 % mean relative energy error here, printed), for growing P, on the
//! chosen device. Run: `cargo run --release --example drdam_crossover -- [cpu|wgpu]`.

use dam::features::{FeatureKind, FeatureSpec, RandomFeatures};
use dam::{Device, Dynamics, Patterns, Retriever, Separation, Similarity};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = match std::env::args().nth(1).as_deref() {
        Some("wgpu") => Device::wgpu(),
        _ => Device::Cpu,
    };
    let (n, queries, y) = (16, 100, 1024);
    let mut rng = StdRng::seed_from_u64(0);
    let scale = 1.0 / (n as f32).sqrt();
    println!("device: {device:?}; N = {n}, {queries} queries, Y = {y} Fourier features, β = 1");
    println!("| P | exact energy (s) | random features energy (s) | ratio exact / rf | rf mean rel. energy error |");
    println!("| --- | --- | --- | --- | --- |");
    for p in [256usize, 1024, 4096, 16384, 65536] {
        let patterns = Array2::from_shape_simple_fn((p, n), || {
            let v: f32 = StandardNormal.sample(&mut rng);
            scale * v
        });
        let q = patterns.slice(ndarray::s![..queries, ..]).to_owned();
        // Exact: −β⁻¹ log Σ exp(−β/2 ‖x − ξ‖²) is the softmax energy of the squared
        // distance; timed with the engine's own streaming retrieval (one evaluation).
        let exact = Retriever::builder(Patterns::new(patterns.clone())?)
            .similarity(Similarity::NegEuclidean)
            .separation(Separation::Softmax { beta: 1.0 })
            .dynamics(Dynamics::OneStep)
            .device(device.clone())
            .build()?;
        exact.energy(q.view())?; // warm-up: pipelines, buffers
        let start = std::time::Instant::now();
        exact.energy(q.view())?;
        let t_exact = start.elapsed().as_secs_f64();
        let mut rf = RandomFeatures::new(
            FeatureSpec {
                kind: FeatureKind::Fourier,
                dim: n,
                features: y,
                beta: 1.0,
                seed: 1,
            },
            &device,
        )?;
        rf.insert(patterns.view())?;
        rf.energy(q.view())?; // warm-up
        let start = std::time::Instant::now();
        let approx = rf.energy(q.view())?;
        let t_rf = start.elapsed().as_secs_f64();
        // Accuracy of the approximation: against the f64 reference of the same energy.
        let flat: Vec<f32> = patterns.iter().copied().collect();
        let mut rel = 0.0;
        for (row, a) in q.rows().into_iter().zip(&approx) {
            let e = -dam::cpu::features::exact_lse_and_grad(1.0, &flat, &row.to_vec()).0;
            rel += ((a - e) / e).abs() / queries as f64;
        }
        println!(
            "| {p} | {t_exact:.4} | {t_rf:.4} | {:.2} | {:.2} % |",
            t_exact / t_rf,
            100.0 * rel
        );
    }
    Ok(())
}
