//! Sequential (continual) learning of permuted tasks by the Krotov–Hopfield classifier
//! ([`crate::learn::Classifier`]).
//!
//! **Tasks.** Task t (0-based) is the digits with their pixels reordered by a fixed
//! permutation ([`permutation`]): task 0 keeps the identity (the original digits), task
//! t ≥ 1 a seeded Fisher–Yates permutation of the N pixels. The labels are unchanged, so
//! every task is as hard as the original; only the features differ.
//!
//! **Training.** [`train_sequence`] trains the tasks one after another, `epochs` epochs
//! each, and measures every task's test accuracy after each task (a T × T matrix). The
//! schedule ([`Recipe`]: temperature ramp, learning-rate decay, momentum ramp) runs on
//! across the tasks, as in one run of T × `epochs` epochs whose data changes: the
//! temperature of epoch e of the whole sequence is `recipe.temperature_at(e)`.
//! [`train_joint`] trains on all tasks at once (their training sets concatenated) for the
//! same T × `epochs` epochs and schedule: the upper bound.
//!
//! **Methods** ([`Method`]):
//!
//! * `naive`: no protection.
//! * `rehearsal:R`: after each task, R of its training items (a seeded choice; all of them
//!   when R exceeds the set) join a buffer, and every later epoch trains on the new task's
//!   items and the whole buffer, shuffled together.
//! * `pseudo:R`: as rehearsal, but the R items are made, not kept ([`pseudo_items`]):
//!   random states (pixels uniform in [−1, 1]) relaxed by [`PSEUDO_STEPS`] synchronous
//!   steps of the dense-associative-memory update on the visible part,
//!   x ← sgn(Σ_μ ξ^μ F′(ξ^μ·x / max_ν |ξ^ν·x|)) with the memories' visible parts ξ^μ and
//!   the classifier's F (the normalisation keeps large degrees finite and does not change
//!   the sign for F = xⁿ or max(x, 0)ⁿ), labelled by the classifier's prediction at the end
//!   of the task.
//! * `ewc:λ`, `mas:λ`, `si:c`: a quadratic penalty ½ λ Σ Ω ⊙ (ξ − ξ*)² around the memories
//!   ξ* at the end of the last task ([`Penalty`]). The importances Ω are, per task:
//!   EWC the diagonal empirical Fisher, the mean over the task's minibatches of the squared
//!   minibatch loss gradient; MAS the mean absolute minibatch gradient **of the loss** (the
//!   classifier's outputs are tanh-squashed and their norm carries no more information than
//!   the loss here); SI Zenke et al.'s path integral Σ_steps −g ⊙ Δξ of the task's
//!   (unpenalised) loss gradient g along the steps Δξ it took, divided by
//!   (ξ_end − ξ_start)² + [`SI_DAMPING`], negative entries set to 0. Each task's Ω is divided
//!   by its largest entry (so it lies in [0, 1]) and added to the running sum over the past
//!   tasks; the anchor ξ* is replaced by the memories at the end of the latest task (the
//!   running, "online" form: one anchor, importances accumulated).
//!   The classifier's optimiser moves each memory by ε V / max|V| (its own largest entry),
//!   so only the ratio of penalty to loss gradient matters, and the loss gradient's size
//!   changes by orders of magnitude with the degree and the temperature. The penalty's
//!   gradient is therefore measured in units of the minibatch's largest loss-gradient entry
//!   G: ∇ ← ∇L + λ G Ω ⊙ (ξ − ξ*). At λ = 1, an entry of full importance displaced by 1 is
//!   pulled back as hard as the most strongly driven entry is pushed. Defaults
//!   ([`Method::parse`] of a bare name): λ = [`DEFAULT_EWC`], c = [`DEFAULT_SI`],
//!   λ = [`DEFAULT_MAS`].
//! * `agem:R`: a buffer of R items per past task, as rehearsal, not trained on: before
//!   each step a reference gradient g_ref is computed on `batch` items drawn from it (seeded),
//!   and when g·g_ref < 0 the step's gradient is projected,
//!   g ← g − (g·g_ref / ‖g_ref‖²) g_ref ([`agem_project`]), over the whole K × (N + C)
//!   matrix.
//!
//! Methods with a gradient hook (EWC, SI, MAS, A-GEM) run on [`Device::Cpu`] and
//! [`Device::Reference`]; on wgpu they are [`Error::Unsupported`]. Naive, rehearsal and
//! pseudo-rehearsal run on any device.
//!
//! **Metrics** (acc\[l\]\[i\]: accuracy in % on task i's test set after training task l):
//! [`average_accuracy`] (mean of the last row), [`backward_transfer`] (mean over i < T − 1
//! of acc\[T−1\]\[i\] − acc\[i\]\[i\]) and [`forgetting`] (mean over i < T − 1 of
//! max_{l < T−1} acc\[l\]\[i\] − acc\[T−1\]\[i\]).

