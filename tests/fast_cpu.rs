//! The fast CPU backend (`Device::Cpu`, `dam::cpu::CpuRetriever`) against the f64
//! reference (`Device::Reference`) for every similarity × separation × dynamics ×
//! projection and every call, on seeded data with edges: sizes that are not multiples of
//! any block, lane or thread count, pattern ranges split over 1–7 threads and queries
//! split instead when there are fewer blocks than threads, ties, large β·s, top-k with
//! k = P, B = 1, P = 1, converged and unconverged queries in one batch, f16 storage, bad
//! input.

mod common;

use std::sync::Arc;

use common::*;
use dam::cpu::{fast::block_rows, CpuRetriever, ReferenceRetriever};
use dam::{
    Backend, Config, Device, Dynamics, Error, Patterns, Projection, Retriever, Separation,
    Similarity, Storage,
};
use ndarray::{s, Array2};

fn backends(
    patterns: &Patterns,
    config: Config,
    threads: usize,
) -> (CpuRetriever, ReferenceRetriever) {
    let shared = Arc::new(patterns.clone());
    (
        CpuRetriever::new(shared.clone(), config, Storage::F32)
            .unwrap()
            .with_threads(threads),
        ReferenceRetriever::new(shared, config, Storage::F32).unwrap(),
    )
}

/// Retrieval, step and energy of the fast backend against the reference: both succeed
/// and agree, or both report the same overflow. Returns (state diff, energy diff).
fn compare(
    label: &str,
    fast: &CpuRetriever,
    reference: &ReferenceRetriever,
    q: &Array2<f32>,
) -> (f64, f64) {
    let worst = match (fast.retrieve(q.view()), reference.retrieve(q.view())) {
        (Ok(f), Ok(r)) => {
            let d = assert_matches(label, &f, &r);
            assert_eq!(
                f.confidence.is_some(),
                r.confidence.is_some(),
                "{label}: confidence"
            );
            if let (Some(fc), Some(rc)) = (&f.confidence, &r.confidence) {
                STATE_TOL
                    .compare(fc.iter().copied(), rc.iter().copied())
                    .unwrap_or_else(|m| panic!("{label}: confidence {m:?}"));
            }
            d
        }
        (
            Err(Error::Overflow {
                query: fq,
                what: fw,
                ..
            }),
            Err(Error::Overflow {
                query: rq,
                what: rw,
                ..
            }),
        ) => {
            assert_eq!((fq, fw), (rq, rw), "{label}: both overflow, differently");
            (0.0, 0.0)
        }
        (f, r) => panic!("{label}: outcomes differ: fast {f:?} vs reference {r:?}"),
    };
    match (fast.step(q.view()), reference.step(q.view())) {
        (Ok(f), Ok(r)) => {
            let scale = r.iter().fold(1.0f64, |m, v| m.max(v.abs() as f64));
            STATE_TOL
                .scaled(scale)
                .compare(f.iter().copied(), r.iter().copied())
                .unwrap_or_else(|m| panic!("{label}: step {m:?}"));
        }
        (Err(Error::Overflow { query: fq, .. }), Err(Error::Overflow { query: rq, .. })) => {
            assert_eq!(fq, rq, "{label}: step overflows on different queries")
        }
        (f, r) => panic!("{label}: step outcomes differ: fast {f:?} vs reference {r:?}"),
    }
    match (fast.energy(q.view()), reference.energy(q.view())) {
        (Ok(f), Ok(r)) => {
            let scale = r
                .iter()
                .filter(|e| e.is_finite())
                .fold(1.0f64, |m, v| m.max(v.abs()));
            ENERGY_TOL
                .scaled(scale)
                .compare(f.iter().copied(), r.iter().copied())
                .unwrap_or_else(|m| panic!("{label}: energy {m:?}"));
        }
        (Err(Error::Overflow { query: fq, .. }), Err(Error::Overflow { query: rq, .. })) => {
            assert_eq!(fq, rq, "{label}: energy overflows on different queries")
        }
        (f, r) => panic!("{label}: energy outcomes differ: fast {f:?} vs reference {r:?}"),
    }
    worst
}

