// Streaming log-sum-exp over procedural patterns: pattern mu of query q's run is generated
// from (keys[q], mu) with Philox (philox.wgsl), used, and forgotten, so P = 10^9 needs O(1)
// memory. KIND 0 = spherical, 1 = Gaussian, 2 = binary (+-1), 3 = correlated +-1 (share = the
// probability q of copying the pattern's latent sign, times 2^24); similarity is the dot product.
//
// `partial`: one workgroup per (split of this wave's pattern range, query). Each tile, the
// first `tile_rows` invocations generate one pattern each into workgroup memory and score
// it; the workgroup keeps the online-softmax state (m, l, acc) and the most similar pattern.
// `fold`: one workgroup per query merges the wave's partial states into the running state,
// which the host reads once at the end. Needs math.wgsl, philox.wgsl and online.wgsl.

struct PParams {
    batch: u32,
    dim: u32,
    kind: u32,
    tile_rows: u32,
    split_len: u32,
    splits: u32,      // splits in this wave
    base_lo: u32,     // first pattern index of this wave (64-bit)
    base_hi: u32,
    wave_len: u32,    // patterns in this wave
    beta: f32,
    share: u32,       // kind 3: q * 2^24
    pad1: u32,
}

struct PStat {
    m: f32,
    l: f32,
    best_s: f32,
    best_lo: u32,
    best_hi: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> params: PParams;
@group(0) @binding(1) var<storage, read> xs: array<f32>;
@group(0) @binding(2) var<storage, read> keys: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read_write> stats: array<PStat>;
@group(0) @binding(4) var<storage, read_write> accs: array<f32>;
@group(0) @binding(5) var<storage, read_write> run_stats: array<PStat>;
@group(0) @binding(6) var<storage, read_write> run_accs: array<f32>;

// Workgroup size of both entry points (PROCEDURAL_WG on the host).
const WG: u32 = 64u;
// Floats of workgroup memory for one tile of generated patterns (SHARED on the host).
const SHARED: u32 = 4096u;

var<workgroup> xi_sh: array<f32, SHARED>;
var<workgroup> best_s_sh: array<f32, WG>;
var<workgroup> best_i_sh: array<vec2<u32>, WG>;

// Generates pattern `mu` of the run keyed `key` into xi_sh[off .. off + n].
fn generate(key: vec2<u32>, mu: vec2<u32>, off: u32, n: u32) {
    if params.kind == 2u {
        for (var block = 0u; block * 128u < n; block++) {
            let w = philox_words(key, 0u, mu, block);
            let lanes = min(128u, n - block * 128u);
            for (var lane = 0u; lane < lanes; lane++) {
                let bit = (w[lane / 32u] >> (lane % 32u)) & 1u;
                xi_sh[off + block * 128u + lane] = select(-1.0, 1.0, bit == 1u);
            }
        }
        return;
    }
    if params.kind == 3u {
        // Block 0: the latent sign; entry i: word i % 4 of block 1 + i / 4 (top 24 bits:
        // copy the latent when below `share`; lowest bit: the entry's own sign).
        let z = select(-1.0, 1.0, (philox_words(key, 0u, mu, 0u).x & 1u) == 1u);
        for (var block = 0u; block * 4u < n; block++) {
            let w = philox_words(key, 0u, mu, block + 1u);
            let lanes = min(4u, n - block * 4u);
            for (var lane = 0u; lane < lanes; lane++) {
                let word = w[lane];
                let own = select(-1.0, 1.0, (word & 1u) == 1u);
                xi_sh[off + block * 4u + lane] = select(own, z, (word >> 8u) < params.share);
            }
        }
        return;
    }
    for (var block = 0u; block * 4u < n; block++) {
        let w = philox_words(key, 0u, mu, block);
        let g = box_muller(w.x, w.y);
        let h = box_muller(w.z, w.w);
        let v = vec4<f32>(g.x, g.y, h.x, h.y);
        let lanes = min(4u, n - block * 4u);
        for (var lane = 0u; lane < lanes; lane++) {
            xi_sh[off + block * 4u + lane] = v[lane];
        }
    }
    if params.kind == 0u {
        var norm2 = 0.0;
        for (var i = 0u; i < n; i++) {
            let v = xi_sh[off + i];
            norm2 += v * v;
        }
        let scale = sqrt(f32(n)) / sqrt(norm2);
        for (var i = 0u; i < n; i++) {
            xi_sh[off + i] = xi_sh[off + i] * scale;
        }
    }
}

@compute @workgroup_size(WG)
fn partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = wid.y;
    let split = wid.x;
    let t = lid.x;
    let n = params.dim;
    let rows = params.tile_rows;
    let start = split * params.split_len;
    let end = min(start + params.split_len, params.wave_len);
    let slot = q * params.splits + split;
    let acc_off = slot * n;
    let key = keys[q];
    let base = vec2<u32>(params.base_lo, params.base_hi);
    for (var i = t; i < n; i += WG) {
        accs[acc_off + i] = 0.0;
    }
    var state = lse4_empty();
    var best_s = 0.0;
    var best_i = vec2<u32>(NONE, NONE);
    for (var t0 = start; t0 < end; t0 += rows) {
        let count = min(rows, end - t0);
        var z = 0.0;
        if t < count {
            let mu = add64(base, vec2<u32>(t0 + t, 0u));
            let off = t * n;
            generate(key, mu, off, n);
            var s = 0.0;
            for (var i = 0u; i < n; i++) {
                s += xi_sh[off + i] * xs[q * n + i];
            }
            z = params.beta * s;
            if better64(s, mu, best_s, best_i) {
                best_s = s;
                best_i = mu;
            }
        }
        let scale = online_tile(&state, 0u, t, count, vec4<f32>(z, 0.0, 0.0, 0.0), t < count).x;
        for (var i = t; i < n; i += WG) {
            var ti = 0.0;
            for (var j = 0u; j < count; j++) {
                ti += p_sh[0][j].x * xi_sh[j * n + i];
            }
            accs[acc_off + i] = accs[acc_off + i] * scale + ti;
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
            if better64(best_s_sh[j], best_i_sh[j], bs, bi) {
                bs = best_s_sh[j];
                bi = best_i_sh[j];
            }
        }
        stats[slot] = PStat(state.m.x, state.l.x, bs, bi.x, bi.y, 0u, 0u, 0u);
    }
}

