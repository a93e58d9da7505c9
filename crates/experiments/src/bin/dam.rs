//! `dam`: capacity experiments for dense associative memories.
//!
//! `dam` with no arguments runs a small spherical log-sum-exp sweep (N = 16, λ = 1). See
//! `dam capacity --help` and `dam merge --help`.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use dam_experiments::args::SweepText;
use dam_experiments::output::{merge_runs, write_capacity_outputs, CapacitySummary, CsvSink};
use dam_experiments::theory::prediction;
use dam_experiments::{ExperimentError, Result, Sweep};
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
    /// List the wgpu adapters (index for DAM_DEVICE=wgpu:N, type, limits) and the device
    /// `--device auto` picks.
    Devices(DevicesArgs),
    /// Random starts → fixed points of the ±1 spin dynamics, classified (stored, prototype,
    /// mixture, spurious) with basin fractions and stability ratios: census.csv,
    /// summary.json, census.svg.
    Census(CensusArgs),
    /// Train a Krotov–Hopfield classifier on IDX digits: metrics.csv, memories.safetensors,
    /// memories.png, summary.json.
    Train(TrainArgs),
    /// The capacity search across `separated:d` or `correlated:c` for several degrees:
    /// ensembles.csv and ensembles.svg (Bielmeier & Friedland's curves).
    CapacityEnsembles(EnsemblesArgs),
    /// The capacity search at each N of a range, per energy: curve.csv and curve.svg
    /// (e.g. Krotov–Hopfield Fig. 5 with the paper's estimate).
    CapacityCurve(CurveArgs),
}

/// What every capacity search of a curve shares.
#[derive(Debug, Clone, Args, serde::Serialize)]
struct SearchCommon {
    /// P_½ (`half`) or P_all (`all`).
    #[arg(long, value_enum, default_value_t = SearchArg::Half)]
    search: SearchArg,
    /// λ (β on the raw dot product) for `lse`/`exp`.
    #[arg(long, default_value_t = 1.0)]
    beta: f64,
    /// Trials per probe.
    #[arg(long, default_value_t = 100)]
    trials: usize,
    /// `stored`, `flip:RHO` or `random`.
    #[arg(long, default_value = "stored")]
    query: String,
    /// `one-step` or `converge:MAX`.
    #[arg(long, default_value = "one-step")]
    dynamics: String,
    /// `weight`, `overlap:THETA`, `nearest` or `exact`.
    #[arg(long, default_value = "exact")]
    criterion: String,
    /// Master seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

impl SearchCommon {
    /// The sweep of every point; the caller fills in what varies.
    fn template<'a>(
        &'a self,
        patterns: &'a str,
        dim: usize,
        energy: &'a str,
        degree: u32,
    ) -> SweepText<'a> {
        SweepText {
            patterns,
            dim,
            energy,
            beta: self.beta,
            degree,
            alpha: None,
            count: None,
            trials: self.trials,
            query: &self.query,
            dynamics: &self.dynamics,
            criterion: &self.criterion,
            seed: self.seed,
            shard: None,
            search: true,
        }
    }

    fn target(&self) -> dam_experiments::search::Target {
        match self.search {
            SearchArg::Half => dam_experiments::search::Target::Half,
            SearchArg::All => dam_experiments::search::Target::All,
        }
    }
}

#[derive(Debug, Clone, Args, serde::Serialize)]
struct CurveArgs {
    /// Dimensions N, `START:STOP:STEP`.
    #[arg(long)]
    dims: String,
    /// Energies, one line each, comma-separated (`poly`, `rpoly`, `lse`, `exp`).
    #[arg(long, default_value = "poly,rpoly")]
    energies: String,
    /// Polynomial degree n.
    #[arg(long, default_value_t = 3)]
    degree: u32,
    /// The bracket of every search, `LO:HI:1` (P).
    #[arg(long)]
    count: String,
    /// Stored patterns: `binary`, `correlated:C`, `separated:D`, `mnist[:DIR]`, `spherical`
    /// or `gaussian`.
    #[arg(long, default_value = "binary")]
    patterns: String,
    #[command(flatten)]
    #[serde(flatten)]
    common: SearchCommon,
}

