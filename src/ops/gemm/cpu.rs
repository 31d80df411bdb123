//! The cpu backend's GEMM: the `gemm` crate (packed, SIMD, rayon) on strided views, used by
//! `gemm` itself and by every cpu op built from matrix products (conv2d, attention, ALIF).

use gemm::Parallelism;
use rayon::prelude::*;

use super::{bf16, Activation, Precision};

/// A read-only strided matrix: element (i, j) at `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `dst [m×n]` (row stride `dst_rs`, unit column stride) `= lhs [m×k] · rhs [k×n]`.
#[allow(clippy::too_many_arguments)] // three dimensions, three operands, two strides
pub(crate) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    lhs: View,
    rhs: View,
    par: Parallelism,
) {
    matmul_into(m, n, k, dst, dst_rs, lhs, rhs, par, false)
}

/// [`matmul`], adding the product to what `dst` holds when `accumulate` is set.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_into(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    lhs: View,
    rhs: View,
    par: Parallelism,
    accumulate: bool,
) {
    // The views must lie inside their slices: the `gemm` call below reads and writes raw pointers.
    assert!(
        dst.len() >= extent(m, n, dst_rs, 1)
            && lhs.data.len() >= extent(m, k, lhs.rs, lhs.cs)
            && rhs.data.len() >= extent(k, n, rhs.rs, rhs.cs),
        "matmul view out of bounds"
    );
    // SAFETY: every index the kernel touches is within the extents asserted above; dst does not
    // alias lhs or rhs (it is a distinct &mut slice).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// [`matmul_into`] with the inputs at `precision` (the large products: `gemm` and `conv2d`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_at(
    precision: Precision,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    lhs: View,
    rhs: View,
    par: Parallelism,
    accumulate: bool,
) {
    match precision {
        Precision::F32 => matmul_into(m, n, k, dst, dst_rs, lhs, rhs, par, accumulate),
        Precision::Bf16 => bf16::matmul_into(m, n, k, dst, dst_rs, lhs, rhs, accumulate),
    }
}

/// `act(x [rows,k] · Wᵀ + b)` with PyTorch's `W [n,k]`, the product's inputs at `precision`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear(
    rows: usize,
    k: usize,
    n: usize,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    precision: Precision,
) -> Vec<f32> {
    let mut y = vec![0.0; rows * n];
    matmul_at(
        precision,
        rows,
        n,
        k,
        &mut y,
        n,
        View { data: x, rs: k, cs: 1 },
        View { data: weight, rs: 1, cs: k },
        Parallelism::Rayon(0),
        false,
    );
    if bias.is_some() || act != Activation::None {
        y.par_chunks_mut(n).for_each(|row| match bias {
            Some(b) => epilogue(row, |j| b[j], act),
            None => epilogue(row, |_| 0.0, act),
        });
    }
    y
}

/// `out[j] = act(out[j] + bias(j))`, one loop per activation so each vectorizes: no branch on
/// the values. (A branch per element made the ReLU epilogue value-dependent — on a trained-like
/// model, where about half the inputs are negative at random, it mispredicted often enough to
/// take 15 % of cpu detect; the formula fixture's regular values hid it.)
#[inline]
pub(crate) fn epilogue(out: &mut [f32], bias: impl Fn(usize) -> f32, act: Activation) {
    match act {
        Activation::None => out.iter_mut().enumerate().for_each(|(j, o)| *o += bias(j)),
        Activation::Relu => out.iter_mut().enumerate().for_each(|(j, o)| {
            let v = *o + bias(j);
            // a select, not a branch; NaN stays NaN as in torch.relu
            *o = if v < 0.0 { 0.0 } else { v };
        }),
        Activation::Gelu => out.iter_mut().enumerate().for_each(|(j, o)| *o = act.apply(*o + bias(j))),
    }
}
