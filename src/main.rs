//! `rlipv2` command line: thin parsing over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rlipv2::backend::{self, BackendKind, Ops};
use rlipv2::bench;
use rlipv2::problem::{DType, Form, Gate, RefKind};
use rlipv2::{io, Error, Result};

#[derive(Parser)]
#[command(
    name = "rlipv2",
    version,
    about = "RLIPv2 kernels and inference on any GPU or CPU",
    after_help = "Examples:\n  rlipv2 info                                   # what runs here, and how\n  rlipv2 convert RLIP_PDA_v2_HICO_R50.pth m.safetensors --tokenizer tokenizer.json\n  rlipv2 detect --weights m.safetensors photo.jpg --out results/\n  rlipv2 bench suite --backends all             # bench.json, bench.md, bench.svg\n\nRUST_LOG=info shows the backend choice and each op's kernel variant."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one op on inputs from a safetensors file (for benchmark suites and external harnesses).
    ///
    /// Example: rlipv2 op ms_deform_attn --backend auto --input in.safetensors --output out.safetensors
    Op {
        #[command(subcommand)]
        op: OpCmd,
    },
    /// Time ops side by side on several backends in one run: the whole suite (JSON, markdown,
    /// SVG chart) or one op as a table.
    ///
    /// Example: rlipv2 bench suite --backends all --out bench-out
    Bench {
        #[command(subcommand)]
        op: BenchCmd,
    },
    /// List the backends, whether each is usable here, and what `auto` picks.
    ///
    /// Example: RUST_LOG=info rlipv2 backends
    Backends,
    /// Version, features, and every backend: usable or why not, its device, the limits that
    /// matter to the kernels and the kernel variant each op uses there.
    ///
    /// Example: rlipv2 info --json
    Info {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Detect ⟨human, verb, object⟩ triplets in images with a converted model: one JSON file per
    /// image in --out (subject box, object box, object, verb, score; boxes in original pixels).
    ///
    /// Example: rlipv2 detect --weights rlipv2_hico_r50.safetensors photos/ --labels hico --out results/
    Detect {
        /// A model file written by `rlipv2 convert`.
        #[arg(long)]
        weights: PathBuf,
        /// Images (PNG or JPEG), or directories of them.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// `hico`, `vcoco`, or a JSON file {"objects": [...], "verbs": [...]} (needs --tokenizer).
        #[arg(long, default_value = "hico")]
        labels: String,
        /// The roberta-base tokenizer.json, for label sets not baked into the model file.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// auto, cpu, reference, wgpu, cubecl-wgpu, cubecl-cuda (every stage, the backbone's
        /// implicit-GEMM convolutions included, runs on the chosen device).
        #[arg(long, default_value = "auto")]
        backend: String,
        /// Detections kept per image after NMS (at most 100: the evaluator's candidate count).
        #[arg(long, default_value_t = 100)]
        top_k: usize,
        /// Drop detections scoring below this.
        #[arg(long, default_value_t = 0.0)]
        threshold: f32,
        /// Keep only pairs whose subject is classified as `person` (the zero-shot evaluation).
        #[arg(long)]
        person_only: bool,
        /// Output directory (created if missing).
        #[arg(long, default_value = "detections")]
        out: PathBuf,
        /// Print a per-stage time table for every image.
        #[arg(long)]
        profile: bool,
        /// Detections drawn on the annotated PNG written beside each JSON (0: no PNG).
        #[arg(long, default_value_t = 5)]
        draw: usize,
    },
    /// Convert an official RLIPv2 checkpoint (.pth from `torch.save`) to safetensors, without
    /// Python and without running any pickle code. Checks every tensor against the schema of
    /// the checkpoint's configuration; records that configuration as metadata.
    ///
    /// Example: rlipv2 convert RLIP_PDA_v2_HICO_R50.pth rlipv2_hico_r50.safetensors --tokenizer roberta-base/tokenizer.json
    Convert {
        /// The official checkpoint (a dict with `model` and `args`, as main.py saves it).
        checkpoint: PathBuf,
        /// The safetensors file to write (written to a temporary name, renamed when complete).
        output: PathBuf,
        /// A RoBERTa `tokenizer.json` (the `roberta-base` one the official code uses): also bake
        /// the label embeddings of the built-in label sets (hico, vcoco) into the file, so that
        /// detection with them needs no tokenizer and no text-encoder run.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum OpCmd {
    #[command(name = "ms_deform_attn")]
    /// Multi-scale deformable attention, official form. IN holds `value` f32 [B,S,M,D],
    /// `spatial_shapes` i64 [L,2] (H,W), `level_start_index` i64 [L], `sampling_locations`
    /// f32 [B,Q,M,L,P,2] (x,y in [0,1]), `attention_weights` f32 [B,Q,M,L,P]; OUT gets
    /// `output` f32 [B,Q,M·D].
    ///
    /// Example: rlipv2 op ms_deform_attn --backend wgpu --dtype f16 --input in.safetensors --output out.safetensors --repeat 20
    MsDeformAttn {
        /// reference | cpu | wgpu | cubecl-wgpu | cubecl-cuda | auto
        #[arg(long, default_value = "auto")]
        backend: String,
        /// Storage type of value and output inside the kernel: f32, f16 or bf16 (accumulation is always f32).
        #[arg(long, default_value = "f32")]
        dtype: DType,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        /// Also run N more times and print median and min kernel time (device-synced).
        #[arg(long)]
        repeat: Option<usize>,
    },
    #[command(name = "gated_cross_attn")]
    /// ALIF gated bi-directional cross-attention. IN holds `v` f32 [B,Nv,Cv], `pos` [B,Nv,Cv],
    /// `l` [B,T,Cl]; WEIGHTS the 18 `b_attn.*` tensors (after --prefix); OUT gets `v_out`
    /// [B,Nv,Cv] and `l_out` [B,T,Cl].
    ///
    /// Example: rlipv2 op gated_cross_attn --input x.safetensors --weights model.safetensors --prefix transformer.encoder.VLFuse_layers.0. --output y.safetensors
    GatedCrossAttn {
        #[command(flatten)]
        args: FusionArgs,
        /// Prefix of the weight names, e.g. `transformer.encoder.VLFuse_layers.0.`
        #[arg(long, default_value = "")]
        prefix: String,
    },
    #[command(name = "sparse_fusion")]
    /// One ALIF round. IN holds `memory` f32 [B,S,C], `pos` [B,S,C], `lang` [B,T,Cl],
    /// `level_start_index` i64 [L] and optionally `lang_mask` f32 [B,T] (1 = label); WEIGHTS the
    /// fusion and language-layer tensors; OUT gets `memory` (last level fused) and `lang_out`.
    ///
    /// Example: rlipv2 op sparse_fusion --input x.safetensors --weights model.safetensors --fusion-prefix transformer.encoder.VLFuse_layers.0. --lang-prefix transformer.encoder.roberta_layers.0. --output y.safetensors
    SparseFusion {
        #[command(flatten)]
        args: FusionArgs,
        /// Prefix of the fusion weights, e.g. `transformer.encoder.VLFuse_layers.0.`
        #[arg(long, default_value = "")]
        fusion_prefix: String,
        /// Prefix of the language layer, e.g. `transformer.encoder.roberta_layers.0.`
        #[arg(long, default_value = "")]
        lang_prefix: String,
        /// Language-layer heads (RoBERTa: 12)
        #[arg(long, default_value_t = 12)]
        lang_heads: usize,
    },
}

/// Weights and fusion options shared by the ALIF ops.
#[derive(clap::Args)]
struct FusionArgs {
    /// reference | cpu | wgpu | cubecl-wgpu | cubecl-cuda | auto
    #[arg(long, default_value = "auto")]
    backend: String,
    #[arg(long)]
    input: PathBuf,
    /// safetensors with the official weight names (see --prefix)
    #[arg(long)]
    weights: PathBuf,
    #[arg(long)]
    output: PathBuf,
    /// Fusion gate: VXAc (scalar gamma[0], every RLIPv2 checkpoint), GLIP (elementwise), XGating (1)
    #[arg(long, default_value = "VXAc")]
    gate: Gate,
    /// Fusion heads (RLIPv2: 8)
    #[arg(long, default_value_t = 8)]
    heads: usize,
    /// Also run N more times and print median and min time.
    #[arg(long)]
    repeat: Option<usize>,
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Every op × backend × dtype at the RLIPv2 shapes and on two scaling sweeps (decoder queries,
    /// encoder image size), in one process; writes bench.json, bench.md and bench.svg to --out.
    ///
    /// Example: rlipv2 bench suite --backends all --ops ms_deform_attn,gemm --out bench-out --compare old/bench.json
    Suite {
        /// Comma-separated backends, or `all`. Default: the `auto` pick and cpu.
        #[arg(long, value_delimiter = ',')]
        backends: Vec<String>,
        /// Storage dtypes for ms_deform_attn (the other ops run f32).
        #[arg(long, value_delimiter = ',', default_value = "f32,f16")]
        dtypes: Vec<DType>,
        /// Timed samples per cell, after one warm-up.
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        /// Small shapes: seconds on a software adapter (smoke tests, CI).
        #[arg(long)]
        quick: bool,
        /// Also time detect end to end: a model file from `rlipv2 convert` (needs --image).
        #[arg(long, requires = "image")]
        weights: Option<PathBuf>,
        /// The image for --weights.
        #[arg(long, requires = "weights")]
        image: Option<PathBuf>,
        /// Where bench.json, bench.md and bench.svg go.
        #[arg(long, default_value = "bench-out")]
        out: PathBuf,
        /// A bench.json of an earlier run: print the change of every cell.
        #[arg(long)]
        compare: Option<PathBuf>,
        /// Only these ops: ms_deform_attn, gemm, gated_cross_attn, sparse_fusion, detect.
        #[arg(long, value_delimiter = ',')]
        ops: Vec<String>,
    },
    /// Rewrite bench.md and bench.svg (and bench.json) from a bench.json, e.g. one measured on
    /// another machine, without timing anything.
    ///
    /// Example: rlipv2 bench render gpu-run/bench.json --out gpu-run
    Render {
        /// A bench.json written by `rlipv2 bench suite`.
        json: PathBuf,
        /// Where to write the three files.
        #[arg(long, default_value = "bench-out")]
        out: PathBuf,
    },
    #[command(name = "sparse_fusion")]
    /// One ALIF round at RLIPv2 sizes (S = 22223, last level 273 tokens, T = 198), seeded
    /// weights: gated_cross_attn alone, the fused round, and the same round op by op, with a
    /// per-launch profile of the resident fused round.
    ///
    /// Example: rlipv2 bench sparse_fusion --backends cpu,wgpu,cubecl-wgpu --repeat 5
    SparseFusion {
        /// Comma-separated backends. Default: cpu.
        #[arg(long, value_delimiter = ',', default_value = "cpu")]
        backends: Vec<String>,
        /// Timed samples, after one warm-up.
        #[arg(long, default_value_t = 5)]
        repeat: usize,
    },
    #[command(name = "ms_deform_attn")]
    /// Multi-scale deformable attention on seeded inputs: median and min time, GB/s and speed-up
    /// vs cpu per backend × dtype.
    ///
    /// Example: rlipv2 bench ms_deform_attn --backends all --dtypes f32,f16 --case decoder --form fused-boxes
    MsDeformAttn {
        /// Comma-separated backends, or `all`. Default: the `auto` pick and cpu.
        #[arg(long, value_delimiter = ',')]
        backends: Vec<String>,
        /// Comma-separated dtypes.
        #[arg(long, value_delimiter = ',', default_value = "f32,f16")]
        dtypes: Vec<DType>,
        /// encoder (RLIPv2 800×1333: Q = S = 22223) | decoder (Q = 200) | small
        #[arg(long, default_value = "encoder")]
        case: String,
        /// official (locations + weights) | fused-points | fused-boxes (reference + offsets + logits)
        #[arg(long, default_value = "official")]
        form: String,
        /// Timed samples, after one warm-up.
        #[arg(long, default_value_t = 10)]
        repeat: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // RUST_LOG=info shows the backend choice and each op's kernel variant; quiet (warnings) otherwise
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Detect {
            weights,
            images,
            labels,
            tokenizer,
            backend,
            top_k,
            threshold,
            person_only,
            out,
            profile,
            draw,
        } => detect(
            &weights,
            &images,
            &labels,
            tokenizer.as_deref(),
            &backend,
            top_k,
            threshold,
            person_only,
            &out,
            profile,
            draw,
        ),
        Cmd::Convert { checkpoint, output, tokenizer } => {
            eprintln!("reading {}", checkpoint.display());
            use std::io::IsTerminal;
            // a live line on a terminal; a line per quarter in logs
            let (live, step) = if std::io::stderr().is_terminal() { (true, 1) } else { (false, 25) };
            let mut last = usize::MAX;
            let report = rlipv2::convert::convert(&checkpoint, &output, tokenizer.as_deref(), &mut |done, total| {
                let pct = done * 100 / total.max(1);
                if pct / step != last || done == total {
                    last = pct / step;
                    if live {
                        eprint!("\rwriting tensors: {done}/{total} ({pct}%)");
                    } else {
                        eprintln!("writing tensors: {done}/{total} ({pct}%)");
                    }
                }
            })?;
            if live {
                eprintln!();
            }
            let c = &report.config;
            println!(
                "wrote {} tensors ({:.1} MB) to {}; dropped {} aliased box-MLP keys and {} buffer(s)",
                report.tensors,
                report.bytes as f64 / 1e6,
                output.display(),
                report.dropped_aliases,
                report.dropped_buffers
            );
            if !report.label_sets.is_empty() {
                println!(
                    "baked label embeddings: {}",
                    report.label_sets.iter().map(|s| rlipv2::convert::label_tensor(s)).collect::<Vec<_>>().join(", ")
                );
            }
            println!("config: {} {}, {} queries, FFN {}, {} encoder / {} decoder layers, {} fusion rounds ({} gate), labels `{}`, text encoder {} layers", c.variant, c.backbone, c.num_queries, c.dim_feedforward, c.enc_layers, c.dec_layers, c.fusion_rounds(), c.gating, c.dataset, c.text.layers);
            Ok(())
        }
        Cmd::Op { op: OpCmd::MsDeformAttn { backend, dtype, input, output, repeat } } => {
            let file = io::read_ms_deform_attn(&input)?;
            let (be, why) = backend::select(&backend)?;
            eprintln!("backend: {why}");
            let pr = &file.problem;
            let mut prepared = be.prepare_ms_deform_attn(pr, &file.input(), dtype)?;
            prepared.run()?;
            let out = prepared.output()?;
            if let Some(n) = repeat {
                let t = bench::time_runs(prepared.as_mut(), n)?;
                println!(
                    "{} {} {}: median {:.3} ms, min {:.3} ms over {n} runs",
                    pr.form_name(),
                    be.kind(),
                    dtype,
                    t.median_s * 1e3,
                    t.min_s * 1e3
                );
            }
            io::write_f32_tensors(&output, &[("output", pr.output_shape(), &out)])?;
            eprintln!("wrote `output` {:?} to {}", pr.output_shape(), output.display());
            Ok(())
        }
        Cmd::Op { op: OpCmd::GatedCrossAttn { args, prefix } } => {
            let f = io::read_gated_cross_attn(&args.input, &args.weights, &prefix, args.heads, args.gate)?;
            let (be, why) = backend::select(&args.backend)?;
            eprintln!("backend: {why}");
            let p = &f.problem;
            let w = f.weights.as_fusion();
            let (v, l) = be.gated_cross_attn(p, &f.v, &f.pos, &f.l, &w)?;
            if let Some(n) = args.repeat {
                let t = bench::time_host(n, || be.gated_cross_attn(p, &f.v, &f.pos, &f.l, &w).map(|_| ()))?;
                println!(
                    "gated_cross_attn {}: median {:.3} ms, min {:.3} ms over {n} runs",
                    be.kind(),
                    t.median_s * 1e3,
                    t.min_s * 1e3
                );
            }
            io::write_f32_tensors(
                &args.output,
                &[("v_out", vec![p.batch, p.nv, p.v_dim], &v), ("l_out", vec![p.batch, p.t, p.l_dim], &l)],
            )?;
            eprintln!("wrote `v_out`, `l_out` to {}", args.output.display());
            Ok(())
        }
        Cmd::Op { op: OpCmd::SparseFusion { args, fusion_prefix, lang_prefix, lang_heads } } => {
            let f = io::read_sparse_fusion(
                &args.input,
                &args.weights,
                &fusion_prefix,
                &lang_prefix,
                args.heads,
                lang_heads,
                args.gate,
            )?;
            let (be, why) = backend::select(&args.backend)?;
            eprintln!("backend: {why}");
            let p = &f.problem;
            let (fw, bw) = (f.fusion.as_fusion(), f.lang_weights.as_bert());
            let mut memory = f.memory.clone();
            let lang = be.sparse_fusion(p, &mut memory, &f.pos, &f.lang, f.lang_mask.as_deref(), &fw, &bw)?;
            if let Some(n) = args.repeat {
                let t = bench::time_host(n, || {
                    let mut m = f.memory.clone();
                    be.sparse_fusion(p, &mut m, &f.pos, &f.lang, f.lang_mask.as_deref(), &fw, &bw).map(|_| ())
                })?;
                println!(
                    "sparse_fusion {}: median {:.3} ms, min {:.3} ms over {n} runs",
                    be.kind(),
                    t.median_s * 1e3,
                    t.min_s * 1e3
                );
            }
            let (b, t) = (p.fusion.batch, p.fusion.t);
            io::write_f32_tensors(
                &args.output,
                &[
                    ("memory", vec![b, p.tokens, p.fusion.v_dim], &memory),
                    ("lang_out", vec![b, t, p.lang.hidden], &lang),
                ],
            )?;
            eprintln!("wrote `memory`, `lang_out` to {}", args.output.display());
            Ok(())
        }
        Cmd::Bench { op: BenchCmd::Suite { backends, dtypes, repeat, quick, weights, image, out, compare, ops } } => {
            // check the arguments and read the old run first: mistakes fail before minutes of timing
            bench::suite::check_ops(&ops)?;
            let old = compare.as_deref().map(bench::report::Report::read).transpose()?;
            let opts = bench::suite::SuiteOptions {
                backends: bench_backends(&backends)?,
                dtypes,
                repeat,
                quick,
                detect: weights.zip(image),
                ops,
            };
            let bar = indicatif::ProgressBar::new(bench::suite::count(&opts) as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {wide_msg}").expect("template"),
            );
            let logged = bar.is_hidden();
            let records = bench::suite::run(&opts, |done, total, what| {
                bar.set_position(done as u64);
                bar.set_message(what.to_string());
                if logged && done < total {
                    eprintln!("[{}/{total}] {what}", done + 1);
                }
            })?;
            bar.finish_and_clear();
            let report = bench::report::Report::new(records, quick, repeat);
            let files = report.write(&out)?;
            print!("{}", report.markdown());
            if let Some(old) = old {
                println!("\nchange vs {}:", compare.as_deref().map(|p| p.display().to_string()).unwrap_or_default());
                print!("{}", report.compare(&old));
            }
            eprintln!("wrote {}", files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "));
            Ok(())
        }
        Cmd::Bench { op: BenchCmd::Render { json, out } } => {
            let report = bench::report::Report::read(&json)?;
            let files = report.write(&out)?;
            eprintln!("wrote {}", files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "));
            Ok(())
        }
        Cmd::Bench { op: BenchCmd::SparseFusion { backends, repeat } } => {
            let kinds: Vec<BackendKind> = backends.iter().map(|n| BackendKind::parse(n)).collect::<Result<_>>()?;
            print!("{}", bench::fusion::run_table(&kinds, repeat, |what| eprintln!("timing {what} …")));
            Ok(())
        }
        Cmd::Bench { op: BenchCmd::MsDeformAttn { backends, dtypes, case, form, repeat } } => {
            let form = match form.as_str() {
                "official" => Form::Official,
                "fused-points" => Form::Fused(RefKind::Points),
                "fused-boxes" => Form::Fused(RefKind::Boxes),
                other => {
                    return Err(Error::Limit {
                        op: "bench",
                        what: "--form".into(),
                        reason: format!("unknown form `{other}` (official, fused-points, fused-boxes)"),
                    })
                }
            };
            let pr = bench::case(&case, form).ok_or_else(|| Error::Limit {
                op: "bench",
                what: "--case".into(),
                reason: format!("unknown case `{case}` (one of {:?})", bench::CASES),
            })?;
            let kinds = bench_backends(&backends)?;
            println!(
                "ms_deform_attn/{case} ({form:?}): B={} Q={} M={} D={} L={} P={} S={}; {:.1} MB compulsory (f32)",
                pr.batch,
                pr.queries,
                pr.heads,
                pr.channels,
                pr.num_levels(),
                pr.points,
                pr.tokens,
                pr.bytes(DType::F32) as f64 / 1e6
            );
            let rows = bench::run_table(&kinds, &dtypes, &pr, repeat, |what| eprintln!("timing {what} …"));
            print!("{}", bench::format_table(&pr, &rows));
            Ok(())
        }
        Cmd::Info { json } => {
            let features: Vec<&str> = [
                ("wgpu", cfg!(feature = "wgpu")),
                ("cubecl-wgpu", cfg!(feature = "cubecl-wgpu")),
                ("cuda", cfg!(feature = "cuda")),
            ]
            .into_iter()
            .filter_map(|(f, on)| on.then_some(f))
            .collect();
            let mut rows = Vec::new();
            for kind in BackendKind::ALL {
                rows.push(match backend::open(kind) {
                    Ok(b) => serde_json::json!({"backend": kind.name(), "available": true, "device": b.device(), "details": b.details().into_iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v))).collect::<serde_json::Map<_, _>>()}),
                    Err(e) => serde_json::json!({"backend": kind.name(), "available": false, "why": e.to_string()}),
                });
            }
            let (_, auto) = backend::select("auto")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({"version": env!("CARGO_PKG_VERSION"), "features": features, "backends": rows, "auto": auto})).expect("json"));
            } else {
                println!("rlipv2 {} (features: {})", env!("CARGO_PKG_VERSION"), features.join(", "));
                for r in &rows {
                    if r["available"].as_bool() == Some(true) {
                        println!(
                            "\n{:<12} ok  {}",
                            r["backend"].as_str().unwrap_or(""),
                            r["device"].as_str().unwrap_or("")
                        );
                        for (k, v) in r["details"].as_object().into_iter().flatten() {
                            println!("    {k:<18} {}", v.as_str().unwrap_or(""));
                        }
                    } else {
                        println!(
                            "\n{:<12} --  {}",
                            r["backend"].as_str().unwrap_or(""),
                            r["why"].as_str().unwrap_or("")
                        );
                    }
                }
                println!("\nauto → {auto}");
            }
            Ok(())
        }
        Cmd::Backends => {
            for kind in BackendKind::ALL {
                match backend::open(kind) {
                    Ok(b) => println!("{:<12} ok    {}", kind.name(), b.device()),
                    Err(e) => println!("{:<12} SKIP  {e}", kind.name()),
                }
            }
            let (_, why) = backend::select("auto")?;
            println!("auto → {why}");
            Ok(())
        }
    }
}

