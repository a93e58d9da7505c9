//! Capacity search (`dam capacity --search half|all`): bisection on the load P for the
//! largest P at which a sweep point still meets a target — half of the queried stored
//! patterns retrieved (P_½) or every one of them (P_all).
//!
//! # The rule
//!
//! The bracket [LO, HI] must have LO meeting the target and HI failing it; both ends are
//! probed first. Then, while HI − LO > 1, the midpoint M is probed: meeting the target
//! moves LO to M, failing moves HI to M. The answer is the final LO: the largest probed P
//! that met the target whose next probed load above failed. Success is monotone in P only
//! in expectation; a probe's trials are a pure function of (seed, P, trial), so a noisy
//! point is what it measured, the same on every run and device, and the bisection is
//! deterministic for a seed. Each probe costs one sweep point (`trials` retrievals);
//! ⌈log₂(HI − LO)⌉ + 2 probes in all.

use std::path::{Path, PathBuf};

use crate::capacity::{PatternSet, PointResult, Sweep};
use crate::error::{invalid, prepare_out, ExperimentError, Result};

/// What the search looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// success_rate ≥ ½ (P_½).
    Half,
    /// Every trial succeeds (P_all).
    All,
}

impl Target {
    /// `half` or `all`, as the command line, the files and the closing line spell it.
    pub fn name(self) -> &'static str {
        match self {
            Target::Half => "half",
            Target::All => "all",
        }
    }

    /// Whether a point meets the target.
    pub fn met(self, point: &PointResult) -> bool {
        match self {
            Target::Half => point.trials > 0 && 2 * point.successes >= point.trials,
            Target::All => point.trials > 0 && point.successes == point.trials,
        }
    }
}

/// The outcome of a search.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Every probe, in the order it was made.
    pub probes: Vec<PointResult>,
    /// The largest P found meeting the target (`None` when LO already fails).
    pub patterns: Option<u64>,
    /// The final bracket [LO, HI] (HI fails; LO meets the target unless `patterns` is
    /// `None`).
    pub bracket: (u64, u64),
    /// Why there is no answer, or why the bracket was not a bracket.
    pub note: Option<String>,
}

