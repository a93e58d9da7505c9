//! The small languages of the `dam` command line, parsed in the library so that they are
//! tested without spawning the binary: ranges `START:STOP:STEP`, named choices
//! `NAME[:VALUE]`, shards `i/n`, and loads (α → P = round(e^{αN}), or P directly).

use dam::procedural::MAX_PROCEDURAL_COUNT;

use crate::capacity::{Criterion, DynamicsArg, Energy, PatternSet, QueryKind, Sweep};
use crate::ensembles::DigitPool;
use crate::error::{invalid, Result};

/// Most points one range may hold.
pub const MAX_POINTS: usize = 10_000;

/// `START:STOP:STEP` → the values START, START+STEP, … ≤ STOP.
pub fn parse_range(argument: &'static str, text: &str) -> Result<Vec<f64>> {
    let nums: Vec<f64> = text
        .split(':')
        .map(|p| p.trim().parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| {
            invalid(
                argument,
                text,
                format!("expected START:STOP:STEP numbers ({e})"),
            )
        })?;
    let [start, stop, step] = nums[..] else {
        return Err(invalid(argument, text, "expected START:STOP:STEP"));
    };
    if !(start.is_finite() && stop.is_finite() && step.is_finite()) || step <= 0.0 || stop < start {
        return Err(invalid(
            argument,
            text,
            "need finite START ≤ STOP and STEP > 0",
        ));
    }
    let count = ((stop - start) / step + 1e-9).floor() as usize + 1;
    if count > MAX_POINTS {
        return Err(invalid(
            argument,
            text,
            format!("{count} points is more than 10,000"),
        ));
    }
    Ok((0..count).map(|i| start + i as f64 * step).collect())
}

