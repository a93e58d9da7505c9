//! The log-sum-exp energy never increases along `Iterate` (the concave–convex procedure of
//! Ramsauer et al.), on both devices: a property test over seeded random problems.

mod common;

use common::*;
use dam::{Device, Dynamics, Patterns, Projection, Retriever, Separation, Similarity};
use proptest::prelude::*;

/// Allowed increase between steps: f32 states (and f32 sums on the GPU) round the energy.
fn slack(e: f64) -> f64 {
    1e-5 * (1.0 + e.abs())
}

fn check_descent(device: Device, p: usize, n: usize, b: usize, beta: f32, seed: u64) {
    let raw = gaussian(p, n, 1.0, seed);
    let queries = gaussian(b, n, 1.0, seed + 1);
    let r = Retriever::builder(Patterns::new(raw).unwrap())
        .similarity(Similarity::Dot)
        .separation(Separation::Softmax { beta })
        .projection(Projection::None)
        .dynamics(Dynamics::Iterate {
            max_steps: 12,
            tol: 0.0,
        })
        .energy_trace(true)
        .device(device.clone())
        .build()
        .unwrap()
        .retrieve(queries.view())
        .unwrap();
    let traces = r.energy_trace.expect("trace requested");
    assert_eq!(traces.len(), b);
    for (q, trace) in traces.iter().enumerate() {
        assert_eq!(trace.len(), r.steps[q] + 1, "{device:?}: trace length");
        for (t, pair) in trace.windows(2).enumerate() {
            assert!(
                pair[1] <= pair[0] + slack(pair[0]),
                "{device:?} P={p} N={n} β={beta} seed={seed}: query {q} energy rose at step {t}: {} -> {}",
                pair[0],
                pair[1]
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, rng_seed: proptest::test_runner::RngSeed::Fixed(7), ..ProptestConfig::default() })]

    #[test]
    fn lse_energy_never_increases_on_cpu(
        p in 1usize..200, n in 1usize..40, b in 1usize..6, beta in 0.01f32..4.0, seed in 0u64..1000
    ) {
        check_descent(Device::Cpu, p, n, b, beta, seed);
        check_descent(Device::Reference, p, n, b, beta, seed);
    }

    #[test]
    fn lse_energy_never_increases_on_wgpu(
        p in 1usize..200, n in 1usize..40, b in 1usize..6, beta in 0.01f32..4.0, seed in 0u64..1000
    ) {
        check_descent(gpu(), p, n, b, beta, seed);
    }
}
