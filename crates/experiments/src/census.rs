//! The state census: from R random ±1 starts, run the exact spin dynamics of a binary
//! dense associative memory to a fixed point and classify where each start ends.
//!
//! Each distinct final state (an *attractor*) is one of
//! * `stored` — a stored pattern or its sign-reversal (label `+μ` / `-μ`);
//! * `prototype` — for prototype data ([`crate::ensembles::prototypes`]), a prototype or its
//!   reversal (label `+k` / `-k`), when it is not itself stored;
//! * `mixture` — a mixture of stored patterns: with m_μ = ξ^μ·x / N, the set
//!   S = {μ : |m_μ| ≥ θ}, θ = max(0.2, 3/√N), has 2 to 16 members and x equals
//!   sign(Σ_{μ∈S} sign(m_μ) ξ^μ) on all but ≤ 5 % of the entries where that sum is non-zero
//!   (label: the overlap pattern, e.g. `+3-7+12`);
//! * `spurious` — anything else.
//!
//! Per attractor: how many starts end there (its basin fraction), its energy, its largest
//! |m_μ|, and its **stability ratio** min_i ΔE_i / mean_i ΔE_i, where ΔE_i is the energy
//! increase from flipping neuron i alone. At a fixed point every ΔE_i ≥ 0; the ratio is 1
//! when every neuron is held equally firmly and near 0 when some neuron is barely held
//! (stored patterns of a memory below capacity have flat profiles; spurious states tend to
//! have a few weakly held neurons — the idea of separating learned from spurious states by
//! their stability profile). Negative when the state is not a fixed point (a start that did
//! not converge within the sweep budget).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use dam::binary::{overlap, pack, unpack, words_per_state, BinaryPatterns, SpinEnergy, SpinUpdate};
use dam::procedural::{fill, PatternKind, Stream};
use dam::Device;
use plotters::prelude::*;

use crate::args::parse_patterns;
use crate::capacity::{Energy, PatternSet};
use crate::ensembles::{self, DIGIT_DIM};
use crate::error::{invalid, output, prepare_out, Result};

/// The classes of [`Attractor::class`], in report order.
pub const CLASSES: [&str; 4] = ["stored", "prototype", "mixture", "spurious"];

/// Random starts per call of the spin dynamics (the progress granularity).
const START_BATCH: usize = 256;

/// What the census runs on.
#[derive(Debug, Clone)]
pub struct CensusInput<'a> {
    /// The stored ±1 patterns.
    pub stored: &'a BinaryPatterns,
    /// The prototypes, for prototype data.
    pub prototypes: Option<&'a BinaryPatterns>,
    /// The spin energy.
    pub energy: SpinEnergy,
    /// Number of random starts R ≥ 1.
    pub starts: usize,
    /// Most asynchronous sweeps per start.
    pub max_sweeps: usize,
    /// Seed of the starts (start r is the `Queries` stream's binary draw r) and of the
    /// sweep order.
    pub seed: u64,
}

/// One distinct final state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Attractor {
    /// Rank by basin size (0 = largest).
    pub attractor: usize,
    /// `stored`, `prototype`, `mixture` or `spurious`.
    pub class: &'static str,
    /// `+μ`/`-μ` (stored), `+k`/`-k` (prototype), the overlap pattern (mixture), or empty.
    pub label: String,
    /// Starts that ended here.
    pub starts: usize,
    /// starts / R.
    pub basin_fraction: f64,
    /// E = −Σ_μ F(ξ^μ·x) (polynomial energies); −β⁻¹ ln Σ_μ e^{βξ^μ·x} for `exp`.
    pub energy: f64,
    /// max_μ |ξ^μ·x| / N.
    pub max_overlap: f64,
    /// min_i ΔE_i / mean_i ΔE_i (see the module docs).
    pub stability_ratio: f64,
    /// Whether every start that ended here converged.
    pub converged: bool,
}

