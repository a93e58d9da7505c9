// Online softmax over tiles of at most 64 scores, shared by the streaming kernels
// (stream.wgsl, procedural.wgsl), for four independent lanes at once (four queries of a
// query tile; one-query kernels use lane x). Per lane the state keeps m = max z and
// l = sum e^{z - m}; each tile rescales what came before by e^{m_old - m_new}.

// Scores and weights of one tile, per group of four lanes: z_sh[g][t], p_sh[g][t]. The
// number of groups is a pipeline constant (stream.wgsl uses two for eight queries).
override GROUPS: u32 = 1u;
alias Tile = array<vec4<f32>, 64>;
var<workgroup> z_sh: array<Tile, GROUPS>;
var<workgroup> p_sh: array<Tile, GROUPS>;

struct Online {
    m: vec4<f32>,
    l: vec4<f32>,
    started: bool,
}

fn online_start() -> Online {
    return Online(vec4<f32>(0.0), vec4<f32>(0.0), false);
}

// Folds one tile into `state`, using lane group g of the workgroup arrays: invocation t
// contributes scores z (when `valid`; the first `count` invocations are valid). Leaves
// p_sh[g][j] = e^{z_j - m_new} for the caller's weighted sums and returns the factor
// e^{m_old - m_new} (0 for the first tile) to apply to the caller's accumulators. Call from
// uniform control flow: it holds two barriers.
fn online_tile(
    state: ptr<function, Online>,
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
    var m_new = tile_max;
    var scale = vec4<f32>(0.0);
    if (*state).started {
        m_new = max((*state).m, tile_max);
        scale = exp((*state).m - m_new);
    }
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
    (*state).l = (*state).l * scale + tile_sum;
    (*state).m = m_new;
    (*state).started = true;
    return scale;
}
