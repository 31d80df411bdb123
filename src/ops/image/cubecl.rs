//! Max pooling, GroupNorm and the level → token transpose on the cubecl backend (`kernels/image.rs`).

use cubecl::prelude::*;

use super::{pool_out, GroupNormShape, ImageKernel};
use crate::backend::cubecl::{arg, CubeclBackend};
use crate::backend::{Checked, Tensor};
use crate::error::Result;
use crate::kernels::image as k;

impl<R: Runtime> ImageKernel for CubeclBackend<R> {
    fn launch_max_pool_t(&self, _: Checked, x: &Tensor, planes: usize, h: usize, w: usize) -> Result<Tensor> {
        let xb = self.resident("max_pool", "x", x)?;
        let (oh, ow) = pool_out(h, w);
        let total = planes * oh * ow;
        let y = (self.f32_out("max_pool", total)?, total);
        let cubes = self.row_cubes(total.div_ceil(256));
        let a = arg::<R>;
        // SAFETY: lengths checked by `max_pool_t`; units past `total` terminate.
        self.enqueue(|| unsafe {
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
    fn launch_group_norm_t(
        &self,
        _: Checked,
        s: &GroupNormShape,
        x: Tensor,
        gamma: &Tensor,
        beta: &Tensor,
    ) -> Result<Tensor> {
        let (xb, gb, bb) = (
            self.resident("group_norm", "x", &x)?,
            self.resident("group_norm", "gamma", gamma)?,
            self.resident("group_norm", "beta", beta)?,
        );
        let y = (self.f32_out("group_norm", x.len())?, x.len());
        let cubes = CubeCount::Static(s.groups as u32, s.batch as u32, 1);
        let a = arg::<R>;
        // SAFETY: lengths and divisibility checked by `group_norm_t`.
        self.enqueue(|| unsafe {
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
    fn launch_patch_merge_t(&self, _: Checked, x: &Tensor, h: usize, w: usize, c: usize) -> Result<Tensor> {
        let xb = self.resident("patch_merge", "x", x)?;
        let (oh, ow) = super::merge_out(h, w);
        let total = oh * ow * 4 * c;
        let y = self.out("patch_merge", total)?;
        let cubes = self.row_cubes(total.div_ceil(256));
        // SAFETY: `x` holds h·w·c values (checked by `patch_merge_t`), `y` the merged map.
        self.enqueue(|| unsafe {
            k::patch_merge::launch_unchecked::<R>(
                &self.client,
                cubes,
                CubeDim::new_1d(256),
                arg::<R>(&xb),
                arg::<R>(&y),
                h as u32,
                w as u32,
                c as u32,
                total as u32,
            )
        })?;
        Ok(self.tensor(y))
    }
    fn launch_to_tokens_t(
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
        let a = arg::<R>;
        // SAFETY: rows row0 .. row0 + plane checked to lie inside `tokens` by `to_tokens_t`.
        self.enqueue(|| unsafe {
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
