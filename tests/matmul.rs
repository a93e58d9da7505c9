//! The generic tiled matrix product (`matmul.wgsl`) against a plain f64 product written
//! here: shapes that are not multiples of the 64×64 tile or the 16-entry contraction tile,
//! every transpose, the three similarity terms, each epilogue, contractions longer than
//! one dispatch; and the retrieval step that runs on it against the CPU reference.

mod common;

use common::{gpu, gpu_with, noisy_queries, unit_patterns, STATE_TOL};
use dam::wgpu_backend::matmul::{self, Epilogue, MatMul, MAX_K_SLICE};
use dam::{Device, Patterns, Projection, Retriever, Separation, Similarity, Storage, Tolerance};
use dam::{WgpuContext, WgpuOptions};
use ndarray::Array2;

/// Products accumulate in f32 on the device and in f64 here; the absolute part is scaled
/// by the largest |reference| of the output.
const MATMUL_TOL: Tolerance = Tolerance::new(2e-6, 1e-4);

fn ctx() -> std::sync::Arc<WgpuContext> {
    let Device::Wgpu(options) = gpu() else {
        unreachable!("gpu() returns a wgpu device")
    };
    WgpuContext::shared(&options).expect("adapter")
}

fn data(len: usize, seed: u64) -> Vec<f32> {
    common::gaussian(1, len, 1.0, seed)
        .into_raw_vec_and_offset()
        .0
}

/// The reference: op(A)[r, k], op(B)[k, j] from their stored layouts, the similarity
/// term, α, and the epilogue (for `SoftmaxPartials`, the plain value).
fn reference(spec: &MatMul, a: &[f32], b: &[f32]) -> Vec<f64> {
    let (m, n, k) = (spec.m as usize, spec.n as usize, spec.k as usize);
    let at = |r: usize, kk: usize| {
        let i = if spec.trans_a {
            kk * spec.lda as usize + r
        } else {
            r * spec.lda as usize + kk
        };
        a[spec.a_off as usize + i] as f64
    };
    let bt = |kk: usize, j: usize| {
        let i = if spec.trans_b {
            j * spec.ldb as usize + kk
        } else {
            kk * spec.ldb as usize + j
        };
        b[i] as f64
    };
    let mut out = vec![0.0; m * n];
    for r in 0..m {
        for j in 0..n {
            let mut acc = 0.0f64;
            for kk in 0..k {
                let (x, y) = (at(r, kk), bt(kk, j));
                acc += match spec.similarity {
                    Similarity::Dot => x * y,
                    Similarity::NegEuclidean => (x - y) * (x - y),
                    Similarity::NegManhattan => (x - y).abs(),
                };
            }
            let s = match spec.similarity {
                Similarity::Dot => acc,
                Similarity::NegEuclidean => -acc.sqrt(),
                Similarity::NegManhattan => -acc,
            };
            let v = spec.alpha as f64 * s;
            out[r * n + j] = match spec.epilogue {
                Epilogue::Power { degree, rectified } => {
                    let base = if rectified { v.max(0.0) } else { v };
                    base.powi(degree as i32)
                }
                _ => v,
            };
        }
    }
    out
}

/// The device result's first `n` columns of each row (ldc may be wider).
fn columns(c: &[f32], spec: &MatMul) -> Vec<f32> {
    let (m, n, ldc, c0) = (
        spec.m as usize,
        spec.n as usize,
        spec.ldc as usize,
        spec.c_col0 as usize,
    );
    assert_eq!(c.len(), m * ldc, "C has m × ldc entries");
    (0..m)
        .flat_map(|r| c[r * ldc + c0..r * ldc + c0 + n].to_vec())
        .collect()
}

fn check(label: &str, spec: &MatMul, a: &[f32], b: &[f32]) {
    let (c, _) = matmul::run(&ctx(), spec, a, b, None).expect(label);
    let want = reference(spec, a, b);
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    MATMUL_TOL
        .scaled(scale)
        .compare(columns(&c, spec), want.iter().copied())
        .unwrap_or_else(|e| panic!("{label}: {e:?}"));
}

