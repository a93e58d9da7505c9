//! accuracy.svg of `dam sequential` ([`crate::sequential`]): one line per task, its test
//! accuracy against the task just trained, and joint training's mean when it was run.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{output, Result};
use crate::output::legend_and_present;

/// Tasks drawn (and labelled) at most.
const MAX_TASK_LINES: usize = 20;

/// Draws `acc` (acc\[l\]\[i\]: accuracy in % on task i after task l) to `path`, with the
/// joint-training mean as a grey line when given.
pub fn write_svg(path: &Path, acc: &[Vec<f64>], joint: Option<f64>, title: &str) -> Result<()> {
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let tasks = acc.len();
        let root = SVGBackend::new(path, (760, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let x_max = tasks.max(2) as f64 + 0.2;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.8f64..x_max, 0f64..100f64)?;
        chart
            .configure_mesh()
            .x_desc("after training task")
            .y_desc("test accuracy (%)")
            .x_labels(tasks.clamp(2, 20))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        for i in 0..tasks.min(MAX_TASK_LINES) {
            let color = Palette99::pick(i).to_rgba();
            // Task i is drawn from the moment it is trained.
            let points: Vec<(f64, f64)> = acc
                .iter()
                .enumerate()
                .skip(i)
                .map(|(l, row)| ((l + 1) as f64, row[i]))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(format!("task {}", i + 1))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )?;
        }
        if let Some(j) = joint {
            let grey = RGBColor(128, 128, 128);
            chart
                .draw_series(LineSeries::new(
                    vec![(1.0, j), (tasks.max(2) as f64, j)],
                    grey.stroke_width(1),
                ))?
                .label(format!("joint training, mean {j:.1} %"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], grey));
        }
        legend_and_present(&mut chart, SeriesLabelPosition::LowerLeft)
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    draw().map_err(|e| output(path, e))
}
