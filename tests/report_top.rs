//! What a retrieval reports when asked: the top-k patterns by softmax weight at the final
//! state and the participation ratio, on both devices, against f64 weights computed here.

mod common;

use dam::{Device, Dynamics, Error, Patterns, Retriever, Separation, Tolerance};
use ndarray::Array2;

/// Weights from f32 device similarities (f64 on the CPU).
const WEIGHT_TOL: Tolerance = Tolerance::new(1e-5, 1e-3);

fn softmax_at(rows: &Array2<f32>, beta: f64, x: &[f32]) -> Vec<f64> {
    let s: Vec<f64> = rows
        .rows()
        .into_iter()
        .map(|r| {
            beta * r
                .iter()
                .zip(x)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>()
        })
        .collect();
    let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = s.iter().map(|v| (v - max).exp()).collect();
    let total: f64 = e.iter().sum();
    e.iter().map(|v| v / total).collect()
}

fn top_patterns_and_participation_match_weights_written_here(device: Device) {
    let rows = common::unit_patterns(60, 20, 1);
    let queries = common::noisy_queries(&rows, 6, 0.6, 2);
    for beta in [0.5f32, 4.0, 40.0] {
        let memory = Retriever::builder(Patterns::new(rows.clone()).unwrap())
            .separation(Separation::Softmax { beta })
            .dynamics(Dynamics::OneStep)
            .report_top(5)
            .device(device.clone())
            .build()
            .unwrap();
        let result = memory.retrieve(queries.view()).unwrap();
        let top = result.top.as_ref().expect("asked for");
        let participation = result.participation.as_ref().expect("asked for");
        assert_eq!((top.len(), participation.len()), (6, 6));
        for (q, x) in result.states.rows().into_iter().enumerate() {
            let p = softmax_at(&rows, beta as f64, x.as_slice().unwrap());
            let mut order: Vec<usize> = (0..60).collect();
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
            let ids: Vec<u64> = top[q].iter().map(|e| e.id).collect();
            let want: Vec<u64> = order[..5].iter().map(|&i| i as u64).collect();
            assert_eq!(ids, want, "{device:?} β={beta} query {q}");
            WEIGHT_TOL
                .compare(
                    top[q].iter().map(|e| e.weight),
                    order[..5].iter().map(|&i| p[i]),
                )
                .unwrap_or_else(|m| panic!("{device:?} β={beta}: weights {m:?}"));
            let pr = 1.0 / p.iter().map(|v| v * v).sum::<f64>();
            WEIGHT_TOL
                .compare([participation[q]], [pr])
                .unwrap_or_else(|m| panic!("{device:?} β={beta}: participation {m:?}"));
            assert!((1.0 - 1e-9..=60.0 + 1e-9).contains(&participation[q]));
            // The top weight is the confidence.
            let confidence = result.confidence.as_ref().unwrap()[q];
            assert!(
                (top[q][0].weight - confidence).abs() <= 1e-3,
                "{confidence}"
            );
        }
        if beta == 40.0 {
            // Sharp: each final state is one stored pattern.
            assert!(participation.iter().all(|&r| r < 1.5), "{participation:?}");
        }
        if beta == 0.5 {
            // Flat: the state mixes most of the patterns.
            assert!(participation.iter().all(|&r| r > 30.0), "{participation:?}");
        }
    }
}
test_devices!(all: top_patterns_and_participation_match_weights_written_here);

#[test]
fn off_by_default_and_only_for_softmax() {
    let rows = common::unit_patterns(8, 4, 3);
    let plain = Retriever::builder(Patterns::new(rows.clone()).unwrap())
        .build()
        .unwrap();
    let r = plain.retrieve(rows.view()).unwrap();
    assert_eq!((r.top, r.participation), (None, None));
    for (sep, k) in [(Separation::Softmax { beta: 1.0 }, 0), (Separation::Max, 2)] {
        assert!(matches!(
            Retriever::builder(Patterns::new(rows.clone()).unwrap())
                .separation(sep)
                .report_top(k)
                .build(),
            Err(Error::InvalidParameter {
                argument: "report_top",
                ..
            })
        ));
    }
    // k beyond P reports all P; the setting is saved with the memory.
    let memory = Retriever::builder(Patterns::new(rows.clone()).unwrap())
        .report_top(50)
        .build()
        .unwrap();
    assert_eq!(
        memory.retrieve(rows.view()).unwrap().top.unwrap()[0].len(),
        8
    );
    let mut bytes = Vec::new();
    memory.save(&mut bytes).unwrap();
    assert_eq!(
        Retriever::load(bytes.as_slice(), &Device::Cpu)
            .unwrap()
            .report_top(),
        Some(50)
    );
}
