//! Post-processing against the official code: `tools/official_postprocess.py` ran the official
//! `PostProcessHOI` and HICO evaluator (valid pairs, top-100, triplet NMS), and for Open Images
//! `PostProcessSGG` and the OI evaluator (classified subjects, top-100, pair NMS; a synthetic set
//! of 12 objects and 5 relations), on head outputs given by an exact formula; the goldens are in
//! tests/fixtures/postprocess_golden.json. Every kept triplet must match: pair, object label,
//! verb, subject label (OI), score (±1e-6) and boxes (±1e-4 px).

use rlipv2::model::labels::LabelSet;
use rlipv2::model::postprocess::{postprocess, HeadOutputs, PostConfig, OFFICIAL_NMS};
use serde_json::Value;

const CLUSTER_OBJECTS: [usize; 5] = [0, 16, 38, 41, 56];
const OI_CLUSTER_OBJECTS: [usize; 5] = [0, 3, 5, 8, 11];

fn frac(a: usize, m: usize) -> f64 {
    (a % m) as f64 / m as f64
}

/// The generator's formula (f64, rounded to f32).
fn inputs(np: usize, labels: &LabelSet, clusters: &[usize; 5], sub_clustered: bool) -> [Vec<f32>; 5] {
    let (to, tv) = (labels.objects.len(), labels.verbs.len());
    let verb_of = |c: usize| (0..tv).find(|&v| labels.is_valid(v, c)).unwrap();
    let mut obj = Vec::new();
    let mut verb = Vec::new();
    let mut sub = Vec::new();
    for i in 0..np {
        let k = clusters[i % 5];
        for c in 0..=to {
            obj.push((frac(i * 37 + c * 101 + 7, 211) * 10.0 - 6.0 + if c == k { 8.0 } else { 0.0 }) as f32);
            let raise = match sub_clustered {
                true if c == k => 8.0,
                false if c == 0 && i % 3 == 0 => 6.0,
                _ => 0.0,
            };
            sub.push((frac(i * 17 + c * 89 + 1, 193) * 10.0 - 5.0 + raise) as f32);
        }
        for v in 0..tv {
            verb.push((frac(i * 53 + v * 29 + 3, 199) * 12.0 - 8.0 + if v == verb_of(k) { 6.0 } else { 0.0 }) as f32);
        }
    }
    let boxes = |seed: usize| -> Vec<f32> {
        (0..np)
            .flat_map(|i| {
                let k = i % 5;
                let cx = 0.15 + 0.17 * k as f64 + frac(i * seed + 3, 101) * 0.04;
                let cy = 0.3 + 0.1 * ((k * seed) % 4) as f64 + frac(i * 7 + seed, 89) * 0.04;
                let w = 0.1 + frac(i * 13 + seed, 97) * 0.2;
                let h = 0.1 + frac(i * 19 + seed, 83) * 0.3;
                [cx as f32, cy as f32, w as f32, h as f32]
            })
            .collect()
    };
    [obj, verb, sub, boxes(11), boxes(23)]
}

/// First index of the largest logit (softmax keeps the order).
fn argmax(x: &[f32]) -> usize {
    (0..x.len()).fold(0, |b, i| if x[i] > x[b] { i } else { b })
}

#[test]
fn matches_the_official_post_processing() {
    let golden: Value = serde_json::from_str(include_str!("../fixtures/postprocess_golden.json")).unwrap();
    let labels = LabelSet::builtin("hico").unwrap();
    assert_eq!(
        (labels.objects.len(), labels.verbs.len(), labels.valid_pairs.as_ref().unwrap().iter().filter(|&&v| v).count()),
        (80, 117, 600)
    );
    let oi = LabelSet {
        name: "oi:synthetic".into(),
        objects: (0..12).map(|i| format!("class {i}")).collect(),
        verbs: (0..5).map(|i| format!("relation {i}")).collect(),
        valid_pairs: None,
        subject_classified: true,
    };
    let (hico_inputs, oi_inputs) =
        (inputs(100, &labels, &CLUSTER_OBJECTS, false), inputs(100, &oi, &OI_CLUSTER_OBJECTS, true));
    let mut names = Vec::new();
    for case in golden["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        names.push(name);
        let (labels, [obj, verb, sub, sb, ob]) = if name == "oi" { (&oi, &oi_inputs) } else { (&labels, &hico_inputs) };
        let to = labels.objects.len();
        let cfg = PostConfig {
            top_k: 100,
            nms: case["nms"].as_bool().unwrap().then_some(OFFICIAL_NMS),
            zero_shot: case["zero_shot"].as_bool().unwrap(),
        };
        let size = (case["height"].as_u64().unwrap() as usize, case["width"].as_u64().unwrap() as usize);
        let out =
            HeadOutputs { obj_logits: obj, verb_logits: verb, sub_boxes: sb, obj_boxes: ob, sub_logits: Some(sub) };
        let got = postprocess(&out, labels, size, &cfg);
        let mut want: Vec<&Value> = case["triplets"].as_array().unwrap().iter().collect();
        // the official output is grouped by triplet; compare by score, highest first
        want.sort_by(|a, b| b[4].as_f64().unwrap().total_cmp(&a[4].as_f64().unwrap()));
        assert_eq!(got.len(), want.len(), "{name}: number of detections");
        // zero-shot: the official ids index the pairs that passed the subject filter, in order
        let passed: Vec<usize> =
            (0..100).filter(|&i| !cfg.zero_shot || argmax(&sub[i * (to + 1)..i * (to + 1) + to]) == 0).collect();
        assert_eq!(
            passed.len() as u64,
            case["pairs_kept"].as_u64().unwrap(),
            "{name}: pairs passing the subject filter"
        );
        for (r, (g, w)) in got.iter().zip(&want).enumerate() {
            let id = w[0].as_u64().unwrap() as usize;
            let pair = passed[id];
            assert_eq!(
                (g.pair, g.object_label, g.verb),
                (pair, w[3].as_u64().unwrap() as usize, w[2].as_u64().unwrap() as usize),
                "{name}: rank {r}"
            );
            assert_eq!(w[1].as_u64().unwrap() as usize, id + passed.len(), "{name}: object id follows the subject ids");
            if let Some(subject) = w.get(7) {
                assert_eq!(g.subject_label, subject.as_u64().unwrap() as usize, "{name}: rank {r} subject label");
            }
            assert!(
                (g.score as f64 - w[4].as_f64().unwrap()).abs() <= 1e-6,
                "{name}: rank {r} score {} vs {}",
                g.score,
                w[4]
            );
            for (got_box, want_box) in [(&g.subject_box, &w[5]), (&g.object_box, &w[6])] {
                for (a, b) in got_box.iter().zip(want_box.as_array().unwrap()) {
                    assert!(
                        (*a as f64 - b.as_f64().unwrap()).abs() <= 1e-4,
                        "{name}: rank {r} box {got_box:?} vs {want_box}"
                    );
                }
            }
        }
        println!("{name}: {} detections match the official post-processing", got.len());
    }
    assert_eq!(names, ["hico", "hico_zero_shot", "hico_no_nms", "oi"]);
}

