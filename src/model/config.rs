//! The model configuration a checkpoint was trained with: read from its pickled `args`
//! (`argparse.Namespace`, main.py:38-477) and from tensor shapes where the official code reads
//! them from the weights (num_queries from `tgt_embed.weight`, the text encoder's geometry).
//! Configurations the graph does not run yet are refused with a message naming the flag.

use serde::{Deserialize, Serialize};

use crate::io::pickle::Value;
use crate::problem::Gate;

/// Geometry of the RoBERTa text encoder stored in the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextGeometry {
    /// Token vocabulary (roberta-base: 50265).
    pub vocab: usize,
    /// Position embeddings (roberta-base: 514).
    pub max_positions: usize,
    /// Token-type vocabulary (roberta-base: 1).
    pub type_vocab: usize,
    /// Transformer layers (roberta-base: 12).
    pub layers: usize,
}

/// Channels per attention head in every RLIPv2 Swin.
pub const SWIN_HEAD_DIM: usize = 32;

/// The shape of one Swin variant (swin/backbone.py:103-163).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SwinShape {
    /// C: channels after the patch embedding (stage s has C·2^s).
    pub embed: usize,
    /// Blocks per stage.
    pub depths: [usize; 4],
}

impl SwinShape {
    /// The variant `--backbone` names (`swin_tiny`, `swin_large`), if it is one.
    pub fn of(backbone: &str) -> Option<Self> {
        match backbone {
            "swin_tiny" => Some(SwinShape { embed: 96, depths: [2, 2, 6, 2] }),
            "swin_large" => Some(SwinShape { embed: 192, depths: [2, 2, 18, 2] }),
            _ => None,
        }
    }

    /// Channels of stage `s`.
    pub fn channels(&self, s: usize) -> usize {
        self.embed << s
    }

    /// Heads of stage `s` ([`SWIN_HEAD_DIM`] channels each).
    pub fn heads(&self, s: usize) -> usize {
        self.channels(s) / SWIN_HEAD_DIM
    }

    /// Channels of the three outputs (levels 0-2).
    pub fn out_channels(&self) -> [usize; 3] {
        [1, 2, 3].map(|s| self.channels(s))
    }
}

/// The two official model families (variants spec §1.5): the same image front, encoder and
/// heads; ParSeDA's decoders are DAB (box anchors, positional queries from a sine embedding of
/// the anchors), ParSeD's are plain deformable ones (2-D point anchors from learned positional
/// queries that stay the same at every layer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// `--RLIP_ParSeDA_v2`.
    ParSeDA,
    /// `--RLIP_ParSeD_v2`.
    ParSeD,
}

impl Variant {
    /// The name the official flag and [`Config::variant`] use.
    pub fn name(self) -> &'static str {
        match self {
            Variant::ParSeDA => "RLIP_ParSeDA_v2",
            Variant::ParSeD => "RLIP_ParSeD_v2",
        }
    }

    /// Where the ALIF encoder's weights live in the state dict.
    pub fn encoder_prefix(self) -> &'static str {
        match self {
            Variant::ParSeDA => "transformer.encoder",
            Variant::ParSeD => "transformer.ho_encoder",
        }
    }

    /// The tensor whose first dimension is `num_queries`, and its width.
    pub fn query_tensor(self) -> (&'static str, usize) {
        match self {
            Variant::ParSeDA => ("tgt_embed.weight", 256),
            Variant::ParSeD => ("query_embed.weight", 3 * 256),
        }
    }
}

/// The model configuration read from the checkpoint's `args` (spec §2), stored as `rlipv2.config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// `RLIP_ParSeDA_v2` or `RLIP_ParSeD_v2` ([`Variant::name`]).
    pub variant: String,
    /// `resnet50`.
    pub backbone: String,
    /// N: N/2 subject + N/2 object queries, N/2 HOI pairs.
    pub num_queries: usize,
    /// Model width C (256).
    pub hidden_dim: usize,
    /// Attention heads M (8).
    pub nheads: usize,
    /// FFN width of the encoder and decoders.
    pub dim_feedforward: usize,
    /// Encoder layers (6).
    pub enc_layers: usize,
    /// Decoder layers (3 in the official configs).
    pub dec_layers: usize,
    /// Feature levels L (4).
    pub num_feature_levels: usize,
    /// enc_n_points = dec_n_points.
    pub n_points: usize,
    /// Encoder layers between fusion rounds (fusion before layers 0, 2, 4 with 2).
    pub fusion_interval: usize,
    /// `VXAc`, `GLIP` or `XGating`.
    pub gating: String,
    /// `hico`, `vcoco`, … (`args.dataset_file`): the built-in label set.
    pub dataset: String,
    /// Whether the subject class head exists (RLIPv2 always: `person`).
    pub subject_class: bool,
    /// The text encoder's geometry.
    pub text: TextGeometry,
}

