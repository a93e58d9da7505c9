// Training a Krotov–Hopfield classifier (dam_core::learn) on the device: the epilogues
// around the two matrix products of matmul.wgsl, and the optimiser step. All in units of
// the temperature T (w = u / T, so β F(u) = F(w) stays O(1) for any degree n).
//
//   rows      per memory μ: x_μα = ξ^μ_α / T and l_μα = −Σ_{γ≠α} ξ^μ_γ / T        (K × C)
//   forward   per (sample q, class α, memory chunk): Σ_μ F(w + x_μα) − F(w − x_μα),
//             w = s_qμ / T + l_μα, into zpart[chunk][q][α]                       (s = X·Ξᵀ)
//   loss      per (q, α): βz = Σ_chunks zpart, c = tanh(βz), the loss term (c − t)^{2m},
//             h = 2m (c − t)^{2m−1} (1 − c²) / T and c itself
//   backward  per (memory μ, sample q): A_μq = Σ_α h_qα [F′(w⁺) − F′(w⁻)]          (K × B)
//   labels    per (μ, γ): the label gradient Σ_q [2 h_qγ F′(w⁺_qμγ) − A_μq]
//             (the visible gradient A · X is the second matrix product)
//   update    per memory (one workgroup): V ← p V − ∇, ξ ← clip(ξ + ε V / max|V|, −1, 1);
//             a memory whose gradient row is exactly 0 keeps ξ and V
//
// F(x) = xⁿ, or max(x, 0)ⁿ when `rectified` (poly_f of math.wgsl); powers by repeated
// squaring, so an invocation's loop count grows with log n (see LOOP_BUDGET on the host).
// Needs math.wgsl.

struct LearnParams {
    b: u32,          // samples in this batch
    k: u32,          // memories
    n: u32,          // visible neurons
    c: u32,          // classes
    chunk: u32,      // memories per forward chunk
    chunks: u32,     // forward chunks (ceil(k / chunk))
    degree: u32,     // n of F
    rectified: u32,  // 1: F = max(x, 0)ⁿ
    m2: u32,         // 2m of the loss
    loss_off: u32,   // first entry of this batch's loss terms
    inv_t: f32,      // 1 / T
    lr: f32,         // ε of this epoch
    momentum: f32,   // p of this epoch
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: LearnParams;
@group(0) @binding(1) var<storage, read_write> memories: array<f32>;  // K × (N + C)
@group(0) @binding(2) var<storage, read_write> xs: array<f32>;        // K × C
@group(0) @binding(3) var<storage, read_write> ls: array<f32>;        // K × C
@group(0) @binding(4) var<storage, read> s: array<f32>;               // B × K
@group(0) @binding(5) var<storage, read_write> zpart: array<f32>;     // chunks × B × C
@group(0) @binding(6) var<storage, read> labels: array<u32>;          // B
@group(0) @binding(7) var<storage, read_write> h: array<f32>;         // B × C
@group(0) @binding(8) var<storage, read_write> losses: array<f32>;    // samples × C
@group(0) @binding(9) var<storage, read_write> outc: array<f32>;      // B × C
@group(0) @binding(10) var<storage, read_write> amat: array<f32>;     // K × B
@group(0) @binding(11) var<storage, read_write> grad: array<f32>;     // K × (N + C)
@group(0) @binding(12) var<storage, read_write> velocity: array<f32>; // K × (N + C)

// Workgroup size of every entry point (LEARN_WG on the host).
const WG: u32 = 64u;

fn f(x: f32) -> f32 {
    return poly_f(x, p.degree, p.rectified == 1u);
}

fn f_prime(x: f32) -> f32 {
    return poly_f_prime(x, p.degree, p.rectified == 1u);
}

fn width() -> u32 {
    return p.n + p.c;
}

// The flat index of a 2-D dispatch of WG-wide workgroups.
fn flat(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid.x;
}

@compute @workgroup_size(WG)
fn rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let mu = flat(wid, nwg, lid);
    if mu >= p.k {
        return;
    }
    let row = mu * width() + p.n;
    var total = 0.0;
    for (var a = 0u; a < p.c; a++) {
        total += memories[row + a];
    }
    for (var a = 0u; a < p.c; a++) {
        let x = memories[row + a];
        xs[mu * p.c + a] = x * p.inv_t;
        ls[mu * p.c + a] = -(total - x) * p.inv_t;
    }
}

