//! `softmax` on the cubecl backend: `kernels/dense.rs`'s `softmax`, one cube per row.

use cubecl::prelude::*;

use super::SoftmaxKernel;
use crate::backend::cubecl::{arg, CubeclBackend};
use crate::backend::{Checked, Tensor};
use crate::error::Result;
use crate::kernels::dense;
use crate::problem::SoftmaxProblem;

impl<R: Runtime> SoftmaxKernel for CubeclBackend<R> {
    fn launch_softmax_t(&self, _: Checked, p: &SoftmaxProblem, x: &Tensor) -> Result<Tensor> {
        const OP: &str = crate::problem::softmax::OP;
        let x = self.resident(OP, "x", x)?;
        let y = self.out(OP, x.1)?;
        let cubes = self.row_cubes(p.rows);
        // SAFETY: lengths checked by `softmax_t`; one cube per row, extra cubes terminate.
        self.enqueue(|| unsafe {
            dense::softmax::launch_unchecked::<R>(
                &self.client,
                cubes,
                CubeDim::new_1d(256),
                arg(&x),
                arg(&y),
                p.rows as u32,
                p.width as u32,
            )
        })?;
        Ok(self.tensor(y))
    }
}
