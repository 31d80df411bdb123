//! The benchmark suite: every op × every requested backend × dtype, at the RLIPv2 shapes and on
//! two scaling sweeps (decoder queries, encoder image size), all in one process so that the
//! ratios compare like with like. Results are [`Record`]s; [`super::report`] writes them as
//! JSON, markdown and an SVG chart.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{time_host, time_runs, Timing, RLIPV2_LEVELS};
use crate::backend::{self, Backend, BackendKind, Ops};
use crate::error::{Error, Result};
use crate::problem::{
    Activation, BertLayerProblem, DType, Form, GemmProblem, MsDeformAttnProblem, OwnedWeights, RefKind,
    SparseFusionProblem,
};
use crate::seeded::{MsDeformAttnData, Rng};

/// One timed (or skipped) cell of the suite.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// `ms_deform_attn/official`, `gemm`, `sparse_fusion/fused`, `detect`, …
    pub op: String,
    /// `rlipv2` (the model's own shape), `queries` or `image` (a sweep), or the image file.
    pub case: String,
    /// The sweep variable (queries, image short side in pixels); the RLIPv2 value otherwise.
    pub size: u64,
    /// The shape in words, e.g. `Q=22223 S=22223`.
    pub shape: String,
    /// Backend name.
    pub backend: String,
    /// Storage dtype (`f32`, `f16`, `bf16`).
    pub dtype: String,
    /// The backend's device, or `-` when it did not open.
    pub device: String,
    /// `resident` (inputs on the device, queued launches + one sync) or `host-to-host`.
    pub timing: String,
    /// Median milliseconds per run.
    pub median_ms: Option<f64>,
    /// Fastest sample, milliseconds per run.
    pub min_ms: Option<f64>,
    /// Work per second at the median: GB/s (ms_deform_attn: compulsory bytes) or GFLOP/s.
    pub throughput: Option<f64>,
    /// Unit of `throughput` (`GB/s`, `GFLOP/s`, or empty).
    pub unit: String,
    /// Why this cell did not run (backend absent, dtype unsupported, a limit).
    pub skipped: Option<String>,
}

impl Record {
    /// What identifies a cell across runs (for `--compare`).
    pub fn key(&self) -> (String, String, u64, String, String) {
        (self.op.clone(), self.case.clone(), self.size, self.backend.clone(), self.dtype.clone())
    }
}

/// What to run.
pub struct SuiteOptions {
    /// Backends to time (one that does not open yields skipped records).
    pub backends: Vec<BackendKind>,
    /// Storage dtypes for ms_deform_attn (the other ops are f32).
    pub dtypes: Vec<DType>,
    /// Timed samples per cell (after one warm-up).
    pub repeat: usize,
    /// Small shapes (seconds on a software adapter), for CI and smoke runs.
    pub quick: bool,
    /// End-to-end detect: a converted model file and one image.
    pub detect: Option<(PathBuf, PathBuf)>,
    /// Only these ops ([`OPS`]; empty: all).
    pub ops: Vec<String>,
    /// Inputs of the products in the `gemm` and `detect` cells (`--precision`): bf16 runs on the
    /// cpu backend, the other backends' records say why they were skipped.
    pub precision: crate::problem::Precision,
}

/// The op families the suite times, as `--ops` names them.
pub const OPS: [&str; 6] =
    ["ms_deform_attn", "gemm", "gated_cross_attn", "sparse_fusion", "detect", "ms_deform_attn_backward"];

/// Ops timed only when `--ops` names them: the backward pass, which only the host backends have
/// so far (issue 16), so a default run times no cell that every GPU backend refuses.
const ON_REQUEST: [&str; 1] = ["ms_deform_attn_backward"];

/// Checks `--ops` names against [`OPS`].
pub fn check_ops(ops: &[String]) -> Result<()> {
    match ops.iter().find(|o| !OPS.contains(&o.as_str())) {
        Some(o) => Err(Error::Limit {
            op: "bench",
            what: "--ops".into(),
            reason: format!("unknown op `{o}` (one of {})", OPS.join(", ")),
        }),
        None => Ok(()),
    }
}

