// Stored patterns held as IEEE half (Storage::F16) read with the adapter's SHADER_F16
// feature: the same layout as pat_f16.wgsl (rows padded to an even count), typed as f16 so
// the hardware converts. Needs enable_f16.wgsl at the top of the unit.

@group(0) @binding(1) var<storage, read> pat: array<f16>;

// Entry i of pattern `row` of the bound chunk.
fn load_pat(row: u32, i: u32) -> f32 {
    return f32(pat[row * ((pat_row_len() + 1u) & ~1u) + i]);
}
