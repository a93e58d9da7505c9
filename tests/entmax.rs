//! The sparse separations, sparsemax and α-entmax: their definition (closed forms, the
//! simplex, α → 1 is softmax, the weights are the gradient of the energy's conjugate),
//! energy descent, the fast CPU backend against the reference (ragged sizes, every
//! similarity and projection, large β·s, values) and wgpu likewise, non-finite input,
//! names, bad α, saving.

mod common;

use common::{assert_matches, gaussian, noisy_queries, unit_patterns, PROJECTIONS, STATE_TOL};
use dam::binary::Clamp;
use dam::entmax::{entmax, sparsemax};
use dam::{
    Device, Dynamics, Error, Patterns, Projection, Retriever, Separation, Similarity, Storage,
    Tolerance, WgpuOptions,
};
use ndarray::{array, Array2};

/// The weights of the core definition against hand-computed or independent values.
const WEIGHT_TOL: Tolerance = Tolerance::new(1e-12, 1e-12);
/// A central finite difference of Ψ* (step 10⁻⁵) against its gradient, the weights.
const GRADIENT_TOL: Tolerance = Tolerance::new(1e-7, 1e-6);
/// entmax at α = 1.0001 against softmax (the difference is O(α − 1)).
const NEAR_SOFTMAX_TOL: Tolerance = Tolerance::new(2e-3, 0.0);

fn entmax_sep(beta: f32, alpha: f32) -> Separation {
    Separation::Entmax { beta, alpha }
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths");
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
}

fn assert_close(label: &str, tol: Tolerance, got: &[f64], expected: &[f64]) -> f64 {
    assert_eq!(got.len(), expected.len(), "{label}: lengths");
    tol.compare(got.iter().copied(), expected.iter().copied())
        .unwrap_or_else(|m| panic!("{label}: {m:?}\n got {got:?}\n expected {expected:?}"));
    max_diff(got, expected)
}

/// Seeded scores of several spreads.
fn score_rows() -> Vec<Vec<f64>> {
    let mut rows = Vec::new();
    for (seed, (p, scale)) in [(1, 0.1), (7, 1.0), (50, 3.0), (300, 10.0), (64, 0.01)]
        .into_iter()
        .enumerate()
    {
        let g = gaussian(1, p, scale, 100 + seed as u64);
        rows.push(g.iter().map(|&v| v as f64).collect());
    }
    rows
}

/// Sparsemax by sorting, against cases worked by hand: a single dominant entry, ties,
/// all equal, a support of two.
#[test]
fn sparsemax_has_its_closed_form() {
    assert_eq!(sparsemax(&[5.0, 0.0, 0.0]), vec![1.0, 0.0, 0.0]);
    assert_eq!(sparsemax(&[2.0, 2.0, 0.5]), vec![0.5, 0.5, 0.0]);
    assert_eq!(sparsemax(&[-3.0; 8]), vec![0.125; 8]);
    assert_eq!(sparsemax(&[7.0]), vec![1.0]);
    // Sorted 1, 0.5, −1: k = 2 (1 + 2·0.5 > 1.5, 1 − 3 < 0.5), τ = (1.5 − 1)/2 = 0.25.
    assert_eq!(sparsemax(&[0.5, -1.0, 1.0]), vec![0.25, 0.0, 0.75]);
    // τ = (0.5 + 0.3 − 1)/2 = −0.1: p = (0.6, 0.4, 0).
    assert_close(
        "two of three",
        WEIGHT_TOL,
        &sparsemax(&[0.5, 0.3, -0.4]),
        &[0.6, 0.4, 0.0],
    );
    // Three tied at the top, one just inside: τ = (3·1 + 0.9 − 1)/4 = 0.725.
    assert_close(
        "ties and an edge",
        WEIGHT_TOL,
        &sparsemax(&[1.0, 0.9, 1.0, 1.0, -2.0]),
        &[0.275, 0.175, 0.275, 0.275, 0.0],
    );
    // Ψ* at α = 2: pᵀz + (1 − Σp²)/2.
    let e = entmax(2.0, &[0.5, 0.3, -0.4]);
    let expected = 0.6 * 0.5 + 0.4 * 0.3 + (1.0 - 0.36 - 0.16) / 2.0;
    assert!((e.conjugate - expected).abs() < 1e-12, "{}", e.conjugate);
    // Shifts move Ψ* by the shift and leave the weights: 10⁴ is fine.
    let far = entmax(2.0, &[1e4 + 0.5, 1e4 + 0.3, 1e4 - 0.4]);
    assert_close("shifted", WEIGHT_TOL, &far.weights, &[0.6, 0.4, 0.0]);
    assert!((far.conjugate - 1e4 - expected).abs() < 1e-9);
}

