//! `dam capacity-ensembles`: the capacity search ([`crate::search`]) at fixed N across an
//! ensemble parameter — the separation d of `separated:d` or the feature correlation c of
//! `correlated:c` — for several polynomial degrees (Bielmeier & Friedland's question:
//! capacity grows exponentially with separation; correlation lowers it, more at higher
//! degree). Writes ensembles.csv and ensembles.svg.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::args::{parse_range, SweepText};
use crate::error::{invalid, output, prepare_out, ExperimentError, Result};
use crate::search::{bisect, Target};

/// The ensemble parameter that varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// `separated:d`, d the minimum pairwise Hamming distance.
    Separated,
    /// `correlated:c`, c the pairwise feature correlation.
    Correlated,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Separated => "separated",
            Family::Correlated => "correlated",
        }
    }
}

/// `separated:LO:HI:STEP` or `correlated:LO:HI:STEP` → the family and its values.
pub fn parse_vary(text: &str) -> Result<(Family, Vec<f64>)> {
    let (name, range) = text.split_once(':').ok_or_else(|| {
        invalid(
            "--vary",
            text,
            "expected separated:LO:HI:STEP or correlated:LO:HI:STEP",
        )
    })?;
    let family = match name {
        "separated" => Family::Separated,
        "correlated" => Family::Correlated,
        _ => return Err(invalid("--vary", text, "vary `separated` or `correlated`")),
    };
    Ok((family, parse_range("--vary", range)?))
}

/// The searches to run.
#[derive(Debug, Clone)]
pub struct EnsembleCurveSpec<'a> {
    /// Which parameter varies.
    pub family: Family,
    /// Its values.
    pub values: Vec<f64>,
    /// Degrees n, one line each.
    pub degrees: Vec<u32>,
    /// The sweep at each point (its `patterns`, `degree` and `count` are replaced).
    pub template: SweepText<'a>,
    /// The bracket of every search, `LO:HI:STEP`.
    pub count: &'a str,
    /// P_½ or P_all.
    pub target: Target,
    /// The title of ensembles.svg.
    pub title: String,
    /// The output folder (created if missing).
    pub out: PathBuf,
}

impl<'a> EnsembleCurveSpec<'a> {
    /// The searches of `dam capacity-ensembles`: `vary` as [`parse_vary`] reads it,
    /// `degrees` comma-separated, every search's bracket `count` (`LO:HI:STEP`), the rest
    /// of each sweep (N, the energy) in `template`; titled
    /// `P_{target}, N = {dim}, {energy} energy, vs {family}`.
    pub fn parse(
        vary: &str,
        degrees: &str,
        count: &'a str,
        template: SweepText<'a>,
        target: Target,
        out: PathBuf,
    ) -> Result<Self> {
        let (family, values) = parse_vary(vary)?;
        let degrees = degrees
            .split(',')
            .map(|d| {
                d.trim()
                    .parse::<u32>()
                    .map_err(|e| invalid("--degrees", degrees, format!("{e}")))
            })
            .collect::<Result<Vec<u32>>>()?;
        let title = format!(
            "P_{}, N = {}, {} energy, vs {}",
            target.name(),
            template.dim,
            template.energy,
            vary.split(':').next().unwrap_or("")
        );
        Ok(Self {
            family,
            values,
            degrees,
            template,
            count,
            target,
            title,
            out,
        })
    }
}

/// One row of ensembles.csv.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EnsemblePoint {
    /// `separated` or `correlated`.
    pub family: Family,
    /// d or c.
    pub parameter: f64,
    /// The degree n.
    pub degree: u32,
    /// The energy.
    pub energy: String,
    /// `half` or `all`.
    pub target: Target,
    /// The search's answer (`None`: no answer, see `note`).
    pub patterns: Option<u64>,
    /// Probes made.
    pub probes: usize,
    /// Realised mean |feature correlation| of the largest set a probe built.
    pub mean_abs_correlation: Option<f64>,
    /// Realised minimum Hamming distance of the same set.
    pub min_hamming: Option<u64>,
    /// Wall-clock seconds of the search (building the sets included).
    pub seconds: f64,
    /// Why there is no answer, whether it is capped by the largest buildable separated
    /// set (`capped: …`), or why it is at a bracket end.
    pub note: Option<String>,
}

