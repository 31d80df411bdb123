//! criterion: `ms_deform_attn/<backend>/<dtype>/<case>` with byte throughput (compulsory bytes of
//! `MsDeformAttnProblem::bytes`). Inputs are uploaded outside the timed closure; each iteration
//! is a queued launch, and every measured batch ends with a device sync. The backward pass:
//! `ms_deform_attn_backward/<backend>/f32/<case>`, host to host, on the backends that have it.
//!
//! `RLIPV2_BENCH_CASES` (default `small,decoder,encoder`) and `RLIPV2_BENCH_BACKENDS`
//! (default: every backend that opens, except the naive reference) narrow the set.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rlipv2::backend::{self, BackendKind, Ops};
use rlipv2::bench::case;
use rlipv2::problem::{DType, Form};
use rlipv2::seeded::MsDeformAttnData;

fn list(var: &str, default: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn bench(c: &mut Criterion) {
    let cases = list("RLIPV2_BENCH_CASES", "small,decoder,encoder");
    let kinds = list("RLIPV2_BENCH_BACKENDS", "cpu,wgpu,cubecl-wgpu,cubecl-cuda");
    let mut group = c.benchmark_group("ms_deform_attn");
    group.sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    for name in &kinds {
        let Ok(kind) = BackendKind::parse(name) else {
            eprintln!("SKIP {name}: unknown backend");
            continue;
        };
        let be = match backend::open(kind) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("SKIP {kind}: {e}");
                continue;
            }
        };
        eprintln!("{kind}: {}", be.device());
        for case_name in &cases {
            let Some(pr) = case(case_name, Form::Official) else {
                eprintln!("SKIP case {case_name}: unknown");
                continue;
            };
            let data = MsDeformAttnData::random(&pr, 7);
            for dtype in [DType::F32, DType::F16] {
                let mut prepared = match be.prepare_ms_deform_attn(&pr, &data.input(), dtype) {
                    Ok(p) => p,
                    Err(e) => {
                        eprintln!("SKIP {kind}/{dtype}/{case_name}: {e}");
                        continue;
                    }
                };
                if let Err(e) = prepared.run() {
                    eprintln!("SKIP {kind}/{dtype}/{case_name}: {e}");
                    continue;
                }
                group.throughput(Throughput::Bytes(pr.bytes(dtype)));
                group.bench_function(format!("{kind}/{dtype}/{case_name}"), |b| {
                    b.iter_custom(|iters| {
                        let t0 = Instant::now();
                        for _ in 0..iters {
                            prepared.enqueue().expect("launch");
                        }
                        prepared.wait().expect("sync");
                        t0.elapsed()
                    })
                });
            }
        }
    }
    group.finish();
    backward(c, &kinds, &cases);
}

/// The backward pass, host to host (inputs and `grad_output` prepared outside the timing).
fn backward(c: &mut Criterion, kinds: &[String], cases: &[String]) {
    let mut group = c.benchmark_group("ms_deform_attn_backward");
    group.sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    for kind in kinds.iter().filter_map(|k| BackendKind::parse(k).ok()) {
        let Ok(be) = backend::open(kind) else { continue };
        for case_name in cases {
            let Some(pr) = case(case_name, Form::Official) else { continue };
            let data = MsDeformAttnData::random(&pr, 7);
            let grad = rlipv2::seeded::Rng::new(8).fill(pr.output_len(), -1.0, 1.0);
            if let Err(e) = be.ms_deform_attn_backward(&pr, &data.input(), &grad, DType::F32) {
                eprintln!("SKIP backward {kind}/{case_name}: {e}");
                continue;
            }
            group.bench_function(format!("{kind}/f32/{case_name}"), |b| {
                b.iter(|| be.ms_deform_attn_backward(&pr, &data.input(), &grad, DType::F32).expect("backward"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
