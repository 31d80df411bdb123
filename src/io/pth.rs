//! PyTorch checkpoints (`torch.save`, zip format) read without executing pickle code: the zip's
//! `*/data.pkl` goes through [`super::pickle`] (allow-listed constructors only), tensors are
//! views into the zip's `*/data/<key>` storage entries, read on demand.
//!
//! Hostile files are bounded: entries must be stored (torch never compresses; compressed entries
//! are refused, so no zip bomb can inflate), declared sizes are checked against the file, and
//! every tensor view is checked against its storage before a byte is read.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::pickle::{self, Limits, StorageDtype, TensorRef, Value};
use crate::error::{Error, Result};

/// Largest `data.pkl` read (a full RLIPv2 checkpoint with optimizer state has ≈ 1 MB).
const MAX_PICKLE_BYTES: u64 = 256 << 20;

/// An open torch checkpoint: its pickled object tree and where each storage lives in the file.
pub struct Checkpoint {
    path: PathBuf,
    file: File,
    /// The unpickled top-level object.
    pub root: Value,
    /// storage key → (byte offset of the data in the file, byte length)
    storages: HashMap<String, (u64, u64)>,
}

fn format_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Format { file: path.to_path_buf(), reason: reason.into() }
}

impl Checkpoint {
    /// Opens a PyTorch zip checkpoint: reads the central directory and checks every entry's sizes.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut zip = zip::ZipArchive::new(file.try_clone().map_err(io)?).map_err(|e| {
            let mut head = [0u8; 2];
            let legacy = File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && head == [0x80, 0x02];
            if legacy {
                format_err(path, "a legacy (pre-1.6, non-zip) torch checkpoint: re-save it with torch ≥ 1.6 (`torch.save(torch.load(p), p2)`)")
            } else {
                format_err(path, format!("not a torch zip checkpoint: {e}"))
            }
        })?;
        let mut pkl_name = None;
        let mut byteorder = None;
        let mut storages = HashMap::new();
        for i in 0..zip.len() {
            let entry = zip.by_index_raw(i).map_err(|e| format_err(path, format!("zip entry {i}: {e}")))?;
            let name = entry.name().to_string();
            if entry.compression() != zip::CompressionMethod::Stored {
                return Err(format_err(
                    path,
                    format!(
                        "zip entry `{name}` is compressed ({:?}); torch writes stored entries only",
                        entry.compression()
                    ),
                ));
            }
            let size = entry.size();
            let Some(start) = entry.data_start() else {
                return Err(format_err(path, format!("zip entry `{name}`: no data offset")));
            };
            if entry.compressed_size() != size || start.checked_add(size).is_none_or(|end| end > file_len) {
                return Err(format_err(path, format!("zip entry `{name}` declares {size} bytes at offset {start}, beyond the file's {file_len} bytes")));
            }
            let mut parts = name.rsplitn(3, '/');
            let (last, mid) = (parts.next().unwrap_or(""), parts.next());
            if last == "data.pkl" && mid.is_some() {
                pkl_name = Some((name.clone(), start, size));
            } else if mid == Some("data") {
                if storages.insert(last.to_string(), (start, size)).is_some() {
                    return Err(format_err(path, format!("storage `{last}` appears twice in the zip")));
                }
            } else if last == "byteorder" {
                byteorder = Some((start, size.min(16)));
            }
        }
        let mut f = file.try_clone().map_err(io)?;
        if let Some((start, size)) = byteorder {
            let mut b = vec![0u8; size as usize];
            f.seek(SeekFrom::Start(start)).map_err(io)?;
            f.read_exact(&mut b).map_err(io)?;
            if b != b"little" {
                return Err(format_err(
                    path,
                    format!("byte order `{}`: only little-endian checkpoints are read", String::from_utf8_lossy(&b)),
                ));
            }
        }
        let Some((pkl, start, size)) = pkl_name else {
            return Err(format_err(path, "no `data.pkl` in the zip: not a torch checkpoint"));
        };
        if size > MAX_PICKLE_BYTES {
            return Err(format_err(
                path,
                format!("`{pkl}` is {size} bytes, more than the {MAX_PICKLE_BYTES}-byte limit"),
            ));
        }
        let mut data = vec![0u8; size as usize];
        f.seek(SeekFrom::Start(start)).map_err(io)?;
        f.read_exact(&mut data).map_err(io)?;
        let root = pickle::read(&data, Limits::default()).map_err(|e| format_err(path, format!("`{pkl}`: {e}")))?;
        Ok(Checkpoint { path: path.to_path_buf(), file, root, storages })
    }

    /// The checkpoint's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks that `t` lies inside its storage and returns (file offset, bytes per element,
    /// element count).
    pub fn locate(&self, name: &str, t: &TensorRef) -> Result<(u64, usize, u64)> {
        let err = |why: String| format_err(&self.path, format!("tensor `{name}`: {why}"));
        let Some(&(start, bytes)) = self.storages.get(&t.storage.key) else {
            return Err(err(format!("its storage `{}` is missing from the zip", t.storage.key)));
        };
        let es = t.storage.dtype.size() as u64;
        if t.storage.numel.checked_mul(es) != Some(bytes) {
            return Err(err(format!(
                "storage `{}` holds {bytes} bytes, but the pickle says {} × {es}",
                t.storage.key, t.storage.numel
            )));
        }
        let numel = t
            .shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| err(format!("shape {:?} overflows", t.shape)))?;
        if numel > 0 {
            // the furthest element the view touches
            let last = t
                .shape
                .iter()
                .zip(&t.stride)
                .try_fold(t.offset, |a, (&d, &s)| (d - 1).checked_mul(s).and_then(|x| a.checked_add(x)));
            if last.is_none_or(|l| l >= t.storage.numel) {
                return Err(err(format!(
                    "view (offset {}, shape {:?}, stride {:?}) reaches past its storage of {} elements",
                    t.offset, t.shape, t.stride, t.storage.numel
                )));
            }
        }
        Ok((start, es as usize, numel))
    }

    /// The tensor's elements in row-major order, as little-endian bytes of its dtype.
    pub fn read(&self, name: &str, t: &TensorRef) -> Result<Vec<u8>> {
        let (start, es, numel) = self.locate(name, t)?;
        let io = |source| Error::Io { path: self.path.clone(), source };
        let mut f = &self.file;
        let contiguous = {
            let mut expect = 1u64;
            let mut ok = true;
            for (&d, &s) in t.shape.iter().zip(&t.stride).rev() {
                if d != 1 && s != expect {
                    ok = false;
                }
                expect *= d;
            }
            ok
        };
        if contiguous {
            let mut out = vec![0u8; numel as usize * es];
            f.seek(SeekFrom::Start(start + t.offset * es as u64)).map_err(io)?;
            f.read_exact(&mut out).map_err(io)?;
            return Ok(out);
        }
        // A strided view (expanded, transposed, sliced): read the span it covers and gather.
        let last = t.shape.iter().zip(&t.stride).map(|(&d, &s)| (d.max(1) - 1) * s).sum::<u64>();
        let mut span = vec![0u8; ((last + 1) as usize) * es];
        if numel > 0 {
            f.seek(SeekFrom::Start(start + t.offset * es as u64)).map_err(io)?;
            f.read_exact(&mut span).map_err(io)?;
        }
        let mut out = Vec::with_capacity(numel as usize * es);
        let mut idx = vec![0u64; t.shape.len()];
        for _ in 0..numel {
            let off = idx.iter().zip(&t.stride).map(|(&i, &s)| i * s).sum::<u64>() as usize * es;
            out.extend_from_slice(&span[off..off + es]);
            for ax in (0..idx.len()).rev() {
                idx[ax] += 1;
                if idx[ax] < t.shape[ax] {
                    break;
                }
                idx[ax] = 0;
            }
        }
        Ok(out)
    }
}

