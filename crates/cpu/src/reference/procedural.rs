//! Streaming log-sum-exp over procedural patterns on the CPU: each pattern is generated
//! from (seed, μ), folded into an online-softmax state in f64, and forgotten, so memory is
//! O(N) whatever P is. Chunks of the pattern range run on all cores and merge exactly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use dam_core::procedural::{
    fill, squared_distance, Stream, StreamRequest, StreamSeparation, StreamStats,
};
use dam_core::weights::relu_kernel_sq;

/// Patterns per work item (of the reference and of the fast stream).
pub(crate) const CHUNK: u64 = 1 << 16;

/// Runs a [`StreamRequest`]: one online-softmax state per query, merged over chunks of
/// the pattern range in a fixed order (so every bit is independent of thread timing).
pub fn stream_dot(request: &StreamRequest<'_>) -> Vec<StreamStats> {
    stream(request, StreamSeparation::Softmax)
}

/// [`stream_dot`] that also evaluates `separation`: for
/// [`StreamSeparation::LogSumRelu`], per query and pattern d² = ‖x − ξ‖² from |x|², x·ξ
/// and |ξ|² ([`squared_distance`]) and the kernel
/// [`relu_kernel_sq`](dam_core::weights::relu_kernel_sq), folded into
/// [`StreamStats::relu`].
///
/// # Panics
/// If `queries` is not B×N for B = `seeds.len()`.
pub fn stream(request: &StreamRequest<'_>, separation: StreamSeparation) -> Vec<StreamStats> {
    let StreamRequest {
        kind,
        dim,
        beta,
        queries,
        seeds,
        ..
    } = *request;
    let relu_beta = separation.relu_beta();
    fold_chunks(
        request,
        separation,
        Vec::new,
        |xi: &mut Vec<f32>, q, lo, hi| {
            xi.resize(dim, 0.0);
            let x = &queries[q * dim..(q + 1) * dim];
            let xx: f64 = x.iter().map(|&a| a as f64 * a as f64).sum();
            let mut stats = StreamStats::empty_for(dim, separation);
            for mu in lo..hi {
                fill(kind, seeds[q], Stream::Patterns, mu, xi);
                let s: f64 = xi.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum();
                stats.push(mu, s, beta as f64 * s, xi);
                if let (Some(relu), Some(rb)) = (stats.relu.as_mut(), relu_beta) {
                    let pp: f64 = xi.iter().map(|&a| a as f64 * a as f64).sum();
                    let d2 = squared_distance(xx, s, pp);
                    relu.push(mu, d2, relu_kernel_sq(rb, d2), xi);
                }
            }
            stats
        },
    )
}

/// The scheduler of every CPU stream: the pattern range of each query in chunks of
/// [`CHUNK`] patterns, `chunk(scratch, query, first, end)` on all cores (one scratch per
/// thread), and per query the chunks merged in index order — chunks that finish early
/// wait — so every bit of the result is independent of thread timing.
///
/// # Panics
/// If `queries` is not B×N for B = `seeds.len()`.
pub(crate) fn fold_chunks<S>(
    request: &StreamRequest<'_>,
    separation: StreamSeparation,
    scratch: impl Fn() -> S + Sync,
    chunk: impl Fn(&mut S, usize, u64, u64) -> StreamStats + Sync,
) -> Vec<StreamStats> {
    let StreamRequest {
        dim,
        start,
        end,
        queries,
        seeds,
        ..
    } = *request;
    assert_eq!(queries.len(), seeds.len() * dim, "queries must be B×N");
    let b = seeds.len();
    let chunks = (end.saturating_sub(start)).div_ceil(CHUNK);
    let total = chunks * b as u64;
    let next = AtomicU64::new(0);
    // Per query: the merged prefix of chunks and the chunks that finished out of order.
    type Fold = (StreamStats, u64, BTreeMap<u64, StreamStats>);
    let results: Vec<Mutex<Fold>> = (0..b)
        .map(|_| Mutex::new((StreamStats::empty_for(dim, separation), 0, BTreeMap::new())))
        .collect();
    let workers = crate::fast::thread_count(0).min(total.max(1) as usize);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut own = scratch();
                loop {
                    let item = next.fetch_add(1, Ordering::Relaxed);
                    if item >= total {
                        break;
                    }
                    let (q, index) = ((item % b as u64) as usize, item / b as u64);
                    let lo = start + index * CHUNK;
                    let stats = chunk(&mut own, q, lo, (lo + CHUNK).min(end));
                    let mut fold = results[q].lock().unwrap_or_else(|p| p.into_inner());
                    let (merged, next_chunk, pending) = &mut *fold;
                    pending.insert(index, stats);
                    while let Some(ready) = pending.remove(next_chunk) {
                        merged.merge(&ready);
                        *next_chunk += 1;
                    }
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()).0)
        .collect()
}
