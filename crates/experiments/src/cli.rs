//! The arguments of the `dam` command line (clap) and how each command's maps to its spec:
//! the binary parses [`Cli`], runs the spec with a progress bar and prints the closing line.
//!
//! Every `--device` is read by the engine's one parser ([`open_device`]: `auto`, `cpu`,
//! `reference`, `wgpu`, `gpu`, `wgpu:N`, `wgpu:NAME`), every `--energy` by
//! [`Energy::parse`] (the engine's separation names).

use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;

use crate::args::{parse_range, parse_shard, SweepText};
use crate::bench::{BenchCall, BenchConfig};
use crate::capacity::{Energy, Sweep};
use crate::census::CensusSpec;
use crate::curve::CurveSpec;
use crate::drdam::DrdamConfig;
use crate::ensemble_curve::EnsembleCurveSpec;
use crate::error::{invalid, Result};
use crate::search::Target;
use crate::train::TrainSpec;

/// The device a `--device` names, by the engine's parser ([`dam::Device::parse`]), and for
/// `auto` (or nothing) the line saying which device [`dam::Device::choose`] picked and why
/// (it reads `DAM_DEVICE` first).
pub fn open_device(name: &str) -> Result<(dam::Device, Option<String>)> {
    if matches!(name.trim().to_ascii_lowercase().as_str(), "auto" | "") {
        let (device, reason) = dam::Device::choose()?;
        return Ok((device, Some(reason)));
    }
    match dam::Device::parse(name) {
        Ok((device, _)) => Ok((device, None)),
        Err(dam::Error::UnknownDevice { .. }) => Err(invalid(
            "--device",
            name,
            "use auto, cpu, reference, wgpu (or gpu), wgpu:N (adapter index, see `dam devices`) \
             or wgpu:NAME",
        )),
        Err(e) => Err(e.into()),
    }
}

/// `--energy`: [`Energy::parse`]; the help lists the names the files use.
#[derive(Debug, Clone, Copy)]
struct EnergyParser;

impl TypedValueParser for EnergyParser {
    type Value = Energy;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> std::result::Result<Energy, clap::Error> {
        match value.to_str().map(|v| (v, Energy::parse(v))) {
            Some((_, Ok(energy))) => return Ok(energy),
            // A known name with a bad parameter: say what is wrong with it.
            Some((v, Err(e))) if v.trim().to_ascii_lowercase().starts_with("entmax:") => {
                return Err(cmd
                    .clone()
                    .error(clap::error::ErrorKind::InvalidValue, e.to_string()));
            }
            _ => {}
        }
        // The error clap gives for a value outside the listed names.
        let names = PossibleValuesParser::new(Energy::ALL.map(Energy::name));
        Err(names
            .parse_ref(cmd, arg, value)
            .err()
            .unwrap_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidValue)))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            Energy::ALL
                .into_iter()
                .map(|e| PossibleValue::new(e.name())),
        ))
    }
}

/// `dam`: dense associative memory capacity experiments.
#[derive(Debug, Parser)]
#[command(
    name = "dam",
    version,
    about = "Dense associative memory capacity experiments",
    long_about = None
)]
pub struct Cli {
    /// The command; none runs [`CapacityArgs::default_sweep`].
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// Metropolis Monte Carlo on the sphere over a grid of load α and temperature T:
    /// phase.csv, summary.json (the retrieval boundary per T), phase.svg (⟨φ⟩ heat map with
    /// the theory).
    Phase(PhaseArgs),
    /// Every local minimum of the log-sum-ReLU energy of a CSV of patterns, stored and
    /// emergent, per β (enumeration checked by descent): minima.csv, summary.json,
    /// minima.svg.
    Minima(MinimaArgs),
    /// A network from Lagrangians (Krotov & Hopfield 2021; models A, B, C) from corrupted
    /// memories: trajectory.csv (energy and overlap per step), summary.json, energy.svg.
    Lagrangian(LagrangianArgs),
    /// GD and Muon on a linear associative memory with softmax retrieval (K items in M
    /// frequency groups, label noise): loss.csv (loss and per-group loss per step),
    /// summary.json, loss.svg; `--sweep-steps` fits the final loss against T (sweep.csv).
    Muon(MuonArgs),
    /// U-Hop+: learns the feature map Φ(x) = W x + b of a kernelized memory by minimising
    /// the separation loss of its memories (SGD or Adam): feature_map.safetensors, loss.csv,
    /// summary.json (smallest separation and metastable-state histograms before and after),
    /// loss.svg.
    KernelFit(KernelFitArgs),
    /// Permuted digits learned one task after another by the Krotov–Hopfield classifier
    /// with a continual-learning method (naive, rehearsal, pseudo-rehearsal, EWC, SI, MAS,
    /// A-GEM): accuracy.csv (every task's test accuracy after each task), summary.json
    /// (average accuracy, backward transfer, forgetting), accuracy.svg.
    Sequential(SequentialArgs),
}

/// What every capacity search of a curve shares.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct SearchCommon {
    /// P_½ (`half`) or P_all (`all`).
    #[arg(long, value_enum, default_value_t = SearchArg::Half)]
    search: SearchArg,
    /// λ (β on the raw dot product) for `lse`/`exp` (default 1); b of the spherical
    /// log-sum-ReLU for `lsr` (default 2 + √2).
    #[arg(long)]
    pub beta: Option<f64>,
    /// Trials per probe.
    #[arg(long, default_value_t = 100)]
    pub trials: usize,
    /// `stored`, `flip:RHO` or `random`.
    #[arg(long, default_value = "stored")]
    pub query: String,
    /// `one-step` or `converge:MAX`.
    #[arg(long, default_value = "one-step")]
    pub dynamics: String,
    /// `weight`, `overlap:THETA`, `nearest` or `exact`.
    #[arg(long, default_value = "exact")]
    pub criterion: String,
    /// Master seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device: `auto` (DAM_DEVICE if set, else wgpu on a hardware adapter, else the CPU),
    /// `cpu`, `reference` (the f64 reference), `wgpu` (or `gpu`), `wgpu:N` or `wgpu:NAME`
    /// (an adapter of `dam devices`).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
}

impl SearchCommon {
    /// The sweep of every point; the caller fills in what varies.
    pub fn template<'a>(
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
}

