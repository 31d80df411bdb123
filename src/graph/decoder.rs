//! The ParSe decoders and the text-classifier heads (spec §2.6-2.7, variants spec §1.3-1.4): the
//! ho_decoder over N subject+object queries, the verb queries from MBF, the verb decoder over Np
//! pair queries anchored at the mean of each pair's boxes, then boxes and logits for the last
//! decoder layer against the last round's language. Two families share all of it but the
//! anchors and positional queries: ParSeDA (DAB: box anchors, positional queries from their sine
//! embedding) and ParSeD (2-D point anchors from learned positional queries, which stay the same
//! at every layer). One image at a time; for a padded one the anchors (in valid-region
//! coordinates) are scaled by each level's valid ratios where they sample, as the official
//! decoders do, and padded memory tokens' values are zeroed.

use super::bind::Binding;
use super::front::Tokens;
use super::layers::{Lin, Mlp, Norm};
use super::vars::Vars;
use crate::backend::{Backend, Ops, Tensor};
use crate::error::{Error, Result};
use crate::model::config::Variant;
use crate::problem::{Activation, AttentionProblem, Form, GemmProblem, MsDeformAttnProblem, RefKind};

const D: usize = 256;
const HEADS: usize = 8;
const POINTS: usize = 4;
const LN_EPS: f32 = 1e-5;
/// `−ln((1 − 0.01)/0.01)`: the constant logit prior (hoi.py), not in the checkpoint.
pub const BIAS_C: f32 = -4.595_12;

/// MBF (`MultiBranchFusion(256, 256, 256, 16)`): `relu(Σ_k fc_3.k(relu(fc_1.k(h_s) · fc_2.k(h_o))))`.
/// Its 16 branches run as three 256-wide layers: fc_1 and fc_2 stacked over the branches'
/// outputs, fc_3 side by side over their inputs (its biases summed), so the sum over branches is
/// part of one GEMM's dot products.
struct Mbf {
    fc_1: Lin,
    fc_2: Lin,
    fc_3: Lin,
}

impl Mbf {
    const BRANCHES: usize = 16;
    const WIDTH: usize = D / Mbf::BRANCHES;

    /// Loads `fc_{1,2,3}.{k}` under `vars` (`transformer.verb_tgt_generator`).
    fn load(vars: &Vars) -> Result<Self> {
        let (b, w) = (Mbf::BRANCHES, Mbf::WIDTH);
        let stacked = |which: usize| -> Result<Lin> {
            let fc = vars.pp(format!("fc_{which}"));
            let (mut wt, mut bias) = (Vec::with_capacity(D * D), Vec::with_capacity(D));
            for k in 0..b {
                wt.extend(fc.pp(k).get("weight", &[w, D])?);
                bias.extend(fc.pp(k).get("bias", &[w])?);
            }
            Ok(Lin::new([fc.path("*.weight"), fc.path("*.bias")], D, D, wt, bias))
        };
        let (fc_1, fc_2) = (stacked(1)?, stacked(2)?);
        let fc_3 = vars.pp("fc_3");
        let (mut wt, mut bias) = (vec![0f32; D * D], vec![0f32; D]);
        for k in 0..b {
            let wk = fc_3.pp(k).get("weight", &[D, w])?;
            for o in 0..D {
                wt[o * D + k * w..o * D + (k + 1) * w].copy_from_slice(&wk[o * w..(o + 1) * w]);
            }
            bias.iter_mut().zip(fc_3.pp(k).get("bias", &[D])?).for_each(|(s, v)| *s += v);
        }
        let names = [fc_3.path("*.weight"), fc_3.path("*.bias")];
        Ok(Mbf { fc_1, fc_2, fc_3: Lin::new(names, D, D, wt, bias) })
    }

    /// The verb decoder's queries: `MBF(h_s, h_o) + tgt` (`tgt` = the two halves of verb_tgt summed).
    fn run(&self, be: &dyn Backend, h_s: &Tensor, h_o: &Tensor, tgt: &Tensor) -> Result<Tensor> {
        let gate = be.mul_t(
            &self.fc_1.run_t(be, h_s, Activation::None)?,
            &self.fc_2.run_t(be, h_o, Activation::None)?,
            Activation::Relu,
        )?;
        self.fc_3.run_res(be, &gate, Activation::Relu, Some(tgt))
    }
}

