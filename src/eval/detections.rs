//! Reading what `rlipv2 detect` wrote: a directory of per-image JSON files, or a JSON Lines
//! file (one such document per line), each `{"image", "labels", "post"?, "detections": [...]}`
//! with detections `{subject_box, object_box, object, verb, score, pair}` (names of the
//! document's label set).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use crate::dataset::{stem, Post};
use crate::model::labels::LabelSet;
use crate::model::postprocess::{Detection, PairScores};
use crate::{Error, Result};

/// One image's detections.
#[derive(Clone, Debug)]
pub struct ImageDetections {
    /// The image path as `detect` wrote it.
    pub image: String,
    /// The file (and line, for JSON Lines) it was read from.
    pub source: String,
    /// Selection settings, where recorded.
    pub post: Option<Post>,
    /// The detections, labels as indices into the label set.
    pub detections: Vec<Detection>,
    /// Every query pair, where written (`--labels vcoco`).
    pub pairs: Option<Vec<PairScores>>,
}

#[derive(serde::Deserialize)]
struct Record {
    subject_box: [f32; 4],
    object_box: [f32; 4],
    object: String,
    verb: String,
    score: f32,
    #[serde(default)]
    pair: usize,
}

#[derive(serde::Deserialize)]
struct PairRecord {
    subject_box: [f32; 4],
    object_box: [f32; 4],
    object: String,
    object_score: f32,
    verb_scores: Vec<f32>,
}

#[derive(serde::Deserialize)]
struct Document {
    image: String,
    labels: String,
    #[serde(default)]
    post: Option<Post>,
    detections: Vec<Record>,
    #[serde(default)]
    pairs: Option<Vec<PairRecord>>,
}

fn parse(text: &str, source: &str, file: &Path, set: &LabelSet) -> Result<ImageDetections> {
    let bad = |reason: String| Error::Format { file: file.to_path_buf(), reason };
    let doc: Document = serde_json::from_str(text)
        .map_err(|e| bad(format!("{source}: not a `rlipv2 detect` document ({{image, labels, detections}}): {e}")))?;
    if doc.labels != set.name {
        return Err(bad(format!(
            "{source}: detections made with --labels {}, this evaluation needs --labels {}",
            doc.labels, set.name
        )));
    }
    let index = |names: &[String], name: &str, what: &str| {
        names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| bad(format!("{source}: unknown {what} `{name}` for --labels {}", set.name)))
    };
    let mut detections = Vec::with_capacity(doc.detections.len());
    for r in doc.detections {
        detections.push(Detection {
            pair: r.pair,
            subject_box: r.subject_box,
            object_box: r.object_box,
            object_label: index(&set.objects, &r.object, "object")?,
            subject_label: 0, // HOI evaluation: the subject is `person`
            verb: index(&set.verbs, &r.verb, "verb")?,
            score: r.score,
        });
    }
    let pairs = match doc.pairs {
        None => None,
        Some(ps) => {
            let mut out = Vec::with_capacity(ps.len());
            for (i, p) in ps.into_iter().enumerate() {
                if p.verb_scores.len() != set.verbs.len() {
                    return Err(bad(format!(
                        "{source}: pair {i} has {} verb scores, --labels {} has {} verbs",
                        p.verb_scores.len(),
                        set.name,
                        set.verbs.len()
                    )));
                }
                out.push(PairScores {
                    subject_box: p.subject_box,
                    object_box: p.object_box,
                    object_label: index(&set.objects, &p.object, "object")?,
                    object_score: p.object_score,
                    verb_scores: p.verb_scores,
                });
            }
            Some(out)
        }
    };
    Ok(ImageDetections { image: doc.image, source: source.to_string(), post: doc.post, detections, pairs })
}

/// The detections under `path` (a directory of `*.json` / `*.jsonl` files — detect's
/// `failures*.jsonl` records skipped — or one JSON Lines file), keyed by image file stem; label
/// names resolved in `set`. Two documents for one stem are an error.
pub fn read(path: &Path, set: &LabelSet) -> Result<HashMap<String, ImageDetections>> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Io { path: p, source }
    };
    let mut docs: Vec<ImageDetections> = Vec::new();
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io(path))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| f.extension().is_some_and(|e| e == "json" || e == "jsonl"))
            // detect's record of failed images lives beside its results
            .filter(|f| !f.file_name().is_some_and(|n| n.to_string_lossy().starts_with("failures")))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(io(&f))?;
            if f.extension().is_some_and(|e| e == "jsonl") {
                docs.extend(read_lines(&text, &f, set)?);
            } else {
                docs.push(parse(&text, &f.display().to_string(), &f, set)?);
            }
        }
    } else {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        docs = read_lines(&text, path, set)?;
    }
    let mut out: HashMap<String, ImageDetections> = HashMap::with_capacity(docs.len());
    for d in docs {
        let key = stem(&d.image);
        if let Some(prev) = out.get(&key) {
            return Err(Error::Format {
                file: path.to_path_buf(),
                reason: format!("two detection documents for image `{key}`: {} and {}", prev.source, d.source),
            });
        }
        out.insert(key, d);
    }
    Ok(out)
}

fn read_lines(text: &str, file: &Path, set: &LabelSet) -> Result<Vec<ImageDetections>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse(l, &format!("{}:{}", file.display(), i + 1), file, set))
        .collect()
}