@compute @workgroup_size(WG)
fn fold(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = wid.x;
    let t = lid.x;
    let n = params.dim;
    let base = q * params.splits;
    let run = run_stats[q];
    var big_m = run.m;
    for (var j = 0u; j < params.splits; j++) {
        big_m = max(big_m, stats[base + j].m);
    }
    // An empty running state has l = 0, so its (sentinel) m contributes nothing.
    let run_scale = select(lse_factor(run.m, big_m), 0.0, run.l == 0.0);
    var big_l = run.l * run_scale;
    for (var j = 0u; j < params.splits; j++) {
        big_l += stats[base + j].l * lse_factor(stats[base + j].m, big_m);
    }
    for (var i = t; i < n; i += WG) {
        var a = run_accs[q * n + i] * run_scale;
        for (var j = 0u; j < params.splits; j++) {
            a += accs[(base + j) * n + i] * lse_factor(stats[base + j].m, big_m);
        }
        run_accs[q * n + i] = a;
    }
    workgroupBarrier();
    if t == 0u {
        var bs = run.best_s;
        var bi = vec2<u32>(run.best_lo, run.best_hi);
        for (var j = 0u; j < params.splits; j++) {
            let st = stats[base + j];
            let si = vec2<u32>(st.best_lo, st.best_hi);
            if better64(st.best_s, si, bs, bi) {
                bs = st.best_s;
                bi = si;
            }
        }
        run_stats[q] = PStat(big_m, big_l, bs, bi.x, bi.y, 0u, 0u, 0u);
    }
}
