// layer_norm.wgsl — row LayerNorm of x [R,C] (biased variance, eps in P), f32.
//
// Bindings (group 0):
//   0 p      uniform             P (mirrors `LayerNormParams` in src/ops/layer_norm/wgpu.rs)
//   1 x      storage, read       [R,C]
//   2 gamma  storage, read       [C]
//   3 beta   storage, read       [C]
//   5 out    storage, read_write [R,C]
//
// Dispatch: one 256-wide workgroup per row; row = wid.y · grid_x + wid.x. `reduce` comes from
// reduce.wgsl, assembled in front.

struct P {
    rows: u32, width: u32, eps: f32, grid_x: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let row = wid.y * p.grid_x + wid.x;
    if (row >= p.rows) { return; }   // uniform per workgroup
    let lid = lid3.x;
    let base = row * p.width;
    var s = 0.0;
    for (var i = lid; i < p.width; i += WG) { s += x[base + i]; }
    let mean = reduce(s, lid, false) / f32(p.width);
    var q = 0.0;
    for (var i = lid; i < p.width; i += WG) { let t = x[base + i] - mean; q += t * t; }
    let inv = inverseSqrt(reduce(q, lid, false) / f32(p.width) + p.eps);
    for (var i = lid; i < p.width; i += WG) {
        out[base + i] = (x[base + i] - mean) * inv * gamma[i] + beta[i];
    }
}
