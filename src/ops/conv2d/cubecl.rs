//! `conv2d` on the cubecl backend: `kernels/image.rs`'s implicit-GEMM conv (the columns gathered
//! while the tile is staged; no column buffer).

use cubecl::prelude::*;
use cubecl::server::Handle;

use super::Conv2dKernel;
use crate::backend::cubecl::{arg, CubeclBackend};
use crate::backend::{Checked, Tensor};
use crate::error::{Error, Result};
use crate::kernels::image as k;
use crate::problem::{Activation, Conv2dProblem};

impl<R: Runtime> Conv2dKernel for CubeclBackend<R> {
    fn launch_conv2d_t(
        &self,
        _: Checked,
        p: &Conv2dProblem,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        residual: Option<Tensor>,
    ) -> Result<Tensor> {
        const OP: &str = crate::problem::conv2d::OP;
        let relu = match p.act {
            Activation::None => false,
            Activation::Relu => true,
            Activation::Gelu => {
                return Err(Error::Unsupported {
                    op: OP,
                    backend: self.kind.name().into(),
                    reason: "kernels/image.rs's conv has ReLU and identity epilogues only".into(),
                })
            }
        };
        let (xb, wb, bb) =
            (self.resident(OP, "x", x)?, self.resident(OP, "weight", weight)?, self.resident(OP, "bias", bias)?);
        let rb = match &residual {
            Some(r) => self.resident(OP, "residual", r)?,
            None => bb.clone(),
        };
        let (oh, ow) = (p.out_h(), p.out_w());
        let len = p.batch * p.out_c * oh * ow;
        let y: (Handle, usize) = (self.f32_out(OP, len)?, len);
        let tile = crate::backend::gemm_tile(p.out_c, oh * ow);
        let cubes = CubeCount::Static((oh * ow).div_ceil(tile) as u32, p.out_c.div_ceil(tile) as u32, p.batch as u32);
        let a = arg::<R>;
        let (in_c, h, w, out_c, kh, kw, stride, pad, oh, ow) = (
            p.in_c as u32,
            p.h as u32,
            p.w as u32,
            p.out_c as u32,
            p.kh as u32,
            p.kw as u32,
            p.stride as u32,
            p.pad as u32,
            oh as u32,
            ow as u32,
        );
        // SAFETY: lengths checked by `conv2d_t`; the kernels bounds-check channels, pixels and taps.
        self.enqueue(|| unsafe {
            k::conv::launch_unchecked::<R>(
                &self.client,
                cubes,
                CubeDim::new_1d(256),
                a(&xb),
                a(&wb),
                a(&bb),
                a(&rb),
                a(&y),
                in_c,
                h,
                w,
                out_c,
                kh,
                kw,
                stride,
                pad,
                oh,
                ow,
                tile,
                relu,
                residual.is_some(),
            )
        })?;
        Ok(Tensor::device(self.id, len, y.0))
    }
}
