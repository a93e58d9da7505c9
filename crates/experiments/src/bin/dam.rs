//! `dam`: capacity experiments for dense associative memories.
//!
//! `dam` with no arguments runs a small spherical log-sum-exp sweep (N = 16, λ = 1). See
//! `dam capacity --help` and `dam merge --help`.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use dam::procedural::{PatternKind, MAX_PROCEDURAL_COUNT};
use dam_experiments::output::{alpha_half, merge_points, read_csv, write_json, write_svg, CsvSink};
use dam_experiments::theory::{gaussian_alpha, spherical_alpha_finite, spherical_alpha_infinite};
use dam_experiments::{
    Criterion, DynamicsArg, Energy, Engine, ExperimentError, QueryKind, Result, Sweep,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(
    name = "dam",
    version,
    about = "Dense associative memory capacity experiments"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sweep the load and measure the retrieval success rate.
    Capacity(CapacityArgs),
    /// Join the outputs of `--shard`ed runs into one results.csv / summary.json / svg.
    Merge(MergeArgs),
    /// Random-feature memory (DrDAM) vs the exact LSE memory, as a function of Y.
    Drdam(DrdamArgs),
    /// Seconds per retrieval step (dot similarity, softmax, Gaussian patterns, seed 0).
    Bench(BenchArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum DtypeArg {
    F32,
    F16,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
struct BenchArgs {
    /// Stored patterns P.
    #[arg(long)]
    patterns: usize,
    /// Dimension N.
    #[arg(long)]
    dim: usize,
    /// Queries per step B.
    #[arg(long)]
    batch: usize,
    /// Softmax β (default 1/√N, as the NumPy and PyTorch peers).
    #[arg(long)]
    beta: Option<f32>,
    /// Timed steps after one warm-up step (the median is reported).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    /// Pattern storage: f32, or f16 (2 bytes per entry, f32 arithmetic).
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    dtype: DtypeArg,
    /// Time the plain CPU reference (one query, one pattern at a time, f64) instead of the
    /// fused path; `--device cpu` only.
    #[arg(long)]
    reference: bool,
    /// Print one JSON line instead of a sentence.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum KindArg {
    Fourier,
    Positive,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
struct DrdamArgs {
    /// Dimension N.
    #[arg(long)]
    dim: usize,
    /// Stored patterns P.
    #[arg(long)]
    count: usize,
    /// Kernel β of exp(−β/2 ‖x − ξ‖²).
    #[arg(long, default_value_t = 1.0)]
    beta: f64,
    /// Feature counts, comma separated (e.g. 64,256,1024).
    #[arg(long, value_delimiter = ',', required = true)]
    features: Vec<usize>,
    /// Independent pattern sets (10 queries each).
    #[arg(long, default_value_t = 4)]
    trials: usize,
    /// Feature family.
    #[arg(long, value_enum, default_value_t = KindArg::Fourier)]
    kind: KindArg,
    /// Gradient-descent steps compared on the states.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Step size η.
    #[arg(long, default_value_t = 0.5)]
    step_size: f32,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum PatternsArg {
    Spherical,
    Gaussian,
    Binary,
}

#[derive(Debug, Clone, Copy, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum EnergyArg {
    Lse,
    Exp,
    Poly,
    Rpoly,
}

#[derive(Debug, Clone, Copy, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum DeviceArg {
    Auto,
    Cpu,
    Wgpu,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
#[command(group(clap::ArgGroup::new("load").required(true).args(["alpha", "count"])))]
struct CapacityArgs {
    /// Pattern distribution.
    #[arg(long, value_enum)]
    patterns: PatternsArg,
    /// Dimension N.
    #[arg(long)]
    dim: usize,
    /// Energy / separation.
    #[arg(long, value_enum)]
    energy: EnergyArg,
    /// λ of THEORY.md §1 (β on the raw dot product).
    #[arg(long, default_value_t = 1.0)]
    beta: f64,
    /// Polynomial degree n.
    #[arg(long, default_value_t = 2)]
    degree: u32,
    /// Loads α = ln P / N as START:STOP:STEP (P = round(e^{αN})).
    #[arg(long)]
    alpha: Option<String>,
    /// Pattern counts P as START:STOP:STEP.
    #[arg(long)]
    count: Option<String>,
    /// Trials per point.
    #[arg(long)]
    trials: usize,
    /// `stored` or `flip:RHO` (flip the sign of a fraction ρ of the entries).
    #[arg(long, default_value = "stored")]
    query: String,
    /// `one-step` or `converge:MAX`.
    #[arg(long, default_value = "one-step")]
    dynamics: String,
    /// `weight`, `overlap:THETA`, `nearest` or `exact`.
    #[arg(long, default_value = "weight")]
    criterion: String,
    /// Master seed (trial t at load P uses a seed derived from (seed, P, t)).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Run the trials t with t mod n = i, as `i/n` (merge shards with `dam merge`).
    #[arg(long)]
    shard: Option<String>,
}

#[derive(Debug, Args)]
struct MergeArgs {
    /// Output folders of the shards.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Where to write the merged files.
    #[arg(long, default_value = "dam-merged")]
    out: PathBuf,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Capacity(args)) => capacity(&args),
        Some(Command::Merge(args)) => merge(&args),
        Some(Command::Drdam(args)) => drdam(&args),
        Some(Command::Bench(args)) => bench(&args),
        None => {
            eprintln!("dam: no command given; running the default sweep (spherical patterns, N = 16, λ = 1, log-sum-exp). See `dam --help`.");
            capacity(&default_sweep())
        }
    };
    if let Err(e) = result {
        eprintln!("dam: error: {e}");
        std::process::exit(2);
    }
}

fn default_sweep() -> CapacityArgs {
    CapacityArgs {
        patterns: PatternsArg::Spherical,
        dim: 16,
        energy: EnergyArg::Lse,
        beta: 1.0,
        degree: 2,
        alpha: Some("0.50:0.74:0.02".into()),
        count: None,
        trials: 100,
        query: "stored".into(),
        dynamics: "one-step".into(),
        criterion: "weight".into(),
        seed: 0,
        device: DeviceArg::Auto,
        out: PathBuf::from("dam-out"),
        shard: None,
    }
}

fn invalid(argument: &'static str, value: &str, reason: impl ToString) -> ExperimentError {
    ExperimentError::Invalid {
        argument,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// START:STOP:STEP → the values START, START+STEP, … ≤ STOP.
fn parse_range(argument: &'static str, text: &str) -> Result<Vec<f64>> {
    let parts: Vec<&str> = text.split(':').collect();
    let nums: Vec<f64> = parts
        .iter()
        .map(|p| p.trim().parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| {
            invalid(
                argument,
                text,
                format!("expected START:STOP:STEP numbers ({e})"),
            )
        })?;
    let [start, stop, step] = nums[..] else {
        return Err(invalid(argument, text, "expected START:STOP:STEP"));
    };
    if !(start.is_finite() && stop.is_finite() && step.is_finite()) || step <= 0.0 || stop < start {
        return Err(invalid(
            argument,
            text,
            "need finite START ≤ STOP and STEP > 0",
        ));
    }
    let count = ((stop - start) / step + 1e-9).floor() as usize + 1;
    if count > 10_000 {
        return Err(invalid(
            argument,
            text,
            format!("{count} points is more than 10,000"),
        ));
    }
    Ok((0..count).map(|i| start + i as f64 * step).collect())
}

/// A named choice: (name, constructor from `NAME:VALUE`, value of a bare `NAME`).
type Choice<T> = (&'static str, Option<fn(f64) -> T>, Option<T>);

/// Parses `NAME` or `NAME:VALUE` against `names`.
fn parse_with_value<T>(argument: &'static str, text: &str, names: &[Choice<T>]) -> Result<T>
where
    T: Copy,
{
    let (name, value) = text
        .split_once(':')
        .map_or((text, None), |(a, b)| (a, Some(b)));
    for &(n, with, plain) in names {
        if n != name {
            continue;
        }
        return match (value, with, plain) {
            (None, _, Some(p)) => Ok(p),
            (Some(v), Some(f), _) => v
                .parse::<f64>()
                .map(f)
                .map_err(|e| invalid(argument, text, format!("bad number after `{n}:` ({e})"))),
            _ => Err(invalid(
                argument,
                text,
                format!(
                    "`{n}` takes {}",
                    if with.is_some() {
                        "a value: NAME:VALUE"
                    } else {
                        "no value"
                    }
                ),
            )),
        };
    }
    let known: Vec<&str> = names.iter().map(|n| n.0).collect();
    Err(invalid(
        argument,
        text,
        format!("unknown; expected one of {known:?}"),
    ))
}

fn build_sweep(args: &CapacityArgs) -> Result<(Sweep, Vec<u64>)> {
    let kind = match args.patterns {
        PatternsArg::Spherical => PatternKind::Spherical,
        PatternsArg::Gaussian => PatternKind::Gaussian,
        PatternsArg::Binary => PatternKind::Binary,
    };
    let energy = match args.energy {
        EnergyArg::Lse => Energy::Lse,
        EnergyArg::Exp => Energy::Exp,
        EnergyArg::Poly => Energy::Poly,
        EnergyArg::Rpoly => Energy::Rpoly,
    };
    let query = parse_with_value(
        "--query",
        &args.query,
        &[
            ("stored", None, Some(QueryKind::Stored)),
            ("flip", Some(QueryKind::Flip), None),
        ],
    )?;
    let dynamics = parse_with_value(
        "--dynamics",
        &args.dynamics,
        &[
            ("one-step", None, Some(DynamicsArg::OneStep)),
            (
                "converge",
                Some(|v: f64| DynamicsArg::Converge(v as usize)),
                None,
            ),
        ],
    )?;
    if let DynamicsArg::Converge(0) = dynamics {
        return Err(invalid(
            "--dynamics",
            &args.dynamics,
            "MAX must be at least 1",
        ));
    }
    let criterion = parse_with_value(
        "--criterion",
        &args.criterion,
        &[
            ("weight", None, Some(Criterion::Weight)),
            ("overlap", Some(Criterion::Overlap), None),
            ("nearest", None, Some(Criterion::Nearest)),
            ("exact", None, Some(Criterion::Exact)),
        ],
    )?;
    let shard = match &args.shard {
        None => (0, 1),
        Some(text) => {
            let parsed = text.split_once('/').and_then(|(i, n)| {
                Some((
                    i.trim().parse::<usize>().ok()?,
                    n.trim().parse::<usize>().ok()?,
                ))
            });
            parsed.ok_or_else(|| invalid("--shard", text, "expected i/n"))?
        }
    };
    let counts: Vec<u64> = match (&args.alpha, &args.count) {
        (Some(a), None) => parse_range("--alpha", a)?
            .into_iter()
            .map(|alpha| {
                let p = (alpha * args.dim as f64).exp().round();
                if p > MAX_PROCEDURAL_COUNT as f64 {
                    return Err(invalid(
                        "--alpha",
                        a,
                        format!("α = {alpha} gives P = e^{{αN}} ≈ {p:.3e}, beyond 2^40"),
                    ));
                }
                Ok(p.max(1.0) as u64)
            })
            .collect::<Result<_>>()?,
        (None, Some(c)) => parse_range("--count", c)?
            .into_iter()
            .map(|p| {
                if p < 1.0 || p > MAX_PROCEDURAL_COUNT as f64 || p.fract() != 0.0 {
                    return Err(invalid(
                        "--count",
                        c,
                        format!("P = {p} is not a whole number in 1..=2^40"),
                    ));
                }
                Ok(p as u64)
            })
            .collect::<Result<_>>()?,
        _ => {
            return Err(invalid(
                "--alpha/--count",
                "",
                "give exactly one of --alpha or --count",
            ))
        }
    };
    let sweep = Sweep {
        kind,
        dim: args.dim,
        energy,
        beta: args.beta,
        degree: args.degree,
        trials: args.trials,
        query,
        dynamics,
        criterion,
        seed: args.seed,
        shard,
    };
    sweep.validate()?;
    Ok((sweep, counts))
}

/// The prediction of THEORY.md for this sweep, when one is known.
fn theory(sweep: &Sweep) -> serde_json::Value {
    let weight_from_stored =
        sweep.criterion == Criterion::Weight && sweep.query == QueryKind::Stored;
    match (sweep.kind, sweep.energy) {
        (PatternKind::Spherical, Energy::Lse | Energy::Exp) if weight_from_stored => json!({
            "alpha_half": spherical_alpha_finite(sweep.dim, sweep.beta),
            "alpha_infinite_n": spherical_alpha_infinite(sweep.beta),
            "source": "THEORY.md §1: finite-N annealed threshold P* = e^{λN}/E[e^{λNu}] (Lucibello & Mézard 2024)",
        }),
        (PatternKind::Gaussian, Energy::Lse | Energy::Exp) => json!({
            "alpha_half": gaussian_alpha(sweep.beta),
            "alpha_infinite_n": gaussian_alpha(sweep.beta),
            "source": "THEORY.md §2: α₁ = λ(1 − λ/2) for λ ≤ 1, 1/2 above (N → ∞)",
        }),
        _ => serde_json::Value::Null,
    }
}

fn prepare_out(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|source| ExperimentError::Io {
        path: out.display().to_string(),
        source,
    })
}

fn device_of(arg: DeviceArg) -> Result<dam::Device> {
    Ok(match arg {
        DeviceArg::Auto => dam::Device::auto()?,
        DeviceArg::Cpu => dam::Device::Cpu,
        DeviceArg::Wgpu => dam::Device::wgpu(),
    })
}

/// The wgpu adapter's description, or `cpu_label` on the CPU.
fn adapter_of(device: &dam::Device, cpu_label: &str) -> Result<String> {
    Ok(match device {
        dam::Device::Cpu => cpu_label.to_string(),
        dam::Device::Wgpu(options) => dam::WgpuContext::shared(options)
            .map_err(dam::Error::from)?
            .describe(),
    })
}

fn bench(args: &BenchArgs) -> Result<()> {
    use dam_experiments::bench::{run, BenchConfig, BenchPath};
    let beta = args.beta.unwrap_or(1.0 / (args.dim.max(1) as f32).sqrt());
    let cfg = BenchConfig {
        patterns: args.patterns,
        dim: args.dim,
        batch: args.batch,
        beta,
        steps: args.steps,
        storage: match args.dtype {
            DtypeArg::F32 => dam::Storage::F32,
            DtypeArg::F16 => dam::Storage::F16,
        },
        path: if args.reference {
            BenchPath::Reference
        } else {
            BenchPath::Engine
        },
    };
    let device = device_of(args.device)?;
    let device_kind = match device {
        dam::Device::Cpu => "cpu",
        dam::Device::Wgpu(_) => "wgpu",
    };
    let adapter = adapter_of(&device, "cpu")?;
    let path = match (args.reference, &device) {
        (true, _) => "cpu-reference",
        (false, dam::Device::Cpu) => "cpu-fast",
        (false, dam::Device::Wgpu(_)) => "wgpu",
    };
    let r = run(&cfg, &device)?;
    if args.json {
        println!(
            "{}",
            json!({
                "impl": "dam",
                "path": path,
                "device": device_kind,
                "adapter": adapter,
                "dtype": format!("{:?}", args.dtype).to_lowercase(),
                "patterns": args.patterns,
                "dim": args.dim,
                "batch": args.batch,
                "beta": beta,
                "steps": args.steps,
                "seconds_per_step": r.median,
                "gpu_seconds_per_step": r.gpu_median,
                "seconds_min": r.seconds.iter().cloned().fold(f64::INFINITY, f64::min),
                "seconds_all": r.seconds,
                "gflops": r.gflops,
                "pattern_gbps": r.pattern_gbps,
                "setup_seconds": r.setup_seconds,
                "threads": std::thread::available_parallelism().map_or(1, |t| t.get()),
                "checksum": r.checksum,
            })
        );
    } else {
        let gpu = r
            .gpu_median
            .map_or(String::new(), |g| format!(" ({g:.6} s on the device)"));
        println!(
            "{path} ({adapter}): P={} N={} B={} {:?}: {:.6} s/step{gpu} (median of {}), {:.2} GFLOP/s, {:.2} GB/s of patterns",
            args.patterns, args.dim, args.batch, args.dtype, r.median, args.steps, r.gflops, r.pattern_gbps
        );
    }
    Ok(())
}

fn drdam(args: &DrdamArgs) -> Result<()> {
    use dam_experiments::drdam::{loglog_slope, run, write_svg, DrdamConfig};
    let cfg = DrdamConfig {
        dim: args.dim,
        count: args.count,
        beta: args.beta,
        features: args.features.clone(),
        trials: args.trials,
        kind: match args.kind {
            KindArg::Fourier => dam::features::FeatureKind::Fourier,
            KindArg::Positive => dam::features::FeatureKind::PositiveExp,
        },
        steps: args.steps,
        step_size: args.step_size,
        seed: args.seed,
    };
    let device = device_of(args.device)?;
    let adapter = adapter_of(&device, "cpu reference")?;
    prepare_out(&args.out)?;
    let bar = ProgressBar::new((cfg.features.len() * cfg.trials) as u64);
    let rows = run(&cfg, &device, || bar.inc(1))?;
    bar.finish_and_clear();
    let path = args.out.join("results.csv");
    let io = |source| ExperimentError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut text =
        String::from("features,energy_rel_error,state_rel_error,seconds,failed_trials\n");
    for r in &rows {
        text.push_str(&format!(
            "{},{:.6e},{:.6e},{:.4},{}\n",
            r.features, r.energy_rel_error, r.state_rel_error, r.seconds, r.failed_trials
        ));
        if r.failed_trials > 0 {
            eprintln!(
                "dam: warning: Y = {}: {} of {} trials had φ(x)·T ≤ 0 (no energy; large β or too \
                 few features) and are left out of the means",
                r.features, r.failed_trials, cfg.trials
            );
        }
    }
    std::fs::write(&path, text).map_err(io)?;
    let slope = loglog_slope(&rows);
    write_json(
        &args.out.join("summary.json"),
        &json!({"energy_loglog_slope": slope, "reference_slope": -0.5, "device": format!("{:?}", args.device).to_lowercase(), "adapter": adapter, "args": args}),
    )?;
    write_svg(
        &args.out.join("drdam.svg"),
        &rows,
        &format!(
            "DrDAM vs exact, N = {}, P = {}, β = {}",
            cfg.dim, cfg.count, cfg.beta
        ),
    )?;
    if slope.is_some_and(|s| s > -0.35) {
        eprintln!(
            "dam: warning: the energy error does not fall like 1/√Y here (slope {:.3}); \
             β·‖x − ξ‖² is too large for these feature counts (the large-β regime, see README)",
            slope.unwrap_or(f64::NAN)
        );
    }
    println!(
        "energy error log-log slope {} (1/√Y: -0.5) device={} ({adapter}) wrote {}/results.csv, summary.json, drdam.svg",
        slope.map_or("none".into(), |s| format!("{s:.3}")),
        format!("{:?}", args.device).to_lowercase(),
        args.out.display()
    );
    Ok(())
}

fn capacity(args: &CapacityArgs) -> Result<()> {
    let (sweep, counts) = build_sweep(args)?;
    let device = device_of(args.device)?;
    let engine = match device {
        dam::Device::Cpu => Engine::Cpu,
        dam::Device::Wgpu(options) => {
            Engine::Wgpu(dam::WgpuContext::shared(&options).map_err(dam::Error::from)?)
        }
    };
    let (device_name, adapter) = engine.describe();
    prepare_out(&args.out)?;
    let csv_path = args.out.join("results.csv");
    let mut sink = CsvSink::create(&csv_path)?;

    let per_point = (0..sweep.trials)
        .filter(|t| t % sweep.shard.1 == sweep.shard.0)
        .count();
    let bar = ProgressBar::new((per_point * counts.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} trials, {msg} (ETA {eta})",
        )
        .expect("valid template"),
    );
    let mut points = Vec::with_capacity(counts.len());
    for &p in &counts {
        bar.set_message(format!(
            "P = {p} (α = {:.4})",
            (p as f64).ln() / sweep.dim as f64
        ));
        let r = sweep.run_point(&engine, p, |done| bar.inc(done as u64))?;
        sink.push(&r)?;
        bar.println(format!(
            "α = {:.4}  P = {:>12}  success {}/{} = {:.3}  overlap {:.4}  {:.2} s",
            r.alpha, r.patterns, r.successes, r.trials, r.success_rate, r.mean_overlap, r.seconds
        ));
        points.push(r);
    }
    bar.finish_and_clear();

    let theory = theory(&sweep);
    write_outputs(
        &args.out,
        &points,
        sweep.dim,
        json!(args),
        theory,
        &device_name,
        &adapter,
    )
}

#[allow(clippy::too_many_arguments)]
fn write_outputs(
    out: &Path,
    points: &[dam_experiments::PointResult],
    dim: usize,
    args: serde_json::Value,
    theory: serde_json::Value,
    device: &str,
    adapter: &str,
) -> Result<()> {
    let half = alpha_half(points);
    let summary = json!({
        "alpha_half": half,
        "patterns_half": half.map(|a| (a * dim as f64).exp().round()),
        "device": device,
        "adapter": adapter,
        "args": args,
        "theory": theory,
        "points": points.len(),
        "trials": points.iter().map(|p| p.trials).sum::<usize>(),
        "seconds": points.iter().map(|p| p.seconds).sum::<f64>(),
    });
    write_json(&out.join("summary.json"), &summary)?;
    let predicted = theory.get("alpha_half").and_then(|v| v.as_f64());
    let title = format!("success rate vs load, N = {dim}");
    write_svg(&out.join("capacity.svg"), points, predicted, &title)?;
    println!(
        "alpha_half={} theory={} device={device} ({adapter}) wrote {}/results.csv, summary.json, capacity.svg",
        half.map_or("none".into(), |a| format!("{a:.4}")),
        predicted.map_or("none".into(), |a| format!("{a:.4}")),
        out.display()
    );
    Ok(())
}

fn merge(args: &MergeArgs) -> Result<()> {
    let mut shards = Vec::new();
    let mut summaries = Vec::new();
    for dir in &args.dirs {
        shards.push(read_csv(&dir.join("results.csv"))?);
        let path = dir.join("summary.json");
        let text = std::fs::read_to_string(&path).map_err(|source| ExperimentError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ExperimentError::Output {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        summaries.push(value);
    }
    let first = &summaries[0];
    let dim = first["args"]["dim"]
        .as_u64()
        .ok_or_else(|| invalid("summary.json", "args.dim", "missing"))? as usize;
    let points = merge_points(&shards);
    prepare_out(&args.out)?;
    let mut sink = CsvSink::create(&args.out.join("results.csv"))?;
    for p in &points {
        sink.push(p)?;
    }
    let mut merged_args = first["args"].clone();
    merged_args["merged_from"] = json!(args.dirs);
    merged_args["shard"] = serde_json::Value::Null;
    write_outputs(
        &args.out,
        &points,
        dim,
        merged_args,
        first["theory"].clone(),
        first["device"].as_str().unwrap_or("unknown"),
        first["adapter"].as_str().unwrap_or("unknown"),
    )
}
