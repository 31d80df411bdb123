//! Seeded inputs and side-by-side timing, shared by the CLI's `bench`, criterion benches and tests.

use std::time::Instant;

use crate::backend::{self, Backend, BackendKind};
use crate::error::Result;
use crate::problem::{DType, Form, MsDeformAttnInput, MsDeformAttnProblem, RefKind};

/// RLIPv2 encoder levels at 800×1333 (spec §2.1).
pub const RLIPV2_LEVELS: [(usize, usize); 4] = [(100, 167), (50, 84), (25, 42), (13, 21)];

/// SplitMix64: small, seeded, identical on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    pub fn fill(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

/// Owned inputs for either form.
#[derive(Clone, Debug)]
pub struct MsDeformAttnData {
    pub value: Vec<f32>,
    /// official: sampling_locations; fused: reference
    pub a: Vec<f32>,
    /// official: attention_weights; fused: sampling_offsets
    pub b: Vec<f32>,
    /// fused only: attention_logits
    pub c: Vec<f32>,
    pub form: Form,
}

impl MsDeformAttnData {
    /// Seeded inputs with the locality of real use: value U(−1,1); official locations = the
    /// query's point + U(−4,4) pixels of each level, with softmaxed weights;
    /// fused references U(0,1) (boxes: w,h U(0.05,0.5)), offsets U(−4,4), logits U(−3,3).
    pub fn random(pr: &MsDeformAttnProblem, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let value = rng.fill(pr.value_shape().iter().product(), -1.0, 1.0);
        let n = pr.samples();
        match pr.form {
            Form::Official => {
                let refs = query_points(pr, &mut rng);
                let mut loc = Vec::with_capacity(2 * n);
                for bq in 0..pr.batch * pr.queries {
                    for _m in 0..pr.heads {
                        for lv in &pr.levels {
                            for _p in 0..pr.points {
                                loc.push(refs[2 * bq] + rng.uniform(-4.0, 4.0) / lv.w as f32);
                                loc.push(refs[2 * bq + 1] + rng.uniform(-4.0, 4.0) / lv.h as f32);
                            }
                        }
                    }
                }
                let logits = rng.fill(n, -3.0, 3.0);
                let lp = pr.num_levels() * pr.points;
                let mut w = vec![0.0; n];
                for (wr, lr) in w.chunks_mut(lp).zip(logits.chunks(lp)) {
                    let mx = lr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let s: f32 = lr.iter().map(|x| (x - mx).exp()).sum();
                    for (o, x) in wr.iter_mut().zip(lr) {
                        *o = (x - mx).exp() / s;
                    }
                }
                MsDeformAttnData { value, a: loc, b: w, c: Vec::new(), form: pr.form }
            }
            Form::Fused(kind) => {
                let nref = pr.batch * pr.queries * pr.num_levels();
                let mut reference = Vec::with_capacity(nref * kind.dim());
                for _ in 0..nref {
                    reference.push(rng.uniform(0.0, 1.0));
                    reference.push(rng.uniform(0.0, 1.0));
                    if kind == RefKind::Boxes {
                        reference.push(rng.uniform(0.05, 0.5));
                        reference.push(rng.uniform(0.05, 0.5));
                    }
                }
                let off = rng.fill(2 * n, -4.0, 4.0);
                let logits = rng.fill(n, -3.0, 3.0);
                MsDeformAttnData { value, a: reference, b: off, c: logits, form: pr.form }
            }
        }
    }

    pub fn input(&self) -> MsDeformAttnInput<'_> {
        match self.form {
            Form::Official => MsDeformAttnInput::Official { value: &self.value, sampling_locations: &self.a, attention_weights: &self.b },
            Form::Fused(_) => MsDeformAttnInput::Fused { value: &self.value, reference: &self.a, sampling_offsets: &self.b, attention_logits: &self.c },
        }
    }
}

