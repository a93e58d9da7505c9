//! `dam drdam`: the random-feature memory against the exact LSE memory on the same
//! patterns and queries, as a function of the number of features Y.

use dam::features::{FeatureKind, FeatureSpec, RandomFeatures};
use dam::procedural::{fill, PatternKind, Stream};
use dam::Device;
use ndarray::Array2;
use plotters::prelude::*;

use crate::error::{ExperimentError, Result};

/// One comparison.
#[derive(Debug, Clone)]
pub struct DrdamConfig {
    /// Dimension N.
    pub dim: usize,
    /// Stored patterns P.
    pub count: usize,
    /// Kernel β.
    pub beta: f64,
    /// Feature counts Y to try.
    pub features: Vec<usize>,
    /// Independent pattern sets (10 queries each).
    pub trials: usize,
    /// Feature family.
    pub kind: FeatureKind,
    /// Gradient-descent steps for the state comparison.
    pub steps: usize,
    /// Step size η.
    pub step_size: f32,
    /// Seed.
    pub seed: u64,
}

/// One row of results.csv.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DrdamRow {
    /// Y.
    pub features: usize,
    /// Mean |E_rf − E| / |E| over queries.
    pub energy_rel_error: f64,
    /// Mean ‖x_rf − x‖ / ‖x₀‖ after the descent: the distance between the random-feature
    /// and the exact final states in units of the query's norm (the exact state itself can
    /// shrink towards the patterns' mean at small β, so it is not the denominator).
    pub state_rel_error: f64,
    /// Trials left out of the means because the Fourier estimate φ(x)·T was ≤ 0 at one of
    /// their queries (the energy has no logarithm there: the large-β regime).
    pub failed_trials: usize,
    /// Seconds for the random-feature memory (insert, energy, descent), all trials.
    pub seconds: f64,
}

/// The columns of results.csv, in the contract's order.
pub const CSV_COLUMNS: [&str; 5] = [
    "features",
    "energy_rel_error",
    "state_rel_error",
    "seconds",
    "failed_trials",
];

/// Writes results.csv: one row per feature count, in [`CSV_COLUMNS`] order.
pub fn write_csv(path: &std::path::Path, rows: &[DrdamRow]) -> Result<()> {
    let fail = |reason: String| ExperimentError::Output {
        path: path.display().to_string(),
        reason,
    };
    let mut writer = csv::Writer::from_path(path).map_err(|e| fail(e.to_string()))?;
    writer
        .write_record(CSV_COLUMNS)
        .map_err(|e| fail(e.to_string()))?;
    for r in rows {
        writer
            .write_record([
                r.features.to_string(),
                format!("{:.6e}", r.energy_rel_error),
                format!("{:.6e}", r.state_rel_error),
                format!("{:.4}", r.seconds),
                r.failed_trials.to_string(),
            ])
            .map_err(|e| fail(e.to_string()))?;
    }
    writer.flush().map_err(|e| fail(e.to_string()))
}

/// Where the fitted slope is above this, the energy error does not fall like 1/√Y (the
/// large-β regime); `dam drdam` warns.
pub const SLOPE_WARNING: f64 = -0.35;

/// Writes results.csv, summary.json (`energy_loglog_slope`, `reference_slope`, `device`,
/// `adapter`, `args`) and drdam.svg into `out`; returns the fitted slope.
pub fn write_outputs(
    out: &std::path::Path,
    cfg: &DrdamConfig,
    rows: &[DrdamRow],
    device: &Device,
    args: serde_json::Value,
) -> Result<Option<f64>> {
    write_csv(&out.join("results.csv"), rows)?;
    let slope = loglog_slope(rows);
    let (kind, adapter) = device.describe()?;
    crate::output::write_json(
        &out.join("summary.json"),
        &serde_json::json!({
            "energy_loglog_slope": slope,
            "reference_slope": -0.5,
            "device": kind,
            "adapter": adapter,
            "args": args,
        }),
    )?;
    write_svg(
        &out.join("drdam.svg"),
        rows,
        &format!(
            "DrDAM vs exact, N = {}, P = {}, β = {}",
            cfg.dim, cfg.count, cfg.beta
        ),
    )?;
    Ok(slope)
}

const QUERIES: usize = 10;

