//! The checkpoint converter and the pickle-free torch reader:
//! - the Rust schema of RLIP_ParSeDA_v2 and RLIP_ParSeD_v2 R50 equals the official model's
//!   `state_dict()` (written by `tools/official_model.py` into tests/fixtures), aliases and buffers
//!   included, order included;
//! - a checkpoint of each in the official save format (written by the same tool, with stride-0
//!   tensors so the file is small) converts: every key, shape, value and the configuration;
//! - hostile files are refused with a clear error and no output: a foreign global, an opcode
//!   outside the allow-list, a memo-sharing bomb, truncation, a compressed (bomb-able) entry;
//! - 10,000 seeded mutations of a real `data.pkl` never panic (`RLIPV2_FUZZ_CASES` for more).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use rlipv2::graph::vars::Vars;
use rlipv2::io::pickle::{self, Limits, Value};
use rlipv2::io::pth::{self, Checkpoint};
use rlipv2::model::{schema, Config};
use rlipv2::seeded::Rng;

use crate::common::char_tokenizer;

const FIXTURE: &str = "tests/fixtures/official_format_r50_parseda_v2_q128.pth";
const SCHEMA: &str = "tests/fixtures/official_schema_r50_parseda_v2_q128.txt";
const PARSED_FIXTURE: &str = "tests/fixtures/official_format_r50_parsed_v2_q200.pth";
const PARSED_SCHEMA: &str = "tests/fixtures/official_schema_r50_parsed_v2_q200.txt";

const SWINT_FIXTURE: &str = "tests/fixtures/official_format_swint_parseda_v2_q128.pth";
const SWINT_SCHEMA: &str = "tests/fixtures/official_schema_swint_parseda_v2_q128.txt";
/// Swin-T keeps 916 tensors: 1001 in the state dict less 72 aliases and 13 index buffers.
const SWINT_KEPT: usize = 916;
/// Swin-L keeps 1072 tensors (24 blocks): its state dict less 72 aliases and 25 index buffers.
const SWINL_KEPT: usize = 1072;

/// (checkpoint, schema, variant, num_queries, FFN, tensors kept, buffers dropped) of each
/// official-format fixture.
const FIXTURES: [(&str, &str, &str, usize, usize, usize, usize); 3] = [
    (FIXTURE, SCHEMA, "RLIP_ParSeDA_v2", 128, 2048, 1006, 1),
    (PARSED_FIXTURE, PARSED_SCHEMA, "RLIP_ParSeD_v2", 200, 1024, 993, 1),
    (SWINT_FIXTURE, SWINT_SCHEMA, "RLIP_ParSeDA_v2", 128, 2048, SWINT_KEPT, 13),
];

/// The tests that write a full converted file (855 MB) take turns, so one exists at a time.
static DISK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    DISK.lock().unwrap_or_else(|e| e.into_inner())
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE)
}

fn fixture_config() -> Config {
    config_of(&fixture())
}

fn config_of(path: &Path) -> Config {
    let ck = Checkpoint::open(path).unwrap();
    let model = ck.root.get("model").unwrap();
    let sd = pth::state_dict(path, &model).unwrap();
    let shape = |k: &str| sd.iter().find(|(n, _)| n == k).map(|(_, t)| t.shape.iter().map(|&d| d as usize).collect());
    Config::from_checkpoint(&ck.root.get("args").unwrap(), shape).unwrap()
}

#[test]
fn schema_matches_the_official_state_dict() {
    for (ckpt, schema_file, variant, queries, ffn, kept, buffers) in FIXTURES {
        schema_matches(ckpt, schema_file, variant, queries, ffn, (kept, buffers));
    }
    // Swin-L (1.5 GB converted: its conversion is the Swin-T one's, so only the schema here)
    let (ckpt, schema_file) = (
        "tests/fixtures/official_format_swinl_parseda_v2_q128.pth",
        "tests/fixtures/official_schema_swinl_parseda_v2_q128.txt",
    );
    schema_matches(ckpt, schema_file, "RLIP_ParSeDA_v2", 128, 2048, (SWINL_KEPT, 25));
}