/// A sized problem of one op, ready to time on any backend.
enum Job {
    Msda(MsDeformAttnProblem),
    MsdaBackward(MsDeformAttnProblem),
    Gemm(GemmProblem),
    GatedCrossAttn(SparseFusionProblem),
    SparseFusion(SparseFusionProblem),
    Detect(PathBuf, PathBuf),
}

/// One row-to-be: op, case, sweep size, shape words, job, and whether dtypes other than f32 apply.
struct Cell {
    op: String,
    case: &'static str,
    size: u64,
    shape: String,
    job: Job,
    dtypes: bool,
}

/// Level shapes of the R50 encoder for an `h × w` input (strides 8, 16, 32, 64; each stride-2
/// conv rounds up).
pub fn levels_for_image(h: usize, w: usize) -> Vec<(usize, usize)> {
    let mut s = vec![(h.div_ceil(8), w.div_ceil(8))];
    for _ in 0..3 {
        let (a, b) = *s.last().expect("one level");
        s.push((a.div_ceil(2), b.div_ceil(2)));
    }
    s
}

fn msda_shape(pr: &MsDeformAttnProblem) -> String {
    let lv: Vec<String> = pr.levels.iter().map(|l| format!("{}×{}", l.h, l.w)).collect();
    format!("Q={} S={} ({})", pr.queries, pr.tokens, lv.join(","))
}

fn cells(o: &SuiteOptions) -> Vec<Cell> {
    let q = o.quick;
    let levels: Vec<(usize, usize)> = if q { levels_for_image(200, 333) } else { RLIPV2_LEVELS.to_vec() };
    let s: usize = levels.iter().map(|(h, w)| h * w).sum();
    let mut out = Vec::new();
    // the model's own shapes: encoder self-attention (Q = S) in each entry form
    for (form, name) in [
        (Form::Official, "official"),
        (Form::Fused(RefKind::Points), "fused-points"),
        (Form::Fused(RefKind::Boxes), "fused-boxes"),
    ] {
        let pr = MsDeformAttnProblem::new(1, s, 8, 32, 4, &levels, form);
        out.push(Cell {
            op: format!("ms_deform_attn/{name}"),
            case: "rlipv2",
            size: s as u64,
            shape: msda_shape(&pr),
            job: Job::Msda(pr),
            dtypes: true,
        });
    }
    // sweep 1: decoder cross-attention (boxes, as the DAB decoders call it) over the queries
    let queries: &[usize] = if q { &[50, 200, 800] } else { &[100, 300, 1000, 3000, 10000] };
    for &nq in queries {
        let pr = MsDeformAttnProblem::new(1, nq, 8, 32, 4, &levels, Form::Fused(RefKind::Boxes));
        out.push(Cell {
            op: "ms_deform_attn/fused-boxes".into(),
            case: "queries",
            size: nq as u64,
            shape: msda_shape(&pr),
            job: Job::Msda(pr),
            dtypes: true,
        });
    }
    // sweep 2: encoder self-attention (points) over the image's short side (long = 5/3 of it)
    let sides: &[usize] = if q { &[64, 128, 192] } else { &[200, 400, 600, 800] };
    for &side in sides {
        let lv = levels_for_image(side, side * 1333 / 800);
        let s: usize = lv.iter().map(|(h, w)| h * w).sum();
        let pr = MsDeformAttnProblem::new(1, s, 8, 32, 4, &lv, Form::Fused(RefKind::Points));
        out.push(Cell {
            op: "ms_deform_attn/fused-points".into(),
            case: "image",
            size: side as u64,
            shape: msda_shape(&pr),
            job: Job::Msda(pr),
            dtypes: true,
        });
    }
    // the backward pass of encoder self-attention, official and fused-points form
    for (form, name) in [(Form::Official, "official"), (Form::Fused(RefKind::Points), "fused-points")] {
        let pr = MsDeformAttnProblem::new(1, s, 8, 32, 4, &levels, form);
        out.push(Cell {
            op: format!("ms_deform_attn_backward/{name}"),
            case: "rlipv2",
            size: s as u64,
            shape: msda_shape(&pr),
            job: Job::MsdaBackward(pr),
            dtypes: false,
        });
    }
    // the encoder FFN's first GEMM (S × 256 → 1024, ReLU)
    let g = GemmProblem::linear(s, 256, 1024).with_act(Activation::Relu);
    out.push(Cell {
        op: "gemm".into(),
        case: "rlipv2",
        size: s as u64,
        shape: format!("{}×{}→{} +bias ReLU", g.m, g.k, g.n),
        job: Job::Gemm(g),
        dtypes: false,
    });
    // one ALIF round: last level against the label tokens
    let last = levels.last().map(|(h, w)| h * w).unwrap_or(1);
    let t = if q { 16 } else { 198 };
    let sf = SparseFusionProblem::rlipv2(1, s, s - last, t);
    let words = format!("Nv={} T={t}", sf.fusion.nv);
    out.push(Cell {
        op: "gated_cross_attn".into(),
        case: "rlipv2",
        size: t as u64,
        shape: words.clone(),
        job: Job::GatedCrossAttn(sf),
        dtypes: false,
    });
    out.push(Cell {
        op: "sparse_fusion/fused".into(),
        case: "rlipv2",
        size: t as u64,
        shape: format!("{words} S={s}"),
        job: Job::SparseFusion(sf),
        dtypes: false,
    });
    if let Some((model, image)) = &o.detect {
        let name = image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        out.push(Cell {
            op: "detect".into(),
            case: "image",
            size: 0,
            shape: name,
            job: Job::Detect(model.clone(), image.clone()),
            dtypes: false,
        });
    }
    let family = |op: &str| op.split('/').next().unwrap_or(op).to_string();
    out.retain(|c| {
        let f = family(&c.op);
        if o.ops.is_empty() {
            !ON_REQUEST.contains(&f.as_str())
        } else {
            o.ops.contains(&f)
        }
    });
    out
}

