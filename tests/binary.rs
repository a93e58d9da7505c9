//! Binary dense associative memories: the exact spin update gives identical final states
//! on the CPU and the wgpu device (including N not a multiple of 32, β·N in the thousands
//! and exact ties), and reproduces THEORY.md §3–§4.

mod common;

use dam::binary::{
    pack, unpack, words_per_state, BinaryPatterns, SpinEnergy, SpinResult, SpinUpdate,
};
use dam::{WgpuContext, WgpuOptions};

fn ctx() -> std::sync::Arc<WgpuContext> {
    common::gpu();
    WgpuContext::shared(&WgpuOptions::default()).expect("adapter")
}

/// Patterns 0..b with `flips` spins flipped each (spin (q·7 + 13·k) mod N).
fn corrupted(patterns: &BinaryPatterns, b: usize, flips: usize) -> Vec<u32> {
    let (n, w) = (patterns.dim(), words_per_state(patterns.dim()));
    let mut out = Vec::with_capacity(b * w);
    for q in 0..b {
        let mut x = unpack(patterns.pattern(q % patterns.count()), n);
        for k in 0..flips {
            let i = (q * 7 + 13 * k) % n;
            x[i] = -x[i];
        }
        let mut words = vec![0; w];
        pack(&x, &mut words);
        out.extend(words);
    }
    out
}

fn both(
    patterns: &BinaryPatterns,
    energy: SpinEnergy,
    update: SpinUpdate,
    queries: &[u32],
) -> SpinResult {
    let reference =
        dam::spin_dynamics(&dam::Device::Reference, patterns, energy, update, queries).unwrap();
    for device in [dam::Device::Cpu, dam::Device::Context(ctx())] {
        let r = dam::spin_dynamics(&device, patterns, energy, update, queries).unwrap();
        assert_eq!(
            r,
            reference,
            "{device:?}: N={} P={} {energy:?} {update:?}",
            patterns.dim(),
            patterns.count()
        );
    }
    reference
}

#[test]
fn cpu_and_wgpu_reach_identical_states() {
    let energies = [
        SpinEnergy::Polynomial { n: 2 },
        SpinEnergy::Polynomial { n: 3 },
        SpinEnergy::RectifiedPolynomial { n: 3 },
        SpinEnergy::Exponential { beta: 0.3 },
        SpinEnergy::Exponential { beta: 40.0 }, // β·N = 4,000 at N = 100
    ];
    let updates = [
        SpinUpdate::Async {
            max_sweeps: 6,
            seed: 3,
        },
        SpinUpdate::Sync { max_steps: 4 },
    ];
    let mut runs = 0;
    for (n, p) in [(1usize, 1usize), (31, 7), (33, 40), (100, 200)] {
        let patterns = BinaryPatterns::procedural(p, n, 17).unwrap();
        let queries = corrupted(&patterns, 9, n / 5 + 1);
        for energy in energies {
            for update in updates {
                let r = both(&patterns, energy, update, &queries);
                assert_eq!(r.flips.len(), 9);
                runs += 1;
            }
        }
    }
    assert_eq!(runs, 4 * 5 * 2);
}

#[test]
fn exact_ties_keep_the_spin_on_both_devices() {
    // Two patterns that differ only in spin 0, query equal to the first: for spin 0,
    // a_1 = a_2 and ξ_0 differ, so Δ_0 = W(a) − W(a) = 0 exactly: the spin must stay.
    let n = 40;
    let first: Vec<f32> = (0..n)
        .map(|i| if i % 3 == 0 { 1.0 } else { -1.0 })
        .collect();
    let mut second = first.clone();
    second[0] = -second[0];
    let patterns = BinaryPatterns::from_signs(2, n, &[first.clone(), second].concat()).unwrap();
    let mut query = vec![0u32; words_per_state(n)];
    pack(&first, &mut query);
    for energy in [
        SpinEnergy::Polynomial { n: 3 },
        SpinEnergy::Exponential { beta: 1.0 },
        SpinEnergy::Exponential { beta: 500.0 },
    ] {
        for update in [
            SpinUpdate::Async {
                max_sweeps: 3,
                seed: 1,
            },
            SpinUpdate::Sync { max_steps: 3 },
        ] {
            let r = both(&patterns, energy, update, &query);
            assert_eq!(
                unpack(&r.states, n),
                first,
                "{energy:?} {update:?}: the tie kept the spin"
            );
            assert_eq!(r.flips[0], vec![0], "{energy:?} {update:?}");
        }
    }
    // A near tie for the exponential energy: the second pattern's terms are smaller by
    // e^{−2β}·(tiny); with β = 8 they are below 2^-40 relative and both devices agree.
    let third: Vec<f32> = (0..n)
        .map(|i| if i % 5 == 0 { 1.0 } else { -1.0 })
        .collect();
    let patterns = BinaryPatterns::from_signs(
        3,
        n,
        &[
            first.clone(),
            third.clone(),
            first
                .iter()
                .zip(&third)
                .map(|(a, b)| if a == b { *a } else { -*a })
                .collect::<Vec<f32>>(),
        ]
        .concat(),
    )
    .unwrap();
    let queries = corrupted(&patterns, 6, 7);
    both(
        &patterns,
        SpinEnergy::Exponential { beta: 8.0 },
        SpinUpdate::Sync { max_steps: 5 },
        &queries,
    );
}

