// sparse_fusion.wgsl — one ALIF round (gated_cross_attn + the extra language layer) in 8 launches.
// gated_cross_attn alone is launches 1–3.
//
// Bindings (group 0):
//   0 p      uniform             P (mirrors `FusionParams` in src/backend/fusion_plan.rs)
//   1 arena  storage, read_write array<f32>: every input, weight, intermediate and output of the
//            round, at element offsets given in `p.off` (slots O_*) and in the GEMM job table.
//
// Launches and dispatch mapping (one compute pass, in order):
//   1 gemm_jobs  (64×64 tiles, 4×4 per invocation, grouped over 4 jobs) Q = ((LN_v(v) + pos)·W_vᵀ + b)·scale,
//                Vv = LN_v(v)·W_vvᵀ + b, K = LN_l(l)·W_lᵀ + b, Vl = LN_l(l)·W_vlᵀ + b; LayerNorm is
//                a prologue on the staged rows, and the Vv/Vl jobs store each row's (mean, rstd).
//   2 attend     (256 per block of 4 query rows) image rows over the T label keys with values Vl,
//                and label rows over the Nv image keys (= the scaled queries) with values Vv:
//                both directions of the one score matrix A = Q·Kᵀ.
//   3 gemm_jobs  Δv, Δl output projections with the gated-residual epilogue
//                v' = LN_v(v) + g·Δv (written over v's rows in place), l' = LN_l(l) + g·Δl.
//   4 gemm_jobs  language layer Q, K, V projections of l'.
//   5 lang_attend (256 per label row) all heads with the additive mask (1 − m)·−10000, then the
//                attention output projection + residual + LayerNorm on the whole row.
//   6 gemm_jobs  FFN up-projection with exact-erf GELU.
//   7 gemm_jobs  FFN down-projection + residual.
//   8 norm_rows  (256 per label row) the last LayerNorm → lang_out.
// Image-side rows r ∈ [0, B·Nv) live at physical row (r / Nv)·tokens + start + r % Nv of their
// buffer, so the last level is read and written in place in a [B, S, C] token buffer.

struct Job {
    a: u32, w: u32, bias: u32, out: u32,
    rows: u32, k: u32, n: u32, tile0: u32,
    ln_w: u32, ln_b: u32, pos: u32, flags: u32,
    stat: u32, gamma: u32, scale: f32, res: u32,
}

// Job flags (F_*) and the slots of p.off (O_*) are constants generated from
// src/backend/fusion_layout.rs and put in front of this file with activation.wgsl (gelu),
// tile.wgsl (the GEMM mainloop) and reduce.wgsl (the reductions; see src/shaders.rs).

struct P {
    batch: u32, nv: u32, t: u32, e: u32,
    heads: u32, dh: u32, tokens: u32, start: u32,
    gate: u32, grid_x: u32, njobs: u32, total: u32,
    lh: u32, lheads: u32, ldh: u32, lffn: u32,
    lscale: f32, has_mask: u32, eps: f32, _pad: u32,
    off: array<vec4<u32>, 8>,
    jobs: array<Job, 4>,
}


@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> arena: array<f32>;

fn off(slot: u32) -> u32 {
    return p.off[slot / 4u][slot % 4u];
}

fn image_row(r: u32) -> u32 {
    return (r / p.nv) * p.tokens + p.start + r % p.nv;
}

// ---------------------------------------------------------------- grouped GEMM
// 64×64 output tile per 256-invocation workgroup, each invocation a 4×4 register block; K is
// walked in 16-deep slabs staged (k-major) in workgroup memory as vec4s, so the inner loop reads
// two vec4s per 16 FMAs (on a software adapter every divergent load is a per-lane loop).
const TM: u32 = 64u;
const TK: u32 = 16u;
var<workgroup> part4: array<array<f32, 4>, 64>;
var<workgroup> row_mean: array<f32, 64>;
var<workgroup> row_rstd: array<f32, 64>;
var<workgroup> a_row_s: array<u32, 64>;        // physical A/pos row of each tile row
var<workgroup> lnw_s: array<f32, 16>;          // this K-slab's LayerNorm γ and β
var<workgroup> lnb_s: array<f32, 16>;

