//! `rlipv2 convert`: an official RLIPv2 checkpoint (`torch.save` zip) → safetensors, with no
//! Python and no pickle code run (see [`crate::io::pickle`]).
//!
//! Takes `ckpt['model']`, drops the decoders' aliased box-MLP keys and `position_ids` (spec §4.1),
//! reads the configuration from `ckpt['args']`, checks every tensor against the schema of that
//! configuration, and writes the tensors (one at a time, as they are read) plus the configuration
//! as safetensors metadata to a temporary file that is renamed into place only when all is well.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use safetensors::tensor::View;

use crate::error::{Error, Result};
use crate::io::pickle::{StorageDtype, TensorRef};
use crate::io::pth::{self, Checkpoint};
use crate::model::{config::Config, schema};

/// Metadata keys of a converted file.
pub const META_FORMAT: &str = "rlipv2.format";
/// Metadata key: the model configuration as JSON ([`crate::model::Config`]).
pub const META_CONFIG: &str = "rlipv2.config";
/// Metadata key: the checkpoint's `args` namespace as JSON, as read.
pub const META_ARGS: &str = "rlipv2.args";
/// Metadata key: the checkpoint file the model was converted from.
pub const META_SOURCE: &str = "rlipv2.source";
/// Comma-separated built-in label sets whose embeddings are baked in.
pub const META_LABEL_SETS: &str = "rlipv2.label_sets";
/// Metadata key: which official model this is in one line ([`Config::summary`]).
pub const META_VARIANT: &str = "rlipv2.variant";
/// Version of the converted layout.
pub const FORMAT_VERSION: &str = "1";

/// What a conversion did.
#[derive(Debug)]
pub struct Report {
    /// The configuration read from the checkpoint's `args`.
    pub config: Config,
    /// Tensors written.
    pub tensors: usize,
    /// Bytes of tensor data written.
    pub bytes: u64,
    /// Aliased `*.bbox_embed.*` keys dropped (they share storage with kept keys).
    pub dropped_aliases: usize,
    /// Buffers dropped (`position_ids`).
    pub dropped_buffers: usize,
    /// Built-in label sets whose embeddings were baked in.
    pub label_sets: Vec<String>,
}

/// State shared by the lazily read tensors: the first read error, and progress.
struct Shared<'p> {
    failed: RefCell<Option<Error>>,
    done: RefCell<usize>,
    total: usize,
    progress: RefCell<&'p mut dyn FnMut(usize, usize)>,
}

/// Where a written tensor comes from.
enum Source {
    /// A checkpoint tensor, read only when the writer asks for its bytes.
    Checkpoint(TensorRef),
    /// Computed here (label embeddings), f32.
    Computed(Vec<u8>),
}

/// One tensor of the output file.
struct Lazy<'a, 'p> {
    ck: &'a Checkpoint,
    shared: &'a Shared<'p>,
    name: String,
    source: Source,
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    len: usize,
}

impl View for &Lazy<'_, '_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        let sh = self.shared;
        let bytes = match &self.source {
            _ if sh.failed.borrow().is_some() => vec![0; self.len],
            Source::Computed(b) => b.clone(),
            Source::Checkpoint(t) => self.ck.read(&self.name, t).unwrap_or_else(|e| {
                *sh.failed.borrow_mut() = Some(e);
                vec![0; self.len]
            }),
        };
        *sh.done.borrow_mut() += 1;
        let done = *sh.done.borrow();
        (sh.progress.borrow_mut())(done, sh.total);
        Cow::Owned(bytes)
    }
    fn data_len(&self) -> usize {
        self.len
    }
}

fn same_tensor(ck: &Checkpoint, a: (&str, &TensorRef), b: (&str, &TensorRef)) -> Result<bool> {
    if a.1 == b.1 {
        return Ok(true);
    }
    Ok(a.1.shape == b.1.shape && a.1.storage.dtype == b.1.storage.dtype && ck.read(a.0, a.1)? == ck.read(b.0, b.1)?)
}

/// Name of the baked label embeddings of a built-in label set: `[T, 768]` pooled text-encoder
/// outputs of its texts (objects, `no objects`, verbs).
pub fn label_tensor(set: &str) -> String {
    format!("rlipv2.labels.{set}")
}

