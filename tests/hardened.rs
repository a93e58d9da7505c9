//! The API under hostile input and concurrency: random shapes, NaN/Inf, empty inputs and
//! extreme parameters never panic and never return NaN without an error; a `Retriever` is
//! `Send + Sync` and concurrent calls equal serial ones.

mod common;

use dam::{Device, Dynamics, Error, Patterns, Projection, Retriever, Separation, Similarity};
use ndarray::Array2;
use proptest::prelude::*;

fn special() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
        Just(1e30f32),
        Just(f32::MAX),
        Just(-1e-30f32),
        Just(0.0f32),
    ]
}

/// A matrix of ordinary values (empty in a tenth of the cases), in a sixth of the cases
/// with one special value planted; also returns the planted value.
fn matrix(max_rows: usize, cols: usize) -> impl Strategy<Value = (Array2<f32>, Option<f32>)> {
    prop_oneof![1 => Just(0usize), 9 => 1..=max_rows].prop_flat_map(move |rows| {
        (
            prop::collection::vec(-3.0f32..3.0, rows * cols),
            prop::option::weighted(0.17, (any::<prop::sample::Index>(), special())),
        )
            .prop_map(move |(mut v, poison)| {
                let planted = match poison {
                    Some((at, value)) if !v.is_empty() => {
                        let i = at.index(v.len());
                        v[i] = value;
                        Some(value)
                    }
                    _ => None,
                };
                (
                    Array2::from_shape_vec((rows, cols), v).expect("shape"),
                    planted,
                )
            })
    })
}

/// A non-empty matrix whose planted value (if any) is harmless.
fn ordinary(m: &(Array2<f32>, Option<f32>)) -> bool {
    m.0.nrows() > 0 && m.0.ncols() > 0 && m.1.is_none_or(|v| v.abs() < 1.0)
}

/// A separation whose parameters are in their domain and of moderate size.
fn ordinary_separation(sep: Separation, p: usize) -> bool {
    match sep {
        Separation::Polynomial { n } | Separation::RectifiedPolynomial { n } => n >= 1,
        Separation::Exponential { beta } | Separation::Softmax { beta } => {
            beta.is_finite() && (0.01..=50.0).contains(&beta)
        }
        Separation::Max => true,
        Separation::TopK { k } => k >= 1 && k <= p,
    }
}

/// Errors that name the argument at fault (never a backend failure on bad input).
fn names_the_fault(e: &Error) -> bool {
    matches!(
        e,
        Error::Empty { .. }
            | Error::DimensionMismatch { .. }
            | Error::NonFinite { .. }
            | Error::InvalidParameter { .. }
            | Error::Overflow { .. }
            | Error::TooLarge { .. }
    )
}

fn beta() -> impl Strategy<Value = f32> {
    prop_oneof![
        1 => Just(0.0f32),
        1 => Just(-1.0),
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(1e-30),
        1 => Just(1e30),
        12 => 0.01f32..50.0
    ]
}

fn separation() -> impl Strategy<Value = Separation> {
    prop_oneof![
        (0u32..6).prop_map(|n| Separation::Polynomial { n }),
        (0u32..6).prop_map(|n| Separation::RectifiedPolynomial { n }),
        beta().prop_map(|beta| Separation::Exponential { beta }),
        beta().prop_map(|beta| Separation::Softmax { beta }),
        Just(Separation::Max),
        prop_oneof![1 => Just(0usize), 6 => 1usize..4, 1 => 4usize..12]
            .prop_map(|k| Separation::TopK { k }),
    ]
}

fn similarity() -> impl Strategy<Value = Similarity> {
    prop_oneof![
        Just(Similarity::Dot),
        Just(Similarity::NegEuclidean),
        Just(Similarity::NegManhattan)
    ]
}

fn projection() -> impl Strategy<Value = Projection> {
    prop_oneof![
        Just(Projection::None),
        Just(Projection::Sphere),
        Just(Projection::Sign)
    ]
}