/// The census of one memory.
#[derive(Debug, Clone)]
pub struct Census {
    /// Attractors, largest basin first (ties: the one reached first).
    pub attractors: Vec<Attractor>,
    /// R.
    pub starts: usize,
    /// Starts that reached a fixed point within the budget.
    pub converged: usize,
    /// θ of the mixture rule.
    pub mixture_threshold: f64,
}

/// The memory a census runs on, from `--patterns`: every ±1 ensemble of
/// [`crate::args::parse_patterns`] (`binary`, `correlated:C`, `separated:D`, `mnist[:DIR]`,
/// binarised) built with `seed`, or `prototype:K:RHO` — P noisy copies of K prototypes
/// ([`crate::ensembles::prototypes`]). Returns (stored, prototypes).
pub fn build_memory(
    patterns: &str,
    dim: usize,
    count: usize,
    seed: u64,
) -> Result<(BinaryPatterns, Option<BinaryPatterns>)> {
    if count == 0 || dim == 0 {
        return Err(invalid(
            "--count/--dim",
            &format!("P = {count}, N = {dim}"),
            "need P ≥ 1 and N ≥ 1",
        ));
    }
    if let Some(rest) = patterns.strip_prefix("prototype:") {
        let parsed = rest.split_once(':').and_then(|(k, rho)| {
            Some((
                k.trim().parse::<usize>().ok()?,
                rho.trim().parse::<f64>().ok()?,
            ))
        });
        let Some((k, rho)) = parsed else {
            return Err(invalid("--patterns", patterns, "expected prototype:K:RHO"));
        };
        let (stored, protos) = ensembles::prototypes(count, dim, k, rho, seed)?;
        return Ok((stored, Some(protos)));
    }
    let (kind, set) = parse_patterns(patterns, Energy::Poly)?;
    let stored = match set {
        PatternSet::Procedural if kind.is_binary() => {
            BinaryPatterns::of_kind(kind, count, dim, seed)?
        }
        PatternSet::Procedural => {
            return Err(invalid(
                "--patterns",
                patterns,
                "the census runs the ±1 spin dynamics: use binary, correlated:C, separated:D, \
                 mnist[:DIR] or prototype:K:RHO",
            ))
        }
        PatternSet::Separated(d) => ensembles::separated(count, dim, d, seed)?,
        PatternSet::Digits(pool) => {
            if dim != DIGIT_DIM {
                return Err(invalid(
                    "--dim",
                    &dim.to_string(),
                    "digits have N = 784 pixels",
                ));
            }
            BinaryPatterns::from_signs(count, dim, &pool.draw(count, seed, true)?)?
        }
    };
    Ok((stored, None))
}

fn f_of(energy: SpinEnergy, h: f64) -> f64 {
    match energy {
        SpinEnergy::Polynomial { n } => dam::weights::PolyF {
            degree: n,
            rectified: false,
        }
        .f(h),
        SpinEnergy::RectifiedPolynomial { n } => dam::weights::PolyF {
            degree: n,
            rectified: true,
        }
        .f(h),
        SpinEnergy::Exponential { beta } => (beta * h).exp(),
    }
}

