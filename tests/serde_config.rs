//! The `serde` feature: configuration types round-trip through JSON, and a deserialized
//! configuration is validated like any other when a retriever is built.

use dam::features::{FeatureKind, FeatureSpec};
use dam::{Config, Dynamics, Patterns, Projection, Retriever, Separation, Similarity, Storage};

#[test]
fn configuration_types_round_trip_through_json() {
    let configs = [
        Config::default(),
        Config {
            similarity: Similarity::NegManhattan,
            separation: Separation::TopK { k: 3 },
            dynamics: Dynamics::OneStep,
            projection: Projection::Sign,
            energy_trace: true,
        },
        Config {
            separation: Separation::RectifiedPolynomial { n: 5 },
            dynamics: Dynamics::Iterate {
                max_steps: 7,
                tol: 1e-3,
            },
            ..Config::default()
        },
    ];
    for config in configs {
        let text = serde_json::to_string(&config).unwrap();
        let back: Config = serde_json::from_str(&text).unwrap();
        assert_eq!(back, config, "{text}");
    }
    for storage in [Storage::F32, Storage::F16] {
        let text = serde_json::to_string(&storage).unwrap();
        assert_eq!(serde_json::from_str::<Storage>(&text).unwrap(), storage);
    }
    let spec = FeatureSpec {
        kind: FeatureKind::PositiveExp,
        dim: 8,
        features: 64,
        beta: 0.5,
        seed: 3,
    };
    let text = serde_json::to_string(&spec).unwrap();
    assert_eq!(serde_json::from_str::<FeatureSpec>(&text).unwrap(), spec);
}

#[test]
fn a_deserialized_configuration_is_validated_at_build() {
    let bad: Config = serde_json::from_str(
        r#"{"similarity":"Dot","separation":{"Softmax":{"beta":-1.0}},
            "dynamics":"OneStep","projection":"None","energy_trace":false}"#,
    )
    .unwrap();
    let patterns = Patterns::new(ndarray::array![[1.0f32, 0.0], [0.0, 1.0]]).unwrap();
    let err = Retriever::builder(patterns)
        .config(bad)
        .build()
        .unwrap_err();
    assert!(
        matches!(err, dam::Error::InvalidParameter { argument, .. } if argument.contains("beta")),
        "{err}"
    );
    assert!(serde_json::from_str::<Config>(r#"{"similarity":"Cosine"}"#).is_err());
}
