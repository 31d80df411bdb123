// ms_deform_attn_backward.wgsl — the gradients of ms_deform_attn (the official CUDA op's col2im
// semantics, src/ops/ms_deform_attn_backward/oracle.rs), after the prelude msda.wgsl. REF_DIM 0
// is the official form (gradients of locations and weights); 2 or 4 the fused form (of offsets
// and logits, through the location arithmetic and the softmax).
//
// Bindings of its own (group 0):
//   2 gout    storage, read       array<vec4<f32>>    grad_output [B,Q,M·D], f32
//   6 gsamp   storage, read_write array<f32>          grad of samp [B,Q,M,L,P,2]
//   7 gattn   storage, read_write array<f32>          grad of attn [B,Q,M,L·P]
//   8 acc     storage, read_write array<atomic<u32>>  grad_value [B,S,M,D] in 64-bit fixed
//                                                     point, (low, high) words; zeroed first
//   9 bound   storage, read_write array<atomic<u32>>  [1]: f32 bits of the largest row mass
//                                                     (below); zeroed first
//  10 gvalue  storage, read_write array<f32>          grad_value [B,S,M,D], f32
//
// Three dispatches, in order:
//   sample_grads   one invocation per row (b, q, m): every sample's location and attention
//                  gradients (Σ over the corners and D channels), chained through the softmax
//                  in the fused form; and the row's mass Σ_{l,p} |A| · Σ_d |g_d| into `bound`.
//   scatter_value  one per (b, q, m, g), g = 8 channels: adds A · w_c · g_d of every sample
//                  corner to `acc` as fixed point with integer atomics.
//   finish_value   one per element of grad_value: fixed point → f32.
//
// Deterministic by construction: WGSL has no float atomics, and floats summed in arrival order
// would round differently run to run anyway. Integer addition is exact and associative, so the
// 64-bit sums are the same whatever the order. The scale 2^K comes from `bound`: a cell receives
// at most Q · (largest row mass) in absolute value, and K makes that < 2^61, so no sum
// overflows and each term is kept to 2^-61 of the largest possible sum (f32 keeps 2^-24).
// A non-finite row mass (a NaN or infinite weight or grad_output) makes every grad_value NaN.

@group(0) @binding(2) var<storage, read> gout: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> gsamp: array<f32>;
@group(0) @binding(7) var<storage, read_write> gattn: array<f32>;
@group(0) @binding(8) var<storage, read_write> acc: array<atomic<u32>>;
@group(0) @binding(9) var<storage, read_write> bound: array<atomic<u32>>;
@group(0) @binding(10) var<storage, read_write> gvalue: array<f32>;

// The attention weight of sample s (fused: from the head's softmax statistics st).
fn weight(s: u32, st: vec2<f32>) -> f32 {
    if (REF_DIM == 0u) {
        return attn[s];
    }
    return exp(attn[s] - st.x) * st.y;
}

// The normalized location of sample s at level l of row bq.
fn location(bq: u32, l: u32, s: u32) -> vec2<f32> {
    if (REF_DIM == 0u) {
        return vec2<f32>(samp[2u * s], samp[2u * s + 1u]);
    }
    return fused_location(bq, l, s);
}

// (Σ_c w_c · gv_c, Σ_c ∂w_c/∂x · gv_c, Σ_c ∂w_c/∂y · gv_c) over f's corners on level l, where
// gv_c = Σ_d g_d · value[corner c, m, d] and g starts at grad_output vec4 g4.
fn corner_sums(f: Foot, b: u32, m: u32, l: u32, g4: u32) -> vec3<f32> {
    let hy = 1.0 - f.fy;
    let hx = 1.0 - f.fx;
    let cw = corner_weights(f);
    let dx = vec4<f32>(-hy, hy, -f.fy, f.fy);
    let dy = vec4<f32>(-hx, -f.fx, hx, f.fx);
    let d = params.groups * 8u;
    var sums = vec3<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        let tok = corner_token(f, b, l, c);
        if (tok >= 0) {
            let v0 = (u32(tok) * params.heads + m) * d;
            var lanes = Oct(vec4<f32>(0.0), vec4<f32>(0.0));
            for (var k = 0u; k < params.groups; k++) {
                let v = load8(v0 + 8u * k);
                lanes.lo += gout[g4 + 2u * k] * v.lo;
                lanes.hi += gout[g4 + 2u * k + 1u] * v.hi;
            }
            let gv = dot(lanes.lo + lanes.hi, vec4<f32>(1.0));
            sums += vec3<f32>(cw[c], dx[c], dy[c]) * gv;
        }
    }
    return sums;
}

