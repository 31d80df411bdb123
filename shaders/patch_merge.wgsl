// patch_merge.wgsl — Swin's patch merging gather (swin_transformer.py:419-446), f32: tokens
// x [h·w, C] → [⌈h/2⌉·⌈w/2⌉, 4C], output (i, j) = cat(x[2i, 2j], x[2i+1, 2j], x[2i, 2j+1],
// x[2i+1, 2j+1]), zeros past an odd edge (the official zero pad).
//
// Bindings (group 0):
//   0 p    uniform             P (mirrors `PatchMergeParams` in src/ops/image/wgpu.rs)
//   1 x    storage, read       [h·w, C]
//   5 out  storage, read_write [⌈h/2⌉·⌈w/2⌉, 4C]
//
// Dispatch: one invocation per output element.

struct P {
    h: u32, w: u32, c: u32, grid_x: u32,
    total: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn patch_merge(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let i = (wid.y * p.grid_x + wid.x) * WG + lid3.x;
    if (i >= p.total) { return; }
    let ow = (p.w + 1u) / 2u;
    let ch = i % (4u * p.c);
    let o = i / (4u * p.c);
    let k = ch / p.c;
    // k = 0: (even row, even col), 1: (odd, even), 2: (even, odd), 3: (odd, odd)
    let y = 2u * (o / ow) + k % 2u;
    let xx = 2u * (o % ow) + k / 2u;
    var v = 0.0;
    if (y < p.h && xx < p.w) { v = x[(y * p.w + xx) * p.c + ch % p.c]; }
    out[i] = v;
}
