// Stored patterns held as IEEE half (Storage::F16), two per u32 (entry 2k in the low 16
// bits), each row padded to a whole number of words. The halves are decoded with integer
// operations, so this needs neither SHADER_F16 nor the f16-in-f32 capability that
// unpack2x16float asks of some backends; arithmetic stays in f32. The host never uploads
// an infinite or NaN half.

@group(0) @binding(1) var<storage, read> pat: array<u32>;

// The f32 value of the half in the low 16 bits of `h` (finite halves only).
fn half_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if e == 0u {
        // Zero or subnormal: m · 2^-24.
        let v = f32(m) * 5.9604645e-8;
        return bitcast<f32>(bitcast<u32>(v) | sign);
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

// Entry i of pattern `row` of the bound chunk.
fn load_pat(row: u32, i: u32) -> f32 {
    let word = pat[row * ((pat_row_len() + 1u) / 2u) + i / 2u];
    return half_to_f32(word >> (16u * (i & 1u)));
}