/// `dam capacity-curve`.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct CurveArgs {
    /// Dimensions N, `START:STOP:STEP`.
    #[arg(long)]
    pub dims: String,
    /// Energies, one line each, comma-separated (`poly`, `rpoly`, `lse`, `exp`).
    #[arg(long, default_value = "poly,rpoly")]
    pub energies: String,
    /// Polynomial degree n.
    #[arg(long, default_value_t = 3)]
    pub degree: u32,
    /// The bracket of every search, `LO:HI:1` (P).
    #[arg(long)]
    pub count: String,
    /// Stored patterns: `binary`, `correlated:C`, `separated:D`, `mnist[:DIR]`, `spherical`
    /// or `gaussian`.
    #[arg(long, default_value = "binary")]
    pub patterns: String,
    /// What every search shares.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: SearchCommon,
}

impl CurveArgs {
    /// The curve to run.
    pub fn spec(&self) -> Result<CurveSpec<'_>> {
        CurveSpec::parse(
            &self.dims,
            &self.energies,
            &self.count,
            self.common.template(&self.patterns, 1, "lse", self.degree),
            self.common.search.target(),
            self.common.out.clone(),
        )
    }
}

/// `dam devices`.
#[derive(Debug, Clone, Args)]
pub struct DevicesArgs {
    /// One JSON object per adapter instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum DtypeArg {
    F32,
    F16,
}

/// `dam bench`.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct BenchArgs {
    /// Stored patterns P.
    #[arg(long)]
    pub patterns: usize,
    /// Dimension N.
    #[arg(long)]
    pub dim: usize,
    /// Queries per step B.
    #[arg(long)]
    pub batch: usize,
    /// β of softmax and exponential (default 1/√N, as the NumPy and PyTorch peers).
    #[arg(long)]
    pub beta: Option<f32>,
    /// Similarity: dot, euclidean or manhattan.
    #[arg(long, default_value = "dot")]
    pub similarity: String,
    /// Separation: softmax, exponential, polynomial:N, rectified:N, max or top-k:K.
    #[arg(long, default_value = "softmax")]
    pub separation: String,
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
    pub steps: usize,
    /// Device: `auto` (DAM_DEVICE if set, else wgpu on a hardware adapter, else the CPU),
    /// `cpu`, `reference` (the f64 reference), `wgpu` (or `gpu`), `wgpu:N` or `wgpu:NAME`
    /// (an adapter of `dam devices`).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Pattern storage: f32, or f16 (2 bytes per entry, f32 arithmetic).
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    dtype: DtypeArg,
    /// Time the plain f64 reference (one query, one pattern at a time), the same as
    /// `--device reference`; not with `--device wgpu`.
    #[arg(long)]
    pub reference: bool,
    /// Print one JSON line instead of a sentence.
    #[arg(long)]
    pub json: bool,
    /// The wgpu kernel for the step: `stream` (fused streaming softmax), `gemm` (the
    /// generic matrix product: scores, row softmax, weights × patterns) or `auto` (the
    /// adapter's default, see `WgpuOptions::gemm_min_batch`).
    #[arg(long, value_enum, default_value_t = KernelArg::Auto)]
    kernel: KernelArg,
    /// Time an exact top-k search of the batch (`Retriever::search`, dot similarity)
    /// instead of a retrieval step; `seconds_per_step` is one search. The JSON line adds
    /// `k` and `recall` (against the f64 reference on the first 16 queries).
    #[arg(long)]
    pub search: bool,
    /// Patterns returned per query with `--search`.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
}

impl BenchArgs {
    /// What to time: the rule by the engine's names ([`dam::Similarity::parse`],
    /// [`dam::Separation::parse`]), β = 1/√N unless given.
    pub fn config(&self) -> Result<BenchConfig> {
        let beta = self.beta.unwrap_or(1.0 / (self.dim.max(1) as f32).sqrt());
        let rule = |argument: &'static str, value: &str, e: dam::Error| invalid(argument, value, e);
        let similarity = dam::Similarity::parse(&self.similarity)
            .map_err(|e| rule("--similarity", &self.similarity, e))?;
        let separation = dam::Separation::parse(&self.separation, beta)
            .map_err(|e| rule("--separation", &self.separation, e))?;
        let call = match (self.call, self.search) {
            (CallArg::Search, _) | (CallArg::Step, true) => BenchCall::Search { k: self.k },
            (_, true) => {
                return Err(invalid(
                    "--search",
                    &format!("with --call {:?}", self.call).to_lowercase(),
                    "--search is --call search; give one call",
                ))
            }
            (CallArg::Step, false) => BenchCall::Step,
            (CallArg::Retrieve, false) => BenchCall::Retrieve,
            (CallArg::Energy, false) => BenchCall::Energy,
        };
        Ok(BenchConfig {
            patterns: self.patterns,
            dim: self.dim,
            batch: self.batch,
            steps: self.steps,
            storage: match self.dtype {
                DtypeArg::F32 => dam::Storage::F32,
                DtypeArg::F16 => dam::Storage::F16,
            },
            config: dam::Config {
                similarity,
                separation,
                dynamics: match self.dynamics {
                    BenchDynamicsArg::OneStep => dam::Dynamics::OneStep,
                    BenchDynamicsArg::Iterate => dam::Dynamics::default(),
                },
                projection: match self.projection {
                    ProjectionArg::None => dam::Projection::None,
                    ProjectionArg::Sphere => dam::Projection::Sphere,
                    ProjectionArg::Sign => dam::Projection::Sign,
                },
                energy_trace: false,
            },
            call,
        })
    }

    /// The `--device` to open: `reference` with `--reference` (which refuses a wgpu name).
    pub fn device_name(&self) -> Result<&str> {
        if !self.reference {
            return Ok(&self.device);
        }
        match self.device.trim().to_ascii_lowercase().as_str() {
            "cpu" | "reference" | "auto" | "" => Ok("reference"),
            _ => Err(invalid(
                "--reference",
                &format!("with --device {}", self.device),
                "the reference runs on the CPU (--device reference)",
            )),
        }
    }

