//! The fast CPU path for one dot-product softmax update: fused, cache-blocked and
//! multi-threaded. It is *not* the reference (that is the rest of this crate): it sums in
//! f32 through `matrixmultiply`'s GEMM kernels and is tested against the reference with a
//! named tolerance (`tests/fast_cpu.rs`).
//!
//! For each thread's contiguous range of patterns, blocks of `block_rows` patterns are
//! processed in turn: S = β·Q·Ξ_bᵀ (B×block, one GEMM), an online softmax per query
//! (running max m, l = Σ e^{z−m}, accumulator rescaled by e^{m_old−m_new} when m grows),
//! then acc += e^{S−m}·Ξ_b (a second GEMM). The B×P matrix is never materialised; the
//! per-thread (m, l, acc) are merged in a fixed order, so results do not depend on timing.

use dam_core::{Patterns, Projection};
use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, ArrayView2, Axis};

/// Online-softmax state of one range of patterns for a batch of B queries.
struct Partial {
    m: Vec<f32>,
    l: Vec<f32>,
    acc: Array2<f32>,
    best: Vec<(f32, usize)>,
}

/// Patterns per block: about 256 KiB of patterns, so a block stays in L2 between the two
/// GEMMs that read it.
pub fn block_rows(dim: usize) -> usize {
    ((256 << 10) / (4 * dim.max(1))).clamp(32, 4096)
}

fn partial(
    patterns: ArrayView2<'_, f32>,
    first: usize,
    queries: ArrayView2<'_, f32>,
    beta: f32,
    block: usize,
) -> Partial {
    let (b, n) = queries.dim();
    let mut out = Partial {
        m: vec![f32::NEG_INFINITY; b],
        l: vec![0.0; b],
        acc: Array2::zeros((b, n)),
        best: vec![(f32::NEG_INFINITY, usize::MAX); b],
    };
    let mut scores = Array2::<f32>::zeros((b, block));
    let mut start = 0;
    while start < patterns.nrows() {
        let end = (start + block).min(patterns.nrows());
        let xb = patterns.slice(s![start..end, ..]);
        let mut sb = scores.slice_mut(s![.., ..end - start]);
        general_mat_mul(1.0, &queries, &xb.t(), 0.0, &mut sb);
        for (q, mut row) in sb.axis_iter_mut(Axis(0)).enumerate() {
            let mut tile_max = f32::NEG_INFINITY;
            for (j, s) in row.iter().enumerate() {
                // Nearest: the most similar pattern, ties to the lower index.
                if *s > out.best[q].0 {
                    out.best[q] = (*s, first + start + j);
                }
                tile_max = tile_max.max(beta * s);
            }
            let m_new = out.m[q].max(tile_max);
            let scale = (out.m[q] - m_new).exp(); // 0 for the first block (m = −∞)
            let mut sum = 0.0;
            for s in row.iter_mut() {
                *s = (beta * *s - m_new).exp();
                sum += *s;
            }
            out.l[q] = out.l[q] * scale + sum;
            out.m[q] = m_new;
            if scale != 1.0 {
                out.acc.row_mut(q).mapv_inplace(|a| a * scale);
            }
        }
        general_mat_mul(1.0, &sb.view(), &xb, 1.0, &mut out.acc);
        start = end;
    }
    out
}

/// What one fused step returns.
#[derive(Debug, Clone)]
pub struct Step {
    /// proj(Σ_μ softmax(β s)_μ ξ^μ) for each query (B×N).
    pub states: Array2<f32>,
    /// log Σ_μ e^{β s_μ} for each query (f32 sums).
    pub lse: Vec<f64>,
    /// Index of the most similar pattern (ties to the lowest index).
    pub nearest: Vec<usize>,
}

/// Queries per pass: bounds the per-thread scratch (B×block scores, B×N accumulator).
pub(crate) const QUERY_CHUNK: usize = 1024;

