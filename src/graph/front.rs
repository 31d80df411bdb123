//! The image front (spec §2.2-2.3): backbone C3..C5, the four input projections (1×1 conv +
//! GroupNorm(32) on C3..C5; a 3×3/s2 conv + GroupNorm on C5 for the stride-64 level), DETR-style
//! sine positions (R50: `n/(n_last + 1e-6)·2π`, no −0.5) plus the level embedding, flattened
//! level-major and row-major into the encoder's `src` and `pos` tokens `[S, 256]`. One image at
//! a time; an image of a padded batch (NestedTensor, variants spec §4) is its zero-padded canvas
//! plus the size of its valid corner, from which each level's mask (nearest interpolation of the
//! image mask), the masked positions and the valid ratios follow.

use super::backbone::{Feature, Map, ResNet50};
use super::bind::Binding;
use super::swin::{pad_to_patches, Swin, SwinShape};
use super::vars::Vars;
use crate::backend::image::GroupNormShape;
use crate::backend::{Backend, Ops, Tensor};
use crate::error::Result;
use crate::problem::{Activation, Conv2dProblem};

const GN_GROUPS: usize = 32;
const GN_EPS: f32 = 1e-5;
const D: usize = 256;

/// The encoder's input tokens, where the backend that made them computes.
pub struct Tokens {
    /// `[S, 256]`
    pub src: Tensor,
    /// `[S, 256]` positions + level embedding
    pub pos: Tensor,
    /// `(H_l, W_l)` per level.
    pub shapes: Vec<(usize, usize)>,
    /// Start of each level in the flattened token axis.
    pub level_start: Vec<usize>,
    /// `(valid H_l, valid W_l)` per level: the top-left corner the image mask leaves unmasked
    /// (the whole level unpadded).
    pub valid: Vec<(usize, usize)>,
    /// `[S, 256]` ones on valid tokens and zeros on padded ones, on the backend that made the
    /// tokens: the MSDA value's `masked_fill(padding_mask, 0)` as a product
    /// (ms_deform_attn.py:98-100), built once for the encoder and the decoders. None unpadded.
    pub value_mask: Option<Tensor>,
}

impl Tokens {
    /// Whether any level has padded cells.
    pub fn padded(&self) -> bool {
        self.valid != self.shapes
    }

    /// `(valid W / W, valid H / H)` per level, x first, in f32 as `get_valid_ratio` divides.
    pub fn valid_ratios(&self) -> Vec<(f32, f32)> {
        self.shapes
            .iter()
            .zip(&self.valid)
            .map(|(&(h, w), &(vh, vw))| (vw as f32 / w as f32, vh as f32 / h as f32))
            .collect()
    }
}

/// [`Tokens::value_mask`] for levels `shapes` with valid corners `valid`, on `be`.
fn value_mask(be: &dyn Backend, shapes: &[(usize, usize)], valid: &[(usize, usize)]) -> Result<Option<Tensor>> {
    if valid == shapes {
        return Ok(None);
    }
    let tokens: usize = shapes.iter().map(|(h, w)| h * w).sum();
    let mut m = Vec::with_capacity(tokens * D);
    for (&(h, w), &(vh, vw)) in shapes.iter().zip(valid) {
        for i in 0..h {
            for j in 0..w {
                m.extend(std::iter::repeat_n(if i < vh && j < vw { 1f32 } else { 0f32 }, D));
            }
        }
    }
    Tensor::on(be, "padding mask", m).map(Some)
}

/// How many of `output` cells nearest interpolation (`F.interpolate`, mode `nearest`) maps
/// onto the first `valid` of `input` cells: the scale and the floor in f32 as PyTorch computes
/// them, so a level's valid extent is the official mask's.
pub fn nearest_valid(valid: usize, input: usize, output: usize) -> usize {
    let src = |j: usize| -> usize {
        if output == input {
            j
        } else if output == 2 * input {
            j >> 1
        } else {
            let scale = input as f32 / output as f32;
            ((j as f32 * scale).floor() as usize).min(input - 1)
        }
    };
    (0..output).take_while(|&j| src(j) < valid).count()
}

/// Positions kept on a GPU backend: (backend instance, level shapes, positions tensor).
type CachedPositions = (u64, Vec<(usize, usize)>, Tensor);

struct Projection {
    in_c: usize,
    k: usize,
    stride: usize,
    /// conv weight, conv bias, GroupNorm weight, GroupNorm bias
    weights: ProjectionWeights,
}

/// An input projection's conv (`input_proj.{l}.0`) and GroupNorm (`input_proj.{l}.1`).
struct ProjectionWeights {
    conv_weight: Tensor,
    conv_bias: Tensor,
    norm_weight: Tensor,
    norm_bias: Tensor,
}

impl ProjectionWeights {
    fn bind(&self, be: &dyn Backend) -> Result<Self> {
        let b = |t: &Tensor| be.bind("input projection", t);
        Ok(ProjectionWeights {
            conv_weight: b(&self.conv_weight)?,
            conv_bias: b(&self.conv_bias)?,
            norm_weight: b(&self.norm_weight)?,
            norm_bias: b(&self.norm_bias)?,
        })
    }
}

