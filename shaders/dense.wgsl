// dense.wgsl — building blocks of the ALIF ops and the encoder: gemm, layer_norm, softmax,
// attention, add (f32).
//
// Bindings (group 0), each entry point uses a subset:
//   0 dims  uniform             Dims (mirrors `DenseDims` in src/backend/wgpu.rs)
//   1 a     storage, read       array<f32>  gemm: x [M,K] | layer_norm, softmax: x [R,C] | attention: q [B,Lq,H·Dh] | add: a [M]
//   2 b     storage, read       array<f32>  gemm: weight [N,K] | layer_norm: gamma [C] | attention: k [B,Lk,H·Dh] | add: b [M]
//   3 c     storage, read       array<f32>  gemm: bias [N] | layer_norm: beta [C] | attention: v [B,Lk,H·Dh]
//   4 d     storage, read       array<f32>  gemm: residual [M,N] | attention: additive key mask [B,Lk]
//   5 out   storage, read_write array<f32>  gemm: y [M,N] | layer_norm, softmax: y [R,C] | attention: [B,Lq,H·Dh] | add: [M]
//
// Dispatch:
//   gemm       one 256-wide workgroup per 64×64 output tile, (x, y) = (column tile, row tile);
//              each invocation a 4×4 register block; K walked in 16-deep slabs in workgroup memory.
//   gemm128    the same for large products: 128×128 tiles, each invocation an 8×8 register block
//              (rows ty·4 + i and 64 + ty·4 + i, the same for columns), K in 8-deep slabs: four
//              vec4 reads from workgroup memory per 64 FMAs instead of two per 16.
//   layer_norm, softmax   one 256-wide workgroup per row; row = wid.y · grid_x + wid.x.
//   attention  one 256-wide workgroup per (b, h, query row), same 2-D numbering: the query row
//              is staged, scores for all Lk keys kept in workgroup memory (Lk ≤ 2048, Dh ≤ 256),
//              max and sum reduced in workgroup memory, then each invocation sums P·V for its
//              channels.
//   add        one 256-wide workgroup per 256 elements, same 2-D numbering of workgroups;
//              flags bit 0 multiplies instead (mul), bits 1-2 the activation as gemm's.
// Math: gemm y = act(x·Wᵀ + b) [+ residual], act ∈ {none, ReLU, GELU(erf)}; layer_norm biased variance;
// softmax and attention subtract the row max.

struct Dims {
    m: u32, k: u32, n: u32, flags: u32,      // gemm; flags bit 0 = bias, bits 1-2 = act (0 none, 1 relu, 2 gelu), bit 3 = residual; add: m elements
    rows: u32, width: u32, eps: f32, scale: f32,
    batch: u32, heads: u32, q_len: u32, k_len: u32,
    head_dim: u32, has_mask: u32, grid_x: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read> d: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// 64×64 output tile per 256-invocation workgroup, each invocation a 4×4 register block; K is
// walked in 16-deep slabs staged (k-major) in workgroup memory as vec4s (the same tile as
// sparse_fusion.wgsl's gemm_jobs).
const TM: u32 = 64u;
const TK: u32 = 16u;
var<workgroup> as4: array<vec4<f32>, 256>;     // [k][row / 4]
var<workgroup> ws4: array<vec4<f32>, 256>;     // [k][col / 4]

// erf with |error| < 1.5e-7 (Abramowitz & Stegun 7.1.26); WGSL has no erf builtin.
fn erf_approx(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * abs(x));
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-x * x);
    return select(-y, y, x >= 0.0);
}

fn activate(x: f32, act: u32) -> f32 {
    if (act == 1u) { return select(x, 0.0, x < 0.0); }   // NaN stays NaN, as torch.relu keeps it
    if (act == 2u) { return 0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752)); }
    return x;
}

