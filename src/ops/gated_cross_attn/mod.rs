//! `gated_cross_attn`: ALIF's gated bi-directional cross-attention (GLIP-style "VLFuse",
//! spec §2.5.1; official `RLIPv2_BiAttentionBlockForCheckpoint` + `RLIPv2_BiMultiHeadAttention`).
//!
//! Inputs `v [B,Nv,Cv]`, `pos [B,Nv,Cv]`, `l [B,T,Cl]`; outputs `v' [B,Nv,Cv]`, `l' [B,T,Cl]`:
//! ```text
//! v̂ = LN_v(v), l̂ = LN_l(l)                                   (eps 1e-5)
//! Q = (v̂ + pos)·W_vᵀ + b_v, scaled by Dh^-½ after the bias    [B,Nv,E]   (E = heads·Dh)
//! K = l̂·W_lᵀ + b_l;  Vv = v̂·W_vvᵀ + b_vv;  Vl = l̂·W_vlᵀ + b_vl
//! A_h = Q_h·K_hᵀ                                              [B,heads,Nv,T]  (one score matrix)
//! Δv = (softmax_T(A_h)·Vl_h)·W_ovᵀ + b_ov                     image ← text
//! Δl = (softmax_Nv(A_hᵀ)·Vv_h)·W_olᵀ + b_ol                   text ← image
//! v' = v̂ + g_v·Δv,  l' = l̂ + g_l·Δl                          (residual on the normalized input)
//! ```
//! Gates: `VXAc` g = `gamma[0]` (scalar, no tanh: every RLIPv2 checkpoint), `Glip` g = gamma
//! (elementwise), `XGating` g = 1.
//!
//! Masks: the official fusion masks are no-ops (spec §7.1: the additive mask is built on a bool
//! tensor, so it adds +1 everywhere and softmax ignores it). A faithful port therefore ignores
//! padding in fusion too; this op takes no mask. The official code's `− rowmax` before the
//! text-side softmax and its optional ±50000 clamps (flags off in every released script) do not
//! change the result and are not reproduced.

pub(crate) mod cpu;
#[cfg(any(feature = "cubecl-wgpu", feature = "cuda"))]
mod cubecl;
pub(crate) mod kernel;
pub mod oracle;
#[cfg(feature = "wgpu")]
mod wgpu;

pub use kernel::GatedCrossAttnKernel;

use crate::error::{Error, Result};
use crate::problem::gemm::check_len;

/// Op name in errors.
pub const OP: &str = "gated_cross_attn";

/// LayerNorm epsilon of the fusion block and of the RoBERTa layers.
pub const LN_EPS: f32 = 1e-5;

/// How the fusion output is gated onto the normalized input (spec §2.5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gate {
    /// `gamma[0]`, scalar, no tanh (`--gating_mechanism VXAc`).
    VXAc,
    /// `gamma` elementwise (`GLIP`).
    Glip,
    /// gate 1 (`XGating`).
    XGating,
}

impl Gate {
    /// The gate applied to channel `c` of a row: `gamma[0]`, `gamma[c]` or 1.
    #[inline]
    pub fn factor(self, gamma: &[f32], c: usize) -> f32 {
        match self {
            Gate::VXAc => gamma[0],
            Gate::Glip => gamma[c],
            Gate::XGating => 1.0,
        }
    }
}

impl std::str::FromStr for Gate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "vxac" => Ok(Gate::VXAc),
            "glip" => Ok(Gate::Glip),
            "xgating" => Ok(Gate::XGating),
            other => Err(format!("unknown gate `{other}` (expected VXAc, GLIP or XGating)")),
        }
    }
}

/// One ALIF gated bi-directional cross-attention between image tokens and label tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatedCrossAttnProblem {
    /// B
    pub batch: usize,
    /// Nv image tokens (the last level: 273 at 800×1333)
    pub nv: usize,
    /// T label tokens (198 for HICO)
    pub t: usize,
    /// Cv = 256
    pub v_dim: usize,
    /// Cl = 768
    pub l_dim: usize,
    /// E = 2048
    pub embed: usize,
    /// 8 heads of E / 8 = 256
    pub heads: usize,
    /// The gate.
    pub gate: Gate,
}

