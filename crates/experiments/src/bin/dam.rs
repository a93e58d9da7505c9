//! `dam`: capacity experiments for dense associative memories.
//!
//! `dam` with no arguments runs a small spherical log-sum-exp sweep (N = 16, λ = 1). See
//! `dam capacity --help` and `dam merge --help`. Each command maps its arguments
//! (`dam_experiments::cli`) to a spec, runs it in the library with a progress bar here, and
//! prints one closing line.

use std::path::Path;

use clap::Parser;
use dam_experiments::cli::{
    open_device, BenchArgs, CapacityArgs, CensusArgs, Cli, Command, CurveArgs, DevicesArgs,
    DrdamArgs, EnsemblesArgs, KernelFitArgs, LagrangianArgs, MergeArgs, MinimaArgs, MuonArgs,
    PhaseArgs, SequentialArgs, TrainArgs,
};
use dam_experiments::error::{prepare_out, Result};
use dam_experiments::output::{merge_runs, CapacitySummary};
use dam_experiments::phase::{PhaseEvent, PhaseRow};
use dam_experiments::search::{SearchSpec, Target};
use dam_experiments::sweep::{SweepProgress, SweepSpec};
use dam_experiments::{
    bench, census, curve, drdam, ensemble_curve, kernel_fit, kernel_fit_plot, lagrangian, minima,
    muon, muon_plot, phase, phase_plot, search, sequential, sequential_plot, sweep, train,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

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
        Some(Command::Phase(args)) => phase(&args),
        Some(Command::Minima(args)) => minima(&args),
        Some(Command::Lagrangian(args)) => lagrangian_cmd(&args),
        Some(Command::Muon(args)) => muon_cmd(&args),
        Some(Command::KernelFit(args)) => kernel_fit_cmd(&args),
        Some(Command::Sequential(args)) => sequential_cmd(&args),
        None => {
            eprintln!("dam: no command given; running the default sweep (spherical patterns, N = 16, λ = 1, log-sum-exp). See `dam --help`.");
            capacity(&CapacityArgs::default_sweep())
        }
    };
    if let Err(e) = result {
        eprintln!("dam: error: {e}");
        std::process::exit(2);
    }
}

/// The device for `--device`; `auto` says on stderr which one it chose and why.
fn device_of(name: &str) -> Result<dam::Device> {
    let (device, auto) = open_device(name)?;
    if let Some(reason) = auto {
        eprintln!("dam: device {reason}");
    }
    Ok(device)
}

/// A progress bar of `len` steps, drawn with `template` (indicatif's default without one).
fn bar(len: usize, template: Option<&str>) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    if let Some(t) = template {
        bar.set_style(ProgressStyle::with_template(t).expect("valid template"));
    }
    bar
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

/// `P` or `none`.
fn or_none<T: ToString>(value: Option<T>) -> String {
    value.map_or("none".into(), |v| v.to_string())
}

/// `dam capacity`: a sweep over the loads, or with `--search` a bisection.
fn capacity(args: &CapacityArgs) -> Result<()> {
    let (sweep, loads) = args.sweep()?;
    let mut device = device_of(&args.device)?;
    // The log-sum-ReLU sweep runs on the CPU: `auto` (without DAM_DEVICE) does not pick a
    // device that refuses it.
    if sweep.energy == dam_experiments::Energy::Lsr
        && matches!(
            args.device.trim().to_ascii_lowercase().as_str(),
            "auto" | ""
        )
        && std::env::var_os("DAM_DEVICE").is_none()
        && !matches!(device, dam::Device::Cpu | dam::Device::Reference)
    {
        eprintln!("dam: device cpu: --energy lsr runs on the CPU (--device auto)");
        device = dam::Device::Cpu;
    }
    if let Some(target) = args.search() {
        return capacity_search(args, sweep, &loads, &device, target);
    }
    let bar = bar(
        sweep.shard_trials() * loads.len(),
        Some("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} trials, {msg} (ETA {eta})"),
    );
    let spec = SweepSpec {
        sweep,
        loads,
        out: args.out.clone(),
        args: args.record(),
    };
    let summary = sweep::run(&spec, &device, |event| match event {
        SweepProgress::Load { patterns, alpha } => {
            bar.set_message(format!("P = {patterns} (α = {alpha:.4})"))
        }
        SweepProgress::Trials(done) => bar.inc(done as u64),
        SweepProgress::Point(r) => say(
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
        ),
    })?;
    bar.finish_and_clear();
    report(&args.out, summary);
    Ok(())
}