#[test]
fn every_rule_matches_the_reference() {
    let (p, n, b) = (100, 17, 5);
    let raw = unit_patterns(p, n, 11);
    let queries = noisy_queries(&raw, b, 0.4, 12);
    let patterns = Patterns::new(raw).unwrap();
    let mut runs = 0;
    let mut worst = (0.0f64, 0.0f64);
    for similarity in Similarity::ALL {
        for separation in separations(p) {
            for dynamics in DYNAMICS {
                for projection in PROJECTIONS {
                    let config = Config {
                        similarity,
                        separation,
                        dynamics,
                        projection,
                        energy_trace: true,
                    };
                    let (fast, reference) = backends(&patterns, config, 0);
                    let label =
                        format!("{similarity:?}/{separation:?}/{dynamics:?}/{projection:?}");
                    let d = compare(&label, &fast, &reference, &queries);
                    worst = (worst.0.max(d.0), worst.1.max(d.1));
                    runs += 1;
                }
            }
        }
    }
    assert_eq!(runs, 3 * 6 * 2 * 3);
    println!(
        "{runs} rules: max state diff {:.3e}, energy diff {:.3e}",
        worst.0, worst.1
    );
}

#[test]
fn blocks_and_threads_with_ragged_ends_match_the_reference() {
    // N = 700: 93 patterns per block; P = 1,001 is 10 full blocks and a ragged one, split
    // over 1, 2, 3 and 7 threads (ranges of whole blocks); B = 13.
    let n = 700;
    let block = block_rows(n);
    let p = 10 * block + 71;
    let mut raw = unit_patterns(p, n, 1);
    // A tie across ranges: the last block repeats pattern 7 (query 7 is near it).
    let dup = raw.row(7).to_owned();
    raw.row_mut(p - 5).assign(&dup);
    let queries = noisy_queries(&raw, 13, 0.3, 2);
    let patterns = Patterns::new(raw).unwrap();
    for similarity in Similarity::ALL {
        for separation in [
            Separation::Softmax { beta: 8.0 },
            Separation::Exponential { beta: 3.0 },
            Separation::Polynomial { n: 3 },
            Separation::TopK { k: 5 },
        ] {
            let config = Config {
                similarity,
                separation,
                dynamics: DYNAMICS[1],
                projection: Projection::Sphere,
                energy_trace: true,
            };
            for threads in [1, 2, 3, 7] {
                let (fast, reference) = backends(&patterns, config, threads);
                let label = format!("{similarity:?}/{separation:?} threads={threads}");
                compare(&label, &fast, &reference, &queries);
                let r = fast.evaluate(queries.view(), 0).unwrap();
                assert_eq!(r.nearest[7], 7, "{label}: a tie goes to the lower row");
            }
        }
    }
}

#[test]
fn queries_split_across_threads_when_patterns_are_few() {
    // One block of patterns and 3 threads: the queries are split (ranges of 4, 4 and 3).
    let raw = unit_patterns(40, 9, 21);
    let queries = noisy_queries(&raw, 11, 0.5, 22);
    let patterns = Patterns::new(raw).unwrap();
    for separation in separations(40) {
        let config = Config {
            separation,
            dynamics: DYNAMICS[1],
            projection: Projection::Sphere,
            energy_trace: true,
            ..Config::default()
        };
        let (fast, reference) = backends(&patterns, config, 3);
        compare(&format!("{separation:?}"), &fast, &reference, &queries);
    }
}

#[test]
fn tiny_sizes_match_the_reference() {
    for (p, n, b) in [(1, 1, 1), (2, 1, 3), (1, 3, 2), (5, 3, 1), (3, 8, 9)] {
        let raw = gaussian(p, n, 1.0, 20 + p as u64);
        let queries = noisy_queries(&raw, b, 0.3, 21);
        let patterns = Patterns::new(raw).unwrap();
        for similarity in Similarity::ALL {
            for separation in separations(p) {
                for projection in PROJECTIONS {
                    let config = Config {
                        similarity,
                        separation,
                        dynamics: DYNAMICS[1],
                        projection,
                        energy_trace: true,
                    };
                    let (fast, reference) = backends(&patterns, config, 0);
                    let label =
                        format!("P={p} N={n} B={b} {similarity:?}/{separation:?}/{projection:?}");
                    compare(&label, &fast, &reference, &queries);
                }
            }
        }
    }
}