// The sample gradients of row `row` = (b·Q + q)·M + m; returns the row's mass.
fn row_grads(row: u32) -> f32 {
    let m = row % params.heads;
    let bq = row / params.heads;
    let b = bq / params.queries;
    let g4 = row * params.groups * 2u;
    let s0 = row * LEVELS * POINTS;
    var gmass = 0.0;
    for (var k = 0u; k < 2u * params.groups; k++) {
        let g = abs(gout[g4 + k]);
        gmass += g.x + g.y + g.z + g.w;
    }
    var st = vec2<f32>(0.0, 1.0);
    if (REF_DIM != 0u) {
        st = softmax_stats(s0);
    }
    var amass = 0.0;
    var dot_ag = 0.0;
    for (var l = 0u; l < LEVELS; l++) {
        let shp = params.shapes[l];
        // d loc / d offset: 1/(W, H) for points, ref_wh · 0.5 / P for boxes
        var chain = vec2<f32>(1.0);
        if (REF_DIM == 2u) {
            chain = vec2<f32>(1.0 / f32(shp.y), 1.0 / f32(shp.x));
        } else if (REF_DIM == 4u) {
            let r = (bq * LEVELS + l) * 4u;
            chain = vec2<f32>(refp[r + 2u], refp[r + 3u]) * 0.5 / f32(POINTS);
        }
        for (var p = 0u; p < POINTS; p++) {
            let s = s0 + l * POINTS + p;
            let a = weight(s, st);
            amass += abs(a);
            let f = footprint(l, location(bq, l, s));
            var sums = vec3<f32>(0.0);
            if (f.ok) {
                sums = corner_sums(f, b, m, l, g4);
            }
            let gloc = vec2<f32>(f32(shp.y) * a * sums.y, f32(shp.x) * a * sums.z);
            gsamp[2u * s] = gloc.x * chain.x;
            gsamp[2u * s + 1u] = gloc.y * chain.y;
            gattn[s] = sums.x;
            dot_ag += a * sums.x;
        }
    }
    if (REF_DIM != 0u) {
        // through the softmax: d logit_j = a_j · (d a_j − Σ_k a_k · d a_k)
        for (var j = s0; j < s0 + LEVELS * POINTS; j++) {
            gattn[j] = weight(j, st) * (gattn[j] - dot_ag);
        }
    }
    return amass * gmass;
}

var<workgroup> wg_bound: atomic<u32>;

@compute @workgroup_size(WG)
fn sample_grads(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = invocation(gid);
    if (row < params.total) {
        // mass ≥ 0 (or NaN): its f32 bits order as the values, so an integer max is the max
        atomicMax(&wg_bound, bitcast<u32>(row_grads(row)));
    }
    workgroupBarrier();
    if (li == 0u) {
        atomicMax(&bound[0], atomicLoad(&wg_bound));
    }
}

// K of the scale 2^K, or NOT_FINITE when the largest row mass is not finite.
const NOT_FINITE: i32 = 1000;

fn fixed_scale() -> i32 {
    let bits = atomicLoad(&bound[0]);
    if (bits >= 0x7f800000u) {
        return NOT_FINITE;
    }
    // mass < 2^(e+1) (e = −127 for zero and subnormals), Q < 2^qb: each cell's Σ|term| < 2^(qb+e+1)
    let e = i32(bits >> 23u) - 127;
    let qb = i32(32u - countLeadingZeros(params.queries));
    return min(60 - qb - e, 126);
}

// Adds the term t · 2^k to the 64-bit fixed-point cell e.
fn add_fixed(e: u32, t: f32, k: i32) {
    if (t == 0.0) {
        return;
    }
    let x = floor(abs(ldexp(t, k)));
    let hi_f = floor(ldexp(x, -32));
    var hi = u32(hi_f);
    var lo = u32(x - ldexp(hi_f, 32));  // exact: x is an integer of ≤ 24 significant bits
    if (t < 0.0) {
        lo = ~lo + 1u;
        hi = ~hi + select(0u, 1u, lo == 0u);
    }
    let old = atomicAdd(&acc[2u * e], lo);
    let high = hi + select(0u, 1u, old + lo < old);  // the low word's carry
    if (high != 0u) {
        atomicAdd(&acc[2u * e + 1u], high);
    }
}

@compute @workgroup_size(WG)
fn scatter_value(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = invocation(gid);
    let k = fixed_scale();
    if (i >= params.total || k == NOT_FINITE) {
        return;
    }
    let g = i % params.groups;
    let row = i / params.groups;
    let m = row % params.heads;
    let bq = row / params.heads;
    let b = bq / params.queries;
    let d = params.groups * 8u;
    let g4 = (row * d + g * 8u) / 4u;
    var go = array<vec4<f32>, 2>(gout[g4], gout[g4 + 1u]);
    let s0 = row * LEVELS * POINTS;
    var st = vec2<f32>(0.0, 1.0);
    if (REF_DIM != 0u) {
        st = softmax_stats(s0);
    }
    for (var l = 0u; l < LEVELS; l++) {
        for (var p = 0u; p < POINTS; p++) {
            let s = s0 + l * POINTS + p;
            let a = weight(s, st);
            let f = footprint(l, location(bq, l, s));
            if (!f.ok) {
                continue;
            }
            let cw = corner_weights(f);
            for (var c = 0u; c < 4u; c++) {
                let tok = corner_token(f, b, l, c);
                if (tok >= 0) {
                    let w = cw[c] * a;
                    let e0 = (u32(tok) * params.heads + m) * d + g * 8u;
                    for (var j = 0u; j < 8u; j++) {
                        add_fixed(e0 + j, w * go[j / 4u][j % 4u], k);
                    }
                }
            }
        }
    }
}

@compute @workgroup_size(WG)
fn finish_value(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = invocation(gid);
    if (e >= params.total) {
        return;
    }
    let k = fixed_scale();
    if (k == NOT_FINITE) {
        gvalue[e] = bitcast<f32>(0x7fc00000u | atomicLoad(&bound[0]));
        return;
    }
    var lo = atomicLoad(&acc[2u * e]);
    var hi = atomicLoad(&acc[2u * e + 1u]);
    let negative = hi >= 0x80000000u;
    if (negative) {
        lo = ~lo + 1u;
        hi = ~hi + select(0u, 1u, lo == 0u);
    }
    // both words non-negative: no cancellation in the sum
    let magnitude = ldexp(ldexp(f32(hi), 32) + f32(lo), -k);
    gvalue[e] = select(magnitude, -magnitude, negative);
}
