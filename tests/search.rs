//! Exact top-k search on both devices against the f64 reference: every similarity, f32
//! and f16 storage, patterns split over several bindings, exact ties broken by id, k
//! beyond P, bad k, and stable ids after edits.

mod common;

use dam::cpu::reference::search as search_reference;
use dam::{
    Config, Device, Error, Patterns, Retriever, SearchResult, Similarity, Storage, Tolerance,
    WgpuOptions,
};
use ndarray::{Array2, ArrayView2};

/// Similarities: f32 sums (GEMM on the CPU, the matrix product on wgpu) vs f64.
const SCORE_TOL: Tolerance = Tolerance::new(1e-5, 1e-5);

fn devices() -> Vec<(&'static str, Device)> {
    vec![
        ("cpu", Device::Cpu),
        ("reference", Device::Reference),
        ("wgpu", common::gpu()),
        // 4 KiB bindings: the patterns span many buffers and blocks.
        (
            "wgpu-small-bindings",
            common::gpu_with(WgpuOptions {
                max_binding_bytes: Some(4096),
                ..WgpuOptions::default()
            }),
        ),
    ]
}

fn memory(
    rows: &Array2<f32>,
    similarity: Similarity,
    device: &Device,
    storage: Storage,
) -> Retriever {
    Retriever::builder(Patterns::new(rows.clone()).unwrap())
        .config(Config {
            similarity,
            ..Config::default()
        })
        .storage(storage)
        .device(device.clone())
        .build()
        .unwrap()
}

/// Same scores within tolerance, and the same ids except where the reference itself has
/// two scores within tolerance of each other (then either order is exact in f32).
fn assert_search_matches(label: &str, got: &SearchResult, want: &SearchResult) {
    assert_eq!(got.ids.dim(), want.ids.dim(), "{label}: shape");
    let scale = want
        .scores
        .iter()
        .fold(1.0f64, |m, v| m.max(v.abs() as f64));
    let tol = SCORE_TOL.scaled(scale);
    tol.compare(got.scores.iter().copied(), want.scores.iter().copied())
        .unwrap_or_else(|m| panic!("{label}: scores differ: {m:?}"));
    for q in 0..want.ids.nrows() {
        for j in 0..want.ids.ncols() {
            if got.ids[[q, j]] != want.ids[[q, j]] {
                let s = want.scores[[q, j]] as f64;
                let near = want
                    .scores
                    .row(q)
                    .iter()
                    .enumerate()
                    .any(|(i, &t)| i != j && tol.compare([t], [s as f32]).is_ok());
                assert!(
                    near,
                    "{label}: query {q} rank {j}: id {} vs {}",
                    got.ids[[q, j]],
                    want.ids[[q, j]]
                );
            }
        }
    }
}

fn reference(
    rows: ArrayView2<'_, f32>,
    similarity: Similarity,
    queries: ArrayView2<'_, f32>,
    k: usize,
) -> SearchResult {
    search_reference(
        similarity,
        &Patterns::new(rows.to_owned()).unwrap(),
        queries,
        k,
    )
}

#[test]
fn every_similarity_on_every_device_matches_the_reference() {
    // P = 301 (not a multiple of any tile), N = 37, B = 19 (odd, not a tile multiple).
    let rows = common::unit_patterns(301, 37, 21);
    let queries = common::noisy_queries(&rows, 19, 0.5, 22);
    for (name, device) in devices() {
        for similarity in [
            Similarity::Dot,
            Similarity::NegEuclidean,
            Similarity::NegManhattan,
        ] {
            for storage in [Storage::F32, Storage::F16] {
                let m = memory(&rows, similarity, &device, storage);
                for k in [1, 10, 64] {
                    let got = m.search(queries.view(), k).unwrap();
                    let want = reference(m.patterns().view(), similarity, queries.view(), k);
                    assert_search_matches(
                        &format!("{name} {similarity:?} {storage:?} k={k}"),
                        &got,
                        &want,
                    );
                }
            }
        }
    }
}

#[test]
fn exact_ties_go_to_the_lower_id_and_k_beyond_p_returns_all() {
    // ±1 patterns and queries: every dot product is an exact integer, many tie; rows
    // repeat, so equal scores are everywhere.
    let base = common::gaussian(8, 16, 1.0, 5).mapv(|v| if v >= 0.0 { 1.0 } else { -1.0 });
    let rows = Array2::from_shape_fn((40, 16), |(r, c)| base[[r % 8, c]]);
    let queries = common::gaussian(5, 16, 1.0, 6).mapv(|v| if v >= 0.0 { 1.0f32 } else { -1.0 });
    for (name, device) in devices() {
        let m = memory(&rows, Similarity::Dot, &device, Storage::F32);
        let want = reference(rows.view(), Similarity::Dot, queries.view(), 12);
        let got = m.search(queries.view(), 12).unwrap();
        assert_eq!(got, want, "{name}: exact ties");
        for q in 0..5 {
            for j in 1..12 {
                let (a, b) = (got.scores[[q, j - 1]], got.scores[[q, j]]);
                assert!(
                    a > b || (a == b && got.ids[[q, j - 1]] < got.ids[[q, j]]),
                    "{name}: order"
                );
            }
        }
        let all = m.search(queries.view(), 1000).unwrap();
        assert_eq!(all.ids.dim(), (5, 40), "{name}: k beyond P gives P");
        assert!(matches!(
            m.search(queries.view(), 0),
            Err(Error::InvalidParameter { argument: "k", .. })
        ));
        let wrong = Array2::<f32>::zeros((2, 15));
        assert!(matches!(
            m.search(wrong.view(), 3),
            Err(Error::DimensionMismatch { .. })
        ));
        let mut nan = queries.clone();
        nan[[2, 4]] = f32::INFINITY;
        assert!(matches!(
            m.search(nan.view(), 3),
            Err(Error::NonFinite { .. })
        ));
    }
}

#[test]
fn search_reports_stable_ids_after_edits() {
    let rows = common::unit_patterns(30, 12, 7);
    for (name, device) in devices() {
        let mut m = memory(&rows, Similarity::Dot, &device, Storage::F32);
        m.remove(&[0, 3, 4, 17]).unwrap();
        let extra = common::unit_patterns(5, 12, 8);
        let new_ids = m.insert(extra.view()).unwrap();
        // Each inserted pattern finds itself first (its own row is its best match under
        // the Euclidean view; with dot, use the exact query).
        let got = m.search(extra.view(), 1).unwrap();
        let rows_now = m.patterns().view().to_owned();
        let want = reference(rows_now.view(), Similarity::Dot, extra.view(), 1);
        for q in 0..5 {
            assert_eq!(
                got.ids[[q, 0]],
                m.ids()[want.ids[[q, 0]] as usize],
                "{name}"
            );
        }
        assert!(new_ids.iter().all(|id| *id >= 30));
        assert!(
            got.ids.iter().all(|id| m.row_of(*id).is_some()),
            "{name}: only stored ids"
        );
    }
}