/// 1.5-entmax by sorting (Peters et al. 2019, Algorithm 2): with y = z/2 sorted down,
/// τ_k = mean_k − √((1 − k·(mean of squares_k − mean_k²))/k), the support is
/// #{k : τ_k ≤ y₍ₖ₎} and p = [y − τ]₊² — an independent check of the threshold search.
fn entmax15_by_sorting(z: &[f64]) -> Vec<f64> {
    let y: Vec<f64> = z.iter().map(|v| v / 2.0).collect();
    let mut sorted = y.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let (mut sum, mut sum_sq) = (0.0, 0.0);
    let mut taus = Vec::new();
    for (i, &v) in sorted.iter().enumerate() {
        let k = (i + 1) as f64;
        sum += v;
        sum_sq += v * v;
        let mean = sum / k;
        let ss = k * (sum_sq / k - mean * mean);
        let delta = ((1.0 - ss) / k).max(0.0);
        taus.push(mean - delta.sqrt());
    }
    let support = taus
        .iter()
        .zip(&sorted)
        .filter(|(tau, v)| *tau <= *v)
        .count();
    let tau = taus[support - 1];
    y.iter().map(|v| (v - tau).max(0.0).powi(2)).collect()
}

/// Every α gives a distribution (non-negative, Σ = 1), α = 2 is sparsemax, α = 1.5 is
/// the sorting algorithm's, and smaller α spreads the weight over more patterns.
#[test]
fn entmax_weights_are_a_sparse_distribution() {
    let mut worst_15 = 0.0f64;
    for (r, z) in score_rows().iter().enumerate() {
        let mut supports = Vec::new();
        for alpha in [1.0001, 1.1, 1.25, 1.5, 1.75, 2.0] {
            let p = entmax(alpha, z).weights;
            assert_eq!(p.len(), z.len(), "row {r} α={alpha}");
            assert!(p.iter().all(|&v| v >= 0.0), "row {r} α={alpha}: {p:?}");
            let total: f64 = p.iter().sum();
            assert!(
                (total - 1.0).abs() < 1e-12,
                "row {r} α={alpha}: Σ = {total}"
            );
            supports.push(p.iter().filter(|&&v| v > 0.0).count());
        }
        assert!(
            supports.windows(2).all(|w| w[1] <= w[0]),
            "row {r}: supports {supports:?} should shrink as α grows"
        );
        assert_close(
            &format!("row {r}: α = 2 is sparsemax"),
            WEIGHT_TOL,
            &entmax(2.0, z).weights,
            &sparsemax(z),
        );
        worst_15 = worst_15.max(assert_close(
            &format!("row {r}: 1.5-entmax by sorting"),
            Tolerance::new(1e-12, 1e-9),
            &entmax(1.5, z).weights,
            &entmax15_by_sorting(z),
        ));
    }
    println!("1.5-entmax, threshold vs sorting: max |Δp| = {worst_15:.2e}");
}

/// As α → 1 the weights tend to softmax and Ψ* to log Σ e^z (the Tsallis entropy tends
/// to Shannon's).
#[test]
fn alpha_near_one_is_softmax() {
    let mut worst = (0.0f64, 0.0f64);
    for (r, z) in score_rows().iter().enumerate() {
        let e = entmax(1.0001, z);
        let (soft, _) = dam::weights::weights(Separation::Softmax { beta: 1.0 }, z);
        let dw = assert_close(
            &format!("row {r}: weights"),
            NEAR_SOFTMAX_TOL,
            &e.weights,
            &soft,
        );
        let lse = dam::weights::log_sum_exp(z);
        let de = (e.conjugate - lse).abs();
        assert!(de < 5e-3, "row {r}: Ψ* {} vs lse {lse}", e.conjugate);
        worst = (worst.0.max(dw), worst.1.max(de));
    }
    println!(
        "α = 1.0001 vs softmax: max |Δp| = {:.2e}, max |Ψ* − lse| = {:.2e}",
        worst.0, worst.1
    );
    // Through the engine: the entmax energy and one update tend to the log-sum-exp ones.
    let patterns = unit_patterns(60, 9, 8);
    let queries = noisy_queries(&patterns, 4, 0.5, 9);
    let build = |separation| {
        Retriever::builder(Patterns::new(patterns.clone()).expect("patterns"))
            .separation(separation)
            .dynamics(Dynamics::OneStep)
            .device(Device::Reference)
            .build()
            .expect("retriever")
    };
    let (near, soft) = (
        build(entmax_sep(2.0, 1.0001)),
        build(Separation::Softmax { beta: 2.0 }),
    );
    let de = max_diff(
        &near.energy(queries.view()).expect("energy"),
        &soft.energy(queries.view()).expect("energy"),
    );
    assert!(de < 1e-3, "energies differ by {de}");
    let to_f64 = |a: Array2<f32>| a.iter().map(|&v| v as f64).collect::<Vec<_>>();
    let ds = max_diff(
        &to_f64(near.step(queries.view()).expect("step")),
        &to_f64(soft.step(queries.view()).expect("step")),
    );
    assert!(ds < 1e-3, "updates differ by {ds}");
    println!("α = 1.0001 vs softmax in the engine: energy {de:.2e}, update {ds:.2e}");
}