impl GatedCrossAttnProblem {
    /// RLIPv2's configuration: Cv 256, Cl 768, E 2048, 8 heads, VXAc gate.
    pub fn rlipv2(batch: usize, nv: usize, t: usize) -> Self {
        GatedCrossAttnProblem { batch, nv, t, v_dim: 256, l_dim: 768, embed: 2048, heads: 8, gate: Gate::VXAc }
    }
    /// E / heads (256).
    pub fn head_dim(&self) -> usize {
        self.embed / self.heads
    }
    /// Score scale, head_dim^−½.
    pub fn scale(&self) -> f32 {
        (self.head_dim() as f32).powf(-0.5)
    }

    /// Checks the dimensions.
    pub fn validate(&self) -> Result<()> {
        if [self.batch, self.nv, self.t, self.v_dim, self.l_dim, self.embed, self.heads].contains(&0) {
            return Err(Error::limit(OP, "dimensions", format!("all must be ≥ 1: {self:?}")));
        }
        if !self.embed.is_multiple_of(self.heads) {
            return Err(Error::limit(
                OP,
                "embed",
                format!("E = {} is not a multiple of heads = {}", self.embed, self.heads),
            ));
        }
        Ok(())
    }

    /// Checks the activations `v`, `pos`, `l` and every weight against this problem.
    pub fn check(&self, v: &[f32], pos: &[f32], l: &[f32], w: &GatedCrossAttnWeights) -> Result<()> {
        self.validate()?;
        check_len(OP, "v", &[self.batch, self.nv, self.v_dim], v.len())?;
        check_len(OP, "pos", &[self.batch, self.nv, self.v_dim], pos.len())?;
        check_len(OP, "l", &[self.batch, self.t, self.l_dim], l.len())?;
        for (name, shape, got) in w.tensors(self) {
            check_len(OP, name, &shape, got.len())?;
        }
        Ok(())
    }
}

/// `nn.Linear` parameters: `weight [out,in]`, `bias [out]`.
#[derive(Clone, Copy, Debug)]
pub struct Linear<'a> {
    /// `[out, in]`, as PyTorch stores it.
    pub weight: &'a [f32],
    /// `[out]`.
    pub bias: &'a [f32],
}

/// `nn.LayerNorm` parameters: `weight [C]` (γ), `bias [C]` (β).
#[derive(Clone, Copy, Debug)]
pub struct Norm<'a> {
    /// `[width]`.
    pub weight: &'a [f32],
    /// `[width]`.
    pub bias: &'a [f32],
}

/// Weights of one fusion block, named as in the official state dict under
/// `transformer.encoder.VLFuse_layers.{r}.` (see [`GatedCrossAttnWeights::tensors`]).
#[derive(Clone, Copy, Debug)]
pub struct GatedCrossAttnWeights<'a> {
    /// `layer_norm_v`: the image side's LayerNorm.
    pub layer_norm_v: Norm<'a>,
    /// `layer_norm_l`: the language side's LayerNorm.
    pub layer_norm_l: Norm<'a>,
    /// `attn.v_proj`: image queries.
    pub v_proj: Linear<'a>,
    /// `attn.l_proj`: language keys.
    pub l_proj: Linear<'a>,
    /// `attn.values_v_proj`: image values.
    pub values_v_proj: Linear<'a>,
    /// `attn.values_l_proj`: language values.
    pub values_l_proj: Linear<'a>,
    /// `attn.out_v_proj`: image output projection.
    pub out_v_proj: Linear<'a>,
    /// `attn.out_l_proj`: language output projection.
    pub out_l_proj: Linear<'a>,
    /// `gamma_v`: the image-side gate.
    pub gamma_v: &'a [f32],
    /// `gamma_l`: the language-side gate.
    pub gamma_l: &'a [f32],
}

