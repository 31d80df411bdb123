//! The text encoder (spec §2.4): RoBERTa over the label texts, pooled output per label.
//! `transformers` 4.5.1 semantics: position ids = padding_idx + 1 + running count of non-pad
//! tokens (pads get padding_idx), token type 0, LayerNorm eps 1e-5, post-LN layers with the
//! additive mask (1 − mask)·−10000, pooler `tanh(W·h_<s> + b)`. Labels are batched, padded to the
//! longest, as the official `batch_encode_plus(padding="longest")` does.

use super::vars::Vars;
use crate::backend::{compose, Backend, Ops};
use crate::error::{Error, Result};
use crate::model::config::TextGeometry;
use crate::problem::{Activation, BertLayerProblem, GemmProblem, LayerNormProblem, OwnedWeights};

/// `<pad>`, also RoBERTa's padding_idx for positions.
pub const PAD_ID: u32 = 1;
const OP: &str = "text_encoder";
const LN_EPS: f32 = 1e-5;

/// The RoBERTa text encoder of the model file (labels → pooled embeddings).
pub struct TextEncoder {
    /// Vocabulary, positions and layer count read from the file.
    pub geometry: TextGeometry,
    hidden: usize,
    /// word [V,H], position [P,H], token type [1,H], LN weight, LN bias
    embeddings: OwnedWeights,
    layers: Vec<OwnedWeights>,
    /// weight [H,H], bias [H]
    pooler: OwnedWeights,
}

/// The prefix of the text encoder in the official state dict.
pub const PREFIX: &str = "transformer.text_encoder";

impl TextEncoder {
    /// Loads `embeddings.*`, `encoder.layer.{i}.*` and `pooler.*` under `vars` (at [`PREFIX`] in
    /// a model file), each checked for its shape by the source.
    pub fn load(geometry: TextGeometry, vars: &Vars) -> Result<Self> {
        let get = |name: &str, shape: &[usize]| vars.get(name, shape);
        let h = BertLayerProblem::roberta_base(1, 1).hidden;
        let mut embeddings = OwnedWeights::default();
        for (name, shape) in [
            ("embeddings.word_embeddings.weight", vec![geometry.vocab, h]),
            ("embeddings.position_embeddings.weight", vec![geometry.max_positions, h]),
            ("embeddings.token_type_embeddings.weight", vec![geometry.type_vocab, h]),
            ("embeddings.LayerNorm.weight", vec![h]),
            ("embeddings.LayerNorm.bias", vec![h]),
        ] {
            embeddings.tensors.push(get(name, &shape)?);
        }
        let lp = BertLayerProblem::roberta_base(1, 1);
        let mut layers = Vec::with_capacity(geometry.layers);
        for i in 0..geometry.layers {
            let mut w = OwnedWeights::default();
            for (name, shape) in lp.weight_shapes() {
                w.tensors.push(get(&format!("encoder.layer.{i}.{name}"), &shape)?);
                w.names.push(name);
            }
            layers.push(w);
        }
        let mut pooler = OwnedWeights::default();
        pooler.tensors.push(get("pooler.dense.weight", &[h, h])?);
        pooler.tensors.push(get("pooler.dense.bias", &[h])?);
        Ok(TextEncoder { geometry, hidden: h, embeddings, layers, pooler })
    }

    /// Pooled outputs `[T, H]` of `labels` (token ids with `<s>` … `</s>`, no padding).
    pub fn encode(&self, be: &dyn Backend, labels: &[Vec<u32>]) -> Result<Vec<f32>> {
        let h = self.hidden;
        let t = labels.len();
        let longest = labels.iter().map(Vec::len).max().unwrap_or(0);
        let bad = |reason: String| Error::Unsupported { op: OP, backend: be.kind().name().into(), reason };
        if t == 0 || longest == 0 {
            return Err(bad("no label tokens to encode".into()));
        }
        if longest + 2 > self.geometry.max_positions {
            return Err(bad(format!(
                "a label has {longest} tokens; this encoder has {} positions (at most {} tokens)",
                self.geometry.max_positions,
                self.geometry.max_positions - 2
            )));
        }
        if let Some((i, id)) = labels
            .iter()
            .enumerate()
            .find_map(|(i, l)| l.iter().find(|&&id| id as usize >= self.geometry.vocab).map(|&id| (i, id)))
        {
            return Err(bad(format!("label {i} has token id {id}, outside the vocabulary of {}", self.geometry.vocab)));
        }
        // embeddings (a gather and a sum: host work)
        let [word, pos, ty, ln_w, ln_b] = &self.embeddings.tensors[..] else { unreachable!() };
        let mut x = vec![0f32; t * longest * h];
        let mut mask = vec![0f32; t * longest];
        for (i, label) in labels.iter().enumerate() {
            for j in 0..longest {
                let (id, p) = match label.get(j) {
                    Some(&id) if id != PAD_ID => {
                        (id as usize, PAD_ID as usize + 1 + label[..=j].iter().filter(|&&x| x != PAD_ID).count() - 1)
                    }
                    _ => (PAD_ID as usize, PAD_ID as usize),
                };
                mask[i * longest + j] = (label.get(j).is_some_and(|&id| id != PAD_ID)) as u8 as f32;
                let row = &mut x[(i * longest + j) * h..][..h];
                for c in 0..h {
                    row[c] = word[id * h + c] + pos[p * h + c] + ty[c];
                }
            }
        }
        let mut x = be.layer_norm(&LayerNormProblem { rows: t * longest, width: h, eps: LN_EPS }, &x, ln_w, ln_b)?;
        let lp = BertLayerProblem { batch: t, t: longest, ..BertLayerProblem::roberta_base(t, longest) };
        for w in &self.layers {
            x = compose::bert_layer(be, &lp, &x, Some(&mask), &w.as_bert())?;
        }
        // pooler on each label's first token
        let first: Vec<f32> = (0..t).flat_map(|i| x[i * longest * h..][..h].to_vec()).collect();
        let y = be.gemm(
            &GemmProblem::linear(t, h, h).with_act(Activation::None),
            &first,
            &self.pooler.tensors[0],
            Some(&self.pooler.tensors[1]),
        )?;
        Ok(y.into_iter().map(f32::tanh).collect())
    }
}

/// Token ids of `texts` with a RoBERTa `tokenizer.json` (byte-level BPE; `<s>` … `</s>` come from
/// the file's post-processor), as the official `batch_encode_plus` gives them before padding.
pub fn tokenize(tokenizer: &std::path::Path, texts: &[String]) -> Result<Vec<Vec<u32>>> {
    let fail = |reason: String| Error::Format { file: tokenizer.to_path_buf(), reason };
    #[cfg(feature = "tokenizer")]
    {
        let tok = tokenizers::Tokenizer::from_file(tokenizer)
            .map_err(|e| fail(format!("not a usable tokenizer.json: {e}")))?;
        texts
            .iter()
            .map(|t| {
                tok.encode(t.as_str(), true)
                    .map(|e| e.get_ids().to_vec())
                    .map_err(|e| fail(format!("cannot encode {t:?}: {e}")))
            })
            .collect()
    }
    #[cfg(not(feature = "tokenizer"))]
    {
        let _ = texts;
        Err(fail("this build has no tokenizer (the `tokenizer` feature): use label sets baked into the model file (`rlipv2 convert --tokenizer`)".into()))
    }
}
