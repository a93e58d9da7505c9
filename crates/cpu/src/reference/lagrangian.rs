//! The reference integrator of a network from Lagrangians ([`dam_core::lagrangian`]): one
//! state at a time, everything in f64 (the states are rounded to f32 only when returned),
//! so that the energy's descent can be checked to near f64 precision.

use dam_core::lagrangian::{
    derivative, effective_energy, full_energy, HierarchySpec, Integrator, LagrangianSpec, Memories,
};
use ndarray::{Array2, ArrayView2};

/// What a run returns: the final feature states (B×N), the energy at every step
/// (B×(steps + 1)), and the final memory states (B×K) when asked for.
#[derive(Debug, Clone)]
pub struct LagrangianRun {
    /// Final feature neurons v, B×N.
    pub states: Array2<f32>,
    /// E at t = 0, dt, …, steps·dt for each state, B×(steps + 1).
    pub energies: Array2<f64>,
    /// Final memory neurons h, B×K (with fast memory neurons, Ξ g of the final state).
    pub hidden: Option<Array2<f32>>,
}

/// The energy of (v, h): the full one, or the effective one with fast memory neurons.
pub fn energy_of(
    spec: &LagrangianSpec,
    memories: Memories<'_>,
    v: &[f64],
    h: &[f64],
    current: Option<&[f64]>,
) -> f64 {
    if spec.fast_memory() {
        effective_energy(spec, memories, v, current)
    } else {
        full_energy(spec, memories, v, h, current)
    }
}

/// The initial memory state of a feature state: h = Ξ g(v).
pub fn initial_hidden(spec: &LagrangianSpec, memories: Memories<'_>, v: &[f64]) -> Vec<f64> {
    let mut g = vec![0.0; v.len()];
    spec.visible.activation(v, &mut g);
    let mut h = vec![0.0; memories.count];
    memories.forward(&g, &mut h);
    h
}

/// One step of the integrator from (v, h), in place.
pub fn step(
    spec: &LagrangianSpec,
    memories: Memories<'_>,
    v: &mut [f64],
    h: &mut [f64],
    current: Option<&[f64]>,
) {
    let (n, k) = (v.len(), h.len());
    let dt = spec.dt;
    let eval = |v: &[f64], h: &[f64]| {
        let (mut dv, mut dh) = (vec![0.0; n], vec![0.0; k]);
        derivative(spec, memories, v, h, current, &mut dv, &mut dh);
        (dv, dh)
    };
    let offset = |x: &[f64], d: &[f64], s: f64| -> Vec<f64> {
        x.iter().zip(d).map(|(a, b)| a + s * b).collect()
    };
    match spec.integrator {
        Integrator::Euler => {
            let (dv, dh) = eval(v, h);
            axpy(v, &dv, dt);
            axpy(h, &dh, dt);
        }
        Integrator::Rk4 => {
            let (v1, h1) = eval(v, h);
            let (v2, h2) = eval(&offset(v, &v1, dt / 2.0), &offset(h, &h1, dt / 2.0));
            let (v3, h3) = eval(&offset(v, &v2, dt / 2.0), &offset(h, &h2, dt / 2.0));
            let (v4, h4) = eval(&offset(v, &v3, dt), &offset(h, &h3, dt));
            for (x, (((a, b), c), d)) in v.iter_mut().zip(v1.iter().zip(&v2).zip(&v3).zip(&v4)) {
                *x += dt / 6.0 * (a + 2.0 * b + 2.0 * c + d);
            }
            for (x, (((a, b), c), d)) in h.iter_mut().zip(h1.iter().zip(&h2).zip(&h3).zip(&h4)) {
                *x += dt / 6.0 * (a + 2.0 * b + 2.0 * c + d);
            }
        }
    }
    if spec.fast_memory() {
        h.copy_from_slice(&initial_hidden(spec, memories, v));
    }
}

fn axpy(x: &mut [f64], d: &[f64], s: f64) {
    for (a, b) in x.iter_mut().zip(d) {
        *a += s * b;
    }
}

/// Runs `steps` steps from every row of `states` (B×N, already validated against the
/// memories and the spec). Memory neurons start at `hidden` (B×K, validated) or, without
/// it, at h = Ξ g(v); with fast memory neurons `hidden` is ignored.
pub fn run(
    spec: &LagrangianSpec,
    memories: Memories<'_>,
    current: Option<&[f64]>,
    states: ArrayView2<'_, f32>,
    hidden0: Option<ArrayView2<'_, f32>>,
    steps: usize,
    keep_hidden: bool,
) -> LagrangianRun {
    let (b, n) = states.dim();
    let k = memories.count;
    let mut out = Array2::<f32>::zeros((b, n));
    let mut energies = Array2::<f64>::zeros((b, steps + 1));
    let mut hidden = keep_hidden.then(|| Array2::<f32>::zeros((b, k)));
    for (q, row) in states.rows().into_iter().enumerate() {
        let mut v: Vec<f64> = row.iter().map(|&x| x as f64).collect();
        let mut h = match hidden0 {
            Some(h0) if !spec.fast_memory() => h0.row(q).iter().map(|&x| x as f64).collect(),
            _ => initial_hidden(spec, memories, &v),
        };
        energies[[q, 0]] = energy_of(spec, memories, &v, &h, current);
        for t in 1..=steps {
            step(spec, memories, &mut v, &mut h, current);
            energies[[q, t]] = energy_of(spec, memories, &v, &h, current);
        }
        for (o, x) in out.row_mut(q).iter_mut().zip(&v) {
            *o = *x as f32;
        }
        if let Some(hidden) = hidden.as_mut() {
            for (o, x) in hidden.row_mut(q).iter_mut().zip(&h) {
                *o = *x as f32;
            }
        }
    }
    LagrangianRun {
        states: out,
        energies,
        hidden,
    }
}

/// What a hierarchical run returns: every layer's final states (B × size_l, features
/// first) and the energy at every step (B×(steps + 1)).
#[derive(Debug, Clone)]
pub struct HierarchyRun {
    /// Final states of each layer, B × size_l.
    pub layers: Vec<Array2<f32>>,
    /// E at t = 0, dt, …, steps·dt for each state, B×(steps + 1).
    pub energies: Array2<f64>,
}

/// Runs a hierarchical network ([`HierarchySpec`]) for `steps` steps from every row of
/// `states` (B × size₀, validated with the couplings), one state at a time in f64; the
/// upper layers start bottom-up at x_{l+1} = W_l a_l.
pub fn run_hierarchy(
    spec: &HierarchySpec,
    couplings: &[Memories<'_>],
    current: Option<&[f64]>,
    states: ArrayView2<'_, f32>,
    steps: usize,
) -> HierarchyRun {
    let b = states.nrows();
    let mut layers: Vec<Array2<f32>> = spec
        .layers
        .iter()
        .map(|l| Array2::zeros((b, l.size)))
        .collect();
    let mut energies = Array2::<f64>::zeros((b, steps + 1));
    for (q, row) in states.rows().into_iter().enumerate() {
        let v: Vec<f64> = row.iter().map(|&x| x as f64).collect();
        let mut x = spec.initial_states(couplings, &v);
        energies[[q, 0]] = spec.energy(couplings, &x, current);
        for t in 1..=steps {
            spec.step(couplings, &mut x, current);
            energies[[q, t]] = spec.energy(couplings, &x, current);
        }
        for (out, xl) in layers.iter_mut().zip(&x) {
            for (o, v) in out.row_mut(q).iter_mut().zip(xl) {
                *o = *v as f32;
            }
        }
    }
    HierarchyRun { layers, energies }
}
