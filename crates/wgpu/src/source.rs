//! Every WGSL kernel of the backend, registered in one place.
//!
//! Kernels live in the workspace's top-level `shaders/` folder (reached from this crate
//! through the `crates/wgpu/shaders` symlink, which `cargo package` follows). Each compiled
//! unit is the shared `common.wgsl` declarations, the `sim.wgsl` similarity helpers where
//! needed (`philox.wgsl` for the procedural kernels, `online.wgsl` for the
//! streaming ones), and one kernel file, concatenated at compile time with `concat!`. Specialisation
//! is done with WGSL `override` constants, never by editing source text.

/// One compute entry point and the WGSL unit that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Tiled B×P similarity of one pattern chunk (`similarity.wgsl`).
    Similarity,
    /// Online-softmax partials over pattern splits (`stream.wgsl`, `partial`).
    StreamPartial,
    /// Merge of the partials into the update, energy and nearest (`stream.wgsl`, `merge`).
    StreamMerge,
    /// Energy, nearest and weights from a row of similarities (`separation.wgsl`).
    Separation,
    /// Weighted sum of patterns (`weighted_sum.wgsl`).
    WeightedSum,
    /// Projection, convergence and status (`finalize.wgsl`).
    Finalize,
    /// Online softmax over procedurally generated patterns (`procedural.wgsl`, `partial`).
    ProceduralPartial,
    /// Fold of a wave of procedural partials into the running state (`procedural.wgsl`, `fold`).
    ProceduralFold,
    /// Integer overlaps by XOR + popcount (`spin.wgsl`, `init`).
    SpinInit,
    /// Asynchronous exact spin updates (`spin.wgsl`, `sweep`).
    SpinSweep,
    /// Synchronous spin decisions (`spin.wgsl`, `decide`).
    SpinDecide,
    /// Synchronous flips applied and counted (`spin.wgsl`, `apply`).
    SpinApply,
    /// Random-feature sums over stored patterns (`features.wgsl`, `feature_sum`).
    FeatureSum,
    /// Random-feature energy value and gradient (`features.wgsl`, `value_grad`).
    FeatureValueGrad,
    /// [`Kernel::Similarity`] over f16 patterns (`pat_f16.wgsl`).
    SimilarityF16,
    /// [`Kernel::StreamPartial`] over f16 patterns (`pat_f16.wgsl`).
    StreamPartialF16,
    /// [`Kernel::WeightedSum`] over f16 patterns (`pat_f16.wgsl`).
    WeightedSumF16,
    /// [`Kernel::Similarity`] over f16 patterns read with SHADER_F16 (`pat_f16_native.wgsl`).
    SimilarityF16Native,
    /// [`Kernel::StreamPartial`] over f16 patterns read with SHADER_F16.
    StreamPartialF16Native,
    /// [`Kernel::WeightedSum`] over f16 patterns read with SHADER_F16.
    WeightedSumF16Native,
}

