//! `dam minima`: every local minimum of the log-sum-ReLU energy of a small pattern set, by
//! exact enumeration, checked by descent from random starts.
//!
//! The log-sum-ReLU energy in Euclidean form (THEORY.md §9, `dam::Separation::LogSumRelu`
//! with negative Euclidean similarity) is
//!
//! E(x) = −β⁻¹ log( Σ_μ max(0, 1 − (β/2)‖x − ξ^μ‖²) + ε ),  ε ≥ 0.
//!
//! Its *support* at x is S(x) = {μ : ‖x − ξ^μ‖ < r}, r = √(2/β), and its gradient is
//! ∇E = |S|·(x − mean of S)/(Σ + ε): the stationary points are the centroids of supports.
//! The centroid c of a set S is a minimum exactly when S(c) = S — every member lies within r
//! of c and every other pattern at r or beyond — and the update x ← mean of S(x), the exact
//! minimiser of the quadratic that bounds the energy from above on S(x), has these points
//! as its fixed points. A minimum is **stored** when its members are one pattern (or copies
//! of it) and **emergent** when it is the centroid of two or more distinct patterns (Hoover,
//! Krotov et al., NeurIPS 2025). An empty support is an infinite energy (ε = 0) or a flat
//! plateau at −β⁻¹ log ε above every minimum (ε > 0): neither is counted.
//!
//! Two methods, in f64 on the host with the engine's kernel
//! ([`dam::weights::relu_kernel`], [`dam::weights::log_sum_relu_energy`]):
//! * **enumeration** ([`enumerate`]): every candidate set S of at most `max_support`
//!   patterns is checked — all subsets for small sets ([`Enumeration::All`]), or only the
//!   cliques of the neighbour graph (patterns closer than 2r, the only sets whose supports
//!   can overlap, [`Enumeration::Cliques`]) — and kept when S(c) = S and ‖∇E(c)‖ is
//!   zero within the tolerance;
//! * **descent** ([`descend`]): from seeded random starts (a random pattern plus a random
//!   offset inside its support ball) the update x ← mean of S(x) runs to its fixed point;
//!   every point it reaches must be one of the enumerated minima (a support larger than
//!   `max_support` is the one way it can miss, and is reported).
//!
//! **Boundary convention.** A pattern at exactly distance r is outside the support. In
//! floating point "exactly" is "up to rounding": a pattern counts in the support when its
//! kernel 1 − (β/2)d² exceeds the tolerance `tol` (default 10⁻⁹, a relative distance of
//! about tol/2 inside the wall), so that a β on a boundary of the geometry (e.g. 1/2, 3/2
//! and 2 for an equilateral triangle of side 2) is classified as the exact arithmetic
//! would. At such a β the counted point is a fixed point of the update, but where a pattern
//! sits exactly on its wall the energy still falls at first order towards it (e.g. the
//! vertices of the triangle at β = 1/2): it is a minimum in the sense of the convention.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use dam::weights::{log_sum_relu_energy, relu_kernel};
use plotters::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde_json::{json, Value};

use crate::args::parse_range;
use crate::error::{invalid, output, prepare_out, Result};
use crate::seed::trial_seed;

/// Default `--max-support`: the largest candidate set the enumeration checks.
pub const DEFAULT_MAX_SUPPORT: usize = 6;
/// Default `--max-candidates`: the most candidate sets checked at one β.
pub const DEFAULT_MAX_CANDIDATES: u64 = 1_000_000;
/// Default `--starts`: random starts of the descent at each β.
pub const DEFAULT_STARTS: usize = 256;
/// Default `--max-iter`: the most updates of one descent.
pub const DEFAULT_MAX_ITER: usize = 1_000;
/// Default `--tol`: the support threshold on the kernel and the relative gradient bound.
pub const DEFAULT_TOL: f64 = 1e-9;
/// The largest `--tol` accepted.
pub const MAX_TOL: f64 = 1e-2;
/// [`Enumeration::Auto`] checks every subset up to this many patterns, cliques above.
pub const ALL_SUBSETS_MAX_PATTERNS: usize = 16;

/// The columns of minima.csv before the coordinates `x0, x1, …`.
pub const CSV_COLUMNS: [&str; 7] = [
    "beta",
    "kind",
    "support",
    "energy",
    "members",
    "grad_norm",
    "starts",
];

/// The stored patterns: `count` rows of `dim` finite values.
#[derive(Debug, Clone, PartialEq)]
pub struct Points {
    count: usize,
    dim: usize,
    values: Vec<f64>,
}

impl Points {
    /// `count` × `dim` values, row-major; at least one pattern of at least one finite value.
    pub fn new(count: usize, dim: usize, values: Vec<f64>) -> Result<Self> {
        let shape = format!("{count} × {dim}");
        if count == 0 || dim == 0 {
            return Err(invalid(
                "--patterns",
                &shape,
                "need at least one pattern of at least one value",
            ));
        }
        if values.len() != count * dim {
            return Err(invalid(
                "--patterns",
                &shape,
                format!("{} values for {count} rows of {dim}", values.len()),
            ));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(invalid(
                "--patterns",
                &shape,
                format!(
                    "pattern {}, value {}: {} is not finite",
                    i / dim,
                    i % dim,
                    values[i]
                ),
            ));
        }
        Ok(Self { count, dim, values })
    }

    /// Number of patterns P.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Dimension N.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Pattern μ.
    pub fn row(&self, mu: usize) -> &[f64] {
        &self.values[mu * self.dim..(mu + 1) * self.dim]
    }

    /// The mean of the patterns `members` (not empty).
    pub fn centroid(&self, members: &[usize]) -> Vec<f64> {
        let mut c = vec![0.0; self.dim];
        for &mu in members {
            for (ci, &v) in c.iter_mut().zip(self.row(mu)) {
                *ci += v;
            }
        }
        let k = members.len().max(1) as f64;
        c.iter_mut().for_each(|v| *v /= k);
        c
    }
}

/// Reads `--patterns`: one pattern per row, comma-separated numbers ([`parse_patterns`]).
pub fn read_patterns(path: &Path) -> Result<Points> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid("--patterns", &source, format!("cannot read the file: {e}")))?;
    parse_patterns(&text, &source)
}

/// Parses the text of a patterns file (`source` names it in errors): one pattern per row,
/// comma-separated numbers; a first row without any number is a header and skipped; blank
/// lines are skipped. Every row must have the same count of finite values.
pub fn parse_patterns(text: &str, source: &str) -> Result<Points> {
    let bad = |reason: String| invalid("--patterns", source, reason);
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut values = Vec::new();
    let mut first: Option<(u64, usize)> = None; // (line, values) of the first pattern
    let mut seen_record = false;
    for record in reader.records() {
        let record = record.map_err(|e| bad(format!("not CSV: {e}")))?;
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(str::is_empty) {
            continue;
        }
        let header_allowed = !seen_record;
        seen_record = true;
        let parsed: Vec<Option<f64>> = record.iter().map(|f| f.parse::<f64>().ok()).collect();
        if header_allowed && parsed.iter().all(Option::is_none) {
            continue;
        }
        if let Some(column) = parsed.iter().position(Option::is_none) {
            return Err(bad(format!(
                "line {line}, column {}: `{}` is not a number",
                column + 1,
                &record[column]
            )));
        }
        let row: Vec<f64> = parsed.into_iter().flatten().collect();
        if let Some(column) = row.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!(
                "line {line}, column {}: `{}` is not a finite number",
                column + 1,
                &record[column]
            )));
        }
        match first {
            None => first = Some((line, row.len())),
            Some((first_line, dim)) if dim != row.len() => {
                return Err(bad(format!(
                    "ragged rows: line {line} has {} values, line {first_line} has {dim}",
                    row.len()
                )))
            }
            Some(_) => {}
        }
        values.extend(row);
    }
    let Some((_, dim)) = first else {
        return Err(bad(
            "no patterns: the file is empty or has only a header (need at least 1 row)".into(),
        ));
    };
    Points::new(values.len() / dim, dim, values)
}

