//! Detection end to end: a converted model file, an image, a label set → ⟨subject, verb, object⟩
//! detections. Image → pre-processing → image front → ALIF encoder → decoders and heads →
//! post-processing, with per-stage times.

use std::path::Path;
use web_time::Instant;

use crate::backend::{Backend, Ops, Tensor};
use crate::convert::{label_tensor, META_CONFIG};
use crate::error::{Error, Result};
use crate::graph::backbone::Feature;
use crate::graph::decoder::{Decoders, Memory, Outputs};
use crate::graph::encoder::Encoder;
use crate::graph::front::ImageFront;
use crate::graph::text::{self, TextEncoder};
use crate::graph::vars::Vars;
use crate::io::weights::WeightFile;
use crate::model::labels::LabelSet;
use crate::model::postprocess::{pairs, postprocess, Detection, PairScores, PostConfig};
use crate::model::preprocess::{preprocess, RgbImage};
use crate::model::Config;

/// The image path of a converted model (image front, ALIF encoder, decoders and heads), ready to detect on any backend.
pub struct Detector {
    /// The configuration read from the model file.
    pub config: Config,
    front: ImageFront,
    encoder: Encoder,
    decoders: Decoders,
}

/// A label set with its language tokens `[T, 768]` (objects, `no objects`, verbs).
pub struct Labels {
    /// The labels (objects, verbs, valid pairs).
    pub set: LabelSet,
    /// Language tokens `[T, 768]`.
    pub lang: Vec<f32>,
}

