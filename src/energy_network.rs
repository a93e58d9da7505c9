//! [`EnergyNetwork`]: a network from Lagrangians (Krotov & Hopfield, ICLR 2021) on any
//! [`Device`]; the maths is [`crate::lagrangian`].

use crate::lagrangian::{LagrangianSpec, Memories};
use crate::{validate_rows, Device, Error, Placement, Result};
use dam_cpu::reference::lagrangian::LagrangianRun;
use ndarray::{Array2, ArrayView2};

/// A network of N feature neurons and K memory neurons coupled by the memories Ξ (K×N),
/// with the two Lagrangians, time constants, step and integrator of a [`LagrangianSpec`]
/// and an optional constant input current I (zero by default).
///
/// ```
/// use dam::lagrangian::LagrangianSpec;
/// use dam::{Device, EnergyNetwork};
/// use ndarray::array;
///
/// let memories = array![[1.0, -1.0, 1.0], [-1.0, 1.0, 1.0]];
/// let net = EnergyNetwork::new(memories, LagrangianSpec::model_b(4.0))?
///     .with_device(Device::Reference);
/// let (states, energies) = net.run(array![[0.9, -0.7, 0.2]].view(), 50)?;
/// assert!(states[[0, 0]] > 0.9 && energies[[0, 50]] <= energies[[0, 0]]);
/// # Ok::<(), dam::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct EnergyNetwork {
    memories: Array2<f32>,
    spec: LagrangianSpec,
    current: Option<Vec<f32>>,
    device: Device,
}

impl EnergyNetwork {
    /// A network on the memories (K×N, non-empty, finite) with `spec` (validated: τ_v > 0,
    /// τ_h ≥ 0, dt > 0, both Lagrangians convex), no input current, on [`Device::Cpu`].
    pub fn new(memories: Array2<f32>, spec: LagrangianSpec) -> Result<Self> {
        spec.validate()?;
        validate_rows(memories.view(), memories.ncols(), "memories")?;
        Ok(EnergyNetwork {
            memories: memories.as_standard_layout().into_owned(),
            spec,
            current: None,
            device: Device::Cpu,
        })
    }

    /// The same network with the constant input current I (length N, finite).
    pub fn with_current(mut self, current: Vec<f32>) -> Result<Self> {
        self.current = Some(checked_current(current, self.dim())?);
        Ok(self)
    }

    /// The same network on `device`.
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// The spec (Lagrangians, time constants, step, integrator).
    pub fn spec(&self) -> &LagrangianSpec {
        &self.spec
    }

