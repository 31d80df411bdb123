// softmax.wgsl — row softmax of x [R,C] (the row max subtracted first), f32.
//
// Bindings (group 0):
//   0 p    uniform             P (mirrors `SoftmaxParams` in src/ops/softmax/wgpu.rs)
//   1 x    storage, read       [R,C]
//   5 out  storage, read_write [R,C]
//
// Dispatch: one 256-wide workgroup per row; row = wid.y · grid_x + wid.x. `reduce` comes from
// reduce.wgsl, assembled in front.

struct P {
    rows: u32, width: u32, grid_x: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let row = wid.y * p.grid_x + wid.x;
    if (row >= p.rows) { return; }
    let lid = lid3.x;
    let base = row * p.width;
    var m = -3.4e38;
    for (var i = lid; i < p.width; i += WG) { m = max(m, x[base + i]); }
    let mx = reduce(m, lid, true);
    var s = 0.0;
    for (var i = lid; i < p.width; i += WG) { s += exp(x[base + i] - mx); }
    let inv = 1.0 / reduce(s, lid, false);
    for (var i = lid; i < p.width; i += WG) { out[base + i] = exp(x[base + i] - mx) * inv; }
}
