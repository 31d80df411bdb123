//! Oracle self-tests for the ALIF ops and their building blocks: hand cases and invariants.

use rlipv2::problem::gated_cross_attn::LN_EPS;
use rlipv2::problem::OwnedWeights;
use rlipv2::problem::{
    Activation, AttentionProblem, Gate, GatedCrossAttnProblem, GemmProblem, LayerNormProblem, SoftmaxProblem,
    SparseFusionProblem,
};
use rlipv2::reference::{
    attention::attention, gated_cross_attn::gated_cross_attn, gemm::gemm, layer_norm::layer_norm, lift,
    softmax::softmax, sparse_fusion::sparse_fusion,
};
use rlipv2::seeded::Rng;

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn gemm_hand_case_with_bias_relu_and_gelu() {
    // x [2,3], W [2,3] (PyTorch [out,in]), b [2]
    let x = [1.0, 2.0, 3.0, -1.0, 0.5, 0.0];
    let w = [1.0, 0.0, -1.0, 0.5, 0.5, 0.5];
    let b = [0.5, -1.0];
    let p = GemmProblem::linear(2, 3, 2);
    let y = gemm::<f64>(&p, &lift(&x), &w, Some(&b));
    assert_eq!(y, vec![1.0 - 3.0 + 0.5, 3.0 - 1.0, -1.0 + 0.5, -0.25 - 1.0]);
    let relu = gemm::<f64>(&p.with_act(Activation::Relu), &lift(&x), &w, Some(&b));
    assert_eq!(relu, vec![0.0, 2.0, 0.0, 0.0]);
    let gelu = gemm::<f64>(&GemmProblem::linear(1, 1, 1).with_act(Activation::Gelu), &[1.0], &[1.0], Some(&[0.0]));
    assert!((gelu[0] - 0.841_344_746_068_543).abs() < 1e-12, "exact-erf GELU(1): {}", gelu[0]);
}

#[test]
fn layer_norm_and_softmax_hand_cases() {
    let y = layer_norm::<f64>(
        &LayerNormProblem { rows: 1, width: 4, eps: 0.0 },
        &[1.0, 2.0, 3.0, 4.0],
        &[1.0; 4],
        &[0.0; 4],
    );
    let s = 1.25f64.sqrt();
    assert!(max_diff(&y, &[-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s]) < 1e-12);
    let p = softmax::<f64>(&SoftmaxProblem { rows: 2, width: 2 }, &[0.0, 0.0, 1000.0, -1000.0]);
    assert_eq!(p, vec![0.5, 0.5, 1.0, 0.0]);
}

#[test]
fn attention_with_one_key_returns_its_value_and_mask_hides_keys() {
    let p = AttentionProblem { batch: 1, heads: 2, q_len: 3, k_len: 1, head_dim: 2, scale: 0.7 };
    let mut rng = Rng::new(3);
    let (q, k, v) = (rng.fill(12, -1.0, 1.0), rng.fill(4, -1.0, 1.0), rng.fill(4, -1.0, 1.0));
    let out = attention::<f64>(&p, &lift(&q), &lift(&k), &lift(&v), None);
    for i in 0..3 {
        assert!(max_diff(&out[i * 4..(i + 1) * 4], &lift(&v)) < 1e-12);
    }
    // two keys, the second masked by −10000: same as attending to the first alone
    let p2 = AttentionProblem { k_len: 2, ..p };
    let k2: Vec<f32> = k.iter().chain(rng.fill(4, -1.0, 1.0).iter()).copied().collect();
    let v2: Vec<f32> = v.iter().chain(rng.fill(4, -1.0, 1.0).iter()).copied().collect();
    let masked = attention::<f64>(&p2, &lift(&q), &lift(&k2), &lift(&v2), Some(&[0.0, -10000.0]));
    assert!(max_diff(&masked, &out) < 1e-9);
}

fn small(batch: usize, nv: usize, t: usize, gate: Gate) -> GatedCrossAttnProblem {
    GatedCrossAttnProblem { batch, nv, t, v_dim: 16, l_dim: 24, embed: 32, heads: 4, gate }
}

fn inputs(p: &GatedCrossAttnProblem, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    (
        rng.fill(p.batch * p.nv * p.v_dim, -2.0, 2.0),
        rng.fill(p.batch * p.nv * p.v_dim, -1.0, 1.0),
        rng.fill(p.batch * p.t * p.l_dim, -2.0, 2.0),
    )
}

#[test]
fn gate_zero_gives_layer_norm_of_the_input() {
    for gate in [Gate::VXAc, Gate::Glip] {
        let p = small(2, 5, 3, gate);
        let mut w = OwnedWeights::seeded(p.weight_shapes(), 1);
        w.get_mut("b_attn.gamma_v").unwrap().iter_mut().for_each(|g| *g = 0.0);
        w.get_mut("b_attn.gamma_l").unwrap().iter_mut().for_each(|g| *g = 0.0);
        let fw = w.as_fusion();
        let (v, pos, l) = inputs(&p, 2);
        let (v2, l2) = gated_cross_attn::<f64>(&p, &lift(&v), &lift(&pos), &lift(&l), &fw);
        let lnv = layer_norm::<f64>(
            &LayerNormProblem { rows: 10, width: 16, eps: LN_EPS },
            &lift(&v),
            fw.layer_norm_v.weight,
            fw.layer_norm_v.bias,
        );
        let lnl = layer_norm::<f64>(
            &LayerNormProblem { rows: 6, width: 24, eps: LN_EPS },
            &lift(&l),
            fw.layer_norm_l.weight,
            fw.layer_norm_l.bias,
        );
        assert_eq!(v2, lnv, "{gate:?}");
        assert_eq!(l2, lnl, "{gate:?}");
    }
}

