// reduce.wgsl — the prelude of every module with a workgroup reduction (src/shaders.rs puts it in
// front of layer_norm.wgsl, softmax.wgsl, attention.wgsl, group_norm.wgsl and sparse_fusion.wgsl):
// the one reduction, over 256 invocations. Not a module on its own.

// Sum (or max) over the workgroup's 256 invocations of one vec4 each, lane by lane; every
// invocation gets the result. Called in uniform control flow.
var<workgroup> red4: array<vec4<f32>, 256>;

fn reduce4(v: vec4<f32>, lid: u32, is_max: bool) -> vec4<f32> {
    red4[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red4[lid] = select(red4[lid] + red4[lid + s], max(red4[lid], red4[lid + s]), is_max);
        }
        workgroupBarrier();
    }
    let r = red4[0];
    workgroupBarrier();
    return r;
}

// `reduce4` of one scalar per invocation.
fn reduce(v: f32, lid: u32, is_max: bool) -> f32 {
    return reduce4(vec4(v, 0.0, 0.0, 0.0), lid, is_max).x;
}
