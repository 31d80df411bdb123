//! `rlipv2 op …`: one op on inputs from safetensors files, for external harnesses.

use std::path::PathBuf;

use clap::Subcommand;

use rlipv2::backend::{self, Ops};
use rlipv2::problem::{DType, Gate};
use rlipv2::{bench, io, Result};

#[derive(Subcommand)]
pub enum OpCmd {
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
    #[command(name = "ms_deform_attn_backward")]
    /// The gradients of `ms_deform_attn`, official form and semantics (the CUDA op's col2im),
    /// deterministic. IN holds the forward's five tensors plus `grad_output` f32 [B,Q,M·D]; OUT
    /// gets `grad_value` f32 [B,S,M,D], `grad_sampling_locations` [B,Q,M,L,P,2] and
    /// `grad_attention_weights` [B,Q,M,L,P], the names and layouts of the official autograd
    /// function.
    ///
    /// Example: rlipv2 op ms_deform_attn_backward --backend cpu --input in.safetensors --output grads.safetensors
    MsDeformAttnBackward {
        /// reference | cpu | wgpu | cubecl-wgpu | cubecl-cuda | auto (backward: reference and cpu so far)
        #[arg(long, default_value = "auto")]
        backend: String,
        /// Storage type of value: f32, f16 or bf16 (accumulation and gradients are f32).
        #[arg(long, default_value = "f32")]
        dtype: DType,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        /// Also run N more times and print median and min time.
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
pub(crate) struct FusionArgs {
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

/// Runs one `op` subcommand.
pub fn run(op: OpCmd) -> Result<()> {
    match op {
        OpCmd::MsDeformAttn { backend, dtype, input, output, repeat } => {
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
        OpCmd::MsDeformAttnBackward { backend, dtype, input, output, repeat } => {
            let (file, grad) = io::read_ms_deform_attn_backward(&input)?;
            let (be, why) = backend::select(&backend)?;
            eprintln!("backend: {why}");
            let pr = &file.problem;
            let g = be.ms_deform_attn_backward(pr, &file.input(), &grad, dtype)?;
            if let Some(n) = repeat {
                let t =
                    bench::time_host(n, || be.ms_deform_attn_backward(pr, &file.input(), &grad, dtype).map(|_| ()))?;
                println!(
                    "ms_deform_attn_backward {} {}: median {:.3} ms, min {:.3} ms over {n} runs",
                    be.kind(),
                    dtype,
                    t.median_s * 1e3,
                    t.min_s * 1e3
                );
            }
            let [nv, ns, na] = rlipv2::problem::ms_deform_attn_backward::grad_names(pr.form);
            io::write_f32_tensors(
                &output,
                &[
                    (nv, pr.value_shape(), &g.value),
                    (ns, pr.locations_shape(), &g.sampling),
                    (na, pr.weights_shape(), &g.attention),
                ],
            )?;
            eprintln!("wrote `{nv}`, `{ns}`, `{na}` to {}", output.display());
            Ok(())
        }
        OpCmd::GatedCrossAttn { args, prefix } => {
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
        OpCmd::SparseFusion { args, fusion_prefix, lang_prefix, lang_heads } => {
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
    }
}
