//! Saving and loading memories: exact round trips (f32 and f16, after edits, on both
//! devices), atomic file writes, and a loader that turns every damaged file into an error.

mod common;

use std::collections::HashMap;

use dam::persist::{FORMAT, FORMAT_VERSION};
use dam::{Device, Dynamics, Error, Patterns, Projection, Retriever, Separation, Storage};
use proptest::prelude::*;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

const N: usize = 9;

/// A memory with a non-default rule, edited so that its ids are not 0..P.
fn edited(device: &Device, storage: Storage) -> Retriever {
    let mut memory = Retriever::builder(Patterns::new(common::unit_patterns(6, N, 4)).unwrap())
        .separation(Separation::Softmax { beta: 7.5 })
        .dynamics(Dynamics::Iterate {
            max_steps: 17,
            tol: 3e-6,
        })
        .projection(Projection::Sphere)
        .storage(storage)
        .device(device.clone())
        .build()
        .unwrap();
    memory
        .insert(common::unit_patterns(3, N, 5).view())
        .unwrap();
    memory.remove(&[1, 7]).unwrap();
    memory
        .update(3, common::unit_patterns(1, N, 6).row(0))
        .unwrap();
    memory
}

fn saved(memory: &Retriever) -> Vec<u8> {
    let mut bytes = Vec::new();
    memory.save(&mut bytes).unwrap();
    bytes
}

fn assert_same(a: &Retriever, b: &Retriever) {
    assert_eq!(a.ids(), b.ids());
    assert_eq!(a.config(), b.config());
    assert_eq!(a.storage(), b.storage());
    // Bit for bit, including f16 storage.
    let bits = |r: &Retriever| -> Vec<u32> {
        r.patterns()
            .as_slice()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    };
    assert_eq!(bits(a), bits(b));
}

fn round_trips_exactly_on_both_devices(device: Device) {
    for storage in [Storage::F32, Storage::F16] {
        let mut memory = edited(&device, storage);
        let mut loaded = Retriever::load(saved(&memory).as_slice(), &device).unwrap();
        assert_same(&memory, &loaded);
        let queries = common::noisy_queries(&memory.patterns().view().to_owned(), 4, 0.3, 8);
        assert_eq!(
            memory.retrieve(queries.view()).unwrap(),
            loaded.retrieve(queries.view()).unwrap()
        );
        // Ids continue where the saved memory left off: never reused.
        let row = common::unit_patterns(1, N, 9);
        assert_eq!(memory.insert(row.view()).unwrap(), vec![9]);
        assert_eq!(loaded.insert(row.view()).unwrap(), vec![9]);
    }
}
test_devices!(all: round_trips_exactly_on_both_devices);

#[test]
fn numpy_layout_tensors_and_metadata() {
    let memory = edited(&Device::Cpu, Storage::F16);
    let bytes = saved(&memory);
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let patterns = file.tensor("patterns").unwrap();
    assert_eq!(patterns.dtype(), Dtype::F16);
    assert_eq!(patterns.shape(), &[7, N]);
    let ids = file.tensor("ids").unwrap();
    assert_eq!(ids.dtype(), Dtype::U64);
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().as_ref().unwrap();
    assert_eq!(meta["format"], FORMAT);
    assert_eq!(meta["format_version"], FORMAT_VERSION.to_string());
    assert_eq!(meta["separation"], "softmax");
    assert_eq!(meta["beta"], "7.5");
    assert_eq!(meta["next_id"], "9");
}

