//! phase.svg, summary.json and the joining of shards for `dam phase` ([`crate::phase`]).

use std::path::Path;

use plotters::prelude::*;

use crate::error::{invalid, output, prepare_out, Result};
use crate::output::{legend_and_present, write_json};
use crate::phase::{self, boundaries, mean_phi, theory_alpha_c, PhaseEnergy, PhaseRow};

/// The colour of ⟨φ⟩ ∈ [0, 1] (a viridis-like ramp: dark blue at 0, yellow at 1).
pub fn colour(phi: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 5] = [
        (68, 1, 84),
        (59, 82, 139),
        (33, 145, 140),
        (94, 201, 98),
        (253, 231, 37),
    ];
    let x = if phi.is_finite() {
        phi.clamp(0.0, 1.0) * 4.0
    } else {
        0.0
    };
    let i = (x.floor() as usize).min(3);
    let f = x - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + f * (b as f64 - a as f64)).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// The half-widths of the cells around sorted grid values.
fn edges(values: &[f64]) -> Vec<(f64, f64)> {
    let step = |i: usize| -> f64 {
        let gaps: Vec<f64> = values.windows(2).map(|w| w[1] - w[0]).collect();
        match (i.checked_sub(1).and_then(|j| gaps.get(j)), gaps.get(i)) {
            (Some(&a), Some(&b)) => a.min(b),
            (Some(&a), None) | (None, Some(&a)) => a,
            (None, None) => values[i].abs().max(1e-3) * 0.2,
        }
    };
    (0..values.len())
        .map(|i| (values[i] - step(i) / 2.0, values[i] + step(i) / 2.0))
        .collect()
}

/// ⟨φ⟩ as a heat map over (α, T), the measured boundary (φ_eq(T) − ⟨φ⟩ > 0.02) as
/// points, and the theory's α_c(T) where there is one.
pub fn write_svg(path: &Path, energy: PhaseEnergy, rows: &[PhaseRow], title: &str) -> Result<()> {
    let (ts, alphas, grid) = mean_phi(rows);
    if ts.is_empty() {
        return Err(output(path, "no rows to draw"));
    }
    let (ae, te) = (edges(&alphas), edges(&ts));
    let (x0, x1) = (ae[0].0, ae[ae.len() - 1].1);
    let (y0, y1) = (te[0].0.max(0.0), te[te.len() - 1].1);
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (820, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let (main, bar) = root.split_horizontally(720);
        // The colour scale first: the main chart's legend presents the figure.
        let (top, bottom) = (40, 468);
        let mut scale = ChartBuilder::on(&bar)
            .margin_top(top)
            .margin_bottom(520 - bottom)
            .margin_left(48)
            .margin_right(22)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
        scale.draw_series((0..100).map(|k| {
            let v = k as f64 / 100.0;
            Rectangle::new([(0.0, v), (1.0, v + 0.01)], colour(v + 0.005).filled())
        }))?;
        let style = ("sans-serif", 14).into_font().color(&BLACK);
        for (v, label) in [
            (1.0, "1"),
            (0.75, "0.75"),
            (0.5, "0.5"),
            (0.25, "0.25"),
            (0.0, "0"),
        ] {
            let y = bottom as f64 - v * (bottom - top) as f64;
            bar.draw_text(label, &style, (8, y as i32 - 7))?;
        }
        bar.draw_text("⟨φ⟩", &style, (52, top - 22))?;
        let mut chart = ChartBuilder::on(&main)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("α = ln M / N")
            .y_desc("temperature T")
            .draw()?;
        for (ti, phis) in grid.iter().enumerate() {
            for (ai, phi) in phis.iter().enumerate() {
                let Some(phi) = phi else { continue };
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(ae[ai].0, te[ti].0.max(0.0)), (ae[ai].1, te[ti].1)],
                    colour(*phi).filled(),
                )))?;
            }
        }
        let measured: Vec<(f64, f64)> = boundaries(energy, rows)
            .iter()
            .filter_map(|b| Some((b["alpha"].as_f64()?, b["T"].as_f64()?)))
            .collect();
        chart
            .draw_series(
                measured
                    .iter()
                    .map(|&p| Circle::new(p, 4, WHITE.filled().stroke_width(1))),
            )?
            .label(format!(
                "measured boundary (φ_eq − ⟨φ⟩ > {})",
                phase::BOUNDARY_DROP
            ))
            .legend(|(x, y)| Circle::new((x + 8, y), 4, BLACK.stroke_width(1)));
        let theory: Vec<(f64, f64)> = (0..=200)
            .filter_map(|k| {
                let t = y0 + (y1 - y0) * k as f64 / 200.0;
                theory_alpha_c(energy, t).map(|a| (a, t))
            })
            .filter(|&(a, _)| a >= x0 && a <= x1)
            .collect();
        if !theory.is_empty() {
            chart
                .draw_series(LineSeries::new(theory, RED.stroke_width(2)))?
                .label("theory α_c(T) = φ_eq(T) − 0.377428 (large N)")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        }
        legend_and_present(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    };
    draw().map_err(|e| output(path, e))
}