struct DecoderLayer {
    sampling_offsets: Lin,
    attention_weights: Lin,
    value_proj: Lin,
    output_proj: Lin,
    norm1: Norm,
    /// nn.MultiheadAttention's in_proj split into its q, k, v rows.
    in_proj: [Lin; 3],
    out_proj: Lin,
    norm2: Norm,
    linear1: Lin,
    linear2: Lin,
    norm3: Norm,
}

/// Where a decoder layer's positional query comes from.
enum QueryPos {
    /// DAB: `ref_point_head(sine(anchor))`, times `query_scale(x)` after the first layer.
    Dab { query_scale: Mlp, ref_point_head: Mlp },
    /// A learned embedding, the same at every layer ([`Decoders`] holds it).
    Learned,
}

struct Decoder {
    layers: Vec<DecoderLayer>,
    pos: QueryPos,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `log(x / (1 − x))` with both clamped to ≥ 1e-5 after clamping x to [0, 1] (util/misc.py).
fn inverse_sigmoid(x: f32) -> f32 {
    let x = x.clamp(0.0, 1.0);
    (x.max(1e-5) / (1.0 - x).max(1e-5)).ln()
}

/// Anchor coordinates (x, y[, w, h]) times a level's valid ratios `(rx, ry)`: where the
/// official decoders sample a padded image's anchor (deformable_transformer.py:417-433).
fn scaled(anchor: &[f32], (rx, ry): (f32, f32)) -> impl Iterator<Item = f32> + '_ {
    anchor.iter().enumerate().map(move |(c, v)| v * if c % 2 == 0 { rx } else { ry })
}

/// Box refinement: `sigmoid(delta + inverse_sigmoid(anchor))` per `[4]` row of `delta`; a 2-D
/// point anchor moves only the centre, w and h come from `delta` alone
/// (deformable_transformer.py:446-452, hoi.py:3050-3056).
fn refine(delta: &[f32], anchors: &[f32]) -> Vec<f32> {
    let dim = anchors.len() / (delta.len() / 4).max(1);
    delta
        .chunks_exact(4)
        .zip(anchors.chunks_exact(dim.max(1)))
        .flat_map(|(d, a)| (0..4).map(move |c| sigmoid(if c < dim { d[c] + inverse_sigmoid(a[c]) } else { d[c] })))
        .collect()
}

/// DAB's sine embedding of boxes `[n, 4]` → `[n, 512]`: (y, x, w, h), 128 each, sin/cos interleaved.
fn sine4(boxes: &[f32]) -> Vec<f32> {
    let scale = 2.0 * std::f32::consts::PI;
    let dim_t: Vec<f32> = (0..128).map(|i| 10000f32.powf(2.0 * (i / 2) as f32 / 128.0)).collect();
    let mut out = Vec::with_capacity(boxes.len() / 4 * 512);
    for b in boxes.chunks_exact(4) {
        for c in [1, 0, 2, 3] {
            let e = b[c] * scale;
            for (k, &t) in dim_t.iter().enumerate() {
                let v = e / t;
                out.push(if k % 2 == 0 { v.sin() } else { v.cos() });
            }
        }
    }
    out
}

