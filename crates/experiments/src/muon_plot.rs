//! loss.svg and the files of `dam muon` ([`crate::muon`]).

use std::path::Path;

use plotters::prelude::*;

use crate::error::{output, Result};
use crate::muon::{self, MuonReport, MuonSpec, SweepReport};
use crate::output::{legend_and_present, write_json};

/// Groups drawn (and labelled) at most.
const MAX_GROUP_LINES: usize = 12;

/// The loss and the per-group losses against the step on log–log axes (steps ≥ 1), the
/// entropy floor when it is positive, and a sweep's points with its fitted line.
pub fn write_svg(
    path: &Path,
    report: &MuonReport,
    sweep: Option<&SweepReport>,
    title: &str,
) -> Result<()> {
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let steps = report.losses.len() - 1;
        let positive = |l: f64| l > 0.0 && l.is_finite();
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        for (t, (l, g)) in report.losses.iter().zip(&report.group_losses).enumerate() {
            if t == 0 {
                continue;
            }
            for &v in std::iter::once(l).chain(g.iter().take(MAX_GROUP_LINES)) {
                if positive(v) {
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
            }
        }
        if positive(report.lower_bound) {
            lo = lo.min(report.lower_bound);
        }
        if !(lo.is_finite() && hi.is_finite()) {
            (lo, hi) = (1e-3, 1.0);
        }
        let (lo, hi) = (lo * 0.7, hi * 1.4);
        let tmax = (steps.max(2)) as f64;
        let root = SVGBackend::new(path, (760, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((1f64..tmax).log_scale(), (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("step t")
            .y_desc("loss")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0e}"))
            .draw()?;
        let line = |values: &mut dyn Iterator<Item = (usize, f64)>| -> Vec<(f64, f64)> {
            values
                .filter(|&(t, l)| t >= 1 && positive(l))
                .map(|(t, l)| (t as f64, l))
                .collect()
        };
        let groups = report.group_losses.first().map_or(0, Vec::len);
        for g in 0..groups.min(MAX_GROUP_LINES) {
            let color = Palette99::pick(g).to_rgba();
            let points = line(
                &mut report
                    .group_losses
                    .iter()
                    .enumerate()
                    .map(|(t, row)| (t, row[g])),
            );
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(1)))?
                .label(format!("group {}", g + 1))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        let total = line(&mut report.losses.iter().copied().enumerate());
        chart
            .draw_series(LineSeries::new(total, BLACK.stroke_width(3)))?
            .label("loss")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(3)));
        if positive(report.lower_bound) {
            let floor = report.lower_bound;
            chart
                .draw_series(LineSeries::new(
                    vec![(1.0, floor), (tmax, floor)],
                    RGBColor(128, 128, 128).stroke_width(1),
                ))?
                .label("entropy floor")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], RGBColor(128, 128, 128))
                });
        }
        if let Some(s) = sweep {
            let red = RGBColor(200, 30, 30);
            chart
                .draw_series(
                    s.points
                        .iter()
                        .filter(|&&(t, l)| t >= 1 && positive(l))
                        .map(|&(t, l)| Circle::new((t as f64, l), 4, red.filled())),
                )?
                .label("sweep")
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, red.filled()));
            if let Some(fit) = s.fit {
                let (t0, t1) = (
                    s.points.first().map_or(1, |p| p.0).max(1) as f64,
                    s.points.last().map_or(1, |p| p.0).max(1) as f64,
                );
                let at = |t: f64| (fit.intercept + fit.exponent * t.ln()).exp();
                chart
                    .draw_series(LineSeries::new(
                        vec![(t0, at(t0)), (t1, at(t1))],
                        red.stroke_width(1),
                    ))?
                    .label(format!("fit: γ = {:.3}", fit.exponent))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], red));
            }
        }
        legend_and_present(&mut chart, SeriesLabelPosition::LowerLeft)
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    draw().map_err(|e| output(path, e))
}

/// Writes loss.csv, summary.json (with `args`, the command line), loss.svg and, for a
/// sweep, sweep.csv into `out`.
pub fn write_outputs(
    out: &Path,
    spec: &MuonSpec,
    report: &MuonReport,
    sweep: Option<&SweepReport>,
    args: serde_json::Value,
) -> Result<()> {
    muon::write_loss_csv(&out.join("loss.csv"), report)?;
    if let Some(s) = sweep {
        muon::write_sweep_csv(&out.join("sweep.csv"), &s.points)?;
    }
    let mut summary = muon::summary(spec, report, sweep);
    summary["args"] = args;
    write_json(&out.join("summary.json"), &summary)?;
    let title = format!(
        "{} η = {}: K = {}, M = {}, {}, α = {}",
        spec.optimizer.name(),
        spec.lr,
        spec.k,
        spec.groups,
        spec.spectrum.name(),
        spec.noise
    );
    write_svg(&out.join("loss.svg"), report, sweep, &title)
}