const SIMILARITY: &str = concat!(
    include_str!("../shaders/common.wgsl"),
    include_str!("../shaders/sim.wgsl"),
    include_str!("../shaders/pat_f32.wgsl"),
    include_str!("../shaders/similarity.wgsl")
);
const SIMILARITY_F16: &str = concat!(
    include_str!("../shaders/common.wgsl"),
    include_str!("../shaders/sim.wgsl"),
    include_str!("../shaders/pat_f16.wgsl"),
    include_str!("../shaders/similarity.wgsl")
);
const SIMILARITY_F16_NATIVE: &str = concat!(
    include_str!("../shaders/enable_f16.wgsl"),
    include_str!("../shaders/common.wgsl"),
    include_str!("../shaders/sim.wgsl"),
    include_str!("../shaders/pat_f16_native.wgsl"),
    include_str!("../shaders/similarity.wgsl")
);
const STREAM_F16_NATIVE: &str = concat!(
    include_str!("../shaders/enable_f16.wgsl"),
    include_str!("../shaders/common.wgsl"),
    include_str!("../shaders/sim.wgsl"),
    include_str!("../shaders/online.wgsl"),
    include_str!("../shaders/pat_f16_native.wgsl"),
    include_str!("../shaders/stream.wgsl")
);
const WEIGHTED_SUM_F16_NATIVE: &str = concat!(
    include_str!("../shaders/enable_f16.wgsl"),
    include_str!("../shaders/common.wgsl"),
    include_str!("../shaders/pat_f16_native.wgsl"),
    include_str!("../shaders/weighted_sum.wgsl")
);
const STREAM: &str = concat!(
    include_str!("../shaders/common.wgsl"),
    include_str!("../shaders/sim.wgsl"),
    include_str!("../shaders/online.wgsl"),
    include_str!("../shaders/pat_f32.wgsl"),
    include_str!("../shaders/stream.wgsl")
);
const STREAM_F16: &str = concat!(
    include_str!("../shaders/common.wgsl"),
    include_str!("../shaders/sim.wgsl"),
    include_str!("../shaders/online.wgsl"),
    include_str!("../shaders/pat_f16.wgsl"),
    include_str!("../shaders/stream.wgsl")
);
const SEPARATION: &str = concat!(
    include_str!("../shaders/common.wgsl"),
    include_str!("../shaders/separation.wgsl")
);
const WEIGHTED_SUM: &str = concat!(
    include_str!("../shaders/common.wgsl"),
    include_str!("../shaders/pat_f32.wgsl"),
    include_str!("../shaders/weighted_sum.wgsl")
);
const WEIGHTED_SUM_F16: &str = concat!(
    include_str!("../shaders/common.wgsl"),
    include_str!("../shaders/pat_f16.wgsl"),
    include_str!("../shaders/weighted_sum.wgsl")
);
const PROCEDURAL: &str = concat!(
    include_str!("../shaders/philox.wgsl"),
    include_str!("../shaders/online.wgsl"),
    include_str!("../shaders/procedural.wgsl")
);
const SPIN: &str = include_str!("../shaders/spin.wgsl");
const FEATURES: &str = include_str!("../shaders/features.wgsl");
const FINALIZE: &str = concat!(
    include_str!("../shaders/common.wgsl"),
    include_str!("../shaders/finalize.wgsl")
);

impl Kernel {
    /// All kernels.
    pub const ALL: [Kernel; 20] = [
        Kernel::Similarity,
        Kernel::StreamPartial,
        Kernel::StreamMerge,
        Kernel::Separation,
        Kernel::WeightedSum,
        Kernel::Finalize,
        Kernel::ProceduralPartial,
        Kernel::ProceduralFold,
        Kernel::SpinInit,
        Kernel::SpinSweep,
        Kernel::SpinDecide,
        Kernel::SpinApply,
        Kernel::FeatureSum,
        Kernel::FeatureValueGrad,
        Kernel::SimilarityF16,
        Kernel::StreamPartialF16,
        Kernel::WeightedSumF16,
        Kernel::SimilarityF16Native,
        Kernel::StreamPartialF16Native,
        Kernel::WeightedSumF16Native,
    ];

    /// The variant of a pattern-reading kernel for `storage` (others are returned as is);
    /// `native_f16`: the device has SHADER_F16.
    pub fn for_storage(self, storage: dam_core::Storage, native_f16: bool) -> Kernel {
        use dam_core::Storage::F16;
        match (self, storage, native_f16) {
            (Kernel::Similarity, F16, false) => Kernel::SimilarityF16,
            (Kernel::StreamPartial, F16, false) => Kernel::StreamPartialF16,
            (Kernel::WeightedSum, F16, false) => Kernel::WeightedSumF16,
            (Kernel::Similarity, F16, true) => Kernel::SimilarityF16Native,
            (Kernel::StreamPartial, F16, true) => Kernel::StreamPartialF16Native,
            (Kernel::WeightedSum, F16, true) => Kernel::WeightedSumF16Native,
            (k, _, _) => k,
        }
    }

    /// Whether the kernel needs the SHADER_F16 device feature.
    pub fn needs_shader_f16(self) -> bool {
        matches!(
            self,
            Kernel::SimilarityF16Native
                | Kernel::StreamPartialF16Native
                | Kernel::WeightedSumF16Native
        )
    }

