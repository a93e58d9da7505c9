//! `dam train`: a Krotov–Hopfield classifier ([`dam::learn::Classifier`]) trained on IDX
//! digits, with metrics.csv (a row per epoch, flushed), memories.safetensors (rewritten
//! after every epoch, so an interrupted run keeps the last completed epoch), memories.png
//! (the visible parts of the first 100 memories) and summary.json.

use std::io::Write;
use std::path::{Path, PathBuf};

use dam::learn::Classifier;
use ndarray::Array2;

use crate::args::invalid;
use crate::{ExperimentError, Result};

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

fn output(path: &Path, e: impl ToString) -> ExperimentError {
    ExperimentError::Output {
        path: path.display().to_string(),
        reason: e.to_string(),
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
