// Separation over a full row of similarities (one workgroup per query) for the
// separations that are not streamed: SEP 0 = Polynomial, 1 = RectifiedPolynomial,
// 2 = TopK (Max is TopK with k = 1), 3 = LogSumRelu.
//
// Reads scores[q, 0..P), writes the energy E(x_q), the index of the most similar pattern
// (ties -> lowest index), and overwrites the row with the update weights w = F'(s)
// (TopK: 1/k on the k largest, ties to the lower index, found by an exact 4 x 8-bit radix
// select on order-preserving keys). LogSumRelu: the weights are 1 on the support
// {mu : relu_kernel(beta, s_mu) > 0} and 0 elsewhere, support[q] holds its size (the
// finalize pass divides the sum by it, or keeps the state where it is 0), and the energy
// row holds the sum of the kernels (the host turns it into -log(sum + eps) / beta, +inf
// for an empty support). Needs common.wgsl and math.wgsl.

override SEP: u32 = 0u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> scores: array<f32>;
@group(0) @binding(2) var<uniform> step: Step;
@group(0) @binding(3) var<storage, read_write> energy: array<f32>;
@group(0) @binding(4) var<storage, read_write> nearest: array<u32>;
@group(0) @binding(5) var<storage, read_write> support: array<u32>;

// Workgroup size (SEPARATION_WG on the host).
const WG: u32 = 256u;
// Bins of the radix select (8 bits per round), one per invocation.
const BINS: u32 = 256u;
const_assert WG == BINS;

var<workgroup> red_f: array<f32, WG>;
var<workgroup> red_s: array<f32, WG>;
var<workgroup> red_i: array<u32, WG>;
var<workgroup> hist: array<atomic<u32>, BINS>;
var<workgroup> scan: array<u32, WG>;
var<workgroup> sel_prefix: u32;
var<workgroup> sel_remaining: u32;

// Order-preserving map from f32 to u32 (larger float -> larger key, -0 < +0).
fn key_of(s: f32) -> u32 {
    let u = bitcast<u32>(s);
    if (u & 0x80000000u) != 0u {
        return ~u;
    }
    return u | 0x80000000u;
}

// Sum of red_f over the workgroup (result valid in every invocation).
fn reduce_sum(t: u32, v: f32) -> f32 {
    red_f[t] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride >> 1u) {
        if t < stride {
            red_f[t] += red_f[t + stride];
        }
        workgroupBarrier();
    }
    let total = red_f[0];
    workgroupBarrier();
    return total;
}

// Sum of counts over the workgroup, in `scan` (result valid in every invocation).
fn reduce_count(t: u32, v: u32) -> u32 {
    scan[t] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride >> 1u) {
        if t < stride {
            scan[t] += scan[t + stride];
        }
        workgroupBarrier();
    }
    let total = scan[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = wid.x;
    let t = lid.x;
    let p = params.p_total;
    let row = q * p;

    // Pass 1: nearest pattern; for polynomials and LogSumRelu also the energy and the
    // weights (and the support's size).
    var best_s = 0.0;
    var best_i = NONE;
    var e_part = 0.0;
    var count = 0u;
    for (var mu = t; mu < p; mu += WG) {
        let s = scores[row + mu];
        if better(s, mu, best_s, best_i) {
            best_s = s;
            best_i = mu;
        }
        if SEP == 0u || SEP == 1u {
            e_part += poly_f(s, params.degree, SEP == 1u);
            scores[row + mu] = poly_f_prime(s, params.degree, SEP == 1u);
        }
        if SEP == 3u {
            let k = relu_kernel(params.beta, s);
            let inside = k > 0.0;
            e_part += k;
            count += select(0u, 1u, inside);
            scores[row + mu] = select(0.0, 1.0, inside);
        }
    }
    red_s[t] = best_s;
    red_i[t] = best_i;
    workgroupBarrier();
    if t == 0u {
        var bs = red_s[0];
        var bi = red_i[0];
        for (var j = 1u; j < WG; j++) {
            if better(red_s[j], red_i[j], bs, bi) {
                bs = red_s[j];
                bi = red_i[j];
            }
        }
        nearest[q] = bi;
    }
    if SEP == 3u {
        let total = reduce_sum(t, e_part);
        let size = reduce_count(t, count);
        if t == 0u {
            energy[step.row * params.batch + q] = total;
            support[q] = size;
        }
        return;
    }
    if SEP != 2u {
        let total = reduce_sum(t, e_part);
        if t == 0u {
            energy[step.row * params.batch + q] = -total;
        }
        return;
    }

    // TopK: find the key of the k-th largest score, one byte at a time.
    var prefix = 0u;
    var mask = 0u;
    if t == 0u {
        sel_remaining = params.k;
    }
    for (var round = 0u; round < 4u; round++) {
        let shift = 24u - 8u * round;
        atomicStore(&hist[t], 0u);
        workgroupBarrier();
        for (var mu = t; mu < p; mu += WG) {
            let key = key_of(scores[row + mu]);
            if (key & mask) == prefix {
                atomicAdd(&hist[(key >> shift) & (BINS - 1u)], 1u);
            }
        }
        workgroupBarrier();
        if t == 0u {
            var remaining = sel_remaining;
            var bin = BINS - 1u;
            loop {
                let c = atomicLoad(&hist[bin]);
                if c >= remaining || bin == 0u {
                    break;
                }
                remaining -= c;
                bin -= 1u;
            }
            sel_remaining = remaining;
            sel_prefix = prefix | (bin << shift);
        }
        workgroupBarrier();
        prefix = sel_prefix;
        mask = mask | ((BINS - 1u) << shift);
        workgroupBarrier();
    }
    // `prefix` is now the k-th largest key; take every larger key and the first
    // `remaining` equal ones in index order (an exclusive scan per block of WG).
    let threshold = prefix;
    let take_equal = sel_remaining;
    var taken = 0u;
    var e_sum = 0.0;
    let w = 1.0 / f32(params.k);
    for (var b0 = 0u; b0 < p; b0 += WG) {
        let mu = b0 + t;
        var s = 0.0;
        var key = 0u;
        if mu < p {
            s = scores[row + mu];
            key = key_of(s);
        }
        let eq = mu < p && key == threshold;
        scan[t] = select(0u, 1u, eq);
        workgroupBarrier();
        for (var stride = 1u; stride < WG; stride = stride << 1u) {
            var add = 0u;
            if t >= stride {
                add = scan[t - stride];
            }
            workgroupBarrier();
            scan[t] += add;
            workgroupBarrier();
        }
        let rank = scan[t] - select(0u, 1u, eq);
        let selected = mu < p && (key > threshold || (eq && taken + rank < take_equal));
        if mu < p {
            scores[row + mu] = select(0.0, w, selected);
        }
        if selected {
            e_sum += s;
        }
        taken += scan[WG - 1u];
        workgroupBarrier();
    }
    let total = reduce_sum(t, e_sum);
    if t == 0u {
        energy[step.row * params.batch + q] = -total * w;
    }
}
