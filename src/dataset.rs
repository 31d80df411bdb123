//! Dataset runs of `rlipv2 detect`: listing the images, a stable shard split, the outputs
//! (a JSON file per image, or one JSON Lines file written append-only), resuming a run, and the
//! record of failed images. Cluster engines (Slurm arrays, Kubernetes Indexed Jobs, Ray) run one
//! shard per task; nothing here schedules.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::detect::Labels;
use crate::model::postprocess::{Detection, PairScores, PostConfig};
use crate::model::preprocess::RgbImage;
use crate::model::Config;
use crate::{Error, Result};

/// File name extensions `detect` reads in a directory.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// How a run selects detections, recorded in each document as `post` (`rlipv2 eval` compares it
/// with the official evaluation's selection).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Post {
    /// Detections kept per image (`--top-k`).
    pub top_k: usize,
    /// Score threshold (`--threshold`).
    pub threshold: f32,
    /// Triplet NMS applied.
    pub nms: bool,
    /// Only pairs whose subject is `person` (`--person-only`, the zero-shot evaluation).
    pub person_only: bool,
}

impl Post {
    /// The official post-processing (valid pairs, top 100 candidates, triplet NMS), then the
    /// best `top_k` scoring at least `threshold`.
    pub fn new(top_k: usize, threshold: f32, person_only: bool) -> Post {
        Post { top_k, threshold, nms: PostConfig::default().nms.is_some(), person_only }
    }

    /// What `Detector::detect` takes.
    pub fn config(&self) -> PostConfig {
        PostConfig { zero_shot: self.person_only, ..PostConfig::default() }
    }

    /// The detections a document keeps, best first.
    pub fn kept<'a>(&self, dets: &'a [Detection]) -> Vec<&'a Detection> {
        dets.iter().filter(|d| d.score >= self.threshold).take(self.top_k).collect()
    }
}

/// What every document of a run shares: the backend, the selection and the model.
pub struct RunInfo {
    backend: String,
    post: Post,
    model: serde_json::Value,
}

impl RunInfo {
    /// A run of the model file `weights` (configuration `config`) on `backend`.
    pub fn new(backend: &str, post: Post, weights: &Path, config: &Config) -> RunInfo {
        let model = serde_json::json!({
            "file": weights.file_name().map(|n| n.to_string_lossy().into_owned()),
            "variant": config.variant, "backbone": config.backbone, "queries": config.num_queries,
            "dataset": config.dataset,
        });
        RunInfo { backend: backend.to_string(), post, model }
    }

    /// The selection.
    pub fn post(&self) -> &Post {
        &self.post
    }

    /// One image's document, as `rlipv2 detect` writes it (a file, or a JSON line) and the
    /// Python `Detector.document` returns it: `image` (the path as given), `width`, `height`,
    /// `labels`, `backend`, `post`, `model`, `detections` (the kept ones, best first).
    /// With `pairs` (V-COCO), every query pair too (`pairs`: boxes, object, its score, the verb
    /// sigmoids).
    pub fn document(
        &self,
        image: &str,
        img: &RgbImage,
        labels: &Labels,
        dets: &[Detection],
        pairs: Option<&[PairScores]>,
    ) -> serde_json::Value {
        let kept: Vec<serde_json::Value> = self.post.kept(dets).into_iter().map(|d| d.record(&labels.set)).collect();
        let mut doc = serde_json::json!({
            "image": image, "width": img.width, "height": img.height, "labels": labels.set.name,
            "backend": self.backend, "post": self.post, "model": self.model, "detections": kept,
        });
        if let Some(ps) = pairs {
            doc["pairs"] = ps.iter().map(|p| p.record(&labels.set)).collect::<Vec<_>>().into();
        }
        doc
    }
}

/// One JSON line (compact, no newline) of a document.
pub fn line(doc: &serde_json::Value) -> String {
    serde_json::to_string(doc).expect("json")
}

/// The file stem of an image path (`photos/a.jpg` → `a`): how outputs are named and how
/// detections meet annotations.
pub fn stem(image: &str) -> String {
    let name = image.rsplit(['/', '\\']).next().unwrap_or(image);
    match name.rfind('.') {
        Some(i) if i > 0 => name[..i].to_string(),
        _ => name.to_string(),
    }
}

/// One image to run: its path and the key that decides its shard (the path relative to the
/// directory it was found in, or the path as given), the same on every machine.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    /// The file.
    pub path: PathBuf,
    /// Relative name, for the shard split.
    pub key: String,
}

/// What a run's inputs hold.
pub struct Listing {
    /// The images, directories expanded one level and sorted by name.
    pub images: Vec<Input>,
    /// Directory entries passed over (not PNG/JPEG names), with why.
    pub passed_over: Vec<(PathBuf, String)>,
}

/// The images of `inputs`: files as given, directories expanded.
pub fn list_images(inputs: &[PathBuf]) -> Result<Listing> {
    let (mut files, mut passed) = (Vec::new(), Vec::new());
    for p in inputs {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|source| Error::Io { path: p.clone(), source })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            found.sort();
            for f in found {
                let image = f
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
                if image && !f.is_dir() {
                    let key = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    files.push(Input { path: f, key });
                } else if !f.is_dir() {
                    passed.push((f, "not a .png/.jpg/.jpeg name".to_string()));
                }
            }
        } else {
            files.push(Input { path: p.clone(), key: p.to_string_lossy().into_owned() });
        }
    }
    Ok(Listing { images: files, passed_over: passed })
}

