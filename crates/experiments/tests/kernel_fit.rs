//! `dam kernel-fit`: the analytic gradient of the separation loss against finite
//! differences, the f32 devices against the reference, the Tammes optima (tetrahedron and
//! octahedron) learned with D_Φ = 3, the loss falling, the metastable-state count on a
//! hand-built memory, clear errors and the command's files.

mod common;
use common::dam;

use dam::kernelized::{self, FeatureMap, Retrieval, Weights};
use dam::{Device, Tolerance};
use dam_experiments::kernel_fit::{self, initial_map, KernelFitSpec, MemorySource, Optimizer};
use dam_experiments::ExperimentError;
use ndarray::{Array1, Array2};

/// Central differences with h = 1e-5 on an f64 loss of size ~1/τ: truncation ~h²·L''' and
/// rounding ~ε·L/h, both near 1e-9 of the gradient's scale.
const FD_TOL: Tolerance = Tolerance::new(1e-7, 1e-5);
/// The f32 devices against the reference: the Gram matrix is rounded to f32 (cosines to
/// ~6e-8, i.e. G/τ to ~1e-6 at τ = 0.1), the rest is f64.
const DEVICE_TOL: Tolerance = Tolerance::new(1e-5, 1e-4);

fn spherical(m: usize, n: usize, seed: u64) -> (Array2<f64>, FeatureMap) {
    let spec = KernelFitSpec {
        memories: MemorySource::Spherical { m, n },
        queries: 0,
        seed,
        ..KernelFitSpec::default()
    };
    let (memories, _) = kernel_fit::load(&spec).unwrap();
    let mut map = initial_map(4, n, seed);
    // A non-zero bias so that its gradient is checked too.
    map.b = Array1::from_shape_fn(4, |i| 0.1 * (i as f64 - 1.5));
    (memories, map)
}

#[test]
fn the_gradient_matches_central_differences() {
    let (memories, map) = spherical(7, 5, 3);
    let tau = 0.2;
    let e = kernelized::evaluate(&map, memories.view(), tau);
    let h = 1e-5;
    let mut fd_w = Array2::<f64>::zeros(map.w.dim());
    for ((i, j), slot) in fd_w.indexed_iter_mut() {
        let (mut plus, mut minus) = (map.clone(), map.clone());
        plus.w[[i, j]] += h;
        minus.w[[i, j]] -= h;
        *slot = (kernelized::loss(&plus, memories.view(), tau)
            - kernelized::loss(&minus, memories.view(), tau))
            / (2.0 * h);
    }
    let fd_b = Array1::from_shape_fn(map.b.len(), |i| {
        let (mut plus, mut minus) = (map.clone(), map.clone());
        plus.b[i] += h;
        minus.b[i] -= h;
        (kernelized::loss(&plus, memories.view(), tau)
            - kernelized::loss(&minus, memories.view(), tau))
            / (2.0 * h)
    });
    let scale = e.grad_w.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    assert!(scale > 1e-3, "a vanishing gradient checks nothing: {scale}");
    let tol = FD_TOL.scaled(scale);
    let worst_w = tol
        .compare(e.grad_w.iter().copied(), fd_w.iter().copied())
        .unwrap_or_else(|m| panic!("∂L/∂W: {m:?}"));
    let worst_b = tol
        .compare(e.grad_b.iter().copied(), fd_b.iter().copied())
        .unwrap_or_else(|m| panic!("∂L/∂b: {m:?}"));
    eprintln!(
        "gradient check: largest |analytic − fd| W {worst_w:.2e}, b {worst_b:.2e} (scale {scale:.3})"
    );
    assert!((e.loss - kernelized::loss(&map, memories.view(), tau)).abs() < 1e-12);
}

fn check_device(device: &Device) {
    let (memories, map) = spherical(12, 6, 5);
    let tau = 0.1;
    let want = kernelized::evaluate(&map, memories.view(), tau);
    let ctx = device.context().unwrap();
    let got = kernel_fit::evaluate(&map, memories.view(), tau, device, ctx.as_deref())
        .unwrap_or_else(|e| panic!("{device:?}: {e}"));
    let scale = want.grad_w.iter().fold(1.0f64, |a, v| a.max(v.abs()));
    let loss = DEVICE_TOL
        .compare([got.loss], [want.loss])
        .unwrap_or_else(|m| panic!("{device:?} loss: {m:?}"));
    let sep = DEVICE_TOL
        .compare([got.min_separation], [want.min_separation])
        .unwrap_or_else(|m| panic!("{device:?} separation: {m:?}"));
    let w = DEVICE_TOL
        .scaled(scale)
        .compare(got.grad_w.iter().copied(), want.grad_w.iter().copied())
        .unwrap_or_else(|m| panic!("{device:?} ∂L/∂W: {m:?}"));
    let b = DEVICE_TOL
        .scaled(scale)
        .compare(got.grad_b.iter().copied(), want.grad_b.iter().copied())
        .unwrap_or_else(|m| panic!("{device:?} ∂L/∂b: {m:?}"));
    eprintln!("{device:?}: loss {loss:.2e}, separation {sep:.2e}, ∂W {w:.2e}, ∂b {b:.2e}");
}