impl Decoder {
    /// Loads `layers.{k}.…` under `vars`, and with DAB positional queries `query_scale` and
    /// `ref_point_head`.
    fn load(vars: &Vars, layers: usize, levels: usize, ffn: usize, dab: bool) -> Result<Self> {
        let taps = HEADS * levels * POINTS;
        let mut ls = Vec::new();
        for k in 0..layers {
            let v = vars.pp("layers").pp(k);
            let (ca, sa) = (v.pp("cross_attn"), v.pp("self_attn"));
            let (w, b) = (sa.get("in_proj_weight", &[3 * D, D])?, sa.get("in_proj_bias", &[3 * D])?);
            ls.push(DecoderLayer {
                sampling_offsets: Lin::load(&ca.pp("sampling_offsets"), 2 * taps, D)?,
                attention_weights: Lin::load(&ca.pp("attention_weights"), taps, D)?,
                value_proj: Lin::load(&ca.pp("value_proj"), D, D)?,
                output_proj: Lin::load(&ca.pp("output_proj"), D, D)?,
                norm1: Norm::load(&v.pp("norm1"), D, LN_EPS)?,
                in_proj: [0, 1, 2].map(|i| {
                    let (wi, bi) = (w[i * D * D..(i + 1) * D * D].to_vec(), b[i * D..(i + 1) * D].to_vec());
                    Lin::new([sa.path("in_proj_weight"), sa.path("in_proj_bias")], D, D, wi, bi)
                }),
                out_proj: Lin::load(&sa.pp("out_proj"), D, D)?,
                norm2: Norm::load(&v.pp("norm2"), D, LN_EPS)?,
                linear1: Lin::load(&v.pp("linear1"), ffn, D)?,
                linear2: Lin::load(&v.pp("linear2"), D, ffn)?,
                norm3: Norm::load(&v.pp("norm3"), D, LN_EPS)?,
            });
        }
        let pos = if dab {
            QueryPos::Dab {
                query_scale: Mlp::load(&vars.pp("query_scale"), &[D, D, D])?,
                ref_point_head: Mlp::load(&vars.pp("ref_point_head"), &[2 * D, D, D])?,
            }
        } else {
            QueryPos::Learned
        };
        Ok(Decoder { layers: ls, pos })
    }
}

impl DecoderLayer {
    /// Self-attention over all queries, deformable cross-attention into `memory` at the anchors
    /// `refs [n, 4]` (boxes) or `[n, 2]` (points), FFN; post-norm. `x` and `qpos` stay where `be`
    /// computes; only the anchors cross.
    fn run(&self, be: &dyn Backend, x: &Tensor, qpos: &Tensor, refs: &[f32], memory: &Memory) -> Result<Tensor> {
        let n = x.len() / D;
        // nn.MultiheadAttention: rows of in_proj are q | k | v; q = k = x + qpos, v = x
        let qk_in = be.add_t(x, qpos)?;
        let [wq, wk, wv] = &self.in_proj;
        let (q, k, v) = (
            wq.run_t(be, &qk_in, Activation::None)?,
            wk.run_t(be, &qk_in, Activation::None)?,
            wv.run_t(be, x, Activation::None)?,
        );
        drop(qk_in);
        let ap = AttentionProblem {
            batch: 1,
            heads: HEADS,
            q_len: n,
            k_len: n,
            head_dim: D / HEADS,
            scale: ((D / HEADS) as f32).powf(-0.5),
        };
        let sa = be.attention_t(&ap, &q, &k, &v, None)?;
        let x = self.norm2.run_t(be, &self.out_proj.run_res(be, &sa, Activation::None, Some(x))?)?;
        // deformable cross-attention at the anchors (the same one at every level: valid ratios
        // are 1 unpadded), on the memory where it lives
        let query = be.add_t(&x, qpos)?;
        let offsets = self.sampling_offsets.run_t(be, &query, Activation::None)?;
        let logits = self.attention_weights.run_t(be, &query, Activation::None)?;
        drop(query);
        let mut value = self.value_proj.run_t(be, memory.data, Activation::None)?;
        if let Some(m) = &memory.value_mask {
            value = be.mul_t(&value, m, Activation::None)?;
        }
        let kind = if refs.len() == 2 * n { RefKind::Points } else { RefKind::Boxes };
        let reference: Vec<f32> =
            refs.chunks_exact(kind.dim()).flat_map(|b| memory.ratios.iter().flat_map(move |&r| scaled(b, r))).collect();
        let p = MsDeformAttnProblem::new(1, n, HEADS, D / HEADS, POINTS, memory.shapes, Form::Fused(kind));
        let sampled =
            be.ms_deform_attn_t(&p, &value, &Tensor::on(be, "reference boxes", reference)?, &offsets, &logits)?;
        drop((value, offsets, logits));
        let x = self.norm1.run_t(be, &self.output_proj.run_res(be, &sampled, Activation::None, Some(&x))?)?;
        let h = self.linear1.run_t(be, &x, Activation::Relu)?;
        self.norm3.run_t(be, &self.linear2.run_res(be, &h, Activation::None, Some(&x))?)
    }
}