use std::time::Instant;

use ndarray::{concatenate, s, Array2, ArrayView2, Axis};

use crate::learn::{epoch_order, Classifier, EpochOptions, GradientStep, Recipe, StepHook};
use crate::{Device, Error, Result};

/// Default λ of `ewc`.
pub const DEFAULT_EWC: f64 = 10.0;
/// Default c of `si`.
pub const DEFAULT_SI: f64 = 10.0;
/// Default λ of `mas`.
pub const DEFAULT_MAS: f64 = 10.0;
/// SI's damping ξ in Ω = w / (Δ² + ξ).
pub const SI_DAMPING: f64 = 0.1;
/// Synchronous relaxation steps of a pseudo item ([`pseudo_items`]).
pub const PSEUDO_STEPS: usize = 3;

/// Mixes `task` into a seed so that each task draws its own numbers.
fn mix(seed: u64, salt: u64, task: usize) -> u64 {
    let mut z = seed ^ salt.rotate_left(17) ^ (task as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const PERMUTATION_SALT: u64 = 0x5045_524D;
const BUFFER_SALT: u64 = 0x4255_4646;
const PSEUDO_SALT: u64 = 0x5053_4555;
const AGEM_SALT: u64 = 0x4147_454D;

/// The pixel permutation of task `task` (0-based) over `pixels` pixels: the identity for
/// task 0, a seeded Fisher–Yates permutation (from `seed` and `task`) for the others.
/// Pixel j of a permuted image is pixel `perm[j]` of the original ([`permute`]).
pub fn permutation(pixels: usize, seed: u64, task: usize) -> Vec<usize> {
    if task == 0 {
        return (0..pixels).collect();
    }
    epoch_order(pixels, mix(seed, PERMUTATION_SALT, task), task)
}

/// `images` (B × N) with their columns reordered: column j of the result is column
/// `perm[j]` of `images`.
pub fn permute(images: ArrayView2<'_, f64>, perm: &[usize]) -> Result<Array2<f64>> {
    if perm.len() != images.ncols() {
        return Err(Error::DimensionMismatch {
            argument: "permutation (one entry per pixel)",
            expected: images.ncols(),
            actual: perm.len(),
        });
    }
    Ok(images.select(Axis(1), perm))
}

/// One task: its training and test images (B × N, pixels in [−1, 1]) and labels.
#[derive(Debug, Clone)]
pub struct Task {
    /// Training images.
    pub train: Array2<f64>,
    /// Their labels.
    pub train_labels: Vec<usize>,
    /// Test images.
    pub test: Array2<f64>,
    /// Their labels.
    pub test_labels: Vec<usize>,
}

/// `count` permuted tasks of one data set ([`permutation`] of `seed`; task 0 the identity).
pub fn permuted_tasks(
    train: ArrayView2<'_, f64>,
    train_labels: &[usize],
    test: ArrayView2<'_, f64>,
    test_labels: &[usize],
    count: usize,
    seed: u64,
) -> Result<Vec<Task>> {
    if count == 0 {
        return Err(Error::InvalidParameter {
            argument: "tasks",
            value: "0".into(),
            reason: "at least one task".into(),
        });
    }
    if train.ncols() != test.ncols() {
        return Err(Error::DimensionMismatch {
            argument: "test images (as many pixels as the training images)",
            expected: train.ncols(),
            actual: test.ncols(),
        });
    }
    (0..count)
        .map(|t| {
            let perm = permutation(train.ncols(), seed, t);
            Ok(Task {
                train: permute(train, &perm)?,
                train_labels: train_labels.to_vec(),
                test: permute(test, &perm)?,
                test_labels: test_labels.to_vec(),
            })
        })
        .collect()
}

/// A continual-learning method (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// No protection.
    Naive,
    /// A buffer of `per_task` items of every past task, trained on with each new task.
    Rehearsal {
        /// Items kept per past task (≥ 1).
        per_task: usize,
    },
    /// As rehearsal, with items made by relaxing random states ([`pseudo_items`]).
    Pseudo {
        /// Items made per past task (≥ 1).
        per_task: usize,
    },
    /// Elastic weight consolidation: diagonal empirical Fisher importances.
    Ewc {
        /// λ (> 0).
        lambda: f64,
    },
    /// Synaptic intelligence: path-integral importances.
    Si {
        /// c (> 0).
        c: f64,
    },
    /// Memory-aware synapses: mean absolute loss-gradient importances.
    Mas {
        /// λ (> 0).
        lambda: f64,
    },
    /// Averaged gradient episodic memory: the step's gradient projected against a
    /// reference gradient on a buffer of past items.
    Agem {
        /// Items kept per past task (≥ 1).
        per_task: usize,
    },
}

impl Method {
    /// Parses `naive`, `rehearsal:R`, `pseudo:R`, `ewc[:λ]`, `si[:c]`, `mas[:λ]` or
    /// `agem:R` (R ≥ 1 an integer, λ and c finite and > 0; a bare `ewc`, `si`, `mas` takes
    /// the default strength). Errors name `method`, the value and why.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidParameter {
            argument: "method",
            value: text.to_string(),
            reason,
        };
        let trimmed = text.trim().to_ascii_lowercase();
        let (name, value) = match trimmed.split_once(':') {
            Some((n, v)) => (n, Some(v)),
            None => (trimmed.as_str(), None),
        };
        let count = |what: &str| -> Result<usize> {
            let v = value.ok_or_else(|| {
                bad(format!(
                    "{what} needs the number of items per past task: {what}:R"
                ))
            })?;
            match v.parse::<usize>() {
                Ok(r) if r >= 1 => Ok(r),
                Ok(_) => Err(bad(format!("{what}:R needs R ≥ 1"))),
                Err(_) => Err(bad(format!("R = {v:?} is not a whole number"))),
            }
        };
        let strength = |what: &str, default: f64| -> Result<f64> {
            let Some(v) = value else {
                return Ok(default);
            };
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
                Ok(x) => Err(bad(format!(
                    "{what}'s strength must be finite and > 0, not {x}"
                ))),
                Err(_) => Err(bad(format!("{v:?} is not a number"))),
            }
        };
        match name {
            "naive" if value.is_none() => Ok(Method::Naive),
            "naive" => Err(bad("naive takes no value".into())),
            "rehearsal" => Ok(Method::Rehearsal {
                per_task: count("rehearsal")?,
            }),
            "pseudo" => Ok(Method::Pseudo {
                per_task: count("pseudo")?,
            }),
            "agem" => Ok(Method::Agem {
                per_task: count("agem")?,
            }),
            "ewc" => Ok(Method::Ewc {
                lambda: strength("ewc", DEFAULT_EWC)?,
            }),
            "si" => Ok(Method::Si {
                c: strength("si", DEFAULT_SI)?,
            }),
            "mas" => Ok(Method::Mas {
                lambda: strength("mas", DEFAULT_MAS)?,
            }),
            _ => Err(bad(
                "expected naive, rehearsal:R, pseudo:R, ewc:λ, si:c, mas:λ or agem:R".into(),
            )),
        }
    }

    /// The method's name: `naive`, `rehearsal`, `pseudo`, `ewc`, `si`, `mas` or `agem`.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Naive => "naive",
            Method::Rehearsal { .. } => "rehearsal",
            Method::Pseudo { .. } => "pseudo",
            Method::Ewc { .. } => "ewc",
            Method::Si { .. } => "si",
            Method::Mas { .. } => "mas",
            Method::Agem { .. } => "agem",
        }
    }

    /// Whether the method reaches into each step ([`StepHook`]): EWC, SI, MAS and A-GEM.
    pub fn needs_hook(&self) -> bool {
        matches!(
            self,
            Method::Ewc { .. } | Method::Si { .. } | Method::Mas { .. } | Method::Agem { .. }
        )
    }

    /// Checks that the method runs on `device`: the hooked methods need [`Device::Cpu`] or
    /// [`Device::Reference`].
    pub fn validate(&self, device: &Device) -> Result<()> {
        if self.needs_hook() && !matches!(device, Device::Cpu | Device::Reference) {
            return Err(Error::Unsupported {
                what: "this continual-learning method on this device",
                detail: format!(
                    "{} changes every step's gradient and runs on Device::Cpu or Device::Reference",
                    self
                ),
            });
        }
        Ok(())
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Method::Naive => write!(f, "naive"),
            Method::Rehearsal { per_task } => write!(f, "rehearsal:{per_task}"),
            Method::Pseudo { per_task } => write!(f, "pseudo:{per_task}"),
            Method::Ewc { lambda } => write!(f, "ewc:{lambda}"),
            Method::Si { c } => write!(f, "si:{c}"),
            Method::Mas { lambda } => write!(f, "mas:{lambda}"),
            Method::Agem { per_task } => write!(f, "agem:{per_task}"),
        }
    }
}

