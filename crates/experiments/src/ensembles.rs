//! Stored-pattern sets that are not i.i.d. draws: ±1 patterns with a minimum pairwise
//! Hamming distance (greedy, seeded), real digits drawn from a pool, and prototype data
//! (noisy copies of a few prototypes); and the statistics a run reports about the set it
//! actually used (mean |feature correlation|, minimum Hamming distance).
//!
//! The procedural ensembles (`binary`, `correlated:c`, `gaussian`, `spherical`) live in
//! `dam::procedural`: their pattern μ is a pure function of (seed, μ), generated where it
//! is used, with the same bits on the CPU and on the GPU. The sets here are built on the
//! host (the separated construction is sequential by nature: each candidate is checked
//! against every pattern accepted so far) and the same values are handed to either
//! device, so both devices see identical patterns.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dam::binary::{overlap, pack, words_per_state, BinaryPatterns};
use dam::procedural::{fill, words, PatternKind, Stream};

use crate::error::{invalid, Result};
use crate::seed::trial_seed;

/// Candidates the separated construction may draw for P patterns: 64·P + 65,536.
pub fn separated_budget(count: usize) -> u64 {
    64 * count as u64 + 65_536
}

/// P ±1 patterns of dimension N with every pairwise Hamming distance ≥ `min_distance`:
/// candidates are the procedural binary patterns 0, 1, 2, … of run `seed`, and each is
/// kept when it is at distance ≥ d from every pattern kept before it (greedy, in order).
/// Fails with a clear message, instead of searching on, when P patterns are not found
/// within [`separated_budget`] candidates, or when d > N.
pub fn separated(
    count: usize,
    dim: usize,
    min_distance: usize,
    seed: u64,
) -> Result<BinaryPatterns> {
    let text = format!("separated:{min_distance}");
    if min_distance > dim {
        return Err(invalid(
            "--patterns",
            &text,
            format!("d = {min_distance} exceeds N = {dim}: no two ±1 patterns are that far apart"),
        ));
    }
    if count == 0 || dim == 0 {
        return Ok(BinaryPatterns::procedural(count, dim, seed)?);
    }
    let w = words_per_state(dim);
    let mut kept = vec![0u32; count * w];
    let mut row = vec![0.0f32; dim];
    let mut cand = vec![0u32; w];
    let (mut found, budget) = (0usize, separated_budget(count));
    let mut drawn = 0u64;
    while found < count {
        if drawn == budget {
            return Err(invalid(
                "--patterns",
                &text,
                format!(
                    "only {found} of P = {count} patterns at pairwise Hamming distance ≥ \
                     {min_distance} (N = {dim}) found in {budget} candidates (64·P + 65,536); \
                     lower P or d"
                ),
            ));
        }
        fill(PatternKind::Binary, seed, Stream::Patterns, drawn, &mut row);
        drawn += 1;
        pack(&row, &mut cand);
        let far = (0..found).all(|mu| {
            let o = overlap(&kept[mu * w..(mu + 1) * w], &cand, dim);
            (dim as i32 - o) / 2 >= min_distance as i32
        });
        if far {
            kept[found * w..(found + 1) * w].copy_from_slice(&cand);
            found += 1;
        }
    }
    let values: Vec<f32> = (0..count)
        .flat_map(|mu| dam::binary::unpack(&kept[mu * w..(mu + 1) * w], dim))
        .collect();
    Ok(BinaryPatterns::from_signs(count, dim, &values)?)
}

/// Prototype data: K prototypes (the procedural binary patterns 0..K of a seed derived
/// from `seed`), and P stored patterns, pattern μ a copy of prototype μ mod K with each
/// entry flipped independently with probability ρ (Philox word of the `Queries` stream,
/// index μ + 2: flip when its top 24 bits are below ρ·2²⁴). Returns (patterns, prototypes).
pub fn prototypes(
    count: usize,
    dim: usize,
    k: usize,
    rho: f64,
    seed: u64,
) -> Result<(BinaryPatterns, BinaryPatterns)> {
    let text = format!("prototype:{k}:{rho}");
    if k == 0 || k > count {
        return Err(invalid(
            "--patterns",
            &text,
            format!("need 1 ≤ K ≤ P prototypes (P = {count})"),
        ));
    }
    if !(0.0..=0.5).contains(&rho) {
        return Err(invalid(
            "--patterns",
            &text,
            "the flip probability ρ must be in [0, 0.5]",
        ));
    }
    let proto_seed = trial_seed(seed, 0x5052_4f54, 0);
    let protos = BinaryPatterns::procedural(k, dim, proto_seed)?;
    let threshold = (rho * (1u64 << 24) as f64).round() as u32;
    let mut values = Vec::with_capacity(count * dim);
    for mu in 0..count {
        let base = dam::binary::unpack(protos.pattern(mu % k), dim);
        for (i, v) in base.into_iter().enumerate() {
            let word = words(seed, Stream::Queries, mu as u64 + 2, (i / 4) as u32)[i % 4];
            values.push(if (word >> 8) < threshold { -v } else { v });
        }
    }
    Ok((BinaryPatterns::from_signs(count, dim, &values)?, protos))
}

