//! Streaming log-sum-exp over procedural patterns on the CPU: each pattern is generated
//! from (seed, μ), folded into an online-softmax state in f64, and forgotten, so memory is
//! O(N) whatever P is. Chunks of the pattern range run on all cores and merge exactly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use dam_core::procedural::{fill, Stream, StreamRequest, StreamStats};

/// Patterns per work item (of the reference and of the fast stream).
pub(crate) const CHUNK: u64 = 1 << 16;

/// Runs a [`StreamRequest`]: one online-softmax state per query, merged over chunks of
/// the pattern range in a fixed order (so every bit is independent of thread timing).
pub fn stream_dot(request: &StreamRequest<'_>) -> Vec<StreamStats> {
    let StreamRequest {
        kind,
        dim,
        beta,
        queries,
        seeds,
        ..
    } = *request;
    fold_chunks(request, Vec::new, |xi: &mut Vec<f32>, q, lo, hi| {
        xi.resize(dim, 0.0);
        let x = &queries[q * dim..(q + 1) * dim];
        let mut stats = StreamStats::empty(dim);
        for mu in lo..hi {
            fill(kind, seeds[q], Stream::Patterns, mu, xi);
            let s: f64 = xi.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum();
            stats.push(mu, s, beta as f64 * s, xi);
        }
        stats
    })
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
        .map(|_| Mutex::new((StreamStats::empty(dim), 0, BTreeMap::new())))
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
