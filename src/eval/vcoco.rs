//! V-COCO role AP exactly as the official evaluation computes it (spec §3.1): the detections the
//! official `generate_vcoco_official.py` exports (every query pair; per verb class
//! `sigmoid · object score × correct_mat[verb, object]`, a ones column for `missing objects`,
//! whose pairs get a NaN object box) scored by `datasets/vsrl_eval.py` (s-gupta's V-COCO
//! evaluator): agent AP, and role AP in scenario 1 (a person without a role object must be
//! predicted without one) and scenario 2 (any role prediction is right there).
//!
//! Per image and action, predictions in descending score order (NumPy's unstable argsort,
//! reversed, as the evaluator orders them: see [`crate::model::npsort`]) match the ground-truth person of
//! largest IoU (+1-pixel areas); one that lands on a person without V-COCO labels is ignored; a
//! true positive needs the action, person IoU ≥ 0.5 and role IoU ≥ 0.5 (or the scenario's rule
//! without a role object), once per person. AP is VOC all-point.

use std::collections::HashMap;
use std::path::Path;

use crate::model::npsort::argsort;
use crate::model::postprocess::PairScores;
use crate::{Error, Result};

/// The model's 29 verb classes in label order (`generate_vcoco_official.py:324-328`), as
/// `<action>_<role>` or a bare action for the agent-only ones.
pub const VERB_CLASSES: [&str; 29] = [
    "hold_obj",
    "stand",
    "sit_instr",
    "ride_instr",
    "walk",
    "look_obj",
    "hit_instr",
    "hit_obj",
    "eat_obj",
    "eat_instr",
    "jump_instr",
    "lay_instr",
    "talk_on_phone_instr",
    "carry_obj",
    "throw_obj",
    "catch_obj",
    "cut_instr",
    "cut_obj",
    "run",
    "work_on_computer_instr",
    "ski_instr",
    "surf_instr",
    "skateboard_instr",
    "smile",
    "drink_instr",
    "kick_obj",
    "point_instr",
    "read_obj",
    "snowboard_instr",
];
/// Box IoU a match needs (`ovr_thresh`).
pub const OVERLAP: f32 = 0.5;

/// One V-COCO action and its roles (`agent` first).
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    /// `hold`, `talk_on_phone`, …
    pub name: String,
    /// `agent`, then the role objects (`obj`, `instr`).
    pub roles: Vec<String>,
}

/// One test image's ground truth, as `vsrl_eval.py` builds it (`_get_vcocodb`).
#[derive(Clone, Debug)]
pub struct GtImage {
    /// COCO image id.
    pub id: i64,
    /// COCO `file_name`.
    pub file_name: String,
    /// Valid annotations' boxes (x1, y1, x2, y2; clipped, +1 convention), f32.
    pub boxes: Vec<[f32; 4]>,
    /// Whether each box is of the first COCO category (person).
    pub person: Vec<bool>,
    /// Per box and action: 1 (does it), 0 (does not), −1 (not a V-COCO-labelled person).
    pub actions: Vec<Vec<i32>>,
    /// Per box, action and role object: the box index of the role object, or −1.
    pub roles: Vec<Vec<[i32; 2]>>,
}

