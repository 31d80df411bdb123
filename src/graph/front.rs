//! The image front (spec §2.2-2.3): backbone C3..C5, the four input projections (1×1 conv +
//! GroupNorm(32) on C3..C5; a 3×3/s2 conv + GroupNorm on C5 for the stride-64 level), DETR-style
//! sine positions (R50: `n/(n_last + 1e-6)·2π`, no −0.5) plus the level embedding, flattened
//! level-major and row-major into the encoder's `src` and `pos` tokens `[S, 256]`. Batch 1,
//! unpadded (the mask is all false).

use super::backbone::{Feature, ResNet50};
use crate::backend::Backend;
use crate::error::Result;
use crate::problem::{Activation, Conv2dProblem};

const GN_GROUPS: usize = 32;
const GN_EPS: f64 = 1e-5;
const D: usize = 256;

/// The encoder's input tokens.
pub struct Tokens {
    /// `[S, 256]`
    pub src: Vec<f32>,
    /// `[S, 256]` positions + level embedding
    pub pos: Vec<f32>,
    /// `(H_l, W_l)` per level.
    pub shapes: Vec<(usize, usize)>,
    /// Start of each level in the flattened token axis.
    pub level_start: Vec<usize>,
}

struct Projection {
    in_c: usize,
    k: usize,
    stride: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
    gn_weight: Vec<f32>,
    gn_bias: Vec<f32>,
}

/// Backbone, input projections with GroupNorm, sine positions and level embeddings.
pub struct ImageFront {
    backbone: ResNet50,
    projections: Vec<Projection>,
    level_embed: Vec<f32>,
}

impl ImageFront {
    /// Loads through `get(name, shape)` with full state-dict names.
    pub fn load(mut get: impl FnMut(&str, &[usize]) -> Result<Vec<f32>>) -> Result<Self> {
        let backbone = ResNet50::load(|n, s| get(&format!("{}{n}", super::backbone::PREFIX), s))?;
        let mut projections = Vec::new();
        for (l, (in_c, k, stride)) in [(512, 1, 1), (1024, 1, 1), (2048, 1, 1), (2048, 3, 2)].into_iter().enumerate() {
            projections.push(Projection {
                in_c,
                k,
                stride,
                weight: get(&format!("input_proj.{l}.0.weight"), &[D, in_c, k, k])?,
                bias: get(&format!("input_proj.{l}.0.bias"), &[D])?,
                gn_weight: get(&format!("input_proj.{l}.1.weight"), &[D])?,
                gn_bias: get(&format!("input_proj.{l}.1.bias"), &[D])?,
            });
        }
        let level_embed = get("transformer.level_embed", &[projections.len(), D])?;
        Ok(ImageFront { backbone, projections, level_embed })
    }

    /// Image `[3,H,W]` (normalized) → encoder tokens, positions and level table.
    pub fn forward(&self, be: &dyn Backend, image: &Feature) -> Result<Tokens> {
        let mut feats = self.backbone.forward(be, image)?;
        let mut levels = Vec::new();
        let last = feats.len() - 1;
        for (l, p) in self.projections.iter().enumerate() {
            let x = &feats[l.min(last)]; // the extra level projects C5
            let cp = Conv2dProblem { batch: 1, in_c: p.in_c, h: x.h, w: x.w, out_c: D, kh: p.k, kw: p.k, stride: p.stride, pad: p.k / 2, act: Activation::None };
            let mut y = Feature { c: D, h: cp.out_h(), w: cp.out_w(), data: be.conv2d(&cp, &x.data, &p.weight, &p.bias, None)? };
            group_norm(&mut y, &p.gn_weight, &p.gn_bias);
            levels.push(y);
            if l < last {
                feats[l].data = Vec::new(); // C3, C4 are read once: free them before the tokens exist
            }
        }
        drop(feats);
        let shapes: Vec<(usize, usize)> = levels.iter().map(|f| (f.h, f.w)).collect();
        let level_start: Vec<usize> = shapes.iter().scan(0, |acc, &(h, w)| Some(std::mem::replace(acc, *acc + h * w))).collect();
        let s: usize = shapes.iter().map(|(h, w)| h * w).sum();
        let (mut src, mut pos) = (vec![0f32; s * D], vec![0f32; s * D]);
        // token-major rows; positions computed per pixel (no [256, h, w] table beside the tokens)
        let dim_t = sine_dims();
        let mut px = [0f32; D];
        for (l, f) in levels.into_iter().enumerate() {
            let plane = f.h * f.w;
            for t in 0..plane {
                let row = (level_start[l] + t) * D;
                sine_at(t / f.w, t % f.w, f.h, f.w, &dim_t, &mut px);
                for c in 0..D {
                    src[row + c] = f.data[c * plane + t];
                    pos[row + c] = px[c] + self.level_embed[l * D + c];
                }
            }
        }
        Ok(Tokens { src, pos, shapes, level_start })
    }
}

/// GroupNorm(32 groups, eps 1e-5) in place on `[C, H, W]`, statistics accumulated in f64.
pub fn group_norm(x: &mut Feature, weight: &[f32], bias: &[f32]) {
    let per = x.c / GN_GROUPS * x.h * x.w;
    for g in 0..GN_GROUPS {
        let chunk = &mut x.data[g * per..(g + 1) * per];
        let mean = chunk.iter().map(|&v| v as f64).sum::<f64>() / per as f64;
        let var = chunk.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / per as f64;
        let rstd = 1.0 / (var + GN_EPS).sqrt();
        let plane = x.h * x.w;
        for (i, v) in chunk.iter_mut().enumerate() {
            let c = g * (x.c / GN_GROUPS) + i / plane;
            *v = ((*v as f64 - mean) * rstd) as f32 * weight[c] + bias[c];
        }
    }
}

/// The R50 sine position encoding `[256, h, w]` of an unpadded level: 128 y features then 128 x
/// features, in f32 as the official module computes them.
pub fn sine_position(h: usize, w: usize) -> Vec<f32> {
    let dim_t = sine_dims();
    let mut out = vec![0f32; 256 * h * w];
    let mut px = [0f32; 256];
    for y in 0..h {
        for x in 0..w {
            sine_at(y, x, h, w, &dim_t, &mut px);
            for (k, v) in px.iter().enumerate() {
                out[(k * h + y) * w + x] = *v;
            }
        }
    }
    out
}

/// The 128 temperatures `10000^(2·⌊i/2⌋/128)`.
fn sine_dims() -> Vec<f32> {
    (0..128).map(|i| 10000f32.powf(2.0 * (i / 2) as f32 / 128.0)).collect()
}

/// The 256 position features of pixel (y, x) of an `h × w` level.
fn sine_at(y: usize, x: usize, h: usize, w: usize, dim_t: &[f32], out: &mut [f32; 256]) {
    let scale = 2.0 * std::f32::consts::PI;
    let ny = (y + 1) as f32 / (h as f32 + 1e-6) * scale;
    let nx = (x + 1) as f32 / (w as f32 + 1e-6) * scale;
    for (k, &t) in dim_t.iter().enumerate() {
        let (vy, vx) = (ny / t, nx / t);
        let (fy, fx) = if k % 2 == 0 { (vy.sin(), vx.sin()) } else { (vy.cos(), vx.cos()) };
        out[k] = fy;
        out[128 + k] = fx;
    }
}
