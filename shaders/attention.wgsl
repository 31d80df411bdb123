// attention.wgsl — multi-head attention on packed projections: out = softmax(q·kᵀ·scale [+ mask])·v
// per (batch, head), f32, the row max subtracted first.
//
// Bindings (group 0):
//   0 p     uniform             P (mirrors `AttentionParams` in src/ops/attention/wgpu.rs)
//   1 q     storage, read       [B,Lq,H·Dh]
//   2 k     storage, read       [B,Lk,H·Dh]
//   3 v     storage, read       [B,Lk,H·Dh]
//   4 mask  storage, read       [B,Lk] additive key mask (when has_mask)
//   5 out   storage, read_write [B,Lq,H·Dh]
//
// Dispatch: one 256-wide workgroup per (b, h, query row), numbered wid.y · grid_x + wid.x: the
// query row is staged, scores for all Lk keys kept in workgroup memory (Lk ≤ 2048, Dh ≤ 256:
// `AttentionProblem::gpu_fits`), max and sum reduced in workgroup memory, then each invocation
// sums P·V for its channels. `reduce` comes from reduce.wgsl, assembled in front.

struct P {
    scale: f32, batch: u32, heads: u32, q_len: u32,
    k_len: u32, head_dim: u32, has_mask: u32, grid_x: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> mask: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

var<workgroup> qs: array<f32, 256>;
var<workgroup> sc: array<f32, 2048>;

@compute @workgroup_size(256)
fn attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let item = wid.y * p.grid_x + wid.x;        // (b·H + h)·Lq + i
    if (item >= p.batch * p.heads * p.q_len) { return; }
    let lid = lid3.x;
    let i = item % p.q_len;
    let bh = item / p.q_len;
    let h = bh % p.heads;
    let bb = bh / p.heads;
    let w = p.heads * p.head_dim;
    let qbase = (bb * p.q_len + i) * w + h * p.head_dim;
    for (var t = lid; t < p.head_dim; t += WG) { qs[t] = q[qbase + t]; }
    workgroupBarrier();
    var m = -3.4e38;
    for (var j = lid; j < p.k_len; j += WG) {
        let kbase = (bb * p.k_len + j) * w + h * p.head_dim;
        var s = 0.0;
        for (var t = 0u; t < p.head_dim; t++) { s += qs[t] * k[kbase + t]; }
        s = s * p.scale;
        if (p.has_mask != 0u) { s += mask[bb * p.k_len + j]; }
        sc[j] = s;
        m = max(m, s);
    }
    let mx = reduce(m, lid, true);
    var s = 0.0;
    for (var j = lid; j < p.k_len; j += WG) { let e = exp(sc[j] - mx); sc[j] = e; s += e; }
    let inv = 1.0 / reduce(s, lid, false);   // the barriers in reduce also publish sc
    for (var t = lid; t < p.head_dim; t += WG) {
        var o = 0.0;
        for (var j = 0u; j < p.k_len; j++) { o += sc[j] * v[(bb * p.k_len + j) * w + h * p.head_dim + t]; }
        out[qbase + t] = o * inv;
    }
}