fn schema_matches(ckpt: &str, schema_file: &str, variant: &str, queries: usize, ffn: usize, counts: (usize, usize)) {
    let (kept, want_buffers) = counts;
    let c = config_of(&Path::new(env!("CARGO_MANIFEST_DIR")).join(ckpt));
    assert_eq!(
        (c.variant.as_str(), c.num_queries, c.dim_feedforward, c.fusion_rounds(), c.text.layers, c.text.vocab),
        (variant, queries, ffn, 3, 12, 50265)
    );
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(schema_file)).unwrap();
    let expected = schema::expected(&c);
    let mut official_kept = Vec::new();
    let (mut aliases, mut buffers) = (0, 0);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split(' ').collect();
        let shape: Vec<usize> = f[2].split(',').filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
        match schema::dropped(f[0], &c) {
            Some(Some(target)) => {
                // the official file names the alias pair the other way round or this way; either
                // way the dropped key and its target share one storage
                assert!(
                    f[3] == target || text.contains(&format!("{target} float32 {} {}", f[2], f[0])),
                    "{} should alias {target}",
                    f[0]
                );
                aliases += 1;
            }
            Some(None) => {
                assert!(
                    f[0] == "transformer.text_encoder.embeddings.position_ids" || schema::is_swin_index(f[0]),
                    "{}",
                    f[0]
                );
                assert_eq!(f[1], "int64", "{}", f[0]);
                buffers += 1;
            }
            None => official_kept.push((f[0].to_string(), shape)),
        }
    }
    assert_eq!((aliases, buffers), (72, want_buffers));
    assert_eq!(official_kept.len(), kept);
    assert_eq!(
        expected, official_kept,
        "{variant}: the Rust schema differs from the official state_dict (order included)"
    );
}

#[test]
fn official_format_checkpoint_converts() {
    // the R50 families; Swin-T's conversion runs in cli_detect.rs (each writes ≈ 850 MB)
    for (ckpt, schema_file, variant, _, _, kept, buffers) in &FIXTURES[..2] {
        converts(ckpt, schema_file, variant, *kept, *buffers);
    }
}

fn converts(ckpt: &str, schema_file: &str, variant: &str, kept: usize, buffers: usize) {
    let _turn = one_at_a_time();
    let fixture = || Path::new(env!("CARGO_MANIFEST_DIR")).join(ckpt);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.safetensors");
    let mut calls = 0;
    let report = rlipv2::convert::convert(&fixture(), &out, None, &mut |done, total| {
        calls += 1;
        assert!(done <= total);
    })
    .unwrap();
    assert_eq!((report.tensors, report.dropped_aliases, report.dropped_buffers, calls), (kept, 72, buffers, kept));
    let bytes = std::fs::read(&out).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), kept);
    let info = meta.metadata().as_ref().unwrap();
    let config: Config = serde_json::from_str(&info[rlipv2::convert::META_CONFIG]).unwrap();
    assert_eq!(config, config_of(&fixture()));
    assert!(info[rlipv2::convert::META_ARGS].contains(&format!("\"{variant}\": true")));
    assert!(info[rlipv2::convert::META_VARIANT].starts_with(variant), "{}", info[rlipv2::convert::META_VARIANT]);
    // tools/official_model.py fills tensor i (state-dict order) with 0.001·(i mod 97) − 0.05, a
    // BatchNorm running_var with 0.5 + 0.001·(i mod 97) (an alias holds the value of the key it
    // aliases: one storage, written once)
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(schema_file)).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().filter(|l| !l.starts_with('#')).map(|l| l.split(' ').collect()).collect();
    let index = |key: &str| lines.iter().position(|f| f[0] == key).unwrap();
    for f in &lines {
        let name = f[0];
        let i = if f[3] == "-" { index(name) } else { index(f[3]) };
        let Ok(t) = st.tensor(name) else {
            assert!(
                name.contains("_bbox_embed.") && name.starts_with("transformer.")
                    || name.ends_with("position_ids")
                    || schema::is_swin_index(name),
                "{name} missing"
            );
            continue;
        };
        // computed in f64, stored as f32, as torch does
        let want = if name.ends_with("running_var") {
            (0.5 + 0.001 * (i % 97) as f64) as f32
        } else {
            (0.001 * (i % 97) as f64 - 0.05) as f32
        };
        let data: &[f32] = bytemuck::cast_slice(t.data());
        assert_eq!(data.len(), t.shape().iter().product::<usize>());
        assert!(
            data.iter().all(|&x| x == want),
            "{name}: expected every value {want}, got {:?}",
            &data[..2.min(data.len())]
        );
    }
}

