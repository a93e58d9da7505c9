//! Confidence (the nearest pattern's softmax weight at the final state) and abstaining,
//! on both devices, against softmax weights computed independently in f64 here.

mod common;

use dam::{Device, Error, Patterns, Retriever, Separation, Similarity, Tolerance};
use ndarray::{Array2, Axis};

/// Confidence: derived from f32 device energies on wgpu (exact f64 on the CPU).
const CONFIDENCE_TOL: Tolerance = Tolerance::new(1e-4, 1e-3);

fn softmax_weight_of_nearest(rows: &Array2<f32>, beta: f64, x: &[f32], sim: Similarity) -> f64 {
    let scores: Vec<f64> = rows
        .rows()
        .into_iter()
        .map(|r| sim.of(r.as_slice().unwrap(), x) * beta)
        .collect();
    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = scores.iter().map(|s| (s - max).exp()).sum();
    1.0 / sum // the nearest pattern has the largest score: e^{0} / Σ
}

fn confidence_is_the_top_softmax_weight_and_abstaining_says_none(device: Device) {
    let rows = common::unit_patterns(50, 32, 3);
    // Five queries near patterns, five far from all of them (small random states).
    let mut queries = common::noisy_queries(&rows, 5, 0.2, 4);
    queries
        .append(Axis(0), common::gaussian(5, 32, 0.02, 5).view())
        .unwrap();
    for sim in [Similarity::Dot, Similarity::NegEuclidean] {
        let beta = 12.0;
        let memory = Retriever::builder(Patterns::new(rows.clone()).unwrap())
            .similarity(sim)
            .separation(Separation::Softmax { beta })
            .dynamics(dam::Dynamics::OneStep)
            .abstain_below(0.5)
            .device(device.clone())
            .build()
            .unwrap();
        let result = memory.retrieve(queries.view()).unwrap();
        let confidence = result.confidence.clone().expect("softmax has confidence");
        let want: Vec<f64> = result
            .states
            .rows()
            .into_iter()
            .map(|x| softmax_weight_of_nearest(&rows, beta as f64, x.as_slice().unwrap(), sim))
            .collect();
        CONFIDENCE_TOL
            .compare(confidence.iter().copied(), want.iter().copied())
            .unwrap_or_else(|m| panic!("{device:?} {sim:?}: {m:?}"));
        assert_eq!(result.matched.len(), 10);
        let expect: Vec<Option<u64>> = confidence
            .iter()
            .zip(&result.nearest_id)
            .map(|(&c, &id)| (c >= 0.5).then_some(id))
            .collect();
        assert_eq!(result.matched, expect);
        if sim == Similarity::Dot {
            // The near queries are recalled with confidence; the far ones abstain.
            assert!(
                result.matched[..5].iter().all(Option::is_some),
                "{:?}",
                confidence
            );
            assert!(
                result.matched[5..].iter().all(Option::is_none),
                "{:?}",
                confidence
            );
        }
    }
}
test_devices!(all: confidence_is_the_top_softmax_weight_and_abstaining_says_none);

#[test]
fn abstaining_needs_softmax_and_a_threshold_in_range() {
    let rows = common::unit_patterns(5, 8, 1);
    let build = |sep: Separation, t: f64| {
        Retriever::builder(Patterns::new(rows.clone()).unwrap())
            .separation(sep)
            .abstain_below(t)
            .build()
    };
    for t in [0.0, -0.1, 1.5, f64::NAN] {
        assert!(matches!(
            build(Separation::Softmax { beta: 1.0 }, t),
            Err(Error::InvalidParameter {
                argument: "abstain_below",
                ..
            })
        ));
    }
    assert!(matches!(
        build(Separation::Polynomial { n: 3 }, 0.5),
        Err(Error::InvalidParameter {
            argument: "abstain_below",
            ..
        })
    ));
    // Without softmax there is no confidence and every query matches.
    let memory = Retriever::builder(Patterns::new(rows.clone()).unwrap())
        .separation(Separation::Polynomial { n: 3 })
        .dynamics(dam::Dynamics::OneStep)
        .projection(dam::Projection::Sphere)
        .build()
        .unwrap();
    let result = memory.retrieve(rows.view()).unwrap();
    assert_eq!(result.confidence, None);
    let all: Vec<Option<u64>> = result.nearest_id.iter().map(|&id| Some(id)).collect();
    assert_eq!(result.matched, all);
    // The threshold is kept by save and load.
    let memory = build(Separation::Softmax { beta: 2.0 }, 0.25).unwrap();
    let mut bytes = Vec::new();
    memory.save(&mut bytes).unwrap();
    let loaded = Retriever::load(bytes.as_slice(), &Device::Cpu).unwrap();
    assert_eq!(loaded.abstain_below(), Some(0.25));
}
