//! Host implementations of the image-front ops that are not GEMMs: 3×3/s2 max pooling,
//! GroupNorm and the flatten of a level into token rows (the defaults of the `*_t` methods on
//! host tensors; the GPU backends have their own kernels).

#[cfg(any(feature = "cubecl-wgpu", feature = "cuda"))]
mod cubecl;
pub(crate) mod kernel;
#[cfg(feature = "wgpu")]
mod wgpu;

pub use kernel::ImageKernel;

use crate::error::{Error, Result};

/// GroupNorm's shape: `batch` images of `channels` planes of `plane` pixels, `groups` groups.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNormShape {
    /// Images.
    pub batch: usize,
    /// Channels (a multiple of `groups`).
    pub channels: usize,
    /// Pixels per channel.
    pub plane: usize,
    /// Groups.
    pub groups: usize,
    /// Added to the variance.
    pub eps: f32,
}

impl GroupNormShape {
    /// Checks the divisibility and the tensor lengths.
    pub fn check(&self, x: usize, gamma: usize, beta: usize) -> Result<()> {
        const OP: &str = "group_norm";
        if self.groups == 0 || !self.channels.is_multiple_of(self.groups) || self.plane == 0 {
            return Err(Error::limit(
                OP,
                "groups",
                format!("{} channels in {} groups of {}-pixel planes", self.channels, self.groups, self.plane),
            ));
        }
        crate::problem::gemm::check_len(OP, "x", &[self.batch, self.channels, self.plane], x)?;
        crate::problem::gemm::check_len(OP, "gamma", &[self.channels], gamma)?;
        crate::problem::gemm::check_len(OP, "beta", &[self.channels], beta)
    }
}

/// Output height and width of the 3×3, stride 2, padding 1 pooling of an `h × w` plane.
pub fn pool_out(h: usize, w: usize) -> (usize, usize) {
    ((h + 2 - 3) / 2 + 1, (w + 2 - 3) / 2 + 1)
}

/// 3×3 max pooling, stride 2, padding 1 (padding never wins) of `planes` planes `h × w`.
pub fn max_pool_3x3_s2(x: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
    let (oh, ow) = pool_out(h, w);
    let mut out = vec![0f32; planes * oh * ow];
    for c in 0..planes {
        let plane = &x[c * h * w..(c + 1) * h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut m = f32::NEG_INFINITY;
                for ky in 0..3 {
                    let iy = (oy * 2 + ky) as isize - 1;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for kx in 0..3 {
                        let ix = (ox * 2 + kx) as isize - 1;
                        if ix >= 0 && ix < w as isize {
                            m = m.max(plane[iy as usize * w + ix as usize]);
                        }
                    }
                }
                out[(c * oh + oy) * ow + ox] = m;
            }
        }
    }
    out
}

/// GroupNorm in place, statistics accumulated in f64 (biased variance).
pub fn group_norm(x: &mut [f32], s: &GroupNormShape, gamma: &[f32], beta: &[f32]) {
    let per_c = s.channels / s.groups;
    let per = per_c * s.plane;
    for chunk in x.chunks_mut(per).take(s.batch * s.groups).enumerate().map(|(i, c)| (i % s.groups, c)) {
        let (g, chunk) = chunk;
        let mean = chunk.iter().map(|&v| v as f64).sum::<f64>() / per as f64;
        let var = chunk.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / per as f64;
        let rstd = 1.0 / (var + s.eps as f64).sqrt();
        for (i, v) in chunk.iter_mut().enumerate() {
            let c = g * per_c + i / s.plane;
            *v = ((*v as f64 - mean) * rstd) as f32 * gamma[c] + beta[c];
        }
    }
}

/// Output rows and columns of Swin's patch merging of an `h × w` map: ⌈h/2⌉ × ⌈w/2⌉.
pub fn merge_out(h: usize, w: usize) -> (usize, usize) {
    (h.div_ceil(2), w.div_ceil(2))
}

/// Swin's patch merging gather (swin_transformer.py:419-446): tokens `x [h·w, C]` → `[⌈h/2⌉·⌈w/2⌉,
/// 4C]`, output (i, j) = cat(x[2i, 2j], x[2i+1, 2j], x[2i, 2j+1], x[2i+1, 2j+1]), zeros where an
/// odd side was padded.
pub fn patch_merge(x: &[f32], h: usize, w: usize, c: usize) -> Vec<f32> {
    let (oh, ow) = merge_out(h, w);
    let mut out = vec![0f32; oh * ow * 4 * c];
    for (o, row) in out.chunks_exact_mut(4 * c).enumerate() {
        let (i, j) = (o / ow, o % ow);
        for (k, (dy, dx)) in [(0, 0), (1, 0), (0, 1), (1, 1)].into_iter().enumerate() {
            let (y, xx) = (2 * i + dy, 2 * j + dx);
            if y < h && xx < w {
                row[k * c..(k + 1) * c].copy_from_slice(&x[(y * w + xx) * c..][..c]);
            }
        }
    }
    out
}

/// Writes `level [C, plane]` transposed into rows `row0 ..` of `tokens [S, C]`.
pub fn to_tokens(tokens: &mut [f32], row0: usize, level: &[f32], c: usize, plane: usize) {
    for t in 0..plane {
        let row = &mut tokens[(row0 + t) * c..(row0 + t + 1) * c];
        for (ch, v) in row.iter_mut().enumerate() {
            *v = level[ch * plane + t];
        }
    }
}
