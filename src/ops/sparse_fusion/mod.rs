//! `sparse_fusion`: one ALIF round as the encoder runs it (spec §2.5).
//!
//! ```text
//! v        = memory[:, start .. start+Nv]            (the last level, read in place from [B,S,C])
//! v', l'   = gated_cross_attn(v, pos[:, start..], lang)
//! memory[:, start .. start+Nv] = v'                  (written back in place)
//! lang_out = BertLayer(l', mask)                     (post-LN: MHA 12×64, FFN 3072 exact GELU,
//!                                                     LN eps 1e-5, additive mask (1 − mask)·−10000)
//! ```
//! The caller keeps every round's `lang_out`: the heads read all three.

pub(crate) mod cpu;
#[cfg(any(feature = "cubecl-wgpu", feature = "cuda"))]
mod cubecl;
pub(crate) mod kernel;
pub mod oracle;
#[cfg(any(feature = "cubecl-wgpu", feature = "cuda"))]
mod unfused;
#[cfg(feature = "wgpu")]
mod wgpu;

pub use kernel::SparseFusionKernel;

use crate::error::{Error, Result};
use crate::problem::gated_cross_attn::{GatedCrossAttnProblem, GatedCrossAttnWeights, Linear, Norm};
use crate::problem::gemm::check_len;

/// Op name in errors.
pub const OP: &str = "sparse_fusion";

/// One post-LN BERT/RoBERTa layer over `[B,T,hidden]` (official `modeling_roberta.RobertaLayer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BertLayerProblem {
    /// B
    pub batch: usize,
    /// T label tokens.
    pub t: usize,
    /// 768
    pub hidden: usize,
    /// 12 (head dim 64)
    pub heads: usize,
    /// 3072
    pub ffn: usize,
}

impl BertLayerProblem {
    /// The roberta-base layer (768 wide, 12 heads, FFN 3072) over `t` tokens.
    pub fn roberta_base(batch: usize, t: usize) -> Self {
        BertLayerProblem { batch, t, hidden: 768, heads: 12, ffn: 3072 }
    }
    /// hidden / heads.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
    /// Checks the dimensions.
    pub fn validate(&self) -> Result<()> {
        if [self.batch, self.t, self.hidden, self.heads, self.ffn].contains(&0)
            || !self.hidden.is_multiple_of(self.heads)
        {
            return Err(Error::limit(
                OP,
                "language layer",
                format!("need all ≥ 1 and hidden a multiple of heads: {self:?}"),
            ));
        }
        Ok(())
    }
}

/// Weights of one extra language layer, named as in the official state dict under
/// `transformer.encoder.roberta_layers.{r}.`.
#[derive(Clone, Copy, Debug)]
pub struct BertLayerWeights<'a> {
    /// `attention.self.query`
    pub query: Linear<'a>,
    /// `attention.self.key`
    pub key: Linear<'a>,
    /// `attention.self.value`
    pub value: Linear<'a>,
    /// `attention.output.dense`
    pub attn_out: Linear<'a>,
    /// `attention.output.LayerNorm`
    pub attn_norm: Norm<'a>,
    /// `intermediate.dense` (GELU after it)
    pub intermediate: Linear<'a>,
    /// `output.dense`
    pub output: Linear<'a>,
    /// `output.LayerNorm`
    pub out_norm: Norm<'a>,
}

/// The language layer's tensor names, as in the official state dict after its prefix.
pub const BERT_WEIGHT_NAMES: [&str; 16] = [
    "attention.self.query.weight",
    "attention.self.query.bias",
    "attention.self.key.weight",
    "attention.self.key.bias",
    "attention.self.value.weight",
    "attention.self.value.bias",
    "attention.output.dense.weight",
    "attention.output.dense.bias",
    "attention.output.LayerNorm.weight",
    "attention.output.LayerNorm.bias",
    "intermediate.dense.weight",
    "intermediate.dense.bias",
    "output.dense.weight",
    "output.dense.bias",
    "output.LayerNorm.weight",
    "output.LayerNorm.bias",
];

impl BertLayerProblem {
    /// Every weight's official name and shape, in [`BERT_WEIGHT_NAMES`] order.
    pub fn weight_shapes(&self) -> Vec<(&'static str, Vec<usize>)> {
        let (h, f) = (self.hidden, self.ffn);
        let shapes: [Vec<usize>; 16] = [
            vec![h, h],
            vec![h],
            vec![h, h],
            vec![h],
            vec![h, h],
            vec![h],
            vec![h, h],
            vec![h],
            vec![h],
            vec![h],
            vec![f, h],
            vec![f],
            vec![h, f],
            vec![h],
            vec![h],
            vec![h],
        ];
        BERT_WEIGHT_NAMES.into_iter().zip(shapes).collect()
    }
}

