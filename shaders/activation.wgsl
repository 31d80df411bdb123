// activation.wgsl — the prelude of every module with an activation epilogue (src/shaders.rs puts
// it in front of gemm.wgsl, elementwise.wgsl and sparse_fusion.wgsl). Not a module on its own.
// Codes as `Activation::code`: 0 identity, 1 ReLU, 2 GELU (the exact-erf form).

// erf with |error| < 1.5e-7 (Abramowitz & Stegun 7.1.26); WGSL has no erf builtin.
fn erf_approx(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * abs(x));
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-x * x);
    return select(-y, y, x >= 0.0);
}

fn gelu(x: f32) -> f32 {
    return 0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752));
}

fn activate(x: f32, act: u32) -> f32 {
    if (act == 1u) { return select(x, 0.0, x < 0.0); }   // NaN stays NaN, as torch.relu keeps it
    if (act == 2u) { return gelu(x); }
    return x;
}