#[test]
fn products_match_the_reference_for_ragged_shapes_and_every_transpose() {
    let shapes = [(1, 1, 1), (65, 130, 17), (70, 3, 100), (129, 64, 16)];
    for (m, n, k) in shapes {
        for trans_a in [false, true] {
            for trans_b in [false, true] {
                let spec = MatMul::plain(m, n, k, trans_a, trans_b);
                let a = data((m * k) as usize, 1 + m as u64);
                let b = data((k * n) as usize, 2 + n as u64);
                check(
                    &format!("{m}×{k}·{k}×{n} ta={trans_a} tb={trans_b}"),
                    &spec,
                    &a,
                    &b,
                );
            }
        }
    }
}

#[test]
fn similarity_terms_scale_and_separation_epilogues() {
    let (m, n, k) = (37, 77, 29);
    let a = data(m * k, 5);
    let b = data(n * k, 6);
    for similarity in [
        Similarity::Dot,
        Similarity::NegEuclidean,
        Similarity::NegManhattan,
    ] {
        for epilogue in [
            Epilogue::Scale { accumulate: false },
            Epilogue::Power {
                degree: 3,
                rectified: false,
            },
            Epilogue::Power {
                degree: 2,
                rectified: true,
            },
        ] {
            let spec = MatMul {
                alpha: 0.7,
                similarity,
                epilogue,
                ..MatMul::plain(m as u32, n as u32, k as u32, false, true)
            };
            check(&format!("{similarity:?} {epilogue:?}"), &spec, &a, &b);
        }
    }
}

#[test]
fn softmax_partials_fold_to_the_row_log_sum_exp() {
    let (m, n, k) = (9, 300, 40);
    let a = data(m * k, 7);
    let b = data(n * k, 8);
    // β·s in the hundreds: e^{β s} overflows f32, the partials must not.
    let spec = MatMul {
        alpha: 60.0,
        epilogue: Epilogue::SoftmaxPartials,
        ..MatMul::plain(m as u32, n as u32, k as u32, false, true)
    };
    let (c, stats) = matmul::run(&ctx(), &spec, &a, &b, None).unwrap();
    let want = reference(&spec, &a, &b);
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    MATMUL_TOL
        .scaled(scale)
        .compare(columns(&c, &spec), want.iter().copied())
        .unwrap();
    let tiles = spec.stat_ld as usize;
    assert_eq!(tiles, n.div_ceil(64));
    assert_eq!(stats.len(), m * tiles);
    for r in 0..m {
        let row = &want[r * n..(r + 1) * n];
        let top = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let lse = top + row.iter().map(|v| (v - top).exp()).sum::<f64>().ln();
        let parts = &stats[r * tiles..(r + 1) * tiles];
        let pm = parts
            .iter()
            .fold(f64::NEG_INFINITY, |a, p| a.max(p[0] as f64));
        let l: f64 = parts
            .iter()
            .map(|p| p[1] as f64 * (p[0] as f64 - pm).exp())
            .sum();
        let got = pm + l.ln();
        assert!(
            lse.is_finite() && got.is_finite(),
            "row {r}: {got} vs {lse}"
        );
        assert!(
            (got - lse).abs() <= 1e-4 * lse.abs().max(1.0),
            "row {r}: lse {got} vs {lse}"
        );
    }
}

#[test]
fn long_contractions_are_sliced_and_accumulate() {
    let k = MAX_K_SLICE as usize + 1_234;
    let (m, n) = (3, 5);
    let a = data(m * k, 9);
    let b = data(k * n, 10);
    let spec = MatMul::plain(m as u32, n as u32, k as u32, false, false);
    check("k beyond one slice", &spec, &a, &b);
    // Accumulating into C's previous contents.
    let init: Vec<f32> = (0..m * n).map(|i| i as f32).collect();
    let acc = MatMul {
        epilogue: Epilogue::Scale { accumulate: true },
        ..spec
    };
    let (c, _) = matmul::run(&ctx(), &acc, &a, &b, Some(&init)).unwrap();
    let want: Vec<f64> = reference(&spec, &a, &b)
        .iter()
        .zip(&init)
        .map(|(v, &c0)| v + c0 as f64)
        .collect();
    assert_eq!(want.len(), c.len());
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    MATMUL_TOL
        .scaled(scale)
        .compare(c.iter().copied(), want.iter().copied())
        .unwrap();
    // Epilogues that need the whole contraction refuse to slice it.
    let power = MatMul {
        epilogue: Epilogue::Power {
            degree: 2,
            rectified: false,
        },
        ..spec
    };
    let err = matmul::run(&ctx(), &power, &a, &b, None).unwrap_err();
    assert!(
        matches!(err, dam::Error::TooLarge { argument, .. } if argument.contains("contraction")),
        "{err}"
    );
    let bad = matmul::run(&ctx(), &spec, &a, &b, Some(&init[..3])).unwrap_err();
    assert!(
        matches!(bad, dam::Error::DimensionMismatch { argument, .. } if argument.starts_with("c_init"))
    );
}

