//! Networks from Lagrangians (Krotov & Hopfield, ICLR 2021): the one definition of the
//! Lagrangians, their activations, the dynamics and the energies, used by every device.
//!
//! A network has N feature (visible) neurons v and K memory (hidden) neurons h, coupled by
//! the memories Ξ (K×N). Each layer has a Lagrangian; its gradient is the layer's
//! activation: g = ∂L_v/∂v, f = ∂L_h/∂h. The dynamics are
//!
//! τ_v dv/dt = Ξᵀ f − v + I,   τ_h dh/dt = Ξ g − h,
//!
//! and the energy
//!
//! E = [Σ_i (v_i − I_i) g_i − L_v] + [Σ_μ h_μ f_μ − L_h] − Σ_{μ,i} f_μ ξ_{μi} g_i
//!
//! never increases when both Lagrangians are convex:
//! dE/dt = −τ_v v̇ᵀ ∇²L_v v̇ − τ_h ḣᵀ ∇²L_h ḣ. With fast memory neurons (τ_h = 0) the
//! memory layer follows h = Ξ g, and the energy is the effective one,
//! [Σ (v − I) g − L_v] − L_h(Ξ g). The full energy equals it whenever h = Ξ g, at every
//! fixed point in particular.

use crate::weights::{log_sum_exp, PolyF};
use crate::{Error, Result};

/// The Lagrangian of the feature (visible) layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisibleLagrangian {
    /// L = ½ Σ v², g = v.
    Quadratic,
    /// L = Σ |v|, g = sign v: the binary limit (Model A). L is convex but not
    /// differentiable at 0; there g is taken as 0 (the middle of the subgradient [−1, 1]),
    /// so a neuron exactly at 0 contributes nothing to the memory layer.
    Abs,
    /// L = √(Σ v²) = ‖v‖, g = v/‖v‖ (Model C); at v = 0, g = 0 (again the middle of the
    /// subgradient, the unit ball).
    Spherical,
}

/// The Lagrangian of the memory (hidden) layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HiddenLagrangian {
    /// L = Σ_μ F(h_μ) with F(x) = xⁿ or max(x, 0)ⁿ ([`PolyF`]), f = F′. Convex for a
    /// rectified F of any degree n ≥ 1 and for F(x) = xⁿ with n = 1 or n even.
    Additive(PolyF),
    /// L = Σ_μ e^{βh_μ}, f = β e^{βh} (summed in the log domain).
    Exponential {
        /// β > 0.
        beta: f64,
    },
    /// L = (1/β) log Σ_μ e^{βh_μ}, f = softmax(βh) (Model B: attention).
    LogSumExp {
        /// β > 0.
        beta: f64,
    },
}

