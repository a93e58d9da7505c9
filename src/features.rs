//! Random-feature dense associative memory (DrDAM) on either device: memories live in a
//! fixed-size weight vector T = Σ_μ φ(ξ^μ); see `dam_core::features` for the maths.

use ndarray::{Array2, ArrayView2};

pub use dam_core::features::{FeatureKind, FeatureSpec};

use crate::{Device, Error, Placement, Result};

/// A random-feature memory: its feature map, the frequencies Ω and the weights T (f64).
/// Same method names as [`crate::Retriever`] (`energy`, `retrieve`) and the same
/// [`Device`] choice.
#[derive(Debug, Clone)]
pub struct RandomFeatures {
    spec: FeatureSpec,
    omega: Vec<f32>,
    weights: Vec<f64>,
    stored: i64,
    ctx: Placement,
}

impl RandomFeatures {
    /// An empty memory (T = 0) on `device`.
    pub fn new(spec: FeatureSpec, device: &Device) -> Result<Self> {
        spec.validate()?;
        let ctx = device.placement()?;
        Ok(Self {
            omega: spec.omega(),
            weights: vec![0.0; spec.features],
            stored: 0,
            spec,
            ctx,
        })
    }

    /// The feature map.
    pub fn spec(&self) -> &FeatureSpec {
        &self.spec
    }

    /// The weight vector T (Y values).
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// Memories inserted minus memories removed.
    pub fn stored(&self) -> i64 {
        self.stored
    }

    fn check(&self, rows: ArrayView2<'_, f32>, argument: &'static str) -> Result<Vec<f32>> {
        crate::validate_rows(rows, self.spec.dim, argument)?;
        Ok(rows.iter().copied().collect())
    }

    fn feature_sum(&self, rows: &[f32]) -> Result<Vec<f64>> {
        match &self.ctx {
            Placement::Cpu => Ok(dam_cpu::features::feature_sum(
                &self.spec,
                &self.omega,
                rows,
            )),
            Placement::Reference => Ok(dam_cpu::reference::features::feature_sum(
                &self.spec,
                &self.omega,
                rows,
            )),
            #[cfg(not(feature = "wgpu"))]
            Placement::Wgpu(never) => match *never {},
            #[cfg(feature = "wgpu")]
            Placement::Wgpu(ctx) => {
                dam_wgpu::features::feature_sum(ctx, &self.spec, &self.omega, rows)
            }
        }
    }

    /// Adds memories: T += Σ φ(ξ) over the rows (P×N).
    pub fn insert(&mut self, patterns: ArrayView2<'_, f32>) -> Result<()> {
        let rows = self.check(patterns, "patterns")?;
        let sum = self.feature_sum(&rows)?;
        self.weights.iter_mut().zip(&sum).for_each(|(t, s)| *t += s);
        self.stored += patterns.nrows() as i64;
        Ok(())
    }

    /// Removes memories: T −= Σ φ(ξ) over the rows (P×N).
    pub fn remove(&mut self, patterns: ArrayView2<'_, f32>) -> Result<()> {
        let rows = self.check(patterns, "patterns")?;
        let sum = self.feature_sum(&rows)?;
        self.weights.iter_mut().zip(&sum).for_each(|(t, s)| *t -= s);
        self.stored -= patterns.nrows() as i64;
        Ok(())
    }

    /// s(x) = φ(x)·T and ∇s for each state (B×N).
    fn value_and_grad(&self, states: &[f32]) -> Result<(Vec<f64>, Vec<f64>)> {
        match &self.ctx {
            Placement::Cpu => Ok(dam_cpu::features::values_and_grads(
                &self.spec,
                &self.omega,
                &self.weights,
                states,
            )),
            Placement::Reference => {
                let (mut v, mut g) = (Vec::new(), Vec::new());
                for x in states.chunks(self.spec.dim) {
                    let (s, grad) = dam_cpu::reference::features::value_and_grad(
                        &self.spec,
                        &self.omega,
                        &self.weights,
                        x,
                    );
                    v.push(s);
                    g.extend(grad);
                }
                Ok((v, g))
            }
            #[cfg(not(feature = "wgpu"))]
            Placement::Wgpu(never) => match *never {},
            #[cfg(feature = "wgpu")]
            Placement::Wgpu(ctx) => dam_wgpu::features::value_and_grad(
                ctx,
                &self.spec,
                &self.omega,
                &self.weights,
                states,
            ),
        }
    }

    fn positive(&self, values: &[f64]) -> Result<()> {
        match values.iter().position(|&s| s.is_nan() || s <= 0.0) {
            None => Ok(()),
            Some(query) => Err(Error::InvalidParameter {
                argument: "features",
                value: self.spec.features.to_string(),
                reason: format!(
                    "φ(x)·T = {} ≤ 0 at query {query}: the Fourier estimate of the kernel sum is not \
                     positive there (too few features, or no memory near x); use more features or \
                     FeatureKind::PositiveExp",
                    values[query]
                ),
            }),
        }
    }

    /// E(x) ≈ −β⁻¹ log(φ(x)·T) for each state (B×N).
    pub fn energy(&self, states: ArrayView2<'_, f32>) -> Result<Vec<f64>> {
        let x = self.check(states, "states")?;
        let (v, _) = self.value_and_grad(&x)?;
        self.positive(&v)?;
        Ok(v.iter().map(|s| -s.ln() / self.spec.beta).collect())
    }

    /// ∇E(x) = −∇s / (β s) for each state (B×N).
    pub fn gradient(&self, states: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let x = self.check(states, "states")?;
        let (v, g) = self.value_and_grad(&x)?;
        self.positive(&v)?;
        let n = self.spec.dim;
        let grad: Vec<f32> = g
            .chunks(n)
            .zip(&v)
            .flat_map(|(gq, &s)| gq.iter().map(move |gi| (-gi / (self.spec.beta * s)) as f32))
            .collect();
        Array2::from_shape_vec((states.nrows(), n), grad).map_err(|e| Error::InvalidParameter {
            argument: "states",
            value: format!("{:?}", states.dim()),
            reason: e.to_string(),
        })
    }

    /// Energy descent: `steps` gradient steps x ← x − η ∇E(x) from each query (B×N).
    ///
    /// η = 1 is the fixed-point (attention) update: for the exact energy
    /// ∇E(x) = x − Σ_μ softmax_μ ξ^μ, so x − ∇E(x) is the softmax-weighted mean of the
    /// memories; here the same step with the random-feature gradient.
    pub fn retrieve(
        &self,
        queries: ArrayView2<'_, f32>,
        steps: usize,
        step_size: f32,
    ) -> Result<Array2<f32>> {
        if !(step_size.is_finite() && step_size > 0.0) {
            return Err(Error::InvalidParameter {
                argument: "step_size",
                value: step_size.to_string(),
                reason: "η must be finite and > 0".into(),
            });
        }
        let mut x = queries.to_owned();
        for _ in 0..steps {
            let g = self.gradient(x.view())?;
            x.zip_mut_with(&g, |a, b| *a -= step_size * b);
        }
        Ok(x)
    }
}
