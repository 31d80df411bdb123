//! Annotated images for `rlipv2 detect`: each drawn detection gets its subject box, its object box
//! (one colour per detection), a line between their centres, and a caption
//! `#rank verb object score` in an 8×8 bitmap font (scaled ×2) on a dark band.

use std::path::Path;

use crate::error::{Error, Result};
use crate::model::labels::LabelSet;
use crate::model::postprocess::Detection;
use crate::model::preprocess::RgbImage;

const PALETTE: [[u8; 3]; 6] =
    [[230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240]];

struct Canvas<'a>(&'a mut RgbImage);

impl Canvas<'_> {
    fn put(&mut self, x: i64, y: i64, c: [u8; 3]) {
        let img = &mut *self.0;
        if x >= 0 && y >= 0 && (x as usize) < img.width && (y as usize) < img.height {
            let i = (y as usize * img.width + x as usize) * 3;
            img.data[i..i + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, b: &[f32; 4], c: [u8; 3], thick: i64) {
        let (x1, y1, x2, y2) = (b[0].round() as i64, b[1].round() as i64, b[2].round() as i64, b[3].round() as i64);
        for t in 0..thick {
            for x in x1..=x2 {
                self.put(x, y1 + t, c);
                self.put(x, y2 - t, c);
            }
            for y in y1..=y2 {
                self.put(x1 + t, y, c);
                self.put(x2 - t, y, c);
            }
        }
    }

    fn line(&mut self, (ax, ay): (f32, f32), (bx, by): (f32, f32), c: [u8; 3]) {
        let n = (bx - ax).abs().max((by - ay).abs()).ceil().max(1.0) as i64;
        for i in 0..=n {
            let t = i as f32 / n as f32;
            let (x, y) = ((ax + (bx - ax) * t).round() as i64, (ay + (by - ay) * t).round() as i64);
            for (dx, dy) in [(0, 0), (1, 0), (0, 1)] {
                self.put(x + dx, y + dy, c);
            }
        }
    }

    /// Text at (x, y) in the 8×8 font scaled ×`s`, on a dark band.
    fn text(&mut self, x: i64, y: i64, s: i64, msg: &str, c: [u8; 3]) {
        let w = msg.chars().count() as i64 * 8 * s;
        for yy in y - 1..y + 8 * s + 1 {
            for xx in x - 1..x + w + 1 {
                self.put(xx, yy, [20, 20, 20]);
            }
        }
        for (k, ch) in msg.chars().enumerate() {
            let glyph = font8x8::legacy::BASIC_LEGACY[if (ch as u32) < 128 { ch as usize } else { b'?' as usize }];
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits >> col & 1 == 1 {
                        for (dy, dx) in (0..s).flat_map(|dy| (0..s).map(move |dx| (dy, dx))) {
                            self.put(x + (k as i64 * 8 + col) * s + dx, y + row as i64 * s + dy, c);
                        }
                    }
                }
            }
        }
    }
}

/// `img` with the first `count` detections drawn.
pub fn annotate(img: &RgbImage, dets: &[Detection], labels: &LabelSet, count: usize) -> RgbImage {
    let mut out = img.clone();
    let mut canvas = Canvas(&mut out);
    let scale = if img.width.max(img.height) >= 600 { 2 } else { 1 };
    let thick = scale;
    for (rank, d) in dets.iter().take(count).enumerate().rev() {
        let c = PALETTE[rank % PALETTE.len()];
        canvas.rect(&d.subject_box, c, thick);
        canvas.rect(&d.object_box, c, thick);
        let centre = |b: &[f32; 4]| ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
        canvas.line(centre(&d.subject_box), centre(&d.object_box), c);
        let caption =
            format!("#{} {} {} {:.2}", rank + 1, labels.verbs[d.verb], labels.objects[d.object_label], d.score);
        let y = (d.subject_box[1].round() as i64 - 8 * scale - 2).max(0);
        canvas.text(d.subject_box[0].round().max(0.0) as i64 + 1, y, scale, &caption, c);
    }
    out
}

/// Writes `img` as a PNG (temporary file renamed into place).
pub fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    let tmp = path.with_extension(format!("png.tmp-{}", std::process::id()));
    let r = image::save_buffer_with_format(
        &tmp,
        &img.data,
        img.width as u32,
        img.height as u32,
        image::ColorType::Rgb8,
        image::ImageFormat::Png,
    );
    match r {
        Ok(()) => std::fs::rename(&tmp, path).map_err(|source| Error::Io { path: path.to_path_buf(), source }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(Error::Format { file: path.to_path_buf(), reason: format!("cannot write PNG: {e}") })
        }
    }
}