/// A pool of digits (MNIST images, 784 pixels in [−1, 1]) to store as patterns.
#[derive(Debug, Clone)]
pub struct DigitPool {
    images: Arc<Vec<f32>>,
    count: usize,
    /// The folder read.
    pub dir: PathBuf,
}

/// Pixels per digit.
pub const DIGIT_DIM: usize = dam::mnist::SIDE * dam::mnist::SIDE;

impl DigitPool {
    /// Reads every `*images-idx3-ubyte[.gz]` file in `dir` (in name order); `None` reads the
    /// digits shipped with the repository.
    pub fn load(dir: Option<&Path>) -> Result<Self> {
        let dir = dir.map_or_else(dam::mnist::data_dir, Path::to_path_buf);
        let text = format!("mnist:{}", dir.display());
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| invalid("--patterns", &text, format!("cannot read the folder: {e}")))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.contains("images-idx3-ubyte"))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(invalid(
                "--patterns",
                &text,
                "no *images-idx3-ubyte[.gz] file in the folder",
            ));
        }
        let mut images = Vec::new();
        for f in &files {
            let a = dam::mnist::load_images(f, usize::MAX)?;
            images.extend(a.iter().copied());
        }
        let count = images.len() / DIGIT_DIM;
        Ok(Self {
            images: Arc::new(images),
            count,
            dir,
        })
    }

    /// Number of digits in the pool.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// P distinct digits chosen by a seeded partial Fisher–Yates shuffle (P×784,
    /// row-major); `binarise` maps pixels to ±1 (ink, i.e. a value > 0, → +1).
    pub fn draw(&self, count: usize, seed: u64, binarise: bool) -> Result<Vec<f32>> {
        if count > self.count {
            return Err(invalid(
                "patterns",
                &count.to_string(),
                format!(
                    "the digit pool in {} holds {} digits",
                    self.dir.display(),
                    self.count
                ),
            ));
        }
        let mut order: Vec<usize> = (0..self.count).collect();
        for i in 0..count {
            let r = trial_seed(seed, 0x4449_4749, i as u64);
            let j = i + (r % (self.count - i) as u64) as usize;
            order.swap(i, j);
        }
        let mut out = Vec::with_capacity(count * DIGIT_DIM);
        for &d in &order[..count] {
            let img = &self.images[d * DIGIT_DIM..(d + 1) * DIGIT_DIM];
            if binarise {
                out.extend(img.iter().map(|&v| if v > 0.0 { 1.0 } else { -1.0 }));
            } else {
                out.extend_from_slice(img);
            }
        }
        Ok(out)
    }
}

/// Patterns measured for [`Realised`]: the first this many of a set.
pub const STATS_PATTERNS: usize = 1024;

/// What a set of stored patterns turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Realised {
    /// Mean over feature pairs (i < j) of |Pearson correlation of features i and j across
    /// the patterns|; pairs with a constant feature are left out. `None` below 2 patterns.
    pub mean_abs_correlation: Option<f64>,
    /// Smallest Hamming distance between two of the patterns (±1 sets only; `None` below 2
    /// patterns or for real-valued sets).
    pub min_hamming: Option<u64>,
}

