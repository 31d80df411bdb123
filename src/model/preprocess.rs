//! Pre-processing (spec §5): the official eval transform `RandomResize([800], max_size=1333)`
//! (datasets/transforms.py:86-116: short side 800 unless the long side would pass 1333, sizes
//! truncated, Python's round-half-even), Pillow's bilinear resample, `ToTensor` and the ImageNet
//! `Normalize`, giving a `[3, H, W]` f32 tensor.
//!
//! The resample is Pillow's own algorithm (Pillow 9.x `Resample.c`, 8-bit path), so the pixels are
//! the official ones bit for bit: triangle filter widened by the downscale factor (antialiasing),
//! coefficients normalized per output pixel and rounded to 22-bit fixed point, a horizontal pass
//! then a vertical pass, each rounded and clamped to 8 bits. `fast_image_resize`'s bilinear
//! convolution was tried first: one 8-bit step off on 8 % of the pixels of an upscale.
/// An 8-bit RGB image, row-major, 3 bytes per pixel.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `[H,W,3]` bytes, row-major.
    pub data: Vec<u8>,
}

/// The short side the official evaluation resizes to.
pub const SHORT_SIDE: usize = 800;
/// The long side's upper bound.
pub const MAX_SIDE: usize = 1333;
/// ImageNet mean per channel (RGB).
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet standard deviation per channel (RGB).
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// `(height, width)` the official transform resizes a `width × height` image to.
pub fn target_size(width: usize, height: usize) -> (usize, usize) {
    let (w, h) = (width as f64, height as f64);
    let mut size = SHORT_SIDE as f64;
    let (min_o, max_o) = (w.min(h), w.max(h));
    if max_o / min_o * size > MAX_SIDE as f64 {
        size = (MAX_SIDE as f64 * min_o / max_o).round_ties_even();
    }
    if (w <= h && w == size) || (h <= w && h == size) {
        return (height, width);
    }
    if w < h {
        ((size * h / w) as usize, size as usize)
    } else {
        (size as usize, (size * w / h) as usize)
    }
}

/// A normalized `[3, H, W]` image and the original size.
pub struct Preprocessed {
    /// Height after resizing.
    pub height: usize,
    /// Width after resizing.
    pub width: usize,
    /// `[3,H,W]` normalized values.
    pub data: Vec<f32>,
    /// (height, width) of the original image.
    pub original: (usize, usize),
}

/// Resizes and normalizes `img` as the official eval transform does.
pub fn preprocess(img: &RgbImage) -> Preprocessed {
    let (oh, ow) = target_size(img.width, img.height);
    let resized = resize_bilinear(img, ow, oh);
    let plane = oh * ow;
    let mut data = vec![0f32; 3 * plane];
    for (p, px) in resized.chunks_exact(3).enumerate() {
        for c in 0..3 {
            data[c * plane + p] = (px[c] as f32 / 255.0 - MEAN[c]) / STD[c];
        }
    }
    Preprocessed { height: oh, width: ow, data, original: (img.height, img.width) }
}

/// Fixed-point precision of Pillow's 8-bit resample (`PRECISION_BITS = 32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// Per output pixel: first input index, and the fixed-point weights of the inputs it reads.
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support 1.0, widened when downscaling
    let triangle = |x: f64| {
        let x = x.abs();
        if x < 1.0 {
            1.0 - x
        } else {
            0.0
        }
    };
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize; // C casts truncate
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let w: Vec<f64> = (xmin..xmax).map(|x| triangle((x as f64 - center + 0.5) / filterscale)).collect();
            let total: f64 = w.iter().sum();
            let fixed = w
                .iter()
                .map(|&k| {
                    let k = if total != 0.0 { k / total } else { k };
                    let f = k * (1u64 << PRECISION_BITS) as f64;
                    (if k < 0.0 { -0.5 + f } else { 0.5 + f }) as i32
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `Image.resize((w, h), BILINEAR)` on 8-bit RGB: horizontal pass, then vertical.
pub fn resize_bilinear(img: &RgbImage, out_w: usize, out_h: usize) -> Vec<u8> {
    let (w, h) = (img.width, img.height);
    if (out_w, out_h) == (w, h) {
        return img.data.clone();
    }
    let round = 1i64 << (PRECISION_BITS - 1);
    // horizontal: [h, out_w]
    let horizontal = if out_w != w {
        let cx = coefficients(w, out_w);
        let mut out = vec![0u8; h * out_w * 3];
        for y in 0..h {
            let row = &img.data[y * w * 3..(y + 1) * w * 3];
            for (xx, (xmin, k)) in cx.iter().enumerate() {
                for c in 0..3 {
                    let acc =
                        k.iter().enumerate().fold(round, |a, (i, &kw)| a + row[(xmin + i) * 3 + c] as i64 * kw as i64);
                    out[(y * out_w + xx) * 3 + c] = clip8(acc);
                }
            }
        }
        out
    } else {
        img.data.clone()
    };
    if out_h == h {
        return horizontal;
    }
    let cy = coefficients(h, out_h);
    let mut out = vec![0u8; out_h * out_w * 3];
    for (yy, (ymin, k)) in cy.iter().enumerate() {
        for x in 0..out_w * 3 {
            let acc = k
                .iter()
                .enumerate()
                .fold(round, |a, (i, &kw)| a + horizontal[(ymin + i) * out_w * 3 + x] as i64 * kw as i64);
            out[yy * out_w * 3 + x] = clip8(acc);
        }
    }
    out
}
