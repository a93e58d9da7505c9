//! MNIST: the IDX reader, and pattern completion that recovers the same digits on the CPU
//! reference and on the wgpu device (the setup of `examples/mnist_completion.rs`).

mod common;

use dam::{mnist, Device, Dynamics, Error, Patterns, Retriever, Separation, Similarity};

#[test]
fn idx_reader_loads_the_shipped_digits_and_rejects_bad_files() {
    let images = mnist::load_images(
        &mnist::data_dir().join("t10k-images-idx3-ubyte.gz"),
        usize::MAX,
    )
    .unwrap();
    assert_eq!(images.dim(), (2004, 784));
    assert!(images.iter().all(|v| (-1.0..=1.0).contains(v)));
    let labels = mnist::read_idx(&mnist::data_dir().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(labels.dims, vec![2004]);
    assert!(labels.data.iter().all(|&l| l < 10));

    let dir = std::env::temp_dir().join(format!("dam-idx-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.idx");
    assert!(matches!(mnist::read_idx(&missing), Err(Error::Io { .. })));
    let garbage = dir.join("garbage.idx");
    std::fs::write(&garbage, b"\x00\x00\x08\x01\x00\x00\x00\x05abc").unwrap();
    let err = mnist::read_idx(&garbage).unwrap_err();
    assert!(matches!(err, Error::Format { .. }), "{err}");
    assert!(err.to_string().contains("need 5 values"), "{err}");
    std::fs::write(&garbage, b"\x00\x00\x0d\x01\x00\x00\x00\x01a").unwrap();
    assert!(matches!(
        mnist::read_idx(&garbage),
        Err(Error::Format { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(
        mnist::mask_bottom(&images, 1.5),
        Err(Error::InvalidParameter {
            argument: "mask_fraction",
            ..
        })
    ));
}

#[test]
fn completion_recovers_the_same_digits_on_cpu_and_wgpu() {
    let m = 300;
    let images =
        mnist::load_images(&mnist::data_dir().join("t10k-images-idx3-ubyte.gz"), m).unwrap();
    let queries = mnist::mask_bottom(&images, 0.5).unwrap();
    let builder = Retriever::builder(Patterns::new(images).unwrap())
        .similarity(Similarity::NegManhattan)
        .separation(Separation::Softmax { beta: 1.0 })
        .dynamics(Dynamics::OneStep);
    let cpu = builder
        .clone()
        .device(Device::Cpu)
        .build()
        .unwrap()
        .retrieve(queries.view())
        .unwrap();
    let gpu = builder
        .device(common::gpu())
        .build()
        .unwrap()
        .retrieve(queries.view())
        .unwrap();
    assert_eq!(
        gpu.nearest, cpu.nearest,
        "the same digit is retrieved for every query"
    );
    let recovered = cpu
        .nearest
        .iter()
        .enumerate()
        .filter(|(q, &n)| *q == n)
        .count();
    println!("recovered {recovered}/{m} on both devices");
    assert!(recovered * 100 >= 97 * m, "recovered only {recovered}/{m}");
    common::assert_matches("mnist", &gpu, &cpu);
}
