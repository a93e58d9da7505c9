// Row-wise softmax of a score matrix written by matmul.wgsl with the online-softmax
// partials epilogue (EPI = 3): one workgroup per row folds the row's tile partials
// (max, Σ e^{v − max}) into m and ℓ, writes lse[r] = m + log ℓ, and rewrites the row in
// place as weights e^{v − m} / ℓ. Needs math.wgsl.

struct RowParams {
    rows: u32,
    cols: u32,
    ldc: u32,
    tiles: u32,     // partials per row
}

@group(0) @binding(0) var<uniform> rp: RowParams;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;

// Workgroup size (SOFTMAX_ROWS_WG on the host).
const WG: u32 = 64u;
var<workgroup> red: array<OnlineLse, WG>;

@compute @workgroup_size(WG)
fn softmax_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = wid.x;   // dispatched with exactly rp.rows workgroups
    var state = lse_empty();
    for (var t = lid.x; t < rp.tiles; t += WG) {
        let s = stats[r * rp.tiles + t];
        state = lse_merge(state, OnlineLse(s.x, s.y));
    }
    red[lid.x] = state;
    workgroupBarrier();
    // The invocations' states merged in two passes (see lse_merge).
    var m_all = LOWEST;
    for (var t = 0u; t < WG; t++) {
        m_all = max(m_all, red[t].m);
    }
    var l_all = 0.0;
    for (var t = 0u; t < WG; t++) {
        l_all += red[t].l * lse_factor(red[t].m, m_all);
    }
    if lid.x == 0u {
        lse[r] = lse_value(OnlineLse(m_all, l_all));
    }
    let inv = 1.0 / l_all;
    for (var j = lid.x; j < rp.cols; j += WG) {
        let at = r * rp.ldc + j;
        c[at] = lse_factor(c[at], m_all) * inv;
    }
}
