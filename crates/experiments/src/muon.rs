//! `dam muon`: gradient descent and Muon on a linear associative memory with softmax
//! retrieval (Li, Wang, Zhong, Lu, Wang, "Muon in associative-memory learning").
//!
//! K query embeddings E_j and K answer embeddings Ẽ_i, both orthonormal; the memory is a
//! matrix W, the prediction p̂(i | j) = softmax_i(Ẽ_iᵀ W E_j), and the loss
//!
//! L = Σ_j p_j Σ_i p(i | j) (−log p̂(i | j)),  p(i | j) = (1 − α)·[i = j] + α/K,
//!
//! with label noise α and item frequencies p_j in M groups of K/M items ([`Spectrum`]).
//! W starts at 0. GD steps W ← W − η∇L, Muon W ← W − η·msgn(∇L) with msgn(G) = U sign(Σ) Vᵀ.
//!
//! # The embedding basis
//!
//! With orthonormal embeddings the logits Z = Ẽᵀ W E (K×K) are all the loss sees, the
//! gradient is ∇_W L = Ẽ G Eᵀ with G = ∇_Z L, G_ij = p_j (p̂(i | j) − p(i | j)), and
//! msgn(Ẽ G Eᵀ) = Ẽ msgn(G) Eᵀ. So GD and Muon on W (of any dimension d ≥ K) are GD and
//! Muon on Z, exactly: this module runs on Z, i.e. identity embeddings with d = K.
//!
//! # Devices
//!
//! * [`Device::Reference`]: Z in f64, msgn by an exact SVD (nalgebra; singular values at
//!   most K·ε·σ_max count as zero and get sign 0).
//! * [`Device::Cpu`]: Z in f32, msgn by Newton–Schulz iterations ([`NewtonSchulz`]) on the
//!   CPU's f32 matrix product.
//! * wgpu: as the CPU but each product of the Newton–Schulz iterations runs through the
//!   generic tiled matrix product on the adapter.
//!
//! On every device the softmax, the gradient and the loss are computed on the host in f64
//! from the current logits (f32 logits read as f64): the loss near 10⁻⁷ would be lost to
//! rounding in an f32 log-sum-exp. GD has no matrix product, so its f32 update is the same
//! on the CPU and on wgpu.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use dam::Device;
use ndarray::{Array2, ArrayView2, Zip};

use crate::error::{invalid, output, ExperimentError};
use crate::Result;

/// The item frequencies: M groups of K/M items, every item of a group equally frequent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spectrum {
    /// p_j = 1/K.
    Uniform,
    /// Group g = 1..M has probability p̃_g ∝ g^{−β} (group 1 the most frequent), shared
    /// equally by its K/M items.
    Power(f64),
}

impl Spectrum {
    /// Reads `uniform` or `power:BETA` (β ≥ 0).
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim().to_ascii_lowercase();
        if t == "uniform" {
            return Ok(Spectrum::Uniform);
        }
        let beta = t
            .strip_prefix("power:")
            .and_then(|b| b.trim().parse::<f64>().ok())
            .filter(|b| b.is_finite() && *b >= 0.0)
            .ok_or_else(|| invalid("--spectrum", text, "use uniform or power:BETA with β ≥ 0"))?;
        Ok(Spectrum::Power(beta))
    }

    /// `uniform` or `power:β`.
    pub fn name(&self) -> String {
        match self {
            Spectrum::Uniform => "uniform".into(),
            Spectrum::Power(beta) => format!("power:{beta}"),
        }
    }
}

/// The optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optimizer {
    /// W ← W − η∇L.
    Gd,
    /// W ← W − η·msgn(∇L).
    Muon,
}

impl Optimizer {
    /// Reads `gd` or `muon`.
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "gd" => Ok(Optimizer::Gd),
            "muon" => Ok(Optimizer::Muon),
            _ => Err(invalid("--optimizer", text, "use gd or muon")),
        }
    }

    /// `gd` or `muon`.
    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Gd => "gd",
            Optimizer::Muon => "muon",
        }
    }
}

/// The Newton–Schulz iteration that approximates msgn on the f32 devices (shared with
/// `dam train --optimizer muon`: [`dam::cpu::msgn`]).
pub use dam::cpu::msgn::{NewtonSchulz, QUINTIC};