/// The encoder memory the decoders attend to.
pub struct Memory<'a> {
    /// `[S, 256]`, where the backend computes (a host tensor on the host backends)
    pub data: &'a Tensor,
    /// `(H, W)` of each level.
    pub shapes: &'a [(usize, usize)],
    /// `(x, y)` valid ratios of each level (all 1 unpadded).
    pub ratios: Vec<(f32, f32)>,
    /// Ones on valid tokens, zeros on padded ones (`[S, 256]`); None unpadded.
    pub value_mask: Option<Tensor>,
}

impl<'a> Memory<'a> {
    /// The memory of an unpadded image.
    pub fn unpadded(data: &'a Tensor, shapes: &'a [(usize, usize)]) -> Self {
        Memory { data, shapes, ratios: vec![(1.0, 1.0); shapes.len()], value_mask: None }
    }

    /// The memory the encoder made from `tokens` (padded or not).
    pub fn of(data: &'a Tensor, tokens: &'a Tokens) -> Self {
        Memory { data, shapes: &tokens.shapes, ratios: tokens.valid_ratios(), value_mask: tokens.value_mask.clone() }
    }
}

/// The heads' outputs for the last decoder layer (Np = N/2 pairs), in the layouts
/// [`crate::model::postprocess::HeadOutputs`] reads.
pub struct Outputs {
    /// Subject class logits `[Q, classes]`.
    pub sub_logits: Vec<f32>,
    /// Object class logits `[Q, objects + 1]` (text-classifier head).
    pub obj_logits: Vec<f32>,
    /// Verb logits `[Q, verbs]` (text-classifier head).
    pub verb_logits: Vec<f32>,
    /// Subject boxes `[Q, 4]` (cx, cy, w, h in [0, 1]).
    pub sub_boxes: Vec<f32>,
    /// Object boxes `[Q, 4]` (cx, cy, w, h in [0, 1]).
    pub obj_boxes: Vec<f32>,
}

impl Outputs {
    /// The outputs as post-processing reads them.
    pub fn view(&self) -> crate::model::postprocess::HeadOutputs<'_> {
        crate::model::postprocess::HeadOutputs {
            obj_logits: &self.obj_logits,
            verb_logits: &self.verb_logits,
            sub_boxes: &self.sub_boxes,
            obj_boxes: &self.obj_boxes,
            sub_logits: Some(&self.sub_logits),
        }
    }
}

/// One decoder pass: the last layer's features, its refined boxes, and the anchors it started
/// from (which the heads refine again, as hoi.py does).
struct Decoded {
    x: Tensor,
    sub: Vec<f32>,
    obj: Vec<f32>,
    sub_before: Vec<f32>,
    obj_before: Vec<f32>,
}

/// The decoders' own tensors as one backend holds them.
struct Own {
    tgt: Tensor,
    verb_tgt: Tensor,
    /// `bias_obj_a`, `bias_pred_a` repeated over the Np query rows.
    bias_obj: Tensor,
    bias_pred: Tensor,
    /// The learned positional queries of the ho and verb decoders (ParSeD).
    positions: Option<(Tensor, Tensor)>,
}