/// The [`Realised`] statistics of the first [`STATS_PATTERNS`] rows of `rows` (M×N).
pub fn realised(rows: &[f32], dim: usize) -> Realised {
    let m = (rows.len() / dim.max(1)).min(STATS_PATTERNS);
    if m < 2 || dim == 0 {
        return Realised::default();
    }
    let rows = &rows[..m * dim];
    // Centred, unit-variance columns (f64), then the mean |inner product| / M.
    let mut cols = vec![0.0f64; dim * m];
    let mut live = vec![false; dim];
    for i in 0..dim {
        let mean = (0..m).map(|r| rows[r * dim + i] as f64).sum::<f64>() / m as f64;
        let var = (0..m)
            .map(|r| (rows[r * dim + i] as f64 - mean).powi(2))
            .sum::<f64>()
            / m as f64;
        if var > 1e-12 {
            live[i] = true;
            let sd = var.sqrt();
            for r in 0..m {
                cols[i * m + r] = (rows[r * dim + i] as f64 - mean) / sd;
            }
        }
    }
    let (mut sum, mut pairs) = (0.0f64, 0u64);
    for i in 0..dim {
        if !live[i] {
            continue;
        }
        let a = &cols[i * m..(i + 1) * m];
        for j in i + 1..dim {
            if !live[j] {
                continue;
            }
            let b = &cols[j * m..(j + 1) * m];
            let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            sum += (dot / m as f64).abs();
            pairs += 1;
        }
    }
    let binary = rows.iter().all(|&v| v == 1.0 || v == -1.0);
    let min_hamming = binary.then(|| {
        let w = words_per_state(dim);
        let mut packed = vec![0u32; m * w];
        for r in 0..m {
            pack(
                &rows[r * dim..(r + 1) * dim],
                &mut packed[r * w..(r + 1) * w],
            );
        }
        let mut best = dim as u64;
        for a in 0..m {
            for b in a + 1..m {
                let o = overlap(
                    &packed[a * w..(a + 1) * w],
                    &packed[b * w..(b + 1) * w],
                    dim,
                );
                best = best.min(((dim as i32 - o) / 2) as u64);
            }
        }
        best
    });
    Realised {
        mean_abs_correlation: (pairs > 0).then(|| sum / pairs as f64),
        min_hamming,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separated_sets_keep_their_distance_and_refuse_the_unreachable() {
        let set = separated(200, 64, 22, 5).unwrap();
        let rows: Vec<f32> = (0..200)
            .flat_map(|mu| dam::binary::unpack(set.pattern(mu), 64))
            .collect();
        let r = realised(&rows, 64);
        assert!(r.min_hamming.unwrap() >= 22, "{r:?}");
        // Deterministic for a seed, different for another.
        assert_eq!(separated(200, 64, 22, 5).unwrap(), set);
        assert_ne!(separated(200, 64, 22, 6).unwrap(), set);
        // d = 0 is the plain binary ensemble.
        assert_eq!(
            separated(50, 40, 0, 9).unwrap(),
            BinaryPatterns::procedural(50, 40, 9).unwrap()
        );
        for (p, n, d) in [(100, 16, 12), (3, 10, 11)] {
            let e = separated(p, n, d, 1).unwrap_err().to_string();
            assert!(e.contains("--patterns") && e.contains("separated:"), "{e}");
        }
    }

    #[test]
    fn realised_statistics_are_exact_on_small_sets() {
        // Features 0 and 1 equal, feature 2 opposite to them, feature 3 constant.
        let rows = [
            1.0, 1.0, -1.0, 1.0, //
            -1.0, -1.0, 1.0, 1.0, //
            1.0, 1.0, -1.0, 1.0, //
            -1.0, -1.0, 1.0, 1.0,
        ];
        let r = realised(&rows, 4);
        assert_eq!(r.mean_abs_correlation, Some(1.0));
        assert_eq!(r.min_hamming, Some(0));
        let r = realised(&[1.0, 0.5, -1.0, 0.25], 2);
        assert_eq!(r.min_hamming, None);
        assert_eq!(realised(&[1.0, 1.0], 2), Realised::default());
    }

    #[test]
    fn prototypes_are_noisy_copies() {
        let (set, protos) = prototypes(60, 100, 3, 0.1, 4).unwrap();
        for mu in 0..60 {
            let o = overlap(set.pattern(mu), protos.pattern(mu % 3), 100);
            assert!(o > 50, "μ = {mu}: overlap {o}");
        }
        let (exact, _) = prototypes(6, 100, 3, 0.0, 4).unwrap();
        assert_eq!(exact.pattern(0), protos.pattern(0));
        assert!(prototypes(5, 10, 0, 0.1, 1).is_err());
        assert!(prototypes(5, 10, 6, 0.1, 1).is_err());
        assert!(prototypes(5, 10, 2, 0.7, 1).is_err());
    }

    #[test]
    fn digit_pools_draw_distinct_digits() {
        let pool = DigitPool::load(None).unwrap();
        assert_eq!(pool.len(), 10_000);
        let a = pool.draw(50, 3, true).unwrap();
        assert_eq!(a.len(), 50 * DIGIT_DIM);
        assert!(a.iter().all(|&v| v == 1.0 || v == -1.0));
        assert_eq!(a, pool.draw(50, 3, true).unwrap());
        assert_ne!(a, pool.draw(50, 4, true).unwrap());
        let c = pool.draw(5, 3, false).unwrap();
        assert!(c.iter().any(|&v| v != 1.0 && v != -1.0));
        assert!(pool.draw(10_001, 3, true).is_err());
        let missing = std::env::temp_dir().join("dam-no-such-digits");
        assert!(DigitPool::load(Some(&missing)).is_err());
    }
}
