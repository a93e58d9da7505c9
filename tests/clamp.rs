//! Clamped spin dynamics: clamped neurons never change, both devices give identical
//! states, nothing clamped is the plain run, and the Krotov–Hopfield XOR table.

mod common;

use dam::binary::{pack, unpack, words_per_state, BinaryPatterns, Clamp, SpinEnergy, SpinUpdate};
use dam::{Device, Error};

fn random_states(b: usize, n: usize, seed: u64) -> Vec<u32> {
    let p = BinaryPatterns::procedural(b, n, seed).unwrap();
    p.words().to_vec()
}

#[test]
fn clamped_neurons_never_change_and_devices_agree() {
    let gpu = common::gpu();
    let energies = [
        SpinEnergy::Polynomial { n: 3 },
        SpinEnergy::RectifiedPolynomial { n: 4 },
        SpinEnergy::Exponential { beta: 0.3 },
    ];
    for (n, p) in [(45usize, 12usize), (70, 40)] {
        let stored = BinaryPatterns::procedural(p, n, 7).unwrap();
        let queries = random_states(9, n, 99);
        // Clamp every third neuron, and a contiguous block crossing a word boundary.
        let clamped: Vec<usize> = (0..n)
            .filter(|i| i % 3 == 0 || (28..36).contains(i))
            .collect();
        let clamp = Clamp::fixing(n, &clamped).unwrap();
        for energy in energies {
            for update in [
                SpinUpdate::Async {
                    max_sweeps: 20,
                    seed: 5,
                },
                SpinUpdate::Sync { max_steps: 20 },
            ] {
                let run = |device: &Device| {
                    dam::spin_dynamics_clamped(device, &stored, energy, update, &queries, &clamp)
                        .unwrap()
                };
                let c = run(&Device::Reference);
                for device in [&Device::Cpu, &gpu] {
                    assert_eq!(
                        run(device),
                        c,
                        "N={n} {energy:?} {update:?}: {device:?} differs"
                    );
                }
                let w = words_per_state(n);
                let mut moved = 0;
                for q in 0..9 {
                    let before = unpack(&queries[q * w..(q + 1) * w], n);
                    let after = unpack(&c.states[q * w..(q + 1) * w], n);
                    for &i in &clamped {
                        assert_eq!(
                            before[i], after[i],
                            "N={n} {energy:?} {update:?}: neuron {i} moved"
                        );
                    }
                    moved += (0..n).filter(|&i| before[i] != after[i]).count();
                }
                assert!(
                    moved > 0,
                    "N={n} {energy:?} {update:?}: the free neurons never moved"
                );
                // Nothing clamped is the plain run.
                let none = Clamp::none(n);
                let plain =
                    dam::spin_dynamics(&Device::Reference, &stored, energy, update, &queries)
                        .unwrap();
                for device in [&Device::Reference, &Device::Cpu, &gpu] {
                    let free = dam::spin_dynamics_clamped(
                        device, &stored, energy, update, &queries, &none,
                    )
                    .unwrap();
                    assert_eq!(free, plain);
                }
            }
        }
    }
}

fn bad_clamps_are_errors(device: Device) {
    let stored = BinaryPatterns::procedural(4, 40, 1).unwrap();
    let q = random_states(1, 40, 2);
    let energy = SpinEnergy::Polynomial { n: 2 };
    let update = SpinUpdate::Sync { max_steps: 2 };
    assert!(matches!(
        Clamp::fixing(40, &[40]),
        Err(Error::InvalidParameter { .. })
    ));
    let short = Clamp {
        free: vec![u32::MAX],
    };
    let past_n = Clamp {
        free: vec![u32::MAX, u32::MAX],
    };
    for bad in [&short, &past_n] {
        assert!(dam::spin_dynamics_clamped(&device, &stored, energy, update, &q, bad).is_err());
    }
}
test_devices!(all: bad_clamps_are_errors);

/// Krotov & Hopfield (2016), XOR with K = 4 memories (the truth table, ±1) and N = 3: the
/// inputs clamped, the output started at −1 and updated once. With F = x² the update of the
/// output is Σ_μ ξ_y (ξ_1 x_1 + ξ_2 x_2) = 0 for every input (XOR has no pairwise
/// correlation), so it never moves: 2 of 4; with x³ and max(x, 0)² the table is exact.
fn xor_needs_a_higher_order_energy(device: Device) {
    let table: [[f32; 3]; 4] = [
        [-1.0, -1.0, -1.0],
        [-1.0, 1.0, 1.0],
        [1.0, -1.0, 1.0],
        [1.0, 1.0, -1.0],
    ];
    let stored = BinaryPatterns::from_signs(4, 3, table.as_flattened()).unwrap();
    let clamp = Clamp::fixing(3, &[0, 1]).unwrap();
    let mut queries = vec![0u32; 4];
    for (q, row) in table.iter().enumerate() {
        pack(&[row[0], row[1], -1.0], &mut queries[q..q + 1]);
    }
    let update = SpinUpdate::Sync { max_steps: 1 };
    for (energy, expected) in [
        (SpinEnergy::Polynomial { n: 2 }, 2),
        (SpinEnergy::Polynomial { n: 3 }, 4),
        (SpinEnergy::RectifiedPolynomial { n: 2 }, 4),
        (SpinEnergy::RectifiedPolynomial { n: 3 }, 4),
    ] {
        let r =
            dam::spin_dynamics_clamped(&device, &stored, energy, update, &queries, &clamp).unwrap();
        let right = (0..4)
            .filter(|&q| unpack(&r.states[q..q + 1], 3)[2] == table[q][2])
            .count();
        assert_eq!(right, expected, "{energy:?}");
    }
}
test_devices!(all: xor_needs_a_higher_order_energy);

