// Tiled similarity: scores[q, chunk_base + mu] = s(x_q, xi_mu) for one pattern chunk.
// A 16x16 workgroup computes a 16-query x 16-pattern tile; query and pattern slices of
// 16 coordinates are staged in workgroup memory. Needs common.wgsl, sim.wgsl and a pattern loader (pat_f32.wgsl or pat_f16.wgsl).

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> xs: array<f32>;
@group(0) @binding(3) var<storage, read_write> scores: array<f32>;

// Queries and patterns per tile, and the workgroup's side (SIM_TILE on the host).
const TILE: u32 = 16u;
var<workgroup> xt: array<array<f32, TILE>, TILE>;
var<workgroup> pt: array<array<f32, TILE>, TILE>;

@compute @workgroup_size(TILE, TILE, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    // Pattern tiles are spread over x and y (at most 65535 per dimension), query tiles over z.
    let tile = wid.x + wid.y * nwg.x;
    let mu0 = tile * TILE;
    let q0 = wid.z * TILE;
    let n = params.dim;
    let mu = mu0 + lid.x;
    let q = q0 + lid.y;
    var acc = 0.0;
    for (var k0 = 0u; k0 < n; k0 += TILE) {
        let k = k0 + lid.x;
        let qr = q0 + lid.y;
        let pr = mu0 + lid.y;
        var xv = 0.0;
        if qr < params.batch && k < n {
            xv = xs[qr * n + k];
        }
        var pv = 0.0;
        if pr < params.chunk_rows && k < n {
            pv = load_pat(pr, k);
        }
        xt[lid.y][lid.x] = xv;
        pt[lid.y][lid.x] = pv;
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk++) {
            acc += sim_term(pt[lid.x][kk], xt[lid.y][kk]);
        }
        workgroupBarrier();
    }
    if mu < params.chunk_rows && q < params.batch {
        scores[q * params.p_total + params.chunk_base + mu] = finish_similarity(acc);
    }
}
