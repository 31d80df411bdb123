//! The ALIF ops and their building blocks on every backend against the f64 oracle, on seeded
//! cases that include the real RLIPv2 sizes (Nv = 273, T = 198) and odd ones (Nv = 1, T = 1,
//! T = 117, B = 2). A backend that opens but lacks an op prints `SKIP <backend>/<op>: <why>`.

use crate::common::{assert_close_flat, open_or_skip, Tolerance};
use rlipv2::backend::{Backend, BackendKind, Ops};
use rlipv2::problem::OwnedWeights;
use rlipv2::problem::{
    Activation, AttentionProblem, BertLayerProblem, Gate, GatedCrossAttnProblem, GemmProblem, LayerNormProblem,
    SoftmaxProblem, SparseFusionProblem,
};
use rlipv2::reference::{self as oracle, lift};
use rlipv2::seeded::Rng;
use rlipv2::Error;

const TOL: Tolerance = Tolerance { floor: 1e-5, k: 8.0, rtol: 1e-5 };

/// Runs `f`; an `Unsupported` answer is a visible SKIP, anything else must succeed.
fn run<T>(be: &dyn Backend, op: &str, f: impl FnOnce() -> rlipv2::Result<T>) -> Option<T> {
    match f() {
        Ok(x) => Some(x),
        Err(e @ Error::Unsupported { .. }) => {
            println!("SKIP {}/{op}: {e}", be.kind());
            None
        }
        Err(e) => panic!("{}/{op}: {e}", be.kind()),
    }
}

fn check(label: &str, shape: &[usize], got: &[f32], r64: Vec<f64>, r32: Vec<f32>) {
    assert_close_flat(label, shape, got, &r64, &r32, &TOL);
}

fn gemm_case(be: &dyn Backend) {
    let cases = [
        (1, 1, 1, true, Activation::None),
        (7, 13, 5, true, Activation::Relu),
        (17, 9, 11, false, Activation::None),
        (273, 256, 2048, true, Activation::None),
        (198, 768, 3072, true, Activation::Gelu),
        (33, 3072, 768, true, Activation::None),
    ];
    for (i, &(m, k, n, bias, act)) in cases.iter().enumerate() {
        let p = GemmProblem { m, k, n, bias, act };
        let mut rng = Rng::new(100 + i as u64);
        let x = rng.fill(m * k, -2.0, 2.0);
        let w = rng.fill(n * k, -1.0 / (k as f32).sqrt(), 1.0 / (k as f32).sqrt());
        let b = rng.fill(n, -0.5, 0.5);
        let bias = bias.then_some(b.as_slice());
        let Some(got) = run(be, "gemm", || be.gemm(&p, &x, &w, bias)) else { return };
        let label = format!("{}/gemm/{m}x{k}x{n}/{act:?}", be.kind());
        check(
            &label,
            &[m, n],
            &got,
            oracle::gemm::gemm::<f64>(&p, &lift(&x), &w, bias),
            oracle::gemm::gemm::<f32>(&p, &x, &w, bias),
        );
        // the timed form (every backend): inputs bound once, the same output run after run
        let mut r = be.prepare_gemm(&p, &x, &w, bias).unwrap_or_else(|e| panic!("{label}: prepare_gemm: {e}"));
        for _ in 0..2 {
            r.run().unwrap();
            assert_eq!(r.output().unwrap(), got, "{label}: prepare_gemm differs from gemm");
        }
    }
}

fn layer_norm_case(be: &dyn Backend) {
    for (i, &(rows, width, offset)) in
        [(1usize, 1usize, 0.0f32), (273, 256, 0.0), (198, 768, 100.0), (5, 3, -7.0)].iter().enumerate()
    {
        let p = LayerNormProblem { rows, width, eps: 1e-5 };
        let mut rng = Rng::new(200 + i as u64);
        let x: Vec<f32> = rng.fill(rows * width, -3.0, 3.0).into_iter().map(|v| v + offset).collect();
        let (g, b) = (rng.fill(width, 0.5, 1.5), rng.fill(width, -0.5, 0.5));
        let Some(got) = run(be, "layer_norm", || be.layer_norm(&p, &x, &g, &b)) else { return };
        let label = format!("{}/layer_norm/{rows}x{width}+{offset}", be.kind());
        check(
            &label,
            &[rows, width],
            &got,
            oracle::layer_norm::layer_norm::<f64>(&p, &lift(&x), &g, &b),
            oracle::layer_norm::layer_norm::<f32>(&p, &x, &g, &b),
        );
    }
}

