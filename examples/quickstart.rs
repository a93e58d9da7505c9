//! Quickstart: store 1,000 random ±1 patterns of dimension 256, corrupt 20 % of the
//! entries of 100 of them, and retrieve on `Device::auto()` (wgpu on a hardware adapter, else
//! the fast CPU backend; `DAM_DEVICE=cpu|reference|wgpu` to choose). Prints the device, the
//! fraction of queries recovered exactly, and the largest |device − f64 reference| difference
//! of the final states, with the reference's time.
//!
//! Run: `cargo run --release --example quickstart`

use dam::{Device, Dynamics, Patterns, Projection, Retriever, Separation, Similarity};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn main() -> Result<(), dam::Error> {
    let (p, n, b, corrupt) = (1_000, 256, 100, 0.2);
    let mut rng = StdRng::seed_from_u64(0);
    let stored =
        Array2::from_shape_fn((p, n), |_| if rng.random::<bool>() { 1.0f32 } else { -1.0 });
    // Each query is a stored pattern with 20 % of its entries flipped.
    let targets: Vec<usize> = (0..b).map(|_| rng.random_range(0..p)).collect();
    let mut queries = Array2::<f32>::zeros((b, n));
    for (q, &t) in targets.iter().enumerate() {
        queries.row_mut(q).assign(&stored.row(t));
        for i in rand::seq::index::sample(&mut rng, n, (corrupt * n as f64) as usize) {
            queries[[q, i]] *= -1.0;
        }
    }

    let device = Device::auto()?;
    let builder = Retriever::builder(Patterns::new(stored.clone())?)
        .similarity(Similarity::Dot)
        .separation(Separation::Softmax { beta: 0.1 })
        .dynamics(Dynamics::Iterate {
            max_steps: 10,
            tol: 0.0,
        })
        .projection(Projection::Sign);
    let retriever = builder.clone().device(device).build()?;
    println!("device: {}", retriever.device_name());

    let start = std::time::Instant::now();
    let result = retriever.retrieve(queries.view())?;
    let seconds = start.elapsed().as_secs_f64();
    let recovered = targets
        .iter()
        .enumerate()
        .filter(|&(q, &t)| result.states.row(q) == stored.row(t))
        .count();
    println!(
        "recovered {recovered}/{b} ({:.1}%) from {:.0}% corruption in {:.3} s, {} steps max",
        100.0 * recovered as f64 / b as f64,
        corrupt * 100.0,
        seconds,
        result.steps.iter().max().copied().unwrap_or(0)
    );

    let start = std::time::Instant::now();
    let reference = builder
        .device(Device::Reference)
        .build()?
        .retrieve(queries.view())?;
    let reference_seconds = start.elapsed().as_secs_f64();
    let max_diff = result
        .states
        .iter()
        .zip(reference.states.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!(
        "max |{} - reference| of final states: {max_diff:.3e}; nearest patterns agree: {}; \
         the f64 reference took {reference_seconds:.3} s",
        retriever.device_name(),
        result.nearest == reference.nearest
    );
    Ok(())
}
