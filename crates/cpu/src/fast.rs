//! The fast CPU backend's one pass over the stored patterns, for every similarity and
//! separation: cache-blocked, multi-threaded, f32 products, f64 where a sum needs it. It is
//! *not* the reference (that is [`crate::reference`]); every result is tested against the
//! reference with a named tolerance.
//!
//! For each thread's contiguous range of patterns, blocks of [`block_rows`] patterns are
//! processed in turn:
//! 1. similarities S (B×block, f32): dot as one GEMM; negative Euclidean from the norms
//!    and the same GEMM, −√(‖x‖² + ‖ξ‖² − 2x·ξ), recomputed directly where the two
//!    vectors are so close that the expansion would cancel; negative Manhattan by a
//!    blocked L1 kernel in eight f32 lanes;
//! 2. an epilogue per query that turns S into scaled update weights in place — softmax and
//!    exponential with a running max m (w = e^{βs−m}), polynomials with a running peak
//!    (w = F′(s)/peak, F′ in f64) — and keeps the energy terms, the most similar pattern
//!    and, for max / top-k, the selection;
//! 3. acc += W·T_b, a second GEMM over the same block while it is in cache (T = the
//!    patterns for an update, or the values of a key → value memory).
//!
//! The per-thread states are merged in range order, so results do not depend on timing,
//! and the B×P matrix is never materialised. When there are fewer blocks than threads the
//! queries are split across threads instead.

use dam_core::weights::{confidence, OnlineLse};
use dam_core::{Projection, Separation, Similarity, TopK};
use ndarray::{s, Array2, ArrayView2, Axis};

use crate::product::gemm;
use crate::simd;

/// Patterns per block: about 256 KiB of patterns, so a block stays in L2 between the two
/// products that read it.
pub fn block_rows(dim: usize) -> usize {
    ((256 << 10) / (4 * dim.max(1))).clamp(32, 4096)
}

/// Bytes of f64 similarities an entmax pass holds at once (the states go in groups of
/// about this much B×P, at least one state).
pub const ENTMAX_SCORES_BYTES: usize = 64 << 20;

/// Queries per pass: bounds the per-thread scratch (B×block scores, B×M accumulator).
pub const QUERY_CHUNK: usize = 1024;

/// Threads for a request of `requested` (0 = every core). The core count is asked once:
/// on Linux it reads the cgroup quota, which costs more than a small pass.
pub fn thread_count(requested: usize) -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    match requested {
        0 => *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |t| t.get())),
        t => t,
    }
}

/// Multiply-adds below which a pass runs on one thread: starting threads costs more than
/// sharing so little work.
pub const PARALLEL_WORK: usize = 1 << 22;

/// Threads for a pass of `b` states over `p` patterns of dimension `n`: `requested`, or
/// for 0 every core — but one for passes below [`PARALLEL_WORK`].
pub fn threads_for(b: usize, p: usize, n: usize, requested: usize) -> usize {
    match requested {
        0 if b.saturating_mul(p).saturating_mul(n.max(1)) < PARALLEL_WORK => 1,
        t => thread_count(t),
    }
}

/// How the fast CPU backend describes itself: `cpu (2 threads, avx2)`.
pub fn describe(threads: usize) -> String {
    format!(
        "cpu ({} threads, {})",
        thread_count(threads),
        simd::instruction_set()
    )
}

/// ‖ξ‖² of every row (summed in f64), what negative Euclidean similarity needs.
pub fn squared_norms(rows: ArrayView2<'_, f32>) -> Vec<f32> {
    rows.rows()
        .into_iter()
        .map(|r| r.iter().map(|&v| v as f64 * v as f64).sum::<f64>() as f32)
        .collect()
}

/// The stored patterns as the fast paths read them.
#[derive(Debug, Clone, Copy)]
pub struct Stored<'a> {
    /// P×N, standard layout.
    pub patterns: ArrayView2<'a, f32>,
    /// ‖ξ‖² of each pattern ([`squared_norms`]) when the similarity is negative Euclidean;
    /// may be empty otherwise.
    pub squared_norms: &'a [f32],
}

