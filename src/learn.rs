//! Training dense associative memories as classifiers (Krotov & Hopfield 2016, §3 and
//! Appendix A). The model, its outputs and the analytic gradient with respect to the
//! memories are defined in [`ClassifierModel`] (maths in `dam_core::learn`, CPU reference in
//! `dam::cpu::learn`); [`Classifier`] holds K memories and trains them with the paper's
//! optimiser:
//!
//! * minibatches in a seeded random order (a new order each epoch);
//! * momentum: V ← p V − ∇, with p = 0.5 + 0.4·min(1, epoch / 100) or a fixed p;
//! * the step of each memory normalised by its largest |V| entry: ξ^μ ← ξ^μ + ε V^μ / max|V^μ|;
//! * learning rate ε = ε₀ · f^epoch; memories clipped to [−1, 1];
//! * a temperature schedule, when the caller sets one ([`ramp`], [`Classifier::set_temperature`]).
//!
//! [`Optimizer::Muon`] ([`Classifier::set_optimizer`]) replaces the per-memory normalised
//! step by Muon's orthogonalised step of the whole matrix (CPU and reference devices).
//!
//! A memory whose gradient row is exactly zero in a minibatch takes no step (its velocity
//! is kept too), so a classifier whose outputs all sit at their targets stays put.
//!
//! [`Classifier::train_epoch_with`] runs the same epoch with a [`StepHook`] called around
//! every optimiser step: it sees (and may change) the minibatch's gradient and can compute
//! other gradients at the same memories ([`GradientStep::loss_and_gradient`]). The
//! continual-learning methods of [`crate::sequential`] (EWC, SI, MAS, A-GEM) are hooks.
//!
//! [`Recipe::recommended`] gives, per degree n, a temperature schedule, rate and decay that
//! start training with unsaturated outputs (β z = O(1) at the start; see [`Recipe`]);
//! `dam train` and the Python `dam.Classifier` default to it. [`TrainingMonitor`] watches a
//! run epoch by epoch and stops it with [`Error::Stalled`] when no memory received a
//! gradient or the loss stopped moving, naming the parameter to change.
//!
//! Memories and velocity are f32 (as stored in the saved file), the optimiser step too.
//! Images may be given in f64 ([`Classifier::train_epoch`], …), rounded to f32 for the
//! products, or directly in f32 ([`Classifier::train_epoch_f32`], …) with the same results.
//!
//! Memories start from N(−0.3, 0.3²) entries (clipped), drawn from the seed with the
//! engine's Philox generator. On the CPU the gradient runs on the fused path
//! (`dam::cpu::learn::fast`); on wgpu a whole epoch runs on the device
//! (`dam::wgpu_backend::learn::Trainer`: the two matrix products on the generic matrix
//! product, the epilogues and the optimiser step as WGSL kernels, memories resident).

use ndarray::{Array2, ArrayView2, Axis, CowArray, Ix2};

use crate::procedural::{fill, words, PatternKind, Stream};
use crate::{Device, Error, Placement, Result};
use dam_cpu::msgn::NewtonSchulz;

pub use dam_core::learn::ClassifierModel;

/// How one epoch is run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochOptions {
    /// Samples per minibatch (≥ 1).
    pub batch: usize,
    /// ε₀.
    pub lr: f64,
    /// f: ε = ε₀ · f^epoch.
    pub lr_decay: f64,
    /// Seed of the sample order (epoch e uses a permutation derived from (seed, e)).
    pub seed: u64,
    /// Momentum p ∈ [0, 1); `None` is the ramp p = 0.5 + 0.4·min(1, epoch / 100).
    pub momentum: Option<f64>,
    /// Augmentation: each training image is shifted by (dx, dy), drawn uniformly from
    /// [−shift, shift]² anew for every image and epoch ([`shift_image`]); 0 trains on the
    /// images as they are. Needs square images (N = side²).
    pub shift: usize,
}

impl EpochOptions {
    /// Checks every option, naming the one out of range: batch ≥ 1, ε₀ and f finite and
    /// > 0, momentum (when fixed) in [0, 1).
    pub fn validate(&self) -> Result<()> {
        if self.batch == 0 {
            return Err(Error::InvalidParameter {
                argument: "batch",
                value: "0".into(),
                reason: "at least one sample per minibatch".into(),
            });
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::InvalidParameter {
                argument: "lr",
                value: self.lr.to_string(),
                reason: "the learning rate must be finite and > 0".into(),
            });
        }
        if !(self.lr_decay.is_finite() && self.lr_decay > 0.0) {
            return Err(Error::InvalidParameter {
                argument: "lr_decay",
                value: self.lr_decay.to_string(),
                reason: "the decay must be finite and > 0".into(),
            });
        }
        if let Some(p) = self.momentum {
            if !(p.is_finite() && (0.0..1.0).contains(&p)) {
                return Err(Error::InvalidParameter {
                    argument: "momentum",
                    value: p.to_string(),
                    reason: "the momentum must be in [0, 1)".into(),
                });
            }
        }
        Ok(())
    }
}

/// The optimiser that moves the memories ([`Classifier::set_optimizer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Optimizer {
    /// The paper's: V ← p V − ∇, each memory moved by ε V / max|V| (its own largest entry)
    /// and clipped to [−1, 1].
    #[default]
    Krotov,
    /// Muon: the same velocity V ← p V − ∇, then the whole K × (N + C) matrix moves by
    /// ε·√max(1, K/(N + C))·msgn(V), msgn(V) = U sign(Σ) Wᵀ its orthogonal polar factor,
    /// approximated by `ns_steps` quintic Newton–Schulz iterations ([`crate::cpu::msgn`];
    /// f32 on [`Device::Cpu`], f64 on [`Device::Reference`]; not on wgpu), and clipped to
    /// [−1, 1]. A memory whose gradient row is exactly zero is left alone, velocity
    /// included, as with `Krotov`.
    Muon {
        /// Newton–Schulz iterations (≥ 1).
        ns_steps: usize,
    },
}

impl Optimizer {
    /// Newton–Schulz iterations of [`Optimizer::muon`] (Keller Jordan's Muon uses 5).
    pub const MUON_NS_STEPS: usize = 5;

    /// Muon with [`Optimizer::MUON_NS_STEPS`] iterations.
    pub fn muon() -> Self {
        Optimizer::Muon {
            ns_steps: Self::MUON_NS_STEPS,
        }
    }

    /// `krotov` or `muon`.
    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Krotov => "krotov",
            Optimizer::Muon { .. } => "muon",
        }
    }

    /// Checks the optimiser on `device`: Muon needs at least one iteration and a CPU device.
    pub fn validate(&self, device: &Device) -> Result<()> {
        if let Optimizer::Muon { ns_steps } = *self {
            if ns_steps == 0 {
                return Err(Error::InvalidParameter {
                    argument: "ns_steps",
                    value: "0".into(),
                    reason: "Muon needs at least one Newton–Schulz iteration".into(),
                });
            }
            if !matches!(device, Device::Cpu | Device::Reference) {
                return Err(Error::Unsupported {
                    what: "the Muon optimiser on this device",
                    detail: "it runs on Device::Cpu or Device::Reference".into(),
                });
            }
        }
        Ok(())
    }
}

/// A linear ramp from `start` (epoch 0) to `end` (epoch `length` and after), as the
/// paper's temperature and momentum schedules (Appendix A): the value at `epoch`.
pub fn ramp(start: f64, end: f64, length: usize, epoch: usize) -> f64 {
    if length == 0 || epoch >= length {
        return end;
    }
    start + (end - start) * epoch as f64 / length as f64
}

/// A training schedule: the temperature ramp, the minibatch, the learning rate and its
/// decay, the momentum. [`Recipe::recommended`] gives one that trains at any degree;
/// [`Recipe::with`] applies a caller's choices on top of it.
///
/// The output of class α is c = tanh(β z) with β = 1/Tⁿ and z = Σ_μ [F(u⁺) − F(u⁻)], a sum
/// over the K memories of terms of size ≈ 2 |ξ_α| n uⁿ⁻¹ (u ≈ the overlap of a memory with
/// the image). When |β z| is large every output sits at ±1 and 1 − c² underflows: no
/// gradient reaches the memories and nothing is learnt. The starting temperature must
/// therefore grow with the typical overlap: for small n, with (n K)^{1/n} u^{(n−1)/n}; for
/// large n, β z is dominated by the largest overlaps and T must stay above them. As the
/// memories learn, their overlaps grow and T is ramped down (small n) to keep sharpening
/// them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recipe {
    /// The temperature of the first epoch.
    pub temperature: f64,
    /// The temperature at the end of the ramp (and after).
    pub temperature_final: f64,
    /// Length of the temperature ramp in epochs ([`ramp`]).
    pub ramp_epochs: usize,
    /// Samples per minibatch.
    pub batch: usize,
    /// ε₀.
    pub lr: f64,
    /// f: ε = ε₀ · f^epoch.
    pub lr_decay: f64,
    /// Momentum p ∈ [0, 1); `None` is the ramp p = 0.5 + 0.4·min(1, epoch / 100).
    pub momentum: Option<f64>,
    /// Random shifts of the training images by up to this many pixels
    /// ([`EpochOptions::shift`]).
    pub shift: usize,
}