#[test]
fn label_sets_are_the_official_texts() {
    let hico = LabelSet::builtin("hico").unwrap();
    let t = hico.texts();
    assert_eq!(t.len(), 198);
    assert_eq!(
        (t[0].as_str(), t[9].as_str(), t[80].as_str(), t[81].as_str(), t[197].as_str()),
        ("person", "traffic light", "no objects", "adjust", "zip")
    );
    assert!(t.contains(&"brush with".to_string()) && t.contains(&"no interaction".to_string()));
    let vcoco = LabelSet::builtin("vcoco").unwrap();
    assert_eq!((vcoco.objects.len(), vcoco.verbs.len(), vcoco.texts().len()), (81, 29, 111));
    assert_eq!(vcoco.objects.last().unwrap(), "missing objects");
    assert!(LabelSet::builtin("openimages").is_none());
}

/// A NaN box (a diverged model) gives a NaN overlap, which the official NMS treats as "not
/// `<= threshold`": the candidate is dropped, and a kept NaN-box candidate drops every later
/// candidate of its triplet class. So a NaN-box detection that survives is alone in its class.
#[test]
fn nan_boxes_are_suppressed_as_numpy_does() {
    let labels = LabelSet::builtin("hico").unwrap();
    let [obj, verb, sub, mut sb, ob] = inputs(100, &labels, &CLUSTER_OBJECTS, false);
    // pairs 0, 5, 10, … share object and verb; the best-scored of them gets a NaN subject box
    let cfg = PostConfig { top_k: 100, nms: Some(OFFICIAL_NMS), zero_shot: false };
    let out =
        HeadOutputs { obj_logits: &obj, verb_logits: &verb, sub_boxes: &sb, obj_boxes: &ob, sub_logits: Some(&sub) };
    let clean = postprocess(&out, &labels, (480, 640), &cfg);
    let first = clean.iter().find(|d| d.pair % 5 == 0).expect("a detection of the first cluster").clone();
    let class = (first.object_label, first.verb);
    let mates = clean.iter().filter(|d| (d.object_label, d.verb) == class).count();
    assert!(mates > 1, "the test needs two kept detections of one class, got {mates}");
    sb[first.pair * 4] = f32::NAN;
    let out =
        HeadOutputs { obj_logits: &obj, verb_logits: &verb, sub_boxes: &sb, obj_boxes: &ob, sub_logits: Some(&sub) };
    let got = postprocess(&out, &labels, (480, 640), &cfg);
    let of_class: Vec<_> = got.iter().filter(|d| (d.object_label, d.verb) == class).collect();
    assert!(
        of_class.iter().any(|d| d.subject_box.iter().any(|v| v.is_nan())),
        "the NaN-box detection ranks first in its class"
    );
    assert_eq!(
        of_class.len(),
        1,
        "a kept NaN-box detection suppresses the rest of its class ({} kept)",
        of_class.len()
    );
}

/// Two identical pairs (same logits, same boxes): the official NMS orders a triplet's candidates
/// with `scores.argsort()[::-1]`, which for a tie puts the later candidate first, so the second
/// pair survives and suppresses the first.
#[test]
fn of_two_tied_duplicates_the_official_nms_keeps_the_later() {
    let labels = LabelSet::builtin("hico").unwrap();
    let [mut obj, mut verb, mut sub, mut sb, mut ob] = inputs(2, &labels, &CLUSTER_OBJECTS, false);
    let (to, tv) = (labels.objects.len() + 1, labels.verbs.len());
    obj.copy_within(0..to, to);
    verb.copy_within(0..tv, tv);
    sub.copy_within(0..to, to);
    sb.copy_within(0..4, 4);
    ob.copy_within(0..4, 4);
    let cfg = PostConfig { top_k: 100, nms: Some(OFFICIAL_NMS), zero_shot: false };
    let out =
        HeadOutputs { obj_logits: &obj, verb_logits: &verb, sub_boxes: &sb, obj_boxes: &ob, sub_logits: Some(&sub) };
    let got = postprocess(&out, &labels, (480, 640), &cfg);
    let best = &got[0];
    assert!(best.score > 0.0);
    let twins: Vec<usize> =
        got.iter().filter(|d| (d.object_label, d.verb) == (best.object_label, best.verb)).map(|d| d.pair).collect();
    assert_eq!(twins, [1], "the later of two tied duplicates survives");
}
