// Row-wise softmax of a score matrix written by matmul.wgsl with the online-softmax
// partials epilogue (EPI = 3): one workgroup per row folds the row's tile partials
// (max, Σ e^{v − max}) into m and ℓ, writes lse[r] = m + log ℓ, and rewrites the row in
// place as weights e^{v − m} / ℓ.

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

const WG: u32 = 64u;
const LOWEST: f32 = -3.40282347e38;
var<workgroup> red_m: array<f32, 64>;
var<workgroup> red_l: array<f32, 64>;

@compute @workgroup_size(64, 1, 1)
fn softmax_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = wid.x;   // dispatched with exactly rp.rows workgroups
    var m = LOWEST;
    var l = 0.0;
    for (var t = lid.x; t < rp.tiles; t += WG) {
        let s = stats[r * rp.tiles + t];
        let m_new = max(m, s.x);
        l = l * exp(m - m_new) + s.y * exp(s.x - m_new);
        m = m_new;
    }
    red_m[lid.x] = m;
    red_l[lid.x] = l;
    workgroupBarrier();
    var m_all = LOWEST;
    for (var t = 0u; t < WG; t++) {
        m_all = max(m_all, red_m[t]);
    }
    var l_all = 0.0;
    for (var t = 0u; t < WG; t++) {
        l_all += red_l[t] * exp(red_m[t] - m_all);
    }
    if lid.x == 0u {
        lse[r] = m_all + log(l_all);
    }
    let inv = 1.0 / l_all;
    for (var j = lid.x; j < rp.cols; j += WG) {
        let at = r * rp.ldc + j;
        c[at] = exp(c[at] - m_all) * inv;
    }
}
