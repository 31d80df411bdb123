// to_tokens.wgsl — writes level [C, plane] transposed into rows row0 .. row0 + plane of the
// encoder's token buffer tokens [S, C], f32.
//
// Bindings (group 0):
//   0 p      uniform             P (mirrors `ToTokensParams` in src/ops/image/wgpu.rs)
//   1 level  storage, read       [C, plane]
//   5 out    storage, read_write tokens [S, C]
//
// Dispatch: one invocation per element t·C + ch of the level.

struct P {
    c: u32, plane: u32, row0: u32, grid_x: u32,
    total: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> level: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

// Element index of this invocation: 256-wide workgroups numbered wid.y · grid_x + wid.x.
fn flat(wid: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * p.grid_x + wid.x) * WG + lid;
}

@compute @workgroup_size(256)
fn to_tokens(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let i = flat(wid, lid3.x);                     // t·C + ch over the level
    if (i >= p.total) { return; }
    let ch = i % p.c;
    let t = i / p.c;
    out[(p.row0 + t) * p.c + ch] = level[ch * p.plane + t];
}
