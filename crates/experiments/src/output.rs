//! results.csv, summary.json and capacity.svg: writing, reading back and merging.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use plotters::prelude::*;

use crate::capacity::PointResult;
use crate::error::{invalid, io, output, Result};

/// The CSV header, in the contract's column order.
pub const CSV_COLUMNS: [&str; 11] = [
    "alpha",
    "patterns",
    "trials",
    "successes",
    "success_rate",
    "mean_overlap",
    "bit_flip_rate",
    "seconds",
    "mean_abs_correlation",
    "min_hamming",
    "empty_supports",
];

/// The columns of results.csv files written before the realised-ensemble columns; still read.
const OLD_CSV_COLUMNS: usize = 8;

/// The columns of results.csv files written before `empty_supports`; still read.
const PRE_LSR_CSV_COLUMNS: usize = 10;

/// Writes results.csv one row at a time (flushed), so an interrupted sweep keeps the rows
/// it finished.
pub struct CsvSink {
    writer: csv::Writer<File>,
    path: std::path::PathBuf,
}

impl CsvSink {
    /// Creates `path` and writes the header.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(io(path))?;
        let mut writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(file);
        writer
            .write_record(CSV_COLUMNS)
            .map_err(|e| output(path, e))?;
        writer.flush().map_err(io(path))?;
        Ok(Self {
            writer,
            path: path.to_path_buf(),
        })
    }

    /// Appends one point and flushes.
    pub fn push(&mut self, r: &PointResult) -> Result<()> {
        self.writer
            .write_record([
                format!("{:.6}", r.alpha),
                r.patterns.to_string(),
                r.trials.to_string(),
                r.successes.to_string(),
                format!("{:.6}", r.success_rate),
                format!("{:.6}", r.mean_overlap),
                r.bit_flip_rate
                    .map(|v| format!("{v:.6}"))
                    .unwrap_or_default(),
                format!("{:.3}", r.seconds),
                r.mean_abs_correlation
                    .map(|v| format!("{v:.6}"))
                    .unwrap_or_default(),
                r.min_hamming.map(|v| v.to_string()).unwrap_or_default(),
                r.empty_supports.map(|v| v.to_string()).unwrap_or_default(),
            ])
            .map_err(|e| output(&self.path, e))?;
        self.writer.flush().map_err(io(&self.path))
    }
}

/// Reads a results.csv written by [`CsvSink`].
pub fn read_csv(path: &Path) -> Result<Vec<PointResult>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| output(path, e))?;
    let headers = reader.headers().map_err(|e| output(path, e))?.clone();
    let names: Vec<&str> = headers.iter().collect();
    if ![OLD_CSV_COLUMNS, PRE_LSR_CSV_COLUMNS, CSV_COLUMNS.len()]
        .iter()
        .any(|&k| names == CSV_COLUMNS[..k])
    {
        return Err(output(
            path,
            format!("columns {headers:?}, expected {CSV_COLUMNS:?}"),
        ));
    }
    reader
        .deserialize()
        .map(|row| row.map_err(|e| output(path, e)))
        .collect()
}

/// The load where success_rate first crosses ½ going up in α, interpolated linearly in α.
/// `None` if it never crosses.
pub fn alpha_half(points: &[PointResult]) -> Option<f64> {
    let mut sorted: Vec<&PointResult> = points.iter().collect();
    sorted.sort_by(|a, b| a.alpha.total_cmp(&b.alpha));
    sorted.windows(2).find_map(|w| {
        let (a, b) = (w[0], w[1]);
        let crosses = (a.success_rate >= 0.5 && b.success_rate < 0.5)
            || (a.success_rate < 0.5 && b.success_rate >= 0.5);
        crosses.then(|| {
            a.alpha
                + (0.5 - a.success_rate) * (b.alpha - a.alpha) / (b.success_rate - a.success_rate)
        })
    })
}