/// The weights are the gradient of Ψ* (central differences), so the energy and the
/// update agree: ∇E = x − Ξᵀ entmax(βΞx) for the dot similarity.
#[test]
fn weights_are_the_gradient_of_the_conjugate() {
    let h = 1e-5;
    let mut worst = 0.0f64;
    for (r, z) in score_rows().iter().enumerate() {
        for alpha in [1.25, 1.5, 1.75, 2.0] {
            let p = entmax(alpha, z).weights;
            let grad: Vec<f64> = (0..z.len())
                .map(|j| {
                    let (mut up, mut down) = (z.clone(), z.clone());
                    up[j] += h;
                    down[j] -= h;
                    (entmax(alpha, &up).conjugate - entmax(alpha, &down).conjugate) / (2.0 * h)
                })
                .collect();
            worst = worst.max(assert_close(
                &format!("row {r} α={alpha}"),
                GRADIENT_TOL,
                &grad,
                &p,
            ));
        }
    }
    println!("∂Ψ*/∂z vs entmax: max deviation {worst:.2e}");
    // The energy's gradient in x through the engine's definition, for one state.
    let patterns = unit_patterns(30, 7, 3);
    let x: Vec<f32> = noisy_queries(&patterns, 1, 0.5, 4)
        .iter()
        .copied()
        .collect();
    let (beta, alpha) = (3.0f32, 1.5f32);
    let sep = entmax_sep(beta, alpha);
    let energy = |x: &[f32]| {
        let s: Vec<f64> = patterns
            .rows()
            .into_iter()
            .map(|xi| xi.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum())
            .collect();
        dam::weights::energy(sep, &s, x)
    };
    let s: Vec<f64> = patterns
        .rows()
        .into_iter()
        .map(|xi| xi.iter().zip(&x).map(|(&a, &b)| a as f64 * b as f64).sum())
        .collect();
    let (w, _) = dam::weights::weights(sep, &s);
    for i in 0..x.len() {
        let hx = 1e-2f32;
        let (mut up, mut down) = (x.clone(), x.clone());
        up[i] += hx;
        down[i] -= hx;
        let fd = (energy(&up) - energy(&down)) / (2.0 * hx as f64);
        let update: f64 = patterns
            .column(i)
            .iter()
            .zip(&w)
            .map(|(&xi, &wm)| xi as f64 * wm)
            .sum();
        let grad = x[i] as f64 - update;
        assert!(
            (fd - grad).abs() < 1e-3,
            "coordinate {i}: finite difference {fd} vs x − Ξᵀp {grad}"
        );
    }
}

fn retriever(
    patterns: &Array2<f32>,
    separation: Separation,
    similarity: Similarity,
    dynamics: Dynamics,
    device: Device,
) -> Retriever {
    Retriever::builder(Patterns::new(patterns.clone()).expect("patterns"))
        .similarity(similarity)
        .separation(separation)
        .dynamics(dynamics)
        .energy_trace(true)
        .device(device)
        .build()
        .expect("retriever")
}

/// The update is the concave–convex step of E = −β⁻¹Ψ*(βΞx) + ½‖x‖²: the energy never
/// rises, for several α and β.
fn the_energy_never_rises(device: Device) {
    let patterns = gaussian(97, 13, 1.0 / 13f32.sqrt(), 11);
    let queries = gaussian(9, 13, 0.5, 12);
    let mut moved = 0;
    for alpha in [1.05f32, 1.25, 1.5, 2.0] {
        for beta in [0.5f32, 4.0, 40.0] {
            let label = format!("{device:?} α={alpha} β={beta}");
            let r = retriever(
                &patterns,
                entmax_sep(beta, alpha),
                Similarity::Dot,
                Dynamics::Iterate {
                    max_steps: 25,
                    tol: 0.0,
                },
                device.clone(),
            );
            let out = r.retrieve(queries.view()).expect("retrieve");
            let traces = out.energy_trace.expect("trace");
            assert_eq!(traces.len(), queries.nrows(), "{label}");
            for (q, trace) in traces.iter().enumerate() {
                assert!(trace.len() >= 2, "{label} query {q}");
                for pair in trace.windows(2) {
                    // f32 states between steps: a rise within their rounding is allowed.
                    let slack = 1e-6 * (1.0 + pair[0].abs());
                    assert!(pair[1] <= pair[0] + slack, "{label} query {q}: {trace:?}");
                    moved += usize::from(pair[1] < pair[0] - slack);
                }
            }
        }
    }
    assert!(moved > 0, "{device:?}: no state moved");
}