#[test]
fn one_label_gives_image_side_softmax_one() {
    // T = 1: every image token attends with weight 1 to the single label, so
    // Δv = out_v_proj(values_l_proj(LN(l))) for every token, independent of v and pos.
    let p = small(1, 4, 1, Gate::XGating);
    let w = OwnedWeights::seeded(p.weight_shapes(), 3);
    let fw = w.as_fusion();
    let (v, pos, l) = inputs(&p, 4);
    let (v2, _) = gated_cross_attn::<f64>(&p, &lift(&v), &lift(&pos), &lift(&l), &fw);
    let lnv = layer_norm::<f64>(
        &LayerNormProblem { rows: 4, width: 16, eps: LN_EPS },
        &lift(&v),
        fw.layer_norm_v.weight,
        fw.layer_norm_v.bias,
    );
    let lnl = layer_norm::<f64>(
        &LayerNormProblem { rows: 1, width: 24, eps: LN_EPS },
        &lift(&l),
        fw.layer_norm_l.weight,
        fw.layer_norm_l.bias,
    );
    let vl = gemm::<f64>(&GemmProblem::linear(1, 24, 32), &lnl, fw.values_l_proj.weight, Some(fw.values_l_proj.bias));
    let dv = gemm::<f64>(&GemmProblem::linear(1, 32, 16), &vl, fw.out_v_proj.weight, Some(fw.out_v_proj.bias));
    for i in 0..4 {
        let expect: Vec<f64> = (0..16).map(|c| lnv[i * 16 + c] + dv[c]).collect();
        assert!(max_diff(&v2[i * 16..(i + 1) * 16], &expect) < 1e-12);
    }
}

#[test]
fn permuting_labels_permutes_language_output_and_keeps_image_output() {
    let p = small(1, 6, 5, Gate::VXAc);
    let w = OwnedWeights::seeded(p.weight_shapes(), 5);
    let (v, pos, l) = inputs(&p, 6);
    let perm = [3, 0, 4, 1, 2];
    let lp: Vec<f32> = perm.iter().flat_map(|&j| l[j * 24..(j + 1) * 24].to_vec()).collect();
    let (v1, l1) = gated_cross_attn::<f64>(&p, &lift(&v), &lift(&pos), &lift(&l), &w.as_fusion());
    let (v2, l2) = gated_cross_attn::<f64>(&p, &lift(&v), &lift(&pos), &lift(&lp), &w.as_fusion());
    assert!(max_diff(&v1, &v2) < 1e-12);
    let l1p: Vec<f64> = perm.iter().flat_map(|&j| l1[j * 24..(j + 1) * 24].to_vec()).collect();
    assert!(max_diff(&l1p, &l2) < 1e-12);
}

#[test]
fn sparse_fusion_touches_only_the_last_level_and_is_label_permutation_equivariant() {
    let fusion = small(2, 3, 4, Gate::VXAc);
    let p = SparseFusionProblem {
        tokens: 10,
        start: 7,
        fusion,
        lang: rlipv2::problem::BertLayerProblem { batch: 2, t: 4, hidden: 24, heads: 4, ffn: 40 },
    };
    p.validate().unwrap();
    let fw = OwnedWeights::seeded(fusion.weight_shapes(), 7);
    let bw = OwnedWeights::seeded(p.lang.weight_shapes(), 8);
    let mut rng = Rng::new(9);
    let memory = rng.fill(2 * 10 * 16, -1.0, 1.0);
    let pos = rng.fill(2 * 10 * 16, -1.0, 1.0);
    let lang = rng.fill(2 * 4 * 24, -1.0, 1.0);
    let mask = [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0];
    let mut mem = lift::<f64>(&memory);
    let out =
        sparse_fusion::<f64>(&p, &mut mem, &lift(&pos), &lift(&lang), Some(&mask), &fw.as_fusion(), &bw.as_bert());
    for b in 0..2 {
        assert_eq!(
            &mem[b * 160..b * 160 + 7 * 16],
            &lift::<f64>(&memory[b * 160..b * 160 + 7 * 16])[..],
            "levels before the last are untouched"
        );
    }
    let gather =
        |buf: &[f32]| -> Vec<f64> { (0..2).flat_map(|b| lift::<f64>(&buf[b * 160 + 112..b * 160 + 160])).collect() };
    let (v_new, _) = gated_cross_attn::<f64>(&fusion, &gather(&memory), &gather(&pos), &lift(&lang), &fw.as_fusion());
    let written: Vec<f64> = (0..2).flat_map(|b| mem[b * 160 + 112..b * 160 + 160].to_vec()).collect();
    assert_eq!(written, v_new, "the last level holds the fused tokens");
    // labels permuted within each batch (mask permuted with them) → language output permuted
    let perm = [2, 0, 3, 1];
    let permute = |x: &[f32], w: usize| -> Vec<f32> {
        (0..2).flat_map(|b| perm.iter().flat_map(move |&j| x[(b * 4 + j) * w..(b * 4 + j + 1) * w].to_vec())).collect()
    };
    let mut mem2 = lift::<f64>(&memory);
    let out2 = sparse_fusion::<f64>(
        &p,
        &mut mem2,
        &lift(&pos),
        &lift(&permute(&lang, 24)),
        Some(&permute(&mask, 1)),
        &fw.as_fusion(),
        &bw.as_bert(),
    );
    let out_p: Vec<f64> = (0..2)
        .flat_map(|b| {
            perm.iter().flat_map(|&j| out[(b * 4 + j) * 24..(b * 4 + j + 1) * 24].to_vec()).collect::<Vec<_>>()
        })
        .collect();
    assert!(max_diff(&out_p, &out2) < 1e-9);
    assert!(max_diff(&mem, &mem2) < 1e-12);
}
