//! The seed of each trial: one pure function, so that shards, devices and the built
//! pattern sets see the same trials.

/// splitmix64: the seed of trial `t` at load `patterns` of a sweep seeded `seed`. A pure
/// function, so shards and devices see the same trials.
pub fn trial_seed(seed: u64, patterns: u64, trial: u64) -> u64 {
    let mut z = seed
        ^ patterns.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ trial.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