impl Config {
    /// The model family; a file whose `variant` is neither (written by a newer converter) is
    /// refused by name.
    pub fn family(&self) -> Result<Variant, String> {
        [Variant::ParSeDA, Variant::ParSeD].into_iter().find(|v| v.name() == self.variant).ok_or_else(|| {
            format!("variant `{}` is not one this build runs (RLIP_ParSeDA_v2, RLIP_ParSeD_v2)", self.variant)
        })
    }

    /// Which official model this is, in one line: variant (and its decoders), backbone, queries,
    /// head (the dataset its labels and post-processing follow).
    pub fn summary(&self) -> String {
        let decoder = match self.family() {
            Ok(Variant::ParSeDA) => "DAB decoders",
            Ok(Variant::ParSeD) => "deformable decoders",
            Err(_) => "decoders",
        };
        let head = match self.dataset.as_str() {
            "hico" => "HICO-DET head (117 verbs × 80 objects)",
            "vcoco" => "V-COCO head (29 verb classes × 80 objects + missing)",
            "oi_sgg" => "Open Images v6 head (classified subjects; labels: the OI categories dict)",
            "" => "head unknown",
            other => {
                return format!(
                    "{} ({decoder}), {}, {} queries ({} pairs), dataset `{other}`",
                    self.variant,
                    self.backbone,
                    self.num_queries,
                    self.num_queries / 2
                )
            }
        };
        format!(
            "{} ({decoder}), {}, {} queries ({} pairs), {head}",
            self.variant,
            self.backbone,
            self.num_queries,
            self.num_queries / 2
        )
    }

    /// Fusion rounds (before encoder layers 0, interval, 2·interval, …).
    pub fn fusion_rounds(&self) -> usize {
        self.enc_layers / self.fusion_interval
    }

    /// The fusion gate the configuration selects.
    pub fn gate(&self) -> Gate {
        self.gating.parse().unwrap_or(Gate::VXAc)
    }