/// The backbone body.
enum Body {
    ResNet(ResNet50),
    Swin(Swin),
}

/// Backbone, input projections with GroupNorm, sine positions and level embeddings.
pub struct ImageFront {
    backbone: Body,
    /// Subtracted from the cumulative counts of the sine positions: 0.5 with Swin
    /// (swin/position_encoding.py:34-35), 0 with ResNet-50.
    pos_offset: f32,
    projections: Vec<Projection>,
    level_embed: Vec<f32>,
    /// The projections' tensors on the backend last used.
    bound: Binding<Vec<ProjectionWeights>>,
    /// The positions of the last level shapes on the GPU backend last used (they depend on the
    /// shapes only, so images of one size share them).
    positions: std::sync::Mutex<Option<CachedPositions>>,
}

impl ImageFront {
    /// Loads the ResNet-50 front ([`ImageFront::load_for`] `resnet50`).
    pub fn load(vars: &Vars) -> Result<Self> {
        Self::load_for("resnet50", vars)
    }

    /// Loads the backbone `backbone` (`resnet50`, `swin_tiny`, `swin_large`; under
    /// [`super::backbone::PREFIX`]), `input_proj.*` and `transformer.level_embed` (`vars` at the
    /// root).
    pub fn load_for(backbone: &str, vars: &Vars) -> Result<Self> {
        let body = vars.pp(super::backbone::PREFIX);
        let (backbone, [c3, c4, c5], pos_offset) = match SwinShape::of(backbone) {
            Some(shape) => (Body::Swin(Swin::load(shape, &body)?), shape.out_channels(), 0.5),
            None if backbone == "resnet50" => (Body::ResNet(ResNet50::load(&body)?), [512, 1024, 2048], 0.0),
            None => {
                return Err(crate::Error::limit(
                    "image front",
                    "backbone",
                    format!("`{backbone}` is not one this build runs (resnet50, swin_tiny, swin_large)"),
                ))
            }
        };
        let mut projections = Vec::new();
        for (l, (in_c, k, stride)) in [(c3, 1, 1), (c4, 1, 1), (c5, 1, 1), (c5, 3, 2)].into_iter().enumerate() {
            let (conv, norm) = (vars.pp("input_proj").pp(l).pp(0), vars.pp("input_proj").pp(l).pp(1));
            let weights = ProjectionWeights {
                conv_weight: conv.tensor("weight", &[D, in_c, k, k])?,
                conv_bias: conv.tensor("bias", &[D])?,
                norm_weight: norm.tensor("weight", &[D])?,
                norm_bias: norm.tensor("bias", &[D])?,
            };
            projections.push(Projection { in_c, k, stride, weights });
        }
        let level_embed = vars.get("transformer.level_embed", &[projections.len(), D])?;
        Ok(ImageFront {
            backbone,
            pos_offset,
            projections,
            level_embed,
            bound: Binding::default(),
            positions: Default::default(),
        })
    }

    /// Image `[3,H,W]` (normalized) → encoder tokens, positions and level table, kept where
    /// `be` computes (weights bound to `be` on first use). The image is consumed: a host backend
    /// computes on its buffer, a GPU backend uploads it.
    pub fn forward(&self, be: &dyn Backend, image: Feature) -> Result<Tokens> {
        let valid = (image.h, image.w);
        self.forward_padded(be, image, valid)
    }

    /// [`forward`](Self::forward) for an image of a padded batch: `canvas` is the batch's
    /// zero-padded `[3, H, W]` with the image in its top-left `valid = (h, w)` corner.
    pub fn forward_padded(&self, be: &dyn Backend, canvas: Feature, valid: (usize, usize)) -> Result<Tokens> {
        let (image_h, image_w) = (canvas.h, canvas.w);
        let mut feats = match &self.backbone {
            Body::ResNet(r) => r.forward_t(be, Map::take(be, canvas)?)?,
            Body::Swin(s) => s.forward_t(be, Map::take(be, pad_to_patches(canvas))?)?,
        };
        let bound = self.bound.get(be, || self.projections.iter().map(|p| p.weights.bind(be)).collect())?;
        let mut levels = Vec::new();
        let last = feats.len() - 1;
        for (l, (p, w)) in self.projections.iter().zip(bound.iter()).enumerate() {
            let x = &feats[l.min(last)]; // the extra level projects C5
            let cp = Conv2dProblem {
                batch: 1,
                in_c: p.in_c,
                h: x.h,
                w: x.w,
                out_c: D,
                kh: p.k,
                kw: p.k,
                stride: p.stride,
                pad: p.k / 2,
                act: Activation::None,
            };
            let y = be.conv2d_t(&cp, &x.t, &w.conv_weight, &w.conv_bias, None)?;
            let plane = cp.out_h() * cp.out_w();
            let y = be.group_norm_t(
                &GroupNormShape { batch: 1, channels: D, plane, groups: GN_GROUPS, eps: GN_EPS },
                y,
                &w.norm_weight,
                &w.norm_bias,
            )?;
            levels.push(Map { c: D, h: cp.out_h(), w: cp.out_w(), t: y });
            if l < last {
                feats[l].t = Tensor::host(Vec::new()); // C3, C4 are read once: free them before the tokens exist
            }
        }
        drop(feats);
        let shapes: Vec<(usize, usize)> = levels.iter().map(|f| (f.h, f.w)).collect();
        let level_start: Vec<usize> =
            shapes.iter().scan(0, |acc, &(h, w)| Some(std::mem::replace(acc, *acc + h * w))).collect();
        let s: usize = shapes.iter().map(|(h, w)| h * w).sum();
        let mut src = be.empty_t(s * D)?;
        for (l, f) in levels.into_iter().enumerate() {
            be.to_tokens_t(&mut src, level_start[l], &f.t, D, f.h * f.w)?;
        }
        let valid: Vec<(usize, usize)> = shapes
            .iter()
            .map(|&(h, w)| (nearest_valid(valid.0, image_h, h), nearest_valid(valid.1, image_w, w)))
            .collect();
        let pos = self.positions(be, &shapes, &valid, &level_start)?;
        let value_mask = value_mask(be, &shapes, &valid)?;
        Ok(Tokens { src, pos, shapes, level_start, valid, value_mask })
    }

