//! `ms_deform_attn_backward` on the wgpu backend: not written yet (issue 16 lands it backend by
//! backend: the oracle and cpu first). Until then this backend says so, visibly.

use super::{MsdaBackwardKernel, MsdaGrads, OP};
use crate::backend::wgpu::WgpuBackend;
use crate::backend::Checked;
use crate::error::{Error, Result};
use crate::problem::{DType, MsDeformAttnInput, MsDeformAttnProblem};

impl MsdaBackwardKernel for WgpuBackend {
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
            backend: crate::backend::BackendKind::Wgpu.name().into(),
            reason: "no backward kernel on this backend yet (issue 16); use --backend cpu or reference".into(),
        })
    }
}