/// Shard `k` of `n` (0-based, `K/N` on the command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This shard, 0..n.
    pub k: usize,
    /// Shard count.
    pub n: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (k, n) = s.split_once('/').ok_or_else(|| format!("`{s}`: expected K/N, e.g. 0/4"))?;
        let (k, n): (usize, usize) = (
            k.trim().parse().map_err(|_| format!("`{k}` is not a number"))?,
            n.trim().parse().map_err(|_| format!("`{n}` is not a number"))?,
        );
        if n == 0 || k >= n {
            return Err(format!("shard {k}/{n}: K counts from 0 and must be below N (0/{n} … {}/{n})", n.max(1) - 1));
        }
        Ok(Shard { k, n })
    }
}

impl Shard {
    /// Whether `key` belongs to this shard: FNV-1a of the key, modulo n — a file's shard depends
    /// on its name only, not on what else is listed.
    pub fn holds(&self, key: &str) -> bool {
        let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        (h % self.n as u64) as usize == self.k
    }

    /// `-K-of-N` for output names (empty for the whole set).
    pub fn suffix(shard: Option<Shard>) -> String {
        shard.map(|s| format!("-{}-of-{}", s.k, s.n)).unwrap_or_default()
    }
}

/// Where results go.
pub enum Output {
    /// `DIR/<stem>.json` per image, each written whole (temporary file, then renamed).
    PerImage(PathBuf),
    /// One document per line in one file, appended and flushed per image.
    Lines {
        /// The file.
        path: PathBuf,
        /// It, open for appending.
        file: std::fs::File,
    },
}

impl Output {
    /// Per-image files in `dir`.
    pub fn per_image(dir: &Path) -> Output {
        Output::PerImage(dir.to_path_buf())
    }

    /// A JSON Lines file. Without `resume` an existing non-empty file is an error (appending would
    /// repeat images); with it, a last line cut short by a killed run is dropped first.
    pub fn lines(path: &Path, resume: bool) -> Result<(Output, usize)> {
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let mut file = std::fs::OpenOptions::new().read(true).append(true).create(true).open(path).map_err(io)?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(io)?;
        if !text.is_empty() && !resume {
            return Err(Error::Format {
                file: path.to_path_buf(),
                reason: "already holds results: pass --resume to continue that run, or remove the file".into(),
            });
        }
        // O_APPEND writes go to the (new) end
        let end = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let cut = text.len() - end;
        if cut > 0 {
            file.set_len(end as u64).map_err(io)?;
        }
        Ok((Output::Lines { path: path.to_path_buf(), file }, cut))
    }

    /// Image stems already in the output (what `--resume` skips): complete per-image files, or
    /// complete lines.
    pub fn done(&self) -> Result<HashSet<String>> {
        let mut done = HashSet::new();
        match self {
            Output::PerImage(dir) => {
                let Ok(entries) = std::fs::read_dir(dir) else { return Ok(done) };
                for e in entries.filter_map(|e| e.ok()) {
                    let p = e.path();
                    if p.extension().is_some_and(|x| x == "json") && !stem(&p.to_string_lossy()).starts_with('.') {
                        let doc =
                            std::fs::read(&p).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
                        if let Some(image) = doc.as_ref().and_then(|d| d.get("image")).and_then(|i| i.as_str()) {
                            done.insert(stem(image));
                        }
                    }
                }
            }
            Output::Lines { path, .. } => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.clone(), source })?;
                for line in text.lines() {
                    let doc = serde_json::from_str::<serde_json::Value>(line).ok();
                    if let Some(image) = doc.as_ref().and_then(|d| d.get("image")).and_then(|i| i.as_str()) {
                        done.insert(stem(image));
                    }
                }
            }
        }
        Ok(done)
    }

    /// Writes one image's document.
    pub fn write(&mut self, doc: &serde_json::Value) -> Result<PathBuf> {
        match self {
            Output::PerImage(dir) => {
                let image = doc["image"].as_str().unwrap_or("image");
                let path = dir.join(format!("{}.json", stem(image)));
                crate::io::write_atomic(&path, serde_json::to_string_pretty(doc).expect("json").as_bytes())?;
                Ok(path)
            }
            Output::Lines { path, file } => {
                let mut line = line(doc).into_bytes();
                line.push(b'\n');
                // one write of the whole line, then to the OS: a killed run loses at most this image
                file.write_all(&line)
                    .and_then(|_| file.flush())
                    .map_err(|source| Error::Io { path: path.clone(), source })?;
                Ok(path.clone())
            }
        }
    }
}

/// The failed images of a run, one JSON line each (`{"image", "error"}`), appended as they happen.
pub struct Failures {
    /// The file (created on the first failure).
    pub path: PathBuf,
    file: Option<std::fs::File>,
    /// Failures so far.
    pub count: usize,
}

impl Failures {
    /// A fresh record at `path` (a previous run's record is removed: its images are retried).
    pub fn new(path: PathBuf) -> Result<Failures> {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::Io { path, source: e }),
            _ => {}
        }
        Ok(Failures { path, file: None, count: 0 })
    }

    /// Records that `image` failed with `error`.
    pub fn add(&mut self, image: &Path, error: &str) -> Result<()> {
        let io = |source| Error::Io { path: self.path.clone(), source };
        if self.file.is_none() {
            self.file = Some(std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(io)?);
        }
        let mut line = serde_json::to_vec(&serde_json::json!({"image": image.display().to_string(), "error": error}))
            .expect("json");
        line.push(b'\n');
        let f = self.file.as_mut().expect("opened");
        f.write_all(&line).and_then(|_| f.flush()).map_err(|source| Error::Io { path: self.path.clone(), source })?;
        self.count += 1;
        Ok(())
    }
}
