//! HICO-DET mAP exactly as the official evaluator computes it (spec §5: `datasets/hico_eval.py`
//! for matching and AP, `datasets/hico.py` for the annotations and the rare / unseen splits):
//!
//! - ground truth: every test HOI counts, duplicates included; the test triplets are the distinct
//!   (subject label, object label, verb) of all test HOIs;
//! - an image without ground-truth boxes or without detections contributes nothing (hico_eval.py:
//!   119-127 never matches there);
//! - per image, detections in stable descending score order; a box matches the ground-truth
//!   boxes of its label with IoU ≥ 0.5 (+1-pixel areas, NumPy's scalar arithmetic, strict
//!   overlap test);
//!   a detection takes the ground-truth HOI of its verb whose smaller IoU is largest (first of
//!   equals), and is a true positive only if that HOI (by value: a duplicated HOI is matched
//!   once) is not taken yet — no fallback to the next best; detections of triplets absent from
//!   the test set are ignored;
//! - AP per triplet: predictions in NumPy's `argsort(-score)` order (ties as NumPy leaves them),
//!   VOC 11-point at recall thresholds `i·0.1`; Full = mean over the test
//!   triplets, rare / non-rare = mean over those in each split (a triplet in neither counts in
//!   Full only).
//!
//! The evaluator's own selection (valid-pair mask, top 100, triplet NMS) is what `rlipv2 detect`
//! already wrote, so detections are evaluated as read.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::model::postprocess::Detection;
use crate::{Error, Result};

/// COCO category ids of the 80 HICO-DET objects; index = object label (hico.py:46-53).
pub const VALID_OBJ_IDS: [i64; 80] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35,
    36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65,
    67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
];
/// Verb classes (ids 1..=117 in the files).
pub const VERBS: usize = 117;
/// Box IoU a match needs (hico_eval.py:22).
pub const OVERLAP_IOU: f64 = 0.5;
/// Training instances below which a triplet is rare (hico.py:208).
pub const RARE_BELOW: usize = 10;

/// (subject label, object label, verb), labels 0..80, verb 0..117.
pub type Triplet = (usize, usize, usize);

/// One test image's ground truth.
#[derive(Clone, Debug)]
pub struct GtImage {
    /// `file_name` as written in the annotations.
    pub file_name: String,
    /// (x1, y1, x2, y2) in original pixels, as f32 like the official tensors.
    pub boxes: Vec<[f32; 4]>,
    /// Object label (0..80) per box.
    pub labels: Vec<usize>,
    /// (subject box, object box, verb 0..117) per HOI.
    pub hois: Vec<(usize, usize, usize)>,
}

impl GtImage {
    fn triplet(&self, &(s, o, v): &(usize, usize, usize)) -> Triplet {
        (self.labels[s], self.labels[o], v)
    }
}

