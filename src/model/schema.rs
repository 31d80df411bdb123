//! The checkpoint schema of RLIP_ParSeDA_v2 and RLIP_ParSeD_v2 with the R50 backbone (spec §4.2,
//! variants spec §1.6): every state-dict key with its shape, for a given [`Config`]. The official
//! `state_dict()` of each is in `tests/fixtures/official_schema_r50_{parseda,parsed}_v2_q*.txt`
//! and a test checks this list against them.

use super::config::{Config, Variant};
use crate::problem::{BertLayerProblem, GatedCrossAttnProblem};

/// `(key, shape)` of every tensor the converted file holds (aliases and `position_ids` dropped),
/// in the official order.
pub fn expected(c: &Config) -> Vec<(String, Vec<usize>)> {
    let mut s = Schema(Vec::new());
    let (d, ffn, n) = (c.hidden_dim, c.dim_feedforward, c.num_queries);
    let dab = c.family() != Ok(Variant::ParSeD);
    let encoder = if dab { Variant::ParSeDA } else { Variant::ParSeD }.encoder_prefix();
    s.push("bias_obj_a", &[d]);
    s.push("bias_pred_a", &[d]);
    s.push("transformer.level_embed", &[c.num_feature_levels, d]);
    for dec in ["ho_decoder", "verb_decoder"] {
        for i in 0..c.dec_layers {
            let p = format!("transformer.{dec}.layers.{i}");
            s.msda(&format!("{p}.cross_attn"), c);
            s.linear_norm(&format!("{p}.norm1"), d);
            s.push(&format!("{p}.self_attn.in_proj_weight"), &[3 * d, d]);
            s.push(&format!("{p}.self_attn.in_proj_bias"), &[3 * d]);
            s.linear(&format!("{p}.self_attn.out_proj"), d, d);
            s.linear_norm(&format!("{p}.norm2"), d);
            s.linear(&format!("{p}.linear1"), ffn, d);
            s.linear(&format!("{p}.linear2"), d, ffn);
            s.linear_norm(&format!("{p}.norm3"), d);
        }
        if dab {
            for i in 0..2 {
                s.linear(&format!("transformer.{dec}.query_scale.layers.{i}"), d, d);
            }
            s.linear(&format!("transformer.{dec}.ref_point_head.layers.0"), d, 2 * d);
            s.linear(&format!("transformer.{dec}.ref_point_head.layers.1"), d, d);
        }
    }
    if dab {
        s.mbf(d);
    }
    for i in 0..c.enc_layers {
        let p = format!("{encoder}.layers.{i}");
        s.msda(&format!("{p}.self_attn"), c);
        s.linear_norm(&format!("{p}.norm1"), d);
        s.linear(&format!("{p}.linear1"), ffn, d);
        s.linear(&format!("{p}.linear2"), d, ffn);
        s.linear_norm(&format!("{p}.norm2"), d);
    }
    let bert = BertLayerProblem::roberta_base(1, 1).weight_shapes();
    for r in 0..c.fusion_rounds() {
        for (name, shape) in &bert {
            s.push(&format!("{encoder}.roberta_layers.{r}.{name}"), shape);
        }
    }
    let fusion = GatedCrossAttnProblem::rlipv2(1, 1, 1).weight_shapes();
    for r in 0..c.fusion_rounds() {
        // the official module order: gammas, the two norms, then the attention projections
        let mut ordered: Vec<&(&str, Vec<usize>)> =
            fusion.iter().filter(|(n, _)| n.starts_with("b_attn.gamma")).collect();
        ordered.extend(fusion.iter().filter(|(n, _)| !n.starts_with("b_attn.gamma")));
        for (name, shape) in ordered {
            s.push(&format!("{encoder}.VLFuse_layers.{r}.{name}"), shape);
        }
    }
    if !dab {
        s.linear("transformer.reference_points_sub", 2, d);
        s.linear("transformer.reference_points_obj", 2, d);
    }
    let t = &c.text;
    let h = bert_hidden();
    s.push("transformer.text_encoder.embeddings.word_embeddings.weight", &[t.vocab, h]);
    s.push("transformer.text_encoder.embeddings.position_embeddings.weight", &[t.max_positions, h]);
    s.push("transformer.text_encoder.embeddings.token_type_embeddings.weight", &[t.type_vocab, h]);
    s.linear_norm("transformer.text_encoder.embeddings.LayerNorm", h);
    for i in 0..t.layers {
        for (name, shape) in &bert {
            s.push(&format!("transformer.text_encoder.encoder.layer.{i}.{name}"), shape);
        }
    }
    s.linear("transformer.text_encoder.pooler.dense", h, h);
    s.linear("transformer.resizer.fc", d, h);
    s.linear_norm("transformer.resizer.layer_norm", d);
    if !dab {
        s.mbf(d);
        s.push("transformer.verb_query_embed.weight", &[n / 2, d]);
    }
    for side in ["sub", "obj"] {
        for i in 0..2 * c.dec_layers {
            s.linear(&format!("{side}_bbox_embed.{i}.layers.0"), d, d);
            s.linear(&format!("{side}_bbox_embed.{i}.layers.1"), d, d);
            s.linear(&format!("{side}_bbox_embed.{i}.layers.2"), 4, d);
        }
    }
    s.linear("projection_text", d, d);
    if dab {
        s.push("tgt_embed.weight", &[n, d]);
        s.push("verb_tgt_embed.weight", &[n, d]);
        s.push("refpoint_embed.weight", &[n, 4]);
    } else {
        // positional query | content query | verb content, 256 wide each
        s.push("query_embed.weight", &[n, 3 * d]);
    }
    // input projections: 1×1 conv + GroupNorm on C3..C5, then a 3×3/s2 conv on C5
    let swin = super::config::SwinShape::of(&c.backbone);
    let chans = swin.map_or([512, 1024, 2048], |s| s.out_channels());
    for (k, &ch) in chans.iter().enumerate() {
        s.push(&format!("input_proj.{k}.0.weight"), &[d, ch, 1, 1]);
        s.push(&format!("input_proj.{k}.0.bias"), &[d]);
        s.linear_norm(&format!("input_proj.{k}.1"), d);
    }
    for k in chans.len()..c.num_feature_levels {
        s.push(&format!("input_proj.{k}.0.weight"), &[d, if k == chans.len() { chans[2] } else { d }, 3, 3]);
        s.push(&format!("input_proj.{k}.0.bias"), &[d]);
        s.linear_norm(&format!("input_proj.{k}.1"), d);
    }
    match swin {
        Some(shape) => s.swin("backbone.0.body", shape),
        None => s.resnet50("backbone.0.body"),
    }
    s.0
}

