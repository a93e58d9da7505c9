// Exact binary spin dynamics (Krotov & Hopfield 2016, eq. 3) on bit-packed +-1 states.
// Overlaps h = xi . sigma are integers (XOR + popcount); the update field
// Delta_i = sum_mu xi_i^mu W(a_mu), a_mu = h_mu - xi_i^mu sigma_i, is summed exactly in 64-bit
// two's complement held in vec2<u32> (lo, hi; math.wgsl), from the host's integer table W,
// so every decision equals the CPU reference's (see crates/core/src/binary.rs).
//
// `init`:   h[q, mu] = N - 2 popcount(xi_mu ^ sigma_q), one workgroup per query.
// `sweep`:  asynchronous updates of spins order[first .. first + count], one workgroup per
//           query; sigma lives in workgroup memory during the dispatch.
// `decide`: synchronous step, one workgroup per (spin, query): flip[q, i] = 1 if sigma_i changes.
// `apply`:  synchronous step, one workgroup per query: apply the flips of the free spins
//           (`free`, packed like a state; clamped spins keep their value), count them.
//           Asynchronous sweeps leave clamped spins out of `order` on the host.

struct SParams {
    dim: u32,
    words: u32,
    count: u32,        // P
    batch: u32,        // B
    relative: u32,     // 1: W(a) = table[a_top - a]; 0: W(a) = table[a + N + 1]
    first: u32,        // first position in `order` for this dispatch
    spins: u32,        // positions handled by this dispatch
    pad: u32,
}

@group(0) @binding(0) var<uniform> sp: SParams;
@group(0) @binding(1) var<storage, read> patterns: array<u32>;
@group(0) @binding(2) var<storage, read_write> states: array<u32>;
@group(0) @binding(3) var<storage, read_write> h: array<i32>;
@group(0) @binding(4) var<storage, read> table: array<vec2<u32>>;
@group(0) @binding(5) var<storage, read> order: array<u32>;
@group(0) @binding(6) var<storage, read_write> flips: array<u32>;
@group(0) @binding(7) var<storage, read_write> decisions: array<u32>;
@group(0) @binding(8) var<storage, read> free: array<u32>;

// Workgroup size of every entry point (SPIN_WG on the host).
const WG: u32 = 64u;
const MAX_WORDS: u32 = 128u;

var<workgroup> sigma_sh: array<u32, MAX_WORDS>;
var<workgroup> red64: array<vec2<u32>, WG>;
var<workgroup> red_i: array<i32, WG>;
var<workgroup> flipped_sh: u32;
var<workgroup> count_sh: u32;

fn pattern_spin(mu: u32, i: u32) -> i32 {
    let bit = (patterns[mu * sp.words + i / 32u] >> (i % 32u)) & 1u;
    return select(-1, 1, bit == 1u);
}

// Exact Delta_i for query q with spin value s, given h. Uniform control flow (barriers).
fn field(q: u32, t: u32, i: u32, s: i32) -> i32 {
    var top = -2147483647;
    if sp.relative == 1u {
        for (var mu = t; mu < sp.count; mu += WG) {
            top = max(top, h[q * sp.count + mu] - pattern_spin(mu, i) * s);
        }
        red_i[t] = top;
        workgroupBarrier();
        for (var stride = WG / 2u; stride > 0u; stride = stride >> 1u) {
            if t < stride {
                red_i[t] = max(red_i[t], red_i[t + stride]);
            }
            workgroupBarrier();
        }
        top = red_i[0];
        workgroupBarrier();
    }
    var acc = vec2<u32>(0u, 0u);
    for (var mu = t; mu < sp.count; mu += WG) {
        let xi = pattern_spin(mu, i);
        let a = h[q * sp.count + mu] - xi * s;
        var index = a + i32(sp.dim) + 1;
        if sp.relative == 1u {
            index = top - a;
        }
        let w = table[u32(index)];
        acc = add64(acc, select(neg64(w), w, xi > 0));
    }
    red64[t] = acc;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride >> 1u) {
        if t < stride {
            red64[t] = add64(red64[t], red64[t + stride]);
        }
        workgroupBarrier();
    }
    let total = red64[0];
    workgroupBarrier();
    return sign64(total);
}

@compute @workgroup_size(WG)
fn init(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = wid.x;
    for (var mu = lid.x; mu < sp.count; mu += WG) {
        var hamming = 0u;
        for (var w = 0u; w < sp.words; w++) {
            hamming += countOneBits(patterns[mu * sp.words + w] ^ states[q * sp.words + w]);
        }
        h[q * sp.count + mu] = i32(sp.dim) - 2 * i32(hamming);
    }
}

@compute @workgroup_size(WG)
fn sweep(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = wid.x;
    let t = lid.x;
    for (var w = t; w < sp.words; w += WG) {
        sigma_sh[w] = states[q * sp.words + w];
    }
    if t == 0u {
        count_sh = 0u;
    }
    workgroupBarrier();
    for (var k = sp.first; k < sp.first + sp.spins; k++) {
        let i = order[k];
        let s = select(-1, 1, ((sigma_sh[i / 32u] >> (i % 32u)) & 1u) == 1u);
        let d = field(q, t, i, s);
        if t == 0u {
            var flipped = 0u;
            if (d > 0 && s < 0) || (d < 0 && s > 0) {
                sigma_sh[i / 32u] = sigma_sh[i / 32u] ^ (1u << (i % 32u));
                count_sh += 1u;
                flipped = 1u;
            }
            flipped_sh = flipped;
        }
        let flipped = workgroupUniformLoad(&flipped_sh);
        if flipped == 1u {
            let new_spin = -s;
            for (var mu = t; mu < sp.count; mu += WG) {
                h[q * sp.count + mu] += 2 * pattern_spin(mu, i) * new_spin;
            }
        }
        workgroupBarrier();
    }
    for (var w = t; w < sp.words; w += WG) {
        states[q * sp.words + w] = sigma_sh[w];
    }
    if t == 0u {
        flips[q] += count_sh;
    }
}

@compute @workgroup_size(WG)
fn decide(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = wid.x;
    let q = wid.y;
    let s = select(-1, 1, ((states[q * sp.words + i / 32u] >> (i % 32u)) & 1u) == 1u);
    let d = field(q, lid.x, i, s);
    if lid.x == 0u {
        decisions[q * sp.dim + i] = select(0u, 1u, (d > 0 && s < 0) || (d < 0 && s > 0));
    }
}

@compute @workgroup_size(WG)
fn apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = wid.x;
    let t = lid.x;
    var flipped = 0u;
    for (var w = t; w < sp.words; w += WG) {
        var mask = 0u;
        for (var b = 0u; b < 32u; b++) {
            let i = w * 32u + b;
            if i < sp.dim && decisions[q * sp.dim + i] == 1u {
                mask = mask | (1u << b);
            }
        }
        mask = mask & free[w];
        states[q * sp.words + w] = states[q * sp.words + w] ^ mask;
        flipped += countOneBits(mask);
    }
    red_i[t] = i32(flipped);
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride >> 1u) {
        if t < stride {
            red_i[t] += red_i[t + stride];
        }
        workgroupBarrier();
    }
    if t == 0u {
        flips[q] = u32(red_i[0]);
    }
}
