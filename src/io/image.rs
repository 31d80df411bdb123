//! Image files for detection: decoded to 8-bit RGB the way the official datasets load them
//! (`PIL.Image.open(p).convert('RGB')`: grayscale replicated, alpha dropped without compositing),
//! with the pixel count checked before any pixel is decoded.

use std::path::Path;

use crate::error::{Error, Result};
pub use crate::model::preprocess::RgbImage;

/// Images above this many pixels are refused (≈ 100 MP; the model sees at most 800×1333).
pub const MAX_PIXELS: u64 = 100_000_000;

/// Reads a PNG or JPEG as 8-bit RGB (gray, alpha, 16-bit and CMYK converted), refusing images over the pixel limit.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let open = || {
        image::ImageReader::open(path)
            .map_err(|source| Error::Io { path: path.to_path_buf(), source })?
            .with_guessed_format()
            .map_err(|source| Error::Io { path: path.to_path_buf(), source })
    };
    decode(path, open)
}

/// [`load_rgb`] for an image already in memory (`name` names it in errors): the browser page's
/// picked file.
pub fn decode_rgb(name: &str, bytes: &[u8]) -> Result<RgbImage> {
    let path = Path::new(name);
    let open = || {
        image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|source| Error::Io { path: path.to_path_buf(), source })
    };
    decode(path, open)
}

/// The header checked first (format, size, pixel limit), then the pixels decoded from a second
/// reader `open` gives.
fn decode<R: std::io::BufRead + std::io::Seek>(
    path: &Path,
    open: impl Fn() -> Result<image::ImageReader<R>>,
) -> Result<RgbImage> {
    let fail = |reason: String| Error::Format { file: path.to_path_buf(), reason };
    let reader = open()?;
    if reader.format().is_none() {
        return Err(fail("not an image this build reads (PNG or JPEG)".into()));
    }
    let mut reader = reader;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 8);
    reader.limits(limits);
    let (w, h) = reader.into_dimensions().map_err(|e| fail(format!("unreadable image header: {e}")))?;
    if w == 0 || h == 0 {
        return Err(fail(format!("image is {w}×{h}: empty")));
    }
    if w as u64 * h as u64 > MAX_PIXELS {
        return Err(fail(format!(
            "image is {w}×{h} = {} pixels, above the {MAX_PIXELS}-pixel limit",
            w as u64 * h as u64
        )));
    }
    let mut reader = open()?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 8);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| fail(format!("cannot decode: {e}")))?;
    let rgb = img.to_rgb8();
    Ok(RgbImage { width: rgb.width() as usize, height: rgb.height() as usize, data: rgb.into_raw() })
}