    /// The memories Ξ, K×N.
    pub fn memories(&self) -> ArrayView2<'_, f32> {
        self.memories.view()
    }

    /// N, the number of feature neurons.
    pub fn dim(&self) -> usize {
        self.memories.ncols()
    }

    /// K, the number of memory neurons.
    pub fn count(&self) -> usize {
        self.memories.nrows()
    }

    /// Runs `steps` steps from each row of `states` (B×N); returns the final feature states
    /// (B×N) and the energy at every step, t = 0 included (B×(steps + 1)).
    pub fn run(
        &self,
        states: ArrayView2<'_, f32>,
        steps: usize,
    ) -> Result<(Array2<f32>, Array2<f64>)> {
        let run = self.run_full(states, steps, false)?;
        Ok((run.states, run.energies))
    }

    /// [`EnergyNetwork::run`], with the final memory neurons' states (B×K) when
    /// `keep_hidden`. Memory neurons start at h = Ξ g(v); with fast memory neurons
    /// (τ_h = 0) they are Ξ g(v) throughout, and the energy is the effective one.
    pub fn run_full(
        &self,
        states: ArrayView2<'_, f32>,
        steps: usize,
        keep_hidden: bool,
    ) -> Result<LagrangianRun> {
        self.run_from(states, None, steps, keep_hidden)
    }

    /// [`EnergyNetwork::run_full`] with the memory neurons starting at `hidden` (B×K, e.g.
    /// the `hidden` of an earlier run, to continue it) instead of Ξ g(v); ignored with fast
    /// memory neurons.
    pub fn run_from(
        &self,
        states: ArrayView2<'_, f32>,
        hidden: Option<ArrayView2<'_, f32>>,
        steps: usize,
        keep_hidden: bool,
    ) -> Result<LagrangianRun> {
        validate_rows(states, self.dim(), "states")?;
        if let Some(h) = hidden {
            validate_rows(h, self.count(), "hidden")?;
            if h.nrows() != states.nrows() {
                return Err(Error::DimensionMismatch {
                    argument: "hidden",
                    expected: states.nrows(),
                    actual: h.nrows(),
                });
            }
        }
        let current64: Option<Vec<f64>> = self
            .current
            .as_ref()
            .map(|c| c.iter().map(|&x| x as f64).collect());
        let run = match self.device.placement()? {
            Placement::Reference => dam_cpu::reference::lagrangian::run(
                &self.spec,
                Memories {
                    data: self.memories.as_slice().expect("standard layout"),
                    count: self.count(),
                    dim: self.dim(),
                },
                current64.as_deref(),
                states,
                hidden,
                steps,
                keep_hidden,
            ),
            Placement::Cpu => dam_cpu::lagrangian::run(
                &self.spec,
                self.memories.view(),
                self.current.as_deref(),
                states,
                hidden,
                steps,
                keep_hidden,
            ),
            #[cfg(not(feature = "wgpu"))]
            Placement::Wgpu(ctx) => match ctx {},
            #[cfg(feature = "wgpu")]
            Placement::Wgpu(ctx) => {
                let (states, energies, hidden) = dam_wgpu::lagrangian::run(
                    &ctx,
                    &self.spec,
                    self.memories.view(),
                    self.current.as_deref(),
                    states,
                    hidden,
                    steps,
                    keep_hidden,
                )?;
                LagrangianRun {
                    states,
                    energies,
                    hidden,
                }
            }
        };
        check_finite(&run, steps)?;
        Ok(run)
    }

    /// The energy of each state (B×N): the effective energy
    /// [Σ (v − I) g − L_v] − L_h(Ξ g), which is the full energy with the memory neurons at
    /// h = Ξ g.
    pub fn energy(&self, states: ArrayView2<'_, f32>) -> Result<Vec<f64>> {
        let run = self.run_full(states, 0, false)?;
        Ok(run.energies.column(0).to_vec())
    }
}

/// An input current of length `n` with finite entries, or the error naming it.
fn checked_current(current: Vec<f32>, n: usize) -> Result<Vec<f32>> {
    if current.len() != n {
        return Err(Error::DimensionMismatch {
            argument: "current",
            expected: n,
            actual: current.len(),
        });
    }
    if let Some((col, &value)) = current.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::NonFinite {
            argument: "current",
            row: 0,
            col,
            value,
        });
    }
    Ok(current)
}

/// A state or an energy that left the floating-point range is an error, not a number.
fn check_finite(run: &LagrangianRun, steps: usize) -> Result<()> {
    for (query, row) in run.states.rows().into_iter().enumerate() {
        if row.iter().any(|v| !v.is_finite()) {
            return Err(Error::Overflow {
                what: "state",
                query,
                steps,
                hint: "the dynamics ran away (a Lagrangian unbounded below); lower β, the \
                       degree or the memories' scale, or run fewer steps",
            });
        }
    }
    for (query, row) in run.energies.rows().into_iter().enumerate() {
        if let Some(step) = row.iter().position(|e| !e.is_finite()) {
            return Err(Error::Overflow {
                what: "energy",
                query,
                steps: step,
                hint: "lower β, the degree or dt, or scale the memories down",
            });
        }
    }
    Ok(())
}