/// The `(op, case)` of every cell `o` times, in the order the suite runs them.
pub fn planned(o: &SuiteOptions) -> Vec<(String, String)> {
    cells(o).into_iter().map(|c| (c.op, c.case.to_string())).collect()
}

/// How many cells [`run`] will time (for a progress bar).
pub fn count(o: &SuiteOptions) -> usize {
    cells(o).iter().map(|c| if c.dtypes { o.dtypes.len() } else { 1 }).sum::<usize>() * o.backends.len()
}

/// Inputs of one job, made once and shared by every backend.
/// A cell's job with its inputs.
enum Data {
    Msda(MsDeformAttnProblem, MsDeformAttnData),
    /// The inputs and a seeded `grad_output`.
    MsdaBackward(MsDeformAttnProblem, MsDeformAttnData, Vec<f32>),
    Gemm(GemmProblem, GemmData),
    GatedCrossAttn(SparseFusionProblem, FusionData),
    SparseFusion(SparseFusionProblem, FusionData),
    Detect(Box<DetectData>),
}

struct GemmData {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
}

struct FusionData {
    memory: Vec<f32>,
    pos: Vec<f32>,
    lang: Vec<f32>,
    fw: OwnedWeights,
    bw: OwnedWeights,
}

struct DetectData {
    det: crate::detect::Detector,
    labels: crate::detect::Labels,
    image: crate::model::preprocess::RgbImage,
}

impl FusionData {
    fn seeded(p: &SparseFusionProblem, rng: &mut Rng) -> Self {
        FusionData {
            memory: rng.fill(p.tokens * 256, -1.0, 1.0),
            pos: rng.fill(p.tokens * 256, -1.0, 1.0),
            lang: rng.fill(p.fusion.t * 768, -1.0, 1.0),
            fw: OwnedWeights::seeded(p.fusion.weight_shapes(), 1),
            bw: OwnedWeights::seeded(BertLayerProblem::roberta_base(1, p.fusion.t).weight_shapes(), 2),
        }
    }
}