/// The mean over tasks of the accuracy after the last task (the last row of `acc`).
pub fn average_accuracy(acc: &[Vec<f64>]) -> f64 {
    match acc.last() {
        Some(last) if !last.is_empty() => last.iter().sum::<f64>() / last.len() as f64,
        _ => f64::NAN,
    }
}

/// The mean over tasks i < T − 1 of acc\[T−1\]\[i\] − acc\[i\]\[i\] (negative when earlier
/// tasks were forgotten); `None` for a single task.
pub fn backward_transfer(acc: &[Vec<f64>]) -> Option<f64> {
    let t = acc.len();
    if t < 2 {
        return None;
    }
    let last = &acc[t - 1];
    Some((0..t - 1).map(|i| last[i] - acc[i][i]).sum::<f64>() / (t - 1) as f64)
}

/// The mean over tasks i < T − 1 of max_{l < T−1} acc\[l\]\[i\] − acc\[T−1\]\[i\] (the best
/// accuracy a task had before the last task, less its final one); `None` for a single task.
pub fn forgetting(acc: &[Vec<f64>]) -> Option<f64> {
    let t = acc.len();
    if t < 2 {
        return None;
    }
    let last = &acc[t - 1];
    Some(
        (0..t - 1)
            .map(|i| {
                let best = (0..t - 1)
                    .map(|l| acc[l][i])
                    .fold(f64::NEG_INFINITY, f64::max);
                best - last[i]
            })
            .sum::<f64>()
            / (t - 1) as f64,
    )
}

