// group_norm.wgsl — GroupNorm of x [B, C, plane] with per-channel gamma, beta (biased variance about
// the mean, eps in P), f32.
//
// Bindings (group 0):
//   0 p      uniform             P (mirrors `GroupNormParams` in src/ops/image/wgpu.rs)
//   1 x      storage, read       [B, C, plane]
//   2 gamma  storage, read       [C]
//   3 beta   storage, read       [C]
//   5 out    storage, read_write [B, C, plane]
//
// Dispatch: one 256-wide workgroup per (group, image) = (wid.x, wid.y): mean, then the variance
// about it, then the normalized values. `reduce` comes from reduce.wgsl, assembled in front.

struct P {
    channels: u32, plane: u32, groups: u32, eps: f32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn group_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let g = wid.x;                                 // group
    let b = wid.y;                                 // image
    let plane = p.plane;
    let per_c = p.channels / p.groups;
    let n = per_c * plane;
    let base = (b * p.channels + g * per_c) * plane;
    var s = 0.0;
    for (var i = lid; i < n; i += WG) { s += x[base + i]; }
    let mean = reduce(s, lid, false) / f32(n);
    var q = 0.0;
    for (var i = lid; i < n; i += WG) { let d = x[base + i] - mean; q += d * d; }
    let rstd = inverseSqrt(reduce(q, lid, false) / f32(n) + p.eps);
    for (var i = lid; i < n; i += WG) {
        let ch = g * per_c + i / plane;
        out[base + i] = (x[base + i] - mean) * rstd * gamma[ch] + beta[ch];
    }
}