/// The energy whose minima are counted: only the log-sum-ReLU has minima at centroids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinimaEnergy {
    /// Log-sum-ReLU (`lsr`, `log-sum-relu`).
    Lsr,
}

impl MinimaEnergy {
    /// `lsr`.
    pub fn name(self) -> &'static str {
        match self {
            MinimaEnergy::Lsr => "lsr",
        }
    }

    /// Reads `--energy`: `lsr` or `log-sum-relu`.
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "lsr" | "log-sum-relu" => Ok(MinimaEnergy::Lsr),
            _ => Err(invalid(
                "--energy",
                text,
                "only lsr (log-sum-ReLU, also `log-sum-relu`) has centroid minima to enumerate",
            )),
        }
    }
}

/// Reads `--beta`: one β, or an inclusive sweep `LO:HI:STEP` ([`parse_range`]) whose values
/// are rounded to 13 significant digits (so that `0.1:3:0.1` gives 0.3, not
/// 0.30000000000000004). Every β must be finite and > 0.
pub fn parse_betas(text: &str) -> Result<Vec<f64>> {
    let betas = if text.contains(':') {
        parse_range("--beta", text)?
            .into_iter()
            .map(|b| format!("{b:.12e}").parse::<f64>().unwrap_or(b))
            .collect()
    } else {
        vec![text.trim().parse::<f64>().map_err(|e| {
            invalid(
                "--beta",
                text,
                format!("expected a number or LO:HI:STEP ({e})"),
            )
        })?]
    };
    if let Some(b) = betas.iter().find(|b| !(b.is_finite() && **b > 0.0)) {
        return Err(invalid(
            "--beta",
            text,
            format!("β = {b}: need finite β > 0 (the support radius is √(2/β))"),
        ));
    }
    Ok(betas)
}

/// The log-sum-ReLU energy at one β, with the support threshold `tol` (see the module's
/// boundary convention).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lsr {
    /// β > 0: the support radius is √(2/β).
    pub beta: f64,
    /// ε ≥ 0 inside the logarithm.
    pub eps: f64,
    /// A pattern is in the support when its kernel exceeds `tol`.
    pub tol: f64,
}

impl Lsr {
    /// The energy at `beta` with `eps` and `tol`, validated (errors name `--beta`,
    /// `--epsilon`, `--tol`).
    pub fn new(beta: f64, eps: f64, tol: f64) -> Result<Self> {
        if !(beta.is_finite() && beta > 0.0) {
            return Err(invalid("--beta", &beta.to_string(), "need finite β > 0"));
        }
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(invalid("--epsilon", &eps.to_string(), "need finite ε ≥ 0"));
        }
        if !(tol.is_finite() && tol > 0.0 && tol <= MAX_TOL) {
            return Err(invalid(
                "--tol",
                &tol.to_string(),
                format!("need 0 < tol ≤ {MAX_TOL}"),
            ));
        }
        Ok(Self { beta, eps, tol })
    }

    /// The support radius r = √(2/β).
    pub fn radius(&self) -> f64 {
        (2.0 / self.beta).sqrt()
    }

    /// The kernel max(0, 1 − (β/2)‖x − ξ‖²) of one pattern ([`relu_kernel`] of s = −d).
    pub fn kernel(&self, pattern: &[f64], x: &[f64]) -> f64 {
        relu_kernel(self.beta, -distance(pattern, x))
    }

    /// The support at `x`: the patterns whose kernel exceeds `tol`, in index order.
    pub fn support(&self, points: &Points, x: &[f64]) -> Vec<usize> {
        (0..points.count())
            .filter(|&mu| self.kernel(points.row(mu), x) > self.tol)
            .collect()
    }

    /// Σ_μ max(0, 1 − (β/2)‖x − ξ^μ‖²) over every pattern.
    pub fn kernel_sum(&self, points: &Points, x: &[f64]) -> f64 {
        (0..points.count())
            .map(|mu| self.kernel(points.row(mu), x))
            .sum()
    }

    /// E(x) = −β⁻¹ log(Σ + ε) ([`log_sum_relu_energy`]; +∞ for an empty support, ε = 0).
    pub fn energy(&self, points: &Points, x: &[f64]) -> f64 {
        log_sum_relu_energy(self.beta, self.eps, self.kernel_sum(points, x))
    }

    /// ∇E(x) = Σ_{μ∈S(x)} (x − ξ^μ) / (Σ + ε); zero where the support is empty (the energy
    /// is infinite or flat there).
    pub fn gradient(&self, points: &Points, x: &[f64]) -> Vec<f64> {
        let mut g = vec![0.0; x.len()];
        let support = self.support(points, x);
        if support.is_empty() {
            return g;
        }
        let total = self.kernel_sum(points, x) + self.eps;
        for mu in support {
            for ((gi, &xi), &p) in g.iter_mut().zip(x).zip(points.row(mu)) {
                *gi += xi - p;
            }
        }
        g.iter_mut().for_each(|v| *v /= total);
        g
    }

    /// The minimum at the centroid of `members` (sorted, not empty) when it is one: the
    /// support there is exactly `members`, the energy is finite and
    /// ‖∇E‖ ≤ tol·|S|·(r + ‖c‖)/(Σ + ε) (the gradient relative to its scale).
    pub fn minimum_of(&self, points: &Points, members: &[usize]) -> Option<Minimum> {
        let c = points.centroid(members);
        if self.support(points, &c) != members {
            return None;
        }
        let energy = self.energy(points, &c);
        let grad_norm = norm(&self.gradient(points, &c));
        let scale = members.len() as f64 * (self.radius() + norm(&c))
            / (self.kernel_sum(points, &c) + self.eps);
        if !energy.is_finite() || grad_norm > self.tol * scale {
            return None;
        }
        let first = points.row(members[0]);
        Some(Minimum {
            members: members.to_vec(),
            stored: members.iter().all(|&mu| points.row(mu) == first),
            x: c,
            energy,
            grad_norm,
            starts: 0,
        })
    }
}

/// ‖a − b‖ in f64.
fn distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q) * (p - q))
        .sum::<f64>()
        .sqrt()
}

fn norm(a: &[f64]) -> f64 {
    a.iter().map(|v| v * v).sum::<f64>().sqrt()
}

