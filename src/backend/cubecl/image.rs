//! The image front's ops on the cubecl backend (`kernels/image.rs`), on resident tensors:
//! conv2d as an implicit GEMM, max pooling, GroupNorm, flatten into token rows; no sync.

use cubecl::prelude::*;
use cubecl::server::Handle;

use super::{catch, CubeclBackend};
use crate::backend::image::{pool_out, GroupNormShape};
use crate::backend::{Checked, ImageOps, Tensor};
use crate::error::{Error, Result};
use crate::kernels::image as k;
use crate::problem::{Activation, Conv2dProblem};

impl<R: Runtime> CubeclBackend<R> {
    fn launch(&self, f: impl FnOnce()) -> Result<()> {
        catch("launch", self.kind, f)?;
        self.count_launch();
        Ok(())
    }
}

impl<R: Runtime> ImageOps for CubeclBackend<R> {
    fn conv2d_t(
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
        let a = super::resident::arg::<R>;
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
        self.launch(|| unsafe {
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
    fn max_pool_t(&self, _: Checked, x: &Tensor, planes: usize, h: usize, w: usize) -> Result<Tensor> {
        let xb = self.resident("max_pool", "x", x)?;
        let (oh, ow) = pool_out(h, w);
        let total = planes * oh * ow;
        let y = (self.f32_out("max_pool", total)?, total);
        let cubes = self.row_cubes(total.div_ceil(256));
        let a = super::resident::arg::<R>;
        // SAFETY: lengths checked by `max_pool_t`; units past `total` terminate.
        self.launch(|| unsafe {
            k::max_pool::launch_unchecked::<R>(
                &self.client,
                cubes,
                CubeDim::new_1d(256),
                a(&xb),
                a(&y),
                h as u32,
                w as u32,
                oh as u32,
                ow as u32,
                total as u32,
            )
        })?;
        Ok(Tensor::device(self.id, total, y.0))
    }
    fn group_norm_t(&self, _: Checked, s: &GroupNormShape, x: Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
        let (xb, gb, bb) = (
            self.resident("group_norm", "x", &x)?,
            self.resident("group_norm", "gamma", gamma)?,
            self.resident("group_norm", "beta", beta)?,
        );
        let y = (self.f32_out("group_norm", x.len())?, x.len());
        let cubes = CubeCount::Static(s.groups as u32, s.batch as u32, 1);
        let a = super::resident::arg::<R>;
        // SAFETY: lengths and divisibility checked by `group_norm_t`.
        self.launch(|| unsafe {
            k::group_norm::launch_unchecked::<R>(
                &self.client,
                cubes,
                CubeDim::new_1d(256),
                a(&xb),
                a(&gb),
                a(&bb),
                a(&y),
                s.channels as u32,
                s.plane as u32,
                s.groups as u32,
                s.eps,
            )
        })?;
        Ok(Tensor::device(self.id, x.len(), y.0))
    }
    fn to_tokens_t(
        &self,
        _: Checked,
        tokens: &mut Tensor,
        row0: usize,
        level: &Tensor,
        c: usize,
        plane: usize,
    ) -> Result<()> {
        let (tb, lb) = (self.resident("to_tokens", "tokens", tokens)?, self.resident("to_tokens", "level", level)?);
        let total = c * plane;
        let cubes = self.row_cubes(total.div_ceil(256));
        let a = super::resident::arg::<R>;
        // SAFETY: rows row0 .. row0 + plane checked to lie inside `tokens` by `to_tokens_t`.
        self.launch(|| unsafe {
            k::to_tokens::launch_unchecked::<R>(
                &self.client,
                cubes,
                CubeDim::new_1d(256),
                a(&lb),
                a(&tb),
                c as u32,
                plane as u32,
                row0 as u32,
                total as u32,
            )
        })
    }
}
