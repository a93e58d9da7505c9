//! Every similarity × separation × dynamics × projection runs on the wgpu device and is
//! compared with the CPU reference on seeded data, plus edge sizes, large β·s, ties and
//! bad input. GPU tests never skip: no adapter is a failure (see `common::gpu`).

mod common;

use common::*;
use dam::{
    Device, Dynamics, Error, Patterns, Projection, Retriever, Separation, Similarity, WgpuOptions,
};
use ndarray::{array, Array2};

const SIMILARITIES: [Similarity; 3] = Similarity::ALL;

/// Runs one configuration on both devices and compares. Both must succeed and agree, or
/// both must report the same overflow. Returns (max state diff, max energy diff).
fn compare(
    label: &str,
    builder: dam::RetrieverBuilder,
    gpu_device: Device,
    queries: &Array2<f32>,
) -> (f64, f64) {
    let cpu = builder
        .clone()
        .device(Device::Reference)
        .build()
        .unwrap_or_else(|e| panic!("{label}: cpu build: {e}"))
        .retrieve(queries.view());
    let gpu = builder
        .device(gpu_device)
        .build()
        .unwrap_or_else(|e| panic!("{label}: wgpu build: {e}"))
        .retrieve(queries.view());
    match (gpu, cpu) {
        (Ok(g), Ok(c)) => assert_matches(label, &g, &c),
        (Err(Error::Overflow { query: gq, .. }), Err(Error::Overflow { query: cq, .. })) => {
            assert_eq!(gq, cq, "{label}: both overflow, on different queries");
            (0.0, 0.0)
        }
        (g, c) => panic!("{label}: outcomes differ: wgpu {g:?} vs cpu {c:?}"),
    }
}

#[test]
fn wgpu_adapter_is_present_and_named() {
    let device = gpu();
    let ctx = dam::WgpuContext::shared(&WgpuOptions::default()).expect("adapter");
    assert!(!ctx.adapter_info().name.is_empty());
    assert_eq!(device, Device::wgpu());
    println!("GPU tests run on: {}", ctx.describe());
}

#[test]
fn wgpu_matches_cpu_for_every_combination() {
    let (p, n, b) = (100, 17, 5);
    let raw = unit_patterns(p, n, 11);
    let queries = noisy_queries(&raw, b, 0.4, 12);
    let patterns = Patterns::new(raw).unwrap();
    let device = gpu();
    let mut worst = (0.0f64, 0.0f64);
    let mut runs = 0;
    for similarity in SIMILARITIES {
        for separation in separations(p) {
            for dynamics in DYNAMICS {
                for projection in PROJECTIONS {
                    let label =
                        format!("{similarity:?}/{separation:?}/{dynamics:?}/{projection:?}");
                    let builder = Retriever::builder(patterns.clone())
                        .similarity(similarity)
                        .separation(separation)
                        .dynamics(dynamics)
                        .projection(projection)
                        .energy_trace(true);
                    let (ds, de) = compare(&label, builder, device.clone(), &queries);
                    worst = (worst.0.max(ds), worst.1.max(de));
                    runs += 1;
                }
            }
        }
    }
    assert_eq!(runs, 3 * 6 * 2 * 3);
    println!(
        "{runs} combinations: max |state diff| = {:.3e}, max |energy diff| = {:.3e}",
        worst.0, worst.1
    );
}

#[test]
fn wgpu_matches_cpu_at_tiny_sizes() {
    let device = gpu();
    for (p, n, b) in [(1, 1, 1), (2, 1, 3), (1, 3, 2), (5, 3, 1)] {
        let raw = gaussian(p, n, 1.0, 20 + p as u64);
        let queries = noisy_queries(&raw, b, 0.3, 21);
        let patterns = Patterns::new(raw).unwrap();
        for separation in separations(p) {
            for projection in PROJECTIONS {
                let label = format!("P={p} N={n} B={b} {separation:?}/{projection:?}");
                let builder = Retriever::builder(patterns.clone())
                    .separation(separation)
                    .projection(projection)
                    .dynamics(DYNAMICS[1])
                    .energy_trace(true);
                compare(&label, builder, device.clone(), &queries);
            }
        }
    }
}