#[test]
fn large_beta_ties_and_top_k_of_every_pattern() {
    // β·s ≈ 5,000: e^{βs} overflows f32 and f64 without the running max. Pattern 250
    // duplicates pattern 7 (a tie across blocks and threads: nearest is 7).
    let mut raw = unit_patterns(300, 16, 3);
    raw.mapv_inplace(|v| v * 10.0);
    let dup = raw.row(7).to_owned();
    raw.row_mut(250).assign(&dup);
    let queries = noisy_queries(&raw, 9, 0.05, 4);
    let patterns = Patterns::new(raw).unwrap();
    for separation in [
        Separation::Softmax { beta: 50.0 },
        Separation::Exponential { beta: 50.0 },
        Separation::TopK { k: 300 },
        Separation::Max,
    ] {
        for projection in [Projection::None, Projection::Sphere] {
            let config = Config {
                separation,
                projection,
                dynamics: DYNAMICS[1],
                energy_trace: true,
                ..Config::default()
            };
            for threads in [1, 4] {
                let (fast, reference) = backends(&patterns, config, threads);
                let label = format!("{separation:?}/{projection:?} threads={threads}");
                compare(&label, &fast, &reference, &queries);
                if projection == Projection::Sphere
                    && !matches!(separation, Separation::TopK { .. })
                {
                    let r = fast.retrieve(queries.view()).unwrap();
                    assert_eq!(r.nearest[7], 7, "{label}: ties go to the lowest index");
                }
            }
        }
    }
}

#[test]
fn converged_and_unconverged_queries_in_one_batch() {
    // Stored patterns converge at once; far queries keep moving (small β), so a batch
    // holds both, and converged queries leave it.
    let raw = unit_patterns(500, 24, 31);
    let mut queries = noisy_queries(&raw, 8, 0.01, 32);
    let far = gaussian(4, 24, 0.2, 33);
    queries.slice_mut(s![4.., ..]).assign(&far);
    let patterns = Patterns::new(raw).unwrap();
    let config = Config {
        separation: Separation::Softmax { beta: 3.0 },
        dynamics: Dynamics::Iterate {
            max_steps: 30,
            tol: 1e-6,
        },
        projection: Projection::None,
        energy_trace: true,
        ..Config::default()
    };
    let (fast, reference) = backends(&patterns, config, 0);
    compare("mixed batch", &fast, &reference, &queries);
    let r = reference.retrieve(queries.view()).unwrap();
    let (min, max) = (r.steps.iter().min().unwrap(), r.steps.iter().max().unwrap());
    assert!(
        min < max,
        "the batch mixes short and long runs: steps {:?}",
        r.steps
    );
    assert!(r.converged.iter().any(|&c| c), "some converge");
}

#[test]
fn batches_beyond_one_query_chunk_match_the_reference() {
    // 2,500 queries: passes of 1,024, 1,024 and 452.
    let raw = unit_patterns(700, 24, 9);
    let queries = noisy_queries(&raw, 2_500, 0.3, 10);
    let patterns = Patterns::new(raw).unwrap();
    let config = Config {
        separation: Separation::Softmax { beta: 6.0 },
        dynamics: Dynamics::OneStep,
        ..Config::default()
    };
    let (fast, reference) = backends(&patterns, config, 2);
    compare("2,500 queries", &fast, &reference, &queries);
}

#[test]
fn f16_storage_matches_the_reference_on_the_same_halves() {
    let raw = unit_patterns(333, 40, 41);
    let queries = noisy_queries(&raw, 7, 0.3, 42);
    let patterns = Patterns::new(raw).unwrap();
    for similarity in Similarity::ALL {
        let config = Config {
            similarity,
            separation: Separation::Softmax { beta: 8.0 },
            dynamics: DYNAMICS[1],
            energy_trace: true,
            ..Config::default()
        };
        let build = |device: Device| {
            Retriever::builder(patterns.clone())
                .config(config)
                .storage(Storage::F16)
                .device(device)
                .build()
                .unwrap()
        };
        let (fast, reference) = (build(Device::Cpu), build(Device::Reference));
        assert_eq!(
            fast.patterns(),
            reference.patterns(),
            "the same rounded patterns"
        );
        let label = format!("f16 {similarity:?}");
        assert_matches(
            &label,
            &fast.retrieve(queries.view()).unwrap(),
            &reference.retrieve(queries.view()).unwrap(),
        );
    }
}

