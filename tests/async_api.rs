//! The async API: same answers as the blocking calls, on both devices, with many futures
//! in flight at once; the futures are `Send + 'static` so any runtime can spawn them.

mod common;

use std::sync::Arc;

use dam::{Device, Patterns, Retriever, Separation};

fn send_static<T: Send + 'static>(value: T) -> T {
    value
}

fn async_calls_equal_blocking_ones_on_both_devices(device: Device) {
    let rows = common::unit_patterns(200, 24, 41);
    let memory = Arc::new(
        Retriever::builder(Patterns::new(rows.clone()).unwrap())
            .separation(Separation::Softmax { beta: 8.0 })
            .device(device)
            .build()
            .unwrap(),
    );
    let batches: Vec<_> = (0..8)
        .map(|i| common::noisy_queries(&rows, 5 + i, 0.4, 100 + i as u64))
        .collect();
    // All eight in flight before any is awaited.
    let retrievals: Vec<_> = batches
        .iter()
        .map(|q| send_static(memory.retrieve_async(q.clone())))
        .collect();
    let searches: Vec<_> = batches
        .iter()
        .map(|q| send_static(memory.search_async(q.clone(), 4)))
        .collect();
    for ((q, r), s) in batches.iter().zip(retrievals).zip(searches) {
        assert_eq!(
            pollster::block_on(r).unwrap(),
            memory.retrieve(q.view()).unwrap()
        );
        assert_eq!(
            pollster::block_on(s).unwrap(),
            memory.search(q.view(), 4).unwrap()
        );
    }
    // Errors arrive as errors.
    let wrong = ndarray::Array2::<f32>::zeros((2, 23));
    assert!(pollster::block_on(memory.retrieve_async(wrong.clone())).is_err());
    assert!(pollster::block_on(memory.search_async(wrong, 0)).is_err());
}
test_devices!(all: async_calls_equal_blocking_ones_on_both_devices);