/// A hierarchical associative memory (the chain x₀ ↔ x₁ ↔ … ↔ x_L of
/// [`crate::lagrangian::HierarchySpec`]): the couplings W_l (size_{l+1} × size_l), one
/// Lagrangian and time constant per layer, the same energy rule, integrated in f64 on
/// [`Device::Reference`] (the only device it runs on).
///
/// ```
/// use dam::lagrangian::{HierarchySpec, Integrator, Layer, LayerLagrangian, VisibleLagrangian, HiddenLagrangian};
/// use dam::HierarchicalNetwork;
/// use ndarray::array;
///
/// let layer = |lagrangian, size| Layer { lagrangian, size, tau: 1.0 };
/// let spec = HierarchySpec {
///     layers: vec![
///         layer(LayerLagrangian::Visible(VisibleLagrangian::Quadratic), 3),
///         layer(LayerLagrangian::Visible(VisibleLagrangian::Quadratic), 2),
///         layer(LayerLagrangian::Hidden(HiddenLagrangian::LogSumExp { beta: 2.0 }), 2),
///     ],
///     dt: 0.05,
///     integrator: Integrator::Euler,
/// };
/// let w0 = array![[0.5, -0.5, 0.5], [-0.5, 0.5, 0.5]];
/// let w1 = array![[0.6, 0.0], [0.0, 0.6]];
/// let net = HierarchicalNetwork::new(vec![w0, w1], spec)?;
/// let run = net.run(array![[0.9, -0.7, 0.2]].view(), 40)?;
/// assert!(run.energies[[0, 40]] <= run.energies[[0, 0]]);
/// # Ok::<(), dam::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct HierarchicalNetwork {
    couplings: Vec<Array2<f32>>,
    spec: crate::lagrangian::HierarchySpec,
    current: Option<Vec<f32>>,
    device: Device,
}

impl HierarchicalNetwork {
    /// A network with couplings W_l (one per pair of adjacent layers, size_{l+1} ×
    /// size_l, finite) and `spec` (validated), no input current, on [`Device::Reference`].
    pub fn new(
        couplings: Vec<Array2<f32>>,
        spec: crate::lagrangian::HierarchySpec,
    ) -> Result<Self> {
        spec.validate()?;
        if couplings.len() + 1 != spec.layers.len() {
            return Err(Error::DimensionMismatch {
                argument: "couplings (one per pair of adjacent layers)",
                expected: spec.layers.len() - 1,
                actual: couplings.len(),
            });
        }
        for (l, w) in couplings.iter().enumerate() {
            let (rows, cols) = (spec.layers[l + 1].size, spec.layers[l].size);
            if w.nrows() != rows {
                return Err(Error::DimensionMismatch {
                    argument: "coupling rows (the size of the layer above)",
                    expected: rows,
                    actual: w.nrows(),
                });
            }
            validate_rows(w.view(), cols, "couplings")?;
        }
        Ok(HierarchicalNetwork {
            couplings: couplings
                .into_iter()
                .map(|w| w.as_standard_layout().into_owned())
                .collect(),
            spec,
            current: None,
            device: Device::Reference,
        })
    }

    /// The same network with the constant input current I on the first layer (finite).
    pub fn with_current(mut self, current: Vec<f32>) -> Result<Self> {
        self.current = Some(checked_current(current, self.spec.layers[0].size)?);
        Ok(self)
    }

    /// The same network on `device` (runs answer [`Error::Unsupported`] on any device but
    /// [`Device::Reference`]).
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// The spec (layers, step, integrator).
    pub fn spec(&self) -> &crate::lagrangian::HierarchySpec {
        &self.spec
    }

    /// Runs `steps` steps from each row of `states` (B × size₀); the upper layers start
    /// bottom-up at x_{l+1} = W_l a_l. Returns every layer's final states and the energy
    /// at every step, t = 0 included.
    pub fn run(
        &self,
        states: ArrayView2<'_, f32>,
        steps: usize,
    ) -> Result<dam_cpu::reference::lagrangian::HierarchyRun> {
        validate_rows(states, self.spec.layers[0].size, "states")?;
        if !matches!(self.device, Device::Reference) {
            return Err(Error::Unsupported {
                what: "HierarchicalNetwork on this device",
                detail: "it runs on Device::Reference (f64)".into(),
            });
        }
        let couplings: Vec<Memories<'_>> = self
            .couplings
            .iter()
            .map(|w| Memories {
                data: w.as_slice().expect("standard layout"),
                count: w.nrows(),
                dim: w.ncols(),
            })
            .collect();
        let current64: Option<Vec<f64>> = self
            .current
            .as_ref()
            .map(|c| c.iter().map(|&x| x as f64).collect());
        let run = dam_cpu::reference::lagrangian::run_hierarchy(
            &self.spec,
            &couplings,
            current64.as_deref(),
            states,
            steps,
        );
        for (query, row) in run.energies.rows().into_iter().enumerate() {
            if let Some(step) = row.iter().position(|e| !e.is_finite()) {
                return Err(Error::Overflow {
                    what: "energy",
                    query,
                    steps: step,
                    hint: "lower β, the degree or dt, or scale the couplings down",
                });
            }
        }
        Ok(run)
    }
}