/// A-GEM's projection: when g·g_ref < 0, g ← g − (g·g_ref / ‖g_ref‖²) g_ref (then
/// g·g_ref = 0 up to rounding); else g is left alone. Products in f64. Returns whether it
/// projected.
pub fn agem_project(gradient: &mut Array2<f32>, reference: ArrayView2<'_, f32>) -> bool {
    let (mut dot, mut norm) = (0.0f64, 0.0f64);
    for (&g, &r) in gradient.iter().zip(reference.iter()) {
        dot += g as f64 * r as f64;
        norm += r as f64 * r as f64;
    }
    if dot >= 0.0 || norm == 0.0 {
        return false;
    }
    let k = dot / norm;
    gradient.zip_mut_with(&reference, |g, &r| *g = (*g as f64 - k * r as f64) as f32);
    true
}

/// How [`gradient_importance`] reduces the minibatch gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Importance {
    /// EWC: the mean squared minibatch gradient (diagonal empirical Fisher).
    Fisher,
    /// MAS: the mean absolute minibatch gradient (of the loss).
    Mas,
}

/// The per-entry importance (K × (N + C), every entry ≥ 0) of `images` and `labels` at the
/// classifier's current memories: the mean over minibatches of `batch` items (in order) of
/// g² ([`Importance::Fisher`]) or |g| ([`Importance::Mas`]), g the minibatch's loss
/// gradient ([`Classifier::loss_and_gradient`]). An entry whose gradient is zero in every
/// minibatch has importance 0.
pub fn gradient_importance(
    clf: &Classifier,
    images: ArrayView2<'_, f64>,
    labels: &[usize],
    batch: usize,
    kind: Importance,
) -> Result<Array2<f32>> {
    if batch == 0 || images.nrows() == 0 {
        return Err(Error::Empty {
            argument: "importance samples",
            detail: format!("{} images in minibatches of {batch}", images.nrows()),
        });
    }
    if labels.len() != images.nrows() {
        return Err(Error::DimensionMismatch {
            argument: "labels (one per image)",
            expected: images.nrows(),
            actual: labels.len(),
        });
    }
    let mut sum = Array2::<f64>::zeros(clf.memories().dim());
    let mut count = 0usize;
    for start in (0..images.nrows()).step_by(batch) {
        let end = (start + batch).min(images.nrows());
        let (_, g) =
            clf.loss_and_gradient(images.slice(s![start..end, ..]), &labels[start..end])?;
        sum.zip_mut_with(&g, |a, &g| {
            let g = g as f64;
            *a += match kind {
                Importance::Fisher => g * g,
                Importance::Mas => g.abs(),
            }
        });
        count += 1;
    }
    Ok(sum.mapv(|v| (v / count as f64) as f32))
}