impl VisibleLagrangian {
    /// The name the CLI and the bindings use (`quadratic`, `abs`, `spherical`).
    pub fn name(self) -> &'static str {
        match self {
            VisibleLagrangian::Quadratic => "quadratic",
            VisibleLagrangian::Abs => "abs",
            VisibleLagrangian::Spherical => "spherical",
        }
    }

    /// The Lagrangian of a name (see [`VisibleLagrangian::name`]).
    pub fn parse(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "quadratic" => Ok(VisibleLagrangian::Quadratic),
            "abs" | "sign" | "binary" => Ok(VisibleLagrangian::Abs),
            "spherical" | "sphere" => Ok(VisibleLagrangian::Spherical),
            other => Err(Error::InvalidParameter {
                argument: "visible",
                value: other.into(),
                reason: "use quadratic, abs or spherical".into(),
            }),
        }
    }

    /// Every visible Lagrangian is convex.
    pub fn is_convex(self) -> bool {
        true
    }

    /// L_v(v).
    pub fn value(self, v: &[f64]) -> f64 {
        match self {
            VisibleLagrangian::Quadratic => 0.5 * v.iter().map(|x| x * x).sum::<f64>(),
            VisibleLagrangian::Abs => v.iter().map(|x| x.abs()).sum(),
            VisibleLagrangian::Spherical => v.iter().map(|x| x * x).sum::<f64>().sqrt(),
        }
    }

    /// g = ∂L_v/∂v into `g` (same length as `v`).
    pub fn activation(self, v: &[f64], g: &mut [f64]) {
        debug_assert_eq!(v.len(), g.len());
        match self {
            VisibleLagrangian::Quadratic => g.copy_from_slice(v),
            VisibleLagrangian::Abs => {
                for (o, &x) in g.iter_mut().zip(v) {
                    *o = if x > 0.0 {
                        1.0
                    } else if x < 0.0 {
                        -1.0
                    } else {
                        0.0
                    };
                }
            }
            VisibleLagrangian::Spherical => {
                let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
                let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
                for (o, &x) in g.iter_mut().zip(v) {
                    *o = x * scale;
                }
            }
        }
    }

    /// The visible part of the energy, Σ (v − I) g − L_v, from v, its activation g and the
    /// current I (`None`: zero).
    pub fn energy_term(self, v: &[f64], g: &[f64], current: Option<&[f64]>) -> f64 {
        let vg: f64 = v.iter().zip(g).map(|(a, b)| a * b).sum();
        let ig: f64 = current.map_or(0.0, |i| i.iter().zip(g).map(|(a, b)| a * b).sum());
        vg - ig - self.value(v)
    }
}

impl HiddenLagrangian {
    /// Checks the parameters (β > 0 and finite, degree ≥ 1); convexity is
    /// [`HiddenLagrangian::is_convex`].
    pub fn validate(self) -> Result<()> {
        match self {
            HiddenLagrangian::Additive(f) if f.degree == 0 => Err(Error::InvalidParameter {
                argument: "degree",
                value: "0".into(),
                reason: "the degree of F must be at least 1".into(),
            }),
            HiddenLagrangian::Exponential { beta } | HiddenLagrangian::LogSumExp { beta }
                if !(beta > 0.0 && beta.is_finite()) =>
            {
                Err(Error::InvalidParameter {
                    argument: "beta",
                    value: beta.to_string(),
                    reason: "β must be positive and finite".into(),
                })
            }
            _ => Ok(()),
        }
    }