/// (energy, stability ratio) of state `x` (±1 values) given the P×N stored values `rows`.
fn energy_and_stability(energy: SpinEnergy, rows: &[f32], x: &[f32]) -> (f64, f64) {
    let n = x.len();
    let h: Vec<f64> = rows
        .chunks(n)
        .map(|r| r.iter().zip(x).map(|(&a, &b)| (a * b) as f64).sum())
        .collect();
    let h_max = h.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    // ΔE_i = Σ_μ [F(h_μ) − F(h_μ − 2 u_μi)], u = ξ_i x_i; for `exp` scaled by e^{−β h_max}
    // (the ratio does not depend on the scale) so nothing overflows.
    let f = |v: f64| match energy {
        SpinEnergy::Exponential { beta } => (beta * (v - h_max)).exp(),
        _ => f_of(energy, v),
    };
    let mut delta = vec![0.0f64; n];
    for (r, &hm) in rows.chunks(n).zip(&h) {
        let fh = f(hm);
        for ((d, &a), &b) in delta.iter_mut().zip(r).zip(x) {
            *d += fh - f(hm - 2.0 * (a * b) as f64);
        }
    }
    let min = delta.iter().cloned().fold(f64::INFINITY, f64::min);
    let mean = delta.iter().sum::<f64>() / n as f64;
    let ratio = if mean > 0.0 { min / mean } else { 0.0 };
    let e = match energy {
        SpinEnergy::Exponential { beta } => {
            // Shifted by h_max, so that the largest term is e⁰ and nothing overflows.
            let scaled: Vec<f64> = h.iter().map(|&v| beta * (v - h_max)).collect();
            -(h_max + dam::weights::log_sum_exp(&scaled) / beta)
        }
        _ => -h.iter().map(|&v| f_of(energy, v)).sum::<f64>(),
    };
    (e, ratio)
}

fn signed(mu: usize, positive: bool) -> String {
    format!("{}{mu}", if positive { '+' } else { '-' })
}

/// Class and label of final state `x` (packed `words`).
fn classify(
    stored: &BinaryPatterns,
    rows: &[f32],
    prototypes: Option<&BinaryPatterns>,
    words: &[u32],
    x: &[f32],
    theta: f64,
) -> (&'static str, String, f64) {
    let n = stored.dim();
    let overlaps: Vec<i32> = (0..stored.count())
        .map(|mu| overlap(stored.pattern(mu), words, n))
        .collect();
    let max_overlap =
        overlaps.iter().map(|o| o.unsigned_abs()).max().unwrap_or(0) as f64 / n as f64;
    if let Some(mu) = overlaps.iter().position(|o| o.unsigned_abs() as usize == n) {
        return ("stored", signed(mu, overlaps[mu] > 0), max_overlap);
    }
    if let Some(protos) = prototypes {
        for k in 0..protos.count() {
            let o = overlap(protos.pattern(k), words, n);
            if o.unsigned_abs() as usize == n {
                return ("prototype", signed(k, o > 0), max_overlap);
            }
        }
    }
    let members: Vec<usize> = (0..overlaps.len())
        .filter(|&mu| (overlaps[mu].abs() as f64 / n as f64) >= theta)
        .collect();
    if (2..=16).contains(&members.len()) {
        let mut wrong = 0usize;
        for (i, &xi) in x.iter().enumerate() {
            let v: f32 = members
                .iter()
                .map(|&mu| overlaps[mu].signum() as f32 * rows[mu * n + i])
                .sum();
            if v != 0.0 && (v > 0.0) != (xi > 0.0) {
                wrong += 1;
            }
        }
        if wrong as f64 <= 0.05 * n as f64 {
            let label = members
                .iter()
                .map(|&mu| signed(mu, overlaps[mu] > 0))
                .collect::<String>();
            return ("mixture", label, max_overlap);
        }
    }
    ("spurious", String::new(), max_overlap)
}

/// `dam census`: the memory, the dynamics and where to write.
#[derive(Debug, Clone)]
pub struct CensusSpec {
    /// The stored patterns, as [`build_memory`] reads them.
    pub patterns: String,
    /// Dimension N.
    pub dim: usize,
    /// Number of stored patterns P.
    pub count: usize,
    /// The spin energy: `poly`, `rpoly` or `exp` ([`Energy::spin`]).
    pub energy: Energy,
    /// Polynomial degree n.
    pub degree: u32,
    /// β of `exp`.
    pub beta: f64,
    /// Random starts R.
    pub starts: usize,
    /// Most asynchronous sweeps per start.
    pub max_sweeps: usize,
    /// Seed of the memory, the starts and the sweep order.
    pub seed: u64,
    /// The output folder (created if missing).
    pub out: PathBuf,
    /// The command's arguments, as summary.json records them (`args`).
    pub args: serde_json::Value,
}

