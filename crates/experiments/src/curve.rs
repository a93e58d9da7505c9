//! `dam capacity-curve`: the capacity search ([`crate::search`]) at each dimension N of a
//! range and for each energy, e.g. Krotov–Hopfield Fig. 5 (P_½(N) for n = 3, polynomial vs
//! rectified), written as curve.csv and curve.svg with the paper's estimate as a line.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::args::{parse_range, SweepText};
use crate::capacity::Energy;
use crate::error::{invalid, output, prepare_out, Result};
use crate::search::{bisect, Target};

/// One curve: everything but N and the energy is shared by every point.
#[derive(Debug, Clone)]
pub struct CurveSpec<'a> {
    /// The dimensions N.
    pub dims: Vec<usize>,
    /// The energies (`poly`, `rpoly`, `lse`, `exp`), one line each.
    pub energies: Vec<&'a str>,
    /// The sweep at each point (its `dim`, `energy` and `count` are replaced).
    pub template: SweepText<'a>,
    /// The bracket of every search, `LO:HI:STEP`.
    pub count: &'a str,
    /// P_½ or P_all.
    pub target: Target,
    /// The title of curve.svg.
    pub title: String,
    /// The output folder (created if missing).
    pub out: PathBuf,
}

impl<'a> CurveSpec<'a> {
    /// The curve of `dam capacity-curve`: `dims` as `START:STOP:STEP`, `energies`
    /// comma-separated, every search's bracket `count` (`LO:HI:STEP`), the rest of each
    /// sweep in `template`; titled `P_{target}(N), n = {degree}, {energies}`.
    pub fn parse(
        dims: &str,
        energies: &'a str,
        count: &'a str,
        template: SweepText<'a>,
        target: Target,
        out: PathBuf,
    ) -> Result<Self> {
        let dims = parse_range("--dims", dims)?
            .into_iter()
            .map(|d| d as usize)
            .collect();
        let title = format!(
            "P_{}(N), n = {}, {energies}",
            target.name(),
            template.degree
        );
        Ok(Self {
            dims,
            energies: energies.split(',').map(str::trim).collect(),
            template,
            count,
            target,
            title,
            out,
        })
    }
}

/// One row of curve.csv.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CurvePoint {
    /// N.
    pub dim: usize,
    /// The energy.
    pub energy: String,
    /// The degree n.
    pub degree: u32,
    /// `half` or `all`.
    pub target: Target,
    /// The search's answer (`None`: the bracket's LO already failed).
    pub patterns: Option<u64>,
    /// Probes made.
    pub probes: usize,
    /// Krotov–Hopfield's no-error estimate N^{n−1} / (2 (2n−3)!! ln N) (THEORY.md §8)
    /// for polynomial energies.
    pub estimate: Option<f64>,
    /// Seconds over the probes.
    pub seconds: f64,
    /// Why the search has no answer or an answer at a bracket end.
    pub note: Option<String>,
}

/// The columns of curve.csv.
pub const CURVE_COLUMNS: [&str; 9] = [
    "dim", "energy", "degree", "target", "patterns", "probes", "estimate", "seconds", "note",
];

/// Krotov–Hopfield's estimate of the no-error capacity of F = xⁿ (THEORY.md §8):
/// N^{n−1} / (2 (2n−3)!! ln N); `None` for n < 2 or N < 2.
pub fn kh_estimate(dim: usize, degree: u32) -> Option<f64> {
    if degree < 2 || dim < 2 {
        return None;
    }
    let double_factorial: f64 = (1..=(2 * degree as i64 - 3))
        .step_by(2)
        .map(|k| k as f64)
        .product();
    let n = dim as f64;
    Some(n.powi(degree as i32 - 1) / (2.0 * double_factorial * n.ln()))
}

