// End of one update step, one workgroup per query: scale, project (PROJ 0 = none,
// 1 = sphere |x| = sqrt(N), 2 = sign with sign(0) = +1), measure the largest coordinate
// change, write the new state, and keep the per-query status
// [active, steps, converged, overflowed]. Queries still active bump `pending`, the one
// value the host reads back per step. LSR (the log-sum-ReLU separation): the sum of the
// support's patterns is divided by the support's size, support[q] (separation.wgsl), and a
// state whose support is empty stays where it is, unprojected. Needs common.wgsl and
// math.wgsl.

override PROJ: u32 = 0u;
override LSR: bool = false;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ys: array<f32>;
@group(0) @binding(2) var<storage, read_write> xs: array<f32>;
@group(0) @binding(3) var<storage, read> log_scale: array<f32>;
@group(0) @binding(4) var<storage, read_write> status: array<u32>;
@group(0) @binding(5) var<storage, read_write> pending: atomic<u32>;
@group(0) @binding(6) var<storage, read> support: array<u32>;

// Workgroup size (FINALIZE_WG on the host).
const WG: u32 = 64u;
var<workgroup> red: array<f32, WG>;
var<workgroup> active_sh: u32;

fn reduce(t: u32, v: f32, take_max: bool) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride >> 1u) {
        if t < stride {
            if take_max {
                red[t] = max(red[t], red[t + stride]);
            } else {
                red[t] += red[t + stride];
            }
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// The raw update for coordinate i, with the exponential log-domain scale applied
// when there is no projection (projections are scale invariant); LSR: the mean of the
// support (0 for an empty support, whose state is kept).
fn raw(q: u32, i: u32) -> f32 {
    let y = ys[q * params.dim + i];
    if LSR {
        let size = support[q];
        if size == 0u {
            return 0.0;
        }
        return y / f32(size);
    }
    let ls = log_scale[q];
    if PROJ != 0u || ls == 0.0 || y == 0.0 {
        return y;
    }
    return sign(y) * exp(ls + log(abs(y)));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = wid.x;
    let t = lid.x;
    let n = params.dim;
    if t == 0u {
        active_sh = status[q * 4u];
    }
    let is_active = workgroupUniformLoad(&active_sh);
    if is_active == 0u {
        return;
    }
    // LSR with an empty support: the state does not move.
    let keep = LSR && support[q] == 0u;
    var scale = 1.0;
    if PROJ == 1u {
        // |y| computed as max|y| * |y / max|y||, safe from overflow.
        var big = 0.0;
        for (var i = t; i < n; i += WG) {
            big = max(big, abs(raw(q, i)));
        }
        big = reduce(t, big, true);
        var ss = 0.0;
        if big > 0.0 {
            for (var i = t; i < n; i += WG) {
                let v = raw(q, i) / big;
                ss += v * v;
            }
        }
        ss = reduce(t, ss, false);
        if big > 0.0 {
            scale = sqrt(f32(n)) / (big * sqrt(ss));
        }
    }
    var delta = 0.0;
    var bad = 0.0;
    for (var i = t; i < n; i += WG) {
        var v = raw(q, i);
        if PROJ == 1u {
            v = v * scale;
        } else if PROJ == 2u {
            v = select(-1.0, 1.0, v >= 0.0);
        }
        if keep {
            v = xs[q * n + i];
        }
        if !is_finite_f32(v) {
            bad = 1.0;
        } else {
            delta = max(delta, abs(v - xs[q * n + i]));
        }
        xs[q * n + i] = v;
    }
    delta = reduce(t, delta, true);
    bad = reduce(t, bad, true);
    if t == 0u {
        status[q * 4u + 1u] += 1u;
        if bad > 0.0 {
            status[q * 4u] = 0u;
            status[q * 4u + 3u] = 1u;
        } else if delta <= params.tol {
            status[q * 4u] = 0u;
            status[q * 4u + 2u] = 1u;
        } else {
            atomicAdd(&pending, 1u);
        }
    }
}