    /// The name the CLI and the bindings use (`poly`, `rpoly`, `exp`, `lse`).
    pub fn name(self) -> &'static str {
        match self {
            HiddenLagrangian::Additive(f) if f.rectified => "rpoly",
            HiddenLagrangian::Additive(_) => "poly",
            HiddenLagrangian::Exponential { .. } => "exp",
            HiddenLagrangian::LogSumExp { .. } => "lse",
        }
    }

    /// The Lagrangian of a name (see [`HiddenLagrangian::name`]), with β for `exp` and
    /// `lse` and the degree n for `poly` and `rpoly`; the result is validated.
    pub fn parse(name: &str, beta: f64, degree: u32) -> Result<Self> {
        let hidden = match name.trim().to_ascii_lowercase().as_str() {
            "poly" | "polynomial" => HiddenLagrangian::Additive(PolyF {
                degree,
                rectified: false,
            }),
            "rpoly" | "rectified" | "rectified-polynomial" => HiddenLagrangian::Additive(PolyF {
                degree,
                rectified: true,
            }),
            "exp" | "exponential" => HiddenLagrangian::Exponential { beta },
            "lse" | "softmax" | "log-sum-exp" => HiddenLagrangian::LogSumExp { beta },
            other => {
                return Err(Error::InvalidParameter {
                    argument: "hidden",
                    value: other.into(),
                    reason: "use poly, rpoly, exp or lse".into(),
                })
            }
        };
        hidden.validate()?;
        Ok(hidden)
    }

    /// Whether L_h is convex (the energy then never increases).
    pub fn is_convex(self) -> bool {
        match self {
            HiddenLagrangian::Additive(f) => f.rectified || f.degree == 1 || f.degree % 2 == 0,
            HiddenLagrangian::Exponential { .. } | HiddenLagrangian::LogSumExp { .. } => true,
        }
    }

    /// L_h(h).
    pub fn value(self, h: &[f64]) -> f64 {
        match self {
            HiddenLagrangian::Additive(f) => h.iter().map(|&x| f.f(x)).sum(),
            HiddenLagrangian::Exponential { beta } => log_sum_exp(&scaled(beta, h)).exp(),
            HiddenLagrangian::LogSumExp { beta } => log_sum_exp(&scaled(beta, h)) / beta,
        }
    }

    /// f = ∂L_h/∂h into `f` (same length as `h`).
    pub fn activation(self, h: &[f64], f: &mut [f64]) {
        debug_assert_eq!(h.len(), f.len());
        match self {
            HiddenLagrangian::Additive(poly) => {
                for (o, &x) in f.iter_mut().zip(h) {
                    *o = poly.f_prime(x);
                }
            }
            HiddenLagrangian::Exponential { beta } | HiddenLagrangian::LogSumExp { beta } => {
                // e^{βh − m} with m = max βh, then the common factor: β e^{m} for the
                // exponential, 1 / Σ e^{βh − m} for the softmax.
                let m = h.iter().map(|x| beta * x).fold(f64::NEG_INFINITY, f64::max);
                for (o, &x) in f.iter_mut().zip(h) {
                    *o = (beta * x - m).exp();
                }
                let factor = if matches!(self, HiddenLagrangian::LogSumExp { .. }) {
                    1.0 / f.iter().sum::<f64>()
                } else {
                    beta * m.exp()
                };
                for o in f.iter_mut() {
                    *o *= factor;
                }
            }
        }
    }

    /// The hidden part of the energy, Σ h f − L_h, from h and its activation f.
    pub fn energy_term(self, h: &[f64], f: &[f64]) -> f64 {
        h.iter().zip(f).map(|(a, b)| a * b).sum::<f64>() - self.value(h)
    }
}

fn scaled(beta: f64, h: &[f64]) -> Vec<f64> {
    h.iter().map(|x| beta * x).collect()
}

/// The integrator of the dynamics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Integrator {
    /// x ← x + dt ẋ.
    #[default]
    Euler,
    /// The classical fourth-order Runge–Kutta step.
    Rk4,
}

impl Integrator {
    /// The name the CLI uses (`euler`, `rk4`).
    pub fn name(self) -> &'static str {
        match self {
            Integrator::Euler => "euler",
            Integrator::Rk4 => "rk4",
        }
    }
}

/// Everything about a network but its memories: the two Lagrangians, the time constants,
/// the step and the integrator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LagrangianSpec {
    /// The feature layer's Lagrangian.
    pub visible: VisibleLagrangian,
    /// The memory layer's Lagrangian.
    pub hidden: HiddenLagrangian,
    /// τ_v > 0.
    pub tau_visible: f64,
    /// τ_h ≥ 0; 0 means fast memory neurons (h = Ξ g at every instant).
    pub tau_hidden: f64,
    /// The time step dt > 0.
    pub dt: f64,
    /// Euler or RK4.
    pub integrator: Integrator,
}

impl Default for LagrangianSpec {
    /// Model B (the modern Hopfield network) with β = 1, τ_v = 1, fast memory neurons,
    /// dt = 0.1, Euler.
    fn default() -> Self {
        LagrangianSpec {
            visible: VisibleLagrangian::Quadratic,
            hidden: HiddenLagrangian::LogSumExp { beta: 1.0 },
            tau_visible: 1.0,
            tau_hidden: 0.0,
            dt: 0.1,
            integrator: Integrator::Euler,
        }
    }
}

