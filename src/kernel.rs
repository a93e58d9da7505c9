//! Kernelized memories on every device: the similarity goes through a feature map,
//! K(ξ, x) = ⟨Φ(ξ), Φ(x)⟩ with Φ(x) = W x + b (or on the normalised features Φ̂), while
//! retrieval stays in input space, x ← Ξᵀ p(β K(Ξ, x)).
//!
//! A kernelized [`crate::Retriever`] keeps the memories Ξ (P×N) on the host and builds its
//! device backend over the features Φ(Ξ) (P×D_Φ) with the dot similarity. One step
//! computes Φ(x) on the host in f64 (rounded to f32), then runs the device's
//! [`dam_core::Backend::evaluate_values`] with the features as the patterns and Ξ as the
//! values: the similarities, the separation's weights p and Ξᵀp on the device's existing
//! paths (the fused pass on the CPU; the device's similarities with the weighted sum on
//! the host in f64 on the reference and wgpu). The loop is [`dam_core::dynamics::run`],
//! the one every backend shares.

use dam_core::dynamics::Evaluated;
use dam_core::kernelized::Kernel;
use dam_core::{Backend, Config, Error, Patterns, Projection, Result, Separation, Similarity};
use dam_core::{Edit, Storage};
use ndarray::{Array2, ArrayView2};

/// The kernel of a memory and its memories in input space.
#[derive(Debug, Clone)]
pub(crate) struct KernelState {
    /// Φ and whether K is taken on normalised features.
    pub kernel: Kernel,
    /// Ξ, P×N: what retrieval returns to.
    pub inputs: Patterns,
}

impl KernelState {
    /// The features of each row of `x` (B×N): Φ(x) or Φ̂(x), computed in f64 and rounded
    /// to f32. A feature beyond f32 is [`Error::Overflow`].
    pub fn features(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let phi = self.kernel.features(x.mapv(f64::from).view());
        let out = phi.mapv(|v| v as f32);
        match out
            .rows()
            .into_iter()
            .position(|r| r.iter().any(|v| !v.is_finite()))
        {
            Some(query) => Err(Error::Overflow {
                what: "feature Φ(x)",
                query,
                steps: 0,
                hint: "the features W x + b left f32; rescale W, b or the inputs",
            }),
            None => Ok(out),
        }
    }

    /// One evaluation of the kernelized dynamics for `backend` (built over the features):
    /// the next states Ξᵀ p of the first `updates` states, and the energy, nearest memory
    /// and confidence of every state.
    pub fn evaluate(
        &self,
        backend: &dyn Backend,
        states: ArrayView2<'_, f32>,
        updates: usize,
    ) -> Result<Evaluated> {
        let phi = self.features(states)?;
        backend.evaluate_values(phi.view(), updates, self.inputs.view())
    }

    /// Applies `edit` to the memories Ξ and the features Φ(Ξ) of `backend` together: both
    /// change or neither does.
    pub fn edit(&mut self, backend: &mut dyn Backend, edit: Edit<'_>) -> Result<()> {
        match edit {
            Edit::Append(rows) => {
                let before = self.inputs.count();
                self.inputs.apply(Edit::Append(rows), Storage::F32)?;
                let added = self
                    .features(rows)
                    .and_then(|phi| backend.edit(Edit::Append(phi.view())));
                if let Err(e) = added {
                    let back: Vec<usize> = (before..self.inputs.count()).collect();
                    self.inputs
                        .apply(Edit::Remove(&back), Storage::F32)
                        .expect("removing the rows just appended");
                    return Err(e);
                }
                Ok(())
            }
            Edit::Remove(rows) => {
                backend.edit(Edit::Remove(rows))?;
                self.inputs.apply(Edit::Remove(rows), Storage::F32)?;
                Ok(())
            }
            Edit::Replace { row, values } => {
                if row >= self.inputs.count() {
                    return Err(Error::InvalidParameter {
                        argument: "row",
                        value: row.to_string(),
                        reason: format!("{} patterns are stored", self.inputs.count()),
                    });
                }
                let old = self.inputs.view().row(row).to_owned();
                self.inputs
                    .apply(Edit::Replace { row, values }, Storage::F32)?;
                let one = values.insert_axis(ndarray::Axis(0));
                let replaced = self.features(one).and_then(|phi| {
                    backend.edit(Edit::Replace {
                        row,
                        values: phi.row(0),
                    })
                });
                if let Err(e) = replaced {
                    self.inputs
                        .apply(
                            Edit::Replace {
                                row,
                                values: old.view(),
                            },
                            Storage::F32,
                        )
                        .expect("restoring the row just replaced");
                    return Err(e);
                }
                Ok(())
            }
        }
    }
}

/// Checks that a rule and a storage fit a kernelized memory: the dot similarity (K is
/// the inner product of features), softmax or entmax weights (p on the simplex, so the
/// step Ξᵀp is the kernelized update), no projection, f32 storage.
pub(crate) fn check_rule(config: &Config, storage: Storage) -> Result<()> {
    let refuse = |argument: &'static str, value: String, reason: &str| {
        Err(Error::InvalidParameter {
            argument,
            value,
            reason: format!("a kernelized memory (RetrieverBuilder::feature_map) {reason}"),
        })
    };
    if config.similarity != Similarity::Dot {
        return refuse(
            "similarity",
            format!("{:?}", config.similarity),
            "takes K(u, v) = ⟨Φ(u), Φ(v)⟩: use Similarity::Dot",
        );
    }
    if !matches!(
        config.separation,
        Separation::Softmax { .. } | Separation::Entmax { .. }
    ) {
        return refuse(
            "separation",
            format!("{:?}", config.separation),
            "updates x ← Ξᵀ p with p on the simplex: use Softmax or Entmax",
        );
    }
    if config.projection != Projection::None {
        return refuse(
            "projection",
            format!("{:?}", config.projection),
            "has no projection: use Projection::None",
        );
    }
    if storage != Storage::F32 {
        return Err(Error::Unsupported {
            what: "f16 storage of a kernelized memory",
            detail: "use Storage::F32 with RetrieverBuilder::feature_map".into(),
        });
    }
    Ok(())
}
