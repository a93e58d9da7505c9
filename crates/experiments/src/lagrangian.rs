//! `dam lagrangian`: trajectories of a network from Lagrangians ([`dam::EnergyNetwork`])
//! from corrupted stored patterns — the energy at every step, the overlap with the nearest
//! memory, whether the memory was retrieved — written as trajectory.csv, summary.json and
//! energy.svg.

use std::io::Write;
use std::path::Path;

use dam::lagrangian::LagrangianSpec;
use dam::{Device, EnergyNetwork};
use ndarray::Array2;
use plotters::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use crate::error::{invalid, output, Result};
use crate::output::{legend_and_present, write_json};

/// Where the memories come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagrangianPatterns {
    /// Gaussian entries, each memory scaled to unit norm.
    Random,
    /// ±1/√N entries (unit norm).
    Binary,
    /// The shipped MNIST digits (N = 784), scaled to unit norm.
    Mnist,
}

/// One `dam lagrangian` run.
#[derive(Debug, Clone)]
pub struct LagrangianRunSpec {
    /// The network's Lagrangians, time constants, step and integrator.
    pub spec: LagrangianSpec,
    /// K memories.
    pub memories: usize,
    /// N feature neurons.
    pub dim: usize,
    /// Where the memories come from.
    pub patterns: LagrangianPatterns,
    /// Steps of the integrator.
    pub steps: usize,
    /// Queries B (query q starts near memory q mod K).
    pub batch: usize,
    /// Corruption: the fraction of entries whose sign is flipped.
    pub noise: f64,
    /// Seed of the memories and the noise.
    pub seed: u64,
}

/// One row of trajectory.csv.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrajectoryRow {
    /// The query.
    pub query: usize,
    /// The step.
    pub step: usize,
    /// t = step · dt.
    pub t: f64,
    /// E at that step.
    pub energy: f64,
    /// The largest cosine between g(v) and a memory.
    pub overlap_nearest: f64,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct LagrangianOutcome {
    /// Every query at every step.
    pub rows: Vec<TrajectoryRow>,
    /// Per query: whether it ended on its own memory (nearest, cosine ≥ 0.95).
    pub retrieved: Vec<bool>,
    /// Per query: the first step after which the state moves by at most 1e-4 of its
    /// largest coordinate per step (`None`: still moving at the end).
    pub converged_at: Vec<Option<usize>>,
    /// The largest E[t+1] − E[t] over every query and step (≤ 0 when the energy never rose).
    pub largest_energy_increase: f64,
    /// The largest (E[t+1] − E[t]) / max(1, |E[t]|): the rise against the energy's scale
    /// (f32 rounding on the fast CPU is about 1e-6).
    pub largest_relative_energy_increase: f64,
}

/// The overlap a query must reach with its own memory to count as retrieved.
pub const RETRIEVED_OVERLAP: f64 = 0.95;
const CONVERGED: f32 = 1e-4;

fn unit_rows(mut m: Array2<f32>) -> Array2<f32> {
    for mut row in m.rows_mut() {
        let norm = row.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt() as f32;
        if norm > 0.0 {
            row.mapv_inplace(|x| x / norm);
        }
    }
    m
}

/// The memories (K×N, unit rows) and the B queries of a run.
pub fn problem(cfg: &LagrangianRunSpec) -> Result<(Array2<f32>, Array2<f32>)> {
    let (k, n) = (cfg.memories, cfg.dim);
    if k == 0 || n == 0 || cfg.batch == 0 {
        return Err(invalid(
            "--memories/--dim/--batch",
            &format!("{k}/{n}/{}", cfg.batch),
            "all must be at least 1",
        ));
    }
    if !(0.0..=1.0).contains(&cfg.noise) {
        return Err(invalid("--noise", &cfg.noise.to_string(), "use 0 ≤ F ≤ 1"));
    }
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let memories = match cfg.patterns {
        LagrangianPatterns::Random => {
            Array2::from_shape_simple_fn((k, n), || StandardNormal.sample(&mut rng))
        }
        LagrangianPatterns::Binary => {
            Array2::from_shape_simple_fn((k, n), || if rng.random::<bool>() { 1.0 } else { -1.0 })
        }
        LagrangianPatterns::Mnist => {
            if n != dam::mnist::SIDE * dam::mnist::SIDE {
                return Err(invalid(
                    "--dim",
                    &n.to_string(),
                    "digits have N = 784 pixels: use --dim 784 with --patterns mnist",
                ));
            }
            let path = dam::mnist::data_dir().join("train-images-idx3-ubyte.gz");
            let images = dam::mnist::load_images(&path, k)?;
            if images.nrows() < k {
                return Err(invalid(
                    "--memories",
                    &k.to_string(),
                    format!("only {} digits are available", images.nrows()),
                ));
            }
            images
        }
    };
    let memories = unit_rows(memories);
    let queries = Array2::from_shape_fn((cfg.batch, n), |(q, i)| {
        let x = memories[[q % k, i]];
        if rng.random::<f64>() < cfg.noise {
            -x
        } else {
            x
        }
    });
    Ok((memories, queries))
}