/// One sparsemax update from a hand-worked state: two patterns share the weight, the
/// third gets none, and the energy is −β⁻¹Ψ*(βs) + ½‖x‖².
fn one_sparsemax_update_by_hand(device: Device) {
    let patterns = array![[1.0f32, 0.0], [0.0, 1.0], [-1.0, 0.0]];
    let query = array![[0.5f32, 0.3]];
    let r = retriever(
        &patterns,
        entmax_sep(1.0, 2.0),
        Similarity::Dot,
        Dynamics::OneStep,
        device.clone(),
    );
    let out = r.retrieve(query.view()).expect("retrieve");
    // s = (0.5, 0.3, −0.5): p = (0.6, 0.4, 0), x₁ = (0.6, 0.4).
    let got: Vec<f64> = out.states.iter().map(|&v| v as f64).collect();
    assert_close(
        &format!("{device:?} state"),
        Tolerance::new(1e-6, 0.0),
        &got,
        &[0.6, 0.4],
    );
    let energy = r.energy(query.view()).expect("energy")[0];
    let psi = 0.6 * 0.5 + 0.4 * 0.3 + (1.0 - 0.36 - 0.16) / 2.0;
    let expected = -psi + 0.5 * (0.25 + 0.09);
    assert!(
        (energy - expected).abs() < 1e-6,
        "{device:?}: {energy} vs {expected}"
    );
    assert_eq!(out.nearest[0], 0, "{device:?}");
    assert_eq!(out.matched[0], Some(out.nearest_id[0]), "{device:?}");
}

/// β·s of 10⁴: one pattern takes all the weight (an exact copy of it), nothing
/// overflows, and the energy is −max s + ½‖x‖² exactly at α = 2.
fn a_large_beta_selects_the_nearest_pattern(device: Device) {
    let patterns = unit_patterns(130, 33, 31);
    let queries = noisy_queries(&patterns, 6, 0.2, 32);
    for alpha in [1.5f32, 2.0] {
        let label = format!("{device:?} α={alpha}");
        let r = retriever(
            &patterns,
            entmax_sep(1e4, alpha),
            Similarity::Dot,
            Dynamics::Iterate {
                max_steps: 3,
                tol: 0.0,
            },
            device.clone(),
        );
        let out = r.retrieve(queries.view()).expect("retrieve");
        assert!(out.energy.iter().all(|e| e.is_finite()), "{label}");
        for q in 0..queries.nrows() {
            assert_eq!(out.nearest[q], q, "{label} query {q}");
            assert_eq!(out.states.row(q), patterns.row(q), "{label} query {q}");
        }
    }
}

/// NaN and infinite queries are refused with an error naming them, by every call.
fn non_finite_queries_are_refused(device: Device) {
    non_finite_queries_are_refused_with(&unit_patterns(9, 4, 5), device);
}

fn non_finite_queries_are_refused_with(patterns: &Array2<f32>, device: Device) {
    for alpha in [1.5f32, 2.0] {
        let r = retriever(
            patterns,
            entmax_sep(2.0, alpha),
            Similarity::Dot,
            Dynamics::OneStep,
            device.clone(),
        );
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut queries = noisy_queries(patterns, 3, 0.1, 6);
            queries[[1, 2]] = bad;
            let label = format!("{device:?} α={alpha} {bad}");
            assert!(
                matches!(r.retrieve(queries.view()), Err(Error::NonFinite { .. })),
                "{label}: retrieve"
            );
            assert!(
                matches!(r.step(queries.view()), Err(Error::NonFinite { .. })),
                "{label}: step"
            );
            assert!(
                matches!(r.energy(queries.view()), Err(Error::NonFinite { .. })),
                "{label}: energy"
            );
        }
    }
}

/// Extreme but valid settings (β from 10⁻³⁰ to 10³⁰, one pattern, one coordinate, huge
/// and tiny entries, exact ties) give finite results or an error naming the fault, never
/// a NaN; β·|s| beyond f32 is refused naming β, as for softmax.
fn extreme_settings_never_give_nan(device: Device) {
    let cases: Vec<(Array2<f32>, Array2<f32>)> = vec![
        (array![[1.0f32]], array![[-3.0f32]]),
        (
            array![[1e15f32, -1e15], [1e15, 1e15]],
            array![[1e15f32, 0.0]],
        ),
        (array![[1e-30f32, 0.0], [0.0, 1e-30]], array![[1.0f32, 1.0]]),
        (
            array![[1.0f32, 0.0], [1.0, 0.0], [0.0, 1.0]],
            array![[1.0f32, 0.0]],
        ),
    ];
    let mut finished = 0;
    for (c, (patterns, queries)) in cases.iter().enumerate() {
        for beta in [1e-30f32, 1e-3, 1.0, 1e4, 1e30] {
            for alpha in [1.0001f32, 1.5, 2.0] {
                for similarity in Similarity::ALL {
                    let label = format!("{device:?} case {c} β={beta} α={alpha} {similarity:?}");
                    let built = Retriever::builder(Patterns::new(patterns.clone()).expect("p"))
                        .similarity(similarity)
                        .separation(entmax_sep(beta, alpha))
                        .dynamics(Dynamics::Iterate {
                            max_steps: 3,
                            tol: 0.0,
                        })
                        .energy_trace(true)
                        .device(device.clone())
                        .build()
                        .expect("valid settings build");
                    match built.retrieve(queries.view()) {
                        Ok(out) => {
                            assert!(out.states.iter().all(|v| v.is_finite()), "{label}");
                            assert!(out.energy.iter().all(|e| e.is_finite()), "{label}");
                            finished += 1;
                        }
                        Err(e) => assert!(
                            matches!(
                                e,
                                Error::InvalidParameter {
                                    argument: "beta" | "queries",
                                    ..
                                } | Error::Overflow { .. }
                            ),
                            "{label}: {e}"
                        ),
                    }
                }
            }
        }
    }
    assert!(finished > 100, "{device:?}: only {finished} cases ran");
}