/// Reads annotations in the official (PPDM) format: a list of images with `file_name`,
/// `annotations` (`bbox` x1,y1,x2,y2, COCO `category_id`) and `hoi_annotation` (`subject_id`,
/// `object_id`, verb `category_id` 1..117) — `test_hico.json`, `trainval_hico.json`.
pub fn read_annotations(path: &Path) -> Result<Vec<GtImage>> {
    #[derive(serde::Deserialize)]
    struct Box {
        bbox: Vec<f64>,
        category_id: i64,
    }
    #[derive(serde::Deserialize)]
    struct Hoi {
        subject_id: i64,
        object_id: i64,
        category_id: i64,
    }
    #[derive(serde::Deserialize)]
    struct Image {
        file_name: String,
        #[serde(default)]
        annotations: Vec<Box>,
        #[serde(default)]
        hoi_annotation: Vec<Hoi>,
    }
    let bad = |reason: String| Error::Format { file: path.to_path_buf(), reason };
    let text = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let images: Vec<Image> = serde_json::from_slice(&text).map_err(|e| {
        bad(format!("not HICO-DET annotations (a list of {{file_name, annotations, hoi_annotation}}): {e}"))
    })?;
    let mut out = Vec::with_capacity(images.len());
    for (i, im) in images.into_iter().enumerate() {
        let at = |what: String| format!("image {i} ({}): {what}", im.file_name);
        let mut boxes = Vec::with_capacity(im.annotations.len());
        let mut labels = Vec::with_capacity(im.annotations.len());
        for (k, b) in im.annotations.iter().enumerate() {
            let &[x1, y1, x2, y2] = b.bbox.as_slice() else {
                return Err(bad(at(format!("box {k} has {} coordinates, expected 4", b.bbox.len()))));
            };
            // f64 → f32 as torch.as_tensor(boxes, dtype=float32) rounds
            boxes.push([x1 as f32, y1 as f32, x2 as f32, y2 as f32]);
            let label = VALID_OBJ_IDS.iter().position(|&c| c == b.category_id).ok_or_else(|| {
                bad(at(format!("box {k}: category_id {} is not one of HICO-DET's 80 COCO ids", b.category_id)))
            })?;
            labels.push(label);
        }
        let n = boxes.len() as i64;
        let mut hois = Vec::with_capacity(im.hoi_annotation.len());
        for (k, h) in im.hoi_annotation.iter().enumerate() {
            for (what, id) in [("subject_id", h.subject_id), ("object_id", h.object_id)] {
                if !(0..n).contains(&id) {
                    return Err(bad(at(format!("hoi {k}: {what} {id} is not a box of this image (it has {n})"))));
                }
            }
            if !(1..=VERBS as i64).contains(&h.category_id) {
                return Err(bad(at(format!("hoi {k}: verb category_id {} is outside 1..={VERBS}", h.category_id))));
            }
            hois.push((h.subject_id as usize, h.object_id as usize, h.category_id as usize - 1));
        }
        out.push(GtImage { file_name: im.file_name, boxes, labels, hois });
    }
    Ok(out)
}

/// Which triplets are averaged as "rare" and "non-rare".
#[derive(Clone, Debug, Default)]
pub struct Split {
    /// Rare (Default) or unseen (zero-shot) triplets.
    pub rare: HashSet<Triplet>,
    /// Non-rare (Default) or seen (zero-shot) triplets.
    pub non_rare: HashSet<Triplet>,
}

/// The Default split (`set_rare_hois`, hico.py:192-211): a triplet of the training annotations
/// is rare when it has fewer than 10 instances there.
pub fn rare_split(trainval: &[GtImage]) -> Split {
    let mut counts: HashMap<Triplet, usize> = HashMap::new();
    for im in trainval {
        for h in &im.hois {
            *counts.entry(im.triplet(h)).or_default() += 1;
        }
    }
    let mut split = Split::default();
    for (t, c) in counts {
        if c < RARE_BELOW {
            split.rare.insert(t)
        } else {
            split.non_rare.insert(t)
        };
    }
    split
}

/// A zero-shot setting of the official scripts (`--zero_shot_setting`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZeroShot {
    /// Unseen combinations, rare first (120 unseen HOI classes).
    UcRf,
    /// Unseen combinations, non-rare first (120 unseen HOI classes).
    UcNf,
    /// Unseen objects (100 unseen HOI classes; in the parser, no official script).
    Uo,
}