#[test]
fn the_fast_cpu_agrees_with_the_reference() {
    check_device(&Device::Cpu);
}

#[test]
fn wgpu_agrees_with_the_reference() {
    check_device(&Device::wgpu());
}

/// The learned features of M identity memories (N = M, so W's columns are the features,
/// unconstrained) in D_Φ = 3.
fn tammes(m: usize) -> f64 {
    tammes_on(m, &Device::Reference)
}

fn tammes_on(m: usize, device: &Device) -> f64 {
    let memories = Array2::<f64>::eye(m);
    let mut map = initial_map(3, m, 11);
    let spec = KernelFitSpec {
        memories: MemorySource::Spherical { m, n: m },
        feature_dim: 3,
        tau: 0.1,
        epochs: 1500,
        optimizer: Optimizer::Adam,
        lr: 0.02,
        ..KernelFitSpec::default()
    };
    let mut losses = Vec::new();
    kernel_fit::train(&spec, &mut map, memories.view(), device, |row| {
        losses.push(row.loss)
    })
    .unwrap();
    assert_eq!(losses.len(), 1501);
    assert!(losses[1500] < losses[0], "{} → {}", losses[0], losses[1500]);
    let sep = kernelized::min_separation(&map, memories.view());
    eprintln!("Tammes M = {m} on {device:?}: min separation {sep:.5}");
    sep
}

#[test]
fn four_features_in_three_dimensions_reach_the_tetrahedron() {
    let sep = tammes(4);
    assert!((sep - 4.0 / 3.0).abs() <= 0.02 * 4.0 / 3.0, "{sep}");
}

#[test]
fn six_features_in_three_dimensions_reach_the_octahedron() {
    let sep = tammes(6);
    assert!((sep - 1.0).abs() <= 0.02, "{sep}");
}

#[test]
fn the_f32_gram_matrix_reaches_the_octahedron_too() {
    for device in [Device::Cpu, Device::wgpu()] {
        let sep = tammes_on(6, &device);
        assert!((sep - 1.0).abs() <= 0.02, "{device:?}: {sep}");
    }
}

#[test]
fn the_loss_falls_and_the_separation_rises() {
    for optimizer in [Optimizer::Sgd, Optimizer::Adam] {
        let spec = KernelFitSpec {
            memories: MemorySource::Spherical { m: 10, n: 5 },
            feature_dim: 5,
            tau: 0.1,
            epochs: 200,
            optimizer,
            lr: if optimizer == Optimizer::Sgd {
                0.05
            } else {
                0.01
            },
            queries: 50,
            ..KernelFitSpec::default()
        };
        let r = kernel_fit::run(&spec, &Device::Reference, |_| {}).unwrap();
        let first = r.rows.first().unwrap().loss;
        let last = r.rows.last().unwrap().loss;
        assert_eq!(r.rows.len(), 201);
        assert!(last < first - 0.5, "{optimizer:?}: {first} → {last}");
        assert!(
            r.min_separation_after > r.min_separation_before,
            "{optimizer:?}: {} → {}",
            r.min_separation_before,
            r.min_separation_after
        );
        assert_eq!(r.metastable_before.iter().sum::<usize>(), 50);
        assert_eq!(r.metastable_after.iter().sum::<usize>(), 50);
    }
}