impl LagrangianSpec {
    /// Checks every parameter: τ_v > 0, τ_h ≥ 0, dt > 0 (all finite), the hidden
    /// Lagrangian's parameters, and convexity of both Lagrangians (which the energy's
    /// descent needs).
    pub fn validate(&self) -> Result<()> {
        let positive = |argument: &'static str, value: f64, zero_ok: bool| {
            let ok = value.is_finite() && (value > 0.0 || (zero_ok && value == 0.0));
            if ok {
                Ok(())
            } else {
                Err(Error::InvalidParameter {
                    argument,
                    value: value.to_string(),
                    reason: if zero_ok {
                        "must be finite and ≥ 0".into()
                    } else {
                        "must be finite and > 0".into()
                    },
                })
            }
        };
        positive("tau_visible", self.tau_visible, false)?;
        positive("tau_hidden", self.tau_hidden, true)?;
        positive("dt", self.dt, false)?;
        self.hidden.validate()?;
        if !self.hidden.is_convex() {
            return Err(Error::InvalidParameter {
                argument: "hidden",
                value: format!("{:?}", self.hidden),
                reason: "this Lagrangian is not convex, so the energy could rise; use an even \
                         degree, a rectified polynomial, exp or lse"
                    .into(),
            });
        }
        if !self.visible.is_convex() {
            return Err(Error::InvalidParameter {
                argument: "visible",
                value: self.visible.name().into(),
                reason: "this Lagrangian is not convex".into(),
            });
        }
        Ok(())
    }

    /// Whether the memory neurons are fast (τ_h = 0).
    pub fn fast_memory(&self) -> bool {
        self.tau_hidden == 0.0
    }

    /// Model A (Krotov & Hopfield 2016 dense memory): Σ|v| and Σ max(h, 0)ⁿ.
    pub fn model_a(degree: u32) -> Self {
        LagrangianSpec {
            visible: VisibleLagrangian::Abs,
            hidden: HiddenLagrangian::Additive(PolyF {
                degree,
                rectified: true,
            }),
            ..Self::default()
        }
    }

    /// Model B (modern Hopfield network, attention): ½Σv² and (1/β) log Σ e^{βh}.
    pub fn model_b(beta: f64) -> Self {
        LagrangianSpec {
            visible: VisibleLagrangian::Quadratic,
            hidden: HiddenLagrangian::LogSumExp { beta },
            ..Self::default()
        }
    }

    /// Model C (the spherical model): √Σv² and Σ max(h, 0)ⁿ.
    pub fn model_c(degree: u32) -> Self {
        LagrangianSpec {
            visible: VisibleLagrangian::Spherical,
            hidden: HiddenLagrangian::Additive(PolyF {
                degree,
                rectified: true,
            }),
            ..Self::default()
        }
    }
}

/// The memories Ξ (K×N, row-major) as seen by the maths here.
#[derive(Debug, Clone, Copy)]
pub struct Memories<'a> {
    /// K·N entries, row μ is ξ_μ.
    pub data: &'a [f32],
    /// K.
    pub count: usize,
    /// N.
    pub dim: usize,
}

impl Memories<'_> {
    /// h = Ξ g (K entries) in f64.
    pub fn forward(&self, g: &[f64], h: &mut [f64]) {
        for (o, row) in h.iter_mut().zip(self.data.chunks_exact(self.dim)) {
            *o = row.iter().zip(g).map(|(&x, &y)| x as f64 * y).sum();
        }
    }

    /// u = Ξᵀ f (N entries) in f64.
    pub fn backward(&self, f: &[f64], u: &mut [f64]) {
        u.iter_mut().for_each(|x| *x = 0.0);
        for (&w, row) in f.iter().zip(self.data.chunks_exact(self.dim)) {
            if w != 0.0 {
                for (o, &x) in u.iter_mut().zip(row) {
                    *o += w * x as f64;
                }
            }
        }
    }
}