/// The ho-decoder and verb decoder with box refinement, MBF and the text-classifier heads.
pub struct Decoders {
    num_queries: usize,
    ho: Decoder,
    verb: Decoder,
    sub_bbox: Vec<Mlp>,
    obj_bbox: Vec<Mlp>,
    mbf: Mbf,
    /// The ho-decoder's initial content queries `[N, 256]`.
    tgt: Tensor,
    /// `verb_tgt[:Np] + verb_tgt[Np:]`, added to MBF's output.
    verb_tgt: Tensor,
    /// ParSeD's positional queries: the ho decoder's `[N, 256]`, the verb decoder's `[Np, 256]`.
    positions: Option<(Tensor, Tensor)>,
    /// Bound on first use.
    bound: Binding<Own>,
    /// The ho decoder's initial anchors `[N, 4]` (DAB boxes) or `[N, 2]` (ParSeD points): fixed
    /// by the weights, so computed once at load.
    anchors: Vec<f32>,
    resizer: Lin,
    resizer_norm: Norm,
    projection_text: Lin,
    bias_obj_a: Vec<f32>,
    bias_pred_a: Vec<f32>,
}

impl Decoders {
    /// Loads the decoders' weights of `variant` by their official state-dict names (`vars` at
    /// the root).
    pub fn load(
        variant: Variant,
        num_queries: usize,
        dec_layers: usize,
        levels: usize,
        ffn: usize,
        vars: &Vars,
    ) -> Result<Self> {
        let tr = vars.pp("transformer");
        let dab = variant == Variant::ParSeDA;
        let ho = Decoder::load(&tr.pp("ho_decoder"), dec_layers, levels, ffn, dab)?;
        let verb = Decoder::load(&tr.pp("verb_decoder"), dec_layers, levels, ffn, dab)?;
        let bbox = |side: &str| {
            let v = vars.pp(format!("{side}_bbox_embed"));
            (0..2 * dec_layers).map(|i| Mlp::load(&v.pp(i), &[D, D, D, 4])).collect::<Result<Vec<_>>>()
        };
        let sub_bbox = bbox("sub")?;
        let obj_bbox = bbox("obj")?;
        let mbf = Mbf::load(&tr.pp("verb_tgt_generator"))?;
        let np = num_queries / 2;
        let (tgt, verb_tgt, positions, anchors) = if dab {
            let anchors = vars.get("refpoint_embed.weight", &[num_queries, 4])?.into_iter().map(sigmoid).collect();
            (
                vars.get("tgt_embed.weight", &[num_queries, D])?,
                vars.get("verb_tgt_embed.weight", &[num_queries, D])?,
                None,
                anchors,
            )
        } else {
            // query_embed = positional | content | verb content (ParSetransformer.py:811)
            let q = vars.get("query_embed.weight", &[num_queries, 3 * D])?;
            let column = |k: usize| -> Vec<f32> {
                q.chunks_exact(3 * D).flat_map(|r| &r[k * D..(k + 1) * D]).copied().collect()
            };
            let pos = column(0);
            // the anchors: sigmoid(reference_points_{sub,obj}(pos)) of each half (:820-825)
            let mut anchors = Vec::with_capacity(num_queries * 2);
            for (side, rows) in [("sub", &pos[..np * D]), ("obj", &pos[np * D..])] {
                let lin = tr.pp(format!("reference_points_{side}"));
                let (w, b) = (lin.get("weight", &[2, D])?, lin.get("bias", &[2])?);
                for r in rows.chunks_exact(D) {
                    for (wo, bo) in w.chunks_exact(D).zip(&b) {
                        let dot: f64 = r.iter().zip(wo).map(|(x, w)| f64::from(*x) * f64::from(*w)).sum();
                        anchors.push(sigmoid((dot + f64::from(*bo)) as f32));
                    }
                }
            }
            let verb_pos = vars.tensor("transformer.verb_query_embed.weight", &[np, D])?;
            (column(1), column(2), Some((Tensor::host(pos), verb_pos)), anchors)
        };
        let verb_tgt = (0..np * D).map(|i| verb_tgt[i] + verb_tgt[np * D + i]).collect();
        Ok(Decoders {
            num_queries,
            ho,
            verb,
            sub_bbox,
            obj_bbox,
            mbf,
            tgt: Tensor::host(tgt),
            verb_tgt: Tensor::host(verb_tgt),
            positions,
            bound: Binding::default(),
            anchors,
            resizer: Lin::load(&tr.pp("resizer.fc"), D, 768)?,
            resizer_norm: Norm::load(&tr.pp("resizer.layer_norm"), D, 1e-12)?,
            projection_text: Lin::load(&vars.pp("projection_text"), D, D)?,
            bias_obj_a: vars.get("bias_obj_a", &[D])?,
            bias_pred_a: vars.get("bias_pred_a", &[D])?,
        })
    }