/// Reads `cubic` or `quintic`.
pub fn parse_ns(text: &str) -> Result<NewtonSchulz> {
    match text.trim().to_ascii_lowercase().as_str() {
        "cubic" => Ok(NewtonSchulz::Cubic),
        "quintic" => Ok(NewtonSchulz::Quintic),
        _ => Err(invalid("--ns", text, "use cubic or quintic")),
    }
}

/// One `dam muon` run.
#[derive(Debug, Clone, PartialEq)]
pub struct MuonSpec {
    /// K items (queries and answers).
    pub k: usize,
    /// M groups of K/M items.
    pub groups: usize,
    /// The item frequencies.
    pub spectrum: Spectrum,
    /// Label noise α ∈ [0, 1).
    pub noise: f64,
    /// T steps.
    pub steps: usize,
    /// η.
    pub lr: f64,
    /// GD or Muon.
    pub optimizer: Optimizer,
    /// The iteration msgn uses on the f32 devices.
    pub ns: NewtonSchulz,
    /// Its number of iterations.
    pub ns_steps: usize,
}

impl Default for MuonSpec {
    fn default() -> Self {
        Self {
            k: 100,
            groups: 10,
            spectrum: Spectrum::Uniform,
            noise: 0.0,
            steps: 100,
            lr: 1.0,
            optimizer: Optimizer::Muon,
            ns: NewtonSchulz::Cubic,
            ns_steps: DEFAULT_NS_STEPS,
        }
    }
}

/// Newton–Schulz iterations by default: the cubic iteration takes singular values from
/// 1/√K (K = 100: G/‖G‖_F with K − 1 equal ones) to 1 within f32 rounding in about 15.
pub const DEFAULT_NS_STEPS: usize = 25;

impl MuonSpec {
    /// Checks the sizes and rates; the error names the flag.
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 {
            return Err(invalid("--k", "0", "at least one item"));
        }
        if self.groups == 0 || !self.k.is_multiple_of(self.groups) {
            return Err(invalid(
                "--groups",
                &self.groups.to_string(),
                format!("must divide K = {} (groups of K/M items)", self.k),
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(invalid("--lr", &self.lr.to_string(), "use η > 0"));
        }
        if !(0.0..1.0).contains(&self.noise) {
            return Err(invalid("--noise", &self.noise.to_string(), "use 0 ≤ α < 1"));
        }
        if self.steps == 0 {
            return Err(invalid("--steps", "0", "at least one step"));
        }
        if self.optimizer == Optimizer::Muon && self.ns_steps == 0 {
            return Err(invalid("--ns-steps", "0", "at least one iteration"));
        }
        if let Spectrum::Power(beta) = self.spectrum {
            if !(beta.is_finite() && beta >= 0.0) {
                return Err(invalid("--spectrum", &beta.to_string(), "use β ≥ 0"));
            }
        }
        Ok(())
    }

    /// The probability of each group (sums to 1).
    pub fn group_probabilities(&self) -> Vec<f64> {
        let weights: Vec<f64> = (1..=self.groups)
            .map(|g| match self.spectrum {
                Spectrum::Uniform => 1.0,
                Spectrum::Power(beta) => (g as f64).powf(-beta),
            })
            .collect();
        let total: f64 = weights.iter().sum();
        weights.into_iter().map(|w| w / total).collect()
    }

    /// p_j for each item j (item j is in group j / (K/M)).
    pub fn frequencies(&self) -> Vec<f64> {
        let size = self.k / self.groups;
        let groups = self.group_probabilities();
        (0..self.k)
            .map(|j| groups[j / size] / size as f64)
            .collect()
    }

    /// The smallest loss any logits reach: Σ_j p_j H(p(·|j)), the entropy of the noisy
    /// label distribution (0 without noise).
    pub fn lower_bound(&self) -> f64 {
        label_entropy(self.k, self.noise)
    }
}

/// H(p(·|j)) for p(i | j) = (1 − α)[i = j] + α/K.
pub fn label_entropy(k: usize, noise: f64) -> f64 {
    let xlogx = |x: f64| if x > 0.0 { x * x.ln() } else { 0.0 };
    let kf = k as f64;
    0.0 - (xlogx(1.0 - noise + noise / kf) + (kf - 1.0) * xlogx(noise / kf))
}

/// The Muon loss for uniform frequencies and no noise: L(t) = log(1 + (K − 1)e^{−ηt}).
pub fn closed_form_muon(k: usize, lr: f64, t: usize) -> f64 {
    ((k as f64 - 1.0) * (-lr * t as f64).exp()).ln_1p()
}

/// The GD loss for uniform frequencies and no noise: by symmetry every logit margin
/// Δ = Z_jj − Z_ij is the same, Δ₀ = 0, Δ ← Δ + η e^{−Δ}/(1 + (K − 1)e^{−Δ}), and
/// L = log(1 + (K − 1)e^{−Δ}).
pub fn closed_form_gd(k: usize, lr: f64, t: usize) -> f64 {
    let km1 = k as f64 - 1.0;
    let mut margin = 0.0f64;
    for _ in 0..t {
        let e = (-margin).exp();
        margin += lr * e / (1.0 + km1 * e);
    }
    (km1 * (-margin).exp()).ln_1p()
}

/// The loss of logits `z` per item — ℓ_j = Σ_i p(i | j)(−log p̂(i | j)) — and, when
/// `gradient`, G = ∇_Z L with G_ij = p_j (p̂(i | j) − p(i | j)). Computed in f64 with
/// log1p of the sum s of the non-largest terms and 1 − p̂ = s/(1 + s) for the largest, so
/// losses and gradients far below ε keep their digits.
pub fn evaluate(
    z: ArrayView2<'_, f64>,
    frequencies: &[f64],
    noise: f64,
    gradient: bool,
) -> (Vec<f64>, Option<Array2<f64>>) {
    let k = z.nrows();
    let kf = k as f64;
    let mut items = Vec::with_capacity(k);
    let mut grad = gradient.then(|| Array2::<f64>::zeros((k, k)));
    for (j, col) in z.columns().into_iter().enumerate() {
        let (mut top, mut m) = (0, f64::NEG_INFINITY);
        for (i, &v) in col.iter().enumerate() {
            if v > m {
                (top, m) = (i, v);
            }
        }
        let s: f64 = col
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != top)
            .map(|(_, &v)| (v - m).exp())
            .sum();
        let log1p = s.ln_1p();
        let gaps: f64 = col.iter().map(|&v| m - v).sum();
        items.push(log1p + (1.0 - noise) * (m - col[j]) + noise / kf * gaps);
        if let Some(g) = grad.as_mut() {
            let p = frequencies[j];
            for (i, &v) in col.iter().enumerate() {
                let residual = if i == j && i == top {
                    // p̂ − 1 = −s/(1 + s): 1/(1 + s) − 1 would be 0 once s < ε.
                    -s / (1.0 + s) + noise * (1.0 - 1.0 / kf)
                } else {
                    let target = noise / kf + if i == j { 1.0 - noise } else { 0.0 };
                    (v - m).exp() / (1.0 + s) - target
                };
                g[[i, j]] = p * residual;
            }
        }
    }
    (items, grad)
}

