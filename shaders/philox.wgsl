// Philox-4x32-10 (Salmon et al., SC'11) and the procedural pattern entries built from it.
// Mirrors crates/core/src/procedural.rs word for word: the counter of block `block` of item
// `index` (64-bit, as lo/hi) in stream `stream` is (block, index_lo, index_hi, stream) and
// the key is the run seed (lo, hi).

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;
const PI: f32 = 3.14159265358979;

// High 32 bits of the 64-bit product a * b, from 16-bit halves (WGSL has no u64).
fn mul_hi(a: u32, b: u32) -> u32 {
    let a_lo = a & 0xffffu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xffffu;
    let b_hi = b >> 16u;
    let lo_lo = a_lo * b_lo;
    let hi_lo = a_hi * b_lo;
    let lo_hi = a_lo * b_hi;
    let cross = (lo_lo >> 16u) + (hi_lo & 0xffffu) + lo_hi;
    return a_hi * b_hi + (hi_lo >> 16u) + (cross >> 16u);
}

fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var round = 0u; round < 10u; round++) {
        if round > 0u {
            k = k + vec2<u32>(PHILOX_W0, PHILOX_W1);
        }
        let hi0 = mul_hi(PHILOX_M0, c.x);
        let lo0 = PHILOX_M0 * c.x;
        let hi1 = mul_hi(PHILOX_M1, c.z);
        let lo1 = PHILOX_M1 * c.z;
        c = vec4<u32>(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
    }
    return c;
}

fn philox_words(key: vec2<u32>, stream: u32, index: vec2<u32>, block: u32) -> vec4<u32> {
    return philox4x32_10(vec4<u32>(block, index.x, index.y, stream), key);
}

fn uniform_open0(w: u32) -> f32 {
    return f32((w >> 8u) + 1u) * (1.0 / 16777216.0);
}

fn uniform_sym(w: u32) -> f32 {
    return f32(w >> 8u) * (2.0 / 16777216.0) - 1.0;
}

fn box_muller(a: u32, b: u32) -> vec2<f32> {
    let r = sqrt(-2.0 * log(uniform_open0(a)));
    let theta = PI * uniform_sym(b);
    return vec2<f32>(r * cos(theta), r * sin(theta));
}