/// Non-finite input is not hidden: a NaN in row r of op(A) makes exactly row r of C NaN,
/// and every other row still equals the reference.
#[test]
fn nan_input_reaches_exactly_the_outputs_it_touches() {
    let (m, n, k) = (70, 67, 33);
    let mut a = data(m * k, 11);
    let b = data(n * k, 12);
    a[5 * k + 17] = f32::NAN;
    let spec = MatMul::plain(m as u32, n as u32, k as u32, false, true);
    let (c, _) = matmul::run(&ctx(), &spec, &a, &b, None).unwrap();
    let want = reference(&spec, &a, &b);
    assert_eq!(c.len(), want.len());
    for r in 0..m {
        let row = &c[r * n..(r + 1) * n];
        if r == 5 {
            assert!(row.iter().all(|v| v.is_nan()), "row 5 carries the NaN");
        } else {
            let expected = &want[r * n..(r + 1) * n];
            let scale = expected.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            MATMUL_TOL
                .scaled(scale)
                .compare(row.iter().copied(), expected.iter().copied())
                .unwrap_or_else(|e| panic!("row {r}: {e:?}"));
        }
    }
}

/// The retrieval step on the matrix product (forced for every batch) equals the CPU
/// reference step: several pattern buffers and blocks, ragged batches, f16 storage,
/// β·s in the thousands.
#[test]
fn retrieval_step_on_the_matrix_product_matches_the_reference() {
    let options = WgpuOptions {
        gemm_min_batch: Some(1),
        max_binding_bytes: Some(1 << 20),
        ..WgpuOptions::default()
    };
    let device = gpu_with(options);
    let raw = unit_patterns(20_001, 24, 31);
    let cases = [
        (Similarity::Dot, 8.0, Storage::F32, Projection::None, 1),
        (Similarity::Dot, 8.0, Storage::F32, Projection::Sphere, 70),
        (
            Similarity::NegEuclidean,
            3.0,
            Storage::F32,
            Projection::None,
            5,
        ),
        (Similarity::Dot, 4.0, Storage::F16, Projection::None, 9),
        (Similarity::Dot, 4_000.0, Storage::F32, Projection::None, 13),
    ];
    for (similarity, beta, storage, projection, b) in cases {
        let queries = noisy_queries(&raw, b, 0.3, 32 + b as u64);
        let patterns = Patterns::new(raw.clone()).unwrap();
        let build = |device: Device| {
            Retriever::builder(patterns.clone())
                .similarity(similarity)
                .separation(Separation::Softmax { beta })
                .projection(projection)
                .storage(storage)
                .device(device)
                .build()
                .unwrap()
        };
        let on_gpu = build(device.clone()).step(queries.view()).unwrap();
        let cpu = build(Device::Reference);
        let reference =
            dam::cpu::reference::step(cpu.config(), cpu.patterns(), queries.view()).unwrap();
        compare_states(
            &format!("{similarity:?} β={beta} {storage:?} {projection:?} B={b}"),
            &on_gpu,
            &reference,
        );
    }
}

fn compare_states(label: &str, got: &Array2<f32>, want: &Array2<f32>) {
    assert_eq!(got.dim(), want.dim(), "{label}: shape");
    let scale = want.iter().fold(1.0f64, |m, &v| m.max(v.abs() as f64));
    STATE_TOL
        .scaled(scale)
        .compare(got.iter().copied(), want.iter().copied())
        .unwrap_or_else(|e| panic!("{label}: {e:?}"));
}
