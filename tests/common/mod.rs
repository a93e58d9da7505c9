//! Shared test harness: the wgpu device (never skipped), seeded data, named tolerances.
#![allow(dead_code)]

use dam::{
    Device, Dynamics, Projection, RetrievalResult, Separation, Tolerance, WgpuContext, WgpuOptions,
};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// States after one or more updates: f32 accumulation on the GPU vs f64 on the CPU.
/// The absolute part is scaled by the largest |coordinate| of the reference batch.
pub const STATE_TOL: Tolerance = Tolerance::new(2e-4, 1e-3);
/// Energies (absolute part scaled by the largest |energy| of the batch).
pub const ENERGY_TOL: Tolerance = Tolerance::new(2e-4, 1e-4);

/// One test body, one `#[test]` per device: `test_devices!(fast: f, g)` runs `f(device)`
/// and `g(device)` on the fast CPU backend and on wgpu (never skipped: see [`gpu`]), the
/// bodies comparing with `Device::Reference` themselves; `test_devices!(all: h)` runs `h`
/// on the reference too, for properties every device must have.
#[macro_export]
macro_rules! test_devices {
    (fast: $($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn cpu() {
                    super::$name(dam::Device::Cpu)
                }
                #[test]
                fn wgpu() {
                    super::$name($crate::common::gpu())
                }
            }
        )+
    };
    (all: $($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn reference() {
                    super::$name(dam::Device::Reference)
                }
                #[test]
                fn cpu() {
                    super::$name(dam::Device::Cpu)
                }
                #[test]
                fn wgpu() {
                    super::$name($crate::common::gpu())
                }
            }
        )+
    };
}

/// Every projection.
pub const PROJECTIONS: [Projection; 3] = [Projection::None, Projection::Sphere, Projection::Sign];

/// One of each separation (top-k of at most 3 of `p` patterns).
pub fn separations(p: usize) -> Vec<Separation> {
    vec![
        Separation::Polynomial { n: 3 },
        Separation::RectifiedPolynomial { n: 2 },
        Separation::Exponential { beta: 6.0 },
        Separation::Softmax { beta: 10.0 },
        Separation::Max,
        Separation::TopK { k: 3.min(p) },
    ]
}

/// One step, and a short iteration with a tolerance the f32 devices meet alike.
pub const DYNAMICS: [Dynamics; 2] = [
    Dynamics::OneStep,
    Dynamics::Iterate {
        max_steps: 4,
        tol: 1e-3,
    },
];

/// The wgpu device for GPU tests. A missing adapter is a failure, never a skip: install
/// the Vulkan software rasterizer (`apt-get install mesa-vulkan-drivers libvulkan1`).
pub fn gpu() -> Device {
    gpu_with(WgpuOptions::default())
}

/// Same with explicit options (e.g. a small `max_binding_bytes` to force chunking).
pub fn gpu_with(options: WgpuOptions) -> Device {
    match WgpuContext::shared(&options) {
        Ok(ctx) => {
            eprintln!("wgpu adapter: {}", ctx.describe());
            Device::Wgpu(options)
        }
        Err(e) => panic!(
            "GPU tests need a wgpu adapter and found none ({e}). Install \
             mesa-vulkan-drivers and libvulkan1 (CI={:?})",
            std::env::var("CI").ok()
        ),
    }
}

/// Seeded Gaussian matrix with entries of standard deviation `scale`.
pub fn gaussian(rows: usize, cols: usize, scale: f32, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_simple_fn((rows, cols), || {
        let v: f32 = StandardNormal.sample(&mut rng);
        v * scale
    })
}

/// Patterns with roughly unit norm (entries N(0, 1/N)).
pub fn unit_patterns(p: usize, n: usize, seed: u64) -> Array2<f32> {
    gaussian(p, n, 1.0 / (n as f32).sqrt(), seed)
}

/// Queries near the first `b` patterns (cycling if b > P), with noise of relative size `noise`.
pub fn noisy_queries(patterns: &Array2<f32>, b: usize, noise: f32, seed: u64) -> Array2<f32> {
    let (p, n) = patterns.dim();
    let eps = gaussian(b, n, noise / (n as f32).sqrt(), seed);
    Array2::from_shape_fn((b, n), |(q, i)| patterns[[q % p, i]] + eps[[q, i]])
}

fn max_abs<'a>(values: impl IntoIterator<Item = &'a f64>) -> f64 {
    values.into_iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// Asserts that a GPU result matches the CPU reference: equal steps, convergence and
/// nearest pattern; states and energies within the named tolerances. Returns the largest
/// state and energy differences, each divided by max(1, largest |reference value|).
pub fn assert_matches(label: &str, gpu: &RetrievalResult, cpu: &RetrievalResult) -> (f64, f64) {
    assert_eq!(gpu.states.dim(), cpu.states.dim(), "{label}: state shape");
    assert_eq!(gpu.steps, cpu.steps, "{label}: steps");
    assert_eq!(gpu.converged, cpu.converged, "{label}: converged");
    assert_eq!(gpu.nearest, cpu.nearest, "{label}: nearest");
    let ref_states: Vec<f64> = cpu.states.iter().map(|&v| v as f64).collect();
    let state_scale = max_abs(&ref_states).max(1.0);
    let state_tol = STATE_TOL.scaled(state_scale);
    let ds = state_tol
        .compare(gpu.states.iter().copied(), cpu.states.iter().copied())
        .unwrap_or_else(|m| panic!("{label}: states differ: {m:?} (tolerance {state_tol:?})"));
    let finite: Vec<f64> = cpu
        .energy
        .iter()
        .copied()
        .filter(|e| e.is_finite())
        .collect();
    let energy_scale = max_abs(&finite).max(1.0);
    let energy_tol = ENERGY_TOL.scaled(energy_scale);
    let de = energy_tol
        .compare(gpu.energy.iter().copied(), cpu.energy.iter().copied())
        .unwrap_or_else(|m| panic!("{label}: energies differ: {m:?} (tolerance {energy_tol:?})"));
    assert_eq!(
        gpu.energy_trace.is_some(),
        cpu.energy_trace.is_some(),
        "{label}: trace presence"
    );
    let gt = gpu.energy_trace.clone().unwrap_or_default();
    let ct = cpu.energy_trace.clone().unwrap_or_default();
    assert_eq!(gt.len(), ct.len(), "{label}: trace count");
    for (q, (g, c)) in gt.iter().zip(&ct).enumerate() {
        energy_tol
            .compare(g.iter().copied(), c.iter().copied())
            .unwrap_or_else(|m| panic!("{label}: energy trace of query {q} differs: {m:?}"));
    }
    (ds / state_scale, de / energy_scale)
}
