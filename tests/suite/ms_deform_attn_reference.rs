//! Oracle self-tests: hand-computed cases and invariants, f32 vs f64.

use rlipv2::problem::{Form, MsDeformAttnInput, MsDeformAttnProblem, RefKind};
use rlipv2::reference::ms_deform_attn::{fused_to_official, ms_deform_attn};
use rlipv2::seeded::MsDeformAttnData;

/// One level 2×2, M = 1, D = 8, one point: value at pixel (y, x) channel d = 10·(2y + x) + d.
fn grid_2x2() -> (MsDeformAttnProblem, Vec<f32>) {
    let pr = MsDeformAttnProblem::new(1, 1, 1, 8, 1, &[(2, 2)], Form::Official);
    let value = (0..4).flat_map(|pix| (0..8).map(move |d| (10 * pix + d) as f32)).collect();
    (pr, value)
}

fn run(pr: &MsDeformAttnProblem, value: &[f32], x: f32, y: f32, w: f32) -> Vec<f64> {
    ms_deform_attn::<f64>(
        pr,
        &MsDeformAttnInput::Official { value, sampling_locations: &[x, y], attention_weights: &[w] },
    )
}

#[test]
fn pixel_centres_read_exact_values() {
    let (pr, value) = grid_2x2();
    // centre of pixel (y=1, x=0) is (x, y) = (0.25, 0.75) in normalized coordinates
    let out = run(&pr, &value, 0.25, 0.75, 1.0);
    assert_eq!(out, (0..8).map(|d| (20 + d) as f64).collect::<Vec<_>>());
}

#[test]
fn midpoint_is_the_mean_of_four_pixels_times_weight() {
    let (pr, value) = grid_2x2();
    let out = run(&pr, &value, 0.5, 0.5, 0.5);
    // mean of 0,10,20,30 = 15, plus d; times 0.5
    for (d, &o) in out.iter().enumerate() {
        assert!((o - 0.5 * (15.0 + d as f64)).abs() < 1e-12, "d={d}: {o}");
    }
}

#[test]
fn zero_padding_at_border_and_skip_rule() {
    let (pr, value) = grid_2x2();
    // x = 0·2 − 0.5 = −0.5, y = 0.25·2 − 0.5 = 0: half of pixel (0,0), the other half is padding
    let out = run(&pr, &value, 0.0, 0.25, 1.0);
    for (d, &o) in out.iter().enumerate() {
        assert!((o - 0.5 * d as f64).abs() < 1e-12);
    }
    // x = −0.25·2 − 0.5 = −1: on the skip threshold (−1 < x fails) → exactly zero
    assert!(run(&pr, &value, -0.25, 0.5, 1.0).iter().all(|&o| o == 0.0));
    // far outside
    assert!(run(&pr, &value, 4.0, -3.0, 1.0).iter().all(|&o| o == 0.0));
    // just inside the right border: x = 1.2·2 − 0.5 = 1.9 → 10% of column 1
    let out = run(&pr, &value, 1.2, 0.25, 1.0);
    for (d, &o) in out.iter().enumerate() {
        assert!((o - 0.1 * (10.0 + d as f64)).abs() < 2e-6 * (10.0 + d as f64), "d={d}: {o}");
    }
}

#[test]
fn single_pixel_level_reads_that_pixel_over_its_area() {
    let pr = MsDeformAttnProblem::new(1, 1, 1, 8, 1, &[(1, 1)], Form::Official);
    let value: Vec<f32> = (0..8).map(|d| d as f32 + 1.0).collect();
    let out = run(&pr, &value, 0.5, 0.5, 1.0);
    assert_eq!(out, value.iter().map(|&v| v as f64).collect::<Vec<_>>());
}

#[test]
fn fused_softmax_of_one_key_is_one_and_large_logits_are_stable() {
    let pr = MsDeformAttnProblem::new(1, 1, 2, 8, 1, &[(3, 3)], Form::Fused(RefKind::Points));
    let (loc, w) = fused_to_official::<f64>(&pr, RefKind::Points, &[0.5, 0.5], &[0.0, 0.0, 3.0, -1.5], &[1e4, -1e4]);
    assert_eq!(w, vec![1.0, 1.0], "one key per head → weight 1 whatever the logit");
    // points: loc = ref + off / (W, H)
    assert_eq!(loc, vec![0.5, 0.5, 0.5 + 3.0 / 3.0, 0.5 - 1.5 / 3.0]);
}