/// Mean fraction of bits flipped by one synchronous update started at each stored pattern.
fn one_step_flip_rate(
    n: usize,
    k: usize,
    energy: SpinEnergy,
    seeds: std::ops::Range<u64>,
) -> (f64, usize) {
    let mut flipped = 0u64;
    let mut bits = 0usize;
    for seed in seeds {
        let patterns = BinaryPatterns::procedural(k, n, seed).unwrap();
        let r = dam::spin_dynamics(
            &dam::Device::Cpu,
            &patterns,
            energy,
            SpinUpdate::Sync { max_steps: 1 },
            patterns.words(),
        )
        .unwrap();
        flipped += r.flips.iter().map(|f| f[0] as u64).sum::<u64>();
        bits += k * n;
    }
    (flipped as f64 / bits as f64, bits)
}

#[test]
fn one_step_bit_flip_rates_match_krotov_hopfield() {
    // n = 3, N = 100 (THEORY.md §3): K = 500 → 0.0050–0.0052, K = 1000 → 0.035 (sim 0.0345).
    for (k, expected, seeds) in [(500usize, 0.0051, 0..4u64), (1000, 0.0345, 0..4)] {
        let (rate, bits) = one_step_flip_rate(100, k, SpinEnergy::Polynomial { n: 3 }, seeds);
        // Bits of one pattern are correlated; allow 5 binomial σ of the bit count, plus
        // the spread of the published values.
        let sigma = (expected * (1.0 - expected) / bits as f64).sqrt();
        println!("n=3 N=100 K={k}: flip rate {rate:.5} (published {expected}, σ {sigma:.5}, {bits} bits)");
        assert!(
            (rate - expected).abs() <= 5.0 * sigma + 0.0002,
            "K={k}: {rate}"
        );
    }
    // n = 2 at K/N = 0.138: the Gaussian approximation Φ(−√(N/K)) = 0.0036 (large N);
    // at N = 100 the exact rule excludes self-coupling, so Φ(−√((N−1)/(K−1))) ≈ 0.0029.
    let (rate, bits) = one_step_flip_rate(100, 14, SpinEnergy::Polynomial { n: 2 }, 0..150);
    println!(
        "n=2 N=100 K=14: flip rate {rate:.5} over {bits} bits (0.0029 finite N, 0.0036 large N)"
    );
    assert!((0.0020..0.0045).contains(&rate), "{rate}");
}

#[test]
fn exponential_energy_is_stable_below_ln2_over_2_and_not_far_above() {
    // THEORY.md §4: all stored patterns are fixed points for α < ln 2 / 2 ≈ 0.347.
    let stable = |n: usize, alpha: f64, seed: u64| {
        let p = (alpha * n as f64).exp().round() as usize;
        let patterns = BinaryPatterns::procedural(p, n, seed).unwrap();
        let tested = 20.min(p);
        let queries = &patterns.words()[..tested * words_per_state(n)];
        let r = dam::spin_dynamics(
            &dam::Device::Cpu,
            &patterns,
            SpinEnergy::Exponential { beta: 1.0 },
            SpinUpdate::Sync { max_steps: 1 },
            queries,
        )
        .unwrap();
        let fixed = r.flips.iter().filter(|f| f[0] == 0).count();
        (fixed, tested, p)
    };
    let (fixed, tested, p) = stable(30, 0.3, 1);
    println!("N=30 α=0.3 (P={p}): {fixed}/{tested} stored patterns are fixed points");
    assert_eq!(fixed, tested);
    let (fixed, tested, p) = stable(12, 1.0, 2);
    println!("N=12 α=1.0 (P={p}): {fixed}/{tested} stored patterns are fixed points");
    assert!(
        fixed * 2 < tested,
        "well above ln 2 / 2 most patterns are lost"
    );
}