/// The full energy E(v, h) of one state (f64), `current` I or `None` for zero.
pub fn full_energy(
    spec: &LagrangianSpec,
    memories: Memories<'_>,
    v: &[f64],
    h: &[f64],
    current: Option<&[f64]>,
) -> f64 {
    let mut g = vec![0.0; v.len()];
    let mut f = vec![0.0; h.len()];
    spec.visible.activation(v, &mut g);
    spec.hidden.activation(h, &mut f);
    let mut xg = vec![0.0; h.len()];
    memories.forward(&g, &mut xg);
    let interaction: f64 = f.iter().zip(&xg).map(|(a, b)| a * b).sum();
    spec.visible.energy_term(v, &g, current) + spec.hidden.energy_term(h, &f) - interaction
}

/// The effective energy of one state with fast memory neurons,
/// [Σ (v − I) g − L_v] − L_h(Ξ g) (f64).
pub fn effective_energy(
    spec: &LagrangianSpec,
    memories: Memories<'_>,
    v: &[f64],
    current: Option<&[f64]>,
) -> f64 {
    let mut g = vec![0.0; v.len()];
    spec.visible.activation(v, &mut g);
    let mut h = vec![0.0; memories.count];
    memories.forward(&g, &mut h);
    spec.visible.energy_term(v, &g, current) - spec.hidden.value(&h)
}

/// The time derivatives (v̇, ḣ) at (v, h); with fast memory neurons h is ignored, taken as
/// Ξ g, and ḣ is left zero.
pub fn derivative(
    spec: &LagrangianSpec,
    memories: Memories<'_>,
    v: &[f64],
    h: &[f64],
    current: Option<&[f64]>,
    dv: &mut [f64],
    dh: &mut [f64],
) {
    let mut g = vec![0.0; v.len()];
    spec.visible.activation(v, &mut g);
    let mut xg = vec![0.0; memories.count];
    memories.forward(&g, &mut xg);
    let mut f = vec![0.0; memories.count];
    if spec.fast_memory() {
        spec.hidden.activation(&xg, &mut f);
        dh.iter_mut().for_each(|x| *x = 0.0);
    } else {
        spec.hidden.activation(h, &mut f);
        for ((o, &a), &b) in dh.iter_mut().zip(&xg).zip(h) {
            *o = (a - b) / spec.tau_hidden;
        }
    }
    memories.backward(&f, dv);
    for (i, (o, &x)) in dv.iter_mut().zip(v).enumerate() {
        let input = current.map_or(0.0, |c| c[i]);
        *o = (*o - x + input) / spec.tau_visible;
    }
}

/// The Lagrangian of one layer of a [`HierarchySpec`]: any of the feature or memory
/// layers' Lagrangians.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LayerLagrangian {
    /// A [`VisibleLagrangian`] (quadratic, abs, spherical).
    Visible(VisibleLagrangian),
    /// A [`HiddenLagrangian`] (additive F, exponential, log-sum-exp).
    Hidden(HiddenLagrangian),
}

impl LayerLagrangian {
    /// L(x).
    pub fn value(self, x: &[f64]) -> f64 {
        match self {
            LayerLagrangian::Visible(l) => l.value(x),
            LayerLagrangian::Hidden(l) => l.value(x),
        }
    }

    /// The activation ∂L/∂x into `a`.
    pub fn activation(self, x: &[f64], a: &mut [f64]) {
        match self {
            LayerLagrangian::Visible(l) => l.activation(x, a),
            LayerLagrangian::Hidden(l) => l.activation(x, a),
        }
    }

    /// Whether L is convex.
    pub fn is_convex(self) -> bool {
        match self {
            LayerLagrangian::Visible(l) => l.is_convex(),
            LayerLagrangian::Hidden(l) => l.is_convex(),
        }
    }
}

/// One layer of a hierarchical network: its Lagrangian, its number of neurons and its time
/// constant τ > 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layer {
    /// The layer's Lagrangian.
    pub lagrangian: LayerLagrangian,
    /// Neurons in the layer.
    pub size: usize,
    /// Time constant τ > 0.
    pub tau: f64,
}

