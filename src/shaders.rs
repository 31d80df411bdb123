//! WGSL sources from `shaders/`, embedded from this one place.

/// `shaders/ms_deform_attn.wgsl`: entry points `main_official` and `main_fused`.
pub const MS_DEFORM_ATTN: &str = include_str!("../shaders/ms_deform_attn.wgsl");

/// `shaders/dense.wgsl`: entry points `gemm`, `layer_norm`, `softmax`, `attention`, `add`.
pub const DENSE: &str = include_str!("../shaders/dense.wgsl");

/// `shaders/sparse_fusion.wgsl`: entry points `gemm_jobs`, `attend`, `lang_attend`, `norm_rows`.
pub const SPARSE_FUSION: &str = include_str!("../shaders/sparse_fusion.wgsl");

/// `shaders/image.wgsl`: entry points `conv`, `max_pool`, `group_norm`, `to_tokens`.
pub const IMAGE: &str = include_str!("../shaders/image.wgsl");

/// Every shader with its file name (the naga test validates each for all override combinations).
pub const ALL: &[(&str, &str)] = &[
    ("ms_deform_attn.wgsl", MS_DEFORM_ATTN),
    ("dense.wgsl", DENSE),
    ("sparse_fusion.wgsl", SPARSE_FUSION),
    ("image.wgsl", IMAGE),
];
