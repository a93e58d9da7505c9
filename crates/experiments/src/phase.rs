//! Metropolis Monte Carlo on the sphere at temperature T: where a dense associative memory
//! retrieves in the plane of load α and temperature (the protocol of DenseAM-GPU).
//!
//! M = round(e^{αN}) spherical patterns (norm √N, procedural from the seed, so every
//! device sees the same set); a chain proposes x' = x + σ·g (g standard normal) rescaled to
//! norm √N, σ = 2.4·T/√N, and accepts with min(1, e^{−(E(x') − E(x))/T}), with the
//! extensive energies
//! * LSE: E = −(1/β) log Σ_μ e^{βN(φ_μ − 1)} (β = 1), φ_μ = x·ξ^μ/N;
//! * LSR: E = −(N/b) log Σ_μ max(0, 1 − b + bφ_μ), b = 2 + √2 (the support wall at
//!   φ = 1/√2).
//!
//! Each chain starts at overlap φ₀ with the target pattern 0 (φ₀ uniform in a range,
//! [0.75, 1] by default). After the equilibration steps the sampled steps give, per
//! (α, T, disorder), the mean overlaps ⟨φ⟩ of two replicas with the target (same patterns,
//! independent chains), their mutual overlap q₁₂, and at the end the largest overlap of
//! either replica with any other pattern. The chains of every temperature and replica of a
//! disorder advance together: one batched energy evaluation per step on the chosen device
//! (`Retriever::energy`, the fast CPU pass or the wgpu kernels; the LSE energy is the
//! engine's softmax energy with β = 1 shifted by N/2, the LSR one its log-sum-ReLU energy
//! with negative Euclidean similarity and β = b/N). Seeded and reproducible.

use dam::procedural::{fill, PatternKind, Stream};
use dam::{Device, Dynamics, Patterns, Projection, Retriever, Separation, Similarity};
use ndarray::{Array2, ArrayView1, Axis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use crate::{ExperimentError, Result};

/// b of the spherical log-sum-ReLU energy: 2 + √2, the support wall at φ = 1/√2.
pub const LSR_B: f64 = 2.0 + std::f64::consts::SQRT_2;

/// Which energy the chains sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseEnergy {
    /// Log-sum-exp, β = 1.
    Lse,
    /// Log-sum-ReLU, b = 2 + √2.
    Lsr,
}

impl PhaseEnergy {
    /// `lse` or `lsr`.
    pub fn name(self) -> &'static str {
        match self {
            PhaseEnergy::Lse => "lse",
            PhaseEnergy::Lsr => "lsr",
        }
    }

    /// Reads [`PhaseEnergy::name`].
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "lse" => Ok(PhaseEnergy::Lse),
            "lsr" => Ok(PhaseEnergy::Lsr),
            _ => Err(ExperimentError::Invalid {
                argument: "--energy",
                value: text.to_string(),
                reason: "use lse or lsr".into(),
            }),
        }
    }
}

/// How the size of each point is fixed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PhaseSize {
    /// N fixed; M = round(e^{αN}).
    Dim(usize),
    /// M fixed; N = round(ln M / α).
    Patterns(u64),
}

/// One Monte Carlo phase experiment.
#[derive(Debug, Clone)]
pub struct PhaseSpec {
    /// The energy sampled.
    pub energy: PhaseEnergy,
    /// N or M.
    pub size: PhaseSize,
    /// Loads α.
    pub alphas: Vec<f64>,
    /// Temperatures T > 0.
    pub temperatures: Vec<f64>,
    /// Independent pattern sets per (α, T).
    pub disorders: usize,
    /// Chains per pattern set and temperature: 1 or 2 (q₁₂ needs two).
    pub replicas: usize,
    /// Steps before sampling.
    pub equilibrate: usize,
    /// Sampled steps.
    pub sample: usize,
    /// Range of the starting overlap φ₀ with the target.
    pub start_overlap: (f64, f64),
    /// Seed of patterns, starts and moves.
    pub seed: u64,
    /// Largest M stored at once (the patterns are held in memory).
    pub max_patterns: u64,
}

