//! `window_attention` on the cubecl backend: `kernels/window_attention.rs`, one cube per
//! (window, head).

use cubecl::prelude::*;

use super::{WindowAttentionKernel, WindowAttentionProblem, OP};
use crate::backend::cubecl::{arg, CubeclBackend};
use crate::backend::{Checked, Tensor};
use crate::error::Result;
use crate::kernels::window_attention;

impl<R: Runtime> WindowAttentionKernel for CubeclBackend<R> {
    fn launch_window_attention_t(
        &self,
        _: Checked,
        p: &WindowAttentionProblem,
        qkv: &Tensor,
        bias: &Tensor,
        table: &Tensor,
    ) -> Result<Tensor> {
        p.gpu_fits(self.kind)?;
        let (qb, tb) = (self.resident(OP, "qkv", qkv)?, self.resident(OP, "table", table)?);
        let bb = self.resident(OP, "bias", bias)?;
        let y = self.out(OP, p.h * p.w * p.channels())?;
        let cubes = self.row_cubes(p.windows() * p.heads);
        // SAFETY: lengths checked by `window_attention_t`, sizes by `gpu_fits`; one cube per
        // (window, head), extra cubes terminate.
        self.enqueue(|| unsafe {
            window_attention::window_attention::launch_unchecked::<R>(
                &self.client,
                cubes,
                CubeDim::new_1d(window_attention::WG as u32),
                arg(&qb),
                arg(&bb),
                arg(&tb),
                arg(&y),
                p.h as u32,
                p.w as u32,
                p.window as u32,
                p.shift as u32,
                p.heads as u32,
                p.head_dim as u32,
                p.scale,
            )
        })?;
        Ok(self.tensor(y))
    }
}
