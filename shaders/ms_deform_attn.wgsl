// ms_deform_attn.wgsl — multi-scale deformable attention forward (official semantics), after
// the prelude msda.wgsl (overrides, Params, bindings 0, 1, 3, 4, 5, load8, the fused locations).
//
// Binding of its own (group 0):
//   2 out      storage, read_write array<vec4<u32>>  output [B,Q,M·D], packed as value
//
// Dispatch: one invocation per (b, q, m, g), g = group of 8 channels (D/8 groups per head).
// Each invocation computes its head's softmax and sampling locations itself (the D/8 invocations
// of a head repeat that small work instead of staging it through memory), then gathers 8
// channels per tap with one (f16) or two (f32) 16-byte loads.
//
// Math (spec §3): out[b,q,m·D+d] = Σ_l Σ_p A · bilin(V_l, x = loc_x·W_l − 0.5, y = loc_y·H_l − 0.5),
// taps skipped unless −1 < y < H_l and −1 < x < W_l; corners outside the level read as 0.
// Fused: A = softmax_{L·P}(logits), locations as fused_location. Accumulation is f32 in both
// storage modes.

@group(0) @binding(2) var<storage, read_write> out: array<vec4<u32>>;

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
    let i = invocation(gid);
    let g = i % params.groups;
    let bqm = i / params.groups;
    let m = bqm % params.heads;
    let bq = bqm / params.heads;
    return Item(bq / params.queries, bq, m, g, i < params.total);
}

// Adds A · bilin(level l at loc) for this invocation's 8 channels to acc.
fn tap(acc: ptr<function, Oct>, it: Item, l: u32, loc: vec2<f32>, a: f32) {
    let f = footprint(l, loc);
    if (!f.ok) {
        return;
    }
    let d = params.groups * 8u;
    let cw = corner_weights(f);
    for (var c = 0u; c < 4u; c++) {
        let tok = corner_token(f, it.b, l, c);
        if (tok >= 0) {
            let v = load8((u32(tok) * params.heads + it.m) * d + it.g * 8u);
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
            tap(&acc, it, l, vec2<f32>(samp[2u * s], samp[2u * s + 1u]), attn[s]);
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
    let st = softmax_stats(s0);
    var acc = Oct(vec4<f32>(0.0), vec4<f32>(0.0));
    for (var l = 0u; l < LEVELS; l++) {
        for (var p = 0u; p < POINTS; p++) {
            let s = s0 + l * POINTS + p;
            tap(&acc, it, l, fused_location(it.bq, l, s), exp(attn[s] - st.x) * st.y);
        }
    }
    store8(out_index(it), acc);
}
