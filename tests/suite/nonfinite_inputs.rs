//! NaN and ±Inf in `ms_deform_attn` inputs give the defined result on every backend, never an
//! out-of-bounds read: a non-finite sampling location is outside every level (its tap adds 0, as
//! `grid_sample` with zero padding), a non-finite weight, logit or sampled value propagates to the
//! outputs of its (query, head) exactly as in the f64 oracle. Every backend must match the oracle's
//! NaN/Inf pattern element for element and its finite values within tolerance.

use rlipv2::backend::{BackendKind, Ops};
use rlipv2::problem::{DType, Form, MsDeformAttnProblem, RefKind};
use rlipv2::reference::ms_deform_attn::ms_deform_attn as oracle;
use rlipv2::seeded::MsDeformAttnData;

fn poison(x: &mut [f32], every: usize, with: &[f32]) {
    for (n, i) in (0..x.len()).step_by(every).enumerate() {
        x[i] = with[n % with.len()];
    }
}

fn check(kind: BackendKind, pr: &MsDeformAttnProblem, d: &MsDeformAttnData, what: &str) {
    let Some(be) = crate::common::open_or_skip(kind) else { return };
    let want = oracle::<f64>(pr, &d.input());
    let got = be.ms_deform_attn(pr, &d.input(), DType::F32).unwrap_or_else(|e| panic!("{kind} {what}: {e}"));
    let (mut nonfinite, mut finite) = (0, 0);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if w.is_finite() {
            finite += 1;
            assert!((*g as f64 - w).abs() <= 1e-4 + 1e-4 * w.abs(), "{kind} {what}: out[{i}] = {g}, oracle {w}");
        } else {
            nonfinite += 1;
            assert!(!g.is_finite(), "{kind} {what}: out[{i}] = {g}, oracle {w}");
            if w.is_nan() {
                assert!(g.is_nan(), "{kind} {what}: out[{i}] = {g}, oracle NaN");
            }
        }
    }
    assert!(finite > 0, "{what}: the case leaves finite outputs to compare");
    println!("{kind} {what}: {nonfinite} non-finite and {finite} finite outputs agree with the oracle");
}

const POISON: [f32; 3] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];

#[test]
fn nonfinite_locations_weights_and_values_are_defined_on_every_backend() {
    let levels = [(6, 7), (3, 4), (1, 2)];
    let official = MsDeformAttnProblem::new(2, 9, 2, 8, 3, &levels, Form::Official);
    let boxes = MsDeformAttnProblem::new(1, 9, 2, 8, 3, &levels, Form::Fused(RefKind::Boxes));
    for kind in
        [BackendKind::Reference, BackendKind::Cpu, BackendKind::Wgpu, BackendKind::CubeclWgpu, BackendKind::CubeclCuda]
    {
        // locations: a non-finite coordinate samples nothing
        let mut d = MsDeformAttnData::random(&official, 3);
        poison(&mut d.a, 7, &POISON);
        check(kind, &official, &d, "official, non-finite locations");
        // weights: NaN/Inf spread to their (query, head)
        let mut d = MsDeformAttnData::random(&official, 4);
        poison(&mut d.b, 23, &POISON);
        check(kind, &official, &d, "official, non-finite weights");
        // value: NaN where sampled propagates, elsewhere nothing
        let mut d = MsDeformAttnData::random(&official, 5);
        poison(&mut d.value, 37, &[f32::NAN]);
        check(kind, &official, &d, "official, NaN values");
        // fused: non-finite reference boxes, offsets and logits
        let mut d = MsDeformAttnData::random(&boxes, 6);
        poison(&mut d.a, 11, &POISON);
        poison(&mut d.b, 13, &POISON);
        poison(&mut d.c, 29, &[f32::NAN, f32::INFINITY]);
        check(kind, &boxes, &d, "fused boxes, non-finite reference/offsets/logits");
    }
}
