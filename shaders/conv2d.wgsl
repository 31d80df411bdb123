// conv2d.wgsl — y = act(conv2d(x, W) + b [+ residual]), NCHW, f32, as an implicit GEMM: y[b] =
// W · cols(x[b]) ([Co, Ho·Wo]), the columns gathered from x while the tile is staged, never stored.
//
// Bindings (group 0):
//   0 p         uniform             P (mirrors `ConvParams` in src/ops/conv2d/wgpu.rs)
//   1 x         storage, read       [B,Ci,H,W]
//   2 w         storage, read       [Co, Ci·Kh·Kw]
//   3 bias      storage, read       [Co]
//   4 residual  storage, read       [B,Co,Ho,Wo] (flags bit 3)
//   5 out       storage, read_write [B,Co,Ho,Wo]
//
// Dispatch:
//   conv     one 256-wide workgroup per 64×64 tile, (x, y, z) = (pixel tile, channel tile,
//            image); each invocation a 4×4 block.
//   conv128  the same with 128×128 tiles and an 8×8 block per invocation (large outputs).
// The mainloops (tile64, tile128) come from tile.wgsl, assembled in front. flags: bit 0 ReLU
// (identity otherwise), bit 3 residual — a bottleneck adds its identity before the ReLU.

struct P {
    in_c: u32, h: u32, w: u32, out_c: u32,
    kh: u32, kw: u32, stride: u32, pad: u32,
    out_h: u32, out_w: u32, flags: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> residual: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

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
        var y = v + bias[row];
        if ((p.flags & 8u) != 0u) { y += residual[at]; }
        if ((p.flags & 1u) != 0u && y < 0.0) { y = 0.0; }   // NaN stays NaN, as torch.relu keeps it
        out[at] = y;
    }
}

// `conv` for large outputs: 128×128 tiles, each invocation an 8×8 block (as gemm.wgsl's
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
