//! `window_attention` (Swin's shifted-window attention, fused) on every backend:
//! - against the official block (zero pad after norm1, roll, window_partition, WindowAttention
//!   with its relative_position_index and the BasicLayer shift mask, window_reverse, roll back,
//!   crop; goldens from `tools/official_window_attention.py`) for a 12×17 map (padded to 2×3
//!   windows) shifted and not, a one-window map with three heads, and a 5×3 map that is mostly
//!   padding;
//! - against the oracle under the tolerance policy on seeded edge cases: window 2 with shift 1,
//!   the GPU kernels' largest window (8×8, Dh 32: 2048 staged values), one head of one channel,
//!   large scores (the region mask's −100 beside scores of ±30), odd sizes;
//! - the oracle against plain attention where they must agree (one window, no shift, zero bias);
//! - refusals: a shift ≥ the window, wrong lengths, and a window over the GPU kernels' limit
//!   answered `Unsupported` by name there.

use crate::common::{assert_close_flat, open_or_skip, tolerance};
use rlipv2::backend::{BackendKind, Ops, Tensor};
use rlipv2::problem::{AttentionProblem, DType, WindowAttentionProblem};
use rlipv2::reference::{self as oracle, lift};
use rlipv2::seeded::Rng;
use serde_json::Value;

const KINDS: [BackendKind; 5] =
    [BackendKind::Reference, BackendKind::Cpu, BackendKind::Wgpu, BackendKind::CubeclWgpu, BackendKind::CubeclCuda];

fn frac(a: u64) -> f64 {
    (a % 65521) as f64 / 65521.0
}

/// The generator's inputs: `qkv = x·Wᵀ + b` (computed in f64, rounded to f32), `b` and the table.
fn golden_inputs(p: &WindowAttentionProblem) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let c = p.channels();
    let x: Vec<f64> = (0..(p.h * p.w * c) as u64).map(|j| (frac(j * 7919 + 3) * 2.0 - 1.0) as f32 as f64).collect();
    let w: Vec<f64> = (0..(3 * c * c) as u64)
        .map(|j| ((frac(j * 104729 + 5) * 2.0 - 1.0) * (3.0 / c as f64).sqrt()) as f32 as f64)
        .collect();
    let b: Vec<f64> = (0..(3 * c) as u64).map(|j| (0.1 * (frac(j * 7919 + 17) * 2.0 - 1.0)) as f32 as f64).collect();
    let mut qkv = Vec::with_capacity(p.h * p.w * 3 * c);
    for row in x.chunks_exact(c) {
        for o in 0..3 * c {
            qkv.push((b[o] + row.iter().zip(&w[o * c..(o + 1) * c]).map(|(a, b)| a * b).sum::<f64>()) as f32);
        }
    }
    let table = (0..(p.table_rows() * p.heads) as u64).map(|j| (frac(j * 104729 + 29) * 2.0 - 1.0) as f32).collect();
    (qkv, b.iter().map(|&v| v as f32).collect(), table)
}

fn run(
    kind: BackendKind,
    p: &WindowAttentionProblem,
    qkv: &[f32],
    bias: &[f32],
    table: &[f32],
) -> Option<rlipv2::Result<Vec<f32>>> {
    let be = open_or_skip(kind)?;
    let host = |v: &[f32]| Tensor::host(v.to_vec());
    let r = be.window_attention_t(p, &host(qkv), &host(bias), &host(table)).and_then(|t| t.into_vec(be.as_ref()));
    Some(r)
}

fn official(kind: BackendKind) {
    let g: Value = serde_json::from_str(include_str!("../fixtures/window_attention_golden.json")).unwrap();
    for c in g["cases"].as_array().unwrap() {
        let u = |k: &str| c[k].as_u64().unwrap() as usize;
        let p = WindowAttentionProblem {
            h: u("h"),
            w: u("w"),
            window: 7,
            shift: u("shift"),
            heads: u("heads"),
            head_dim: 32,
            scale: 32f32.powf(-0.5),
        };
        let (qkv, bias, table) = golden_inputs(&p);
        let Some(got) = run(kind, &p, &qkv, &bias, &table) else { return };
        let got = got.unwrap();
        let stride = u("stride");
        let want: Vec<f64> = c["out"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let worst = want.iter().enumerate().map(|(k, w)| (got[k * stride] as f64 - w).abs()).fold(0.0, f64::max);
        let abs_sum: f64 = got.iter().map(|v| (*v as f64).abs()).sum();
        let want_sum = c["abs_sum"].as_f64().unwrap();
        println!("{kind} {p:?}: max |diff| vs official {worst:.1e}, Σ|out| {abs_sum:.6} vs {want_sum:.6}");
        assert!(worst <= 1e-5, "{kind} {p:?}: max |diff| vs the official block {worst}");
        assert!((abs_sum - want_sum).abs() <= 1e-6 * want_sum, "{kind} {p:?}: Σ|out| {abs_sum} vs {want_sum}");
    }
}

fn edge_cases(kind: BackendKind) {
    let cases = [
        // (Hp, Wp, window, shift, heads, Dh, input scale)
        (4, 6, 2, 1, 2, 3, 1.0),
        (16, 8, 8, 4, 2, 32, 1.0),
        (3, 3, 3, 1, 1, 1, 1.0),
        (14, 7, 7, 3, 1, 32, 6.0),
        (9, 11, 4, 2, 3, 5, 1.0),
    ];
    for (i, &(h, w, window, shift, heads, head_dim, amp)) in cases.iter().enumerate() {
        let p = WindowAttentionProblem { h, w, window, shift, heads, head_dim, scale: (head_dim as f32).powf(-0.5) };
        let mut rng = Rng::new(300 + i as u64);
        let qkv = rng.fill(h * w * 3 * p.channels(), -amp, amp);
        let bias = rng.fill(3 * p.channels(), -amp, amp);
        let table = rng.fill(p.table_rows() * heads, -2.0, 2.0);
        let Some(got) = run(kind, &p, &qkv, &bias, &table) else { return };
        let got = got.unwrap();
        let ref64 = oracle::window_attention::window_attention::<f64>(&p, &lift(&qkv), &lift(&bias), &lift(&table));
        let ref32 = oracle::window_attention::window_attention::<f32>(&p, &qkv, &bias, &table);
        assert_close_flat(
            &format!("{kind} / window_attention / {p:?}"),
            &[h * w, p.channels()],
            &got,
            &ref64,
            &ref32,
            &tolerance(DType::F32),
        );
    }
}

#[test]
fn window_attention_matches_the_official_block_and_the_oracle_on_every_backend() {
    for kind in KINDS {
        official(kind);
        edge_cases(kind);
    }
}

#[test]
fn one_unshifted_window_without_bias_is_plain_attention() {
    let p = WindowAttentionProblem { h: 5, w: 5, window: 5, shift: 0, heads: 2, head_dim: 4, scale: 0.5 };
    let mut rng = Rng::new(7);
    let qkv = rng.fill(25 * 3 * 8, -1.0, 1.0);
    let table = vec![0.0; p.table_rows() * 2];
    let got = oracle::window_attention::window_attention::<f64>(&p, &lift(&qkv), &[0.0; 24], &lift(&table));
    let col = |k: usize| -> Vec<f64> {
        qkv.chunks_exact(24).flat_map(|r| &r[k * 8..(k + 1) * 8]).map(|&v| v as f64).collect()
    };
    let ap = AttentionProblem { batch: 1, heads: 2, q_len: 25, k_len: 25, head_dim: 4, scale: 0.5 };
    let want = oracle::attention::attention::<f64>(&ap, &col(0), &col(1), &col(2), None);
    let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-12, "{worst}");
}

