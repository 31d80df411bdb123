// ms_deform_attn.wgsl — multi-scale deformable attention forward (official semantics).
//
// Bindings (group 0):
//   0 params   uniform             Params (below; mirrors `MsdaParams` in src/backend/wgpu.rs)
//   1 value    storage, read       array<vec4<u32>>  value [B,S,M,D]: f32 → 4 channels per vec4
//                                                    (bitcast), f16 (HALF) → 8 channels per vec4
//                                                    (pairs packed as by pack2x16float)
//   2 out      storage, read_write array<vec4<u32>>  output [B,Q,M·D], same packing as value
//   3 samp     storage, read       array<f32>        main_official: sampling_locations [B,Q,M,L,P,2]
//                                                    main_fused:    sampling_offsets   [B,Q,M,L,P,2]
//   4 attn     storage, read       array<f32>        main_official: attention_weights  [B,Q,M,L,P]
//                                                    main_fused:    attention_logits   [B,Q,M,L·P]
//   5 refp     storage, read       array<f32>        main_fused only: reference [B,Q,L,REF_DIM]
//
// Dispatch: one invocation per (b, q, m, g), g = group of 8 channels (D/8 groups per head);
// a 2-D grid of WG-wide workgroups, invocation index = gid.y · params.grid_x + gid.x.
// Each invocation computes its head's softmax and sampling locations itself (the D/8 invocations
// of a head repeat that small work instead of staging it through memory), then gathers 8
// channels per tap with one (f16) or two (f32) 16-byte loads.
//
// Math (spec §3): out[b,q,m·D+d] = Σ_l Σ_p A · bilin(V_l, x = loc_x·W_l − 0.5, y = loc_y·H_l − 0.5),
// taps skipped unless −1 < y < H_l and −1 < x < W_l; corners outside the level read as 0.
// Fused: A = softmax_{L·P}(logits); points loc = ref + off/(W_l,H_l); boxes loc = ref_xy + off/P·ref_wh·0.5.
// Accumulation is f32 in both storage modes.

override WG: u32 = 128u;       // workgroup size
override HALF: bool = false;   // value/output stored as packed f16
override REF_DIM: u32 = 2u;    // fused form: 2 = points, 4 = boxes
override LEVELS: u32 = 4u;     // L, a pipeline constant so the tap loops have fixed trip counts
override POINTS: u32 = 4u;     // P