/// Runs every (degree, value) search in order, `progress(point)` after each, and writes
/// ensembles.csv and ensembles.svg into `spec.out` ([`write_outputs`]). A set that cannot
/// be built at some probe (a separation unreachable at that P) ends that search with a note
/// instead of failing the whole curve.
pub fn run(
    spec: &EnsembleCurveSpec<'_>,
    device: &dam::Device,
    mut progress: impl FnMut(&EnsemblePoint),
) -> Result<Vec<EnsemblePoint>> {
    prepare_out(&spec.out)?;
    if spec.values.is_empty() || spec.degrees.is_empty() {
        return Err(invalid("--vary/--degrees", "", "need at least one of each"));
    }
    let mut rows = Vec::new();
    for &degree in &spec.degrees {
        for &value in &spec.values {
            // START + i·STEP, without the binary fraction's tail (0.30000000000000004).
            let value = (value * 1e9).round() / 1e9;
            let patterns = format!("{}:{value}", spec.family.name());
            let text = SweepText {
                patterns: &patterns,
                degree,
                count: Some(spec.count),
                alpha: None,
                search: true,
                ..spec.template.clone()
            };
            let (sweep, bracket) = text.build()?;
            let (lo, hi) = (bracket[0], bracket[bracket.len() - 1]);
            let start = std::time::Instant::now();
            let point = match bisect(&sweep, device, spec.target, lo, hi, |_| {}) {
                Ok(outcome) => {
                    // The realised statistics of the largest set built (the most patterns
                    // give the least noisy estimate).
                    let at = outcome
                        .probes
                        .iter()
                        .filter(|p| p.trials > 0)
                        .max_by_key(|p| p.patterns);
                    EnsemblePoint {
                        family: spec.family,
                        parameter: value,
                        degree,
                        energy: spec.template.energy.to_string(),
                        target: spec.target,
                        patterns: outcome.patterns,
                        probes: outcome.probes.len(),
                        mean_abs_correlation: at.and_then(|p| p.mean_abs_correlation),
                        min_hamming: at.and_then(|p| p.min_hamming),
                        seconds: start.elapsed().as_secs_f64(),
                        note: outcome.note,
                    }
                }
                Err(ExperimentError::Invalid {
                    argument: "--patterns",
                    reason,
                    ..
                }) => EnsemblePoint {
                    family: spec.family,
                    parameter: value,
                    degree,
                    energy: spec.template.energy.to_string(),
                    target: spec.target,
                    patterns: None,
                    probes: 0,
                    mean_abs_correlation: None,
                    min_hamming: None,
                    seconds: start.elapsed().as_secs_f64(),
                    note: Some(format!("{patterns}: {reason}")),
                },
                Err(e) => return Err(e),
            };
            progress(&point);
            rows.push(point);
        }
    }
    write_outputs(&spec.out, &rows, &spec.title)?;
    Ok(rows)
}

/// Writes ensembles.csv and ensembles.svg into `out`.
pub fn write_outputs(out: &Path, rows: &[EnsemblePoint], title: &str) -> Result<()> {
    let fail = |path: &Path, e: &dyn std::fmt::Display| output(path, e);
    let path = out.join("ensembles.csv");
    let mut csv = csv::Writer::from_path(&path).map_err(|e| fail(&path, &e))?;
    for r in rows {
        csv.serialize(r).map_err(|e| fail(&path, &e))?;
    }
    csv.flush().map_err(|e| fail(&path, &e))?;
    let svg = out.join("ensembles.svg");
    draw(&svg, rows, title).map_err(|e| fail(&svg, &e))
}

fn draw(
    path: &Path,
    rows: &[EnsemblePoint],
    title: &str,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let (x0, x1) = rows
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), r| {
            (a.min(r.parameter), b.max(r.parameter))
        });
    let ys: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.patterns)
        .map(|p| p as f64)
        .collect();
    let y0 = ys.iter().cloned().fold(f64::INFINITY, f64::min).max(1.0);
    let y1 = ys.iter().cloned().fold(2.0f64, f64::max);
    let x_desc = match rows.first().map(|r| r.family) {
        Some(Family::Correlated) => "feature correlation c",
        _ => "minimum pairwise Hamming distance d",
    };
    let root = SVGBackend::new(path, (720, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let pad = ((x1 - x0) * 0.05).max(0.01);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((x0 - pad)..(x1 + pad), ((y0 / 1.5)..(y1 * 1.5)).log_scale())?;
    chart.configure_mesh().x_desc(x_desc).y_desc("P").draw()?;
    let colors = [BLUE, RED, GREEN, MAGENTA, BLACK];
    let mut degrees: Vec<u32> = rows.iter().map(|r| r.degree).collect();
    degrees.dedup();
    for (i, degree) in degrees.iter().enumerate() {
        let color = colors[i % colors.len()];
        let line: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.degree == *degree)
            .filter_map(|r| r.patterns.map(|p| (r.parameter, p as f64)))
            .collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
            .label(format!("n = {degree}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        chart.draw_series(line.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    crate::output::legend_and_present(&mut chart, SeriesLabelPosition::UpperLeft)
        .map_err(|e| e.to_string().into())
}