fn softmax_case(be: &dyn Backend) {
    for (i, &(rows, width, scale)) in
        [(5usize, 1usize, 1.0f32), (8 * 273, 198, 4.0), (3, 17, 1000.0)].iter().enumerate()
    {
        let p = SoftmaxProblem { rows, width };
        let x = Rng::new(300 + i as u64).fill(rows * width, -scale, scale);
        let Some(got) = run(be, "softmax", || be.softmax(&p, &x)) else { return };
        let label = format!("{}/softmax/{rows}x{width}", be.kind());
        check(
            &label,
            &[rows, width],
            &got,
            oracle::softmax::softmax::<f64>(&p, &lift(&x)),
            oracle::softmax::softmax::<f32>(&p, &x),
        );
    }
}

fn attention_case(be: &dyn Backend) {
    let cases = [
        AttentionProblem { batch: 1, heads: 12, q_len: 198, k_len: 198, head_dim: 64, scale: 0.125 },
        AttentionProblem { batch: 2, heads: 3, q_len: 5, k_len: 1, head_dim: 4, scale: 0.5 },
        AttentionProblem { batch: 1, heads: 8, q_len: 273, k_len: 198, head_dim: 256, scale: 1.0 / 16.0 },
    ];
    for (i, p) in cases.iter().enumerate() {
        let mut rng = Rng::new(400 + i as u64);
        let w = p.width();
        let q = rng.fill(p.batch * p.q_len * w, -1.0, 1.0);
        let k = rng.fill(p.batch * p.k_len * w, -1.0, 1.0);
        let v = rng.fill(p.batch * p.k_len * w, -1.0, 1.0);
        let mask: Option<Vec<f32>> =
            (i == 0).then(|| (0..p.batch * p.k_len).map(|j| if j % 5 == 4 { -10000.0 } else { 0.0 }).collect());
        let Some(got) = run(be, "attention", || be.attention(p, &q, &k, &v, mask.as_deref())) else { return };
        let label = format!("{}/attention/{:?}", be.kind(), p);
        let r64 = oracle::attention::attention::<f64>(p, &lift(&q), &lift(&k), &lift(&v), mask.as_deref());
        let r32 = oracle::attention::attention::<f32>(p, &q, &k, &v, mask.as_deref());
        check(&label, &[p.batch, p.q_len, w], &got, r64, r32);
    }
}

fn fusion_cases() -> Vec<GatedCrossAttnProblem> {
    vec![
        GatedCrossAttnProblem::rlipv2(1, 273, 198),
        GatedCrossAttnProblem::rlipv2(1, 1, 1),
        GatedCrossAttnProblem { gate: Gate::Glip, ..GatedCrossAttnProblem::rlipv2(2, 13, 117) },
        GatedCrossAttnProblem { batch: 2, nv: 7, t: 3, v_dim: 16, l_dim: 24, embed: 32, heads: 4, gate: Gate::XGating },
    ]
}

