// Generic tiled matrix product with epilogues:
//
//   C[r, c_col0 + j] = epilogue(alpha · finish(Σ_k term(op(A)[r, k], op(B)[k, j])))
//
// for r < m, j < n, k < kdim. op(A) is m×kdim, read from `a` (row-major, row stride lda,
// first entry at a_off; TRANS_A: A is stored kdim×m). op(B) is kdim×n, read through the
// pattern loader at binding 1 (pat_*.wgsl: f32 or f16 storage, row stride ldb; TRANS_B:
// B is stored n×kdim, e.g. stored patterns for X·Ξᵀ). The per-coordinate term and the
// finishing map are the similarity of sim.wgsl (SIM = 0 is the plain product).
//
// Register-blocked: a 16×16 workgroup computes a 64×64 tile of C, each invocation a 4×4
// block of outputs (rows ty + 16i, columns tx + 16j), from 64×16 tiles of op(A) and op(B)
// staged in workgroup memory.
//
// Epilogues (EPI override):
//   0  scale: C = v, or C += v when `accumulate` is 1
//   1  separation F(v) = vⁿ (n = degree)
//   2  separation F(v) = max(v, 0)ⁿ
//   3  online-softmax partials: C = v, and for each row the tile's (max, Σ e^{v − max})
//      over its valid columns to stats[r · stat_ld + stat_col0 + tile]
// Needs sim.wgsl and a pattern loader.

struct MatMulParams {
    m: u32,
    n: u32,
    kdim: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    a_off: u32,
    c_col0: u32,
    stat_col0: u32,
    stat_ld: u32,
    accumulate: u32,
    degree: u32,
    alpha: f32,
    k_begin: u32,  // this dispatch contracts k_begin..k_end (slices of a long k accumulate)
    k_end: u32,
    pad0: u32,
}

@group(0) @binding(0) var<uniform> mm: MatMulParams;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<vec2<f32>>;

override TRANS_A: u32 = 0u;
override TRANS_B: u32 = 0u;
override EPI: u32 = 0u;

const TM: u32 = 64u;
const TK: u32 = 16u;
const LOWEST: f32 = -3.40282347e38;

// Row length of the matrix read through the loader.
fn pat_row_len() -> u32 {
    return mm.ldb;
}

var<workgroup> at: array<array<f32, 65>, 16>;   // at[kk][row]
var<workgroup> bt: array<array<f32, 65>, 16>;   // bt[kk][col]
var<workgroup> red_m: array<array<f32, 16>, 64>;
var<workgroup> red_l: array<array<f32, 16>, 64>;

fn load_a(r: u32, k: u32) -> f32 {
    if r >= mm.m || k >= mm.k_end {
        return 0.0;
    }
    if TRANS_A == 1u {
        return a[mm.a_off + k * mm.lda + r];
    }
    return a[mm.a_off + r * mm.lda + k];
}

fn load_b(k: u32, j: u32) -> f32 {
    if j >= mm.n || k >= mm.k_end {
        return 0.0;
    }
    if TRANS_B == 1u {
        return load_pat(j, k);
    }
    return load_pat(k, j);
}

// The similarity terms of one op(A) entry with four op(B) entries.
fn term4(x: f32, b: vec4<f32>) -> vec4<f32> {
    if SIM == 0u {
        return x * b;
    }
    return vec4<f32>(sim_term(x, b.x), sim_term(x, b.y), sim_term(x, b.z), sim_term(x, b.w));
}

fn power(v: f32, n: u32) -> f32 {
    var out = 1.0;
    for (var i = 0u; i < n; i++) {
        out *= v;
    }
    return out;
}

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let r0 = wid.y * TM;
    let j0 = wid.x * TM;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = mm.k_begin; k0 < mm.k_end; k0 += TK) {
        // 64×16 entries of each operand, four per invocation; consecutive invocations
        // read consecutive addresses of the stored layout.
        for (var e = 0u; e < 4u; e++) {
            let idx = li + 256u * e;
            if TRANS_A == 1u {
                at[idx / TM][idx % TM] = load_a(r0 + idx % TM, k0 + idx / TM);
            } else {
                at[idx % TK][idx / TK] = load_a(r0 + idx / TK, k0 + idx % TK);
            }
            if TRANS_B == 1u {
                bt[idx % TK][idx / TK] = load_b(k0 + idx % TK, j0 + idx / TK);
            } else {
                bt[idx / TM][idx % TM] = load_b(k0 + idx / TM, j0 + idx % TM);
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let av = vec4<f32>(at[kk][lid.y], at[kk][lid.y + 16u], at[kk][lid.y + 32u], at[kk][lid.y + 48u]);
            let bv = vec4<f32>(bt[kk][lid.x], bt[kk][lid.x + 16u], bt[kk][lid.x + 32u], bt[kk][lid.x + 48u]);
            // Written out, not looped: lavapipe counts loop iterations (see LOOP_BUDGET).
            acc[0] += term4(av.x, bv);
            acc[1] += term4(av.y, bv);
            acc[2] += term4(av.z, bv);
            acc[3] += term4(av.w, bv);
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let r = r0 + lid.y + 16u * i;
        var tile_m = LOWEST;
        var tile_l = 0.0;
        for (var jj = 0u; jj < 4u; jj++) {
            let j = j0 + lid.x + 16u * jj;
            let v = mm.alpha * finish_similarity(acc[i][jj]);
            if r < mm.m && j < mm.n {
                let at_c = r * mm.ldc + mm.c_col0 + j;
                if EPI == 1u {
                    c[at_c] = power(v, mm.degree);
                } else if EPI == 2u {
                    c[at_c] = power(max(v, 0.0), mm.degree);
                } else if EPI == 0u && mm.accumulate == 1u {
                    c[at_c] += v;
                } else {
                    c[at_c] = v;
                }
                if EPI == 3u {
                    let m_new = max(tile_m, v);
                    tile_l = tile_l * exp(tile_m - m_new) + exp(v - m_new);
                    tile_m = m_new;
                }
            }
        }
        if EPI == 3u {
            red_m[lid.y + 16u * i][lid.x] = tile_m;
            red_l[lid.y + 16u * i][lid.x] = tile_l;
        }
    }
    if EPI == 3u {
        workgroupBarrier();
        if lid.x == 0u {
            for (var i = 0u; i < 4u; i++) {
                let row = lid.y + 16u * i;
                var m_all = LOWEST;
                for (var t = 0u; t < 16u; t++) {
                    m_all = max(m_all, red_m[row][t]);
                }
                var l_all = 0.0;
                for (var t = 0u; t < 16u; t++) {
                    l_all += red_l[row][t] * exp(red_m[row][t] - m_all);
                }
                let r = r0 + row;
                if r < mm.m {
                    stats[r * mm.stat_ld + mm.stat_col0 + wid.x] = vec2<f32>(m_all, l_all);
                }
            }
        }
    }
}
