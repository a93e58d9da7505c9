// Shared declarations of the retrieval kernels, composed by `source.rs` (documented there).
// Parameters of one dispatch over one chunk of stored patterns.
struct Params {
    batch: u32,        // B: queries in this batch
    dim: u32,          // N
    p_total: u32,      // P: all stored patterns
    chunk_rows: u32,   // patterns in this chunk
    chunk_base: u32,   // global index of the chunk's first pattern
    split_len: u32,    // patterns per split (streaming kernel)
    split_base: u32,   // global index of this chunk's first split
    splits_total: u32, // splits over all chunks
    beta: f32,
    tol: f32,
    k: u32,            // TopK k
    degree: u32,       // polynomial degree n
}

// Row length (entries) of the stored patterns read through the loader (pat_*.wgsl).
fn pat_row_len() -> u32 {
    return params.dim;
}

// Per-step values, rewritten before each submit.
struct Step {
    row: u32,          // energy-trace row written by this step
}