/// A caller's choices on top of a [`Recipe`] ([`Recipe::with`]): `None` keeps the recipe's
/// value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RecipeOverrides {
    /// The first epoch's temperature. Given without `temperature_final`, T stays fixed.
    pub temperature: Option<f64>,
    /// The temperature at the end of the ramp. Given without `temperature`, T ramps from
    /// the recipe's start to this.
    pub temperature_final: Option<f64>,
    /// Length of the temperature ramp in epochs.
    pub ramp_epochs: Option<usize>,
    /// Samples per minibatch.
    pub batch: Option<usize>,
    /// ε₀.
    pub lr: Option<f64>,
    /// f.
    pub lr_decay: Option<f64>,
    /// A fixed momentum instead of the recipe's.
    pub momentum: Option<f64>,
    /// The largest random shift of the training images (0: none).
    pub shift: Option<usize>,
}

impl Recipe {
    /// The recipe for F of degree `degree` (rectified or not: the overlaps of the initial
    /// memories with images are positive, so both start alike), measured on the shipped
    /// MNIST digits (N = 784 pixels in [−1, 1], K up to a few thousand memories, minibatches
    /// of 100; README, "Learning"):
    ///
    /// | n | T (first → final, over epochs) | ε₀ | f |
    /// | --- | --- | --- | --- |
    /// | 1 | 1,000 → 150 over 50 (F = x cannot use the image: F(u + ξ) − F(u − ξ) = 2ξ) | 0.1 | 0.95 |
    /// | 2 | 700 → 100 over 50 | 0.1 | 0.95 |
    /// | 3–9 | 400 → 400 / 8^{3/n} over 50 (β grows 512×: 400 → 50 at n = 3, → 84 at n = 4, → 200 at n = 9) | 0.1 | 0.95 |
    /// | ≥ 10 | 540, fixed | 0.05 | 0.99 |
    ///
    /// Momentum: the paper's ramp 0.5 → 0.9 over 100 epochs. Other data sets may need T
    /// scaled with the overlaps (∝ N for pixels of the same contrast); a run that starts
    /// saturated is stopped by [`TrainingMonitor`], which names the parameter to raise.
    pub fn recommended(degree: u32, rectified: bool) -> Self {
        // Both F start alike: the overlaps u of the initial memories (entries ≈ −0.3) with
        // images of mostly −1 pixels are ≈ +150 > 0, where max(u, 0)ⁿ = uⁿ.
        let _ = rectified;
        let (temperature, temperature_final, ramp_epochs, lr, lr_decay) = match degree {
            0 | 1 => (1000.0, 150.0, 50, 0.1, 0.95),
            2 => (700.0, 100.0, 50, 0.1, 0.95),
            // β = 1/Tⁿ grows by 8³ = 512 over the ramp whatever n.
            3..=9 => (400.0, 400.0 / 8f64.powf(3.0 / degree as f64), 50, 0.1, 0.95),
            _ => (540.0, 540.0, 0, 0.05, 0.99),
        };
        Self {
            temperature,
            temperature_final,
            ramp_epochs,
            batch: 100,
            lr,
            lr_decay,
            momentum: None,
            shift: 0,
        }
    }

    /// This recipe with the caller's choices applied (see [`RecipeOverrides`]): a start
    /// temperature given alone fixes T; a final temperature given alone ramps from the
    /// recipe's start.
    pub fn with(self, choices: &RecipeOverrides) -> Self {
        let (temperature, temperature_final) =
            match (choices.temperature, choices.temperature_final) {
                (Some(start), None) => (start, start),
                (start, end) => (
                    start.unwrap_or(self.temperature),
                    end.unwrap_or(self.temperature_final),
                ),
            };
        Self {
            temperature,
            temperature_final,
            ramp_epochs: choices.ramp_epochs.unwrap_or(self.ramp_epochs),
            batch: choices.batch.unwrap_or(self.batch),
            lr: choices.lr.unwrap_or(self.lr),
            lr_decay: choices.lr_decay.unwrap_or(self.lr_decay),
            momentum: choices.momentum.or(self.momentum),
            shift: choices.shift.unwrap_or(self.shift),
        }
    }

    /// Checks every value, naming the one out of range: both temperatures finite and
    /// > 0, and the options of [`EpochOptions::validate`].
    pub fn validate(&self) -> Result<()> {
        for (argument, t) in [
            ("temperature", self.temperature),
            ("temperature_final", self.temperature_final),
        ] {
            if !(t.is_finite() && t > 0.0) {
                return Err(Error::InvalidParameter {
                    argument,
                    value: t.to_string(),
                    reason: "T must be finite and > 0".into(),
                });
            }
        }
        self.epoch_options(0).validate()
    }

    /// The temperature of epoch `epoch` (0-based): the ramp from `temperature` to
    /// `temperature_final` over `ramp_epochs`.
    pub fn temperature_at(&self, epoch: usize) -> f64 {
        ramp(
            self.temperature,
            self.temperature_final,
            self.ramp_epochs,
            epoch,
        )
    }

    /// The options of every epoch, with the sample order drawn from `seed`.
    pub fn epoch_options(&self, seed: u64) -> EpochOptions {
        EpochOptions {
            batch: self.batch,
            lr: self.lr,
            lr_decay: self.lr_decay,
            seed,
            momentum: self.momentum,
            shift: self.shift,
        }
    }
}

impl EpochOptions {
    /// The options of [`Recipe::recommended`] for this degree, sample order from `seed`.
    pub fn recommended(degree: u32, rectified: bool, seed: u64) -> Self {
        Recipe::recommended(degree, rectified).epoch_options(seed)
    }
}

/// Images in f64 (rounded to f32 for the products) or f32 (used as they are).
#[derive(Clone, Copy)]
enum Images<'a> {
    F64(ArrayView2<'a, f64>),
    F32(ArrayView2<'a, f32>),
}

impl<'a> Images<'a> {
    fn nrows(&self) -> usize {
        match self {
            Images::F64(x) => x.nrows(),
            Images::F32(x) => x.nrows(),
        }
    }

    fn ncols(&self) -> usize {
        match self {
            Images::F64(x) => x.ncols(),
            Images::F32(x) => x.ncols(),
        }
    }

    /// The pixels in f32: the f32 input itself, or the f64 input rounded.
    fn f32(&self) -> CowArray<'a, f32, Ix2> {
        match *self {
            Images::F64(x) => CowArray::from(x.mapv(|v| v as f32)),
            Images::F32(x) => CowArray::from(x),
        }
    }

    /// The pixels in f64 (the reference device reads these): exact for either input.
    fn f64(&self) -> CowArray<'a, f64, Ix2> {
        match *self {
            Images::F64(x) => CowArray::from(x),
            Images::F32(x) => CowArray::from(x.mapv(|v| v as f64)),
        }
    }

    /// Rows `start..end`.
    fn rows(&self, start: usize, end: usize) -> Images<'a> {
        match *self {
            Images::F64(x) => Images::F64(x.slice_move(ndarray::s![start..end, ..])),
            Images::F32(x) => Images::F32(x.slice_move(ndarray::s![start..end, ..])),
        }
    }
}

/// One minibatch of [`Classifier::train_epoch_with`], as its [`StepHook`] sees it before the
/// optimiser step: the loss gradient of the minibatch as one K × (N + C) f32 matrix, which
/// the hook may change (add a penalty, project it); the optimiser then moves along what the
/// hook leaves. Rows the hook leaves exactly zero take no step, as in
/// [`Classifier::train_epoch`].
pub struct GradientStep<'a> {
    /// 0-based index of the minibatch within the epoch.
    pub index: usize,
    /// The minibatch: rows of the epoch's images.
    pub samples: &'a [usize],
    /// The minibatch's loss, before the step.
    pub loss: f64,
    /// The memories before the step (K × (N + C), f32).
    pub memories: ArrayView2<'a, f32>,
    /// The gradient of the minibatch's loss with respect to the memories; the hook may
    /// change it.
    pub gradient: &'a mut Array2<f32>,
    model: &'a ClassifierModel,
    reference: bool,
}

impl GradientStep<'_> {
    /// The loss and its gradient (K × (N + C), f32) on other `images` (B × N) and `labels`,
    /// at the memories before this step, on the classifier's device (the fused f32 path on
    /// [`Device::Cpu`], f64 on [`Device::Reference`]): A-GEM's reference gradient.
    pub fn loss_and_gradient(
        &self,
        images: ArrayView2<'_, f64>,
        labels: &[usize],
    ) -> Result<(f64, Array2<f32>)> {
        gradient_at(self.model, self.memories, images, labels, self.reference)
    }

    /// The classifier's model (its temperature is this epoch's).
    pub fn model(&self) -> &ClassifierModel {
        self.model
    }
}

