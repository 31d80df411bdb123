//! The ALIF encoder (spec §2.5): before layers 0, interval, 2·interval, … one `sparse_fusion`
//! round (VLFuse on the last level, in place, then the extra RoBERTa layer over the labels), and
//! six post-norm deformable encoder layers:
//! `x = LN1(x + out_proj(MSDA(x + pos, ref, value_proj(x))))`, `x = LN2(x + W2·relu(W1·x))`.
//! One image at a time; a padded one (variants spec §4.4) has its reference points normalized to
//! the valid region and its padded tokens' values zeroed in every MSDA.

use super::bind::{take_on, Binding};
use super::front::Tokens;
use super::layers::{Lin, Norm};
use super::vars::Vars;
use crate::backend::{Backend, Ops, Tensor};
use crate::error::Result;
use crate::problem::{
    Activation, BertLayerProblem, Form, Gate, GatedCrossAttnProblem, MsDeformAttnProblem, OwnedWeights, RefKind,
    SparseFusionProblem,
};

const D: usize = 256;
const HEADS: usize = 8;
const POINTS: usize = 4;
const LN_EPS: f32 = 1e-5;
/// Token rows per FFN block on host tensors (bounds the host memory of the hidden layer) and on
/// device tensors (keeps the hidden layer's buffer under 128 MB).
const FFN_ROWS: usize = 2048;
const DEVICE_FFN_ROWS: usize = 16384;

/// One post-norm deformable encoder layer (`transformer.encoder.layers.{i}`).
struct EncoderLayer {
    sampling_offsets: Lin,
    attention_weights: Lin,
    value_proj: Lin,
    output_proj: Lin,
    norm1: Norm,
    linear1: Lin,
    linear2: Lin,
    norm2: Norm,
}

impl EncoderLayer {
    fn load(vars: &Vars, levels: usize, ffn: usize) -> Result<Self> {
        let taps = HEADS * levels * POINTS;
        let sa = vars.pp("self_attn");
        Ok(EncoderLayer {
            sampling_offsets: Lin::load(&sa.pp("sampling_offsets"), 2 * taps, D)?,
            attention_weights: Lin::load(&sa.pp("attention_weights"), taps, D)?,
            value_proj: Lin::load(&sa.pp("value_proj"), D, D)?,
            output_proj: Lin::load(&sa.pp("output_proj"), D, D)?,
            norm1: Norm::load(&vars.pp("norm1"), D, LN_EPS)?,
            linear1: Lin::load(&vars.pp("linear1"), ffn, D)?,
            linear2: Lin::load(&vars.pp("linear2"), D, ffn)?,
            norm2: Norm::load(&vars.pp("norm2"), D, LN_EPS)?,
        })
    }
}

/// What every encoder layer's MSDA shares: the problem, the reference points and the padding mask.
#[derive(Clone, Copy)]
struct Sampling<'a> {
    problem: &'a MsDeformAttnProblem,
    reference: &'a Tensor,
    value_mask: Option<&'a Tensor>,
}

/// The 6-layer deformable encoder with its three `sparse_fusion` rounds (ALIF).
pub struct Encoder {
    levels: usize,
    fusion_interval: usize,
    gate: Gate,
    layers: Vec<EncoderLayer>,
    /// (VLFuse weights, RoBERTa-layer weights) per round.
    rounds: Vec<(OwnedWeights, OwnedWeights)>,
    /// Each round's weights in the fused-kernel layout of the backend last used, where it has
    /// one: bound once per backend instance, so a GPU backend uploads them once, not per image.
    bound_rounds: Binding<Vec<Option<Tensor>>>,
}

impl Encoder {
    /// Loads `layers` encoder layers and `layers / fusion_interval` fusion rounds, `vars` at the
    /// encoder's root (`transformer.encoder` or `transformer.ho_encoder`:
    /// [`crate::model::config::Variant::encoder_prefix`]).
    pub fn load(
        layers: usize,
        levels: usize,
        ffn: usize,
        fusion_interval: usize,
        gate: Gate,
        vars: &Vars,
    ) -> Result<Self> {
        let enc = vars;
        let ls = (0..layers)
            .map(|i| EncoderLayer::load(&enc.pp("layers").pp(i), levels, ffn))
            .collect::<Result<Vec<_>>>()?;
        let mut rounds = Vec::new();
        for r in 0..layers / fusion_interval {
            let mut fw = OwnedWeights::default();
            for (n, s) in GatedCrossAttnProblem::rlipv2(1, 1, 1).weight_shapes() {
                fw.tensors.push(enc.pp("VLFuse_layers").pp(r).get(n, &s)?);
                fw.names.push(n);
            }
            let mut bw = OwnedWeights::default();
            for (n, s) in BertLayerProblem::roberta_base(1, 1).weight_shapes() {
                bw.tensors.push(enc.pp("roberta_layers").pp(r).get(n, &s)?);
                bw.names.push(n);
            }
            rounds.push((fw, bw));
        }
        Ok(Encoder { levels, fusion_interval, gate, layers: ls, rounds, bound_rounds: Binding::default() })
    }