    /// `device` with the wgpu kernel of `--kernel` (other devices unchanged).
    pub fn with_kernel(&self, device: dam::Device) -> dam::Device {
        match (device, self.kernel) {
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
        }
    }
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

/// `dam drdam`.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct DrdamArgs {
    /// Dimension N.
    #[arg(long)]
    pub dim: usize,
    /// Stored patterns P.
    #[arg(long)]
    pub count: usize,
    /// Kernel β of exp(−β/2 ‖x − ξ‖²).
    #[arg(long, default_value_t = 1.0)]
    pub beta: f64,
    /// Feature counts, comma separated (e.g. 64,256,1024).
    #[arg(long, value_delimiter = ',', required = true)]
    pub features: Vec<usize>,
    /// Independent pattern sets (10 queries each).
    #[arg(long, default_value_t = 4)]
    pub trials: usize,
    /// Feature family.
    #[arg(long, value_enum, default_value_t = KindArg::Fourier)]
    kind: KindArg,
    /// Gradient-descent steps compared on the states.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Step size η.
    #[arg(long, default_value_t = 0.5)]
    pub step_size: f32,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device: `auto` (DAM_DEVICE if set, else wgpu on a hardware adapter, else the CPU),
    /// `cpu`, `reference` (the f64 reference), `wgpu` (or `gpu`), `wgpu:N` or `wgpu:NAME`
    /// (an adapter of `dam devices`).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
}

impl DrdamArgs {
    /// The comparison to run.
    pub fn config(&self) -> DrdamConfig {
        DrdamConfig {
            dim: self.dim,
            count: self.count,
            beta: self.beta,
            features: self.features.clone(),
            trials: self.trials,
            kind: match self.kind {
                KindArg::Fourier => dam::features::FeatureKind::Fourier,
                KindArg::Positive => dam::features::FeatureKind::PositiveExp,
            },
            steps: self.steps,
            step_size: self.step_size,
            seed: self.seed,
        }
    }
}

/// `dam capacity-ensembles`.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct EnsemblesArgs {
    /// The parameter that varies: `separated:LO:HI:STEP` (distance d) or
    /// `correlated:LO:HI:STEP` (feature correlation c).
    #[arg(long)]
    pub vary: String,
    /// Dimension N.
    #[arg(long)]
    pub dim: usize,
    /// Degrees n, one line each, comma-separated.
    #[arg(long, default_value = "2,3,4")]
    pub degrees: String,
    /// Energy (`poly`, `rpoly`, `exp`, `lse`).
    #[arg(long, default_value = "poly", value_parser = EnergyParser)]
    pub energy: Energy,
    /// The bracket of every search, `LO:HI:1` (P).
    #[arg(long)]
    pub count: String,
    /// What every search shares.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: SearchCommon,
}

impl EnsemblesArgs {
    /// The searches to run.
    pub fn spec(&self) -> Result<EnsembleCurveSpec<'_>> {
        EnsembleCurveSpec::parse(
            &self.vary,
            &self.degrees,
            &self.count,
            self.common
                .template("binary", self.dim, self.energy.name(), 2),
            self.common.search.target(),
            self.common.out.clone(),
        )
    }
}

/// The classifier and its training schedule, shared by `dam train` and `dam sequential`.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct ClassifierArgs {
    /// Folder of IDX files (train-* and t10k-*, gzipped or raw); default the shipped digits.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Number of memories K.
    #[arg(long)]
    pub memories: usize,
    /// Degree n of F.
    #[arg(long)]
    pub degree: u32,
    /// F = max(x, 0)ⁿ instead of xⁿ.
    #[arg(long)]
    pub rectified: bool,
    /// m in the loss Σ (c − t)^{2m}.
    #[arg(long, default_value_t = 3)]
    pub loss_power: u32,
    /// Temperature T (β = 1/Tⁿ) of the first epoch; given without --temperature-final, T
    /// stays fixed. Default: the recipe for the degree (dam::learn::Recipe::recommended).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Final temperature: T ramps linearly from --temperature to this over --ramp-epochs
    /// (Krotov–Hopfield Appendix A). Default: the recipe's (fixed T when --temperature is
    /// given alone).
    #[arg(long)]
    pub temperature_final: Option<f64>,
    /// Length in epochs of the temperature ramp (`dam sequential`: counted over the whole
    /// sequence unless --restart-schedule). Default: the recipe's.
    #[arg(long)]
    pub ramp_epochs: Option<usize>,
    /// Fixed momentum p ∈ [0, 1); default: the ramp 0.5 → 0.9 over the first 100 epochs.
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Epochs (`dam sequential`: per task).
    #[arg(long)]
    pub epochs: usize,
    /// Minibatch size. Default: the recipe's (100).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Initial learning rate ε₀. Default: the recipe's.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Learning-rate decay f per epoch (ε = ε₀ f^epoch). Default: the recipe's.
    #[arg(long)]
    pub lr_decay: Option<f64>,
    /// Seed of the initial memories and of the sample order (`dam sequential`: also of the
    /// permutations and the buffers).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl ClassifierArgs {
    /// The schedule flags given, on top of the recipe for the degree (`shift` is the
    /// caller's).
    pub fn overrides(&self) -> dam::learn::RecipeOverrides {
        dam::learn::RecipeOverrides {
            temperature: self.temperature,
            temperature_final: self.temperature_final,
            ramp_epochs: self.ramp_epochs,
            batch: self.batch,
            lr: self.lr,
            lr_decay: self.lr_decay,
            momentum: self.momentum,
            shift: None,
        }
    }
}

/// `dam train`.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct TrainArgs {
    /// The classifier and its schedule.
    #[command(flatten)]
    #[serde(flatten)]
    pub classifier: ClassifierArgs,
    /// Device: `cpu` (the fused CPU path) or `wgpu` (each epoch on the device: products,
    /// epilogues and optimiser steps as kernels, memories resident); any name of
    /// `--device` elsewhere (`auto`, `reference`, `gpu`, `wgpu:N`, `wgpu:NAME`).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Start from the memories of a memories.safetensors written by `dam train`.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// The optimiser: `krotov` (the paper's per-memory normalised momentum step) or `muon`
    /// (the same momentum, the whole update orthogonalised by Newton–Schulz; cpu and
    /// reference devices only).
    #[arg(long, value_enum, default_value_t = OptimizerArg::Krotov)]
    #[serde(skip_serializing_if = "OptimizerArg::is_krotov")]
    pub optimizer: OptimizerArg,
    /// Newton–Schulz iterations of `--optimizer muon`. Default: 5.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ns_steps: Option<usize>,
    /// Augmentation: every epoch each training image is moved by a random shift of up to
    /// this many pixels in x and y (edge pixels repeated); 0 turns it off. Default: the
    /// recipe's.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shift: Option<usize>,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
}

/// `dam train --optimizer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerArg {
    /// The paper's normalised momentum step.
    Krotov,
    /// Muon.
    Muon,
}

impl OptimizerArg {
    fn is_krotov(&self) -> bool {
        *self == OptimizerArg::Krotov
    }
}

