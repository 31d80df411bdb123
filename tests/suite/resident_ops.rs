//! Resident ops ([`Tensor`] in, `Tensor` out: what the graph chains without host round trips) on
//! every backend against the f64 oracle, on seeded cases with odd sizes; tensors bound to one
//! backend instance refused by another; and the encoder's weights uploaded once per backend.

use crate::common::{assert_close_flat, formula_lang, formula_weight, front_tokens, Tolerance};
use rlipv2::backend::image::{self, GroupNormShape};
use rlipv2::backend::{Backend, BackendKind, Ops, Tensor};
use rlipv2::graph::decoder::{Decoders, Memory};
use rlipv2::graph::encoder::Encoder;
use rlipv2::graph::front::ImageFront;
use rlipv2::graph::vars::Vars;
use rlipv2::model::config::Variant;
use rlipv2::problem::{
    Activation, BertLayerProblem, Conv2dProblem, DType, Form, Gate, GemmProblem, LayerNormProblem, MsDeformAttnProblem,
    OwnedWeights, RefKind, SparseFusionProblem,
};
use rlipv2::reference::{self as oracle, lift};
use rlipv2::seeded::{MsDeformAttnData, Rng};

const TOL: Tolerance = Tolerance { floor: 1e-5, k: 8.0, rtol: 1e-5 };

fn on(be: &dyn Backend, v: &[f32]) -> Tensor {
    be.bind("test input", &Tensor::host(v.to_vec())).unwrap()
}

fn dense_case(be: &dyn Backend) {
    // the last two take the GPU backends' 128×128 tiles (backend::gemm_tile), with partial tiles and K % 8 ≠ 0
    for (i, &(m, k, n, act)) in [
        (1usize, 1usize, 1usize, Activation::None),
        (67, 19, 45, Activation::Relu),
        (130, 256, 96, Activation::Gelu),
        (520, 37, 1030, Activation::Relu),
        (1100, 130, 482, Activation::Gelu),
    ]
    .iter()
    .enumerate()
    {
        let mut rng = Rng::new(40 + i as u64);
        let (x, w, b, r) = (
            rng.fill(m * k, -2.0, 2.0),
            rng.fill(n * k, -0.5, 0.5),
            rng.fill(n, -0.5, 0.5),
            rng.fill(m * n, -1.0, 1.0),
        );
        let p = GemmProblem::linear(m, k, n).with_act(act);
        let y = be.gemm_t(&p, &on(be, &x), &on(be, &w), Some(&on(be, &b)), Some(&on(be, &r))).unwrap();
        let y = be.download(&y).unwrap();
        let add = |mut y: Vec<f64>| -> Vec<f64> {
            y.iter_mut().zip(&r).for_each(|(y, r)| *y += *r as f64);
            y
        };
        let o64 = add(oracle::gemm::gemm::<f64>(&p, &lift(&x), &w, Some(&b)));
        let o32: Vec<f32> =
            oracle::gemm::gemm::<f32>(&p, &x, &w, Some(&b)).iter().zip(&r).map(|(y, r)| y + r).collect();
        assert_close_flat(
            &format!("{}/gemm_t {m}×{k}×{n} {act:?} + residual", be.kind()),
            &[m, n],
            &y,
            &o64,
            &o32,
            &TOL,
        );

        let sum = be.download(&be.add_t(&on(be, &r), &on(be, &r)).unwrap()).unwrap();
        assert!(sum.iter().zip(&r).all(|(s, r)| *s == 2.0 * r), "{}: add_t", be.kind());
        let sq = be.download(&be.mul_t(&on(be, &r), &on(be, &r), Activation::None).unwrap()).unwrap();
        assert!(sq.iter().zip(&r).all(|(s, r)| *s == r * r), "{}: mul_t", be.kind());
        let rev: Vec<f32> = r.iter().rev().copied().collect();
        let gate = be.download(&be.mul_t(&on(be, &r), &on(be, &rev), Activation::Relu).unwrap()).unwrap();
        assert!(
            gate.iter().zip(r.iter().zip(&rev)).all(|(g, (a, b))| *g == (a * b).max(0.0)),
            "{}: mul_t with ReLU",
            be.kind()
        );

        let ln = LayerNormProblem { rows: m, width: n, eps: 1e-5 };
        let (g, beta) = (rng.fill(n, 0.8, 1.2), rng.fill(n, -0.1, 0.1));
        let y = be.download(&be.layer_norm_t(&ln, &on(be, &r), &on(be, &g), &on(be, &beta)).unwrap()).unwrap();
        let o64 = oracle::layer_norm::layer_norm::<f64>(&ln, &lift(&r), &g, &beta);
        let o32 = oracle::layer_norm::layer_norm::<f32>(&ln, &r, &g, &beta);
        assert_close_flat(&format!("{}/layer_norm_t {m}×{n}", be.kind()), &[m, n], &y, &o64, &o32, &TOL);

        // a middle slice, written back at another place
        let t = on(be, &r);
        let (start, len) = (m * n / 3, m * n / 2);
        let s = be.slice_t(&t, start, len).unwrap();
        assert_eq!(be.download(&s).unwrap(), r[start..start + len], "{}: slice_t", be.kind());
        let mut dst = on(be, &vec![0.0; m * n]);
        be.write_t(&mut dst, m * n - len, &s).unwrap();
        let got = be.download(&dst).unwrap();
        assert!(
            got[..m * n - len].iter().all(|&v| v == 0.0) && got[m * n - len..] == r[start..start + len],
            "{}: write_t",
            be.kind()
        );
    }
}