/// A hierarchical associative memory (Krotov 2021): layers x₀ (the features, with the
/// input current I), x₁, …, x_L in a chain, layer l coupled to layer l + 1 by W_l
/// (size_{l+1} × size_l), each with a Lagrangian and activation a_l = ∂L_l/∂x_l:
///
/// τ_l ẋ_l = W_{l−1} a_{l−1} + W_lᵀ a_{l+1} − x_l (+ I on layer 0),
///
/// E = Σ_l [x_l·a_l − L_l(x_l)] − I·a₀ − Σ_l a_{l+1}ᵀ W_l a_l,
///
/// which never increases when every Lagrangian is convex:
/// dE/dt = −Σ_l τ_l ẋ_lᵀ ∇²L_l ẋ_l. Two layers are the network of [`LagrangianSpec`] with
/// slow memory neurons.
#[derive(Debug, Clone, PartialEq)]
pub struct HierarchySpec {
    /// The layers, features first (at least two).
    pub layers: Vec<Layer>,
    /// The time step dt > 0.
    pub dt: f64,
    /// Euler or RK4.
    pub integrator: Integrator,
}

impl HierarchySpec {
    /// Checks: at least two layers, each non-empty with a finite τ > 0 and a convex,
    /// valid Lagrangian; dt finite and > 0.
    pub fn validate(&self) -> Result<()> {
        if self.layers.len() < 2 {
            return Err(Error::InvalidParameter {
                argument: "layers",
                value: self.layers.len().to_string(),
                reason: "a hierarchy needs at least two layers".into(),
            });
        }
        if !(self.dt.is_finite() && self.dt > 0.0) {
            return Err(Error::InvalidParameter {
                argument: "dt",
                value: self.dt.to_string(),
                reason: "must be finite and > 0".into(),
            });
        }
        for (l, layer) in self.layers.iter().enumerate() {
            if layer.size == 0 {
                return Err(Error::InvalidParameter {
                    argument: "layers",
                    value: format!("layer {l}: size 0"),
                    reason: "every layer needs at least one neuron".into(),
                });
            }
            if !(layer.tau.is_finite() && layer.tau > 0.0) {
                return Err(Error::InvalidParameter {
                    argument: "tau",
                    value: format!("layer {l}: {}", layer.tau),
                    reason: "every layer's τ must be finite and > 0".into(),
                });
            }
            if let LayerLagrangian::Hidden(h) = layer.lagrangian {
                h.validate()?;
            }
            if !layer.lagrangian.is_convex() {
                return Err(Error::InvalidParameter {
                    argument: "layers",
                    value: format!("layer {l}: {:?}", layer.lagrangian),
                    reason: "this Lagrangian is not convex, so the energy could rise".into(),
                });
            }
        }
        Ok(())
    }

    /// The activations of every layer at the states `x`.
    fn activations(&self, x: &[Vec<f64>]) -> Vec<Vec<f64>> {
        self.layers
            .iter()
            .zip(x)
            .map(|(layer, xl)| {
                let mut a = vec![0.0; xl.len()];
                layer.lagrangian.activation(xl, &mut a);
                a
            })
            .collect()
    }