/// The V-COCO test set: actions and images in the split file's order.
#[derive(Clone, Debug)]
pub struct Annotations {
    /// Actions in the annotation file's order.
    pub actions: Vec<Action>,
    /// Images in the split file's order.
    pub images: Vec<GtImage>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// Reads `vcoco_test.json` (V-COCO's per-action annotations), the COCO instances file
/// (`instances_vcoco_all_2014.json`) and the split's image ids (`vcoco_test.ids`).
pub fn read_annotations(vsrl: &Path, coco: &Path, ids: &Path) -> Result<Annotations> {
    #[derive(serde::Deserialize)]
    struct VsrlAction {
        action_name: String,
        role_name: Vec<String>,
        image_id: Vec<i64>,
        ann_id: Vec<i64>,
        label: Vec<i64>,
        role_object_id: Vec<i64>,
    }
    #[derive(serde::Deserialize)]
    struct CocoImage {
        id: i64,
        width: f64,
        height: f64,
        #[serde(default)]
        file_name: String,
    }
    #[derive(serde::Deserialize)]
    struct CocoAnn {
        id: i64,
        image_id: i64,
        bbox: Vec<f64>,
        area: f64,
        category_id: i64,
        #[serde(default)]
        ignore: Option<i64>,
    }
    #[derive(serde::Deserialize)]
    struct CocoCat {
        id: i64,
    }
    #[derive(serde::Deserialize)]
    struct Coco {
        images: Vec<CocoImage>,
        annotations: Vec<CocoAnn>,
        categories: Vec<CocoCat>,
    }
    let bad = |file: &Path, reason: String| Error::Format { file: file.to_path_buf(), reason };
    let vsrl_data: Vec<VsrlAction> = serde_json::from_slice(&std::fs::read(vsrl).map_err(io(vsrl))?)
        .map_err(|e| bad(vsrl, format!("not V-COCO annotations (a list of {{action_name, role_name, image_id, ann_id, label, role_object_id}}): {e}")))?;
    let coco_data: Coco = serde_json::from_slice(&std::fs::read(coco).map_err(io(coco))?)
        .map_err(|e| bad(coco, format!("not COCO instances ({{images, annotations, categories}}): {e}")))?;
    let id_text = std::fs::read_to_string(ids).map_err(io(ids))?;
    let split: Vec<i64> = id_text
        .split_whitespace()
        .map(|t| t.parse::<f64>().ok().filter(|v| v.fract() == 0.0).map(|v| v as i64))
        .collect::<Option<_>>()
        .ok_or_else(|| bad(ids, "expected one integer image id per line".into()))?;
    let Some(first) = vsrl_data.first() else { return Err(bad(vsrl, "no actions".into())) };
    // role_object_id is role-major: row k of the reshape (roles, -1).T
    let mut actions = Vec::with_capacity(vsrl_data.len());
    for a in &vsrl_data {
        let n = a.ann_id.len();
        if a.image_id.len() != n || a.label.len() != n || a.role_object_id.len() != n * a.role_name.len() {
            return Err(bad(
                vsrl,
                format!("action `{}`: image_id, ann_id, label and role_object_id disagree in length", a.action_name),
            ));
        }
        if a.role_name.first().map(String::as_str) != Some("agent") || a.role_name.len() > 3 {
            return Err(bad(
                vsrl,
                format!("action `{}`: roles {:?}, expected `agent` then at most two", a.action_name, a.role_name),
            ));
        }
        actions.push(Action { name: a.action_name.clone(), roles: a.role_name.clone() });
    }
    // the evaluator's check: the split's images are exactly the annotated ones
    let mut annotated: Vec<i64> = first.image_id.clone();
    annotated.sort_unstable();
    annotated.dedup();
    let mut sorted_split = split.clone();
    sorted_split.sort_unstable();
    if annotated != sorted_split {
        return Err(bad(
            ids,
            format!("its {} image ids are not the {} images of {}", split.len(), annotated.len(), vsrl.display()),
        ));
    }
    // contiguous category ids in the file's category order; person is the first (1)
    let contiguous: HashMap<i64, usize> = coco_data.categories.iter().enumerate().map(|(i, c)| (c.id, i + 1)).collect();
    let images_by_id: HashMap<i64, &CocoImage> = coco_data.images.iter().map(|im| (im.id, im)).collect();
    let mut anns_by_image: HashMap<i64, Vec<&CocoAnn>> = HashMap::new();
    for a in &coco_data.annotations {
        anns_by_image.entry(a.image_id).or_default().push(a);
    }
    // V-COCO rows per annotation id: (action, row) with label 1
    let labelled: std::collections::HashSet<i64> = first.ann_id.iter().copied().collect();
    let mut positive: HashMap<(usize, i64), Vec<usize>> = HashMap::new();
    for (ai, a) in vsrl_data.iter().enumerate() {
        for (row, (&ann, &label)) in a.ann_id.iter().zip(&a.label).enumerate() {
            if label == 1 {
                positive.entry((ai, ann)).or_default().push(row);
            }
        }
    }
    let mut images = Vec::with_capacity(split.len());
    for &id in &split {
        let im = images_by_id
            .get(&id)
            .ok_or_else(|| bad(coco, format!("no image with id {id} (from {})", ids.display())))?;
        let (w, h) = (im.width, im.height);
        // `_add_gt_annotations`: ignore flags, xywh → clipped xyxy with the −1 convention,
        // positive area and extent
        let mut valid: Vec<(&CocoAnn, [f64; 4])> = Vec::new();
        for a in anns_by_image.get(&id).map(Vec::as_slice).unwrap_or(&[]) {
            if a.ignore == Some(1) {
                continue;
            }
            let &[x, y, bw, bh] = a.bbox.as_slice() else {
                return Err(bad(coco, format!("annotation {}: bbox has {} numbers, expected 4", a.id, a.bbox.len())));
            };
            let clip = |v: f64, hi: f64| (hi - 1.0).min(0f64.max(v));
            let (x1, y1) = (clip(x, w), clip(y, h));
            let (x2, y2) = (clip(x + 0f64.max(bw - 1.0), w), clip(y + 0f64.max(bh - 1.0), h));
            if a.area > 0.0 && x2 > x1 && y2 > y1 {
                valid.push((a, [x1, y1, x2, y2]));
            }
        }
        let valid_ids: Vec<i64> = valid.iter().map(|(a, _)| a.id).collect();
        let mut g = GtImage {
            id,
            file_name: im.file_name.clone(),
            boxes: Vec::with_capacity(valid.len()),
            person: Vec::with_capacity(valid.len()),
            actions: Vec::with_capacity(valid.len()),
            roles: Vec::with_capacity(valid.len()),
        };
        for (a, b) in &valid {
            let class = contiguous.get(&a.category_id).ok_or_else(|| {
                bad(coco, format!("annotation {}: category_id {} is not in categories", a.id, a.category_id))
            })?;
            g.boxes.push([b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32]);
            g.person.push(*class == 1);
            // `_get_vsrl_data`
            let mut act = vec![-1i32; actions.len()];
            let mut role = vec![[-1i32; 2]; actions.len()];
            if labelled.contains(&a.id) {
                act.fill(0);
                for (ai, va) in vsrl_data.iter().enumerate() {
                    let Some(rows) = positive.get(&(ai, a.id)) else { continue };
                    if rows.len() != 1 {
                        return Err(bad(
                            vsrl,
                            format!(
                                "action `{}`: annotation {} is labelled {} times",
                                va.action_name,
                                a.id,
                                rows.len()
                            ),
                        ));
                    }
                    act[ai] = 1;
                    let n = va.ann_id.len();
                    for j in 1..va.role_name.len() {
                        let obj = va.role_object_id[j * n + rows[0]];
                        if obj == 0 {
                            continue;
                        }
                        let k = valid_ids.iter().position(|&v| v == obj).ok_or_else(|| {
                            bad(vsrl, format!("action `{}`: role object {obj} of annotation {} is not a valid annotation of image {id}", va.action_name, a.id))
                        })?;
                        role[ai][j - 1] = k as i32;
                    }
                }
            }
            g.actions.push(act);
            g.roles.push(role);
        }
        images.push(g);
    }
    Ok(Annotations { actions, images })
}

/// The valid-pair matrix `corre_vcoco.npy`: `[29 verbs, 80 objects]`.
pub fn read_correct_mat(path: &Path) -> Result<Vec<Vec<f64>>> {
    let (shape, v) = crate::io::npy::read_f64(path)?;
    if shape != [VERB_CLASSES.len(), 80] {
        return Err(Error::Format { file: path.to_path_buf(), reason: format!("shape {shape:?}, expected [29, 80]") });
    }
    Ok(v.chunks(80).map(|r| r.to_vec()).collect())
}

/// One exported detection (one query pair): the person box, per action the agent score and per
/// role object its box and score (`vsrl_eval.py` `_collect_detections_for_image`).
struct Det {
    person: [f32; 4],
    agent: Vec<f32>,
    role: Vec<[([f32; 4], f32); 2]>,
}

/// The official export of one pair (generate_vcoco_official.py:497-531), read back the way the
/// evaluator collects it.
fn export(p: &PairScores, correct: &[Vec<f64>], missing: usize, actions: &[Action]) -> Result<Det> {
    let object_box = if p.object_label == missing { [f32::NAN; 4] } else { p.object_box };
    let mut keys: HashMap<String, (Option<[f32; 4]>, f32)> = HashMap::new();
    let mut max_agent: HashMap<&str, f32> = HashMap::new();
    for (v, class) in VERB_CLASSES.iter().enumerate() {
        let mask = if p.object_label == missing { 1.0 } else { correct[v][p.object_label] };
        // f32 scores times the f64 mask, kept in f32 (an in-place multiply on a float32 tensor)
        let s = ((p.verb_scores[v] * p.object_score) as f64 * mask) as f32;
        if !class.contains('_') {
            keys.insert(format!("{class}_agent"), (None, s));
            continue;
        }
        keys.insert(class.to_string(), (Some(object_box), s));
        if let Some(action) = ["cut", "hit", "eat"].into_iter().find(|a| class.starts_with(&format!("{a}_"))) {
            let m = max_agent.entry(action).or_insert(0.0);
            if s > *m {
                *m = s;
            }
        } else {
            keys.insert(format!("{}_agent", class.replace("_obj", "").replace("_instr", "")), (None, s));
        }
    }
    for a in ["cut", "hit", "eat"] {
        keys.insert(format!("{a}_agent"), (None, max_agent.get(a).copied().unwrap_or(0.0)));
    }
    let get = |k: String| {
        keys.get(&k).copied().ok_or_else(|| Error::Limit {
            op: "eval vcoco",
            what: k.clone(),
            reason: "the annotations name an action/role the model's 29 verb classes do not produce".into(),
        })
    };
    let mut agent = Vec::with_capacity(actions.len());
    let mut role = Vec::with_capacity(actions.len());
    for a in actions {
        agent.push(get(format!("{}_agent", a.name))?.1);
        let mut r = [([0f32; 4], 0f32); 2];
        for (j, name) in a.roles.iter().enumerate().skip(1) {
            let (b, s) = get(format!("{}_{name}", a.name))?;
            r[j - 1] = (b.unwrap_or([f32::NAN; 4]), s);
        }
        role.push(r);
    }
    Ok(Det { person: p.subject_box, agent, role })
}

/// `get_overlap` (vsrl_eval.py:464-479) of one ground-truth box with a predicted one: f32 array
/// arithmetic, except the predicted box's area, computed on NumPy scalars in f64 then rounded.
fn overlap(g: &[f32; 4], r: &[f32; 4]) -> f32 {
    // np.maximum / np.minimum propagate NaN
    let max = |a: f32, b: f32| if a.is_nan() || b.is_nan() { f32::NAN } else { a.max(b) };
    let min = |a: f32, b: f32| if a.is_nan() || b.is_nan() { f32::NAN } else { a.min(b) };
    let iw = max(min(g[2], r[2]) - max(g[0], r[0]) + 1.0, 0.0);
    let ih = max(min(g[3], r[3]) - max(g[1], r[1]) + 1.0, 0.0);
    let inters = iw * ih;
    let ref_area = (((r[2] - r[0]) as f64 + 1.0) * ((r[3] - r[1]) as f64 + 1.0)) as f32;
    let uni = ref_area + (g[2] - g[0] + 1.0) * (g[3] - g[1] + 1.0) - inters;
    inters / uni
}

/// `np.argmax` (the first maximum; a NaN wins) and `np.max` (NaN if any) of `xs`.
fn argmax(xs: &[f32]) -> (usize, f32) {
    if let Some(i) = xs.iter().position(|x| x.is_nan()) {
        return (i, f32::NAN);
    }
    xs.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) })
}

