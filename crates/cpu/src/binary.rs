//! Exact binary spin dynamics on the CPU (see `dam_core::binary`), the fast path: the same
//! decisions as [`crate::reference::binary`] bit for bit, tested against it
//! (`tests/spin_fast.rs`).
//!
//! # The field as one masked sum
//!
//! With h_μ = ξ^μ·σ and s = σ_i, a_μ = h_μ − ξ_i^μ s is h_μ − 1 where ξ_i^μ = s and h_μ + 1
//! elsewhere, so with A_μ = W(h_μ − 1) and B_μ = W(h_μ + 1)
//!
//!   Δ_i = s · D_i,  D_i = Σ_{μ: ξ_i^μ = s} A_μ − Σ_{μ: ξ_i^μ ≠ s} B_μ
//!       = Σ_{μ: ξ_i^μ = s} C_μ − T,  C_μ = A_μ + B_μ,  T = Σ_μ B_μ,
//!
//! and spin i flips exactly when D_i < 0 (Δ_i = 0 keeps it). C and T depend on the query's
//! overlaps only, not on i: they are looked up once per query and again after each flip,
//! and each spin visit is one branch-free sum of C over the patterns whose bit i matches s,
//! read from a spin-major copy of the patterns (bit μ of word μ/32 of row i is ξ_i^μ, built
//! once per call by 32×32 bit transposes). Σ_{ξ_i^μ = −1} C is Σ C minus Σ_{ξ_i^μ = +1} C.
//!
//! # Exactness
//!
//! Every operation is an addition, subtraction or selection, done in wrapping two's
//! complement, so the result is D_i modulo 2³² (or 2⁶⁴). |D_i| ≤ P·max|W|, which
//! [`SpinEnergy::table`] bounds below 2⁶²; when P·max|W| ≤ i32::MAX the sums run in 32-bit
//! lanes (exact for the same reason), otherwise in 64-bit lanes. The exponential table is
//! relative to a_top = max_μ a_μ, which is M + 1 when some μ with h_μ = M = max h has
//! ξ_i^μ ≠ s and M − 1 otherwise (a_μ has the parity of N + 1, M that of N): both sets of
//! C and T are kept, and the argmax patterns choose between them per spin.
//!
//! Queries run on all cores (each query on one thread, handed out in turn); a query's
//! result does not depend on which thread ran it. On x86-64 with AVX2 the per-query loop
//! is compiled a second time for AVX2 and chosen at run time.

use std::sync::atomic::{AtomicUsize, Ordering};

use dam_core::binary::{
    sweep_order, words_per_state, BinaryPatterns, Clamp, SpinEnergy, SpinResult, SpinTable,
    SpinUpdate,
};
use dam_core::Result;

/// Runs the spin dynamics from each packed query (B × ⌈N/32⌉ words), with the neurons
/// outside `clamp.free` held at their query values (`Clamp::none` for none).
pub fn run_clamped(
    patterns: &BinaryPatterns,
    energy: SpinEnergy,
    update: SpinUpdate,
    queries: &[u32],
    clamp: &Clamp,
) -> Result<SpinResult> {
    run_clamped_on(patterns, energy, update, queries, clamp, 0)
}

/// [`run_clamped`] on `threads` threads (0: all cores). The result does not depend on
/// `threads`.
pub fn run_clamped_on(
    patterns: &BinaryPatterns,
    energy: SpinEnergy,
    update: SpinUpdate,
    queries: &[u32],
    clamp: &Clamp,
    threads: usize,
) -> Result<SpinResult> {
    run_with(
        patterns,
        energy,
        update,
        queries,
        clamp,
        threads,
        simd_available(),
    )
}