/// What [`Classifier::train_epoch_with`] calls around each optimiser step: the one place
/// where continual-learning methods (penalties, gradient projections, path integrals;
/// [`crate::sequential`]) reach into an epoch.
pub trait StepHook {
    /// Before the step: may change `step.gradient`.
    fn before_step(&mut self, step: &mut GradientStep<'_>) -> Result<()>;

    /// After the step, with the memories it left (K × (N + C), f32). Does nothing unless
    /// overridden.
    fn after_step(&mut self, memories: ArrayView2<'_, f32>) -> Result<()> {
        let _ = memories;
        Ok(())
    }
}

/// The loss and gradient of `images` and `labels` at `memories`: the fused f32 path, or the
/// f64 reference (`reference`), the gradient in f32 either way.
fn gradient_at(
    model: &ClassifierModel,
    memories: ArrayView2<'_, f32>,
    images: ArrayView2<'_, f64>,
    labels: &[usize],
    reference: bool,
) -> Result<(f64, Array2<f32>)> {
    let x32 = images.mapv(|v| v as f32);
    dam_cpu::learn::fast::check_fast(model, memories, x32.view(), Some(labels))?;
    if reference {
        let m = memories.mapv(f64::from);
        let (loss, g) = dam_cpu::learn::loss_and_gradient(model, m.view(), images, labels)?;
        Ok((loss, g.mapv(|v| v as f32)))
    } else {
        Ok(dam_cpu::learn::fast::loss_and_gradient(
            model,
            memories,
            x32.view(),
            labels,
        ))
    }
}

/// K memories being trained, and the optimiser's state.
#[derive(Debug, Clone)]
pub struct Classifier {
    model: ClassifierModel,
    device: Device,
    /// The memories in f64, refreshed from `memories32` after every epoch.
    memories: Array2<f64>,
    /// The memories in f32: what every product reads and the optimiser moves.
    memories32: Array2<f32>,
    /// The optimiser's velocity, in f32 like the memories it moves.
    velocity: Array2<f32>,
    /// The optimiser.
    optimizer: Optimizer,
    epoch: usize,
    /// What the last epoch did.
    last: Option<EpochReport>,
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The sample order of epoch `epoch`: a Fisher–Yates permutation of 0..len driven by Philox.
pub fn epoch_order(len: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let key = splitmix(seed ^ splitmix(epoch as u64));
    for i in (1..len).rev() {
        let w = words(key, Stream::Queries, i as u64, 0);
        let r = (w[0] as u64) << 32 | w[1] as u64;
        order.swap(i, (r % (i as u64 + 1)) as usize);
    }
    order
}

/// The random shift [`EpochOptions::shift`] that `dam train` and the Python `Classifier`
/// take when none is given, for `visible` pixels: 1 for square images of side ≥ 8
/// (N = side², as the digits' 28 × 28), else 0 (vectors that are not images are never
/// shifted). One pixel took the shipped digits from 5.2 % to 2.8 % test error (README,
/// "Learning").
pub fn default_shift(visible: usize) -> usize {
    let side = (visible as f64).sqrt().round() as usize;
    usize::from(side >= 8 && side * side == visible)
}

/// The shift (dx, dy) ∈ [−max_shift, max_shift]² of image `index` in epoch `epoch`: drawn
/// with Philox from (seed, epoch, index), the same whatever the minibatch or device.
pub fn image_shift(seed: u64, epoch: usize, index: usize, max_shift: usize) -> (isize, isize) {
    if max_shift == 0 {
        return (0, 0);
    }
    let key = splitmix(seed ^ splitmix(epoch as u64 ^ 0x5348_4946_5400_0000));
    let w = words(key, Stream::Patterns, index as u64, 0);
    let span = 2 * max_shift as u64 + 1;
    let dx = (((w[0] as u64) << 32 | w[1] as u64) % span) as isize - max_shift as isize;
    let dy = (((w[2] as u64) << 32 | w[3] as u64) % span) as isize - max_shift as isize;
    (dx, dy)
}

/// `image` (side × side pixels, row-major) moved by `dx` columns right and `dy` rows down
/// into `out`; pixels that come from outside the image repeat the nearest edge pixel
/// (the background for digits).
pub fn shift_image<T: Copy>(image: &[T], side: usize, dx: isize, dy: isize, out: &mut [T]) {
    assert_eq!(image.len(), side * side, "image of side² pixels");
    assert_eq!(out.len(), image.len(), "output as long as the image");
    let last = side as isize - 1;
    for y in 0..side as isize {
        let sy = (y - dy).clamp(0, last) as usize;
        for x in 0..side as isize {
            let sx = (x - dx).clamp(0, last) as usize;
            out[y as usize * side + x as usize] = image[sy * side + sx];
        }
    }
}

/// The side of square images of `n` pixels, or the error naming `shift` when they are not
/// square or the shift is not smaller than the side (what [`Classifier::train_epoch`]
/// checks before an epoch with [`EpochOptions::shift`] > 0).
pub fn shift_side(n: usize, shift: usize) -> Result<usize> {
    let side = (n as f64).sqrt().round() as usize;
    if side * side != n {
        return Err(Error::InvalidParameter {
            argument: "shift",
            value: shift.to_string(),
            reason: format!("shifts need square images; N = {n} pixels is not a square"),
        });
    }
    if shift >= side {
        return Err(Error::InvalidParameter {
            argument: "shift",
            value: shift.to_string(),
            reason: format!("the shift must be smaller than the image side {side}"),
        });
    }
    Ok(side)
}

/// The minibatch `chunk` of `images` (rows in that order), each row shifted by its
/// [`image_shift`] when `shift` > 0.
fn minibatch<T: Copy + Default>(
    images: ArrayView2<'_, T>,
    chunk: &[usize],
    shift: Option<(usize, usize)>,
    seed: u64,
    epoch: usize,
) -> Array2<T> {
    let mut x = images.select(Axis(0), chunk);
    if let Some((side, max_shift)) = shift {
        let mut row = vec![T::default(); images.ncols()];
        for (mut out, &i) in x.axis_iter_mut(Axis(0)).zip(chunk) {
            let (dx, dy) = image_shift(seed, epoch, i, max_shift);
            let image = images.row(i);
            let image = image
                .as_slice()
                .map_or_else(|| image.to_vec(), <[T]>::to_vec);
            shift_image(&image, side, dx, dy, &mut row);
            out.assign(&ndarray::ArrayView1::from(&row[..]));
        }
    }
    x
}

impl Classifier {
    /// Wraps trained or initial memories (K × (N + C), entries in [−1, 1]) for `model`.
    pub fn new(model: ClassifierModel, memories: Array2<f64>, device: &Device) -> Result<Self> {
        model.validate()?;
        device.placement()?;
        let (k, width) = memories.dim();
        if k == 0 {
            return Err(Error::Empty {
                argument: "memories (K)",
                detail: "K = 0".into(),
            });
        }
        if width <= model.classes {
            return Err(Error::DimensionMismatch {
                argument: "memories (K × (N + C), N ≥ 1)",
                expected: model.classes + 1,
                actual: width,
            });
        }
        if let Some(pos) = memories
            .iter()
            .position(|v| !(v.is_finite() && v.abs() <= 1.0))
        {
            return Err(Error::InvalidParameter {
                argument: "memories",
                value: memories
                    .iter()
                    .nth(pos)
                    .map_or(String::new(), |v| v.to_string()),
                reason: format!("entry {pos} is not in [−1, 1]"),
            });
        }
        let velocity = Array2::zeros(memories.dim());
        let memories32 = memories.mapv(|v| v as f32);
        Ok(Self {
            model,
            device: device.clone(),
            memories: memories32.mapv(|v| v as f64),
            memories32,
            velocity,
            optimizer: Optimizer::Krotov,
            epoch: 0,
            last: None,
        })
    }

    /// K memories over N visible neurons, entries N(−0.3, 0.3²) clipped to [−1, 1].
    pub fn random(
        model: ClassifierModel,
        count: usize,
        visible: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let width = visible + model.classes;
        let mut row = vec![0.0f32; width];
        let mut memories = Array2::zeros((count, width));
        for (mu, mut out) in memories.axis_iter_mut(Axis(0)).enumerate() {
            fill(
                PatternKind::Gaussian,
                seed,
                Stream::Patterns,
                mu as u64,
                &mut row,
            );
            for (o, &g) in out.iter_mut().zip(&row) {
                *o = (-0.3 + 0.3 * g as f64).clamp(-1.0, 1.0);
            }
        }
        Self::new(model, memories, device)
    }

    /// The model.
    pub fn model(&self) -> &ClassifierModel {
        &self.model
    }

    /// Sets the temperature T (β = 1/Tⁿ) for the epochs that follow: a temperature
    /// schedule ([`ramp`]) calls this before each epoch. The memories are unchanged.
    pub fn set_temperature(&mut self, temperature: f64) -> Result<()> {
        let model = ClassifierModel {
            temperature,
            ..self.model
        };
        model.validate()?;
        self.model = model;
        Ok(())
    }

    /// Chooses the optimiser of the epochs that follow (the velocity is kept). Muon runs on
    /// [`Device::Cpu`] and [`Device::Reference`]; on wgpu this is [`Error::Unsupported`].
    pub fn set_optimizer(&mut self, optimizer: Optimizer) -> Result<()> {
        optimizer.validate(&self.device)?;
        self.optimizer = optimizer;
        Ok(())
    }

    /// The optimiser ([`Optimizer::Krotov`] unless [`Classifier::set_optimizer`] chose).
    pub fn optimizer(&self) -> Optimizer {
        self.optimizer
    }

    /// The memories, K × (N + C).
    pub fn memories(&self) -> ArrayView2<'_, f64> {
        self.memories.view()
    }

    /// The device the gradient runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Epochs trained so far.
    pub fn epochs(&self) -> usize {
        self.epoch
    }