impl TrainArgs {
    /// The training to run.
    pub fn spec(&self) -> TrainSpec {
        let c = &self.classifier;
        TrainSpec {
            data: c.data.clone(),
            memories: c.memories,
            degree: c.degree,
            rectified: c.rectified,
            loss_power: c.loss_power,
            temperature: c.temperature,
            temperature_final: c.temperature_final,
            ramp_epochs: c.ramp_epochs,
            momentum: c.momentum,
            epochs: c.epochs,
            batch: c.batch,
            lr: c.lr,
            lr_decay: c.lr_decay,
            seed: c.seed,
            init: self.init.clone(),
            shift: self.shift,
            optimizer: match self.optimizer {
                OptimizerArg::Krotov => dam::learn::Optimizer::Krotov,
                OptimizerArg::Muon => dam::learn::Optimizer::Muon {
                    ns_steps: self
                        .ns_steps
                        .unwrap_or(dam::learn::Optimizer::MUON_NS_STEPS),
                },
            },
            out: self.out.clone(),
            args: json!(self),
        }
    }
}

/// `dam census`.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct CensusArgs {
    /// Stored ±1 patterns: `binary`, `correlated:C`, `separated:D`, `mnist[:DIR]` (needs
    /// --dim 784) or `prototype:K:RHO` (P noisy copies of K prototypes, each entry flipped
    /// with probability RHO).
    #[arg(long, default_value = "binary")]
    pub patterns: String,
    /// Dimension N.
    #[arg(long)]
    pub dim: usize,
    /// Number of stored patterns P.
    #[arg(long)]
    pub count: usize,
    /// Spin energy: `poly`, `rpoly` or `exp`.
    #[arg(long, default_value = "poly", value_parser = EnergyParser)]
    pub energy: Energy,
    /// Polynomial degree n.
    #[arg(long, default_value_t = 3)]
    pub degree: u32,
    /// β of `exp`.
    #[arg(long, default_value_t = 1.0)]
    pub beta: f64,
    /// Random starts R.
    #[arg(long, default_value_t = 1000)]
    pub starts: usize,
    /// Most asynchronous sweeps per start.
    #[arg(long, default_value_t = 100)]
    pub max_sweeps: usize,
    /// Seed of the memory, the starts and the sweep order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device: `auto` (DAM_DEVICE if set, else wgpu on a hardware adapter, else the CPU),
    /// `cpu`, `reference` (the f64 reference), `wgpu` (or `gpu`), `wgpu:N` or `wgpu:NAME`
    /// (an adapter of `dam devices`).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
}

impl CensusArgs {
    /// The census to take.
    pub fn spec(&self) -> CensusSpec {
        CensusSpec {
            patterns: self.patterns.clone(),
            dim: self.dim,
            count: self.count,
            energy: self.energy,
            degree: self.degree,
            beta: self.beta,
            starts: self.starts,
            max_sweeps: self.max_sweeps,
            seed: self.seed,
            out: self.out.clone(),
            args: json!(self),
        }
    }
}

/// `dam minima`.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct MinimaArgs {
    /// CSV of the stored patterns: one per row, comma-separated numbers (a first row without
    /// any number is a header and skipped).
    #[arg(long)]
    pub patterns: PathBuf,
    /// Energy: `lsr` (log-sum-ReLU, also `log-sum-relu`), the one with centroid minima.
    #[arg(long)]
    pub energy: String,
    /// β, or an inclusive sweep LO:HI:STEP; the support radius is √(2/β).
    #[arg(long)]
    pub beta: String,
    /// ε inside the logarithm (≥ 0).
    #[arg(long, default_value_t = 0.0)]
    pub epsilon: f64,
    /// A pattern counts in a support when its kernel exceeds TOL (one at the support
    /// radius up to rounding is outside); also the relative bound on ‖∇E‖ at a minimum.
    #[arg(long, default_value = "1e-9")]
    pub tol: f64,
    /// Largest support (set of patterns) the enumeration checks.
    #[arg(long, default_value_t = crate::minima::DEFAULT_MAX_SUPPORT)]
    pub max_support: usize,
    /// Most candidate sets checked at one β (more is an error).
    #[arg(long, default_value_t = crate::minima::DEFAULT_MAX_CANDIDATES)]
    pub max_candidates: u64,
    /// Candidate sets: `all` subsets, `cliques` of patterns closer than 2√(2/β), or `auto`
    /// (all up to 16 patterns).
    #[arg(long, default_value = "auto")]
    pub enumerate: String,
    /// Random starts of the descent check at each β (0: no descent).
    #[arg(long, default_value_t = crate::minima::DEFAULT_STARTS)]
    pub starts: usize,
    /// Most updates x ← mean of the support per start.
    #[arg(long, default_value_t = crate::minima::DEFAULT_MAX_ITER)]
    pub max_iter: usize,
    /// Seed of the random starts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
}

impl MinimaArgs {
    /// The search to run.
    pub fn spec(&self) -> Result<crate::minima::MinimaSpec> {
        use crate::minima::{parse_betas, Enumeration, MinimaEnergy, MinimaOptions, MinimaSpec};
        Ok(MinimaSpec {
            patterns: self.patterns.clone(),
            energy: MinimaEnergy::parse(&self.energy)?,
            betas: parse_betas(&self.beta)?,
            options: MinimaOptions {
                eps: self.epsilon,
                tol: self.tol,
                max_support: self.max_support,
                max_candidates: self.max_candidates,
                enumeration: Enumeration::parse(&self.enumerate)?,
                starts: self.starts,
                max_iter: self.max_iter,
                seed: self.seed,
            },
            out: self.out.clone(),
            args: json!(self),
        })
    }
}

