// Stored patterns held as f32 (Storage::F32). Included before the kernels that read
// patterns (similarity, stream, weighted_sum); binding 1 of every such kernel.

@group(0) @binding(1) var<storage, read> pat: array<f32>;

// Entry i of pattern `row` of the bound chunk.
fn load_pat(row: u32, i: u32) -> f32 {
    return pat[row * pat_row_len() + i];
}
