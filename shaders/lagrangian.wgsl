// A network from Lagrangians (dam_core::lagrangian) on the device: the row-wise epilogues
// around the two matrix products of matmul.wgsl, and the integrator's update.
//
//   visible       per state row (one workgroup): G = g(V_s), and with `write_energy` the
//                 visible energy term Σ (v − I) g − L_v into energy[row]
//   hidden        per state row (one workgroup): F = f(H_s), H_s = XG with fast memory
//                 neurons; with `write_energy` it adds the hidden part to energy[row]:
//                 −L_h(XG) (fast) or Σ h f − L_h(h) − Σ f·XG (full)
//   integrate_v   per entry of V: D = (U − V_s + I)/τ_v (U = F Ξ), then the stage of the
//                 integrator (below)
//   integrate_h   per entry of H: D = (XG − H_s)/τ_h (XG = G Ξᵀ), then the same stage
//
// A stage (Euler: one, RK4: four) keeps the state X, the stage input S and the
// accumulator A: A = X + c_acc·D on the first stage, A += c_acc·D after; S = X + c_stage·D,
// or X = S = A on the last stage. The visible terms are written in closed form
// (quadratic: ½v² − I·v; abs and spherical: −I·g) and the additive hidden term as
// Σ (n − 1)·F(h) − Σ f·XG, so no large terms cancel in f32.
// Needs math.wgsl.

struct LagParams {
    b: u32,            // state rows
    n: u32,            // feature neurons
    k: u32,            // memory neurons
    degree: u32,       // n of an additive F
    rectified: u32,    // 1: F = max(x, 0)ⁿ
    write_energy: u32, // 1: this stage writes the energy of its input state
    first: u32,        // 1: the first stage of a step (A = X + c_acc·D)
    last: u32,         // 1: the last stage of a step (X = S = A)
    beta: f32,         // β of the exponential and log-sum-exp Lagrangians
    inv_tau_v: f32,    // 1 / τ_v
    inv_tau_h: f32,    // 1 / τ_h (unused with fast memory neurons)
    c_acc: f32,        // weight of D in the accumulator
    c_stage: f32,      // weight of D in the next stage's input
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: LagParams;
@group(0) @binding(1) var<storage, read_write> v_stage: array<f32>;  // B × N, S of V
@group(0) @binding(2) var<storage, read_write> g_act: array<f32>;    // B × N
@group(0) @binding(3) var<storage, read> current: array<f32>;        // N (zeros: none)
@group(0) @binding(4) var<storage, read> xg: array<f32>;             // B × K, G Ξᵀ
@group(0) @binding(5) var<storage, read_write> h_stage: array<f32>;  // B × K, S of H
@group(0) @binding(6) var<storage, read_write> f_act: array<f32>;    // B × K
@group(0) @binding(7) var<storage, read> u_in: array<f32>;           // B × N, F Ξ
@group(0) @binding(8) var<storage, read_write> energy: array<f32>;   // B
@group(0) @binding(9) var<storage, read_write> x_state: array<f32>;  // B × N or B × K
@group(0) @binding(10) var<storage, read_write> acc: array<f32>;     // B × N or B × K

// The visible Lagrangian: 0 quadratic, 1 abs, 2 spherical.
override VIS: u32 = 0u;
// The hidden Lagrangian: 0 additive Σ F, 1 exponential Σ e^{βh}, 2 log-sum-exp.
override HID: u32 = 0u;
// 1: fast memory neurons (H = XG).
override FAST: u32 = 1u;

// Workgroup size of every entry point (LAGRANGIAN_WG on the host).
const WG: u32 = 64u;

var<workgroup> red: array<f32, WG>;

// The sum (or, with `take_max`, the maximum) of the workgroup's values, for every
// invocation.
fn reduce(x: f32, lid: u32, take_max: bool) -> f32 {
    workgroupBarrier();
    red[lid] = x;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half = half >> 1u) {
        if lid < half {
            if take_max {
                red[lid] = max(red[lid], red[lid + half]);
            } else {
                red[lid] = red[lid] + red[lid + half];
            }
        }
        workgroupBarrier();
    }
    let out = red[0];
    workgroupBarrier();
    return out;
}