/// Whether the AVX2 twin of the per-query loop can run here.
fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("popcnt")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`run_clamped_on`], with the AVX2 twin only where `avx2` (which must be false where the
/// CPU lacks AVX2 or POPCNT).
fn run_with(
    patterns: &BinaryPatterns,
    energy: SpinEnergy,
    update: SpinUpdate,
    queries: &[u32],
    clamp: &Clamp,
    threads: usize,
    avx2: bool,
) -> Result<SpinResult> {
    let (b, table) = patterns.prepare_run(energy, queries)?;
    patterns.validate_clamp(clamp)?;
    if patterns.count() > u32::MAX as usize || patterns.dim() > (i32::MAX / 4) as usize {
        // Pattern indices are kept in u32 and overlaps in i32 lanes.
        return crate::reference::binary::run_clamped(patterns, energy, update, queries, clamp);
    }
    let memory = Memory::new(patterns);
    let worst = table
        .values
        .iter()
        .map(|v| v.unsigned_abs())
        .max()
        .unwrap_or(0) as u128;
    if !table.relative_to_top && worst * patterns.count() as u128 <= i32::MAX as u128 {
        let tables = Tables::<i32>::new(&table, patterns.dim());
        Ok(run_all(
            &Job {
                memory: &memory,
                tables: &tables,
                update,
                queries,
                clamp,
                avx2,
            },
            b,
            threads,
        ))
    } else {
        let tables = Tables::<i64>::new(&table, patterns.dim());
        Ok(run_all(
            &Job {
                memory: &memory,
                tables: &tables,
                update,
                queries,
                clamp,
                avx2,
            },
            b,
            threads,
        ))
    }
}

/// A lane of the masked sums: wrapping two's complement arithmetic.
trait Lane: Copy + Default + Send + Sync {
    /// The value modulo 2^bits.
    fn wrap(v: i64) -> Self;
    fn add(self, other: Self) -> Self;
    fn sub(self, other: Self) -> Self;
    /// `self` where `keep`, else 0.
    fn keep(self, keep: bool) -> Self;
    fn is_negative(self) -> bool;
}

impl Lane for i32 {
    #[inline(always)]
    fn wrap(v: i64) -> Self {
        v as i32
    }
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        self.wrapping_add(other)
    }
    #[inline(always)]
    fn sub(self, other: Self) -> Self {
        self.wrapping_sub(other)
    }
    #[inline(always)]
    fn keep(self, keep: bool) -> Self {
        self & (keep as i32).wrapping_neg()
    }
    #[inline(always)]
    fn is_negative(self) -> bool {
        self < 0
    }
}

impl Lane for i64 {
    #[inline(always)]
    fn wrap(v: i64) -> Self {
        v
    }
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        self.wrapping_add(other)
    }
    #[inline(always)]
    fn sub(self, other: Self) -> Self {
        self.wrapping_sub(other)
    }
    #[inline(always)]
    fn keep(self, keep: bool) -> Self {
        self & (keep as i64).wrapping_neg()
    }
    #[inline(always)]
    fn is_negative(self) -> bool {
        self < 0
    }
}

/// The patterns, pattern-major (as stored) and spin-major (`rows`: row i has ⌈P/32⌉ words,
/// bit μ % 32 of word μ / 32 is 1 where ξ_i^μ = +1; bits past P are 0).
struct Memory<'a> {
    patterns: &'a BinaryPatterns,
    rows: Vec<u32>,
    row_words: usize,
}

/// One stage of [`transpose32`]: swaps the J×J off-diagonal blocks of every 2J×2J block.
#[inline(always)]
fn transpose_stage<const J: usize>(a: &mut [u32; 32], m: u32) {
    for base in (0..32).step_by(2 * J) {
        for k in base..base + J {
            let t = ((a[k] >> J) ^ a[k + J]) & m;
            a[k + J] ^= t;
            a[k] ^= t << J;
        }
    }
}

/// Transposes a 32×32 bit matrix in place: bit k of word j moves to bit j of word k.
fn transpose32(a: &mut [u32; 32]) {
    transpose_stage::<16>(a, 0x0000_ffff);
    transpose_stage::<8>(a, 0x00ff_00ff);
    transpose_stage::<4>(a, 0x0f0f_0f0f);
    transpose_stage::<2>(a, 0x3333_3333);
    transpose_stage::<1>(a, 0x5555_5555);
}