#[test]
fn metastable_sizes_on_a_hand_built_memory() {
    // Identity feature map on R²; memories e₁, −e₁ and e₂. With β = 20 every query ends on
    // one memory (‖p‖ = 1: the others weigh at most e^{−20}).
    let map = FeatureMap {
        w: Array2::eye(2),
        b: Array1::zeros(2),
    };
    let memories = ndarray::arr2(&[[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]);
    let sharp = Retrieval {
        beta: 20.0,
        ..Retrieval::default()
    };
    let queries = ndarray::arr2(&[[0.9, 0.1], [0.1, 0.9], [-0.8, -0.2]]);
    let h = kernelized::metastable_histogram(&map, memories.view(), queries.view(), &sharp);
    assert_eq!(h, vec![0, 3, 0, 0]);
    // With β = 1 the weights never fall below e^{−2}/(1 + 2) > 0.01: every memory counts.
    let flat = Retrieval {
        beta: 1.0,
        ..Retrieval::default()
    };
    let h = kernelized::metastable_histogram(&map, memories.view(), queries.view(), &flat);
    assert_eq!(h, vec![0, 0, 0, 3]);
    // The weights at a fixed point: the state is the weighted memories.
    let (hat, _) = kernelized::normalise_rows(memories.view());
    let p =
        kernelized::fixed_point_weights(&map, memories.view(), hat.view(), queries.row(0), &sharp);
    assert_eq!(p.len(), 3);
    assert!(p[0] > 0.99, "{p:?}");
    assert_eq!(Weights::Softmax.threshold(), 0.01);
}

/// The inner-product kernel feels the features' length: memories 2e₁ and e₂ with the
/// identity map, query e₁ + e₂. On cosines both are equally near (a tie: ‖p‖ = 2 at β = 1);
/// on ⟨Φ(u), Φ(v)⟩ = (2, 1) the longer memory wins at β = 20.
#[test]
fn the_dot_kernel_uses_the_feature_lengths() {
    let map = FeatureMap {
        w: Array2::eye(2),
        b: Array1::zeros(2),
    };
    let memories = ndarray::arr2(&[[2.0, 0.0], [0.0, 1.0]]);
    let queries = ndarray::arr2(&[[1.0, 1.0]]);
    let retrieval = Retrieval {
        beta: 20.0,
        max_steps: 1,
        ..Retrieval::default()
    };
    let dot = kernelized::Kernel::new(map.clone(), false);
    let cosine = kernelized::Kernel::new(map.clone(), true);
    let hd = kernelized::metastable_histogram_of(&dot, memories.view(), queries.view(), &retrieval);
    assert_eq!(hd, vec![0, 1, 0]);
    let flat = Retrieval {
        beta: 1.0,
        max_steps: 1,
        ..Retrieval::default()
    };
    let hc = kernelized::metastable_histogram_of(&cosine, memories.view(), queries.view(), &flat);
    assert_eq!(hc, vec![0, 0, 1]);
    // metastable_histogram is the cosine kernel.
    assert_eq!(
        kernelized::metastable_histogram(&map, memories.view(), queries.view(), &flat),
        hc
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    let base = KernelFitSpec {
        epochs: 1,
        queries: 1,
        ..KernelFitSpec::default()
    };
    let cases: Vec<(&str, KernelFitSpec)> = vec![
        (
            "--feature-dim",
            KernelFitSpec {
                feature_dim: 0,
                ..base.clone()
            },
        ),
        (
            "--tau",
            KernelFitSpec {
                tau: 0.0,
                ..base.clone()
            },
        ),
        (
            "--tau",
            KernelFitSpec {
                tau: -1.0,
                ..base.clone()
            },
        ),
        (
            "--memories",
            KernelFitSpec {
                memories: MemorySource::Spherical { m: 1, n: 5 },
                ..base.clone()
            },
        ),
        (
            "--epochs",
            KernelFitSpec {
                epochs: 0,
                ..base.clone()
            },
        ),
    ];
    for (flag, spec) in cases {
        match kernel_fit::run(&spec, &Device::Reference, |_| {}) {
            Err(ExperimentError::Invalid { argument, .. }) => assert_eq!(argument, flag),
            other => panic!("{flag}: {other:?}"),
        }
    }
    for (flag, text) in [
        ("--memories", "spherical:1:5"),
        ("--memories", "spherical:4"),
        ("--memories", "spherical:x:5"),
    ] {
        match MemorySource::parse(text) {
            Err(ExperimentError::Invalid { argument, .. }) => assert_eq!(argument, flag),
            other => panic!("{text}: {other:?}"),
        }
    }
    match Optimizer::parse("lbfgs") {
        Err(ExperimentError::Invalid { argument, .. }) => assert_eq!(argument, "--optimizer"),
        other => panic!("{other:?}"),
    }
    // A one-memory file: M < 2.
    let dir = tmp("one");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("one.csv");
    std::fs::write(&file, "a,b\n1,2\n").unwrap();
    match kernel_fit::read_memories(&file) {
        Err(ExperimentError::Invalid { argument, .. }) => assert_eq!(argument, "--memories"),
        other => panic!("{other:?}"),
    }
}

fn tmp(name: &str) -> std::path::PathBuf {
    common::tmp("kernel-fit", name)
}

#[test]
fn the_command_writes_its_files() {
    let out = tmp("run");
    let o = dam(&[
        "kernel-fit",
        "--memories",
        "spherical:10:5",
        "--feature-dim",
        "5",
        "--tau",
        "0.1",
        "--epochs",
        "50",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.join("loss.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("epoch,loss,min_separation,seconds"));
    assert_eq!(lines.count(), 51);
    assert!(out.join("feature_map.safetensors").is_file());
    assert!(out.join("loss.svg").is_file());
    let map = kernel_fit::read_feature_map(&out.join("feature_map.safetensors")).unwrap();
    assert_eq!(map.w.dim(), (5, 5));
    assert_eq!(map.b.len(), 5);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    for key in [
        "min_separation_before",
        "min_separation_after",
        "metastable_before",
        "metastable_after",
        "seconds",
    ] {
        assert!(!summary[key].is_null(), "{key}: {summary}");
    }
    let o = dam(&[
        "kernel-fit",
        "--memories",
        "spherical:10:5",
        "--feature-dim",
        "5",
        "--optimizer",
        "lbfgs",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--optimizer"));
    assert_eq!(summary["metastable"]["kernel"], "cosine");
    assert!(
        summary["metastable_after_initial_scale"].is_null(),
        "{summary}"
    );
    // The dot kernel also reports the learned map at its initial size.
    let dot = tmp("run-dot");
    let o = dam(&[
        "kernel-fit",
        "--memories",
        "spherical:10:5",
        "--feature-dim",
        "5",
        "--epochs",
        "20",
        "--queries",
        "50",
        "--kernel",
        "dot",
        "--beta",
        "3",
        "--out",
        dot.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dot.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["metastable"]["kernel"], "dot");
    let scaled = summary["metastable_after_initial_scale"]
        .as_array()
        .unwrap();
    assert_eq!(
        scaled.iter().map(|v| v.as_u64().unwrap()).sum::<u64>(),
        50,
        "{summary}"
    );
}

#[test]
fn learning_raises_the_share_of_single_memory_fixed_points() {
    // Synthetic: M = 10 random unit memories, N = D_Φ = 5, independent random unit queries.
    // Softmax with β = 1 on cosines keeps every weight above e^{−2}/10 > 0.01, so the
    // histogram is read at β = 10.
    let (before, after) = synthetic_shares(Weights::Softmax, 200);
    assert!(after > before + 0.3, "{before} → {after}");
}

/// The share of ‖p‖ = 1 before and after learning Φ for M = 10 random unit memories,
/// N = D_Φ = 5, τ = 0.1, Adam η = 0.01, 500 epochs, β = 10, `queries` random unit queries,
/// on the reference; every query is counted in both histograms.
fn synthetic_shares(weights: Weights, queries: usize) -> (f64, f64) {
    let spec = KernelFitSpec {
        memories: MemorySource::Spherical { m: 10, n: 5 },
        feature_dim: 5,
        tau: 0.1,
        epochs: 500,
        optimizer: Optimizer::Adam,
        lr: 0.01,
        beta: 10.0,
        weights,
        queries,
        ..KernelFitSpec::default()
    };
    let r = kernel_fit::run(&spec, &Device::Reference, |_| {}).unwrap();
    assert_eq!(r.metastable_before.iter().sum::<usize>(), queries);
    assert_eq!(r.metastable_after.iter().sum::<usize>(), queries);
    let before = kernel_fit::KernelFitReport::share_single(&r.metastable_before);
    let after = kernel_fit::KernelFitReport::share_single(&r.metastable_after);
    eprintln!(
        "{}, β = 10: ‖p‖ histogram before {:?}, after {:?} (share of 1: {before} → {after})",
        weights.name(),
        r.metastable_before,
        r.metastable_after
    );
    (before, after)
}

#[test]
fn learning_raises_the_share_of_single_memory_fixed_points_with_entmax() {
    // Synthetic: M = 10 random unit memories, N = D_Φ = 5, independent random unit queries,
    // 1.5-entmax (a weight counts above 0). The similarity is the cosine of the features, so
    // β = 1 spreads the weights over 5 memories before learning and 8 after (the learned
    // cosines are more even); the histogram is read at β = 10.
    let (before, after) = synthetic_shares(Weights::Entmax { alpha: 1.5 }, 500);
    assert!(after > before + 0.1 && after >= 0.99, "{before} → {after}");
}

#[test]
fn separation_names_parse() {
    assert_eq!(Weights::parse("softmax").unwrap(), Weights::Softmax);
    assert_eq!(
        Weights::parse("sparsemax").unwrap(),
        Weights::Entmax { alpha: 2.0 }
    );
    assert_eq!(
        Weights::parse("entmax:1.25").unwrap(),
        Weights::Entmax { alpha: 1.25 }
    );
    assert_eq!(Weights::parse("entmax:1.25").unwrap().name(), "entmax:1.25");
    assert_eq!(Weights::Entmax { alpha: 2.0 }.threshold(), 0.0);
    for bad in ["entmax:1", "entmax:3", "entmax:x", "relu"] {
        let e = Weights::parse(bad).unwrap_err().to_string();
        assert!(e.contains("separation"), "{bad}: {e}");
    }
    let mut z = vec![3.0, 1.0, 0.5];
    Weights::parse("sparsemax").unwrap().apply(&mut z);
    assert_eq!(z, vec![1.0, 0.0, 0.0]);
}

#[test]
fn the_capacity_retrieval_is_the_core_fixed_point() {
    // The success of `--capacity` runs the engine's kernelized memory; on the reference it
    // must count what the core's f64 fixed points count.
    const BETA: f64 = 12.0;
    let spec = KernelFitSpec {
        memories: MemorySource::Spherical { m: 30, n: 6 },
        feature_dim: 9,
        beta: BETA,
        weights: Weights::Entmax { alpha: 1.5 },
        ..KernelFitSpec::default()
    };
    let (memories, _) = kernel_fit::load(&spec).unwrap();
    let mut map = initial_map(9, 6, 5);
    map.b = Array1::from_shape_fn(9, |i| 0.05 * i as f64);
    let queries = kernel_fit::noisy_copies(memories.view(), 30, 0.4, 6);
    let got = kernel_fit::retrieval_success(
        &spec,
        &map,
        memories.view(),
        queries.view(),
        &Device::Reference,
    )
    .unwrap();
    let kernel = kernelized::Kernel::new(map.clone(), true);
    let features = kernel.features(memories.view());
    let retrieval = Retrieval {
        beta: BETA,
        weights: Weights::Entmax { alpha: 1.5 },
        max_steps: 200,
        tolerance: 1e-6,
    };
    let mut hits = 0;
    for (i, q) in queries.rows().into_iter().enumerate() {
        let fp = kernelized::fixed_point(&kernel, memories.view(), features.view(), q, &retrieval);
        hits += (fp.weights[i] >= 0.5) as usize;
    }
    let want = hits as f64 / 30.0;
    eprintln!("success {got} (core {want})");
    assert_eq!(got, want);
    assert!(got > 0.0 && got < 1.0, "a discriminating case: {got}");
    // Noise-free queries on the identity map at a large β: every memory is its own fixed
    // point.
    let sharp = KernelFitSpec {
        beta: 200.0,
        ..spec.clone()
    };
    let exact = kernel_fit::noisy_copies(memories.view(), 30, 0.0, 7);
    assert_eq!(exact, memories);
    let identity = FeatureMap::identity(6);
    let all = kernel_fit::retrieval_success(
        &sharp,
        &identity,
        memories.view(),
        exact.view(),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(all, 1.0);
}

#[test]
fn the_capacity_comparison_writes_its_file() {
    let out = tmp("capacity");
    let o = dam(&[
        "kernel-fit",
        "--memories",
        "spherical:40:6",
        "--feature-dim",
        "6",
        "--epochs",
        "60",
        "--queries",
        "20",
        "--beta",
        "3",
        "--capacity",
        "30,10,40",
        "--capacity-noise",
        "0.4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.join("capacity.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "patterns,queries,success_identity,success_learned,min_separation_identity,min_separation_learned"
    );
    assert_eq!(lines.len(), 4, "{csv}");
    let counts: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(counts, ["10", "30", "40"]);
    let queries: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(queries, ["10", "20", "20"]);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let capacity = &summary["capacity"];
    assert_eq!(
        capacity["rows"].as_array().map(Vec::len),
        Some(3),
        "{summary}"
    );
    assert_eq!(capacity["noise"], 0.4);
    assert!(
        capacity.get("patterns_half_identity").is_some(),
        "{capacity}"
    );
    assert!(
        capacity.get("patterns_half_learned").is_some(),
        "{capacity}"
    );
    for bad in ["1", "10,41", "ten"] {
        let o = dam(&[
            "kernel-fit",
            "--memories",
            "spherical:40:6",
            "--feature-dim",
            "6",
            "--epochs",
            "5",
            "--capacity",
            bad,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(!o.status.success(), "{bad}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("--capacity"),
            "{bad}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
