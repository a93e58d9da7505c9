//! Exact top-k search on the CPU: the reference (f64 similarities, any [`Similarity`])
//! and, for dot similarity, a blocked multi-threaded path (f32 GEMM scores, the B×P
//! matrix never materialised).

use dam_core::{Patterns, SearchResult, Similarity, TopK};
use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, ArrayView2, Axis};

use crate::fast::{block_rows, per_range, QUERY_CHUNK};

/// The reference: every similarity in f64 ([`crate::similarity`]), rounded to f32, kept
/// by [`TopK`]. Inputs must already be validated; `k` ≥ 1.
pub fn search_reference(
    similarity: Similarity,
    patterns: &Patterns,
    queries: ArrayView2<'_, f32>,
    k: usize,
) -> SearchResult {
    let selections = queries
        .rows()
        .into_iter()
        .map(|x| {
            let x = x.to_vec();
            let mut top = TopK::new(k);
            for (row, s) in crate::scores(similarity, patterns, &x)
                .into_iter()
                .enumerate()
            {
                top.push(row as u64, s as f32);
            }
            top
        })
        .collect();
    SearchResult::from_selections(selections, k.min(patterns.count()))
}

/// Dot-similarity search: for each thread's contiguous range of patterns, S = Q·Ξ_bᵀ one
/// block at a time (f32 GEMM), each score offered to the query's [`TopK`] only when it
/// beats the current k-th; the per-thread selections are merged in range order, so the
/// result does not depend on timing. `threads` = 0: all cores. Inputs must already be
/// validated; `k` ≥ 1.
pub fn search_dot(
    patterns: &Patterns,
    queries: ArrayView2<'_, f32>,
    k: usize,
    threads: usize,
) -> SearchResult {
    let view = patterns.view();
    let block = block_rows(view.ncols());
    let mut selections = Vec::with_capacity(queries.nrows());
    for start in (0..queries.nrows()).step_by(QUERY_CHUNK) {
        let chunk = queries.slice(s![start..(start + QUERY_CHUNK).min(queries.nrows()), ..]);
        let parts = per_range(view, block, threads, |range, first| {
            select(range, first, chunk, k, block)
        });
        let mut parts = parts.into_iter();
        let mut merged = parts.next().expect("at least one range");
        for part in parts {
            for (into, from) in merged.iter_mut().zip(part) {
                for &(s, row) in from.items() {
                    into.push(row, s);
                }
            }
        }
        selections.extend(merged);
    }
    SearchResult::from_selections(selections, k.min(view.nrows()))
}

fn select(
    patterns: ArrayView2<'_, f32>,
    first: usize,
    queries: ArrayView2<'_, f32>,
    k: usize,
    block: usize,
) -> Vec<TopK> {
    let b = queries.nrows();
    let mut tops: Vec<TopK> = (0..b).map(|_| TopK::new(k)).collect();
    let mut scores = Array2::<f32>::zeros((b, block));
    let mut start = 0;
    while start < patterns.nrows() {
        let end = (start + block).min(patterns.nrows());
        let mut sb = scores.slice_mut(s![.., ..end - start]);
        general_mat_mul(
            1.0,
            &queries,
            &patterns.slice(s![start..end, ..]).t(),
            0.0,
            &mut sb,
        );
        for (top, row) in tops.iter_mut().zip(sb.axis_iter(Axis(0))) {
            let mut threshold = top.threshold();
            for (j, &s) in row.iter().enumerate() {
                // Rows arrive in increasing order, so a tie never displaces a held item.
                if s > threshold {
                    top.push((first + start + j) as u64, s);
                    threshold = top.threshold();
                }
            }
        }
        start = end;
    }
    tops
}