/// `dam capacity`.
#[derive(Debug, Clone, Args, serde::Serialize)]
#[command(group(clap::ArgGroup::new("load").required(true).args(["alpha", "count"])))]
pub struct CapacityArgs {
    /// Stored patterns: `spherical`, `gaussian`, `binary` (procedural i.i.d.),
    /// `correlated:C` (±1 with pairwise feature correlation C ∈ [0, 1), procedural),
    /// `separated:D` (±1 with pairwise Hamming distance ≥ D, greedy per trial) or
    /// `mnist[:DIR]` (digits, default the shipped ones; needs --dim 784).
    #[arg(long)]
    pub patterns: String,
    /// Dimension N.
    #[arg(long)]
    pub dim: usize,
    /// Energy / separation. `lsr`: log-sum-ReLU on the sphere, E = −(N/b) log Σ_μ
    /// max(0, 1 − b + bφ_μ) with φ_μ = x·ξ^μ/N (updates move to the mean of the support,
    /// projected onto |x|² = N; runs on --device cpu or reference). `sparsemax`,
    /// `entmax[:ALPHA]` (α-entmax, 1 < α ≤ 2, default 1.5): sparse weights
    /// entmax_α(βs) on the dot similarity, on built pattern sets (separated:D, mnist).
    #[arg(long, value_parser = EnergyParser)]
    pub energy: Energy,
    /// For `lse`/`exp`/`sparsemax`/`entmax`: λ of THEORY.md §1 (β on the raw dot
    /// product), default 1. For `lsr`: b, the support wall at φ = 1 − 1/b, default 2 + √2
    /// (φ = 1/√2).
    #[arg(long)]
    pub beta: Option<f64>,
    /// Polynomial degree n.
    #[arg(long, default_value_t = 2)]
    pub degree: u32,
    /// Loads α = ln P / N as START:STOP:STEP (P = round(e^{αN})).
    #[arg(long)]
    pub alpha: Option<String>,
    /// Pattern counts P as START:STOP:STEP.
    #[arg(long)]
    pub count: Option<String>,
    /// Trials per point.
    #[arg(long)]
    pub trials: usize,
    /// `stored`, `flip:RHO` (flip the sign of a fraction ρ of the entries) or `random` (a
    /// random state: ±1 uniform, or an isotropic direction with the target's norm).
    #[arg(long, default_value = "stored")]
    pub query: String,
    /// `one-step` or `converge:MAX`.
    #[arg(long, default_value = "one-step")]
    pub dynamics: String,
    /// `weight`, `overlap:THETA`, `nearest` or `exact`. With `lsr`, `weight` means the
    /// target is the only pattern in the query's support, and a query with an empty
    /// support fails whatever the criterion (counted in `empty_supports`).
    #[arg(long, default_value = "weight")]
    pub criterion: String,
    /// Master seed (trial t at load P uses a seed derived from (seed, P, t)).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device: `auto` (DAM_DEVICE if set, else wgpu on a hardware adapter, else the CPU),
    /// `cpu`, `reference` (the f64 reference), `wgpu` (or `gpu`), `wgpu:N` or `wgpu:NAME`
    /// (an adapter of `dam devices`).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Run the trials t with t mod n = i, as `i/n` (merge shards with `dam merge`).
    #[arg(long)]
    pub shard: Option<String>,
    /// Bisect on P between the first and last load of --count/--alpha for the largest P
    /// with success rate ≥ ½ (`half`) or with every trial a success (`all`); writes
    /// search.csv (one row per probe) and summary.json (`patterns_half` / `patterns_all`,
    /// `bracket`) instead of the sweep's files.
    #[arg(long, value_enum, conflicts_with = "shard")]
    search: Option<SearchArg>,
}

impl CapacityArgs {
    /// `dam` without a command: spherical patterns, N = 16, λ = 1, log-sum-exp, α from 0.50
    /// to 0.74, 100 trials, into `dam-out`.
    pub fn default_sweep() -> Self {
        Self {
            patterns: "spherical".into(),
            dim: 16,
            energy: Energy::Lse,
            beta: None,
            degree: 2,
            alpha: Some("0.50:0.74:0.02".into()),
            count: None,
            trials: 100,
            query: "stored".into(),
            dynamics: "one-step".into(),
            criterion: "weight".into(),
            seed: 0,
            device: "auto".into(),
            out: PathBuf::from("dam-out"),
            shard: None,
            search: None,
        }
    }

    /// `--search`: the capacity search's target, if one is asked for.
    pub fn search(&self) -> Option<Target> {
        self.search.map(SearchArg::target)
    }

    /// The validated sweep and its loads (with `--search`, the bracket's two ends).
    pub fn sweep(&self) -> Result<(Sweep, Vec<u64>)> {
        let energy = self.energy.spelling();
        SweepText {
            patterns: &self.patterns,
            dim: self.dim,
            energy: &energy,
            beta: self.beta,
            degree: self.degree,
            alpha: self.alpha.as_deref(),
            count: self.count.as_deref(),
            trials: self.trials,
            query: &self.query,
            dynamics: &self.dynamics,
            criterion: &self.criterion,
            seed: self.seed,
            shard: self.shard.as_deref(),
            search: self.search.is_some(),
        }
        .build()
    }