#[test]
fn wgpu_matches_cpu_at_wide_dimension_and_batch() {
    // N = 257 and B = 257: not multiples of any workgroup size (16, 64, 256).
    let (p, n, b) = (300, 257, 257);
    let raw = unit_patterns(p, n, 30);
    let queries = noisy_queries(&raw, b, 0.5, 31);
    let patterns = Patterns::new(raw).unwrap();
    let device = gpu();
    for similarity in SIMILARITIES {
        for separation in separations(p) {
            let label = format!("N=257 B=257 {similarity:?}/{separation:?}");
            let builder = Retriever::builder(patterns.clone())
                .similarity(similarity)
                .separation(separation)
                .projection(Projection::Sphere)
                .dynamics(Dynamics::OneStep);
            let (ds, de) = compare(&label, builder, device.clone(), &queries);
            println!("{label}: state diff/scale {ds:.3e}, energy diff/scale {de:.3e}");
        }
    }
}

#[test]
fn wgpu_splits_patterns_beyond_one_binding() {
    // P = 100_003 patterns of N = 8 (3.2 MB) with bindings capped at 1 MiB: the patterns
    // are split into 4 chunks and query batches are sliced; results must not change.
    // β and the degree are high enough that each update is dominated by the patterns near
    // the query (a wide average of 10⁵ random directions cancels, and its direction is
    // then ill-conditioned in f32).
    let (p, n, b) = (100_003, 8, 257);
    let raw = unit_patterns(p, n, 40);
    let queries = noisy_queries(&raw, b, 0.2, 41);
    let patterns = Patterns::new(raw).unwrap();
    let options = WgpuOptions {
        max_binding_bytes: Some(1 << 20),
        ..WgpuOptions::default()
    };
    let ctx = dam::WgpuContext::shared(&options).expect("adapter");
    let config = dam::Config {
        separation: Separation::Softmax { beta: 30.0 },
        ..dam::Config::default()
    };
    let direct = dam::wgpu_backend::WgpuRetriever::new(ctx, &patterns, config).unwrap();
    assert_eq!(direct.chunk_count(), 4, "3.2 MB over 1 MiB bindings");
    for separation in [
        Separation::Softmax { beta: 30.0 },
        Separation::Exponential { beta: 30.0 },
        Separation::TopK { k: 7 },
        Separation::RectifiedPolynomial { n: 12 },
    ] {
        let label = format!("P=100003 chunked {separation:?}");
        let builder = Retriever::builder(patterns.clone())
            .separation(separation)
            .projection(Projection::Sphere)
            .dynamics(Dynamics::OneStep);
        let (ds, de) = compare(&label, builder, gpu_with(options.clone()), &queries);
        println!("{label}: state diff/scale {ds:.3e}, energy diff/scale {de:.3e}");
    }
    // One query against all of them, default bindings (split over the pattern axis).
    let one = queries.slice(ndarray::s![0..1, ..]).to_owned();
    let builder = Retriever::builder(patterns)
        .separation(Separation::Softmax { beta: 30.0 })
        .dynamics(Dynamics::Iterate {
            max_steps: 3,
            tol: 1e-4,
        });
    compare("P=100003 B=1", builder, gpu(), &one);
}

#[test]
fn large_beta_times_similarity_does_not_overflow() {
    // ±1 patterns, N = 64: s = ξ·x reaches 64, so β = 80 gives β·s ≈ 5120 (e^{5120} is far
    // beyond f32 and f64). Softmax must still retrieve; Exponential with a projection too.
    let (p, n) = (40, 64);
    let signs = gaussian(p, n, 1.0, 50).mapv(|v| if v >= 0.0 { 1.0 } else { -1.0 });
    let mut queries = signs.slice(ndarray::s![0..8, ..]).to_owned();
    for q in 0..8 {
        for i in 0..6 {
            queries[[q, (q * 7 + i * 5) % n]] *= -1.0;
        }
    }
    let patterns = Patterns::new(signs).unwrap();
    let device = gpu();
    for separation in [
        Separation::Softmax { beta: 80.0 },
        Separation::Exponential { beta: 80.0 },
    ] {
        for projection in [Projection::None, Projection::Sphere, Projection::Sign] {
            let label = format!("β·s≈5000 {separation:?}/{projection:?}");
            let builder = Retriever::builder(patterns.clone())
                .separation(separation)
                .projection(projection)
                .dynamics(Dynamics::Iterate {
                    max_steps: 5,
                    tol: 0.0,
                });
            let exponential_unprojected = matches!(separation, Separation::Exponential { .. })
                && projection == Projection::None;
            let gpu_result = builder
                .clone()
                .device(device.clone())
                .build()
                .unwrap()
                .retrieve(queries.view());
            if exponential_unprojected {
                // β·e^{5120}·ξ is not an f32: reported as an overflow, never as inf/NaN states.
                assert!(
                    matches!(gpu_result, Err(Error::Overflow { what: "state", .. })),
                    "{label}: {gpu_result:?}"
                );
            } else {
                let r = gpu_result.unwrap_or_else(|e| panic!("{label}: {e}"));
                assert!(
                    r.states.iter().all(|v| v.is_finite()),
                    "{label}: non-finite state"
                );
                assert_eq!(r.nearest, (0..8).collect::<Vec<_>>(), "{label}: retrieval");
            }
            let (ds, de) = compare(&label, builder, device.clone(), &queries);
            println!("{label}: state diff/scale {ds:.3e}, energy diff/scale {de:.3e}");
        }
    }
}

