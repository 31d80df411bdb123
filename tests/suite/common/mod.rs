//! Shared test helpers: backend availability (SKIP vs required), the case table, the tolerance
//! policy of conventions.md, and `assert_close`.
#![allow(dead_code)]

use rlipv2::backend::{self, Backend, BackendKind};
use rlipv2::bench::RLIPV2_LEVELS;
use rlipv2::problem::{DType, Form, MsDeformAttnProblem, RefKind};
use rlipv2::reference::ms_deform_attn::ms_deform_attn as oracle;
use rlipv2::seeded::{MsDeformAttnData, Rng};

/// One `#[test]` per `name: BackendKind, case_fn;` line: opens the backend (or SKIPs, see
/// [`open_or_skip`]) and runs the case on it. Declared first in `main.rs`, so every test module sees it.
#[allow(unused_macros)]
macro_rules! backend_tests {
    ($($name:ident: $kind:expr, $case:ident;)*) => {$(
        #[test]
        fn $name() {
            if let Some(be) = crate::common::open_or_skip($kind) {
                $case(be.as_ref());
            }
        }
    )*};
}

/// Opens `kind`, or prints `SKIP <backend>: <why>` and returns None. A backend named in
/// `RLIPV2_REQUIRE_BACKENDS` (comma-separated) must open: its absence fails the test.
pub fn open_or_skip(kind: BackendKind) -> Option<Box<dyn Backend>> {
    match backend::open(kind) {
        Ok(b) => {
            println!("RUN  {kind}: {}", b.device());
            Some(b)
        }
        Err(e) => {
            skip(kind.name(), e);
            None
        }
    }
}

/// Prints `SKIP <name>: <why>`, or fails if `RLIPV2_REQUIRE_BACKENDS` (comma-separated) names it.
pub fn skip(name: &str, why: impl std::fmt::Display) {
    let required = std::env::var("RLIPV2_REQUIRE_BACKENDS").unwrap_or_default();
    if required.split(',').any(|r| r.trim() == name) {
        panic!("{name} is required by RLIPV2_REQUIRE_BACKENDS={required} but unavailable: {why}");
    }
    println!("SKIP {name}: {why}");
}

/// `[[H, W], …]` in a JSON document as level shapes.
pub fn json_levels(v: &serde_json::Value) -> Vec<(usize, usize)> {
    v.as_array().unwrap().iter().map(|l| (l[0].as_u64().unwrap() as usize, l[1].as_u64().unwrap() as usize)).collect()
}

pub struct Case {
    pub name: &'static str,
    pub problem: MsDeformAttnProblem,
    pub data: MsDeformAttnData,
}

fn problem(
    b: usize,
    q: usize,
    m: usize,
    d: usize,
    p: usize,
    levels: &[(usize, usize)],
    form: Form,
) -> MsDeformAttnProblem {
    MsDeformAttnProblem::new(b, q, m, d, p, levels, form)
}

/// Sampling coordinates that hit the edge cases of the bilinear rule on a level of size n:
/// pixel centres, exact borders 0 and 1, slightly and far outside, the −1 skip threshold.
fn special_coords(n: usize) -> Vec<f32> {
    let n = n as f32;
    vec![
        0.5 / n,
        1.5 / n,
        (n - 0.5) / n,
        0.0,
        1.0,
        -0.05,
        1.05,
        -3.0,
        4.0,
        -0.5 / n,
        (n + 0.5) / n,
        0.5,
        1.0 - 1e-7,
        1e-7,
    ]
}

