//! `dam bench`: seconds per call of the engine — one step, a retrieval, energies or an exact
//! top-k search — for any similarity and separation, on Gaussian patterns from seed 0 with
//! the first B patterns plus noise as queries: the workload of
//! `benches/peers/{numpy_retrieval,numpy_rules,torch_retrieval,faiss_search}.py`.

use dam::procedural::{fill, PatternKind, Stream};
use dam::{Config, Device, Dynamics, Patterns, Retriever, Separation};
use ndarray::Array2;

use crate::error::{ExperimentError, Result};

/// What call is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchCall {
    /// `Retriever::step`: one update of the batch.
    Step,
    /// `Retriever::retrieve`: the configured dynamics, then the nearest pattern, energy and
    /// confidence at the final states.
    Retrieve,
    /// `Retriever::energy` of the batch.
    Energy,
    /// `Retriever::search(queries, k)`: exact top-k by the similarity.
    Search {
        /// Patterns returned per query.
        k: usize,
    },
}

impl BenchCall {
    /// `step`, `retrieve`, `energy` or `search` (the JSON key `call`).
    pub fn name(&self) -> &'static str {
        match self {
            BenchCall::Step => "step",
            BenchCall::Retrieve => "retrieve",
            BenchCall::Energy => "energy",
            BenchCall::Search { .. } => "search",
        }
    }
}

/// What to time.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Stored patterns P.
    pub patterns: usize,
    /// Dimension N.
    pub dim: usize,
    /// Queries per step B.
    pub batch: usize,
    /// Timed calls (after one warm-up call); the median is reported.
    pub steps: usize,
    /// Pattern storage on the device.
    pub storage: dam::Storage,
    /// The retrieval rule (the peers' default: dot similarity, softmax at β = 1/√N, one
    /// step, no projection).
    pub config: Config,
    /// The call timed.
    pub call: BenchCall,
}

impl BenchConfig {
    /// β of the separation, if it has one.
    pub fn beta(&self) -> Option<f32> {
        match self.config.separation {
            Separation::Softmax { beta }
            | Separation::Exponential { beta }
            | Separation::Entmax { beta, .. } => Some(beta),
            _ => None,
        }
    }
}

/// Timings of one configuration.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// Every timed call, in seconds, in order.
    pub seconds: Vec<f64>,
    /// Median of `seconds`.
    pub median: f64,
    /// Median device time of the timed steps from timestamp queries (wgpu adapters with
    /// `TIMESTAMP_QUERY`), in seconds; `None` elsewhere.
    pub gpu_median: Option<f64>,
    /// 4·B·P·N / median (a step or a retrieval: two products per pass), or 2·B·P·N /
    /// median (energy, search: one), in 10⁹ per second.
    pub gflops: f64,
    /// P·N·bytes per element / median, in GB/s.
    pub pattern_gbps: f64,
    /// Σ |x'| over the output of the last call (states; energies; search scores), to
    /// compare devices on the same sizes.
    pub checksum: f64,
    /// Seconds to generate the patterns and build the retriever (upload).
    pub setup_seconds: f64,
    /// The device's description.
    pub device_name: String,
    /// Search only: |top-k ∩ exact top-k| / k over the first [`RECALL_QUERIES`] queries,
    /// against the f64 reference.
    pub recall: Option<f64>,
    /// Retrieve only: the mean number of steps per query.
    pub mean_steps: Option<f64>,
}

/// Queries whose search results are checked against the f64 reference (`recall`).
pub const RECALL_QUERIES: usize = 16;

