// gemm.wgsl — y [M,N] = act(x [M,K] · Wᵀ + b) [+ residual], f32; W stored [N,K] as nn.Linear keeps it.
//
// Bindings (group 0):
//   0 p         uniform             P (mirrors `GemmParams` in src/ops/gemm/wgpu.rs)
//   1 x         storage, read       [M,K]
//   2 w         storage, read       [N,K]
//   3 bias      storage, read       [N] (flags bit 0)
//   4 residual  storage, read       [M,N] (flags bit 3), added after the activation
//   5 out       storage, read_write [M,N]
//
// Dispatch:
//   gemm       one 256-wide workgroup per 64×64 output tile, (x, y) = (column tile, row tile);
//              each invocation a 4×4 register block; K walked in 16-deep slabs in workgroup memory.
//   gemm128    the same for large products: 128×128 tiles, each invocation an 8×8 register block
//              (rows ty·4 + i and 64 + ty·4 + i, the same for columns), K in 8-deep slabs: four
//              vec4 reads from workgroup memory per 64 FMAs instead of two per 16.
// The mainloops (tile64, tile128) come from tile.wgsl and `activate` from activation.wgsl,
// assembled in front. flags: bit 0 bias, bits 1-2 the activation code, bit 3 residual.

struct P {
    m: u32, k: u32, n: u32, flags: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> residual: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// The GEMM operands for the tile mainloops of tile.wgsl: A = x [M,K], B = W [N,K].
fn tile_a(ctx: u32, row0: u32, r: u32, k: u32, kk: u32) -> f32 {
    if (row0 + r >= p.m) { return 0.0; }
    return x[(row0 + r) * p.k + k];
}

fn tile_b(ctx: u32, col: u32, k: u32) -> f32 {
    if (col >= p.n) { return 0.0; }
    return w[col * p.k + k];
}

fn tile_slab(ctx: u32, lid: u32, k0: u32) {}

@compute @workgroup_size(256)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let row0 = wid.y * 64u;
    let col0 = wid.x * 64u;
    var acc = tile64(0u, lid, row0, col0, p.k);
    let ty = lid / 16u;
    let tx = lid % 16u;
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            epilogue(acc[i][j], row0 + ty * 4u + i, col0 + tx * 4u + j);
        }
    }
}

fn epilogue(acc: f32, row: u32, col: u32) {
    if (row < p.m && col < p.n) {
        var y = acc;
        if ((p.flags & 1u) != 0u) { y += bias[col]; }
        y = activate(y, (p.flags >> 1u) & 3u);
        if ((p.flags & 8u) != 0u) { y += residual[row * p.n + col]; }
        out[row * p.n + col] = y;
    }
}

@compute @workgroup_size(256)
fn gemm128(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let row0 = wid.y * 128u;
    let col0 = wid.x * 128u;
    var acc = tile128(0u, lid, row0, col0, p.k, false);
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