/// One normalized point per (b, q): for encoder self-attention (Q = S) the centre of the query's
/// own pixel, as the encoder's reference points are; otherwise uniform in [0, 1)².
fn query_points(pr: &MsDeformAttnProblem, rng: &mut Rng) -> Vec<f32> {
    let mut pts = Vec::with_capacity(2 * pr.batch * pr.queries);
    for _b in 0..pr.batch {
        if pr.queries == pr.tokens {
            for lv in &pr.levels {
                for i in 0..lv.h {
                    for j in 0..lv.w {
                        pts.push((j as f32 + 0.5) / lv.w as f32);
                        pts.push((i as f32 + 0.5) / lv.h as f32);
                    }
                }
            }
        } else {
            for _q in 0..pr.queries {
                pts.push(rng.uniform(0.0, 1.0));
                pts.push(rng.uniform(0.0, 1.0));
            }
        }
    }
    pts
}

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

pub const CASES: [&str; 3] = ["encoder", "decoder", "small"];

/// Launches queued back to back per timed sample: the device-synced wall time of the batch over
/// this count approximates kernel time without one host round trip per launch.
pub const LAUNCHES_PER_SAMPLE: usize = 10;

/// Timing of one prepared op: median and min over `repeat` samples, each the wall time of
/// [`LAUNCHES_PER_SAMPLE`] queued launches and one device sync, divided by that count; after
/// one warm-up run (kernel compilation, first-touch allocations).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub median_s: f64,
    pub min_s: f64,
}

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
    t.sort_by(f64::total_cmp);
    Ok(Timing { median_s: t[t.len() / 2], min_s: t[0] })
}

/// One row of the side-by-side table.
pub struct Row {
    pub backend: BackendKind,
    pub device: String,
    pub dtype: DType,
    pub result: Result<Timing>,
}

/// Times `ms_deform_attn` on each backend and dtype, one after another in this process.
pub fn run_table(backends: &[BackendKind], dtypes: &[DType], pr: &MsDeformAttnProblem, repeat: usize, mut progress: impl FnMut(&str)) -> Vec<Row> {
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
                    rows.push(Row { backend: kind, device: "-".into(), dtype, result: Err(crate::Error::BackendUnavailable { backend: kind.name().into(), reason: reason.clone() }) });
                }
                continue;
            }
        };
        for &dtype in dtypes {
            progress(&format!("{kind}/{dtype} on {}", be.device()));
            let result = be.prepare_ms_deform_attn(pr, &data.input(), dtype).and_then(|mut p| time_runs(p.as_mut(), repeat));
            rows.push(Row { backend: kind, device: be.device(), dtype, result });
        }
    }
    rows
}

/// Formats the table: backend, dtype, median, min, effective GB/s, speed-up vs cpu (same dtype).
pub fn format_table(pr: &MsDeformAttnProblem, rows: &[Row]) -> String {
    let mut s = format!("{:<12} {:<5} {:>12} {:>12} {:>9} {:>8}  device\n", "backend", "dtype", "median ms", "min ms", "GB/s", "vs cpu");
    for r in rows {
        match &r.result {
            Ok(t) => {
                let gbs = pr.bytes(r.dtype) as f64 / t.median_s / 1e9;
                let cpu = rows.iter().find(|c| c.backend == BackendKind::Cpu && c.dtype == r.dtype).and_then(|c| c.result.as_ref().ok());
                let speed = cpu.map(|c| format!("{:.2}×", c.median_s / t.median_s)).unwrap_or_else(|| "-".into());
                s += &format!("{:<12} {:<5} {:>12.3} {:>12.3} {:>9.1} {:>8}  {}\n", r.backend.name(), r.dtype.name(), t.median_s * 1e3, t.min_s * 1e3, gbs, speed, r.device);
            }
            Err(e) => s += &format!("{:<12} {:<5} {:>12} {:>12} {:>9} {:>8}  SKIP: {e}\n", r.backend.name(), r.dtype.name(), "-", "-", "-", "-"),
        }
    }
    s
}