/// The `path` of the JSON line: `cpu-fast`, `cpu-reference`, `wgpu` (streaming kernel),
/// `wgpu-gemm` (the matrix product, see `WgpuOptions::gemm_min_batch`), or for a search
/// `cpu-search` / `wgpu-search`.
pub fn path_name(cfg: &BenchConfig, device: &Device) -> Result<&'static str> {
    let search = matches!(cfg.call, BenchCall::Search { .. });
    Ok(match (device, device.context()?) {
        (Device::Reference, _) => "cpu-reference",
        (_, None) if search => "cpu-search",
        (_, None) => "cpu-fast",
        (_, Some(_)) if search => "wgpu-search",
        (_, Some(ctx)) if cfg.call == BenchCall::Step && ctx.gemm_for(cfg.batch) => "wgpu-gemm",
        (_, Some(_)) => "wgpu",
    })
}

/// The JSON line of `dam bench --json` (the contract's keys: `seconds_per_step`, `gflops`,
/// `pattern_gbps`, `device`, `adapter`, `path`, `dtype`, and the extras).
pub fn json_line(
    cfg: &BenchConfig,
    result: &BenchResult,
    device: &Device,
) -> Result<serde_json::Value> {
    let (kind, adapter) = device.describe()?;
    let dtype = match cfg.storage {
        dam::Storage::F32 => "f32",
        dam::Storage::F16 => "f16",
    };
    Ok(serde_json::json!({
        "impl": "dam",
        "path": path_name(cfg, device)?,
        "device": kind,
        "adapter": adapter,
        "dtype": dtype,
        "patterns": cfg.patterns,
        "dim": cfg.dim,
        "batch": cfg.batch,
        "beta": cfg.beta(),
        "steps": cfg.steps,
        "similarity": cfg.config.similarity.name(),
        "separation": cfg.config.separation.name(),
        "call": cfg.call.name(),
        "dynamics": match cfg.config.dynamics {
            Dynamics::OneStep => "one-step",
            Dynamics::Iterate { .. } => "iterate",
        },
        "projection": format!("{:?}", cfg.config.projection).to_ascii_lowercase(),
        "seconds_per_step": result.median,
        "gpu_seconds_per_step": result.gpu_median,
        "seconds_min": result.seconds.iter().cloned().fold(f64::INFINITY, f64::min),
        "seconds_all": result.seconds,
        "gflops": result.gflops,
        "pattern_gbps": result.pattern_gbps,
        "setup_seconds": result.setup_seconds,
        "threads": dam::cpu::fast::thread_count(0),
        "checksum": result.checksum,
        "k": match cfg.call {
            BenchCall::Search { k } => Some(k),
            _ => None,
        },
        "recall": result.recall,
        "mean_steps": result.mean_steps,
    }))
}

/// `MemAvailable` of /proc/meminfo in bytes (None where there is no such file).
fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Gaussian N(0, 1) patterns (Philox, seed 0), rows generated on all cores; an error (not
/// an abort) when P·N floats cannot be allocated.
pub fn gaussian_patterns(p: usize, n: usize) -> Result<Array2<f32>> {
    let too_big = |reason: String| ExperimentError::Invalid {
        argument: "--patterns × --dim",
        value: format!("{p} × {n}"),
        reason,
    };
    let len = p
        .checked_mul(n)
        .filter(|l| l.checked_mul(4).is_some())
        .ok_or_else(|| too_big("P·N·4 bytes overflow the address space".into()))?;
    // Linux overcommits: a reservation beyond RAM succeeds and the fill is then killed, so
    // compare with MemAvailable first where /proc/meminfo exists.
    if let Some(available) = available_bytes() {
        if len as u64 * 4 > available {
            return Err(too_big(format!(
                "{:.1} GiB of patterns exceed the {:.1} GiB of memory available",
                len as f64 * 4.0 / (1u64 << 30) as f64,
                available as f64 / (1u64 << 30) as f64
            )));
        }
    }
    let mut data: Vec<f32> = Vec::new();
    data.try_reserve_exact(len).map_err(|e| {
        too_big(format!(
            "cannot allocate {:.1} GiB of patterns: {e}",
            len as f64 * 4.0 / (1u64 << 30) as f64
        ))
    })?;
    data.resize(len, 0.0);
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let rows_per = p.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (c, chunk) in data.chunks_mut(rows_per * n).enumerate() {
            scope.spawn(move || {
                for (r, row) in chunk.chunks_mut(n).enumerate() {
                    let mu = (c * rows_per + r) as u64;
                    fill(PatternKind::Gaussian, 0, Stream::Patterns, mu, row);
                }
            });
        }
    });
    Array2::from_shape_vec((p, n), data).map_err(|e| too_big(e.to_string()))
}

