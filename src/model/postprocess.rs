//! Head outputs → ⟨subject, verb, object⟩ detections, as the official evaluation does it
//! (spec §2.8: `PostProcessHOI`, models/hoi.py:4769-4873, then the HICO evaluator,
//! datasets/hico_eval.py:17-80 and 493-564), in f32 like the official tensors:
//!
//! 1. object probability = softmax over the To + 1 object texts; score and label = max over the
//!    first To (the last column is `no objects`); zero-shot: keep only pairs whose subject argmax
//!    is the subject class (0, `person`);
//! 2. verb score = sigmoid(verb logit) · object score, for every (pair, verb);
//! 3. boxes (cx, cy, w, h) in [0, 1] → (x1, y1, x2, y2) in original-image pixels;
//! 4. scores of invalid (verb, object) pairs are set to 0 (HICO's 600 valid pairs);
//! 5. the top `top_k` (pair, verb) candidates by score, ties in (pair, verb) order;
//! 6. triplet NMS per (subject class, object label, verb): a candidate is dropped when
//!    IoU_sub^α · IoU_obj^β > threshold against a higher-scored one (IoU with the +1-pixel area
//!    convention; tied scores in NumPy's order), then best first.

use super::labels::LabelSet;

/// One image's head outputs, row-major, Np pairs.
pub struct HeadOutputs<'a> {
    /// `[Np, To + 1]`
    pub obj_logits: &'a [f32],
    /// `[Np, Tv]`
    pub verb_logits: &'a [f32],
    /// `[Np, 4]` (cx, cy, w, h) in [0, 1]
    pub sub_boxes: &'a [f32],
    /// Object boxes `[Q, 4]` (cx, cy, w, h in [0, 1]).
    pub obj_boxes: &'a [f32],
    /// `[Np, To + 1]`, needed for zero-shot filtering.
    pub sub_logits: Option<&'a [f32]>,
}

/// Triplet NMS of the official evaluator: pairs overlapping by more than `threshold` are suppressed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Nms {
    /// Overlap threshold (0.7).
    pub threshold: f32,
    /// Exponent of the subject IoU in the pair overlap.
    pub alpha: f32,
    /// Exponent of the object IoU in the pair overlap.
    pub beta: f32,
}

/// The official evaluation settings: `--thres_nms 0.7 --nms_alpha 1 --nms_beta 0.5`.
pub const OFFICIAL_NMS: Nms = Nms { threshold: 0.7, alpha: 1.0, beta: 0.5 };

/// Post-processing options; the default is the official HICO evaluation.
#[derive(Clone, Debug)]
pub struct PostConfig {
    /// Candidates kept before NMS (the evaluator's `max_hois`, 100).
    pub top_k: usize,
    /// Triplet NMS, or none.
    pub nms: Option<Nms>,
    /// Keep only pairs whose subject is classified as the subject class (`--zero_shot_eval`).
    pub zero_shot: bool,
}

impl Default for PostConfig {
    fn default() -> Self {
        PostConfig { top_k: 100, nms: Some(OFFICIAL_NMS), zero_shot: false }
    }
}

/// One ⟨subject, verb, object⟩ detection.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    /// Index of the query pair (0..Np) it comes from.
    pub pair: usize,
    /// (x1, y1, x2, y2) in original-image pixels.
    pub subject_box: [f32; 4],
    /// (x1, y1, x2, y2) in original-image pixels.
    pub object_box: [f32; 4],
    /// Index into the label set's objects.
    pub object_label: usize,
    /// The subject's object label: classified for scene-graph sets, 0 (`person`) for HOI sets.
    pub subject_label: usize,
    /// Index into the label set's verbs.
    pub verb: usize,
    /// Verb score × object score (× the subject's score for scene-graph sets).
    pub score: f32,
}