/// Continuous retrieval with clamped coordinates: they keep their query values at every
/// step on both devices, the free ones agree across devices, nothing clamped is the plain
/// run, and half of a stored pattern clamped completes the other half (in-painting).
#[test]
fn clamped_coordinates_never_change_in_continuous_retrieval() {
    use dam::{Dynamics, Patterns, Retriever, Separation};
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    let gpu = common::gpu();
    let (p, n, b) = (37usize, 70usize, 6usize);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let stored =
        Array2::from_shape_fn((p, n), |_| if rng.random_bool(0.5) { 1.0f32 } else { -1.0 });
    // Queries: stored patterns 0..b with their second half replaced by noise.
    let mut queries = stored.slice(ndarray::s![..b, ..]).to_owned();
    for q in 0..b {
        for i in n / 2..n {
            queries[[q, i]] = rng.random_range(-1.0..1.0);
        }
    }
    let clamped: Vec<usize> = (0..n / 2).collect();
    let clamp = Clamp::fixing(n, &clamped).unwrap();
    let build = |device: &Device| {
        Retriever::builder(Patterns::new(stored.clone()).unwrap())
            .separation(Separation::Softmax { beta: 0.2 })
            .dynamics(Dynamics::Iterate {
                max_steps: 30,
                tol: 1e-6,
            })
            .energy_trace(true)
            .device(device.clone())
            .build()
            .unwrap()
    };
    let (cpu, fast, dev) = (build(&Device::Reference), build(&Device::Cpu), build(&gpu));
    let rc = cpu.retrieve_clamped(queries.view(), &clamp).unwrap();
    let rf = fast.retrieve_clamped(queries.view(), &clamp).unwrap();
    let rg = dev.retrieve_clamped(queries.view(), &clamp).unwrap();
    for r in [&rc, &rf, &rg] {
        assert_eq!(r.states.dim(), (b, n));
        for q in 0..b {
            for &i in &clamped {
                assert_eq!(r.states[[q, i]], queries[[q, i]], "query {q}: {i} moved");
            }
            // The free half is completed to the stored pattern.
            for i in n / 2..n {
                assert!(
                    (r.states[[q, i]] - stored[[q, i]]).abs() < 0.05,
                    "query {q}, coordinate {i}: {} vs stored {}",
                    r.states[[q, i]],
                    stored[[q, i]]
                );
            }
            let trace = &r.energy_trace.as_ref().unwrap()[q];
            assert_eq!(trace.len(), r.steps[q] + 1);
            assert!(r.steps[q] >= 1 && r.converged[q]);
        }
        assert_eq!(r.nearest, (0..b).collect::<Vec<_>>());
        assert_eq!(r.matched, (0..b as u64).map(Some).collect::<Vec<_>>());
        assert!(r.confidence.as_ref().unwrap().iter().all(|&c| c > 0.5));
    }
    for other in [&rf, &rg] {
        assert_eq!(rc.states.dim(), other.states.dim());
        for (a, g) in rc.states.iter().zip(other.states.iter()) {
            assert!(
                common::STATE_TOL.accepts(*g as f64, *a as f64),
                "{g} vs {a}"
            );
        }
    }
    // Nothing clamped: the plain run.
    let plain = cpu.retrieve(queries.view()).unwrap();
    let free = cpu
        .retrieve_clamped(queries.view(), &Clamp::none(n))
        .unwrap();
    assert_eq!(plain.steps, free.steps);
    assert_eq!(plain.nearest, free.nearest);
    assert_eq!(plain.states.dim(), free.states.dim());
    for (a, f) in plain.states.iter().zip(free.states.iter()) {
        assert!(
            common::STATE_TOL.accepts(*f as f64, *a as f64),
            "{f} vs {a}"
        );
    }
    // A mask of the wrong size is an error naming it.
    assert!(matches!(
        cpu.retrieve_clamped(queries.view(), &Clamp::none(n + 40)),
        Err(Error::DimensionMismatch {
            argument: "clamp (packed free mask)",
            ..
        })
    ));
}
