//! Every WGSL kernel of the backend, registered in one place.
//!
//! Kernels live in the workspace's top-level `shaders/` folder (reached from this crate
//! through the `crates/wgpu/shaders` symlink, which `cargo package` follows), loaded with
//! `include_str!`. A compiled unit is a [`Kernel`] composed with a pattern [`Loader`] by
//! [`Kernel::source`]: the shared declarations it needs (`common.wgsl` for the retrieval
//! kernels, `math.wgsl` — the shared maths: integer powers and the polynomial F and F′,
//! the online softmax, the log-sum-ReLU kernel, the nearest-pattern rule, 64-bit integers
//! — the `sim.wgsl` similarity helpers, `online.wgsl` for the streaming kernels,
//! `philox.wgsl` for the procedural ones), the loader file for kernels that read stored
//! patterns (f32, f16, or f16 read natively), and the kernel file — whole files joined in
//! order. Specialisation is done with WGSL `override` constants, never by editing source
//! text.
//!
//! Workgroup sizes are WGSL constants beside the kernels and named constants in the Rust
//! dispatch code; [`Kernel::workgroup_size`] gathers the latter, and a test checks them
//! against every entry point.

/// One compute entry point and the WGSL file that holds it.
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
    /// α-entmax (sparsemax) weights, energy and nearest from a row of similarities
    /// (`entmax.wgsl`).
    Entmax,
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
    /// Generic register-blocked tiled matrix product with epilogues (`matmul.wgsl`).
    MatMul,
    /// Row-wise softmax of a score matrix from the matrix product's partials
    /// (`softmax_rows.wgsl`).
    SoftmaxRows,
    /// Classifier training: the memories' label rows in units of T (`learn.wgsl`, `rows`).
    LearnRows,
    /// Classifier forward epilogue, F(w⁺) − F(w⁻) summed per memory chunk
    /// (`learn.wgsl`, `forward`).
    LearnForward,
    /// Classifier outputs, loss terms and output gradient (`learn.wgsl`, `loss`).
    LearnLoss,
    /// Classifier backward epilogue A = Σ_α h [F′(w⁺) − F′(w⁻)] (`learn.wgsl`, `backward`).
    LearnBackward,
    /// Classifier gradient of the label entries (`learn.wgsl`, `label_grad`).
    LearnLabelGrad,
    /// The optimiser step: momentum, per-memory normalisation, clipping (`learn.wgsl`,
    /// `update`).
    LearnUpdate,
    /// Network from Lagrangians: the feature layer's activation and energy term
    /// (`lagrangian.wgsl`, `visible`).
    LagVisible,
    /// Network from Lagrangians: the memory layer's activation and energy term
    /// (`lagrangian.wgsl`, `hidden`).
    LagHidden,
    /// Network from Lagrangians: one integrator stage of the feature states
    /// (`lagrangian.wgsl`, `integrate_v`).
    LagIntegrateV,
    /// Network from Lagrangians: one integrator stage of the memory states
    /// (`lagrangian.wgsl`, `integrate_h`).
    LagIntegrateH,
}

/// How a pattern-reading kernel reads the stored patterns (binding 1): the loader file
/// composed into its unit. Kernels that do not read stored patterns ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Loader {
    /// f32 entries (`pat_f32.wgsl`).
    #[default]
    F32,
    /// IEEE halves, two per word, decoded with integer operations (`pat_f16.wgsl`).
    F16,
    /// IEEE halves read as `f16` with the SHADER_F16 feature (`pat_f16_native.wgsl`).
    F16Native,
}

impl Loader {
    /// Every loader.
    pub const ALL: [Loader; 3] = [Loader::F32, Loader::F16, Loader::F16Native];

    /// The loader for `storage`; `native_f16`: the device has SHADER_F16.
    pub fn for_storage(storage: dam_core::Storage, native_f16: bool) -> Loader {
        match (storage, native_f16) {
            (dam_core::Storage::F32, _) => Loader::F32,
            (dam_core::Storage::F16, false) => Loader::F16,
            (dam_core::Storage::F16, true) => Loader::F16Native,
        }
    }

