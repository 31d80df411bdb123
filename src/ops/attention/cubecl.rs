//! `attention` on the cubecl backend: `kernels/dense.rs`'s `attention`, one cube per (batch,
//! head, query row).

use cubecl::prelude::*;

use super::AttentionKernel;
use crate::backend::cubecl::{arg, CubeclBackend};
use crate::backend::{Checked, Tensor};
use crate::error::Result;
use crate::kernels::dense;
use crate::problem::AttentionProblem;

impl<R: Runtime> AttentionKernel for CubeclBackend<R> {
    fn launch_attention_t(
        &self,
        _: Checked,
        p: &AttentionProblem,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        const OP: &str = crate::problem::attention::OP;
        p.gpu_fits(self.kind)?;
        let (qb, kb, vb) = (self.resident(OP, "q", q)?, self.resident(OP, "k", k)?, self.resident(OP, "v", v)?);
        let mb = match mask {
            Some(m) => self.resident(OP, "mask", m)?,
            None => qb.clone(),
        };
        let y = self.out(OP, qb.1)?;
        let cubes = self.row_cubes(p.batch * p.heads * p.q_len);
        // SAFETY: lengths checked by `attention_t`; one cube per (b, h, query row), extra cubes terminate.
        self.enqueue(|| unsafe {
            dense::attention::launch_unchecked::<R>(
                &self.client,
                cubes,
                CubeDim::new_1d(256),
                arg(&qb),
                arg(&kb),
                arg(&vb),
                arg(&mb),
                arg(&y),
                p.batch as u32,
                p.heads as u32,
                p.q_len as u32,
                p.k_len as u32,
                p.head_dim as u32,
                p.scale,
                mask.is_some(),
            )
        })?;
        Ok(self.tensor(y))
    }
}