impl Detection {
    /// The detection as `rlipv2 detect` writes it (and the Python `Detector` returns it):
    /// `subject_box`, `object_box`, `object`, `verb`, `score`, `pair`, names from `set`, and
    /// `subject` where the set classifies subjects.
    pub fn record(&self, set: &crate::model::labels::LabelSet) -> serde_json::Value {
        let mut r = serde_json::json!({
            "subject_box": self.subject_box,
            "object_box": self.object_box,
            "object": set.objects[self.object_label],
            "verb": set.verbs[self.verb],
            "score": self.score,
            "pair": self.pair,
        });
        if set.subject_classified {
            r["subject"] = set.objects[self.subject_label].clone().into();
        }
        r
    }
}

/// One query pair before any selection, as the official V-COCO export sees it
/// (`generate_vcoco_official.py` PostProcessHOI, :94-142): every pair, every verb, no top-k, no
/// NMS; the valid-pair mask is the evaluator's to apply.
#[derive(Clone, Debug, PartialEq)]
pub struct PairScores {
    /// (x1, y1, x2, y2) in original-image pixels.
    pub subject_box: [f32; 4],
    /// (x1, y1, x2, y2) in original-image pixels.
    pub object_box: [f32; 4],
    /// Index into the label set's objects (argmax over all but `no objects`).
    pub object_label: usize,
    /// Its softmax probability (over all object texts, `no objects` included).
    pub object_score: f32,
    /// sigmoid(verb logit) per verb.
    pub verb_scores: Vec<f32>,
}

impl PairScores {
    /// The pair as `rlipv2 detect --labels vcoco` writes it in `pairs`.
    pub fn record(&self, set: &crate::model::labels::LabelSet) -> serde_json::Value {
        serde_json::json!({
            "subject_box": self.subject_box,
            "object_box": self.object_box,
            "object": set.objects[self.object_label],
            "object_score": self.object_score,
            "verb_scores": self.verb_scores,
        })
    }
}

/// Every pair of one image of original size `(height, width)`, in query order.
pub fn pairs(out: &HeadOutputs, labels: &LabelSet, (height, width): (usize, usize)) -> Vec<PairScores> {
    let (to, tv) = (labels.objects.len(), labels.verbs.len());
    let np = out.verb_logits.len() / tv.max(1);
    let (w, h) = (width as f32, height as f32);
    (0..np)
        .map(|i| {
            let p = softmax(&out.obj_logits[i * (to + 1)..(i + 1) * (to + 1)]);
            let (object_score, object_label) = argmax(&p[..to]);
            PairScores {
                subject_box: to_pixels(&out.sub_boxes[4 * i..4 * i + 4], w, h),
                object_box: to_pixels(&out.obj_boxes[4 * i..4 * i + 4], w, h),
                object_label,
                object_score,
                verb_scores: out.verb_logits[i * tv..(i + 1) * tv].iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect(),
            }
        })
        .collect()
}

fn softmax(row: &[f32]) -> Vec<f32> {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = row.iter().map(|&x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|&x| x / s).collect()
}

/// (max, first index of the max) of `xs`.
fn argmax(xs: &[f32]) -> (f32, usize) {
    xs.iter().enumerate().fold((f32::NEG_INFINITY, 0), |(bv, bi), (i, &v)| if v > bv { (v, i) } else { (bv, bi) })
}

fn to_pixels(b: &[f32], width: f32, height: f32) -> [f32; 4] {
    let (cx, cy, w, h) = (b[0], b[1], b[2], b[3]);
    [(cx - 0.5 * w) * width, (cy - 0.5 * h) * height, (cx + 0.5 * w) * width, (cy + 0.5 * h) * height]
}

/// `np.maximum` / `np.minimum`: NaN wins (`f32::max` would return the other operand).
fn np_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.max(b)
    }
}
fn np_min(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.min(b)
    }
}

/// IoU with the +1-pixel area convention of the official NMS (NaN for a NaN box, as numpy gives).
fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let area = |x: &[f32; 4]| (x[2] - x[0] + 1.0) * (x[3] - x[1] + 1.0);
    let w = np_max(0.0, np_min(a[2], b[2]) - np_max(a[0], b[0]) + 1.0);
    let h = np_max(0.0, np_min(a[3], b[3]) - np_max(a[1], b[1]) + 1.0);
    let inter = w * h;
    inter / (area(a) + area(b) - inter)
}

