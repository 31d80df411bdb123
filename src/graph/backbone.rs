//! ResNet-50 (spec §2.2): torchvision layout (stride on the 3×3 conv, 1×1 downsample in each
//! layer's first block), every FrozenBatchNorm folded into the conv before it
//! (`W' = W·s`, `b' = b − rm·s`, `s = w·rsqrt(rv + 1e-5)`), returning C3, C4, C5.

use super::bind::Binding;
use super::vars::Vars;
use crate::backend::{Backend, Ops, Tensor};
use crate::error::Result;
use crate::problem::{Activation, Conv2dProblem};

const BN_EPS: f32 = 1e-5;

/// Prefix of the backbone in the official state dict.
pub const PREFIX: &str = "backbone.0.body";

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

impl Feature {
    /// The map in the top-left corner of a zero `[C, h, w]` (`h`, `w` at least its own size): the
    /// pad value 0 of a NestedTensor batch canvas and of Swin's patch padding.
    pub fn padded(self, h: usize, w: usize) -> Feature {
        if (h, w) == (self.h, self.w) {
            return self;
        }
        let mut data = vec![0f32; self.c * h * w];
        for (k, row) in self.data.chunks_exact(self.w).enumerate() {
            let (c, y) = (k / self.h, k % self.h);
            data[(c * h + y) * w..][..self.w].copy_from_slice(row);
        }
        Feature { c: self.c, h, w, data }
    }
}

/// A feature map `[C, H, W]` (batch 1) where a backend computes.
#[derive(Clone, Debug)]
pub struct Map {
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// `[C,H,W]` values.
    pub t: Tensor,
}

impl Map {
    /// `f` put on `be` (a host backend keeps its buffer).
    pub fn take(be: &dyn Backend, f: Feature) -> Result<Self> {
        Ok(Map { c: f.c, h: f.h, w: f.w, t: Tensor::on(be, "image", f.data)? })
    }
    /// Read back from `be`.
    pub fn to_feature(self, be: &dyn Backend) -> Result<Feature> {
        Ok(Feature { c: self.c, h: self.h, w: self.w, data: self.t.into_vec(be)? })
    }
}

/// A convolution with its BatchNorm folded in.
struct ConvBn {
    out_c: usize,
    in_c: usize,
    k: usize,
    stride: usize,
    pad: usize,
    weight: Tensor,
    bias: Tensor,
}

impl ConvBn {
    /// A conv under `conv` with the frozen BatchNorm under `bn` folded in.
    fn load(conv: &Vars, bn: &Vars, in_c: usize, out_c: usize, k: usize, stride: usize) -> Result<Self> {
        let mut weight = conv.get("weight", &[out_c, in_c, k, k])?;
        let [w, b, rm, rv] = ["weight", "bias", "running_mean", "running_var"].map(|n| bn.get(n, &[out_c]));
        let (w, b, rm, rv) = (w?, b?, rm?, rv?);
        let per = in_c * k * k;
        let mut bias = vec![0f32; out_c];
        for o in 0..out_c {
            let s = w[o] * (rv[o] + BN_EPS).sqrt().recip();
            weight[o * per..(o + 1) * per].iter_mut().for_each(|x| *x *= s);
            bias[o] = b[o] - rm[o] * s;
        }
        Ok(ConvBn { out_c, in_c, k, stride, pad: k / 2, weight: Tensor::host(weight), bias: Tensor::host(bias) })
    }

    fn problem(&self, x: &Map, act: Activation) -> Conv2dProblem {
        Conv2dProblem {
            batch: 1,
            in_c: self.in_c,
            h: x.h,
            w: x.w,
            out_c: self.out_c,
            kh: self.k,
            kw: self.k,
            stride: self.stride,
            pad: self.pad,
            act,
        }
    }