    /// Each round's weights in `be`'s fused-kernel layout (`None` where it reads the host structs).
    fn bind_rounds(&self, be: &dyn Backend) -> Result<Vec<Option<Tensor>>> {
        let p = SparseFusionProblem::rlipv2(1, 1, 0, 1);
        self.rounds.iter().map(|(fw, bw)| be.bind_sparse_fusion(&p, &fw.as_fusion(), &bw.as_bert())).collect()
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
        let bound_rounds = self.bound_rounds.get(be, || self.bind_rounds(be))?;
        // reference points (deformable_transformer.py:803-815): each token's centre over its
        // level's valid extent, then times each level's valid ratios (all 1 unpadded), in f32
        let ratios = tokens.valid_ratios();
        let mut reference = Vec::with_capacity(s * self.levels * 2);
        for (&(h, w), &(rx, ry)) in tokens.shapes.iter().zip(&ratios) {
            for i in 0..h {
                for j in 0..w {
                    let r = [(j as f32 + 0.5) / (rx * w as f32), (i as f32 + 0.5) / (ry * h as f32)];
                    for &(lx, ly) in ratios.iter().take(self.levels) {
                        reference.extend_from_slice(&[r[0] * lx, r[1] * ly]);
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
        for (i, layer) in self.layers.iter().enumerate() {
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
                    bound_rounds[r].as_ref(),
                )?;
                states.push(be.download(&lang)?);
            }
            let sampling = Sampling { problem: &msda, reference: &reference, value_mask: tokens.value_mask.as_ref() };
            x = self.layer(be, layer, &x, &pos, &sampling)?;
        }
        Ok((x, states))
    }

    fn layer(
        &self,
        be: &dyn Backend,
        w: &EncoderLayer,
        x: &Tensor,
        pos: &Tensor,
        sampling: &Sampling,
    ) -> Result<Tensor> {
        let Sampling { problem: msda, reference, value_mask } = *sampling;
        let s = x.len() / D;
        let none = Activation::None;
        // each [S, ·] tensor is dropped as soon as it is consumed: at 800×1066 one is 18 MB
        let query = be.add_t(x, pos)?;
        let offsets = w.sampling_offsets.run_t(be, &query, none)?;
        let logits = w.attention_weights.run_t(be, &query, none)?;
        drop(query);
        let mut value = w.value_proj.run_t(be, x, none)?;
        if let Some(m) = value_mask {
            value = be.mul_t(&value, m, none)?;
        }
        let sampled = be.ms_deform_attn_t(msda, &value, reference, &offsets, &logits)?;
        drop((value, offsets, logits));
        let res = w.output_proj.run_res(be, &sampled, none, Some(x))?;
        drop(sampled);
        let x = w.norm1.run_t(be, &res)?;
        drop(res);
        // the FFN in row blocks: the [S, FFN] hidden would be 146 MB at 800×1066 (host memory;
        // over many devices' 128 MB binding limit)
        let block = if x.as_host().is_some() { FFN_ROWS } else { DEVICE_FFN_ROWS };
        let mut res = x.clone();
        for r0 in (0..s).step_by(block) {
            let r = block.min(s - r0);
            let rows = if r == s { x.clone() } else { be.slice_t(&x, r0 * D, r * D)? };
            let h = w.linear1.run_t(be, &rows, Activation::Relu)?;
            let y = w.linear2.run_res(be, &h, none, Some(&rows))?;
            drop((rows, h));
            if r == s {
                res = y;
            } else {
                be.write_t(&mut res, r0 * D, &y)?;
            }
        }
        drop(x);
        w.norm2.run_t(be, &res)
    }
}
