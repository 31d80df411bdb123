//! The uniform of `shaders/image.wgsl`, the module of the image front's ops (`ops::conv2d` and
//! `ops::image` launch it).

/// Mirrors `P` in `shaders/image.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ImageParams {
    pub(crate) in_c: u32,
    pub(crate) h: u32,
    pub(crate) w: u32,
    pub(crate) out_c: u32,
    pub(crate) kh: u32,
    pub(crate) kw: u32,
    pub(crate) stride: u32,
    pub(crate) pad: u32,
    pub(crate) out_h: u32,
    pub(crate) out_w: u32,
    pub(crate) flags: u32,
    pub(crate) grid_x: u32,
    pub(crate) groups: u32,
    pub(crate) row0: u32,
    pub(crate) total: u32,
    pub(crate) eps: f32,
}
