//! The browser page's WebAssembly module: rlipv2's `wgpu` backend on the visitor's WebGPU,
//! `detect` on their image and converted model, and the `ms_deform_attn` micro-benchmark.
//!
//! The crate is synchronous; WebGPU answers through promises that settle only when the page's
//! event loop runs. So every call that touches the GPU is a *job*: the page queues it (`open`,
//! `load_model`, `detect`, `msda`), then calls the raw export [`rlipv2_run`] through
//! `WebAssembly.promising`, and a wait inside the job suspends to the event loop through the
//! page's `WebAssembly.Suspending` import (JSPI; `web/rlipv2.js` wires both). The job's answer is
//! JSON ([`take_result`]); the annotated image and the benchmark's tensors are fetched after it.

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

use rlipv2::backend::cpu::CpuBackend;
use rlipv2::backend::wgpu::WgpuBackend;
use rlipv2::backend::{Device, Ops};
use rlipv2::dataset::{Post, RunInfo};
use rlipv2::detect::{Detector, Labels, Profile};
use rlipv2::io::weights::{ReadAt, WeightFile};
use rlipv2::model::postprocess::Detection;
use rlipv2::model::preprocess::RgbImage;
use rlipv2::problem::{DType, Form, MsDeformAttnProblem, RefKind};
use rlipv2::seeded::MsDeformAttnData;
use rlipv2::{Error, Result};
use serde_json::{json, Value};
use wasm_bindgen::prelude::*;
use web_time::Instant;

// The page's suspending import (rlipv2.js): returns once the event loop has run a turn.
#[link(wasm_import_module = "./event_loop.js")]
extern "C" {
    fn turn();
}

fn event_loop_turn() {
    // SAFETY: an import without arguments or results; the page provides it (rlipv2.js)
    unsafe { turn() }
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(s: &str);
}

type Job = Box<dyn FnOnce(&mut Session) -> Result<Value>>;

/// What the page has opened and loaded, and the last job's outputs.
#[derive(Default)]
struct Session {
    backend: Option<Arc<WgpuBackend>>,
    model: Option<Model>,
    job: Option<Job>,
    result: Option<std::result::Result<String, String>>,
    /// The last detect's annotated image.
    drawn: Option<RgbImage>,
    /// The last benchmark's tensors by name (inputs and output), for the page's tests.
    tensors: Vec<(&'static str, Vec<f32>)>,
}

struct Model {
    name: String,
    detector: Detector,
    labels: Labels,
}

thread_local! {
    static SESSION: RefCell<Session> = RefCell::default();
}

#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| console_error(&format!("rlipv2 panicked: {info}"))));
    rlipv2::backend::wgpu::set_event_loop_yield(event_loop_turn);
}

/// Runs the queued job (the page calls it through `WebAssembly.promising`).
#[no_mangle]
pub extern "C" fn rlipv2_run() {
    SESSION.with(|s| {
        let Ok(mut s) = s.try_borrow_mut() else {
            console_error("rlipv2_run: a job is already running");
            return;
        };
        let answer = match s.job.take() {
            Some(job) => job(&mut s).map(|v| v.to_string()).map_err(|e| e.to_string()),
            None => Err("no job queued".to_string()),
        };
        s.result = Some(answer);
    })
}

fn queue(job: Job) -> std::result::Result<(), JsError> {
    SESSION.with(|s| {
        let mut s = s.try_borrow_mut().map_err(|_| JsError::new("busy: a job is running"))?;
        s.job = Some(job);
        s.result = None;
        Ok(())
    })
}

/// The last job's answer (JSON), or its error as an exception.
#[wasm_bindgen]
pub fn take_result() -> std::result::Result<String, JsError> {
    SESSION.with(|s| {
        let mut s = s.try_borrow_mut().map_err(|_| JsError::new("busy: a job is running"))?;
        match s.result.take() {
            Some(Ok(json)) => Ok(json),
            Some(Err(e)) => Err(JsError::new(&e)),
            None => Err(JsError::new("no result: run a queued job first")),
        }
    })
}

/// Job: opens the browser's WebGPU adapter with the `wgpu` backend; answers the adapter and its limits.
#[wasm_bindgen]
pub fn open() -> std::result::Result<(), JsError> {
    queue(Box::new(|s| {
        let be = Arc::new(WgpuBackend::new()?);
        let info = json!({
            "device": be.device(),
            "details": be.details().into_iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        });
        s.backend = Some(be);
        Ok(info)
    }))
}