fn image_case(be: &dyn Backend) {
    // (batch, in_c, h, w, out_c, k, stride, act, residual): the stem's 7×7/s2, odd sizes, 1×1, 3×3/s2
    let cases = [
        (1usize, 3usize, 37usize, 29usize, 8usize, 7usize, 2usize, Activation::Relu, false),
        (2, 5, 9, 11, 70, 3, 1, Activation::Relu, true),
        (1, 64, 12, 10, 3, 1, 1, Activation::None, true),
        (1, 16, 7, 7, 33, 3, 2, Activation::None, false),
    ];
    for (i, &(batch, in_c, h, w, out_c, k, stride, act, res)) in cases.iter().enumerate() {
        let p = Conv2dProblem { batch, in_c, h, w, out_c, kh: k, kw: k, stride, pad: k / 2, act };
        let mut rng = Rng::new(70 + i as u64);
        let x = rng.fill(batch * in_c * h * w, -1.0, 1.0);
        let wt = rng.fill(out_c * in_c * k * k, -0.3, 0.3);
        let b = rng.fill(out_c, -0.2, 0.2);
        let r = rng.fill(batch * out_c * p.out_h() * p.out_w(), -1.0, 1.0);
        let y = be.conv2d_t(&p, &on(be, &x), &on(be, &wt), &on(be, &b), res.then(|| on(be, &r))).unwrap();
        let y = be.download(&y).unwrap();
        let o64 = oracle::conv2d::conv2d::<f64>(&p, &lift(&x), &wt, &b, res.then(|| lift(&r)).as_deref());
        let o32 = oracle::conv2d::conv2d::<f32>(&p, &x, &wt, &b, res.then_some(r.as_slice()));
        assert_close_flat(&format!("{}/conv2d_t {p:?}", be.kind()), &p.output_shape(), &y, &o64, &o32, &TOL);

        let planes = batch * in_c;
        let pooled = be.download(&be.max_pool_t(&on(be, &x), planes, h, w).unwrap()).unwrap();
        assert_eq!(pooled, image::max_pool_3x3_s2(&x, planes, h, w), "{}: max_pool_t {planes}×{h}×{w}", be.kind());
    }
    for (i, &(batch, channels, plane, groups)) in
        [(1usize, 256usize, 35usize, 32usize), (2, 64, 1, 32), (1, 8, 300, 2)].iter().enumerate()
    {
        let s = GroupNormShape { batch, channels, plane, groups, eps: 1e-5 };
        let mut rng = Rng::new(80 + i as u64);
        let (x, g, b) = (
            rng.fill(batch * channels * plane, -3.0, 5.0),
            rng.fill(channels, 0.5, 1.5),
            rng.fill(channels, -0.5, 0.5),
        );
        let y = be.download(&be.group_norm_t(&s, on(be, &x), &on(be, &g), &on(be, &b)).unwrap()).unwrap();
        let mut want = x.clone();
        image::group_norm(&mut want, &s, &g, &b);
        // f32 statistics on the device: an input rounding of ulp(max |x|) moves the output by it
        // times rstd·γ, large for a group of nearly equal values (a 2-value group here)
        let per = channels / groups * plane;
        let mut worst = 0f64;
        for (gi, (yg, wg)) in y.chunks(per).zip(want.chunks(per)).enumerate() {
            let xg = &x[gi * per..(gi + 1) * per];
            let mean = xg.iter().map(|&v| v as f64).sum::<f64>() / per as f64;
            let rstd = 1.0 / (xg.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / per as f64 + 1e-5).sqrt();
            let scale = xg.iter().fold(0f64, |m, &v| m.max((v as f64).abs())) * rstd * 1.5; // γ ≤ 1.5
            let tol = 1e-5 + 8.0 * f32::EPSILON as f64 * scale;
            let d = yg.iter().zip(wg).map(|(a, b)| (*a as f64 - *b as f64).abs()).fold(0f64, f64::max);
            assert!(d <= tol, "{}: group_norm_t group {gi} differs by {d} (tolerance {tol})", be.kind());
            worst = worst.max(d / tol);
        }
        println!("{}/group_norm_t {s:?}: worst |diff| / tolerance vs the f64-statistics host {worst:.2}", be.kind());

        // the level flattened into rows 3.. of a token buffer
        let level = &x[..channels * plane];
        let mut tokens = be.empty_t((plane + 5) * channels).unwrap();
        be.to_tokens_t(&mut tokens, 3, &on(be, level), channels, plane).unwrap();
        let got = be.download(&tokens).unwrap();
        let mut want = vec![0.0; (plane + 5) * channels];
        image::to_tokens(&mut want, 3, level, channels, plane);
        assert_eq!(
            got[3 * channels..(3 + plane) * channels],
            want[3 * channels..(3 + plane) * channels],
            "{}: to_tokens_t",
            be.kind()
        );
        assert!(
            be.to_tokens_t(&mut tokens, 6, &on(be, level), channels, plane).is_err(),
            "rows past the end are refused"
        );
    }
}