fn data(job: &Job) -> Result<Data> {
    let mut rng = Rng::new(11);
    Ok(match job {
        Job::Msda(pr) => Data::Msda(pr.clone(), MsDeformAttnData::random(pr, 7)),
        Job::MsdaBackward(pr) => {
            Data::MsdaBackward(pr.clone(), MsDeformAttnData::random(pr, 7), rng.fill(pr.output_len(), -1.0, 1.0))
        }
        Job::Gemm(g) => Data::Gemm(
            *g,
            GemmData {
                x: rng.fill(g.m * g.k, -1.0, 1.0),
                w: rng.fill(g.n * g.k, -0.1, 0.1),
                b: rng.fill(g.n, -0.1, 0.1),
            },
        ),
        Job::GatedCrossAttn(p) => Data::GatedCrossAttn(*p, FusionData::seeded(p, &mut rng)),
        Job::SparseFusion(p) => Data::SparseFusion(*p, FusionData::seeded(p, &mut rng)),
        Job::Detect(model, image) => {
            let file = crate::io::weights::WeightFile::open(model)?;
            let det = crate::detect::Detector::load(&file, model)?;
            let cpu = backend::open(BackendKind::Cpu)?;
            let labels = det.labels(
                &file,
                model,
                crate::model::labels::LabelSet::builtin("hico").expect("built-in set"),
                None,
                cpu.as_ref(),
            )?;
            Data::Detect(Box::new(DetectData { det, labels, image: crate::io::image::load_rgb(image)? }))
        }
    })
}

/// A timed cell: (timing, kind of timing, work units per second per median second).
type CellTime = (Timing, &'static str, Option<(f64, &'static str)>);

/// Times one cell.
fn time_cell(be: &dyn Backend, data: &Data, dtype: DType, repeat: usize) -> Result<CellTime> {
    match data {
        Data::Msda(pr, d) => {
            let mut p = be.prepare_ms_deform_attn(pr, &d.input(), dtype)?;
            Ok((time_runs(p.as_mut(), repeat)?, "resident", Some((pr.bytes(dtype) as f64 / 1e9, "GB/s"))))
        }
        Data::MsdaBackward(pr, d, g) => {
            let run = || be.ms_deform_attn_backward(pr, &d.input(), g, dtype).map(|_| ());
            Ok((time_host(repeat, run)?, "host-to-host", None))
        }
        Data::Gemm(g, GemmData { x, w, b }) => {
            let (t, how) =
                resident_or_host(be.prepare_gemm(g, x, w, Some(b)), repeat, || be.gemm(g, x, w, Some(b)).map(|_| ()))?;
            Ok((t, how, Some((g.flops() as f64 / 1e9, "GFLOP/s"))))
        }
        Data::GatedCrossAttn(p, FusionData { memory, pos, lang, fw, .. }) => {
            let (v, vp) = (&memory[p.start * 256..], &pos[p.start * 256..]);
            let w = fw.as_fusion();
            Ok((
                time_host(repeat, || be.gated_cross_attn(&p.fusion, v, vp, lang, &w).map(|_| ()))?,
                "host-to-host",
                None,
            ))
        }
        Data::SparseFusion(p, FusionData { memory, pos, lang, fw, bw }) => {
            let (fw, bw) = (fw.as_fusion(), bw.as_bert());
            let (t, how) =
                resident_or_host(be.prepare_sparse_fusion(p, memory, pos, lang, None, &fw, &bw), repeat, || {
                    let mut m = memory.clone();
                    be.sparse_fusion(p, &mut m, pos, lang, None, &fw, &bw).map(|_| ())
                })?;
            Ok((t, how, None))
        }
        Data::Detect(d) => {
            let post = crate::model::postprocess::PostConfig::default();
            let t = time_host(repeat.min(3), || {
                d.det.detect(be, &d.image, &d.labels, &post, &mut Default::default()).map(|_| ())
            })?;
            Ok((t, "host-to-host", None))
        }
    }
}

/// Times the resident form where the backend has one, else the host-to-host call (host
/// backends: there it is the same work).
fn resident_or_host(
    prepared: Result<Box<dyn crate::backend::Prepared + '_>>,
    repeat: usize,
    host: impl FnMut() -> Result<()>,
) -> Result<(Timing, &'static str)> {
    match prepared {
        Ok(mut r) => Ok((time_runs(r.as_mut(), repeat)?, "resident")),
        Err(Error::Unsupported { .. }) => Ok((time_host(repeat, host)?, "host-to-host")),
        Err(e) => Err(e),
    }
}