/// The string-keyed tensors of a state dict, in file order.
pub fn state_dict(path: &Path, v: &Value) -> Result<Vec<(String, TensorRef)>> {
    let items = v.items().ok_or_else(|| format_err(path, format!("the state dict is a {}, not a dict", v.kind())))?;
    let mut out = Vec::with_capacity(items.len());
    for (k, v) in items {
        let Some(name) = k.as_str() else {
            return Err(format_err(path, format!("a state-dict key is a {}, not a string", k.kind())));
        };
        match v {
            Value::Tensor(t) => out.push((name.to_string(), (*t).clone())),
            other => {
                return Err(format_err(path, format!("state-dict entry `{name}` is a {}, not a tensor", other.kind())))
            }
        }
    }
    Ok(out)
}

/// safetensors dtype of a storage dtype.
pub fn safetensors_dtype(d: StorageDtype) -> safetensors::Dtype {
    use safetensors::Dtype as D;
    match d {
        StorageDtype::F64 => D::F64,
        StorageDtype::F32 => D::F32,
        StorageDtype::F16 => D::F16,
        StorageDtype::Bf16 => D::BF16,
        StorageDtype::I64 => D::I64,
        StorageDtype::I32 => D::I32,
        StorageDtype::I16 => D::I16,
        StorageDtype::I8 => D::I8,
        StorageDtype::U8 => D::U8,
        StorageDtype::Bool => D::BOOL,
    }
}
