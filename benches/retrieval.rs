//! One retrieval step (P = 4096, N = 64, B = 16, seeded Gaussian patterns) on the CPU
//! reference and on the wgpu device, for the streamed separation (softmax) and the
//! materialised ones (polynomial, top-k). GPU timings include upload of the queries,
//! submit, poll and readback. Run: `cargo bench --bench retrieval`.

use criterion::{criterion_group, criterion_main, Criterion};
use dam::{Device, Dynamics, Patterns, Retriever, Separation};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

fn gaussian(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_simple_fn((rows, cols), || StandardNormal.sample(&mut rng))
}

fn step(c: &mut Criterion) {
    let (p, n, b) = (4096, 64, 16);
    let patterns = Patterns::new(gaussian(p, n, 0)).expect("patterns");
    let queries = gaussian(b, n, 1);
    let devices = match dam::WgpuContext::shared(&dam::WgpuOptions::default()) {
        Ok(ctx) => {
            eprintln!("wgpu adapter: {}", ctx.describe());
            vec![("cpu", Device::Cpu), ("wgpu", Device::wgpu())]
        }
        Err(e) => {
            eprintln!("no wgpu adapter ({e}); benchmarking the CPU only");
            vec![("cpu", Device::Cpu)]
        }
    };
    let mut group = c.benchmark_group(format!("step P={p} N={n} B={b}"));
    group.sample_size(10);
    for (name, device) in devices {
        for (sep_name, separation) in [
            ("softmax", Separation::Softmax { beta: 0.125 }),
            ("poly3", Separation::Polynomial { n: 3 }),
            ("top8", Separation::TopK { k: 8 }),
        ] {
            let retriever = Retriever::builder(patterns.clone())
                .separation(separation)
                .dynamics(Dynamics::OneStep)
                .device(device.clone())
                .build()
                .expect("retriever");
            group.bench_function(format!("{name}/{sep_name}"), |bench| {
                bench.iter(|| {
                    std::hint::black_box(retriever.retrieve(queries.view()).expect("retrieve"))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