    /// One epoch over `images` (B × N, pixels in [−1, 1]) with `labels` (< C); returns the
    /// summed loss of its minibatches (each measured before its step). The pixels are
    /// rounded to f32 for the products (the reference device reads them in f64);
    /// [`Classifier::last_epoch`] then tells what the epoch did.
    pub fn train_epoch(
        &mut self,
        images: ArrayView2<'_, f64>,
        labels: &[usize],
        options: &EpochOptions,
    ) -> Result<f64> {
        self.train_epoch_images(Images::F64(images), labels, options, None)
    }

    /// [`Classifier::train_epoch`] with `hook` called around every optimiser step
    /// ([`StepHook`]): before it, with the minibatch's gradient as one K × (N + C) matrix
    /// that the hook may change; after it, with the memories it left. The same sample
    /// order, schedule and report as [`Classifier::train_epoch`]; a hook that changes
    /// nothing gives the same memories. On [`Device::Cpu`] and [`Device::Reference`]; on wgpu
    /// (the epoch runs on the device) this is [`Error::Unsupported`].
    pub fn train_epoch_with(
        &mut self,
        images: ArrayView2<'_, f64>,
        labels: &[usize],
        options: &EpochOptions,
        hook: &mut dyn StepHook,
    ) -> Result<f64> {
        self.train_epoch_images(Images::F64(images), labels, options, Some(hook))
    }

    /// The loss and its gradient with respect to the memories (K × (N + C), f32) on
    /// `images` (B × N) and `labels`, at the current memories and temperature: the fused f32
    /// path on [`Device::Cpu`], the f64 reference on [`Device::Reference`];
    /// [`Error::Unsupported`] on wgpu.
    pub fn loss_and_gradient(
        &self,
        images: ArrayView2<'_, f64>,
        labels: &[usize],
    ) -> Result<(f64, Array2<f32>)> {
        let reference = match self.device.placement()? {
            Placement::Reference => true,
            Placement::Cpu => false,
            #[cfg(not(feature = "wgpu"))]
            Placement::Wgpu(ctx) => match ctx {},
            #[cfg(feature = "wgpu")]
            Placement::Wgpu(_) => {
                return Err(Error::Unsupported {
                    what: "the loss gradient of a classifier on wgpu",
                    detail: "it runs on Device::Cpu or Device::Reference".into(),
                })
            }
        };
        gradient_at(
            &self.model,
            self.memories32.view(),
            images,
            labels,
            reference,
        )
    }

    /// [`Classifier::train_epoch`] on f32 pixels, read as they are: for pixels that f32
    /// holds exactly, the same losses and memories as the f64 entry, without a copy in f64.
    pub fn train_epoch_f32(
        &mut self,
        images: ArrayView2<'_, f32>,
        labels: &[usize],
        options: &EpochOptions,
    ) -> Result<f64> {
        self.train_epoch_images(Images::F32(images), labels, options, None)
    }

    fn train_epoch_images(
        &mut self,
        images: Images<'_>,
        labels: &[usize],
        options: &EpochOptions,
        mut hook: Option<&mut dyn StepHook>,
    ) -> Result<f64> {
        options.validate()?;
        if labels.len() != images.nrows() {
            return Err(Error::DimensionMismatch {
                argument: "labels (one per image)",
                expected: images.nrows(),
                actual: labels.len(),
            });
        }
        let lr = options.lr * options.lr_decay.powi(self.epoch as i32);
        let p = options
            .momentum
            .unwrap_or_else(|| ramp(0.5, 0.9, 100, self.epoch));
        let order = epoch_order(images.nrows(), options.seed, self.epoch);
        let shift = match options.shift {
            0 => None,
            s => Some((shift_side(images.ncols(), s)?, s)),
        };
        let (seed, epoch) = (options.seed, self.epoch);
        let images32 = images.f32();
        dam_cpu::learn::fast::check_fast(
            &self.model,
            self.memories32.view(),
            images32.view(),
            Some(labels),
        )?;
        let placement = self.device.placement()?;
        let (memories_before, velocity_before) = (self.memories32.clone(), self.velocity.clone());
        let total = match placement {
            Placement::Reference => {
                let images64 = images.f64();
                let mut total = 0.0;
                for (index, chunk) in order.chunks(options.batch).enumerate() {
                    let x = minibatch(images64.view(), chunk, shift, seed, epoch);
                    let y: Vec<usize> = chunk.iter().map(|&i| labels[i]).collect();
                    let memories = self.memories32.mapv(|v| v as f64);
                    let (loss, gradient) = dam_cpu::learn::loss_and_gradient(
                        &self.model,
                        memories.view(),
                        x.view(),
                        &y,
                    )?;
                    total += loss;
                    let mut gradient = gradient.mapv(|v| v as f32);
                    if let Some(h) = hook.as_deref_mut() {
                        h.before_step(&mut GradientStep {
                            index,
                            samples: chunk,
                            loss,
                            memories: self.memories32.view(),
                            gradient: &mut gradient,
                            model: &self.model,
                            reference: true,
                        })?;
                    }
                    match self.optimizer {
                        Optimizer::Krotov => dam_cpu::learn::fast::optimiser_step(
                            self.memories32.view_mut(),
                            self.velocity.view_mut(),
                            &[(0, gradient)],
                            lr,
                            p,
                        ),
                        Optimizer::Muon { ns_steps } => dam_cpu::learn::fast::muon_step(
                            self.memories32.view_mut(),
                            self.velocity.view_mut(),
                            gradient.view(),
                            lr,
                            p,
                            |v| {
                                dam_cpu::msgn::msgn_f64(
                                    v.mapv(f64::from).view(),
                                    NewtonSchulz::Quintic,
                                    ns_steps,
                                )
                                .mapv(|x| x as f32)
                            },
                        ),
                    }
                    if let Some(h) = hook.as_deref_mut() {
                        h.after_step(self.memories32.view())?;
                    }
                }
                total
            }
            Placement::Cpu => {
                let mut total = 0.0;
                for (index, chunk) in order.chunks(options.batch).enumerate() {
                    let x = minibatch(images32.view(), chunk, shift, seed, epoch);
                    let y: Vec<usize> = chunk.iter().map(|&i| labels[i]).collect();
                    let (loss, mut parts) = dam_cpu::learn::fast::loss_and_gradient_parts(
                        &self.model,
                        self.memories32.view(),
                        x.view(),
                        &y,
                    );
                    total += loss;
                    if let Some(h) = hook.as_deref_mut() {
                        // The hook sees (and may change) the gradient as one matrix.
                        let views: Vec<ArrayView2<'_, f32>> =
                            parts.iter().map(|(_, g)| g.view()).collect();
                        let mut gradient = ndarray::concatenate(Axis(0), &views)
                            .expect("gradient pieces of equal width");
                        h.before_step(&mut GradientStep {
                            index,
                            samples: chunk,
                            loss,
                            memories: self.memories32.view(),
                            gradient: &mut gradient,
                            model: &self.model,
                            reference: false,
                        })?;
                        parts = vec![(0, gradient)];
                    }
                    match self.optimizer {
                        Optimizer::Krotov => dam_cpu::learn::fast::optimiser_step(
                            self.memories32.view_mut(),
                            self.velocity.view_mut(),
                            &parts,
                            lr,
                            p,
                        ),
                        Optimizer::Muon { ns_steps } => {
                            let views: Vec<ArrayView2<'_, f32>> =
                                parts.iter().map(|(_, g)| g.view()).collect();
                            let gradient = ndarray::concatenate(Axis(0), &views)
                                .expect("gradient pieces of equal width");
                            dam_cpu::learn::fast::muon_step(
                                self.memories32.view_mut(),
                                self.velocity.view_mut(),
                                gradient.view(),
                                lr,
                                p,
                                |v| dam_cpu::msgn::msgn_f32(v, NewtonSchulz::Quintic, ns_steps),
                            );
                        }
                    }
                    if let Some(h) = hook.as_deref_mut() {
                        h.after_step(self.memories32.view())?;
                    }
                }
                total
            }
            #[cfg(not(feature = "wgpu"))]
            Placement::Wgpu(ctx) => match ctx {},
            #[cfg(feature = "wgpu")]
            Placement::Wgpu(ctx) => {
                self.optimizer.validate(&self.device)?;
                if hook.is_some() {
                    return Err(Error::Unsupported {
                        what: "a training hook (continual-learning method) on wgpu",
                        detail:
                            "the epoch runs on the device; use Device::Cpu or Device::Reference"
                                .into(),
                    });
                }
                // Memories and velocity stay on the device for the whole epoch.
                let mut trainer = dam_wgpu::learn::Trainer::new(
                    &ctx,
                    &self.model,
                    self.memories32.view(),
                    self.velocity.view(),
                    options.batch,
                    images.nrows(),
                )?;
                for chunk in order.chunks(options.batch) {
                    let x = minibatch(images32.view(), chunk, shift, seed, epoch);
                    let y: Vec<usize> = chunk.iter().map(|&i| labels[i]).collect();
                    trainer.step(x.view(), &y, lr, p)?;
                }
                let (memories, velocity, loss) = trainer.finish()?;
                self.memories32 = memories;
                self.velocity = velocity;
                loss
            }
        };
        self.memories = self.memories32.mapv(|v| v as f64);
        self.epoch += 1;
        // A memory takes a step in a minibatch exactly when its gradient row is not zero
        // there, and a step changes its velocity (V ← p V − ∇) and, unless clipped, its
        // entries: count the memories whose either changed.
        let updated = memories_before
            .axis_iter(Axis(0))
            .zip(velocity_before.axis_iter(Axis(0)))
            .zip(self.memories32.axis_iter(Axis(0)))
            .zip(self.velocity.axis_iter(Axis(0)))
            .filter(|(((m0, v0), m1), v1)| m0 != m1 || v0 != v1)
            .count();
        // Which samples have an output pinned at the wrong end, measured after the first
        // epoch and whenever an epoch looks stuck (no step, or a loss that did not move):
        // the monitor tells saturation from vanishing F′ and from steps too small by it.
        let still = self.last.as_ref().is_none_or(|r| {
            (total - r.loss).abs() <= TrainingMonitor::TOLERANCE * total.abs().max(r.loss.abs())
        });
        let saturated = if updated == 0 || still {
            Some(self.pinned_fraction(images, labels)?)
        } else {
            None
        };
        self.last = Some(EpochReport {
            epoch: self.epoch,
            loss: total,
            samples: images.nrows(),
            temperature: self.model.temperature,
            lr,
            momentum: p,
            memories: self.memories32.nrows(),
            updated,
            saturated,
        });
        Ok(total)
    }