/// msgn(G) = U sign(Σ) Vᵀ by an exact SVD (nalgebra), singular values at most
/// max(m, n)·ε·σ_max counted as zero.
pub fn msgn_exact(g: ArrayView2<'_, f64>) -> Array2<f64> {
    let (m, n) = g.dim();
    let matrix = nalgebra::DMatrix::from_fn(m, n, |i, j| g[[i, j]]);
    let svd = matrix.svd(true, true);
    let (u, v_t) = (
        svd.u.expect("SVD computed with U"),
        svd.v_t.expect("SVD computed with Vᵀ"),
    );
    let largest = svd.singular_values.iter().cloned().fold(0.0, f64::max);
    let cut = largest * m.max(n) as f64 * f64::EPSILON;
    let mut out = Array2::<f64>::zeros((m, n));
    for (r, &s) in svd.singular_values.iter().enumerate() {
        if s <= cut {
            continue;
        }
        for i in 0..m {
            let ui = u[(i, r)];
            for j in 0..n {
                out[[i, j]] += ui * v_t[(r, j)];
            }
        }
    }
    out
}

/// msgn(G) by `steps` Newton–Schulz iterations from X₀ = G/‖G‖_F, each product through
/// `mul(A, B) = A·B` ([`dam::cpu::msgn::newton_schulz`]). G = 0 gives 0.
pub fn newton_schulz(
    g: ArrayView2<'_, f32>,
    kind: NewtonSchulz,
    steps: usize,
    mul: impl FnMut(ArrayView2<'_, f32>, ArrayView2<'_, f32>) -> Result<Array2<f32>>,
) -> Result<Array2<f32>> {
    dam::cpu::msgn::newton_schulz(g, kind, steps, mul)
}

