//! The cpu backend's GEMM: the `gemm` crate (packed, SIMD, rayon) on strided views, used by
//! `gemm` itself and by every cpu op built from matrix products (conv2d, attention, ALIF).

use gemm::Parallelism;
use rayon::prelude::*;

use super::Activation;

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

/// `act(x [rows,k] · Wᵀ + b)` with PyTorch's `W [n,k]`.
pub(crate) fn linear(
    rows: usize,
    k: usize,
    n: usize,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
) -> Vec<f32> {
    let mut y = vec![0.0; rows * n];
    matmul(
        rows,
        n,
        k,
        &mut y,
        n,
        View { data: x, rs: k, cs: 1 },
        View { data: weight, rs: 1, cs: k },
        Parallelism::Rayon(0),
    );
    if bias.is_some() || act != Activation::None {
        y.par_chunks_mut(n).for_each(|row| {
            for (j, o) in row.iter_mut().enumerate() {
                *o = act.apply(*o + bias.map_or(0.0, |b| b[j]));
            }
        });
    }
    y
}