    /// summary.json's `args`: these arguments, with the β the sweep ran at where
    /// `--beta` was not given.
    pub fn record(&self) -> serde_json::Value {
        let mut record = json!(self);
        record["beta"] = json!(self.beta.unwrap_or(self.energy.default_beta()));
        record
    }
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum SearchArg {
    Half,
    All,
}

impl SearchArg {
    fn target(self) -> Target {
        match self {
            SearchArg::Half => Target::Half,
            SearchArg::All => Target::All,
        }
    }
}

/// `dam phase`.
#[derive(Debug, Clone, Args, serde::Serialize)]
#[command(group(clap::ArgGroup::new("size").required(true).args(["dim", "patterns"])))]
pub struct PhaseArgs {
    /// `lse` (log-sum-exp, β = 1) or `lsr` (log-sum-ReLU, b = 2 + √2).
    #[arg(long)]
    pub energy: String,
    /// Dimension N (M = round(e^{αN}) patterns at each α).
    #[arg(long)]
    pub dim: Option<usize>,
    /// Number of patterns M (N = round(ln M / α) at each α).
    #[arg(long)]
    pub patterns: Option<u64>,
    /// Loads α as START:STOP:STEP (a single value: `0.1:0.1:1`).
    #[arg(long)]
    pub alpha: String,
    /// Temperatures T as START:STOP:STEP.
    #[arg(long)]
    pub temperature: String,
    /// Independent pattern sets per (α, T).
    #[arg(long)]
    pub disorders: usize,
    /// Chains per pattern set and temperature, 1 to 64: replicas a and b give phi_a, phi_b
    /// and q12; every replica counts in phi_mean.
    #[arg(long, default_value_t = 2)]
    pub replicas: usize,
    /// Steps before sampling; default max(8192, 16·N) (chains from φ₀ = 0.75 need ~12·N
    /// steps to settle).
    #[arg(long)]
    pub equilibrate: Option<usize>,
    /// Sampled steps; default max(4096, 4·N).
    #[arg(long)]
    pub sample: Option<usize>,
    /// Range LO:HI of the starting overlap φ₀ with the target (uniform).
    #[arg(long, default_value = "0.75:1")]
    pub start_overlap: String,
    /// Seed of the patterns, starts and moves.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run the cells c (α, disorder, T in that order) with c mod n = i, as `i/n`; join the
    /// shards' folders with `dam merge`.
    #[arg(long)]
    pub shard: Option<String>,
    /// Continue an interrupted run: keep the rows of OUT/phase.csv and run the other cells.
    #[arg(long)]
    pub resume: bool,
    /// Device: `auto` (DAM_DEVICE if set, else wgpu on a hardware adapter, else the CPU),
    /// `cpu`, `reference` (the f64 reference), `wgpu` (or `gpu`), `wgpu:N` or `wgpu:NAME`.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
}

impl PhaseArgs {
    /// The experiment these arguments describe.
    pub fn spec(&self) -> Result<crate::phase::PhaseSpec> {
        use crate::phase::{point_size, PhaseEnergy, PhaseSize, PhaseSpec};
        let size = match (self.dim, self.patterns) {
            (Some(n), None) => PhaseSize::Dim(n),
            (None, Some(m)) if m >= 2 => PhaseSize::Patterns(m),
            (None, Some(m)) => return Err(invalid("--patterns", &m.to_string(), "M ≥ 2")),
            _ => {
                return Err(invalid(
                    "--dim",
                    "",
                    "give exactly one of --dim and --patterns",
                ))
            }
        };
        // Grid values to 12 significant digits: 0.1 + 2·0.1 is the T = 0.3 of the files.
        let tidy = |v: Vec<f64>| -> Vec<f64> {
            v.into_iter()
                .map(|x| format!("{x:.11e}").parse().unwrap_or(x))
                .collect()
        };
        let alphas = tidy(parse_range("--alpha", &self.alpha)?);
        let mut n_max = 0;
        for &a in &alphas {
            n_max = n_max.max(point_size(size, a)?.0);
        }
        let start_overlap = self
            .start_overlap
            .split_once(':')
            .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
            .ok_or_else(|| invalid("--start-overlap", &self.start_overlap, "expected LO:HI"))?;
        let spec = PhaseSpec {
            energy: PhaseEnergy::parse(&self.energy)?,
            size,
            alphas,
            temperatures: tidy(parse_range("--temperature", &self.temperature)?),
            disorders: self.disorders,
            replicas: self.replicas,
            equilibrate: self.equilibrate.unwrap_or((16 * n_max).max(8192)),
            sample: self.sample.unwrap_or((4 * n_max).max(4096)),
            start_overlap,
            seed: self.seed,
            shard: parse_shard(self.shard.as_deref())?,
            ..PhaseSpec::default()
        };
        spec.validate()?;
        Ok(spec)
    }
}

/// `dam merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Output folders of the shards (of `dam capacity`, or of `dam phase`: folders with a
    /// phase.csv).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where to write the merged files.
    #[arg(long, default_value = "dam-merged")]
    pub out: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExperimentError;

