//! Networks from Lagrangians (THEORY.md §10): the energy never rises for convex
//! Lagrangians, Model B is one softmax update, the fast-memory limit, Model A's fixed points
//! are the spin dynamics', full = effective energy at fixed points, the fast CPU and wgpu agree
//! with the reference, and bad input is a clear error.

#[macro_use]
mod common;

use dam::binary::{pack, unpack, words_per_state, BinaryPatterns, SpinEnergy, SpinUpdate};
use dam::lagrangian::{
    effective_energy, full_energy, HiddenLagrangian, HierarchySpec, Integrator, LagrangianSpec,
    Layer, LayerLagrangian, Memories, VisibleLagrangian,
};
use dam::weights::PolyF;
use dam::{
    Device, Dynamics, EnergyNetwork, Error, HierarchicalNetwork, Patterns, Projection, Retriever,
    Separation, Similarity, Tolerance,
};
use ndarray::Array2;

/// The fast CPU (f32 states and products) against the f64 reference after a whole run:
/// states scaled by their largest |coordinate|, energies by their largest |value|.
const LAGRANGIAN_STATE_TOL: Tolerance = Tolerance::new(1e-4, 1e-3);
const LAGRANGIAN_ENERGY_TOL: Tolerance = Tolerance::new(1e-4, 1e-4);

fn visibles() -> [VisibleLagrangian; 3] {
    [
        VisibleLagrangian::Quadratic,
        VisibleLagrangian::Abs,
        VisibleLagrangian::Spherical,
    ]
}

fn hiddens() -> [HiddenLagrangian; 5] {
    [
        HiddenLagrangian::Additive(PolyF {
            degree: 2,
            rectified: false,
        }),
        HiddenLagrangian::Additive(PolyF {
            degree: 3,
            rectified: true,
        }),
        HiddenLagrangian::Additive(PolyF {
            degree: 4,
            rectified: false,
        }),
        HiddenLagrangian::Exponential { beta: 1.0 },
        HiddenLagrangian::LogSumExp { beta: 4.0 },
    ]
}

fn spec(
    visible: VisibleLagrangian,
    hidden: HiddenLagrangian,
    tau_h: f64,
    dt: f64,
) -> LagrangianSpec {
    LagrangianSpec {
        visible,
        hidden,
        tau_visible: 1.0,
        tau_hidden: tau_h,
        dt,
        integrator: Integrator::Euler,
    }
}

/// Largest rise E[t+1] − E[t] seen, relative to max(1, |E[t]|).
fn largest_relative_rise(energies: &Array2<f64>) -> f64 {
    let mut worst = f64::NEG_INFINITY;
    for row in energies.rows() {
        let row = row.to_vec();
        assert!(row.len() >= 2);
        for w in row.windows(2) {
            assert!(w[0].is_finite() && w[1].is_finite(), "{w:?}");
            worst = worst.max((w[1] - w[0]) / w[0].abs().max(1.0));
        }
    }
    worst
}

