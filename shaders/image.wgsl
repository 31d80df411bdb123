// image.wgsl — the image front on the device (f32, NCHW): conv2d as an implicit GEMM, 3×3/s2
// max pooling, GroupNorm, and the flatten of a level into the encoder's token rows.
//
// Bindings (group 0), each entry point uses a subset:
//   0 p     uniform             P
//   1 x     storage, read       conv, max_pool, group_norm: x [B,C,H,W] | to_tokens: level [C,H·W]
//   2 w     storage, read       conv: weight [Co, Ci·Kh·Kw] | group_norm: gamma [C]
//   3 c     storage, read       conv: bias [Co] | group_norm: beta [C]
//   4 r     storage, read       conv: residual [B,Co,Ho,Wo]
//   5 out   storage, read_write conv, max_pool: [B,C,Ho,Wo] | group_norm: [B,C,H,W] | to_tokens: tokens [S,C]
//
// Dispatch:
//   conv        one 256-wide workgroup per 64×64 tile of y[b] = W · cols(x[b]) ([Co, Ho·Wo]),
//               (x, y, z) = (pixel tile, channel tile, image); each invocation a 4×4 block; the
//               columns are gathered from x while staging, never stored.
//   conv128     the same with 128×128 tiles and an 8×8 block per invocation (large outputs).
//   max_pool, to_tokens   one invocation per output element, 2-D numbering of 256-wide workgroups.
//   group_norm  one 256-wide workgroup per (image, group): mean, then variance about it, then
//               the normalized values (biased variance, eps in P).
// The GEMM mainloops (tile64, tile128) come from tile.wgsl and `reduce` from reduce.wgsl,
// assembled in front.
// Math: conv y = act(W·cols + b [+ residual]), act = ReLU when flags bit 0 is set (identity
// otherwise), residual added when bit 3 is set — a bottleneck adds its identity before the ReLU.

struct P {
    in_c: u32, h: u32, w: u32, out_c: u32,
    kh: u32, kw: u32, stride: u32, pad: u32,
    out_h: u32, out_w: u32, flags: u32, grid_x: u32,
    groups: u32, row0: u32, total: u32, eps: f32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read> r: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

// Column k of output pixel n of image b: x[b, ci, oy·s + ky − pad, ox·s + kx − pad] or 0.
fn col(b: u32, n: u32, k: u32) -> f32 {
    let kk = p.kh * p.kw;
    let ci = k / kk;
    let ky = (k / p.kw) % p.kh;
    let kx = k % p.kw;
    let iy = i32((n / p.out_w) * p.stride + ky) - i32(p.pad);
    let ix = i32((n % p.out_w) * p.stride + kx) - i32(p.pad);
    if (iy < 0 || ix < 0 || iy >= i32(p.h) || ix >= i32(p.w)) { return 0.0; }
    return x[((b * p.in_c + ci) * p.h + u32(iy)) * p.w + u32(ix)];
}

// The operands for tile.wgsl's mainloops: A = W [Co, Ci·Kh·Kw], B = the columns of image `ctx`.
fn tile_a(ctx: u32, row0: u32, r: u32, k: u32, kk: u32) -> f32 {
    if (row0 + r >= p.out_c) { return 0.0; }
    return w[(row0 + r) * p.in_c * p.kh * p.kw + k];
}

fn tile_b(ctx: u32, px: u32, k: u32) -> f32 {
    if (px >= p.out_h * p.out_w) { return 0.0; }
    return col(ctx, px, k);
}

fn tile_slab(ctx: u32, lid: u32, k0: u32) {}

@compute @workgroup_size(256)
fn conv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let b = wid.z;
    let row0 = wid.y * 64u;
    let col0 = wid.x * 64u;
    var acc = tile64(b, lid, row0, col0, p.in_c * p.kh * p.kw);
    let ty = lid / 16u;
    let tx = lid % 16u;
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            conv_out(acc[i][j], b, row0 + ty * 4u + i, col0 + tx * 4u + j);
        }
    }
}

// Output channel `row`, pixel `px` of image b: bias, the residual, then ReLU.
fn conv_out(v: f32, b: u32, row: u32, px: u32) {
    let n = p.out_h * p.out_w;
    if (row < p.out_c && px < n) {
        let at = (b * p.out_c + row) * n + px;
        var y = v + c[row];
        if ((p.flags & 8u) != 0u) { y += r[at]; }
        if ((p.flags & 1u) != 0u && y < 0.0) { y = 0.0; }   // NaN stays NaN, as torch.relu keeps it
        out[at] = y;
    }
}

// `conv` for large outputs: 128×128 tiles, each invocation an 8×8 block (as dense.wgsl's
// gemm128). The columns are staged with pixels along the invocations, so neighbouring
// invocations read neighbouring pixels of one input plane.
@compute @workgroup_size(256)
fn conv128(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let b = wid.z;
    let row0 = wid.y * 128u;
    let col0 = wid.x * 128u;
    var acc = tile128(b, lid, row0, col0, p.in_c * p.kh * p.kw, true);
    let ty = lid / 16u;
    let tx = lid % 16u;
    for (var i = 0u; i < 8u; i++) {
        let row = row0 + tile128_row(ty, i);
        for (var j = 0u; j < 4u; j++) {
            conv_out(acc[2u * i][j], b, row, col0 + tx * 4u + j);
            conv_out(acc[2u * i + 1u][j], b, row, col0 + 64u + tx * 4u + j);
        }
    }
}

fn flat(wid: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * p.grid_x + wid.x) * WG + lid;
}

@compute @workgroup_size(256)
fn max_pool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let i = flat(wid, lid3.x);
    if (i >= p.total) { return; }
    let ox = i % p.out_w;
    let oy = (i / p.out_w) % p.out_h;
    let plane = i / (p.out_w * p.out_h);          // b·C + c
    var m = -3.4e38;
    for (var ky = 0u; ky < 3u; ky++) {
        let iy = i32(oy * 2u + ky) - 1;
        if (iy < 0 || iy >= i32(p.h)) { continue; }
        for (var kx = 0u; kx < 3u; kx++) {
            let ix = i32(ox * 2u + kx) - 1;
            if (ix >= 0 && ix < i32(p.w)) { m = max(m, x[(plane * p.h + u32(iy)) * p.w + u32(ix)]); }
        }
    }
    out[i] = m;
}

@compute @workgroup_size(256)
fn group_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let g = wid.x;                                 // group
    let b = wid.y;                                 // image
    let plane = p.h * p.w;
    let per_c = p.in_c / p.groups;
    let n = per_c * plane;
    let base = (b * p.in_c + g * per_c) * plane;
    var s = 0.0;
    for (var i = lid; i < n; i += WG) { s += x[base + i]; }
    let mean = reduce(s, lid, false) / f32(n);
    var q = 0.0;
    for (var i = lid; i < n; i += WG) { let d = x[base + i] - mean; q += d * d; }
    let rstd = inverseSqrt(reduce(q, lid, false) / f32(n) + p.eps);
    for (var i = lid; i < n; i += WG) {
        let ch = g * per_c + i / plane;
        out[base + i] = (x[base + i] - mean) * rstd * w[ch] + c[ch];
    }
}

@compute @workgroup_size(256)
fn to_tokens(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let i = flat(wid, lid3.x);                     // t·C + ch over the level
    if (i >= p.total) { return; }
    let plane = p.h * p.w;
    let ch = i % p.in_c;
    let t = i / p.in_c;
    out[(p.row0 + t) * p.in_c + ch] = x[ch * plane + t];
}