    /// Sine positions + level embeddings `[S, 256]` for these level shapes, on `be` (kept for the
    /// next image of the same shapes on a GPU backend, where it saves an upload; a host backend
    /// makes them per image rather than hold 18 MB at 800×1066 between images).
    fn positions(
        &self,
        be: &dyn Backend,
        shapes: &[(usize, usize)],
        valid: &[(usize, usize)],
        level_start: &[usize],
    ) -> Result<Tensor> {
        let mut slot = self.positions.lock().unwrap_or_else(|e| e.into_inner());
        let key: Vec<(usize, usize)> = shapes.iter().chain(valid).copied().collect();
        if let Some((owner, s, t)) = slot.as_ref() {
            if *owner == be.owner_id() && *s == key {
                return Ok(t.clone());
            }
        }
        *slot = None;
        let s: usize = shapes.iter().map(|(h, w)| h * w).sum();
        let mut pos = vec![0f32; s * D];
        // token-major rows; computed per pixel (no [256, h, w] table beside the tokens)
        let dim_t = sine_dims();
        let mut px = [0f32; D];
        for (l, (&(h, w), &valid)) in shapes.iter().zip(valid).enumerate() {
            for t in 0..h * w {
                let row = (level_start[l] + t) * D;
                sine_at(t / w, t % w, valid, self.pos_offset, &dim_t, &mut px);
                for c in 0..D {
                    pos[row + c] = px[c] + self.level_embed[l * D + c];
                }
            }
        }
        let t = Tensor::on(be, "positions", pos)?;
        if be.owner_id() != 0 {
            *slot = Some((be.owner_id(), key, t.clone()));
        }
        Ok(t)
    }
}

/// GroupNorm(32 groups, eps 1e-5) in place on `[C, H, W]`, statistics accumulated in f64.
pub fn group_norm(x: &mut Feature, weight: &[f32], bias: &[f32]) {
    let s = GroupNormShape { batch: 1, channels: x.c, plane: x.h * x.w, groups: GN_GROUPS, eps: GN_EPS };
    crate::backend::image::group_norm(&mut x.data, &s, weight, bias);
}

/// The R50 sine position encoding `[256, h, w]` of an unpadded level: 128 y features then 128 x
/// features, in f32 as the official module computes them.
pub fn sine_position(h: usize, w: usize) -> Vec<f32> {
    let dim_t = sine_dims();
    let mut out = vec![0f32; 256 * h * w];
    let mut px = [0f32; 256];
    for y in 0..h {
        for x in 0..w {
            sine_at(y, x, (h, w), 0.0, &dim_t, &mut px);
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

/// The 256 position features of cell (y, x) of a level whose unmasked corner is `valid = (vh,
/// vw)` (position_encoding.py:38-58): the cumulative counts of unmasked cells along the column
/// and the row, over the column's and row's totals. A cell in a fully masked column (x ≥ vw) or
/// row (y ≥ vh) has the count 0 there; past the valid rows of a valid column the count stays vh.
/// `offset` is subtracted from the count (0.5 for Swin), the total is not offset.
fn sine_at(y: usize, x: usize, (vh, vw): (usize, usize), offset: f32, dim_t: &[f32], out: &mut [f32; 256]) {
    let scale = 2.0 * std::f32::consts::PI;
    let cumulative = |i: usize, valid: usize, other_valid: bool| -> f32 {
        let (count, total) = if other_valid { ((i + 1).min(valid) as f32, valid as f32) } else { (0.0, 0.0) };
        (count - offset) / (total + 1e-6) * scale
    };
    let ny = cumulative(y, vh, x < vw);
    let nx = cumulative(x, vw, y < vh);
    for (k, &t) in dim_t.iter().enumerate() {
        let (vy, vx) = (ny / t, nx / t);
        let (fy, fx) = if k % 2 == 0 { (vy.sin(), vx.sin()) } else { (vy.cos(), vx.cos()) };
        out[k] = fy;
        out[128 + k] = fx;
    }
}