/// Merges shard results: points with the same P add their trials and successes.
pub fn merge_points(shards: &[Vec<PointResult>]) -> Vec<PointResult> {
    let mut merged: Vec<PointResult> = Vec::new();
    for r in shards.iter().flatten() {
        match merged.iter_mut().find(|m| m.patterns == r.patterns) {
            Some(m) => {
                let total = (m.trials + r.trials) as f64;
                let mix = |a: f64, b: f64| (a * m.trials as f64 + b * r.trials as f64) / total;
                m.mean_overlap = mix(m.mean_overlap, r.mean_overlap);
                m.bit_flip_rate = match (m.bit_flip_rate, r.bit_flip_rate) {
                    (Some(a), Some(b)) => Some(mix(a, b)),
                    _ => None,
                };
                m.empty_supports = match (m.empty_supports, r.empty_supports) {
                    (Some(a), Some(b)) => Some(a + b),
                    _ => None,
                };
                m.trials += r.trials;
                m.successes += r.successes;
                m.success_rate = m.successes as f64 / m.trials as f64;
                m.seconds += r.seconds;
            }
            None => merged.push(r.clone()),
        }
    }
    merged.sort_by_key(|r| r.patterns);
    merged
}

/// summary.json of a capacity sweep (and of a merge of shards).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CapacitySummary {
    /// Where success_rate crosses ½, linear in α ([`alpha_half`]).
    pub alpha_half: Option<f64>,
    /// round(e^{α_half · N}).
    pub patterns_half: Option<f64>,
    /// `cpu` or `wgpu`.
    pub device: String,
    /// The adapter's description (`cpu reference` on the CPU).
    pub adapter: String,
    /// The command's arguments (a merge adds `merged_from` and clears `shard`).
    pub args: serde_json::Value,
    /// The prediction of [`crate::theory::prediction`] (`null` where none is known).
    pub theory: serde_json::Value,
    /// Points in results.csv.
    pub points: usize,
    /// Trials over all points.
    pub trials: usize,
    /// Seconds over all points.
    pub seconds: f64,
}

impl CapacitySummary {
    /// The summary of `points` at dimension `dim`.
    pub fn new(
        points: &[PointResult],
        dim: usize,
        device: &str,
        adapter: &str,
        args: serde_json::Value,
        theory: serde_json::Value,
    ) -> Self {
        let half = alpha_half(points);
        Self {
            alpha_half: half,
            patterns_half: half.map(|a| (a * dim as f64).exp().round()),
            device: device.into(),
            adapter: adapter.into(),
            args,
            theory,
            points: points.len(),
            trials: points.iter().map(|p| p.trials).sum(),
            seconds: points.iter().map(|p| p.seconds).sum(),
        }
    }

    /// The predicted α_half, where the theory gives one.
    pub fn predicted_alpha_half(&self) -> Option<f64> {
        self.theory.get("alpha_half").and_then(|v| v.as_f64())
    }

    /// Reads a summary.json written by [`write_capacity_outputs`].
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        serde_json::from_str(&text).map_err(|e| output(path, e))
    }
}

/// Writes summary.json and capacity.svg of a sweep into `out` (results.csv is written row
/// by row as the sweep runs, see [`CsvSink`]); returns the summary.
pub fn write_capacity_outputs(
    out: &Path,
    points: &[PointResult],
    dim: usize,
    summary: CapacitySummary,
) -> Result<CapacitySummary> {
    let value = serde_json::to_value(&summary).map_err(|e| output(out, e))?;
    write_json(&out.join("summary.json"), &value)?;
    let title = format!("success rate vs load, N = {dim}");
    write_svg(
        &out.join("capacity.svg"),
        points,
        summary.predicted_alpha_half(),
        &title,
    )?;
    Ok(summary)
}