    /// The energy of the states `x` (one vector per layer) with couplings W_l (`couplings[l]`
    /// is size_{l+1} × size_l) and the current on layer 0.
    pub fn energy(
        &self,
        couplings: &[Memories<'_>],
        x: &[Vec<f64>],
        current: Option<&[f64]>,
    ) -> f64 {
        let a = self.activations(x);
        let mut e = 0.0;
        for ((layer, xl), al) in self.layers.iter().zip(x).zip(&a) {
            e += xl.iter().zip(al).map(|(p, q)| p * q).sum::<f64>() - layer.lagrangian.value(xl);
        }
        if let Some(i) = current {
            e -= i.iter().zip(&a[0]).map(|(p, q)| p * q).sum::<f64>();
        }
        for (l, w) in couplings.iter().enumerate() {
            let mut up = vec![0.0; w.count];
            w.forward(&a[l], &mut up);
            e -= up.iter().zip(&a[l + 1]).map(|(p, q)| p * q).sum::<f64>();
        }
        e
    }

    /// The time derivatives of every layer at `x` into `dx`.
    pub fn derivative(
        &self,
        couplings: &[Memories<'_>],
        x: &[Vec<f64>],
        current: Option<&[f64]>,
        dx: &mut [Vec<f64>],
    ) {
        let a = self.activations(x);
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let d = &mut dx[l];
            d.iter_mut().for_each(|v| *v = 0.0);
            if l > 0 {
                couplings[l - 1].forward(&a[l - 1], d);
            }
            if l < last {
                let mut down = vec![0.0; d.len()];
                couplings[l].backward(&a[l + 1], &mut down);
                for (v, w) in d.iter_mut().zip(&down) {
                    *v += w;
                }
            }
            for (i, (v, &xi)) in d.iter_mut().zip(&x[l]).enumerate() {
                let input = if l == 0 {
                    current.map_or(0.0, |c| c[i])
                } else {
                    0.0
                };
                *v = (*v - xi + input) / layer.tau;
            }
        }
    }

    /// The upper layers' starting states from the features: bottom-up, x_{l+1} = W_l a_l.
    pub fn initial_states(&self, couplings: &[Memories<'_>], v: &[f64]) -> Vec<Vec<f64>> {
        let mut x = vec![v.to_vec()];
        for (l, w) in couplings.iter().enumerate() {
            let mut a = vec![0.0; x[l].len()];
            self.layers[l].lagrangian.activation(&x[l], &mut a);
            let mut up = vec![0.0; w.count];
            w.forward(&a, &mut up);
            x.push(up);
        }
        x
    }

    /// One step of the integrator from `x`, in place.
    pub fn step(&self, couplings: &[Memories<'_>], x: &mut [Vec<f64>], current: Option<&[f64]>) {
        let dt = self.dt;
        let zeros =
            |x: &[Vec<f64>]| -> Vec<Vec<f64>> { x.iter().map(|v| vec![0.0; v.len()]).collect() };
        let eval = |x: &[Vec<f64>]| {
            let mut d = zeros(x);
            self.derivative(couplings, x, current, &mut d);
            d
        };
        let offset = |x: &[Vec<f64>], d: &[Vec<f64>], s: f64| -> Vec<Vec<f64>> {
            x.iter()
                .zip(d)
                .map(|(a, b)| a.iter().zip(b).map(|(p, q)| p + s * q).collect())
                .collect()
        };
        match self.integrator {
            Integrator::Euler => {
                let d = eval(x);
                for (xl, dl) in x.iter_mut().zip(&d) {
                    for (p, q) in xl.iter_mut().zip(dl) {
                        *p += dt * q;
                    }
                }
            }
            Integrator::Rk4 => {
                let k1 = eval(x);
                let k2 = eval(&offset(x, &k1, dt / 2.0));
                let k3 = eval(&offset(x, &k2, dt / 2.0));
                let k4 = eval(&offset(x, &k3, dt));
                for (l, xl) in x.iter_mut().enumerate() {
                    for (i, p) in xl.iter_mut().enumerate() {
                        *p += dt / 6.0 * (k1[l][i] + 2.0 * k2[l][i] + 2.0 * k3[l][i] + k4[l][i]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_gradient(l: impl Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
        (0..x.len())
            .map(|i| {
                let (mut a, mut b) = (x.to_vec(), x.to_vec());
                a[i] += 1e-6;
                b[i] -= 1e-6;
                (l(&a) - l(&b)) / 2e-6
            })
            .collect()
    }

    #[test]
    fn activations_are_the_gradients_of_the_lagrangians() {
        let x = [0.3, -0.7, 1.1, 0.2];
        for visible in [
            VisibleLagrangian::Quadratic,
            VisibleLagrangian::Abs,
            VisibleLagrangian::Spherical,
        ] {
            let mut g = [0.0; 4];
            visible.activation(&x, &mut g);
            let want = numeric_gradient(|v| visible.value(v), &x);
            assert_eq!(want.len(), g.len());
            for (a, b) in g.iter().zip(&want) {
                assert!((a - b).abs() < 1e-6, "{visible:?}: {g:?} vs {want:?}");
            }
        }
        let hiddens = [
            HiddenLagrangian::Additive(PolyF {
                degree: 4,
                rectified: false,
            }),
            HiddenLagrangian::Additive(PolyF {
                degree: 3,
                rectified: true,
            }),
            HiddenLagrangian::Exponential { beta: 2.0 },
            HiddenLagrangian::LogSumExp { beta: 3.0 },
        ];
        for hidden in hiddens {
            let mut f = [0.0; 4];
            hidden.activation(&x, &mut f);
            let want = numeric_gradient(|h| hidden.value(h), &x);
            assert_eq!(want.len(), f.len());
            for (a, b) in f.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "{hidden:?}: {f:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn subgradients_at_zero_are_zero() {
        let mut g = [1.0; 2];
        VisibleLagrangian::Abs.activation(&[0.0, -2.0], &mut g);
        assert_eq!(g, [0.0, -1.0]);
        VisibleLagrangian::Spherical.activation(&[0.0, 0.0], &mut g);
        assert_eq!(g, [0.0, 0.0]);
    }

    #[test]
    fn abs_energy_term_is_minus_current_times_sign() {
        let v = [0.5, -2.0, 3.0];
        let mut g = [0.0; 3];
        VisibleLagrangian::Abs.activation(&v, &mut g);
        let i = [1.0, 2.0, -0.5];
        let e = VisibleLagrangian::Abs.energy_term(&v, &g, Some(&i));
        assert!((e - (-(1.0 - 2.0 - 0.5))).abs() < 1e-12, "{e}");
    }

    #[test]
    fn full_equals_effective_when_memory_neurons_follow() {
        let data = [1.0f32, -1.0, 0.5, 0.25, 2.0, -0.5];
        let memories = Memories {
            data: &data,
            count: 2,
            dim: 3,
        };
        let spec = LagrangianSpec::model_b(2.0);
        let v = [0.2, -0.4, 0.9];
        let mut g = [0.0; 3];
        spec.visible.activation(&v, &mut g);
        let mut h = [0.0; 2];
        memories.forward(&g, &mut h);
        let current = [0.1, 0.0, -0.3];
        let full = full_energy(&spec, memories, &v, &h, Some(&current));
        let effective = effective_energy(&spec, memories, &v, Some(&current));
        assert!((full - effective).abs() < 1e-12, "{full} vs {effective}");
    }

    #[test]
    fn bad_parameters_are_named() {
        let mut spec = LagrangianSpec {
            dt: 0.0,
            ..LagrangianSpec::default()
        };
        assert!(matches!(
            spec.validate(),
            Err(Error::InvalidParameter { argument: "dt", .. })
        ));
        spec.dt = 0.1;
        spec.tau_hidden = -1.0;
        assert!(matches!(
            spec.validate(),
            Err(Error::InvalidParameter {
                argument: "tau_hidden",
                ..
            })
        ));
        spec.tau_hidden = 0.0;
        spec.hidden = HiddenLagrangian::Additive(PolyF {
            degree: 3,
            rectified: false,
        });
        assert!(matches!(
            spec.validate(),
            Err(Error::InvalidParameter {
                argument: "hidden",
                ..
            })
        ));
        assert!(HiddenLagrangian::parse("lse", -1.0, 2).is_err());
        assert!(HiddenLagrangian::parse("cubic", 1.0, 2).is_err());
        assert!(VisibleLagrangian::parse("tanh").is_err());
        assert!(LagrangianSpec::model_a(3).validate().is_ok());
        assert!(LagrangianSpec::model_c(2).validate().is_ok());
    }
}