fn gated_cross_attn_case(be: &dyn Backend) {
    for (i, p) in fusion_cases().iter().enumerate() {
        let w = OwnedWeights::seeded(p.weight_shapes(), 500 + i as u64);
        let mut rng = Rng::new(600 + i as u64);
        let v = rng.fill(p.batch * p.nv * p.v_dim, -2.0, 2.0);
        let pos = rng.fill(p.batch * p.nv * p.v_dim, -1.0, 1.0);
        let l = rng.fill(p.batch * p.t * p.l_dim, -2.0, 2.0);
        let Some((gv, gl)) = run(be, "gated_cross_attn", || be.gated_cross_attn(p, &v, &pos, &l, &w.as_fusion()))
        else {
            return;
        };
        let ((v64, l64), (v32, l32)) = crate::common::once(&format!("fusion_backends/gated_cross_attn/{i}"), || {
            let w = w.as_fusion();
            let r64 = oracle::gated_cross_attn::gated_cross_attn::<f64>(p, &lift(&v), &lift(&pos), &lift(&l), &w);
            (r64, oracle::gated_cross_attn::gated_cross_attn::<f32>(p, &v, &pos, &l, &w))
        });
        let label = format!("{}/gated_cross_attn/B{} Nv{} T{} {:?}", be.kind(), p.batch, p.nv, p.t, p.gate);
        check(&format!("{label} v'"), &[p.batch, p.nv, p.v_dim], &gv, v64, v32);
        check(&format!("{label} l'"), &[p.batch, p.t, p.l_dim], &gl, l64, l32);
    }
}

fn sparse_fusion_case(be: &dyn Backend) {
    let cases = [(1usize, 300usize, 27usize, 198usize, false), (2, 40, 39, 117, true)];
    for (i, &(batch, tokens, start, t, masked)) in cases.iter().enumerate() {
        let p = SparseFusionProblem::rlipv2(batch, tokens, start, t);
        let fw = OwnedWeights::seeded(p.fusion.weight_shapes(), 700 + i as u64);
        let bw = OwnedWeights::seeded(BertLayerProblem::roberta_base(batch, t).weight_shapes(), 800 + i as u64);
        let mut rng = Rng::new(900 + i as u64);
        let memory = rng.fill(batch * tokens * 256, -2.0, 2.0);
        let pos = rng.fill(batch * tokens * 256, -1.0, 1.0);
        let lang = rng.fill(batch * t * 768, -1.0, 1.0);
        let mask: Option<Vec<f32>> =
            masked.then(|| (0..batch * t).map(|j| if j % 7 == 6 { 0.0 } else { 1.0 }).collect());
        let mut mem = memory.clone();
        let Some(out) = run(be, "sparse_fusion", || {
            be.sparse_fusion(&p, &mut mem, &pos, &lang, mask.as_deref(), &fw.as_fusion(), &bw.as_bert())
        }) else {
            return;
        };
        let (o64, m64, o32, m32) = crate::common::once(&format!("fusion_backends/sparse_fusion/{i}"), || {
            let (fw, bw) = (fw.as_fusion(), bw.as_bert());
            let mut m64 = lift::<f64>(&memory);
            let o64 = oracle::sparse_fusion::sparse_fusion::<f64>(
                &p,
                &mut m64,
                &lift(&pos),
                &lift(&lang),
                mask.as_deref(),
                &fw,
                &bw,
            );
            let mut m32 = memory.clone();
            let o32 = oracle::sparse_fusion::sparse_fusion::<f32>(&p, &mut m32, &pos, &lang, mask.as_deref(), &fw, &bw);
            (o64, m64, o32, m32)
        });
        let label = format!("{}/sparse_fusion/B{batch} S{tokens} start{start} T{t}", be.kind());
        check(&format!("{label} lang"), &[batch, t, 768], &out, o64, o32);
        check(&format!("{label} memory"), &[batch, tokens, 256], &mem, m64, m32);
    }
}