impl Default for PhaseSpec {
    fn default() -> Self {
        Self {
            energy: PhaseEnergy::Lse,
            size: PhaseSize::Dim(100),
            alphas: vec![0.1],
            temperatures: vec![0.1],
            disorders: 1,
            replicas: 2,
            equilibrate: 8192,
            sample: 4096,
            start_overlap: (0.75, 1.0),
            seed: 0,
            max_patterns: 1 << 26,
        }
    }
}

/// One row of phase.csv: one (α, T, disorder).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PhaseRow {
    /// Load α = ln M / N.
    pub alpha: f64,
    /// Temperature.
    #[serde(rename = "T")]
    pub t: f64,
    /// Dimension.
    #[serde(rename = "N")]
    pub n: usize,
    /// Which pattern set.
    pub disorder: usize,
    /// ⟨φ⟩ of replica a with the target over the sampled steps.
    pub phi_a: f64,
    /// Same for replica b (NaN with one replica).
    pub phi_b: f64,
    /// ⟨x_a·x_b⟩/N over the sampled steps (NaN with one replica).
    pub q12: f64,
    /// The largest overlap of either replica's final state with a pattern other than the
    /// target.
    pub phi_max_other: f64,
    /// Fraction of accepted moves.
    pub acceptance: f64,
}

/// The size of one point: (N, M).
pub fn point_size(size: PhaseSize, alpha: f64) -> Result<(usize, u64)> {
    let bad = |reason: String| ExperimentError::Invalid {
        argument: "--alpha",
        value: alpha.to_string(),
        reason,
    };
    if !(alpha.is_finite() && alpha > 0.0) {
        return Err(bad("α must be finite and > 0".into()));
    }
    match size {
        PhaseSize::Dim(n) => {
            let m = (alpha * n as f64).exp().round();
            if m > 1e15 {
                return Err(bad(format!("M = e^(αN) = {m:.3e} at N = {n} is too large")));
            }
            Ok((n, (m as u64).max(1)))
        }
        PhaseSize::Patterns(m) => {
            let n = ((m as f64).ln() / alpha).round() as usize;
            if n < 2 {
                return Err(bad(format!("N = round(ln {m} / α) = {n}: lower α")));
            }
            Ok((n, m))
        }
    }
}

impl PhaseSpec {
    /// Checks every setting (which flag, which value).
    pub fn validate(&self) -> Result<()> {
        let bad = |argument: &'static str, value: String, reason: &str| {
            Err(ExperimentError::Invalid {
                argument,
                value,
                reason: reason.to_string(),
            })
        };
        if self.alphas.is_empty() {
            return bad("--alpha", "".into(), "at least one load");
        }
        if self.temperatures.is_empty() {
            return bad("--temperature", "".into(), "at least one temperature");
        }
        if let Some(t) = self
            .temperatures
            .iter()
            .find(|t| !(t.is_finite() && **t > 0.0))
        {
            return bad("--temperature", t.to_string(), "T must be finite and > 0");
        }
        if self.disorders == 0 {
            return bad("--disorders", "0".into(), "at least one pattern set");
        }
        if !(1..=2).contains(&self.replicas) {
            return bad("--replicas", self.replicas.to_string(), "1 or 2");
        }
        if self.sample == 0 {
            return bad("--sample", "0".into(), "at least one sampled step");
        }
        let (lo, hi) = self.start_overlap;
        if !(0.0..=1.0).contains(&lo) || !(lo..=1.0).contains(&hi) {
            return bad(
                "--start-overlap",
                format!("{lo}:{hi}"),
                "need 0 ≤ LO ≤ HI ≤ 1",
            );
        }
        if let PhaseSize::Dim(n) = self.size {
            if n < 2 {
                return bad("--dim", n.to_string(), "N ≥ 2");
            }
        }
        for &alpha in &self.alphas {
            let (_, m) = point_size(self.size, alpha)?;
            if m > self.max_patterns {
                return bad(
                    "--alpha",
                    alpha.to_string(),
                    &format!(
                        "M = {m} patterns exceed the {} held in memory; lower α or N",
                        self.max_patterns
                    ),
                );
            }
        }
        Ok(())
    }

    /// The (α, disorder) points in the order they run.
    pub fn points(&self) -> Vec<(usize, usize)> {
        (0..self.alphas.len())
            .flat_map(|a| (0..self.disorders).map(move |d| (a, d)))
            .collect()
    }
}

