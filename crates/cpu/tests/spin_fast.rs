//! The fast spin dynamics (`dam_cpu::binary`) against the reference
//! (`dam_cpu::reference::binary`): identical final states, flips per sweep and convergence
//! flags, for every energy, both updates, with and without clamps, N not a multiple of 32,
//! P = 1, 2 and odd, one query and several, exact ties, and budgets where only some
//! queries converge.

use dam_core::binary::{
    pack, unpack, words_per_state, BinaryPatterns, Clamp, SpinEnergy, SpinResult, SpinUpdate,
};
use dam_cpu::{binary as fast, reference::binary as reference};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn random_patterns(rng: &mut StdRng, count: usize, dim: usize) -> BinaryPatterns {
    let values: Vec<f32> = (0..count * dim)
        .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
        .collect();
    BinaryPatterns::from_signs(count, dim, &values).unwrap()
}

/// B packed queries: pattern q mod P with each spin flipped with probability `rho`.
fn queries(rng: &mut StdRng, patterns: &BinaryPatterns, b: usize, rho: f64) -> Vec<u32> {
    let (n, w) = (patterns.dim(), words_per_state(patterns.dim()));
    let mut out = vec![0u32; b * w];
    for q in 0..b {
        let mut x = unpack(patterns.pattern(q % patterns.count()), n);
        for v in x.iter_mut() {
            if rng.random::<f64>() < rho {
                *v = -*v;
            }
        }
        pack(&x, &mut out[q * w..(q + 1) * w]);
    }
    out
}

fn random_clamp(rng: &mut StdRng, dim: usize, share: f64) -> Clamp {
    let fixed: Vec<usize> = (0..dim).filter(|_| rng.random::<f64>() < share).collect();
    Clamp::fixing(dim, &fixed).unwrap()
}

/// Runs both paths (the fast one on 1 and 3 threads) and asserts identical results.
fn same(
    patterns: &BinaryPatterns,
    energy: SpinEnergy,
    update: SpinUpdate,
    queries: &[u32],
    clamp: &Clamp,
) -> SpinResult {
    let want = reference::run_clamped(patterns, energy, update, queries, clamp).unwrap();
    let label = format!(
        "N={} P={} B={} {energy:?} {update:?} clamp={:x?}",
        patterns.dim(),
        patterns.count(),
        want.converged.len(),
        clamp.free
    );
    for threads in [1, 3] {
        let got = fast::run_clamped_on(patterns, energy, update, queries, clamp, threads).unwrap();
        assert_eq!(got, want, "{label}, {threads} threads");
    }
    want
}

const ENERGIES: [SpinEnergy; 11] = [
    SpinEnergy::Polynomial { n: 1 },
    SpinEnergy::Polynomial { n: 2 },
    SpinEnergy::Polynomial { n: 3 },
    SpinEnergy::Polynomial { n: 4 },
    SpinEnergy::Polynomial { n: 7 }, // 64-bit lanes at N ≥ 33
    SpinEnergy::RectifiedPolynomial { n: 1 },
    SpinEnergy::RectifiedPolynomial { n: 3 },
    SpinEnergy::RectifiedPolynomial { n: 6 },
    SpinEnergy::Exponential { beta: 0.05 },
    SpinEnergy::Exponential { beta: 1.0 },
    SpinEnergy::Exponential { beta: 40.0 },
];

#[test]
fn every_energy_update_and_shape_matches_the_reference() {
    let mut rng = StdRng::seed_from_u64(11);
    let updates = [
        SpinUpdate::Sync { max_steps: 1 },
        SpinUpdate::Sync { max_steps: 30 },
        SpinUpdate::Async {
            max_sweeps: 30,
            seed: 5,
        },
    ];
    for &(dim, count) in &[(1, 1), (31, 2), (33, 7), (70, 33), (100, 64), (32, 65)] {
        let patterns = random_patterns(&mut rng, count, dim);
        for (k, &energy) in ENERGIES.iter().enumerate() {
            for update in updates {
                let b = if k % 2 == 0 { 1 } else { 5 };
                let q = queries(&mut rng, &patterns, b, 0.3);
                same(&patterns, energy, update, &q, &Clamp::none(dim));
                let clamp = random_clamp(&mut rng, dim, 0.3);
                same(&patterns, energy, update, &q, &clamp);
            }
        }
    }
}

#[test]
fn random_starts_and_many_patterns_match_the_reference() {
    let mut rng = StdRng::seed_from_u64(12);
    for &(dim, count) in &[(70, 20), (100, 301)] {
        let patterns = random_patterns(&mut rng, count, dim);
        let q = queries(&mut rng, &patterns, 9, 0.5);
        for energy in [
            SpinEnergy::Polynomial { n: 3 },
            SpinEnergy::Polynomial { n: 6 },
            SpinEnergy::RectifiedPolynomial { n: 4 },
            SpinEnergy::Exponential { beta: 0.2 },
        ] {
            same(
                &patterns,
                energy,
                SpinUpdate::Async {
                    max_sweeps: 100,
                    seed: 3,
                },
                &q,
                &Clamp::none(dim),
            );
            same(
                &patterns,
                energy,
                SpinUpdate::Sync { max_steps: 10 },
                &q,
                &Clamp::none(dim),
            );
        }
    }
}

