//! loss.svg of `dam kernel-fit` ([`crate::kernel_fit`]): the separation loss and the
//! smallest pairwise separation 1 − max cos against the epoch, side by side.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{output, Result};
use crate::kernel_fit::KernelFitReport;

/// Draws the two panels.
pub fn write_svg(path: &Path, report: &KernelFitReport) -> Result<()> {
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (980, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let panels = root.split_evenly((1, 2));
        let epochs = report.rows.last().map_or(1, |r| r.epoch).max(1) as f64;
        let series: [(&str, Vec<(f64, f64)>); 2] = [
            (
                "loss",
                report
                    .rows
                    .iter()
                    .map(|r| (r.epoch as f64, r.loss))
                    .collect(),
            ),
            (
                "min separation 1 − max cos",
                report
                    .rows
                    .iter()
                    .map(|r| (r.epoch as f64, r.min_separation))
                    .collect(),
            ),
        ];
        for (panel, (name, points)) in panels.iter().zip(series.iter()) {
            let finite = points.iter().map(|p| p.1).filter(|v| v.is_finite());
            let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
            let (lo, hi) = if lo.is_finite() && hi > lo {
                (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
            } else {
                (lo - 1.0, lo + 1.0)
            };
            let mut chart = ChartBuilder::on(panel)
                .caption(
                    format!("{name} (M = {}, N = {})", report.m, report.n),
                    ("sans-serif", 15),
                )
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..epochs, lo..hi)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .y_desc(*name)
                .draw()?;
            chart.draw_series(LineSeries::new(
                points.iter().copied().filter(|p| p.1.is_finite()),
                BLUE.stroke_width(2),
            ))?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| output(path, e))
}