/// Copies the fixture with `data.pkl` replaced (entries stored, as torch writes them).
fn with_pickle(dir: &Path, pkl: &[u8], compress: bool) -> PathBuf {
    let mut src = zip::ZipArchive::new(std::fs::File::open(fixture()).unwrap()).unwrap();
    let path = dir.join("hostile.pth");
    let mut w = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..src.len() {
        let mut e = src.by_index(i).unwrap();
        let name = e.name().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        w.start_file(&name, opts).unwrap();
        w.write_all(if name.ends_with("data.pkl") { pkl } else { &data }).unwrap();
    }
    w.finish().unwrap();
    if compress {
        // set the compression method of every entry to 8 (deflate) in the local and central headers
        let mut b = std::fs::read(&path).unwrap();
        for sig in [[0x50u8, 0x4b, 0x03, 0x04], [0x50, 0x4b, 0x01, 0x02]] {
            let at: Vec<usize> = b.windows(4).enumerate().filter(|(_, w)| *w == sig).map(|(i, _)| i).collect();
            for i in at {
                let off = if sig[2] == 3 { 8 } else { 10 };
                b[i + off] = 8;
            }
        }
        std::fs::write(&path, b).unwrap();
    }
    path
}

fn convert_err(src: &Path, dir: &Path) -> String {
    let out = dir.join("out.safetensors");
    let e = rlipv2::convert::convert(src, &out, None, &mut |_, _| {}).unwrap_err().to_string();
    assert!(!out.exists(), "an output file was left behind");
    assert!(
        std::fs::read_dir(dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains(".tmp-")),
        "a temporary file was left behind"
    );
    e
}

#[test]
fn foreign_global_is_refused_and_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    // {'model': os.system('touch <marker>')}, as pickle.dumps(protocol=2) writes it
    let cmd = format!("touch {}", marker.display());
    let mut pkl = b"\x80\x02}q\x00X\x05\x00\x00\x00modelq\x01cposix\nsystem\nq\x02X".to_vec();
    pkl.extend((cmd.len() as u32).to_le_bytes());
    pkl.extend(cmd.as_bytes());
    pkl.extend(b"q\x03\x85q\x04Rq\x05s.");
    let e = convert_err(&with_pickle(dir.path(), &pkl, false), dir.path());
    assert!(e.contains("refused global `posix.system`"), "{e}");
    assert!(!marker.exists(), "the pickle ran code");
}

#[test]
fn opcode_outside_the_allow_list_is_refused() {
    // INST ('i'): the protocol-0 way to call a class
    let e = pickle::read(b"(i__main__\nEvil\n.", Limits::default()).unwrap_err();
    assert!(e.what.contains("opcode 0x69"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let e = convert_err(&with_pickle(dir.path(), b"\x80\x02(i__main__\nEvil\n.", false), dir.path());
    assert!(e.contains("not in the allow-list") && e.contains("data.pkl"), "{e}");
}

#[test]
fn memo_sharing_bomb_stays_small() {
    // x0 = []; x_{k+1} = [x_k, x_k] … 60 levels: 2^60 nodes if memoized values were copied
    let mut pkl = b"\x80\x02]q\x00".to_vec();
    for k in 0..60u8 {
        pkl.extend([b'(', b'h', k, b'h', k, b'l', b'q', k + 1]);
    }
    pkl.push(b'.');
    let t = std::time::Instant::now();
    let v = pickle::read(&pkl, Limits::default()).unwrap();
    assert!(matches!(v, Value::List(_)));
    assert!(t.elapsed().as_secs_f64() < 1.0);
    let dir = tempfile::tempdir().unwrap();
    let e = convert_err(&with_pickle(dir.path(), &pkl, false), dir.path());
    assert!(e.contains("no `model` entry") && e.contains("list"), "{e}");
}

#[test]
fn truncated_compressed_and_foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture()).unwrap();
    let cut = dir.path().join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert!(convert_err(&cut, dir.path()).contains("cut.pth"));
    let e = convert_err(&with_pickle(dir.path(), b"\x80\x02}q\x00.", true), dir.path());
    assert!(e.contains("compressed"), "{e}");
    let text = dir.path().join("notes.pth");
    std::fs::write(&text, "hello").unwrap();
    assert!(convert_err(&text, dir.path()).contains("not a torch zip checkpoint"));
    // a pickle cut short
    let ck_pkl = data_pkl();
    let e = pickle::read(&ck_pkl[..ck_pkl.len() - 10], Limits::default()).unwrap_err();
    assert!(e.what.contains("truncated") || e.what.contains("underflow") || e.what.contains("mark"), "{e}");
}