/// Runs every (energy, N) search in order, `progress(point)` after each, and writes
/// curve.csv and curve.svg into `spec.out` ([`write_outputs`]).
pub fn run(
    spec: &CurveSpec<'_>,
    device: &dam::Device,
    mut progress: impl FnMut(&CurvePoint),
) -> Result<Vec<CurvePoint>> {
    prepare_out(&spec.out)?;
    if spec.dims.is_empty() || spec.energies.is_empty() {
        return Err(invalid(
            "--dims/--energies",
            "",
            "need at least one of each",
        ));
    }
    let mut rows = Vec::new();
    for &energy in &spec.energies {
        for &dim in &spec.dims {
            let text = SweepText {
                dim,
                energy,
                count: Some(spec.count),
                alpha: None,
                search: true,
                ..spec.template.clone()
            };
            let (sweep, bracket) = text.build()?;
            let (lo, hi) = (bracket[0], bracket[bracket.len() - 1]);
            let outcome = bisect(&sweep, device, spec.target, lo, hi, |_| {})?;
            let point = CurvePoint {
                dim,
                energy: sweep.energy.spelling(),
                degree: sweep.degree,
                target: spec.target,
                patterns: outcome.patterns,
                probes: outcome.probes.len(),
                estimate: matches!(sweep.energy, Energy::Poly | Energy::Rpoly)
                    .then(|| kh_estimate(dim, sweep.degree))
                    .flatten(),
                seconds: outcome.probes.iter().map(|p| p.seconds).sum(),
                note: outcome.note,
            };
            progress(&point);
            rows.push(point);
        }
    }
    write_outputs(&spec.out, &rows, &spec.title)?;
    Ok(rows)
}

/// Writes curve.csv and curve.svg into `out`.
pub fn write_outputs(out: &Path, rows: &[CurvePoint], title: &str) -> Result<()> {
    let path = out.join("curve.csv");
    let fail = |path: &Path, e: &dyn std::fmt::Display| output(path, e);
    let mut csv = csv::Writer::from_path(&path).map_err(|e| fail(&path, &e))?;
    csv.write_record(CURVE_COLUMNS)
        .map_err(|e| fail(&path, &e))?;
    let opt = |v: Option<String>| v.unwrap_or_default();
    for r in rows {
        csv.write_record([
            r.dim.to_string(),
            r.energy.clone(),
            r.degree.to_string(),
            serde_json::json!(r.target)
                .as_str()
                .unwrap_or("")
                .to_string(),
            opt(r.patterns.map(|p| p.to_string())),
            r.probes.to_string(),
            opt(r.estimate.map(|e| format!("{e:.3}"))),
            format!("{:.3}", r.seconds),
            opt(r.note.clone()),
        ])
        .map_err(|e| fail(&path, &e))?;
    }
    csv.flush().map_err(|e| fail(&path, &e))?;
    let svg = out.join("curve.svg");
    draw(&svg, rows, title).map_err(|e| fail(&svg, &e))
}

fn draw(
    path: &Path,
    rows: &[CurvePoint],
    title: &str,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let xs = rows.iter().map(|r| r.dim as f64);
    let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let ys: Vec<f64> = rows
        .iter()
        .flat_map(|r| r.patterns.map(|p| p as f64).into_iter().chain(r.estimate))
        .filter(|y| *y > 0.0)
        .collect();
    let y0 = ys.iter().cloned().fold(f64::INFINITY, f64::min).max(1.0);
    let y1 = ys.iter().cloned().fold(1.0f64, f64::max);
    let root = SVGBackend::new(path, (720, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let pad = ((x1 - x0) * 0.05).max(1.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((x0 - pad)..(x1 + pad), ((y0 / 1.5)..(y1 * 1.5)).log_scale())?;
    chart.configure_mesh().x_desc("N").y_desc("P").draw()?;
    let colors = [BLUE, RED, GREEN, MAGENTA];
    let mut energies: Vec<&str> = rows.iter().map(|r| r.energy.as_str()).collect();
    energies.dedup();
    for (i, energy) in energies.iter().enumerate() {
        let color = colors[i % colors.len()];
        let line: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.energy == *energy)
            .filter_map(|r| r.patterns.map(|p| (r.dim as f64, p as f64)))
            .collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
            .label(format!("{energy}: searched"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        chart.draw_series(line.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    let estimate: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.energy == energies[0])
        .filter_map(|r| r.estimate.map(|e| (r.dim as f64, e)))
        .collect();
    if !estimate.is_empty() {
        chart
            .draw_series(LineSeries::new(estimate, BLACK.stroke_width(1)))?
            .label("K–H estimate N^(n−1) / (2 (2n−3)!! ln N)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
    }
    crate::output::legend_and_present(&mut chart, SeriesLabelPosition::UpperLeft)
        .map_err(|e| e.to_string().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_matches_theory_md() {
        // THEORY.md §8: N = 100 gives ≈ 11 at n = 2 and ≈ 360 at n = 3.
        assert!((kh_estimate(100, 2).unwrap() - 10.86).abs() < 0.1);
        assert!((kh_estimate(100, 3).unwrap() - 361.9).abs() < 1.0);
        assert_eq!(kh_estimate(100, 1), None);
    }
}