// x: (q, α) pairs of the batch; y: memory chunks.
@compute @workgroup_size(WG)
fn forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = wid.x * WG + lid.x;
    if i >= p.b * p.c {
        return;
    }
    let q = i / p.c;
    let a = i % p.c;
    let first = wid.y * p.chunk;
    let last = min(first + p.chunk, p.k);
    var acc = 0.0;
    for (var mu = first; mu < last; mu++) {
        let w = s[q * p.k + mu] * p.inv_t + ls[mu * p.c + a];
        let x = xs[mu * p.c + a];
        acc += f(w + x) - f(w - x);
    }
    zpart[(wid.y * p.b + q) * p.c + a] = acc;
}

@compute @workgroup_size(WG)
fn loss(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = flat(wid, nwg, lid);
    if i >= p.b * p.c {
        return;
    }
    var z = 0.0;
    for (var ch = 0u; ch < p.chunks; ch++) {
        z += zpart[ch * p.b * p.c + i];
    }
    // tanh and 1 − tanh² from e = e^{−2|z|}: no overflow, no cancellation near ±1.
    let e = exp(-2.0 * min(abs(z), 40.0));
    let c = sign(z) * (1.0 - e) / (1.0 + e);
    let sech2 = 4.0 * e / ((1.0 + e) * (1.0 + e));
    outc[i] = c;
    var t = -1.0;
    if labels[i / p.c] == i % p.c {
        t = 1.0;
    }
    let d = c - t;
    losses[p.loss_off + i] = ipow(d, p.m2);
    h[i] = f32(p.m2) * ipow(d, p.m2 - 1u) * sech2 * p.inv_t;
}

// x: memories (WG per workgroup); y: samples.
@compute @workgroup_size(WG)
fn backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let mu = wid.x * WG + lid.x;
    let q = wid.y;
    if mu >= p.k || q >= p.b {
        return;
    }
    let w0 = s[q * p.k + mu] * p.inv_t;
    var acc = 0.0;
    for (var a = 0u; a < p.c; a++) {
        let w = w0 + ls[mu * p.c + a];
        let x = xs[mu * p.c + a];
        acc += h[q * p.c + a] * (f_prime(w + x) - f_prime(w - x));
    }
    amat[mu * p.b + q] = acc;
}

@compute @workgroup_size(WG)
fn label_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = flat(wid, nwg, lid);
    if i >= p.k * p.c {
        return;
    }
    let mu = i / p.c;
    let g = i % p.c;
    let l = ls[i];
    let x = xs[i];
    var acc = 0.0;
    for (var q = 0u; q < p.b; q++) {
        let w = s[q * p.k + mu] * p.inv_t + l;
        acc += 2.0 * h[q * p.c + g] * f_prime(w + x) - amat[mu * p.b + q];
    }
    grad[mu * width() + p.n + g] = acc;
}

var<workgroup> red: array<f32, WG>;

// The largest of every invocation's `value`, returned to all of them (a barrier before and
// after, so `red` can be reused at once).
fn row_max(lid: u32, value: f32) -> f32 {
    red[lid] = value;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half = half >> 1u) {
        if lid < half {
            red[lid] = max(red[lid], red[lid + half]);
        }
        workgroupBarrier();
    }
    let top = red[0];
    workgroupBarrier();
    return top;
}

// One workgroup per memory row. A row whose gradient is exactly zero is left alone,
// velocity included (the normalised step would otherwise move it along its stale velocity).
@compute @workgroup_size(WG)
fn update(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let mu = wid.x + wid.y * nwg.x;
    let w = width();
    let base = mu * w;
    var gmax = 0.0;
    if mu < p.k {
        for (var i = lid.x; i < w; i += WG) {
            gmax = max(gmax, abs(grad[base + i]));
        }
    }
    let gtop = row_max(lid.x, gmax);
    let moves = mu < p.k && gtop > 0.0;
    var top = 0.0;
    if moves {
        for (var i = lid.x; i < w; i += WG) {
            let v = p.momentum * velocity[base + i] - grad[base + i];
            velocity[base + i] = v;
            top = max(top, abs(v));
        }
    }
    let scale = row_max(lid.x, top);
    if moves && scale > 0.0 {
        let step = p.lr / scale;
        for (var i = lid.x; i < w; i += WG) {
            memories[base + i] = clamp(memories[base + i] + step * velocity[base + i], -1.0, 1.0);
        }
    }
}