#[test]
fn save_file_is_atomic_and_leaves_no_temporary_files() {
    let dir = std::env::temp_dir().join(format!("dam-persist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("memory.safetensors");
    let first = edited(&Device::Cpu, Storage::F32);
    first.save_file(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    // A save that cannot complete (the target is a folder) fails and changes nothing.
    let blocked = dir.join("blocked");
    std::fs::create_dir_all(blocked.join("inside")).unwrap();
    assert!(matches!(first.save_file(&blocked), Err(Error::Io { .. })));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // Overwriting replaces the file whole.
    let mut second = edited(&Device::Cpu, Storage::F32);
    second.remove(&[0]).unwrap();
    second.save_file(&path).unwrap();
    let loaded = Retriever::load_file(&path, &Device::Cpu).unwrap();
    assert_same(&second, &loaded);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["blocked", "memory.safetensors"]);
    assert!(matches!(
        Retriever::load_file(dir.join("missing"), &Device::Cpu),
        Err(Error::Io { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file with these tensors and metadata (checksum as given: tests of the checks before
/// it).
fn forged(
    tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)>,
    meta: HashMap<String, String>,
) -> Vec<u8> {
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            (*name, TensorView::new(*dtype, shape.clone(), data).unwrap())
        })
        .collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

fn format_error(bytes: &[u8]) -> String {
    match Retriever::load(bytes, &Device::Cpu) {
        Err(Error::Format { reason, .. }) => reason,
        other => panic!("expected a format error, got {other:?}"),
    }
}

#[test]
fn wrong_files_are_clear_errors() {
    let good = saved(&edited(&Device::Cpu, Storage::F32));
    let (_, header) = safetensors::SafeTensors::read_metadata(&good).unwrap();
    let meta = header.metadata().clone().unwrap();
    let file = safetensors::SafeTensors::deserialize(&good).unwrap();
    let data = |name: &str| file.tensor(name).unwrap().data().to_vec();
    let with = |key: &str, value: &str| {
        let mut m = meta.clone();
        m.insert(key.into(), value.into());
        m
    };
    let both = |m: HashMap<String, String>| {
        forged(
            vec![
                ("patterns", Dtype::F32, vec![7, N], data("patterns")),
                ("ids", Dtype::U64, vec![7], data("ids")),
            ],
            m,
        )
    };
    assert!(!format_error(&[]).is_empty());
    assert!(!format_error(&good[..good.len() - 1]).is_empty());
    assert!(format_error(&both(with("format_version", "2"))).contains("version 2"));
    assert!(format_error(&both(with("format", "other"))).contains("format"));
    assert!(format_error(&both(with("beta", "8"))).contains("checksum"));
    let no_meta = forged(
        vec![("ids", Dtype::U64, vec![7], data("ids"))],
        HashMap::new(),
    );
    assert!(format_error(&no_meta).contains("metadata"));
    let flat = forged(
        vec![
            ("patterns", Dtype::F32, vec![7 * N], data("patterns")),
            ("ids", Dtype::U64, vec![7], data("ids")),
        ],
        meta.clone(),
    );
    assert!(!format_error(&flat).is_empty());
    let missing = forged(
        vec![("patterns", Dtype::F32, vec![7, N], data("patterns"))],
        meta.clone(),
    );
    assert!(format_error(&missing).contains("ids"));
}

/// One way to damage a file.
#[derive(Debug, Clone)]
enum Damage {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Damage::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::Insert(i, b)),
        any::<usize>().prop_map(Damage::Remove),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        rng_seed: proptest::test_runner::RngSeed::Fixed(31),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any damage gives an error or (when it touched nothing that matters, like header
    /// padding) the very memory that was saved: never a panic, never a different memory.
    #[test]
    fn damaged_files_never_load_as_a_different_memory(
        damages in proptest::collection::vec(damage(), 1..4),
        f16 in any::<bool>(),
    ) {
        let storage = if f16 { Storage::F16 } else { Storage::F32 };
        let original = edited(&Device::Cpu, storage);
        let mut bytes = saved(&original);
        for d in &damages {
            let len = bytes.len().max(1);
            match *d {
                Damage::Truncate(i) => bytes.truncate(i % len),
                Damage::Flip(i, b) => if !bytes.is_empty() { bytes[i % len] ^= b },
                Damage::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
                Damage::Remove(i) => if !bytes.is_empty() { bytes.remove(i % len); },
            }
        }
        match Retriever::load(bytes.as_slice(), &Device::Cpu) {
            Ok(loaded) => assert_same(&original, &loaded),
            Err(Error::Format { .. }) => {}
            Err(other) => panic!("damage {damages:?}: unexpected error kind {other:?}"),
        }
    }
}

#[test]
fn zero_patterns_in_a_file_is_an_error_not_a_panic() {
    let good = saved(&edited(&Device::Cpu, Storage::F32));
    let (_, header) = safetensors::SafeTensors::read_metadata(&good).unwrap();
    let meta = header.metadata().clone().unwrap();
    let empty = forged(
        vec![
            ("patterns", Dtype::F32, vec![0, N], Vec::new()),
            ("ids", Dtype::U64, vec![0], Vec::new()),
        ],
        meta,
    );
    assert!(!format_error(&empty).is_empty());
}