test_devices!(
    all: extreme_settings_never_give_nan,
    the_energy_never_rises,
    one_sparsemax_update_by_hand,
    a_large_beta_selects_the_nearest_pattern,
    non_finite_queries_are_refused,
);

/// The fast backends against the reference: ragged sizes (P not a multiple of 64, N
/// odd), every similarity, one step and iteration, every projection, α ∈ {1.25, 1.5, 2},
/// large β·s; and a bare step.
fn matches_the_reference(device: Device) {
    let mut worst = (0.0f64, 0.0f64);
    for (p, n, b) in [(1, 3, 1), (257, 19, 7), (2_001, 65, 33)] {
        let patterns = unit_patterns(p, n, 21);
        let queries = noisy_queries(&patterns, b, 0.4, 22);
        for similarity in Similarity::ALL {
            for alpha in [1.25f32, 1.5, 2.0] {
                for beta in [8.0f32, 1e4] {
                    for dynamics in common::DYNAMICS {
                        for projection in PROJECTIONS {
                            let label = format!(
                                "P={p} N={n} B={b} {similarity:?} α={alpha} β={beta} \
                                 {dynamics:?} {projection:?}"
                            );
                            let build = |device: Device| {
                                Retriever::builder(
                                    Patterns::new(patterns.clone()).expect("patterns"),
                                )
                                .similarity(similarity)
                                .separation(entmax_sep(beta, alpha))
                                .dynamics(dynamics)
                                .projection(projection)
                                .energy_trace(true)
                                .device(device)
                                .build()
                                .expect("retriever")
                            };
                            let (reference, fast) =
                                (build(Device::Reference), build(device.clone()));
                            let expected = reference.retrieve(queries.view()).expect("ref");
                            let got = fast.retrieve(queries.view()).expect("fast");
                            let (ds, de) = assert_matches(&label, &got, &expected);
                            assert_eq!(got.matched, expected.matched, "{label}");
                            worst = (worst.0.max(ds), worst.1.max(de));
                            if projection == Projection::None {
                                STATE_TOL
                                    .compare(
                                        fast.step(queries.view()).expect("step").iter().copied(),
                                        reference
                                            .step(queries.view())
                                            .expect("ref step")
                                            .iter()
                                            .copied(),
                                    )
                                    .unwrap_or_else(|m| panic!("{label}: step: {m:?}"));
                            }
                        }
                    }
                }
            }
        }
    }
    println!(
        "{} vs reference: state diff/scale {:.3e}, energy diff/scale {:.3e}",
        if matches!(device, Device::Cpu) {
            "cpu"
        } else {
            "wgpu"
        },
        worst.0,
        worst.1
    );
}

/// A key → value memory reads out Σ p_μ v^μ with the entmax weights, and a clamped
/// retrieval holds its coordinates, as the reference.
fn values_and_clamped_retrieval_match_the_reference(device: Device) {
    let (p, n, m) = (67, 11, 3);
    let patterns = unit_patterns(p, n, 41);
    let values = gaussian(p, m, 1.0, 42);
    let queries = noisy_queries(&patterns, 5, 0.3, 43);
    for alpha in [1.5f32, 2.0] {
        let build = |device: Device| {
            Retriever::builder(Patterns::new(patterns.clone()).expect("patterns"))
                .separation(entmax_sep(6.0, alpha))
                .dynamics(Dynamics::Iterate {
                    max_steps: 4,
                    tol: 1e-3,
                })
                .values(values.clone())
                .device(device)
                .build()
                .expect("retriever")
        };
        let expected = build(Device::Reference)
            .retrieve_values(queries.view())
            .expect("ref values");
        let fast = build(device.clone());
        let got = fast.retrieve_values(queries.view()).expect("values");
        STATE_TOL
            .compare(got.iter().copied(), expected.iter().copied())
            .unwrap_or_else(|m| panic!("{device:?} α={alpha}: values: {m:?}"));
        let clamp = Clamp::fixing(n, &[0, 3, 7]).expect("clamp");
        assert_matches(
            &format!("{device:?} α={alpha} clamped"),
            &fast
                .retrieve_clamped(queries.view(), &clamp)
                .expect("clamped"),
            &build(Device::Reference)
                .retrieve_clamped(queries.view(), &clamp)
                .expect("ref clamped"),
        );
    }
}

