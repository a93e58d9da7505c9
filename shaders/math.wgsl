// The maths the kernels share, each piece written once: source.rs composes this file into
// every unit that calls it. Constants, structs and functions only (no bindings, no
// workgroup memory, no overrides), so it validates on its own. The host twins are in
// dam_core::weights (power, PolyF, OnlineLse, relu_kernel).

// ---- f32 limits

const F32_MAX: f32 = 3.40282347e38;
// The lowest finite f32, the reference point of an empty online softmax (a WGSL constant
// cannot be infinite).
const LOWEST: f32 = -3.40282347e38;

fn is_finite_f32(v: f32) -> bool {
    return abs(v) <= F32_MAX;
}

// ---- Integer powers and the polynomial separation

// xⁿ by repeated squaring (n ≥ 0), defined for negative x unlike pow(); the binary method
// of dam_core::weights::power (the same products in the same order). Loop iterations: the
// bit length of n (see LOOP_BUDGET on the host).
fn ipow(x: f32, n: u32) -> f32 {
    var result = 1.0;
    var base = x;
    var e = n;
    while e > 0u {
        if (e & 1u) == 1u {
            result *= base;
        }
        base *= base;
        e = e >> 1u;
    }
    return result;
}

// F(x) = xⁿ, or max(x, 0)ⁿ when `rectified`: the polynomial separation (PolyF::f).
fn poly_f(x: f32, n: u32, rectified: bool) -> f32 {
    if rectified {
        return ipow(max(x, 0.0), n);
    }
    return ipow(x, n);
}

// F′(x) = n xⁿ⁻¹, 0 at and below zero when `rectified` (PolyF::f_prime); n ≥ 1.
fn poly_f_prime(x: f32, n: u32, rectified: bool) -> f32 {
    if rectified && x <= 0.0 {
        return 0.0;
    }
    return f32(n) * ipow(x, n - 1u);
}

// ---- The log-sum-ReLU separation

// The kernel max(0, 1 − (β/2)s²) of a distance similarity s = −d (relu_kernel of
// dam_core::weights, the same products in the same order). A pattern is in the support
// where it is > 0: a state exactly on the boundary (β/2)d² = 1 is outside.
fn relu_kernel(beta: f32, s: f32) -> f32 {
    return max(0.0, 1.0 - 0.5 * beta * s * s);
}

// ---- Online softmax (log-sum-exp)

// The running state of a log-sum-exp over values z (dam_core's OnlineLse): m, the
// reference point (the largest z so far; LOWEST while empty), and l = Σ e^{z − m}. Sums a
// caller keeps relative to the same reference are moved by the factors of lse_factor.
struct OnlineLse {
    m: f32,
    l: f32,
}

fn lse_empty() -> OnlineLse {
    return OnlineLse(LOWEST, 0.0);
}

// e^{m_old − m_new}: what moves a sum kept relative to the reference m_old to m_new (and
// the weight e^{z − m} of a value z, as lse_factor(z, m)).
fn lse_factor(m_old: f32, m_new: f32) -> f32 {
    return exp(m_old - m_new);
}

// The state with one more value z.
fn lse_push(s: OnlineLse, z: f32) -> OnlineLse {
    let m = max(s.m, z);
    return OnlineLse(m, s.l * lse_factor(s.m, m) + lse_factor(z, m));
}

// The state with the values of another state `o`. Many states at once are merged in two
// passes by the kernels that hold them: M = max m_j, then L = Σ l_j lse_factor(m_j, M).
fn lse_merge(s: OnlineLse, o: OnlineLse) -> OnlineLse {
    let m = max(s.m, o.m);
    return OnlineLse(m, s.l * lse_factor(s.m, m) + o.l * lse_factor(o.m, m));
}

// log Σ e^z.
fn lse_value(s: OnlineLse) -> f32 {
    return s.m + log(s.l);
}

// The same state for four independent lanes (four queries), folded a tile of values at a
// time (online.wgsl); `started` is false until the first tile, before which there is
// nothing to rescale.
struct OnlineLse4 {
    m: vec4<f32>,
    l: vec4<f32>,
    started: bool,
}

fn lse4_empty() -> OnlineLse4 {
    return OnlineLse4(vec4<f32>(0.0), vec4<f32>(0.0), false);
}

// The reference after a tile whose largest values are `tile_max`.
fn lse4_reference(s: OnlineLse4, tile_max: vec4<f32>) -> vec4<f32> {
    if s.started {
        return max(s.m, tile_max);
    }
    return tile_max;
}

// The factors e^{m − m_new} that move the state's sums to the reference m_new
// (lse_factor per lane); 0 before the first tile.
fn lse4_factor(s: OnlineLse4, m_new: vec4<f32>) -> vec4<f32> {
    if s.started {
        return exp(s.m - m_new);
    }
    return vec4<f32>(0.0);
}

// The state moved to the reference m_new by `factor` (lse4_factor), plus the tile's
// weights `sum` = Σ e^{z − m_new}.
fn lse4_add(s: OnlineLse4, m_new: vec4<f32>, factor: vec4<f32>, sum: vec4<f32>) -> OnlineLse4 {
    return OnlineLse4(m_new, s.l * factor + sum, true);
}

// ---- The nearest pattern: the largest similarity, ties to the lowest index

// "No pattern" marker for argmax tracking.
const NONE: u32 = 0xffffffffu;

// (s, i) beats (bs, bi): larger similarity, ties to the lower index; NONE always loses.
fn better(s: f32, i: u32, bs: f32, bi: u32) -> bool {
    return i != NONE && (bi == NONE || s > bs || (s == bs && i < bi));
}

// `better`, lane by lane.
fn better4(s: vec4<f32>, i: vec4<u32>, bs: vec4<f32>, bi: vec4<u32>) -> vec4<bool> {
    let none = vec4<u32>(NONE);
    return (i != none) & ((bi == none) | (s > bs) | ((s == bs) & (i < bi)));
}

// `better` for 64-bit indices (lo, hi); (NONE, NONE) always loses.
fn better64(s: f32, i: vec2<u32>, bs: f32, bi: vec2<u32>) -> bool {
    let none_i = i.x == NONE && i.y == NONE;
    let none_b = bi.x == NONE && bi.y == NONE;
    return !none_i && (none_b || s > bs || (s == bs && less64(i, bi)));
}

// ---- 64-bit integers as (lo, hi) pairs (two's complement; WGSL has no u64)

fn add64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = a.x + b.x;
    return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

fn neg64(a: vec2<u32>) -> vec2<u32> {
    let lo = ~a.x + 1u;
    return vec2<u32>(lo, ~a.y + select(0u, 1u, lo == 0u));
}

// Unsigned a < b.
fn less64(a: vec2<u32>, b: vec2<u32>) -> bool {
    return a.y < b.y || (a.y == b.y && a.x < b.x);
}

// Sign of a two's complement value: -1, 0 or 1.
fn sign64(a: vec2<u32>) -> i32 {
    if (a.y & 0x80000000u) != 0u {
        return -1;
    }
    if a.x == 0u && a.y == 0u {
        return 0;
    }
    return 1;
}