/// Width of the RoBERTa-base text path.
fn bert_hidden() -> usize {
    BertLayerProblem::roberta_base(1, 1).hidden
}

/// Keys the converter drops (spec §4.1): the decoders' box MLPs, which alias the top-level
/// `{sub,obj}_bbox_embed.{0..2d}` (ho_decoder layer i = i, verb_decoder layer i = d + i), and the
/// int64 index buffers the graph recomputes (the text encoder's `position_ids`, each Swin
/// block's `relative_position_index`). Returns the key a dropped alias duplicates, if any.
pub fn dropped(key: &str, c: &Config) -> Option<Option<String>> {
    if key == "transformer.text_encoder.embeddings.position_ids" || is_swin_index(key) {
        return Some(None);
    }
    for (dec, base) in [("ho_decoder", 0), ("verb_decoder", c.dec_layers)] {
        for side in ["sub", "obj"] {
            let prefix = format!("transformer.{dec}.{side}_bbox_embed.");
            if let Some(rest) = key.strip_prefix(&prefix) {
                let (i, tail) = rest.split_once('.')?;
                let i: usize = i.parse().ok()?;
                return Some(Some(format!("{side}_bbox_embed.{}.{tail}", base + i)));
            }
        }
    }
    None
}

/// A Swin block's `relative_position_index` buffer (the index the kernels compute).
pub fn is_swin_index(key: &str) -> bool {
    key.starts_with("backbone.0.body.layers.") && key.ends_with(".attn.relative_position_index")
}

struct Schema(Vec<(String, Vec<usize>)>);