    /// One decoder pass: `x [n, 256]` queries, `sub`/`obj` anchors `[np, 4]` or `[np, 2]`;
    /// `parse` = the ho_decoder (refs are both anchors, refinements from the subject/object
    /// halves) or the verb decoder (refs the mean of each pair, refinements from the verb
    /// features); `learned` the positional queries of a decoder without DAB. Returns the last
    /// layer's features and boxes (see [`Decoded`]).
    #[allow(clippy::too_many_arguments)]
    fn decode(
        &self,
        be: &dyn Backend,
        dec: &Decoder,
        bbox_base: usize,
        mut x: Tensor,
        mut sub: Vec<f32>,
        mut obj: Vec<f32>,
        parse: bool,
        learned: Option<&Tensor>,
        memory: &Memory,
    ) -> Result<Decoded> {
        let np = self.num_queries / 2;
        let (mut before_sub, mut before_obj) = (sub.clone(), obj.clone());
        // the queries stay where `be` computes; the anchors (np × 4 or 2) are refined on the host
        for (k, layer) in dec.layers.iter().enumerate() {
            let refs: Vec<f32> = if parse {
                [sub.as_slice(), obj.as_slice()].concat()
            } else {
                sub.iter().zip(&obj).map(|(a, b)| 0.5 * (a + b)).collect()
            };
            let qpos = match (&dec.pos, learned) {
                (QueryPos::Dab { query_scale, ref_point_head }, _) if sub.len() == 4 * np => {
                    // the anchors times level 0's valid ratios (dab deformable_transformer.py:1488)
                    let level0: Vec<f32> = refs.chunks_exact(4).flat_map(|b| scaled(b, memory.ratios[0])).collect();
                    let raw = ref_point_head.run_t(be, &Tensor::on(be, "box embedding", sine4(&level0))?)?;
                    if k == 0 {
                        raw
                    } else {
                        be.mul_t(&query_scale.run_t(be, &x)?, &raw, Activation::None)?
                    }
                }
                (QueryPos::Learned, Some(pos)) => pos.clone(),
                _ => {
                    return Err(Error::Limit {
                        op: "decoder",
                        what: "positional queries".into(),
                        reason: "DAB needs box anchors; learned positions need their embedding".into(),
                    })
                }
            };
            x = layer.run(be, &x, &qpos, &refs, memory)?;
            let (xs, xo) = if parse {
                (be.slice_t(&x, 0, np * D)?, be.slice_t(&x, np * D, np * D)?)
            } else {
                (x.clone(), x.clone())
            };
            let ds = self.sub_bbox[bbox_base + k].run_t(be, &xs)?.into_vec(be)?;
            let d_o = self.obj_bbox[bbox_base + k].run_t(be, &xo)?.into_vec(be)?;
            let (new_sub, new_obj) = (refine(&ds, &sub), refine(&d_o, &obj));
            before_sub = std::mem::replace(&mut sub, new_sub);
            before_obj = std::mem::replace(&mut obj, new_obj);
        }
        Ok(Decoded { x, sub, obj, sub_before: before_sub, obj_before: before_obj })
    }

