//! `ms_deform_attn_backward` on the cubecl backend: not written yet (issue 16 lands it backend by
//! backend: the oracle and cpu first). Until then this backend says so, visibly.

use cubecl::prelude::*;

use super::{MsdaBackwardKernel, MsdaGrads, OP};
use crate::backend::cubecl::CubeclBackend;
use crate::backend::Checked;
use crate::error::{Error, Result};
use crate::problem::{DType, MsDeformAttnInput, MsDeformAttnProblem};

impl<R: Runtime> MsdaBackwardKernel for CubeclBackend<R> {
    fn launch_ms_deform_attn_backward(
        &self,
        _: Checked,
        _: &MsDeformAttnProblem,
        _: &MsDeformAttnInput,
        _: &[f32],
        _: DType,
    ) -> Result<MsdaGrads> {
        Err(Error::Unsupported {
            op: OP,
            backend: self.kind.name().into(),
            reason: "no backward kernel on this backend yet (issue 16); use --backend cpu or reference".into(),
        })
    }
}
