//! Tensors kept where a backend computes, so that a graph can chain ops without a round trip to
//! the host: host memory for the host backends (shared, never copied), a device buffer for the
//! GPU ones. A device tensor belongs to the backend instance that made it; any other backend
//! refuses it with an error instead of reading a foreign buffer.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// A flat f32 tensor on a backend (its shape is the op problem's business, as for slices).
#[derive(Clone)]
pub struct Tensor {
    len: usize,
    repr: Repr,
}

#[derive(Clone)]
// a host-only build makes no device tensor
#[cfg_attr(not(any(feature = "wgpu", feature = "cubecl-wgpu", feature = "cuda")), allow(dead_code))]
enum Repr {
    /// Host memory, shared by clones (weights are bound to host backends without a copy).
    Host(Arc<Vec<f32>>),
    /// A device buffer of backend instance `owner` (see [`new_owner_id`]).
    Device { owner: u64, buf: Arc<dyn Any + Send + Sync> },
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.repr {
            Repr::Host(_) => write!(f, "Tensor(host, {} elements)", self.len),
            Repr::Device { owner, .. } => write!(f, "Tensor(device of backend #{owner}, {} elements)", self.len),
        }
    }
}

/// A fresh id for a backend instance that owns device tensors (never 0).
// a host-only build makes no device tensor
#[cfg_attr(not(any(feature = "wgpu", feature = "cubecl-wgpu", feature = "cuda")), allow(dead_code))]
pub(crate) fn new_owner_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Tensor {
    /// A host tensor holding `data`.
    pub fn host(data: Vec<f32>) -> Self {
        Tensor { len: data.len(), repr: Repr::Host(Arc::new(data)) }
    }

    /// `data` where `be` computes: kept as it is for a host backend, uploaded (and the host copy
    /// dropped) for a GPU one.
    pub fn on(be: &dyn super::Backend, what: &str, data: Vec<f32>) -> Result<Self> {
        let t = Tensor::host(data);
        if be.owner_id() == 0 {
            return Ok(t);
        }
        be.bind(what, &t)
    }

    /// The values of a tensor made by `be`, moved out where it is a host tensor, downloaded otherwise.
    pub fn into_vec<D: super::Device + ?Sized>(self, be: &D) -> Result<Vec<f32>> {
        match self.into_host() {
            Ok(v) => Ok(v),
            Err(t) => be.download(&t),
        }
    }

    /// Elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The values, where the tensor lives in host memory.
    pub fn as_host(&self) -> Option<&[f32]> {
        match &self.repr {
            Repr::Host(v) => Some(v),
            Repr::Device { .. } => None,
        }
    }

    /// The values, mutable, where the tensor lives in host memory (copied first if shared).
    pub fn as_host_mut(&mut self) -> Option<&mut Vec<f32>> {
        match &mut self.repr {
            Repr::Host(v) => Some(Arc::make_mut(v)),
            Repr::Device { .. } => None,
        }
    }

    /// The values moved out of a host tensor (copied if shared); `Err(self)` for a device tensor.
    pub fn into_host(self) -> std::result::Result<Vec<f32>, Self> {
        match self.repr {
            Repr::Host(v) => Ok(Arc::try_unwrap(v).unwrap_or_else(|v| v.as_ref().clone())),
            Repr::Device { .. } => Err(self),
        }
    }

    /// A device tensor of backend `owner` holding `buf` (`len` f32 elements).
    // a host-only build makes no device tensor
    #[cfg_attr(not(any(feature = "wgpu", feature = "cubecl-wgpu", feature = "cuda")), allow(dead_code))]
    pub(crate) fn device<B: Any + Send + Sync>(owner: u64, len: usize, buf: B) -> Self {
        Tensor { len, repr: Repr::Device { owner, buf: Arc::new(buf) } }
    }

    /// The device buffer, where this tensor belongs to backend `owner` and holds a `B`.
    // a host-only build makes no device tensor
    #[cfg_attr(not(any(feature = "wgpu", feature = "cubecl-wgpu", feature = "cuda")), allow(dead_code))]
    pub(crate) fn buffer<B: Any>(&self, owner: u64, backend: &str, what: &str) -> Result<&B> {
        match &self.repr {
            Repr::Device { owner: o, buf } if *o == owner => buf.downcast_ref::<B>().ok_or_else(|| Error::Device {
                backend: backend.into(),
                reason: format!("tensor `{what}` holds another kind of buffer"),
            }),
            Repr::Device { owner: o, .. } => Err(Error::Device {
                backend: backend.into(),
                reason: format!("tensor `{what}` lives on another backend instance (#{o}); download it first"),
            }),
            Repr::Host(_) => Err(Error::Device {
                backend: backend.into(),
                reason: format!("tensor `{what}` is in host memory; upload it first"),
            }),
        }
    }

    /// Backend instance owning the buffer (0: host memory).
    pub fn owner(&self) -> u64 {
        match &self.repr {
            Repr::Host(_) => 0,
            Repr::Device { owner, .. } => *owner,
        }
    }
}
