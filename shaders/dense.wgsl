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
// The GEMM mainloops (tile64, tile128) and `reduce` come from tile.wgsl, assembled in front.
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

// The GEMM operands for the tile mainloops of tile.wgsl: A = x [M,K], B = W [N,K].
fn tile_a(ctx: u32, row0: u32, r: u32, k: u32, kk: u32) -> f32 {
    if (row0 + r >= dims.m) { return 0.0; }
    return a[(row0 + r) * dims.k + k];
}

fn tile_b(ctx: u32, col: u32, k: u32) -> f32 {
    if (col >= dims.n) { return 0.0; }
    return b[col * dims.k + k];
}

fn tile_slab(ctx: u32, lid: u32, k0: u32) {}

@compute @workgroup_size(256)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let row0 = wid.y * 64u;
    let col0 = wid.x * 64u;
    var acc = tile64(0u, lid, row0, col0, dims.k);
    let ty = lid / 16u;
    let tx = lid % 16u;
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            epilogue(acc[i][j], row0 + ty * 4u + i, col0 + tx * 4u + j);
        }
    }
}

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
    var acc = tile128(0u, lid, row0, col0, dims.k, false);
    let ty = lid / 16u;
    let tx = lid % 16u;
    for (var i = 0u; i < 8u; i++) {
        let row = row0 + tile128_row(ty, i);
        for (var j = 0u; j < 4u; j++) {
            epilogue(acc[2u * i][j], row, col0 + tx * 4u + j);
            epilogue(acc[2u * i + 1u][j], row, col0 + 64u + tx * 4u + j);
        }
    }
}

const WG: u32 = 256u;
@compute @workgroup_size(256)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let row = wid.y * dims.grid_x + wid.x;
    if (row >= dims.rows) { return; }   // uniform per workgroup
    let lid = lid3.x;
    let base = row * dims.width;
    var s = 0.0;
    for (var i = lid; i < dims.width; i += WG) { s += a[base + i]; }
    let mean = reduce(s, lid, false) / f32(dims.width);
    var q = 0.0;
    for (var i = lid; i < dims.width; i += WG) { let t = a[base + i] - mean; q += t * t; }
    let inv = inverseSqrt(reduce(q, lid, false) / f32(dims.width) + dims.eps);
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
    let mx = reduce(m, lid, true);
    var s = 0.0;
    for (var i = lid; i < dims.width; i += WG) { s += exp(a[base + i] - mx); }
    let inv = 1.0 / reduce(s, lid, false);
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
    let mx = reduce(m, lid, true);
    var s = 0.0;
    for (var j = lid; j < dims.k_len; j += WG) { let e = exp(sc[j] - mx); sc[j] = e; s += e; }
    let inv = 1.0 / reduce(s, lid, false);   // the barriers in reduce also publish sc
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