impl<'a> BertLayerWeights<'a> {
    /// Views 16 tensors given in [`BERT_WEIGHT_NAMES`] order.
    pub fn from_slices(t: [&'a [f32]; 16]) -> Self {
        let lin = |w, b| Linear { weight: w, bias: b };
        BertLayerWeights {
            query: lin(t[0], t[1]),
            key: lin(t[2], t[3]),
            value: lin(t[4], t[5]),
            attn_out: lin(t[6], t[7]),
            attn_norm: Norm { weight: t[8], bias: t[9] },
            intermediate: lin(t[10], t[11]),
            output: lin(t[12], t[13]),
            out_norm: Norm { weight: t[14], bias: t[15] },
        }
    }

    /// Every tensor with its official name and expected shape, in [`BERT_WEIGHT_NAMES`] order.
    pub fn tensors(&self, p: &BertLayerProblem) -> Vec<(&'static str, Vec<usize>, &'a [f32])> {
        let data = [
            self.query.weight,
            self.query.bias,
            self.key.weight,
            self.key.bias,
            self.value.weight,
            self.value.bias,
            self.attn_out.weight,
            self.attn_out.bias,
            self.attn_norm.weight,
            self.attn_norm.bias,
            self.intermediate.weight,
            self.intermediate.bias,
            self.output.weight,
            self.output.bias,
            self.out_norm.weight,
            self.out_norm.bias,
        ];
        p.weight_shapes().into_iter().zip(data).map(|((n, s), d)| (n, s, d)).collect()
    }
}

/// One round: the fusion block over the last level of a `[B,S,C]` token buffer, then the
/// extra language layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SparseFusionProblem {
    /// S: tokens in the encoder buffer
    pub tokens: usize,
    /// `level_start_index[L−1]`: first token of the last level
    pub start: usize,
    /// The fusion block (its `nv` = tokens of the last level, `v_dim` = C).
    pub fusion: GatedCrossAttnProblem,
    /// The language layer after the fusion.
    pub lang: BertLayerProblem,
}

impl SparseFusionProblem {
    /// RLIPv2's round for a token buffer of `tokens` whose last level starts at `start`.
    pub fn rlipv2(batch: usize, tokens: usize, start: usize, t: usize) -> Self {
        SparseFusionProblem {
            tokens,
            start,
            fusion: GatedCrossAttnProblem::rlipv2(batch, tokens.saturating_sub(start), t),
            lang: BertLayerProblem::roberta_base(batch, t),
        }
    }

    /// Checks the dimensions and the last level's extent.
    pub fn validate(&self) -> Result<()> {
        self.fusion.validate()?;
        self.lang.validate()?;
        if self.start + self.fusion.nv != self.tokens {
            return Err(Error::limit(
                OP,
                "level_start_index",
                format!("last level starts at {} with {} tokens, but S = {}", self.start, self.fusion.nv, self.tokens),
            ));
        }
        if self.lang.batch != self.fusion.batch || self.lang.t != self.fusion.t || self.lang.hidden != self.fusion.l_dim
        {
            return Err(Error::limit(
                OP,
                "language",
                format!("fusion and language layer disagree on B/T/width: {:?} vs {:?}", self.fusion, self.lang),
            ));
        }
        Ok(())
    }

    /// Element range of batch `b`'s last level in a `[B,S,C]` buffer.
    pub fn level(&self, b: usize) -> std::ops::Range<usize> {
        let c = self.fusion.v_dim;
        (b * self.tokens + self.start) * c..(b * self.tokens + self.tokens) * c
    }

    /// The last level of every batch of `buf [B,S,C]`, as `[B,Nv,C]`.
    pub fn gather_level<T: Copy>(&self, buf: &[T]) -> Vec<T> {
        (0..self.fusion.batch).flat_map(|b| buf[self.level(b)].iter().copied()).collect()
    }

    /// Writes `rows [B,Nv,C]` back over the last level of `buf [B,S,C]`.
    pub fn scatter_level<T: Copy>(&self, buf: &mut [T], rows: &[T]) {
        let n = self.fusion.nv * self.fusion.v_dim;
        for b in 0..self.fusion.batch {
            buf[self.level(b)].copy_from_slice(&rows[b * n..(b + 1) * n]);
        }
    }

    /// Checks the buffers, the fusion weights and the language weights.
    #[allow(clippy::too_many_arguments)]
    pub fn check(
        &self,
        memory: &[f32],
        pos: &[f32],
        lang: &[f32],
        mask: Option<&[f32]>,
        fw: &GatedCrossAttnWeights,
        w: &BertLayerWeights,
    ) -> Result<()> {
        self.validate()?;
        let (b, c) = (self.fusion.batch, self.fusion.v_dim);
        check_len(OP, "memory", &[b, self.tokens, c], memory.len())?;
        check_len(OP, "pos", &[b, self.tokens, c], pos.len())?;
        check_len(OP, "lang", &[b, self.fusion.t, self.fusion.l_dim], lang.len())?;
        if let Some(m) = mask {
            check_len(OP, "lang_mask", &[b, self.fusion.t], m.len())?;
        }
        for (name, shape, got) in fw.tensors(&self.fusion).into_iter().chain(w.tensors(&self.lang)) {
            check_len(OP, name, &shape, got.len())?;
        }
        Ok(())
    }
}