/// Replaces the sampling inputs of `data` with the edge coordinates (official: locations;
/// fused points: references with zero offsets) and gives some heads large logits.
fn with_boundary_points(pr: &MsDeformAttnProblem, mut data: MsDeformAttnData, seed: u64) -> MsDeformAttnData {
    let mut rng = Rng::new(seed);
    let (l_n, p_n, m_n) = (pr.num_levels(), pr.points, pr.heads);
    let pick = |rng: &mut Rng, n: usize| {
        let c = special_coords(n);
        c[(rng.next_u64() % c.len() as u64) as usize]
    };
    match pr.form {
        Form::Official => {
            for bq in 0..pr.batch * pr.queries {
                for m in 0..m_n {
                    for l in 0..l_n {
                        let lv = pr.levels[l];
                        for p in 0..p_n {
                            let s = ((bq * m_n + m) * l_n + l) * p_n + p;
                            data.a[2 * s] = pick(&mut rng, lv.w);
                            data.a[2 * s + 1] = pick(&mut rng, lv.h);
                        }
                    }
                }
            }
        }
        Form::Fused(kind) => {
            for bq in 0..pr.batch * pr.queries {
                for l in 0..l_n {
                    let lv = pr.levels[l];
                    let r = (bq * l_n + l) * kind.dim();
                    data.a[r] = pick(&mut rng, lv.w);
                    data.a[r + 1] = pick(&mut rng, lv.h);
                }
            }
            for (i, o) in data.b.iter_mut().enumerate() {
                if i % 3 == 0 {
                    *o = 0.0;
                }
            }
            // large logits: ±60 and ±1e4 on some heads (softmax must subtract the max)
            for (i, z) in data.c.iter_mut().enumerate() {
                match i % 7 {
                    0 => *z = 60.0,
                    1 => *z = -60.0,
                    2 => *z = 1e4,
                    _ => {}
                }
            }
        }
    }
    data
}

/// The seeded case table for one form.
pub fn cases(form: Form) -> Vec<Case> {
    let mk = |name: &'static str, pr: MsDeformAttnProblem, seed: u64| {
        let data = MsDeformAttnData::random(&pr, seed);
        Case { name, problem: pr, data }
    };
    let odd = [(7, 9), (4, 5), (1, 1)];
    let mut v = vec![
        mk("tiny", problem(1, 3, 1, 16, 1, &[(3, 4)], form), 1),
        mk("odd_q97_m8_d32_1x1_level", problem(1, 97, 8, 32, 4, &odd, form), 2),
        mk("b2_m1_d64", problem(2, 33, 1, 64, 3, &[(6, 5), (3, 3)], form), 3),
        mk("b2_m8_d16", problem(2, 50, 8, 16, 4, &[(10, 12), (5, 6), (3, 3), (2, 2)], form), 4),
        mk("max_m16_lp64", problem(1, 9, 16, 8, 16, &[(8, 8), (4, 4), (2, 2), (1, 1)], form), 5),
        mk("realistic_rlipv2_levels_q2000", problem(1, 2000, 8, 32, 4, &RLIPV2_LEVELS, form), 6),
    ];
    let bp = problem(2, 61, 8, 32, 4, &[(9, 11), (4, 6), (1, 1), (2, 3)], form);
    let data = with_boundary_points(&bp, MsDeformAttnData::random(&bp, 8), 9);
    v.push(Case { name: "boundary_points_large_logits", problem: bp, data });
    v
}

pub const FORMS: [Form; 3] = [Form::Official, Form::Fused(RefKind::Points), Form::Fused(RefKind::Boxes)];

/// Result of the oracle in f64 and f32 on the inputs as the run's dtype sees them.
pub struct Expected {
    pub ref64: Vec<f64>,
    pub ref32: Vec<f32>,
}

pub fn expected(case: &Case, dtype: DType) -> Expected {
    let mut data = case.data.clone();
    data.value.iter_mut().for_each(|x| *x = rlipv2::backend::reference::round_to(*x, dtype));
    Expected { ref64: oracle::<f64>(&case.problem, &data.input()), ref32: oracle::<f32>(&case.problem, &data.input()) }
}

/// The tolerance policy: |x − ref64| ≤ max(floor, k·max|ref32 − ref64|) + rtol·|ref64|.
pub struct Tolerance {
    pub floor: f64,
    pub k: f64,
    pub rtol: f64,
}

pub fn tolerance(dtype: DType) -> Tolerance {
    match dtype {
        DType::F32 => Tolerance { floor: 2e-6, k: 8.0, rtol: 1e-6 },
        // f16 output rounding is ≤ 2^-11 relative; accumulation stays f32.
        DType::F16 => Tolerance { floor: 1e-4, k: 8.0, rtol: 1e-3 },
        // bf16 output rounding is ≤ 2^-8 relative.
        DType::Bf16 => Tolerance { floor: 1e-3, k: 8.0, rtol: 8e-3 },
    }
}

