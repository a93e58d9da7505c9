// Fused streaming retrieval for the Softmax and Exponential separations.
//
// `partial`: one workgroup per (tile of LANES ≤ 8 queries, split of the pattern axis). It streams tiles of WG
// patterns, computes their similarities, and keeps the online-softmax state: the running
// max m of z = beta * s, l = sum e^{z - m}, and acc = sum e^{z - m} xi (rescaled when m
// grows). The B x P similarity matrix is never written. It also tracks the most similar
// pattern (ties -> lowest index).
//
// `merge`: one workgroup per query combines the partial (m, l, acc) triples of all splits:
// y = acc / l, lse = M + log L. MODE 0 (softmax): energy = -lse / beta + |x|^2 / 2 and the
// update is y. MODE 1 (exponential): the energy row holds lse (the host returns -e^lse in
// f64) and the update is y * e^{lse + log beta}, kept as log_scale for finalize.wgsl.
// Needs common.wgsl, math.wgsl, sim.wgsl, online.wgsl and a pattern loader (pat_*.wgsl).

override MODE: u32 = 0u;
// Queries per workgroup in `partial` (1..8: one or two groups of four vec4 lanes):
// min(8, B), so a single query does not pay for eight lanes of similarity arithmetic.
override LANES: u32 = 8u;

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

// Workgroup size of both entry points (STREAM_WG on the host); also the pattern tile.
const WG: u32 = 64u;
// Row stride of the staged pattern tile: padded by one so that the transposed reads do
// not share banks.
const STAGE_STRIDE: u32 = WG + 1u;

// Pattern-tile staging (STAGED): WG rows × WG coordinates padded to STAGE_STRIDE
// (STAGE_FLOATS = WG · STAGE_STRIDE), and the query tile's coordinates; one float when
// not staged.
override STAGED: bool = false;
override STAGE_FLOATS: u32 = 1u;
var<workgroup> pat_sh: array<f32, STAGE_FLOATS>;
var<workgroup> xq_sh: array<array<vec4<f32>, WG>, GROUPS>;
var<workgroup> best_s_sh: array<array<vec4<f32>, WG>, GROUPS>;
var<workgroup> best_i_sh: array<array<vec4<u32>, WG>, GROUPS>;

fn similarity4(a: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(
        finish_similarity(a.x),
        finish_similarity(a.y),
        finish_similarity(a.z),
        finish_similarity(a.w),
    );
}

// Coordinate i of four query rows (offsets `rows`), for the first `used` lanes; `used`
// comes from the LANES pipeline constant, so the unused lanes compile away.
fn query4(rows: vec4<u32>, i: u32, used: u32) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    r.x = xs[rows.x + i];
    if used > 1u {
        r.y = xs[rows.y + i];
    }
    if used > 2u {
        r.z = xs[rows.z + i];
    }
    if used > 3u {
        r.w = xs[rows.w + i];
    }
    return r;
}

// Similarity terms of pattern entry v against the same coordinate of four queries, for
// the first `used` lanes (a pipeline constant: the rest compile away).
fn terms4(v: f32, x: vec4<f32>, used: u32) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    r.x = sim_term(v, x.x);
    if used > 1u {
        r.y = sim_term(v, x.y);
    }
    if used > 2u {
        r.z = sim_term(v, x.z);
    }
    if used > 3u {
        r.w = sim_term(v, x.w);
    }
    return r;
}

// Thread 0's reduction of the workgroup's best (similarity, index) per lane of group g.
fn best_of(g: u32) -> array<vec4<u32>, 2> {
    var bs = best_s_sh[g][0];
    var bi = best_i_sh[g][0];
    for (var j = 1u; j < WG; j++) {
        // Thread j's best index may be NONE (no pattern); it then never wins.
        let wins = better4(best_s_sh[g][j], best_i_sh[g][j], bs, bi);
        bs = select(bs, best_s_sh[g][j], wins);
        bi = select(bi, best_i_sh[g][j], wins);
    }
    return array<vec4<u32>, 2>(bitcast<vec4<u32>>(bs), bi);
}