/// A named choice: (name, constructor from `NAME:VALUE`, value of a bare `NAME`).
pub type Choice<T> = (&'static str, Option<fn(f64) -> T>, Option<T>);

/// Parses `NAME` or `NAME:VALUE` against `names`.
pub fn parse_with_value<T: Copy>(
    argument: &'static str,
    text: &str,
    names: &[Choice<T>],
) -> Result<T> {
    let (name, value) = text
        .split_once(':')
        .map_or((text, None), |(a, b)| (a, Some(b)));
    for &(n, with, plain) in names {
        if n != name {
            continue;
        }
        return match (value, with, plain) {
            (None, _, Some(p)) => Ok(p),
            (Some(v), Some(f), _) => v
                .parse::<f64>()
                .map(f)
                .map_err(|e| invalid(argument, text, format!("bad number after `{n}:` ({e})"))),
            _ => Err(invalid(
                argument,
                text,
                format!(
                    "`{n}` takes {}",
                    if with.is_some() {
                        "a value: NAME:VALUE"
                    } else {
                        "no value"
                    }
                ),
            )),
        };
    }
    let known: Vec<&str> = names.iter().map(|n| n.0).collect();
    Err(invalid(
        argument,
        text,
        format!("unknown; expected one of {known:?}"),
    ))
}

/// `i/n` → (i, n); `None` is the whole run (0, 1). Whether i < n is checked by the sweep.
pub fn parse_shard(text: Option<&str>) -> Result<(usize, usize)> {
    let Some(text) = text else {
        return Ok((0, 1));
    };
    let parsed = text.split_once('/').and_then(|(i, n)| {
        Some((
            i.trim().parse::<usize>().ok()?,
            n.trim().parse::<usize>().ok()?,
        ))
    });
    parsed.ok_or_else(|| invalid("--shard", text, "expected i/n"))
}

/// The loads of a sweep at dimension `dim`: exactly one of `alpha` (α = ln P / N, P =
/// round(e^{αN})) and `count` (P directly, whole numbers), each a `START:STOP:STEP` range;
/// P in 1..=2⁴⁰.
pub fn loads(dim: usize, alpha: Option<&str>, count: Option<&str>) -> Result<Vec<u64>> {
    match (alpha, count) {
        (Some(a), None) => parse_range("--alpha", a)?
            .into_iter()
            .map(|alpha| {
                let p = (alpha * dim as f64).exp().round();
                if p > MAX_PROCEDURAL_COUNT as f64 {
                    return Err(invalid(
                        "--alpha",
                        a,
                        format!("α = {alpha} gives P = e^{{αN}} ≈ {p:.3e}, beyond 2^40"),
                    ));
                }
                Ok(p.max(1.0) as u64)
            })
            .collect(),
        (None, Some(c)) => parse_range("--count", c)?
            .into_iter()
            .map(|p| {
                if p < 1.0 || p > MAX_PROCEDURAL_COUNT as f64 || p.fract() != 0.0 {
                    return Err(invalid(
                        "--count",
                        c,
                        format!("P = {p} is not a whole number in 1..=2^40"),
                    ));
                }
                Ok(p as u64)
            })
            .collect(),
        _ => Err(invalid(
            "--alpha/--count",
            "",
            "give exactly one of --alpha or --count",
        )),
    }
}

/// The bracket of a capacity search: the first and last load of the `--alpha` or
/// `--count` range (its STEP only needs to be valid; the loads between are not listed).
pub fn bracket(dim: usize, alpha: Option<&str>, count: Option<&str>) -> Result<Vec<u64>> {
    let ends = |argument: &'static str, text: &str| -> Result<String> {
        let parts: Vec<&str> = text.split(':').collect();
        let [start, stop, _] = parts[..] else {
            return Err(invalid(argument, text, "expected START:STOP:STEP"));
        };
        let (a, b) = (start.trim(), stop.trim());
        let span = b
            .parse::<f64>()
            .ok()
            .zip(a.parse::<f64>().ok())
            .map(|(b, a)| b - a);
        let step = span.filter(|s| *s > 0.0).unwrap_or(1.0);
        Ok(format!("{a}:{b}:{step}"))
    };
    match (alpha, count) {
        (Some(a), None) => loads(dim, Some(&ends("--alpha", a)?), None),
        (None, Some(c)) => loads(dim, None, Some(&ends("--count", c)?)),
        _ => loads(dim, alpha, count),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExperimentError;

    fn argument_of(e: ExperimentError) -> &'static str {
        match e {
            ExperimentError::Invalid { argument, .. } => argument,
            other => panic!("not an argument error: {other}"),
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("--x", "1:2:0.5").unwrap(), vec![1.0, 1.5, 2.0]);
        assert_eq!(parse_range("--x", "3:3:1").unwrap(), vec![3.0]);
        for bad in ["2:1:1", "1:2", "1:2:0", "a:2:1", "1:inf:1", "0:1e6:1"] {
            assert_eq!(
                argument_of(parse_range("--x", bad).unwrap_err()),
                "--x",
                "{bad}"
            );
        }
    }

    #[test]
    fn choices_and_shards() {
        let names: [Choice<f64>; 2] = [
            ("plain", None, Some(1.0)),
            ("with", Some(|v| v * 2.0), None),
        ];
        assert_eq!(parse_with_value("--c", "plain", &names).unwrap(), 1.0);
        assert_eq!(parse_with_value("--c", "with:3", &names).unwrap(), 6.0);
        for bad in ["plain:2", "with", "with:x", "other"] {
            assert_eq!(
                argument_of(parse_with_value("--c", bad, &names).unwrap_err()),
                "--c"
            );
        }
        assert_eq!(parse_shard(None).unwrap(), (0, 1));
        assert_eq!(parse_shard(Some("2/5")).unwrap(), (2, 5));
        assert_eq!(
            argument_of(parse_shard(Some("2-5")).unwrap_err()),
            "--shard"
        );
    }

    #[test]
    fn loads_from_alpha_or_count() {
        assert_eq!(
            loads(10, Some("0.5:0.6:0.1"), None).unwrap(),
            vec![148, 403]
        );
        assert_eq!(loads(10, None, Some("5:7:1")).unwrap(), vec![5, 6, 7]);
        assert_eq!(
            argument_of(loads(10, Some("5:5:1"), None).unwrap_err()),
            "--alpha"
        );
        assert_eq!(
            argument_of(loads(10, None, Some("1.5:2:1")).unwrap_err()),
            "--count"
        );
        assert_eq!(
            argument_of(loads(10, None, None).unwrap_err()),
            "--alpha/--count"
        );
        assert_eq!(
            argument_of(loads(10, Some("1:1:1"), Some("1:1:1")).unwrap_err()),
            "--alpha/--count"
        );
    }
}

/// A capacity sweep as text, the way `dam capacity` and the Python `dam.capacity` take it.
#[derive(Debug, Clone)]
pub struct SweepText<'a> {
    /// `spherical`, `gaussian`, `binary`, `correlated:C`, `separated:D` or `mnist[:DIR]`
    /// ([`parse_patterns`]).
    pub patterns: &'a str,
    /// Dimension N.
    pub dim: usize,
    /// `lse`, `exp`, `poly`, `rpoly`, `lsr`, `sparsemax` or `entmax[:ALPHA]` (or another
    /// name of [`Energy::parse`]).
    pub energy: &'a str,
    /// λ (β on the raw dot product) for `lse`/`exp`, b of the spherical log-sum-ReLU for
    /// `lsr`; `None`: the energy's default ([`Energy::default_beta`]: 1, or 2 + √2 for
    /// `lsr`).
    pub beta: Option<f64>,
    /// Polynomial degree.
    pub degree: u32,
    /// Loads as α = ln P / N: `LO:HI:STEP`.
    pub alpha: Option<&'a str>,
    /// Loads as P: `LO:HI:STEP`.
    pub count: Option<&'a str>,
    /// Trials per point.
    pub trials: usize,
    /// `stored`, `flip:RHO` or `random`.
    pub query: &'a str,
    /// `one-step` or `converge:MAX`.
    pub dynamics: &'a str,
    /// `weight`, `overlap:THETA`, `nearest` or `exact`.
    pub criterion: &'a str,
    /// Master seed.
    pub seed: u64,
    /// `I/K`: this shard of K.
    pub shard: Option<&'a str>,
    /// A capacity search: the loads are only the bracket's two ends ([`bracket`]).
    pub search: bool,
}