#[derive(Debug, Clone, Args)]
struct DevicesArgs {
    /// One JSON object per adapter instead of a table.
    #[arg(long)]
    json: bool,
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
    /// β of softmax and exponential (default 1/√N, as the NumPy and PyTorch peers).
    #[arg(long)]
    beta: Option<f32>,
    /// Similarity: dot, euclidean or manhattan.
    #[arg(long, default_value = "dot")]
    similarity: String,
    /// Separation: softmax, exponential, polynomial:N, rectified:N, max or top-k:K.
    #[arg(long, default_value = "softmax")]
    separation: String,
    /// The call timed: step (one update), retrieve (the dynamics plus nearest pattern,
    /// energy and confidence), energy, or search (exact top-k, as --search).
    #[arg(long, value_enum, default_value_t = CallArg::Step)]
    call: CallArg,
    /// Dynamics of retrieve: one-step, or iterate (to ‖Δx‖∞ ≤ 1e-5, at most 100 steps).
    #[arg(long, value_enum, default_value_t = BenchDynamicsArg::OneStep)]
    dynamics: BenchDynamicsArg,
    /// Projection after each update: none, sphere or sign.
    #[arg(long, value_enum, default_value_t = ProjectionArg::None)]
    projection: ProjectionArg,
    /// Timed steps after one warm-up step (the median is reported).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    /// Pattern storage: f32, or f16 (2 bytes per entry, f32 arithmetic).
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    dtype: DtypeArg,
    /// Time the plain f64 reference (one query, one pattern at a time), the same as
    /// `--device reference`; not with `--device wgpu`.
    #[arg(long)]
    reference: bool,
    /// Print one JSON line instead of a sentence.
    #[arg(long)]
    json: bool,
    /// The wgpu kernel for the step: `stream` (fused streaming softmax), `gemm` (the
    /// generic matrix product: scores, row softmax, weights × patterns) or `auto` (the
    /// adapter's default, see `WgpuOptions::gemm_min_batch`).
    #[arg(long, value_enum, default_value_t = KernelArg::Auto)]
    kernel: KernelArg,
    /// Time an exact top-k search of the batch (`Retriever::search`, dot similarity)
    /// instead of a retrieval step; `seconds_per_step` is one search. The JSON line adds
    /// `k` and `recall` (against the f64 reference on the first 16 queries).
    #[arg(long)]
    search: bool,
    /// Patterns returned per query with `--search`.
    #[arg(long, default_value_t = 10)]
    k: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum CallArg {
    Step,
    Retrieve,
    Energy,
    Search,
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum BenchDynamicsArg {
    OneStep,
    Iterate,
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum ProjectionArg {
    None,
    Sphere,
    Sign,
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum KernelArg {
    Auto,
    Stream,
    Gemm,
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

#[derive(Debug, Clone, Args, serde::Serialize)]
struct EnsemblesArgs {
    /// The parameter that varies: `separated:LO:HI:STEP` (distance d) or
    /// `correlated:LO:HI:STEP` (feature correlation c).
    #[arg(long)]
    vary: String,
    /// Dimension N.
    #[arg(long)]
    dim: usize,
    /// Degrees n, one line each, comma-separated.
    #[arg(long, default_value = "2,3,4")]
    degrees: String,
    /// Energy (`poly`, `rpoly`, `exp`, `lse`).
    #[arg(long, value_enum, default_value_t = EnergyArg::Poly)]
    energy: EnergyArg,
    /// The bracket of every search, `LO:HI:1` (P).
    #[arg(long)]
    count: String,
    #[command(flatten)]
    #[serde(flatten)]
    common: SearchCommon,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
struct TrainArgs {
    /// Folder of IDX files (train-* and t10k-*, gzipped or raw); default the shipped digits.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Number of memories K.
    #[arg(long)]
    memories: usize,
    /// Degree n of F.
    #[arg(long)]
    degree: u32,
    /// F = max(x, 0)ⁿ instead of xⁿ.
    #[arg(long)]
    rectified: bool,
    /// m in the loss Σ (c − t)^{2m}.
    #[arg(long, default_value_t = 3)]
    loss_power: u32,
    /// Temperature T (β = 1/Tⁿ) of the first epoch; given without --temperature-final, T
    /// stays fixed. Default: the recipe for the degree (dam::learn::Recipe::recommended).
    #[arg(long)]
    temperature: Option<f64>,
    /// Final temperature: T ramps linearly from --temperature to this over --ramp-epochs
    /// (Krotov–Hopfield Appendix A). Default: the recipe's (fixed T when --temperature is
    /// given alone).
    #[arg(long)]
    temperature_final: Option<f64>,
    /// Length in epochs of the temperature ramp. Default: the recipe's.
    #[arg(long)]
    ramp_epochs: Option<usize>,
    /// Fixed momentum p ∈ [0, 1); default: the ramp 0.5 → 0.9 over the first 100 epochs.
    #[arg(long)]
    momentum: Option<f64>,
    /// Epochs.
    #[arg(long)]
    epochs: usize,
    /// Minibatch size. Default: the recipe's (100).
    #[arg(long)]
    batch: Option<usize>,
    /// Initial learning rate ε₀. Default: the recipe's.
    #[arg(long)]
    lr: Option<f64>,
    /// Learning-rate decay f per epoch (ε = ε₀ f^epoch). Default: the recipe's.
    #[arg(long)]
    lr_decay: Option<f64>,
    /// Seed of the initial memories and of the sample order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device: `cpu` (the fused CPU path) or `wgpu` (each epoch on the device: products,
    /// epilogues and optimiser steps as kernels, memories resident).
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    /// Start from the memories of a memories.safetensors written by `dam train`.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
struct CensusArgs {
    /// Stored ±1 patterns: `binary`, `correlated:C`, `separated:D`, `mnist[:DIR]` (needs
    /// --dim 784) or `prototype:K:RHO` (P noisy copies of K prototypes, each entry flipped
    /// with probability RHO).
    #[arg(long, default_value = "binary")]
    patterns: String,
    /// Dimension N.
    #[arg(long)]
    dim: usize,
    /// Number of stored patterns P.
    #[arg(long)]
    count: usize,
    /// Spin energy: `poly`, `rpoly` or `exp`.
    #[arg(long, value_enum, default_value_t = EnergyArg::Poly)]
    energy: EnergyArg,
    /// Polynomial degree n.
    #[arg(long, default_value_t = 3)]
    degree: u32,
    /// β of `exp`.
    #[arg(long, default_value_t = 1.0)]
    beta: f64,
    /// Random starts R.
    #[arg(long, default_value_t = 1000)]
    starts: usize,
    /// Most asynchronous sweeps per start.
    #[arg(long, default_value_t = 100)]
    max_sweeps: usize,
    /// Seed of the memory, the starts and the sweep order.
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
enum DeviceArg {
    Auto,
    Cpu,
    Reference,
    Wgpu,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
#[command(group(clap::ArgGroup::new("load").required(true).args(["alpha", "count"])))]
struct CapacityArgs {
    /// Stored patterns: `spherical`, `gaussian`, `binary` (procedural i.i.d.),
    /// `correlated:C` (±1 with pairwise feature correlation C ∈ [0, 1), procedural),
    /// `separated:D` (±1 with pairwise Hamming distance ≥ D, greedy per trial) or
    /// `mnist[:DIR]` (digits, default the shipped ones; needs --dim 784).
    #[arg(long)]
    patterns: String,
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
    /// `stored`, `flip:RHO` (flip the sign of a fraction ρ of the entries) or `random` (a
    /// random state: ±1 uniform, or an isotropic direction with the target's norm).
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
    /// Bisect on P between the first and last load of --count/--alpha for the largest P
    /// with success rate ≥ ½ (`half`) or with every trial a success (`all`); writes
    /// search.csv (one row per probe) and summary.json (`patterns_half` / `patterns_all`,
    /// `bracket`) instead of the sweep's files.
    #[arg(long, value_enum, conflicts_with = "shard")]
    search: Option<SearchArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum SearchArg {
    Half,
    All,
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
        Some(Command::CapacityCurve(args)) => capacity_curve(&args),
        Some(Command::Census(args)) => census(&args),
        Some(Command::Train(args)) => train(&args),
        Some(Command::CapacityEnsembles(args)) => capacity_ensembles(&args),
        Some(Command::Devices(args)) => devices(&args),
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
        patterns: "spherical".into(),
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
        search: None,
    }
}

/// The command-line spelling of a value of a clap enum.
fn value_name<T: ValueEnum>(value: &T) -> String {
    value
        .to_possible_value()
        .expect("no variant is skipped")
        .get_name()
        .to_string()
}

fn build_sweep(args: &CapacityArgs) -> Result<(Sweep, Vec<u64>)> {
    let (patterns, energy) = (args.patterns.as_str(), value_name(&args.energy));
    SweepText {
        patterns,
        dim: args.dim,
        energy: &energy,
        beta: args.beta,
        degree: args.degree,
        alpha: args.alpha.as_deref(),
        count: args.count.as_deref(),
        trials: args.trials,
        query: &args.query,
        dynamics: &args.dynamics,
        criterion: &args.criterion,
        seed: args.seed,
        shard: args.shard.as_deref(),
        search: args.search.is_some(),
    }
    .build()
}

fn prepare_out(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|source| ExperimentError::Io {
        path: out.display().to_string(),
        source,
    })
}

/// The device for `--device`; `auto` says on stderr which one it chose and why.
fn device_of(arg: DeviceArg) -> Result<dam::Device> {
    Ok(match arg {
        DeviceArg::Auto => {
            let (device, reason) = dam::Device::choose()?;
            eprintln!("dam: device {reason}");
            device
        }
        DeviceArg::Cpu => dam::Device::Cpu,
        DeviceArg::Reference => dam::Device::Reference,
        DeviceArg::Wgpu => dam::Device::wgpu(),
    })
}

fn devices(args: &DevicesArgs) -> Result<()> {
    let adapters = dam::WgpuContext::adapters(dam::WgpuOptions::default().backends);
    for a in &adapters {
        if args.json {
            println!(
                "{}",
                json!({
                    "index": a.index, "name": a.name, "backend": a.backend,
                    "device_type": a.device_type, "driver": a.driver,
                    "max_binding_bytes": a.max_binding_bytes,
                    "max_buffer_bytes": a.max_buffer_bytes,
                    "max_workgroups": a.max_workgroups,
                    "shader_f16": a.shader_f16, "timestamps": a.timestamps,
                })
            );
        } else {
            println!(
                "{}: {} ({}, {}; {}) max binding {} MiB, max buffer {} MiB, {} workgroups/dim{}{}",
                a.index,
                a.name,
                a.backend,
                a.device_type,
                a.driver,
                a.max_binding_bytes >> 20,
                a.max_buffer_bytes >> 20,
                a.max_workgroups,
                if a.shader_f16 { ", f16" } else { "" },
                if a.timestamps { ", timestamps" } else { "" },
            );
        }
    }
    if adapters.is_empty() && !args.json {
        println!("no wgpu adapter (install a Vulkan driver, e.g. mesa-vulkan-drivers)");
    }
    let (_, reason) = dam::Device::choose()?;
    eprintln!("--device auto: {reason}");
    Ok(())
}

fn bench(args: &BenchArgs) -> Result<()> {
    use dam_experiments::bench::{json_line, run, BenchCall, BenchConfig};
    let beta = args.beta.unwrap_or(1.0 / (args.dim.max(1) as f32).sqrt());
    let invalid = |argument: &'static str, value: &str, e: dam::Error| {
        dam_experiments::ExperimentError::Invalid {
            argument,
            value: value.to_string(),
            reason: e.to_string(),
        }
    };
    let similarity = dam::Similarity::parse(&args.similarity)
        .map_err(|e| invalid("--similarity", &args.similarity, e))?;
    let separation = dam::Separation::parse(&args.separation, beta)
        .map_err(|e| invalid("--separation", &args.separation, e))?;
    let call = match (args.call, args.search) {
        (CallArg::Search, _) | (CallArg::Step, true) => BenchCall::Search { k: args.k },
        (_, true) => {
            return Err(dam_experiments::ExperimentError::Invalid {
                argument: "--search",
                value: format!("with --call {:?}", args.call).to_lowercase(),
                reason: "--search is --call search; give one call".into(),
            })
        }
        (CallArg::Step, false) => BenchCall::Step,
        (CallArg::Retrieve, false) => BenchCall::Retrieve,
        (CallArg::Energy, false) => BenchCall::Energy,
    };
    let cfg = BenchConfig {
        patterns: args.patterns,
        dim: args.dim,
        batch: args.batch,
        steps: args.steps,
        storage: match args.dtype {
            DtypeArg::F32 => dam::Storage::F32,
            DtypeArg::F16 => dam::Storage::F16,
        },
        config: dam::Config {
            similarity,
            separation,
            dynamics: match args.dynamics {
                BenchDynamicsArg::OneStep => dam::Dynamics::OneStep,
                BenchDynamicsArg::Iterate => dam::Dynamics::default(),
            },
            projection: match args.projection {
                ProjectionArg::None => dam::Projection::None,
                ProjectionArg::Sphere => dam::Projection::Sphere,
                ProjectionArg::Sign => dam::Projection::Sign,
            },
            energy_trace: false,
        },
        call,
    };
    let device = match (args.reference, args.device) {
        (false, device) => device,
        (true, DeviceArg::Cpu | DeviceArg::Reference | DeviceArg::Auto) => DeviceArg::Reference,
        (true, DeviceArg::Wgpu) => {
            return Err(dam_experiments::ExperimentError::Invalid {
                argument: "--reference",
                value: "with --device wgpu".into(),
                reason: "the reference runs on the CPU (--device reference)".into(),
            })
        }
    };
    let device = match (device_of(device)?, args.kernel) {
        (dam::Device::Wgpu(options), kernel) if kernel != KernelArg::Auto => {
            dam::Device::Wgpu(dam::WgpuOptions {
                gemm_min_batch: Some(if kernel == KernelArg::Gemm {
                    1
                } else {
                    usize::MAX
                }),
                ..options
            })
        }
        (device, _) => device,
    };
    let r = run(&cfg, &device)?;
    let line = json_line(&cfg, &r, &device)?;
    if args.json {
        println!("{line}");
    } else {
        let (path, adapter) = (&line["path"], &line["adapter"]);
        let gpu = r
            .gpu_median
            .map_or(String::new(), |g| format!(" ({g:.6} s on the device)"));
        let recall = r
            .recall
            .map_or(String::new(), |v| format!(", recall@{} {v:.3}", args.k));
        println!(
            "{} ({}): P={} N={} B={} {:?}: {:.6} s/step{gpu} (median of {}), {:.2} GFLOP/s, {:.2} GB/s of patterns{recall}",
            path.as_str().unwrap_or("?"), adapter.as_str().unwrap_or("?"), args.patterns, args.dim, args.batch, args.dtype, r.median, args.steps, r.gflops, r.pattern_gbps
        );
    }
    Ok(())
}

fn drdam(args: &DrdamArgs) -> Result<()> {
    use dam_experiments::drdam::{run, write_outputs, DrdamConfig, SLOPE_WARNING};
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
    let (_, adapter) = device.describe()?;
    prepare_out(&args.out)?;
    let bar = ProgressBar::new((cfg.features.len() * cfg.trials) as u64);
    let rows = run(&cfg, &device, || bar.inc(1))?;
    bar.finish_and_clear();
    let slope = write_outputs(&args.out, &cfg, &rows, &device, json!(args))?;
    for r in rows.iter().filter(|r| r.failed_trials > 0) {
        eprintln!(
            "dam: warning: Y = {}: {} of {} trials had φ(x)·T ≤ 0 (no energy; large β or too \
             few features) and are left out of the means",
            r.features, r.failed_trials, cfg.trials
        );
    }
    if slope.is_some_and(|s| s > SLOPE_WARNING) {
        eprintln!(
            "dam: warning: the energy error does not fall like 1/√Y here (slope {:.3}); \
             β·‖x − ξ‖² is too large for these feature counts (the large-β regime, see README)",
            slope.unwrap_or(f64::NAN)
        );
    }
    println!(
        "energy error log-log slope {} (1/√Y: -0.5) device={} ({adapter}) wrote {}/results.csv, summary.json, drdam.svg",
        slope.map_or("none".into(), |s| format!("{s:.3}")),
        device.describe()?.0,
        args.out.display()
    );
    Ok(())
}

fn capacity(args: &CapacityArgs) -> Result<()> {
    let (sweep, counts) = build_sweep(args)?;
    let device = device_of(args.device)?;
    let (device_name, adapter) = device.describe()?;
    prepare_out(&args.out)?;
    if let Some(search) = args.search {
        return capacity_search(args, &sweep, &counts, &device, search);
    }
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
        let r = sweep.run_point(&device, p, |done| bar.inc(done as u64))?;
        sink.push(&r)?;
        say(
            &bar,
            format!(
                "α = {:.4}  P = {:>12}  success {}/{} = {:.3}  overlap {:.4}  {:.2} s",
                r.alpha,
                r.patterns,
                r.successes,
                r.trials,
                r.success_rate,
                r.mean_overlap,
                r.seconds
            ),
        );
        points.push(r);
    }
    bar.finish_and_clear();

    let (dim, theory) = (sweep.dim, prediction(&sweep));
    let summary = CapacitySummary::new(&points, dim, &device_name, &adapter, json!(args), theory);
    report(
        &args.out,
        write_capacity_outputs(&args.out, &points, dim, summary)?,
    );
    Ok(())
}

/// `dam capacity-curve`.
fn capacity_curve(args: &CurveArgs) -> Result<()> {
    use dam_experiments::curve::{run, write_outputs, CurveSpec};
    let dims = dam_experiments::args::parse_range("--dims", &args.dims)?
        .into_iter()
        .map(|d| d as usize)
        .collect();
    let spec = CurveSpec {
        dims,
        energies: args.energies.split(',').map(str::trim).collect(),
        template: args.common.template(&args.patterns, 1, "lse", args.degree),
        count: &args.count,
        target: args.common.target(),
    };
    let device = device_of(args.common.device)?;
    prepare_out(&args.common.out)?;
    let bar = ProgressBar::new((spec.dims.len() * spec.energies.len()) as u64);
    let rows = run(&spec, &device, |r| {
        say(
            &bar,
            format!(
                "{} N = {:>4}: P = {}  (estimate {})  {} probes, {:.2} s",
                r.energy,
                r.dim,
                r.patterns.map_or("none".into(), |p| p.to_string()),
                r.estimate.map_or("-".into(), |e| format!("{e:.1}")),
                r.probes,
                r.seconds
            ),
        );
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    let target = value_name(&args.common.search);
    let title = format!("P_{target}(N), n = {}, {}", args.degree, args.energies);
    write_outputs(&args.common.out, &rows, &title)?;
    println!(
        "points={} wrote {}/curve.csv, curve.svg",
        rows.len(),
        args.common.out.display()
    );
    Ok(())
}

/// `dam capacity-ensembles`.
fn capacity_ensembles(args: &EnsemblesArgs) -> Result<()> {
    use dam_experiments::ensemble_curve::{parse_vary, run, write_outputs, EnsembleCurveSpec};
    let (family, values) = parse_vary(&args.vary)?;
    let degrees = args
        .degrees
        .split(',')
        .map(|d| {
            d.trim().parse::<u32>().map_err(|e| {
                dam_experiments::args::invalid("--degrees", &args.degrees, format!("{e}"))
            })
        })
        .collect::<Result<Vec<u32>>>()?;
    let energy = value_name(&args.energy);
    let spec = EnsembleCurveSpec {
        family,
        values,
        degrees,
        template: args.common.template("binary", args.dim, &energy, 2),
        count: &args.count,
        target: args.common.target(),
    };
    let device = device_of(args.common.device)?;
    prepare_out(&args.common.out)?;
    let bar = ProgressBar::new((spec.values.len() * spec.degrees.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} searches",
        )
        .expect("valid template"),
    );
    let rows = run(&spec, &device, |r| {
        say(
            &bar,
            format!(
                "n = {} {:?} {}: P = {}  {} probes, {:.2} s{}",
                r.degree,
                r.family,
                r.parameter,
                r.patterns.map_or("none".into(), |p| p.to_string()),
                r.probes,
                r.seconds,
                r.note
                    .as_ref()
                    .map_or(String::new(), |n| format!("  ({n})"))
            ),
        );
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    let title = format!(
        "P_{}, N = {}, {} energy, vs {}",
        value_name(&args.common.search),
        args.dim,
        energy,
        args.vary.split(':').next().unwrap_or("")
    );
    write_outputs(&args.common.out, &rows, &title)?;
    println!(
        "points={} wrote {}/ensembles.csv, ensembles.svg",
        rows.len(),
        args.common.out.display()
    );
    Ok(())
}

/// `dam train`.
fn train(args: &TrainArgs) -> Result<()> {
    use dam::learn::{Classifier, ClassifierModel, ParameterNames, Recipe, RecipeOverrides};
    use dam_experiments::train::{
        load_digits, votes_histogram, write_memories_png, write_summary, EpochRow, Metrics,
    };
    let classes = 10;
    // A flag not given takes the recipe's value for this degree.
    let recipe = Recipe::recommended(args.degree, args.rectified).with(&RecipeOverrides {
        temperature: args.temperature,
        temperature_final: args.temperature_final,
        ramp_epochs: args.ramp_epochs,
        batch: args.batch,
        lr: args.lr,
        lr_decay: args.lr_decay,
        momentum: args.momentum,
    });
    let model = ClassifierModel {
        degree: args.degree,
        rectified: args.rectified,
        temperature: recipe.temperature,
        loss_power: args.loss_power,
        classes,
    };
    model.validate()?;
    recipe.validate()?;
    let options = recipe.epoch_options(args.seed);
    if args.epochs == 0 {
        return Err(dam_experiments::args::invalid(
            "--epochs",
            "0",
            "at least one epoch",
        ));
    }
    if args.memories == 0 {
        return Err(dam_experiments::args::invalid(
            "--memories",
            "0",
            "K must be at least 1",
        ));
    }
    let device = device_of(args.device)?;
    let data = args.data.clone().unwrap_or_else(dam::mnist::data_dir);
    let train_set = load_digits(&data, "train", classes)?;
    let test_set = load_digits(&data, "t10k", classes)?;
    let visible = train_set.images.ncols();
    let mut clf = match &args.init {
        Some(path) => {
            let c = Classifier::load_file(path, &device)?;
            // The temperature follows this run's schedule; the rest of the model must match.
            let same = ClassifierModel {
                temperature: model.temperature,
                ..*c.model()
            } == model;
            if c.memories().ncols() != visible + classes || !same {
                return Err(dam_experiments::args::invalid(
                    "--init",
                    &path.display().to_string(),
                    format!(
                        "holds K × {} memories of {:?}; this run asks N + C = {} and {model:?}",
                        c.memories().ncols(),
                        c.model(),
                        visible + classes
                    ),
                ));
            }
            c
        }
        None => Classifier::random(model, args.memories, visible, args.seed, &device)?,
    };
    let (device_name, adapter) = device.describe()?;
    prepare_out(&args.out)?;
    let mut metrics = Metrics::create(&args.out)?;
    let bar = ProgressBar::new(args.epochs as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} epochs, {msg} (ETA {eta})",
        )
        .expect("valid template"),
    );
    let memories_path = args.out.join("memories.safetensors");
    let mut last: Option<EpochRow> = None;
    let mut monitor = dam::learn::TrainingMonitor::new(ParameterNames::FLAGS);
    for _ in 0..args.epochs {
        clf.set_temperature(recipe.temperature_at(clf.epochs()))?;
        let start = std::time::Instant::now();
        let loss = clf.train_epoch(train_set.images.view(), &train_set.labels, &options)?;
        let seconds = start.elapsed().as_secs_f64();
        let row = EpochRow {
            epoch: clf.epochs(),
            loss,
            train_error: clf.error_percent(train_set.images.view(), &train_set.labels)?,
            test_error: clf.error_percent(test_set.images.view(), &test_set.labels)?,
            seconds,
        };
        metrics.push(&row)?;
        clf.save_file(&memories_path)?;
        bar.set_message(format!("test error {:.2} %", row.test_error));
        say(
            &bar,
            format!(
                "epoch {:>4}: loss {:.4e}  train {:.2} %  test {:.2} %  {:.2} s",
                row.epoch, row.loss, row.train_error, row.test_error, row.seconds
            ),
        );
        bar.inc(1);
        monitor.check(&clf)?;
        last = Some(row);
    }
    bar.finish_and_clear();
    write_memories_png(&args.out, &clf)?;
    let last = last.expect("at least one epoch");
    // The fraction of test digits on which the feed-forward dual predicts the same class.
    let mine = clf.predict(test_set.images.view())?;
    let dual = clf.dual().predict(test_set.images.view())?;
    let dual_agreement =
        mine.iter().zip(&dual).filter(|(a, b)| a == b).count() as f64 / mine.len() as f64;
    let summary = json!({
        "test_error": last.test_error,
        "train_error": last.train_error,
        "epochs": clf.epochs(),
        "device": device_name,
        "adapter": adapter,
        "args": args,
        "recipe": {
            "temperature": recipe.temperature,
            "temperature_final": recipe.temperature_final,
            "ramp_epochs": recipe.ramp_epochs,
            "batch": recipe.batch,
            "lr": recipe.lr,
            "lr_decay": recipe.lr_decay,
            "momentum": recipe.momentum,
        },
        "votes_per_memory": votes_histogram(&clf),
        "dominant_memory_fraction": clf.dominant_fraction(test_set.images.view())?,
        "dual_agreement": dual_agreement,
        "seconds_per_epoch": last.seconds,
    });
    write_summary(&args.out, &summary)?;
    println!(
        "test_error={:.2} train_error={:.2} epochs={} device={} wrote {}/metrics.csv, memories.safetensors, memories.png, summary.json",
        last.test_error,
        last.train_error,
        clf.epochs(),
        device_name,
        args.out.display()
    );
    Ok(())
}

/// `dam census`.
fn census(args: &CensusArgs) -> Result<()> {
    use dam::binary::SpinEnergy;
    use dam_experiments::census::{build_memory, run, CensusInput};
    let energy = match args.energy {
        EnergyArg::Poly => SpinEnergy::Polynomial { n: args.degree },
        EnergyArg::Rpoly => SpinEnergy::RectifiedPolynomial { n: args.degree },
        EnergyArg::Exp => SpinEnergy::Exponential { beta: args.beta },
        EnergyArg::Lse => {
            return Err(dam_experiments::args::invalid(
                "--energy",
                "lse",
                "the census runs the exact ±1 spin dynamics: use poly, rpoly or exp \
                 (exp decides as softmax does on ±1 states)",
            ))
        }
    };
    if args.starts == 0 {
        return Err(dam_experiments::args::invalid(
            "--starts",
            "0",
            "at least one random start",
        ));
    }
    let start = std::time::Instant::now();
    let (stored, prototypes) = build_memory(&args.patterns, args.dim, args.count, args.seed)?;
    let device = device_of(args.device)?;
    let (device_name, adapter) = device.describe()?;
    prepare_out(&args.out)?;
    let bar = ProgressBar::new(args.starts as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} starts (ETA {eta})",
        )
        .expect("valid template"),
    );
    let input = CensusInput {
        stored: &stored,
        prototypes: prototypes.as_ref(),
        energy,
        starts: args.starts,
        max_sweeps: args.max_sweeps,
        seed: args.seed,
    };
    let census = run(&device, &input, |k| bar.inc(k as u64))?;
    bar.finish_and_clear();
    let summary = json!({
        "device": device_name,
        "adapter": adapter,
        "args": args,
        "seconds": start.elapsed().as_secs_f64(),
    });
    census.write(&args.out, summary)?;
    let classes = census.classes();
    let share = |c: &str| classes[c]["basin_fraction"].as_f64().unwrap_or(0.0);
    println!(
        "starts={} attractors={} stored={:.3} prototype={:.3} mixture={:.3} spurious={:.3} \
         device={} wrote {}/census.csv, summary.json, census.svg",
        census.starts,
        census.attractors.len(),
        share("stored"),
        share("prototype"),
        share("mixture"),
        share("spurious"),
        device_name,
        args.out.display()
    );
    Ok(())
}

/// `dam capacity --search`: bisection between the first and last load.
fn capacity_search(
    args: &CapacityArgs,
    sweep: &Sweep,
    counts: &[u64],
    device: &dam::Device,
    search: SearchArg,
) -> Result<()> {
    use dam_experiments::search::{bisect, write_outputs, Target};
    let target = match search {
        SearchArg::Half => Target::Half,
        SearchArg::All => Target::All,
    };
    let (lo, hi) = (counts[0], counts[counts.len() - 1]);
    let bar = ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let outcome = bisect(sweep, device, target, lo, hi, |r| {
        say(
            &bar,
            format!(
                "P = {:>12}  success {}/{} = {:.3}  {:.2} s",
                r.patterns, r.successes, r.trials, r.success_rate, r.seconds
            ),
        );
    })?;
    bar.finish_and_clear();
    let (device_name, adapter) = device.describe()?;
    let summary = write_outputs(
        &args.out,
        target,
        &outcome,
        &device_name,
        &adapter,
        json!(args),
    )?;
    if let Some(note) = &outcome.note {
        eprintln!("dam: {note}");
    }
    println!(
        "search={} patterns={} bracket={}..{} probes={} wrote {}/search.csv, summary.json",
        json!(target).as_str().unwrap_or("?"),
        outcome.patterns.map_or("none".into(), |p| p.to_string()),
        outcome.bracket.0,
        outcome.bracket.1,
        summary["probes"],
        args.out.display()
    );
    Ok(())
}

/// The closing line of `dam capacity` and `dam merge`.
fn report(out: &Path, summary: CapacitySummary) {
    println!(
        "alpha_half={} theory={} device={} ({}) wrote {}/results.csv, summary.json, capacity.svg",
        summary
            .alpha_half
            .map_or("none".into(), |a| format!("{a:.4}")),
        summary
            .predicted_alpha_half()
            .map_or("none".into(), |a| format!("{a:.4}")),
        summary.device,
        summary.adapter,
        out.display()
    );
}

fn merge(args: &MergeArgs) -> Result<()> {
    report(&args.out, merge_runs(&args.dirs, &args.out)?);
    Ok(())
}

/// A progress line: above the bar on a terminal, else on stderr (so that a run writing to
/// a log still reports each point).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}