    /// The fraction of samples with an output pinned at the wrong end: the true class's at
    /// −1 or another class's at +1, exactly, in f32.
    fn pinned_fraction(&self, images: Images<'_>, labels: &[usize]) -> Result<f64> {
        let mut pinned = 0usize;
        for start in (0..images.nrows()).step_by(1000) {
            let end = (start + 1000).min(images.nrows());
            let c = self.outputs_images(images.rows(start, end))?;
            pinned += c
                .axis_iter(Axis(0))
                .zip(&labels[start..end])
                .filter(|(row, &label)| {
                    row.iter().enumerate().any(|(a, &v)| {
                        let wrong_end = if a == label { -1.0 } else { 1.0 };
                        v as f32 == wrong_end
                    })
                })
                .count();
        }
        Ok(pinned as f64 / images.nrows().max(1) as f64)
    }

    /// What the last epoch trained by this classifier did (`None` before the first).
    pub fn last_epoch(&self) -> Option<&EpochReport> {
        self.last.as_ref()
    }

    /// The label outputs c (B × C), on the fast path (f32 products).
    pub fn outputs(&self, images: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
        self.outputs_images(Images::F64(images))
    }

    /// [`Classifier::outputs`] of f32 pixels, read as they are (the same outputs as the f64
    /// entry for pixels that f32 holds exactly).
    pub fn outputs_f32(&self, images: ArrayView2<'_, f32>) -> Result<Array2<f64>> {
        self.outputs_images(Images::F32(images))
    }

    fn outputs_images(&self, images: Images<'_>) -> Result<Array2<f64>> {
        let x = images.f32();
        dam_cpu::learn::fast::check_fast(&self.model, self.memories32.view(), x.view(), None)?;
        match self.device.placement()? {
            Placement::Reference => dam_cpu::learn::outputs(
                &self.model,
                self.memories32.mapv(|v| v as f64).view(),
                images.f64().view(),
            ),
            Placement::Cpu => Ok(dam_cpu::learn::fast::outputs(
                &self.model,
                self.memories32.view(),
                x.view(),
            )),
            #[cfg(not(feature = "wgpu"))]
            Placement::Wgpu(ctx) => match ctx {},
            #[cfg(feature = "wgpu")]
            Placement::Wgpu(ctx) => {
                dam_wgpu::learn::outputs(&ctx, &self.model, self.memories32.view(), x.view())
            }
        }
    }

    /// The predicted class of each image (largest c; ties to the lower class).
    pub fn predict(&self, images: ArrayView2<'_, f64>) -> Result<Vec<usize>> {
        Ok(argmax_rows(&self.outputs(images)?))
    }

    /// [`Classifier::predict`] of f32 pixels, read as they are.
    pub fn predict_f32(&self, images: ArrayView2<'_, f32>) -> Result<Vec<usize>> {
        Ok(argmax_rows(&self.outputs_f32(images)?))
    }

    /// Percentage of `images` misclassified, evaluated in blocks of 1,000.
    pub fn error_percent(&self, images: ArrayView2<'_, f64>, labels: &[usize]) -> Result<f64> {
        self.error_percent_images(Images::F64(images), labels)
    }

    /// [`Classifier::error_percent`] of f32 pixels, read as they are.
    pub fn error_percent_f32(&self, images: ArrayView2<'_, f32>, labels: &[usize]) -> Result<f64> {
        self.error_percent_images(Images::F32(images), labels)
    }

    fn error_percent_images(&self, images: Images<'_>, labels: &[usize]) -> Result<f64> {
        if labels.len() != images.nrows() || labels.is_empty() {
            return Err(Error::DimensionMismatch {
                argument: "labels (one per image)",
                expected: images.nrows(),
                actual: labels.len(),
            });
        }
        let mut wrong = 0usize;
        for start in (0..images.nrows()).step_by(1000) {
            let end = (start + 1000).min(images.nrows());
            let pred = argmax_rows(&self.outputs_images(images.rows(start, end))?);
            wrong += pred
                .iter()
                .zip(&labels[start..end])
                .filter(|(p, l)| p != l)
                .count();
        }
        Ok(100.0 * wrong as f64 / labels.len() as f64)
    }

    /// Per memory, the classes it votes for: those whose label entry is > 0.
    pub fn votes(&self) -> Vec<usize> {
        let n = self.memories.ncols() - self.model.classes;
        self.memories
            .axis_iter(Axis(0))
            .map(|m| m.iter().skip(n).filter(|&&v| v > 0.0).count())
            .collect()
    }

    /// Fraction of `images` with one dominant memory: in the winning class's sum
    /// z = Σ_μ [F(u⁺) − F(u⁻)], the largest single term is at least half of the sum of the
    /// positive terms.
    pub fn dominant_fraction(&self, images: ArrayView2<'_, f64>) -> Result<f64> {
        let pred = self.predict(images)?;
        let n = self.memories.ncols() - self.model.classes;
        let s = images.dot(&self.memories.slice(ndarray::s![.., ..n]).t());
        let mut dominant = 0usize;
        for (q, &a) in pred.iter().enumerate() {
            let (mut best, mut positive) = (0.0f64, 0.0f64);
            for mu in 0..self.memories.nrows() {
                let labels = self.memories.row(mu);
                let total: f64 = labels.iter().skip(n).sum();
                let x = labels[n + a];
                let base = s[[q, mu]] - (total - x);
                let term = self.model.f(base + x) - self.model.f(base - x);
                if term > 0.0 {
                    positive += term;
                    best = best.max(term);
                }
            }
            dominant += (positive > 0.0 && best >= 0.5 * positive) as usize;
        }
        Ok(dominant as f64 / pred.len().max(1) as f64)
    }
}

/// What one epoch of [`Classifier::train_epoch`] did ([`Classifier::last_epoch`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochReport {
    /// The epoch, 1-based, counting every epoch this classifier has trained.
    pub epoch: usize,
    /// The summed minibatch loss (what `train_epoch` returned).
    pub loss: f64,
    /// Samples in the epoch.
    pub samples: usize,
    /// The temperature T of the epoch.
    pub temperature: f64,
    /// The learning rate ε = ε₀ f^epoch of the epoch.
    pub lr: f64,
    /// The momentum p of the epoch.
    pub momentum: f64,
    /// K.
    pub memories: usize,
    /// Memories that took at least one optimiser step (a non-zero gradient row in some
    /// minibatch): those whose velocity or entries changed. The others are bit for bit as
    /// before the epoch.
    pub updated: usize,
    /// After the first epoch of this classifier, and after any epoch in which no memory
    /// took a step or the loss moved by less than [`TrainingMonitor::TOLERANCE`]
    /// (relative) from the previous one: the fraction of the samples with an output pinned
    /// at the wrong end, exactly ±1 in f32 (the true class's at −1 or another class's at
    /// +1), saturated where a gradient can barely move it. `None` otherwise.
    pub saturated: Option<f64>,
}

/// What [`TrainingMonitor::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Memories took steps and the loss is moving (or it is too early to tell).
    Learning,
    /// Every output sits at its target: the loss is 0, or no memory received a gradient
    /// while the loss is below what one undecided output costs (1). Further epochs change
    /// nothing.
    Converged,
}

/// How the caller spells the parameters a [`TrainingMonitor`] message names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParameterNames {
    /// The first epoch's temperature (or the fixed one).
    pub temperature: &'static str,
    /// The temperature at the end of the ramp.
    pub temperature_final: &'static str,
    /// ε₀.
    pub lr: &'static str,
    /// f.
    pub lr_decay: &'static str,
}

impl ParameterNames {
    /// `dam train`'s flags.
    pub const FLAGS: Self = Self {
        temperature: "--temperature",
        temperature_final: "--temperature-final",
        lr: "--lr",
        lr_decay: "--lr-decay",
    };
    /// Keyword arguments, as in the Python `dam.Classifier`.
    pub const KEYWORDS: Self = Self {
        temperature: "temperature",
        temperature_final: "temperature_final",
        lr: "lr",
        lr_decay: "lr_decay",
    };
}