/// VOC all-point AP (vsrl_eval.py:482-502) on f32 recall and precision, in f64.
fn voc_ap(rec: &[f32], prec: &[f32]) -> f64 {
    let mrec: Vec<f64> = std::iter::once(0.0).chain(rec.iter().map(|&r| r as f64)).chain([1.0]).collect();
    let mut mpre: Vec<f64> = std::iter::once(0.0).chain(prec.iter().map(|&p| p as f64)).chain([0.0]).collect();
    for i in (1..mpre.len()).rev() {
        // np.maximum: NaN propagates
        mpre[i - 1] = if mpre[i - 1].is_nan() || mpre[i].is_nan() { f64::NAN } else { mpre[i - 1].max(mpre[i]) };
    }
    (0..mrec.len() - 1).filter(|&i| mrec[i + 1] != mrec[i]).map(|i| (mrec[i + 1] - mrec[i]) * mpre[i + 1]).sum()
}

/// Predictions' scores and outcomes for one AP.
#[derive(Default)]
struct Record {
    sc: Vec<f32>,
    tp: Vec<bool>,
}

impl Record {
    /// AP stored as f32, like the evaluator's result arrays; NaN without positives (where the
    /// evaluator stops on its recall assertion).
    fn ap(&self, npos: f32) -> f32 {
        if npos == 0.0 {
            return f32::NAN;
        }
        let order: Vec<usize> = argsort(&self.sc).into_iter().rev().collect();
        let (mut tp, mut fp) = (0f32, 0f32);
        let (mut rec, mut prec) = (Vec::with_capacity(order.len()), Vec::with_capacity(order.len()));
        for i in order {
            if self.tp[i] {
                tp += 1.0
            } else {
                fp += 1.0
            }
            rec.push(tp / npos);
            prec.push(tp / (tp + fp).max(f64::EPSILON as f32));
        }
        voc_ap(&rec, &prec) as f32
    }
}

