//! f16 pattern storage: the wgpu f16 kernels against the CPU reference on the same rounded
//! patterns (odd N for row padding, several blocks and buffers), the accuracy cost of f16
//! against f32, and entries that do not fit a half.

mod common;

use common::*;
use dam::{
    Config, Device, Dynamics, Patterns, Projection, Retriever, Separation, Similarity, Storage,
    WgpuOptions,
};

fn build(patterns: &Patterns, cfg: Config, device: Device, storage: Storage) -> Retriever {
    Retriever::builder(patterns.clone())
        .config(cfg)
        .storage(storage)
        .device(device)
        .build()
        .unwrap()
}

#[test]
fn f16_kernels_match_the_reference_on_rounded_patterns() {
    // N = 33: rows of 17 words, the last half-word padding. P = 40,001 > 2 blocks of 16,384,
    // and 256 KiB bindings split the patterns over several buffers.
    let raw = unit_patterns(40_001, 33, 21);
    let queries = noisy_queries(&raw, 11, 0.3, 22);
    let patterns = Patterns::new(raw).unwrap();
    let small = gpu_with(WgpuOptions {
        max_binding_bytes: Some(256 << 10),
        ..WgpuOptions::default()
    });
    // The portable integer decode (pat_f16.wgsl), whatever the adapter offers.
    let portable = gpu_with(WgpuOptions {
        shader_f16: false,
        max_binding_bytes: Some(256 << 10),
        ..WgpuOptions::default()
    });
    let native = dam::WgpuContext::shared(&WgpuOptions::default()).unwrap();
    eprintln!(
        "SHADER_F16 on this adapter: {}",
        native
            .features()
            .contains(dam::wgpu_backend::wgpu::Features::SHADER_F16)
    );
    for (similarity, separation) in [
        (Similarity::Dot, Separation::Softmax { beta: 20.0 }),
        (Similarity::NegManhattan, Separation::Softmax { beta: 5.0 }),
        (Similarity::Dot, Separation::TopK { k: 3 }),
        (Similarity::NegEuclidean, Separation::Polynomial { n: 2 }),
    ] {
        let cfg = Config {
            similarity,
            separation,
            dynamics: Dynamics::Iterate {
                max_steps: 3,
                tol: 1e-4,
            },
            projection: Projection::Sphere,
            ..Config::default()
        };
        let cpu = build(&patterns, cfg, Device::Reference, Storage::F16);
        let expected = cpu.retrieve(queries.view()).unwrap();
        for device in [Device::Cpu, gpu(), small.clone(), portable.clone()] {
            let r = build(&patterns, cfg, device, Storage::F16);
            assert_eq!(r.storage(), Storage::F16);
            let label = format!("f16 {similarity:?} {separation:?}");
            assert_matches(&label, &r.retrieve(queries.view()).unwrap(), &expected);
        }
        // The bare step too, with the native and the portable loader.
        let reference = cpu.step(queries.view()).unwrap();
        for device in [gpu(), portable.clone()] {
            let r = build(&patterns, cfg, device.clone(), Storage::F16);
            let step = r.step(queries.view()).unwrap();
            assert_eq!(step.dim(), reference.dim());
            STATE_TOL
                .compare(step.iter().copied(), reference.iter().copied())
                .unwrap_or_else(|m| panic!("f16 step {similarity:?} {device:?}: {m:?}"));
        }
    }
}

#[test]
fn f16_accuracy_cost_against_f32_is_bounded() {
    // One softmax step, dot similarity, unit-norm patterns: rounding each entry to a half
    // (relative 2⁻¹¹) moves the updated states by well under 1 % of their scale.
    let raw = unit_patterns(5_000, 64, 23);
    let queries = noisy_queries(&raw, 32, 0.3, 24);
    let patterns = Patterns::new(raw).unwrap();
    let cfg = Config {
        separation: Separation::Softmax { beta: 8.0 },
        dynamics: Dynamics::OneStep,
        ..Config::default()
    };
    let f32_states = build(&patterns, cfg, Device::Reference, Storage::F32)
        .retrieve(queries.view())
        .unwrap()
        .states;
    let f16_states = build(&patterns, cfg, gpu(), Storage::F16)
        .retrieve(queries.view())
        .unwrap()
        .states;
    assert_eq!(f16_states.dim(), f32_states.dim());
    let scale = f32_states.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let worst = f16_states
        .iter()
        .zip(f32_states.iter())
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("f16 vs f32: max |Δx| = {worst:e}, max |x| = {scale:e}");
    assert!(worst <= 5e-3 * scale, "{worst} vs scale {scale}");
    assert!(worst > 0.0, "f16 rounding must change something");
}

fn entries_beyond_half_range_are_refused(device: Device) {
    let mut raw = unit_patterns(10, 4, 25);
    raw[[3, 2]] = 70_000.0;
    let patterns = Patterns::new(raw).unwrap();
    let err = Retriever::builder(patterns.clone())
        .storage(Storage::F16)
        .device(device.clone())
        .build()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, dam::Error::TooLarge { .. }),
        "{device:?}: {text}"
    );
    assert!(text.contains("pattern 3 entry 2"), "{text}");
}
test_devices!(all: entries_beyond_half_range_are_refused);