/// The index and cosine of the memory nearest to g(v).
fn nearest(spec: &LagrangianSpec, memories: &Array2<f32>, v: &[f32]) -> (usize, f64) {
    let v64: Vec<f64> = v.iter().map(|&x| x as f64).collect();
    let mut g = vec![0.0; v.len()];
    spec.visible.activation(&v64, &mut g);
    let norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut best = (0, f64::NEG_INFINITY);
    for (mu, row) in memories.rows().into_iter().enumerate() {
        let dot: f64 = row.iter().zip(&g).map(|(&a, b)| a as f64 * b).sum();
        let cos = if norm > 0.0 { dot / norm } else { 0.0 };
        if cos > best.1 {
            best = (mu, cos);
        }
    }
    best
}

/// Runs the network step by step from the queries (the memory neurons carried from step to
/// step), calling `progress` after each step.
pub fn run(
    cfg: &LagrangianRunSpec,
    device: &Device,
    mut progress: impl FnMut(),
) -> Result<LagrangianOutcome> {
    let (memories, queries) = problem(cfg)?;
    let spec = cfg.spec;
    let net = EnergyNetwork::new(memories.clone(), spec)?.with_device(device.clone());
    let b = queries.nrows();
    let mut rows = Vec::with_capacity(b * (cfg.steps + 1));
    let record = |rows: &mut Vec<TrajectoryRow>, step: usize, states: &Array2<f32>, e: &[f64]| {
        for (q, (v, &energy)) in states.rows().into_iter().zip(e).enumerate() {
            let (_, overlap) = nearest(&spec, &memories, &v.to_vec());
            rows.push(TrajectoryRow {
                query: q,
                step,
                t: step as f64 * spec.dt,
                energy,
                overlap_nearest: overlap,
            });
        }
    };
    let mut states = queries;
    let mut hidden: Option<Array2<f32>> = None;
    let mut previous = net.energy(states.view())?;
    record(&mut rows, 0, &states, &previous);
    let mut last_move = vec![0; b];
    let mut largest_energy_increase = f64::NEG_INFINITY;
    let mut largest_relative_energy_increase = f64::NEG_INFINITY;
    for step in 1..=cfg.steps {
        let run = net.run_from(states.view(), hidden.as_ref().map(|h| h.view()), 1, true)?;
        for (q, (new, old)) in run.states.rows().into_iter().zip(states.rows()).enumerate() {
            let size = old
                .iter()
                .fold(0.0f32, |m, x| m.max(x.abs()))
                .max(f32::MIN_POSITIVE);
            let moved = new
                .iter()
                .zip(old.iter())
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            if moved > CONVERGED * size {
                last_move[q] = step;
            }
        }
        let energy = run.energies.column(1).to_vec();
        for (e1, e0) in energy.iter().zip(&previous) {
            largest_energy_increase = largest_energy_increase.max(e1 - e0);
            largest_relative_energy_increase =
                largest_relative_energy_increase.max((e1 - e0) / e0.abs().max(1.0));
        }
        record(&mut rows, step, &run.states, &energy);
        previous = energy;
        states = run.states;
        hidden = run.hidden;
        progress();
    }
    let k = memories.nrows();
    let retrieved = states
        .rows()
        .into_iter()
        .enumerate()
        .map(|(q, v)| {
            let (mu, overlap) = nearest(&spec, &memories, &v.to_vec());
            mu == q % k && overlap >= RETRIEVED_OVERLAP
        })
        .collect();
    let converged_at = last_move
        .iter()
        .map(|&s| (s < cfg.steps).then_some(s))
        .collect();
    Ok(LagrangianOutcome {
        rows,
        retrieved,
        converged_at,
        largest_energy_increase,
        largest_relative_energy_increase,
    })
}

