//! `rlipv2._rlipv2.Detector`: a converted model on one backend, usable from any Python thread.
//!
//! Backends are not `Send` (device handles, caches), so the model lives on a thread of its own
//! and each call is a job sent to it; the caller waits with the GIL released. Python threads
//! (Ray Data actors call from a pool, a web server from its workers) can therefore share one
//! `Detector`, and other Python code runs while an image is detected. Calls run one at a time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{mpsc, Mutex};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use rlipv2::backend::Backend;
use rlipv2::model::preprocess::RgbImage;
use rlipv2::Result;

use crate::py_err;

/// What lives on the model's thread.
struct Model {
    path: PathBuf,
    file: rlipv2::io::weights::WeightFile,
    det: rlipv2::detect::Detector,
    backend: Box<dyn Backend>,
    why: String,
    tokenizer: Option<PathBuf>,
    labels: HashMap<String, Rc<rlipv2::detect::Labels>>,
}

impl Model {
    fn load(weights: PathBuf, backend: &str, tokenizer: Option<PathBuf>) -> Result<Model> {
        let (be, why) = rlipv2::backend::select(backend)?;
        let file = rlipv2::io::weights::WeightFile::open(&weights)?;
        let det = rlipv2::detect::Detector::load(&file, &weights)?;
        Ok(Model { path: weights, file, det, backend: be, why, tokenizer, labels: HashMap::new() })
    }

    /// A label set, encoded on first use and kept.
    fn label_set(&mut self, spec: &str) -> Result<Rc<rlipv2::detect::Labels>> {
        if let Some(l) = self.labels.get(spec) {
            return Ok(l.clone());
        }
        let set = self.det.label_set(spec)?;
        let l = self.det.labels(
            &self.file,
            &self.path,
            set,
            self.tokenizer.as_deref().map(Path::new),
            self.backend.as_ref(),
        )?;
        let l = Rc::new(l);
        self.labels.insert(spec.to_string(), l.clone());
        Ok(l)
    }

    fn detect(
        &mut self,
        img: &RgbImage,
        labels: &str,
        post: &rlipv2::dataset::Post,
    ) -> Result<(Rc<rlipv2::detect::Labels>, Vec<rlipv2::model::postprocess::Detection>)> {
        let set = self.label_set(labels)?;
        let mut profile = rlipv2::detect::Profile::default();
        let dets = self.det.detect(self.backend.as_ref(), img, &set, &post.config(), &mut profile)?;
        Ok((set, dets))
    }
}

type Job = Box<dyn FnOnce(&mut Model) + Send>;

/// A converted model on one backend; label sets encoded on first use and kept.
#[pyclass]
pub struct Detector {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Detector {
    /// Runs `f` on the model's thread and waits for it without the GIL.
    fn call<R: Send + 'static>(&self, py: Python<'_>, f: impl FnOnce(&mut Model) -> R + Send + 'static) -> PyResult<R> {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move |m| {
            let _ = tx.send(f(m));
        });
        let sent = self.jobs.lock().map_err(|_| stopped())?.send(job);
        sent.map_err(|_| stopped())?;
        py.detach(move || rx.recv()).map_err(|_| stopped())
    }
}

fn stopped() -> PyErr {
    PyRuntimeError::new_err(
        "rlipv2 Detector: an internal error stopped this call (details on stderr); please report it",
    )
}

#[pymethods]
impl Detector {
    #[new]
    #[pyo3(signature = (weights, backend="auto", tokenizer=None))]
    fn new(py: Python<'_>, weights: PathBuf, backend: &str, tokenizer: Option<PathBuf>) -> PyResult<Self> {
        let backend = backend.to_string();
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready_tx, ready) = mpsc::channel::<Result<()>>();
        std::thread::Builder::new()
            .name("rlipv2-detector".into())
            .spawn(move || {
                let mut model = match Model::load(weights, &backend, tokenizer) {
                    Ok(m) => {
                        let _ = ready_tx.send(Ok(()));
                        m
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                // a job that panics drops its reply channel (the caller gets an error) and the
                // thread serves the next one
                for job in inbox {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut model)));
                }
            })
            .map_err(|e| PyRuntimeError::new_err(format!("rlipv2 Detector: cannot start its thread: {e}")))?;
        py.detach(move || ready.recv()).map_err(|_| stopped())?.map_err(py_err)?;
        Ok(Detector { jobs: Mutex::new(jobs) })
    }

    /// Detections as JSON records (`rlipv2 detect`'s), best first: `image` is a path, or
    /// `(height, width, rgb_bytes)`.
    #[pyo3(signature = (image, labels, top_k, person_only, threshold))]
    fn detect_json(
        &self,
        py: Python<'_>,
        image: &Bound<'_, PyAny>,
        labels: String,
        top_k: usize,
        person_only: bool,
        threshold: f32,
    ) -> PyResult<String> {
        let img = if let Ok((h, w, data)) = image.extract::<(usize, usize, Bound<'_, pyo3::types::PyBytes>)>() {
            let data = data.as_bytes().to_vec();
            if data.len() != h * w * 3 {
                return Err(PyValueError::new_err(format!(
                    "detect: image has {} bytes, expected height·width·3 = {}",
                    data.len(),
                    h * w * 3
                )));
            }
            RgbImage { width: w, height: h, data }
        } else {
            let path: PathBuf = image.extract()?;
            py.detach(|| rlipv2::io::image::load_rgb(&path)).map_err(py_err)?
        };
        if img.width == 0 || img.height == 0 {
            return Err(PyValueError::new_err("detect: the image is empty"));
        }
        let post = rlipv2::dataset::Post::new(top_k, threshold, person_only);
        self.call(py, move |m| -> Result<String> {
            let (set, dets) = m.detect(&img, &labels, &post)?;
            let kept: Vec<serde_json::Value> = post.kept(&dets).into_iter().map(|d| d.record(&set.set)).collect();
            Ok(serde_json::Value::Array(kept).to_string())
        })?
        .map_err(py_err)
    }

    /// The document `rlipv2 detect` writes for the image file `path` (one JSON line of
    /// `--format jsonl`, byte for byte): the same fields, the same selection.
    #[pyo3(signature = (path, labels, top_k, person_only, threshold))]
    fn document_json(
        &self,
        py: Python<'_>,
        path: PathBuf,
        labels: String,
        top_k: usize,
        person_only: bool,
        threshold: f32,
    ) -> PyResult<String> {
        let img = py.detach(|| rlipv2::io::image::load_rgb(&path)).map_err(py_err)?;
        let post = rlipv2::dataset::Post::new(top_k, threshold, person_only);
        self.call(py, move |m| -> Result<String> {
            let set = m.label_set(&labels)?;
            let mut profile = rlipv2::detect::Profile::default();
            let (dets, pairs) =
                m.det.detect_with_pairs(m.backend.as_ref(), &img, &set, &post.config(), &mut profile)?;
            let run = rlipv2::dataset::RunInfo::new(m.backend.kind().name(), post, &m.path, &m.det.config);
            let doc = run.document(&path.display().to_string(), &img, &set, &dets, pairs.as_deref());
            Ok(rlipv2::dataset::line(&doc))
        })?
        .map_err(py_err)
    }

    /// The model's configuration and the backend, as JSON.
    fn info_json(&self, py: Python<'_>) -> PyResult<String> {
        self.call(py, |m| {
            serde_json::json!({
                "weights": m.path.display().to_string(),
                "config": m.det.config,
                "backend": m.backend.kind().name(),
                "device": m.backend.device(),
                "backend_choice": m.why,
            })
            .to_string()
        })
    }
}