/// What [`run`] found and wrote.
#[derive(Debug, Clone)]
pub struct CensusReport {
    /// The census.
    pub census: Census,
    /// `cpu`, `reference` or `wgpu`.
    pub device: String,
}

/// Builds the memory of `spec`, takes its census on `device` ([`take`]) and
/// writes census.csv, summary.json and census.svg into `spec.out` ([`Census::write`]);
/// `progress` is called with the starts done after each batch.
pub fn run(
    spec: &CensusSpec,
    device: &Device,
    progress: impl FnMut(usize),
) -> Result<CensusReport> {
    let Some(energy) = spec.energy.spin(spec.degree, spec.beta) else {
        return Err(invalid(
            "--energy",
            spec.energy.name(),
            "the census runs the exact ±1 spin dynamics: use poly, rpoly or exp \
             (exp decides as softmax does on ±1 states)",
        ));
    };
    if spec.starts == 0 {
        return Err(invalid("--starts", "0", "at least one random start"));
    }
    let start = std::time::Instant::now();
    let (stored, prototypes) = build_memory(&spec.patterns, spec.dim, spec.count, spec.seed)?;
    let (device_name, adapter) = device.describe()?;
    prepare_out(&spec.out)?;
    let input = CensusInput {
        stored: &stored,
        prototypes: prototypes.as_ref(),
        energy,
        starts: spec.starts,
        max_sweeps: spec.max_sweeps,
        seed: spec.seed,
    };
    let census = take(device, &input, progress)?;
    let summary = serde_json::json!({
        "device": device_name,
        "adapter": adapter,
        "args": spec.args,
        "seconds": start.elapsed().as_secs_f64(),
    });
    census.write(&spec.out, summary)?;
    Ok(CensusReport {
        census,
        device: device_name,
    })
}

/// Takes the census of `input` on `device`, in memory ([`run`] also builds the memory and
/// writes the files); `progress` is called with the starts done after each batch.
pub fn take(
    device: &Device,
    input: &CensusInput<'_>,
    mut progress: impl FnMut(usize),
) -> Result<Census> {
    if input.starts == 0 {
        return Err(invalid("--starts", "0", "at least one random start"));
    }
    if input.max_sweeps == 0 {
        return Err(invalid("--max-sweeps", "0", "at least one sweep"));
    }
    let stored = input.stored;
    let (p, n) = (stored.count(), stored.dim());
    let w = words_per_state(n);
    let rows: Vec<f32> = (0..p)
        .flat_map(|mu| unpack(stored.pattern(mu), n))
        .collect();
    let theta = (3.0 / (n as f64).sqrt()).max(0.2);
    let mut finals = Vec::with_capacity(input.starts * w);
    let mut converged_flags = Vec::with_capacity(input.starts);
    let mut state = vec![0.0f32; n];
    for lo in (0..input.starts).step_by(START_BATCH) {
        let hi = (lo + START_BATCH).min(input.starts);
        let mut queries = vec![0u32; (hi - lo) * w];
        for r in lo..hi {
            fill(
                PatternKind::Binary,
                input.seed,
                Stream::Queries,
                r as u64,
                &mut state,
            );
            pack(&state, &mut queries[(r - lo) * w..(r - lo + 1) * w]);
        }
        let update = SpinUpdate::Async {
            max_sweeps: input.max_sweeps,
            seed: input.seed,
        };
        let result = dam::spin_dynamics(device, stored, input.energy, update, &queries)?;
        finals.extend_from_slice(&result.states);
        converged_flags.extend_from_slice(&result.converged);
        progress(hi - lo);
    }
    // Group identical final states, in order of first arrival.
    let mut index: HashMap<&[u32], usize> = HashMap::new();
    let mut groups: Vec<(usize, usize, bool)> = Vec::new(); // (first start, count, all converged)
    for r in 0..input.starts {
        let key = &finals[r * w..(r + 1) * w];
        let g = *index.entry(key).or_insert_with(|| {
            groups.push((r, 0, true));
            groups.len() - 1
        });
        groups[g].1 += 1;
        groups[g].2 &= converged_flags[r];
    }
    groups.sort_by_key(|&(first, count, _)| (std::cmp::Reverse(count), first));
    let attractors = groups
        .iter()
        .enumerate()
        .map(|(rank, &(first, count, converged))| {
            let words = &finals[first * w..(first + 1) * w];
            let x = unpack(words, n);
            let (class, label, max_overlap) =
                classify(stored, &rows, input.prototypes, words, &x, theta);
            let (energy, stability_ratio) = energy_and_stability(input.energy, &rows, &x);
            Attractor {
                attractor: rank,
                class,
                label,
                starts: count,
                basin_fraction: count as f64 / input.starts as f64,
                energy,
                max_overlap,
                stability_ratio,
                converged,
            }
        })
        .collect();
    Ok(Census {
        attractors,
        starts: input.starts,
        converged: converged_flags.iter().filter(|&&c| c).count(),
        mixture_threshold: theta,
    })
}

