// Weighted sum of one pattern chunk: ys[q, i] += sum_{mu in chunk} w[q, chunk_base + mu] * xi[mu, i].
// One workgroup covers WG coordinates of one query; weights are staged in workgroup memory
// a tile at a time, zero weights are skipped (TopK), and the sum is accumulated in blocks
// of 4 tiles before being added to the running total (bounded f32 rounding growth for
// large P). Needs common.wgsl.

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> pat: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read_write> ys: array<f32>;

const WG: u32 = 64u;
var<workgroup> w_sh: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    let q = wid.y;
    let n = params.dim;
    let i = wid.x * WG + t;
    let wrow = q * params.p_total + params.chunk_base;
    var total = 0.0;
    var block = 0.0;
    var tiles = 0u;
    for (var m0 = 0u; m0 < params.chunk_rows; m0 += WG) {
        let count = min(WG, params.chunk_rows - m0);
        var wv = 0.0;
        if t < count {
            wv = weights[wrow + m0 + t];
        }
        w_sh[t] = wv;
        workgroupBarrier();
        if i < n {
            for (var j = 0u; j < count; j++) {
                let wj = w_sh[j];
                if wj != 0.0 {
                    block += wj * pat[(m0 + j) * n + i];
                }
            }
        }
        tiles += 1u;
        if tiles == 4u {
            total += block;
            block = 0.0;
            tiles = 0u;
        }
        workgroupBarrier();
    }
    if i < n {
        ys[q * n + i] += total + block;
    }
}
