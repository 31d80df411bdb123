//! Side-by-side timing, shared by the CLI's `bench` and criterion benches.

pub mod chart;
pub mod fusion;
pub mod report;
pub mod suite;

use std::time::Instant;

use crate::backend::{self, Backend, BackendKind, Ops};
use crate::error::Result;
use crate::problem::{DType, Form, MsDeformAttnProblem};
use crate::seeded::MsDeformAttnData;

/// RLIPv2 encoder levels at 800×1333 (spec §2.1).
pub const RLIPV2_LEVELS: [(usize, usize); 4] = [(100, 167), (50, 84), (25, 42), (13, 21)];

/// Named benchmark shapes.
pub fn case(name: &str, form: Form) -> Option<MsDeformAttnProblem> {
    Some(match name {
        // RLIPv2 encoder self-attention at 800×1333: Q = S = 22223.
        "encoder" => {
            let s: usize = RLIPV2_LEVELS.iter().map(|(h, w)| h * w).sum();
            MsDeformAttnProblem::new(1, s, 8, 32, 4, &RLIPV2_LEVELS, form)
        }
        // Decoder cross-attention: 200 queries over the encoder memory.
        "decoder" => MsDeformAttnProblem::new(1, 200, 8, 32, 4, &RLIPV2_LEVELS, form),
        // Small enough for a software adapter.
        "small" => MsDeformAttnProblem::new(1, 2000, 8, 32, 4, &[(50, 84), (25, 42), (13, 21), (7, 11)], form),
        _ => return None,
    })
}

/// The names [`case`] knows.
pub const CASES: [&str; 3] = ["encoder", "decoder", "small"];

/// Launches queued back to back per timed sample: the device-synced wall time of the batch over
/// this count approximates kernel time without one host round trip per launch.
pub const LAUNCHES_PER_SAMPLE: usize = 10;

/// Timing of one prepared op: median and min over `repeat` samples, each the wall time of
/// [`LAUNCHES_PER_SAMPLE`] queued launches and one device sync, divided by that count; after
/// one warm-up run (kernel compilation, first-touch allocations).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Median seconds per run.
    pub median_s: f64,
    /// Fastest sample, seconds per run.
    pub min_s: f64,
}

/// Times a prepared op: one warm-up run, then `repeat` samples of [`LAUNCHES_PER_SAMPLE`] queued launches and one device sync each.
pub fn time_runs(prepared: &mut dyn backend::Prepared, repeat: usize) -> Result<Timing> {
    prepared.run()?;
    let mut t = Vec::with_capacity(repeat.max(1));
    for _ in 0..repeat.max(1) {
        let t0 = Instant::now();
        for _ in 0..LAUNCHES_PER_SAMPLE {
            prepared.enqueue()?;
        }
        prepared.wait()?;
        t.push(t0.elapsed().as_secs_f64() / LAUNCHES_PER_SAMPLE as f64);
    }
    Ok(summarize(t))
}

/// Per-launch profile of a multi-launch prepared op: each stage alone, timed like [`time_runs`].
pub fn time_stages(prepared: &mut dyn backend::Prepared, repeat: usize) -> Result<Vec<(&'static str, Timing)>> {
    prepared.run()?;
    let mut out = Vec::new();
    for (i, name) in prepared.stages().into_iter().enumerate() {
        prepared.enqueue_stage(i)?;
        prepared.wait()?;
        let mut t = Vec::with_capacity(repeat.max(1));
        for _ in 0..repeat.max(1) {
            let t0 = Instant::now();
            for _ in 0..LAUNCHES_PER_SAMPLE {
                prepared.enqueue_stage(i)?;
            }
            prepared.wait()?;
            t.push(t0.elapsed().as_secs_f64() / LAUNCHES_PER_SAMPLE as f64);
        }
        out.push((name, summarize(t)));
    }
    Ok(out)
}

fn summarize(mut t: Vec<f64>) -> Timing {
    t.sort_by(f64::total_cmp);
    Timing { median_s: t[t.len() / 2], min_s: t[0] }
}

/// Median and min of `repeat` host-to-host calls of `f`, after one warm-up call.
pub fn time_host(repeat: usize, mut f: impl FnMut() -> Result<()>) -> Result<Timing> {
    f()?;
    let mut t = Vec::with_capacity(repeat.max(1));
    for _ in 0..repeat.max(1) {
        let t0 = Instant::now();
        f()?;
        t.push(t0.elapsed().as_secs_f64());
    }
    Ok(summarize(t))
}

/// One row of the side-by-side table.
pub struct Row {
    /// The backend timed.
    pub backend: BackendKind,
    /// Its device, in words.
    pub device: String,
    /// Storage dtype.
    pub dtype: DType,
    /// The timing, or why it did not run.
    pub result: Result<Timing>,
}

/// Times `ms_deform_attn` on each backend and dtype, one after another in this process.
pub fn run_table(
    backends: &[BackendKind],
    dtypes: &[DType],
    pr: &MsDeformAttnProblem,
    repeat: usize,
    mut progress: impl FnMut(&str),
) -> Vec<Row> {
    let data = MsDeformAttnData::random(pr, 7);
    let mut rows = Vec::new();
    for &kind in backends {
        let be: Box<dyn Backend> = match backend::open(kind) {
            Ok(b) => b,
            Err(e) => {
                let reason = match e {
                    crate::Error::BackendUnavailable { reason, .. } => reason,
                    other => other.to_string(),
                };
                for &dtype in dtypes {
                    rows.push(Row {
                        backend: kind,
                        device: "-".into(),
                        dtype,
                        result: Err(crate::Error::BackendUnavailable {
                            backend: kind.name().into(),
                            reason: reason.clone(),
                        }),
                    });
                }
                continue;
            }
        };
        for &dtype in dtypes {
            progress(&format!("{kind}/{dtype} on {}", be.device()));
            let result =
                be.prepare_ms_deform_attn(pr, &data.input(), dtype).and_then(|mut p| time_runs(p.as_mut(), repeat));
            rows.push(Row { backend: kind, device: be.device(), dtype, result });
        }
    }
    rows
}

/// Formats the table: backend, dtype, median, min, effective GB/s, speed-up vs cpu (same dtype).
pub fn format_table(pr: &MsDeformAttnProblem, rows: &[Row]) -> String {
    let mut s = format!(
        "{:<12} {:<5} {:>12} {:>12} {:>9} {:>8}  device\n",
        "backend", "dtype", "median ms", "min ms", "GB/s", "vs cpu"
    );
    for r in rows {
        match &r.result {
            Ok(t) => {
                let gbs = pr.bytes(r.dtype) as f64 / t.median_s / 1e9;
                let cpu = rows
                    .iter()
                    .find(|c| c.backend == BackendKind::Cpu && c.dtype == r.dtype)
                    .and_then(|c| c.result.as_ref().ok());
                let speed = cpu.map(|c| format!("{:.2}×", c.median_s / t.median_s)).unwrap_or_else(|| "-".into());
                s += &format!(
                    "{:<12} {:<5} {:>12.3} {:>12.3} {:>9.1} {:>8}  {}\n",
                    r.backend.name(),
                    r.dtype.name(),
                    t.median_s * 1e3,
                    t.min_s * 1e3,
                    gbs,
                    speed,
                    r.device
                );
            }
            Err(e) => {
                s += &format!(
                    "{:<12} {:<5} {:>12} {:>12} {:>9} {:>8}  SKIP: {e}\n",
                    r.backend.name(),
                    r.dtype.name(),
                    "-",
                    "-",
                    "-",
                    "-"
                )
            }
        }
    }
    s
}