impl Census {
    /// Per class: (attractors, starts, basin fraction, mean stability ratio over attractors).
    pub fn classes(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for class in CLASSES {
            let of: Vec<&Attractor> = self
                .attractors
                .iter()
                .filter(|a| a.class == class)
                .collect();
            let starts: usize = of.iter().map(|a| a.starts).sum();
            let ratio = (!of.is_empty())
                .then(|| of.iter().map(|a| a.stability_ratio).sum::<f64>() / of.len() as f64);
            out.insert(
                class.into(),
                serde_json::json!({
                    "attractors": of.len(),
                    "starts": starts,
                    "basin_fraction": starts as f64 / self.starts as f64,
                    "mean_stability_ratio": ratio,
                }),
            );
        }
        serde_json::Value::Object(out)
    }

    /// Writes census.csv (one row per attractor), summary.json (`summary` plus the census'
    /// own keys) and census.svg (stability ratio vs basin fraction, by class).
    pub fn write(&self, out: &Path, mut summary: serde_json::Value) -> Result<()> {
        let csv_path = out.join("census.csv");
        let err = |path: &Path, e: &dyn std::fmt::Display| output(path, e);
        let mut w = csv::Writer::from_path(&csv_path).map_err(|e| err(&csv_path, &e))?;
        for a in &self.attractors {
            w.serialize(a).map_err(|e| err(&csv_path, &e))?;
        }
        w.flush().map_err(|e| err(&csv_path, &e))?;
        summary["starts"] = self.starts.into();
        summary["converged"] = self.converged.into();
        summary["distinct_attractors"] = self.attractors.len().into();
        summary["mixture_threshold"] = self.mixture_threshold.into();
        summary["classes"] = self.classes();
        let json_path = out.join("summary.json");
        let text = serde_json::to_string_pretty(&summary).map_err(|e| err(&json_path, &e))?;
        std::fs::write(&json_path, text + "\n").map_err(|e| err(&json_path, &e))?;
        let svg = out.join("census.svg");
        self.draw(&svg).map_err(|e| err(&svg, &e))
    }