backend_tests! {
    gemm_reference_matches_reference: BackendKind::Reference, gemm_case;
    gemm_cpu_matches_reference: BackendKind::Cpu, gemm_case;
    gemm_wgpu_matches_reference: BackendKind::Wgpu, gemm_case;
    gemm_cubecl_wgpu_matches_reference: BackendKind::CubeclWgpu, gemm_case;
    gemm_cubecl_cuda_matches_reference: BackendKind::CubeclCuda, gemm_case;
    layer_norm_cpu_matches_reference: BackendKind::Cpu, layer_norm_case;
    layer_norm_wgpu_matches_reference: BackendKind::Wgpu, layer_norm_case;
    layer_norm_cubecl_wgpu_matches_reference: BackendKind::CubeclWgpu, layer_norm_case;
    layer_norm_cubecl_cuda_matches_reference: BackendKind::CubeclCuda, layer_norm_case;
    softmax_cpu_matches_reference: BackendKind::Cpu, softmax_case;
    softmax_wgpu_matches_reference: BackendKind::Wgpu, softmax_case;
    softmax_cubecl_wgpu_matches_reference: BackendKind::CubeclWgpu, softmax_case;
    softmax_cubecl_cuda_matches_reference: BackendKind::CubeclCuda, softmax_case;
    attention_cpu_matches_reference: BackendKind::Cpu, attention_case;
    attention_wgpu_matches_reference: BackendKind::Wgpu, attention_case;
    attention_cubecl_wgpu_matches_reference: BackendKind::CubeclWgpu, attention_case;
    attention_cubecl_cuda_matches_reference: BackendKind::CubeclCuda, attention_case;
    gated_cross_attn_reference_matches_reference: BackendKind::Reference, gated_cross_attn_case;
    gated_cross_attn_cpu_matches_reference: BackendKind::Cpu, gated_cross_attn_case;
    gated_cross_attn_wgpu_matches_reference: BackendKind::Wgpu, gated_cross_attn_case;
    gated_cross_attn_cubecl_wgpu_matches_reference: BackendKind::CubeclWgpu, gated_cross_attn_case;
    gated_cross_attn_cubecl_cuda_matches_reference: BackendKind::CubeclCuda, gated_cross_attn_case;
    sparse_fusion_cpu_matches_reference: BackendKind::Cpu, sparse_fusion_case;
    sparse_fusion_wgpu_matches_reference: BackendKind::Wgpu, sparse_fusion_case;
    sparse_fusion_cubecl_wgpu_matches_reference: BackendKind::CubeclWgpu, sparse_fusion_case;
    sparse_fusion_cubecl_cuda_matches_reference: BackendKind::CubeclCuda, sparse_fusion_case;
}

