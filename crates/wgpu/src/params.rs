//! Rust mirrors of the WGSL structs that cross the host–device boundary, in one place.
//! A test reflects every one of them from its WGSL unit with naga and checks size and
//! member offsets against the Rust layout.

use bytemuck::{Pod, Zeroable};

/// Mirrors `Params` in `shaders/common.wgsl`: one dispatch of the retrieval kernels over
/// one block of stored patterns.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct Params {
    pub batch: u32,
    pub dim: u32,
    pub p_total: u32,
    pub chunk_rows: u32,
    pub chunk_base: u32,
    pub split_len: u32,
    pub split_base: u32,
    pub splits_total: u32,
    pub beta: f32,
    pub tol: f32,
    pub k: u32,
    pub degree: u32,
}

/// Mirrors `Step` in `shaders/common.wgsl` (padded to 16 bytes for a uniform).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct StepUniform {
    pub row: u32,
    pub pad: [u32; 3],
}

/// Mirrors `Stat` in `shaders/stream.wgsl` (one streaming partial).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct Stat {
    pub m: f32,
    pub l: f32,
    pub best_s: f32,
    pub best_i: u32,
}

/// Mirrors `PParams` in `shaders/procedural.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct PParams {
    pub batch: u32,
    pub dim: u32,
    pub kind: u32,
    pub tile_rows: u32,
    pub split_len: u32,
    pub splits: u32,
    pub base_lo: u32,
    pub base_hi: u32,
    pub wave_len: u32,
    pub beta: f32,
    /// Kind 3 (correlated): q · 2²⁴.
    pub share: u32,
    pub pad1: u32,
}

/// Mirrors `PStat` in `shaders/procedural.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct PStat {
    pub m: f32,
    pub l: f32,
    pub best_s: f32,
    pub best_lo: u32,
    pub best_hi: u32,
    pub pad0: u32,
    pub pad1: u32,
    pub pad2: u32,
}

/// Mirrors `SParams` in `shaders/spin.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct SParams {
    pub dim: u32,
    pub words: u32,
    pub count: u32,
    pub batch: u32,
    pub relative: u32,
    pub first: u32,
    pub spins: u32,
    pub pad: u32,
}

/// Mirrors `FParams` in `shaders/features.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct FParams {
    pub dim: u32,
    pub freqs: u32,
    pub features: u32,
    pub rows: u32,
    pub first_row: u32,
    pub block: u32,
    pub kind: u32,
    pub beta: f32,
}

/// Mirrors `MatMulParams` in `shaders/matmul.wgsl`; see [`crate::matmul`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct MatMulParams {
    pub m: u32,
    pub n: u32,
    pub kdim: u32,
    pub lda: u32,
    pub ldb: u32,
    pub ldc: u32,
    pub a_off: u32,
    pub c_col0: u32,
    pub stat_col0: u32,
    pub stat_ld: u32,
    pub accumulate: u32,
    pub degree: u32,
    pub alpha: f32,
    pub k_begin: u32,
    pub k_end: u32,
    pub pad0: u32,
}

/// Mirrors `RowParams` in `shaders/softmax_rows.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct RowParams {
    pub rows: u32,
    pub cols: u32,
    pub ldc: u32,
    pub tiles: u32,
}

/// Mirrors `LearnParams` in `shaders/learn.wgsl`; see [`crate::learn`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct LearnParams {
    pub b: u32,
    pub k: u32,
    pub n: u32,
    pub c: u32,
    pub chunk: u32,
    pub chunks: u32,
    pub degree: u32,
    pub rectified: u32,
    pub m2: u32,
    pub loss_off: u32,
    pub inv_t: f32,
    pub lr: f32,
    pub momentum: f32,
    pub pad0: u32,
    pub pad1: u32,
    pub pad2: u32,
}