/// What `run` reports as it goes.
#[derive(Debug, Clone, Copy)]
pub struct PhaseProgress {
    /// Points (α, disorder) finished.
    pub done: usize,
    /// All points.
    pub total: usize,
    /// Monte Carlo steps of the current point finished.
    pub steps: usize,
    /// Its steps in all.
    pub steps_total: usize,
}

/// Seed of one pattern set: distinct for every (α index, disorder).
fn point_seed(seed: u64, alpha_index: usize, disorder: usize) -> u64 {
    seed ^ (alpha_index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (disorder as u64 + 1).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
}

/// M spherical patterns of norm √N (procedural: the same on every machine).
pub fn spherical_patterns(seed: u64, m: u64, n: usize) -> Array2<f32> {
    let mut data = vec![0.0f32; m as usize * n];
    for (mu, row) in data.chunks_mut(n).enumerate() {
        fill(
            PatternKind::Spherical,
            seed,
            Stream::Patterns,
            mu as u64,
            row,
        );
    }
    Array2::from_shape_vec((m as usize, n), data).expect("M×N patterns")
}

/// The retriever whose energy is the chain's energy (up to a constant), and that constant.
fn energy_memory(
    energy: PhaseEnergy,
    patterns: Array2<f32>,
    device: &Device,
) -> Result<(Retriever, f64)> {
    let n = patterns.ncols() as f64;
    let (similarity, separation, shift) = match energy {
        // Engine: −log Σ e^{x·ξ} + ½‖x‖²; chain: −log Σ e^{x·ξ − N} = engine + N/2.
        PhaseEnergy::Lse => (Similarity::Dot, Separation::Softmax { beta: 1.0 }, n / 2.0),
        // ‖x − ξ‖² = 2N(1 − φ) on the sphere, so β = b/N gives the spherical form.
        PhaseEnergy::Lsr => (
            Similarity::NegEuclidean,
            Separation::LogSumRelu {
                beta: (LSR_B / n) as f32,
                eps: 0.0,
            },
            0.0,
        ),
    };
    let memory = Retriever::builder(Patterns::new(patterns)?)
        .similarity(similarity)
        .separation(separation)
        .dynamics(Dynamics::OneStep)
        .device(device.clone())
        .build()?;
    Ok((memory, shift))
}

/// Writes `values` projected onto the sphere |x|² = N (`Projection::Sphere`) into `row`.
fn write_on_sphere(mut values: Vec<f64>, mut row: ndarray::ArrayViewMut1<'_, f32>) {
    Projection::Sphere.apply(&mut values);
    row.iter_mut()
        .zip(&values)
        .for_each(|(o, &v)| *o = v as f32);
}

/// φ = a·b/N (f64 sums) of two rows of standard-layout arrays.
fn overlap(a: ArrayView1<'_, f32>, b: ArrayView1<'_, f32>) -> f64 {
    let (a, b) = (
        a.to_slice().expect("rows of a standard layout"),
        b.to_slice().expect("rows of a standard layout"),
    );
    Similarity::Dot.of(a, b) / a.len() as f64
}

/// Runs every (α, disorder) point and returns one row per (α, T, disorder), in the order
/// α, disorder, T. `progress` is called after every 64 steps and after every point.
pub fn run(
    spec: &PhaseSpec,
    device: &Device,
    mut progress: impl FnMut(PhaseProgress),
) -> Result<Vec<PhaseRow>> {
    spec.validate()?;
    let points = spec.points();
    let mut rows = Vec::with_capacity(points.len() * spec.temperatures.len());
    for (done, &(a, d)) in points.iter().enumerate() {
        let point = run_point(spec, device, a, d, |steps, steps_total| {
            progress(PhaseProgress {
                done,
                total: points.len(),
                steps,
                steps_total,
            })
        })?;
        rows.extend(point);
        progress(PhaseProgress {
            done: done + 1,
            total: points.len(),
            steps: 0,
            steps_total: 0,
        });
    }
    Ok(rows)
}

/// One (α, disorder): every temperature and replica, chains advancing together.
pub fn run_point(
    spec: &PhaseSpec,
    device: &Device,
    alpha_index: usize,
    disorder: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<PhaseRow>> {
    let alpha = spec.alphas[alpha_index];
    let (n, m) = point_size(spec.size, alpha)?;
    let seed = point_seed(spec.seed, alpha_index, disorder);
    let patterns = spherical_patterns(seed, m, n);
    let target = patterns.row(0).to_owned();
    let (memory, shift) = energy_memory(spec.energy, patterns.clone(), device)?;
    let temps = &spec.temperatures;
    let r = spec.replicas;
    let chains = temps.len() * r;
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5DEE_CE66_D1CE_4E5B);
    // Starts: φ₀ x̂ + √(1 − φ₀²) û with û ⊥ the target, both of norm √N.
    let mut x = Array2::<f32>::zeros((chains, n));
    for row in x.rows_mut() {
        let (lo, hi) = spec.start_overlap;
        let phi0 = if hi > lo {
            rng.random_range(lo..=hi)
        } else {
            lo
        };
        let mut u: Vec<f64> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
        let along = u
            .iter()
            .zip(target.iter())
            .map(|(a, &t)| a * t as f64)
            .sum::<f64>()
            / n as f64;
        u.iter_mut()
            .zip(target.iter())
            .for_each(|(a, &t)| *a -= along * t as f64);
        Projection::Sphere.apply(&mut u);
        let start = target
            .iter()
            .zip(&u)
            .map(|(&t, &a)| phi0 * t as f64 + (1.0 - phi0 * phi0).sqrt() * a)
            .collect();
        write_on_sphere(start, row);
    }
    let energies = |states: &Array2<f32>| -> Result<Vec<f64>> {
        Ok(memory
            .energy(states.view())?
            .into_iter()
            .map(|e| e + shift)
            .collect())
    };
    let mut e = energies(&x)?;
    let sigma: Vec<f64> = (0..chains)
        .map(|c| 2.4 * temps[c / r] / (n as f64).sqrt())
        .collect();
    let (mut phi_sum, mut q_sum) = (vec![0.0f64; chains], vec![0.0f64; temps.len()]);
    let mut accepted = vec![0usize; chains];
    let total = spec.equilibrate + spec.sample;
    let mut y = Array2::<f32>::zeros((chains, n));
    for step in 0..total {
        for (c, row) in y.rows_mut().into_iter().enumerate() {
            let proposal = x
                .row(c)
                .iter()
                .map(|&v| v as f64 + sigma[c] * rng.sample::<f64, _>(StandardNormal))
                .collect();
            write_on_sphere(proposal, row);
        }
        let e_new = energies(&y)?;
        for c in 0..chains {
            let t = temps[c / r];
            let delta = e_new[c] - e[c];
            let u: f64 = rng.random();
            // An infinite proposal (outside every support) is never accepted.
            if e_new[c].is_finite() && (delta <= 0.0 || u < (-delta / t).exp()) {
                x.row_mut(c).assign(&y.row(c));
                e[c] = e_new[c];
                accepted[c] += 1;
            }
        }
        if step >= spec.equilibrate {
            for (sum, row) in phi_sum.iter_mut().zip(x.rows()) {
                *sum += overlap(row, target.view());
            }
            if r == 2 {
                for (ti, q) in q_sum.iter_mut().enumerate() {
                    *q += overlap(x.row(2 * ti), x.row(2 * ti + 1));
                }
            }
        }
        if step % 64 == 63 {
            progress(step + 1, total);
        }
    }
    // The largest overlap with another pattern, from the final states.
    let overlaps = x.dot(&patterns.t());
    let best_other: Vec<f64> = overlaps
        .axis_iter(Axis(0))
        .map(|row| {
            row.iter()
                .skip(1)
                .fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64 / n as f64))
        })
        .collect();
    let samples = spec.sample as f64;
    Ok(temps
        .iter()
        .enumerate()
        .map(|(ti, &t)| {
            let c = ti * r;
            PhaseRow {
                alpha,
                t,
                n,
                disorder,
                phi_a: phi_sum[c] / samples,
                phi_b: if r == 2 {
                    phi_sum[c + 1] / samples
                } else {
                    f64::NAN
                },
                q12: if r == 2 {
                    q_sum[ti] / samples
                } else {
                    f64::NAN
                },
                phi_max_other: best_other[c..c + r]
                    .iter()
                    .fold(f64::NEG_INFINITY, |a, &v| a.max(v)),
                acceptance: accepted[c..c + r].iter().sum::<usize>() as f64 / (r * total) as f64,
            }
        })
        .collect())
}

