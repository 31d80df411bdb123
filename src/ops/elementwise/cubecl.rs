//! `add` and `mul` on the cubecl backend: `kernels/dense.rs`'s `add` (a flag picks the op).

use cubecl::prelude::*;

use super::ElementwiseKernel;
use crate::backend::cubecl::{arg, CubeclBackend};
use crate::backend::{Checked, Tensor};
use crate::error::Result;
use crate::kernels::dense;
use crate::problem::Activation;

/// `a + b`, or `act(a · b)` when `mul` (one kernel, `dense::add`).
fn elementwise<R: Runtime>(
    be: &CubeclBackend<R>,
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    mul: bool,
    act: Activation,
) -> Result<Tensor> {
    let (a, b) = (be.resident(op, "a", a)?, be.resident(op, "b", b)?);
    let y = be.out(op, a.1)?;
    let cubes = be.row_cubes(a.1.div_ceil(256));
    // SAFETY: equal lengths checked by `add_t` / `mul_t`; the kernel stops at n.
    be.enqueue(|| unsafe {
        dense::add::launch_unchecked::<R>(
            &be.client,
            cubes,
            CubeDim::new_1d(256),
            arg(&a),
            arg(&b),
            arg(&y),
            a.1 as u32,
            mul,
            act.code(),
        )
    })?;
    Ok(be.tensor(y))
}

impl<R: Runtime> ElementwiseKernel for CubeclBackend<R> {
    fn launch_add_t(&self, _: Checked, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        elementwise(self, "add", a, b, false, Activation::None)
    }
    fn launch_mul_t(&self, _: Checked, a: &Tensor, b: &Tensor, act: Activation) -> Result<Tensor> {
        elementwise(self, "mul", a, b, true, act)
    }
}