    /// Both decoders and the heads, against `lang [T, 768]` (the last fusion round's language),
    /// with `objects` object texts (incl. `no objects`) first, then the verb texts. Everything
    /// stays where `be` computes except the boxes (refined on the host) and the text rows'
    /// L2 normalisation; the results are downloaded at the end.
    pub fn forward(&self, be: &dyn Backend, memory: &Memory, lang: &[f32], objects: usize) -> Result<Outputs> {
        let np = self.num_queries / 2;
        let own = self.own_tensors(be)?;
        let (ho_pos, verb_pos) = own.positions.as_ref().map(|(h, v)| (h, v)).unzip();
        let half = self.anchors.len() / 2;
        let (sub, obj) = (self.anchors[..half].to_vec(), self.anchors[half..].to_vec());
        let Decoded { x: hs, sub, obj, sub_before, obj_before } =
            self.decode(be, &self.ho, 0, own.tgt.clone(), sub, obj, true, ho_pos, memory)?;
        let (hs_s, hs_o) = (be.slice_t(&hs, 0, np * D)?, be.slice_t(&hs, np * D, np * D)?);
        let verb_x = self.mbf.run(be, &hs_s, &hs_o, &own.verb_tgt)?;
        let nl = self.ho.layers.len();
        let hv = self.decode(be, &self.verb, nl, verb_x, sub, obj, false, verb_pos, memory)?.x;
        // heads (last layer): boxes from the last ho layer's refinement of its input anchors
        let last = nl - 1;
        let sub_boxes = refine(&self.sub_bbox[last].run_t(be, &hs_s)?.into_vec(be)?, &sub_before);
        let obj_boxes = refine(&self.obj_bbox[last].run_t(be, &hs_o)?.into_vec(be)?, &obj_before);
        // text: resizer (LayerNorm eps 1e-12), L2 normalize, /2, projection
        let resized = self
            .resizer_norm
            .run_t(be, &self.resizer.run_t(be, &Tensor::on(be, "language", lang.to_vec())?, Activation::None)?)?
            .into_vec(be)?;
        let normed: Vec<f32> = resized
            .chunks_exact(D)
            .flat_map(|r| {
                let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                r.iter().map(move |v| v / norm / 2.0)
            })
            .collect();
        let text = self.projection_text.run_t(be, &Tensor::on(be, "text rows", normed)?, Activation::None)?;
        let verbs = text.len() / D - objects;
        let (obj_text, verb_text) = (be.slice_t(&text, 0, objects * D)?, be.slice_t(&text, objects * D, verbs * D)?);
        // (q + bias)·textᵀ + c, the text rows as the GEMM's weight
        let logits = |q: &Tensor, bias: &Tensor, keys: &Tensor, n: usize| -> Result<Tensor> {
            let c = Tensor::on(be, "logit constant", vec![BIAS_C; n])?;
            be.gemm_t(&GemmProblem::linear(np, D, n), &be.add_t(q, bias)?, keys, Some(&c), None)
        };
        let sub_logits = logits(&hs_s, &own.bias_obj, &obj_text, objects)?;
        let obj_logits = logits(&hs_o, &own.bias_obj, &obj_text, objects)?;
        let verb_logits = logits(&hv, &own.bias_pred, &verb_text, verbs)?;
        Ok(Outputs {
            sub_logits: sub_logits.into_vec(be)?,
            obj_logits: obj_logits.into_vec(be)?,
            verb_logits: verb_logits.into_vec(be)?,
            sub_boxes,
            obj_boxes,
        })
    }

    /// The decoders' own tensors on `be`: initial queries, the verb queries' summed embedding,
    /// the two head biases repeated per query row, ParSeD's positional queries.
    fn own_tensors(&self, be: &dyn Backend) -> Result<std::sync::Arc<Own>> {
        let np = self.num_queries / 2;
        self.bound.get(be, || {
            let rows = |bias: &[f32]| Tensor::host(bias.iter().copied().cycle().take(np * D).collect());
            let positions = match &self.positions {
                Some((ho, verb)) => Some((be.bind("query positions", ho)?, be.bind("verb_query_embed", verb)?)),
                None => None,
            };
            Ok(Own {
                tgt: be.bind("content queries", &self.tgt)?,
                verb_tgt: be.bind("verb content queries", &self.verb_tgt)?,
                bias_obj: be.bind("bias_obj_a", &rows(&self.bias_obj_a))?,
                bias_pred: be.bind("bias_pred_a", &rows(&self.bias_pred_a))?,
                positions,
            })
        })
    }
}