/// Watches a training run epoch by epoch ([`TrainingMonitor::check`] after each
/// [`Classifier::train_epoch`]) and stops it with [`Error::Stalled`] when it cannot learn:
///
/// * **no gradient**: no memory took a step in the epoch ([`EpochReport::updated`] = 0)
///   while the loss is ≥ 1 (some output is not at its target). When some sample has an
///   output pinned at the wrong end ([`EpochReport::saturated`] > 0) the outputs are
///   saturated (|β z| too large): raise the temperature (the start temperature while T is
///   at its first value, else the final one). Otherwise F′ vanishes at every overlap (u/T
///   so small that uⁿ⁻¹ underflows, or, rectified, every overlap negative): lower it.
///   Detected in the epoch it happens.
/// * **saturated outputs**: at least half of the samples have an output pinned at the
///   wrong end ([`EpochReport::saturated`] ≥ 0.5, measured after the first epoch and
///   whenever an epoch looks stuck) although memories take steps: raise the temperature.
///   (Where the gradients of such outputs are not flushed to zero, as on wgpu, the
///   normalised step still moves the memories, along gradients too small to free them,
///   and the first rule alone would not see it.)
/// * **frozen loss**: the loss changed by less than [`TrainingMonitor::TOLERANCE`]
///   (relative) from each epoch to the next over the last [`TrainingMonitor::PATIENCE`]
///   epochs, although memories take steps and the outputs are not saturated: the steps
///   have become too small to change the outputs; raise the learning rate or its decay.
///
/// A loss of 0, or no gradient at a loss below 1, is [`Progress::Converged`], not an error.
#[derive(Debug, Clone)]
pub struct TrainingMonitor {
    names: ParameterNames,
    /// The losses of the last epochs checked (at most PATIENCE + 1).
    recent: Vec<f64>,
    /// The temperature at the first check since the start or the last schedule change.
    first_temperature: Option<f64>,
    /// Epochs checked.
    seen: usize,
    /// The last epoch checked.
    last_epoch: Option<usize>,
}

impl TrainingMonitor {
    /// Epochs the loss may stay put before the run is stopped.
    pub const PATIENCE: usize = 5;
    /// The relative change of the loss from one epoch to the next below which it counts as
    /// not moving.
    pub const TOLERANCE: f64 = 1e-6;

    /// A monitor whose messages spell the parameters as `names`.
    pub fn new(names: ParameterNames) -> Self {
        Self {
            names,
            recent: Vec::new(),
            first_temperature: None,
            seen: 0,
            last_epoch: None,
        }
    }

    /// Tells the monitor that the caller set the temperature by hand (not along a ramp):
    /// the temperature of the next epoch checked counts as the start temperature.
    pub fn schedule_changed(&mut self) {
        self.first_temperature = None;
    }

    /// Checks the epoch `classifier` trained last (see [`TrainingMonitor`] for the rules);
    /// call it once after every epoch. Before the first epoch it has nothing to say
    /// ([`Progress::Learning`]).
    pub fn check(&mut self, classifier: &Classifier) -> Result<Progress> {
        let Some(r) = classifier.last_epoch() else {
            return Ok(Progress::Learning);
        };
        let at_start = self.seen == 0;
        let new_epoch = self.last_epoch != Some(r.epoch);
        if new_epoch {
            self.seen += 1;
            self.last_epoch = Some(r.epoch);
        }
        let first_temperature = *self.first_temperature.get_or_insert(r.temperature);
        if r.loss == 0.0 || (r.updated == 0 && r.loss < 1.0) {
            self.recent.clear();
            return Ok(Progress::Converged);
        }
        // The start temperature while T is at its first value; once a ramp has moved it,
        // the final one.
        let (flag, now) = if r.temperature == first_temperature {
            (self.names.temperature, format!("now {}", r.temperature))
        } else {
            (
                self.names.temperature_final,
                format!("T is {} at this epoch of its ramp", r.temperature),
            )
        };
        let pinned = r.saturated.unwrap_or(0.0);
        let pinned_text = format!(
            "{:.0} % of the samples with an output pinned at the wrong end (±1)",
            100.0 * pinned
        );
        let saturated = |why: String| Error::Stalled {
            what: if at_start {
                "outputs saturated at the start".into()
            } else {
                "outputs saturated".into()
            },
            epoch: r.epoch,
            detail: format!(
                "{why}; loss {}, {pinned_text}, T = {}",
                r.loss, r.temperature
            ),
            remedy: format!("raise {flag} ({now})"),
        };
        if r.updated > 0 && pinned >= 0.5 {
            return Err(saturated(
                "memories took steps, along output gradients too small to free them".into(),
            ));
        }
        if r.updated == 0 {
            if pinned > 0.0 {
                return Err(saturated("no memory received a gradient".into()));
            }
            let model = classifier.model();
            return Err(Error::Stalled {
                what: "no gradient".into(),
                epoch: r.epoch,
                detail: format!(
                    "no memory received a gradient and no output is pinned at ±1: F′ \
                     vanishes at every overlap (u/T too small for n = {}{}); loss {}, T = {}",
                    model.degree,
                    if model.rectified {
                        ", or every overlap negative"
                    } else {
                        ""
                    },
                    r.loss,
                    r.temperature
                ),
                remedy: format!("lower {flag} ({now})"),
            });
        }
        if new_epoch {
            self.recent.push(r.loss);
            if self.recent.len() > Self::PATIENCE + 1 {
                self.recent.remove(0);
            }
        }
        let frozen = self.recent.len() == Self::PATIENCE + 1
            && self
                .recent
                .windows(2)
                .all(|w| (w[1] - w[0]).abs() <= Self::TOLERANCE * w[0].abs().max(w[1].abs()));
        if frozen {
            return Err(Error::Stalled {
                what: "the loss has stopped moving".into(),
                epoch: r.epoch,
                detail: format!(
                    "it changed by less than {:e} (relative) in each of the last {} epochs \
                     although memories take steps; loss {}, step size ε = {:e} this epoch",
                    Self::TOLERANCE,
                    Self::PATIENCE,
                    r.loss,
                    r.lr
                ),
                remedy: format!("raise {} or {}", self.names.lr, self.names.lr_decay),
            });
        }
        Ok(Progress::Learning)
    }
}

/// The feed-forward dual of a classifier (Krotov & Hopfield 2016, §3): one hidden layer of
/// K units with activation f = F′,
///
///   h_μ = f(Σ_i W_μi v_i + b_μ),  c_α = tanh(2β Σ_μ U_αμ h_μ),
///
/// with W the memories' visible parts, b_μ = −Σ_γ ξ^μ_γ and U_αμ = ξ^μ_α. The memory's
/// label update is F(s + b + 2ξ_α) − F(s + b) summed over μ; its first-order Taylor term in
/// ξ_α is the net's 2 ξ_α f(s + b), so the two agree to O(ε) when the label entries are of
/// size ε (tested) and approximately otherwise (measured on MNIST in the README).
#[derive(Debug, Clone, PartialEq)]
pub struct FeedForward {
    /// K × N input weights.
    pub weights: Array2<f64>,
    /// K hidden biases.
    pub bias: Vec<f64>,
    /// C × K output weights.
    pub output: Array2<f64>,
    /// The model (F, β).
    pub model: ClassifierModel,
}

impl FeedForward {
    /// The outputs c (B × C) for images (B × N).
    pub fn outputs(&self, images: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
        if images.ncols() != self.weights.ncols() {
            return Err(Error::DimensionMismatch {
                argument: "images (B × N)",
                expected: self.weights.ncols(),
                actual: images.ncols(),
            });
        }
        let mut h = images.dot(&self.weights.t());
        for mut row in h.axis_iter_mut(Axis(0)) {
            for (v, b) in row.iter_mut().zip(&self.bias) {
                *v = self.model.f_prime(*v + b);
            }
        }
        let beta2 = 2.0 * self.model.beta();
        Ok(h.dot(&self.output.t()).mapv(|z| (beta2 * z).tanh()))
    }

    /// The predicted class of each image (largest c; ties to the lower class).
    pub fn predict(&self, images: ArrayView2<'_, f64>) -> Result<Vec<usize>> {
        Ok(argmax_rows(&self.outputs(images)?))
    }
}

fn argmax_rows(c: &Array2<f64>) -> Vec<usize> {
    c.axis_iter(Axis(0))
        .map(|row| {
            let mut best = 0;
            for (a, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = a;
                }
            }
            best
        })
        .collect()
}

impl Classifier {
    /// The feed-forward dual of these memories ([`FeedForward`]).
    pub fn dual(&self) -> FeedForward {
        let n = self.memories.ncols() - self.model.classes;
        let labels = self.memories.slice(ndarray::s![.., n..]);
        FeedForward {
            weights: self.memories.slice(ndarray::s![.., ..n]).to_owned(),
            bias: labels.sum_axis(Axis(1)).mapv(|v| -v).to_vec(),
            output: labels.t().to_owned(),
            model: self.model,
        }
    }
}

/// `format` of a saved classifier's metadata.
pub const CLASSIFIER_FORMAT: &str = "dam-classifier";

fn format_error(path: &std::path::Path, reason: String) -> Error {
    Error::Format {
        path: path.display().to_string(),
        format: "dam classifier (safetensors)",
        reason,
    }
}