impl ZeroShot {
    /// The unseen HOI classes, 0-based indices into `hoi_list_new.json` (hico.py:572-596).
    pub fn unseen(self) -> &'static [usize] {
        match self {
            ZeroShot::UcRf => &[
                509, 279, 280, 402, 504, 286, 499, 498, 289, 485, 303, 311, 325, 439, 351, 358, 66, 427, 379, 418, 70,
                416, 389, 90, 395, 76, 397, 84, 135, 262, 401, 592, 560, 586, 548, 593, 526, 181, 257, 539, 535, 260,
                596, 345, 189, 205, 206, 429, 179, 350, 405, 522, 449, 261, 255, 546, 547, 44, 22, 334, 599, 239, 315,
                317, 229, 158, 195, 238, 364, 222, 281, 149, 399, 83, 127, 254, 398, 403, 555, 552, 520, 531, 440, 436,
                482, 274, 8, 188, 216, 597, 77, 407, 556, 469, 474, 107, 390, 410, 27, 381, 463, 99, 184, 100, 292,
                517, 80, 333, 62, 354, 104, 55, 50, 198, 168, 391, 192, 595, 136, 581,
            ],
            ZeroShot::UcNf => &[
                38, 41, 20, 18, 245, 11, 19, 154, 459, 42, 155, 139, 60, 461, 577, 153, 582, 89, 141, 576, 75, 212,
                472, 61, 457, 146, 208, 94, 471, 131, 248, 544, 515, 566, 370, 481, 226, 250, 470, 323, 169, 480, 479,
                230, 385, 73, 159, 190, 377, 176, 249, 371, 284, 48, 583, 53, 162, 140, 185, 106, 294, 56, 320, 152,
                374, 338, 29, 594, 346, 456, 589, 45, 23, 67, 478, 223, 493, 228, 240, 215, 91, 115, 337, 559, 7, 218,
                518, 297, 191, 266, 304, 6, 572, 529, 312, 9, 308, 417, 197, 193, 163, 455, 25, 54, 575, 446, 387, 483,
                534, 340, 508, 110, 329, 246, 173, 506, 383, 93, 516, 64,
            ],
            ZeroShot::Uo => &[
                111, 112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127, 128, 224, 225,
                226, 227, 228, 229, 230, 231, 290, 291, 292, 293, 294, 313, 314, 315, 316, 317, 318, 319, 320, 321,
                322, 323, 324, 336, 337, 338, 339, 340, 341, 418, 419, 420, 421, 422, 423, 424, 425, 426, 427, 428,
                429, 430, 431, 432, 433, 453, 454, 455, 456, 457, 458, 459, 460, 461, 462, 463, 464, 465, 466, 467,
                468, 469, 470, 471, 472, 473, 533, 534, 535, 536, 537, 558, 559, 560, 561, 595, 596, 597, 598, 599,
            ],
        }
    }
}

/// The seen/unseen split of a zero-shot setting (`set_seen_hois`, hico.py:213-242): unseen =
/// the setting's HOI classes, seen = the other of the 600, each as (0, object, verb) read from
/// `hoi_list_new.json` (`id` 1-based, `object_cat` a COCO id, `verb_id` 1..117).
pub fn unseen_split(setting: ZeroShot, hoi_list: &Path) -> Result<Split> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Id {
        Int(i64),
        Text(String),
    }
    #[derive(serde::Deserialize)]
    struct Hoi {
        id: Id,
        object_cat: i64,
        verb_id: i64,
    }
    let bad = |reason: String| Error::Format { file: hoi_list.to_path_buf(), reason };
    let text = std::fs::read(hoi_list).map_err(|source| Error::Io { path: hoi_list.to_path_buf(), source })?;
    let list: Vec<Hoi> = serde_json::from_slice(&text)
        .map_err(|e| bad(format!("not HICO-DET's HOI list (a list of {{id, object_cat, verb_id}}): {e}")))?;
    if list.len() < 600 {
        return Err(bad(format!("{} HOI classes, expected 600", list.len())));
    }
    let mut triplets = Vec::with_capacity(600);
    for (i, h) in list.iter().take(600).enumerate() {
        let id = match &h.id {
            Id::Int(n) => Some(*n),
            Id::Text(s) => s.trim().parse().ok(),
        };
        if id != Some(i as i64 + 1) {
            return Err(bad(format!("entry {i} should have id {} (the list is in id order)", i + 1)));
        }
        let object = VALID_OBJ_IDS
            .iter()
            .position(|&c| c == h.object_cat)
            .ok_or_else(|| bad(format!("entry {i}: object_cat {} is not one of the 80 COCO ids", h.object_cat)))?;
        if !(1..=VERBS as i64).contains(&h.verb_id) {
            return Err(bad(format!("entry {i}: verb_id {} is outside 1..={VERBS}", h.verb_id)));
        }
        triplets.push((0, object, h.verb_id as usize - 1));
    }
    let unseen: HashSet<usize> = setting.unseen().iter().copied().collect();
    let mut split = Split::default();
    for (i, t) in triplets.into_iter().enumerate() {
        if unseen.contains(&i) {
            split.rare.insert(t)
        } else {
            split.non_rare.insert(t)
        };
    }
    Ok(split)
}

