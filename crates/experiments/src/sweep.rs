//! `dam capacity` (without `--search`): a [`Sweep`] at each load, results.csv written row
//! by row (so an interrupted sweep keeps the points it finished), then summary.json and
//! capacity.svg with the theory line where one is known ([`crate::theory::prediction`]).

use std::path::PathBuf;

use crate::capacity::{PointResult, Sweep};
use crate::error::{prepare_out, Result};
use crate::output::{write_capacity_outputs, CapacitySummary, CsvSink};
use crate::theory::prediction;

/// A sweep over loads, written into a folder.
#[derive(Debug, Clone)]
pub struct SweepSpec {
    /// Everything but the loads.
    pub sweep: Sweep,
    /// The loads P, in order.
    pub loads: Vec<u64>,
    /// The output folder (created if missing).
    pub out: PathBuf,
    /// The command's arguments, as summary.json records them (`args`).
    pub args: serde_json::Value,
}

/// What [`run`] reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum SweepProgress<'a> {
    /// A load starts: P and α = ln P / N.
    Load {
        /// P.
        patterns: u64,
        /// ln P / N.
        alpha: f64,
    },
    /// Trials done at the current load (since the last report).
    Trials(usize),
    /// A load is done; its row is in results.csv.
    Point(&'a PointResult),
}

/// Runs `spec` on `device`, load by load, and writes results.csv, summary.json and
/// capacity.svg into `spec.out`; returns the summary.
pub fn run(
    spec: &SweepSpec,
    device: &dam::Device,
    mut progress: impl FnMut(SweepProgress<'_>),
) -> Result<CapacitySummary> {
    let sweep = &spec.sweep;
    let (device_name, adapter) = device.describe()?;
    prepare_out(&spec.out)?;
    let mut sink = CsvSink::create(&spec.out.join("results.csv"))?;
    let mut points = Vec::with_capacity(spec.loads.len());
    for &patterns in &spec.loads {
        progress(SweepProgress::Load {
            patterns,
            alpha: (patterns as f64).ln() / sweep.dim as f64,
        });
        let point = sweep.run_point(device, patterns, |done| {
            progress(SweepProgress::Trials(done))
        })?;
        sink.push(&point)?;
        progress(SweepProgress::Point(&point));
        points.push(point);
    }
    let summary = CapacitySummary::new(
        &points,
        sweep.dim,
        &device_name,
        &adapter,
        spec.args.clone(),
        prediction(sweep),
    );
    write_capacity_outputs(&spec.out, &points, sweep.dim, summary)
}
