//! `rlipv2` command line: parses, then hands each subcommand to its module in `cli/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rlipv2::Result;

mod cli;

#[derive(Parser)]
#[command(
    name = "rlipv2",
    version,
    about = "RLIPv2 kernels and inference on any GPU or CPU",
    after_help = "Examples:\n  rlipv2 info                                   # what runs here, and how\n  rlipv2 convert RLIP_PDA_v2_HICO_R50.pth m.safetensors --tokenizer tokenizer.json\n  rlipv2 detect --weights m.safetensors photo.jpg --out results/\n  rlipv2 eval hico --annotations annotations/ --detections results/\n  rlipv2 bench suite --backends all             # bench.json, bench.md, bench.svg\n\nRUST_LOG=info shows the backend choice and each op's kernel variant."
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
        op: cli::op::OpCmd,
    },
    /// Time ops side by side on several backends in one run: the whole suite (JSON, markdown,
    /// SVG chart) or one op as a table.
    ///
    /// Example: rlipv2 bench suite --backends all --out bench-out
    Bench {
        #[command(subcommand)]
        op: cli::bench::BenchCmd,
    },
    /// List the backends, whether each is usable here, and what `auto` picks.
    ///
    /// Example: RUST_LOG=info rlipv2 backends
    Backends,
    /// Version, features, and every backend: usable or why not, its device, the limits that
    /// matter to the kernels and the kernel variant each op uses there.
    ///
    /// Example: rlipv2 info --json; rlipv2 info --weights model.safetensors
    Info {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Describe this model file (written by `rlipv2 convert`) instead: which official model
        /// it is (variant, decoders, backbone, queries, head), its configuration, baked label
        /// sets, source checkpoint and size.
        #[arg(long)]
        weights: Option<std::path::PathBuf>,
    },
    /// Detect ⟨human, verb, object⟩ triplets in images with a converted model: one JSON file per
    /// image in --out (subject box, object box, object, verb, score; boxes in original pixels).
    ///
    /// Example: rlipv2 detect --weights rlipv2_hico_r50.safetensors photos/ --labels hico --out results/
    Detect(cli::detect::DetectArgs),
    /// Convert an official RLIPv2 checkpoint (.pth from `torch.save`) to safetensors, without
    /// Python and without running any pickle code. Checks every tensor against the schema of
    /// the checkpoint's configuration; records that configuration as metadata.
    ///
    /// Example: rlipv2 convert RLIP_PDA_v2_HICO_R50.pth rlipv2_hico_r50.safetensors --tokenizer roberta-base/tokenizer.json
    Convert(cli::convert::ConvertArgs),
    /// Evaluate detections written by `rlipv2 detect` against dataset annotations, computing
    /// what the official evaluator computes (HICO-DET mAP: Full, Rare, Non-rare; zero-shot splits).
    ///
    /// Example: rlipv2 eval hico --annotations hico_20160224_det/annotations --detections results/
    Eval {
        #[command(subcommand)]
        dataset: cli::eval::EvalCmd,
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
        Cmd::Detect(args) => cli::detect::run(args),
        Cmd::Convert(args) => cli::convert::run(args),
        Cmd::Eval { dataset } => cli::eval::run(dataset),
        Cmd::Op { op } => cli::op::run(op),
        Cmd::Bench { op } => cli::bench::run(op),
        Cmd::Info { json, weights: Some(w) } => cli::info::model(&w, json),
        Cmd::Info { json, weights: None } => cli::info::info(json),
        Cmd::Backends => cli::info::backends(),
    }
}
