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
// Register-blocked: a SIDE×SIDE (16×16) workgroup computes a TM×TM (64×64) tile of C, each
// invocation a 4×4 block of outputs (rows ty + SIDE·i, columns tx + SIDE·j), from TM×TK
// (64×16) tiles of op(A) and op(B) staged in workgroup memory.
//
// Epilogues (EPI override):
//   0  scale: C = v, or C += v when `accumulate` is 1
//   1  separation F(v) = vⁿ (n = degree; poly_f of math.wgsl)
//   2  separation F(v) = max(v, 0)ⁿ
//   3  online-softmax partials: C = v, and for each row the tile's (max, Σ e^{v − max})
//      over its valid columns to stats[r · stat_ld + stat_col0 + tile]
// Needs math.wgsl, sim.wgsl and a pattern loader.

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

// Invocations along each side of the workgroup (MATMUL_SIDE on the host).
const SIDE: u32 = 16u;
// Rows and columns of C per workgroup: SIDE invocations × 4 outputs (TILE on the host).
const TM: u32 = 4u * SIDE;
// Contraction entries per staged tile.
const TK: u32 = 16u;

// Row length of the matrix read through the loader.
fn pat_row_len() -> u32 {
    return mm.ldb;
}

var<workgroup> at: array<array<f32, TM + 1u>, TK>;   // at[kk][row]
var<workgroup> bt: array<array<f32, TM + 1u>, TK>;   // bt[kk][col]
var<workgroup> red: array<array<OnlineLse, SIDE>, TM>;

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

@compute @workgroup_size(SIDE, SIDE, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let r0 = wid.y * TM;
    let j0 = wid.x * TM;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = mm.k_begin; k0 < mm.k_end; k0 += TK) {
        // TM×TK entries of each operand, four per invocation; consecutive invocations
        // read consecutive addresses of the stored layout.
        for (var e = 0u; e < 4u; e++) {
            let idx = li + SIDE * SIDE * e;
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
            let av = vec4<f32>(at[kk][lid.y], at[kk][lid.y + SIDE], at[kk][lid.y + 2u * SIDE], at[kk][lid.y + 3u * SIDE]);
            let bv = vec4<f32>(bt[kk][lid.x], bt[kk][lid.x + SIDE], bt[kk][lid.x + 2u * SIDE], bt[kk][lid.x + 3u * SIDE]);
            // Written out, not looped: lavapipe counts loop iterations (see LOOP_BUDGET).
            acc[0] += term4(av.x, bv);
            acc[1] += term4(av.y, bv);
            acc[2] += term4(av.z, bv);
            acc[3] += term4(av.w, bv);
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let r = r0 + lid.y + SIDE * i;
        var tile = lse_empty();
        for (var jj = 0u; jj < 4u; jj++) {
            let j = j0 + lid.x + SIDE * jj;
            let v = mm.alpha * finish_similarity(acc[i][jj]);
            if r < mm.m && j < mm.n {
                let at_c = r * mm.ldc + mm.c_col0 + j;
                if EPI == 1u || EPI == 2u {
                    c[at_c] = poly_f(v, mm.degree, EPI == 2u);
                } else if EPI == 0u && mm.accumulate == 1u {
                    c[at_c] += v;
                } else {
                    c[at_c] = v;
                }
                if EPI == 3u {
                    tile = lse_push(tile, v);
                }
            }
        }
        if EPI == 3u {
            red[lid.y + SIDE * i][lid.x] = tile;
        }
    }
    if EPI == 3u {
        // The row's SIDE partial states merged in two passes (see lse_merge).
        workgroupBarrier();
        if lid.x == 0u {
            for (var i = 0u; i < 4u; i++) {
                let row = lid.y + SIDE * i;
                var m_all = LOWEST;
                for (var t = 0u; t < SIDE; t++) {
                    m_all = max(m_all, red[row][t].m);
                }
                var l_all = 0.0;
                for (var t = 0u; t < SIDE; t++) {
                    l_all += red[row][t].l * lse_factor(red[row][t].m, m_all);
                }
                let r = r0 + row;
                if r < mm.m {
                    stats[r * mm.stat_ld + mm.stat_col0 + wid.x] = vec2<f32>(m_all, l_all);
                }
            }
        }
    }
}