impl<'a> Memory<'a> {
    fn new(patterns: &'a BinaryPatterns) -> Self {
        let (p, n) = (patterns.count(), patterns.dim());
        let w = words_per_state(n);
        let row_words = p.div_ceil(32);
        let mut rows = vec![0u32; n * row_words];
        // blocks[word]: word `word` of 32 consecutive patterns (0 past P).
        let mut blocks = vec![[0u32; 32]; w];
        assert_eq!(
            patterns.words().len(),
            p * w,
            "P packed patterns of w words"
        );
        for pb in 0..row_words {
            let first = 32 * pb;
            let last = (first + 32).min(p);
            for block in blocks.iter_mut() {
                *block = [0; 32];
            }
            for (j, xi) in patterns.words()[first * w..last * w]
                .chunks_exact(w)
                .enumerate()
            {
                // xi and blocks both have w entries.
                for (block, &bits) in blocks.iter_mut().zip(xi) {
                    block[j] = bits;
                }
            }
            for (word, block) in blocks.iter_mut().enumerate() {
                transpose32(block);
                for (k, &bits) in block.iter().enumerate().take(n - 32 * word) {
                    rows[(32 * word + k) * row_words + pb] = bits;
                }
            }
        }
        Self {
            patterns,
            rows,
            row_words,
        }
    }

    fn row(&self, i: usize) -> &[u32] {
        &self.rows[i * self.row_words..(i + 1) * self.row_words]
    }
}

/// C and B per overlap, for one or (exponential) two choices of a_top, indexed by
/// j = (h + N)/2 (polynomial) or j = (M − h)/2 (exponential, M = max_μ h_μ); see the
/// module docs.
struct Tables<L> {
    relative_to_top: bool,
    /// [a_top = M + 1, a_top = M − 1] for the exponential; only [0] otherwise.
    c: [Vec<L>; 2],
    b: [Vec<L>; 2],
    dim: usize,
}

impl<L: Lane> Tables<L> {
    fn new(table: &SpinTable, dim: usize) -> Self {
        let v = |k: usize| table.values[k];
        let (c, b) = if table.relative_to_top {
            // k = top − a: a_top = M + 1 gives A = v[2j + 2], B = v[2j]; a_top = M − 1
            // gives A = v[2j], B = v[2j − 2] (j = 0 has no B: a_top = M − 1 means every
            // pattern with h = M matches s, so that B never counts; 0 keeps C = A).
            let b_lo = |j: usize| if j == 0 { 0 } else { v(2 * j - 2) };
            (
                [
                    (0..=dim)
                        .map(|j| L::wrap(v(2 * j + 2) + v(2 * j)))
                        .collect(),
                    (0..=dim).map(|j| L::wrap(v(2 * j) + b_lo(j))).collect(),
                ],
                [
                    (0..=dim).map(|j| L::wrap(v(2 * j))).collect(),
                    (0..=dim).map(|j| L::wrap(b_lo(j))).collect(),
                ],
            )
        } else {
            // a = h ∓ 1 at index a + N + 1: A = v[2j], B = v[2j + 2].
            (
                [
                    (0..=dim)
                        .map(|j| L::wrap(v(2 * j).wrapping_add(v(2 * j + 2))))
                        .collect(),
                    Vec::new(),
                ],
                [
                    (0..=dim).map(|j| L::wrap(v(2 * j + 2))).collect(),
                    Vec::new(),
                ],
            )
        };
        Self {
            relative_to_top: table.relative_to_top,
            c,
            b,
            dim,
        }
    }

    fn variants(&self) -> usize {
        if self.relative_to_top {
            2
        } else {
            1
        }
    }
}

/// One query's overlaps and the C, T, Σ C derived from them.
struct Scratch<L> {
    /// h_μ, padded to whole words of 32 patterns (the padding is never read).
    h: Vec<i32>,
    /// C_μ per variant, 0 past P.
    c: [Vec<L>; 2],
    t: [L; 2],
    total: [L; 2],
    /// The patterns with h_μ = max h (exponential only).
    argmax: Vec<u32>,
}

impl<L: Lane> Scratch<L> {
    fn new(row_words: usize) -> Self {
        Self {
            h: vec![0; 32 * row_words],
            c: [
                vec![L::default(); 32 * row_words],
                vec![L::default(); 32 * row_words],
            ],
            t: [L::default(); 2],
            total: [L::default(); 2],
            argmax: Vec::new(),
        }
    }
}

