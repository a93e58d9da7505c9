//! `dam train`: a Krotov–Hopfield classifier ([`dam::learn::Classifier`]) trained on IDX
//! digits, with metrics.csv (a row per epoch, flushed), memories.safetensors (rewritten
//! after every epoch, so an interrupted run keeps the last completed epoch), memories.png
//! (the visible parts of the first 100 memories) and summary.json: [`run`] of a
//! [`TrainSpec`].

use std::io::Write;
use std::path::{Path, PathBuf};

use dam::learn::{
    Classifier, ClassifierModel, Optimizer, ParameterNames, Recipe, RecipeOverrides,
    TrainingMonitor,
};
use ndarray::Array2;

use crate::error::{invalid, output, prepare_out, Result};

/// The classes of the digits.
const CLASSES: usize = 10;

/// `dam train`: the model, the schedule and where to write.
#[derive(Debug, Clone)]
pub struct TrainSpec {
    /// Folder of IDX files (train-* and t10k-*, gzipped or raw); `None`: the shipped digits.
    pub data: Option<PathBuf>,
    /// Number of memories K.
    pub memories: usize,
    /// Degree n of F.
    pub degree: u32,
    /// F = max(x, 0)ⁿ instead of xⁿ.
    pub rectified: bool,
    /// m in the loss Σ (c − t)^{2m}.
    pub loss_power: u32,
    /// Temperature T (β = 1/Tⁿ) of the first epoch; `None`: the recipe's for the degree
    /// ([`Recipe::recommended`]). Given without `temperature_final`, T stays fixed.
    pub temperature: Option<f64>,
    /// Final temperature of a linear ramp over `ramp_epochs` ([`dam::learn::ramp`]);
    /// `None`: the recipe's (T fixed when `temperature` is given alone).
    pub temperature_final: Option<f64>,
    /// Length in epochs of the temperature ramp; `None`: the recipe's.
    pub ramp_epochs: Option<usize>,
    /// Fixed momentum p ∈ [0, 1); `None`: the ramp 0.5 → 0.9 over the first 100 epochs.
    pub momentum: Option<f64>,
    /// Epochs (at least one).
    pub epochs: usize,
    /// Minibatch size; `None`: the recipe's.
    pub batch: Option<usize>,
    /// Initial learning rate ε₀; `None`: the recipe's.
    pub lr: Option<f64>,
    /// Learning-rate decay f per epoch (ε = ε₀ f^epoch); `None`: the recipe's.
    pub lr_decay: Option<f64>,
    /// Seed of the initial memories and of the sample order.
    pub seed: u64,
    /// Start from the memories of a memories.safetensors written by a previous run.
    pub init: Option<PathBuf>,
    /// The largest random shift of the training images (`--shift`); `None`: the recipe's.
    pub shift: Option<usize>,
    /// The optimiser (`--optimizer`, `--ns-steps`).
    pub optimizer: Optimizer,
    /// The output folder (created if missing).
    pub out: PathBuf,
    /// The command's arguments, as summary.json records them (`args`).
    pub args: serde_json::Value,
}

/// What [`run`] trained and wrote.
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// The last epoch's row of metrics.csv.
    pub last: EpochRow,
    /// Epochs the memories have been trained, counting those of `init`.
    pub epochs: usize,
    /// `cpu`, `reference` or `wgpu`.
    pub device: String,
    /// summary.json as written.
    pub summary: serde_json::Value,
}