@compute @workgroup_size(WG)
fn partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    // A tile of LANES ≤ 8 queries, as two groups of four vec4 lanes ("lo" = queries 0..3,
    // "hi" = 4..7 of the tile): every pattern entry loaded serves all of them, in the
    // similarity and in the weighted sum. Lanes past the batch read the last query's row
    // and are never stored.
    let q0 = wid.y * LANES;
    let split = wid.x;
    let t = lid.x;
    let n = params.dim;
    let start = split * params.split_len;
    let end = min(start + params.split_len, params.chunk_rows);
    let last = params.batch - 1u;
    let lanes = min(LANES, params.batch - q0);
    let lo_used = min(LANES, 4u);
    let hi_used = max(LANES, 4u) - 4u;
    // The hi group's index into the GROUPS-sized workgroup arrays (GROUPS = 2 when
    // LANES > 4; with one group it aliases group 0 and is never used).
    let hi_g = GROUPS - 1u;
    let rows_lo = vec4<u32>(q0, min(q0 + 1u, last), min(q0 + 2u, last), min(q0 + 3u, last)) * n;
    let rows_hi = vec4<u32>(min(q0 + 4u, last), min(q0 + 5u, last), min(q0 + 6u, last), min(q0 + 7u, last)) * n;
    // Lane k's slot: query q0 + k, this split.
    let slot0 = q0 * params.splits_total + params.split_base + split;
    for (var i = t; i < n; i += WG) {
        for (var k = 0u; k < lanes; k++) {
            accs[(slot0 + k * params.splits_total) * n + i] = 0.0;
        }
    }
    var st_lo = lse4_empty();
    var st_hi = lse4_empty();
    var bs_lo = vec4<f32>(0.0);
    var bi_lo = vec4<u32>(NONE);
    var bs_hi = vec4<f32>(0.0);
    var bi_hi = vec4<u32>(NONE);
    for (var t0 = start; t0 < end; t0 += WG) {
        let mu = t0 + t;
        let count = min(WG, end - t0);
        var z_lo = vec4<f32>(0.0);
        var z_hi = vec4<f32>(0.0);
        var a_lo = vec4<f32>(0.0);
        var a_hi = vec4<f32>(0.0);
        if STAGED {
            // Coalesced: the tile's rows are read a WG-wide slice of coordinates at a time
            // (consecutive invocations, consecutive addresses) into workgroup memory, padded
            // to STAGE_STRIDE floats per row so the transposed reads below do not share banks.
            for (var k0 = 0u; k0 < n; k0 += WG) {
                let kc = min(WG, n - k0);
                if t < kc {
                    for (var r = 0u; r < count; r++) {
                        pat_sh[r * STAGE_STRIDE + t] = load_pat(t0 + r, k0 + t);
                    }
                    xq_sh[0][t] = query4(rows_lo, k0 + t, lo_used);
                    if hi_used > 0u {
                        xq_sh[hi_g][t] = query4(rows_hi, k0 + t, hi_used);
                    }
                }
                workgroupBarrier();
                if mu < end {
                    for (var k = 0u; k < kc; k++) {
                        let v = pat_sh[t * STAGE_STRIDE + k];
                        a_lo += terms4(v, xq_sh[0][k], lo_used);
                        if hi_used > 0u {
                            a_hi += terms4(v, xq_sh[hi_g][k], hi_used);
                        }
                    }
                }
                workgroupBarrier();
            }
        } else if mu < end {
            // Each invocation reads its own pattern row (best where loads are gathers anyway,
            // e.g. a CPU rasterizer).
            for (var i = 0u; i < n; i++) {
                let v = load_pat(mu, i);
                a_lo += terms4(v, query4(rows_lo, i, lo_used), lo_used);
                if hi_used > 0u {
                    a_hi += terms4(v, query4(rows_hi, i, hi_used), hi_used);
                }
            }
        }
        if mu < end {
            let g = vec4<u32>(params.chunk_base + mu);
            let s_lo = similarity4(a_lo);
            z_lo = params.beta * s_lo;
            let w_lo = better4(s_lo, g, bs_lo, bi_lo);
            bs_lo = select(bs_lo, s_lo, w_lo);
            bi_lo = select(bi_lo, g, w_lo);
            if hi_used > 0u {
                let s_hi = similarity4(a_hi);
                z_hi = params.beta * s_hi;
                let w_hi = better4(s_hi, g, bs_hi, bi_hi);
                bs_hi = select(bs_hi, s_hi, w_hi);
                bi_hi = select(bi_hi, g, w_hi);
            }
        }
        let scale_lo = online_tile(&st_lo, 0u, t, count, z_lo, mu < end);
        var scale_hi = vec4<f32>(0.0);
        if hi_used > 0u {
            scale_hi = online_tile(&st_hi, hi_g, t, count, z_hi, mu < end);
        }
        for (var i = t; i < n; i += WG) {
            var ti_lo = vec4<f32>(0.0);
            var ti_hi = vec4<f32>(0.0);
            for (var j = 0u; j < count; j++) {
                let v = load_pat(t0 + j, i);
                if LANES == 1u {
                    ti_lo.x += p_sh[0][j].x * v;
                } else {
                    ti_lo += p_sh[0][j] * v;
                }
                if hi_used > 0u {
                    ti_hi += p_sh[hi_g][j] * v;
                }
            }
            for (var k = 0u; k < lanes; k++) {
                let o = (slot0 + k * params.splits_total) * n + i;
                if k < 4u {
                    accs[o] = accs[o] * scale_lo[k] + ti_lo[k];
                } else {
                    accs[o] = accs[o] * scale_hi[k - 4u] + ti_hi[k - 4u];
                }
            }
        }
        workgroupBarrier();
    }
    best_s_sh[0][t] = bs_lo;
    best_i_sh[0][t] = bi_lo;
    if hi_used > 0u {
        best_s_sh[hi_g][t] = bs_hi;
        best_i_sh[hi_g][t] = bi_hi;
    }
    workgroupBarrier();
    if t == 0u {
        let lo = best_of(0u);
        var hi = array<vec4<u32>, 2>(vec4<u32>(0u), vec4<u32>(NONE));
        if hi_used > 0u {
            hi = best_of(hi_g);
        }
        for (var k = 0u; k < lanes; k++) {
            let slot = slot0 + k * params.splits_total;
            if k < 4u {
                stats[slot] = Stat(st_lo.m[k], st_lo.l[k], bitcast<f32>(lo[0][k]), lo[1][k]);
            } else {
                let h = k - 4u;
                stats[slot] = Stat(st_hi.m[h], st_hi.l[h], bitcast<f32>(hi[0][h]), hi[1][h]);
            }
        }
    }
}

@compute @workgroup_size(WG)
fn merge(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = wid.x;
    let t = lid.x;
    let n = params.dim;
    let splits = params.splits_total;
    let base = q * splits;
    // The splits' online-softmax states merged in two passes (see lse_merge).
    var big_m = stats[base].m;
    for (var j = 1u; j < splits; j++) {
        big_m = max(big_m, stats[base + j].m);
    }
    var big_l = 0.0;
    for (var j = 0u; j < splits; j++) {
        big_l += stats[base + j].l * lse_factor(stats[base + j].m, big_m);
    }
    for (var i = t; i < n; i += WG) {
        var a = 0.0;
        for (var j = 0u; j < splits; j++) {
            a += accs[(base + j) * n + i] * lse_factor(stats[base + j].m, big_m);
        }
        ys[q * n + i] = a / big_l;
    }
    if t == 0u {
        let lse = lse_value(OnlineLse(big_m, big_l));
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