#[test]
fn energy_never_rises_for_every_convex_pair() {
    let (k, n) = (6, 12);
    // Memories of norm ½: the quadratic visible Lagrangian with a polynomial or exponential
    // hidden one is unbounded below, and larger memories blow up within the run.
    let memories = common::unit_patterns(k, n, 11) * 0.5;
    let states = common::noisy_queries(&memories, 4, 0.5, 12);
    let mut checked = 0;
    for visible in visibles() {
        for hidden in hiddens() {
            for tau_h in [0.0, 0.5] {
                for integrator in [Integrator::Euler, Integrator::Rk4] {
                    let spec = LagrangianSpec {
                        integrator,
                        ..spec(visible, hidden, tau_h, 0.01)
                    };
                    let net = EnergyNetwork::new(memories.clone(), spec)
                        .unwrap()
                        .with_device(Device::Reference);
                    let (_, energies) = net
                        .run(states.view(), 200)
                        .unwrap_or_else(|e| panic!("{spec:?}: {e}"));
                    assert_eq!(energies.dim(), (4, 201));
                    let rise = largest_relative_rise(&energies);
                    assert!(rise <= 1e-9, "{spec:?}: energy rose by {rise:e} (relative)");
                    // The energy moved: the check is not vacuous.
                    let fell = energies
                        .rows()
                        .into_iter()
                        .any(|r| r[200] < r[0] - 1e-9 * r[0].abs().max(1.0));
                    assert!(fell, "{spec:?}: energy never moved");
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 3 * 5 * 2 * 2);
}

/// E(t) never rises by more than float noise on a fast device (f32 states, products and,
/// on wgpu, f32 energies summed on the device).
fn energy_never_rises_on_fast_devices(device: Device) {
    let (k, n) = (10, 32);
    let memories = common::unit_patterns(k, n, 21) * 0.5;
    let states = common::noisy_queries(&memories, 6, 0.5, 22);
    let mut worst = f64::NEG_INFINITY;
    let mut checked = 0;
    for visible in visibles() {
        for hidden in hiddens() {
            for tau_h in [0.0, 0.5] {
                let spec = spec(visible, hidden, tau_h, 0.01);
                let net = EnergyNetwork::new(memories.clone(), spec)
                    .unwrap()
                    .with_device(device.clone());
                let (_, energies) = net
                    .run(states.view(), 200)
                    .unwrap_or_else(|e| panic!("{spec:?}: {e}"));
                assert_eq!(energies.dim(), (6, 201));
                let rise = largest_relative_rise(&energies);
                assert!(rise <= 1e-5, "{spec:?}: energy rose by {rise:e} (relative)");
                worst = worst.max(rise);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 3 * 5 * 2);
    eprintln!("{device:?}: largest relative energy rise {worst:e}");
}

test_devices!(fast: energy_never_rises_on_fast_devices);

#[test]
fn model_b_with_fast_memory_and_dt_tau_is_one_softmax_update() {
    let (k, n, beta) = (16, 24, 3.0f32);
    let memories = common::unit_patterns(k, n, 31);
    let states = common::noisy_queries(&memories, 5, 0.6, 32);
    for device in [Device::Reference, Device::Cpu, common::gpu()] {
        let retriever = Retriever::builder(Patterns::new(memories.clone()).unwrap())
            .similarity(Similarity::Dot)
            .separation(Separation::Softmax { beta })
            .dynamics(Dynamics::OneStep)
            .projection(Projection::None)
            .device(device.clone())
            .build()
            .unwrap();
        let want = retriever.step(states.view()).unwrap();
        let spec = LagrangianSpec {
            dt: 1.0,
            ..LagrangianSpec::model_b(beta as f64)
        };
        let net = EnergyNetwork::new(memories.clone(), spec)
            .unwrap()
            .with_device(device.clone());
        let (got, energies) = net.run(states.view(), 1).unwrap();
        assert_eq!(energies.dim(), (5, 2));
        let worst = Tolerance::new(1e-6, 1e-5)
            .compare(got.iter().copied(), want.iter().copied())
            .unwrap_or_else(|m| panic!("{device:?}: {m:?}"));
        assert!(worst < 1e-5, "{worst}");
        // And the energy is the retriever's log-sum-exp energy.
        let e_ret = retriever.energy(states.view()).unwrap();
        let e_net = net.energy(states.view()).unwrap();
        Tolerance::new(1e-6, 1e-6)
            .compare(e_net.iter().copied(), e_ret.iter().copied())
            .unwrap_or_else(|m| panic!("{device:?}: energy {m:?}"));
    }
}

#[test]
fn fast_memory_limit_gap_falls_linearly_in_tau_h() {
    let (k, n) = (8, 16);
    let memories = common::unit_patterns(k, n, 41);
    let states = common::noisy_queries(&memories, 3, 0.8, 42);
    let base = LagrangianSpec {
        integrator: Integrator::Rk4,
        dt: 0.0025,
        ..LagrangianSpec::model_b(4.0)
    };
    let steps = 400; // t = 1
    let run = |tau_h: f64| {
        let spec = LagrangianSpec {
            tau_hidden: tau_h,
            ..base
        };
        EnergyNetwork::new(memories.clone(), spec)
            .unwrap()
            .with_device(Device::Reference)
            .run(states.view(), steps)
            .unwrap()
            .0
    };
    let effective = run(0.0);
    let gap = |tau_h: f64| {
        let s = run(tau_h);
        assert_eq!(s.len(), effective.len());
        s.iter()
            .zip(effective.iter())
            .map(|(a, b)| (a - b).abs() as f64)
            .fold(0.0, f64::max)
    };
    let (g1, g2, g4) = (gap(0.04), gap(0.02), gap(0.01));
    eprintln!("fast-memory gaps at τ_h = 0.04, 0.02, 0.01: {g1:e} {g2:e} {g4:e}");
    assert!(g1 > 1e-4, "the gap must be measurable: {g1}");
    for (a, b) in [(g1, g2), (g2, g4)] {
        let ratio = a / b;
        assert!(
            (1.7..2.3).contains(&ratio),
            "gaps {g1} {g2} {g4}: ratio {ratio}"
        );
    }
}

fn binary_memories(k: usize, n: usize, seed: u64) -> (BinaryPatterns, Array2<f32>) {
    let patterns = BinaryPatterns::procedural(k, n, seed).unwrap();
    let mut dense = Array2::<f32>::zeros((k, n));
    for mu in 0..k {
        for (o, v) in dense
            .row_mut(mu)
            .iter_mut()
            .zip(unpack(patterns.pattern(mu), n))
        {
            *o = v;
        }
    }
    (patterns, dense)
}

#[test]
fn model_a_reaches_the_spin_dynamics_fixed_points() {
    let (k, n, degree) = (6, 64, 3);
    let (binary, memories) = binary_memories(k, n, 51);
    // Stored patterns, and stored patterns with 6 spins flipped.
    let mut starts = memories.clone();
    let mut noisy = memories.clone();
    for (q, mut row) in noisy.rows_mut().into_iter().enumerate() {
        for j in 0..6 {
            let i = (q * 7 + 13 * j) % n;
            row[i] = -row[i];
        }
    }
    starts.append(ndarray::Axis(0), noisy.view()).unwrap();
    let b = starts.nrows();
    let mut packed = vec![0u32; b * words_per_state(n)];
    for (row, words) in starts
        .rows()
        .into_iter()
        .zip(packed.chunks_exact_mut(words_per_state(n)))
    {
        pack(&row.to_vec(), words);
    }
    let spin = dam::spin_dynamics(
        &Device::Reference,
        &binary,
        SpinEnergy::RectifiedPolynomial { n: degree },
        SpinUpdate::Async {
            max_sweeps: 50,
            seed: 3,
        },
        &packed,
    )
    .unwrap();
    assert!(spin.converged.iter().all(|&c| c));
    for device in [Device::Reference, Device::Cpu] {
        let net = EnergyNetwork::new(memories.clone(), LagrangianSpec::model_a(degree))
            .unwrap()
            .with_device(device.clone());
        let (states, energies) = net.run(starts.view(), 100).unwrap();
        assert_eq!(states.nrows(), b);
        for (q, (row, words)) in states
            .rows()
            .into_iter()
            .zip(spin.states.chunks_exact(words_per_state(n)))
            .enumerate()
        {
            let signs: Vec<f32> = row.iter().map(|&x| x.signum()).collect();
            assert_eq!(signs, unpack(words, n), "{device:?}: query {q}");
            // A stored pattern is what both reach.
            assert_eq!(signs, memories.row(q % k).to_vec(), "{device:?}: query {q}");
        }
        assert!(largest_relative_rise(&energies) <= 1e-6);
    }
}

#[test]
fn full_energy_equals_effective_energy_at_a_fixed_point() {
    let (k, n) = (8, 16);
    let memories = common::unit_patterns(k, n, 61);
    let states = common::noisy_queries(&memories, 3, 0.3, 62);
    for (visible, hidden) in [
        (
            VisibleLagrangian::Quadratic,
            HiddenLagrangian::LogSumExp { beta: 8.0 },
        ),
        (
            VisibleLagrangian::Spherical,
            HiddenLagrangian::Additive(PolyF {
                degree: 3,
                rectified: true,
            }),
        ),
    ] {
        let spec = spec(visible, hidden, 0.5, 0.05);
        let net = EnergyNetwork::new(memories.clone(), spec)
            .unwrap()
            .with_device(Device::Reference);
        let run = net.run_full(states.view(), 2000, true).unwrap();
        let hidden_states = run.hidden.expect("asked for");
        let mem = Memories {
            data: memories.as_slice().unwrap(),
            count: k,
            dim: n,
        };
        for (v, h) in run.states.rows().into_iter().zip(hidden_states.rows()) {
            let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
            let h: Vec<f64> = h.iter().map(|&x| x as f64).collect();
            let full = full_energy(&spec, mem, &v, &h, None);
            let effective = effective_energy(&spec, mem, &v, None);
            assert!(
                (full - effective).abs() <= 1e-5 * effective.abs().max(1.0),
                "{spec:?}: full {full} vs effective {effective}"
            );
        }
        // Away from the fixed point (h not yet Ξg) they differ: the check can fail.
        let start = net.run_full(states.view(), 1, true).unwrap();
        let h0: Vec<f64> = start
            .hidden
            .unwrap()
            .row(0)
            .iter()
            .map(|&x| x as f64 + 0.1)
            .collect();
        let v0: Vec<f64> = start.states.row(0).iter().map(|&x| x as f64).collect();
        let gap = full_energy(&spec, mem, &v0, &h0, None) - effective_energy(&spec, mem, &v0, None);
        assert!(gap > 1e-6, "{gap}");
    }
}

/// A fast device against the f64 reference after whole runs (every Lagrangian family,
/// fast and slow memory neurons, Euler and RK4, an input current), on sizes that are not
/// multiples of the workgroups and tiles (K = 12 and 130, N = 40 and 70).
fn devices_agree_with_the_reference(device: Device) {
    let mut checked = 0;
    for (k, n, b) in [(12, 40, 5), (130, 70, 3)] {
        let memories = common::unit_patterns(k, n, 71);
        let states = common::noisy_queries(&memories, b, 0.5, 72);
        let current: Vec<f32> = (0..n).map(|i| 0.01 * ((i % 5) as f32 - 2.0)).collect();
        let cases = [
            LagrangianSpec::model_b(4.0),
            LagrangianSpec::model_c(3),
            LagrangianSpec {
                tau_hidden: 0.3,
                integrator: Integrator::Rk4,
                ..LagrangianSpec::model_b(2.0)
            },
            spec(
                VisibleLagrangian::Spherical,
                HiddenLagrangian::Exponential { beta: 2.0 },
                0.2,
                0.05,
            ),
            LagrangianSpec {
                integrator: Integrator::Rk4,
                ..LagrangianSpec::model_a(4)
            },
            spec(
                VisibleLagrangian::Quadratic,
                HiddenLagrangian::Additive(PolyF {
                    degree: 2,
                    rectified: false,
                }),
                0.5,
                0.05,
            ),
        ];
        for spec in cases {
            let net = EnergyNetwork::new(memories.clone(), spec)
                .unwrap()
                .with_current(current.clone())
                .unwrap()
                .with_device(device.clone());
            let fast = net.run_full(states.view(), 50, true).unwrap();
            let reference = net
                .clone()
                .with_device(Device::Reference)
                .run_full(states.view(), 50, true)
                .unwrap();
            let scale = reference.states.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
            let worst = LAGRANGIAN_STATE_TOL
                .scaled(scale)
                .compare(
                    fast.states.iter().copied(),
                    reference.states.iter().copied(),
                )
                .unwrap_or_else(|m| panic!("{device:?} {spec:?}: states {m:?}"));
            eprintln!("{spec:?}: largest state difference {worst:e} (scale {scale})");
            let (fh, rh) = (fast.hidden.unwrap(), reference.hidden.unwrap());
            let scale = rh.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
            LAGRANGIAN_STATE_TOL
                .scaled(scale)
                .compare(fh.iter().copied(), rh.iter().copied())
                .unwrap_or_else(|m| panic!("{device:?} {spec:?}: hidden {m:?}"));
            let scale = reference
                .energies
                .iter()
                .fold(0.0f64, |m, v| m.max(v.abs()));
            let worst = LAGRANGIAN_ENERGY_TOL
                .scaled(scale)
                .compare(
                    fast.energies.iter().copied(),
                    reference.energies.iter().copied(),
                )
                .unwrap_or_else(|m| panic!("{device:?} {spec:?}: energies {m:?}"));
            eprintln!("{spec:?}: largest energy difference {worst:e} (scale {scale})");
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * 6);
}

test_devices!(fast: devices_agree_with_the_reference);

#[test]
fn a_batch_split_across_cores_equals_each_state_run_alone() {
    // Enough work that the fast CPU splits the batch by states across threads; every
    // trajectory (slow memory neurons kept) must be the one its state has when run alone.
    let (k, n, b) = (64, 128, 12);
    let memories = common::unit_patterns(k, n, 75);
    let states = common::noisy_queries(&memories, b, 0.5, 76);
    let spec = LagrangianSpec {
        tau_hidden: 0.5,
        integrator: Integrator::Rk4,
        ..LagrangianSpec::model_b(6.0)
    };
    let net = EnergyNetwork::new(memories, spec).unwrap();
    let all = net.run_full(states.view(), 60, true).unwrap();
    assert_eq!(all.states.dim(), (b, n));
    assert_eq!(all.energies.dim(), (b, 61));
    let hidden = all.hidden.unwrap();
    assert_eq!(hidden.dim(), (b, k));
    let tol = Tolerance::new(1e-6, 1e-5);
    for q in 0..b {
        let one = net
            .run_full(states.slice(ndarray::s![q..q + 1, ..]), 60, true)
            .unwrap();
        tol.compare(
            one.states.iter().copied(),
            all.states.row(q).iter().copied(),
        )
        .unwrap_or_else(|m| panic!("state {q}: {m:?}"));
        tol.compare(
            one.energies.iter().copied(),
            all.energies.row(q).iter().copied(),
        )
        .unwrap_or_else(|m| panic!("energies {q}: {m:?}"));
        tol.compare(
            one.hidden.unwrap().iter().copied(),
            hidden.row(q).iter().copied(),
        )
        .unwrap_or_else(|m| panic!("hidden {q}: {m:?}"));
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let memories = common::unit_patterns(4, 8, 81);
    let states = common::noisy_queries(&memories, 2, 0.1, 82);
    let bad = |spec: LagrangianSpec| EnergyNetwork::new(memories.clone(), spec).unwrap_err();
    let cubic = HiddenLagrangian::Additive(PolyF {
        degree: 3,
        rectified: false,
    });
    let e = bad(LagrangianSpec {
        hidden: cubic,
        ..LagrangianSpec::default()
    });
    assert!(
        matches!(
            e,
            Error::InvalidParameter {
                argument: "hidden",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("convex"), "{e}");
    for dt in [0.0, -0.1, f64::NAN] {
        let e = bad(LagrangianSpec {
            dt,
            ..LagrangianSpec::default()
        });
        assert!(
            matches!(e, Error::InvalidParameter { argument: "dt", .. }),
            "{e}"
        );
    }
    let e = bad(LagrangianSpec {
        tau_visible: 0.0,
        ..LagrangianSpec::default()
    });
    assert!(
        matches!(
            e,
            Error::InvalidParameter {
                argument: "tau_visible",
                ..
            }
        ),
        "{e}"
    );
    let e = bad(LagrangianSpec::model_b(0.0));
    assert!(
        matches!(
            e,
            Error::InvalidParameter {
                argument: "beta",
                ..
            }
        ),
        "{e}"
    );
    let net = EnergyNetwork::new(memories.clone(), LagrangianSpec::default()).unwrap();
    for device in [Device::Reference, Device::Cpu, common::gpu()] {
        let net = net.clone().with_device(device);
        let wrong = Array2::<f32>::zeros((2, 7));
        let e = net.run(wrong.view(), 3).unwrap_err();
        assert!(
            matches!(
                e,
                Error::DimensionMismatch {
                    expected: 8,
                    actual: 7,
                    ..
                }
            ),
            "{e}"
        );
        let mut nan = states.clone();
        nan[[1, 2]] = f32::NAN;
        let e = net.energy(nan.view()).unwrap_err();
        assert!(
            matches!(
                e,
                Error::NonFinite {
                    argument: "states",
                    row: 1,
                    col: 2,
                    ..
                }
            ),
            "{e}"
        );
    }
    let e = net.clone().with_current(vec![0.0; 5]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::DimensionMismatch {
                argument: "current",
                expected: 8,
                actual: 5
            }
        ),
        "{e}"
    );
    let e = EnergyNetwork::new(Array2::zeros((0, 8)), LagrangianSpec::default()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Empty {
                argument: "memories",
                ..
            }
        ),
        "{e}"
    );
}

/// An exponential Lagrangian whose e^{βh} leaves the f32 range is an overflow error on the
/// f32 devices, never an infinite or NaN number; the f64 reference still runs it.
fn overflow_is_an_error_not_a_number(device: Device) {
    let memories = common::unit_patterns(4, 8, 91);
    let states = common::noisy_queries(&memories, 2, 0.05, 92);
    let spec = LagrangianSpec {
        hidden: HiddenLagrangian::Exponential { beta: 200.0 },
        ..LagrangianSpec::default()
    };
    let net = EnergyNetwork::new(memories, spec).unwrap();
    let (_, energies) = net
        .clone()
        .with_device(Device::Reference)
        .run(states.view(), 0)
        .unwrap();
    assert!(
        energies.iter().all(|e| e.is_finite() && *e < -1e40),
        "{energies:?}"
    );
    let e = net.with_device(device).run(states.view(), 3).unwrap_err();
    assert!(matches!(e, Error::Overflow { .. }), "{e}");
}

test_devices!(fast: overflow_is_an_error_not_a_number);

fn layer(lagrangian: LayerLagrangian, size: usize, tau: f64) -> Layer {
    Layer {
        lagrangian,
        size,
        tau,
    }
}

/// Couplings W_l (size_{l+1} × size_l) with rows of norm 0.8.
fn couplings(spec: &HierarchySpec, seed: u64) -> Vec<Array2<f32>> {
    spec.layers
        .windows(2)
        .enumerate()
        .map(|(l, pair)| common::unit_patterns(pair[1].size, pair[0].size, seed + l as u64) * 0.8)
        .collect()
}

#[test]
fn hierarchical_energy_never_rises() {
    // Three- and four-layer chains of convex Lagrangians, unequal time constants, Euler and
    // RK4: the f64 energy never rises by more than 1e-9 relative over 300 steps.
    use LayerLagrangian::{Hidden, Visible};
    let rpoly3 = HiddenLagrangian::Additive(PolyF {
        degree: 3,
        rectified: true,
    });
    let poly2 = HiddenLagrangian::Additive(PolyF {
        degree: 2,
        rectified: false,
    });
    let chains = [
        vec![
            layer(Visible(VisibleLagrangian::Quadratic), 16, 1.0),
            layer(Hidden(HiddenLagrangian::LogSumExp { beta: 3.0 }), 8, 0.5),
            layer(Visible(VisibleLagrangian::Quadratic), 4, 0.2),
        ],
        vec![
            layer(Visible(VisibleLagrangian::Spherical), 16, 1.0),
            layer(Hidden(rpoly3), 8, 0.3),
            layer(Hidden(HiddenLagrangian::LogSumExp { beta: 2.0 }), 5, 0.5),
        ],
        vec![
            layer(Visible(VisibleLagrangian::Abs), 16, 1.0),
            layer(Visible(VisibleLagrangian::Quadratic), 8, 0.5),
            // (Σ e^{βh} on top of a quadratic layer would be unbounded below: the chain
            // would run away, as the energy rule allows.)
            layer(Hidden(HiddenLagrangian::LogSumExp { beta: 2.0 }), 6, 0.4),
        ],
        vec![
            layer(Visible(VisibleLagrangian::Quadratic), 16, 1.0),
            layer(Visible(VisibleLagrangian::Quadratic), 10, 0.7),
            layer(Hidden(poly2), 6, 0.5),
            layer(Hidden(HiddenLagrangian::LogSumExp { beta: 4.0 }), 3, 0.2),
        ],
    ];
    let mut checked = 0;
    for (c, layers) in chains.into_iter().enumerate() {
        for integrator in [Integrator::Euler, Integrator::Rk4] {
            let spec = HierarchySpec {
                layers: layers.clone(),
                dt: 0.01,
                integrator,
            };
            let w = couplings(&spec, 100 + c as u64);
            let states = common::noisy_queries(&common::unit_patterns(4, 16, 120), 4, 0.5, 121);
            let current: Vec<f32> = (0..16).map(|i| 0.02 * ((i % 3) as f32 - 1.0)).collect();
            let run = HierarchicalNetwork::new(w, spec.clone())
                .unwrap()
                .with_current(current)
                .unwrap()
                .run(states.view(), 300)
                .unwrap_or_else(|e| panic!("chain {c} {integrator:?}: {e}"));
            assert_eq!(run.layers.len(), spec.layers.len());
            for (out, l) in run.layers.iter().zip(&spec.layers) {
                assert_eq!(out.dim(), (4, l.size));
            }
            let rise = largest_relative_rise(&run.energies);
            assert!(
                rise <= 1e-9,
                "chain {c} {integrator:?}: energy rose by {rise:e}"
            );
            let fell = run.energies[[0, 0]] - run.energies[[0, 300]];
            assert!(
                fell > 1e-6,
                "chain {c} {integrator:?}: the energy did not move ({fell})"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 8);
}

#[test]
fn a_two_layer_hierarchy_is_the_energy_network() {
    let (k, n) = (9, 20);
    let memories = common::unit_patterns(k, n, 131);
    let states = common::noisy_queries(&memories, 3, 0.5, 132);
    for integrator in [Integrator::Euler, Integrator::Rk4] {
        let net_spec = LagrangianSpec {
            tau_hidden: 0.4,
            dt: 0.05,
            integrator,
            ..LagrangianSpec::model_b(3.0)
        };
        let spec = HierarchySpec {
            layers: vec![
                layer(LayerLagrangian::Visible(net_spec.visible), n, 1.0),
                layer(LayerLagrangian::Hidden(net_spec.hidden), k, 0.4),
            ],
            dt: 0.05,
            integrator,
        };
        let want = EnergyNetwork::new(memories.clone(), net_spec)
            .unwrap()
            .with_device(Device::Reference)
            .run_full(states.view(), 40, true)
            .unwrap();
        let got = HierarchicalNetwork::new(vec![memories.clone()], spec)
            .unwrap()
            .run(states.view(), 40)
            .unwrap();
        let tol = Tolerance::new(1e-12, 1e-10);
        tol.compare(got.energies.iter().copied(), want.energies.iter().copied())
            .unwrap_or_else(|m| panic!("{integrator:?} energies: {m:?}"));
        tol.compare(got.layers[0].iter().copied(), want.states.iter().copied())
            .unwrap_or_else(|m| panic!("{integrator:?} states: {m:?}"));
        tol.compare(
            got.layers[1].iter().copied(),
            want.hidden.unwrap().iter().copied(),
        )
        .unwrap_or_else(|m| panic!("{integrator:?} hidden: {m:?}"));
    }
}

#[test]
fn hierarchical_bad_input_is_a_clear_error() {
    use LayerLagrangian::{Hidden, Visible};
    let good = HierarchySpec {
        layers: vec![
            layer(Visible(VisibleLagrangian::Quadratic), 6, 1.0),
            layer(Hidden(HiddenLagrangian::LogSumExp { beta: 1.0 }), 4, 0.5),
            layer(Visible(VisibleLagrangian::Quadratic), 3, 0.5),
        ],
        dt: 0.1,
        integrator: Integrator::Euler,
    };
    let w = couplings(&good, 140);
    let err = |spec: HierarchySpec, w: Vec<Array2<f32>>| {
        HierarchicalNetwork::new(w, spec).unwrap_err().to_string()
    };
    let one = HierarchySpec {
        layers: good.layers[..1].to_vec(),
        ..good.clone()
    };
    assert!(err(one, vec![]).contains("two layers"));
    let mut slow = good.clone();
    slow.layers[1].tau = 0.0;
    assert!(err(slow, w.clone()).contains("τ"));
    let mut cubic = good.clone();
    cubic.layers[2].lagrangian = Hidden(HiddenLagrangian::Additive(PolyF {
        degree: 3,
        rectified: false,
    }));
    assert!(err(cubic, w.clone()).contains("convex"));
    let e = HierarchicalNetwork::new(w[..1].to_vec(), good.clone()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::DimensionMismatch {
                expected: 2,
                actual: 1,
                ..
            }
        ),
        "{e}"
    );
    let mut wrong = w.clone();
    wrong[1] = Array2::zeros((3, 5));
    let e = HierarchicalNetwork::new(wrong, good.clone()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::DimensionMismatch {
                expected: 4,
                actual: 5,
                ..
            }
        ),
        "{e}"
    );
    let net = HierarchicalNetwork::new(w, good).unwrap();
    let states = Array2::<f32>::zeros((2, 5));
    assert!(matches!(
        net.run(states.view(), 1).unwrap_err(),
        Error::DimensionMismatch {
            expected: 6,
            actual: 5,
            ..
        }
    ));
    let states = Array2::<f32>::zeros((2, 6));
    let e = net
        .clone()
        .with_device(Device::Cpu)
        .run(states.view(), 1)
        .unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("Device::Reference"), "{e}");
}