/// The official names of the fusion weights (prefix `transformer.encoder.VLFuse_layers.{r}.`
/// stripped) in the order of [`GatedCrossAttnWeights::tensors`].
pub const WEIGHT_NAMES: [&str; 18] = [
    "b_attn.layer_norm_v.weight",
    "b_attn.layer_norm_v.bias",
    "b_attn.layer_norm_l.weight",
    "b_attn.layer_norm_l.bias",
    "b_attn.attn.v_proj.weight",
    "b_attn.attn.v_proj.bias",
    "b_attn.attn.l_proj.weight",
    "b_attn.attn.l_proj.bias",
    "b_attn.attn.values_v_proj.weight",
    "b_attn.attn.values_v_proj.bias",
    "b_attn.attn.values_l_proj.weight",
    "b_attn.attn.values_l_proj.bias",
    "b_attn.attn.out_v_proj.weight",
    "b_attn.attn.out_v_proj.bias",
    "b_attn.attn.out_l_proj.weight",
    "b_attn.attn.out_l_proj.bias",
    "b_attn.gamma_v",
    "b_attn.gamma_l",
];

impl GatedCrossAttnProblem {
    /// Every weight's official name and shape, in [`WEIGHT_NAMES`] order.
    pub fn weight_shapes(&self) -> Vec<(&'static str, Vec<usize>)> {
        let (cv, cl, e) = (self.v_dim, self.l_dim, self.embed);
        let shapes: [Vec<usize>; 18] = [
            vec![cv],
            vec![cv],
            vec![cl],
            vec![cl],
            vec![e, cv],
            vec![e],
            vec![e, cl],
            vec![e],
            vec![e, cv],
            vec![e],
            vec![e, cl],
            vec![e],
            vec![cv, e],
            vec![cv],
            vec![cl, e],
            vec![cl],
            vec![cv],
            vec![cl],
        ];
        WEIGHT_NAMES.into_iter().zip(shapes).collect()
    }
}

impl<'a> GatedCrossAttnWeights<'a> {
    /// Views 18 tensors given in [`WEIGHT_NAMES`] order.
    pub fn from_slices(t: [&'a [f32]; 18]) -> Self {
        let lin = |w, b| Linear { weight: w, bias: b };
        GatedCrossAttnWeights {
            layer_norm_v: Norm { weight: t[0], bias: t[1] },
            layer_norm_l: Norm { weight: t[2], bias: t[3] },
            v_proj: lin(t[4], t[5]),
            l_proj: lin(t[6], t[7]),
            values_v_proj: lin(t[8], t[9]),
            values_l_proj: lin(t[10], t[11]),
            out_v_proj: lin(t[12], t[13]),
            out_l_proj: lin(t[14], t[15]),
            gamma_v: t[16],
            gamma_l: t[17],
        }
    }

    /// Every tensor with its official name and expected shape, in [`WEIGHT_NAMES`] order.
    pub fn tensors(&self, p: &GatedCrossAttnProblem) -> Vec<(&'static str, Vec<usize>, &'a [f32])> {
        let data = [
            self.layer_norm_v.weight,
            self.layer_norm_v.bias,
            self.layer_norm_l.weight,
            self.layer_norm_l.bias,
            self.v_proj.weight,
            self.v_proj.bias,
            self.l_proj.weight,
            self.l_proj.bias,
            self.values_v_proj.weight,
            self.values_v_proj.bias,
            self.values_l_proj.weight,
            self.values_l_proj.bias,
            self.out_v_proj.weight,
            self.out_v_proj.bias,
            self.out_l_proj.weight,
            self.out_l_proj.bias,
            self.gamma_v,
            self.gamma_l,
        ];
        p.weight_shapes().into_iter().zip(data).map(|((n, s), d)| (n, s, d)).collect()
    }
}