impl SweepText<'_> {
    /// The validated sweep and its loads P.
    pub fn build(&self) -> Result<(Sweep, Vec<u64>)> {
        let energy = Energy::parse(self.energy)?;
        let (kind, set) = parse_patterns(self.patterns, energy)?;
        let query = parse_with_value(
            "--query",
            self.query,
            &[
                ("stored", None, Some(QueryKind::Stored)),
                ("flip", Some(QueryKind::Flip), None),
                ("random", None, Some(QueryKind::Random)),
            ],
        )?;
        let dynamics = parse_with_value(
            "--dynamics",
            self.dynamics,
            &[
                ("one-step", None, Some(DynamicsArg::OneStep)),
                (
                    "converge",
                    Some(|v: f64| DynamicsArg::Converge(v as usize)),
                    None,
                ),
            ],
        )?;
        if let DynamicsArg::Converge(0) = dynamics {
            return Err(invalid(
                "--dynamics",
                self.dynamics,
                "MAX must be at least 1",
            ));
        }
        let criterion = parse_with_value(
            "--criterion",
            self.criterion,
            &[
                ("weight", None, Some(Criterion::Weight)),
                ("overlap", Some(Criterion::Overlap), None),
                ("nearest", None, Some(Criterion::Nearest)),
                ("exact", None, Some(Criterion::Exact)),
            ],
        )?;
        let sweep = Sweep {
            kind,
            set,
            dim: self.dim,
            energy,
            beta: self.beta.unwrap_or(energy.default_beta()),
            degree: self.degree,
            trials: self.trials,
            query,
            dynamics,
            criterion,
            seed: self.seed,
            shard: parse_shard(self.shard)?,
        };
        let counts = if self.search {
            bracket(self.dim, self.alpha, self.count)?
        } else {
            loads(self.dim, self.alpha, self.count)?
        };
        sweep.validate()?;
        Ok((sweep, counts))
    }
}

/// `--patterns`: the entries' distribution and where the patterns come from.
/// `spherical`, `gaussian`, `binary` and `correlated:C` (C ∈ [0, 1)) are procedural;
/// `separated:D` (whole D ≥ 0) is the greedy ±1 set of [`crate::ensembles::separated`];
/// `mnist` or `mnist:DIR` draws digits (default: the shipped ones), binarised for the spin
/// energies (`poly`, `rpoly`, `exp`) and `lsr`, pixels in [−1, 1] for `lse`.
pub fn parse_patterns(
    text: &str,
    energy: Energy,
) -> Result<(dam::procedural::PatternKind, PatternSet)> {
    use dam::procedural::PatternKind;
    let (name, value) = text
        .split_once(':')
        .map_or((text, None), |(a, b)| (a, Some(b)));
    let number = |v: Option<&str>| -> Result<f64> {
        let v = v.ok_or_else(|| {
            invalid(
                "--patterns",
                text,
                format!("`{name}` takes a value: {name}:VALUE"),
            )
        })?;
        v.trim().parse::<f64>().map_err(|e| {
            invalid(
                "--patterns",
                text,
                format!("bad number after `{name}:` ({e})"),
            )
        })
    };
    let plain = |kind| match value {
        None => Ok((kind, PatternSet::Procedural)),
        Some(_) => Err(invalid(
            "--patterns",
            text,
            format!("`{name}` takes no value"),
        )),
    };
    match name {
        "spherical" => plain(PatternKind::Spherical),
        "gaussian" => plain(PatternKind::Gaussian),
        "binary" => plain(PatternKind::Binary),
        "correlated" => {
            let c = number(value)?;
            let kind = PatternKind::correlated(c)
                .map_err(|_| invalid("--patterns", text, "the correlation c must be in [0, 1)"))?;
            Ok((kind, PatternSet::Procedural))
        }
        "separated" => {
            let d = number(value)?;
            if !(d >= 0.0 && d.fract() == 0.0 && d < 1e9) {
                return Err(invalid(
                    "--patterns",
                    text,
                    "the distance d must be a whole number ≥ 0",
                ));
            }
            Ok((PatternKind::Binary, PatternSet::Separated(d as usize)))
        }
        "mnist" => {
            let pool = DigitPool::load(value.map(std::path::Path::new))?;
            let kind = if matches!(energy, Energy::Lse | Energy::Entmax(_)) {
                PatternKind::Gaussian
            } else {
                PatternKind::Binary
            };
            Ok((kind, PatternSet::Digits(pool)))
        }
        _ => Err(invalid(
            "--patterns",
            text,
            "use spherical, gaussian, binary, correlated:C, separated:D or mnist[:DIR]",
        )),
    }
}
