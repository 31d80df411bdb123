//! NumPy `.npy` files holding one little-endian float array in C order (`np.save` of a float64 or
//! float32 array), such as the datasets' valid-pair matrices (`corre_vcoco.npy`, `corre_hico.npy`).

use std::path::Path;

use crate::{Error, Result};

/// The array's shape and its values widened to f64.
pub fn read_f64(path: &Path) -> Result<(Vec<usize>, Vec<f64>)> {
    let bad = |reason: String| Error::Format { file: path.to_path_buf(), reason };
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (no \\x93NUMPY magic)".into()));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(bad(format!(".npy format version {v} is not supported"))),
    };
    let header = bytes
        .get(start..start + len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated .npy header".into()))?;
    let field = |name: &str| {
        let at = header.find(&format!("'{name}':")).ok_or_else(|| bad(format!("header has no `{name}`: {header}")))?;
        Ok::<&str, Error>(header[at + name.len() + 3..].trim_start())
    };
    let descr = field("descr")?;
    let width = if descr.starts_with("'<f8'") {
        8
    } else if descr.starts_with("'<f4'") {
        4
    } else {
        return Err(bad(format!(
            "dtype {} is not little-endian float32 or float64",
            descr.split(',').next().unwrap_or("")
        )));
    };
    if !field("fortran_order")?.starts_with("False") {
        return Err(bad("Fortran-ordered arrays are not supported".into()));
    }
    let shape_text = field("shape")?;
    let inner = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad(format!("bad shape in {header}")))?;
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad(format!("bad shape in {header}"))))
        .collect::<Result<_>>()?;
    let count: usize = shape.iter().product();
    let data = &bytes[start + len..];
    if data.len() != count * width {
        return Err(bad(format!("{} data bytes for shape {shape:?}, expected {}", data.len(), count * width)));
    }
    let values = if width == 8 {
        data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
    } else {
        data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64).collect()
    };
    Ok((shape, values))
}