/// Detections for one image of original size `(height, width)`, highest score first.
pub fn postprocess(
    out: &HeadOutputs,
    labels: &LabelSet,
    (height, width): (usize, usize),
    cfg: &PostConfig,
) -> Vec<Detection> {
    let (to, tv) = (labels.objects.len(), labels.verbs.len());
    let np = out.verb_logits.len() / tv.max(1);
    let (w, h) = (width as f32, height as f32);
    let mut candidates = Vec::with_capacity(np * tv);
    for i in 0..np {
        // a scene-graph set classifies the subject and weighs by its score (PostProcessSGG,
        // hoi.py:4905-4933); an HOI set's subject is `person`
        let (sub_score, subject_label) = match (labels.subject_classified, out.sub_logits) {
            (true, Some(sub)) => argmax(&softmax(&sub[i * (to + 1)..(i + 1) * (to + 1)])[..to]),
            _ => (1.0, 0),
        };
        if cfg.zero_shot {
            if let Some(sub) = out.sub_logits {
                let p = softmax(&sub[i * (to + 1)..(i + 1) * (to + 1)]);
                if argmax(&p[..to]).1 != 0 {
                    continue;
                }
            }
        }
        let p = softmax(&out.obj_logits[i * (to + 1)..(i + 1) * (to + 1)]);
        let (obj_score, obj_label) = argmax(&p[..to]);
        let subject_box = to_pixels(&out.sub_boxes[4 * i..4 * i + 4], w, h);
        let object_box = to_pixels(&out.obj_boxes[4 * i..4 * i + 4], w, h);
        for v in 0..tv {
            let sig = 1.0 / (1.0 + (-out.verb_logits[i * tv + v]).exp());
            let score = match labels.subject_classified {
                true => sig * obj_score * sub_score,
                false if labels.is_valid(v, obj_label) => sig * obj_score,
                false => 0.0,
            };
            let object_label = obj_label;
            candidates.push(Detection {
                pair: i,
                subject_box,
                object_box,
                object_label,
                subject_label,
                verb: v,
                score,
            });
        }
    }
    // stable: equal scores keep (pair, verb) order, as Python's sort does
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    candidates.truncate(cfg.top_k);
    let Some(nms) = cfg.nms else { return candidates };
    // triplet NMS as hico_eval.py:493-564 (and oi_sgg_eval.py:478-551) runs it: groups (subject
    // label, object label, verb) in order of first appearance, each in `scores.argsort()[::-1]`
    // order (NumPy's unstable sort, reversed: it decides which of two tied duplicates survives),
    // output group by group
    let mut groups: Vec<((usize, usize, usize), Vec<usize>)> = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        let key = (c.subject_label, c.object_label, c.verb);
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => g.1.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    let mut kept = Vec::with_capacity(candidates.len());
    for (_, members) in &groups {
        let scores: Vec<f32> = members.iter().map(|&i| candidates[i].score).collect();
        let mut order: Vec<usize> = super::npsort::argsort(&scores).into_iter().rev().map(|k| members[k]).collect();
        while let Some((&i, rest)) = order.split_first() {
            kept.push(i);
            let a = &candidates[i];
            order = rest
                .iter()
                .copied()
                .filter(|&j| {
                    let b = &candidates[j];
                    let ovr = iou(&a.subject_box, &b.subject_box).powf(nms.alpha)
                        * iou(&a.object_box, &b.object_box).powf(nms.beta);
                    // `np.where(ovr <= threshold)`: a NaN overlap is dropped too
                    ovr <= nms.threshold
                })
                .collect();
        }
    }
    // best first; the stable sort keeps the official order among equal scores, which is the
    // order its evaluator's own stable sort then sees
    let mut out: Vec<Detection> = kept.into_iter().map(|i| candidates[i].clone()).collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}
