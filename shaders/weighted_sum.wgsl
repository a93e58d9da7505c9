// Weighted sum of one pattern chunk: ys[q, i] += sum_{mu in chunk} w[q, chunk_base + mu] * xi[mu, i].
// One invocation per (coordinate i, query q); all invocations of a workgroup read the
// same weight, which the cache broadcasts. The host dispatches at most 16,384 patterns at a
// time (llvmpipe stops an invocation after 65,535 loop iterations). Zero weights are skipped (TopK), and the sum is accumulated in blocks of 256
// terms before being added to the running total (bounded f32 rounding growth for large P).
// Needs common.wgsl and a pattern loader (pat_f32.wgsl or pat_f16.wgsl).

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read_write> ys: array<f32>;

const WG: u32 = 64u;
const BLOCK: u32 = 256u;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = wid.y;
    let n = params.dim;
    let i = wid.x * WG + lid.x;
    if i >= n {
        return;
    }
    let wrow = q * params.p_total + params.chunk_base;
    var total = 0.0;
    for (var m0 = 0u; m0 < params.chunk_rows; m0 += BLOCK) {
        let end = min(m0 + BLOCK, params.chunk_rows);
        var block = 0.0;
        for (var mu = m0; mu < end; mu++) {
            let w = weights[wrow + mu];
            if w != 0.0 {
                block += w * load_pat(mu, i);
            }
        }
        total += block;
    }
    ys[q * n + i] += total;
}
