// Weighted sum of one pattern chunk: ys[q, i] += sum_{mu in chunk} w[q, chunk_base + mu] * xi[mu, i].
// One invocation per (coordinate i, tile of four queries): each pattern entry loaded serves
// the four queries (vec4 lanes; lanes past the batch read the last query's weights and are
// never stored). All invocations of a workgroup read the same weights, which the cache
// broadcasts. The host dispatches at most MAX_BLOCK_ROWS patterns at a time, within its
// loop budget (llvmpipe stops an invocation after 65,535 loop iterations). Patterns whose
// four weights are all zero are skipped (TopK), and the sum is accumulated in blocks of
// BLOCK terms before being added to the running total (bounded f32 rounding growth for
// large P).
// Needs common.wgsl and a pattern loader (pat_f32.wgsl or pat_f16.wgsl).

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read_write> ys: array<f32>;

// Workgroup size (SUM_WG on the host).
const WG: u32 = 64u;
// Terms per block of the sum (SUM_BLOCK on the host).
const BLOCK: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q0 = wid.y * 4u;
    let n = params.dim;
    let i = wid.x * WG + lid.x;
    if i >= n {
        return;
    }
    let last = params.batch - 1u;
    let qs = vec4<u32>(q0, min(q0 + 1u, last), min(q0 + 2u, last), min(q0 + 3u, last));
    let wrows = qs * params.p_total + params.chunk_base;
    var total = vec4<f32>(0.0);
    for (var m0 = 0u; m0 < params.chunk_rows; m0 += BLOCK) {
        let end = min(m0 + BLOCK, params.chunk_rows);
        var block = vec4<f32>(0.0);
        for (var mu = m0; mu < end; mu++) {
            let w = vec4<f32>(
                weights[wrows.x + mu],
                weights[wrows.y + mu],
                weights[wrows.z + mu],
                weights[wrows.w + mu],
            );
            if any(w != vec4<f32>(0.0)) {
                block += w * load_pat(mu, i);
            }
        }
        total += block;
    }
    for (var k = 0u; k < min(4u, params.batch - q0); k++) {
        ys[qs[k] * n + i] += total[k];
    }
}