/// The equilibrium overlap of a single pattern on the sphere at large N.
pub fn phi_eq(energy: PhaseEnergy, t: f64) -> f64 {
    match energy {
        // φ_eq(T) = (√(T² + 4) − T)/2.
        PhaseEnergy::Lse => ((t * t + 4.0).sqrt() - t) / 2.0,
        // 1 − y, y the smaller root of (bT + 1)y² − (2 + T + Tb)y + T = 0.
        PhaseEnergy::Lsr => {
            let b = LSR_B;
            let (qa, qb, qc) = (b * t + 1.0, 2.0 + t + t * b, t);
            let y = (qb - (qb * qb - 4.0 * qa * qc).sqrt()) / (2.0 * qa);
            1.0 - y
        }
    }
}

/// The LSE retrieval boundary at large N (β = 1): α_c(T) = φ_eq(T) − 0.377428.
pub fn lse_alpha_c(t: f64) -> f64 {
    phi_eq(PhaseEnergy::Lse, t) - 0.377428
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn theory_values() {
        assert!((lse_alpha_c(0.0) - 0.622572).abs() < 1e-6);
        assert!((lse_alpha_c(0.1) - 0.5738).abs() < 1e-4);
        assert!((phi_eq(PhaseEnergy::Lse, 0.125) - 0.9395).abs() < 1e-4);
        assert!((phi_eq(PhaseEnergy::Lsr, 0.125) - 0.9496).abs() < 1e-4);
        // At T → 0 both retrieve exactly.
        assert!((phi_eq(PhaseEnergy::Lsr, 1e-12) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn sizes_and_bad_settings() {
        assert_eq!(
            point_size(PhaseSize::Patterns(20_000), 0.01).unwrap().0,
            990
        );
        assert_eq!(point_size(PhaseSize::Dim(20), 0.1).unwrap().1, 7);
        assert!(point_size(PhaseSize::Dim(20), 0.0).is_err());
        let mut spec = PhaseSpec {
            temperatures: vec![0.1, -1.0],
            ..PhaseSpec::default()
        };
        assert!(spec.validate().is_err());
        spec.temperatures = vec![0.1];
        spec.replicas = 3;
        assert!(spec.validate().is_err());
        spec.replicas = 2;
        spec.size = PhaseSize::Dim(1000);
        spec.alphas = vec![0.5];
        assert!(spec.validate().is_err());
    }

    /// Small and fast: at low load and low temperature the chains stay near the target, at
    /// high temperature they leave it; runs are reproducible.
    #[test]
    fn chains_retrieve_at_low_temperature_and_melt_at_high() {
        for energy in [PhaseEnergy::Lse, PhaseEnergy::Lsr] {
            let spec = PhaseSpec {
                energy,
                size: PhaseSize::Dim(40),
                alphas: vec![0.05],
                // LSR cannot leave the union of supports (φ > 1/√2): a milder hot end.
                temperatures: vec![0.05, if energy == PhaseEnergy::Lse { 3.0 } else { 0.8 }],
                equilibrate: 300,
                sample: 200,
                seed: 7,
                ..PhaseSpec::default()
            };
            let rows = run(&spec, &Device::Cpu, |_| {}).expect("run");
            assert_eq!(rows.len(), 2);
            let (cold, hot) = (rows[0], rows[1]);
            assert!(cold.phi_a > 0.9 && cold.phi_b > 0.9, "{energy:?}: {cold:?}");
            assert!(cold.q12 > 0.8, "{energy:?}: {cold:?}");
            assert!(
                hot.phi_a < cold.phi_a - 0.05,
                "{energy:?}: {hot:?} vs {cold:?}"
            );
            assert!(cold.acceptance > 0.0 && cold.acceptance < 1.0);
            let again = run(&spec, &Device::Cpu, |_| {}).expect("run");
            assert_eq!(rows, again, "{energy:?}: reproducible");
        }
    }
}
