//! The integration tests, one binary (each former `tests/*.rs` is a module here), so the suite
//! links against the crate, wgpu and cubecl once. Run one group with a filter:
//! `cargo test --release --test suite -- ms_deform_attn_backends::`.

#[macro_use]
mod common;

mod bf16;
mod browser;
mod cli_bench;
mod cli_dataset;
mod cli_detect;
mod cli_fusion;
mod cli_info;
mod cli_ms_deform_attn;
mod conv2d;
mod convert;
mod detect_graph;
mod device_faults;
mod downstream_api;
mod encoder;
mod eval_hico;
mod eval_vcoco;
mod examples_run;
mod fusion_backends;
mod fusion_reference;
mod hardening;
mod image_front;
mod ms_deform_attn_backends;
mod ms_deform_attn_backward;
mod ms_deform_attn_reference;
mod nonfinite_inputs;
mod postprocess;
mod preprocess;
mod resident_ops;
mod shaders_naga;
mod text_encoder;
mod unit;
mod window_attention;
