// Fused streaming retrieval for the Softmax and Exponential separations.
//
// `partial`: one workgroup per (tile of LANES ≤ 4 queries, split of the pattern axis). It streams tiles of WG
// patterns, computes their similarities, and keeps the online-softmax state: the running
// max m of z = beta * s, l = sum e^{z - m}, and acc = sum e^{z - m} xi (rescaled when m
// grows). The B x P similarity matrix is never written. It also tracks the most similar
// pattern (ties -> lowest index).
//
// `merge`: one workgroup per query combines the partial (m, l, acc) triples of all splits:
// y = acc / l, lse = M + log L. MODE 0 (softmax): energy = -lse / beta + |x|^2 / 2 and the
// update is y. MODE 1 (exponential): the energy row holds lse (the host returns -e^lse in
// f64) and the update is y * e^{lse + log beta}, kept as log_scale for finalize.wgsl.
// Needs common.wgsl, sim.wgsl, online.wgsl and a pattern loader (pat_f32.wgsl or
// pat_f16.wgsl).

override MODE: u32 = 0u;
// Queries per workgroup in `partial` (1..4, the used lanes of each vec4): min(4, B), so a
// single query does not pay for four lanes of similarity arithmetic.
override LANES: u32 = 4u;

struct Stat {
    m: f32,
    l: f32,
    best_s: f32,
    best_i: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> xs: array<f32>;
@group(0) @binding(3) var<storage, read_write> stats: array<Stat>;
@group(0) @binding(4) var<storage, read_write> accs: array<f32>;
@group(0) @binding(5) var<uniform> step: Step;
@group(0) @binding(6) var<storage, read_write> ys: array<f32>;
@group(0) @binding(7) var<storage, read_write> energy: array<f32>;
@group(0) @binding(8) var<storage, read_write> nearest: array<u32>;
@group(0) @binding(9) var<storage, read_write> log_scale: array<f32>;

const WG: u32 = 64u;

var<workgroup> best_s_sh: array<vec4<f32>, 64>;
var<workgroup> best_i_sh: array<vec4<u32>, 64>;

// `better` of common.wgsl, lane by lane.
fn better4(s: vec4<f32>, i: vec4<u32>, bs: vec4<f32>, bi: vec4<u32>) -> vec4<bool> {
    let none = vec4<u32>(NONE);
    return (i != none) & ((bi == none) | (s > bs) | ((s == bs) & (i < bi)));
}

fn similarity4(a: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(
        finish_similarity(a.x),
        finish_similarity(a.y),
        finish_similarity(a.z),
        finish_similarity(a.w),
    );
}

@compute @workgroup_size(64)
fn partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    // A tile of LANES queries (the lanes of each vec4): every pattern loaded is used for
    // each of them, in the similarity and in the weighted sum. Lanes past the batch read
    // the last query's row and are never stored.
    let q0 = wid.y * LANES;
    let split = wid.x;
    let t = lid.x;
    let n = params.dim;
    let start = split * params.split_len;
    let end = min(start + params.split_len, params.chunk_rows);
    let last = params.batch - 1u;
    let qs = vec4<u32>(q0, min(q0 + 1u, last), min(q0 + 2u, last), min(q0 + 3u, last));
    let lanes = min(LANES, params.batch - q0);
    let rows = qs * n;
    let slots = qs * params.splits_total + params.split_base + split;
    let offs = slots * n;
    for (var i = t; i < n; i += WG) {
        for (var k = 0u; k < lanes; k++) {
            accs[offs[k] + i] = 0.0;
        }
    }
    var state = online_start();
    var best_s = vec4<f32>(0.0);
    var best_i = vec4<u32>(NONE);
    for (var t0 = start; t0 < end; t0 += WG) {
        let mu = t0 + t;
        let count = min(WG, end - t0);
        var z = vec4<f32>(0.0);
        if mu < end {
            var a = vec4<f32>(0.0);
            for (var i = 0u; i < n; i++) {
                let v = load_pat(mu, i);
                // LANES is a pipeline constant: the unused lanes compile away.
                a.x += sim_term(v, xs[rows.x + i]);
                if LANES > 1u {
                    a.y += sim_term(v, xs[rows.y + i]);
                }
                if LANES > 2u {
                    a.z += sim_term(v, xs[rows.z + i]);
                }
                if LANES > 3u {
                    a.w += sim_term(v, xs[rows.w + i]);
                }
            }
            let s = similarity4(a);
            z = params.beta * s;
            let wins = better4(s, vec4<u32>(params.chunk_base + mu), best_s, best_i);
            best_s = select(best_s, s, wins);
            best_i = select(best_i, vec4<u32>(params.chunk_base + mu), wins);
        }
        let scale = online_tile(&state, t, count, z, mu < end);
        for (var i = t; i < n; i += WG) {
            var ti = vec4<f32>(0.0);
            for (var j = 0u; j < count; j++) {
                let v = load_pat(t0 + j, i);
                if LANES == 1u {
                    ti.x += p_sh[j].x * v;
                } else {
                    ti += p_sh[j] * v;
                }
            }
            for (var k = 0u; k < lanes; k++) {
                accs[offs[k] + i] = accs[offs[k] + i] * scale[k] + ti[k];
            }
        }
        workgroupBarrier();
    }
    best_s_sh[t] = best_s;
    best_i_sh[t] = best_i;
    workgroupBarrier();
    if t == 0u {
        var bs = best_s_sh[0];
        var bi = best_i_sh[0];
        for (var j = 1u; j < WG; j++) {
            // Thread j's best index may be NONE (no pattern); it then never wins.
            let wins = better4(best_s_sh[j], best_i_sh[j], bs, bi);
            bs = select(bs, best_s_sh[j], wins);
            bi = select(bi, best_i_sh[j], wins);
        }
        for (var k = 0u; k < lanes; k++) {
            stats[slots[k]] = Stat(state.m[k], state.l[k], bs[k], bi[k]);
        }
    }
}

@compute @workgroup_size(64)
fn merge(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = wid.x;
    let t = lid.x;
    let n = params.dim;
    let splits = params.splits_total;
    let base = q * splits;
    var big_m = stats[base].m;
    for (var j = 1u; j < splits; j++) {
        big_m = max(big_m, stats[base + j].m);
    }
    var big_l = 0.0;
    for (var j = 0u; j < splits; j++) {
        big_l += stats[base + j].l * exp(stats[base + j].m - big_m);
    }
    for (var i = t; i < n; i += WG) {
        var a = 0.0;
        for (var j = 0u; j < splits; j++) {
            a += accs[(base + j) * n + i] * exp(stats[base + j].m - big_m);
        }
        ys[q * n + i] = a / big_l;
    }
    if t == 0u {
        let lse = big_m + log(big_l);
        var bs = stats[base].best_s;
        var bi = stats[base].best_i;
        for (var j = 1u; j < splits; j++) {
            let st = stats[base + j];
            if better(st.best_s, st.best_i, bs, bi) {
                bs = st.best_s;
                bi = st.best_i;
            }
        }
        nearest[q] = bi;
        if MODE == 0u {
            var norm2 = 0.0;
            for (var i = 0u; i < n; i++) {
                let v = xs[q * n + i];
                norm2 += v * v;
            }
            energy[step.row * params.batch + q] = -lse / params.beta + 0.5 * norm2;
            log_scale[q] = 0.0;
        } else {
            energy[step.row * params.batch + q] = lse;
            log_scale[q] = lse + log(params.beta);
        }
    }
}