/// Trains the classifier of `spec` on `device`, epoch by epoch: after each, a row of
/// metrics.csv (flushed), memories.safetensors rewritten, and `progress(row)`; at the end
/// memories.png and summary.json.
pub fn run(
    spec: &TrainSpec,
    device: &dam::Device,
    mut progress: impl FnMut(&EpochRow),
) -> Result<TrainReport> {
    // A setting not given takes the recipe's value for this degree.
    let mut recipe = Recipe::recommended(spec.degree, spec.rectified).with(&RecipeOverrides {
        temperature: spec.temperature,
        temperature_final: spec.temperature_final,
        ramp_epochs: spec.ramp_epochs,
        batch: spec.batch,
        lr: spec.lr,
        lr_decay: spec.lr_decay,
        momentum: spec.momentum,
        shift: spec.shift,
    });
    let model = ClassifierModel {
        degree: spec.degree,
        rectified: spec.rectified,
        temperature: recipe.temperature,
        loss_power: spec.loss_power,
        classes: CLASSES,
    };
    model.validate()?;
    recipe.validate()?;
    if spec.epochs == 0 {
        return Err(invalid("--epochs", "0", "at least one epoch"));
    }
    if spec.memories == 0 {
        return Err(invalid("--memories", "0", "K must be at least 1"));
    }
    let data = spec.data.clone().unwrap_or_else(dam::mnist::data_dir);
    let train_set = load_digits(&data, "train", CLASSES)?;
    let test_set = load_digits(&data, "t10k", CLASSES)?;
    let visible = train_set.images.ncols();
    // Square images are shifted by a pixel unless `--shift` says otherwise.
    recipe.shift = spec
        .shift
        .unwrap_or_else(|| dam::learn::default_shift(visible));
    if recipe.shift > 0 {
        dam::learn::shift_side(visible, recipe.shift).map_err(|e| match e {
            dam::Error::InvalidParameter { value, reason, .. } => {
                invalid("--shift", &value, reason)
            }
            other => other.into(),
        })?;
    }
    let options = recipe.epoch_options(spec.seed);
    let mut clf = match &spec.init {
        Some(path) => {
            let c = Classifier::load_file(path, device)?;
            // The temperature follows this run's schedule; the rest of the model must match.
            let same = ClassifierModel {
                temperature: model.temperature,
                ..*c.model()
            } == model;
            if c.memories().ncols() != visible + CLASSES || !same {
                return Err(invalid(
                    "--init",
                    &path.display().to_string(),
                    format!(
                        "holds K × {} memories of {:?}; this run asks N + C = {} and {model:?}",
                        c.memories().ncols(),
                        c.model(),
                        visible + CLASSES
                    ),
                ));
            }
            c
        }
        None => Classifier::random(model, spec.memories, visible, spec.seed, device)?,
    };
    clf.set_optimizer(spec.optimizer).map_err(|e| match e {
        dam::Error::InvalidParameter { value, reason, .. } => invalid("--ns-steps", &value, reason),
        dam::Error::Unsupported { .. } => invalid(
            "--optimizer",
            spec.optimizer.name(),
            "muon runs on --device cpu or reference",
        ),
        other => other.into(),
    })?;
    let (device_name, adapter) = device.describe()?;
    prepare_out(&spec.out)?;
    let mut metrics = Metrics::create(&spec.out)?;
    let memories_path = spec.out.join("memories.safetensors");
    let mut last: Option<EpochRow> = None;
    // Stops a run whose outputs are saturated or whose loss has stopped moving, naming the
    // flag to change (the rows so far stay in metrics.csv).
    let mut monitor = TrainingMonitor::new(ParameterNames::FLAGS);
    for _ in 0..spec.epochs {
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
        progress(&row);
        monitor.check(&clf)?;
        last = Some(row);
    }
    write_memories_png(&spec.out, &clf)?;
    let last = last.ok_or_else(|| invalid("--epochs", "0", "at least one epoch"))?;
    // The fraction of test digits on which the feed-forward dual predicts the same class.
    let mine = clf.predict(test_set.images.view())?;
    let dual = clf.dual().predict(test_set.images.view())?;
    let dual_agreement =
        mine.iter().zip(&dual).filter(|(a, b)| a == b).count() as f64 / mine.len() as f64;
    let summary = serde_json::json!({
        "test_error": last.test_error,
        "train_error": last.train_error,
        "epochs": clf.epochs(),
        "device": device_name,
        "adapter": adapter,
        "args": spec.args,
        "recipe": recipe_json(&recipe),
        "votes_per_memory": votes_histogram(&clf),
        "dominant_memory_fraction": clf.dominant_fraction(test_set.images.view())?,
        "dual_agreement": dual_agreement,
        "seconds_per_epoch": last.seconds,
    });
    write_summary(&spec.out, &summary)?;
    Ok(TrainReport {
        last,
        epochs: clf.epochs(),
        device: device_name,
        summary,
    })
}

/// The schedule a run used, as summary.json records it (`recipe`).
pub fn recipe_json(recipe: &Recipe) -> serde_json::Value {
    serde_json::json!({
        "temperature": recipe.temperature,
        "temperature_final": recipe.temperature_final,
        "ramp_epochs": recipe.ramp_epochs,
        "batch": recipe.batch,
        "lr": recipe.lr,
        "lr_decay": recipe.lr_decay,
        "momentum": recipe.momentum,
        "shift": recipe.shift,
    })
}

/// A labelled image set: B × N pixels in [−1, 1] and B labels.
#[derive(Debug, Clone)]
pub struct Digits {
    /// B × N.
    pub images: Array2<f64>,
    /// B labels.
    pub labels: Vec<usize>,
}