/// One local minimum: the centroid of its support.
#[derive(Debug, Clone, PartialEq)]
pub struct Minimum {
    /// The support S, sorted pattern indices.
    pub members: Vec<usize>,
    /// The centroid of S.
    pub x: Vec<f64>,
    /// E at the centroid.
    pub energy: f64,
    /// ‖∇E‖ at the centroid (zero up to rounding).
    pub grad_norm: f64,
    /// Every member is the same pattern (one pattern, or copies of it).
    pub stored: bool,
    /// Descent starts that ended here.
    pub starts: usize,
}

impl Minimum {
    /// `stored` or `emergent`.
    pub fn kind(&self) -> &'static str {
        if self.stored {
            "stored"
        } else {
            "emergent"
        }
    }

    /// The members as `0;2;5`.
    pub fn members_text(&self) -> String {
        join_members(&self.members)
    }
}

fn join_members(members: &[usize]) -> String {
    members
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(";")
}

/// Which candidate sets the enumeration checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Enumeration {
    /// [`Enumeration::All`] up to [`ALL_SUBSETS_MAX_PATTERNS`] patterns, else cliques.
    Auto,
    /// Every subset of at most `max_support` patterns.
    All,
    /// The cliques of at most `max_support` patterns of the neighbour graph (an edge
    /// between patterns closer than 2r): every support is one, so nothing is missed.
    Cliques,
}

impl Enumeration {
    /// `auto`, `all` or `cliques`.
    pub fn name(self) -> &'static str {
        match self {
            Enumeration::Auto => "auto",
            Enumeration::All => "all",
            Enumeration::Cliques => "cliques",
        }
    }

    /// Reads `--enumerate`.
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Enumeration::Auto),
            "all" => Ok(Enumeration::All),
            "cliques" => Ok(Enumeration::Cliques),
            _ => Err(invalid("--enumerate", text, "use auto, all or cliques")),
        }
    }

    /// The method used for `count` patterns (`Auto` resolved).
    pub fn resolve(self, count: usize) -> Self {
        match self {
            Enumeration::Auto if count <= ALL_SUBSETS_MAX_PATTERNS => Enumeration::All,
            Enumeration::Auto => Enumeration::Cliques,
            other => other,
        }
    }
}

/// What the search at each β uses besides β.
#[derive(Debug, Clone, PartialEq)]
pub struct MinimaOptions {
    /// ε ≥ 0 (`--epsilon`).
    pub eps: f64,
    /// The support threshold and relative gradient bound (`--tol`).
    pub tol: f64,
    /// The largest candidate set (`--max-support`).
    pub max_support: usize,
    /// The most candidate sets at one β (`--max-candidates`); more is an error.
    pub max_candidates: u64,
    /// Which sets are candidates (`--enumerate`).
    pub enumeration: Enumeration,
    /// Random starts of the descent (`--starts`; 0: no descent).
    pub starts: usize,
    /// The most updates per start (`--max-iter`).
    pub max_iter: usize,
    /// Seed of the starts (`--seed`).
    pub seed: u64,
}

impl Default for MinimaOptions {
    fn default() -> Self {
        Self {
            eps: 0.0,
            tol: DEFAULT_TOL,
            max_support: DEFAULT_MAX_SUPPORT,
            max_candidates: DEFAULT_MAX_CANDIDATES,
            enumeration: Enumeration::Auto,
            starts: DEFAULT_STARTS,
            max_iter: DEFAULT_MAX_ITER,
            seed: 0,
        }
    }
}

impl MinimaOptions {
    /// Checks every option (errors name the flag).
    pub fn validate(&self) -> Result<()> {
        Lsr::new(1.0, self.eps, self.tol)?;
        if self.max_support == 0 {
            return Err(invalid("--max-support", "0", "need at least 1"));
        }
        if self.max_candidates == 0 {
            return Err(invalid("--max-candidates", "0", "need at least 1"));
        }
        if self.max_iter == 0 {
            return Err(invalid("--max-iter", "0", "need at least 1"));
        }
        Ok(())
    }
}

/// The minima the enumeration found at one β.
#[derive(Debug, Clone, PartialEq)]
pub struct Enumerated {
    /// Stored first, then emergent; each by support size, then members.
    pub minima: Vec<Minimum>,
    /// Candidate sets checked.
    pub candidates: u64,
    /// The method used ([`Enumeration::All`] or [`Enumeration::Cliques`]).
    pub method: Enumeration,
    /// Minima dropped as coincident with an earlier one (within the tolerance).
    pub merged: usize,
}

struct Walk<'a> {
    points: &'a Points,
    lsr: &'a Lsr,
    neighbours: Option<Vec<Vec<usize>>>,
    max_support: usize,
    max_candidates: u64,
    candidates: u64,
    found: Vec<Minimum>,
}

impl Walk<'_> {
    /// Checks `current` + each of `allowed` (sorted, all after `current`'s last) and
    /// extends it further.
    fn extend(&mut self, current: &mut Vec<usize>, allowed: &[usize]) -> Result<()> {
        for (i, &v) in allowed.iter().enumerate() {
            if self.candidates == self.max_candidates {
                return Err(invalid(
                    "--max-candidates",
                    &self.max_candidates.to_string(),
                    format!(
                        "β = {}: more candidate sets of at most {} patterns (--max-support) \
                         than this; raise --max-candidates or lower --max-support",
                        self.lsr.beta, self.max_support
                    ),
                ));
            }
            self.candidates += 1;
            current.push(v);
            if let Some(m) = self.lsr.minimum_of(self.points, current) {
                self.found.push(m);
            }
            if current.len() < self.max_support {
                let rest = &allowed[i + 1..];
                let next: Vec<usize> = match &self.neighbours {
                    Some(n) => intersect(rest, &n[v]),
                    None => rest.to_vec(),
                };
                self.extend(current, &next)?;
            }
            current.pop();
        }
        Ok(())
    }
}

/// The common elements of two sorted lists.
fn intersect(a: &[usize], b: &[usize]) -> Vec<usize> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Every minimum whose support has at most `max_support` patterns, by checking the
/// candidate sets of `method` (resolved by the pattern count); more than `max_candidates`
/// sets is an error naming `--max-candidates`.
pub fn enumerate(
    points: &Points,
    lsr: &Lsr,
    max_support: usize,
    max_candidates: u64,
    method: Enumeration,
) -> Result<Enumerated> {
    let method = method.resolve(points.count());
    let p = points.count();
    // Members of a support lie within r of its centroid, so pairwise closer than 2r; the
    // relative margin keeps pairs at 2r up to rounding (a superset never misses a set).
    let reach = 2.0 * lsr.radius() * (1.0 + lsr.tol);
    let neighbours = (method == Enumeration::Cliques).then(|| {
        (0..p)
            .map(|a| {
                (0..p)
                    .filter(|&b| b != a && distance(points.row(a), points.row(b)) < reach)
                    .collect()
            })
            .collect()
    });
    let mut walk = Walk {
        points,
        lsr,
        neighbours,
        max_support,
        max_candidates,
        candidates: 0,
        found: Vec::new(),
    };
    let all: Vec<usize> = (0..p).collect();
    walk.extend(&mut Vec::with_capacity(max_support), &all)?;
    let mut found = walk.found;
    found.sort_by(|a, b| {
        (!a.stored, a.members.len(), &a.members).cmp(&(!b.stored, b.members.len(), &b.members))
    });
    let before = found.len();
    let minima = dedup(found, lsr);
    Ok(Enumerated {
        merged: before - minima.len(),
        minima,
        candidates: walk.candidates,
        method,
    })
}