#[test]
fn search_similarities_top_and_values_match_the_reference() {
    let (p, n) = (1_303, 50);
    let raw = unit_patterns(p, n, 51);
    let queries = noisy_queries(&raw, 6, 0.4, 52);
    let values = gaussian(p, 3, 1.0, 53);
    let patterns = Patterns::new(raw).unwrap();
    for similarity in Similarity::ALL {
        for separation in separations(p) {
            let build = |device: Device| {
                let builder = Retriever::builder(patterns.clone())
                    .similarity(similarity)
                    .separation(separation)
                    .values(values.clone())
                    .projection(Projection::Sphere)
                    .dynamics(DYNAMICS[1])
                    .device(device);
                match separation {
                    Separation::Softmax { .. } => builder.report_top(4),
                    _ => builder,
                }
                .build()
                .unwrap()
            };
            let (fast, reference) = (build(Device::Cpu), build(Device::Reference));
            let label = format!("{similarity:?}/{separation:?}");
            for k in [1, 5, p + 3] {
                let (f, r) = (
                    fast.search(queries.view(), k).unwrap(),
                    reference.search(queries.view(), k).unwrap(),
                );
                assert_eq!(f.ids.dim(), r.ids.dim(), "{label}: search shape, k={k}");
                if k < p {
                    assert_eq!(f.ids, r.ids, "{label}: search ids, k={k}");
                } else {
                    // Every pattern, in similarity order: patterns whose similarities agree
                    // to f32 rounding may swap places, so compare the sets per query.
                    for (a, b) in f.ids.rows().into_iter().zip(r.ids.rows()) {
                        let (mut a, mut b) = (a.to_vec(), b.to_vec());
                        a.sort_unstable();
                        b.sort_unstable();
                        assert_eq!(a, b, "{label}: search ids, k={k}");
                    }
                }
                STATE_TOL
                    .compare(f.scores.iter().copied(), r.scores.iter().copied())
                    .unwrap_or_else(|m| panic!("{label}: search scores {m:?}"));
            }
            let (f, r) = (
                fast.retrieve_values(queries.view()).unwrap(),
                reference.retrieve_values(queries.view()).unwrap(),
            );
            let scale = r.iter().fold(1.0f64, |m, v| m.max(v.abs() as f64));
            STATE_TOL
                .scaled(scale)
                .compare(f.iter().copied(), r.iter().copied())
                .unwrap_or_else(|m| panic!("{label}: values {m:?}"));
            let (f, r) = (
                fast.retrieve(queries.view()).unwrap(),
                reference.retrieve(queries.view()).unwrap(),
            );
            assert_matches(&label, &f, &r);
            assert_eq!(f.top.is_some(), r.top.is_some(), "{label}: top presence");
            let (ft, rt) = (f.top.unwrap_or_default(), r.top.unwrap_or_default());
            assert_eq!(ft.len(), rt.len(), "{label}: top rows");
            for (a, b) in ft.iter().zip(&rt) {
                assert_eq!(
                    a.iter().map(|e| e.id).collect::<Vec<_>>(),
                    b.iter().map(|e| e.id).collect::<Vec<_>>(),
                    "{label}: top ids"
                );
                STATE_TOL
                    .compare(a.iter().map(|e| e.weight), b.iter().map(|e| e.weight))
                    .unwrap_or_else(|m| panic!("{label}: top weights {m:?}"));
            }
            let (fp, rp) = (
                f.participation.unwrap_or_default(),
                r.participation.unwrap_or_default(),
            );
            STATE_TOL
                .compare(fp.iter().copied(), rp.iter().copied())
                .unwrap_or_else(|m| panic!("{label}: participation {m:?}"));
        }
        // The similarities themselves (Backend::similarities).
        let config = Config {
            similarity,
            ..Config::default()
        };
        let (fast, reference) = backends(&patterns, config, 3);
        let (f, r) = (
            fast.similarities(queries.view()).unwrap(),
            reference.similarities(queries.view()).unwrap(),
        );
        assert_eq!(f.dim(), r.dim());
        let scale = r.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        STATE_TOL
            .scaled(scale)
            .compare(f.iter().copied(), r.iter().copied())
            .unwrap_or_else(|m| panic!("{similarity:?}: similarities {m:?}"));
    }
}

