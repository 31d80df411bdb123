//! The Swin backbones of RLIPv2 (variants spec §2; the detection-style Swin of
//! `models/swin/swin_transformer.py`): patch embedding (4×4/s4 conv on the image zero-padded to
//! multiples of 4, LayerNorm), four stages of pre-LN blocks alternating plain and shifted 7×7
//! window attention (the fused `window_attention` op: window padding, shift, bias and mask
//! included) with a GELU MLP, patch merging between stages, and LayerNorms on the outputs of
//! stages 1-3, returned channel-first like ResNet-50's C3..C5.

use super::backbone::Map;
use super::bind::Binding;
use super::layers::{Lin, Norm};
use super::vars::Vars;
use crate::backend::{Backend, Ops, Tensor};
use crate::error::{Error, Result};
pub use crate::model::config::SwinShape;
use crate::problem::{Activation, Conv2dProblem, WindowAttentionProblem};

const LN_EPS: f32 = 1e-5;
/// Window side of every RLIPv2 Swin (Swin-L too: the `*384` branch is unused).
pub const WINDOW: usize = 7;
const HEAD_DIM: usize = crate::model::config::SWIN_HEAD_DIM;
const PATCH: usize = 4;

/// One pre-LN Swin block (`layers.{s}.blocks.{j}`).
struct Block {
    norm1: Norm,
    qkv: Lin,
    proj: Lin,
    norm2: Norm,
    fc1: Lin,
    fc2: Lin,
    /// `relative_position_bias_table [169, heads]` and the qkv bias (what window padding holds).
    table: Tensor,
    qkv_bias: Tensor,
    bound: Binding<(Tensor, Tensor)>,
}

/// Patch merging (`layers.{s}.downsample`): the 2×2 gather, LayerNorm(4C), Linear(4C → 2C, no bias).
struct Merge {
    norm: Norm,
    reduction: Lin,
}

struct Stage {
    heads: usize,
    channels: usize,
    blocks: Vec<Block>,
    merge: Option<Merge>,
    /// `norm{s}` on the stage's output (stages 1-3).
    out_norm: Option<Norm>,
}

/// A Swin backbone with its weights.
pub struct Swin {
    shape: SwinShape,
    patch_weight: Tensor,
    patch_bias: Tensor,
    patch_norm: Norm,
    stages: Vec<Stage>,
    bound: Binding<(Tensor, Tensor)>,
}