/// The built-in label sets baked by `--tokenizer`.
pub const BAKED_LABEL_SETS: [&str; 2] = ["hico", "vcoco"];

/// Converts `src` to `dst`; with a RoBERTa `tokenizer.json`, also bakes the label embeddings of
/// the built-in label sets (see [`label_tensor`]). `progress(done, total)` is called after each
/// tensor is written.
pub fn convert(
    src: &Path,
    dst: &Path,
    tokenizer: Option<&Path>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report> {
    let fail = |reason: String| Error::Format { file: src.to_path_buf(), reason };
    let ck = Checkpoint::open(src)?;
    let model = ck.root.get("model").ok_or_else(|| {
        fail(format!(
            "no `model` entry: the checkpoint's top level is a {} with keys {}",
            ck.root.kind(),
            ck.root
                .items()
                .map(|i| i.iter().filter_map(|(k, _)| k.as_str().map(str::to_string)).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        ))
    })?;
    let args = ck.root.get("args").ok_or_else(|| {
        fail(
            "no `args` entry: the configuration cannot be read (official checkpoints save `args`, main.py:743-757)"
                .into(),
        )
    })?;
    let tensors = pth::state_dict(src, &model)?;
    let by_name: HashMap<&str, &TensorRef> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    if by_name.len() != tensors.len() {
        return Err(fail("the state dict repeats a key".into()));
    }
    let shape_of = |k: &str| by_name.get(k).map(|t| t.shape.iter().map(|&d| d as usize).collect::<Vec<usize>>());
    let config = Config::from_checkpoint(&args, shape_of)
        .map_err(|e| fail(format!("unsupported or incomplete configuration:\n{e}")))?;

    // drop aliases (checked to be the same data) and buffers
    let (mut aliases, mut buffers) = (0, 0);
    let mut kept: Vec<(&str, &TensorRef)> = Vec::new();
    for (name, t) in &tensors {
        match schema::dropped(name, &config) {
            Some(Some(target)) => {
                let Some(tt) = by_name.get(target.as_str()) else {
                    return Err(fail(format!("`{name}` aliases `{target}`, which is missing")));
                };
                if !same_tensor(&ck, (name, t), (&target, tt))? {
                    return Err(fail(format!("`{name}` should alias `{target}` but holds different values")));
                }
                aliases += 1;
            }
            Some(None) => buffers += 1,
            None => kept.push((name, t)),
        }
    }

    // the schema: every missing, unexpected and mis-shaped tensor at once
    let expected = schema::expected(&config);
    let want: HashMap<&str, &Vec<usize>> = expected.iter().map(|(k, s)| (k.as_str(), s)).collect();
    let have: HashSet<&str> = kept.iter().map(|(n, _)| *n).collect();
    let mut problems: Vec<String> = expected
        .iter()
        .filter(|(k, _)| !have.contains(k.as_str()))
        .map(|(k, s)| format!("missing `{k}` {s:?}"))
        .collect();
    for (name, t) in &kept {
        let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
        match want.get(name) {
            None => problems.push(format!("unexpected `{name}` {shape:?}")),
            Some(s) if **s != shape => problems.push(format!("`{name}` has shape {shape:?}, expected {s:?}")),
            _ if t.storage.dtype != StorageDtype::F32 => {
                problems.push(format!("`{name}` is {}, expected float32", t.storage.dtype.name()))
            }
            _ => {}
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        problems.truncate(50);
        return Err(fail(format!(
            "{n} tensor(s) do not match the {} {} schema (num_queries {}):\n  {}{}",
            config.variant,
            config.backbone,
            config.num_queries,
            problems.join("\n  "),
            if n > 50 { "\n  …" } else { "" }
        )));
    }
    for (name, t) in &kept {
        ck.locate(name, t)?;
    }
    let baked = match tokenizer {
        Some(tok) => bake_labels(&ck, &by_name, &config, tok)?,
        None => Vec::new(),
    };

    // write, lazily, to a temporary file; rename when every tensor was read
    let shared = Shared {
        failed: RefCell::new(None),
        done: RefCell::new(0),
        total: kept.len() + baked.len(),
        progress: RefCell::new(progress),
    };
    let mut lazies = Vec::with_capacity(kept.len() + baked.len());
    for (name, t) in &kept {
        let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
        let len = shape.iter().product::<usize>() * t.storage.dtype.size();
        lazies.push(Lazy {
            ck: &ck,
            shared: &shared,
            name: name.to_string(),
            source: Source::Checkpoint((*t).clone()),
            dtype: pth::safetensors_dtype(t.storage.dtype),
            shape,
            len,
        });
    }
    let label_sets: Vec<&str> = baked.iter().map(|(set, _, _)| *set).collect();
    for (set, rows, data) in baked {
        let bytes: Vec<u8> = bytemuck::cast_slice(&data).to_vec();
        lazies.push(Lazy {
            ck: &ck,
            shared: &shared,
            name: label_tensor(set),
            len: bytes.len(),
            source: Source::Computed(bytes),
            dtype: safetensors::Dtype::F32,
            shape: vec![rows, data.len() / rows],
        });
    }
    let bytes: u64 = lazies.iter().map(|l| l.len as u64).sum();
    let written_tensors = lazies.len();
    let mut meta = HashMap::new();
    meta.insert(META_FORMAT.to_string(), FORMAT_VERSION.to_string());
    meta.insert(META_CONFIG.to_string(), serde_json::to_string(&config).expect("config serializes"));
    meta.insert(META_VARIANT.to_string(), config.summary());
    meta.insert(META_ARGS.to_string(), args.render(4));
    meta.insert(META_SOURCE.to_string(), src.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    if !label_sets.is_empty() {
        meta.insert(META_LABEL_SETS.to_string(), label_sets.join(","));
    }
    let tmp = temp_path(dst);
    let io = |source| Error::Io { path: dst.to_path_buf(), source };
    let written = safetensors::tensor::serialize_to_file(lazies.iter().map(|l| (l.name.clone(), l)), Some(meta), &tmp);
    drop(lazies);
    let outcome = match (written, shared.failed.into_inner()) {
        (_, Some(e)) => Err(e),
        (Err(e), None) => Err(Error::Format { file: dst.to_path_buf(), reason: format!("writing safetensors: {e}") }),
        (Ok(()), None) => readable(&tmp).and_then(|_| std::fs::rename(&tmp, dst)).map_err(io),
    };
    if outcome.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    outcome?;
    Ok(Report {
        config,
        tensors: written_tensors,
        bytes,
        dropped_aliases: aliases,
        dropped_buffers: buffers,
        label_sets: label_sets.iter().map(|s| s.to_string()).collect(),
    })
}

/// Runs the checkpoint's text encoder (cpu backend) on every built-in label set:
/// `(set, T, [T·768] pooled)`.
fn bake_labels(
    ck: &Checkpoint,
    by_name: &HashMap<&str, &TensorRef>,
    config: &Config,
    tokenizer: &Path,
) -> Result<Vec<(&'static str, usize, Vec<f32>)>> {
    use crate::graph::text::{self, TextEncoder};
    // the schema check has already matched every tensor's shape to the configuration
    let source = |full: &str, _shape: &[usize]| {
        let t = by_name.get(full).ok_or_else(|| Error::Format {
            file: ck.path().to_path_buf(),
            reason: format!("text encoder tensor `{full}` is missing"),
        })?;
        Ok(bytemuck::pod_collect_to_vec(&ck.read(full, t)?))
    };
    let enc = TextEncoder::load(config.text.clone(), &crate::graph::vars::Vars::new(&source).pp(text::PREFIX))?;
    let cpu = crate::backend::open(crate::backend::BackendKind::Cpu)?;
    let mut out = Vec::new();
    for set in BAKED_LABEL_SETS {
        let labels = crate::model::labels::LabelSet::builtin(set).expect("built-in label set");
        let texts = labels.texts();
        let ids = text::tokenize(tokenizer, &texts)?;
        eprintln!("encoding the {} label texts of `{set}` …", texts.len());
        out.push((set, texts.len(), enc.encode(cpu.as_ref(), &ids)?));
    }
    Ok(out)
}

/// The writer creates the file owner-only; a converted model is an ordinary readable file.
fn readable(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn temp_path(dst: &Path) -> std::path::PathBuf {
    let dir = dst.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = dst.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.join(format!(".{name}.tmp-{}", std::process::id()))
}