#[test]
fn euclidean_distances_stay_exact_for_near_and_equal_vectors() {
    // Queries equal to or within 1e-4 of a stored pattern of norm ~30: the norm expansion
    // alone would cancel to noise of ~1e-3 in the distance.
    let mut raw = gaussian(200, 64, 4.0, 61);
    raw.row_mut(3).fill(1.5);
    let mut queries = raw.slice(s![..6, ..]).to_owned();
    queries.row_mut(1).mapv_inplace(|v| v + 1e-4);
    let patterns = Patterns::new(raw).unwrap();
    let config = Config {
        similarity: Similarity::NegEuclidean,
        separation: Separation::Softmax { beta: 200.0 },
        dynamics: DYNAMICS[1],
        energy_trace: true,
        ..Config::default()
    };
    let (fast, reference) = backends(&patterns, config, 0);
    compare("near vectors", &fast, &reference, &queries);
    let s = fast.similarities(queries.view()).unwrap();
    assert_eq!(s[[0, 0]], 0.0, "a stored pattern is at distance 0");
    assert_eq!(s[[2, 2]], 0.0);
    assert_eq!(s[[3, 3]], 0.0);
    assert!(
        (s[[1, 1]] + 8e-4).abs() < 1e-5,
        "distance {} ≈ 1e-4·√64",
        -s[[1, 1]]
    );
}

#[test]
fn clamped_retrieval_matches_the_reference() {
    let raw = unit_patterns(400, 20, 71);
    let queries = noisy_queries(&raw, 5, 0.5, 72);
    let patterns = Patterns::new(raw).unwrap();
    let clamp = dam::binary::Clamp::fixing(20, &[0, 3, 4, 19]).unwrap();
    for separation in separations(400) {
        let build = |device: Device| {
            Retriever::builder(patterns.clone())
                .separation(separation)
                .projection(Projection::Sphere)
                .dynamics(Dynamics::Iterate {
                    max_steps: 6,
                    tol: 1e-4,
                })
                .energy_trace(true)
                .device(device)
                .build()
                .unwrap()
        };
        let label = format!("clamped {separation:?}");
        let f = build(Device::Cpu)
            .retrieve_clamped(queries.view(), &clamp)
            .unwrap();
        let r = build(Device::Reference)
            .retrieve_clamped(queries.view(), &clamp)
            .unwrap();
        assert_matches(&label, &f, &r);
        for i in [0usize, 3, 4, 19] {
            for q in 0..5 {
                assert_eq!(
                    f.states[[q, i]],
                    queries[[q, i]],
                    "{label}: clamped coordinate moved"
                );
            }
        }
    }
}

#[test]
fn bad_input_gets_the_same_errors_as_the_reference() {
    let patterns = Patterns::new(unit_patterns(50, 8, 7)).unwrap();
    let (fast, reference) = backends(&patterns, Config::default(), 0);
    let mut q = noisy_queries(&unit_patterns(50, 8, 7), 3, 0.1, 8);
    q[[1, 2]] = f32::NAN;
    let wide = Array2::<f32>::zeros((2, 9));
    let empty = Array2::<f32>::zeros((0, 8));
    let huge = Array2::<f32>::from_elem((1, 8), 3e38);
    for (label, input) in [
        ("NaN", &q),
        ("width", &wide),
        ("empty", &empty),
        ("range", &huge),
    ] {
        type Call<'a> = &'a dyn Fn(&dyn Backend) -> Result<(), Error>;
        let calls: [(&str, Call); 5] = [
            ("retrieve", &|b| b.retrieve(input.view()).map(|_| ())),
            ("step", &|b| b.step(input.view()).map(|_| ())),
            ("energy", &|b| b.energy(input.view()).map(|_| ())),
            ("search", &|b| b.search(input.view(), 3).map(|_| ())),
            ("similarities", &|b| {
                b.similarities(input.view()).map(|_| ())
            }),
        ];
        for (call, run) in calls {
            let f = run(&fast).expect_err("fast path accepted bad input");
            let r = run(&reference).expect_err("reference accepted bad input");
            assert_eq!(
                std::mem::discriminant(&f),
                std::mem::discriminant(&r),
                "{label}/{call}: fast {f} vs reference {r}"
            );
        }
    }
    for bad in [
        Config {
            separation: Separation::Softmax { beta: 0.0 },
            ..Config::default()
        },
        Config {
            separation: Separation::Exponential { beta: -1.0 },
            ..Config::default()
        },
        Config {
            separation: Separation::TopK { k: 51 },
            ..Config::default()
        },
    ] {
        let built = Retriever::builder(patterns.clone())
            .config(bad)
            .device(Device::Cpu)
            .build();
        assert!(
            matches!(built, Err(Error::InvalidParameter { .. })),
            "{bad:?}"
        );
    }
    assert!(fast.search(q.slice(s![..1, ..]).view(), 0).is_err());
}