/// Checks two backends' outputs against each other: |a − b| ≤ 2·(oracle tolerance at that element).
pub fn assert_agree(what: &str, case: &Case, a: &[f32], b: &[f32], exp: &Expected, tol: &Tolerance) {
    let f32_err = exp.ref32.iter().zip(&exp.ref64).map(|(&x, &r)| (x as f64 - r).abs()).fold(0.0, f64::max);
    let budget = tol.floor.max(tol.k * f32_err);
    let mut over = Vec::new();
    for (i, ((&x, &y), &r)) in a.iter().zip(b).zip(&exp.ref64).enumerate() {
        let allowed = 2.0 * (budget + tol.rtol * r.abs());
        let diff = (x as f64 - y as f64).abs();
        if diff.is_nan() || diff > allowed {
            over.push((i, x, y, r, allowed));
        }
    }
    if let Some(&(i, x, y, r, allowed)) =
        over.iter().max_by(|p, q| ((p.1 - p.2).abs() as f64 / p.4).total_cmp(&((q.1 - q.2).abs() as f64 / q.4)))
    {
        panic!("{what} / ms_deform_attn / {}: {} of {} elements disagree; worst at flat index {i}: {x:.9e} vs {y:.9e} (ref64 {r:.9e}), allowed {allowed:.3e}", case.name, over.len(), a.len());
    }
}

/// Checks `got` against the oracle with the policy above and reports the worst element with its
/// multi-index in `[b,q,channel]` (MSDA output layout), values, abs/rel error and the count over
/// tolerance.
pub fn assert_close(what: &str, case: &Case, got: &[f32], exp: &Expected, tol: &Tolerance) {
    let pr = &case.problem;
    assert_close_flat(
        &format!("{what} / ms_deform_attn / {}", case.name),
        &pr.output_shape(),
        got,
        &exp.ref64,
        &exp.ref32,
        tol,
    );
}

/// The tolerance policy on any tensor of `shape`; the failure names the worst multi-index.
pub fn assert_close_flat(label: &str, shape: &[usize], got: &[f32], ref64: &[f64], ref32: &[f32], tol: &Tolerance) {
    assert_eq!(got.len(), ref64.len(), "{label}: output length");
    assert_eq!(shape.iter().product::<usize>(), got.len(), "{label}: shape {shape:?}");
    let f32_err = ref32.iter().zip(ref64).map(|(&a, &b)| (a as f64 - b).abs()).fold(0.0, f64::max);
    let budget = tol.floor.max(tol.k * f32_err);
    let mut worst = (0usize, f64::NEG_INFINITY);
    let mut over = 0usize;
    for (i, (&g, &r)) in got.iter().zip(ref64).enumerate() {
        let err = (g as f64 - r).abs();
        let excess = if g.is_nan() { f64::INFINITY } else { err - (budget + tol.rtol * r.abs()) };
        if excess > 0.0 {
            over += 1;
        }
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    if over > 0 {
        let i = worst.0;
        let mut idx = vec![0; shape.len()];
        let mut rem = i;
        for (d, n) in shape.iter().enumerate().rev() {
            idx[d] = rem % n;
            rem /= n;
        }
        let (g, r) = (got[i] as f64, ref64[i]);
        panic!(
            "{label}: {over} of {} elements over tolerance; worst at {idx:?}: got {g:.9e}, ref64 {r:.9e}, abs err {:.3e}, rel err {:.3e}, allowed {:.3e} (budget {budget:.3e} = max(floor {}, {}·f32 oracle err {f32_err:.3e}) + rtol {})",
            got.len(),
            (g - r).abs(),
            (g - r).abs() / r.abs().max(1e-30),
            budget + tol.rtol * r.abs(),
            tol.floor,
            tol.k,
            tol.rtol,
        );
    }
}

/// The weight formula of `tools/official_image_front.py` (and the later graph goldens): element
/// `j` of tensor `name` (shape `shape`), f64 then rounded to f32.
#[allow(dead_code)]
pub fn formula_weight(name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let s: u64 = name.bytes().map(u64::from).sum();
    let last = name.rsplit('.').next().unwrap_or("");
    // lookup tables keep v; the box MLPs (`*_bbox_embed.*.layers.*`) are linear layers
    let embedding = name.ends_with("_embed.weight") || name == "transformer.level_embed" || name.contains("embeddings");
    let is_norm = ["bn", "norm", "LayerNorm", ".downsample.1."].iter().any(|k| name.contains(k))
        || (name.starts_with("input_proj.") && name.split('.').nth(2) == Some("1"));
    (0..n as u64)
        .map(|j| {
            let v = ((j * 7919 + s * 104729) % 65521) as f64 / 65521.0 * 2.0 - 1.0;
            let v = if last == "running_var" {
                1.0 + 0.5 * v
            } else if (last == "running_mean" || last == "bias") && shape.len() == 1 {
                0.1 * v
            } else if is_norm && last == "weight" && shape.len() == 1 {
                1.0 + 0.1 * v
            } else if shape.len() >= 2 && !embedding {
                v * (3.0 / (n / shape[0]) as f64).sqrt()
            } else {
                v
            };
            v as f32
        })
        .collect()
}

/// A RoBERTa-format tokenizer.json (byte-level pre-tokenizer, BPE, `<s>`/`</s>` post-processor)
/// with one token per printable byte and no merges: ids are easy to predict.
#[allow(dead_code)]
pub fn char_tokenizer(dir: &std::path::Path) -> std::path::PathBuf {
    let mut vocab = serde_json::Map::new();
    for (i, s) in ["<s>", "<pad>", "</s>", "<unk>"].iter().enumerate() {
        vocab.insert(s.to_string(), i.into());
    }
    for b in 33u8..=126 {
        vocab.insert((b as char).to_string(), (4 + b as u32 - 33).into());
    }
    vocab.insert("Ġ".into(), 98.into()); // the byte-level form of a space
    let special = |id: u32, s: &str| serde_json::json!({"id": id, "content": s, "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": true});
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(0, "<s>"), special(1, "<pad>"), special(2, "</s>"), special(3, "<unk>")],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0], "trim_offsets": true, "add_prefix_space": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": false, "vocab": vocab, "merges": []}
    });
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    path
}