    /// Whether units with this loader need the SHADER_F16 device feature.
    pub fn needs_shader_f16(self) -> bool {
        self == Loader::F16Native
    }

    fn source(self) -> &'static str {
        match self {
            Loader::F32 => include_str!("../shaders/pat_f32.wgsl"),
            Loader::F16 => include_str!("../shaders/pat_f16.wgsl"),
            Loader::F16Native => include_str!("../shaders/pat_f16_native.wgsl"),
        }
    }

    /// A short name for labels.
    pub fn name(self) -> &'static str {
        match self {
            Loader::F32 => "f32",
            Loader::F16 => "f16",
            Loader::F16Native => "f16-native",
        }
    }
}

const COMMON: &str = include_str!("../shaders/common.wgsl");
const MATH: &str = include_str!("../shaders/math.wgsl");
const SIM: &str = include_str!("../shaders/sim.wgsl");
const ONLINE: &str = include_str!("../shaders/online.wgsl");
const PHILOX: &str = include_str!("../shaders/philox.wgsl");
const ENABLE_F16: &str = include_str!("../shaders/enable_f16.wgsl");

impl Kernel {
    /// All kernels.
    pub const ALL: [Kernel; 27] = [
        Kernel::Similarity,
        Kernel::StreamPartial,
        Kernel::StreamMerge,
        Kernel::Separation,
        Kernel::Entmax,
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
        Kernel::MatMul,
        Kernel::SoftmaxRows,
        Kernel::LearnRows,
        Kernel::LearnForward,
        Kernel::LearnLoss,
        Kernel::LearnBackward,
        Kernel::LearnLabelGrad,
        Kernel::LearnUpdate,
        Kernel::LagVisible,
        Kernel::LagHidden,
        Kernel::LagIntegrateV,
        Kernel::LagIntegrateH,
    ];

    /// Whether the kernel reads stored patterns through a [`Loader`].
    pub fn reads_patterns(self) -> bool {
        matches!(
            self,
            Kernel::Similarity | Kernel::StreamPartial | Kernel::WeightedSum | Kernel::MatMul
        )
    }