// Sum over the 4 invocations that share row `r` (every one of them gets it).
fn row_sum4(r: u32, q: u32, v: f32) -> f32 {
    part4[r][q] = v;
    workgroupBarrier();
    let s = part4[r][0] + part4[r][1] + part4[r][2] + part4[r][3];
    workgroupBarrier();
    return s;
}

fn a_value(job: Job, k: u32, lr: u32, kk: u32) -> f32 {
    // element (tile row lr, k) of this job's A operand: mapped rows, LayerNorm prologue, + pos
    let a_row = a_row_s[lr];
    var x = arena[job.a + a_row * job.k + k];
    if ((job.flags & F_LN) != 0u) {
        x = (x - row_mean[lr]) * row_rstd[lr] * lnw_s[kk] + lnb_s[kk];
    }
    if ((job.flags & F_POS) != 0u) { x += arena[job.pos + a_row * job.k + k]; }
    return x;
}

// The operands of job `ctx` for tile.wgsl's tile64: A with its prologue (see `a_value`),
// B = the job's weight [N, K]; per slab, the LayerNorm γ and β of its K columns.
fn tile_a(ctx: u32, row0: u32, r: u32, k: u32, kk: u32) -> f32 {
    let job = p.jobs[ctx];
    if (row0 + r >= job.rows) { return 0.0; }
    return a_value(job, k, r, kk);
}

fn tile_b(ctx: u32, col: u32, k: u32) -> f32 {
    let job = p.jobs[ctx];
    if (col >= job.n) { return 0.0; }
    return arena[job.w + col * job.k + k];
}

