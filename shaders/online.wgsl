// Online softmax over tiles of at most WG scores (WG: the workgroup size of the kernel
// composing this file), shared by the streaming kernels (stream.wgsl, procedural.wgsl),
// for four independent lanes at once (four queries of a query tile; one-query kernels use
// lane x). The state and its rescaling are OnlineLse4 of math.wgsl; this file holds the
// tile's workgroup memory and its two reductions.

// Scores and weights of one tile, per group of four lanes: z_sh[g][t], p_sh[g][t]. The
// number of groups is a pipeline constant (stream.wgsl uses two for eight queries).
override GROUPS: u32 = 1u;
alias Tile = array<vec4<f32>, WG>;
var<workgroup> z_sh: array<Tile, GROUPS>;
var<workgroup> p_sh: array<Tile, GROUPS>;

// Folds one tile into `state`, using lane group g of the workgroup arrays: invocation t
// contributes scores z (when `valid`; the first `count` invocations are valid). Leaves
// p_sh[g][j] = e^{z_j - m_new} for the caller's weighted sums and returns the factor
// e^{m_old - m_new} (0 for the first tile) to apply to the caller's accumulators. Call from
// uniform control flow: it holds two barriers.
fn online_tile(
    state: ptr<function, OnlineLse4>,
    g: u32,
    t: u32,
    count: u32,
    z: vec4<f32>,
    valid: bool,
) -> vec4<f32> {
    z_sh[g][t] = z;
    workgroupBarrier();
    var tile_max = z_sh[g][0];
    for (var j = 1u; j < count; j++) {
        tile_max = max(tile_max, z_sh[g][j]);
    }
    let m_new = lse4_reference(*state, tile_max);
    let scale = lse4_factor(*state, m_new);
    var p = vec4<f32>(0.0);
    if valid {
        p = exp(z - m_new);
    }
    p_sh[g][t] = p;
    workgroupBarrier();
    var tile_sum = vec4<f32>(0.0);
    for (var j = 0u; j < count; j++) {
        tile_sum += p_sh[g][j];
    }
    *state = lse4_add(*state, m_new, scale, tile_sum);
    return scale;
}
