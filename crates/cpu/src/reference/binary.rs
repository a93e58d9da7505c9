//! The exact binary spin dynamics (Krotov & Hopfield 2016, eq. 3) on the CPU, in plain
//! 64-bit integers; see `dam_core::binary` for the maths and why it is exact.

use dam_core::binary::{
    overlap, sweep_order, words_per_state, BinaryPatterns, Clamp, SpinEnergy, SpinResult,
    SpinTable, SpinUpdate,
};
use dam_core::Result;

fn spin(words: &[u32], i: usize) -> i64 {
    if (words[i / 32] >> (i % 32)) & 1 == 1 {
        1
    } else {
        -1
    }
}

/// Δ_i = Σ_μ ξ_i^μ W(a_μ), a_μ = h_μ − ξ_i^μ σ_i, exactly.
fn delta(patterns: &BinaryPatterns, table: &SpinTable, h: &[i64], sigma_i: i64, i: usize) -> i64 {
    let n = patterns.dim() as i64;
    let a = |mu: usize| h[mu] - spin(patterns.pattern(mu), i) * sigma_i;
    let top = if table.relative_to_top {
        (0..patterns.count()).map(a).max().unwrap_or(0)
    } else {
        0
    };
    (0..patterns.count())
        .map(|mu| {
            let am = a(mu);
            let w = if table.relative_to_top {
                table.values[(top - am) as usize]
            } else {
                table.values[(am + n + 1) as usize]
            };
            spin(patterns.pattern(mu), i) * w
        })
        .sum()
}

/// Runs the spin dynamics from each packed query (B × ⌈N/32⌉ words), with the neurons
/// outside `clamp.free` held at their query values (`Clamp::none` for none).
pub fn run_clamped(
    patterns: &BinaryPatterns,
    energy: SpinEnergy,
    update: SpinUpdate,
    queries: &[u32],
    clamp: &Clamp,
) -> Result<SpinResult> {
    let (b, table) = patterns.prepare_run(energy, queries)?;
    patterns.validate_clamp(clamp)?;
    let (n, w) = (patterns.dim(), words_per_state(patterns.dim()));
    let mut states = queries.to_vec();
    let mut flips = Vec::with_capacity(b);
    let mut converged = Vec::with_capacity(b);
    for q in 0..b {
        let sigma = &mut states[q * w..(q + 1) * w];
        let mut h: Vec<i64> = (0..patterns.count())
            .map(|mu| overlap(patterns.pattern(mu), sigma, n) as i64)
            .collect();
        let mut history = Vec::new();
        let mut done = false;
        match update {
            SpinUpdate::Async { max_sweeps, seed } => {
                for sweep in 0..max_sweeps {
                    let mut count = 0;
                    for i in clamp.order(sweep_order(n, seed, sweep)) {
                        let i = i as usize;
                        let s = spin(sigma, i);
                        let d = delta(patterns, &table, &h, s, i);
                        let new = if d > 0 {
                            1
                        } else if d < 0 {
                            -1
                        } else {
                            s
                        };
                        if new != s {
                            sigma[i / 32] ^= 1 << (i % 32);
                            for (mu, hm) in h.iter_mut().enumerate() {
                                *hm += 2 * spin(patterns.pattern(mu), i) * new;
                            }
                            count += 1;
                        }
                    }
                    history.push(count);
                    if count == 0 {
                        done = true;
                        break;
                    }
                }
            }
            SpinUpdate::Sync { max_steps } => {
                for _ in 0..max_steps {
                    let flip: Vec<usize> = (0..n)
                        .filter(|&i| clamp.is_free(i))
                        .filter(|&i| {
                            let s = spin(sigma, i);
                            let d = delta(patterns, &table, &h, s, i);
                            (d > 0 && s < 0) || (d < 0 && s > 0)
                        })
                        .collect();
                    for &i in &flip {
                        sigma[i / 32] ^= 1 << (i % 32);
                    }
                    for (mu, hm) in h.iter_mut().enumerate() {
                        *hm = overlap(patterns.pattern(mu), sigma, n) as i64;
                    }
                    history.push(flip.len() as u32);
                    if flip.is_empty() {
                        done = true;
                        break;
                    }
                }
            }
        }
        flips.push(history);
        converged.push(done);
    }
    Ok(SpinResult {
        states,
        flips,
        converged,
    })
}