/// A·B on the CPU's f32 matrix product.
pub fn cpu_product(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
    Ok(dam::cpu::msgn::product_f32(a, b))
}

/// A·B through the wgpu backend's generic matrix product.
pub fn wgpu_product(
    ctx: &dam::WgpuContext,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
) -> Result<Array2<f32>> {
    use dam::wgpu_backend::matmul::{self, MatMul};
    let (m, k) = a.dim();
    let n = b.ncols();
    let too_large =
        || ExperimentError::Unsupported(format!("a {m}×{k}·{k}×{n} product is too large"));
    let spec = MatMul::plain(
        u32::try_from(m).map_err(|_| too_large())?,
        u32::try_from(n).map_err(|_| too_large())?,
        u32::try_from(k).map_err(|_| too_large())?,
        false,
        false,
    );
    let a = a.as_standard_layout();
    let b = b.as_standard_layout();
    let (c, _) = matmul::run(
        ctx,
        &spec,
        a.as_slice().expect("standard layout"),
        b.as_slice().expect("standard layout"),
        None,
    )?;
    Array2::from_shape_vec((m, n), c).map_err(|e| ExperimentError::Unsupported(e.to_string()))
}

/// The losses of a run.
#[derive(Debug, Clone)]
pub struct MuonReport {
    /// L(t) for t = 0..=T (t = 0: W = 0).
    pub losses: Vec<f64>,
    /// Per step, per group: the group's mean per-item loss (1/|g|) Σ_{j∈g} ℓ_j, not
    /// weighted by frequency; L = Σ_g P_g · group_g with P_g the group's probability.
    pub group_losses: Vec<Vec<f64>>,
    /// The entropy floor Σ_j p_j H(p(·|j)).
    pub lower_bound: f64,
    /// The device kind (`reference`, `cpu`, `wgpu`) and its description.
    pub device: (String, String),
    /// Wall-clock seconds of the run.
    pub seconds: f64,
}

impl MuonReport {
    /// L(T).
    pub fn final_loss(&self) -> f64 {
        *self.losses.last().expect("at least L(0)")
    }

    /// The per-group losses at T.
    pub fn final_group_losses(&self) -> &[f64] {
        self.group_losses.last().expect("at least step 0")
    }
}

