//! The oracle as a backend: f64 accumulation, output rounded to the run's dtype. Slow; for
//! checking other backends and external harnesses, not for speed.

use super::{Backend, BackendKind, HostInputs, Prepared};
use crate::error::Result;
use crate::problem::{DType, MsDeformAttnInput, MsDeformAttnProblem};
use crate::reference::ms_deform_attn::ms_deform_attn;

pub struct ReferenceBackend;

struct ReferenceRun {
    problem: MsDeformAttnProblem,
    /// Inputs with `value` already rounded to the run's dtype.
    inputs: HostInputs,
    dtype: DType,
    out: Vec<f32>,
}

impl Backend for ReferenceBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Reference
    }
    fn device(&self) -> String {
        "host (naive f64 oracle)".into()
    }
    fn supports(&self, _dtype: DType) -> Result<()> {
        Ok(())
    }
    fn prepare_valid<'a>(&'a self, problem: &MsDeformAttnProblem, input: &MsDeformAttnInput, dtype: DType) -> Result<Box<dyn Prepared + 'a>> {
        let inputs = HostInputs::new(problem, input, |x| round_to(x, dtype));
        Ok(Box::new(ReferenceRun { problem: problem.clone(), inputs, dtype, out: Vec::new() }))
    }
}

impl Prepared for ReferenceRun {
    fn enqueue(&mut self) -> Result<()> {
        self.out = ms_deform_attn::<f64>(&self.problem, &self.inputs.input()).into_iter().map(|x| round_to(x as f32, self.dtype)).collect();
        Ok(())
    }
    fn output(&mut self) -> Result<Vec<f32>> {
        Ok(self.out.clone())
    }
}

/// Rounds an f32 to the nearest value representable in `dtype`.
pub fn round_to(x: f32, dtype: DType) -> f32 {
    match dtype {
        DType::F32 => x,
        DType::F16 => half::f16::from_f32(x).to_f32(),
        DType::Bf16 => half::bf16::from_f32(x).to_f32(),
    }
}