#[test]
fn unsupported_configuration_names_the_flag() {
    // the fixture's args with the backbone switched to Swin-T (same length keeps the pickle valid)
    let mut pkl = data_pkl();
    let at = pkl.windows(8).position(|w| w == b"resnet50").expect("backbone string");
    pkl[at..at + 8].copy_from_slice(b"swin_tin");
    let dir = tempfile::tempdir().unwrap();
    let e = convert_err(&with_pickle(dir.path(), &pkl, false), dir.path());
    assert!(e.contains("backbone `swin_tin` is not supported (resnet50, swin_tiny, swin_large)"), "{e}");
    // an Open Images checkpoint (dataset_file oi_sgg) reads as one; without subject_class it is
    // refused (PostProcessSGG classifies subjects)
    let mut pkl = data_pkl();
    let key = pkl.windows(12).position(|w| w == b"dataset_file").expect("dataset_file key");
    let value = b"X\x04\x00\x00\x00hico"; // BINUNICODE, 4-byte length
    let at = key + pkl[key..].windows(value.len()).position(|w| w == value).expect("its value");
    pkl.splice(at..at + value.len(), b"X\x06\x00\x00\x00oi_sgg".iter().copied());
    let dir = tempfile::tempdir().unwrap();
    let args = |pkl: &[u8]| {
        let path = with_pickle(dir.path(), pkl, false);
        let ck = Checkpoint::open(&path).unwrap();
        let sd = pth::state_dict(&path, &ck.root.get("model").unwrap()).unwrap();
        let shape =
            |k: &str| sd.iter().find(|(n, _)| n == k).map(|(_, t)| t.shape.iter().map(|&d| d as usize).collect());
        Config::from_checkpoint(&ck.root.get("args").unwrap(), shape)
    };
    let c = args(&pkl).unwrap();
    assert!(c.summary().contains("Open Images v6 head"), "{}", c.summary());
    let key = pkl.windows(13).position(|w| w == b"subject_class").expect("subject_class key");
    let at = key + pkl[key..key + 24].iter().position(|&b| b == 0x88).expect("NEWTRUE after the key");
    pkl[at] = 0x89; // NEWFALSE
    let e = args(&pkl).unwrap_err();
    assert!(e.contains("dataset_file oi_sgg") && e.contains("subject_class"), "{e}");
}

fn data_pkl() -> Vec<u8> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(fixture()).unwrap()).unwrap();
    let name =
        (0..z.len()).map(|i| z.by_index(i).unwrap().name().to_string()).find(|n| n.ends_with("data.pkl")).unwrap();
    let mut v = Vec::new();
    z.by_name(&name).unwrap().read_to_end(&mut v).unwrap();
    v
}