/// Runs `spec` on `device`, calling `progress(t)` after step t.
pub fn run(
    spec: &MuonSpec,
    device: &Device,
    mut progress: impl FnMut(usize),
) -> Result<MuonReport> {
    spec.validate()?;
    let start = Instant::now();
    let k = spec.k;
    let size = k / spec.groups;
    let p = spec.frequencies();
    let described = device.describe()?;
    let ctx = device.context()?;
    let reference = matches!(device, Device::Reference);
    let mut z64 = Array2::<f64>::zeros((k, k));
    let mut z32 = Array2::<f32>::zeros((k, k));
    let mut losses = Vec::with_capacity(spec.steps + 1);
    let mut group_losses = Vec::with_capacity(spec.steps + 1);
    for t in 0..=spec.steps {
        let last = t == spec.steps;
        let (items, grad) = if reference {
            evaluate(z64.view(), &p, spec.noise, !last)
        } else {
            evaluate(z32.mapv(f64::from).view(), &p, spec.noise, !last)
        };
        losses.push(items.iter().zip(&p).map(|(l, p)| l * p).sum());
        group_losses.push(
            items
                .chunks(size)
                .map(|c| c.iter().sum::<f64>() / size as f64)
                .collect(),
        );
        let Some(g) = grad else { break };
        match (spec.optimizer, reference) {
            (Optimizer::Gd, true) => z64.scaled_add(-spec.lr, &g),
            (Optimizer::Muon, true) => z64.scaled_add(-spec.lr, &msgn_exact(g.view())),
            (Optimizer::Gd, false) => {
                Zip::from(&mut z32)
                    .and(&g)
                    .for_each(|z, &g| *z -= (spec.lr * g) as f32);
            }
            (Optimizer::Muon, false) => {
                // msgn is blind to scale: normalising in f64 first keeps a gradient
                // below f32's range (losses under 1e-40) from rounding to 0.
                let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
                let g32 = g.mapv(|v| if norm > 0.0 { (v / norm) as f32 } else { 0.0 });
                let d = match &ctx {
                    Some(ctx) => newton_schulz(g32.view(), spec.ns, spec.ns_steps, |a, b| {
                        wgpu_product(ctx, a, b)
                    })?,
                    None => newton_schulz(g32.view(), spec.ns, spec.ns_steps, cpu_product)?,
                };
                z32.scaled_add(-(spec.lr as f32), &d);
            }
        }
        progress(t + 1);
    }
    Ok(MuonReport {
        losses,
        group_losses,
        lower_bound: spec.lower_bound(),
        device: described,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Reads `--sweep-steps`: `T1,T2,...` or `LO:HI:COUNT` (COUNT log-spaced values from LO to
/// HI, rounded; repeats dropped). Sorted, every T ≥ 1.
pub fn parse_sweep_steps(text: &str) -> Result<Vec<usize>> {
    let bad = |reason: &str| invalid("--sweep-steps", text, reason);
    let mut steps: Vec<usize> = if text.contains(':') {
        let parts: Vec<&str> = text.split(':').map(str::trim).collect();
        let [lo, hi, count] = parts[..] else {
            return Err(bad("use LO:HI:COUNT or T1,T2,..."));
        };
        let (lo, hi, count) = match (
            lo.parse::<usize>(),
            hi.parse::<usize>(),
            count.parse::<usize>(),
        ) {
            (Ok(lo), Ok(hi), Ok(count)) if lo >= 1 && hi >= lo && count >= 1 => (lo, hi, count),
            _ => return Err(bad("LO:HI:COUNT with 1 ≤ LO ≤ HI and COUNT ≥ 1")),
        };
        if count == 1 {
            vec![hi]
        } else {
            let (a, b) = ((lo as f64).ln(), (hi as f64).ln());
            (0..count)
                .map(|i| (a + (b - a) * i as f64 / (count - 1) as f64).exp().round() as usize)
                .map(|t| t.clamp(lo, hi))
                .collect()
        }
    } else {
        text.split(',')
            .map(|t| t.trim().parse::<usize>().ok().filter(|&t| t >= 1))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| bad("every T a whole number ≥ 1"))?
    };
    steps.sort_unstable();
    steps.dedup();
    if steps.is_empty() {
        return Err(bad("no step counts"));
    }
    Ok(steps)
}

/// log L_final = intercept + exponent · log T, fitted by least squares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalingFit {
    /// a.
    pub intercept: f64,
    /// γ.
    pub exponent: f64,
}

/// The least-squares fit of log L against log T over the points with L > 0 (`None` with
/// fewer than two distinct T).
pub fn fit_exponent(points: &[(usize, f64)]) -> Option<ScalingFit> {
    let xy: Vec<(f64, f64)> = points
        .iter()
        .filter(|&&(t, l)| t > 0 && l > 0.0 && l.is_finite())
        .map(|&(t, l)| ((t as f64).ln(), l.ln()))
        .collect();
    let n = xy.len() as f64;
    let mx = xy.iter().map(|p| p.0).sum::<f64>() / n;
    let my = xy.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = xy.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = xy.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (xy.len() >= 2 && sxx > 0.0).then(|| {
        let exponent = sxy / sxx;
        ScalingFit {
            intercept: my - exponent * mx,
            exponent,
        }
    })
}

/// A sweep over the number of steps.
#[derive(Debug, Clone)]
pub struct SweepReport {
    /// (T, L(T)) for each T asked for.
    pub points: Vec<(usize, f64)>,
    /// The fit of log L(T) against log T.
    pub fit: Option<ScalingFit>,
    /// The run to the largest T.
    pub longest: MuonReport,
}

/// The final loss for each T of `steps`. With a constant step size the run to T is the
/// first T steps of the run to the largest T, so one run to max T gives every point
/// exactly.
pub fn sweep(
    spec: &MuonSpec,
    steps: &[usize],
    device: &Device,
    progress: impl FnMut(usize),
) -> Result<SweepReport> {
    let longest_t = *steps
        .iter()
        .max()
        .ok_or_else(|| invalid("--sweep-steps", "", "no step counts"))?;
    let longest = run(
        &MuonSpec {
            steps: longest_t,
            ..spec.clone()
        },
        device,
        progress,
    )?;
    let points: Vec<(usize, f64)> = steps.iter().map(|&t| (t, longest.losses[t])).collect();
    Ok(SweepReport {
        fit: fit_exponent(&points),
        points,
        longest,
    })
}

/// Writes loss.csv: `step,loss,group_1..group_M`.
pub fn write_loss_csv(path: &Path, report: &MuonReport) -> Result<()> {
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        let groups = report.group_losses.first().map_or(0, Vec::len);
        write!(f, "step,loss")?;
        for g in 1..=groups {
            write!(f, ",group_{g}")?;
        }
        writeln!(f)?;
        for (t, (loss, per_group)) in report.losses.iter().zip(&report.group_losses).enumerate() {
            write!(f, "{t},{loss:e}")?;
            for l in per_group {
                write!(f, ",{l:e}")?;
            }
            writeln!(f)?;
        }
        f.flush()
    };
    write().map_err(|e| output(path, e))
}

/// Writes sweep.csv: `steps,final_loss`.
pub fn write_sweep_csv(path: &Path, points: &[(usize, f64)]) -> Result<()> {
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(f, "steps,final_loss")?;
        for (t, l) in points {
            writeln!(f, "{t},{l:e}")?;
        }
        f.flush()
    };
    write().map_err(|e| output(path, e))
}