/// One pass over the stored patterns for a batch of states: what to compute.
#[derive(Debug, Clone, Copy)]
pub struct Pass<'a> {
    /// Similarity between states and patterns.
    pub similarity: Similarity,
    /// Separation: the weights of the update and the energy.
    pub separation: Separation,
    /// Projection of each update (use [`Projection::None`] for values).
    pub projection: Projection,
    /// The stored patterns.
    pub stored: Stored<'a>,
    /// P×M rows summed with the update weights: the patterns for an update, the values of
    /// a key → value memory for a read-out.
    pub targets: ArrayView2<'a, f32>,
    /// For softmax: also keep the k patterns of largest weight and the participation ratio.
    pub report_top: Option<usize>,
    /// Threads (0 = every core).
    pub threads: usize,
}

/// What one pass gives for B states.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The update of each of the first `updates` states: proj(f · Σ_μ w_μ T^μ) (updates×M);
    /// a row that left f32 holds non-finite values.
    pub next: Array2<f32>,
    /// E(x) of every state (f64; unchecked).
    pub energy: Vec<f64>,
    /// The most similar pattern of every state (ties → lowest row).
    pub nearest: Vec<usize>,
    /// Its similarity.
    pub best: Vec<f32>,
    /// log Σ_μ e^{β s_μ} (softmax and exponential; NaN otherwise).
    pub lse: Vec<f64>,
    /// With `report_top`: per state the k best (similarity, row), best first.
    pub top: Vec<Vec<(f32, u64)>>,
    /// With `report_top`: per state 1 / Σ_μ p_μ² of the softmax weights p.
    pub participation: Vec<f64>,
}

impl Output {
    fn empty(m: usize) -> Self {
        Self {
            next: Array2::zeros((0, m)),
            energy: Vec::new(),
            nearest: Vec::new(),
            best: Vec::new(),
            lse: Vec::new(),
            top: Vec::new(),
            participation: Vec::new(),
        }
    }

    fn append(&mut self, other: Output) {
        self.next
            .append(Axis(0), other.next.view())
            .expect("update rows share the target width");
        self.energy.extend(other.energy);
        self.nearest.extend(other.nearest);
        self.best.extend(other.best);
        self.lse.extend(other.lse);
        self.top.extend(other.top);
        self.participation.extend(other.participation);
    }