/// Writes trajectory.csv, summary.json and energy.svg into `out`; `args` is the command
/// line, recorded in summary.json. Returns the retrieved fraction.
pub fn write_outputs(
    out: &Path,
    cfg: &LagrangianRunSpec,
    outcome: &LagrangianOutcome,
    device: &Device,
    args: serde_json::Value,
) -> Result<f64> {
    let path = out.join("trajectory.csv");
    let write_csv = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(f, "query,step,t,energy,overlap_nearest")?;
        for r in &outcome.rows {
            writeln!(
                f,
                "{},{},{},{:e},{:.6}",
                r.query, r.step, r.t, r.energy, r.overlap_nearest
            )?;
        }
        f.flush()
    };
    write_csv().map_err(|e| output(&path, e))?;
    let b = outcome.retrieved.len();
    let fraction = outcome.retrieved.iter().filter(|&&r| r).count() as f64 / b as f64;
    let converged: Vec<usize> = outcome.converged_at.iter().flatten().copied().collect();
    let (kind, adapter) = device.describe()?;
    let spec = &cfg.spec;
    write_json(
        &out.join("summary.json"),
        &serde_json::json!({
            "retrieved_fraction": fraction,
            "retrieved_overlap": RETRIEVED_OVERLAP,
            "converged_queries": converged.len(),
            "steps_to_converge_mean": (!converged.is_empty())
                .then(|| converged.iter().sum::<usize>() as f64 / converged.len() as f64),
            "steps_to_converge_max": converged.iter().max(),
            "steps_to_converge": outcome.converged_at,
            "largest_energy_increase": outcome.largest_energy_increase,
            "largest_relative_energy_increase": outcome.largest_relative_energy_increase,
            "visible": spec.visible.name(),
            "hidden": format!("{:?}", spec.hidden),
            "tau_visible": spec.tau_visible,
            "tau_hidden": spec.tau_hidden,
            "dt": spec.dt,
            "integrator": spec.integrator.name(),
            "device": kind,
            "adapter": adapter,
            "args": args,
        }),
    )?;
    write_svg(
        &out.join("energy.svg"),
        outcome,
        &format!(
            "{} / {}: K = {}, N = {}, τ_v = {}, τ_h = {}, dt = {}",
            spec.visible.name(),
            spec.hidden.name(),
            cfg.memories,
            cfg.dim,
            spec.tau_visible,
            spec.tau_hidden,
            spec.dt
        ),
    )?;
    Ok(fraction)
}

/// E against t, one line per query (at most 16 drawn).
fn write_svg(path: &Path, outcome: &LagrangianOutcome, title: &str) -> Result<()> {
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let rows: Vec<&TrajectoryRow> = outcome
            .rows
            .iter()
            .filter(|r| r.query < 16 && r.energy.is_finite())
            .collect();
        let (tlo, thi) = rows
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), r| {
                (a.min(r.t), b.max(r.t))
            });
        let (elo, ehi) = rows
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), r| {
                (a.min(r.energy), b.max(r.energy))
            });
        let (tlo, thi) = if tlo < thi { (tlo, thi) } else { (0.0, 1.0) };
        let pad = ((ehi - elo) * 0.05).max(1e-9 * ehi.abs().max(1.0));
        let (elo, ehi) = if elo.is_finite() {
            (elo - pad, ehi + pad)
        } else {
            (-1.0, 1.0)
        };
        let root = SVGBackend::new(path, (720, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(tlo..thi, elo..ehi)?;
        chart
            .configure_mesh()
            .x_desc("t")
            .y_desc("energy E")
            .draw()?;
        let queries = outcome.retrieved.len().min(16);
        for q in 0..queries {
            let color = Palette99::pick(q).to_rgba();
            let line: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.query == q)
                .map(|r| (r.t, r.energy))
                .collect();
            let series = chart.draw_series(LineSeries::new(line, color.stroke_width(1)))?;
            if q < 4 {
                series
                    .label(format!("query {q}"))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
            }
        }
        legend_and_present(&mut chart, SeriesLabelPosition::UpperRight)
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    draw().map_err(|e| output(path, e))
}