fn bench_backends(names: &[String]) -> Result<Vec<BackendKind>> {
    if names.is_empty() {
        let (auto, why) = backend::select("auto")?;
        eprintln!("auto: {why}");
        let mut kinds = vec![BackendKind::Cpu];
        if auto.kind() != BackendKind::Cpu {
            kinds.push(auto.kind());
        }
        return Ok(kinds);
    }
    if names.len() == 1 && names[0] == "all" {
        return Ok(BackendKind::ALL.iter().copied().filter(|&k| k != BackendKind::Reference).collect());
    }
    names.iter().map(|n| BackendKind::parse(n)).collect()
}

/// Image files among `inputs` (directories expanded, sorted).
fn image_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|source| Error::Io { path: p.clone(), source })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
                })
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

#[allow(clippy::too_many_arguments)]
fn detect(
    weights: &std::path::Path,
    inputs: &[PathBuf],
    labels: &str,
    tokenizer: Option<&std::path::Path>,
    backend: &str,
    top_k: usize,
    threshold: f32,
    person_only: bool,
    out: &std::path::Path,
    profile: bool,
    draw: usize,
) -> Result<()> {
    use rlipv2::detect::{Detector, Profile};
    use rlipv2::model::labels::LabelSet;
    use rlipv2::model::postprocess::PostConfig;
    let files = image_files(inputs)?;
    if files.is_empty() {
        return Err(Error::Format { file: inputs[0].clone(), reason: "no PNG or JPEG images found".into() });
    }
    let set = match LabelSet::builtin(labels) {
        Some(s) => s,
        None => {
            let path = PathBuf::from(labels);
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
            #[derive(serde::Deserialize)]
            struct Custom {
                objects: Vec<String>,
                verbs: Vec<String>,
            }
            let c: Custom = serde_json::from_str(&text).map_err(|e| Error::Format {
                file: path.clone(),
                reason: format!("expected {{\"objects\": [...], \"verbs\": [...]}} (or hico / vcoco): {e}"),
            })?;
            if c.objects.is_empty() || c.verbs.is_empty() {
                return Err(Error::Format { file: path, reason: "needs at least one object and one verb".into() });
            }
            LabelSet { name: format!("custom:{labels}"), objects: c.objects, verbs: c.verbs, valid_pairs: None }
        }
    };
    let (be, why) = backend::select(backend)?;
    eprintln!("backend: {why}");
    eprintln!("loading {}", weights.display());
    let file = rlipv2::io::weights::WeightFile::open(weights)?;
    let det = Detector::load(&file, weights)?;
    let labels = det.labels(&file, weights, set, tokenizer, be.as_ref())?;
    std::fs::create_dir_all(out).map_err(|source| Error::Io { path: out.to_path_buf(), source })?;
    let post = PostConfig { zero_shot: person_only, ..PostConfig::default() };
    // a bar on a terminal for several images; a line per image in logs (the bar hides itself there)
    let bar = indicatif::ProgressBar::new(files.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} images, {elapsed} (eta {eta}) {wide_msg}")
            .expect("template"),
    );
    if files.len() < 2 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let say = |line: String| if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) };
    for (i, f) in files.iter().enumerate() {
        bar.set_position(i as u64);
        bar.set_message(f.display().to_string());
        if bar.is_hidden() {
            eprintln!("[{}/{}] {}", i + 1, files.len(), f.display());
        }
        let img = io::image::load_rgb(f)?;
        let mut prof = Profile::default();
        let uploaded = be.uploaded_bytes();
        let (launched, submitted, recycled) = (be.dispatch_count(), be.submission_count(), be.recycled_outputs());
        let dets = det.detect(be.as_ref(), &img, &labels, &post, &mut prof)?;
        let kept: Vec<serde_json::Value> = dets
            .iter()
            .filter(|d| d.score >= threshold)
            .take(top_k)
            .map(|d| serde_json::json!({"subject_box": d.subject_box, "object_box": d.object_box, "object": labels.set.objects[d.object_label], "verb": labels.set.verbs[d.verb], "score": d.score, "pair": d.pair}))
            .collect();
        let doc = serde_json::json!({"image": f.display().to_string(), "width": img.width, "height": img.height, "labels": labels.set.name, "backend": be.kind().name(), "detections": kept});
        let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| format!("image{i}"));
        let path = out.join(format!("{stem}.json"));
        io::write_atomic(&path, serde_json::to_string_pretty(&doc).expect("json").as_bytes())?;
        if draw > 0 {
            let shown: Vec<_> = dets.iter().filter(|d| d.score >= threshold).take(top_k.min(draw)).cloned().collect();
            io::draw::save_png(&io::draw::annotate(&img, &shown, &labels.set, draw), &out.join(format!("{stem}.png")))?;
        }
        if let Some(top) = dets.first() {
            say(format!(
                "{}: {} detections; best: {} {} ({:.3})",
                f.display(),
                kept.len(),
                labels.set.verbs[top.verb],
                labels.set.objects[top.object_label],
                top.score
            ));
        }
        if profile {
            let total: f64 = prof.stages.iter().map(|s| s.1).sum();
            for (stage, t, peak) in &prof.stages {
                let peak = peak.map(|b| format!("   peak RSS {:.0} MB", b as f64 / 1e6)).unwrap_or_default();
                println!("  {stage:<24} {:>9.1} ms{peak}", t * 1e3);
            }
            println!("  {:<24} {:>9.1} ms", "total", total * 1e3);
            if let (Some(a), Some(b)) = (uploaded, be.uploaded_bytes()) {
                println!(
                    "  host → device copies: {:.1} MB (weights are bound on the first image)",
                    (b - a) as f64 / 1e6
                );
            }
            if let (Some(a), Some(b), Some(c), Some(d)) =
                (launched, be.dispatch_count(), submitted, be.submission_count())
            {
                println!("  kernel launches: {} in {} queue submissions", b - a, d - c);
            }
            if let (Some(a), Some(b)) = (recycled, be.recycled_outputs()) {
                println!("  outputs in recycled device buffers: {}", b - a);
            }
        }
    }
    bar.finish_and_clear();
    Ok(())
}
