//! One error type for the whole crate. Every variant carries the data a user needs to fix the
//! problem (which op, which tensor, what was expected, what was found).

use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure of the crate. Fields name what a user needs to fix it: `op` (the op or command),
/// `what` (the tensor, parameter or limit), `file`/`path` (the file read or written), `backend`,
/// `expected`/`got` (shape or dtype as written), `reason` (a sentence).
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields, documented above
pub enum Error {
    /// A tensor has the wrong shape, rank or size.
    #[error("{op}: tensor `{what}` has shape {got}, expected {expected}")]
    Shape { op: &'static str, what: String, expected: String, got: String },

    /// A dimension or value is outside what the op supports.
    #[error("{op}: {what}: {reason}")]
    Limit { op: &'static str, what: String, reason: String },

    /// A tensor has the wrong element type.
    #[error("{op}: tensor `{what}` has dtype {got}, expected {expected}")]
    DType { op: &'static str, what: String, expected: String, got: String },

    /// A tensor the op needs is not in the input file.
    #[error("{op}: tensor `{what}` is missing from {file}")]
    Missing { op: &'static str, what: String, file: PathBuf },

    /// The backend cannot run this op/dtype combination.
    #[error("{op}: not supported on backend `{backend}`: {reason}")]
    Unsupported { op: &'static str, backend: String, reason: String },

    /// A backend was asked for by name but cannot be used on this machine.
    #[error("backend `{backend}` is not available: {reason}")]
    BackendUnavailable { backend: String, reason: String },

    /// A backend name that does not exist.
    #[error("unknown backend `{0}` (expected one of: reference, cpu, wgpu, cubecl-wgpu, cubecl-cuda, auto)")]
    UnknownBackend(String),

    /// The device failed while running a kernel.
    #[error("{backend}: device error: {reason}")]
    Device { backend: String, reason: String },

    /// A safetensors file could not be parsed or written.
    #[error("{file}: {reason}")]
    Format { file: PathBuf, reason: String },

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl Error {
    pub(crate) fn shape(
        op: &'static str,
        what: impl Into<String>,
        expected: impl std::fmt::Debug,
        got: impl std::fmt::Debug,
    ) -> Self {
        Error::Shape { op, what: what.into(), expected: format!("{expected:?}"), got: format!("{got:?}") }
    }
    /// [`Error::Limit`]: `op` cannot take `what`, for `reason`.
    pub fn limit(op: &'static str, what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Limit { op, what: what.into(), reason: reason.into() }
    }
}
