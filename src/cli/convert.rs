//! `rlipv2 convert`: an official checkpoint to safetensors, with progress.

use std::path::PathBuf;

use rlipv2::Result;

/// `rlipv2 convert` (see its help).
#[derive(clap::Args)]
pub struct ConvertArgs {
    /// The official checkpoint (a dict with `model` and `args`, as main.py saves it).
    pub checkpoint: PathBuf,
    /// The safetensors file to write (written to a temporary name, renamed when complete).
    pub output: PathBuf,
    /// A RoBERTa `tokenizer.json` (the `roberta-base` one the official code uses): also bake
    /// the label embeddings of the built-in label sets (hico, vcoco) into the file, so that
    /// detection with them needs no tokenizer and no text-encoder run.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

/// Converts `args.checkpoint`.
pub fn run(args: ConvertArgs) -> Result<()> {
    let ConvertArgs { checkpoint, output, tokenizer } = args;
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
