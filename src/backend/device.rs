//! The device half of a backend: what it is, its counters, and its tensors (bind, download,
//! empty, slice, write). Ops live in the family traits of [`super::families`].

use super::{BackendKind, Tensor};
use crate::error::Result;

/// Proof that a public entry point of [`super::Ops`] validated an op's inputs. Only this crate
/// makes one, so a backend's op methods are never reached with unchecked input, and a backend
/// may index its inputs by the problem's dimensions without checking them again.
#[derive(Clone, Copy, Debug)]
pub struct Checked(pub(crate) ());

/// A device: host memory for the host backends, a GPU (or a software adapter) for the others.
pub trait Device {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;
    /// Adapter / device name and, where known, driver.
    fn device(&self) -> String;
    /// What `rlipv2 info` reports beyond the device name: limits that matter to the kernels and
    /// the kernel variant each op uses here, as (key, value) lines.
    fn details(&self) -> Vec<(&'static str, String)>;
    /// Kernel launches (compute dispatches) recorded so far, where the backend counts them.
    fn dispatch_count(&self) -> Option<u64>;
    /// Command batches submitted to the device queue so far, where the backend counts them.
    fn submission_count(&self) -> Option<u64>;
    /// Op outputs so far that took a dropped tensor's device buffer instead of a new allocation,
    /// where the backend recycles buffers.
    fn recycled_outputs(&self) -> Option<u64>;
    /// Bytes copied from the host to the device so far, where the backend counts them.
    fn uploaded_bytes(&self) -> Option<u64>;

    /// Instance id of this backend's device tensors; 0 where it computes on host tensors.
    fn owner_id(&self) -> u64;
    /// `t` where this backend computes: host backends share the host tensor (no copy), GPU
    /// backends upload it (the graph binds its weights once per backend).
    fn bind(&self, what: &str, t: &Tensor) -> Result<Tensor>;
    /// The values of `t`, waiting for the work that writes it.
    fn download(&self, t: &Tensor) -> Result<Vec<f32>>;
    /// Waits until every op queued so far has finished on the device (host backends compute
    /// when called, so for them it returns at once). Timed runs end with it.
    fn wait(&self) -> Result<()>;
    /// A tensor of `len` elements whose values the caller writes before reading them (zeros on
    /// the host backends).
    fn empty_tensor(&self, ok: Checked, len: usize) -> Result<Tensor>;
    /// Elements `start .. start + len` of `t` as a new tensor.
    fn slice_tensor(&self, ok: Checked, t: &Tensor, start: usize, len: usize) -> Result<Tensor>;
    /// Writes `src` over `dst` (a tensor of this backend) from element `at` on.
    fn write_tensor(&self, ok: Checked, dst: &mut Tensor, at: usize, src: &Tensor) -> Result<()>;
}