/// ReLU keeps NaN (torch.relu does): gemm and conv, resident and host to host.
fn relu_keeps_nan(be: &dyn Backend) {
    let x = [f32::NAN, 1.0, -2.0, 3.0];
    let p = GemmProblem::linear(2, 2, 1).with_act(Activation::Relu);
    let (w, b) = ([1.0f32, 1.0], [0.0f32]);
    let host = be.gemm(&p, &x, &w, Some(&b)).unwrap();
    let res = be.download(&be.gemm_t(&p, &on(be, &x), &on(be, &w), Some(&on(be, &b)), None).unwrap()).unwrap();
    for y in [host, res] {
        assert!(y[0].is_nan() && y[1] == 1.0, "{}: relu(gemm) of [NaN, 1 | -2, 3] gave {y:?}", be.kind());
    }
    let cp = Conv2dProblem {
        batch: 1,
        in_c: 1,
        h: 2,
        w: 2,
        out_c: 1,
        kh: 1,
        kw: 1,
        stride: 1,
        pad: 0,
        act: Activation::Relu,
    };
    let y = be.download(&be.conv2d_t(&cp, &on(be, &x), &on(be, &[1.0]), &on(be, &[0.0]), None).unwrap()).unwrap();
    assert!(y[0].is_nan() && y[1..] == [1.0, 0.0, 3.0], "{}: relu(conv) gave {y:?}", be.kind());
}

fn attention_case(be: &dyn Backend) {
    use rlipv2::problem::AttentionProblem;
    for (i, &(batch, heads, q_len, k_len, dh)) in
        [(1usize, 8usize, 128usize, 128usize, 32usize), (2, 3, 1, 5, 7), (1, 1, 9, 1, 64)].iter().enumerate()
    {
        let p = AttentionProblem { batch, heads, q_len, k_len, head_dim: dh, scale: (dh as f32).powf(-0.5) };
        let mut rng = Rng::new(90 + i as u64);
        let w = heads * dh;
        let (q, k, v) = (
            rng.fill(batch * q_len * w, -1.0, 1.0),
            rng.fill(batch * k_len * w, -1.0, 1.0),
            rng.fill(batch * k_len * w, -1.0, 1.0),
        );
        // the second case masks every third key of each batch item (additive, as the text encoder)
        let mask: Option<Vec<f32>> =
            (i == 1).then(|| (0..batch * k_len).map(|j| if j % 3 == 2 { -10000.0 } else { 0.0 }).collect());
        let m = mask.as_deref().map(|m| on(be, m));
        let y = be.download(&be.attention_t(&p, &on(be, &q), &on(be, &k), &on(be, &v), m.as_ref()).unwrap()).unwrap();
        let o64 = oracle::attention::attention::<f64>(&p, &lift(&q), &lift(&k), &lift(&v), mask.as_deref());
        let o32 = oracle::attention::attention::<f32>(&p, &q, &k, &v, mask.as_deref());
        assert_close_flat(&format!("{}/attention_t {p:?}", be.kind()), &[batch, q_len, w], &y, &o64, &o32, &TOL);
    }
}

