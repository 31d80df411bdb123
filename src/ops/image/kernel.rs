//! How a backend runs the image front's row ops (max pooling, GroupNorm, level → token rows),
//! and the host backends' answer (this folder's host code).

use super::GroupNormShape;
use crate::backend::{foreign_tensor, host_values, Checked, HostKernels, Tensor};
use crate::error::Result;

/// The backend side of the image row ops; [`crate::backend::Ops`] validates, then calls it.
pub trait ImageKernel {
    /// 3×3 max pooling, stride 2, padding 1, of `planes` planes `h × w`.
    fn launch_max_pool_t(&self, ok: Checked, x: &Tensor, planes: usize, h: usize, w: usize) -> Result<Tensor>;
    /// GroupNorm of `x [B, C, plane]` with per-channel `gamma`, `beta` (host backends in place).
    fn launch_group_norm_t(
        &self,
        ok: Checked,
        s: &GroupNormShape,
        x: Tensor,
        gamma: &Tensor,
        beta: &Tensor,
    ) -> Result<Tensor>;
    /// Swin's patch merging gather of tokens `x [h·w, C]` → `[⌈h/2⌉·⌈w/2⌉, 4C]` ([`super::patch_merge`]).
    fn launch_patch_merge_t(&self, ok: Checked, x: &Tensor, h: usize, w: usize, c: usize) -> Result<Tensor>;
    /// Writes `level [C, plane]` transposed into rows `row0 ..` of `tokens [S, C]` (this backend's).
    fn launch_to_tokens_t(
        &self,
        ok: Checked,
        tokens: &mut Tensor,
        row0: usize,
        level: &Tensor,
        c: usize,
        plane: usize,
    ) -> Result<()>;
}

impl<H: HostKernels> ImageKernel for H {
    fn launch_max_pool_t(&self, _: Checked, x: &Tensor, planes: usize, h: usize, w: usize) -> Result<Tensor> {
        Ok(Tensor::host(super::max_pool_3x3_s2(host_values(self.kind(), "x", x)?, planes, h, w)))
    }
    fn launch_group_norm_t(
        &self,
        _: Checked,
        s: &GroupNormShape,
        x: Tensor,
        gamma: &Tensor,
        beta: &Tensor,
    ) -> Result<Tensor> {
        let k = self.kind();
        let mut v = x.into_host().map_err(|_| foreign_tensor(k, "x"))?;
        super::group_norm(&mut v, s, host_values(k, "gamma", gamma)?, host_values(k, "beta", beta)?);
        Ok(Tensor::host(v))
    }
    fn launch_patch_merge_t(&self, _: Checked, x: &Tensor, h: usize, w: usize, c: usize) -> Result<Tensor> {
        Ok(Tensor::host(super::patch_merge(host_values(self.kind(), "x", x)?, h, w, c)))
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
        let k = self.kind();
        let level = host_values(k, "level", level)?;
        super::to_tokens(tokens.as_host_mut().ok_or_else(|| foreign_tensor(k, "tokens"))?, row0, level, c, plane);
        Ok(())
    }
}