fn ties_resolve_to_the_lowest_index_on_both_devices(device: Device) {
    // Integer data: every similarity is exact in f32 and f64, so ties are exact.
    let a = [1.0f32, 2.0, -1.0, 0.0];
    let b = [2.0f32, 1.0, 0.0, -1.0];
    let c = [-3.0f32, 0.0, 1.0, 1.0];
    let rows = [a, b, a, c, b, a];
    let patterns = Patterns::from_vec(6, 4, rows.concat()).unwrap();
    // A query at equal dot product (6) to a and b (a·q = b·q = 6 with q = (2, 2, 0, 0)).
    let queries = array![[2.0f32, 2.0, 0.0, 0.0], [1.0, 2.0, -1.0, 0.0]];
    let run = |separation| {
        Retriever::builder(patterns.clone())
            .separation(separation)
            .dynamics(Dynamics::OneStep)
            .device(device.clone())
            .build()
            .unwrap()
            .retrieve(queries.view())
            .unwrap()
    };
    let max = run(Separation::Max);
    assert_eq!(max.nearest, vec![0, 0], "{device:?}");
    assert_eq!(
        max.states.row(0).to_vec(),
        a.to_vec(),
        "{device:?}: max picks index 0"
    );
    // Query 0: a (0, 2, 5) and b (1, 4) all score 6; top-3 takes 0, 1, 2 → (2a + b)/3.
    let top3 = run(Separation::TopK { k: 3 });
    let expected: Vec<f32> = (0..4).map(|i| (2.0 * a[i] + b[i]) / 3.0).collect();
    assert_eq!(top3.states.ncols(), expected.len());
    for (g, e) in top3.states.row(0).iter().zip(&expected) {
        assert!(
            (g - e).abs() < 1e-6,
            "{device:?}: top-3 = {:?}, expected {expected:?}",
            top3.states.row(0)
        );
    }
    let builder = Retriever::builder(patterns).separation(Separation::TopK { k: 4 });
    compare("ties TopK 4", builder, gpu(), &queries);
}
test_devices!(all: ties_resolve_to_the_lowest_index_on_both_devices);

