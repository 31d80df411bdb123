//! `layer_norm` on the cubecl backend: `kernels/dense.rs`'s `layer_norm`, one cube per row.

use cubecl::prelude::*;

use super::LayerNormKernel;
use crate::backend::cubecl::{arg, CubeclBackend};
use crate::backend::{Checked, Tensor};
use crate::error::Result;
use crate::kernels::dense;
use crate::problem::LayerNormProblem;

impl<R: Runtime> LayerNormKernel for CubeclBackend<R> {
    fn launch_layer_norm_t(
        &self,
        _: Checked,
        p: &LayerNormProblem,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
    ) -> Result<Tensor> {
        const OP: &str = crate::problem::layer_norm::OP;
        let (x, g, b) =
            (self.resident(OP, "x", x)?, self.resident(OP, "gamma", gamma)?, self.resident(OP, "beta", beta)?);
        let y = self.out(OP, x.1)?;
        let cubes = self.row_cubes(p.rows);
        // SAFETY: lengths checked by `layer_norm_t`; one cube per row, extra cubes terminate.
        self.enqueue(|| unsafe {
            dense::layer_norm::launch_unchecked::<R>(
                &self.client,
                cubes,
                CubeDim::new_1d(256),
                arg(&x),
                arg(&g),
                arg(&b),
                arg(&y),
                p.rows as u32,
                p.width as u32,
                p.eps,
            )
        })?;
        Ok(self.tensor(y))
    }
}