fn backend(s: &Session) -> Result<Arc<WgpuBackend>> {
    s.backend.clone().ok_or_else(|| Error::BackendUnavailable {
        backend: "wgpu".into(),
        reason: "not opened yet (call open first)".into(),
    })
}

/// The visitor's model file, read where the page holds it (no copy of the whole file here).
struct JsBytes(js_sys::Uint8Array);

// SAFETY: wasm32-unknown-unknown without atomics runs one thread; the array never crosses one.
unsafe impl Send for JsBytes {}
unsafe impl Sync for JsBytes {}

impl ReadAt for JsBytes {
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.0.length() as u64)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let end = offset.checked_add(buf.len() as u64).filter(|&e| e <= self.0.length() as u64);
        let Some(end) = end else {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        };
        self.0.subarray(offset as u32, end as u32).copy_to(buf);
        Ok(())
    }
}

/// Job: loads a converted model (`rlipv2 convert` output; `name` is its file name) with the
/// label set it was fine-tuned for, baked in the file.
#[wasm_bindgen]
pub fn load_model(name: String, bytes: js_sys::Uint8Array) -> std::result::Result<(), JsError> {
    queue(Box::new(move |s| {
        let be = backend(s)?;
        s.model = None; // the previous model's memory first
        let path = Path::new(&name);
        let file = WeightFile::from_source(path, Box::new(JsBytes(bytes)))?;
        let detector = Detector::load(&file, path)?;
        let set = detector.label_set("model")?;
        let labels = detector.labels(&file, path, set, None, be.as_ref())?;
        let (tensors, params) = file.counts();
        let c = &detector.config;
        let info = json!({
            "file": name, "tensors": tensors, "values": params, "variant": c.variant,
            "backbone": c.backbone, "queries": c.num_queries, "dataset": c.dataset,
            "labels": labels.set.name, "objects": labels.set.objects.len(), "verbs": labels.set.verbs.len(),
        });
        s.model = Some(Model { name, detector, labels });
        Ok(info)
    }))
}

/// Job: detects in the image file `bytes` (PNG or JPEG; `name` names it), keeping the best
/// `top_k` scoring at least `threshold`, and draws the best `draw` on the image
/// ([`take_drawn`]). Answers `rlipv2 detect`'s JSON document plus `stages` (seconds per stage)
/// and `seconds` (the whole call).
#[wasm_bindgen]
pub fn detect(name: String, bytes: Vec<u8>, top_k: u32, threshold: f32, draw: u32) -> std::result::Result<(), JsError> {
    queue(Box::new(move |s| {
        let be = backend(s)?;
        let m = s.model.as_ref().ok_or_else(|| Error::limit("detect", "model", "no model loaded"))?;
        let img = rlipv2::io::image::decode_rgb(&name, &bytes)?;
        drop(bytes);
        let post = Post::new(top_k as usize, threshold, false);
        let mut profile = Profile::default();
        let t = Instant::now();
        let (dets, pairs) = m.detector.detect_with_pairs(be.as_ref(), &img, &m.labels, &post.config(), &mut profile)?;
        let seconds = t.elapsed().as_secs_f64();
        let run = RunInfo::new("wgpu", post, Path::new(&m.name), &m.detector.config);
        let mut doc = run.document(&name, &img, &m.labels, &dets, pairs.as_deref());
        doc["stages"] = profile.stages.iter().map(|(n, secs, _)| json!([n, secs])).collect::<Vec<_>>().into();
        doc["seconds"] = seconds.into();
        let shown: Vec<Detection> = run.post().kept(&dets).into_iter().take(draw as usize).cloned().collect();
        s.drawn = Some(rlipv2::io::draw::annotate(&img, &shown, &m.labels.set, draw as usize));
        Ok(doc)
    }))
}

/// The last detect's annotated image as RGBA (width × height × 4 bytes; the size is the
/// document's `width` and `height`), or nothing.
#[wasm_bindgen]
pub fn take_drawn() -> Option<Vec<u8>> {
    SESSION.with(|s| {
        let img = s.try_borrow_mut().ok()?.drawn.take()?;
        Some(img.data.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect())
    })
}

