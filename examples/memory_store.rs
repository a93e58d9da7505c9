//! A small key → value memory service: the memory holds the keys (vectors) under stable
//! ids, the application holds each id's value. It inserts, looks up (exact top-k and
//! associative retrieval), removes, saves, reloads and checks that the reloaded memory
//! gives the same answers.
//!
//! ```sh
//! cargo run --release --example memory_store
//! ```

use std::collections::HashMap;

use dam::{Device, Patterns, Retriever, Separation};
use ndarray::{Array2, Axis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DIM: usize = 64;

/// `count` random unit keys.
fn keys(count: usize, rng: &mut StdRng) -> Array2<f32> {
    let mut m = Array2::from_shape_fn((count, DIM), |_| rng.random_range(-1.0f32..1.0));
    for mut row in m.rows_mut() {
        let norm = row.dot(&row).sqrt();
        row /= norm;
    }
    m
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = StdRng::seed_from_u64(7);
    let device = Device::auto()?;
    println!("device: {}", device.describe()?.1);

    // Start with 1,000 keys; the application keeps the values by id.
    let first = keys(1000, &mut rng);
    let mut memory = Retriever::builder(Patterns::new(first.clone())?)
        .separation(Separation::Softmax { beta: 40.0 })
        .device(device.clone())
        .build()?;
    let mut values: HashMap<u64, String> = memory
        .ids()
        .iter()
        .map(|&id| (id, format!("document {id}")))
        .collect();

    // Insert 200 more: new ids continue after the largest one given out.
    let more = keys(200, &mut rng);
    for id in memory.insert(more.view())? {
        values.insert(id, format!("late document {id}"));
    }

    // Remove every tenth of the first keys; their ids are never reused.
    let gone: Vec<u64> = (0..1000).step_by(10).collect();
    memory.remove(&gone)?;
    for id in &gone {
        values.remove(id);
    }
    println!(
        "stored: {} keys (ids {}..{})",
        memory.len(),
        memory.ids()[0],
        memory.ids()[memory.len() - 1]
    );

    // Look up noisy versions of a few keys that are still stored.
    let asked: Vec<usize> = vec![1, 2, 55, 999];
    let noisy = first
        .select(Axis(0), &asked)
        .mapv(|v| v + rng.random_range(-0.05f32..0.05));
    let hits = memory.search(noisy.view(), 3)?;
    let recalled = memory.retrieve(noisy.view())?;
    println!(
        "{:>6} | {:>24} | {:>8} | {:>24}",
        "query", "best match (search)", "score", "retrieved (dynamics)"
    );
    for (q, &asked_id) in asked.iter().enumerate() {
        let best = hits.ids[[q, 0]];
        println!(
            "{asked_id:>6} | {:>24} | {:>8.4} | {:>24}",
            values[&best],
            hits.scores[[q, 0]],
            values[&recalled.nearest_id[q]]
        );
        assert_eq!(
            best, asked_id as u64,
            "search finds the key that was asked for"
        );
        assert_eq!(
            recalled.nearest_id[q], asked_id as u64,
            "retrieval converges to it"
        );
    }
    // A removed key is not found any more: its best match is another id.
    let removed = first.select(Axis(0), &[10]);
    let after = memory.search(removed.view(), 1)?;
    assert_ne!(after.ids[[0, 0]], 10);
    println!(
        "removed id 10 → best match now {}",
        values[&after.ids[[0, 0]]]
    );

    // Save atomically, reload, and check the answers are the same.
    let path = std::env::temp_dir().join(format!(
        "dam-memory-store-{}.safetensors",
        std::process::id()
    ));
    memory.save_file(&path)?;
    let reloaded = Retriever::load_file(&path, &device)?;
    std::fs::remove_file(&path)?;
    assert_eq!(reloaded.ids(), memory.ids());
    assert_eq!(reloaded.search(noisy.view(), 3)?, hits);
    assert_eq!(reloaded.retrieve(noisy.view())?, recalled);
    println!("saved and reloaded: same ids, same search results, same retrievals");
    Ok(())
}