#[test]
fn fused_boxes_location_formula() {
    let pr = MsDeformAttnProblem::new(1, 1, 1, 8, 2, &[(4, 4)], Form::Fused(RefKind::Boxes));
    let (loc, w) =
        fused_to_official::<f64>(&pr, RefKind::Boxes, &[0.5, 0.25, 0.2, 0.4], &[1.0, 2.0, -2.0, 0.0], &[0.0, 0.0]);
    // loc = ref_xy + off / P · ref_wh · 0.5 with P = 2
    let expect = [0.5 + 1.0 / 2.0 * 0.2 * 0.5, 0.25 + 2.0 / 2.0 * 0.4 * 0.5, 0.5 - 2.0 / 2.0 * 0.2 * 0.5, 0.25];
    for (a, b) in loc.iter().zip(expect) {
        assert!((a - b).abs() < 1e-7, "{loc:?} vs {expect:?}");
    }
    assert_eq!(w, vec![0.5, 0.5]);
}

#[test]
fn linear_in_attention_weights_and_f32_close_to_f64() {
    let pr = MsDeformAttnProblem::new(2, 17, 4, 16, 3, &[(6, 7), (3, 4), (1, 1)], Form::Official);
    let data = MsDeformAttnData::random(&pr, 11);
    let out64 = ms_deform_attn::<f64>(&pr, &data.input());
    let out32 = ms_deform_attn::<f32>(&pr, &data.input());
    let scale = out64.iter().fold(0.0f64, |a, x| a.max(x.abs()));
    let err = out32.iter().zip(&out64).map(|(&a, &b)| (a as f64 - b).abs()).fold(0.0, f64::max);
    assert!(err < 1e-5 * scale.max(1.0), "f32 oracle drifts from f64: {err}");
    assert!(scale > 0.1, "the case must produce non-trivial output");
    let doubled: Vec<f32> = data.b.iter().map(|w| 2.0 * w).collect();
    let out2 = ms_deform_attn::<f64>(
        &pr,
        &MsDeformAttnInput::Official { value: &data.value, sampling_locations: &data.a, attention_weights: &doubled },
    );
    for (a, b) in out2.iter().zip(&out64) {
        assert!((a - 2.0 * b).abs() < 1e-9);
    }
}

#[test]
fn fused_form_equals_official_on_computed_locations() {
    for kind in [RefKind::Points, RefKind::Boxes] {
        let pr = MsDeformAttnProblem::new(1, 23, 8, 8, 2, &[(5, 6), (2, 3)], Form::Fused(kind));
        let data = MsDeformAttnData::random(&pr, 12);
        let fused = ms_deform_attn::<f64>(&pr, &data.input());
        let (loc, w) = fused_to_official::<f64>(&pr, kind, &data.a, &data.b, &data.c);
        let (loc32, w32): (Vec<f32>, Vec<f32>) =
            (loc.iter().map(|&x| x as f32).collect(), w.iter().map(|&x| x as f32).collect());
        let mut off = pr.clone();
        off.form = Form::Official;
        let official = ms_deform_attn::<f64>(
            &off,
            &MsDeformAttnInput::Official { value: &data.value, sampling_locations: &loc32, attention_weights: &w32 },
        );
        let err = fused.iter().zip(&official).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(err < 1e-5, "{kind:?}: {err}");
    }
}

#[test]
fn validate_rejects_bad_problems() {
    let ok = MsDeformAttnProblem::new(1, 4, 8, 32, 4, &[(4, 4), (2, 2)], Form::Official);
    assert!(ok.validate().is_ok());
    let mut bad = ok.clone();
    bad.channels = 12;
    assert!(bad.validate().unwrap_err().to_string().contains("D"));
    let mut bad = ok.clone();
    bad.heads = 17;
    assert!(bad.validate().is_err());
    let mut bad = ok.clone();
    bad.points = 40; // L·P = 80 > 64
    assert!(bad.validate().unwrap_err().to_string().contains("L·P"));
    let mut bad = ok.clone();
    bad.tokens += 1;
    assert!(bad.validate().unwrap_err().to_string().contains("Σ H·W"));
    let mut bad = ok.clone();
    bad.levels[1].start = 3;
    assert!(bad.validate().unwrap_err().to_string().contains("level_start_index"));
}