/// SI's importance of one task: `path` (Σ_steps −g ⊙ Δξ) divided by `delta`² + `damping`
/// (delta = ξ_end − ξ_start of the task), negative entries set to 0.
pub fn si_importance(
    path: ArrayView2<'_, f32>,
    delta: ArrayView2<'_, f32>,
    damping: f64,
) -> Array2<f32> {
    let mut out = path.to_owned();
    out.zip_mut_with(&delta, |w, &d| {
        let v = *w as f64 / (d as f64 * d as f64 + damping);
        *w = v.max(0.0) as f32;
    });
    out
}

/// The quadratic penalty ½ λ Σ Ω ⊙ (ξ − ξ*)² of EWC, SI and MAS (running form: importances
/// summed over tasks, one anchor).
#[derive(Debug, Clone)]
pub struct Penalty {
    /// Ω: the sum over past tasks of each task's importance divided by its largest entry.
    pub importance: Array2<f32>,
    /// ξ*: the memories at the end of the latest task.
    pub anchor: Array2<f32>,
    /// λ (or SI's c).
    pub strength: f64,
}

impl Penalty {
    /// No importance yet, anchored at `memories`.
    pub fn new(memories: ArrayView2<'_, f32>, strength: f64) -> Self {
        Self {
            importance: Array2::zeros(memories.dim()),
            anchor: memories.to_owned(),
            strength,
        }
    }

    /// Adds a task's `importance` (divided by its largest entry; nothing when it is all
    /// zero) and moves the anchor to `memories`.
    pub fn consolidate(&mut self, importance: ArrayView2<'_, f32>, memories: ArrayView2<'_, f32>) {
        let max = importance.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
        if max > 0.0 && max.is_finite() {
            self.importance
                .zip_mut_with(&importance, |a, &b| *a += (b / max).max(0.0));
        }
        self.anchor.assign(&memories);
    }

    /// Ω ⊙ (ξ − ξ*): the penalty's gradient at `memories`, without λ and scale.
    pub fn gradient(&self, memories: ArrayView2<'_, f32>) -> Array2<f32> {
        let mut g = &memories - &self.anchor;
        g *= &self.importance;
        g
    }

    /// Adds λ G Ω ⊙ (ξ − ξ*) to `gradient` (the minibatch's loss gradient), G its largest
    /// |entry| (see the module documentation).
    pub fn apply(&self, memories: ArrayView2<'_, f32>, gradient: &mut Array2<f32>) {
        let scale = gradient.iter().fold(0.0f32, |m, &v| m.max(v.abs())) as f64;
        let k = (self.strength * scale) as f32;
        if k == 0.0 {
            return;
        }
        ndarray::Zip::from(gradient)
            .and(memories)
            .and(&self.anchor)
            .and(&self.importance)
            .for_each(|g, &m, &a, &o| *g += k * o * (m - a));
    }
}

