// window_attention.wgsl — Swin's (shifted-)window attention, fused (src/ops/window_attention):
// the window padding (a padded token's q, k, v are the projection's bias), the cyclic shift, the
// window partition, reverse and crop are the indices tokens are read and written at; the
// relative position bias and the shift-region mask are added in the score loop.
//
// Bindings (group 0):
//   0 p      uniform             P (mirrors `WindowAttentionParams` in src/ops/window_attention/wgpu.rs)
//   1 qkv    storage, read       [H·W, 3C] (q | k | v, each heads × Dh), the map's own row order
//   2 bias   storage, read       [3C] the projection's bias: every padded token's q, k, v
//   3 table  storage, read       [(2w−1)², heads] relative position bias
//   5 out    storage, read_write [H·W, C] (outputs bind at 5 in every module)
//
// Dispatch: one 64-wide workgroup per (window, head), numbered wid.y · grid_x + wid.x (window-
// major). The window's keys and values of the head are staged in workgroup memory (w²·Dh ≤ 2048:
// `WindowAttentionProblem::gpu_fits`); invocation i < w² takes query i, its scores and row in
// registers. Mirrors kernels/window_attention.rs.

struct P {
    scale: f32, h: u32, w: u32, window: u32,
    shift: u32, heads: u32, head_dim: u32, grid_x: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> table: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;

var<workgroup> ks: array<f32, 2048>;
var<workgroup> vs: array<f32, 2048>;

const PADDED: u32 = 0xffffffffu;

fn hp() -> u32 { return (p.h + p.window - 1u) / p.window * p.window; }
fn wp() -> u32 { return (p.w + p.window - 1u) / p.window * p.window; }

// the map row of token j of window win (its cell in the shifted padded map, shifted back), or
// PADDED where that cell is window padding
fn token(j: u32, win: u32) -> u32 {
    let per_row = wp() / p.window;
    let ys = (win / per_row) * p.window + j / p.window;
    let xs = (win % per_row) * p.window + j % p.window;
    let y = (ys + p.shift) % hp();
    let x = (xs + p.shift) % wp();
    if (y >= p.h || x >= p.w) { return PADDED; }
    return y * p.w + x;
}

// where token j's q, k or v (part 0, 1, 2) channel `ch` of the head is read from
fn qkv_at(row: u32, part: u32, ch: u32) -> f32 {
    let c = p.heads * p.head_dim;
    if (row == PADDED) { return bias[part * c + ch]; }
    return qkv[row * 3u * c + part * c + ch];
}

// which of the three shift slices (…, n − w), (n − w, n − s), (n − s, …) v lies in
fn part(v: u32, n: u32) -> u32 {
    if (v < n - p.window) { return 0u; }
    if (v < n - p.shift) { return 1u; }
    return 2u;
}

// the shift region (0..9) of token j of window win, in the shifted map
fn region(j: u32, win: u32) -> u32 {
    let per_row = wp() / p.window;
    let ys = (win / per_row) * p.window + j / p.window;
    let xs = (win % per_row) * p.window + j % p.window;
    return part(ys, hp()) * 3u + part(xs, wp());
}

@compute @workgroup_size(64)
fn window_attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let item = wid.y * p.grid_x + wid.x;
    let windows = (hp() / p.window) * (wp() / p.window);
    if (item >= windows * p.heads) { return; }
    let lid = lid3.x;
    let head = item % p.heads;
    let win = item / p.heads;
    let n = p.window * p.window;
    let dh = p.head_dim;
    let c = p.heads * dh;
    for (var idx = lid; idx < n * dh; idx += WG) {
        let row = token(idx / dh, win);
        ks[idx] = qkv_at(row, 1u, head * dh + idx % dh);
        vs[idx] = qkv_at(row, 2u, head * dh + idx % dh);
    }
    workgroupBarrier();
    if (lid >= n) { return; }
    let i = lid;
    let row_i = token(i, win);
    if (row_i == PADDED) { return; }   // cropped away
    let region_i = region(i, win);
    var q: array<f32, 64>;
    for (var d = 0u; d < dh; d++) { q[d] = qkv_at(row_i, 0u, head * dh + d) * p.scale; }
    var sc: array<f32, 64>;
    var mx = -3.4e38;
    for (var j = 0u; j < n; j++) {
        var acc = 0.0;
        for (var d = 0u; d < dh; d++) { acc += q[d] * ks[j * dh + d]; }
        let dy = i / p.window + p.window - 1u - j / p.window;
        let dx = i % p.window + p.window - 1u - j % p.window;
        acc += table[(dy * (2u * p.window - 1u) + dx) * p.heads + head];
        if (p.shift > 0u && region(j, win) != region_i) { acc += -100.0; }
        sc[j] = acc;
        mx = max(mx, acc);
    }
    var sum = 0.0;
    for (var j = 0u; j < n; j++) { let e = exp(sc[j] - mx); sc[j] = e; sum += e; }
    let inv = 1.0 / sum;
    for (var d = 0u; d < dh; d++) {
        var o = 0.0;
        for (var j = 0u; j < n; j++) { o += sc[j] * vs[j * dh + d]; }
        out[row_i * c + head * dh + d] = o * inv;
    }
}