    /// The softmax confidence of each state (e^{β s_nearest − lse}), for `Softmax`.
    pub fn confidence(&self, separation: Separation) -> Option<Vec<f64>> {
        match separation {
            Separation::Softmax { beta } => Some(
                self.best
                    .iter()
                    .zip(&self.lse)
                    .map(|(&s, &lse)| confidence(beta as f64, s as f64, lse))
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The pass as the retrieval loop reads it: next states, energies, nearest patterns
    /// and (softmax) confidences.
    pub fn evaluated(self, separation: Separation) -> dam_core::dynamics::Evaluated {
        dam_core::dynamics::Evaluated {
            confidence: self.confidence(separation),
            next: self.next,
            energy: self.energy,
            nearest: self.nearest,
        }
    }
}

/// The running state of one range of patterns for a batch of B states.
struct Partial {
    /// The log of the running scale of the weights, m (−∞ until a weight is non-zero),
    /// and for softmax and exponential Σ w e^{−m}.
    lse: Vec<OnlineLse>,
    /// Σ (w e^{−m})² (softmax, when the participation ratio is asked for).
    sq: Vec<f64>,
    /// Σ F(s) (polynomials).
    energy: Vec<f64>,
    /// Σ w e^{−m} T (updates×M).
    acc: Array2<f32>,
    best: Vec<(f32, usize)>,
    top: Vec<TopK>,
}

/// The selection a separation keeps per state, if any.
fn kept(separation: Separation, report_top: Option<usize>) -> Option<usize> {
    match separation {
        Separation::Max => Some(1),
        Separation::TopK { k } => Some(k),
        Separation::Softmax { .. } => report_top,
        _ => None,
    }
}

fn accumulates(separation: Separation) -> bool {
    !matches!(separation, Separation::Max | Separation::TopK { .. })
}

impl Partial {
    fn new(b: usize, updates: usize, m: usize, keep: Option<usize>) -> Self {
        Self {
            lse: vec![OnlineLse::EMPTY; b],
            sq: vec![0.0; b],
            energy: vec![0.0; b],
            acc: Array2::zeros((updates, m)),
            best: vec![(f32::NEG_INFINITY, usize::MAX); b],
            top: keep.map_or_else(Vec::new, |k| (0..b).map(|_| TopK::new(k)).collect()),
        }
    }

    /// Moves the scale of state `q` to `m_new` (≥ the current one).
    fn rescale(&mut self, q: usize, m_new: f64, square: bool) {
        let r = self.lse[q].raise(m_new);
        if r == 1.0 {
            return;
        }
        if square {
            self.sq[q] *= r * r;
        }
        if q < self.acc.nrows() {
            let r = r as f32;
            self.acc.row_mut(q).mapv_inplace(|a| a * r);
        }
    }

    /// Folds one row of similarities (patterns `base..`) of state `q` in, leaving in `row`
    /// the scaled weights of the patterns (when the separation sums weights).
    fn absorb(
        &mut self,
        separation: Separation,
        q: usize,
        row: &mut [f32],
        base: usize,
        scratch: &mut [f64],
        square: bool,
    ) {
        let (row_max, at) = simd::wide(|| simd::max_and_index(row));
        if row_max > self.best[q].0 {
            self.best[q] = (row_max, base + at);
        }
        if let Some(top) = self.top.get_mut(q) {
            let mut threshold = top.threshold();
            for (j, &s) in row.iter().enumerate() {
                // Rows arrive in increasing order, so a tie never displaces a held item.
                if s > threshold {
                    top.push((base + j) as u64, s);
                    threshold = top.threshold();
                }
            }
        }
        match separation {
            Separation::Softmax { beta } | Separation::Exponential { beta } => {
                // β > 0 and rounding is monotonic: max β·s = β·max s.
                let z_max = beta * row_max;
                let m_new = self.lse[q].m.max(z_max as f64);
                self.rescale(q, m_new, square);
                let m32 = m_new as f32;
                let (sum, sum_sq) = simd::wide(|| simd::exp_weights(row, beta, m32));
                self.lse[q].l += sum;
                if square {
                    self.sq[q] += sum_sq;
                }
            }
            Separation::Polynomial { n } | Separation::RectifiedPolynomial { n } => {
                let rectified = matches!(separation, Separation::RectifiedPolynomial { .. });
                let (mut peak, mut f_sum) = (0.0f64, 0.0f64);
                for (w, &s) in scratch.iter_mut().zip(row.iter()) {
                    let v = if rectified { s.max(0.0) } else { s } as f64;
                    let p = dam_core::weights::power(v, n - 1);
                    f_sum += p * v;
                    *w = n as f64 * p;
                    peak = peak.max(w.abs());
                }
                self.energy[q] += f_sum;
                if peak > 0.0 {
                    let m_new = self.lse[q].m.max(peak.ln());
                    self.rescale(q, m_new, false);
                }
                let inv = (-self.lse[q].m).exp();
                for (s, &w) in row.iter_mut().zip(scratch.iter()) {
                    *s = if w == 0.0 { 0.0 } else { (w * inv) as f32 };
                }
            }
            Separation::LogSumRelu { beta, .. } => {
                // The reference point stays 0 (the weights are 0 or 1), so merges add the
                // sums; `l` counts the support and `energy` holds Σ max(0, 1 − (β/2)d²).
                if self.lse[q].m == f64::NEG_INFINITY {
                    self.rescale(q, 0.0, false);
                }
                let (mut count, mut sum) = (0.0f64, 0.0f64);
                for s in row.iter_mut() {
                    let r = dam_core::weights::relu_kernel(beta as f64, *s as f64);
                    if r > 0.0 {
                        count += 1.0;
                        sum += r;
                        *s = 1.0;
                    } else {
                        *s = 0.0;
                    }
                }
                self.lse[q].l += count;
                self.energy[q] += sum;
            }
            Separation::Max | Separation::TopK { .. } => {}
            // Entmax needs whole rows: [`Pass::run_entmax`], never a partial state.
            Separation::Entmax { .. } => unreachable!("entmax takes its own pass"),
        }
    }

    /// Folds in the state of the next range of patterns.
    fn merge(&mut self, other: Partial, square: bool) {
        for q in 0..self.lse.len() {
            let (mine, theirs) = self.lse[q].merge(&other.lse[q]);
            if square {
                self.sq[q] = self.sq[q] * mine * mine + other.sq[q] * theirs * theirs;
            }
            if q < self.acc.nrows() {
                let (mine, theirs) = (mine as f32, theirs as f32);
                self.acc
                    .row_mut(q)
                    .zip_mut_with(&other.acc.row(q), |a, &b| *a = *a * mine + b * theirs);
            }
            self.energy[q] += other.energy[q];
            // Ranges are in index order: a strict > keeps the lowest index on ties.
            if other.best[q].0 > self.best[q].0 {
                self.best[q] = other.best[q];
            }
        }
        for (into, from) in self.top.iter_mut().zip(&other.top) {
            into.merge(from);
        }
    }
}

/// S = X·Ξ_bᵀ into the first `block.nrows()` columns of `out`.
fn dot_products(x: ArrayView2<'_, f32>, block: ArrayView2<'_, f32>, out: &mut Array2<f32>) {
    let rows = block.nrows();
    gemm(x, block.t(), &mut out.slice_mut(s![.., ..rows]), false);
}

/// s(ξ, x) for every state of `x` (B×N, standard layout; `x_norms` its squared norms for
/// negative Euclidean) and every pattern of `block` (rows×N, standard layout; `norms`
/// likewise) into the first `rows` columns of `out` (B×width).
fn similarity_block(
    similarity: Similarity,
    x: ArrayView2<'_, f32>,
    x_norms: &[f32],
    block: ArrayView2<'_, f32>,
    norms: &[f32],
    out: &mut Array2<f32>,
) {
    let rows = block.nrows();
    let n = x.ncols();
    match similarity {
        Similarity::Dot => dot_products(x, block, out),
        Similarity::NegEuclidean => {
            dot_products(x, block, out);
            let xs = x.as_slice().expect("standard layout");
            let ps = block.as_slice().expect("standard layout");
            simd::wide(|| {
                for (q, mut row) in out
                    .slice_mut(s![.., ..rows])
                    .rows_mut()
                    .into_iter()
                    .enumerate()
                {
                    for (j, s) in row.iter_mut().enumerate() {
                        let total = x_norms[q] + norms[j];
                        let mut d2 = total - 2.0 * *s;
                        // Close vectors: the expansion cancels, so sum the differences.
                        if d2 < 0.5 * total {
                            d2 = simd::squared_distance(
                                &xs[q * n..(q + 1) * n],
                                &ps[j * n..(j + 1) * n],
                            );
                        }
                        *s = -d2.max(0.0).sqrt();
                    }
                }
            });
        }
        Similarity::NegManhattan => {
            let width = out.ncols();
            let xs = x.as_slice().expect("standard layout");
            let ps = block.as_slice().expect("standard layout");
            let o = out.as_slice_mut().expect("standard layout");
            simd::wide(|| simd::neg_manhattan_block(xs, ps, n, o, width));
        }
    }
}

/// Calls `each(first row, rows, scratch)` for the blocks of `range` (patterns `first..` of
/// `stored`), with the B×rows similarities of `x` (standard layout) in the first `rows`
/// columns of a reused B×width scratch.
fn for_blocks(
    similarity: Similarity,
    stored: Stored<'_>,
    range: (usize, usize),
    x: ArrayView2<'_, f32>,
    x_norms: &[f32],
    mut each: impl FnMut(usize, usize, &mut Array2<f32>),
) {
    let block = block_rows(x.ncols());
    let mut scores = Array2::<f32>::zeros((x.nrows(), block.min(range.1 - range.0).max(1)));
    let mut start = range.0;
    while start < range.1 {
        let end = (start + block).min(range.1);
        let norms = if stored.squared_norms.is_empty() {
            &[][..]
        } else {
            &stored.squared_norms[start..end]
        };
        similarity_block(
            similarity,
            x,
            x_norms,
            stored.patterns.slice(s![start..end, ..]),
            norms,
            &mut scores,
        );
        each(start, end - start, &mut scores);
        start = end;
    }
}

/// Splits `0..p` into contiguous ranges of whole blocks, one per thread, runs `work` on
/// each and returns the results in range order (so merging them does not depend on
/// timing).
pub(crate) fn per_range<T: Send>(
    p: usize,
    block: usize,
    threads: usize,
    work: impl Fn((usize, usize)) -> T + Sync,
) -> Vec<T> {
    let threads = thread_count(threads);
    let per = p.div_ceil(threads).div_ceil(block).max(1) * block;
    let ranges: Vec<(usize, usize)> = (0..p).step_by(per).map(|a| (a, (a + per).min(p))).collect();
    if ranges.len() <= 1 {
        return vec![work((0, p))];
    }
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .iter()
            .map(|&r| scope.spawn(move || work(r)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("CPU worker panicked"))
            .collect()
    })
}

/// Whether to split the queries rather than the patterns across threads: there are fewer
/// blocks of patterns than threads and enough queries to share.
fn split_queries(p: usize, n: usize, b: usize, threads: usize) -> bool {
    let threads = thread_count(threads);
    threads > 1 && p.div_ceil(block_rows(n)) < threads && b >= 2 * threads
}

/// Runs `work(query range)` on contiguous query ranges, one per thread, in order.
pub(crate) fn per_query_range<T: Send>(
    b: usize,
    threads: usize,
    work: impl Fn(usize, usize) -> T + Sync,
) -> Vec<T> {
    let per = b.div_ceil(thread_count(threads)).max(1);
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..b)
            .step_by(per)
            .map(|a| scope.spawn(move || work(a, (a + per).min(b))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("CPU worker panicked"))
            .collect()
    })
}

