//! Streaming log-sum-exp over procedural patterns on the CPU: each pattern is generated
//! from (seed, μ), folded into an online-softmax state in f64, and forgotten, so memory is
//! O(N) whatever P is. Chunks of the pattern range run on all cores and merge exactly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use dam_core::procedural::{fill, Stream, StreamRequest, StreamStats};

/// Patterns per work item.
const CHUNK: u64 = 1 << 16;

/// Runs a [`StreamRequest`]: one online-softmax state per query, merged over chunks of
/// the pattern range in a fixed order (so every bit is independent of thread timing).
pub fn stream_dot(request: &StreamRequest<'_>) -> Vec<StreamStats> {
    let StreamRequest {
        kind,
        dim,
        start,
        end,
        beta,
        queries,
        seeds,
    } = *request;
    assert_eq!(queries.len(), seeds.len() * dim, "queries must be B×N");
    let b = seeds.len();
    let chunks = (end.saturating_sub(start)).div_ceil(CHUNK);
    let total = chunks * b as u64;
    let next = AtomicU64::new(0);
    // Per query: the merged prefix of chunks and the chunks that finished out of order,
    // so the merge order (and so every last bit) does not depend on thread timing.
    type Fold = (StreamStats, u64, BTreeMap<u64, StreamStats>);
    let results: Vec<Mutex<Fold>> = (0..b)
        .map(|_| Mutex::new((StreamStats::empty(dim), 0, BTreeMap::new())))
        .collect();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut xi = vec![0.0f32; dim];
                loop {
                    let item = next.fetch_add(1, Ordering::Relaxed);
                    if item >= total {
                        break;
                    }
                    let (q, chunk) = ((item % b as u64) as usize, item / b as u64);
                    let x = &queries[q * dim..(q + 1) * dim];
                    let mut stats = StreamStats::empty(dim);
                    let lo = start + chunk * CHUNK;
                    for mu in lo..(lo + CHUNK).min(end) {
                        fill(kind, seeds[q], Stream::Patterns, mu, &mut xi);
                        let s: f64 = xi.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum();
                        stats.push(mu, s, beta as f64 * s, &xi);
                    }
                    let mut fold = results[q].lock().unwrap_or_else(|p| p.into_inner());
                    let (merged, next_chunk, pending) = &mut *fold;
                    pending.insert(chunk, stats);
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