/// AP and recall of one test triplet.
#[derive(Clone, Debug, PartialEq)]
pub struct TripletAp {
    /// (subject label, object label, verb).
    pub triplet: Triplet,
    /// Ground-truth instances in the test set.
    pub instances: usize,
    /// 11-point AP (0 without detections).
    pub ap: f64,
    /// Largest recall reached (0 without detections).
    pub max_recall: f64,
    /// Whether the split lists it as rare / unseen (`Some(true)`), non-rare / seen
    /// (`Some(false)`), or neither (`None`: it counts in Full only).
    pub rare: Option<bool>,
}

/// The official result (`mAP`, `mAP rare`, `mAP non-rare`, `mean max recall`, fractions) and
/// what it was averaged over.
#[derive(Clone, Debug)]
pub struct Report {
    /// Mean AP over every test triplet (Full).
    pub map: f64,
    /// Mean AP over the test triplets of the rare / unseen split (NaN when there is none).
    pub map_rare: f64,
    /// Mean AP over the test triplets of the non-rare / seen split (NaN when there is none).
    pub map_non_rare: f64,
    /// Mean over the test triplets of the largest recall reached.
    pub mean_max_recall: f64,
    /// Per test triplet, in first-seen order.
    pub triplets: Vec<TripletAp>,
    /// Test images.
    pub images: usize,
    /// Images that contributed (some ground-truth box and some detection).
    pub images_matched: usize,
}

/// `IoU` of the official `compute_IOU` (hico_eval.py:473-491): 0 across labels, 0 unless the
/// boxes overlap strictly, +1-pixel areas. The boxes are NumPy float32 scalars there: a
/// difference stays f32, adding the Python `1` promotes it to f64, so areas, intersection and the
/// ratio are f64. `max`/`min` are Python's builtins (the first argument unless the second is
/// strictly larger / smaller).
fn iou(g: &[f32; 4], p: &[f32; 4]) -> f64 {
    let max = |a: f32, b: f32| if b > a { b } else { a };
    let min = |a: f32, b: f32| if b < a { b } else { a };
    let side = |hi: f32, lo: f32| (hi - lo) as f64 + 1.0;
    let area = |r: &[f32; 4]| side(r[2], r[0]) * side(r[3], r[1]);
    let sum = area(g) + area(p);
    let (left, right) = (max(g[1], p[1]), min(g[3], p[3]));
    let (top, bottom) = (max(g[0], p[0]), min(g[2], p[2]));
    if left >= right || top >= bottom {
        return 0.0;
    }
    let inter = side(right, left) * side(bottom, top);
    inter / (sum - inter)
}

/// Descending score, stable, NaN last (Python's `sort(reverse=True)` of finite scores).
fn by_score_desc(a: f32, b: f32) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (false, false) => b.partial_cmp(&a).expect("not NaN"),
        (x, y) => x.cmp(&y),
    }
}

/// VOC 11-point AP (hico_eval.py:341-349): thresholds `i·0.1` in f64 (`np.arange(0, 1.1, 0.1)`,
/// so the fourth is 0.30000000000000004), precision = the largest at recall ≥ the threshold.
fn voc_ap(rec: &[f64], prec: &[f64]) -> f64 {
    let mut ap = 0.0;
    for i in 0..=10 {
        let t = i as f64 * 0.1;
        let p = rec
            .iter()
            .zip(prec)
            .filter(|(r, _)| **r >= t)
            .map(|(_, p)| *p)
            .fold(None, |m: Option<f64>, p| Some(m.map_or(p, |m| if p > m { p } else { m })));
        ap += p.unwrap_or(0.0) / 11.0;
    }
    ap
}