    /// The complete WGSL unit that holds this kernel.
    pub fn source(self) -> &'static str {
        match self {
            Kernel::Similarity => SIMILARITY,
            Kernel::StreamPartial | Kernel::StreamMerge => STREAM,
            Kernel::Separation => SEPARATION,
            Kernel::WeightedSum => WEIGHTED_SUM,
            Kernel::Finalize => FINALIZE,
            Kernel::ProceduralPartial | Kernel::ProceduralFold => PROCEDURAL,
            Kernel::SpinInit | Kernel::SpinSweep | Kernel::SpinDecide | Kernel::SpinApply => SPIN,
            Kernel::FeatureSum | Kernel::FeatureValueGrad => FEATURES,
            Kernel::SimilarityF16 => SIMILARITY_F16,
            Kernel::StreamPartialF16 => STREAM_F16,
            Kernel::WeightedSumF16 => WEIGHTED_SUM_F16,
            Kernel::SimilarityF16Native => SIMILARITY_F16_NATIVE,
            Kernel::StreamPartialF16Native => STREAM_F16_NATIVE,
            Kernel::WeightedSumF16Native => WEIGHTED_SUM_F16_NATIVE,
        }
    }

    /// The entry point's name.
    pub fn entry_point(self) -> &'static str {
        match self {
            Kernel::StreamPartial | Kernel::StreamPartialF16 | Kernel::StreamPartialF16Native => {
                "partial"
            }
            Kernel::StreamMerge => "merge",
            Kernel::ProceduralPartial => "partial",
            Kernel::ProceduralFold => "fold",
            Kernel::SpinInit => "init",
            Kernel::SpinSweep => "sweep",
            Kernel::SpinDecide => "decide",
            Kernel::SpinApply => "apply",
            Kernel::FeatureSum => "feature_sum",
            Kernel::FeatureValueGrad => "value_grad",
            _ => "main",
        }
    }

    /// A short name for labels and errors.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Similarity => "similarity",
            Kernel::StreamPartial => "stream.partial",
            Kernel::StreamMerge => "stream.merge",
            Kernel::Separation => "separation",
            Kernel::WeightedSum => "weighted_sum",
            Kernel::Finalize => "finalize",
            Kernel::ProceduralPartial => "procedural.partial",
            Kernel::ProceduralFold => "procedural.fold",
            Kernel::SpinInit => "spin.init",
            Kernel::SpinSweep => "spin.sweep",
            Kernel::SpinDecide => "spin.decide",
            Kernel::SpinApply => "spin.apply",
            Kernel::FeatureSum => "features.sum",
            Kernel::FeatureValueGrad => "features.value_grad",
            Kernel::SimilarityF16 => "similarity.f16",
            Kernel::StreamPartialF16 => "stream.partial.f16",
            Kernel::WeightedSumF16 => "weighted_sum.f16",
            Kernel::SimilarityF16Native => "similarity.f16-native",
            Kernel::StreamPartialF16Native => "stream.partial.f16-native",
            Kernel::WeightedSumF16Native => "weighted_sum.f16-native",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Kernel;

    /// Every compiled WGSL unit parses and validates with naga, and holds its entry point.
    #[test]
    fn all_kernels_validate_with_naga() {
        for kernel in Kernel::ALL {
            let module = naga::front::wgsl::parse_str(kernel.source()).unwrap_or_else(|e| {
                panic!(
                    "{} does not parse:\n{}",
                    kernel.name(),
                    e.emit_to_string(kernel.source())
                )
            });
            // Only the SHADER_F16 variants may use f16 arithmetic.
            let capabilities = if kernel.needs_shader_f16() {
                naga::valid::Capabilities::SHADER_FLOAT16
            } else {
                naga::valid::Capabilities::default()
            };
            let mut validator =
                naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities);
            if let Err(e) = validator.validate(&module) {
                panic!(
                    "{} does not validate:\n{}",
                    kernel.name(),
                    e.emit_to_string(kernel.source())
                );
            }
            assert!(
                module
                    .entry_points
                    .iter()
                    .any(|ep| ep.name == kernel.entry_point()),
                "{} has no entry point `{}`",
                kernel.name(),
                kernel.entry_point()
            );
        }
    }
}