    fn draw(&self, path: &Path) -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (720, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let y0 = 0.5 / self.starts as f64;
        let lo = self
            .attractors
            .iter()
            .map(|a| a.stability_ratio)
            .fold(0.0f64, f64::min);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "State census: {} random starts, {} attractors",
                    self.starts,
                    self.attractors.len()
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((lo - 0.05)..1.05, (y0..1.5).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("stability ratio min ΔE / mean ΔE")
            .y_desc("basin fraction")
            .draw()?;
        let colors = [BLUE, GREEN, MAGENTA, RED];
        for (class, color) in CLASSES.iter().zip(colors) {
            let pts: Vec<(f64, f64)> = self
                .attractors
                .iter()
                .filter(|a| a.class == *class)
                .map(|a| (a.stability_ratio, a.basin_fraction))
                .collect();
            if pts.is_empty() {
                continue;
            }
            let share: f64 = pts.iter().map(|p| p.1).sum();
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?
                .label(format!("{class} ({:.1} % of starts)", 100.0 * share))
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
        }
        crate::output::legend_and_present(&mut chart, SeriesLabelPosition::UpperLeft)
            .map_err(|e| e.to_string().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Below capacity, random starts end in stored patterns, reversals and mixtures; the
    /// stored ones are fixed points with a positive stability ratio, and every class count
    /// adds up to R. Both devices find the same attractors.
    #[test]
    fn census_of_a_small_memory() {
        let stored = BinaryPatterns::procedural(3, 64, 5).unwrap();
        let input = CensusInput {
            stored: &stored,
            prototypes: None,
            energy: SpinEnergy::Polynomial { n: 2 },
            starts: 300,
            max_sweeps: 50,
            seed: 9,
        };
        let mut done = 0;
        let c = take(&Device::Cpu, &input, |k| done += k).unwrap();
        assert_eq!(done, 300);
        assert_eq!(c.attractors.iter().map(|a| a.starts).sum::<usize>(), 300);
        assert_eq!(c.converged, 300);
        let stored_starts: usize = c
            .attractors
            .iter()
            .filter(|a| a.class == "stored")
            .map(|a| a.starts)
            .sum();
        assert!(stored_starts > 150, "{:?}", c.attractors);
        for a in &c.attractors {
            assert!(a.stability_ratio >= 0.0, "{a:?}");
            if a.class == "stored" {
                assert_eq!(a.max_overlap, 1.0);
            }
        }
        // A 3-mixture of three patterns is a classical attractor of the n = 2 network.
        assert!(
            c.attractors.iter().any(|a| a.class != "spurious"),
            "{:?}",
            c.attractors
        );
        assert!(matches!(
            take(
                &Device::Cpu,
                &CensusInput {
                    starts: 0,
                    ..input.clone()
                },
                |_| {}
            ),
            Err(crate::error::ExperimentError::Invalid {
                argument: "--starts",
                ..
            })
        ));
    }

    #[test]
    fn mixtures_and_stability_are_computed_as_documented() {
        // Three orthogonal-ish patterns; their symmetric mixture is classified as such.
        let stored = BinaryPatterns::procedural(3, 96, 2).unwrap();
        let n = 96;
        let rows: Vec<f32> = (0..3)
            .flat_map(|mu| unpack(stored.pattern(mu), n))
            .collect();
        let mix: Vec<f32> = (0..n)
            .map(|i| (rows[i] - rows[n + i] + rows[2 * n + i]).signum())
            .collect();
        let mut words = vec![0u32; words_per_state(n)];
        pack(&mix, &mut words);
        let (class, label, _) = classify(&stored, &rows, None, &words, &mix, 0.2);
        assert_eq!((class, label.as_str()), ("mixture", "+0-1+2"));
        let x = unpack(stored.pattern(1), n);
        pack(&x, &mut words);
        assert_eq!(classify(&stored, &rows, None, &words, &x, 0.2).1, "+1");
        // One stored pattern, n = 2: ΔE_i = N² − (N − 2)² for every i, ratio 1.
        let one = &rows[..n];
        let (e, ratio) = energy_and_stability(SpinEnergy::Polynomial { n: 2 }, one, one);
        assert_eq!((e, ratio), (-((n * n) as f64), 1.0));
        let (e, ratio) = energy_and_stability(SpinEnergy::Exponential { beta: 0.5 }, one, one);
        assert!(
            (e + n as f64).abs() < 1e-9 && (ratio - 1.0).abs() < 1e-12,
            "{e} {ratio}"
        );
    }
}