/// Per stage of one image: seconds, and the process's peak resident memory after it (bytes,
/// where the OS reports it).
#[derive(Default, Debug, Clone)]
pub struct Profile {
    /// Per stage: name, seconds, peak RSS in bytes after it.
    pub stages: Vec<(&'static str, f64, Option<u64>)>,
    /// Per stage, the seconds its ops took by [`crate::backend::op_time::OpKind`] (zeros unless
    /// `op_time::enable(true)`; host backends only, see there).
    pub ops: Vec<[f64; 5]>,
}

impl Profile {
    fn time<T>(&mut self, stage: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let (t, ops) = (Instant::now(), crate::backend::op_time::snapshot());
        let r = f()?;
        self.stages.push((stage, t.elapsed().as_secs_f64(), peak_rss()));
        let now = crate::backend::op_time::snapshot();
        self.ops.push(std::array::from_fn(|i| now[i] - ops[i]));
        Ok(r)
    }
}

/// `VmHWM` from /proc/self/status (Linux).
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// FNV-1a, 64 bit: a hash that is the same in every build (the cache key outlives the binary).
fn fnv(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// `<model>.labels/<key>.f32`, the key covering the texts, the tokenizer file and the model
/// file's size and modification time.
fn cache_path(model: &Path, tokenizer: &Path, texts: &[String]) -> Option<std::path::PathBuf> {
    let meta = std::fs::metadata(model).ok()?;
    let mtime = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos() as u64;
    let mut h = fnv(0xcbf2_9ce4_8422_2325, &std::fs::read(tokenizer).ok()?);
    for t in texts {
        h = fnv(h, t.as_bytes());
        h = fnv(h, b"\n");
    }
    h = fnv(h, &meta.len().to_le_bytes());
    h = fnv(h, &mtime.to_le_bytes());
    let mut dir = model.as_os_str().to_owned();
    dir.push(".labels");
    Some(std::path::PathBuf::from(dir).join(format!("{h:016x}.f32")))
}

impl Detector {
    /// Reads the configuration from the file's metadata and loads the image-path weights.
    pub fn load(file: &WeightFile, path: &Path) -> Result<Self> {
        let raw = file.metadata.get(META_CONFIG).ok_or_else(|| Error::Format {
            file: path.to_path_buf(),
            reason: format!("no `{META_CONFIG}` metadata: convert the checkpoint with `rlipv2 convert`"),
        })?;
        let config: Config = serde_json::from_str(raw)
            .map_err(|e| Error::Format { file: path.to_path_buf(), reason: format!("bad `{META_CONFIG}`: {e}") })?;
        let get = |n: &str, s: &[usize]| file.get(n, s);
        let vars = Vars::new(&get);
        let c = &config;
        let variant = c.family().map_err(|reason| Error::Format { file: path.to_path_buf(), reason })?;
        let front = ImageFront::load_for(&c.backbone, &vars)?;
        let enc_vars = vars.pp(variant.encoder_prefix());
        let (levels, ffn) = (c.num_feature_levels, c.dim_feedforward);
        let encoder = Encoder::load(c.enc_layers, levels, ffn, c.fusion_interval, c.gate(), &enc_vars)?;
        let decoders = Decoders::load(variant, c.num_queries, c.dec_layers, levels, ffn, &vars)?;
        Ok(Detector { config, front, encoder, decoders })
    }

    /// The label set `spec` names: `model` (the head the checkpoint was trained for: `hico` or
    /// `vcoco` from its `dataset_file`), `hico`, `vcoco`, or a JSON file of custom labels.
    pub fn label_set(&self, spec: &str) -> Result<LabelSet> {
        if spec != "model" {
            return LabelSet::resolve(spec);
        }
        let head = self.config.dataset.as_str();
        if head == "oi_sgg" {
            let hint = crate::model::labels::OI_DICT_HINT;
            return Err(Error::Limit { op: "detect", what: "labels".into(), reason: hint.into() });
        }
        LabelSet::builtin(head).ok_or_else(|| Error::Limit {
            op: "detect",
            what: "labels".into(),
            reason: format!("the model's head `{head}` has no built-in label set: pass --labels hico|vcoco|FILE"),
        })
    }

    /// Language tokens of `set`: baked in the file, or encoded with the file's text encoder and
    /// `tokenizer` (needed for custom sets and files converted without `--tokenizer`). Encoded
    /// sets are cached beside the model file (`<model>.labels/`), so a set is encoded once.
    pub fn labels(
        &self,
        file: &WeightFile,
        model: &Path,
        set: LabelSet,
        tokenizer: Option<&Path>,
        be: &dyn Backend,
    ) -> Result<Labels> {
        let texts = set.texts();
        let t = texts.len();
        let baked = label_tensor(&set.name);
        if tokenizer.is_none() && file.contains(&baked) {
            return Ok(Labels { lang: file.get(&baked, &[t, 768])?, set });
        }
        let Some(tok) = tokenizer else {
            return Err(Error::Limit { op: "detect", what: "labels".into(), reason: format!("label set `{}` is not baked into the model file: pass --tokenizer (the roberta-base tokenizer.json), or convert with --tokenizer", set.name) });
        };
        let cache = cache_path(model, tok, &texts);
        if let Some(lang) = cache.as_deref().and_then(|c| std::fs::read(c).ok()).filter(|b| b.len() == t * 768 * 4) {
            eprintln!("labels: {} texts from the cache", t);
            return Ok(Labels { lang: bytemuck::pod_collect_to_vec(&lang), set });
        }
        let source = |n: &str, s: &[usize]| file.get(n, s);
        let enc = TextEncoder::load(self.config.text.clone(), &Vars::new(&source).pp(text::PREFIX))?;
        eprintln!("labels: encoding {t} texts with the model's text encoder");
        let lang = enc.encode(be, &text::tokenize(tok, &texts)?)?;
        if let Some(c) = cache {
            // a cache that cannot be written (read-only place) only costs the next run an encode
            let tmp = c.with_extension(format!("tmp-{}", std::process::id()));
            let written = c
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|_| std::fs::write(&tmp, bytemuck::cast_slice(&lang)))
                .and_then(|_| std::fs::rename(&tmp, &c));
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                eprintln!("labels: not cached ({}: {e})", c.display());
            }
        }
        Ok(Labels { set, lang })
    }

    /// Detections in `img` (original-pixel boxes), best first. The device finishes each stage's
    /// work before the next starts, so that per-stage times are the stages' own.
    pub fn detect(
        &self,
        be: &dyn Backend,
        img: &RgbImage,
        labels: &Labels,
        post: &PostConfig,
        profile: &mut Profile,
    ) -> Result<Vec<Detection>> {
        Ok(self.detect_with_pairs(be, img, labels, post, profile)?.0)
    }