fn msda_case(be: &dyn Backend) {
    for (i, shapes) in [vec![(1usize, 1usize)], vec![(13, 17), (7, 9), (4, 5), (2, 3)]].into_iter().enumerate() {
        let pr = MsDeformAttnProblem::new(
            1,
            1 + shapes.iter().map(|(h, w)| h * w).sum::<usize>() / 2,
            8,
            32,
            4,
            &shapes,
            Form::Fused(RefKind::Points),
        );
        let d = MsDeformAttnData::random(&pr, 60 + i as u64);
        let rlipv2::problem::MsDeformAttnInput::Fused { value, reference, sampling_offsets, attention_logits } =
            d.input()
        else {
            unreachable!()
        };
        let y = be
            .ms_deform_attn_t(
                &pr,
                &on(be, value),
                &on(be, reference),
                &on(be, sampling_offsets),
                &on(be, attention_logits),
            )
            .unwrap();
        let y = be.download(&y).unwrap();
        let host = be.ms_deform_attn(&pr, &d.input(), DType::F32).unwrap();
        let worst = y.iter().zip(&host).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        println!("{}/ms_deform_attn_t {:?}: max |resident − host| {worst:.1e}", be.kind(), shapes);
        assert!(worst <= 1e-6, "{}: resident ms_deform_attn differs from the host call by {worst}", be.kind());
    }
}

fn sparse_fusion_case(be: &dyn Backend) {
    let p0 = SparseFusionProblem::rlipv2(1, 300, 27, 198);
    let fw = OwnedWeights::seeded(p0.fusion.weight_shapes(), 710);
    let bw = OwnedWeights::seeded(BertLayerProblem::roberta_base(1, 198).weight_shapes(), 810);
    let bound = be.bind_sparse_fusion(&p0, &fw.as_fusion(), &bw.as_bert()).unwrap();
    // the same bound weights for two token counts (the arena is re-laid) and once unbound
    for (i, &(tokens, start, t, use_bound)) in
        [(300usize, 27usize, 198usize, true), (41, 40, 117, true), (300, 27, 198, true), (20, 3, 1, false)]
            .iter()
            .enumerate()
    {
        let p = SparseFusionProblem::rlipv2(1, tokens, start, t);
        let mut rng = Rng::new(910 + i as u64);
        let (memory, pos, lang) =
            (rng.fill(tokens * 256, -2.0, 2.0), rng.fill(tokens * 256, -1.0, 1.0), rng.fill(t * 768, -1.0, 1.0));
        let mut mem = on(be, &memory);
        let out = be
            .sparse_fusion_t(
                &p,
                &mut mem,
                &on(be, &pos),
                &on(be, &lang),
                &fw.as_fusion(),
                &bw.as_bert(),
                if use_bound { bound.as_ref() } else { None },
            )
            .unwrap();
        let (out, mem) = (be.download(&out).unwrap(), be.download(&mem).unwrap());
        let (o64, m64, o32, m32) = crate::common::once(&format!("resident_ops/sparse_fusion/{i}"), || {
            let (fw, bw) = (fw.as_fusion(), bw.as_bert());
            let mut m64 = lift::<f64>(&memory);
            let o64 =
                oracle::sparse_fusion::sparse_fusion::<f64>(&p, &mut m64, &lift(&pos), &lift(&lang), None, &fw, &bw);
            let mut m32 = memory.clone();
            let o32 = oracle::sparse_fusion::sparse_fusion::<f32>(&p, &mut m32, &pos, &lang, None, &fw, &bw);
            (o64, m64, o32, m32)
        });
        let label = format!("{}/sparse_fusion_t S{tokens} start{start} T{t} bound {use_bound}", be.kind());
        assert_close_flat(&format!("{label} lang"), &[t, 768], &out, &o64, &o32, &TOL);
        assert_close_flat(&format!("{label} memory"), &[tokens, 256], &mem, &m64, &m32, &TOL);
    }
}

