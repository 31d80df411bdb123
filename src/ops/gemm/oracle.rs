//! Oracle: `y [M,N] = act(x [M,K] · Wᵀ + b)`, `W [N,K]`; GELU = `x·½·(1 + erf(x/√2))`.

use rayon::prelude::*;

use crate::problem::{Activation, GemmProblem};
use crate::reference::Real;

/// `act(x·Wᵀ + b)` accumulated in `T`.
pub fn gemm<T: Real>(p: &GemmProblem, x: &[T], weight: &[f32], bias: Option<&[f32]>) -> Vec<T> {
    let mut y = vec![T::of(0.0); p.m * p.n];
    y.par_chunks_mut(p.n).enumerate().for_each(|(i, row)| {
        let xr = &x[i * p.k..(i + 1) * p.k];
        for (j, out) in row.iter_mut().enumerate() {
            let wr = &weight[j * p.k..(j + 1) * p.k];
            let mut acc = bias.map_or(T::of(0.0), |b| T::from_f32(b[j]));
            for (&a, &w) in xr.iter().zip(wr) {
                acc += a * T::from_f32(w);
            }
            *out = activate(acc, p.act);
        }
    });
    y
}

/// The activation (GELU: exact erf form).
pub fn activate<T: Real>(x: T, act: Activation) -> T {
    match act {
        Activation::None => x,
        // NaN stays NaN, as torch.relu keeps it
        Activation::Relu => {
            if x < T::of(0.0) {
                T::of(0.0)
            } else {
                x
            }
        }
        Activation::Gelu => x * T::of(0.5) * (T::of(1.0) + (x / T::of(std::f64::consts::SQRT_2)).erf()),
    }
}