impl Schema {
    fn push(&mut self, key: &str, shape: &[usize]) {
        self.0.push((key.to_string(), shape.to_vec()));
    }
    fn linear(&mut self, p: &str, out: usize, inp: usize) {
        self.push(&format!("{p}.weight"), &[out, inp]);
        self.push(&format!("{p}.bias"), &[out]);
    }
    /// LayerNorm / GroupNorm affine parameters.
    fn linear_norm(&mut self, p: &str, c: usize) {
        self.push(&format!("{p}.weight"), &[c]);
        self.push(&format!("{p}.bias"), &[c]);
    }
    /// MBF's 16 branches (`MultiBranchFusion(256, 256, 256, 16)`).
    fn mbf(&mut self, d: usize) {
        for (fc, out, inp) in [("fc_1", 16, d), ("fc_2", 16, d), ("fc_3", d, 16)] {
            for i in 0..16 {
                self.linear(&format!("transformer.verb_tgt_generator.{fc}.{i}"), out, inp);
            }
        }
    }
    fn msda(&mut self, p: &str, c: &Config) {
        let d = c.hidden_dim;
        let taps = c.nheads * c.num_feature_levels * c.n_points;
        self.linear(&format!("{p}.sampling_offsets"), 2 * taps, d);
        self.linear(&format!("{p}.attention_weights"), taps, d);
        self.linear(&format!("{p}.value_proj"), d, d);
        self.linear(&format!("{p}.output_proj"), d, d);
    }
    fn bn(&mut self, p: &str, c: usize) {
        for x in ["weight", "bias", "running_mean", "running_var"] {
            self.push(&format!("{p}.{x}"), &[c]);
        }
    }
    /// The detection Swin (variants spec §2.4), `relative_position_index` buffers dropped.
    fn swin(&mut self, p: &str, shape: super::config::SwinShape) {
        let c = shape.embed;
        self.push(&format!("{p}.patch_embed.proj.weight"), &[c, 3, 4, 4]);
        self.push(&format!("{p}.patch_embed.proj.bias"), &[c]);
        self.linear_norm(&format!("{p}.patch_embed.norm"), c);
        for (s, &depth) in shape.depths.iter().enumerate() {
            let ch = shape.channels(s);
            for j in 0..depth {
                let b = format!("{p}.layers.{s}.blocks.{j}");
                self.linear_norm(&format!("{b}.norm1"), ch);
                self.push(&format!("{b}.attn.relative_position_bias_table"), &[169, shape.heads(s)]);
                self.linear(&format!("{b}.attn.qkv"), 3 * ch, ch);
                self.linear(&format!("{b}.attn.proj"), ch, ch);
                self.linear_norm(&format!("{b}.norm2"), ch);
                self.linear(&format!("{b}.mlp.fc1"), 4 * ch, ch);
                self.linear(&format!("{b}.mlp.fc2"), ch, 4 * ch);
            }
            if s + 1 < shape.depths.len() {
                self.push(&format!("{p}.layers.{s}.downsample.reduction.weight"), &[2 * ch, 4 * ch]);
                self.linear_norm(&format!("{p}.layers.{s}.downsample.norm"), 4 * ch);
            }
        }
        for s in 1..4 {
            self.linear_norm(&format!("{p}.norm{s}"), shape.channels(s));
        }
    }

    /// torchvision ResNet-50 without `fc` (FrozenBN: no `num_batches_tracked`).
    fn resnet50(&mut self, p: &str) {
        self.push(&format!("{p}.conv1.weight"), &[64, 3, 7, 7]);
        self.bn(&format!("{p}.bn1"), 64);
        let mut inp = 64;
        for (li, (&blocks, &planes)) in [3usize, 4, 6, 3].iter().zip(&[64usize, 128, 256, 512]).enumerate() {
            for j in 0..blocks {
                let b = format!("{p}.layer{}.{j}", li + 1);
                self.push(&format!("{b}.conv1.weight"), &[planes, inp, 1, 1]);
                self.bn(&format!("{b}.bn1"), planes);
                self.push(&format!("{b}.conv2.weight"), &[planes, planes, 3, 3]);
                self.bn(&format!("{b}.bn2"), planes);
                self.push(&format!("{b}.conv3.weight"), &[4 * planes, planes, 1, 1]);
                self.bn(&format!("{b}.bn3"), 4 * planes);
                if j == 0 {
                    self.push(&format!("{b}.downsample.0.weight"), &[4 * planes, inp, 1, 1]);
                    self.bn(&format!("{b}.downsample.1"), 4 * planes);
                }
                inp = 4 * planes;
            }
        }
    }
}