// The row of a workgroup of a 2-D dispatch.
fn row_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// The entry of a 2-D dispatch of WG-wide workgroups.
fn flat(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn visible(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Every invocation of the workgroup reaches the barriers; rows past B do no writes.
    let row = row_of(wid, nwg);
    let live = row < p.b;
    let base = row * p.n;
    var scale = 1.0;
    if VIS == 2u {
        var sq = 0.0;
        for (var i = lid; i < p.n; i += WG) {
            if live {
                let v = v_stage[base + i];
                sq += v * v;
            }
        }
        let norm = sqrt(reduce(sq, lid, false));
        scale = select(0.0, 1.0 / norm, norm > 0.0);
    }
    var e = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        if live {
            let v = v_stage[base + i];
            var g = v;
            if VIS == 1u {
                g = sign(v);
            } else if VIS == 2u {
                g = v * scale;
            }
            g_act[base + i] = g;
            e -= current[i] * g;
            if VIS == 0u {
                e += 0.5 * v * v;
            }
        }
    }
    let total = reduce(e, lid, false);
    if live && lid == 0u && p.write_energy == 1u {
        energy[row] = total;
    }
}

@compute @workgroup_size(WG)
fn hidden(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = row_of(wid, nwg);
    let live = row < p.b;
    let base = row * p.k;
    // Log-sum-exp: the row's max and Σ e^{βh − max} first.
    var m = 0.0;
    var s = 1.0;
    if HID == 2u {
        var local_max = LOWEST;
        for (var i = lid; i < p.k; i += WG) {
            if live {
                local_max = max(local_max, p.beta * hval(base + i));
            }
        }
        m = reduce(local_max, lid, true);
        var local_sum = 0.0;
        for (var i = lid; i < p.k; i += WG) {
            if live {
                local_sum += exp(p.beta * hval(base + i) - m);
            }
        }
        s = reduce(local_sum, lid, false);
    }
    // e: Σ h f − L_h(h) − Σ f·XG (full) or −L_h(XG) (fast); the log-sum-exp value is
    // added once below.
    var e = 0.0;
    for (var i = lid; i < p.k; i += WG) {
        if live {
            let h = hval(base + i);
            var f = 0.0;
            if HID == 0u {
                f = poly_f_prime(h, p.degree, p.rectified == 1u);
                let big_f = poly_f(h, p.degree, p.rectified == 1u);
                if FAST == 1u {
                    e -= big_f;
                } else {
                    e += f32(p.degree - 1u) * big_f;
                }
            } else if HID == 1u {
                let eh = exp(p.beta * h);
                f = p.beta * eh;
                if FAST == 1u {
                    e -= eh;
                } else {
                    e += h * f - eh;
                }
            } else {
                f = exp(p.beta * h - m) / s;
                if FAST == 0u {
                    e += h * f;
                }
            }
            f_act[base + i] = f;
            if FAST == 0u {
                e -= f * xg[base + i];
            }
        }
    }
    let total = reduce(e, lid, false);
    if live && lid == 0u && p.write_energy == 1u {
        var add = total;
        if HID == 2u {
            add -= (m + log(s)) / p.beta;
        }
        energy[row] += add;
    }
}

// The memory layer's state entry: XG with fast memory neurons, else H's stage input.
fn hval(at: u32) -> f32 {
    if FAST == 1u {
        return xg[at];
    }
    return h_stage[at];
}

// One integrator stage of an entry with derivative d, stage input at `stage`.
fn stage(at: u32, d: f32) -> f32 {
    var a = acc[at] + p.c_acc * d;
    if p.first == 1u {
        a = x_state[at] + p.c_acc * d;
    }
    acc[at] = a;
    if p.last == 1u {
        x_state[at] = a;
        return a;
    }
    return x_state[at] + p.c_stage * d;
}

@compute @workgroup_size(WG)
fn integrate_v(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let at = flat(wid, nwg, lid);
    if at >= p.b * p.n {
        return;
    }
    let d = (u_in[at] - v_stage[at] + current[at % p.n]) * p.inv_tau_v;
    v_stage[at] = stage(at, d);
}

@compute @workgroup_size(WG)
fn integrate_h(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let at = flat(wid, nwg, lid);
    if at >= p.b * p.k {
        return;
    }
    let d = (xg[at] - h_stage[at]) * p.inv_tau_h;
    h_stage[at] = stage(at, d);
}