/// The title of phase.svg.
fn title(energy: PhaseEnergy, rows: &[PhaseRow]) -> String {
    let ns: std::collections::BTreeSet<usize> = rows.iter().map(|r| r.n).collect();
    let n = match (ns.first(), ns.last()) {
        (Some(a), Some(b)) if a == b => format!("N = {a}"),
        (Some(a), Some(b)) => format!("N = {a}…{b}"),
        _ => String::new(),
    };
    format!("⟨φ⟩ of Metropolis chains, {} energy, {n}", energy.name())
}

/// Writes summary.json (the boundaries, ⟨φ⟩ per cell, plus `extra`'s keys) and phase.svg
/// for `rows`; returns the summary.
pub fn write_outputs(
    out: &Path,
    energy: PhaseEnergy,
    rows: &[PhaseRow],
    extra: serde_json::Value,
) -> Result<serde_json::Value> {
    let mut summary = phase::summary(energy, rows);
    if let (Some(s), serde_json::Value::Object(e)) = (summary.as_object_mut(), extra) {
        s.extend(e);
    }
    write_json(&out.join("summary.json"), &summary)?;
    write_svg(&out.join("phase.svg"), energy, rows, &title(energy, rows))?;
    Ok(summary)
}

/// `dam merge` of `dam phase` runs: the rows of every dir's phase.csv joined
/// ([`phase::merge_rows`]) into `out`'s phase.csv, summary.json and phase.svg; the
/// device and arguments come from the first dir's summary.json when there is one.
pub fn merge_runs(dirs: &[std::path::PathBuf], out: &Path) -> Result<serde_json::Value> {
    if dirs.is_empty() {
        return Err(invalid("DIR", "", "give at least one run directory"));
    }
    let mut parts = Vec::with_capacity(dirs.len());
    for dir in dirs {
        parts.push(phase::read_csv(&dir.join("phase.csv"))?);
    }
    let rows = phase::merge_rows(parts)?;
    let Some(first) = rows.first() else {
        return Err(invalid("DIR", "", "the phase.csv files hold no rows"));
    };
    let energy = first.energy;
    let previous: serde_json::Value = std::fs::read_to_string(dirs[0].join("summary.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    prepare_out(out)?;
    phase::PhaseCsv::open(&out.join("phase.csv"), false)?.push(&rows)?;
    let mut args = previous["args"].clone();
    if args.is_object() {
        args["shard"] = serde_json::Value::Null;
        args["resume"] = serde_json::Value::Bool(false);
    }
    write_outputs(
        out,
        energy,
        &rows,
        serde_json::json!({
            "device": previous["device"],
            "adapter": previous["adapter"],
            "args": args,
            "merged_from": dirs,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_run_from_dark_to_yellow() {
        assert_eq!(colour(0.0), RGBColor(68, 1, 84));
        assert_eq!(colour(1.0), RGBColor(253, 231, 37));
        assert_eq!(colour(f64::NAN), colour(0.0));
        assert_eq!(colour(2.0), colour(1.0));
        let e = edges(&[0.1, 0.2, 0.4]);
        assert_eq!(e.len(), 3);
        assert!((e[0].0 - 0.05).abs() < 1e-12 && (e[2].1 - 0.5).abs() < 1e-12);
        assert_eq!(edges(&[0.5])[0], (0.45, 0.55));
    }
}