test_devices!(
    fast: matches_the_reference,
    values_and_clamped_retrieval_match_the_reference,
);

#[test]
fn names_parse_and_bad_alpha_is_a_clear_error() {
    assert_eq!(
        Separation::parse("sparsemax", 2.0).expect("sparsemax"),
        entmax_sep(2.0, 2.0)
    );
    assert_eq!(
        Separation::parse("entmax", 3.0).expect("entmax"),
        entmax_sep(3.0, 1.5)
    );
    assert_eq!(
        Separation::parse("Entmax:1.25", 3.0).expect("entmax:1.25"),
        entmax_sep(3.0, 1.25)
    );
    assert_eq!(
        Separation::parse("entmax:2", 3.0).expect("entmax:2"),
        entmax_sep(3.0, 2.0)
    );
    for s in [
        entmax_sep(2.0, 2.0),
        entmax_sep(0.5, 1.5),
        entmax_sep(1.0, 1.1),
    ] {
        let Separation::Entmax { beta, .. } = s else {
            unreachable!()
        };
        assert_eq!(Separation::parse(&s.name(), beta).expect("round trip"), s);
    }
    assert_eq!(entmax_sep(1.0, 2.0).name(), "sparsemax");
    assert_eq!(entmax_sep(1.0, 1.5).name(), "entmax:1.5");
    for bad in ["entmax:x", "sparsemax:2", "entmax:1.5:2"] {
        assert!(
            matches!(
                Separation::parse(bad, 1.0),
                Err(Error::InvalidParameter {
                    argument: "separation",
                    ..
                })
            ),
            "{bad}"
        );
    }
    let patterns = unit_patterns(5, 4, 1);
    for alpha in [1.0f32, 0.5, 2.5, f32::NAN, f32::INFINITY, -1.5] {
        for device in [Device::Reference, Device::Cpu, common::gpu()] {
            let built = Retriever::builder(Patterns::new(patterns.clone()).expect("patterns"))
                .separation(entmax_sep(1.0, alpha))
                .device(device.clone())
                .build();
            let Err(err) = built else {
                panic!("{device:?}: α = {alpha} was accepted");
            };
            assert!(
                matches!(
                    err,
                    Error::InvalidParameter {
                        argument: "alpha",
                        ..
                    }
                ),
                "{device:?} α = {alpha}: {err}"
            );
            assert!(err.to_string().contains("1 < α ≤ 2"), "{err}");
        }
    }
    for beta in [0.0f32, -1.0, f32::NAN] {
        let built = Retriever::builder(Patterns::new(patterns.clone()).expect("patterns"))
            .separation(entmax_sep(beta, 1.5))
            .device(Device::Cpu)
            .build();
        assert!(
            matches!(
                built,
                Err(Error::InvalidParameter {
                    argument: "beta",
                    ..
                })
            ),
            "β = {beta}"
        );
    }
}