    /// The shared declarations the kernel file needs, in order (the loader, if any, goes
    /// after them), and the kernel file itself.
    fn parts(self) -> (&'static [&'static str], &'static str) {
        match self {
            Kernel::Similarity => (&[COMMON, SIM], include_str!("../shaders/similarity.wgsl")),
            Kernel::StreamPartial | Kernel::StreamMerge => (
                &[COMMON, MATH, SIM, ONLINE],
                include_str!("../shaders/stream.wgsl"),
            ),
            Kernel::Separation => (&[COMMON, MATH], include_str!("../shaders/separation.wgsl")),
            Kernel::Entmax => (&[COMMON, MATH], include_str!("../shaders/entmax.wgsl")),
            Kernel::WeightedSum => (&[COMMON], include_str!("../shaders/weighted_sum.wgsl")),
            Kernel::Finalize => (&[COMMON, MATH], include_str!("../shaders/finalize.wgsl")),
            Kernel::ProceduralPartial | Kernel::ProceduralFold => (
                &[MATH, PHILOX, ONLINE],
                include_str!("../shaders/procedural.wgsl"),
            ),
            Kernel::SpinInit | Kernel::SpinSweep | Kernel::SpinDecide | Kernel::SpinApply => {
                (&[MATH], include_str!("../shaders/spin.wgsl"))
            }
            Kernel::FeatureSum | Kernel::FeatureValueGrad => {
                (&[], include_str!("../shaders/features.wgsl"))
            }
            Kernel::MatMul => (&[MATH, SIM], include_str!("../shaders/matmul.wgsl")),
            Kernel::SoftmaxRows => (&[MATH], include_str!("../shaders/softmax_rows.wgsl")),
            Kernel::LearnRows
            | Kernel::LearnForward
            | Kernel::LearnLoss
            | Kernel::LearnBackward
            | Kernel::LearnLabelGrad
            | Kernel::LearnUpdate => (&[MATH], include_str!("../shaders/learn.wgsl")),
            Kernel::LagVisible
            | Kernel::LagHidden
            | Kernel::LagIntegrateV
            | Kernel::LagIntegrateH => (&[MATH], include_str!("../shaders/lagrangian.wgsl")),
        }
    }

    /// The loader actually composed for this kernel (`F32` for kernels that read no
    /// stored patterns, so that their pipelines are cached once).
    pub fn effective_loader(self, loader: Loader) -> Loader {
        if self.reads_patterns() {
            loader
        } else {
            Loader::F32
        }
    }

    /// The complete WGSL unit of this kernel with `loader`: `enable f16;` where the loader
    /// needs it, the shared declarations, the loader, the kernel file. Pieces are whole
    /// files joined in order; no source text is generated.
    pub fn source(self, loader: Loader) -> String {
        let loader = self.effective_loader(loader);
        let (head, body) = self.parts();
        let mut unit: Vec<&str> = Vec::with_capacity(head.len() + 3);
        if loader.needs_shader_f16() {
            unit.push(ENABLE_F16);
        }
        unit.extend_from_slice(head);
        // `stream.merge` shares its file with `stream.partial`, which calls `load_pat`.
        if self.reads_patterns() || self == Kernel::StreamMerge {
            unit.push(loader.source());
        }
        unit.push(body);
        unit.concat()
    }

    /// The workgroup size the host dispatches this kernel with: the named constant of its
    /// dispatch code (a naga test checks it against the WGSL entry point).
    pub fn workgroup_size(self) -> [u32; 3] {
        use crate::{binary, features, lagrangian, learn, matmul, procedural, retriever};
        let wide = |x: u32| [x, 1, 1];
        match self {
            Kernel::Similarity => [retriever::SIM_TILE, retriever::SIM_TILE, 1],
            Kernel::StreamPartial | Kernel::StreamMerge => wide(retriever::STREAM_WG),
            Kernel::Separation | Kernel::Entmax => wide(retriever::SEPARATION_WG),
            Kernel::WeightedSum => wide(retriever::SUM_WG),
            Kernel::Finalize => wide(retriever::FINALIZE_WG),
            Kernel::ProceduralPartial | Kernel::ProceduralFold => wide(procedural::PROCEDURAL_WG),
            Kernel::SpinInit | Kernel::SpinSweep | Kernel::SpinDecide | Kernel::SpinApply => {
                wide(binary::SPIN_WG)
            }
            Kernel::FeatureSum | Kernel::FeatureValueGrad => wide(features::FEATURES_WG),
            Kernel::MatMul => [matmul::MATMUL_SIDE, matmul::MATMUL_SIDE, 1],
            Kernel::SoftmaxRows => wide(retriever::SOFTMAX_ROWS_WG),
            Kernel::LearnRows
            | Kernel::LearnForward
            | Kernel::LearnLoss
            | Kernel::LearnBackward
            | Kernel::LearnLabelGrad
            | Kernel::LearnUpdate => wide(learn::LEARN_WG as u32),
            Kernel::LagVisible
            | Kernel::LagHidden
            | Kernel::LagIntegrateV
            | Kernel::LagIntegrateH => wide(lagrangian::LAGRANGIAN_WG),
        }
    }

    /// The entry point's name.
    pub fn entry_point(self) -> &'static str {
        match self {
            Kernel::StreamPartial | Kernel::ProceduralPartial => "partial",
            Kernel::StreamMerge => "merge",
            Kernel::ProceduralFold => "fold",
            Kernel::SpinInit => "init",
            Kernel::SpinSweep => "sweep",
            Kernel::SpinDecide => "decide",
            Kernel::SpinApply => "apply",
            Kernel::FeatureSum => "feature_sum",
            Kernel::FeatureValueGrad => "value_grad",
            Kernel::SoftmaxRows => "softmax_rows",
            Kernel::LearnRows => "rows",
            Kernel::LearnForward => "forward",
            Kernel::LearnLoss => "loss",
            Kernel::LearnBackward => "backward",
            Kernel::LearnLabelGrad => "label_grad",
            Kernel::LearnUpdate => "update",
            Kernel::LagVisible => "visible",
            Kernel::LagHidden => "hidden",
            Kernel::LagIntegrateV => "integrate_v",
            Kernel::LagIntegrateH => "integrate_h",
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
            Kernel::Entmax => "entmax",
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
            Kernel::MatMul => "matmul",
            Kernel::SoftmaxRows => "matmul.softmax_rows",
            Kernel::LearnRows => "learn.rows",
            Kernel::LearnForward => "learn.forward",
            Kernel::LearnLoss => "learn.loss",
            Kernel::LearnBackward => "learn.backward",
            Kernel::LearnLabelGrad => "learn.label_grad",
            Kernel::LearnUpdate => "learn.update",
            Kernel::LagVisible => "lagrangian.visible",
            Kernel::LagHidden => "lagrangian.hidden",
            Kernel::LagIntegrateV => "lagrangian.integrate_v",
            Kernel::LagIntegrateH => "lagrangian.integrate_h",
        }
    }
}

