// max_pool.wgsl — 3×3 max pooling, stride 2, padding 1 (padding never wins: −inf), of `planes`
// planes h × w, f32.
//
// Bindings (group 0):
//   0 p    uniform             P (mirrors `MaxPoolParams` in src/ops/image/wgpu.rs)
//   1 x    storage, read       [planes, h, w]
//   5 out  storage, read_write [planes, out_h, out_w]
//
// Dispatch: one invocation per output element.

struct P {
    h: u32, w: u32, out_h: u32, out_w: u32,
    grid_x: u32, total: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

// Element index of this invocation: 256-wide workgroups numbered wid.y · grid_x + wid.x.
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
