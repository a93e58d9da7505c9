//! Key → value memories: `retrieve_values` = separation weights over the keys × values,
//! on both devices against an f64 computation written here (softmax) and against the CPU
//! reference (every separation); edits keep keys and values aligned; saving keeps values.

mod common;

use dam::{Config, Device, Error, Patterns, Retriever, Separation, Similarity, Tolerance};
use ndarray::{Array2, Axis};

/// Host f64 sums of device f32 similarities.
const VALUE_TOL: Tolerance = Tolerance::new(1e-4, 1e-3);

fn memory(keys: &Array2<f32>, values: &Array2<f32>, config: Config, device: &Device) -> Retriever {
    Retriever::builder(Patterns::new(keys.clone()).unwrap())
        .config(config)
        .values(values.clone())
        .device(device.clone())
        .build()
        .unwrap()
}

fn close(label: &str, got: &Array2<f32>, want: &Array2<f32>) {
    assert_eq!(got.dim(), want.dim(), "{label}: shape");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs() as f64));
    VALUE_TOL
        .scaled(scale)
        .compare(got.iter().copied(), want.iter().copied())
        .unwrap_or_else(|m| panic!("{label}: {m:?}"));
}

/// Σ_μ softmax(β ξ^μ·x) v^μ in f64, written out here.
fn softmax_values(
    keys: &Array2<f32>,
    values: &Array2<f32>,
    beta: f64,
    queries: &Array2<f32>,
) -> Array2<f32> {
    let mut out = Array2::zeros((queries.nrows(), values.ncols()));
    for (x, mut o) in queries.rows().into_iter().zip(out.rows_mut()) {
        let s: Vec<f64> = keys
            .rows()
            .into_iter()
            .map(|k| {
                beta * k
                    .iter()
                    .zip(x.iter())
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>()
            })
            .collect();
        let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|v| (v - max).exp()).collect();
        let total: f64 = e.iter().sum();
        for (j, o) in o.iter_mut().enumerate() {
            *o = (e
                .iter()
                .zip(values.column(j))
                .map(|(w, &v)| w * v as f64)
                .sum::<f64>()
                / total) as f32;
        }
    }
    out
}

#[test]
fn values_follow_the_weights_on_both_devices() {
    // N = 12 keys, M = 5 values: another width.
    let keys = common::unit_patterns(40, 12, 1);
    let values = common::gaussian(40, 5, 1.0, 2);
    let queries = common::noisy_queries(&keys, 7, 0.3, 3);
    let want = softmax_values(&keys, &values, 6.0, &queries);
    let separations = [
        Separation::Softmax { beta: 6.0 },
        Separation::Exponential { beta: 2.0 },
        Separation::Polynomial { n: 3 },
        Separation::RectifiedPolynomial { n: 2 },
        Separation::Max,
        Separation::TopK { k: 3 },
    ];
    for similarity in [Similarity::Dot, Similarity::NegEuclidean] {
        for separation in separations {
            let config = Config {
                similarity,
                separation,
                ..Config::default()
            };
            let cpu = memory(&keys, &values, config, &Device::Reference)
                .retrieve_values(queries.view())
                .unwrap();
            let fast = memory(&keys, &values, config, &Device::Cpu)
                .retrieve_values(queries.view())
                .unwrap();
            close(
                &format!("{similarity:?} {separation:?} fast cpu vs reference"),
                &fast,
                &cpu,
            );
            let gpu = memory(&keys, &values, config, &common::gpu())
                .retrieve_values(queries.view())
                .unwrap();
            close(
                &format!("{similarity:?} {separation:?} wgpu vs cpu"),
                &gpu,
                &cpu,
            );
            if (similarity, separation) == (Similarity::Dot, Separation::Softmax { beta: 6.0 }) {
                close("softmax vs the f64 sum written here", &cpu, &want);
            }
        }
    }
    // A query equal to a key with a sharp max: exactly that key's value.
    let exact = memory(
        &keys,
        &values,
        Config {
            separation: Separation::Max,
            ..Config::default()
        },
        &common::gpu(),
    )
    .retrieve_values(keys.select(Axis(0), &[17]).view())
    .unwrap();
    assert_eq!(exact.row(0), values.row(17));
}