/// Bisects between `lo` and `hi` (lo < hi) on `device`; `progress` is called after each
/// probe with it.
pub fn bisect(
    sweep: &Sweep,
    device: &dam::Device,
    target: Target,
    lo: u64,
    hi: u64,
    mut progress: impl FnMut(&PointResult),
) -> Result<Outcome> {
    if lo == 0 || lo >= hi {
        return Err(invalid(
            "--count/--alpha",
            &format!("{lo}..{hi}"),
            "the search needs a bracket LO < HI with LO ≥ 1 (the first and last loads)",
        ));
    }
    let mut probes = Vec::new();
    // The first reason a set could not be built, and every P where that happened.
    let mut unreachable: Option<String> = None;
    let mut unbuilt: Vec<u64> = Vec::new();
    let mut probe = |p: u64| -> Result<bool> {
        let point = match sweep.run_point(device, p, |_| {}) {
            Ok(point) => point,
            // A built set (`separated:d`) that cannot hold P patterns: the probe runs no
            // trial and counts as not meeting the target, so the answer is capped by the
            // largest set that can be built (said in the note).
            Err(ExperimentError::Invalid {
                argument: "--patterns",
                reason,
                ..
            }) if matches!(sweep.set, PatternSet::Separated(_)) => {
                unreachable.get_or_insert(reason);
                unbuilt.push(p);
                PointResult {
                    alpha: (p as f64).ln() / sweep.dim as f64,
                    patterns: p,
                    trials: 0,
                    successes: 0,
                    success_rate: 0.0,
                    mean_overlap: 0.0,
                    bit_flip_rate: None,
                    seconds: 0.0,
                    mean_abs_correlation: None,
                    min_hamming: None,
                    empty_supports: None,
                }
            }
            Err(e) => return Err(e),
        };
        progress(&point);
        let met = target.met(&point);
        probes.push(point);
        Ok(met)
    };
    if !probe(lo)? {
        return Ok(Outcome {
            probes,
            patterns: None,
            bracket: (lo, hi),
            note: Some(format!("P = {lo} (LO) already fails the target: lower LO")),
        });
    }
    if probe(hi)? {
        return Ok(Outcome {
            probes,
            patterns: Some(hi),
            bracket: (lo, hi),
            note: Some(format!(
                "P = {hi} (HI) still meets the target: the answer is at least HI; raise HI"
            )),
        });
    }
    let (mut lo, mut hi) = (lo, hi);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if probe(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let note = unreachable.map(|reason| {
        if unbuilt.contains(&hi) {
            format!(
                "capped: the set could not be built at P = {hi} ({reason}); unbuilt probes count \
                 as not meeting the target, so the answer is the largest buildable size found, \
                 a lower bound on the capacity"
            )
        } else {
            format!(
                "some probes above the answer could not build the set ({reason}); P = {hi} was \
                 built and failed, so the answer is the capacity"
            )
        }
    });
    Ok(Outcome {
        probes,
        patterns: Some(lo),
        bracket: (lo, hi),
        note,
    })
}

/// The columns of search.csv.
pub const SEARCH_COLUMNS: [&str; 4] = ["patterns", "trials", "successes", "success_rate"];

/// Writes search.csv (one row per probe, in probe order) and summary.json
/// (`search`, `patterns_half` or `patterns_all`, `bracket`, `probes`, `note`, `device`,
/// `adapter`, `args`, `seconds`) into `out`.
pub fn write_outputs(
    out: &Path,
    target: Target,
    outcome: &Outcome,
    device: &str,
    adapter: &str,
    args: serde_json::Value,
) -> Result<serde_json::Value> {
    let path = out.join("search.csv");
    let fail = |e: &dyn std::fmt::Display| ExperimentError::Output {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut csv = csv::Writer::from_path(&path).map_err(|e| fail(&e))?;
    csv.write_record(SEARCH_COLUMNS).map_err(|e| fail(&e))?;
    for p in &outcome.probes {
        csv.write_record([
            p.patterns.to_string(),
            p.trials.to_string(),
            p.successes.to_string(),
            p.success_rate.to_string(),
        ])
        .map_err(|e| fail(&e))?;
    }
    csv.flush().map_err(|e| fail(&e))?;
    let key = match target {
        Target::Half => "patterns_half",
        Target::All => "patterns_all",
    };
    let summary = serde_json::json!({
        "search": target,
        key: outcome.patterns,
        "bracket": [outcome.bracket.0, outcome.bracket.1],
        "probes": outcome.probes.len(),
        "note": outcome.note,
        "device": device,
        "adapter": adapter,
        "args": args,
        "seconds": outcome.probes.iter().map(|p| p.seconds).sum::<f64>(),
    });
    let text = serde_json::to_string_pretty(&summary).map_err(|e| fail(&e))?;
    std::fs::write(out.join("summary.json"), text + "\n").map_err(|source| {
        ExperimentError::Io {
            path: out.join("summary.json").display().to_string(),
            source,
        }
    })?;
    Ok(summary)
}

/// `dam capacity --search`: a bisection between two loads, written into a folder.
#[derive(Debug, Clone)]
pub struct SearchSpec {
    /// The sweep of every probe.
    pub sweep: Sweep,
    /// P_½ or P_all.
    pub target: Target,
    /// The bracket (LO, HI): the first and last load of `--count` or `--alpha`.
    pub bracket: (u64, u64),
    /// The output folder (created if missing).
    pub out: PathBuf,
    /// The command's arguments, as summary.json records them (`args`).
    pub args: serde_json::Value,
}

/// What [`run`] found and wrote.
#[derive(Debug, Clone)]
pub struct SearchReport {
    /// The bisection.
    pub outcome: Outcome,
    /// summary.json as written.
    pub summary: serde_json::Value,
}

/// Runs the search of `spec` on `device` and writes search.csv and summary.json into
/// `spec.out` ([`write_outputs`]); `progress` is called after each probe with it.
pub fn run(
    spec: &SearchSpec,
    device: &dam::Device,
    progress: impl FnMut(&PointResult),
) -> Result<SearchReport> {
    let (device_name, adapter) = device.describe()?;
    prepare_out(&spec.out)?;
    let (lo, hi) = spec.bracket;
    let outcome = bisect(&spec.sweep, device, spec.target, lo, hi, progress)?;
    let summary = write_outputs(
        &spec.out,
        spec.target,
        &outcome,
        &device_name,
        &adapter,
        spec.args.clone(),
    )?;
    Ok(SearchReport { outcome, summary })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::SweepText;

    fn sweep(trials: usize) -> Sweep {
        SweepText {
            patterns: "spherical",
            dim: 10,
            energy: "lse",
            beta: Some(1.0),
            degree: 2,
            alpha: None,
            count: Some("2:2:1"),
            trials,
            query: "stored",
            dynamics: "one-step",
            criterion: "weight",
            seed: 3,
            shard: None,
            search: false,
        }
        .build()
        .unwrap()
        .0
    }

    #[test]
    fn bisection_finds_the_boundary_of_the_probes_and_is_deterministic() {
        let s = sweep(16);
        let run = || bisect(&s, &dam::Device::Cpu, Target::Half, 2, 4000, |_| {}).unwrap();
        let a = run();
        let p = a.patterns.expect("P = 2 meets the target");
        assert!(a.note.is_none(), "{:?}", a.note);
        assert_eq!(a.bracket, (p, p + 1));
        // The answer met the target and the load just above failed, among the probes.
        let at = |q: u64| a.probes.iter().find(|r| r.patterns == q).expect("probed");
        assert!(Target::Half.met(at(p)));
        assert!(!Target::Half.met(at(p + 1)));
        assert!(a.probes.len() <= 2 + 12);
        let b = run();
        assert_eq!(a.patterns, b.patterns);
        assert_eq!(
            a.probes
                .iter()
                .map(|r| (r.patterns, r.successes))
                .collect::<Vec<_>>(),
            b.probes
                .iter()
                .map(|r| (r.patterns, r.successes))
                .collect::<Vec<_>>()
        );
        // "All" is at most "half".
        let all = bisect(&s, &dam::Device::Cpu, Target::All, 2, 4000, |_| {}).unwrap();
        assert!(all.patterns.unwrap_or(0) <= p);
    }

    #[test]
    fn bad_brackets_are_reported() {
        let s = sweep(8);
        assert!(bisect(&s, &dam::Device::Cpu, Target::Half, 5, 5, |_| {}).is_err());
        assert!(bisect(&s, &dam::Device::Cpu, Target::Half, 0, 5, |_| {}).is_err());
        let high = bisect(&s, &dam::Device::Cpu, Target::Half, 2, 3, |_| {}).unwrap();
        assert_eq!(high.patterns, Some(3));
        assert!(high.note.unwrap().contains("raise HI"));
        let low = bisect(
            &s,
            &dam::Device::Cpu,
            Target::All,
            1_000_000,
            2_000_000,
            |_| {},
        )
        .unwrap();
        assert_eq!(low.patterns, None);
        assert!(low.note.unwrap().contains("lower LO"));
    }
}
