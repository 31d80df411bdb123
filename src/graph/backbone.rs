//! ResNet-50 (spec §2.2): torchvision layout (stride on the 3×3 conv, 1×1 downsample in each
//! layer's first block), every FrozenBatchNorm folded into the conv before it
//! (`W' = W·s`, `b' = b − rm·s`, `s = w·rsqrt(rv + 1e-5)`), returning C3, C4, C5.

use crate::backend::Backend;
use crate::error::Result;
use crate::problem::{Activation, Conv2dProblem};

const BN_EPS: f32 = 1e-5;

/// Prefix of the backbone in the official state dict.
pub const PREFIX: &str = "backbone.0.body.";

/// A feature map `[C, H, W]` (batch 1).
#[derive(Clone, Debug)]
pub struct Feature {
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// `[C,H,W]` values, row-major.
    pub data: Vec<f32>,
}

/// A convolution with its BatchNorm folded in.
struct ConvBn {
    out_c: usize,
    in_c: usize,
    k: usize,
    stride: usize,
    pad: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

type Get<'g> = dyn FnMut(&str, &[usize]) -> Result<Vec<f32>> + 'g;

impl ConvBn {
    fn load(get: &mut Get, conv: &str, bn: &str, in_c: usize, out_c: usize, k: usize, stride: usize) -> Result<Self> {
        let mut weight = get(&format!("{conv}.weight"), &[out_c, in_c, k, k])?;
        let [w, b, rm, rv] = ["weight", "bias", "running_mean", "running_var"].map(|n| get(&format!("{bn}.{n}"), &[out_c]));
        let (w, b, rm, rv) = (w?, b?, rm?, rv?);
        let per = in_c * k * k;
        let mut bias = vec![0f32; out_c];
        for o in 0..out_c {
            let s = w[o] * (rv[o] + BN_EPS).sqrt().recip();
            weight[o * per..(o + 1) * per].iter_mut().for_each(|x| *x *= s);
            bias[o] = b[o] - rm[o] * s;
        }
        Ok(ConvBn { out_c, in_c, k, stride, pad: k / 2, weight, bias })
    }

    fn problem(&self, x: &Feature, act: Activation) -> Conv2dProblem {
        Conv2dProblem { batch: 1, in_c: self.in_c, h: x.h, w: x.w, out_c: self.out_c, kh: self.k, kw: self.k, stride: self.stride, pad: self.pad, act }
    }

    fn run(&self, be: &dyn Backend, x: &Feature, act: Activation) -> Result<Feature> {
        let p = self.problem(x, act);
        let data = be.conv2d(&p, &x.data, &self.weight, &self.bias, None)?;
        Ok(Feature { c: self.out_c, h: p.out_h(), w: p.out_w(), data })
    }

    /// `acc ← act(conv(x) + acc)` in `acc`'s buffer (the residual has the output's shape).
    fn run_into(&self, be: &dyn Backend, x: &Feature, act: Activation, acc: &mut Feature) -> Result<()> {
        be.conv2d_accumulate(&self.problem(x, act), &x.data, &self.weight, &self.bias, &mut acc.data)
    }
}

struct Bottleneck {
    conv1: ConvBn,
    conv2: ConvBn,
    conv3: ConvBn,
    downsample: Option<ConvBn>,
}

/// ResNet-50 with FrozenBatchNorm folded into each conv: the stride-8/16/32 features the encoder reads.
pub struct ResNet50 {
    stem: ConvBn,
    layers: Vec<Vec<Bottleneck>>,
}

impl ResNet50 {
    /// Loads through `get(name, shape)`; names after [`PREFIX`] (`conv1.weight`, `layer1.0.bn2.bias`, …).
    pub fn load(mut get: impl FnMut(&str, &[usize]) -> Result<Vec<f32>>) -> Result<Self> {
        let get: &mut Get = &mut get;
        let stem = ConvBn::load(get, "conv1", "bn1", 3, 64, 7, 2)?;
        let mut layers = Vec::new();
        let mut inp = 64;
        for (li, (&blocks, &planes)) in [3usize, 4, 6, 3].iter().zip(&[64usize, 128, 256, 512]).enumerate() {
            let stride = if li == 0 { 1 } else { 2 };
            let mut layer = Vec::new();
            for j in 0..blocks {
                let p = format!("layer{}.{j}", li + 1);
                let s = if j == 0 { stride } else { 1 };
                layer.push(Bottleneck {
                    conv1: ConvBn::load(get, &format!("{p}.conv1"), &format!("{p}.bn1"), inp, planes, 1, 1)?,
                    conv2: ConvBn::load(get, &format!("{p}.conv2"), &format!("{p}.bn2"), planes, planes, 3, s)?,
                    conv3: ConvBn::load(get, &format!("{p}.conv3"), &format!("{p}.bn3"), planes, 4 * planes, 1, 1)?,
                    downsample: if j == 0 { Some(ConvBn::load(get, &format!("{p}.downsample.0"), &format!("{p}.downsample.1"), inp, 4 * planes, 1, s)?) } else { None },
                });
                inp = 4 * planes;
            }
            layers.push(layer);
        }
        Ok(ResNet50 { stem, layers })
    }

    /// `[C3, C4, C5]` (strides 8, 16, 32) of a normalized `[3, H, W]` image.
    pub fn forward(&self, be: &dyn Backend, image: &Feature) -> Result<Vec<Feature>> {
        let stem = self.stem.run(be, image, Activation::Relu)?;
        let mut x = max_pool_3x3_s2(&stem);
        drop(stem); // 52 MB at 800×1066: not kept through the stride-4 stage
        let mut out = Vec::new();
        for (li, layer) in self.layers.iter().enumerate() {
            for b in layer {
                // live at once: the block input, conv2's output and (first block) the 4×-wide
                // downsample, made last; conv3 accumulates into the residual's own buffer
                let y1 = b.conv1.run(be, &x, Activation::Relu)?;
                let y = b.conv2.run(be, &y1, Activation::Relu)?;
                drop(y1);
                if let Some(d) = &b.downsample {
                    x = d.run(be, &x, Activation::None)?;
                }
                b.conv3.run_into(be, &y, Activation::Relu, &mut x)?;
                drop(y);
            }
            if li >= 1 {
                out.push(x.clone());
            }
        }
        Ok(out)
    }
}

/// 3×3 max pooling, stride 2, padding 1 (padding never wins).
pub fn max_pool_3x3_s2(x: &Feature) -> Feature {
    let (oh, ow) = ((x.h + 2 - 3) / 2 + 1, (x.w + 2 - 3) / 2 + 1);
    let mut data = vec![0f32; x.c * oh * ow];
    for c in 0..x.c {
        let plane = &x.data[c * x.h * x.w..(c + 1) * x.h * x.w];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut m = f32::NEG_INFINITY;
                for ky in 0..3 {
                    let iy = (oy * 2 + ky) as isize - 1;
                    if iy < 0 || iy >= x.h as isize {
                        continue;
                    }
                    for kx in 0..3 {
                        let ix = (ox * 2 + kx) as isize - 1;
                        if ix >= 0 && ix < x.w as isize {
                            m = m.max(plane[iy as usize * x.w + ix as usize]);
                        }
                    }
                }
                data[(c * oh + oy) * ow + ox] = m;
            }
        }
    }
    Feature { c: x.c, h: oh, w: ow, data }
}