    /// Reads the configuration from a checkpoint's `args` and its state-dict shapes
    /// (`shape(key)`); the error lists every unsupported or missing setting at once.
    pub fn from_checkpoint(args: &Value, shape: impl Fn(&str) -> Option<Vec<usize>>) -> Result<Config, String> {
        let mut problems = Vec::new();
        let mut arg = |name: &str| -> Option<Value> {
            let v = args.get(name);
            if v.is_none() {
                problems.push(format!("args.{name} is missing"));
            }
            v
        };
        let flag = |v: Option<Value>| matches!(v, Some(Value::Bool(true)));
        let int = |v: Option<Value>| match v {
            Some(Value::Int(i)) if i >= 0 => Some(i as usize),
            _ => None,
        };
        let text = |v: Option<Value>| v.and_then(|v| v.as_str().map(str::to_string));

        let parseda = flag(arg("RLIP_ParSeDA_v2"));
        let parsed = flag(args.get("RLIP_ParSeD_v2"));
        let variant = if parsed { Variant::ParSeD } else { Variant::ParSeDA };
        let backbone = text(arg("backbone")).unwrap_or_default();
        let fusion_type = text(arg("fusion_type")).unwrap_or_default();
        let gating = text(arg("gating_mechanism")).unwrap_or_default();
        let verb_tgt = text(arg("verb_query_tgt_type")).unwrap_or_default();
        let dataset = text(arg("dataset_file")).unwrap_or_default();
        let (box_refine, two_stage, last_vis, no_obj) = (
            flag(arg("with_box_refine")),
            flag(arg("two_stage")),
            flag(arg("fusion_last_vis")),
            flag(arg("use_no_obj_token")),
        );
        let subject_class = flag(args.get("subject_class"));
        let ints: Vec<Option<usize>> = [
            "hidden_dim",
            "nheads",
            "dim_feedforward",
            "enc_layers",
            "dec_layers",
            "num_feature_levels",
            "enc_n_points",
            "dec_n_points",
            "fusion_interval",
            "num_patterns",
        ]
        .iter()
        .map(|n| int(arg(n)))
        .collect();
        let clamps: Vec<&str> = ["stable_softmax_2d", "clamp_min_for_underflow", "clamp_max_for_overflow"]
            .into_iter()
            .filter(|n| flag(args.get(n)))
            .collect();

        let mut refuse = |why: String| problems.push(why);
        if parsed && parseda {
            refuse("both RLIP_ParSeD_v2 and RLIP_ParSeDA_v2 are set: which model was trained is ambiguous".into());
        } else if !parsed && !parseda {
            refuse("neither RLIP_ParSeDA_v2 nor RLIP_ParSeD_v2 is set in args: not an RLIPv2 ParSe checkpoint (RLIP_ParSe, ParSeD v1 and the Tagger are not supported)".into());
        }
        if (dataset == "oi_sgg" || flag(args.get("sgg"))) && !subject_class {
            refuse("dataset_file oi_sgg / --sgg without subject_class: the Open Images post-processing (PostProcessSGG) classifies subjects".into());
        }
        if backbone != "resnet50" && SwinShape::of(&backbone).is_none() {
            refuse(format!("backbone `{backbone}` is not supported (resnet50, swin_tiny, swin_large)"));
        }
        if fusion_type != "GLIP_attn" {
            refuse(format!("fusion_type `{fusion_type}` is not supported (only GLIP_attn)"));
        }
        if gating.parse::<Gate>().is_err() {
            refuse(format!("gating_mechanism `{gating}` is unknown (VXAc, GLIP or XGating)"));
        }
        if verb_tgt != "vanilla_MBF" {
            refuse(format!("verb_query_tgt_type `{verb_tgt}` is not supported (only vanilla_MBF)"));
        }
        if flag(args.get("verb_tagger")) {
            refuse(
                "verb_tagger is set: the Tagger's queries depend on ground-truth targets, so it does not detect".into(),
            );
        }
        if !box_refine || two_stage {
            refuse("the graph needs with_box_refine and no two_stage".into());
        }
        if !last_vis {
            refuse("fusion over all levels (no fusion_last_vis) is not supported".into());
        }
        if !no_obj {
            refuse("use_no_obj_token is not set: the official post-processing drops the last object column, so such a checkpoint does not evaluate as trained".into());
        }
        if !clamps.is_empty() {
            refuse(format!("fusion score clamping ({}) is not supported yet", clamps.join(", ")));
        }
        let [hidden_dim, nheads, ffn, enc_layers, dec_layers, levels, enc_points, dec_points, interval, patterns] =
            ints[..]
        else {
            unreachable!()
        };
        let fixed = [
            ("hidden_dim", hidden_dim, 256),
            ("nheads", nheads, 8),
            ("num_feature_levels", levels, 4),
            ("enc_n_points", enc_points, 4),
            ("dec_n_points", dec_points, 4),
            ("num_patterns", patterns, 0),
        ];
        for (name, got, want) in fixed {
            if got.is_some_and(|g| g != want) {
                refuse(format!("{name} = {} is not supported (the graph runs {want})", got.unwrap()));
            }
        }
        if interval == Some(0) || enc_layers.zip(interval).is_some_and(|(e, i)| e % i != 0) {
            refuse(format!(
                "enc_layers {enc_layers:?} and fusion_interval {interval:?} do not give whole fusion rounds"
            ));
        }

        let need = |key: &str, problems: &mut Vec<String>| -> Vec<usize> {
            shape(key).unwrap_or_else(|| {
                problems.push(format!("tensor `{key}` is missing"));
                vec![0, 0]
            })
        };
        let (query_key, query_width) = variant.query_tensor();
        let queries = need(query_key, &mut problems);
        let odd = queries.len() != 2 || queries[1] != query_width || queries[0] % 2 != 0 || queries[0] == 0;
        if shape(query_key).is_some() && odd {
            problems
                .push(format!("tensor `{query_key}` has shape {queries:?}; expected [N, {query_width}] with N even"));
        }
        let words = need("transformer.text_encoder.embeddings.word_embeddings.weight", &mut problems);
        let positions = need("transformer.text_encoder.embeddings.position_embeddings.weight", &mut problems);
        let types = need("transformer.text_encoder.embeddings.token_type_embeddings.weight", &mut problems);
        let mut layers = 0;
        while shape(&format!("transformer.text_encoder.encoder.layer.{layers}.attention.self.query.weight")).is_some() {
            layers += 1;
        }
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        Ok(Config {
            variant: variant.name().into(),
            backbone,
            num_queries: queries[0],
            hidden_dim: hidden_dim.unwrap_or(256),
            nheads: nheads.unwrap_or(8),
            dim_feedforward: ffn.unwrap_or(2048),
            enc_layers: enc_layers.unwrap_or(6),
            dec_layers: dec_layers.unwrap_or(3),
            num_feature_levels: levels.unwrap_or(4),
            n_points: enc_points.unwrap_or(4),
            fusion_interval: interval.unwrap_or(2),
            gating,
            dataset,
            subject_class,
            text: TextGeometry { vocab: words[0], max_positions: positions[0], type_vocab: types[0], layers },
        })
    }
}