/// The evaluator's numbers: agent AP per action and role AP per (action, role object) in both
/// scenarios (NaN where an action has no role object), and their averages as it prints them.
#[derive(Clone, Debug)]
pub struct Report {
    /// Action names, in the annotations' order.
    pub actions: Vec<Action>,
    /// Positive persons per action.
    pub positives: Vec<usize>,
    /// Agent AP per action.
    pub agent_ap: Vec<f32>,
    /// Role AP per action and role object, scenario 1.
    pub role_ap_1: Vec<[f32; 2]>,
    /// Role AP per action and role object, scenario 2.
    pub role_ap_2: Vec<[f32; 2]>,
    /// Detections on images without any ground-truth person (the official evaluator cannot
    /// match these; they are left out).
    pub unmatched_images: usize,
}

fn nanmean(xs: impl Iterator<Item = f32>) -> f64 {
    let v: Vec<f64> = xs.filter(|x| !x.is_nan()).map(f64::from).collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

impl Report {
    /// `Average Agent AP` (a fraction): the sum of the agent APs over the action count.
    pub fn agent_map(&self) -> f64 {
        self.agent_ap.iter().filter(|x| !x.is_nan()).map(|&x| x as f64).sum::<f64>() / self.agent_ap.len() as f64
    }
    /// `Average Role [scenario_1|2] AP` (a fraction): the mean over the (action, role) pairs.
    pub fn role_map(&self, scenario: u8) -> f64 {
        let ap = if scenario == 1 { &self.role_ap_1 } else { &self.role_ap_2 };
        nanmean(ap.iter().flatten().copied())
    }
    /// The same without the action `point` (the evaluator's second line, as it computes it:
    /// (mean · 25 − AP(point)) / 24).
    pub fn role_map_without_point(&self, scenario: u8) -> Option<f64> {
        let ap = if scenario == 1 { &self.role_ap_1 } else { &self.role_ap_2 };
        let i = self.actions.iter().position(|a| a.name == "point")?;
        Some((self.role_map(scenario) * 25.0 - ap[i][0] as f64) / 24.0)
    }
}

/// Evaluates `pairs[i]` (every exported pair of `gt.images[i]`) with the valid-pair matrix
/// `correct` (`[29][80]`); `missing` is the object label of `missing objects` (its pairs have no
/// object box and every verb valid).
pub fn evaluate(gt: &Annotations, pairs: &[Vec<PairScores>], correct: &[Vec<f64>], missing: usize) -> Result<Report> {
    assert_eq!(gt.images.len(), pairs.len(), "one pair list per image");
    let na = gt.actions.len();
    let mut npos = vec![0usize; na];
    let mut agent: Vec<Record> = (0..na).map(|_| Record::default()).collect();
    let mut role: [Vec<[Record; 2]>; 2] =
        [(0..na).map(|_| Default::default()).collect(), (0..na).map(|_| Default::default()).collect()];
    let mut unmatched_images = 0;
    for (im, ps) in gt.images.iter().zip(pairs) {
        let persons: Vec<usize> = (0..im.boxes.len()).filter(|&k| im.person[k]).collect();
        let boxes: Vec<[f32; 4]> = persons.iter().map(|&k| im.boxes[k]).collect();
        let acts: Vec<&Vec<i32>> = persons.iter().map(|&k| &im.actions[k]).collect();
        let ignore: Vec<bool> = acts.iter().map(|a| a.contains(&-1)).collect();
        for (a, n) in npos.iter_mut().enumerate() {
            *n += acts.iter().filter(|x| x[a] == 1).count();
        }
        let dets: Vec<Det> = ps.iter().map(|p| export(p, correct, missing, &gt.actions)).collect::<Result<_>>()?;
        if dets.is_empty() {
            continue;
        }
        if persons.is_empty() {
            unmatched_images += 1;
            continue;
        }
        // the person a predicted box matches: largest IoU (first of equals)
        let best = |b: &[f32; 4]| argmax(&boxes.iter().map(|g| overlap(g, b)).collect::<Vec<_>>());
        for a in 0..na {
            // agent AP
            let scores: Vec<(usize, f32)> =
                dets.iter().enumerate().map(|(i, d)| (i, d.agent[a])).filter(|(_, s)| !s.is_nan()).collect();
            let mut covered = vec![false; boxes.len()];
            for j in argsort(&scores.iter().map(|s| s.1).collect::<Vec<_>>()).into_iter().rev() {
                let (d, s) = scores[j];
                let (jmax, ovmax) = best(&dets[d].person);
                if ignore[jmax] {
                    continue;
                }
                // a person already covered by a higher score makes this one a false positive
                let hit = acts[jmax][a] == 1 && ovmax >= OVERLAP && !std::mem::replace(&mut covered[jmax], true);
                agent[a].sc.push(s);
                agent[a].tp.push(hit);
            }
            // role AP, both scenarios
            let nroles = gt.actions[a].roles.len() - 1;
            for r in 0..nroles {
                let gt_roles: Vec<Option<[f32; 4]>> = persons
                    .iter()
                    .map(|&k| {
                        let o = im.roles[k][a][r];
                        (o > -1).then(|| im.boxes[o as usize])
                    })
                    .collect();
                let scores: Vec<(usize, f32)> =
                    dets.iter().enumerate().map(|(i, d)| (i, d.role[a][r].1)).filter(|(_, s)| !s.is_nan()).collect();
                let order: Vec<usize> =
                    argsort(&scores.iter().map(|s| s.1).collect::<Vec<_>>()).into_iter().rev().collect();
                for (scenario, rec) in role.iter_mut().enumerate() {
                    let mut covered = vec![false; boxes.len()];
                    for &j in &order {
                        let (d, s) = scores[j];
                        let (jmax, ovmax) = best(&dets[d].person);
                        if ignore[jmax] {
                            continue;
                        }
                        let rb = &dets[d].role[a][r].0;
                        let ov_role = match gt_roles[jmax] {
                            None if scenario == 0 => {
                                if rb.iter().all(|&v| v == 0.0) || rb.iter().all(|v| v.is_nan()) {
                                    1.0
                                } else {
                                    0.0
                                }
                            }
                            None => 1.0,
                            Some(g) => overlap(&g, rb),
                        };
                        let right = acts[jmax][a] == 1 && ovmax >= OVERLAP && ov_role >= OVERLAP;
                        let hit = right && !std::mem::replace(&mut covered[jmax], true);
                        rec[a][r].sc.push(s);
                        rec[a][r].tp.push(hit);
                    }
                }
            }
        }
    }
    let npos_f: Vec<f32> = npos.iter().map(|&n| n as f32).collect();
    let agent_ap: Vec<f32> = agent.iter().enumerate().map(|(a, r)| r.ap(npos_f[a])).collect();
    let role_ap = |s: usize| -> Vec<[f32; 2]> {
        (0..na)
            .map(|a| {
                let n = gt.actions[a].roles.len() - 1;
                let mut out = [f32::NAN; 2];
                for (r, o) in out.iter_mut().enumerate().take(n) {
                    *o = role[s][a][r].ap(npos_f[a]);
                }
                out
            })
            .collect()
    };
    Ok(Report {
        actions: gt.actions.clone(),
        positives: npos,
        agent_ap,
        role_ap_1: role_ap(0),
        role_ap_2: role_ap(1),
        unmatched_images,
    })
}