    /// `act(conv(x) [+ residual])`; the residual is consumed (host backends write into it).
    fn run(
        &self,
        be: &dyn Backend,
        w: &(Tensor, Tensor),
        x: &Map,
        act: Activation,
        residual: Option<Map>,
    ) -> Result<Map> {
        let p = self.problem(x, act);
        let t = be.conv2d_t(&p, &x.t, &w.0, &w.1, residual.map(|r| r.t))?;
        Ok(Map { c: self.out_c, h: p.out_h(), w: p.out_w(), t })
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
    /// Every conv's (weight, bias) on the backend last used, in [`ResNet50::convs`] order.
    bound: Binding<Vec<(Tensor, Tensor)>>,
}

impl ResNet50 {
    /// Loads `conv1.weight`, `layer1.0.bn2.bias`, … under `vars` (at [`PREFIX`] in a model file).
    pub fn load(vars: &Vars) -> Result<Self> {
        let stem = ConvBn::load(&vars.pp("conv1"), &vars.pp("bn1"), 3, 64, 7, 2)?;
        let mut layers = Vec::new();
        let mut inp = 64;
        for (li, (&blocks, &planes)) in [3usize, 4, 6, 3].iter().zip(&[64usize, 128, 256, 512]).enumerate() {
            let stride = if li == 0 { 1 } else { 2 };
            let mut layer = Vec::new();
            for j in 0..blocks {
                let v = vars.pp(format!("layer{}", li + 1)).pp(j);
                let s = if j == 0 { stride } else { 1 };
                let conv_bn = |i: usize| (v.pp(format!("conv{i}")), v.pp(format!("bn{i}")));
                let ((c1, b1), (c2, b2), (c3, b3)) = (conv_bn(1), conv_bn(2), conv_bn(3));
                let down = v.pp("downsample");
                layer.push(Bottleneck {
                    conv1: ConvBn::load(&c1, &b1, inp, planes, 1, 1)?,
                    conv2: ConvBn::load(&c2, &b2, planes, planes, 3, s)?,
                    conv3: ConvBn::load(&c3, &b3, planes, 4 * planes, 1, 1)?,
                    downsample: if j == 0 {
                        Some(ConvBn::load(&down.pp(0), &down.pp(1), inp, 4 * planes, 1, s)?)
                    } else {
                        None
                    },
                });
                inp = 4 * planes;
            }
            layers.push(layer);
        }
        Ok(ResNet50 { stem, layers, bound: Binding::default() })
    }

    /// Every conv: the stem, then per block conv1, conv2, conv3 and the downsample where present.
    fn convs(&self) -> impl Iterator<Item = &ConvBn> {
        std::iter::once(&self.stem).chain(self.layers.iter().flatten().flat_map(|b| {
            [Some(&b.conv1), Some(&b.conv2), Some(&b.conv3), b.downsample.as_ref()].into_iter().flatten()
        }))
    }

    /// `[C3, C4, C5]` (strides 8, 16, 32) of a normalized `[3, H, W]` image, read back to the host.
    pub fn forward(&self, be: &dyn Backend, image: &Feature) -> Result<Vec<Feature>> {
        self.forward_t(be, Map::take(be, image.clone())?)?.into_iter().map(|m| m.to_feature(be)).collect()
    }

    /// [`ResNet50::forward`] on the backend: the image and every feature map stay where `be`
    /// computes; the weights are bound to `be` on first use.
    pub fn forward_t(&self, be: &dyn Backend, image: Map) -> Result<Vec<Map>> {
        let bound = self.bound.get(be, || {
            self.convs()
                .map(|c| Ok((be.bind("backbone weight", &c.weight)?, be.bind("backbone bias", &c.bias)?)))
                .collect()
        })?;
        let mut w = bound.iter();
        let mut next = || w.next().expect("one bound pair per conv");
        let stem = self.stem.run(be, next(), &image, Activation::Relu, None)?;
        drop(image);
        let (oh, ow) = crate::backend::image::pool_out(stem.h, stem.w);
        let mut x = Map { c: stem.c, h: oh, w: ow, t: be.max_pool_t(&stem.t, stem.c, stem.h, stem.w)? };
        drop(stem); // 52 MB at 800×1066: not kept through the stride-4 stage
        let mut out = Vec::new();
        for (li, layer) in self.layers.iter().enumerate() {
            for b in layer {
                let (w1, w2, w3) = (next(), next(), next());
                // live at once: the block input, conv2's output and (first block) the 4×-wide
                // downsample, made last; conv3 accumulates into the residual's own buffer
                let y1 = b.conv1.run(be, w1, &x, Activation::Relu, None)?;
                let y = b.conv2.run(be, w2, &y1, Activation::Relu, None)?;
                drop(y1);
                if let Some(d) = &b.downsample {
                    x = d.run(be, next(), &x, Activation::None, None)?;
                }
                x = b.conv3.run(be, w3, &y, Activation::Relu, Some(x))?;
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
    let (oh, ow) = crate::backend::image::pool_out(x.h, x.w);
    Feature { c: x.c, h: oh, w: ow, data: crate::backend::image::max_pool_3x3_s2(&x.data, x.c, x.h, x.w) }
}