/// summary.json's contents: the final losses, the floor, the settings and the seconds,
/// with the sweep's points and exponent when there is one.
pub fn summary(
    spec: &MuonSpec,
    report: &MuonReport,
    sweep: Option<&SweepReport>,
) -> serde_json::Value {
    let mut value = serde_json::json!({
        "final_loss": report.final_loss(),
        "final_group_losses": report.final_group_losses(),
        "group_loss": "mean per-item loss over the group's items (unweighted); loss = Σ_g group_probability[g] · group_g",
        "group_probability": spec.group_probabilities(),
        "lower_bound": report.lower_bound,
        "k": spec.k,
        "groups": spec.groups,
        "spectrum": spec.spectrum.name(),
        "noise": spec.noise,
        "steps": spec.steps,
        "lr": spec.lr,
        "optimizer": spec.optimizer.name(),
        "ns": spec.ns.name(),
        "ns_steps": spec.ns_steps,
        "device": report.device.0,
        "adapter": report.device.1,
        "seconds": report.seconds,
    });
    if let Some(s) = sweep {
        value["steps"] = serde_json::json!(s.longest.losses.len() - 1);
        value["sweep"] = serde_json::json!(s
            .points
            .iter()
            .map(|(t, l)| serde_json::json!({"steps": t, "final_loss": l}))
            .collect::<Vec<_>>());
        value["exponent"] = serde_json::json!(s.fit.map(|f| f.exponent));
        value["intercept"] = serde_json::json!(s.fit.map(|f| f.intercept));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_steps_lists_and_log_ranges() {
        assert_eq!(parse_sweep_steps("40, 10,20,10").unwrap(), vec![10, 20, 40]);
        assert_eq!(parse_sweep_steps("10:1000:3").unwrap(), vec![10, 100, 1000]);
        assert_eq!(parse_sweep_steps("1:4:10").unwrap(), vec![1, 2, 3, 4]);
        for bad in ["", "0,10", "10:1", "5:1:3", "1:10:0", "a"] {
            assert!(parse_sweep_steps(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_fit_recovers_a_power_law() {
        let points: Vec<(usize, f64)> = [10, 20, 50, 100]
            .iter()
            .map(|&t| (t, 3.0 * (t as f64).powf(-1.5)))
            .collect();
        let fit = fit_exponent(&points).unwrap();
        assert!((fit.exponent + 1.5).abs() < 1e-12 && (fit.intercept - 3f64.ln()).abs() < 1e-12);
        assert!(fit_exponent(&points[..1]).is_none());
    }

    #[test]
    fn msgn_of_a_rank_deficient_matrix_drops_the_null_space() {
        // G ∝ I − 11ᵀ/K: msgn is the projector itself (the null direction gets sign 0).
        let k = 6;
        let g = Array2::from_shape_fn((k, k), |(i, j)| {
            (if i == j { 1.0 } else { 0.0 }) - 1.0 / k as f64
        }) * 0.01;
        let m = msgn_exact(g.view());
        let want = &g * 100.0;
        assert!(m
            .iter()
            .zip(want.iter())
            .all(|(a, b)| (a - b).abs() < 1e-12));
        let ns = newton_schulz(
            g.mapv(|v| v as f32).view(),
            NewtonSchulz::Cubic,
            25,
            cpu_product,
        )
        .unwrap();
        assert!(ns
            .iter()
            .zip(want.iter())
            .all(|(&a, b)| (a as f64 - b).abs() < 1e-5));
    }
}
