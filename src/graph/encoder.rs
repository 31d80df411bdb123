//! The ALIF encoder (spec §2.5): before layers 0, interval, 2·interval, … one `sparse_fusion`
//! round (VLFuse on the last level, in place, then the extra RoBERTa layer over the labels), and
//! six post-norm deformable encoder layers:
//! `x = LN1(x + out_proj(MSDA(x + pos, ref, value_proj(x))))`, `x = LN2(x + W2·relu(W1·x))`.
//! Batch 1, unpadded (valid ratios 1).

use super::bind::{take_on, Binding};
use super::front::Tokens;
use crate::backend::{Backend, Ops, Tensor};
use crate::error::Result;
use crate::problem::{
    Activation, BertLayerProblem, Form, Gate, GatedCrossAttnProblem, GemmProblem, LayerNormProblem,
    MsDeformAttnProblem, OwnedWeights, RefKind, SparseFusionProblem,
};

const D: usize = 256;
const HEADS: usize = 8;
const POINTS: usize = 4;
const LN_EPS: f32 = 1e-5;
/// Token rows per FFN block on host tensors (bounds the host memory of the hidden layer) and on
/// device tensors (keeps the hidden layer's buffer under 128 MB).
const FFN_ROWS: usize = 2048;
const DEVICE_FFN_ROWS: usize = 16384;

/// Names of an encoder layer's tensors after `transformer.encoder.layers.{i}.`, in load order.
const LAYER_NAMES: [&str; 16] = [
    "self_attn.sampling_offsets.weight",
    "self_attn.sampling_offsets.bias",
    "self_attn.attention_weights.weight",
    "self_attn.attention_weights.bias",
    "self_attn.value_proj.weight",
    "self_attn.value_proj.bias",
    "self_attn.output_proj.weight",
    "self_attn.output_proj.bias",
    "norm1.weight",
    "norm1.bias",
    "linear1.weight",
    "linear1.bias",
    "linear2.weight",
    "linear2.bias",
    "norm2.weight",
    "norm2.bias",
];

/// The 6-layer deformable encoder with its three `sparse_fusion` rounds (ALIF).
pub struct Encoder {
    levels: usize,
    ffn: usize,
    fusion_interval: usize,
    gate: Gate,
    layers: Vec<Vec<Tensor>>,
    /// (VLFuse weights, RoBERTa-layer weights) per round.
    rounds: Vec<(OwnedWeights, OwnedWeights)>,
    /// The weights as the backend last used holds them: bound once per backend instance, so a
    /// GPU backend uploads them once, not per image.
    bound: Binding<Bound>,
}

/// Weights on one backend instance.
struct Bound {
    layers: Vec<Vec<Tensor>>,
    /// Each round's weights in the backend's fused-kernel layout, where it has one.
    rounds: Vec<Option<Tensor>>,
}