/// The generators' formula image `[3, h, w]`: element j = frac((j·104729 + 7) mod 65521)·4 − 2.
#[allow(dead_code)]
pub fn formula_image(h: usize, w: usize) -> rlipv2::graph::backbone::Feature {
    let data =
        (0..(3 * h * w) as u64).map(|j| (((j * 104729 + 7) % 65521) as f64 / 65521.0 * 4.0 - 2.0) as f32).collect();
    rlipv2::graph::backbone::Feature { c: 3, h, w, data }
}

/// The generators' formula language tokens `[t, 768]`: element j = frac((j·7919 + 11) mod 65521)·2 − 1.
#[allow(dead_code)]
pub fn formula_lang(t: usize) -> Vec<f32> {
    (0..(t * 768) as u64).map(|j| (((j * 7919 + 11) % 65521) as f64 / 65521.0 * 2.0 - 1.0) as f32).collect()
}

/// The image front's tokens for a formula image, or `None` after a SKIP line where the backend
/// lacks one of its ops.
#[allow(dead_code)]
pub fn front_tokens(
    be: &dyn Backend,
    front: &rlipv2::graph::front::ImageFront,
    what: &str,
    h: usize,
    w: usize,
) -> Option<rlipv2::graph::front::Tokens> {
    match front.forward(be, formula_image(h, w)) {
        Ok(t) => Some(t),
        Err(e @ rlipv2::Error::Unsupported { .. }) => {
            println!("SKIP {}/{what}: {e}", be.kind());
            None
        }
        Err(e) => panic!("{}/{what}: {e}", be.kind()),
    }
}