@compute @workgroup_size(256)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let row0 = wid.y * TM;
    let col0 = wid.x * TM;
    let ty = lid / 16u;
    let tx = lid % 16u;
    var acc: array<vec4<f32>, 4>;                 // acc[i] = row ty·4 + i, columns tx·4 .. +4
    let kk = lid % TK;                            // this invocation stages k = k0 + kk of
    let q4 = lid / TK;                            // rows (and columns) q4·4 .. q4·4 + 4
    for (var k0 = 0u; k0 < dims.k; k0 += TK) {
        let k = k0 + kk;
        var xv = vec4(0.0);
        var wv = vec4(0.0);
        for (var q = 0u; q < 4u; q++) {
            let r = q4 * 4u + q;
            if (row0 + r < dims.m && k < dims.k) { xv[q] = a[(row0 + r) * dims.k + k]; }
            if (col0 + r < dims.n && k < dims.k) { wv[q] = b[(col0 + r) * dims.k + k]; }
        }
        as4[kk * 16u + q4] = xv;
        ws4[kk * 16u + q4] = wv;
        workgroupBarrier();
        for (var s = 0u; s < TK; s++) {
            let av = as4[s * 16u + ty];
            let bv = ws4[s * 16u + tx];
            acc[0] = fma(vec4(av.x), bv, acc[0]);
            acc[1] = fma(vec4(av.y), bv, acc[1]);
            acc[2] = fma(vec4(av.z), bv, acc[2]);
            acc[3] = fma(vec4(av.w), bv, acc[3]);
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            epilogue(acc[i][j], row0 + ty * 4u + i, col0 + tx * 4u + j);
        }
    }
}

var<workgroup> as8: array<vec4<f32>, 256>;     // gemm128: [k (8)][row / 4 (32)]
var<workgroup> ws8: array<vec4<f32>, 256>;     // gemm128: [k (8)][col / 4 (32)]

fn epilogue(acc: f32, row: u32, col: u32) {
    if (row < dims.m && col < dims.n) {
        var y = acc;
        if ((dims.flags & 1u) != 0u) { y += c[col]; }
        y = activate(y, (dims.flags >> 1u) & 3u);
        if ((dims.flags & 8u) != 0u) { y += d[row * dims.n + col]; }
        out[row * dims.n + col] = y;
    }
}

@compute @workgroup_size(256)
fn gemm128(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let row0 = wid.y * 128u;
    let col0 = wid.x * 128u;
    let ty = lid / 16u;
    let tx = lid % 16u;
    var acc: array<vec4<f32>, 16>;                // acc[2i + h]: row i of the block, column half h
    let kk = lid % 8u;                            // this invocation stages k = k0 + kk of
    let q4 = lid / 8u;                            // rows (and columns) q4·4 .. q4·4 + 4
    for (var k0 = 0u; k0 < dims.k; k0 += 8u) {
        let k = k0 + kk;
        var xv = vec4(0.0);
        var wv = vec4(0.0);
        for (var q = 0u; q < 4u; q++) {
            let r = q4 * 4u + q;
            if (row0 + r < dims.m && k < dims.k) { xv[q] = a[(row0 + r) * dims.k + k]; }
            if (col0 + r < dims.n && k < dims.k) { wv[q] = b[(col0 + r) * dims.k + k]; }
        }
        as8[kk * 32u + q4] = xv;
        ws8[kk * 32u + q4] = wv;
        workgroupBarrier();
        for (var s = 0u; s < 8u; s++) {
            let a0 = as8[s * 32u + ty];
            let a1 = as8[s * 32u + 16u + ty];
            let b0 = ws8[s * 32u + tx];
            let b1 = ws8[s * 32u + 16u + tx];
            // unrolled by hand: constant indices keep the 16 accumulators in registers
            acc[0] = fma(vec4(a0.x), b0, acc[0]);
            acc[1] = fma(vec4(a0.x), b1, acc[1]);
            acc[8] = fma(vec4(a1.x), b0, acc[8]);
            acc[9] = fma(vec4(a1.x), b1, acc[9]);
            acc[2] = fma(vec4(a0.y), b0, acc[2]);
            acc[3] = fma(vec4(a0.y), b1, acc[3]);
            acc[10] = fma(vec4(a1.y), b0, acc[10]);
            acc[11] = fma(vec4(a1.y), b1, acc[11]);
            acc[4] = fma(vec4(a0.z), b0, acc[4]);
            acc[5] = fma(vec4(a0.z), b1, acc[5]);
            acc[12] = fma(vec4(a1.z), b0, acc[12]);
            acc[13] = fma(vec4(a1.z), b1, acc[13]);
            acc[6] = fma(vec4(a0.w), b0, acc[6]);
            acc[7] = fma(vec4(a0.w), b1, acc[7]);
            acc[14] = fma(vec4(a1.w), b0, acc[14]);
            acc[15] = fma(vec4(a1.w), b1, acc[15]);
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 8u; i++) {
        let row = row0 + (i / 4u) * 64u + ty * 4u + i % 4u;
        for (var j = 0u; j < 4u; j++) {
            epilogue(acc[2u * i][j], row, col0 + tx * 4u + j);
            epilogue(acc[2u * i + 1u][j], row, col0 + 64u + tx * 4u + j);
        }
    }
}

const WG: u32 = 256u;
var<workgroup> red: array<f32, 256>;

// Sum (op 0) or max (op 1) of one value per invocation over the workgroup; every invocation gets it.
fn reduce(v: f32, lid: u32, op: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] = select(red[lid] + red[lid + s], max(red[lid], red[lid + s]), op == 1u);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(256)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let row = wid.y * dims.grid_x + wid.x;
    if (row >= dims.rows) { return; }   // uniform per workgroup
    let lid = lid3.x;
    let base = row * dims.width;
    var s = 0.0;
    for (var i = lid; i < dims.width; i += WG) { s += a[base + i]; }
    let mean = reduce(s, lid, 0u) / f32(dims.width);
    var q = 0.0;
    for (var i = lid; i < dims.width; i += WG) { let t = a[base + i] - mean; q += t * t; }
    let inv = inverseSqrt(reduce(q, lid, 0u) / f32(dims.width) + dims.eps);
    for (var i = lid; i < dims.width; i += WG) {
        out[base + i] = (a[base + i] - mean) * inv * b[i] + c[i];
    }
}

