//! Criterion benches: every kernel family through its public entry point, and the
//! end-to-end step of `dam bench`, on the CPU and on the wgpu device. GPU timings are wall
//! clock around the call: query upload, submit, poll (wait) and readback included; the
//! `step` group adds `wgpu-device-time/*`, the compute passes alone from timestamp queries,
//! where the adapter has `TIMESTAMP_QUERY`.
//! Run: `cargo bench --bench retrieval` (a filter, e.g. `-- step/`, narrows it).
//!
//! | group | what runs on wgpu | on the CPU |
//! | --- | --- | --- |
//! | `kernel/stream` | `stream.wgsl` partial + merge, `finalize.wgsl` (`Retriever::step`, softmax) | fused fast path |
//! | `kernel/energy` | `stream.wgsl` without the update (`Retriever::energy`) | reference |
//! | `kernel/materialised` | `similarity` + `separation` + `weighted_sum` + `finalize` (top-8) | reference |
//! | `kernel/procedural` | `procedural.wgsl` partial + fold (patterns generated, never stored) | `dam_cpu::procedural` |
//! | `kernel/spin` | `spin.wgsl` init + sync decide/apply | `dam_cpu::binary` |
//! | `kernel/features` | `features.wgsl` feature sum and value + gradient | `dam_cpu::features` |
//! | `step` | the `dam bench` workload, f32 and f16 storage | fused fast path and the plain reference |

use criterion::{criterion_group, criterion_main, Criterion};
use dam::binary::{BinaryPatterns, SpinEnergy, SpinUpdate};
use dam::features::{FeatureKind, FeatureSpec, RandomFeatures};
use dam::procedural::{PatternKind, StreamRequest};
use dam::{Device, Dynamics, Patterns, Retriever, Separation, Storage};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

fn gaussian(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_simple_fn((rows, cols), || StandardNormal.sample(&mut rng))
}

/// Both devices; the bench refuses to run silently without an adapter.
fn devices() -> Vec<(&'static str, Device)> {
    match dam::WgpuContext::shared(&dam::WgpuOptions::default()) {
        Ok(ctx) => {
            eprintln!("wgpu adapter: {}", ctx.describe());
            vec![("cpu", Device::Cpu), ("wgpu", Device::wgpu())]
        }
        Err(e) => panic!("no wgpu adapter ({e}): install mesa-vulkan-drivers libvulkan1"),
    }
}

fn retriever(p: &Patterns, sep: Separation, device: &Device, storage: Storage) -> Retriever {
    Retriever::builder(p.clone())
        .separation(sep)
        .dynamics(Dynamics::OneStep)
        .storage(storage)
        .device(device.clone())
        .build()
        .expect("retriever")
}

fn kernels(c: &mut Criterion) {
    let (p, n, b) = (16_384, 64, 16);
    let patterns = Patterns::new(gaussian(p, n, 0)).expect("patterns");
    let queries = gaussian(b, n, 1);
    let softmax = Separation::Softmax { beta: 0.125 };
    let mut group = c.benchmark_group(format!("kernel P={p} N={n} B={b}"));
    group.sample_size(10);
    for (name, device) in devices() {
        let r = retriever(&patterns, softmax, &device, Storage::F32);
        group.bench_function(format!("stream/{name}"), |bench| {
            bench.iter(|| std::hint::black_box(r.step(queries.view()).expect("step")))
        });
        group.bench_function(format!("energy/{name}"), |bench| {
            bench.iter(|| std::hint::black_box(r.energy(queries.view()).expect("energy")))
        });
        let top = retriever(&patterns, Separation::TopK { k: 8 }, &device, Storage::F32);
        group.bench_function(format!("materialised/{name}"), |bench| {
            bench.iter(|| std::hint::black_box(top.step(queries.view()).expect("step")))
        });
        let seeds: Vec<u64> = (0..b as u64).collect();
        let flat: Vec<f32> = queries.iter().copied().collect();
        let request = StreamRequest {
            kind: PatternKind::Spherical,
            dim: n,
            start: 0,
            end: p as u64,
            beta: 0.125,
            queries: &flat,
            seeds: &seeds,
        };
        group.bench_function(format!("procedural/{name}"), |bench| {
            bench.iter(|| {
                std::hint::black_box(dam::stream_procedural(&device, &request).expect("procedural"))
            })
        });
        let binary = BinaryPatterns::procedural(2_000, 100, 2).expect("binary patterns");
        let w = dam::binary::words_per_state(100);
        let starts: Vec<u32> = (0..b).flat_map(|q| binary.pattern(q).to_vec()).collect();
        assert_eq!(starts.len(), w * b);
        group.bench_function(format!("spin/{name}"), |bench| {
            bench.iter(|| {
                std::hint::black_box(
                    dam::spin_dynamics(
                        &device,
                        &binary,
                        SpinEnergy::Polynomial { n: 3 },
                        SpinUpdate::Sync { max_steps: 5 },
                        &starts,
                    )
                    .expect("spin"),
                )
            })
        });
        // Unit-scale data (β·‖x − ξ‖² ≈ 0.25), where the estimate is accurate and positive.
        let unit = patterns.view().mapv(|v| v / (n as f32).sqrt());
        let unit_queries = queries.mapv(|v| v / (n as f32).sqrt());
        let spec = FeatureSpec {
            kind: FeatureKind::Fourier,
            dim: n,
            features: 1024,
            beta: 0.125,
            seed: 3,
        };
        let mut memory = RandomFeatures::new(spec, &device).expect("features");
        group.bench_function(format!("features-insert/{name}"), |bench| {
            bench.iter(|| memory.insert(unit.slice(ndarray::s![..2048, ..])))
        });
        group.bench_function(format!("features-energy/{name}"), |bench| {
            bench.iter(|| std::hint::black_box(memory.gradient(unit_queries.view()).expect("grad")))
        });
    }
    group.finish();
}

fn step(c: &mut Criterion) {
    let (p, n, b) = (65_536, 128, 16);
    let patterns = Patterns::new(gaussian(p, n, 0)).expect("patterns");
    let queries = gaussian(b, n, 1);
    let softmax = Separation::Softmax {
        beta: 1.0 / (n as f32).sqrt(),
    };
    let mut group = c.benchmark_group(format!("step P={p} N={n} B={b}"));
    group.sample_size(10);
    for (name, device) in devices() {
        let storages: &[Storage] = match device {
            Device::Cpu => &[Storage::F32],
            _ => &[Storage::F32, Storage::F16],
        };
        for &storage in storages {
            let r = retriever(&patterns, softmax, &device, storage);
            group.bench_function(format!("{name}/{storage:?}"), |bench| {
                bench.iter(|| std::hint::black_box(r.step(queries.view()).expect("step")))
            });
            // Device time of the same step from timestamp queries, where the adapter has them.
            if r.step_timed(queries.view()).expect("step").1.is_some() {
                group.bench_function(format!("{name}-device-time/{storage:?}"), |bench| {
                    bench.iter_custom(|iters| {
                        (0..iters)
                            .map(|_| r.step_timed(queries.view()).expect("step").1.unwrap_or(0.0))
                            .map(std::time::Duration::from_secs_f64)
                            .sum()
                    })
                });
            }
        }
    }
    let config = *retriever(&patterns, softmax, &Device::Cpu, Storage::F32).config();
    group.bench_function("cpu-reference/F32", |bench| {
        bench.iter(|| {
            for row in queries.rows() {
                std::hint::black_box(dam::cpu::reference::update(
                    &config,
                    &patterns,
                    &row.to_vec(),
                ));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, kernels, step);
criterion_main!(benches);