/// Runs `work(rows, first row)` over contiguous ranges of whole `block`s of `patterns`, one
/// range per thread (`threads` = 0: all cores), and returns the results in range order,
/// so that merging them does not depend on timing.
pub(crate) fn per_range<T: Send>(
    patterns: ArrayView2<'_, f32>,
    block: usize,
    threads: usize,
    work: impl Fn(ArrayView2<'_, f32>, usize) -> T + Sync,
) -> Vec<T> {
    let p = patterns.nrows();
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |t| t.get()),
        t => t,
    };
    let per = p.div_ceil(threads).div_ceil(block).max(1) * block;
    let ranges: Vec<(usize, usize)> = (0..p).step_by(per).map(|a| (a, (a + per).min(p))).collect();
    if ranges.len() == 1 {
        return vec![work(patterns, 0)];
    }
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .iter()
            .map(|&(a, e)| scope.spawn(move || work(patterns.slice(s![a..e, ..]), a)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("CPU worker panicked"))
            .collect()
    })
}

/// One softmax update with dot similarity for every query (B×N), on `threads` threads
/// (0 = all cores). Inputs must already be validated (finite, matching N, in range).
/// Batches beyond 1,024 queries run in passes of 1,024 (queries never interact).
pub fn softmax_dot_step(
    patterns: &Patterns,
    queries: ArrayView2<'_, f32>,
    beta: f32,
    projection: Projection,
    threads: usize,
) -> Step {
    if queries.nrows() <= QUERY_CHUNK {
        return step_chunk(patterns, queries, beta, projection, threads);
    }
    let mut states = Array2::<f32>::zeros(queries.dim());
    let (mut lse, mut nearest) = (Vec::new(), Vec::new());
    for start in (0..queries.nrows()).step_by(QUERY_CHUNK) {
        let end = (start + QUERY_CHUNK).min(queries.nrows());
        let part = step_chunk(
            patterns,
            queries.slice(s![start..end, ..]),
            beta,
            projection,
            threads,
        );
        states.slice_mut(s![start..end, ..]).assign(&part.states);
        lse.extend(part.lse);
        nearest.extend(part.nearest);
    }
    Step {
        states,
        lse,
        nearest,
    }
}

fn step_chunk(
    patterns: &Patterns,
    queries: ArrayView2<'_, f32>,
    beta: f32,
    projection: Projection,
    threads: usize,
) -> Step {
    let view = patterns.view();
    let n = view.ncols();
    let block = block_rows(n);
    let parts = per_range(view, block, threads, |range, first| {
        partial(range, first, queries, beta, block)
    });
    merge(parts, projection, n)
}

fn merge(parts: Vec<Partial>, projection: Projection, n: usize) -> Step {
    let b = parts[0].m.len();
    let mut states = Array2::<f32>::zeros((b, n));
    let mut lse = Vec::with_capacity(b);
    let mut nearest = Vec::with_capacity(b);
    for q in 0..b {
        let big_m = parts
            .iter()
            .map(|p| p.m[q])
            .fold(f32::NEG_INFINITY, f32::max);
        let mut big_l = 0.0f64;
        let mut acc = vec![0.0f64; n];
        let mut best = (f32::NEG_INFINITY, usize::MAX);
        for part in &parts {
            let w = ((part.m[q] - big_m) as f64).exp();
            big_l += part.l[q] as f64 * w;
            for (a, v) in acc.iter_mut().zip(part.acc.row(q)) {
                *a += *v as f64 * w;
            }
            // Ranges are in index order, so a strict > keeps the lowest index on ties.
            if part.best[q].0 > best.0 {
                best = part.best[q];
            }
        }
        acc.iter_mut().for_each(|a| *a /= big_l);
        crate::project(projection, &mut acc);
        states
            .row_mut(q)
            .iter_mut()
            .zip(&acc)
            .for_each(|(x, a)| *x = *a as f32);
        lse.push(big_m as f64 + big_l.ln());
        nearest.push(best.1);
    }
    Step {
        states,
        lse,
        nearest,
    }
}