/// Σ_μ bit_μ(`bits`) · c_μ, in wrapping arithmetic.
#[inline(always)]
fn masked_sum<L: Lane>(bits: &[u32], c: &[L]) -> L {
    assert_eq!(c.len(), 32 * bits.len(), "32 lanes per mask word");
    let mut acc = [L::default(); 32];
    for (&word, lanes) in bits.iter().zip(c.chunks_exact(32)) {
        for k in 0..32 {
            acc[k] = acc[k].add(lanes[k].keep(word & (1 << k) != 0));
        }
    }
    acc.iter().fold(L::default(), |s, &a| s.add(a))
}

/// h_μ += 2·ξ_i^μ·σ_i for the new value σ_i (`up`: +1) of a flipped spin with row `bits`.
#[inline(always)]
fn shift_overlaps(bits: &[u32], h: &mut [i32], up: bool) {
    assert_eq!(h.len(), 32 * bits.len(), "32 lanes per mask word");
    let d = if up { 2 } else { -2 };
    for (&word, lanes) in bits.iter().zip(h.chunks_exact_mut(32)) {
        for (k, lane) in lanes.iter_mut().enumerate() {
            // Wrapping: the lanes past P drift with every flip and are never read.
            *lane = lane.wrapping_add(if word & (1 << k) != 0 { d } else { -d });
        }
    }
}

/// Recomputes C, T and Σ C (and the argmax set) from the overlaps.
#[inline(always)]
fn refresh<L: Lane>(tables: &Tables<L>, s: &mut Scratch<L>, p: usize) {
    let h = &s.h[..p];
    let dim = tables.dim as i32;
    let top = if tables.relative_to_top {
        let m = h.iter().copied().max().unwrap_or(0);
        s.argmax.clear();
        s.argmax.extend(
            h.iter()
                .enumerate()
                .filter(|&(_, &x)| x == m)
                .map(|(mu, _)| mu as u32),
        );
        m
    } else {
        0
    };
    for v in 0..tables.variants() {
        let (ct, bt) = (&tables.c[v][..], &tables.b[v][..]);
        let c = &mut s.c[v][..p];
        assert_eq!(c.len(), h.len(), "a C per overlap");
        let (mut t, mut total) = (L::default(), L::default());
        for (cm, &hm) in c.iter_mut().zip(h) {
            let j = if tables.relative_to_top {
                (top - hm) >> 1
            } else {
                (hm + dim) >> 1
            } as usize;
            *cm = ct[j];
            total = total.add(ct[j]);
            t = t.add(bt[j]);
        }
        s.t[v] = t;
        s.total[v] = total;
    }
}

/// Whether spin i (pattern bits `row`, value `up`: +1) flips: D_i < 0.
#[inline(always)]
fn flips<L: Lane>(tables: &Tables<L>, s: &Scratch<L>, row: &[u32], up: bool) -> bool {
    let v = if tables.relative_to_top {
        // a_top = M + 1 when an argmax pattern disagrees with s at i.
        let disagrees = s
            .argmax
            .iter()
            .any(|&mu| ((row[mu as usize / 32] >> (mu % 32)) & 1 == 1) != up);
        if disagrees {
            0
        } else {
            1
        }
    } else {
        0
    };
    let plus = masked_sum(row, &s.c[v]);
    let matching = if up { plus } else { s.total[v].sub(plus) };
    matching.sub(s.t[v]).is_negative()
}

/// The clamped sweep orders, made on first use.
struct Orders<'a> {
    dim: usize,
    seed: u64,
    clamp: &'a Clamp,
    made: Vec<Vec<u32>>,
}

impl Orders<'_> {
    fn get(&mut self, sweep: usize) -> &[u32] {
        while self.made.len() <= sweep {
            let k = self.made.len();
            self.made
                .push(self.clamp.order(sweep_order(self.dim, self.seed, k)));
        }
        &self.made[sweep]
    }
}