/// Δ_i from its definition, in i128, for the test's own count of ties.
fn exact_delta(patterns: &BinaryPatterns, n: u32, state: &[f32], i: usize) -> i128 {
    let dim = patterns.dim();
    (0..patterns.count())
        .map(|mu| {
            let xi = unpack(patterns.pattern(mu), dim);
            let rest: i128 = (0..dim)
                .filter(|&j| j != i)
                .map(|j| (xi[j] * state[j]) as i128)
                .sum();
            let f = |x: i128| x.pow(n);
            f(rest + xi[i] as i128) - f(rest - xi[i] as i128)
        })
        .sum()
}

#[test]
fn exact_ties_keep_the_spin_as_in_the_reference() {
    let mut rng = StdRng::seed_from_u64(13);
    // n = 1: Δ_i = 2 Σ_μ ξ_i^μ whatever the state, 0 at the spins where an even number of
    // patterns balance, so some spins are tied and some are not.
    for &(dim, count) in &[(10, 2), (33, 2), (70, 4)] {
        let patterns = random_patterns(&mut rng, count, dim);
        let q = queries(&mut rng, &patterns, 4, 0.5);
        let first = unpack(&q[..words_per_state(dim)], dim);
        let ties = (0..dim)
            .filter(|&i| exact_delta(&patterns, 1, &first, i) == 0)
            .count();
        assert!(0 < ties && ties < dim, "N={dim}: {ties} ties");
        for update in [
            SpinUpdate::Sync { max_steps: 5 },
            SpinUpdate::Async {
                max_sweeps: 5,
                seed: 1,
            },
        ] {
            let energy = SpinEnergy::Polynomial { n: 1 };
            let r = same(&patterns, energy, update, &q, &Clamp::none(dim));
            assert!(r.converged.iter().all(|&c| c), "{update:?}");
        }
    }
    // Patterns in ± pairs and an odd F: every Δ_i is exactly 0 and nothing moves.
    for &(dim, half) in &[(10, 1), (33, 2), (64, 3)] {
        let base = random_patterns(&mut rng, half, dim);
        let values: Vec<f32> = (0..half)
            .flat_map(|mu| unpack(base.pattern(mu), dim))
            .chain((0..half).flat_map(|mu| unpack(base.pattern(mu), dim).into_iter().map(|v| -v)))
            .collect();
        let patterns = BinaryPatterns::from_signs(2 * half, dim, &values).unwrap();
        let q = queries(&mut rng, &patterns, 4, 0.5);
        let first = unpack(&q[..words_per_state(dim)], dim);
        assert!((0..dim).all(|i| exact_delta(&patterns, 3, &first, i) == 0));
        let updates = [
            SpinUpdate::Sync { max_steps: 5 },
            SpinUpdate::Async {
                max_sweeps: 5,
                seed: 1,
            },
        ];
        for update in updates {
            for n in [1, 3] {
                let energy = SpinEnergy::Polynomial { n };
                let r = same(&patterns, energy, update, &q, &Clamp::none(dim));
                assert_eq!(r.states, q, "N={dim} {energy:?} {update:?}");
                assert!(r.converged.iter().all(|&c| c));
            }
            for energy in [
                SpinEnergy::Polynomial { n: 2 },
                SpinEnergy::Exponential { beta: 0.5 },
            ] {
                same(&patterns, energy, update, &q, &Clamp::none(dim));
            }
        }
    }
}

#[test]
fn budgets_where_some_queries_converge_and_some_do_not() {
    let mut rng = StdRng::seed_from_u64(14);
    let patterns = random_patterns(&mut rng, 40, 70);
    // Eight stored patterns (fixed points at once) and eight random starts.
    let mut q = queries(&mut rng, &patterns, 8, 0.0);
    q.extend(queries(&mut rng, &patterns, 8, 0.5));
    let energy = SpinEnergy::Polynomial { n: 3 };
    for update in [
        SpinUpdate::Async {
            max_sweeps: 2,
            seed: 9,
        },
        SpinUpdate::Sync { max_steps: 2 },
    ] {
        let r = same(&patterns, energy, update, &q, &Clamp::none(70));
        assert!(
            r.converged.iter().any(|&c| c) && r.converged.iter().any(|&c| !c),
            "{update:?}: want a mix, got {:?}",
            r.converged
        );
    }
    // No budget at all: nothing converges, nothing moves.
    for update in [
        SpinUpdate::Async {
            max_sweeps: 0,
            seed: 9,
        },
        SpinUpdate::Sync { max_steps: 0 },
    ] {
        let r = same(&patterns, energy, update, &q, &Clamp::none(70));
        assert_eq!(r.states, q);
        assert!(r.converged.iter().all(|&c| !c));
    }
}