fn refusals(be: &dyn Backend) {
    let x = on(be, &[1.0; 6]);
    let err = be
        .gemm_t(&GemmProblem::linear(2, 3, 2), &x, &on(be, &[1.0; 5]), Some(&on(be, &[0.0; 2])), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("weight"), "{}: {err}", be.kind());
    assert!(be.slice_t(&x, 4, 3).is_err() && be.write_t(&mut on(be, &[0.0; 2]), 1, &x).is_err());
    assert!(be.empty_t(usize::MAX).is_err(), "{}: an impossible allocation is an error", be.kind());
    let cp = Conv2dProblem {
        batch: 1,
        in_c: 2,
        h: 3,
        w: 1,
        out_c: 1,
        kh: 1,
        kw: 1,
        stride: 1,
        pad: 0,
        act: Activation::None,
    };
    let err =
        be.conv2d_t(&cp, &x, &on(be, &[1.0; 2]), &on(be, &[0.0; 1]), Some(on(be, &[0.0; 2]))).unwrap_err().to_string();
    assert!(err.contains("residual"), "{}: {err}", be.kind());
    let gn = GroupNormShape { batch: 1, channels: 3, plane: 2, groups: 2, eps: 1e-5 };
    assert!(
        be.group_norm_t(&gn, x.clone(), &on(be, &[1.0; 3]), &on(be, &[0.0; 3])).is_err(),
        "3 channels do not split into 2 groups"
    );
    assert!(be.max_pool_t(&x, 2, 2, 2).is_err() && be.to_tokens_t(&mut on(be, &[0.0; 4]), 1, &x, 2, 3).is_err());
    // a device tensor of another instance of the same backend is refused, not read
    if be.owner_id() != 0 {
        let other = rlipv2::backend::open(be.kind()).unwrap();
        let foreign = on(other.as_ref(), &[1.0; 6]);
        let err = be.add_t(&x, &foreign).unwrap_err().to_string();
        assert!(err.contains("another backend"), "{}: {err}", be.kind());
        let cpu = rlipv2::backend::open(BackendKind::Cpu).unwrap();
        let err = cpu.add_t(&foreign, &foreign).unwrap_err().to_string();
        assert!(err.contains("device tensor"), "cpu given a {} tensor: {err}", be.kind());
    }
}

/// A long chain of small dependent ops (adds, slices, in-place writes) gives exactly the host's
/// values, so work recorded in batches keeps its order; where the backend counts queue
/// submissions, they are one per 32 commands, not one per op.
fn op_chain(be: &dyn Backend) {
    let n = 1000;
    let mut host: Vec<f32> = (0..n).map(|i| (i % 37) as f32 / 8.0).collect();
    let half = on(be, &vec![0.5; n]);
    let mut t = on(be, &host);
    let (launches, submits, recycled) = (be.dispatch_count(), be.submission_count(), be.recycled_outputs());
    let start = std::time::Instant::now();
    let mut commands = 0;
    for i in 0..200 {
        t = be.add_t(&t, &half).unwrap();
        host.iter_mut().for_each(|v| *v += 0.5);
        commands += 1;
        if i % 10 == 9 {
            let s = be.slice_t(&t, i, 10).unwrap();
            be.write_t(&mut t, 500 + i, &s).unwrap();
            host.copy_within(i..i + 10, 500 + i);
            commands += 2;
        }
    }
    let got = be.download(&t).unwrap();
    let per_op = start.elapsed().as_secs_f64() / commands as f64;
    assert_eq!(got, host, "{}: chain of {commands} recorded ops", be.kind());
    // each add's input is dropped as its output is made: from the second add on, outputs reuse
    // the dropped buffers (where the backend recycles them)
    let recycled = recycled.zip(be.recycled_outputs()).map(|(a, b)| b - a);
    if let Some(r) = recycled {
        assert!(r >= 190, "{}: {r} of 200 chained outputs took recycled buffers", be.kind());
    }
    let counts = match (launches, be.dispatch_count(), submits, be.submission_count()) {
        (Some(a), Some(b), Some(c), Some(d)) => {
            // the download's copy joins the last batch
            assert!(
                d - c <= (commands + 1usize).div_ceil(32) as u64,
                "{}: {} submissions for {commands} commands",
                be.kind(),
                d - c
            );
            format!("; {} launches in {} submissions", b - a, d - c)
        }
        _ => String::new(),
    };
    let recycled = recycled.map(|r| format!("; {r} outputs in recycled buffers")).unwrap_or_default();
    println!(
        "{}: {commands} chained ops, {:.1} µs per op including the final download{counts}{recycled}",
        be.kind(),
        per_op * 1e6
    );
}