/// Runs one query in place on `sigma`; returns the flips per sweep (step) and whether it
/// converged.
#[inline(always)]
fn run_query<L: Lane>(
    memory: &Memory<'_>,
    tables: &Tables<L>,
    update: SpinUpdate,
    clamp: &Clamp,
    orders: &mut Orders<'_>,
    s: &mut Scratch<L>,
    sigma: &mut [u32],
) -> (Vec<u32>, bool) {
    let patterns = memory.patterns;
    let (p, n) = (patterns.count(), patterns.dim());
    let w = sigma.len();
    assert_eq!(w, words_per_state(n), "one packed state");
    assert_eq!(patterns.words().len(), p * w, "P packed patterns");
    assert!(s.h.len() >= p, "an overlap per pattern");
    // h_μ = N − 2·Hamming(ξ^μ, σ), written here so that it is compiled with the caller's
    // features (POPCNT in the AVX2 twin).
    let set_overlaps = |s: &mut Scratch<L>, sigma: &[u32]| {
        for (hm, xi) in s.h[..p].iter_mut().zip(patterns.words().chunks_exact(w)) {
            let hamming: u32 = xi
                .iter()
                .zip(sigma)
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            *hm = n as i32 - 2 * hamming as i32;
        }
    };
    let mut history = Vec::new();
    match update {
        SpinUpdate::Async { max_sweeps, .. } => {
            set_overlaps(s, sigma);
            refresh(tables, s, p);
            for sweep in 0..max_sweeps {
                let mut count = 0;
                for &i in orders.get(sweep) {
                    let i = i as usize;
                    let up = (sigma[i / 32] >> (i % 32)) & 1 == 1;
                    let row = memory.row(i);
                    if flips(tables, s, row, up) {
                        sigma[i / 32] ^= 1 << (i % 32);
                        shift_overlaps(row, &mut s.h, !up);
                        refresh(tables, s, p);
                        count += 1;
                    }
                }
                history.push(count);
                if count == 0 {
                    return (history, true);
                }
            }
        }
        SpinUpdate::Sync { max_steps } => {
            let mut flip = vec![0u32; sigma.len()];
            for _ in 0..max_steps {
                set_overlaps(s, sigma);
                refresh(tables, s, p);
                flip.iter_mut().for_each(|f| *f = 0);
                for i in (0..n).filter(|&i| clamp.is_free(i)) {
                    let up = (sigma[i / 32] >> (i % 32)) & 1 == 1;
                    if flips(tables, s, memory.row(i), up) {
                        flip[i / 32] |= 1 << (i % 32);
                    }
                }
                let mut count = 0;
                assert_eq!(sigma.len(), flip.len(), "a flip mask per state word");
                for (word, f) in sigma.iter_mut().zip(&flip) {
                    *word ^= f;
                    count += f.count_ones();
                }
                history.push(count);
                if count == 0 {
                    return (history, true);
                }
            }
        }
    }
    (history, false)
}

/// [`run_query`] compiled for the build's baseline features.
fn run_query_baseline<L: Lane>(
    memory: &Memory<'_>,
    tables: &Tables<L>,
    update: SpinUpdate,
    clamp: &Clamp,
    orders: &mut Orders<'_>,
    s: &mut Scratch<L>,
    sigma: &mut [u32],
) -> (Vec<u32>, bool) {
    run_query(memory, tables, update, clamp, orders, s, sigma)
}

/// [`run_query`] compiled with AVX2 (256-bit lanes for the masked sums) and POPCNT.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
fn run_query_avx2<L: Lane>(
    memory: &Memory<'_>,
    tables: &Tables<L>,
    update: SpinUpdate,
    clamp: &Clamp,
    orders: &mut Orders<'_>,
    s: &mut Scratch<L>,
    sigma: &mut [u32],
) -> (Vec<u32>, bool) {
    run_query(memory, tables, update, clamp, orders, s, sigma)
}

/// What every query of a run shares.
struct Job<'a, L> {
    memory: &'a Memory<'a>,
    tables: &'a Tables<L>,
    update: SpinUpdate,
    queries: &'a [u32],
    clamp: &'a Clamp,
    /// Run the AVX2 twin (only where the CPU has AVX2 and POPCNT).
    avx2: bool,
}