#[test]
fn clamps_match_the_reference_including_all_clamped() {
    let mut rng = StdRng::seed_from_u64(15);
    let dim = 45;
    let patterns = random_patterns(&mut rng, 9, dim);
    let q = queries(&mut rng, &patterns, 6, 0.4);
    let all: Vec<usize> = (0..dim).collect();
    for clamp in [
        Clamp::fixing(dim, &all).unwrap(),
        Clamp::fixing(dim, &[0, 31, 32, 44]).unwrap(),
        random_clamp(&mut rng, dim, 0.7),
    ] {
        for energy in [
            SpinEnergy::Polynomial { n: 3 },
            SpinEnergy::Exponential { beta: 2.0 },
        ] {
            for update in [
                SpinUpdate::Sync { max_steps: 20 },
                SpinUpdate::Async {
                    max_sweeps: 20,
                    seed: 2,
                },
            ] {
                let r = same(&patterns, energy, update, &q, &clamp);
                assert_eq!(r.states.len(), q.len());
                let w = clamp.free.len();
                for (k, (s, q0)) in r.states.iter().zip(&q).enumerate() {
                    assert_eq!((s ^ q0) & !clamp.free[k % w], 0, "word {k}");
                }
            }
        }
    }
}

#[test]
fn clamped_neurons_keep_their_query_values() {
    let mut rng = StdRng::seed_from_u64(16);
    let dim = 70;
    let patterns = random_patterns(&mut rng, 12, dim);
    let q = queries(&mut rng, &patterns, 4, 0.5);
    let clamp = random_clamp(&mut rng, dim, 0.5);
    let w = words_per_state(dim);
    let update = SpinUpdate::Async {
        max_sweeps: 50,
        seed: 4,
    };
    let r = fast::run_clamped(
        &patterns,
        SpinEnergy::Polynomial { n: 3 },
        update,
        &q,
        &clamp,
    )
    .unwrap();
    assert_eq!(r.states.len(), q.len());
    for (k, (s, q0)) in r.states.iter().zip(&q).enumerate() {
        assert_eq!((s ^ q0) & !clamp.free[k % w], 0, "word {k}");
    }
}

#[test]
fn run_without_a_clamp_is_the_reference_run_and_errors_agree() {
    let mut rng = StdRng::seed_from_u64(17);
    let patterns = random_patterns(&mut rng, 25, 100);
    let q = queries(&mut rng, &patterns, 3, 0.2);
    let update = SpinUpdate::Async {
        max_sweeps: 10,
        seed: 0,
    };
    let energy = SpinEnergy::Polynomial { n: 3 };
    assert_eq!(
        fast::run_clamped(&patterns, energy, update, &q, &Clamp::none(patterns.dim())).unwrap(),
        reference::run_clamped(&patterns, energy, update, &q, &Clamp::none(patterns.dim()))
            .unwrap()
    );
    // Bits past N, a ragged batch, a bad degree: both refuse.
    let mut bad = q.clone();
    bad[3] |= 1 << 31;
    assert!(fast::run_clamped(
        &patterns,
        energy,
        update,
        &bad,
        &Clamp::none(patterns.dim())
    )
    .is_err());
    assert!(reference::run_clamped(
        &patterns,
        energy,
        update,
        &bad,
        &Clamp::none(patterns.dim())
    )
    .is_err());
    assert!(fast::run_clamped(
        &patterns,
        energy,
        update,
        &q[..5],
        &Clamp::none(patterns.dim())
    )
    .is_err());
    let zero = SpinEnergy::Polynomial { n: 0 };
    assert!(fast::run_clamped(&patterns, zero, update, &q, &Clamp::none(patterns.dim())).is_err());
    assert!(
        reference::run_clamped(&patterns, zero, update, &q, &Clamp::none(patterns.dim())).is_err()
    );
}

#[test]
fn fields_near_the_32_bit_bound_stay_exact() {
    // N = 100, F = x⁵: max|W| = W(±101) ≈ 1.04·10⁹, so P = 2 runs in 32-bit lanes and
    // P = 3 in 64-bit ones. P copies of ξ from −ξ: D_i = −P·W(−99) ≈ −0.96·10⁹·P, below
    // −2³¹ at P = 3, where 32-bit lanes would wrap and keep the spin.
    let mut rng = StdRng::seed_from_u64(18);
    let dim = 100;
    let xi = unpack(random_patterns(&mut rng, 1, dim).pattern(0), dim);
    let w = words_per_state(dim);
    let mut start = vec![0u32; w];
    pack(&xi.iter().map(|v| -v).collect::<Vec<f32>>(), &mut start);
    for count in [2, 3] {
        let values: Vec<f32> = (0..count).flat_map(|_| xi.iter().copied()).collect();
        let patterns = BinaryPatterns::from_signs(count, dim, &values).unwrap();
        let energy = SpinEnergy::Polynomial { n: 5 };
        for update in [
            SpinUpdate::Sync { max_steps: 1 },
            SpinUpdate::Async {
                max_sweeps: 3,
                seed: 0,
            },
        ] {
            let r = same(&patterns, energy, update, &start, &Clamp::none(dim));
            assert_eq!(&r.states[..], patterns.pattern(0), "P={count} {update:?}");
        }
    }
}