impl Classifier {
    /// Writes the memories (tensor `memories`, F32, K × (N + C)) and the model (metadata
    /// `format=dam-classifier`, `degree`, `rectified`, `temperature`, `loss_power`,
    /// `classes`, `epochs`) as safetensors, through a temporary file renamed into place.
    pub fn save_file(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let path = path.as_ref();
        let data = self.memories32.as_standard_layout();
        let bytes: &[u8] = bytemuck::cast_slice(data.as_slice().expect("standard layout"));
        let m = &self.model;
        let metadata: std::collections::HashMap<String, String> = [
            ("format", CLASSIFIER_FORMAT.to_string()),
            ("format_version", "1".into()),
            ("degree", m.degree.to_string()),
            ("rectified", m.rectified.to_string()),
            ("temperature", m.temperature.to_string()),
            ("loss_power", m.loss_power.to_string()),
            ("classes", m.classes.to_string()),
            ("epochs", self.epoch.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let view = safetensors::tensor::TensorView::new(
            safetensors::Dtype::F32,
            vec![self.memories.nrows(), self.memories.ncols()],
            bytes,
        )
        .map_err(|e| Error::Backend {
            backend: "safetensors",
            source: Box::new(e),
        })?;
        let out = safetensors::serialize([("memories", view)], Some(metadata)).map_err(|e| {
            Error::Backend {
                backend: "safetensors",
                source: Box::new(e),
            }
        })?;
        let io = |e: std::io::Error| Error::Io {
            path: path.display().to_string(),
            source: e,
        };
        let tmp = path.with_extension("safetensors.tmp");
        std::fs::write(&tmp, out).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads a file written by [`Classifier::save_file`]; the optimiser starts afresh
    /// (velocity 0) at the saved epoch count.
    pub fn load_file(path: impl AsRef<std::path::Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        let bad = |reason: String| format_error(path, reason);
        let (_, header) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let meta = header
            .metadata()
            .clone()
            .ok_or_else(|| bad("no metadata: not written by dam".into()))?;
        if meta.get("format").map(String::as_str) != Some(CLASSIFIER_FORMAT) {
            return Err(bad(format!(
                "`format` is {:?}, expected {CLASSIFIER_FORMAT:?}",
                meta.get("format")
            )));
        }
        let get = |key: &str| -> Result<&String> {
            meta.get(key)
                .ok_or_else(|| bad(format!("metadata `{key}` is missing")))
        };
        let parse_err = |key: &str| bad(format!("metadata `{key}` is malformed"));
        let model = ClassifierModel {
            degree: get("degree")?.parse().map_err(|_| parse_err("degree"))?,
            rectified: get("rectified")?
                .parse()
                .map_err(|_| parse_err("rectified"))?,
            temperature: get("temperature")?
                .parse()
                .map_err(|_| parse_err("temperature"))?,
            loss_power: get("loss_power")?
                .parse()
                .map_err(|_| parse_err("loss_power"))?,
            classes: get("classes")?.parse().map_err(|_| parse_err("classes"))?,
        };
        let epochs: usize = get("epochs")?.parse().map_err(|_| parse_err("epochs"))?;
        let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let t = file
            .tensor("memories")
            .map_err(|_| bad("tensor `memories` is missing".into()))?;
        if t.dtype() != safetensors::Dtype::F32 || t.shape().len() != 2 {
            return Err(bad(format!(
                "`memories` is {:?} {:?}, expected F32 K × (N + C)",
                t.dtype(),
                t.shape()
            )));
        }
        let values: Vec<f64> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect();
        let memories = Array2::from_shape_vec((t.shape()[0], t.shape()[1]), values)
            .map_err(|e| bad(e.to_string()))?;
        let mut c = Self::new(model, memories, device)?;
        c.epoch = epochs;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ClassifierModel {
        ClassifierModel {
            degree: 3,
            rectified: true,
            temperature: 3.0,
            loss_power: 1,
            classes: 3,
        }
    }

    /// A toy problem: three prototypes over 12 pixels, noisy copies; training lowers the
    /// loss on the training set and classifies it.
    #[test]
    fn training_lowers_the_loss_and_learns_a_toy_problem() {
        let protos: Vec<Vec<f64>> = (0..3)
            .map(|c| {
                (0..12)
                    .map(|i| if (i / 4) == c { 1.0 } else { -1.0 })
                    .collect()
            })
            .collect();
        let mut images = Array2::zeros((60, 12));
        let mut labels = Vec::new();
        for q in 0..60 {
            let c = q % 3;
            labels.push(c);
            for i in 0..12 {
                let flip = (q * 7 + i * 3) % 11 == 0;
                images[[q, i]] = if flip { -protos[c][i] } else { protos[c][i] };
            }
        }
        let mut clf = Classifier::random(model(), 6, 12, 1, &Device::Cpu).unwrap();
        let opts = EpochOptions {
            batch: 10,
            lr: 0.05,
            lr_decay: 0.9,
            seed: 4,
            momentum: None,
            shift: 0,
        };
        let first = clf.train_epoch(images.view(), &labels, &opts).unwrap();
        let mut last = first;
        for _ in 0..40 {
            last = clf.train_epoch(images.view(), &labels, &opts).unwrap();
        }
        assert!(last < 0.5 * first, "loss {first} → {last}");
        assert_eq!(clf.error_percent(images.view(), &labels).unwrap(), 0.0);
        assert!(clf.memories().iter().all(|v| v.abs() <= 1.0));
        assert_eq!(clf.epochs(), 41);
        // Saved and loaded: the same predictions.
        let path = std::env::temp_dir().join(format!("dam-clf-{}.safetensors", std::process::id()));
        clf.save_file(&path).unwrap();
        let back = Classifier::load_file(&path, &Device::Cpu).unwrap();
        assert_eq!(
            back.predict(images.view()).unwrap(),
            clf.predict(images.view()).unwrap()
        );
        assert_eq!((back.epochs(), back.model()), (41, clf.model()));
        std::fs::write(&path, b"not a safetensors file").unwrap();
        assert!(matches!(
            Classifier::load_file(&path, &Device::Cpu),
            Err(Error::Format { .. })
        ));
        std::fs::remove_file(&path).unwrap();
    }

    /// With label entries of size ε the memory's pre-tanh sums and the dual net's differ
    /// by O(ε²) while both are O(ε): the relative gap shrinks ∝ ε.
    #[test]
    fn the_dual_net_agrees_to_first_order() {
        let model = ClassifierModel {
            degree: 3,
            rectified: false,
            temperature: 4.0,
            loss_power: 1,
            classes: 3,
        };
        let base = Classifier::random(model, 7, 9, 3, &Device::Cpu).unwrap();
        let images = Array2::from_shape_fn((5, 9), |(q, i)| ((q * 9 + i) as f64 * 0.37).sin());
        let mut gaps = Vec::new();
        for eps in [0.1, 0.01, 0.001] {
            let mut m = base.memories().to_owned();
            m.slice_mut(ndarray::s![.., 9..]).mapv_inplace(|v| v * eps);
            let clf = Classifier::new(model, m.clone(), &Device::Cpu).unwrap();
            let exact = dam_cpu::learn::outputs(&model, m.view(), images.view()).unwrap();
            let dual = clf.dual().outputs(images.view()).unwrap();
            let atanh = |c: &Array2<f64>| c.mapv(f64::atanh);
            let (za, zd) = (atanh(&exact), atanh(&dual));
            let size = za.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            let gap = za
                .iter()
                .zip(&zd)
                .fold(0.0f64, |a, (x, y)| a.max((x - y).abs()));
            gaps.push(gap / size);
        }
        assert!(
            gaps[1] < 0.2 * gaps[0] && gaps[2] < 0.2 * gaps[1],
            "{gaps:?}"
        );
        assert!(gaps[2] < 1e-2, "{gaps:?}");
    }

    /// On one fixed batch (the whole set) with a small rate, every step lowers the loss.
    #[test]
    fn small_steps_on_a_fixed_batch_never_raise_the_loss() {
        let images = Array2::from_shape_fn((30, 16), |(q, i)| ((q * 16 + i) as f64 * 0.61).sin());
        let labels: Vec<usize> = (0..30).map(|q| q % 3).collect();
        for rectified in [false, true] {
            let m = ClassifierModel {
                rectified,
                ..model()
            };
            let mut clf = Classifier::random(m, 8, 16, 2, &Device::Cpu).unwrap();
            let opts = EpochOptions {
                batch: 30,
                lr: 1e-4,
                lr_decay: 1.0,
                seed: 0,
                momentum: None,
                shift: 0,
            };
            let losses: Vec<f64> = (0..12)
                .map(|_| clf.train_epoch(images.view(), &labels, &opts).unwrap())
                .collect();
            for w in losses.windows(2) {
                assert!(w[1] <= w[0], "rectified={rectified}: {losses:?}");
            }
            assert!(losses[11] < losses[0], "rectified={rectified}: {losses:?}");
        }
    }

    #[test]
    fn epoch_orders_are_seeded_permutations() {
        let a = epoch_order(100, 3, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(100, 3, 0));
        assert_ne!(a, epoch_order(100, 3, 1));
        assert_ne!(a, epoch_order(100, 4, 0));
    }

    #[test]
    fn bad_input_is_refused() {
        let mem = Array2::from_elem((2, 5), 0.5);
        assert!(matches!(
            Classifier::new(model(), Array2::zeros((0, 5)), &Device::Cpu),
            Err(Error::Empty { .. })
        ));
        assert!(matches!(
            Classifier::new(model(), Array2::from_elem((2, 5), 1.5), &Device::Cpu),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(matches!(
            Classifier::new(
                ClassifierModel {
                    degree: 0,
                    ..model()
                },
                mem.clone(),
                &Device::Cpu
            ),
            Err(Error::InvalidParameter { .. })
        ));
        let mut clf = Classifier::new(model(), mem, &Device::Cpu).unwrap();
        let x = Array2::zeros((3, 2));
        let opts = EpochOptions {
            batch: 0,
            lr: 0.1,
            lr_decay: 1.0,
            seed: 0,
            momentum: None,
            shift: 0,
        };
        assert!(clf.train_epoch(x.view(), &[0, 1, 2], &opts).is_err());
        let opts = EpochOptions { batch: 2, ..opts };
        assert!(clf.train_epoch(x.view(), &[0, 1], &opts).is_err());
        assert!(clf.train_epoch(x.view(), &[0, 1, 3], &opts).is_err());
        let opts = EpochOptions {
            momentum: Some(1.0),
            ..opts
        };
        assert!(matches!(
            clf.train_epoch(x.view(), &[0, 1, 2], &opts),
            Err(Error::InvalidParameter {
                argument: "momentum",
                ..
            })
        ));
        assert!(matches!(
            clf.set_temperature(-1.0),
            Err(Error::InvalidParameter { .. })
        ));
        assert_eq!(clf.model().temperature, 3.0);
    }

    /// Three prototypes over 24 pixels, 90 noisy copies (a pixel in 11 flipped).
    fn toy() -> (Array2<f64>, Vec<usize>) {
        let labels: Vec<usize> = (0..90).map(|q| q % 3).collect();
        let images = Array2::from_shape_fn((90, 24), |(q, i)| {
            let v = if i / 8 == labels[q] { 1.0 } else { -1.0 };
            if (q * 7 + i * 3) % 11 == 0 {
                -v
            } else {
                v
            }
        });
        (images, labels)
    }

    fn stall_of(r: Result<Progress>) -> (String, String) {
        match r {
            Err(Error::Stalled { what, remedy, .. }) => (what, remedy),
            other => panic!("expected a stall, got {other:?}"),
        }
    }

    /// At a temperature far below the overlaps every output is ±1 from the start: no
    /// memory moves, and the monitor says so at once, naming the flag to raise.
    #[test]
    fn a_saturated_start_is_stopped_at_the_first_epoch() {
        let (images, labels) = toy();
        let m = ClassifierModel {
            temperature: 0.05,
            ..model()
        };
        let mut clf = Classifier::random(m, 6, 24, 1, &Device::Cpu).unwrap();
        let before = clf.memories().to_owned();
        let opts = Recipe::recommended(3, true).epoch_options(0);
        let loss = clf.train_epoch(images.view(), &labels, &opts).unwrap();
        let report = *clf.last_epoch().unwrap();
        assert_eq!((report.epoch, report.updated, report.loss), (1, 0, loss));
        assert_eq!(report.saturated, Some(1.0));
        assert_eq!(clf.memories(), before);
        let mut monitor = TrainingMonitor::new(ParameterNames::FLAGS);
        let (what, remedy) = stall_of(monitor.check(&clf));
        assert_eq!(what, "outputs saturated at the start");
        assert_eq!(remedy, "raise --temperature (now 0.05)");
        let err = TrainingMonitor::new(ParameterNames::KEYWORDS)
            .check(&clf)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("outputs saturated at the start (epoch 1: no memory received")
                && err.ends_with("raise temperature (now 0.05)"),
            "{err}"
        );
    }

    /// Along a ramp, saturation names the final temperature; far above the overlaps at a
    /// large degree, F′ underflows instead and the advice is to lower T.
    #[test]
    fn no_gradient_names_the_temperature_to_change() {
        let (images, labels) = toy();
        let opts = Recipe::recommended(3, true).epoch_options(0);
        let mut clf = Classifier::random(model(), 6, 24, 1, &Device::Cpu).unwrap();
        let mut monitor = TrainingMonitor::new(ParameterNames::FLAGS);
        clf.train_epoch(images.view(), &labels, &opts).unwrap();
        assert_eq!(monitor.check(&clf).unwrap(), Progress::Learning);
        clf.set_temperature(0.05).unwrap();
        clf.train_epoch(images.view(), &labels, &opts).unwrap();
        let (what, remedy) = stall_of(monitor.check(&clf));
        assert_eq!(what, "outputs saturated");
        assert_eq!(
            remedy,
            "raise --temperature-final (T is 0.05 at this epoch of its ramp)"
        );

        let m = ClassifierModel {
            degree: 30,
            temperature: 1e6,
            ..model()
        };
        let mut clf = Classifier::random(m, 6, 24, 1, &Device::Cpu).unwrap();
        clf.train_epoch(images.view(), &labels, &opts).unwrap();
        assert_eq!(clf.last_epoch().unwrap().saturated, Some(0.0));
        let (what, remedy) = stall_of(TrainingMonitor::new(ParameterNames::FLAGS).check(&clf));
        assert_eq!(what, "no gradient");
        assert_eq!(remedy, "lower --temperature (now 1000000)");
    }

    /// Steps far below f32 resolution: the memories take steps (their velocity changes) but
    /// the loss stays put; the monitor stops the run after PATIENCE such epochs.
    #[test]
    fn a_frozen_loss_is_stopped_after_the_patience() {
        let (images, labels) = toy();
        let mut clf = Classifier::random(model(), 6, 24, 1, &Device::Cpu).unwrap();
        let opts = EpochOptions {
            batch: 30,
            lr: 1e-30,
            lr_decay: 1.0,
            seed: 0,
            momentum: None,
            shift: 0,
        };
        let mut monitor = TrainingMonitor::new(ParameterNames::FLAGS);
        for epoch in 1..=TrainingMonitor::PATIENCE {
            clf.train_epoch(images.view(), &labels, &opts).unwrap();
            assert!(clf.last_epoch().unwrap().updated > 0);
            assert_eq!(monitor.check(&clf).unwrap(), Progress::Learning, "{epoch}");
        }
        clf.train_epoch(images.view(), &labels, &opts).unwrap();
        let (what, remedy) = stall_of(monitor.check(&clf));
        assert_eq!(what, "the loss has stopped moving");
        assert_eq!(remedy, "raise --lr or --lr-decay");
    }

    #[test]
    fn recipes_validate_and_take_the_callers_choices() {
        for degree in [1, 2, 3, 4, 10, 30, 100] {
            for rectified in [false, true] {
                let r = Recipe::recommended(degree, rectified);
                r.validate().unwrap();
                assert!(r.temperature >= r.temperature_final, "{r:?}");
            }
        }
        let r = Recipe::recommended(3, true);
        assert_eq!(
            (r.temperature, r.temperature_final, r.ramp_epochs),
            (400.0, 50.0, 50)
        );
        assert_eq!(
            (r.lr, r.lr_decay, r.batch, r.momentum),
            (0.1, 0.95, 100, None)
        );
        assert_eq!(r.temperature_at(0), 400.0);
        assert_eq!(r.temperature_at(25), 225.0);
        assert_eq!(r.temperature_at(80), 50.0);
        assert_eq!(r.with(&RecipeOverrides::default()), r);
        // A start temperature alone fixes T; a final one alone ramps from the recipe's start.
        let fixed = r.with(&RecipeOverrides {
            temperature: Some(100.0),
            ..Default::default()
        });
        assert_eq!((fixed.temperature, fixed.temperature_final), (100.0, 100.0));
        let ramped = r.with(&RecipeOverrides {
            temperature_final: Some(80.0),
            ramp_epochs: Some(10),
            lr: Some(0.2),
            momentum: Some(0.7),
            ..Default::default()
        });
        assert_eq!(
            (
                ramped.temperature,
                ramped.temperature_final,
                ramped.ramp_epochs
            ),
            (400.0, 80.0, 10)
        );
        assert_eq!((ramped.lr, ramped.momentum), (0.2, Some(0.7)));
        assert_eq!(ramped.epoch_options(7).seed, 7);
        assert_eq!(EpochOptions::recommended(3, true, 7), r.epoch_options(7));
        for (bad, argument) in [
            (
                RecipeOverrides {
                    temperature_final: Some(0.0),
                    ..Default::default()
                },
                "temperature_final",
            ),
            (
                RecipeOverrides {
                    temperature: Some(f64::NAN),
                    ..Default::default()
                },
                "temperature",
            ),
            (
                RecipeOverrides {
                    batch: Some(0),
                    ..Default::default()
                },
                "batch",
            ),
        ] {
            assert!(
                matches!(r.with(&bad).validate(), Err(Error::InvalidParameter { argument: a, .. }) if a == argument),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ramps_are_linear_then_flat() {
        assert_eq!(ramp(400.0, 100.0, 100, 0), 400.0);
        assert_eq!(ramp(400.0, 100.0, 100, 50), 250.0);
        assert_eq!(ramp(400.0, 100.0, 100, 100), 100.0);
        assert_eq!(ramp(400.0, 100.0, 100, 500), 100.0);
        assert_eq!(ramp(400.0, 100.0, 0, 0), 100.0);
    }
}