/// Either an error naming the fault, or a result with no NaN anywhere; and for ordinary
/// input (non-empty, finite, moderate parameters, matching widths) a result, except that
/// separations with unbounded updates may report `Overflow` without a projection. Returns
/// whether the case reached the dynamics (a result, or an overflow found while running).
fn exercise(
    device: Device,
    patterns: (Array2<f32>, Option<f32>),
    queries: (Array2<f32>, Option<f32>),
    sep: Separation,
    sim: Similarity,
    proj: Projection,
    qdim_offset: usize,
) -> bool {
    let expect_ok = ordinary(&patterns)
        && ordinary(&queries)
        && qdim_offset == 0
        && ordinary_separation(sep, patterns.0.nrows());
    let may_overflow = proj == Projection::None
        && !matches!(
            sep,
            Separation::Softmax { .. } | Separation::Max | Separation::TopK { .. }
        );
    let outcome = |what: &str, e: Error| {
        assert!(names_the_fault(&e), "{what}: unexpected kind of error: {e}");
        let allowed = may_overflow && matches!(e, Error::Overflow { .. });
        assert!(
            !expect_ok || allowed,
            "{what} refused ordinary input ({sep:?}, {sim:?}, {proj:?}): {e}"
        );
    };
    let finite_patterns = patterns.1.is_none_or(f32::is_finite);
    let patterns = match Patterns::new(patterns.0) {
        Ok(p) => {
            assert!(finite_patterns, "patterns with NaN/Inf were accepted");
            p
        }
        Err(e) => {
            assert!(
                matches!(e, Error::Empty { .. } | Error::NonFinite { .. }),
                "patterns: {e}"
            );
            outcome("Patterns::new", e);
            return false;
        }
    };
    let built = Retriever::builder(patterns)
        .separation(sep)
        .similarity(sim)
        .projection(proj)
        .dynamics(Dynamics::Iterate {
            max_steps: 3,
            tol: 1e-4,
        })
        .energy_trace(true)
        .device(device)
        .build();
    let retriever = match built {
        Ok(r) => r,
        Err(e) => {
            outcome("build", e);
            return false;
        }
    };
    let queries = if qdim_offset == 0 {
        queries.0
    } else {
        Array2::zeros((queries.0.nrows(), queries.0.ncols() + qdim_offset))
    };
    let retrieved = match retriever.retrieve(queries.view()) {
        Ok(r) => {
            assert!(
                r.states.iter().all(|v| v.is_finite()),
                "non-finite state without an error"
            );
            assert!(
                r.energy.iter().all(|e| !e.is_nan()),
                "NaN energy without an error"
            );
            assert_eq!(r.steps.len(), queries.nrows());
            true
        }
        Err(e) => {
            // An overflow is the dynamics running and reporting where they left f32.
            let ran = matches!(e, Error::Overflow { .. });
            outcome("retrieve", e);
            ran
        }
    };
    match retriever.energy(queries.view()) {
        Ok(e) => assert!(e.iter().all(|v| !v.is_nan()), "NaN energy without an error"),
        Err(e) => outcome("energy", e),
    }
    retrieved
}

#[test]
fn hostile_input_never_panics_or_returns_nan() {
    let config = ProptestConfig {
        cases: 96,
        rng_seed: proptest::test_runner::RngSeed::Fixed(11),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let cases = (
        prop_oneof![1 => Just(0usize), 9 => 1usize..6]
            .prop_flat_map(|n| (matrix(8, n), matrix(4, n))),
        separation(),
        similarity(),
        projection(),
        prop_oneof![9 => Just(0usize), 1 => Just(1usize)],
        any::<bool>(),
    );
    let (ran, retrieved) = (std::cell::Cell::new(0usize), std::cell::Cell::new(0usize));
    proptest::test_runner::TestRunner::new(config)
        .run(
            &cases,
            |((patterns, queries), sep, sim, proj, qdim_offset, on_gpu)| {
                let device = if on_gpu { common::gpu() } else { Device::Cpu };
                ran.set(ran.get() + 1);
                if exercise(device, patterns, queries, sep, sim, proj, qdim_offset) {
                    retrieved.set(retrieved.get() + 1);
                }
                Ok(())
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    // The fuzzer must mostly get past the input checks, or it tests only them.
    println!(
        "{} of {} cases reached a retrieval",
        retrieved.get(),
        ran.get()
    );
    assert!(ran.get() >= 96, "ran {} cases", ran.get());
    assert!(
        retrieved.get() * 3 >= ran.get(),
        "only {} of {} cases reached a retrieval",
        retrieved.get(),
        ran.get()
    );
}

fn retriever_is_send_and_sync_and_concurrent_calls_equal_serial_ones(device: Device) {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Retriever>();

    let raw = common::unit_patterns(300, 24, 70);
    let patterns = Patterns::new(raw.clone()).unwrap();
    let retriever = Retriever::builder(patterns.clone())
        .separation(Separation::Softmax { beta: 8.0 })
        .dynamics(Dynamics::Iterate {
            max_steps: 5,
            tol: 1e-5,
        })
        .device(device.clone())
        .build()
        .unwrap();
    let queries: Vec<Array2<f32>> = (0..8)
        .map(|t| common::noisy_queries(&raw, 3, 0.4, 100 + t))
        .collect();
    let serial: Vec<_> = queries
        .iter()
        .map(|q| retriever.retrieve(q.view()).unwrap())
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = queries
            .iter()
            .zip(&serial)
            .map(|(q, expected)| {
                let retriever = &retriever;
                scope.spawn(move || {
                    (0..100)
                        .filter(|_| &retriever.retrieve(q.view()).unwrap() == expected)
                        .count()
                })
            })
            .collect();
        let equal: usize = handles
            .into_iter()
            .map(|h| h.join().expect("thread panicked"))
            .sum();
        assert_eq!(
            equal,
            8 * 100,
            "every concurrent call equals the serial one"
        );
    });
    println!("{device:?}: 8 threads × 100 calls equal the serial results");
}
test_devices!(fast: retriever_is_send_and_sync_and_concurrent_calls_equal_serial_ones);