#[test]
fn bad_window_problems_are_refused_by_name() {
    let be = rlipv2::backend::open(BackendKind::Cpu).unwrap();
    let ok = WindowAttentionProblem { h: 13, w: 7, window: 7, shift: 3, heads: 1, head_dim: 2, scale: 1.0 };
    let (qkv, bias, table) =
        (Tensor::host(vec![0.0; 13 * 7 * 6]), Tensor::host(vec![0.0; 6]), Tensor::host(vec![0.0; 169]));
    assert!(be.window_attention_t(&ok, &qkv, &bias, &table).is_ok());
    for (p, b, says) in [
        (WindowAttentionProblem { shift: 7, ..ok }, &bias, "shift"),
        (WindowAttentionProblem { heads: 2, ..ok }, &bias, "qkv"),
        (ok, &table, "bias"),
    ] {
        let e = be.window_attention_t(&p, &qkv, b, &table).unwrap_err().to_string();
        assert!(e.contains(says) && e.contains("window_attention"), "{e}");
    }
    // a 9×9 window (81 tokens) is over the GPU kernels' 64: refused there by name, run on cpu
    let big = WindowAttentionProblem { h: 9, w: 9, window: 9, shift: 0, heads: 1, head_dim: 2, scale: 1.0 };
    let (qkv, bias, table) = (vec![0.5; 81 * 6], vec![0.0; 6], vec![0.0; 289]);
    assert!(run(BackendKind::Cpu, &big, &qkv, &bias, &table).unwrap().is_ok());
    for kind in [BackendKind::Wgpu, BackendKind::CubeclWgpu] {
        if let Some(r) = run(kind, &big, &qkv, &bias, &table) {
            let e = r.unwrap_err();
            assert!(matches!(e, rlipv2::Error::Unsupported { .. }) && e.to_string().contains("64"), "{e}");
        }
    }
}

/// Swin's patch merging gather on every backend, bit for bit, against the official slicing
/// written out (swin_transformer.py:431-441: pad odd sides with zeros, x0 = x[0::2, 0::2],
/// x1 = x[1::2, 0::2], x2 = x[0::2, 1::2], x3 = x[1::2, 1::2], cat on channels), odd and even
/// sides, one channel and many.
#[test]
fn patch_merge_is_the_official_gather_on_every_backend() {
    for (h, w, c) in [(4, 6, 3), (5, 7, 2), (1, 1, 1), (3, 2, 17)] {
        let x = Rng::new((h * 100 + w) as u64).fill(h * w * c, -1.0, 1.0);
        let (hp, wp) = (h + h % 2, w + w % 2);
        let at = |y: usize, xx: usize, ch: usize| if y < h && xx < w { x[(y * w + xx) * c + ch] } else { 0.0 };
        let mut want = Vec::new();
        for i in (0..hp).step_by(2) {
            for j in (0..wp).step_by(2) {
                for (dy, dx) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    want.extend((0..c).map(|ch| at(i + dy, j + dx, ch)));
                }
            }
        }
        for kind in KINDS {
            let Some(be) = open_or_skip(kind) else { continue };
            let got = be.patch_merge_t(&Tensor::host(x.clone()), h, w, c).unwrap().into_vec(be.as_ref()).unwrap();
            assert_eq!(got, want, "{kind} {h}×{w}×{c}");
        }
    }
    let be = rlipv2::backend::open(BackendKind::Cpu).unwrap();
    let e = be.patch_merge_t(&Tensor::host(vec![0.0; 5]), 2, 3, 1).unwrap_err().to_string();
    assert!(e.contains("patch_merge") && e.contains('x'), "{e}");
}