/// The second image through the encoder uploads its activations only: the weights stay bound.
fn weights_once(be: &dyn Backend) {
    let Some(before) = be.uploaded_bytes() else {
        println!("{}: host tensors, nothing is uploaded", be.kind());
        return;
    };
    let get = |name: &str, shape: &[usize]| Ok(formula_weight(name, shape));
    let vars = Vars::new(&get);
    let front = ImageFront::load(&vars).unwrap();
    let enc = Encoder::load(6, 4, 2048, 2, Gate::VXAc, &vars.pp("transformer.encoder")).unwrap();
    let lang = formula_lang(7);
    let mut uploads = Vec::new();
    for _ in 0..2 {
        let Some(mut tokens) = front_tokens(be, &front, "resident", 64, 96) else { return };
        // the tokens and positions are on the device already: the reference points and the labels
        let activations = (tokens.src.len() / 256 * 4 * 2 + lang.len()) * 4;
        let start = be.uploaded_bytes().unwrap();
        enc.forward(be, &mut tokens, &lang).unwrap();
        uploads.push((be.uploaded_bytes().unwrap() - start, activations));
    }
    let weights = (6 * (256 * 256 + 128 * 256 + 2 * 256 * 256 + 2 * 2048 * 256)
        + 3 * (3 * 2048 * 256 + 3 * 2048 * 768 + 4 * 768 * 768 + 2 * 768 * 3072))
        * 4; // matrices only
    println!(
        "{}: encoder uploads {} B first, {} B second (activations {} B; weights ≥ {weights} B); before {before} B",
        be.kind(),
        uploads[0].0,
        uploads[1].0,
        uploads[1].1
    );
    assert!(uploads[0].0 >= weights as u64, "{}: the first image should bind the weights", be.kind());
    // activations plus the 4-byte placeholders of absent bindings
    assert!(
        uploads[1].0 <= uploads[1].1 as u64 + 4096,
        "{}: the second image uploaded {} B, its activations are {} B",
        be.kind(),
        uploads[1].0,
        uploads[1].1
    );
}

/// The whole image graph (front, encoder, decoders and heads) three times: after the first image
/// every image uploads the same bytes (its own data — the image, reference points, labels and the
/// decoders' per-query inputs), and the first uploads the weights on top. The heads' outputs are
/// the same bits every time: later images run on recycled device buffers (wgpu) holding the
/// earlier images' values, which no kernel may read as if they were its own.
fn graph_weights_once(be: &dyn Backend) {
    let Some(_) = be.uploaded_bytes() else {
        println!("{}: host tensors, nothing is uploaded", be.kind());
        return;
    };
    let get = |name: &str, shape: &[usize]| Ok(formula_weight(name, shape));
    let vars = Vars::new(&get);
    let front = ImageFront::load(&vars).unwrap();
    // two encoder layers (one fusion round): depth changes neither the per-image uploads nor the
    // buffer recycling this checks, only the time (the six-layer graph runs in detect_graph.rs)
    let enc = Encoder::load(2, 4, 2048, 2, Gate::VXAc, &vars.pp("transformer.encoder")).unwrap();
    let dec = Decoders::load(Variant::ParSeDA, 128, 3, 4, 2048, &vars).unwrap();
    let lang = formula_lang(10);
    let mut uploads = Vec::new();
    let mut first: Option<Vec<Vec<f32>>> = None;
    for image in 0..3 {
        let start = be.uploaded_bytes().unwrap();
        let Some(mut tokens) = front_tokens(be, &front, "graph", 64, 96) else { return };
        let a = be.uploaded_bytes().unwrap();
        let (memory, states) = enc.forward_t(be, &mut tokens, &lang).unwrap();
        let b = be.uploaded_bytes().unwrap();
        let out = dec.forward(be, &Memory::unpadded(&memory, &tokens.shapes), states.last().unwrap(), 6).unwrap();
        let heads = vec![out.sub_logits, out.obj_logits, out.verb_logits, out.sub_boxes, out.obj_boxes];
        match &first {
            None => first = Some(heads),
            Some(f) => assert!(
                f.iter().zip(&heads).all(|(a, b)| a.iter().map(|v| v.to_bits()).eq(b.iter().map(|v| v.to_bits()))),
                "{}: image {image} gives other head outputs than image 0",
                be.kind()
            ),
        }
        println!("front {} encoder {} decoders {}", a - start, b - a, be.uploaded_bytes().unwrap() - b);
        uploads.push(be.uploaded_bytes().unwrap() - start);
    }
    println!(
        "{}: whole graph uploads {} B for the first image, then {} B and {} B",
        be.kind(),
        uploads[0],
        uploads[1],
        uploads[2]
    );
    assert_eq!(uploads[1], uploads[2], "{}: every image after the first uploads the same", be.kind());
    // front ≈ 94 MB, two encoder layers ≈ 66 MB (of the six's 199), decoders ≈ 48 MB of weights
    // (matrices of the formula model)
    assert!(
        uploads[0] - uploads[1] > 200_000_000,
        "{}: only the first image binds the weights ({uploads:?})",
        be.kind()
    );
}