impl Pass<'_> {
    /// Whether the targets are the stored patterns themselves (an update of the states,
    /// not a read-out of values).
    fn updates_states(&self) -> bool {
        self.targets.as_ptr() == self.stored.patterns.as_ptr()
            && self.targets.dim() == self.stored.patterns.dim()
    }

    /// Evaluates every state of `states` (B×N): energy, nearest pattern, log-sum-exp and,
    /// for the first `updates` states, the update. Inputs must already be validated.
    pub fn run(&self, states: ArrayView2<'_, f32>, updates: usize) -> Output {
        if let Separation::Entmax { beta, alpha } = self.separation {
            return self.run_entmax(states, updates, beta as f64, alpha as f64);
        }
        let mut out = Output::empty(self.targets.ncols());
        query_chunks(self.similarity, states, |start, x, x_norms| {
            let u = updates.saturating_sub(start).min(x.nrows());
            out.append(self.chunk(x, x_norms, u));
        });
        out
    }

    /// The entmax pass. A weight needs the threshold τ of the state's whole row of
    /// similarities, so the states go in groups whose B×P similarities (f64) fit
    /// [`ENTMAX_SCORES_BYTES`]: the similarities of a group on every core
    /// ([`similarities`]), then per state (states split across threads) the weights and
    /// the energy in f64 by `dam_core::entmax`, then the update as one product W·T in f32.
    fn run_entmax(
        &self,
        states: ArrayView2<'_, f32>,
        updates: usize,
        beta: f64,
        alpha: f64,
    ) -> Output {
        let (b, n) = states.dim();
        let p = self.stored.patterns.nrows();
        let m_cols = self.targets.ncols();
        let group = (ENTMAX_SCORES_BYTES / (8 * p.max(1))).clamp(1, QUERY_CHUNK);
        let mut out = Output::empty(m_cols);
        for start in (0..b).step_by(group) {
            let end = (start + group).min(b);
            let x = states.slice(s![start..end, ..]);
            let scores = similarities(self.similarity, self.stored, x, self.threads);
            let u = updates.saturating_sub(start).min(end - start);
            // Per state: (weights as f32 when it is updated, energy, nearest row).
            let each = |a: usize, e: usize| -> Vec<(Vec<f32>, f64, usize)> {
                (a..e)
                    .map(|q| {
                        let row = scores.row(q);
                        let row = row.as_slice().expect("standard layout");
                        let norm_sq: f64 = x.row(q).iter().map(|&v| v as f64 * v as f64).sum();
                        let (w, energy) =
                            dam_core::entmax::weights_and_energy(beta, alpha, row, norm_sq);
                        let w = if q < u {
                            w.iter().map(|&v| v as f32).collect()
                        } else {
                            Vec::new()
                        };
                        (w, energy, dam_core::weights::argmax(row))
                    })
                    .collect()
            };
            let threads = threads_for(end - start, p, n, self.threads);
            let rows: Vec<(Vec<f32>, f64, usize)> = if threads > 1 && end - start > 1 {
                per_query_range(end - start, threads, each)
                    .into_iter()
                    .flatten()
                    .collect()
            } else {
                each(0, end - start)
            };
            let mut w = Array2::<f32>::zeros((u, p));
            for (mut into, (from, _, _)) in w.rows_mut().into_iter().zip(&rows) {
                into.assign(&ndarray::ArrayView1::from(from.as_slice()));
            }
            let mut next = Array2::<f32>::zeros((u, m_cols));
            gemm(w.view(), self.targets, &mut next.view_mut(), false);
            for mut row in next.rows_mut() {
                let mut v: Vec<f64> = row.iter().map(|&a| a as f64).collect();
                self.projection.apply(&mut v);
                row.iter_mut().zip(&v).for_each(|(o, &a)| *o = a as f32);
            }
            let part = Output {
                next,
                energy: rows.iter().map(|r| r.1).collect(),
                nearest: rows.iter().map(|r| r.2).collect(),
                best: rows
                    .iter()
                    .enumerate()
                    .map(|(q, r)| scores[[q, r.2]] as f32)
                    .collect(),
                lse: vec![f64::NAN; end - start],
                top: if self.report_top.is_some() {
                    vec![Vec::new(); end - start]
                } else {
                    Vec::new()
                },
                participation: if self.report_top.is_some() {
                    vec![f64::NAN; end - start]
                } else {
                    Vec::new()
                },
            };
            out.append(part);
        }
        out
    }

    fn chunk(&self, x: ArrayView2<'_, f32>, x_norms: &[f32], updates: usize) -> Output {
        let (b, n) = x.dim();
        let p = self.stored.patterns.nrows();
        let threads = threads_for(b, p, n, self.threads);
        if split_queries(p, n, b, threads) {
            let parts = per_query_range(b, threads, |a, e| {
                let xq = x.slice(s![a..e, ..]);
                let norms = if x_norms.is_empty() {
                    &[][..]
                } else {
                    &x_norms[a..e]
                };
                let u = updates.saturating_sub(a).min(e - a);
                let part = self.range((0, p), xq, norms, u);
                self.finish(part, xq, u)
            });
            let mut out = Output::empty(self.targets.ncols());
            for part in parts {
                out.append(part);
            }
            return out;
        }
        let square = self.report_top.is_some();
        let parts = per_range(p, block_rows(n), threads, |range| {
            self.range(range, x, x_norms, updates)
        });
        let mut parts = parts.into_iter();
        let mut merged = parts.next().expect("at least one range");
        for part in parts {
            merged.merge(part, square);
        }
        self.finish(merged, x, updates)
    }

    /// The state of one range of patterns.
    fn range(
        &self,
        range: (usize, usize),
        x: ArrayView2<'_, f32>,
        x_norms: &[f32],
        updates: usize,
    ) -> Partial {
        let b = x.nrows();
        let keep = kept(self.separation, self.report_top);
        let square = self.report_top.is_some();
        let mut part = Partial::new(b, updates, self.targets.ncols(), keep);
        let mut scratch = vec![0.0f64; block_rows(x.ncols())];
        for_blocks(
            self.similarity,
            self.stored,
            range,
            x,
            x_norms,
            |start, rows, scores| {
                for (q, mut row) in scores
                    .slice_mut(s![.., ..rows])
                    .rows_mut()
                    .into_iter()
                    .enumerate()
                {
                    let row = row
                        .as_slice_mut()
                        .expect("rows of the scratch are contiguous");
                    part.absorb(self.separation, q, row, start, &mut scratch[..rows], square);
                }
                if updates > 0 && accumulates(self.separation) {
                    gemm(
                        scores.slice(s![..updates, ..rows]),
                        self.targets.slice(s![start..start + rows, ..]),
                        &mut part.acc.view_mut(),
                        true,
                    );
                }
            },
        );
        part
    }

    /// Energies, nearest patterns and updates from the merged state of all patterns.
    fn finish(&self, part: Partial, x: ArrayView2<'_, f32>, updates: usize) -> Output {
        let b = x.nrows();
        let m_cols = self.targets.ncols();
        let mut out = Output::empty(m_cols);
        out.next = Array2::zeros((updates, m_cols));
        for q in 0..b {
            let lse = part.lse[q].lse();
            let (energy, lse) = match self.separation {
                Separation::Softmax { beta } => {
                    let half_norm: f64 =
                        0.5 * x.row(q).iter().map(|&v| v as f64 * v as f64).sum::<f64>();
                    (-lse / beta as f64 + half_norm, lse)
                }
                Separation::Exponential { .. } => (-lse.exp(), lse),
                Separation::Polynomial { .. } | Separation::RectifiedPolynomial { .. } => {
                    (-part.energy[q], f64::NAN)
                }
                Separation::Max | Separation::TopK { .. } => {
                    let items = part.top[q].items();
                    let sum: f64 = items.iter().map(|&(s, _)| s as f64).sum();
                    (-sum / items.len() as f64, f64::NAN)
                }
                Separation::LogSumRelu { beta, eps } => (
                    dam_core::weights::log_sum_relu_energy(beta as f64, eps as f64, part.energy[q]),
                    f64::NAN,
                ),
                Separation::Entmax { .. } => unreachable!("entmax takes its own pass"),
            };
            out.energy.push(energy);
            out.lse.push(lse);
            out.best.push(part.best[q].0);
            out.nearest.push(part.best[q].1);
            if self.report_top.is_some() {
                out.top.push(part.top[q].items().to_vec());
                out.participation
                    .push(part.lse[q].l * part.lse[q].l / part.sq[q].max(f64::MIN_POSITIVE));
            }
            let empty_support =
                matches!(self.separation, Separation::LogSumRelu { .. }) && part.lse[q].l == 0.0;
            if q < updates && empty_support {
                // No pattern within reach: an updated state stays where it is, a read-out
                // of values is zero (the weights are all zero).
                if self.updates_states() {
                    out.next.row_mut(q).assign(&x.row(q));
                }
            } else if q < updates {
                let mut v: Vec<f64> = match self.separation {
                    Separation::Max | Separation::TopK { .. } => {
                        let items = part.top[q].items();
                        let mut sum = vec![0.0f64; m_cols];
                        for &(_, row) in items {
                            for (a, &t) in sum.iter_mut().zip(self.targets.row(row as usize)) {
                                *a += t as f64;
                            }
                        }
                        sum.iter().map(|a| a / items.len() as f64).collect()
                    }
                    Separation::Softmax { .. } | Separation::LogSumRelu { .. } => part
                        .acc
                        .row(q)
                        .iter()
                        .map(|&a| a as f64 / part.lse[q].l)
                        .collect(),
                    _ => part.acc.row(q).iter().map(|&a| a as f64).collect(),
                };
                // Sphere and Sign are scale invariant: the (possibly huge) factor of the
                // exponential and polynomial weights only matters without a projection.
                if self.projection == Projection::None {
                    let factor = match self.separation {
                        Separation::Exponential { beta } => beta as f64 * part.lse[q].m.exp(),
                        Separation::Polynomial { .. } | Separation::RectifiedPolynomial { .. } => {
                            part.lse[q].m.exp()
                        }
                        _ => 1.0,
                    };
                    if factor != 1.0 {
                        v.iter_mut().for_each(|a| *a *= factor);
                    }
                } else {
                    self.projection.apply(&mut v);
                }
                out.next
                    .row_mut(q)
                    .iter_mut()
                    .zip(&v)
                    .for_each(|(o, &a)| *o = a as f32);
            }
        }
        out
    }
}