/// Unit-scale patterns (entries N(0, 1/N)) of trial t, and queries near the first ten.
fn problem(cfg: &DrdamConfig, trial: u64) -> (Array2<f32>, Array2<f32>) {
    let n = cfg.dim;
    let scale = 1.0 / (n as f32).sqrt();
    let seed = cfg.seed.wrapping_mul(1_000_003).wrapping_add(trial);
    let mut patterns = Array2::<f32>::zeros((cfg.count, n));
    for (mu, mut row) in patterns.rows_mut().into_iter().enumerate() {
        let mut v = vec![0.0; n];
        fill(
            PatternKind::Gaussian,
            seed,
            Stream::Patterns,
            mu as u64,
            &mut v,
        );
        row.iter_mut().zip(v).for_each(|(r, x)| *r = x * scale);
    }
    let mut queries = Array2::<f32>::zeros((QUERIES, n));
    for (q, mut row) in queries.rows_mut().into_iter().enumerate() {
        let mut noise = vec![0.0; n];
        fill(
            PatternKind::Gaussian,
            seed,
            Stream::Queries,
            q as u64,
            &mut noise,
        );
        let target = patterns.row(q % cfg.count);
        row.iter_mut()
            .zip(target.iter().zip(noise))
            .for_each(|(r, (t, e))| *r = t + 0.1 * scale * e);
    }
    (patterns, queries)
}

/// Exact energies and descended states (CPU, f64).
fn exact(
    cfg: &DrdamConfig,
    patterns: &Array2<f32>,
    queries: &Array2<f32>,
) -> (Vec<f64>, Array2<f32>) {
    let flat: Vec<f32> = patterns.iter().copied().collect();
    let mut states = queries.clone();
    let energies = queries
        .rows()
        .into_iter()
        .map(|q| -dam::cpu::features::exact_lse_and_grad(cfg.beta, &flat, &q.to_vec()).0 / cfg.beta)
        .collect();
    for _ in 0..cfg.steps {
        for mut row in states.rows_mut() {
            let (_, g) = dam::cpu::features::exact_lse_and_grad(cfg.beta, &flat, &row.to_vec());
            row.iter_mut()
                .zip(g)
                .for_each(|(x, gi)| *x -= cfg.step_size * gi as f32);
        }
    }
    (energies, states)
}