/// `kind` with its products at `precision` (f32: as `backend::open`; bf16: cpu only, the others
/// refused with the reason).
fn open_at(kind: BackendKind, precision: crate::problem::Precision) -> Result<Box<dyn Backend>> {
    match precision {
        crate::problem::Precision::F32 => backend::open(kind),
        _ => backend::select_at(kind.name(), precision).map(|(b, _)| b),
    }
}

/// Runs the suite. `progress(done, total, what)` is called before each cell. A backend that does
/// not open, a dtype it lacks or a limit it hits becomes a skipped record with the reason.
pub fn run(o: &SuiteOptions, mut progress: impl FnMut(usize, usize, &str)) -> Result<Vec<Record>> {
    // unreadable detect inputs fail now, not after minutes of timing
    if let Some((model, image)) = &o.detect {
        crate::io::weights::WeightFile::open(model)?;
        crate::io::image::load_rgb(image)?;
    }
    let total = count(o);
    type Opened = std::result::Result<Box<dyn Backend>, String>;
    let opened: Vec<(BackendKind, Opened)> =
        o.backends.iter().map(|&k| (k, open_at(k, o.precision).map_err(|e| e.to_string()))).collect();
    let mut records = Vec::new();
    let mut done = 0;
    for cell in cells(o) {
        // inputs are made once per cell (outside the timing) and shared by the backends
        // a cell whose inputs cannot be made (say, a model file without baked labels) is skipped
        // with the reason on every backend, keeping what was measured so far
        let data = data(&cell.job).map_err(|e| e.to_string());
        let dtypes: &[DType] = if cell.dtypes { &o.dtypes } else { &[DType::F32] };
        for (kind, be) in &opened {
            for &dtype in dtypes {
                let what = format!("{} {} {} on {kind}/{dtype}", cell.op, cell.case, cell.shape);
                progress(done, total, &what);
                done += 1;
                let mut rec = Record {
                    op: cell.op.clone(),
                    case: cell.case.into(),
                    size: cell.size,
                    shape: cell.shape.clone(),
                    backend: kind.name().into(),
                    // the products' precision where it applies, else the storage dtype
                    dtype: match cell.job {
                        Job::Gemm(_) | Job::Detect(..) => o.precision.name().into(),
                        _ => dtype.name().into(),
                    },
                    device: "-".into(),
                    timing: "-".into(),
                    median_ms: None,
                    min_ms: None,
                    throughput: None,
                    unit: String::new(),
                    skipped: None,
                };
                match be {
                    Err(why) => rec.skipped = Some(why.clone()),
                    Ok(be) => {
                        rec.device = be.device();
                        match data
                            .as_ref()
                            .map_err(|e| e.clone())
                            .and_then(|d| time_cell(be.as_ref(), d, dtype, o.repeat).map_err(|e| e.to_string()))
                        {
                            Ok((t, timing, work)) => {
                                rec.timing = timing.into();
                                rec.median_ms = Some(t.median_s * 1e3);
                                rec.min_ms = Some(t.min_s * 1e3);
                                if let Some((units, unit)) = work {
                                    rec.throughput = Some(units / t.median_s);
                                    rec.unit = unit.into();
                                }
                            }
                            Err(e) => rec.skipped = Some(e),
                        }
                    }
                }
                tracing::info!(op = %rec.op, case = %rec.case, size = rec.size, backend = %rec.backend, dtype = %rec.dtype, median_ms = ?rec.median_ms, skipped = ?rec.skipped, "bench cell");
                records.push(rec);
            }
        }
    }
    progress(done, total, "done");
    Ok(records)
}

/// The median of the cpu backend's record with the same op, case, size and dtype.
pub fn cpu_median(records: &[Record], r: &Record) -> Option<f64> {
    records
        .iter()
        .find(|c| c.backend == "cpu" && c.op == r.op && c.case == r.case && c.size == r.size && c.dtype == r.dtype)
        .and_then(|c| c.median_ms)
}