/// `dam capacity --search`: bisection between the first and last load.
fn capacity_search(
    args: &CapacityArgs,
    sweep: dam_experiments::Sweep,
    loads: &[u64],
    device: &dam::Device,
    target: Target,
) -> Result<()> {
    let spec = SearchSpec {
        sweep,
        target,
        bracket: (loads[0], loads[loads.len() - 1]),
        out: args.out.clone(),
        args: args.record(),
    };
    let bar = ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let report = search::run(&spec, device, |r| {
        say(
            &bar,
            format!(
                "P = {:>12}  success {}/{} = {:.3}  {:.2} s",
                r.patterns, r.successes, r.trials, r.success_rate, r.seconds
            ),
        );
    })?;
    bar.finish_and_clear();
    let outcome = &report.outcome;
    if let Some(note) = &outcome.note {
        eprintln!("dam: {note}");
    }
    println!(
        "search={} patterns={} bracket={}..{} probes={} wrote {}/search.csv, summary.json",
        target.name(),
        or_none(outcome.patterns),
        outcome.bracket.0,
        outcome.bracket.1,
        report.summary["probes"],
        args.out.display()
    );
    Ok(())
}

/// The closing line of `dam capacity` and `dam merge`.
fn report(out: &Path, summary: CapacitySummary) {
    let alpha = |a: Option<f64>| a.map_or("none".into(), |a| format!("{a:.4}"));
    println!(
        "alpha_half={} theory={} device={} ({}) wrote {}/results.csv, summary.json, capacity.svg",
        alpha(summary.alpha_half),
        alpha(summary.predicted_alpha_half()),
        summary.device,
        summary.adapter,
        out.display()
    );
}

/// `dam merge`: shards of `dam phase` (folders with a phase.csv) or of `dam capacity`.
fn merge(args: &MergeArgs) -> Result<()> {
    if args.dirs.iter().any(|d| d.join("phase.csv").is_file()) {
        let summary = phase_plot::merge_runs(&args.dirs, &args.out)?;
        phase_report(&args.out, &summary);
        return Ok(());
    }
    report(&args.out, merge_runs(&args.dirs, &args.out)?);
    Ok(())
}

/// The closing line of `dam phase` and of `dam merge` of phase runs.
fn phase_report(out: &Path, summary: &serde_json::Value) {
    let boundary: Vec<String> = summary["boundary"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            let alpha = b["alpha"]
                .as_f64()
                .map_or("none".into(), |a| format!("{a:.4}"));
            let theory = b["theory_alpha_c"]
                .as_f64()
                .map_or(String::new(), |a| format!(" (theory {a:.4})"));
            format!("T={}: {alpha}{theory}", b["T"])
        })
        .collect();
    // Many temperatures: the first three and the last two (summary.json has them all).
    let shown = if boundary.len() > 6 {
        let tail = &boundary[boundary.len() - 2..];
        format!("{}, …, {}", boundary[..3].join(", "), tail.join(", "))
    } else {
        boundary.join(", ")
    };
    println!(
        "rows={} boundary alpha {} device={} wrote {}/phase.csv, summary.json, phase.svg",
        summary["rows"],
        shown,
        summary["device"].as_str().unwrap_or("?"),
        out.display()
    );
}