impl Swin {
    /// Loads `patch_embed.*`, `layers.*` and `norm{1,2,3}.*` under `vars` (the backbone body).
    pub fn load(shape: SwinShape, vars: &Vars) -> Result<Self> {
        let c = shape.embed;
        let pe = vars.pp("patch_embed");
        let mut stages = Vec::new();
        for (s, &depth) in shape.depths.iter().enumerate() {
            let (ch, heads) = (shape.channels(s), shape.heads(s));
            let layer = vars.pp("layers").pp(s);
            let blocks = (0..depth)
                .map(|j| {
                    let b = layer.pp("blocks").pp(j);
                    let attn = b.pp("attn");
                    let qkv = Lin::load(&attn.pp("qkv"), 3 * ch, ch)?;
                    let qkv_bias = qkv.b.clone();
                    Ok(Block {
                        norm1: Norm::load(&b.pp("norm1"), ch, LN_EPS)?,
                        qkv,
                        proj: Lin::load(&attn.pp("proj"), ch, ch)?,
                        norm2: Norm::load(&b.pp("norm2"), ch, LN_EPS)?,
                        fc1: Lin::load(&b.pp("mlp").pp("fc1"), 4 * ch, ch)?,
                        fc2: Lin::load(&b.pp("mlp").pp("fc2"), ch, 4 * ch)?,
                        table: attn.tensor("relative_position_bias_table", &[(2 * WINDOW - 1).pow(2), heads])?,
                        qkv_bias,
                        bound: Binding::default(),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let merge = if s + 1 < shape.depths.len() {
                let d = layer.pp("downsample");
                let red = d.pp("reduction");
                let weight = red.get("weight", &[2 * ch, 4 * ch])?;
                Some(Merge {
                    norm: Norm::load(&d.pp("norm"), 4 * ch, LN_EPS)?,
                    reduction: Lin::new(
                        [red.path("weight"), red.path("(no bias)")],
                        4 * ch,
                        2 * ch,
                        weight,
                        vec![0.0; 2 * ch],
                    ),
                })
            } else {
                None
            };
            let out_norm = if s >= 1 { Some(Norm::load(&vars.pp(format!("norm{s}")), ch, LN_EPS)?) } else { None };
            stages.push(Stage { heads, channels: ch, blocks, merge, out_norm });
        }
        Ok(Swin {
            shape,
            patch_weight: pe.tensor("proj.weight", &[c, 3, PATCH, PATCH])?,
            patch_bias: pe.tensor("proj.bias", &[c])?,
            patch_norm: Norm::load(&pe.pp("norm"), c, LN_EPS)?,
            stages,
            bound: Binding::default(),
        })
    }

    /// The variant's shape.
    pub fn shape(&self) -> SwinShape {
        self.shape
    }

    /// The stride-8/16/32 outputs `[C_s, h, w]` (after `norm1..3`) of a normalized image
    /// `[3, H, W]` whose sides are multiples of 4 ([`pad_to_patches`]), where `be` computes.
    pub fn forward_t(&self, be: &dyn Backend, image: Map) -> Result<Vec<Map>> {
        if !image.h.is_multiple_of(PATCH) || !image.w.is_multiple_of(PATCH) {
            return Err(Error::limit(
                "swin",
                "image",
                format!("{}×{} is not padded to multiples of 4", image.h, image.w),
            ));
        }
        let c = self.shape.embed;
        let (pw, pb) = &*self.bound.get(be, || {
            Ok((
                be.bind("patch_embed.proj.weight", &self.patch_weight)?,
                be.bind("patch_embed.proj.bias", &self.patch_bias)?,
            ))
        })?;
        let cp = Conv2dProblem {
            batch: 1,
            in_c: 3,
            h: image.h,
            w: image.w,
            out_c: c,
            kh: PATCH,
            kw: PATCH,
            stride: PATCH,
            pad: 0,
            act: Activation::None,
        };
        let embedded = be.conv2d_t(&cp, &image.t, pw, pb, None)?;
        drop(image);
        let (mut h, mut w) = (cp.out_h(), cp.out_w());
        let mut x = be.empty_t(h * w * c)?;
        be.to_tokens_t(&mut x, 0, &embedded, c, h * w)?;
        drop(embedded);
        x = self.patch_norm.run_t(be, &x)?;
        let mut out = Vec::new();
        for stage in &self.stages {
            for (j, b) in stage.blocks.iter().enumerate() {
                // blocks alternate plain and shifted windows (shift 3 even where the map is small)
                let shift = if j % 2 == 0 { 0 } else { WINDOW / 2 };
                let p = WindowAttentionProblem {
                    h,
                    w,
                    window: WINDOW,
                    shift,
                    heads: stage.heads,
                    head_dim: HEAD_DIM,
                    scale: (HEAD_DIM as f32).powf(-0.5),
                };
                let (table, qkv_bias) = &*b.bound.get(be, || {
                    Ok((be.bind("relative_position_bias_table", &b.table)?, be.bind("qkv bias", &b.qkv_bias)?))
                })?;
                let qkv = b.qkv.run_t(be, &b.norm1.run_t(be, &x)?, Activation::None)?;
                let attended = be.window_attention_t(&p, &qkv, qkv_bias, table)?;
                drop(qkv);
                x = b.proj.run_res(be, &attended, Activation::None, Some(&x))?;
                drop(attended);
                let hidden = b.fc1.run_t(be, &b.norm2.run_t(be, &x)?, Activation::Gelu)?;
                x = b.fc2.run_res(be, &hidden, Activation::None, Some(&x))?;
            }
            if let Some(norm) = &stage.out_norm {
                // the output channel-first, as the input projections read it (a transpose)
                let normed = norm.run_t(be, &x)?;
                let mut chw = be.empty_t(normed.len())?;
                be.to_tokens_t(&mut chw, 0, &normed, h * w, stage.channels)?;
                out.push(Map { c: stage.channels, h, w, t: chw });
            }
            if let Some(m) = &stage.merge {
                let gathered = be.patch_merge_t(&x, h, w, stage.channels)?;
                (h, w) = crate::backend::image::merge_out(h, w);
                x = m.reduction.run_t(be, &m.norm.run_t(be, &gathered)?, Activation::None)?;
            }
        }
        Ok(out)
    }
}

/// `[3, H, W]` zero-padded on the right and bottom to multiples of 4, as PatchEmbed pads.
pub fn pad_to_patches(f: super::backbone::Feature) -> super::backbone::Feature {
    let (h4, w4) = (f.h.div_ceil(PATCH) * PATCH, f.w.div_ceil(PATCH) * PATCH);
    f.padded(h4, w4)
}