#[test]
fn the_devices_say_which_they_are() {
    let patterns = Patterns::new(unit_patterns(5, 4, 1)).unwrap();
    let (fast, reference) = backends(&patterns, Config::default(), 3);
    assert!(
        fast.describe().starts_with("cpu (3 threads, "),
        "{}",
        fast.describe()
    );
    assert_eq!(reference.describe(), "cpu reference (f64)");
}

#[test]
fn top_patterns_and_values_merge_across_ranges() {
    // 11 blocks of 93 patterns over 3 threads; 5 queries (the patterns are split).
    let n = 700;
    let p = 10 * block_rows(n) + 71;
    let raw = unit_patterns(p, n, 81);
    // Queries near patterns of the first, middle and last ranges: the range holding the
    // largest weight is not always the first one merged.
    let near = raw.select(ndarray::Axis(0), &[p - 1, 0, 500, p - 50, 900]);
    let queries = noisy_queries(&near, 5, 0.3, 82);
    let values = gaussian(p, 4, 1.0, 83);
    let patterns = Patterns::new(raw).unwrap();
    let config = Config {
        separation: Separation::Softmax { beta: 9.0 },
        ..Config::default()
    };
    let (fast, reference) = backends(&patterns, config, 3);
    let (ft, fp) = fast.top(queries.view(), 9.0, 6).unwrap();
    let (rt, rp) = reference.top(queries.view(), 9.0, 6).unwrap();
    assert_eq!(ft.len(), rt.len());
    for (a, b) in ft.iter().zip(&rt) {
        assert_eq!(
            a.iter().map(|e| e.id).collect::<Vec<_>>(),
            b.iter().map(|e| e.id).collect::<Vec<_>>()
        );
        STATE_TOL
            .compare(a.iter().map(|e| e.weight), b.iter().map(|e| e.weight))
            .unwrap_or_else(|m| panic!("top weights {m:?}"));
    }
    STATE_TOL
        .compare(fp.iter().copied(), rp.iter().copied())
        .unwrap_or_else(|m| panic!("participation {m:?}"));
    assert!(fp.iter().all(|&v| v > 1.0), "the weights spread: {fp:?}");
    let (fv, rv) = (
        fast.weighted_values(queries.view(), values.view()).unwrap(),
        reference
            .weighted_values(queries.view(), values.view())
            .unwrap(),
    );
    STATE_TOL
        .scaled(rv.iter().fold(1.0f64, |m, v| m.max(v.abs() as f64)))
        .compare(fv.iter().copied(), rv.iter().copied())
        .unwrap_or_else(|m| panic!("values {m:?}"));
}

#[test]
fn a_stored_pattern_is_a_fixed_point_of_max_at_tolerance_zero() {
    // One step of Max from a stored pattern returns it exactly: converged with tol = 0.
    let raw = unit_patterns(50, 12, 91);
    let queries = raw.slice(s![..4, ..]).to_owned();
    let patterns = Patterns::new(raw).unwrap();
    for dynamics in [
        Dynamics::OneStep,
        Dynamics::Iterate {
            max_steps: 3,
            tol: 0.0,
        },
    ] {
        let config = Config {
            separation: Separation::Max,
            dynamics,
            ..Config::default()
        };
        let (fast, reference) = backends(&patterns, config, 0);
        let (f, r) = (
            fast.retrieve(queries.view()).unwrap(),
            reference.retrieve(queries.view()).unwrap(),
        );
        assert_eq!(f.converged, vec![true; 4], "{dynamics:?}");
        assert_eq!(f.steps, vec![1; 4], "{dynamics:?}");
        assert_matches(&format!("{dynamics:?}"), &f, &r);
    }
}
