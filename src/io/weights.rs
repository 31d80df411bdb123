//! A converted model file (`rlipv2 convert`), read tensor by tensor: the safetensors header is
//! parsed once, and each `get(name, shape)` reads just that tensor from disk after checking its
//! dtype, shape and byte range, so host memory holds the weights once and only those asked for.
//! The bytes come from a file on disk ([`WeightFile::open`]) or any [`ReadAt`] source
//! ([`WeightFile::from_source`]: the browser page reads the visitor's file through one).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Largest safetensors header read (the converted RLIPv2 file's is ≈ 120 KB).
const MAX_HEADER: u64 = 64 << 20;

#[derive(serde::Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

/// Random access to the bytes of a model file.
pub trait ReadAt: Send + Sync {
    /// Total length in bytes.
    fn size(&self) -> std::io::Result<u64>;
    /// Fills `buf` from byte `offset` (an error if the source ends first).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

impl ReadAt for File {
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        read_at(self, buf, offset)
    }
}

/// A model file read tensor by tensor (no whole-file copy): `get(name, shape)` with errors naming the tensor.
pub struct WeightFile {
    path: PathBuf,
    file: Box<dyn ReadAt>,
    data_start: u64,
    tensors: HashMap<String, Entry>,
    /// The file's `__metadata__` (configuration, args, source, label sets).
    pub metadata: HashMap<String, String>,
}

impl WeightFile {
    /// Opens a safetensors model file and checks its header against its size.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Self::from_source(path, Box::new(file))
    }

    /// A model file whose bytes `file` reads; `path` names it in errors.
    pub fn from_source(path: &Path, file: Box<dyn ReadAt>) -> Result<Self> {
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let fail = |reason: String| Error::Format { file: path.to_path_buf(), reason };
        let len = file.size().map_err(io)?;
        if len < 8 {
            return Err(fail(format!("not a safetensors file: {len} bytes")));
        }
        let mut head = [0u8; 8];
        file.read_at(&mut head, 0).map_err(io)?;
        let n = u64::from_le_bytes(head);
        if n > MAX_HEADER || n + 8 > len {
            return Err(fail(format!("not a safetensors file: header of {n} bytes in a {len}-byte file")));
        }
        let mut header = vec![0u8; n as usize];
        file.read_at(&mut header, 8).map_err(io)?;
        let super::header::Entries(raw) =
            serde_json::from_slice(&header).map_err(|e| fail(format!("bad safetensors header: {e}")))?;
        let mut metadata = HashMap::new();
        let mut tensors = HashMap::with_capacity(raw.len());
        let data_len = len - 8 - n;
        for (name, v) in raw {
            if name == "__metadata__" {
                metadata = serde_json::from_value(v).map_err(|e| fail(format!("bad safetensors metadata: {e}")))?;
                continue;
            }
            let e: Entry = serde_json::from_value(v).map_err(|e| fail(format!("tensor `{name}`: {e}")))?;
            if e.data_offsets.0 > e.data_offsets.1 || e.data_offsets.1 > data_len {
                return Err(fail(format!(
                    "tensor `{name}`: data offsets {:?} outside the {data_len} data bytes",
                    e.data_offsets
                )));
            }
            tensors.insert(name, e);
        }
        Ok(WeightFile { path: path.to_path_buf(), file, data_start: 8 + n, tensors, metadata })
    }

    /// Tensor count and total elements (parameters and baked tables).
    pub fn counts(&self) -> (usize, u64) {
        (self.tensors.len(), self.tensors.values().map(|e| e.shape.iter().product::<usize>() as u64).sum())
    }

    /// Whether the file holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The shape of `name`, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|e| e.shape.as_slice())
    }

    /// The f32 tensor `name`, which must have exactly `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let fail = |reason: String| Error::Format { file: self.path.clone(), reason };
        let e = self.tensors.get(name).ok_or_else(|| fail(format!("tensor `{name}` {shape:?} is missing")))?;
        if e.dtype != "F32" || e.shape != shape {
            return Err(fail(format!("tensor `{name}` is {} {:?}, expected F32 {shape:?}", e.dtype, e.shape)));
        }
        let n: usize = shape.iter().product();
        if e.data_offsets.1 - e.data_offsets.0 != 4 * n as u64 {
            return Err(fail(format!(
                "tensor `{name}`: {} data bytes for {n} f32 values",
                e.data_offsets.1 - e.data_offsets.0
            )));
        }
        let mut out = vec![0f32; n];
        self.file
            .read_at(bytemuck::cast_slice_mut(&mut out), self.data_start + e.data_offsets.0)
            .map_err(|source| Error::Io { path: self.path.clone(), source })?;
        Ok(out)
    }
}

#[cfg(unix)]
fn read_at(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, offset)
}

#[cfg(not(unix))]
fn read_at(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = f;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}