/// Reads `{prefix}-images-idx3-ubyte[.gz]` and `{prefix}-labels-idx1-ubyte[.gz]` from
/// `dir`; labels must be below `classes`, counts must match, pixels finite.
pub fn load_digits(dir: &Path, prefix: &str, classes: usize) -> Result<Digits> {
    let find = |kind: &str| -> Result<PathBuf> {
        for name in [format!("{prefix}-{kind}.gz"), format!("{prefix}-{kind}")] {
            let p = dir.join(&name);
            if p.exists() {
                return Ok(p);
            }
        }
        Err(invalid(
            "--data",
            &dir.display().to_string(),
            format!("no {prefix}-{kind}[.gz] in the folder"),
        ))
    };
    let images = dam::mnist::load_images(&find("images-idx3-ubyte")?, usize::MAX)?;
    let labels_path = find("labels-idx1-ubyte")?;
    let labels = dam::mnist::read_idx(&labels_path)?;
    if labels.dims.len() != 1 || labels.dims[0] != images.nrows() {
        return Err(invalid(
            "--data",
            &labels_path.display().to_string(),
            format!(
                "{} labels for {} images",
                labels.dims.first().copied().unwrap_or(0),
                images.nrows()
            ),
        ));
    }
    if let Some(i) = labels.data.iter().position(|&l| l as usize >= classes) {
        return Err(invalid(
            "--data",
            &labels_path.display().to_string(),
            format!(
                "label {} of image {i} is not below {classes}",
                labels.data[i]
            ),
        ));
    }
    Ok(Digits {
        images: images.mapv(|v| v as f64),
        labels: labels.data.iter().map(|&l| l as usize).collect(),
    })
}

/// One row of metrics.csv.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EpochRow {
    /// 1-based epoch.
    pub epoch: usize,
    /// Summed minibatch loss of the epoch.
    pub loss: f64,
    /// Training error after the epoch (%).
    pub train_error: f64,
    /// Test error after the epoch (%).
    pub test_error: f64,
    /// Seconds of the epoch's training (evaluation excluded).
    pub seconds: f64,
}

/// metrics.csv, flushed row by row.
pub struct Metrics {
    writer: csv::Writer<std::fs::File>,
    path: PathBuf,
}

impl Metrics {
    /// Creates `out/metrics.csv` with its header.
    pub fn create(out: &Path) -> Result<Self> {
        let path = out.join("metrics.csv");
        let writer = csv::Writer::from_path(&path).map_err(|e| output(&path, e))?;
        Ok(Self { writer, path })
    }

    /// Appends and flushes one row.
    pub fn push(&mut self, row: &EpochRow) -> Result<()> {
        self.writer
            .serialize(row)
            .map_err(|e| output(&self.path, e))?;
        self.writer.flush().map_err(|e| output(&self.path, e))
    }
}

/// Writes memories.png: the visible parts (28 × 28) of the first 100 memories in a
/// 10 × 10 grid, −1 black, +1 white, one pixel gap, each pixel drawn 2 × 2.
pub fn write_memories_png(out: &Path, clf: &Classifier) -> Result<()> {
    let path = out.join("memories.png");
    let side = dam::mnist::SIDE;
    let mem = clf.memories();
    let count = mem.nrows().min(100);
    let cols = 10.min(count.max(1));
    let rows = count.div_ceil(cols).max(1);
    let cell = side + 1;
    let (w, h) = (2 * (cols * cell + 1), 2 * (rows * cell + 1));
    let mut img = vec![64u8; w * h];
    for k in 0..count {
        let (r0, c0) = ((k / cols) * cell + 1, (k % cols) * cell + 1);
        for y in 0..side {
            for x in 0..side {
                let v = mem[[k, y * side + x]].clamp(-1.0, 1.0);
                let g = ((v + 1.0) * 127.5).round() as u8;
                for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    img[(2 * (r0 + y) + dy) * w + 2 * (c0 + x) + dx] = g;
                }
            }
        }
    }
    let file = std::fs::File::create(&path).map_err(|e| output(&path, e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(|e| output(&path, e))?;
    writer
        .write_image_data(&img)
        .map_err(|e| output(&path, e))?;
    writer.finish().map_err(|e| output(&path, e))?;
    Ok(())
}

/// The votes-per-memory histogram: entry v counts the memories voting for v classes.
pub fn votes_histogram(clf: &Classifier) -> Vec<usize> {
    let mut hist = vec![0usize; clf.model().classes + 1];
    for v in clf.votes() {
        hist[v] += 1;
    }
    hist
}

/// Writes summary.json.
pub fn write_summary(out: &Path, summary: &serde_json::Value) -> Result<()> {
    let path = out.join("summary.json");
    let mut f = std::fs::File::create(&path).map_err(|e| output(&path, e))?;
    let text = serde_json::to_string_pretty(summary).map_err(|e| output(&path, e))?;
    writeln!(f, "{text}").map_err(|e| output(&path, e))
}