/// Drops every minimum within tol·(r + ‖x‖) of an earlier one (the order is kept).
fn dedup(minima: Vec<Minimum>, lsr: &Lsr) -> Vec<Minimum> {
    let close =
        |a: &Minimum, b: &Minimum| distance(&a.x, &b.x) <= lsr.tol * (lsr.radius() + norm(&b.x));
    // Sorted by the first coordinate, only neighbours within the widest bound compare.
    let widest = minima
        .iter()
        .map(|m| lsr.tol * (lsr.radius() + norm(&m.x)))
        .fold(0.0, f64::max);
    let mut order: Vec<usize> = (0..minima.len()).collect();
    order.sort_by(|&a, &b| minima[a].x[0].total_cmp(&minima[b].x[0]));
    let mut drop = vec![false; minima.len()];
    for (k, &i) in order.iter().enumerate() {
        for &j in &order[k + 1..] {
            if minima[j].x[0] - minima[i].x[0] > widest {
                break;
            }
            if close(&minima[i], &minima[j]) || close(&minima[j], &minima[i]) {
                // Keep the earlier of the two in the report order.
                drop[i.max(j)] = true;
            }
        }
    }
    minima
        .into_iter()
        .zip(drop)
        .filter_map(|(m, d)| (!d).then_some(m))
        .collect()
}

/// Where the descents from random starts ended at one β.
#[derive(Debug, Clone, PartialEq)]
pub struct DescentOutcome {
    /// Random starts run.
    pub starts: usize,
    /// Starts that reached a fixed point within the iteration cap.
    pub converged: usize,
    /// Starts whose support became empty (none in exact arithmetic: Σ never falls).
    pub lost: usize,
    /// Per fixed point, by its support: (the point, starts that ended there).
    pub reached: BTreeMap<Vec<usize>, (Vec<f64>, usize)>,
}

/// Runs the update x ← mean of S(x) from `starts` random starts to a fixed point (at most
/// `max_iter` updates each). Start k picks a pattern uniformly and adds an offset uniform
/// in the ball of radius r·√(1 − 2 tol) (so that pattern is in the support), from a
/// generator seeded with `seed`.
pub fn descend(
    points: &Points,
    lsr: &Lsr,
    starts: usize,
    max_iter: usize,
    seed: u64,
) -> DescentOutcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = points.dim();
    let reach = lsr.radius() * (1.0 - 2.0 * lsr.tol).sqrt();
    let mut outcome = DescentOutcome {
        starts,
        converged: 0,
        lost: 0,
        reached: BTreeMap::new(),
    };
    for _ in 0..starts {
        let mu = rng.random_range(0..points.count());
        let g: Vec<f64> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
        let length = norm(&g);
        let rho = reach * rng.random::<f64>().powf(1.0 / n as f64);
        let x: Vec<f64> = points
            .row(mu)
            .iter()
            .zip(&g)
            .map(|(&p, &gi)| {
                if length > 0.0 {
                    p + rho * gi / length
                } else {
                    p
                }
            })
            .collect();
        let mut support = lsr.support(points, &x);
        for _ in 0..max_iter {
            if support.is_empty() {
                outcome.lost += 1;
                break;
            }
            let next = points.centroid(&support);
            let next_support = lsr.support(points, &next);
            if next_support == support {
                outcome.converged += 1;
                outcome
                    .reached
                    .entry(support)
                    .or_insert_with(|| (next, 0))
                    .1 += 1;
                break;
            }
            support = next_support;
        }
    }
    outcome
}

/// What the descent at one β says about the enumeration.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DescentSummary {
    /// Random starts run.
    pub starts: usize,
    /// Starts that reached a fixed point.
    pub converged: usize,
    /// Starts whose support became empty.
    pub lost: usize,
    /// Distinct fixed points reached.
    pub distinct: usize,
    /// Whether every fixed point reached is an enumerated minimum.
    pub all_enumerated: bool,
    /// The supports (`0;2;5`) of fixed points the enumeration does not have (a mismatch;
    /// e.g. a support larger than `--max-support`).
    pub outside: Vec<String>,
    /// Enumerated minima no start reached (basins can be small: not an error).
    pub unreached: usize,
}

/// The minima at one β.
#[derive(Debug, Clone, PartialEq)]
pub struct BetaResult {
    /// β.
    pub beta: f64,
    /// The support radius √(2/β).
    pub radius: f64,
    /// The enumerated minima, stored first; `starts` filled in by the descent.
    pub minima: Vec<Minimum>,
    /// Candidate sets checked.
    pub candidates: u64,
    /// The enumeration method used.
    pub enumeration: Enumeration,
    /// Coincident minima merged.
    pub merged: usize,
    /// The descent's check (`None` with no starts).
    pub descent: Option<DescentSummary>,
    /// Seconds for this β.
    pub seconds: f64,
}

impl BetaResult {
    /// Stored minima.
    pub fn stored(&self) -> usize {
        self.minima.iter().filter(|m| m.stored).count()
    }

    /// Emergent minima.
    pub fn emergent(&self) -> usize {
        self.minima.len() - self.stored()
    }

    /// Fixed points of the descent outside the enumeration.
    pub fn mismatches(&self) -> usize {
        self.descent.as_ref().map_or(0, |d| d.outside.len())
    }
}