/// `dam merge`: adds the trials and successes of the shard runs in `dirs` point by point
/// and writes the three files into `out`; device, adapter and theory come from the first
/// shard's summary.
pub fn merge_runs(dirs: &[std::path::PathBuf], out: &Path) -> Result<CapacitySummary> {
    let Some(first_dir) = dirs.first() else {
        return Err(invalid("DIR", "", "give at least one run directory"));
    };
    let mut shards = Vec::with_capacity(dirs.len());
    for dir in dirs {
        shards.push(read_csv(&dir.join("results.csv"))?);
    }
    let first = CapacitySummary::read(&first_dir.join("summary.json"))?;
    let dim = first.args["dim"].as_u64().ok_or_else(|| {
        output(
            &first_dir.join("summary.json"),
            "args.dim is missing or not a whole number",
        )
    })? as usize;
    let points = merge_points(&shards);
    std::fs::create_dir_all(out).map_err(io(out))?;
    let mut sink = CsvSink::create(&out.join("results.csv"))?;
    for p in &points {
        sink.push(p)?;
    }
    let mut args = first.args.clone();
    args["merged_from"] = serde_json::json!(dirs);
    args["shard"] = serde_json::Value::Null;
    let summary = CapacitySummary::new(
        &points,
        dim,
        &first.device,
        &first.adapter,
        args,
        first.theory,
    );
    write_capacity_outputs(out, &points, dim, summary)
}

/// Writes `value` as pretty JSON.
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut file = File::create(path).map_err(io(path))?;
    serde_json::to_writer_pretty(&mut file, value).map_err(|e| output(path, e))?;
    writeln!(file).map_err(io(path))
}

/// Success rate vs α with a vertical theory line at `theory` (when known).
pub fn write_svg(
    path: &Path,
    points: &[PointResult],
    theory: Option<f64>,
    title: &str,
) -> Result<()> {
    let mut alphas: Vec<f64> = points.iter().map(|p| p.alpha).collect();
    alphas.extend(theory);
    let lo = alphas.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = alphas.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (720, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((lo - pad)..(hi + pad), -0.02f64..1.02f64)?;
        chart
            .configure_mesh()
            .x_desc("α = ln P / N")
            .y_desc("success rate")
            .draw()?;
        let mut sorted: Vec<(f64, f64)> =
            points.iter().map(|p| (p.alpha, p.success_rate)).collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(sorted.clone(), &BLUE))?
            .label("measured")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
        chart.draw_series(sorted.iter().map(|&p| Circle::new(p, 3, BLUE.filled())))?;
        if let Some(a) = theory {
            chart
                .draw_series(LineSeries::new(
                    vec![(a, -0.02), (a, 1.02)],
                    RED.stroke_width(2),
                ))?
                .label(format!("theory α* = {a:.4}"))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| output(path, e))
}