/// Mirrors `LagParams` in `shaders/lagrangian.wgsl`; see [`crate::lagrangian`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct LagParams {
    pub b: u32,
    pub n: u32,
    pub k: u32,
    pub degree: u32,
    pub rectified: u32,
    pub write_energy: u32,
    pub first: u32,
    pub last: u32,
    pub beta: f32,
    pub inv_tau_v: f32,
    pub inv_tau_h: f32,
    pub c_acc: f32,
    pub c_stage: f32,
    pub pad0: u32,
    pub pad1: u32,
    pub pad2: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{Kernel, Loader};
    use std::mem::{offset_of, size_of};

    /// Checks that the WGSL struct `name` in the unit of `kernel` has the members
    /// `fields` (name, Rust offset) in order at the same offsets, and that its size is the
    /// Rust size (`exact`: array elements) or at most it (uniforms may be padded).
    fn check(kernel: Kernel, name: &str, rust_size: usize, exact: bool, fields: &[(&str, usize)]) {
        let source = kernel.source(Loader::F32);
        let module = naga::front::wgsl::parse_str(&source).expect("parses");
        let mut layouter = naga::proc::Layouter::default();
        layouter
            .update(module.to_ctx())
            .expect("layouts of every type");
        let (handle, ty) = module
            .types
            .iter()
            .find(|(_, ty)| ty.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("struct {name} is not in the unit of {}", kernel.name()));
        let naga::TypeInner::Struct { members, span } = &ty.inner else {
            panic!("{name} is not a struct");
        };
        assert_eq!(layouter[handle].size, *span);
        let wgsl: Vec<(String, usize)> = members
            .iter()
            .map(|m| (m.name.clone().unwrap_or_default(), m.offset as usize))
            .collect();
        let rust: Vec<(String, usize)> = fields.iter().map(|&(n, o)| (n.to_string(), o)).collect();
        assert_eq!(wgsl, rust, "members of {name} (WGSL vs Rust)");
        if exact {
            assert_eq!(*span as usize, rust_size, "size of {name}");
        } else {
            assert!(
                *span as usize <= rust_size,
                "{name}: WGSL {span} bytes, Rust {rust_size}"
            );
        }
    }

    macro_rules! mirror {
        ($kernel:expr, $name:literal, $ty:ty, $exact:expr, [$($field:ident),* $(,)?]) => {
            check(
                $kernel,
                $name,
                size_of::<$ty>(),
                $exact,
                &[$((stringify!($field), offset_of!($ty, $field))),*],
            )
        };
    }

    #[test]
    fn every_rust_mirror_matches_its_wgsl_struct() {
        mirror!(
            Kernel::StreamPartial,
            "Params",
            Params,
            true,
            [
                batch,
                dim,
                p_total,
                chunk_rows,
                chunk_base,
                split_len,
                split_base,
                splits_total,
                beta,
                tol,
                k,
                degree
            ]
        );
        mirror!(Kernel::StreamMerge, "Step", StepUniform, false, [row]);
        mirror!(
            Kernel::StreamPartial,
            "Stat",
            Stat,
            true,
            [m, l, best_s, best_i]
        );
        mirror!(
            Kernel::ProceduralPartial,
            "PParams",
            PParams,
            true,
            [
                batch, dim, kind, tile_rows, split_len, splits, base_lo, base_hi, wave_len, beta,
                share, pad1
            ]
        );
        mirror!(
            Kernel::ProceduralFold,
            "PStat",
            PStat,
            true,
            [m, l, best_s, best_lo, best_hi, pad0, pad1, pad2]
        );
        mirror!(
            Kernel::SpinSweep,
            "SParams",
            SParams,
            true,
            [dim, words, count, batch, relative, first, spins, pad]
        );
        mirror!(
            Kernel::FeatureSum,
            "FParams",
            FParams,
            true,
            [dim, freqs, features, rows, first_row, block, kind, beta]
        );
        mirror!(
            Kernel::MatMul,
            "MatMulParams",
            MatMulParams,
            true,
            [
                m, n, kdim, lda, ldb, ldc, a_off, c_col0, stat_col0, stat_ld, accumulate, degree,
                alpha, k_begin, k_end, pad0
            ]
        );
        mirror!(
            Kernel::SoftmaxRows,
            "RowParams",
            RowParams,
            true,
            [rows, cols, ldc, tiles]
        );
        mirror!(
            Kernel::LagVisible,
            "LagParams",
            LagParams,
            true,
            [
                b,
                n,
                k,
                degree,
                rectified,
                write_energy,
                first,
                last,
                beta,
                inv_tau_v,
                inv_tau_h,
                c_acc,
                c_stage,
                pad0,
                pad1,
                pad2
            ]
        );
        mirror!(
            Kernel::LearnForward,
            "LearnParams",
            LearnParams,
            true,
            [
                b, k, n, c, chunk, chunks, degree, rectified, m2, loss_off, inv_t, lr, momentum,
                pad0, pad1, pad2
            ]
        );
    }

    /// The check fails on a wrong layout (so the test above can fail).
    #[test]
    #[should_panic(expected = "members of Stat")]
    fn a_wrong_mirror_is_caught() {
        check(
            Kernel::StreamPartial,
            "Stat",
            16,
            true,
            &[("m", 0), ("l", 4), ("best_i", 8), ("best_s", 12)],
        );
    }
}