impl Encoder {
    /// Loads `layers` encoder layers and `layers / fusion_interval` fusion rounds through
    /// `get(name, shape)` with full state-dict names.
    pub fn load(
        layers: usize,
        levels: usize,
        ffn: usize,
        fusion_interval: usize,
        gate: Gate,
        mut get: impl FnMut(&str, &[usize]) -> Result<Vec<f32>>,
    ) -> Result<Self> {
        let taps = HEADS * levels * POINTS;
        let shapes: [Vec<usize>; 16] = [
            vec![2 * taps, D],
            vec![2 * taps],
            vec![taps, D],
            vec![taps],
            vec![D, D],
            vec![D],
            vec![D, D],
            vec![D],
            vec![D],
            vec![D],
            vec![ffn, D],
            vec![ffn],
            vec![D, ffn],
            vec![D],
            vec![D],
            vec![D],
        ];
        let mut ls = Vec::with_capacity(layers);
        for i in 0..layers {
            ls.push(
                LAYER_NAMES
                    .iter()
                    .zip(&shapes)
                    .map(|(n, s)| get(&format!("transformer.encoder.layers.{i}.{n}"), s).map(Tensor::host))
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        let mut rounds = Vec::new();
        for r in 0..layers / fusion_interval {
            let mut fw = OwnedWeights::default();
            for (n, s) in GatedCrossAttnProblem::rlipv2(1, 1, 1).weight_shapes() {
                fw.tensors.push(get(&format!("transformer.encoder.VLFuse_layers.{r}.{n}"), &s)?);
                fw.names.push(n);
            }
            let mut bw = OwnedWeights::default();
            for (n, s) in BertLayerProblem::roberta_base(1, 1).weight_shapes() {
                bw.tensors.push(get(&format!("transformer.encoder.roberta_layers.{r}.{n}"), &s)?);
                bw.names.push(n);
            }
            rounds.push((fw, bw));
        }
        Ok(Encoder { levels, ffn, fusion_interval, gate, layers: ls, rounds, bound: Binding::default() })
    }

    /// Binds the weights to `be` (host backends share the loaded tensors; GPU backends upload them).
    fn bind(&self, be: &dyn Backend) -> Result<Bound> {
        let mut layers = Vec::with_capacity(self.layers.len());
        for (i, l) in self.layers.iter().enumerate() {
            layers.push(
                l.iter()
                    .zip(LAYER_NAMES)
                    .map(|(t, n)| be.bind(&format!("transformer.encoder.layers.{i}.{n}"), t))
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        let p = SparseFusionProblem::rlipv2(1, 1, 0, 1);
        let rounds = self
            .rounds
            .iter()
            .map(|(fw, bw)| be.bind_sparse_fusion(&p, &fw.as_fusion(), &bw.as_bert()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Bound { layers, rounds })
    }

    /// `(memory [S, 256], the language state after each round [T, 768])` for tokens and the label
    /// embeddings `lang [T, 768]`. The memory is built from `tokens.src`, which is taken with
    /// `tokens.pos`.
    pub fn forward(&self, be: &dyn Backend, tokens: &mut Tokens, lang: &[f32]) -> Result<(Vec<f32>, Vec<Vec<f32>>)> {
        let (memory, states) = self.forward_t(be, tokens, lang)?;
        Ok((memory.into_vec(be)?, states))
    }

    /// [`Encoder::forward`] with the memory left where `be` computes.
    pub fn forward_t(&self, be: &dyn Backend, tokens: &mut Tokens, lang: &[f32]) -> Result<(Tensor, Vec<Vec<f32>>)> {
        let s = tokens.src.len() / D;
        let t = lang.len() / 768;
        let last = *tokens.level_start.last().unwrap_or(&0);
        let bound = self.bound.get(be, || self.bind(be))?;
        // reference points: each token's own centre, the same for every level (valid ratios 1)
        let mut reference = Vec::with_capacity(s * self.levels * 2);
        for &(h, w) in &tokens.shapes {
            for i in 0..h {
                for j in 0..w {
                    let r = [(j as f32 + 0.5) / w as f32, (i as f32 + 0.5) / h as f32];
                    for _ in 0..self.levels {
                        reference.extend_from_slice(&r);
                    }
                }
            }
        }
        let reference = Tensor::on(be, "reference points", reference)?;
        let msda =
            MsDeformAttnProblem::new(1, s, HEADS, D / HEADS, POINTS, &tokens.shapes, Form::Fused(RefKind::Points));
        let mut x = take_on(be, "tokens", &mut tokens.src)?;
        let pos = take_on(be, "positions", &mut tokens.pos)?;
        let mut lang = Tensor::on(be, "labels", lang.to_vec())?;
        let mut states = Vec::new();
        for (i, w) in bound.layers.iter().enumerate() {
            if i % self.fusion_interval == 0 {
                let r = i / self.fusion_interval;
                let (fw, bw) = &self.rounds[r];
                let mut p = SparseFusionProblem::rlipv2(1, s, last, t);
                p.fusion.gate = self.gate;
                lang = be.sparse_fusion_t(
                    &p,
                    &mut x,
                    &pos,
                    &lang,
                    &fw.as_fusion(),
                    &bw.as_bert(),
                    bound.rounds[r].as_ref(),
                )?;
                states.push(be.download(&lang)?);
            }
            x = self.layer(be, w, &x, &pos, &reference, &msda)?;
        }
        Ok((x, states))
    }

    fn layer(
        &self,
        be: &dyn Backend,
        w: &[Tensor],
        x: &Tensor,
        pos: &Tensor,
        reference: &Tensor,
        msda: &MsDeformAttnProblem,
    ) -> Result<Tensor> {
        let s = x.len() / D;
        let taps = HEADS * self.levels * POINTS;
        let lin = |inp: &Tensor, k: usize, n: usize, wi: usize, res: Option<&Tensor>| {
            be.gemm_t(&GemmProblem::linear(s, k, n), inp, &w[wi], Some(&w[wi + 1]), res)
        };
        // each [S, ·] tensor is dropped as soon as it is consumed: at 800×1066 one is 18 MB
        let query = be.add_t(x, pos)?;
        let offsets = lin(&query, D, 2 * taps, 0, None)?;
        let logits = lin(&query, D, taps, 2, None)?;
        drop(query);
        let value = lin(x, D, D, 4, None)?;
        let sampled = be.ms_deform_attn_t(msda, &value, reference, &offsets, &logits)?;
        drop((value, offsets, logits));
        let res = lin(&sampled, D, D, 6, Some(x))?;
        drop(sampled);
        let ln = LayerNormProblem { rows: s, width: D, eps: LN_EPS };
        let x = be.layer_norm_t(&ln, &res, &w[8], &w[9])?;
        drop(res);
        // the FFN in row blocks: the [S, FFN] hidden would be 146 MB at 800×1066 (host memory;
        // over many devices' 128 MB binding limit)
        let block = if x.as_host().is_some() { FFN_ROWS } else { DEVICE_FFN_ROWS };
        let mut res = x.clone();
        for r0 in (0..s).step_by(block) {
            let r = block.min(s - r0);
            let rows = if r == s { x.clone() } else { be.slice_t(&x, r0 * D, r * D)? };
            let h = be.gemm_t(
                &GemmProblem::linear(r, D, self.ffn).with_act(Activation::Relu),
                &rows,
                &w[10],
                Some(&w[11]),
                None,
            )?;
            let y = be.gemm_t(&GemmProblem::linear(r, self.ffn, D), &h, &w[12], Some(&w[13]), Some(&rows))?;
            drop((rows, h));
            if r == s {
                res = y;
            } else {
                be.write_t(&mut res, r0 * D, &y)?;
            }
        }
        drop(x);
        be.layer_norm_t(&ln, &res, &w[14], &w[15])
    }
}