fn bad_input_is_an_error_naming_the_argument_on_both_devices(device: Device) {
    let good = Patterns::new(array![[1.0f32, 0.0], [0.0, 1.0]]).unwrap();
    assert!(matches!(
        Patterns::new(array![[1.0f32, f32::NAN]]),
        Err(Error::NonFinite {
            argument: "patterns",
            row: 0,
            col: 1,
            ..
        })
    ));
    assert!(matches!(
        Patterns::new(Array2::<f32>::zeros((0, 3))),
        Err(Error::Empty {
            argument: "patterns",
            ..
        })
    ));
    assert!(matches!(
        Patterns::from_vec(2, 3, vec![0.0; 5]),
        Err(Error::DimensionMismatch { .. })
    ));
    let build = |separation| {
        Retriever::builder(good.clone())
            .separation(separation)
            .device(device.clone())
            .build()
    };
    for (separation, argument) in [
        (Separation::Softmax { beta: 0.0 }, "beta"),
        (Separation::Exponential { beta: -2.0 }, "beta"),
        (
            Separation::Softmax {
                beta: f32::INFINITY,
            },
            "beta",
        ),
        (Separation::Polynomial { n: 0 }, "n"),
        (Separation::RectifiedPolynomial { n: 0 }, "n"),
        (Separation::TopK { k: 0 }, "k"),
        (Separation::TopK { k: 3 }, "k"),
    ] {
        match build(separation) {
            Err(Error::InvalidParameter { argument: a, .. }) => assert_eq!(a, argument),
            other => panic!("{device:?} {separation:?}: expected an error, got {other:?}"),
        }
    }
    let r = build(Separation::Softmax { beta: 1.0 }).unwrap();
    let cases = [
        (Array2::<f32>::zeros((0, 2)), "queries"),
        (
            array![[1.0f32, 2.0, 3.0]],
            "queries (columns must equal the pattern dimension N)",
        ),
        (array![[1.0f32, f32::INFINITY]], "queries"),
        (array![[f32::NAN, 0.0]], "queries"),
    ];
    for (queries, argument) in cases {
        let err = r.retrieve(queries.view()).unwrap_err();
        let named = match &err {
            Error::Empty { argument, .. }
            | Error::NonFinite { argument, .. }
            | Error::DimensionMismatch { argument, .. } => *argument,
            _ => "",
        };
        assert_eq!(named, argument, "{device:?}: {err}");
        assert!(
            r.energy(queries.view()).is_err(),
            "{device:?}: energy of bad states"
        );
    }
}
test_devices!(all: bad_input_is_an_error_naming_the_argument_on_both_devices);

fn a_pattern_anywhere_in_a_large_set_is_retrieved(device: Device) {
    // Regression: llvmpipe stops a shader invocation after 65,535 loop iterations, which
    // once made patterns past index ~64,000 invisible. Plant distinct strong patterns at
    // block and binding edges and retrieve each one exactly, streamed and not.
    let p = 100_003;
    let mut raw = unit_patterns(p, 8, 60);
    raw.mapv_inplace(|v| v * 0.1);
    let targets = [0, 16_383, 16_384, 65_535, 80_000, p - 1];
    let strong = gaussian(targets.len(), 8, 1.0, 61);
    for (k, &row) in targets.iter().enumerate() {
        raw.row_mut(row).assign(&strong.row(k));
    }
    let patterns = Patterns::new(raw).unwrap();
    for separation in [Separation::Max, Separation::Softmax { beta: 50.0 }] {
        let r = Retriever::builder(patterns.clone())
            .separation(separation)
            .dynamics(Dynamics::OneStep)
            .device(device.clone())
            .build()
            .unwrap()
            .retrieve(strong.view())
            .unwrap();
        assert_eq!(r.nearest, targets.to_vec(), "{device:?} {separation:?}");
    }
}
test_devices!(all: a_pattern_anywhere_in_a_large_set_is_retrieved);

/// Asserts an `InvalidParameter` error naming `argument`.
fn assert_invalid(err: &Error, argument: &str) {
    match err {
        Error::InvalidParameter { argument: a, .. } => assert_eq!(*a, argument, "{err}"),
        other => panic!("expected InvalidParameter({argument}), got {other}"),
    }
}

fn similarities_or_beta_beyond_f32_are_rejected_on_both_devices(device: Device) {
    let patterns = Patterns::new(array![[1.0e20f32, 0.0], [0.0, 1.0]]).unwrap();
    let queries = array![[1.0e20f32, 0.0]];
    let build = |separation| {
        Retriever::builder(patterns.clone())
            .separation(separation)
            .device(device.clone())
            .build()
            .unwrap()
    };
    // ξ·x = 1e40 is not an f32.
    let err = build(Separation::Max).retrieve(queries.view()).unwrap_err();
    assert_invalid(&err, "queries");
    // β·s = 1e30 · 1e20 is not either, even though s is.
    let small = array![[1.0f32, 0.0]];
    let err = build(Separation::Softmax { beta: 1e30 })
        .retrieve(small.view())
        .unwrap_err();
    assert_invalid(&err, "beta");
    let err = build(Separation::Exponential { beta: 1e30 })
        .energy(small.view())
        .unwrap_err();
    assert_invalid(&err, "beta");
}
test_devices!(all: similarities_or_beta_beyond_f32_are_rejected_on_both_devices);