/// `count` labelled items of the classifier made by relaxing random states (pixels uniform
/// in [−1, 1], drawn from `seed` and `task`) through its memories (see the module
/// documentation): (count × N images of ±1 pixels, the classifier's predictions).
pub fn pseudo_items(
    clf: &Classifier,
    count: usize,
    seed: u64,
    task: usize,
) -> Result<(Array2<f64>, Vec<usize>)> {
    let model = *clf.model();
    let mem = clf.memories();
    let n = mem.ncols() - model.classes;
    let visible = mem.slice(s![.., ..n]);
    let key = mix(seed, PSEUDO_SALT, task);
    let mut x = Array2::from_shape_fn((count, n), |(i, j)| {
        let h = mix(key, i as u64, j);
        (h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    });
    for _ in 0..PSEUDO_STEPS {
        let mut u = x.dot(&visible.t());
        for mut row in u.axis_iter_mut(Axis(0)) {
            let max = row.iter().fold(0.0f64, |m, &v| m.max(v.abs()));
            let scale = if max > 0.0 { 1.0 / max } else { 1.0 };
            row.mapv_inplace(|v| model.f_prime(v * scale));
        }
        let h = u.dot(&visible);
        x = h.mapv(|v| if v > 0.0 { 1.0 } else { -1.0 });
    }
    let labels = clf.predict(x.view())?;
    Ok((x, labels))
}

/// `count` of `len` items (all when `count ≥ len`), a seeded choice for `task`.
pub fn select_items(len: usize, count: usize, seed: u64, task: usize) -> Vec<usize> {
    let mut order = epoch_order(len, mix(seed, BUFFER_SALT, task), task);
    order.truncate(count.min(len));
    order.sort_unstable();
    order
}

/// The epochs, the schedule and the seed of a sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Temperature ramp, minibatch, rate and decay, momentum.
    pub recipe: Recipe,
    /// Epochs per task (≥ 1).
    pub epochs: usize,
    /// Seed of the sample order, the buffers and the pseudo items.
    pub seed: u64,
    /// Whether the temperature ramp and the rate's decay start again at each task (each
    /// task trained as a run of its own from the memories the last one left), instead of
    /// running on across the tasks as one run of T × E epochs. The momentum ramp runs on
    /// either way.
    pub restart: bool,
}

impl Schedule {
    /// The epoch of the temperature ramp at the classifier's epoch `epoch` of a task that
    /// started at the classifier's epoch `first`.
    fn ramp_epoch(&self, epoch: usize, first: usize) -> usize {
        if self.restart {
            epoch.saturating_sub(first)
        } else {
            epoch
        }
    }

    /// The epoch options of a task that starts at the classifier's epoch `first`: with
    /// `restart`, ε₀ is scaled by f^{−first} so that the classifier's ε₀ f^epoch starts
    /// again at ε₀ (its epoch count runs on).
    fn options(&self, first: usize) -> EpochOptions {
        let mut options = self.recipe.epoch_options(self.seed);
        if self.restart {
            options.lr *= self.recipe.lr_decay.powi(-(first as i32));
        }
        options
    }
}

/// What [`train_sequence`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceReport {
    /// acc\[l\]\[i\]: test accuracy (%) on task i after training task l (T × T).
    pub accuracy: Vec<Vec<f64>>,
    /// Seconds of training per task (the method's work at the end of a task included,
    /// evaluation excluded).
    pub seconds: Vec<f64>,
    /// The last epoch's summed minibatch loss, per task.
    pub final_loss: Vec<f64>,
    /// Items trained on per epoch of each task (the task's and the buffer's).
    pub items: Vec<usize>,
    /// EWC, SI, MAS: the penalty's importances Ω at the end (K × (N + C), summed over the
    /// tasks, each task's divided by its largest entry); `None` for the other methods.
    pub importance: Option<Array2<f32>>,
}

/// What [`train_sequence`] reports after each task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskDone {
    /// The task just trained, 0-based.
    pub task: usize,
    /// Its row of the accuracy matrix: every task's test accuracy (%).
    pub accuracy: Vec<f64>,
    /// Seconds of training.
    pub seconds: f64,
}

/// Test accuracy (%) of `clf` on `task`.
pub fn accuracy(clf: &Classifier, task: &Task) -> Result<f64> {
    Ok(100.0 - clf.error_percent(task.test.view(), &task.test_labels)?)
}

/// SI's state within a task: the path integral Σ −g ⊙ Δξ, and the step being taken
/// (its loss gradient and the memories before it).
type SiPath<'a> = (&'a mut Array2<f32>, Option<(Array2<f32>, Array2<f32>)>);

/// The hook of the hooked methods.
struct Protection<'a> {
    penalty: Option<&'a Penalty>,
    /// SI: the path integral and the step being taken.
    si: Option<SiPath<'a>>,
    /// A-GEM: the buffer, the reference batch size and the seed of its draws.
    agem: Option<(&'a Array2<f64>, &'a [usize], usize, u64)>,
    /// Steps taken so far (the A-GEM draws).
    steps: usize,
}

