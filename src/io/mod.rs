//! safetensors files of the op CLI: read with every tensor checked (name, dtype, rank, shape),
//! write atomically (a temporary file renamed into place, so a failed run leaves no output).

use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{Error, Result};

pub mod draw;
mod fusion;
mod header;
pub mod image;
mod ms_deform_attn;
pub mod npy;
pub mod pickle;
pub mod pth;
pub mod weights;

pub use fusion::{read_gated_cross_attn, read_sparse_fusion, GatedCrossAttnFile, SparseFusionFile};
pub use ms_deform_attn::{
    official_problem, read_ms_deform_attn, read_ms_deform_attn_backward, MsDeformAttnFile, OfficialShapes, MAX_SIDE,
};

/// The whole file, or an error naming it.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

/// A parsed safetensors file; every access names the op, the tensor and the file on error.
pub struct Reader<'a> {
    op: &'static str,
    file: PathBuf,
    st: SafeTensors<'a>,
}

impl<'a> Reader<'a> {
    /// Parses `bytes` (the contents of `path`) as safetensors for `op`.
    pub fn parse(op: &'static str, path: &Path, bytes: &'a [u8]) -> Result<Self> {
        header::check_unique(bytes).map_err(|reason| Error::Format { file: path.to_path_buf(), reason })?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Format {
            file: path.to_path_buf(),
            reason: format!("not a valid safetensors file: {e}"),
        })?;
        Ok(Reader { op, file: path.to_path_buf(), st })
    }

    /// Whether the file holds a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.st.tensor(name).is_ok()
    }

    /// The tensor `name`, checked for dtype and rank.
    pub fn tensor(&self, name: &str, dtype: Dtype, rank: usize) -> Result<TensorView<'a>> {
        let t = self.st.tensor(name).map_err(|_| Error::Missing {
            op: self.op,
            what: name.into(),
            file: self.file.clone(),
        })?;
        if t.dtype() != dtype {
            return Err(Error::DType {
                op: self.op,
                what: name.into(),
                expected: format!("{dtype:?}"),
                got: format!("{:?}", t.dtype()),
            });
        }
        if t.shape().len() != rank {
            return Err(Error::Shape {
                op: self.op,
                what: name.into(),
                expected: format!("rank {rank}"),
                got: format!("{:?} (rank {})", t.shape(), t.shape().len()),
            });
        }
        Ok(t)
    }

    /// An f32 tensor of rank `rank`: its shape and values.
    pub fn f32(&self, name: &str, rank: usize) -> Result<(Vec<usize>, Vec<f32>)> {
        let t = self.tensor(name, Dtype::F32, rank)?;
        Ok((t.shape().to_vec(), bytemuck::pod_collect_to_vec(t.data())))
    }

    /// An f32 tensor that must have exactly `shape`.
    pub fn f32_shaped(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (got, data) = self.f32(name, shape.len())?;
        expect_shape(self.op, name, &got, shape)?;
        Ok(data)
    }
}

fn expect_shape(op: &'static str, name: &str, got: &[usize], expected: &[usize]) -> Result<()> {
    if got != expected {
        return Err(Error::shape(op, name, expected, got));
    }
    Ok(())
}

/// Writes f32 tensors to `path` atomically: into a temporary file beside it, then renamed.
pub fn write_f32_tensors(path: &Path, tensors: &[(&str, Vec<usize>, &[f32])]) -> Result<()> {
    let views = tensors
        .iter()
        .map(|(name, shape, data)| {
            TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(data))
                .map(|v| (name.to_string(), v))
                .map_err(|e| Error::Format { file: path.to_path_buf(), reason: format!("tensor `{name}`: {e}") })
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::tensor::serialize(views, None)
        .map_err(|e| Error::Format { file: path.to_path_buf(), reason: e.to_string() })?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` atomically: into a temporary file beside it, then renamed, so a
/// failed write leaves no partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}