@compute @workgroup_size(256)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let row = wid.y * dims.grid_x + wid.x;
    if (row >= dims.rows) { return; }
    let lid = lid3.x;
    let base = row * dims.width;
    var m = -3.4e38;
    for (var i = lid; i < dims.width; i += WG) { m = max(m, a[base + i]); }
    let mx = reduce(m, lid, 1u);
    var s = 0.0;
    for (var i = lid; i < dims.width; i += WG) { s += exp(a[base + i] - mx); }
    let inv = 1.0 / reduce(s, lid, 0u);
    for (var i = lid; i < dims.width; i += WG) { out[base + i] = exp(a[base + i] - mx) * inv; }
}

var<workgroup> qs: array<f32, 256>;
var<workgroup> sc: array<f32, 2048>;

@compute @workgroup_size(256)
fn attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let item = wid.y * dims.grid_x + wid.x;        // (b·H + h)·Lq + i
    if (item >= dims.batch * dims.heads * dims.q_len) { return; }
    let lid = lid3.x;
    let i = item % dims.q_len;
    let bh = item / dims.q_len;
    let h = bh % dims.heads;
    let bb = bh / dims.heads;
    let w = dims.heads * dims.head_dim;
    let qbase = (bb * dims.q_len + i) * w + h * dims.head_dim;
    for (var t = lid; t < dims.head_dim; t += WG) { qs[t] = a[qbase + t]; }
    workgroupBarrier();
    var m = -3.4e38;
    for (var j = lid; j < dims.k_len; j += WG) {
        let kbase = (bb * dims.k_len + j) * w + h * dims.head_dim;
        var s = 0.0;
        for (var t = 0u; t < dims.head_dim; t++) { s += qs[t] * b[kbase + t]; }
        s = s * dims.scale;
        if (dims.has_mask != 0u) { s += d[bb * dims.k_len + j]; }
        sc[j] = s;
        m = max(m, s);
    }
    let mx = reduce(m, lid, 1u);
    var s = 0.0;
    for (var j = lid; j < dims.k_len; j += WG) { let e = exp(sc[j] - mx); sc[j] = e; s += e; }
    let inv = 1.0 / reduce(s, lid, 0u);   // the barriers in reduce also publish sc
    for (var t = lid; t < dims.head_dim; t += WG) {
        var o = 0.0;
        for (var j = 0u; j < dims.k_len; j++) { o += sc[j] * c[(bb * dims.k_len + j) * w + h * dims.head_dim + t]; }
        out[qbase + t] = o * inv;
    }
}

@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let i = (wid.y * dims.grid_x + wid.x) * WG + lid3.x;
    if (i < dims.m) { out[i] = activate(select(a[i] + b[i], a[i] * b[i], (dims.flags & 1u) != 0u), (dims.flags >> 1u) & 3u); }
}