/// Evaluates `detections[i]` (the detections of `gts[i]`, any order; subjects are `person`, label
/// 0) against the ground truth, averaging rare / non-rare over `split`.
pub fn evaluate(gts: &[GtImage], detections: &[Vec<Detection>], split: &Split) -> Report {
    assert_eq!(gts.len(), detections.len(), "one detection list per image");
    // test triplets in first-seen order, with their instance counts (duplicates included)
    let mut order: Vec<Triplet> = Vec::new();
    let mut instances: HashMap<Triplet, usize> = HashMap::new();
    for im in gts {
        for h in &im.hois {
            let t = im.triplet(h);
            let n = instances.entry(t).or_insert(0);
            if *n == 0 {
                order.push(t);
            }
            *n += 1;
        }
    }
    // per triplet: (score, true positive) in the order the evaluator records them
    let mut records: HashMap<Triplet, Vec<(f32, bool)>> = HashMap::new();
    let mut images_matched = 0;
    for (im, dets) in gts.iter().zip(detections) {
        if im.boxes.is_empty() || dets.is_empty() {
            continue;
        }
        images_matched += 1;
        // the ground-truth boxes a predicted box matches, in box order, with the IoU (f64 of f32)
        let matches = |b: &[f32; 4], label: usize| -> Vec<(usize, f64)> {
            (0..im.boxes.len())
                .filter(|&g| im.labels[g] == label)
                .map(|g| (g, iou(&im.boxes[g], b)))
                .filter(|&(_, o)| o >= OVERLAP_IOU)
                .collect()
        };
        // Python's sort, reverse=True: stable
        let mut sorted: Vec<&Detection> = dets.iter().collect();
        sorted.sort_by(|a, b| by_score_desc(a.score, b.score));
        let mut taken = vec![false; im.hois.len()];
        for d in sorted {
            let (subs, objs) = (matches(&d.subject_box, 0), matches(&d.object_box, d.object_label));
            let mut best: Option<usize> = None;
            let mut best_overlap = 0.0;
            if !subs.is_empty() && !objs.is_empty() {
                for (k, &(gs, go, gv)) in im.hois.iter().enumerate() {
                    if gv != d.verb {
                        continue;
                    }
                    let (Some(&(_, os)), Some(&(_, oo))) =
                        (subs.iter().find(|m| m.0 == gs), objs.iter().find(|m| m.0 == go))
                    else {
                        continue;
                    };
                    let m = if oo < os { oo } else { os };
                    if m > best_overlap {
                        best_overlap = m;
                        best = Some(k);
                    }
                }
            }
            let t = (0, d.object_label, d.verb);
            if !instances.contains_key(&t) {
                continue;
            }
            // `gt_hois.index(best)`: the first HOI equal to the best, so a duplicate is matched once
            let first = best.map(|k| im.hois.iter().position(|h| *h == im.hois[k]).expect("present"));
            let tp = match first {
                Some(k) if !taken[k] => {
                    taken[k] = true;
                    true
                }
                _ => false,
            };
            records.entry(t).or_default().push((d.score, tp));
        }
    }
    let mut triplets = Vec::with_capacity(order.len());
    for t in order {
        let n = instances[&t];
        let rare = if split.rare.contains(&t) {
            Some(true)
        } else if split.non_rare.contains(&t) {
            Some(false)
        } else {
            None
        };
        let (ap, max_recall) = match records.get(&t) {
            None => (0.0, 0.0),
            Some(r) => {
                // np.argsort(-score): NumPy's unstable order of tied scores
                let neg: Vec<f32> = r.iter().map(|x| -x.0).collect();
                let (mut tp, mut fp) = (0usize, 0usize);
                let (mut rec, mut prec) = (Vec::with_capacity(r.len()), Vec::with_capacity(r.len()));
                for i in crate::model::npsort::argsort(&neg) {
                    let hit = r[i].1;
                    if hit {
                        tp += 1
                    } else {
                        fp += 1
                    }
                    rec.push(tp as f64 / n as f64);
                    prec.push(tp as f64 / (tp + fp) as f64);
                }
                (voc_ap(&rec, &prec), rec.iter().copied().fold(0.0, f64::max))
            }
        };
        triplets.push(TripletAp { triplet: t, instances: n, ap, max_recall, rare });
    }
    let mean = |xs: Vec<f64>| if xs.is_empty() { f64::NAN } else { xs.iter().sum::<f64>() / xs.len() as f64 };
    Report {
        map: mean(triplets.iter().map(|t| t.ap).collect()),
        map_rare: mean(triplets.iter().filter(|t| t.rare == Some(true)).map(|t| t.ap).collect()),
        map_non_rare: mean(triplets.iter().filter(|t| t.rare == Some(false)).map(|t| t.ap).collect()),
        mean_max_recall: mean(triplets.iter().map(|t| t.max_recall).collect()),
        triplets,
        images: gts.len(),
        images_matched,
    }
}