/// Job: `ms_deform_attn` on seeded inputs (JSON `spec`: a `case` of the bench suite —
/// `encoder`, `decoder`, `small` — or `queries`, `heads`, `channels`, `points` and `levels`
/// [[H, W], …]; `form` official | points | boxes; `seed`; `repeat`) with
/// the `wgpu` backend: checks it against the cpu backend (here, in WebAssembly) and times
/// `repeat` batches of launches. Answers the problem, `max_abs_diff` vs cpu, ms per launch
/// (min, median), GB/s (the problem's bytes moved / min time) and the device; the inputs and
/// the output stay for [`take_tensor`].
#[wasm_bindgen]
pub fn msda(spec: String) -> std::result::Result<(), JsError> {
    queue(Box::new(move |s| {
        let be = backend(s)?;
        let bad = |reason: String| Error::limit("ms_deform_attn", "spec", reason);
        let spec: Value = serde_json::from_str(&spec).map_err(|e| bad(e.to_string()))?;
        let dim = |k: &str| spec[k].as_u64().map(|v| v as usize).ok_or_else(|| bad(format!("`{k}` must be a count")));
        let form = match spec["form"].as_str().unwrap_or("points") {
            "official" => Form::Official,
            "points" => Form::Fused(RefKind::Points),
            "boxes" => Form::Fused(RefKind::Boxes),
            f => return Err(bad(format!("form `{f}`: official, points or boxes"))),
        };
        let pr = match spec["case"].as_str() {
            Some(name) => rlipv2::bench::case(name, form)
                .ok_or_else(|| bad(format!("case `{name}`: one of {:?}", rlipv2::bench::CASES)))?,
            None => {
                let levels: Vec<(usize, usize)> = spec["levels"]
                    .as_array()
                    .ok_or_else(|| bad("`levels` must be [[H, W], …] (or name a `case`)".into()))?
                    .iter()
                    .map(|l| match (l[0].as_u64(), l[1].as_u64()) {
                        (Some(h), Some(w)) => Ok((h as usize, w as usize)),
                        _ => Err(bad(format!("level {l} is not [H, W]"))),
                    })
                    .collect::<Result<_>>()?;
                MsDeformAttnProblem::new(
                    1,
                    dim("queries")?,
                    dim("heads")?,
                    dim("channels")?,
                    dim("points")?,
                    &levels,
                    form,
                )
            }
        };
        pr.validate()?;
        let seed = spec["seed"].as_u64().unwrap_or(1);
        let repeat = spec["repeat"].as_u64().unwrap_or(5).clamp(1, 1000) as usize;
        let data = MsDeformAttnData::random(&pr, seed);
        let cpu = CpuBackend::new();
        let expected = cpu.ms_deform_attn(&pr, &data.input(), DType::F32)?;
        let mut run = be.prepare_ms_deform_attn(&pr, &data.input(), DType::F32)?;
        run.run()?; // the first launch builds the pipeline
        let t = Instant::now();
        run.run()?;
        let warm = t.elapsed().as_secs_f64();
        let out = run.output()?;
        let max_abs_diff = out.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        // launches per timed batch: enough for ≈ 20 ms, so the event-loop turn of the wait is noise
        let per = ((0.02 / warm.max(1e-4)) as usize).clamp(1, 64);
        let mut ms = Vec::with_capacity(repeat);
        for _ in 0..repeat {
            let t = Instant::now();
            for _ in 0..per {
                run.enqueue()?;
            }
            run.wait()?;
            ms.push(t.elapsed().as_secs_f64() * 1e3 / per as f64);
        }
        drop(run);
        ms.sort_by(f64::total_cmp);
        let (min, median) = (ms[0], ms[ms.len() / 2]);
        let bytes = pr.bytes(DType::F32);
        s.tensors = vec![("value", data.value), ("a", data.a), ("b", data.b), ("c", data.c), ("output", out)];
        Ok(json!({
            "device": be.device(),
            "problem": { "queries": pr.queries, "heads": pr.heads, "channels": pr.channels, "points": pr.points,
                         "levels": pr.levels.iter().map(|l| [l.h, l.w]).collect::<Vec<_>>(), "tokens": pr.tokens,
                         "form": spec["form"].as_str().unwrap_or("points") },
            "seed": seed, "max_abs_diff_vs_cpu": max_abs_diff, "launches_per_sample": per,
            "ms_min": min, "ms_median": median, "ms_all": ms, "bytes": bytes,
            "gb_per_s": bytes as f64 / (min * 1e-3) / 1e9, "gflop_per_s": pr.flops() as f64 / (min * 1e-3) / 1e9,
        }))
    }))
}

/// A tensor of the last `msda` job: `value`, `a`, `b`, `c` (the form's inputs, see
/// `rlipv2::seeded::MsDeformAttnData`) or `output`.
#[wasm_bindgen]
pub fn take_tensor(name: String) -> Option<Vec<f32>> {
    SESSION.with(|s| {
        let s = s.try_borrow().ok()?;
        s.tensors.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
    })
}