    /// [`detect`](Self::detect), and for label sets whose official evaluation scores every
    /// query pair (V-COCO) every pair as well.
    pub fn detect_with_pairs(
        &self,
        be: &dyn Backend,
        img: &RgbImage,
        labels: &Labels,
        post: &PostConfig,
        profile: &mut Profile,
    ) -> Result<(Vec<Detection>, Option<Vec<PairScores>>)> {
        self.detect_in(be, img, None, labels, post, profile)
    }

    /// [`detect_with_pairs`](Self::detect_with_pairs) for an image of a padded batch: `canvas`
    /// is the `(H, W)` the batch's pre-processed images are padded to ([`batch_canvas`]), so the
    /// result is the official batched forward's for this image. `None`: unpadded.
    pub fn detect_in(
        &self,
        be: &dyn Backend,
        img: &RgbImage,
        canvas: Option<(usize, usize)>,
        labels: &Labels,
        post: &PostConfig,
        profile: &mut Profile,
    ) -> Result<(Vec<Detection>, Option<Vec<PairScores>>)> {
        let out = self.heads_in(be, img, canvas, labels, profile)?;
        profile.time("post-processing", || {
            let size = (img.height, img.width);
            let dets = postprocess(&out.view(), &labels.set, size, post);
            let all = labels.set.evaluated_on_pairs().then(|| pairs(&out.view(), &labels.set, size));
            Ok((dets, all))
        })
    }

    /// The heads' outputs for `img` (every query), before post-processing.
    pub fn heads(&self, be: &dyn Backend, img: &RgbImage, labels: &Labels, profile: &mut Profile) -> Result<Outputs> {
        self.heads_in(be, img, None, labels, profile)
    }

    /// [`heads`](Self::heads) on a padded canvas (see [`detect_in`](Self::detect_in)).
    pub fn heads_in(
        &self,
        be: &dyn Backend,
        img: &RgbImage,
        canvas: Option<(usize, usize)>,
        labels: &Labels,
        profile: &mut Profile,
    ) -> Result<Outputs> {
        let x = profile.time("preprocess", || Ok(preprocess(img)))?;
        let valid = (x.height, x.width);
        let image = match canvas {
            Some(c) if c.0 < valid.0 || c.1 < valid.1 => {
                return Err(Error::Limit {
                    op: "detect",
                    what: "batch canvas".into(),
                    reason: format!("{}×{} is smaller than the pre-processed image {}×{}", c.0, c.1, valid.0, valid.1),
                })
            }
            Some((h, w)) => Feature { c: 3, h: x.height, w: x.width, data: x.data }.padded(h, w),
            None => Feature { c: 3, h: x.height, w: x.width, data: x.data },
        };
        let mut tokens = profile
            .time("backbone + projections", || settled(be, self.front.forward_padded(be, image, valid), |t| &t.src))?;
        let (memory, states) = profile.time("encoder + fusion", || {
            settled(be, self.encoder.forward_t(be, &mut tokens, &labels.lang), |r| &r.0)
        })?;
        let objects = labels.set.objects.len() + 1;
        let lang = states.last().expect("at least one fusion round");
        profile.time("decoders + heads", || self.decoders.forward(be, &Memory::of(&memory, &tokens), lang, objects))
    }
}

/// The `(H, W)` a batch of images is padded to (NestedTensor, util/misc.py:284-317): the largest
/// pre-processed height and width among them (no rounding to a multiple).
pub fn batch_canvas<'a>(images: impl IntoIterator<Item = &'a RgbImage>) -> Option<(usize, usize)> {
    images
        .into_iter()
        .map(|i| crate::model::preprocess::target_size(i.width, i.height))
        .reduce(|a, b| (a.0.max(b.0), a.1.max(b.1)))
}

/// `r` once the device has finished writing the tensor `of(r)` (its last element is read back): a
/// GPU backend queues a stage's work without waiting, and its time would otherwise be counted in
/// the stage that next reads something back.
fn settled<T>(be: &dyn Backend, r: Result<T>, of: impl Fn(&T) -> &Tensor) -> Result<T> {
    let r = r?;
    let t = of(&r);
    if !t.is_empty() {
        be.download(&be.slice_t(t, t.len() - 1, 1)?)?;
    }
    Ok(r)
}
