// msda.wgsl — prelude of ms_deform_attn.wgsl and ms_deform_attn_backward.wgsl: the overrides and
// uniform both use, the inputs both read, 8-channel loads of `value`, and the fused form's
// softmax and sampling locations (one definition for the forward and its gradient).
//
// Bindings declared here (group 0):
//   0 params   uniform        Params (mirrors `MsdaParams` in src/ops/ms_deform_attn/wgpu.rs)
//   1 value    storage, read  array<vec4<u32>>  value [B,S,M,D]: f32 → 4 channels per vec4
//                                               (bitcast), f16 (HALF) → 8 channels per vec4
//                                               (pairs packed as by pack2x16float)
//   3 samp     storage, read  array<f32>  official: sampling_locations [B,Q,M,L,P,2]
//                                         fused:    sampling_offsets   [B,Q,M,L,P,2]
//   4 attn     storage, read  array<f32>  official: attention_weights  [B,Q,M,L,P]
//                                         fused:    attention_logits   [B,Q,M,L·P]
//   5 refp     storage, read  array<f32>  fused only: reference [B,Q,L,REF_DIM]
// Invocation index = gid.y · params.grid_x + gid.x on a 2-D grid of WG-wide workgroups; only
// indices below params.total do work.

override WG: u32 = 128u;       // workgroup size
override HALF: bool = false;   // value (and the forward's output) stored as packed f16
override REF_DIM: u32 = 2u;    // fused form: 2 = points, 4 = boxes
override LEVELS: u32 = 4u;     // L, a pipeline constant so the sample loops have fixed trip counts
override POINTS: u32 = 4u;     // P

struct Params {
    batch: u32,
    queries: u32,
    heads: u32,
    groups: u32,      // D / 8
    tokens: u32,      // S
    total: u32,       // invocations that do work
    grid_x: u32,      // invocations per row of the 2-D grid
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
    shapes: array<vec4<u32>, 16>,  // per level: (H, W, start, 0)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> value: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> samp: array<f32>;
@group(0) @binding(4) var<storage, read> attn: array<f32>;
@group(0) @binding(5) var<storage, read> refp: array<f32>;

struct Oct { lo: vec4<f32>, hi: vec4<f32> }

// 8 channels starting at element `e` (a multiple of 8) of `value`.
fn load8(e: u32) -> Oct {
    if (HALF) {
        let u = value[e / 8u];
        return Oct(vec4<f32>(unpack2x16float(u.x), unpack2x16float(u.y)),
                   vec4<f32>(unpack2x16float(u.z), unpack2x16float(u.w)));
    }
    return Oct(bitcast<vec4<f32>>(value[e / 4u]), bitcast<vec4<f32>>(value[e / 4u + 1u]));
}

fn invocation(gid: vec3<u32>) -> u32 {
    return gid.y * params.grid_x + gid.x;
}

// Fused form: (max, 1 / Σ exp(logit − max)) of the L·P logits of the head starting at sample s0.
fn softmax_stats(s0: u32) -> vec2<f32> {
    let lp = LEVELS * POINTS;
    var mx = attn[s0];
    for (var i = 1u; i < lp; i++) {
        mx = max(mx, attn[s0 + i]);
    }
    var sum = 0.0;
    for (var i = 0u; i < lp; i++) {
        sum += exp(attn[s0 + i] - mx);
    }
    return vec2<f32>(mx, 1.0 / sum);
}

// Fused form: the normalized location of sample s, at level l of row bq = b·Q + q — points
// loc = ref + off/(W_l, H_l), boxes loc = ref_xy + off/P · ref_wh · 0.5.
fn fused_location(bq: u32, l: u32, s: u32) -> vec2<f32> {
    let r = (bq * LEVELS + l) * REF_DIM;
    let ox = samp[2u * s];
    let oy = samp[2u * s + 1u];
    if (REF_DIM == 4u) {
        let pf = f32(POINTS);
        return vec2<f32>(refp[r] + ox / pf * refp[r + 2u] * 0.5, refp[r + 1u] + oy / pf * refp[r + 3u] * 0.5);
    }
    let shp = params.shapes[l];
    return vec2<f32>(refp[r] + ox / f32(shp.y), refp[r + 1u] + oy / f32(shp.x));
}

// A sample's bilinear footprint on level l (spec §3): ok = the official validity rule
// (−1 < y < H_l, −1 < x < W_l) for x = loc_x·W_l − 0.5, y = loc_y·H_l − 0.5; (y0, x0) = its
// top-left corner, (fy, fx) = its fractional offsets.
struct Foot { ok: bool, y0: i32, x0: i32, fy: f32, fx: f32 }

fn footprint(l: u32, loc: vec2<f32>) -> Foot {
    let shp = params.shapes[l];
    let hf = f32(shp.x);
    let wf = f32(shp.y);
    let x = loc.x * wf - 0.5;
    let y = loc.y * hf - 0.5;
    let y0f = floor(y);
    let x0f = floor(x);
    return Foot(y > -1.0 && x > -1.0 && y < hf && x < wf, i32(y0f), i32(x0f), y - y0f, x - x0f);
}

// Corner c of f (0: (y0,x0), 1: (y0,x0+1), 2: (y0+1,x0), 3: (y0+1,x0+1)) as a token index of
// image b, or −1 where it lies outside level l (such corners read, and receive, zero).
fn corner_token(f: Foot, b: u32, l: u32, c: u32) -> i32 {
    let shp = params.shapes[l];
    let yy = f.y0 + i32(c / 2u);
    let xx = f.x0 + i32(c % 2u);
    if (yy < 0 || xx < 0 || yy >= i32(shp.x) || xx >= i32(shp.y)) {
        return -1;
    }
    return i32(b * params.tokens + shp.z + u32(yy) * shp.y + u32(xx));
}

// The bilinear weights of f's corners, in corner order.
fn corner_weights(f: Foot) -> vec4<f32> {
    return vec4<f32>((1.0 - f.fy) * (1.0 - f.fx), (1.0 - f.fy) * f.fx, f.fy * (1.0 - f.fx), f.fy * f.fx);
}