/// Runs queries handed out by `next` until none are left: (query, final state, flips,
/// converged) for each.
#[allow(clippy::type_complexity)]
fn worker<L: Lane>(job: &Job<'_, L>, next: &AtomicUsize) -> Vec<(usize, Vec<u32>, Vec<u32>, bool)> {
    let Job {
        memory,
        tables,
        update,
        queries,
        clamp,
        avx2,
    } = *job;
    let w = words_per_state(memory.patterns.dim());
    let b = queries.len() / w;
    let mut s = Scratch::<L>::new(memory.row_words);
    let mut orders = Orders {
        dim: memory.patterns.dim(),
        seed: match update {
            SpinUpdate::Async { seed, .. } => seed,
            SpinUpdate::Sync { .. } => 0,
        },
        clamp,
        made: Vec::new(),
    };
    let mut out = Vec::new();
    loop {
        let q = next.fetch_add(1, Ordering::Relaxed);
        if q >= b {
            return out;
        }
        let mut sigma = queries[q * w..(q + 1) * w].to_vec();
        let (o, sc, sg) = (&mut orders, &mut s, &mut sigma[..]);
        #[cfg(target_arch = "x86_64")]
        let (history, done) = if avx2 {
            // SAFETY: `avx2` is true only where the CPU has AVX2 and POPCNT
            // (`simd_available`, checked at run time).
            unsafe { run_query_avx2(memory, tables, update, clamp, o, sc, sg) }
        } else {
            run_query_baseline(memory, tables, update, clamp, o, sc, sg)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let (history, done) = {
            let _ = avx2;
            run_query_baseline(memory, tables, update, clamp, o, sc, sg)
        };
        out.push((q, sigma, history, done));
    }
}

fn run_all<L: Lane>(job: &Job<'_, L>, b: usize, threads: usize) -> SpinResult {
    let threads = crate::fast::thread_count(threads).min(b);
    let next = AtomicUsize::new(0);
    let done: Vec<_> = if threads <= 1 {
        worker(job, &next)
    } else {
        let next = &next;
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| scope.spawn(move || worker(job, next)))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("spin dynamics worker panicked"))
                .collect()
        })
    };
    let w = words_per_state(job.memory.patterns.dim());
    let mut states = vec![0u32; b * w];
    let mut flips = vec![Vec::new(); b];
    let mut converged = vec![false; b];
    for (q, sigma, history, ok) in done {
        states[q * w..(q + 1) * w].copy_from_slice(&sigma);
        flips[q] = history;
        converged[q] = ok;
    }
    SpinResult {
        states,
        flips,
        converged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dam_core::binary::{pack, unpack};

    /// The baseline loop (the AVX2 twin is what `tests/spin_fast.rs` runs on a CPU with
    /// AVX2) against the reference: 32- and 64-bit lanes, the exponential, both updates.
    #[test]
    fn baseline_loop_matches_the_reference() {
        let (n, p, b) = (70, 45, 6);
        let patterns = BinaryPatterns::procedural(p, n, 3).unwrap();
        let w = words_per_state(n);
        let mut queries = vec![0u32; b * w];
        for q in 0..b {
            // Pattern q with every third spin from q on flipped.
            let mut x = unpack(patterns.pattern(q), n);
            for i in (q..n).step_by(3) {
                x[i] = -x[i];
            }
            pack(&x, &mut queries[q * w..(q + 1) * w]);
        }
        let clamp = Clamp::fixing(n, &[0, 5, 33, 69]).unwrap();
        for energy in [
            SpinEnergy::Polynomial { n: 3 },
            SpinEnergy::Polynomial { n: 8 },
            SpinEnergy::RectifiedPolynomial { n: 2 },
            SpinEnergy::Exponential { beta: 0.7 },
        ] {
            for update in [
                SpinUpdate::Sync { max_steps: 4 },
                SpinUpdate::Async {
                    max_sweeps: 20,
                    seed: 8,
                },
            ] {
                let want = crate::reference::binary::run_clamped(
                    &patterns, energy, update, &queries, &clamp,
                )
                .unwrap();
                let got = run_with(&patterns, energy, update, &queries, &clamp, 2, false).unwrap();
                assert_eq!(got, want, "{energy:?} {update:?}");
            }
        }
    }

    #[test]
    fn transpose32_moves_bit_k_of_word_j_to_bit_j_of_word_k() {
        let mut a = [0u32; 32];
        let mut x: u32 = 0x1234_5678;
        for w in a.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *w = x;
        }
        let before = a;
        transpose32(&mut a);
        for (j, &row) in before.iter().enumerate() {
            for (k, &col) in a.iter().enumerate() {
                assert_eq!((row >> k) & 1, (col >> j) & 1, "bit {k} of word {j}");
            }
        }
    }
}