    #[test]
    fn devices_are_read_by_the_engines_parser() {
        for (name, device) in [
            ("cpu", dam::Device::Cpu),
            (" CPU", dam::Device::Cpu),
            ("reference", dam::Device::Reference),
        ] {
            let (d, reason) = open_device(name).unwrap();
            assert_eq!((d, reason), (device, None), "{name}");
        }
        match open_device("tpu") {
            Err(ExperimentError::Invalid { argument, .. }) => assert_eq!(argument, "--device"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn arguments_map_to_their_specs() {
        let cli = Cli::try_parse_from([
            "dam",
            "capacity",
            "--patterns",
            "binary",
            "--dim",
            "16",
            "--energy",
            "polynomial",
            "--degree",
            "3",
            "--count",
            "5:9:2",
            "--trials",
            "4",
            "--criterion",
            "exact",
            "--search",
            "all",
            "--out",
            "x",
        ])
        .unwrap();
        let Some(Command::Capacity(args)) = cli.command else {
            panic!("not capacity");
        };
        assert_eq!(args.search(), Some(Target::All));
        let (sweep, loads) = args.sweep().unwrap();
        assert_eq!(
            (sweep.energy, sweep.degree, loads),
            (Energy::Poly, 3, vec![5, 9])
        );
        // The files record the energy by its own name and the device as given.
        let record = args.record();
        assert_eq!(
            (record["energy"].as_str(), record["device"].as_str()),
            (Some("poly"), Some("auto"))
        );
        assert_eq!(record["search"], "all");
        assert!(Cli::try_parse_from([
            "dam", "census", "--dim", "8", "--count", "2", "--energy", "cubic", "--out", "x"
        ])
        .is_err());
    }
}

/// `dam lagrangian`.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct LagrangianArgs {
    /// A named model: `A` (Σ|v|, Σ max(h, 0)ⁿ: the 2016 dense memory), `B` (½Σv²,
    /// log-sum-exp: the modern Hopfield network) or `C` (√Σv², Σ max(h, 0)ⁿ: spherical).
    /// The default, without `--visible`/`--hidden`, is B.
    #[arg(long, conflicts_with_all = ["visible", "hidden"])]
    pub model: Option<String>,
    /// The feature layer's Lagrangian: `quadratic`, `abs` (g = sign v) or `spherical`.
    #[arg(long, requires = "hidden")]
    pub visible: Option<String>,
    /// The memory layer's Lagrangian: `poly[:N]`, `rpoly[:N]` (degree N), `exp[:BETA]` or
    /// `lse[:BETA]`.
    #[arg(long, requires = "visible")]
    pub hidden: Option<String>,
    /// K, the number of memories.
    #[arg(long)]
    pub memories: usize,
    /// N, the number of feature neurons.
    #[arg(long)]
    pub dim: usize,
    /// The memories: `random` (Gaussian), `binary` (±1) or `mnist` (N = 784), each scaled
    /// to unit norm. Default: `binary` for the `abs` visible Lagrangian, else `random`.
    #[arg(long)]
    pub patterns: Option<String>,
    /// β of `exp` and `lse` (memories have unit norm; correlated ones such as digits need
    /// β of about 50 or more to be told apart).
    #[arg(long, default_value_t = 50.0)]
    pub beta: f64,
    /// The degree n of `poly` and `rpoly`.
    #[arg(long, default_value_t = 3)]
    pub degree: u32,
    /// τ_v, the feature neurons' time constant.
    #[arg(long = "tau-v", default_value_t = 1.0)]
    pub tau_v: f64,
    /// τ_h, the memory neurons' time constant (0: fast memory neurons, h = Ξg).
    #[arg(long = "tau-h", default_value_t = 0.0)]
    pub tau_h: f64,
    /// The time step.
    #[arg(long, default_value_t = 0.1)]
    pub dt: f64,
    /// The integrator: `euler` or `rk4`.
    #[arg(long, default_value = "euler")]
    pub integrator: String,
    /// Steps.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Queries (query q starts near memory q mod K).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Corruption: the fraction of each query's entries whose sign is flipped.
    #[arg(long, default_value_t = 0.2)]
    pub noise: f64,
    /// Seed of the memories and the corruption.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device: `auto`, `cpu`, `reference` (f64) — wgpu is not supported by this command
    /// yet, so `auto` means the CPU here.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
}

impl LagrangianArgs {
    /// The run these arguments ask for.
    pub fn config(&self) -> Result<crate::lagrangian::LagrangianRunSpec> {
        use crate::lagrangian::{LagrangianPatterns, LagrangianRunSpec};
        use dam::lagrangian::{HiddenLagrangian, Integrator, LagrangianSpec, VisibleLagrangian};
        let base = match (&self.model, &self.visible, &self.hidden) {
            (_, Some(visible), Some(hidden)) => {
                let (name, param) = match hidden.split_once(':') {
                    Some((name, param)) => (name, Some(param)),
                    None => (hidden.as_str(), None),
                };
                let is_poly = matches!(name.trim(), "poly" | "rpoly");
                let (beta, degree) = match param {
                    Some(p) if is_poly => (
                        self.beta,
                        p.parse().map_err(|_| {
                            invalid("--hidden", hidden, "the degree must be a whole number ≥ 1")
                        })?,
                    ),
                    Some(p) => (
                        p.parse()
                            .map_err(|_| invalid("--hidden", hidden, "β must be a number > 0"))?,
                        self.degree,
                    ),
                    None => (self.beta, self.degree),
                };
                LagrangianSpec {
                    visible: VisibleLagrangian::parse(visible)?,
                    hidden: HiddenLagrangian::parse(name, beta, degree)?,
                    ..LagrangianSpec::default()
                }
            }
            (model, _, _) => match model.as_deref().unwrap_or("B").trim() {
                "A" | "a" => LagrangianSpec::model_a(self.degree),
                "B" | "b" => LagrangianSpec::model_b(self.beta),
                "C" | "c" => LagrangianSpec::model_c(self.degree),
                other => return Err(invalid("--model", other, "use A, B or C")),
            },
        };
        let integrator = match self.integrator.trim().to_ascii_lowercase().as_str() {
            "euler" => Integrator::Euler,
            "rk4" => Integrator::Rk4,
            other => return Err(invalid("--integrator", other, "use euler or rk4")),
        };
        let spec = LagrangianSpec {
            tau_visible: self.tau_v,
            tau_hidden: self.tau_h,
            dt: self.dt,
            integrator,
            ..base
        };
        spec.validate()?;
        let patterns = match self.patterns.as_deref().map(str::trim) {
            None if spec.visible == VisibleLagrangian::Abs => LagrangianPatterns::Binary,
            None | Some("random") => LagrangianPatterns::Random,
            Some("binary") => LagrangianPatterns::Binary,
            Some("mnist") => LagrangianPatterns::Mnist,
            Some(other) => return Err(invalid("--patterns", other, "use random, binary or mnist")),
        };
        Ok(LagrangianRunSpec {
            spec,
            memories: self.memories,
            dim: self.dim,
            patterns,
            steps: self.steps,
            batch: self.batch,
            noise: self.noise,
            seed: self.seed,
        })
    }
}

/// `dam muon`.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct MuonArgs {
    /// K, the number of items (queries and answers).
    #[arg(long, default_value_t = 100)]
    pub k: usize,
    /// M, the number of frequency groups (must divide K).
    #[arg(long, default_value_t = 10)]
    pub groups: usize,
    /// The item frequencies: `uniform` or `power:BETA` (group g ∝ g^−β, group 1 the most
    /// frequent).
    #[arg(long, default_value = "uniform")]
    pub spectrum: String,
    /// Label noise α ∈ [0, 1): p(i | j) = (1 − α)[i = j] + α/K.
    #[arg(long, default_value_t = 0.0)]
    pub noise: f64,
    /// T, the number of steps.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// The step size η.
    #[arg(long, default_value_t = 1.0)]
    pub lr: f64,
    /// `gd` (W ← W − η∇L) or `muon` (W ← W − η·msgn ∇L).
    #[arg(long, default_value = "muon")]
    pub optimizer: String,
    /// The Newton–Schulz iteration of msgn on `cpu` and wgpu: `cubic` (converges to the
    /// exact polar factor) or `quintic` (Keller Jordan's coefficients).
    #[arg(long, default_value = "cubic")]
    pub ns: String,
    /// Newton–Schulz iterations per step.
    #[arg(long = "ns-steps", default_value_t = crate::muon::DEFAULT_NS_STEPS)]
    pub ns_steps: usize,
    /// Runs to each T of `T1,T2,...` or `LO:HI:COUNT` (log-spaced) and fits
    /// log L(T) = a + γ log T: sweep.csv, `exponent` in summary.json (replaces `--steps`).
    #[arg(long = "sweep-steps")]
    pub sweep_steps: Option<String>,
    /// Device: `reference` (f64, exact SVD), `cpu` (f32, Newton–Schulz on the CPU's matrix
    /// product), `wgpu[:N|:NAME]` (the products on the adapter) or `auto`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
}

impl MuonArgs {
    /// The run these arguments ask for (checked) and the sweep's step counts, if any.
    pub fn spec(&self) -> Result<(crate::muon::MuonSpec, Option<Vec<usize>>)> {
        use crate::muon::{parse_ns, parse_sweep_steps, MuonSpec, Optimizer, Spectrum};
        let sweep = self
            .sweep_steps
            .as_deref()
            .map(parse_sweep_steps)
            .transpose()?;
        let spec = MuonSpec {
            k: self.k,
            groups: self.groups,
            spectrum: Spectrum::parse(&self.spectrum)?,
            noise: self.noise,
            steps: sweep
                .as_ref()
                .and_then(|s| s.last().copied())
                .unwrap_or(self.steps),
            lr: self.lr,
            optimizer: Optimizer::parse(&self.optimizer)?,
            ns: parse_ns(&self.ns)?,
            ns_steps: self.ns_steps,
        };
        spec.validate()?;
        Ok((spec, sweep))
    }
}

/// `dam kernel-fit`.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct KernelFitArgs {
    /// The memories: `spherical:M:N` (M random unit vectors in R^N), `mnist[:M]` (the
    /// shipped training digits, the first M, unit norm; queries: the test digits),
    /// `mnist-raw[:M]` (the same with pixels in [−1, 1] as shipped) or a CSV file (one
    /// memory per row).
    #[arg(long)]
    pub memories: String,
    /// D_Φ, the feature dimension of Φ(x) = W x + b.
    #[arg(long = "feature-dim")]
    pub feature_dim: usize,
    /// τ of the separation loss L = log[(2/(M(M−1))) Σ_{μ<ν} exp(⟨Φ̂_μ, Φ̂_ν⟩/τ)].
    #[arg(long, default_value_t = 0.1)]
    pub tau: f64,
    /// Epochs (full-batch steps).
    #[arg(long, default_value_t = 500)]
    pub epochs: usize,
    /// `sgd` or `adam`.
    #[arg(long, default_value = "adam")]
    pub optimizer: String,
    /// The step size η.
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    /// Seed of W₀ (N(0, 1/N) entries), the spherical memories and the queries.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// β of the metastable-state retrieval x ← Ξᵀ p(β⟨Φ̂(ξ_μ), Φ̂(x)⟩). The similarity is a
    /// cosine (at most 1), so β ≈ 1 spreads the weights over most memories; the default 10
    /// separates single-memory fixed points from mixtures.
    #[arg(long, default_value_t = 10.0)]
    pub beta: f64,
    /// The weights p of the metastable-state retrieval: `entmax:ALPHA` (1 < α ≤ 2; a
    /// weight counts above 0), `entmax` (α = 1.5), `sparsemax` (α = 2) or `softmax` (a
    /// weight counts above 0.01).
    #[arg(long, default_value = "entmax:1.5")]
    pub separation: String,
    /// Queries of the metastable-state histograms (random unit vectors; test digits with
    /// `mnist`).
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// The kernel of the metastable-state retrieval: `cosine` (⟨Φ̂(u), Φ̂(v)⟩ on the
    /// normalised features) or `dot` (⟨Φ(u), Φ(v)⟩, whose scale grows with the inputs' and
    /// W's; with `mnist-raw` digits β ≈ 0.1). The loss is on normalised features either way.
    #[arg(long, value_enum, default_value_t = FeatureKernelArg::Cosine)]
    pub kernel: FeatureKernelArg,
    /// Device of the Gram matrix: `reference` (f64), `cpu` (f32 matrix product),
    /// `wgpu[:N|:NAME]` or `auto`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Also compare retrieval with a learned Φ against the identity map for these memory
    /// counts P (`P1,P2,…`, each 2 ≤ P ≤ M): for each P, Φ is learned on the first P
    /// memories and noisy copies of them are retrieved by the kernelized memory
    /// (`dam::RetrieverBuilder::feature_map`, cosine kernel) with either map; writes
    /// capacity.csv and `capacity` in summary.json (P_½ of each).
    #[arg(long)]
    pub capacity: Option<String>,
    /// σ of the capacity queries ξ_μ + σ‖ξ_μ‖ g/‖g‖ (g a Gaussian direction).
    #[arg(long = "capacity-noise", default_value_t = 0.3)]
    pub capacity_noise: f64,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
}

