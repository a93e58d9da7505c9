// α-entmax weights over a full row of similarities (one workgroup per query), the
// separation Separation::Entmax { beta, alpha } with 1 < α ≤ 2 (α = 2: sparsemax); the
// device twin of dam_core::entmax in f32. ALPHA_BITS holds the bits of α (an f32).
//
// Reads scores[q, 0..P) and the state xs[q, 0..N), finds the largest score m and the
// nearest pattern (ties -> lowest index), then the threshold τ of the shifted scores
// y = β(s − m) ≤ 0 by BISECTIONS halvings of [−1, 0] on Σ_j [(α − 1) y_j − τ]_+^{1/(α−1)}
// = 1 (a workgroup-wide reduction each), and overwrites the row with the weights
// p_j = [(α − 1) y_j − τ]_+^{1/(α−1)} normalised to Σ p = 1. At α = 2 the support found by
// bisection is refined exactly: REFINES rounds of τ = (Σ_{y > τ} y − 1)/#{y > τ} from
// below (each round keeps τ at or below the exact threshold and reaches it once the
// support is right), then p = [y − τ]_+. Writes the energy
// E(x) = −β⁻¹ Ψ*(βs) + ½‖x‖² = −m − (pᵀy + (1 − Σ p^α)/(α(α − 1)))/β + ½‖x‖².
// A NaN or +∞ score, or a row whose scores are all −∞, gives NaN weights and a NaN
// energy (the finalize pass then reports the state as overflowed). Needs common.wgsl and
// math.wgsl.

override ALPHA_BITS: u32 = 0x3fc00000u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> scores: array<f32>;
@group(0) @binding(2) var<uniform> step: Step;
@group(0) @binding(3) var<storage, read_write> energy: array<f32>;
@group(0) @binding(4) var<storage, read_write> nearest: array<u32>;
@group(0) @binding(5) var<storage, read> xs: array<f32>;

// Workgroup size (SEPARATION_WG on the host).
const WG: u32 = 256u;
// Halvings of the threshold's bracket (ENTMAX_BISECTIONS on the host): 2⁻⁴⁰ is below
// the f32 resolution of τ ∈ [−1, 0].
const BISECTIONS: u32 = 40u;
// Exact refinements of the sparsemax threshold (ENTMAX_REFINES on the host).
const REFINES: u32 = 3u;

var<workgroup> red_v: array<vec2<f32>, WG>;
var<workgroup> red_i: array<u32, WG>;
var<workgroup> red_bad: array<u32, WG>;
var<workgroup> sh_bad: u32;

// Sums of v over the workgroup, both lanes (valid in every invocation).
fn reduce2(t: u32, v: vec2<f32>) -> vec2<f32> {
    red_v[t] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride >> 1u) {
        if t < stride {
            red_v[t] += red_v[t + stride];
        }
        workgroupBarrier();
    }
    let total = red_v[0];
    workgroupBarrier();
    return total;
}

fn alpha() -> f32 {
    return bitcast<f32>(ALPHA_BITS);
}

// The unnormalised weight [(α − 1) y − τ]_+^{1/(α−1)} of a shifted score y.
fn weight(y: f32, a: f32, inv: f32, tau: f32) -> f32 {
    let t = a * y - tau;
    if !(t > 0.0) {
        return 0.0;
    }
    if ALPHA_BITS == 0x40000000u {
        return t;
    }
    return pow(t, inv);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = wid.x;
    let t = lid.x;
    let p = params.p_total;
    let row = q * p;
    let beta = params.beta;
    let al = alpha();
    let a = al - 1.0;
    let inv = 1.0 / a;
    let sparsemax = ALPHA_BITS == 0x40000000u;

    // The largest score, the nearest pattern, and whether a score is NaN or +∞.
    var best_s = 0.0;
    var best_i = NONE;
    var bad = 0u;
    for (var mu = t; mu < p; mu += WG) {
        let s = scores[row + mu];
        if !is_finite_f32(s) && !(s < 0.0) {
            bad = 1u;
        }
        if better(s, mu, best_s, best_i) {
            best_s = s;
            best_i = mu;
        }
    }
    red_v[t] = vec2<f32>(best_s, 0.0);
    red_i[t] = best_i;
    red_bad[t] = bad;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride >> 1u) {
        if t < stride {
            let o = t + stride;
            if better(red_v[o].x, red_i[o], red_v[t].x, red_i[t]) {
                red_v[t] = red_v[o];
                red_i[t] = red_i[o];
            }
            red_bad[t] = max(red_bad[t], red_bad[o]);
        }
        workgroupBarrier();
    }
    let m = red_v[0].x;
    if t == 0u {
        nearest[q] = red_i[0];
        sh_bad = select(red_bad[0], 1u, !is_finite_f32(m));
    }
    let broken = workgroupUniformLoad(&sh_bad);
    let e_at = step.row * params.batch + q;
    if broken != 0u {
        let nan = bitcast<f32>(0x7fc00000u);
        for (var mu = t; mu < p; mu += WG) {
            scores[row + mu] = nan;
        }
        if t == 0u {
            energy[e_at] = nan;
        }
        return;
    }

    // τ by bisection on [lo, hi] = [−1, 0]: the mass is ≥ 1 at lo, < 1 at hi.
    var lo = -1.0;
    var hi = 0.0;
    for (var it = 0u; it < BISECTIONS; it++) {
        let mid = 0.5 * (lo + hi);
        var mass = 0.0;
        for (var mu = t; mu < p; mu += WG) {
            mass += weight(beta * (scores[row + mu] - m), a, inv, mid);
        }
        if reduce2(t, vec2<f32>(mass, 0.0)).x >= 1.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    var tau = lo;
    var scale = 1.0;
    if sparsemax {
        // Michelot's step from below: the closed form on the support {y > τ}.
        for (var it = 0u; it < REFINES; it++) {
            var part = vec2<f32>(0.0);
            for (var mu = t; mu < p; mu += WG) {
                let y = beta * (scores[row + mu] - m);
                if y > tau {
                    part += vec2<f32>(y, 1.0);
                }
            }
            let total = reduce2(t, part);
            tau = (total.x - 1.0) / max(total.y, 1.0);
        }
    } else {
        var mass = 0.0;
        for (var mu = t; mu < p; mu += WG) {
            mass += weight(beta * (scores[row + mu] - m), a, inv, tau);
        }
        scale = 1.0 / reduce2(t, vec2<f32>(mass, 0.0)).x;
    }

    // The weights, pᵀy and Σ p^α.
    var dot_pow = vec2<f32>(0.0);
    for (var mu = t; mu < p; mu += WG) {
        let y = beta * (scores[row + mu] - m);
        let w = weight(y, a, inv, tau) * scale;
        if w > 0.0 {
            dot_pow += vec2<f32>(w * y, select(pow(w, al), w * w, sparsemax));
        }
        scores[row + mu] = w;
    }
    var norm_sq = 0.0;
    let n = params.dim;
    for (var i = t; i < n; i += WG) {
        let v = xs[q * n + i];
        norm_sq += v * v;
    }
    let sums = reduce2(t, dot_pow);
    let norm = reduce2(t, vec2<f32>(norm_sq, 0.0)).x;
    if t == 0u {
        let entropy = (1.0 - sums.y) / (al * a);
        energy[e_at] = -m - (sums.x + entropy) / beta + 0.5 * norm;
    }
}