/// Draws a chart's legend (white box, black border, at `position`) and presents the figure:
/// the last step of every plot here.
pub(crate) fn legend_and_present<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> std::result::Result<(), Box<dyn std::error::Error + 'a>>
where
    DB: DrawingBackend + 'a,
    X: Ranged,
    Y: Ranged,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(position)
        .draw()?;
    chart.plotting_area().present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(alpha: f64, rate: f64) -> PointResult {
        PointResult {
            alpha,
            patterns: (alpha * 100.0) as u64,
            trials: 10,
            successes: (rate * 10.0) as usize,
            success_rate: rate,
            mean_overlap: 1.0,
            bit_flip_rate: None,
            seconds: 1.0,
            mean_abs_correlation: Some(0.012_5),
            min_hamming: None,
            empty_supports: Some(1),
        }
    }

    #[test]
    fn alpha_half_interpolates_and_merge_adds() {
        let pts = vec![
            point(0.5, 1.0),
            point(0.6, 0.8),
            point(0.7, 0.2),
            point(0.8, 0.0),
        ];
        assert!((alpha_half(&pts).unwrap() - 0.65).abs() < 1e-12);
        assert_eq!(alpha_half(&pts[..2]), None);
        let merged = merge_points(&[pts.clone(), pts.clone()]);
        assert_eq!(merged.len(), 4);
        assert_eq!(merged[1].trials, 20);
        assert_eq!(merged[1].successes, 16);
        assert!((merged[1].success_rate - 0.8).abs() < 1e-12);
    }

    /// A fresh directory under the system's temporary folder.
    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dam-output-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn run_dir(root: &Path, name: &str, points: &[PointResult], shard: &str) -> std::path::PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut sink = CsvSink::create(&dir.join("results.csv")).unwrap();
        for p in points {
            sink.push(p).unwrap();
        }
        let args = serde_json::json!({"dim": 10, "shard": shard});
        let theory = serde_json::json!({"alpha_half": 0.66});
        let summary = CapacitySummary::new(points, 10, "cpu", "cpu reference", args, theory);
        write_capacity_outputs(&dir, points, 10, summary).unwrap();
        dir
    }

    #[test]
    fn outputs_round_trip_and_shards_merge() {
        let root = scratch("merge");
        let pts = vec![point(0.5, 1.0), point(0.6, 0.8), point(0.7, 0.2)];
        let a = run_dir(&root, "a", &pts, "0/2");
        let b = run_dir(&root, "b", &pts, "1/2");
        // results.csv: the contract's header, rows read back as written (6 decimals).
        let text = std::fs::read_to_string(a.join("results.csv")).unwrap();
        // The contract's columns first, then the realised-ensemble ones.
        assert_eq!(
            text.lines().next().unwrap(),
            "alpha,patterns,trials,successes,success_rate,mean_overlap,bit_flip_rate,seconds,\
             mean_abs_correlation,min_hamming,empty_supports"
        );
        // A file from before the realised columns still reads.
        let old = root.join("old.csv");
        std::fs::write(
            &old,
            "alpha,patterns,trials,successes,success_rate,mean_overlap,bit_flip_rate,seconds\n\
             0.5,50,10,10,1.0,1.0,,1.0\n",
        )
        .unwrap();
        let read = read_csv(&old).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!((read[0].patterns, read[0].mean_abs_correlation), (50, None));
        // And one from before `empty_supports`.
        std::fs::write(
            &old,
            "alpha,patterns,trials,successes,success_rate,mean_overlap,bit_flip_rate,seconds,\
             mean_abs_correlation,min_hamming\n0.5,50,10,10,1.0,1.0,,1.0,0.01,\n",
        )
        .unwrap();
        let read = read_csv(&old).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!((read[0].empty_supports, read[0].min_hamming), (None, None));
        assert_eq!(read_csv(&a.join("results.csv")).unwrap(), pts);
        // summary.json reads back (its keys are checked through the binary in tests/cli.rs).
        let summary = CapacitySummary::read(&a.join("summary.json")).unwrap();
        assert!((summary.alpha_half.unwrap() - 0.65).abs() < 1e-12);
        assert_eq!(summary.patterns_half, Some((0.65f64 * 10.0).exp().round()));
        assert_eq!(summary.predicted_alpha_half(), Some(0.66));
        assert!(a.join("capacity.svg").is_file());
        // Merging two shards doubles the trials and keeps the rates.
        let out = root.join("merged");
        let merged = merge_runs(&[a, b], &out).unwrap();
        assert_eq!(merged.trials, 60);
        assert_eq!(merged.args["shard"], serde_json::Value::Null);
        assert_eq!(merged.args["merged_from"].as_array().map(Vec::len), Some(2));
        let rows = read_csv(&out.join("results.csv")).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[1].trials, rows[1].successes), (20, 16));
        assert_eq!(rows[1].empty_supports, Some(2));
        assert_eq!(merged.alpha_half, summary.alpha_half);
        // A run directory without summary.json is an error naming the file.
        let broken = root.join("broken");
        std::fs::create_dir_all(&broken).unwrap();
        std::fs::copy(out.join("results.csv"), broken.join("results.csv")).unwrap();
        let err = merge_runs(&[broken], &root.join("x")).unwrap_err();
        assert!(err.to_string().contains("summary.json"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