/// `dam kernel-fit --kernel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureKernelArg {
    /// The cosine of the features.
    Cosine,
    /// The inner product of the features.
    Dot,
}

impl KernelFitArgs {
    /// The run these arguments ask for (checked).
    pub fn spec(&self) -> Result<crate::kernel_fit::KernelFitSpec> {
        use crate::kernel_fit::{KernelFitSpec, MemorySource, Optimizer};
        let spec = KernelFitSpec {
            memories: MemorySource::parse(&self.memories)?,
            feature_dim: self.feature_dim,
            tau: self.tau,
            epochs: self.epochs,
            optimizer: Optimizer::parse(&self.optimizer)?,
            lr: self.lr,
            seed: self.seed,
            beta: self.beta,
            weights: dam::kernelized::Weights::parse(&self.separation)?,
            queries: self.queries,
            normalise: self.kernel == FeatureKernelArg::Cosine,
        };
        spec.validate()?;
        Ok(spec)
    }
}

/// `dam sequential`.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct SequentialArgs {
    /// Number of tasks T: task 1 is the digits as they are, task t > 1 the digits with their
    /// pixels permuted (a fixed permutation drawn from --seed and t).
    #[arg(long)]
    pub tasks: usize,
    /// The continual-learning method: `naive`, `rehearsal:R` (R items of each past task
    /// trained on again), `pseudo:R` (R items per past task made by relaxing random states
    /// through the memory), `ewc:λ`, `si:c`, `mas:λ` (per-entry importance penalties) or
    /// `agem:R` (gradient projection against R items per past task). See the README.
    #[arg(long, default_value = "naive")]
    pub method: String,
    /// Also train on all tasks at once (training sets concatenated, T × --epochs epochs):
    /// the upper bound, in summary.json (`joint`) and accuracy.svg.
    #[arg(long)]
    pub joint: bool,
    /// Use only the first N training and N test images (every task).
    #[arg(long)]
    pub limit: Option<usize>,
    /// The classifier and its schedule (`--epochs` per task).
    #[command(flatten)]
    #[serde(flatten)]
    pub classifier: ClassifierArgs,
    /// Start the temperature ramp and the rate's decay again at each task (each task a
    /// run of its own from the memories the last one left) instead of running them on
    /// across the tasks.
    #[arg(long)]
    pub restart_schedule: bool,
    /// Device: `cpu` (the fused CPU path) or `reference` (f64) for every method; naive,
    /// rehearsal and pseudo also on `wgpu[:N|:NAME]` or `auto`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
}

impl SequentialArgs {
    /// The run these arguments ask for.
    pub fn spec(&self) -> crate::sequential::SequentialSpec {
        let c = &self.classifier;
        crate::sequential::SequentialSpec {
            data: c.data.clone(),
            limit: self.limit,
            tasks: self.tasks,
            method: self.method.clone(),
            joint: self.joint,
            memories: c.memories,
            degree: c.degree,
            rectified: c.rectified,
            loss_power: c.loss_power,
            overrides: dam::learn::RecipeOverrides {
                // Permuted pixels have no neighbours to shift into.
                shift: Some(0),
                ..c.overrides()
            },
            epochs: c.epochs,
            seed: c.seed,
            restart: self.restart_schedule,
            out: self.out.clone(),
            args: json!(self),
        }
    }
}