/// The median (upper middle for an even count) of a non-empty list.
fn median_of(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Times `cfg` on `device`.
pub fn run(cfg: &BenchConfig, device: &Device) -> Result<BenchResult> {
    if cfg.patterns == 0 || cfg.dim == 0 || cfg.batch == 0 || cfg.steps == 0 {
        return Err(ExperimentError::Invalid {
            argument: "--patterns/--dim/--batch/--steps",
            value: format!(
                "P={} N={} B={} S={}",
                cfg.patterns, cfg.dim, cfg.batch, cfg.steps
            ),
            reason: "all must be ≥ 1".into(),
        });
    }
    let (p, n, b) = (cfg.patterns, cfg.dim, cfg.batch);
    let setup = std::time::Instant::now();
    let raw = gaussian_patterns(p, n)?;
    let mut queries = Array2::<f32>::zeros((b, n));
    let mut noise = vec![0.0f32; n];
    for (q, mut row) in queries.rows_mut().into_iter().enumerate() {
        fill(
            PatternKind::Gaussian,
            0,
            Stream::Queries,
            q as u64,
            &mut noise,
        );
        let target = raw.row(q % p);
        row.iter_mut()
            .zip(target.iter().zip(&noise))
            .for_each(|(x, (t, e))| *x = t + 0.5 * e);
    }
    let retriever = Retriever::builder(Patterns::new(raw)?)
        .config(cfg.config)
        .storage(cfg.storage)
        .device(device.clone())
        .build()?;
    let setup_seconds = setup.elapsed().as_secs_f64();
    let mut steps_taken = Vec::new();
    let mut step = |q: &Array2<f32>| -> Result<(Vec<f32>, Option<f64>)> {
        Ok(match cfg.call {
            BenchCall::Step => {
                let (x, t) = retriever.step_timed(q.view())?;
                (x.into_raw_vec_and_offset().0, t)
            }
            BenchCall::Retrieve => {
                let r = retriever.retrieve(q.view())?;
                steps_taken = r.steps;
                (r.states.into_raw_vec_and_offset().0, None)
            }
            BenchCall::Energy => (
                retriever
                    .energy(q.view())?
                    .into_iter()
                    .map(|e| e as f32)
                    .collect(),
                None,
            ),
            BenchCall::Search { k } => (
                retriever
                    .search(q.view(), k)?
                    .scores
                    .into_raw_vec_and_offset()
                    .0,
                None,
            ),
        })
    };
    let (mut last, _) = step(&queries)?; // warm-up: pipelines, buffers, caches
    let mut seconds = Vec::with_capacity(cfg.steps);
    let mut gpu = Vec::with_capacity(cfg.steps);
    for _ in 0..cfg.steps {
        let start = std::time::Instant::now();
        let (out, device_seconds) = step(&queries)?;
        seconds.push(start.elapsed().as_secs_f64());
        gpu.extend(device_seconds);
        last = out;
    }
    let median = median_of(&seconds);
    let gpu_median = (gpu.len() == seconds.len()).then(|| median_of(&gpu));
    let bytes = match cfg.storage {
        dam::Storage::F32 => 4.0,
        dam::Storage::F16 => 2.0,
    };
    let mean_steps = (cfg.call == BenchCall::Retrieve)
        .then(|| steps_taken.iter().sum::<usize>() as f64 / steps_taken.len().max(1) as f64);
    let recall = match cfg.call {
        BenchCall::Search { k } => {
            let sample = queries.slice(ndarray::s![..b.min(RECALL_QUERIES), ..]);
            let got = retriever.search(sample, k)?;
            let exact =
                dam::cpu::reference::search(cfg.config.similarity, retriever.patterns(), sample, k);
            let hits: usize = got
                .ids
                .rows()
                .into_iter()
                .zip(exact.ids.rows())
                .map(|(g, e)| g.iter().filter(|id| e.iter().any(|x| x == *id)).count())
                .sum();
            Some(hits as f64 / exact.ids.len() as f64)
        }
        _ => None,
    };
    let flops = match cfg.call {
        BenchCall::Search { .. } | BenchCall::Energy => 2.0,
        BenchCall::Step | BenchCall::Retrieve => 4.0,
    };
    let device_name = retriever.device_name();
    Ok(BenchResult {
        gflops: flops * (b * p * n) as f64 / median / 1e9,
        pattern_gbps: (p * n) as f64 * bytes / median / 1e9,
        checksum: last.iter().map(|v| v.abs() as f64).sum(),
        mean_steps,
        seconds,
        median,
        gpu_median,
        setup_seconds,
        device_name,
        recall,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dam::{Projection, Similarity};

    #[test]
    fn the_json_line_has_the_contracts_keys_and_names_the_path() {
        let cfg = BenchConfig {
            patterns: 300,
            dim: 16,
            batch: 3,
            steps: 2,
            storage: dam::Storage::F32,
            config: Config {
                separation: Separation::Softmax { beta: 0.25 },
                dynamics: Dynamics::OneStep,
                ..Config::default()
            },
            call: BenchCall::Step,
        };
        let r = run(&cfg, &Device::Cpu).unwrap();
        assert_eq!(r.seconds.len(), 2);
        assert_eq!(r.median, median_of(&r.seconds));
        let line = json_line(&cfg, &r, &Device::Cpu).unwrap();
        // The contract's full key list is checked through the binary in tests/cli.rs.
        assert!(line["seconds_per_step"].as_f64().is_some_and(|v| v > 0.0));
        assert_eq!(line["path"], "cpu-fast");
        assert_eq!(line["device"], "cpu");
        assert_eq!(line["similarity"], "dot");
        assert_eq!(line["separation"], "softmax");
        assert_eq!(line["call"], "step");
        let search = BenchConfig {
            call: BenchCall::Search { k: 4 },
            ..cfg.clone()
        };
        let r = run(&search, &Device::Cpu).unwrap();
        let line = json_line(&search, &r, &Device::Cpu).unwrap();
        assert_eq!(line["path"], "cpu-search");
        assert_eq!(line["k"], 4);
        assert_eq!(line["recall"], 1.0);
        assert_eq!(line["seconds_per_step"].as_f64(), Some(r.median));
        let retrieve = BenchConfig {
            call: BenchCall::Retrieve,
            config: Config {
                similarity: Similarity::NegManhattan,
                separation: Separation::Polynomial { n: 3 },
                projection: Projection::Sphere,
                ..cfg.config
            },
            ..cfg.clone()
        };
        let fast = run(&retrieve, &Device::Cpu).unwrap();
        let plain = run(&retrieve, &Device::Reference).unwrap();
        assert_eq!(fast.mean_steps, Some(1.0));
        assert!(
            (fast.checksum - plain.checksum).abs() <= 1e-4 * plain.checksum,
            "fast {} vs reference {}",
            fast.checksum,
            plain.checksum
        );
        let line = json_line(&retrieve, &plain, &Device::Reference).unwrap();
        assert_eq!(line["path"], "cpu-reference");
        assert_eq!(line["device"], "reference");
        assert_eq!(line["separation"], "polynomial:3");
        assert_eq!(line["similarity"], "manhattan");
        assert_eq!(line["call"], "retrieve");
    }
}