fn edits_keep_keys_and_values_aligned(device: Device) {
    let keys = common::unit_patterns(10, 8, 4);
    let values = common::gaussian(10, 3, 1.0, 5);
    let config = Config {
        separation: Separation::Softmax { beta: 9.0 },
        ..Config::default()
    };
    let mut m = memory(&keys, &values, config, &device);
    let more_keys = common::unit_patterns(4, 8, 6);
    let more_values = common::gaussian(4, 3, 1.0, 7);
    assert_eq!(
        m.insert_with_values(more_keys.view(), more_values.view())
            .unwrap(),
        vec![10, 11, 12, 13]
    );
    m.remove(&[2, 11]).unwrap();
    let new_value = common::gaussian(1, 3, 1.0, 8);
    m.update_value(5, new_value.row(0)).unwrap();
    // The same memory built fresh.
    let mut all_keys = keys.clone();
    all_keys.append(Axis(0), more_keys.view()).unwrap();
    let mut all_values = values.clone();
    all_values.append(Axis(0), more_values.view()).unwrap();
    all_values.row_mut(5).assign(&new_value.row(0));
    let keep: Vec<usize> = (0..14).filter(|&r| r != 2 && r != 11).collect();
    let fresh = memory(
        &all_keys.select(Axis(0), &keep),
        &all_values.select(Axis(0), &keep),
        config,
        &device,
    );
    assert_eq!(m.values().unwrap(), fresh.values().unwrap());
    let queries = common::noisy_queries(&all_keys, 6, 0.2, 9);
    assert_eq!(
        m.retrieve_values(queries.view()).unwrap(),
        fresh.retrieve_values(queries.view()).unwrap()
    );
    // Saved and loaded with its values.
    let mut bytes = Vec::new();
    m.save(&mut bytes).unwrap();
    let loaded = Retriever::load(bytes.as_slice(), &device).unwrap();
    assert_eq!(loaded.values(), m.values());
    assert_eq!(loaded.ids(), m.ids());
}
test_devices!(all: edits_keep_keys_and_values_aligned);

#[test]
fn value_errors_are_clear_and_change_nothing() {
    let keys = common::unit_patterns(6, 4, 1);
    let values = common::gaussian(6, 2, 1.0, 2);
    let build = |v: Array2<f32>| {
        Retriever::builder(Patterns::new(keys.clone()).unwrap())
            .values(v)
            .build()
    };
    assert!(matches!(
        build(common::gaussian(5, 2, 1.0, 3)),
        Err(Error::DimensionMismatch { .. })
    ));
    let mut nan = values.clone();
    nan[[3, 1]] = f32::NAN;
    assert!(matches!(
        build(nan.clone()),
        Err(Error::NonFinite {
            argument: "values",
            row: 3,
            col: 1,
            ..
        })
    ));
    let mut m = build(values.clone()).unwrap();
    let key = common::unit_patterns(1, 4, 9);
    assert!(matches!(
        m.insert(key.view()),
        Err(Error::InvalidParameter {
            argument: "insert",
            ..
        })
    ));
    assert!(matches!(
        m.insert_with_values(key.view(), common::gaussian(1, 3, 1.0, 4).view()),
        Err(Error::DimensionMismatch { .. })
    ));
    assert!(matches!(
        m.insert_with_values(key.view(), nan.slice(ndarray::s![3..4, ..])),
        Err(Error::NonFinite { .. })
    ));
    assert!(matches!(
        m.update_value(99, values.row(0)),
        Err(Error::UnknownId { .. })
    ));
    assert_eq!(m.len(), 6);
    assert_eq!(m.values().unwrap(), values.view());
    let plain = Retriever::builder(Patterns::new(keys.clone()).unwrap())
        .build()
        .unwrap();
    assert!(matches!(
        plain.retrieve_values(keys.view()),
        Err(Error::InvalidParameter {
            argument: "values",
            ..
        })
    ));
    assert!(matches!(
        m.retrieve_values(Array2::<f32>::zeros((0, 4)).view()),
        Err(Error::Empty { .. })
    ));
}