/// Runs the comparison on `device`; `progress` is called after each (Y, trial).
pub fn run(
    cfg: &DrdamConfig,
    device: &Device,
    mut progress: impl FnMut(),
) -> Result<Vec<DrdamRow>> {
    if cfg.count == 0 || cfg.dim == 0 || cfg.trials == 0 || cfg.features.is_empty() {
        return Err(ExperimentError::Invalid {
            argument: "--dim/--count/--trials/--features",
            value: format!(
                "N={} P={} T={} Y={:?}",
                cfg.dim, cfg.count, cfg.trials, cfg.features
            ),
            reason: "all must be non-empty / ≥ 1".into(),
        });
    }
    let problems: Vec<_> = (0..cfg.trials as u64)
        .map(|t| {
            let (p, q) = problem(cfg, t);
            let (e, x) = exact(cfg, &p, &q);
            (p, q, e, x)
        })
        .collect();
    let mut rows = Vec::new();
    for &y in &cfg.features {
        let (mut energy_err, mut state_err, mut seconds, mut failed) = (0.0, 0.0, 0.0, 0);
        for (t, (patterns, queries, e_exact, x_exact)) in problems.iter().enumerate() {
            let spec = FeatureSpec {
                kind: cfg.kind,
                dim: cfg.dim,
                features: y,
                beta: cfg.beta,
                seed: cfg.seed ^ (t as u64) << 20,
            };
            let start = std::time::Instant::now();
            let mut memory = RandomFeatures::new(spec, device)?;
            memory.insert(patterns.view())?;
            let outcome = memory.energy(queries.view()).and_then(|e| {
                Ok((
                    e,
                    memory.retrieve(queries.view(), cfg.steps, cfg.step_size)?,
                ))
            });
            seconds += start.elapsed().as_secs_f64();
            progress();
            let (e, x) = match outcome {
                Ok(v) => v,
                // φ(x)·T ≤ 0: the Fourier estimate has no logarithm (large β / few features).
                Err(dam::Error::InvalidParameter {
                    argument: "features",
                    ..
                }) => {
                    failed += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            energy_err += e
                .iter()
                .zip(e_exact)
                .map(|(a, b)| ((a - b) / b).abs())
                .sum::<f64>();
            for ((xa, xe), x0) in x.rows().into_iter().zip(x_exact.rows()).zip(queries.rows()) {
                let diff: f64 = xa
                    .iter()
                    .zip(xe.iter())
                    .map(|(a, b)| ((a - b) as f64).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let norm: f64 = x0.iter().map(|b| (*b as f64).powi(2)).sum::<f64>().sqrt();
                state_err += diff / norm;
            }
        }
        // NaN when every trial failed: there is no estimate to average.
        let n = ((cfg.trials - failed) * QUERIES) as f64;
        rows.push(DrdamRow {
            features: y,
            energy_rel_error: energy_err / n,
            state_rel_error: state_err / n,
            seconds,
            failed_trials: failed,
        });
    }
    Ok(rows)
}

/// Least-squares slope of log(error) against log(Y).
pub fn loglog_slope(rows: &[DrdamRow]) -> Option<f64> {
    let pts: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.energy_rel_error > 0.0 && r.energy_rel_error.is_finite())
        .map(|r| ((r.features as f64).ln(), r.energy_rel_error.ln()))
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let k = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / k,
        pts.iter().map(|p| p.1).sum::<f64>() / k,
    );
    let var = pts.iter().map(|p| (p.0 - mx).powi(2)).sum::<f64>();
    (var > 0.0).then(|| pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / var)
}

/// Errors vs Y on log–log axes with the 1/√Y reference through the first point.
pub fn write_svg(path: &std::path::Path, rows: &[DrdamRow], title: &str) -> Result<()> {
    let err = |e: Box<dyn std::error::Error>| ExperimentError::Output {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    // Rows where every trial failed (NaN means) have no point to draw.
    let rows: Vec<&DrdamRow> = rows
        .iter()
        .filter(|r| r.energy_rel_error.is_finite() && r.state_rel_error.is_finite())
        .collect();
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let ys: Vec<f64> = rows.iter().map(|r| r.features as f64).collect();
        let es: Vec<f64> = rows
            .iter()
            .flat_map(|r| [r.energy_rel_error, r.state_rel_error])
            .filter(|v| *v > 0.0)
            .collect();
        let (xlo, xhi) = (
            ys.iter().cloned().fold(f64::INFINITY, f64::min),
            ys.iter().cloned().fold(0.0, f64::max),
        );
        let (elo, ehi) = match es.is_empty() {
            true => (1e-3, 1.0),
            false => (
                es.iter().cloned().fold(f64::INFINITY, f64::min),
                es.iter().cloned().fold(0.0, f64::max),
            ),
        };
        let (xlo, xhi) = match ys.is_empty() {
            true => (1.0, 10.0),
            false => (xlo, xhi),
        };
        let root = SVGBackend::new(path, (720, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(
                (xlo * 0.8..xhi * 1.25).log_scale(),
                (elo * 0.5..ehi * 2.0).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("features Y")
            .y_desc("mean relative error")
            .draw()?;
        let energy: Vec<(f64, f64)> = rows
            .iter()
            .map(|r| (r.features as f64, r.energy_rel_error))
            .collect();
        let state: Vec<(f64, f64)> = rows
            .iter()
            .map(|r| (r.features as f64, r.state_rel_error))
            .collect();
        chart
            .draw_series(LineSeries::new(energy.clone(), &BLUE))?
            .label("energy")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
        chart.draw_series(energy.iter().map(|&p| Circle::new(p, 3, BLUE.filled())))?;
        chart
            .draw_series(LineSeries::new(state.clone(), &GREEN))?
            .label("state")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], GREEN));
        chart.draw_series(state.iter().map(|&p| Circle::new(p, 3, GREEN.filled())))?;
        if let Some(&(y0, e0)) = energy.first() {
            let reference: Vec<(f64, f64)> =
                ys.iter().map(|&y| (y, e0 * (y0 / y).sqrt())).collect();
            chart
                .draw_series(LineSeries::new(reference, RED.stroke_width(1)))?
                .label("∝ 1/√Y")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(err)
}