impl StepHook for Protection<'_> {
    fn before_step(&mut self, step: &mut GradientStep<'_>) -> Result<()> {
        if let Some((_, pending)) = self.si.as_mut() {
            *pending = Some((step.gradient.clone(), step.memories.to_owned()));
        }
        if let Some(penalty) = self.penalty {
            penalty.apply(step.memories, step.gradient);
        }
        if let Some((images, labels, batch, seed)) = self.agem {
            let mut draw = epoch_order(images.nrows(), seed, self.steps);
            draw.truncate(batch.min(images.nrows()));
            let x = images.select(Axis(0), &draw);
            let y: Vec<usize> = draw.iter().map(|&i| labels[i]).collect();
            let (_, reference) = step.loss_and_gradient(x.view(), &y)?;
            agem_project(step.gradient, reference.view());
        }
        self.steps += 1;
        Ok(())
    }

    fn after_step(&mut self, memories: ArrayView2<'_, f32>) -> Result<()> {
        if let Some((path, pending)) = self.si.as_mut() {
            if let Some((g, before)) = pending.take() {
                ndarray::Zip::from(&mut **path)
                    .and(&g)
                    .and(&before)
                    .and(memories)
                    .for_each(|w, &g, &b, &a| *w -= g * (a - b));
            }
        }
        Ok(())
    }
}

/// Rows of `a` then rows of `b`.
fn stack(a: ArrayView2<'_, f64>, b: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
    concatenate(Axis(0), &[a, b]).map_err(|_| Error::DimensionMismatch {
        argument: "buffer items (as many pixels as the task's)",
        expected: a.ncols(),
        actual: b.ncols(),
    })
}

fn check_tasks(tasks: &[Task], schedule: &Schedule) -> Result<()> {
    if tasks.is_empty() {
        return Err(Error::InvalidParameter {
            argument: "tasks",
            value: "0".into(),
            reason: "at least one task".into(),
        });
    }
    if schedule.epochs == 0 {
        return Err(Error::InvalidParameter {
            argument: "epochs",
            value: "0".into(),
            reason: "at least one epoch per task".into(),
        });
    }
    schedule.recipe.validate()
}