fn tile_slab(ctx: u32, lid: u32, k0: u32) {
    let job = p.jobs[ctx];
    if ((job.flags & F_LN) != 0u) {
        if (lid < TK) {
            let k = k0 + lid;
            lnw_s[lid] = select(0.0, arena[job.ln_w + k], k < job.k);
            lnb_s[lid] = select(0.0, arena[job.ln_b + k], k < job.k);
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn gemm_jobs(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let g = wid.y * p.grid_x + wid.x;
    if (g >= p.total) { return; }                  // uniform per workgroup
    var j = 0u;
    for (var i = 1u; i < p.njobs; i++) {
        if (g >= p.jobs[i].tile0) { j = i; }
    }
    let job = p.jobs[j];
    let lid = lid3.x;
    let tiles_n = (job.n + TM - 1u) / TM;
    let local = g - job.tile0;
    let row0 = (local / tiles_n) * TM;
    let col0 = (local % tiles_n) * TM;
    if (lid < TM) {
        let row = row0 + lid;
        a_row_s[lid] = select(row, image_row(row), (job.flags & F_MAP_A) != 0u);
    }
    workgroupBarrier();

    if ((job.flags & F_LN) != 0u) {
        let lr = lid / 4u;
        let q = lid % 4u;
        let row = row0 + lr;
        let live = row < job.rows;
        let a_row = select(row, image_row(row), (job.flags & F_MAP_A) != 0u);
        var s = 0.0;
        if (live) { for (var k = q; k < job.k; k += 4u) { s += arena[job.a + a_row * job.k + k]; } }
        let mean = row_sum4(lr, q, s) / f32(job.k);
        var v = 0.0;
        if (live) { for (var k = q; k < job.k; k += 4u) { let d = arena[job.a + a_row * job.k + k] - mean; v += d * d; } }
        let rstd = inverseSqrt(row_sum4(lr, q, v) / f32(job.k) + p.eps);
        if (q == 0u) {
            row_mean[lr] = mean;
            row_rstd[lr] = rstd;
            if ((job.flags & F_STATS) != 0u && col0 == 0u && live) {
                arena[job.stat + 2u * row] = mean;
                arena[job.stat + 2u * row + 1u] = rstd;
            }
        }
        workgroupBarrier();
    }

    var acc = tile64(j, lid, row0, col0, job.k);   // acc[i] = row ty·4 + i, columns tx·4 .. +4
    let ty = lid / 16u;
    let tx = lid % 16u;
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + ty * 4u + i;
        for (var jj = 0u; jj < 4u; jj++) {
            let col = col0 + tx * 4u + jj;
            if (row < job.rows && col < job.n) {
                var y = (acc[i][jj] + arena[job.bias + col]) * job.scale;
                if ((job.flags & F_GELU) != 0u) { y = gelu(y); }
                let o_row = select(row, image_row(row), (job.flags & F_MAP_OUT) != 0u);
                if ((job.flags & F_GATE) != 0u) {
                    let r = arena[job.res + o_row * job.n + col];
                    let ln = (r - arena[job.stat + 2u * row]) * arena[job.stat + 2u * row + 1u] * arena[job.ln_w + col] + arena[job.ln_b + col];
                    var gv = 1.0;
                    if (p.gate == 0u) { gv = arena[job.gamma]; }
                    if (p.gate == 1u) { gv = arena[job.gamma + col]; }
                    y = ln + gv * y;
                }
                if ((job.flags & F_RESID) != 0u) { y += arena[job.res + o_row * job.n + col]; }
                arena[job.out + o_row * job.n + col] = y;
            }
        }
    }
}

// (the 256-wide reductions `reduce` and `reduce4` come from tile.wgsl)
const WG: u32 = 256u;

// ---------------------------------------------------------------- launch 2: both directions
// One workgroup per (side, b, h, block of 4 query rows): each key and value element read from
// the arena serves 4 query rows (component r of the vec4s below is query row i0 + r).
const AR: u32 = 4u;
var<workgroup> qs4: array<vec4<f32>, 256>;    // [channel d] (Dh ≤ 256)
var<workgroup> sc4: array<vec4<f32>, 1024>;   // [key j] (≤ 1024 keys)

@compute @workgroup_size(256)
fn attend(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let item = wid.y * p.grid_x + wid.x;
    let blocks_img = (p.nv + AR - 1u) / AR;
    let blocks_txt = (p.t + AR - 1u) / AR;
    let n_img = p.batch * p.heads * blocks_img;
    if (item >= n_img + p.batch * p.heads * blocks_txt) { return; }
    let lid = lid3.x;
    // image side: queries = Q rows of batch b, keys = K rows, values = Vl, out = ctx_v
    // text side:  queries = K rows, keys = Q rows (the scaled queries), values = Vv, out = ctx_l
    let text = item >= n_img;
    let it = select(item, item - n_img, text);
    let n_q = select(p.nv, p.t, text);
    let n_k = select(p.t, p.nv, text);
    let nb = select(blocks_img, blocks_txt, text);
    let i0 = (it % nb) * AR;
    let bh = it / nb;
    let h = bh % p.heads;
    let b = bh / p.heads;
    let q_off = select(off(O_Q), off(O_K), text);
    let k_off = select(off(O_K), off(O_Q), text);
    let v_off = select(off(O_VL), off(O_VV), text);
    let o_off = select(off(O_CTXV), off(O_CTXL), text);
    let col = h * p.dh;
    for (var d = lid; d < p.dh; d += WG) {
        var q = vec4(0.0);
        for (var r = 0u; r < AR; r++) {
            if (i0 + r < n_q) { q[r] = arena[q_off + (b * n_q + i0 + r) * p.e + col + d]; }
        }
        qs4[d] = q;   // rows past the end score 0 and are not written
    }
    workgroupBarrier();
    var m = vec4(-3.4e38);
    for (var j = lid; j < n_k; j += WG) {
        let kb = k_off + (b * n_k + j) * p.e + col;
        var s = vec4(0.0);
        for (var d = 0u; d < p.dh; d++) { s = fma(qs4[d], vec4(arena[kb + d]), s); }
        sc4[j] = s;
        m = max(m, s);
    }
    let mx = reduce4(m, lid, true);
    var sum = vec4(0.0);
    for (var j = lid; j < n_k; j += WG) { let x = exp(sc4[j] - mx); sc4[j] = x; sum += x; }
    let inv = 1.0 / reduce4(sum, lid, false);
    for (var d = lid; d < p.dh; d += WG) {
        var o = vec4(0.0);
        for (var j = 0u; j < n_k; j++) { o = fma(sc4[j], vec4(arena[v_off + (b * n_k + j) * p.e + col + d]), o); }
        o *= inv;
        for (var r = 0u; r < AR; r++) {
            if (i0 + r < n_q) { arena[o_off + (b * n_q + i0 + r) * p.e + col + d] = o[r]; }
        }
    }
}

// ---------------------------------------------------------------- launches 5 and 7: whole rows
var<workgroup> rowv: array<f32, 1024>;    // the row being built (≤ 1024 wide)
var<workgroup> ctx: array<f32, 1024>;     // launch 5: attention output of the row
var<workgroup> sc: array<f32, 2048>;      // launch 5: one head's scores (≤ 2048 labels)

// LayerNorm of rowv[0..width] with (w, b) into arena[dst..].
fn norm_row(lid: u32, width: u32, w: u32, bb: u32, dst: u32) {
    var s = 0.0;
    for (var c = lid; c < width; c += WG) { s += rowv[c]; }
    let mean = reduce(s, lid, false) / f32(width);
    var q = 0.0;
    for (var c = lid; c < width; c += WG) { let d = rowv[c] - mean; q += d * d; }
    let rstd = inverseSqrt(reduce(q, lid, false) / f32(width) + p.eps);
    for (var c = lid; c < width; c += WG) { arena[dst + c] = (rowv[c] - mean) * rstd * arena[w + c] + arena[bb + c]; }
}

@compute @workgroup_size(256)
fn lang_attend(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let r = wid.y * p.grid_x + wid.x;             // label row b·T + i
    if (r >= p.batch * p.t) { return; }
    let lid = lid3.x;
    let b = r / p.t;
    for (var c = lid; c < p.lh; c += WG) { rowv[c] = arena[off(O_LQ) + r * p.lh + c]; }
    workgroupBarrier();
    for (var h = 0u; h < p.lheads; h++) {
        var m = -3.4e38;
        for (var j = lid; j < p.t; j += WG) {
            let kb = off(O_LK) + (b * p.t + j) * p.lh + h * p.ldh;
            var s = 0.0;
            for (var d = 0u; d < p.ldh; d++) { s += rowv[h * p.ldh + d] * arena[kb + d]; }
            s *= p.lscale;
            if (p.has_mask != 0u) { s += (1.0 - arena[off(O_MASK) + b * p.t + j]) * -10000.0; }
            sc[j] = s;
            m = max(m, s);
        }
        let mx = reduce(m, lid, true);
        var sum = 0.0;
        for (var j = lid; j < p.t; j += WG) { let x = exp(sc[j] - mx); sc[j] = x; sum += x; }
        let inv = 1.0 / reduce(sum, lid, false);
        for (var d = lid; d < p.ldh; d += WG) {
            var o = 0.0;
            for (var j = 0u; j < p.t; j++) { o += sc[j] * arena[off(O_LV) + (b * p.t + j) * p.lh + h * p.ldh + d]; }
            ctx[h * p.ldh + d] = o * inv;
        }
        workgroupBarrier();
    }
    // attention output projection + residual (l'), then LayerNorm over the whole row
    // (weights transposed on upload, so neighbouring invocations read neighbouring columns)
    for (var c = lid; c < p.lh; c += WG) {
        var y = arena[off(O_BO) + c] + arena[off(O_LNEW) + r * p.lh + c];
        for (var k = 0u; k < p.lh; k++) { y += ctx[k] * arena[off(O_WO) + k * p.lh + c]; }
        rowv[c] = y;   // rowv's query values are no longer read: every head is done
    }
    workgroupBarrier();
    norm_row(lid, p.lh, off(O_N1W), off(O_N1B), off(O_A) + r * p.lh);
}

@compute @workgroup_size(256)
fn norm_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    // lang_out = LayerNorm(o) per label row, o = FFN down-projection + residual (launch 7)
    let r = wid.y * p.grid_x + wid.x;
    if (r >= p.batch * p.t) { return; }
    let lid = lid3.x;
    for (var c = lid; c < p.lh; c += WG) { rowv[c] = arena[off(O_INTER2) + r * p.lh + c]; }
    workgroupBarrier();
    norm_row(lid, p.lh, off(O_N2W), off(O_N2B), off(O_LOUT) + r * p.lh);
}