#[test]
fn fusion_ops_reject_bad_shapes_with_the_tensor_name() {
    let be = rlipv2::backend::open(BackendKind::Cpu).unwrap();
    let p = GatedCrossAttnProblem::rlipv2(1, 4, 3);
    let w = OwnedWeights::seeded(p.weight_shapes(), 1);
    let (v, pos, l) = (vec![0.0; 4 * 256], vec![0.0; 4 * 256], vec![0.0; 3 * 768]);
    let err = be.gated_cross_attn(&p, &v, &pos, &l[..100], &w.as_fusion()).unwrap_err().to_string();
    assert!(err.contains("`l`") && err.contains("[1, 3, 768]"), "{err}");
    let mut bad = w.clone();
    bad.get_mut("b_attn.attn.out_l_proj.weight").unwrap().pop();
    let err = be.gated_cross_attn(&p, &v, &pos, &l, &bad.as_fusion()).unwrap_err().to_string();
    assert!(err.contains("b_attn.attn.out_l_proj.weight") && err.contains("[768, 2048]"), "{err}");
    let sp = SparseFusionProblem::rlipv2(1, 10, 7, 3);
    let bw = OwnedWeights::seeded(sp.lang.weight_shapes(), 2);
    let mut mem = vec![0.0; 10 * 256];
    let bad_start = SparseFusionProblem { start: 5, ..sp };
    let err = be
        .sparse_fusion(
            &bad_start,
            &mut mem,
            &vec![0.0; 2560],
            &l,
            None,
            &OwnedWeights::seeded(sp.fusion.weight_shapes(), 3).as_fusion(),
            &bw.as_bert(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("level_start_index"), "{err}");
}

/// The op-by-op baseline of the benches computes the same round as the fused op.
#[test]
fn unfused_round_matches_fused_sparse_fusion() {
    let be = rlipv2::backend::open(BackendKind::Cpu).unwrap();
    let p = SparseFusionProblem::rlipv2(2, 30, 21, 11);
    let fw = OwnedWeights::seeded(p.fusion.weight_shapes(), 31);
    let bw = OwnedWeights::seeded(p.lang.weight_shapes(), 32);
    let mut rng = Rng::new(33);
    let (memory, pos, lang) =
        (rng.fill(2 * 30 * 256, -1.0, 1.0), rng.fill(2 * 30 * 256, -1.0, 1.0), rng.fill(2 * 11 * 768, -1.0, 1.0));
    let mask: Vec<f32> = (0..22).map(|j| if j % 4 == 3 { 0.0 } else { 1.0 }).collect();
    let (mut m1, mut m2) = (memory.clone(), memory.clone());
    let fused = be.sparse_fusion(&p, &mut m1, &pos, &lang, Some(&mask), &fw.as_fusion(), &bw.as_bert()).unwrap();
    let unfused = rlipv2::backend::compose::sparse_fusion(
        be.as_ref(),
        &p,
        &mut m2,
        &pos,
        &lang,
        Some(&mask),
        &fw.as_fusion(),
        &bw.as_bert(),
    )
    .unwrap();
    let d = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(d(&fused, &unfused) < 1e-4 && d(&m1, &m2) < 1e-4, "{} {}", d(&fused, &unfused), d(&m1, &m2));
    assert!(d(&m1, &memory) > 0.1, "the round changed the last level");
}

/// Launch budget: one `gated_cross_attn` in ≤ 3 kernel launches, one `sparse_fusion` round in
/// ≤ 8, counted by the backend's dispatch counter. A GPU backend that lacks the fused ops or a
/// counter is a visible SKIP.
#[test]
fn launch_budget_gated_cross_attn_3_sparse_fusion_8() {
    for kind in [BackendKind::Wgpu, BackendKind::CubeclWgpu, BackendKind::CubeclCuda] {
        let Some(be) = open_or_skip(kind) else { continue };
        let Some(before) = be.dispatch_count() else {
            println!("SKIP {kind}/launch budget: the backend does not count dispatches yet");
            continue;
        };
        let p = SparseFusionProblem::rlipv2(1, 20, 14, 5);
        let fw = OwnedWeights::seeded(p.fusion.weight_shapes(), 41);
        let bw = OwnedWeights::seeded(p.lang.weight_shapes(), 42);
        let mut rng = Rng::new(43);
        let (mut memory, pos, lang) =
            (rng.fill(20 * 256, -1.0, 1.0), rng.fill(20 * 256, -1.0, 1.0), rng.fill(5 * 768, -1.0, 1.0));
        let v = memory[14 * 256..].to_vec();
        let vp = pos[14 * 256..].to_vec();
        if run(be.as_ref(), "gated_cross_attn", || be.gated_cross_attn(&p.fusion, &v, &vp, &lang, &fw.as_fusion()))
            .is_none()
        {
            continue;
        }
        let after_gca = be.dispatch_count().unwrap();
        assert!(after_gca - before <= 3, "{kind}: gated_cross_attn took {} launches (budget 3)", after_gca - before);
        if run(be.as_ref(), "sparse_fusion", || {
            be.sparse_fusion(&p, &mut memory, &pos, &lang, None, &fw.as_fusion(), &bw.as_bert())
        })
        .is_none()
        {
            continue;
        }
        let after_round = be.dispatch_count().unwrap();
        assert!(
            after_round - after_gca <= 8,
            "{kind}: sparse_fusion took {} launches (budget 8)",
            after_round - after_gca
        );
        println!(
            "{kind}: gated_cross_attn {} launches, sparse_fusion round {} launches",
            after_gca - before,
            after_round - after_gca
        );
    }
}

/// The device-resident round computes what the host-to-host round computes (first run).
#[test]
fn prepared_sparse_fusion_matches_host_to_host() {
    for kind in [BackendKind::Wgpu, BackendKind::CubeclWgpu, BackendKind::CubeclCuda] {
        let Some(be) = open_or_skip(kind) else { continue };
        let p = SparseFusionProblem::rlipv2(2, 25, 16, 6);
        let fw = OwnedWeights::seeded(p.fusion.weight_shapes(), 51);
        let bw = OwnedWeights::seeded(p.lang.weight_shapes(), 52);
        let mut rng = Rng::new(53);
        let (memory, pos, lang) =
            (rng.fill(2 * 25 * 256, -1.0, 1.0), rng.fill(2 * 25 * 256, -1.0, 1.0), rng.fill(2 * 6 * 768, -1.0, 1.0));
        let mask: Vec<f32> = (0..12).map(|j| if j == 5 { 0.0 } else { 1.0 }).collect();
        let Some(mut prepared) = run(be.as_ref(), "prepare_sparse_fusion", || {
            be.prepare_sparse_fusion(&p, &memory, &pos, &lang, Some(&mask), &fw.as_fusion(), &bw.as_bert())
        }) else {
            continue;
        };
        prepared.run().unwrap();
        let resident = prepared.output().unwrap();
        let mut m = memory.clone();
        let host = be.sparse_fusion(&p, &mut m, &pos, &lang, Some(&mask), &fw.as_fusion(), &bw.as_bert()).unwrap();
        let d = resident.iter().zip(&host).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(d == 0.0, "{kind}: resident vs host-to-host max diff {d}");
        assert!(host.iter().any(|x| x.abs() > 0.1));
    }
}

/// The resident op-by-op round (the bench's baseline) computes the round: language output vs the
/// f64 oracle, with a mask and B = 2. Backends without one print a SKIP.
#[test]
fn resident_unfused_round_matches_reference() {
    for kind in [BackendKind::Wgpu, BackendKind::CubeclWgpu, BackendKind::CubeclCuda] {
        let Some(be) = open_or_skip(kind) else { continue };
        let (batch, tokens, start, t) = (2, 30, 9, 13);
        let p = SparseFusionProblem::rlipv2(batch, tokens, start, t);
        let fw = OwnedWeights::seeded(p.fusion.weight_shapes(), 61);
        let bw = OwnedWeights::seeded(p.lang.weight_shapes(), 62);
        let mut rng = Rng::new(63);
        let (memory, pos, lang) = (
            rng.fill(batch * tokens * 256, -2.0, 2.0),
            rng.fill(batch * tokens * 256, -1.0, 1.0),
            rng.fill(batch * t * 768, -1.0, 1.0),
        );
        let mask: Vec<f32> = (0..batch * t).map(|j| if j % 5 == 4 { 0.0 } else { 1.0 }).collect();
        let Some(mut prepared) = run(be.as_ref(), "prepare_sparse_fusion_unfused", || {
            be.prepare_sparse_fusion_unfused(&p, &memory, &pos, &lang, Some(&mask), &fw.as_fusion(), &bw.as_bert())
        }) else {
            continue;
        };
        let before = be.dispatch_count();
        prepared.run().unwrap();
        let launches = be.dispatch_count().zip(before).map(|(a, b)| a - b);
        let got = prepared.output().unwrap();
        let o64 = oracle::sparse_fusion::sparse_fusion::<f64>(
            &p,
            &mut lift::<f64>(&memory),
            &lift(&pos),
            &lift(&lang),
            Some(&mask),
            &fw.as_fusion(),
            &bw.as_bert(),
        );
        let o32 = oracle::sparse_fusion::sparse_fusion::<f32>(
            &p,
            &mut memory.clone(),
            &pos,
            &lang,
            Some(&mask),
            &fw.as_fusion(),
            &bw.as_bert(),
        );
        check(&format!("{kind}/resident unfused round lang"), &[batch, t, 768], &got, o64, o32);
        println!("{kind}: resident op-by-op round, {launches:?} launches");
        assert!(
            launches.is_none_or(|n| n > 8),
            "{kind}: the op-by-op round should take more launches than the fused one"
        );
    }
}