/// The fixture checkpoint converted by `rlipv2 convert` (labels baked through [`char_tokenizer`]),
/// as `dir/m.safetensors`. The conversion (≈ 11 s, 856 MB) runs once per test process; each test
/// gets its own hard link, so label caches written beside the model stay per test.
/// `convert.rs` tests the conversion itself.
pub fn converted_fixture(dir: &std::path::Path) -> std::path::PathBuf {
    static CONVERTED: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let model = CONVERTED.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        // a static is never dropped, so no temporary directory would ever remove this 856 MB
        // file: it lives in target/tmp under this process's id, and the conversions of test
        // processes that have ended are removed here
        let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
        if std::path::Path::new("/proc/self").exists() {
            for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("converted-fixture-") {
                    if !std::path::Path::new("/proc").join(pid).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let dir = base.join(format!("converted-fixture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tok = char_tokenizer(&dir);
        let model = dir.join("m.safetensors");
        let c = std::process::Command::new(env!("CARGO_BIN_EXE_rlipv2"))
            .arg("convert")
            .arg(root.join("tests/fixtures/official_format_r50_parseda_v2_q128.pth"))
            .arg(&model)
            .arg("--tokenizer")
            .arg(&tok)
            .output()
            .unwrap();
        assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
        model
    });
    let mine = dir.join("m.safetensors");
    if std::fs::hard_link(model, &mine).is_err() {
        std::fs::copy(model, &mine).unwrap();
    }
    mine
}

/// A model file with the fixture's configuration changed by `edit` and [`formula_weight`]s for
/// every image-path tensor it names and for the hico label embeddings (no text encoder; the
/// metadata kept), as `dir/<name>.safetensors`. Unlike the fixture's constant weights, its
/// outputs depend on the image (and its padding), and its triplets' scores differ.
pub fn formula_model(
    dir: &std::path::Path,
    name: &str,
    edit: impl FnOnce(&mut rlipv2::model::Config),
) -> std::path::PathBuf {
    let fixture = converted_fixture(dir);
    let file = rlipv2::io::weights::WeightFile::open(&fixture).unwrap();
    let meta = rlipv2::convert::META_CONFIG;
    let mut config: rlipv2::model::Config = serde_json::from_str(&file.metadata[meta]).unwrap();
    edit(&mut config);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = rlipv2::model::schema::expected(&config)
        .into_iter()
        .filter(|(n, _)| !n.starts_with("transformer.text_encoder."))
        .map(|(n, s)| {
            let v = formula_weight(&n, &s);
            (n, s, v)
        })
        .collect();
    // the fixture's baked label embeddings come from its constant text encoder: every label's row
    // is alike, so every triplet would score alike; formula rows tell the labels apart
    let labels = rlipv2::convert::label_tensor("hico");
    let shape = file.shape(&labels).unwrap().to_vec();
    tensors.push((labels.clone(), shape.clone(), formula_weight(&labels, &shape)));
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, s, v)| {
            let t = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), bytemuck::cast_slice(v));
            (n.clone(), t.unwrap())
        })
        .collect();
    let mut metadata = file.metadata.clone();
    metadata.insert(meta.to_string(), serde_json::to_string(&config).unwrap());
    let path = dir.join(format!("{name}.safetensors"));
    safetensors::tensor::serialize_to_file(views, Some(metadata), &path).unwrap();
    path
}

/// `f()` for `key`, computed once per test process and shared: the oracle's results for a case
/// that each backend's test compares against (the f64 ALIF oracles take seconds per case). `key`
/// must name everything the value depends on; one type per key.
pub fn once<T: Clone + Send + Sync + 'static>(key: &str, f: impl FnOnce() -> T) -> T {
    use std::any::Any;
    use std::sync::{Arc, Mutex, OnceLock};
    type Cell = Arc<OnceLock<Arc<dyn Any + Send + Sync>>>;
    static CACHE: OnceLock<Mutex<std::collections::HashMap<String, Cell>>> = OnceLock::new();
    let cell = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key.to_string())
        .or_default()
        .clone();
    cell.get_or_init(|| Arc::new(f())).downcast_ref::<T>().expect("one type per key").clone()
}

/// The label set of the graph goldens: `objects − 1` object texts (the last column is
/// no-object) and `verbs` verb texts, named by index.
#[allow(dead_code)]
pub fn golden_labels(objects: usize, verbs: usize) -> rlipv2::model::labels::LabelSet {
    rlipv2::model::labels::LabelSet {
        name: "golden".into(),
        objects: (0..objects - 1).map(|i| format!("object {i}")).collect(),
        verbs: (0..verbs).map(|i| format!("verb {i}")).collect(),
        valid_pairs: None,
        subject_classified: false,
    }
}