/// The value of the `SIM` override of `sim.wgsl` for a similarity (every kernel that
/// composes `sim.wgsl` takes it).
pub fn similarity_code(similarity: dam_core::Similarity) -> u32 {
    match similarity {
        dam_core::Similarity::Dot => 0,
        dam_core::Similarity::NegEuclidean => 1,
        dam_core::Similarity::NegManhattan => 2,
    }
}

/// Every (kernel, loader) unit the backend can compile: pattern-reading kernels with each
/// loader, the others once.
pub fn units() -> impl Iterator<Item = (Kernel, Loader)> {
    Kernel::ALL.into_iter().flat_map(|k| {
        let loaders: &[Loader] = if k.reads_patterns() {
            &Loader::ALL
        } else {
            &[Loader::F32]
        };
        loaders.iter().map(move |&l| (k, l))
    })
}

#[cfg(test)]
mod tests {
    use super::{units, Kernel, Loader, MATH};

    fn validate(
        label: &str,
        source: &str,
        capabilities: naga::valid::Capabilities,
    ) -> naga::Module {
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{label} does not parse:\n{}", e.emit_to_string(source)));
        let mut validator =
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities);
        if let Err(e) = validator.validate(&module) {
            panic!("{label} does not validate:\n{}", e.emit_to_string(source));
        }
        module
    }

    fn module(kernel: Kernel) -> naga::Module {
        let source = kernel.source(Loader::F32);
        naga::front::wgsl::parse_str(&source).expect("parses")
    }

    /// Every compiled WGSL unit (with math.wgsl and the other shared pieces composed)
    /// parses and validates with naga, and holds its entry point.
    #[test]
    fn all_kernels_validate_with_naga() {
        let mut count = 0;
        for (kernel, loader) in units() {
            let source = kernel.source(loader);
            let label = format!("{} ({})", kernel.name(), loader.name());
            // Only the SHADER_F16 variants may use f16 arithmetic.
            let capabilities = if kernel.effective_loader(loader).needs_shader_f16() {
                naga::valid::Capabilities::SHADER_FLOAT16
            } else {
                naga::valid::Capabilities::default()
            };
            let module = validate(&label, &source, capabilities);
            assert!(
                module
                    .entry_points
                    .iter()
                    .any(|ep| ep.name == kernel.entry_point()),
                "{label} has no entry point `{}`",
                kernel.entry_point()
            );
            count += 1;
        }
        assert_eq!(count, 23 + 4 * 3, "every kernel × loader unit was checked");
    }

    /// The entmax kernel specialised as the host specialises it (`ALPHA_BITS`, the bits
    /// of α: the sparsemax branch at α = 2, `pow` at α = 1.05 and 1.5) still validates
    /// once naga has substituted the override and evaluated the constant expressions.
    #[test]
    fn entmax_specialisations_validate_with_naga() {
        let source = Kernel::Entmax.source(Loader::F32);
        let module = validate("entmax", &source, naga::valid::Capabilities::default());
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::default(),
        )
        .validate(&module)
        .expect("validates");
        assert_eq!(module.overrides.len(), 1, "ALPHA_BITS is the one override");
        for alpha in [1.05f32, 1.5, 2.0] {
            let mut constants = naga::back::PipelineConstants::default();
            constants.insert("ALPHA_BITS".to_string(), alpha.to_bits() as f64);
            let (specialised, _) = naga::back::pipeline_constants::process_overrides(
                &module,
                &info,
                Some((naga::ShaderStage::Compute, Kernel::Entmax.entry_point())),
                &constants,
            )
            .unwrap_or_else(|e| panic!("entmax at α = {alpha}: {e}"));
            let value = specialised
                .constants
                .iter()
                .find(|(_, c)| c.name.as_deref() == Some("ALPHA_BITS"))
                .map(|(_, c)| &specialised.global_expressions[c.init]);
            assert!(
                matches!(value, Some(naga::Expression::Literal(naga::Literal::U32(v))) if *v == alpha.to_bits()),
                "α = {alpha}: ALPHA_BITS became {value:?}"
            );
        }
    }

    /// math.wgsl stands alone (no bindings, no overrides, no workgroup memory): it
    /// validates without any other piece, and the units that call it compose it once.
    #[test]
    fn math_validates_on_its_own_and_is_composed_once() {
        let module = validate("math.wgsl", MATH, naga::valid::Capabilities::default());
        assert!(module.global_variables.is_empty() && module.overrides.is_empty());
        let mut composing = 0;
        for (kernel, loader) in units() {
            let copies = kernel.source(loader).matches(MATH).count();
            assert!(
                copies <= 1,
                "{} composes math.wgsl {copies} times",
                kernel.name()
            );
            composing += copies;
        }
        assert!(composing > 0);
    }

    /// The workgroup size of every kernel in the Rust dispatch code
    /// ([`Kernel::workgroup_size`]) is the one its WGSL entry point declares, and every
    /// entry point of every kernel file is a registered kernel (so none is left unchecked).
    #[test]
    fn host_workgroup_sizes_match_every_entry_point() {
        let mut checked = 0;
        for kernel in Kernel::ALL {
            let module = module(kernel);
            let file = kernel.parts().1;
            for ep in &module.entry_points {
                let registered = Kernel::ALL
                    .into_iter()
                    .find(|k| std::ptr::eq(k.parts().1, file) && k.entry_point() == ep.name)
                    .unwrap_or_else(|| {
                        panic!(
                            "entry point `{}` of {} is not a kernel",
                            ep.name,
                            kernel.name()
                        )
                    });
                if registered == kernel {
                    assert_eq!(
                        ep.workgroup_size,
                        kernel.workgroup_size(),
                        "workgroup size of {} (WGSL vs Rust)",
                        kernel.name()
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(
            checked,
            Kernel::ALL.len(),
            "every kernel's entry point was checked"
        );
    }

    /// The value of the WGSL `const` `name` (a u32) in the unit of `kernel`.
    fn wgsl_u32(kernel: Kernel, name: &str) -> u64 {
        let module = module(kernel);
        let (_, constant) = module
            .constants
            .iter()
            .find(|(_, c)| c.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no const {name} in the unit of {}", kernel.name()));
        match module.global_expressions[constant.init] {
            naga::Expression::Literal(naga::Literal::U32(v)) => v as u64,
            ref e => panic!("const {name} of {} is not a u32: {e:?}", kernel.name()),
        }
    }

    /// Host constants that mirror other WGSL constants (tile shapes, workgroup memory, the
    /// weighted sum's block) hold the same values.
    #[test]
    fn host_constants_match_their_wgsl_constants() {
        use crate::{binary, matmul, procedural, retriever};
        let mirrors = [
            (Kernel::MatMul, "TM", matmul::TILE as u64),
            (Kernel::MatMul, "TK", matmul::TK),
            (Kernel::WeightedSum, "BLOCK", retriever::SUM_BLOCK),
            (
                Kernel::Entmax,
                "BISECTIONS",
                retriever::ENTMAX_BISECTIONS as u64,
            ),
            (Kernel::Entmax, "REFINES", retriever::ENTMAX_REFINES as u64),
            (
                Kernel::ProceduralPartial,
                "SHARED",
                procedural::SHARED as u64,
            ),
            (Kernel::SpinSweep, "MAX_WORDS", binary::MAX_WORDS as u64),
        ];
        for (kernel, name, host) in mirrors {
            assert_eq!(wgsl_u32(kernel, name), host, "{name} of {}", kernel.name());
        }
    }
}