backend_tests! {
    dense_reference: BackendKind::Reference, dense_case;
    dense_cpu: BackendKind::Cpu, dense_case;
    dense_wgpu: BackendKind::Wgpu, dense_case;
    dense_cubecl_wgpu: BackendKind::CubeclWgpu, dense_case;
    dense_cubecl_cuda: BackendKind::CubeclCuda, dense_case;
    image_cpu: BackendKind::Cpu, image_case;
    image_wgpu: BackendKind::Wgpu, image_case;
    image_cubecl_wgpu: BackendKind::CubeclWgpu, image_case;
    image_cubecl_cuda: BackendKind::CubeclCuda, image_case;
    attention_cpu: BackendKind::Cpu, attention_case;
    attention_wgpu: BackendKind::Wgpu, attention_case;
    attention_cubecl_wgpu: BackendKind::CubeclWgpu, attention_case;
    attention_cubecl_cuda: BackendKind::CubeclCuda, attention_case;
    msda_cpu: BackendKind::Cpu, msda_case;
    msda_wgpu: BackendKind::Wgpu, msda_case;
    msda_cubecl_wgpu: BackendKind::CubeclWgpu, msda_case;
    msda_cubecl_cuda: BackendKind::CubeclCuda, msda_case;
    sparse_fusion_cpu: BackendKind::Cpu, sparse_fusion_case;
    sparse_fusion_wgpu: BackendKind::Wgpu, sparse_fusion_case;
    sparse_fusion_cubecl_wgpu: BackendKind::CubeclWgpu, sparse_fusion_case;
    sparse_fusion_cubecl_cuda: BackendKind::CubeclCuda, sparse_fusion_case;
    relu_nan_reference: BackendKind::Reference, relu_keeps_nan;
    relu_nan_cpu: BackendKind::Cpu, relu_keeps_nan;
    relu_nan_wgpu: BackendKind::Wgpu, relu_keeps_nan;
    relu_nan_cubecl_wgpu: BackendKind::CubeclWgpu, relu_keeps_nan;
    relu_nan_cubecl_cuda: BackendKind::CubeclCuda, relu_keeps_nan;
    op_chain_cpu: BackendKind::Cpu, op_chain;
    op_chain_wgpu: BackendKind::Wgpu, op_chain;
    op_chain_cubecl_wgpu: BackendKind::CubeclWgpu, op_chain;
    op_chain_cubecl_cuda: BackendKind::CubeclCuda, op_chain;
    refusals_cpu: BackendKind::Cpu, refusals;
    refusals_wgpu: BackendKind::Wgpu, refusals;
    refusals_cubecl_wgpu: BackendKind::CubeclWgpu, refusals;
    weights_once_wgpu: BackendKind::Wgpu, weights_once;
    weights_once_cubecl_wgpu: BackendKind::CubeclWgpu, weights_once;
    graph_weights_once_wgpu: BackendKind::Wgpu, graph_weights_once;
    graph_weights_once_cubecl_wgpu: BackendKind::CubeclWgpu, graph_weights_once;
}