/// Trains `clf` on `tasks` one after another with `method` (see the module documentation),
/// `schedule.epochs` epochs each; after each task, `progress` gets its row of the accuracy
/// matrix.
pub fn train_sequence(
    clf: &mut Classifier,
    tasks: &[Task],
    method: &Method,
    schedule: &Schedule,
    mut progress: impl FnMut(&TaskDone),
) -> Result<SequenceReport> {
    check_tasks(tasks, schedule)?;
    method.validate(clf.device())?;
    let recipe = schedule.recipe;
    let memories32 = |clf: &Classifier| clf.memories().mapv(|v| v as f32);
    let strength = match *method {
        Method::Ewc { lambda } | Method::Mas { lambda } => lambda,
        Method::Si { c } => c,
        _ => 0.0,
    };
    let mut penalty = Penalty::new(memories32(clf).view(), strength);
    let mut buffer: Option<(Array2<f64>, Vec<usize>)> = None;
    let mut report = SequenceReport {
        accuracy: Vec::new(),
        seconds: Vec::new(),
        final_loss: Vec::new(),
        items: Vec::new(),
        importance: None,
    };
    for (t, task) in tasks.iter().enumerate() {
        let start = Instant::now();
        let rehearse = matches!(method, Method::Rehearsal { .. } | Method::Pseudo { .. });
        let mixed;
        let (images, labels): (ArrayView2<'_, f64>, &[usize]) = match (&buffer, rehearse) {
            (Some((bx, by)), true) => {
                let x = stack(task.train.view(), bx.view())?;
                let mut y = task.train_labels.clone();
                y.extend_from_slice(by);
                mixed = (x, y);
                (mixed.0.view(), &mixed.1)
            }
            _ => (task.train.view(), &task.train_labels),
        };
        let task_start = memories32(clf);
        let mut path = Array2::<f32>::zeros(task_start.dim());
        let mut loss = 0.0;
        let first = clf.epochs();
        let options = schedule.options(first);
        for _ in 0..schedule.epochs {
            clf.set_temperature(recipe.temperature_at(schedule.ramp_epoch(clf.epochs(), first)))?;
            loss = if method.needs_hook() {
                let mut hook = Protection {
                    penalty: (t > 0 && strength > 0.0).then_some(&penalty),
                    si: matches!(method, Method::Si { .. }).then_some((&mut path, None)),
                    agem: match (&buffer, method) {
                        (Some((bx, by)), Method::Agem { .. }) => Some((
                            bx,
                            by.as_slice(),
                            recipe.batch,
                            mix(schedule.seed, AGEM_SALT, clf.epochs()),
                        )),
                        _ => None,
                    },
                    steps: 0,
                };
                clf.train_epoch_with(images, labels, &options, &mut hook)?
            } else {
                clf.train_epoch(images, labels, &options)?
            };
        }
        // The method's work at the end of the task.
        let kept = match *method {
            Method::Rehearsal { per_task } | Method::Agem { per_task } => {
                let pick = select_items(task.train.nrows(), per_task, schedule.seed, t);
                Some((
                    task.train.select(Axis(0), &pick),
                    pick.iter().map(|&i| task.train_labels[i]).collect(),
                ))
            }
            Method::Pseudo { per_task } => Some(pseudo_items(clf, per_task, schedule.seed, t)?),
            Method::Ewc { .. } | Method::Mas { .. } => {
                let kind = if matches!(method, Method::Ewc { .. }) {
                    Importance::Fisher
                } else {
                    Importance::Mas
                };
                let omega = gradient_importance(
                    clf,
                    task.train.view(),
                    &task.train_labels,
                    recipe.batch,
                    kind,
                )?;
                penalty.consolidate(omega.view(), memories32(clf).view());
                None
            }
            Method::Si { .. } => {
                let end = memories32(clf);
                let delta = &end - &task_start;
                let omega = si_importance(path.view(), delta.view(), SI_DAMPING);
                penalty.consolidate(omega.view(), end.view());
                None
            }
            Method::Naive => None,
        };
        if let Some((x, y)) = kept {
            buffer = Some(match buffer.take() {
                Some((bx, mut by)) => {
                    by.extend(y);
                    (stack(bx.view(), x.view())?, by)
                }
                None => (x, y),
            });
        }
        let seconds = start.elapsed().as_secs_f64();
        let row = tasks
            .iter()
            .map(|k| accuracy(clf, k))
            .collect::<Result<Vec<f64>>>()?;
        report.items.push(images.nrows());
        report.seconds.push(seconds);
        report.final_loss.push(loss);
        report.accuracy.push(row.clone());
        progress(&TaskDone {
            task: t,
            accuracy: row,
            seconds,
        });
    }
    if strength > 0.0 {
        report.importance = Some(penalty.importance);
    }
    Ok(report)
}

/// Trains `clf` on every task at once (the training sets concatenated) for T ×
/// `schedule.epochs` epochs with the same schedule as [`train_sequence`]; returns each
/// task's test accuracy (%) at the end and the seconds of training.
pub fn train_joint(
    clf: &mut Classifier,
    tasks: &[Task],
    schedule: &Schedule,
) -> Result<(Vec<f64>, f64)> {
    check_tasks(tasks, schedule)?;
    let start = Instant::now();
    let views: Vec<ArrayView2<'_, f64>> = tasks.iter().map(|t| t.train.view()).collect();
    let images = concatenate(Axis(0), &views).map_err(|_| Error::DimensionMismatch {
        argument: "tasks (as many pixels each)",
        expected: tasks[0].train.ncols(),
        actual: tasks.iter().map(|t| t.train.ncols()).max().unwrap_or(0),
    })?;
    let labels: Vec<usize> = tasks
        .iter()
        .flat_map(|t| t.train_labels.iter().copied())
        .collect();
    let options = schedule.recipe.epoch_options(schedule.seed);
    for _ in 0..tasks.len() * schedule.epochs {
        clf.set_temperature(schedule.recipe.temperature_at(clf.epochs()))?;
        clf.train_epoch(images.view(), &labels, &options)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let acc = tasks
        .iter()
        .map(|k| accuracy(clf, k))
        .collect::<Result<Vec<f64>>>()?;
    Ok((acc, seconds))
}
