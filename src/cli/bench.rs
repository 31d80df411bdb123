//! `rlipv2 bench …`: ops and detect timed side by side on several backends.

use std::path::PathBuf;

use clap::Subcommand;

use rlipv2::backend::{self, BackendKind};
use rlipv2::problem::{DType, Form, RefKind};
use rlipv2::{bench, Error, Result};

#[derive(Subcommand)]
pub enum BenchCmd {
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
        /// Only these ops: ms_deform_attn, gemm, gated_cross_attn, sparse_fusion, detect,
        /// ms_deform_attn_backward (the last only when named: reference and cpu have it so far).
        #[arg(long, value_delimiter = ',')]
        ops: Vec<String>,
        /// Inputs of the gemm and detect cells' products: f32 or bf16 (cpu only; see `detect
        /// --precision`).
        #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
        precision: String,
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

/// Runs one `bench` subcommand.
pub fn run(op: BenchCmd) -> Result<()> {
    match op {
        BenchCmd::Suite { backends, dtypes, repeat, quick, weights, image, out, compare, ops, precision } => {
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
                precision: rlipv2::problem::Precision::parse(&precision)?,
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
        BenchCmd::Render { json, out } => {
            let report = bench::report::Report::read(&json)?;
            let files = report.write(&out)?;
            eprintln!("wrote {}", files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "));
            Ok(())
        }
        BenchCmd::SparseFusion { backends, repeat } => {
            let kinds: Vec<BackendKind> = backends.iter().map(|n| BackendKind::parse(n)).collect::<Result<_>>()?;
            print!("{}", bench::fusion::run_table(&kinds, repeat, |what| eprintln!("timing {what} …")));
            Ok(())
        }
        BenchCmd::MsDeformAttn { backends, dtypes, case, form, repeat } => {
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
