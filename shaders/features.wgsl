// Random-feature dense associative memory (DrDAM): feature sums over stored patterns and
// the approximate energy's value and gradient. KIND 0 = Fourier (cos, sin), 1 = positive
// exponential. Results are raw sums; the host applies the normalisation c of phi
// (crates/core/src/features.rs has the maths).
//
// `feature_sum`: one invocation per frequency j, summing over a block of rows:
//   Fourier: sums[block, j] = sum cos(w_j . x_r), sums[block, F + j] = sum sin(w_j . x_r);
//   positive: sums[block, j] = sum exp(sqrt(beta) w_j . x_r - beta |x_r|^2).
// `value_grad`: one workgroup per query: s = sum_j T_j phi_j / c and grad s / c.

struct FParams {
    dim: u32,
    freqs: u32,
    features: u32,
    rows: u32,
    first_row: u32,
    block: u32,
    kind: u32,
    beta: f32,
}

@group(0) @binding(0) var<uniform> fp: FParams;
@group(0) @binding(1) var<storage, read> omega: array<f32>;
@group(0) @binding(2) var<storage, read> xs: array<f32>;
@group(0) @binding(3) var<storage, read_write> sums: array<f32>;
@group(0) @binding(4) var<storage, read> weights: array<f32>;
@group(0) @binding(5) var<storage, read_write> coefs: array<f32>;
@group(0) @binding(6) var<storage, read_write> values: array<f32>;
@group(0) @binding(7) var<storage, read_write> grads: array<f32>;

// Workgroup size of both entry points (FEATURES_WG on the host).
const WG: u32 = 64u;
var<workgroup> red: array<f32, WG>;

fn project(j: u32, row: u32) -> f32 {
    var u = 0.0;
    for (var i = 0u; i < fp.dim; i++) {
        u += omega[j * fp.dim + i] * xs[row * fp.dim + i];
    }
    return u;
}

// The positive random feature e^{√β u − β |x|²} of a projection u = ω·x (KIND 1).
fn positive_feature(u: f32, norm2: f32) -> f32 {
    return exp(sqrt(fp.beta) * u - fp.beta * norm2);
}

fn norm2(row: u32) -> f32 {
    var s = 0.0;
    for (var i = 0u; i < fp.dim; i++) {
        let v = xs[row * fp.dim + i];
        s += v * v;
    }
    return s;
}

@compute @workgroup_size(WG)
fn feature_sum(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if j >= fp.freqs {
        return;
    }
    var a = 0.0;
    var b = 0.0;
    for (var r = fp.first_row; r < fp.first_row + fp.rows; r++) {
        let u = project(j, r);
        if fp.kind == 0u {
            a += cos(u);
            b += sin(u);
        } else {
            a += positive_feature(u, norm2(r));
        }
    }
    sums[fp.block * fp.features + j] = a;
    if fp.kind == 0u {
        sums[fp.block * fp.features + fp.freqs + j] = b;
    }
}

@compute @workgroup_size(WG)
fn value_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = wid.x;
    let t = lid.x;
    let nx = norm2(q);
    var s = 0.0;
    for (var j = t; j < fp.freqs; j += WG) {
        let u = project(j, q);
        var coef = 0.0;
        if fp.kind == 0u {
            s += weights[j] * cos(u) + weights[fp.freqs + j] * sin(u);
            coef = weights[fp.freqs + j] * cos(u) - weights[j] * sin(u);
        } else {
            let p = positive_feature(u, nx);
            s += weights[j] * p;
            coef = weights[j] * p * sqrt(fp.beta);
        }
        coefs[q * fp.freqs + j] = coef;
    }
    red[t] = s;
    storageBarrier();
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride >> 1u) {
        if t < stride {
            red[t] += red[t + stride];
        }
        workgroupBarrier();
    }
    let total = red[0];
    for (var i = t; i < fp.dim; i += WG) {
        var g = 0.0;
        for (var j = 0u; j < fp.freqs; j++) {
            g += coefs[q * fp.freqs + j] * omega[j * fp.dim + i];
        }
        if fp.kind == 1u {
            g -= 2.0 * fp.beta * xs[q * fp.dim + i] * total;
        }
        grads[q * fp.dim + i] = g;
    }
    if t == 0u {
        values[q] = total;
    }
}