struct Params {
    batch: u32,
    queries: u32,
    heads: u32,
    groups: u32,      // D / 8
    tokens: u32,      // S
    total: u32,       // B·Q·M·groups invocations that do work
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
@group(0) @binding(2) var<storage, read_write> out: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> samp: array<f32>;
@group(0) @binding(4) var<storage, read> attn: array<f32>;
@group(0) @binding(5) var<storage, read> refp: array<f32>;

struct Oct { lo: vec4<f32>, hi: vec4<f32> }

// 8 channels starting at element `e` (a multiple of 8) of a packed buffer.
fn load8(e: u32) -> Oct {
    if (HALF) {
        let u = value[e / 8u];
        return Oct(vec4<f32>(unpack2x16float(u.x), unpack2x16float(u.y)),
                   vec4<f32>(unpack2x16float(u.z), unpack2x16float(u.w)));
    }
    return Oct(bitcast<vec4<f32>>(value[e / 4u]), bitcast<vec4<f32>>(value[e / 4u + 1u]));
}

fn store8(e: u32, o: Oct) {
    if (HALF) {
        out[e / 8u] = vec4<u32>(pack2x16float(o.lo.xy), pack2x16float(o.lo.zw),
                                pack2x16float(o.hi.xy), pack2x16float(o.hi.zw));
    } else {
        out[e / 4u] = bitcast<vec4<u32>>(o.lo);
        out[e / 4u + 1u] = bitcast<vec4<u32>>(o.hi);
    }
}

struct Item { b: u32, bq: u32, m: u32, g: u32, ok: bool }

fn item(gid: vec3<u32>) -> Item {
    let i = gid.y * params.grid_x + gid.x;
    let g = i % params.groups;
    let bqm = i / params.groups;
    let m = bqm % params.heads;
    let bq = bqm / params.heads;
    return Item(bq / params.queries, bq, m, g, i < params.total);
}

// Adds A · bilin(level l at (lx, ly)) for this invocation's 8 channels to acc.
fn tap(acc: ptr<function, Oct>, it: Item, l: u32, lx: f32, ly: f32, a: f32) {
    let shp = params.shapes[l];
    let hf = f32(shp.x);
    let wf = f32(shp.y);
    let x = lx * wf - 0.5;
    let y = ly * hf - 0.5;
    if (!(y > -1.0 && x > -1.0 && y < hf && x < wf)) {
        return;
    }
    let y0f = floor(y);
    let x0f = floor(x);
    let fy = y - y0f;
    let fx = x - x0f;
    let y0 = i32(y0f);
    let x0 = i32(x0f);
    let hi = i32(shp.x);
    let wi = i32(shp.y);
    let d = params.groups * 8u;
    let base_b = it.b * params.tokens + shp.z;
    let cw = array<f32, 4>((1.0 - fy) * (1.0 - fx), (1.0 - fy) * fx, fy * (1.0 - fx), fy * fx);
    for (var c = 0u; c < 4u; c++) {
        let yy = y0 + i32(c / 2u);
        let xx = x0 + i32(c % 2u);
        if (yy >= 0 && xx >= 0 && yy < hi && xx < wi) {
            let tok = base_b + u32(yy) * shp.y + u32(xx);
            let v = load8((tok * params.heads + it.m) * d + it.g * 8u);
            let k = a * cw[c];
            (*acc).lo += k * v.lo;
            (*acc).hi += k * v.hi;
        }
    }
}

fn out_index(it: Item) -> u32 {
    return (it.bq * params.heads + it.m) * params.groups * 8u + it.g * 8u;
}

@compute @workgroup_size(WG)
fn main_official(@builtin(global_invocation_id) gid: vec3<u32>) {
    let it = item(gid);
    if (!it.ok) { return; }
    let lp = LEVELS * POINTS;
    let s0 = (it.bq * params.heads + it.m) * lp;
    var acc = Oct(vec4<f32>(0.0), vec4<f32>(0.0));
    for (var l = 0u; l < LEVELS; l++) {
        for (var p = 0u; p < POINTS; p++) {
            let s = s0 + l * POINTS + p;
            tap(&acc, it, l, samp[2u * s], samp[2u * s + 1u], attn[s]);
        }
    }
    store8(out_index(it), acc);
}

@compute @workgroup_size(WG)
fn main_fused(@builtin(global_invocation_id) gid: vec3<u32>) {
    let it = item(gid);
    if (!it.ok) { return; }
    let lp = LEVELS * POINTS;
    let s0 = (it.bq * params.heads + it.m) * lp;
    var mx = attn[s0];
    for (var i = 1u; i < lp; i++) {
        mx = max(mx, attn[s0 + i]);
    }
    var sum = 0.0;
    for (var i = 0u; i < lp; i++) {
        sum += exp(attn[s0 + i] - mx);
    }
    let inv = 1.0 / sum;
    let pf = f32(POINTS);
    var acc = Oct(vec4<f32>(0.0), vec4<f32>(0.0));
    for (var l = 0u; l < LEVELS; l++) {
        let r = (it.bq * LEVELS + l) * REF_DIM;
        let rx = refp[r];
        let ry = refp[r + 1u];
        let shp = params.shapes[l];
        for (var p = 0u; p < POINTS; p++) {
            let s = s0 + l * POINTS + p;
            let ox = samp[2u * s];
            let oy = samp[2u * s + 1u];
            var lx: f32;
            var ly: f32;
            if (REF_DIM == 4u) {
                lx = rx + ox / pf * refp[r + 2u] * 0.5;
                ly = ry + oy / pf * refp[r + 3u] * 0.5;
            } else {
                lx = rx + ox / f32(shp.y);
                ly = ry + oy / f32(shp.x);
            }
            tap(&acc, it, l, lx, ly, exp(attn[s] - mx) * inv);
        }
    }
    store8(out_index(it), acc);
}