/// `dam phase`.
fn phase(args: &PhaseArgs) -> Result<()> {
    let spec = args.spec()?;
    let device = device_of(&args.device)?;
    let (device_name, adapter) = device.describe()?;
    prepare_out(&args.out)?;
    let csv_path = args.out.join("phase.csv");
    let done: Vec<PhaseRow> = if args.resume && csv_path.is_file() {
        phase::read_csv(&csv_path)?
    } else {
        Vec::new()
    };
    let cells = phase::remaining(&spec, &done)?;
    if args.resume {
        eprintln!(
            "dam: resuming: {} rows in {}, {cells} cells to run",
            done.len(),
            csv_path.display()
        );
    }
    let mut csv = phase::PhaseCsv::open(&csv_path, args.resume)?;
    let bar = bar(
        cells * spec.steps(),
        Some("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} cell-steps (ETA {eta})"),
    );
    let start = std::time::Instant::now();
    let rows = phase::run(&spec, &device, &done, |event| {
        match event {
            PhaseEvent::Steps { steps, cells } => bar.inc((steps * cells) as u64),
            PhaseEvent::Rows(rows) => {
                csv.push(rows)?;
                for r in rows {
                    say(
                        &bar,
                        format!(
                            "α = {:.4}  T = {:.4}  N = {}  M = {}  disorder {}  ⟨φ⟩ = {:.4}  q12 = {}  acceptance {:.3}",
                            r.alpha,
                            r.t,
                            r.n,
                            r.patterns,
                            r.disorder,
                            r.phi(),
                            r.q12.map_or("-".into(), |q| format!("{q:.4}")),
                            r.acceptance
                        ),
                    );
                }
            }
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    // Pattern·state products: every chain meets every pattern once per step.
    let products: f64 = rows
        .iter()
        .map(|r| (spec.replicas * spec.steps()) as f64 * r.patterns as f64)
        .sum();
    let multiply_adds: f64 = rows
        .iter()
        .map(|r| (spec.replicas * spec.steps()) as f64 * r.patterns as f64 * r.n as f64)
        .sum();
    let batches: std::collections::BTreeSet<(u64, usize)> = rows
        .iter()
        .map(|r| (r.alpha.to_bits(), r.disorder))
        .collect();
    let batch_steps = (batches.len() * spec.steps()) as f64;
    if !rows.is_empty() {
        let drift = rows.iter().map(|r| r.drift).sum::<f64>() / rows.len() as f64;
        if drift.abs() > phase::DRIFT_WARNING {
            eprintln!(
                "dam: warning: ⟨φ⟩ still moves between the halves of the sampled steps (mean \
                 drift {drift:+.4}): the chains have not settled; raise --equilibrate (now {})",
                spec.equilibrate
            );
        }
    }
    let mut all = done;
    all.extend(rows);
    let all = phase::merge_rows(vec![all])?;
    let summary = phase_plot::write_outputs(
        &args.out,
        spec.energy,
        &all,
        json!({
            "device": device_name,
            "adapter": adapter,
            "seconds": seconds,
            "products": products,
            "products_per_second": products / seconds,
            "multiply_adds_per_second": multiply_adds / seconds,
            "seconds_per_step": if batch_steps > 0.0 { seconds / batch_steps } else { 0.0 },
            "equilibrate": spec.equilibrate,
            "sample": spec.sample,
            "args": args,
        }),
    )?;
    phase_report(&args.out, &summary);
    Ok(())
}

/// `dam capacity-curve`.
fn capacity_curve(args: &CurveArgs) -> Result<()> {
    let spec = args.spec()?;
    let device = device_of(&args.common.device)?;
    let bar = bar(spec.dims.len() * spec.energies.len(), None);
    let rows = curve::run(&spec, &device, |r| {
        say(
            &bar,
            format!(
                "{} N = {:>4}: P = {}  (estimate {})  {} probes, {:.2} s",
                r.energy,
                r.dim,
                or_none(r.patterns),
                r.estimate.map_or("-".into(), |e| format!("{e:.1}")),
                r.probes,
                r.seconds
            ),
        );
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    println!(
        "points={} wrote {}/curve.csv, curve.svg",
        rows.len(),
        spec.out.display()
    );
    Ok(())
}

/// `dam capacity-ensembles`.
fn capacity_ensembles(args: &EnsemblesArgs) -> Result<()> {
    let spec = args.spec()?;
    let device = device_of(&args.common.device)?;
    let bar = bar(
        spec.values.len() * spec.degrees.len(),
        Some("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} searches"),
    );
    let rows = ensemble_curve::run(&spec, &device, |r| {
        let note = r
            .note
            .as_ref()
            .map_or(String::new(), |n| format!("  ({n})"));
        say(
            &bar,
            format!(
                "n = {} {:?} {}: P = {}  {} probes, {:.2} s{note}",
                r.degree,
                r.family,
                r.parameter,
                or_none(r.patterns),
                r.probes,
                r.seconds,
            ),
        );
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    println!(
        "points={} wrote {}/ensembles.csv, ensembles.svg",
        rows.len(),
        spec.out.display()
    );
    Ok(())
}

/// `dam train`.
fn train(args: &TrainArgs) -> Result<()> {
    let spec = args.spec();
    let device = device_of(&args.device)?;
    let bar = bar(
        spec.epochs,
        Some("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} epochs, {msg} (ETA {eta})"),
    );
    let report = train::run(&spec, &device, |row| {
        bar.set_message(format!("test error {:.2} %", row.test_error));
        say(
            &bar,
            format!(
                "epoch {:>4}: loss {:.4e}  train {:.2} %  test {:.2} %  {:.2} s",
                row.epoch, row.loss, row.train_error, row.test_error, row.seconds
            ),
        );
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    println!(
        "test_error={:.2} train_error={:.2} epochs={} device={} wrote {}/metrics.csv, memories.safetensors, memories.png, summary.json",
        report.last.test_error,
        report.last.train_error,
        report.epochs,
        report.device,
        spec.out.display()
    );
    Ok(())
}

/// `dam census`.
fn census(args: &CensusArgs) -> Result<()> {
    let spec = args.spec();
    let device = device_of(&args.device)?;
    let bar = bar(
        spec.starts,
        Some("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} starts (ETA {eta})"),
    );
    let report = census::run(&spec, &device, |k| bar.inc(k as u64))?;
    bar.finish_and_clear();
    let census = &report.census;
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
        report.device,
        spec.out.display()
    );
    Ok(())
}

/// `dam minima`: one line per β on stdout, warnings on stderr, then the files written.
fn minima(args: &MinimaArgs) -> Result<()> {
    let spec = args.spec()?;
    let bar = bar(
        spec.betas.len(),
        Some("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} β (ETA {eta})"),
    );
    let options = spec.options.clone();
    let report = minima::run(&spec, |r| {
        let descent = r.descent.as_ref().map_or("no descent".into(), |d| {
            format!(
                "descent reached {} of {} from {} starts",
                r.minima.len() - d.unreached,
                r.minima.len(),
                d.starts
            )
        });
        bar.suspend(|| {
            println!(
                "beta={} stored={} emergent={} total={} candidates={} ({descent}, {:.2} s)",
                r.beta,
                r.stored(),
                r.emergent(),
                r.minima.len(),
                r.candidates,
                r.seconds
            );
            if let Some(d) = r.descent.as_ref() {
                if !d.outside.is_empty() {
                    let largest = d.outside.iter().map(|m| m.split(';').count()).max();
                    let mut listed = d.outside[..d.outside.len().min(5)].join(", ");
                    if d.outside.len() > 5 {
                        listed.push_str(", …");
                    }
                    eprintln!(
                        "dam: warning: β = {}: descent reached {} fixed point(s) the enumeration \
                         does not have (supports of up to {} patterns: {listed}); raise \
                         --max-support (now {})",
                        r.beta,
                        d.outside.len(),
                        largest.unwrap_or(0),
                        options.max_support
                    );
                }
                let stuck = d.starts - d.converged;
                if stuck > 0 {
                    eprintln!(
                        "dam: warning: β = {}: {stuck} of {} starts reached no fixed point \
                         ({} within --max-iter {}, {} lost their support)",
                        r.beta,
                        d.starts,
                        stuck - d.lost,
                        options.max_iter,
                        d.lost
                    );
                }
            }
        });
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    println!(
        "betas={} patterns={} dim={} descent_mismatches={} wrote {}/minima.csv, summary.json, minima.svg",
        report.results.len(),
        report.patterns,
        report.dim,
        report.summary["descent_mismatches"],
        spec.out.display()
    );
    Ok(())
}

/// `dam bench`.
fn bench(args: &BenchArgs) -> Result<()> {
    let cfg = args.config()?;
    let device = args.with_kernel(device_of(args.device_name()?)?);
    let r = bench::run(&cfg, &device)?;
    let line = bench::json_line(&cfg, &r, &device)?;
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
            path.as_str().unwrap_or("?"), adapter.as_str().unwrap_or("?"), args.patterns, args.dim, args.batch, cfg.storage, r.median, args.steps, r.gflops, r.pattern_gbps
        );
    }
    Ok(())
}

/// `dam drdam`.
fn drdam(args: &DrdamArgs) -> Result<()> {
    let cfg = args.config();
    let device = device_of(&args.device)?;
    let (device_name, adapter) = device.describe()?;
    prepare_out(&args.out)?;
    let bar = bar(cfg.features.len() * cfg.trials, None);
    let rows = drdam::run(&cfg, &device, || bar.inc(1))?;
    bar.finish_and_clear();
    let slope = drdam::write_outputs(&args.out, &cfg, &rows, &device, json!(args))?;
    for r in rows.iter().filter(|r| r.failed_trials > 0) {
        eprintln!(
            "dam: warning: Y = {}: {} of {} trials had φ(x)·T ≤ 0 (no energy; large β or too \
             few features) and are left out of the means",
            r.features, r.failed_trials, cfg.trials
        );
    }
    if let Some(s) = slope.filter(|&s| s > drdam::SLOPE_WARNING) {
        eprintln!(
            "dam: warning: the energy error does not fall like 1/√Y here (slope {s:.3}); \
             β·‖x − ξ‖² is too large for these feature counts (the large-β regime, see README)"
        );
    }
    println!(
        "energy error log-log slope {} (1/√Y: -0.5) device={device_name} ({adapter}) wrote {}/results.csv, summary.json, drdam.svg",
        slope.map_or("none".into(), |s| format!("{s:.3}")),
        args.out.display()
    );
    Ok(())
}

/// `dam lagrangian`.
fn lagrangian_cmd(args: &LagrangianArgs) -> Result<()> {
    let cfg = args.config()?;
    let device = device_of(&args.device)?;
    let (device_name, adapter) = device.describe()?;
    prepare_out(&args.out)?;
    let bar = bar(cfg.steps, None);
    let outcome = lagrangian::run(&cfg, &device, || bar.inc(1))?;
    bar.finish_and_clear();
    let fraction = lagrangian::write_outputs(&args.out, &cfg, &outcome, &device, json!(args))?;
    println!(
        "retrieved {:.3} of {} queries, largest energy increase {:.1e} (relative {:.1e}) device={device_name} ({adapter}) wrote {}/trajectory.csv, summary.json, energy.svg",
        fraction,
        cfg.batch,
        outcome.largest_energy_increase,
        outcome.largest_relative_energy_increase,
        args.out.display()
    );
    Ok(())
}

/// `dam muon`.
fn muon_cmd(args: &MuonArgs) -> Result<()> {
    let (spec, steps) = args.spec()?;
    let device = device_of(&args.device)?;
    prepare_out(&args.out)?;
    let bar = bar(spec.steps, None);
    let (report, sweep) = match &steps {
        Some(steps) => {
            let s = muon::sweep(&spec, steps, &device, |t| bar.set_position(t as u64))?;
            (s.longest.clone(), Some(s))
        }
        None => (
            muon::run(&spec, &device, |t| bar.set_position(t as u64))?,
            None,
        ),
    };
    bar.finish_and_clear();
    muon_plot::write_outputs(&args.out, &spec, &report, sweep.as_ref(), json!(args))?;
    let (kind, adapter) = &report.device;
    let fit = sweep.as_ref().map_or(String::new(), |s| match s.fit {
        Some(f) => format!(" exponent={:.4}", f.exponent),
        None => " exponent=none".into(),
    });
    println!(
        "{} T={} final_loss={:.6e} floor={:.6e}{fit} ({:.2} s) device={kind} ({adapter}) wrote {}/loss.csv, summary.json, loss.svg{}",
        spec.optimizer.name(),
        spec.steps,
        report.final_loss(),
        report.lower_bound,
        report.seconds,
        args.out.display(),
        if sweep.is_some() { ", sweep.csv" } else { "" }
    );
    Ok(())
}

/// `dam sequential`: a line per task on stderr, then the summary and the files written.
fn sequential_cmd(args: &SequentialArgs) -> Result<()> {
    let spec = args.spec();
    let device = device_of(&args.device)?;
    let bar = bar(
        spec.tasks,
        Some("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} tasks (ETA {eta})"),
    );
    let report = sequential::run(&spec, &device, |done| {
        let row: Vec<String> = done.accuracy.iter().map(|a| format!("{a:.1}")).collect();
        say(
            &bar,
            format!(
                "after task {:>2}: accuracy % [{}]  {:.1} s",
                done.task + 1,
                row.join(", "),
                done.seconds
            ),
        );
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    let joint_mean = report
        .joint
        .as_ref()
        .map(|a| a.iter().sum::<f64>() / a.len() as f64);
    let title = format!(
        "{} on {} permuted-digit tasks: K = {}, n = {}{}, {} epochs per task",
        report.method,
        spec.tasks,
        spec.memories,
        spec.degree,
        if spec.rectified { " (rectified)" } else { "" },
        spec.epochs
    );
    sequential_plot::write_svg(
        &spec.out.join("accuracy.svg"),
        &report.sequence.accuracy,
        joint_mean,
        &title,
    )?;
    let s = &report.summary;
    let num = |v: &serde_json::Value| v.as_f64().map_or("none".into(), |x| format!("{x:.2}"));
    println!(
        "method={} average_accuracy={} backward_transfer={} forgetting={}{} wrote {}/accuracy.csv, summary.json, accuracy.svg",
        report.method,
        num(&s["average_accuracy"]),
        num(&s["backward_transfer"]),
        num(&s["forgetting"]),
        joint_mean.map_or(String::new(), |j| format!(" joint={j:.2}")),
        spec.out.display()
    );
    Ok(())
}

/// `dam kernel-fit`.
fn kernel_fit_cmd(args: &KernelFitArgs) -> Result<()> {
    let spec = args.spec()?;
    let device = device_of(&args.device)?;
    // The capacity counts are checked against M before anything is trained.
    let capacity = match &args.capacity {
        None => None,
        Some(counts) => {
            let (memories, _) = kernel_fit::load(&spec)?;
            let cap =
                kernel_fit::CapacitySpec::parse(counts, args.capacity_noise, memories.nrows())?;
            Some((cap, memories))
        }
    };
    prepare_out(&args.out)?;
    let epochs = bar(spec.epochs, None);
    let report = kernel_fit::run(&spec, &device, |e| epochs.set_position(e as u64))?;
    epochs.finish_and_clear();
    kernel_fit::write_outputs(&args.out, &spec, &report, json!(args))?;
    kernel_fit_plot::write_svg(&args.out.join("loss.svg"), &report)?;
    if let Some((cap, memories)) = &capacity {
        let counts = bar(cap.counts.len(), None);
        let rows = kernel_fit::capacity(&spec, cap, memories.view(), &device, |_| counts.inc(1))?;
        counts.finish_and_clear();
        kernel_fit::write_capacity(&args.out, cap, &rows)?;
        for r in &rows {
            println!(
                "P={} queries={} success identity {:.3} learned {:.3} (min separation {:.4} -> {:.4})",
                r.patterns,
                r.queries,
                r.success_identity,
                r.success_learned,
                r.min_separation_identity,
                r.min_separation_learned
            );
        }
        println!(
            "P_1/2 identity {:?} learned {:?}; wrote capacity.csv",
            kernel_fit::patterns_half(&rows, false),
            kernel_fit::patterns_half(&rows, true)
        );
    }
    let (kind, adapter) = &report.device;
    let share = kernel_fit::KernelFitReport::share_single;
    println!(
        "M={} N={} D={} tau={} min_separation {:.4} -> {:.4}, share of |p|=1 {:.3} -> {:.3} ({:.2} s) device={kind} ({adapter}) wrote {}/feature_map.safetensors, loss.csv, summary.json, loss.svg",
        report.m,
        report.n,
        spec.feature_dim,
        spec.tau,
        report.min_separation_before,
        report.min_separation_after,
        share(&report.metastable_before),
        share(&report.metastable_after),
        report.seconds,
        args.out.display()
    );
    Ok(())
}

/// `dam devices`: the wgpu adapters, and what `--device auto` picks.
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