#[test]
fn mutated_pickles_never_panic() {
    let cases: usize = std::env::var("RLIPV2_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let base = data_pkl();
    let mut rng = Rng::new(2024);
    let limits = Limits { max_ops: 200_000, max_stack: 100_000, max_items: 200_000 };
    let (mut ok, mut err) = (0, 0);
    for _ in 0..cases {
        let mut p = base.clone();
        let r = rng.next_u64();
        match r % 4 {
            0 => p.truncate((r >> 8) as usize % p.len()),
            1 => {
                for k in 0..1 + (r >> 60) as usize {
                    let i = (rng.next_u64() as usize) % p.len();
                    p[i] ^= 1 << (k % 8);
                }
            }
            2 => {
                let i = (r >> 8) as usize % p.len();
                p[i] = (r >> 40) as u8;
            }
            _ => {
                let i = (r >> 8) as usize % p.len();
                let j = (rng.next_u64() as usize) % p.len();
                let chunk = p[i.min(j)..i.max(j).min(i.min(j) + 64)].to_vec();
                p.splice(i..i, chunk);
            }
        }
        match pickle::read(&p, limits) {
            Ok(_) => ok += 1,
            Err(_) => err += 1,
        }
    }
    println!("{cases} mutated data.pkl: {ok} parsed, {err} refused, 0 panics");
}

#[test]
fn tokenizer_gives_roberta_style_ids() {
    let dir = tempfile::tempdir().unwrap();
    let tok = char_tokenizer(dir.path());
    let ids = rlipv2::graph::text::tokenize(&tok, &["traffic light".to_string(), "sit on/at".to_string()]).unwrap();
    let c = |ch: char| 4 + ch as u32 - 33;
    let word = |w: &str| w.chars().map(c).collect::<Vec<u32>>();
    let want0: Vec<u32> = [vec![0], word("traffic"), vec![98], word("light"), vec![2]].concat();
    assert_eq!(ids[0], want0, "<s> traffic Ġlight </s>, no prefix space");
    assert_eq!(ids[1].first(), Some(&0));
    assert_eq!(ids[1].last(), Some(&2));
    let e = rlipv2::graph::text::tokenize(&dir.path().join("missing.json"), &["x".into()]).unwrap_err().to_string();
    assert!(e.contains("missing.json"), "{e}");
}

#[test]
fn label_embeddings_are_baked_with_a_tokenizer() {
    use rlipv2::backend::{self, BackendKind};
    use rlipv2::graph::text::{self, TextEncoder};
    // the suite's shared fixture, converted by `rlipv2 convert` with the byte-level tokenizer
    // (a second conversion here would encode every label again)
    let dir = tempfile::tempdir().unwrap();
    let tok = char_tokenizer(dir.path());
    let out = crate::common::converted_fixture(dir.path());
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), 1008);
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()[rlipv2::convert::META_LABEL_SETS], "hico,vcoco");
    // the baked rows are the checkpoint's text encoder run on the tokenized label texts
    let get = |name: &str, _: &[usize]| Ok(bytemuck::pod_collect_to_vec(st.tensor(name).unwrap().data()));
    let enc = TextEncoder::load(fixture_config().text, &Vars::new(&get).pp(text::PREFIX)).unwrap();
    let cpu = backend::open(BackendKind::Cpu).unwrap();
    for (set, t) in [("hico", 198), ("vcoco", 111)] {
        let baked = st.tensor(&rlipv2::convert::label_tensor(set)).unwrap();
        assert_eq!(baked.shape(), &[t, 768]);
        let labels = rlipv2::model::labels::LabelSet::builtin(set).unwrap();
        let want = enc.encode(cpu.as_ref(), &text::tokenize(&tok, &labels.texts()).unwrap()).unwrap();
        let got: Vec<f32> = bytemuck::pod_collect_to_vec(baked.data());
        assert_eq!(got, want, "{set}");
    }
}

#[test]
fn cli_convert_reports_and_fails_cleanly() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.safetensors");
    let run = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_rlipv2")).args(args).output().unwrap()
    };
    let ok = run(&["convert".as_ref(), fixture().as_os_str(), out.as_os_str()]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(stdout.contains("wrote 1006 tensors") && stdout.contains("128 queries"), "{stdout}");
    assert!(out.exists());
    let bad = dir.path().join("bad.pth");
    std::fs::write(&bad, b"PK\x03\x04 truncated").unwrap();
    let out2 = dir.path().join("m2.safetensors");
    let fail = run(&["convert".as_ref(), bad.as_os_str(), out2.as_os_str()]);
    assert!(!fail.status.success());
    assert!(String::from_utf8_lossy(&fail.stderr).contains("bad.pth"));
    assert!(!out2.exists());
}