/// Enumerates the minima at `beta` and checks them by descent (seeded by the `seed` of
/// `options` and β, so a β gives the same starts in any sweep).
pub fn minima_at(points: &Points, beta: f64, options: &MinimaOptions) -> Result<BetaResult> {
    options.validate()?;
    let start = Instant::now();
    let lsr = Lsr::new(beta, options.eps, options.tol)?;
    let mut found = enumerate(
        points,
        &lsr,
        options.max_support,
        options.max_candidates,
        options.enumeration,
    )?;
    let descent = (options.starts > 0).then(|| {
        let seed = trial_seed(options.seed, beta.to_bits(), 0);
        let outcome = descend(points, &lsr, options.starts, options.max_iter, seed);
        let index: HashMap<&[usize], usize> = found
            .minima
            .iter()
            .enumerate()
            .map(|(i, m)| (m.members.as_slice(), i))
            .collect();
        let mut counts = vec![0usize; found.minima.len()];
        let mut outside = Vec::new();
        for (members, (_, count)) in &outcome.reached {
            match index.get(members.as_slice()) {
                Some(&i) => counts[i] += count,
                None => outside.push(join_members(members)),
            }
        }
        for (m, c) in found.minima.iter_mut().zip(&counts) {
            m.starts = *c;
        }
        DescentSummary {
            starts: outcome.starts,
            converged: outcome.converged,
            lost: outcome.lost,
            distinct: outcome.reached.len(),
            all_enumerated: outside.is_empty(),
            outside,
            unreached: counts.iter().filter(|&&c| c == 0).count(),
        }
    });
    Ok(BetaResult {
        beta,
        radius: lsr.radius(),
        minima: found.minima,
        candidates: found.candidates,
        enumeration: found.method,
        merged: found.merged,
        descent,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// `dam minima`: the patterns file, the β values, the options and where to write.
#[derive(Debug, Clone)]
pub struct MinimaSpec {
    /// The CSV of stored patterns ([`read_patterns`]).
    pub patterns: PathBuf,
    /// The energy (`--energy`).
    pub energy: MinimaEnergy,
    /// The β values, in order ([`parse_betas`]).
    pub betas: Vec<f64>,
    /// Everything else.
    pub options: MinimaOptions,
    /// The output folder (created if missing).
    pub out: PathBuf,
    /// The command's arguments, as summary.json records them (`args`).
    pub args: Value,
}

/// What [`run`] found and wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct MinimaReport {
    /// One result per β, in the order given.
    pub results: Vec<BetaResult>,
    /// Patterns P.
    pub patterns: usize,
    /// Dimension N.
    pub dim: usize,
    /// Seconds for the whole run.
    pub seconds: f64,
    /// summary.json as written.
    pub summary: Value,
}

/// Reads the patterns, finds the minima at every β ([`minima_at`]; `progress` is called
/// after each) and writes minima.csv (rows added as each β finishes), summary.json and
/// minima.svg into `spec.out`.
pub fn run(spec: &MinimaSpec, mut progress: impl FnMut(&BetaResult)) -> Result<MinimaReport> {
    spec.options.validate()?;
    if spec.betas.is_empty() {
        return Err(invalid("--beta", "", "give at least one β"));
    }
    for &beta in &spec.betas {
        Lsr::new(beta, spec.options.eps, spec.options.tol)?;
    }
    let start = Instant::now();
    let points = read_patterns(&spec.patterns)?;
    prepare_out(&spec.out)?;
    let csv_path = spec.out.join("minima.csv");
    let mut csv = MinimaCsv::create(&csv_path, points.dim())?;
    let mut results = Vec::with_capacity(spec.betas.len());
    for &beta in &spec.betas {
        let r = minima_at(&points, beta, &spec.options)?;
        csv.push(&r)?;
        progress(&r);
        results.push(r);
    }
    let seconds = start.elapsed().as_secs_f64();
    let summary = summary(spec, &points, &results, seconds);
    crate::output::write_json(&spec.out.join("summary.json"), &summary)?;
    let svg = spec.out.join("minima.svg");
    let title = format!(
        "log-sum-ReLU minima vs β: P = {}, N = {}",
        points.count(),
        points.dim()
    );
    draw(&svg, &results, &title).map_err(|e| output(&svg, e))?;
    Ok(MinimaReport {
        results,
        patterns: points.count(),
        dim: points.dim(),
        seconds,
        summary,
    })
}

/// minima.csv, written one β at a time (flushed).
struct MinimaCsv {
    writer: csv::Writer<std::fs::File>,
    path: PathBuf,
}

impl MinimaCsv {
    fn create(path: &Path, dim: usize) -> Result<Self> {
        let fail = |e: &dyn std::fmt::Display| output(path, e);
        let mut writer = csv::Writer::from_path(path).map_err(|e| fail(&e))?;
        let header = CSV_COLUMNS
            .iter()
            .map(|c| c.to_string())
            .chain((0..dim).map(|i| format!("x{i}")));
        writer.write_record(header).map_err(|e| fail(&e))?;
        writer.flush().map_err(|e| fail(&e))?;
        Ok(Self {
            writer,
            path: path.to_path_buf(),
        })
    }

    fn push(&mut self, r: &BetaResult) -> Result<()> {
        let fail = |e: &dyn std::fmt::Display| output(&self.path, e);
        for m in &r.minima {
            let row = [
                number(r.beta),
                m.kind().to_string(),
                m.members.len().to_string(),
                number(m.energy),
                m.members_text(),
                number(m.grad_norm),
                m.starts.to_string(),
            ]
            .into_iter()
            .chain(m.x.iter().map(|&v| number(v)));
            self.writer.write_record(row).map_err(|e| fail(&e))?;
        }
        self.writer.flush().map_err(|e| fail(&e))
    }
}

/// A value in minima.csv: the shortest text that reads back to the same f64, with an
/// exponent for very small or large magnitudes (`1.5`, `2.2e-16`); −0 is written as 0.
fn number(v: f64) -> String {
    format!("{:?}", v + 0.0)
}

/// summary.json: per-β keys are numbers for one β and arrays (aligned with `beta`) for a
/// sweep.
fn summary(spec: &MinimaSpec, points: &Points, results: &[BetaResult], seconds: f64) -> Value {
    let single = results.len() == 1;
    let per = |f: &dyn Fn(&BetaResult) -> Value| -> Value {
        if single {
            f(&results[0])
        } else {
            Value::Array(results.iter().map(f).collect())
        }
    };
    let o = &spec.options;
    json!({
        "energy": spec.energy.name(),
        "beta": per(&|r| json!(r.beta)),
        "stored": per(&|r| json!(r.stored())),
        "emergent": per(&|r| json!(r.emergent())),
        "total": per(&|r| json!(r.minima.len())),
        "radius": per(&|r| json!(r.radius)),
        "candidates": per(&|r| json!(r.candidates)),
        "merged": per(&|r| json!(r.merged)),
        "descent": per(&|r| json!(r.descent)),
        "descent_mismatches": results.iter().map(BetaResult::mismatches).sum::<usize>(),
        "enumeration": results.first().map(|r| r.enumeration.name()),
        "eps": o.eps,
        "tol": o.tol,
        "max_support": o.max_support,
        "max_candidates": o.max_candidates,
        "starts": o.starts,
        "max_iter": o.max_iter,
        "seed": o.seed,
        "patterns": points.count(),
        "dim": points.dim(),
        "seconds": seconds,
        "args": spec.args,
    })
}

/// A count of minima at one β.
type Count = fn(&BetaResult) -> usize;

/// Stored, emergent and total minima against β.
fn draw(
    path: &Path,
    results: &[BetaResult],
    title: &str,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let lo = results.iter().map(|r| r.beta).fold(f64::INFINITY, f64::min);
    let hi = results.iter().map(|r| r.beta).fold(0.0, f64::max);
    let pad = ((hi - lo) * 0.05).max(hi * 0.05).max(1e-3);
    let top = results.iter().map(|r| r.minima.len()).max().unwrap_or(0) as f64;
    let root = SVGBackend::new(path, (720, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((lo - pad)..(hi + pad), -0.5f64..(top * 1.1 + 1.0))?;
    chart
        .configure_mesh()
        .x_desc("β")
        .y_desc("local minima")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    // The total is a wide grey band under the other two, visible where it equals one.
    let series: [(&str, RGBAColor, u32, Count); 3] = [
        ("total", BLACK.mix(0.35), 6, |r| r.minima.len()),
        ("stored", BLUE.to_rgba(), 2, BetaResult::stored),
        ("emergent", RED.to_rgba(), 2, BetaResult::emergent),
    ];
    for (name, color, width, count) in series {
        let line: Vec<(f64, f64)> = results.iter().map(|r| (r.beta, count(r) as f64)).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(width)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(width))
            });
        chart.draw_series(line.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    crate::output::legend_and_present(&mut chart, SeriesLabelPosition::UpperRight)
        .map_err(|e| e.to_string().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExperimentError;
    use dam::Tolerance;

    /// The engine's f32 energy against this module's f64 one at the same points.
    const REFERENCE_ENERGY: Tolerance = Tolerance::new(1e-5, 1e-5);
    /// ∇E against central differences of E (step 10⁻⁶).
    const FINITE_DIFFERENCE: Tolerance = Tolerance::new(1e-6, 1e-5);

    fn argument_of(e: ExperimentError) -> &'static str {
        match e {
            ExperimentError::Invalid { argument, .. } => argument,
            other => panic!("not an argument error: {other}"),
        }
    }

    fn points(rows: &[&[f64]]) -> Points {
        let dim = rows[0].len();
        Points::new(rows.len(), dim, rows.concat()).unwrap()
    }

    /// An equilateral triangle of side 2: (0, 0), (2, 0), (1, √3).
    fn triangle() -> Points {
        points(&[&[0.0, 0.0], &[2.0, 0.0], &[1.0, 3f64.sqrt()]])
    }

    /// The same triangle rotated by 0.3 rad and moved to (10, −3): other roundings.
    fn moved_triangle() -> Points {
        let (s, c) = 0.3f64.sin_cos();
        let t = triangle();
        let rows: Vec<Vec<f64>> = (0..3)
            .map(|mu| {
                let p = t.row(mu);
                vec![10.0 + c * p[0] - s * p[1], -3.0 + s * p[0] + c * p[1]]
            })
            .collect();
        points(&rows.iter().map(Vec::as_slice).collect::<Vec<_>>())
    }

    /// (β, stored, emergent) of the triangle: vertices are minima from β = ½ (the other
    /// two at distance 2 = r, outside), edge midpoints for β ∈ [⅔, 2) (members at 1 < r,
    /// the third vertex at √3 ≥ r), the centre for β < 3/2 (all three at 2/√3 < r):
    /// 1 / 4 / 7 / 6 / 3 minima on (0, ½) / [½, ⅔) / [⅔, 3/2) / [3/2, 2) / [2, ∞).
    const TRIANGLE: [(f64, usize, usize); 19] = [
        (0.1, 0, 1),
        (0.3, 0, 1),
        (0.49, 0, 1),
        (0.5, 3, 1),
        (0.55, 3, 1),
        (0.6, 3, 1),
        (0.66, 3, 1),
        (2.0 / 3.0, 3, 4),
        (0.67, 3, 4),
        (1.0, 3, 4),
        (1.4, 3, 4),
        (1.49, 3, 4),
        (1.5, 3, 3),
        (1.7, 3, 3),
        (1.99, 3, 3),
        (2.0, 3, 0),
        (2.5, 3, 0),
        (3.0, 3, 0),
        (10.0, 3, 0),
    ];

    /// β well inside each interval, where every basin is wide enough for 2,000 starts.
    const TRIANGLE_DESCENT: [f64; 5] = [0.3, 0.6, 1.0, 1.7, 3.0];

    fn options(starts: usize) -> MinimaOptions {
        MinimaOptions {
            starts,
            ..MinimaOptions::default()
        }
    }

    fn members(r: &BetaResult) -> Vec<Vec<usize>> {
        r.minima.iter().map(|m| m.members.clone()).collect()
    }

    #[test]
    fn triangle_minima_by_enumeration_on_every_interval_and_closed_end() {
        for set in [triangle(), moved_triangle()] {
            for (beta, stored, emergent) in TRIANGLE {
                for method in [Enumeration::All, Enumeration::Cliques] {
                    let o = MinimaOptions {
                        enumeration: method,
                        ..options(0)
                    };
                    let r = minima_at(&set, beta, &o).unwrap();
                    assert_eq!(
                        (r.stored(), r.emergent()),
                        (stored, emergent),
                        "β = {beta} {method:?}: {:?}",
                        members(&r)
                    );
                    assert_eq!(r.merged, 0, "β = {beta}");
                    assert!(r.minima.iter().all(|m| m.grad_norm <= 1e-12), "β = {beta}");
                }
            }
        }
        // The supports themselves at β = 1: vertices, edge midpoints, the centre.
        let r = minima_at(&triangle(), 1.0, &options(0)).unwrap();
        assert_eq!(
            members(&r),
            vec![
                vec![0],
                vec![1],
                vec![2],
                vec![0, 1],
                vec![0, 2],
                vec![1, 2],
                vec![0, 1, 2]
            ]
        );
        let centre = &r.minima[6].x;
        assert!((centre[0] - 1.0).abs() < 1e-15 && (centre[1] - 3f64.sqrt() / 3.0).abs() < 1e-15);
    }

    #[test]
    fn triangle_descent_finds_exactly_the_enumerated_minima() {
        for beta in TRIANGLE_DESCENT {
            let r = minima_at(&triangle(), beta, &options(2000)).unwrap();
            let d = r.descent.clone().unwrap();
            assert_eq!((d.converged, d.lost), (2000, 0), "β = {beta}");
            assert!(
                d.all_enumerated && d.outside.is_empty(),
                "β = {beta}: {d:?}"
            );
            assert_eq!(d.distinct, r.minima.len(), "β = {beta}: {d:?}");
            assert_eq!(d.unreached, 0, "β = {beta}: {d:?}");
            assert_eq!(
                r.minima.iter().map(|m| m.starts).sum::<usize>(),
                2000,
                "β = {beta}"
            );
        }
        // Near and on the boundaries some basins are slivers, but whatever the descent
        // reaches is enumerated.
        for (beta, _, _) in TRIANGLE {
            let r = minima_at(&moved_triangle(), beta, &options(500)).unwrap();
            let d = r.descent.unwrap();
            assert_eq!(d.converged, 500, "β = {beta}");
            assert!(d.all_enumerated, "β = {beta}: {:?}", d.outside);
            assert!(
                d.distinct >= 1 && d.distinct <= r.minima.len(),
                "β = {beta}"
            );
        }
    }

    #[test]
    fn triangle_energies_match_theory_and_the_reference_device() {
        // β = 0.8: vertex Σ = 1, midpoint Σ = 2(1 − 0.4), centre Σ = 3(1 − 0.4·4/3).
        let r = minima_at(&triangle(), 0.8, &options(0)).unwrap();
        let expected = [1.0, 1.0, 1.0, 1.2f64, 1.2, 1.2, 1.4].map(|s| -s.ln() / 0.8);
        assert_eq!(r.minima.len(), expected.len());
        for (m, e) in r.minima.iter().zip(expected) {
            assert!(
                (m.energy - e).abs() < 1e-14,
                "{:?}: {} vs {e}",
                m.members,
                m.energy
            );
        }
        // ε shifts the energies, not the minima.
        let eps = MinimaOptions {
            eps: 0.5,
            ..options(0)
        };
        let shifted = minima_at(&triangle(), 0.8, &eps).unwrap();
        assert_eq!(members(&shifted), members(&r));
        assert!((shifted.minima[6].energy + 1.9f64.ln() / 0.8).abs() < 1e-14);
        // The engine's own energy (Device::Reference, f32 storage) at the same points.
        for (set, beta, eps) in [(triangle(), 0.8, 0.0), (moved_triangle(), 0.6, 0.25)] {
            let o = MinimaOptions { eps, ..options(0) };
            let r = minima_at(&set, beta, &o).unwrap();
            let patterns = ndarray::Array2::from_shape_fn((set.count(), set.dim()), |(i, j)| {
                set.row(i)[j] as f32
            });
            let states = ndarray::Array2::from_shape_fn((r.minima.len(), set.dim()), |(i, j)| {
                r.minima[i].x[j] as f32
            });
            let memory = dam::Retriever::builder(dam::Patterns::new(patterns).unwrap())
                .similarity(dam::Similarity::NegEuclidean)
                .separation(dam::Separation::LogSumRelu {
                    beta: beta as f32,
                    eps: eps as f32,
                })
                .device(dam::Device::Reference)
                .build()
                .unwrap();
            let reference = memory.energy(states.view()).unwrap();
            let ours: Vec<f64> = r.minima.iter().map(|m| m.energy).collect();
            REFERENCE_ENERGY
                .compare(ours, reference)
                .unwrap_or_else(|m| panic!("β = {beta}: {m:?}"));
        }
    }

    #[test]
    fn the_gradient_is_the_derivative_of_the_energy() {
        let set = moved_triangle();
        let lsr = Lsr::new(0.7, 0.1, DEFAULT_TOL).unwrap();
        let mut rng = StdRng::seed_from_u64(4);
        for _ in 0..20 {
            let c = set.centroid(&[0, 1, 2]);
            let x: Vec<f64> = c.iter().map(|v| v + rng.random_range(-0.5..0.5)).collect();
            let g = lsr.gradient(&set, &x);
            let h = 1e-6;
            let numeric: Vec<f64> = (0..x.len())
                .map(|i| {
                    let (mut up, mut down) = (x.clone(), x.clone());
                    up[i] += h;
                    down[i] -= h;
                    (lsr.energy(&set, &up) - lsr.energy(&set, &down)) / (2.0 * h)
                })
                .collect();
            FINITE_DIFFERENCE
                .compare(g, numeric)
                .unwrap_or_else(|m| panic!("x = {x:?}: {m:?}"));
        }
    }

    #[test]
    fn one_pattern_two_patterns_and_copies() {
        let one = points(&[&[0.3, -1.0, 2.0]]);
        for beta in [0.01, 1.0, 100.0] {
            let r = minima_at(&one, beta, &options(64)).unwrap();
            assert_eq!((r.stored(), r.emergent()), (1, 0), "β = {beta}");
            assert_eq!(r.minima[0].energy, 0.0);
            assert_eq!(r.minima[0].x, one.row(0));
            assert_eq!(r.minima[0].starts, 64);
        }
        // Far apart (distance 10, r = √2): two stored minima, nothing between them.
        let far = points(&[&[0.0, 0.0, 0.0], &[10.0, 0.0, 0.0]]);
        let r = minima_at(&far, 1.0, &options(256)).unwrap();
        assert_eq!((r.stored(), r.emergent()), (2, 0));
        assert_eq!(r.descent.unwrap().distinct, 2);
        // Distance 1 < r: each pattern's support holds the other, so the midpoint is the
        // one minimum.
        let near = points(&[&[0.0, 0.0], &[1.0, 0.0]]);
        let r = minima_at(&near, 1.0, &options(256)).unwrap();
        assert_eq!((r.stored(), r.emergent()), (0, 1));
        assert_eq!(r.minima[0].x, vec![0.5, 0.0]);
        assert!(r.descent.unwrap().all_enumerated);
        // A pattern stored twice is one stored minimum (its support holds both copies).
        let copies = points(&[&[0.0, 0.0], &[0.0, 0.0], &[5.0, 5.0]]);
        let r = minima_at(&copies, 1.0, &options(256)).unwrap();
        assert_eq!((r.stored(), r.emergent()), (2, 0));
        assert_eq!(members(&r), vec![vec![2], vec![0, 1]]);
    }

    /// Seeded Gaussian patterns, `count` × `dim`, scale `scale`.
    fn random_points(count: usize, dim: usize, scale: f64, seed: u64) -> Points {
        let mut rng = StdRng::seed_from_u64(seed);
        let values = (0..count * dim)
            .map(|_| scale * rng.sample::<f64, _>(StandardNormal))
            .collect();
        Points::new(count, dim, values).unwrap()
    }

    #[test]
    fn cliques_find_what_all_subsets_find_and_descent_agrees() {
        for seed in 0..4 {
            let set = random_points(12, 3, 1.0, seed);
            for beta in [0.5, 1.0, 2.0, 4.0] {
                let run = |method| {
                    let o = MinimaOptions {
                        enumeration: method,
                        max_support: 12,
                        starts: 300,
                        seed,
                        ..MinimaOptions::default()
                    };
                    minima_at(&set, beta, &o).unwrap()
                };
                let (all, cliques) = (run(Enumeration::All), run(Enumeration::Cliques));
                assert_eq!(all.enumeration, Enumeration::All);
                assert_eq!(cliques.enumeration, Enumeration::Cliques);
                assert_eq!(members(&all), members(&cliques), "seed {seed}, β = {beta}");
                assert!(!all.minima.is_empty(), "seed {seed}, β = {beta}");
                assert!(cliques.candidates <= all.candidates);
                assert_eq!(all.candidates, (1u64 << 12) - 1, "every non-empty subset");
                let d = all.descent.unwrap();
                assert_eq!(d.converged, 300);
                assert!(d.all_enumerated, "seed {seed}, β = {beta}: {:?}", d.outside);
            }
        }
        // Auto: every subset for a few patterns, cliques for many.
        assert_eq!(Enumeration::Auto.resolve(16), Enumeration::All);
        assert_eq!(Enumeration::Auto.resolve(17), Enumeration::Cliques);
        let many = random_points(200, 4, 3.0, 7);
        let r = minima_at(&many, 2.0, &options(128)).unwrap();
        assert_eq!(r.enumeration, Enumeration::Cliques);
        assert!(r.candidates < 200 * 200, "{}", r.candidates);
        assert!(r.descent.unwrap().all_enumerated);
    }

    #[test]
    fn a_support_beyond_max_support_is_reported_by_the_descent() {
        // Five patterns on a circle of radius 0.1: every support holds all five, so the
        // one minimum is their centre, a set larger than --max-support 3.
        let rows: Vec<Vec<f64>> = (0..5)
            .map(|k| {
                let a = k as f64 * 2.0 * std::f64::consts::PI / 5.0;
                vec![0.1 * a.cos(), 0.1 * a.sin()]
            })
            .collect();
        let set = points(&rows.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let o = MinimaOptions {
            max_support: 3,
            ..options(50)
        };
        let r = minima_at(&set, 1.0, &o).unwrap();
        assert!(r.minima.is_empty());
        let d = r.descent.clone().unwrap();
        assert!(!d.all_enumerated);
        assert_eq!(d.outside, vec!["0;1;2;3;4".to_string()]);
        assert_eq!(r.mismatches(), 1);
        let o = MinimaOptions {
            max_support: 5,
            ..o
        };
        let r = minima_at(&set, 1.0, &o).unwrap();
        assert_eq!((r.stored(), r.emergent(), r.mismatches()), (0, 1, 0));
    }

    #[test]
    fn patterns_files_are_read_or_refused_naming_the_flag() {
        let ok = parse_patterns("x,y\n0,0\n\n2, 0\n1,1.5\n", "f.csv").unwrap();
        assert_eq!((ok.count(), ok.dim()), (3, 2));
        assert_eq!(ok.row(1), &[2.0, 0.0]);
        assert_eq!(parse_patterns("1\n", "f.csv").unwrap().count(), 1);
        for (text, why) in [
            ("", "no patterns"),
            ("x,y\n", "no patterns"),
            ("1,2\n3\n", "ragged"),
            ("1,2\n3,4,5\n", "ragged"),
            ("1,nan\n", "finite"),
            ("x,y\n1,inf\n", "finite"),
            ("1,2\n3,abc\n", "not a number"),
            ("a,b\nc,d\n", "not a number"),
            ("1,,2\n", "not a number"),
            ("x,1\n0,0\n", "not a number"),
        ] {
            let e = parse_patterns(text, "f.csv").unwrap_err();
            let message = e.to_string();
            assert_eq!(argument_of(e), "--patterns", "{text:?}");
            assert!(message.contains(why), "{text:?}: {message}");
        }
        let missing = read_patterns(Path::new("/nonexistent/patterns.csv")).unwrap_err();
        assert_eq!(argument_of(missing), "--patterns");
    }

    #[test]
    fn bad_arguments_name_their_flag() {
        assert_eq!(MinimaEnergy::parse(" LSR").unwrap(), MinimaEnergy::Lsr);
        assert_eq!(
            MinimaEnergy::parse("log-sum-relu").unwrap(),
            MinimaEnergy::Lsr
        );
        for energy in ["lse", "poly", ""] {
            let e = MinimaEnergy::parse(energy).unwrap_err();
            assert!(e.to_string().contains("only lsr"), "{e}");
            assert_eq!(argument_of(e), "--energy");
        }
        assert_eq!(parse_betas("0.5").unwrap(), vec![0.5]);
        assert_eq!(parse_betas("0.1:0.3:0.1").unwrap(), vec![0.1, 0.2, 0.3]);
        let sweep = parse_betas("0.1:3:0.1").unwrap();
        assert_eq!((sweep.len(), sweep[14], sweep[29]), (30, 1.5, 3.0));
        for bad in ["0", "-1", "abc", "inf", "1:0:1", "0:1:0.5", "1:2"] {
            assert_eq!(
                argument_of(parse_betas(bad).unwrap_err()),
                "--beta",
                "{bad}"
            );
        }
        assert_eq!(
            argument_of(Lsr::new(1.0, -1.0, 1e-9).unwrap_err()),
            "--epsilon"
        );
        for tol in [0.0, -1e-9, 0.5, f64::NAN] {
            assert_eq!(argument_of(Lsr::new(1.0, 0.0, tol).unwrap_err()), "--tol");
        }
        assert_eq!(
            argument_of(Enumeration::parse("some").unwrap_err()),
            "--enumerate"
        );
        for (o, flag) in [
            (
                MinimaOptions {
                    max_support: 0,
                    ..options(1)
                },
                "--max-support",
            ),
            (
                MinimaOptions {
                    max_iter: 0,
                    ..options(1)
                },
                "--max-iter",
            ),
            (
                MinimaOptions {
                    max_candidates: 0,
                    ..options(1)
                },
                "--max-candidates",
            ),
        ] {
            assert_eq!(
                argument_of(minima_at(&triangle(), 1.0, &o).unwrap_err()),
                flag
            );
        }
        // 7 candidate sets of the triangle: 6 is one too few.
        let capped = MinimaOptions {
            max_candidates: 6,
            ..options(0)
        };
        let e = minima_at(&triangle(), 1.0, &capped).unwrap_err();
        assert_eq!(argument_of(e), "--max-candidates");
        let fits = MinimaOptions {
            max_candidates: 7,
            ..capped
        };
        assert_eq!(minima_at(&triangle(), 1.0, &fits).unwrap().candidates, 7);
    }

    /// A fresh directory under the system's temporary folder.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dam-minima-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn run_writes_rows_summary_and_figure() {
        let dir = scratch("run");
        let file = dir.join("triangle.csv");
        std::fs::write(&file, format!("0,0\n2,0\n1,{}\n", 3f64.sqrt())).unwrap();
        let spec = |betas: Vec<f64>, out: &str| MinimaSpec {
            patterns: file.clone(),
            energy: MinimaEnergy::Lsr,
            betas,
            options: options(128),
            out: dir.join(out),
            args: json!({}),
        };
        let mut seen = Vec::new();
        let one = run(&spec(vec![1.0], "one"), |r| seen.push(r.beta)).unwrap();
        assert_eq!(seen, vec![1.0]);
        let s = &one.summary;
        assert_eq!(
            (s["beta"].as_f64(), s["stored"].as_u64()),
            (Some(1.0), Some(3))
        );
        assert_eq!(
            (s["emergent"].as_u64(), s["total"].as_u64()),
            (Some(4), Some(7))
        );
        assert_eq!(
            (s["patterns"].as_u64(), s["dim"].as_u64()),
            (Some(3), Some(2))
        );
        assert_eq!(s["descent"]["all_enumerated"], json!(true));
        let text = std::fs::read_to_string(dir.join("one/minima.csv")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "beta,kind,support,energy,members,grad_norm,starts,x0,x1"
        );
        assert_eq!(lines.len(), 8);
        assert!(lines[7].starts_with("1.0,emergent,3,"), "{}", lines[7]);
        assert!(
            lines[1].starts_with("1.0,stored,1,0.0,0,0.0,"),
            "{}",
            lines[1]
        );
        assert!(lines[7].contains(",0;1;2,"), "{}", lines[7]);
        // The centre's coordinates read back to the same f64.
        let centre: Vec<f64> = lines[7]
            .split(',')
            .skip(7)
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(centre, one.results[0].minima[6].x);
        let sweep = run(&spec(vec![0.25, 0.75, 1.75, 2.25], "sweep"), |_| {}).unwrap();
        let s = &sweep.summary;
        assert_eq!(s["beta"], json!([0.25, 0.75, 1.75, 2.25]));
        assert_eq!(s["stored"], json!([0, 3, 3, 3]));
        assert_eq!(s["emergent"], json!([1, 4, 3, 0]));
        assert_eq!(s["descent_mismatches"], json!(0));
        let text = std::fs::read_to_string(dir.join("sweep/minima.csv")).unwrap();
        assert_eq!(text.lines().count(), 1 + 1 + 7 + 6 + 3);
        let svg = std::fs::read_to_string(dir.join("sweep/minima.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("emergent"), "svg");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
