//! Monte Carlo on the sphere (`dam phase`): the chains' energy on every device against its
//! f64 definition, and whole runs on every device against the reference.

use dam::Device;
use dam_experiments::phase::{
    exact_energy, run, spherical_patterns, ChainEnergy, PhaseEnergy, PhaseSize, PhaseSpec,
};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The wgpu device; a missing adapter fails the test.
fn gpu() -> Device {
    dam::WgpuContext::shared(&dam::WgpuOptions::default()).unwrap_or_else(|e| {
        panic!("GPU tests need a wgpu adapter ({e}); install mesa-vulkan-drivers libvulkan1")
    });
    Device::wgpu()
}

fn devices() -> Vec<Device> {
    vec![Device::Reference, Device::Cpu, gpu()]
}

/// |x − ref| ≤ atol + rtol·|ref| for the energies (f32 products against f64 sums).
const ENERGY_ATOL: f64 = 2e-3;
const ENERGY_RTOL: f64 = 1e-4;

/// States on the sphere near pattern 0 (overlaps from ~0.6 to 1) and one far from all.
fn states(patterns: &Array2<f32>, count: usize, seed: u64) -> Array2<f32> {
    let n = patterns.ncols();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut x = Array2::<f32>::zeros((count, n));
    for (i, mut row) in x.rows_mut().into_iter().enumerate() {
        let w = if i + 1 == count {
            0.0
        } else {
            1.0 - 0.4 * i as f64 / count as f64
        };
        let mut v: Vec<f64> = patterns
            .row(0)
            .iter()
            .map(|&p| w * p as f64 + (1.0 - w) * 2.0 * (rng.random::<f64>() - 0.5))
            .collect();
        dam::Projection::Sphere.apply(&mut v);
        row.iter_mut().zip(&v).for_each(|(o, &a)| *o = a as f32);
    }
    x
}

#[test]
fn chain_energies_match_their_definition_on_every_device() {
    // P = 1,003 (not a multiple of any block), N = 37; β·N·φ up to 37 (LSE) and the LSR
    // wall crossed by the far state (+∞).
    let (n, m) = (37usize, 1003u64);
    let patterns = spherical_patterns(11, m, n);
    let x = states(&patterns, 9, 3);
    for energy in [PhaseEnergy::Lse, PhaseEnergy::Lsr] {
        let exact: Vec<f64> = x
            .rows()
            .into_iter()
            .map(|row| {
                let phis: Vec<f64> = patterns
                    .rows()
                    .into_iter()
                    .map(|p| {
                        p.iter()
                            .zip(row.iter())
                            .map(|(&a, &b)| a as f64 * b as f64)
                            .sum::<f64>()
                            / n as f64
                    })
                    .collect();
                exact_energy(energy, &phis, n)
            })
            .collect();
        assert!(exact[0].is_finite(), "{energy:?}: the state at the target");
        if energy == PhaseEnergy::Lsr {
            assert_eq!(exact[8], f64::INFINITY, "far from every pattern");
        }
        for device in devices() {
            let got = ChainEnergy::new(energy, patterns.clone(), &device)
                .unwrap()
                .energies(&x)
                .unwrap();
            assert_eq!(got.len(), exact.len());
            for (i, (&g, &e)) in got.iter().zip(&exact).enumerate() {
                if e.is_infinite() {
                    assert_eq!(g, e, "{energy:?} {device:?} state {i}");
                } else {
                    assert!(
                        (g - e).abs() <= ENERGY_ATOL + ENERGY_RTOL * e.abs(),
                        "{energy:?} {device:?} state {i}: {g} vs {e}"
                    );
                }
            }
        }
    }
}

/// Whole runs: the fast CPU and wgpu give the reference's rows (the accept/reject
/// decisions only differ where an f32 energy lands within rounding of the threshold, which
/// these seeds never do).
#[test]
fn runs_agree_on_every_device() {
    for energy in [PhaseEnergy::Lse, PhaseEnergy::Lsr] {
        let spec = PhaseSpec {
            energy,
            size: PhaseSize::Dim(24),
            alphas: vec![0.1, 0.3],
            temperatures: vec![0.1, 0.4],
            disorders: 1,
            equilibrate: 60,
            sample: 40,
            seed: 2,
            ..PhaseSpec::default()
        };
        let reference = run(&spec, &Device::Reference, &[], |_| Ok(())).unwrap();
        assert_eq!(reference.len(), 4);
        for device in [Device::Cpu, gpu()] {
            let rows = run(&spec, &device, &[], |_| Ok(())).unwrap();
            assert_eq!(rows.len(), reference.len());
            for (a, b) in rows.iter().zip(&reference) {
                assert_eq!(
                    (a.alpha, a.t, a.n, a.patterns),
                    (b.alpha, b.t, b.n, b.patterns)
                );
                for (x, y) in [
                    (a.phi_a, b.phi_a),
                    (a.phi_mean, b.phi_mean),
                    (a.q12.unwrap(), b.q12.unwrap()),
                    (a.phi_max_other.unwrap(), b.phi_max_other.unwrap()),
                ] {
                    assert!(
                        (x - y).abs() <= 1e-4,
                        "{energy:?} {device:?}: {a:?} vs {b:?}"
                    );
                }
                assert_eq!(a.acceptance, b.acceptance, "{energy:?} {device:?}");
            }
        }
    }
}

/// Patterns regenerated at every step (beyond the stored limit) give the stored run's rows.
#[test]
fn procedural_patterns_give_the_stored_rows() {
    for energy in [PhaseEnergy::Lse, PhaseEnergy::Lsr] {
        let spec = PhaseSpec {
            energy,
            size: PhaseSize::Dim(21),
            // M = 20,000: several generated blocks, split over the threads.
            alphas: vec![(20_000f64).ln() / 21.0, 0.1],
            temperatures: vec![0.1, 0.3],
            disorders: 1,
            equilibrate: 40,
            sample: 30,
            seed: 4,
            ..PhaseSpec::default()
        };
        let stored = run(&spec, &Device::Cpu, &[], |_| Ok(())).unwrap();
        let streamed = PhaseSpec {
            max_stored_entries: 0,
            ..spec.clone()
        };
        let rows = run(&streamed, &Device::Cpu, &[], |_| Ok(())).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(stored.len(), 4);
        assert_eq!(stored[0].patterns, 20_000);
        for (a, b) in rows.iter().zip(&stored) {
            for (x, y) in [
                (a.phi_mean, b.phi_mean),
                (a.q12.unwrap(), b.q12.unwrap()),
                (a.phi_max_other.unwrap(), b.phi_max_other.unwrap()),
            ] {
                assert!((x - y).abs() <= 1e-4, "{energy:?}: {a:?} vs {b:?}");
            }
            assert_eq!(a.acceptance, b.acceptance, "{energy:?}");
        }
        // Only the fast CPU regenerates patterns.
        assert!(run(&streamed, &Device::Reference, &[], |_| Ok(())).is_err());
    }
}