/// A saved entmax memory loads with the same rule.
#[test]
fn saving_keeps_the_rule() {
    let patterns = unit_patterns(7, 5, 2);
    for rule in [entmax_sep(0.75, 1.25), entmax_sep(3.0, 2.0)] {
        let r = retriever(
            &patterns,
            rule,
            Similarity::NegManhattan,
            Dynamics::OneStep,
            Device::Reference,
        );
        let dir = std::env::temp_dir().join(format!("dam-entmax-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("entmax.safetensors");
        r.save_file(&path).expect("save");
        let loaded = Retriever::load_file(&path, &Device::Reference).expect("load");
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert_eq!(loaded.config().separation, rule);
        assert_eq!(loaded.config().similarity, Similarity::NegManhattan);
    }
}

/// Retrieval of `queries` from `patterns` with 8-entmax at `alpha` (with its energy trace)
/// on wgpu with `options` against the reference: states and energies within the
/// tolerances of [`assert_matches`].
fn wgpu_retrieves_as_the_reference(
    label: &str,
    patterns: &Array2<f32>,
    queries: &Array2<f32>,
    alpha: f32,
    dynamics: Dynamics,
    storage: Storage,
    options: &WgpuOptions,
) {
    let build = |device: Device| {
        Retriever::builder(Patterns::new(patterns.clone()).expect("patterns"))
            .separation(entmax_sep(8.0, alpha))
            .dynamics(dynamics)
            .storage(storage)
            .energy_trace(true)
            .device(device)
            .build()
            .expect("retriever")
    };
    let expected = build(Device::Reference)
        .retrieve(queries.view())
        .expect("ref");
    let got = build(common::gpu_with(options.clone()))
        .retrieve(queries.view())
        .expect("wgpu");
    let (ds, de) = assert_matches(label, &got, &expected);
    println!("{label}: state diff/scale {ds:.3e}, energy diff/scale {de:.3e}");
}

/// wgpu with the patterns over several storage bindings (16 KiB, which also slices the
/// batch) and with f16 storage, against the reference.
#[test]
fn wgpu_splits_patterns_and_stores_halves() {
    let cases = [
        (3_001, 8, 6, Some(16 << 10), Storage::F32),
        (513, 13, 10, None, Storage::F16),
        (3_001, 8, 6, Some(16 << 10), Storage::F16),
    ];
    for (p, n, b, binding, storage) in cases {
        let patterns = unit_patterns(p, n, 51);
        let queries = noisy_queries(&patterns, b, 0.3, 52);
        let options = WgpuOptions {
            max_binding_bytes: binding,
            ..WgpuOptions::default()
        };
        for alpha in [1.5f32, 2.0] {
            let label = format!("P={p} N={n} B={b} binding={binding:?} {storage:?} α={alpha}");
            let dynamics = Dynamics::Iterate {
                max_steps: 3,
                tol: 1e-3,
            };
            wgpu_retrieves_as_the_reference(
                &label, &patterns, &queries, alpha, dynamics, storage, &options,
            );
        }
    }
}

/// wgpu's weights (τ by bisection and the weights in f32 on the device, `entmax.wgsl`)
/// against the f64 reference, for scores of order one after the β scaling.
const DEVICE_WEIGHT_TOL: Tolerance = Tolerance::new(2e-6, 1e-4);
/// wgpu's energy of the same states against the reference (f32 on the device).
const DEVICE_ENERGY_TOL: Tolerance = Tolerance::new(1e-5, 1e-5);

/// A wgpu retriever built directly with `options` (to tell where its entmax weights run).
fn wgpu_direct(
    patterns: &Array2<f32>,
    separation: Separation,
    options: &WgpuOptions,
) -> dam::wgpu_backend::WgpuRetriever {
    let ctx = dam::WgpuContext::shared(options).expect("wgpu adapter");
    let config = dam::Config {
        separation,
        dynamics: Dynamics::OneStep,
        ..dam::Config::default()
    };
    dam::wgpu_backend::WgpuRetriever::new(ctx, &Patterns::new(patterns.clone()).expect("p"), config)
        .expect("wgpu retriever")
}

/// One update on wgpu and on the reference from `x` with the identity as the stored
/// patterns (P = N): the scores are x itself and the update Ξᵀp is the weights p. Also
/// the energies. Asserts that the wgpu weights ran on the device.
fn identity_weights(
    x: &Array2<f32>,
    beta: f32,
    alpha: f32,
) -> (Array2<f32>, Array2<f32>, Vec<f64>, Vec<f64>) {
    let p = x.ncols();
    let identity = Array2::from_shape_fn((p, p), |(i, j)| f32::from(u8::from(i == j)));
    let options = WgpuOptions::default();
    let direct = wgpu_direct(&identity, entmax_sep(beta, alpha), &options);
    assert!(direct.entmax_on_device(), "P={p}: weights on the device");
    let reference = retriever(
        &identity,
        entmax_sep(beta, alpha),
        Similarity::Dot,
        Dynamics::OneStep,
        Device::Reference,
    );
    (
        direct.step(x.view()).expect("wgpu step"),
        reference.step(x.view()).expect("reference step"),
        direct.energy(x.view()).expect("wgpu energy"),
        reference.energy(x.view()).expect("reference energy"),
    )
}

/// The device weights against the reference, row by row: every row sums to 1, and at
/// α = 2 the support is the reference's exactly.
fn check_weights(label: &str, alpha: f32, got: &Array2<f32>, expected: &Array2<f32>) -> f64 {
    assert_eq!(got.dim(), expected.dim(), "{label}: shape");
    let diff = DEVICE_WEIGHT_TOL
        .compare(got.iter().copied(), expected.iter().copied())
        .unwrap_or_else(|m| panic!("{label}: weights differ: {m:?}"));
    for (q, row) in got.rows().into_iter().enumerate() {
        let total: f64 = row.iter().map(|&v| v as f64).sum();
        assert!((total - 1.0).abs() < 1e-5, "{label} row {q}: Σ p = {total}");
        assert!(row.iter().all(|&v| v >= 0.0), "{label} row {q}: {row:?}");
        if alpha == 2.0 {
            let support = |r: ndarray::ArrayView1<'_, f32>| -> Vec<usize> {
                (0..r.len()).filter(|&j| r[j] > 0.0).collect()
            };
            assert_eq!(
                support(row),
                support(expected.row(q)),
                "{label} row {q}: sparsemax support"
            );
        }
    }
    diff
}

/// entmax.wgsl against the reference through the identity memory: rows of P = 1, 255,
/// 257, 700 scores (not multiples of the workgroup of 256), α = 1.05, 1.5, 2, β·s of
/// order one and β·s in the thousands (shift invariance), and the energies.
#[test]
fn wgpu_device_weights_match_the_reference() {
    let mut worst = (0.0f64, 0.0f64);
    for (p, seed) in [(1usize, 61u64), (255, 62), (257, 63), (700, 64)] {
        let spread = gaussian(5, p, 1.0, seed);
        for alpha in [1.05f32, 1.5, 2.0] {
            // (β, scores): β·s of order one, and β·s ≈ 10⁴ with β·Δs of order one.
            let cases = [
                (2.0f32, spread.clone()),
                (2_000.0f32, spread.mapv(|v| 5.0 + 1e-3 * v)),
            ];
            for (beta, x) in cases {
                let label = format!("P={p} α={alpha} β={beta}");
                let (got, expected, e_got, e_expected) = identity_weights(&x, beta, alpha);
                worst.0 = worst.0.max(check_weights(&label, alpha, &got, &expected));
                let scale = e_expected.iter().fold(1.0f64, |m, e| m.max(e.abs()));
                let de = DEVICE_ENERGY_TOL
                    .scaled(scale)
                    .compare(e_got.iter().copied(), e_expected.iter().copied())
                    .unwrap_or_else(|m| panic!("{label}: energies differ: {m:?}"));
                worst.1 = worst.1.max(de / scale);
            }
        }
    }
    println!(
        "wgpu device entmax vs reference: max |Δp| = {:.2e}, max |ΔE|/max(1, |E|) = {:.2e}",
        worst.0, worst.1
    );
}

/// Two equal top scores: sparsemax splits them evenly (0.5 each when the rest is far
/// below, equal shares with a third inside), entmax gives them equal weights, on the
/// device as in the reference.
#[test]
fn wgpu_device_weights_split_ties() {
    let p = 300;
    let mut x = gaussian(3, p, 0.1, 71).mapv(|v| v - 3.0);
    // Row 0: a tie far above the rest; row 1: a tie with a third score inside the
    // sparsemax support; row 2: the tie at the first and the last index.
    x[[0, 17]] = 1.0;
    x[[0, 250]] = 1.0;
    x[[1, 5]] = 1.0;
    x[[1, 6]] = 1.0;
    x[[1, 7]] = 0.75;
    x[[2, 0]] = 2.0;
    x[[2, p - 1]] = 2.0;
    for alpha in [1.5f32, 2.0] {
        let label = format!("ties α={alpha}");
        let (got, expected, _, _) = identity_weights(&x, 1.0, alpha);
        check_weights(&label, alpha, &got, &expected);
        for (q, (i, j)) in [(0, (17, 250)), (1, (5, 6)), (2, (0, p - 1))] {
            assert_eq!(got[[q, i]], got[[q, j]], "{label} row {q}: tied weights");
            assert!(got[[q, i]] > 0.0, "{label} row {q}");
        }
        if alpha == 2.0 {
            assert_eq!(got[[0, 17]], 0.5, "{label}: two alone share evenly");
            // τ = (1 + 1 + 0.75 − 1)/3: p = 5/12, 5/12, 1/6.
            let shares = [got[[1, 5]], got[[1, 6]], got[[1, 7]]].map(f64::from);
            assert_close(
                &format!("{label} row 1"),
                Tolerance::new(1e-6, 0.0),
                &shares,
                &[5.0 / 12.0, 5.0 / 12.0, 1.0 / 6.0],
            );
        }
    }
}

/// The device path of the entmax weights needs one row of P scores in one storage
/// binding: with 8 KiB bindings P = 2,048 runs on the device and P = 2,049 falls back to
/// the host (both with the patterns over several bindings), and both match the
/// reference through whole retrievals.
#[test]
fn wgpu_device_weights_decline_rows_beyond_one_binding() {
    let options = WgpuOptions {
        max_binding_bytes: Some(8 << 10),
        ..WgpuOptions::default()
    };
    for (p, on_device) in [(2_048usize, true), (2_049, false)] {
        let patterns = unit_patterns(p, 8, 81);
        let queries = noisy_queries(&patterns, 3, 0.3, 82);
        for alpha in [1.5f32, 2.0] {
            let label = format!("P={p} α={alpha} 8 KiB bindings");
            let direct = wgpu_direct(&patterns, entmax_sep(8.0, alpha), &options);
            assert_eq!(direct.entmax_on_device(), on_device, "{label}");
            assert!(
                direct.chunk_count() > 1,
                "{label}: patterns over several bindings"
            );
            let dynamics = Dynamics::Iterate {
                max_steps: 4,
                tol: 1e-4,
            };
            wgpu_retrieves_as_the_reference(
                &label,
                &patterns,
                &queries,
                alpha,
                dynamics,
                Storage::F32,
                &options,
            );
        }
    }
}

/// Non-finite queries are refused the same way whether the wgpu weights run on the
/// device or on the host (rows beyond one small binding).
#[test]
fn wgpu_host_fallback_refuses_non_finite_queries() {
    let options = WgpuOptions {
        max_binding_bytes: Some(256),
        ..WgpuOptions::default()
    };
    let patterns = unit_patterns(100, 4, 5);
    assert!(!wgpu_direct(&patterns, entmax_sep(2.0, 2.0), &options).entmax_on_device());
    non_finite_queries_are_refused_with(&patterns, common::gpu_with(options));
}
