// elementwise.wgsl — out = act(a + b) or act(a · b) on equal-length arrays, f32.
//
// Bindings (group 0):
//   0 p    uniform             P (mirrors `ElementwiseParams` in src/ops/elementwise/wgpu.rs)
//   1 a    storage, read       [len]
//   2 b    storage, read       [len]
//   5 out  storage, read_write [len]
//
// Dispatch: one invocation per element, 256-wide workgroups numbered wid.y · grid_x + wid.x.
// flags: bit 0 multiplies instead of adding, bits 1-2 the activation code (activation.wgsl,
// assembled in front).

struct P {
    len: u32, flags: u32, grid_x: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let i = (wid.y * p.grid_x + wid.x) * WG + lid3.x;
    if (i < p.len) { out[i] = activate(select(a[i] + b[i], a[i] * b[i], (p.flags & 1u) != 0u), (p.flags >> 1u) & 3u); }
}