/// Calls `each(first state, states, their squared norms)` for the states in passes of at
/// most [`QUERY_CHUNK`], each in standard layout (the norms only for negative Euclidean).
fn query_chunks(
    similarity: Similarity,
    states: ArrayView2<'_, f32>,
    mut each: impl FnMut(usize, ArrayView2<'_, f32>, &[f32]),
) {
    for start in (0..states.nrows()).step_by(QUERY_CHUNK) {
        let end = (start + QUERY_CHUNK).min(states.nrows());
        let x = states.slice(s![start..end, ..]);
        let x = x.as_standard_layout();
        let x_norms = match similarity {
            Similarity::NegEuclidean => squared_norms(x.view()),
            _ => Vec::new(),
        };
        each(start, x.view(), &x_norms);
    }
}

/// Runs `work(range, states, norms)` on each thread's range of patterns for each pass of
/// states ([`query_chunks`]) and hands `merge(first state, results in range order)`.
fn per_pattern_range<T: Send>(
    similarity: Similarity,
    stored: Stored<'_>,
    states: ArrayView2<'_, f32>,
    threads: usize,
    work: impl Fn((usize, usize), ArrayView2<'_, f32>, &[f32]) -> T + Sync,
    mut merge: impl FnMut(usize, Vec<T>),
) {
    let p = stored.patterns.nrows();
    query_chunks(similarity, states, |start, x, x_norms| {
        let threads = threads_for(x.nrows(), p, x.ncols(), threads);
        let parts = per_range(p, block_rows(x.ncols()), threads, |range| {
            work(range, x, x_norms)
        });
        merge(start, parts);
    });
}

/// s(ξ^μ, x) for every state (B×N) and pattern: B×P in f64 (f32 sums), blocked and on
/// every core. Inputs must already be validated.
pub fn similarities(
    similarity: Similarity,
    stored: Stored<'_>,
    states: ArrayView2<'_, f32>,
    threads: usize,
) -> Array2<f64> {
    let mut out = Array2::<f64>::zeros((states.nrows(), stored.patterns.nrows()));
    per_pattern_range(
        similarity,
        stored,
        states,
        threads,
        |range, x, x_norms| {
            let mut part = Array2::<f32>::zeros((x.nrows(), range.1 - range.0));
            for_blocks(similarity, stored, range, x, x_norms, |first, rows, s| {
                let a = first - range.0;
                part.slice_mut(s![.., a..a + rows])
                    .assign(&s.slice(s![.., ..rows]));
            });
            (range.0, part)
        },
        |start, parts| {
            for (first, part) in parts {
                let (b, width) = part.dim();
                out.slice_mut(s![start..start + b, first..first + width])
                    .zip_mut_with(&part, |o, &v| *o = v as f64);
            }
        },
    );
    out
}

/// Exact top-k by `similarity`: for each thread's range of patterns, the similarities of
/// one block at a time, each offered to the state's [`TopK`] only when it beats the k-th;
/// the selections are merged in range order. Inputs must already be validated; `k` ≥ 1.
pub fn search(
    similarity: Similarity,
    stored: Stored<'_>,
    states: ArrayView2<'_, f32>,
    k: usize,
    threads: usize,
) -> Vec<TopK> {
    let mut selections = Vec::with_capacity(states.nrows());
    per_pattern_range(
        similarity,
        stored,
        states,
        threads,
        |range, x, x_norms| {
            let mut tops: Vec<TopK> = (0..x.nrows()).map(|_| TopK::new(k)).collect();
            for_blocks(similarity, stored, range, x, x_norms, |first, rows, s| {
                for (top, row) in tops.iter_mut().zip(s.slice(s![.., ..rows]).rows()) {
                    let mut threshold = top.threshold();
                    for (j, &v) in row.iter().enumerate() {
                        // Rows arrive in increasing order: a tie never displaces a held item.
                        if v > threshold {
                            top.push((first + j) as u64, v);
                            threshold = top.threshold();
                        }
                    }
                }
            });
            tops
        },
        |_, parts| {
            let mut parts = parts.into_iter();
            let mut merged = parts.next().expect("at least one range");
            for part in parts {
                for (into, from) in merged.iter_mut().zip(&part) {
                    into.merge(from);
                }
            }
            selections.extend(merged);
        },
    );
    selections
}
