//! Device buffers of the wgpu backend's tensors, recycled: when the last handle of a tensor
//! drops, its buffer goes back to the backend's pool, and the next output of the same byte size
//! takes it instead of allocating. A graph allocates the same sizes layer after layer and image
//! after image, so after the first layer almost every output is a recycled buffer: no allocator
//! call, and no zero-fill (wgpu clears every fresh buffer before a shader first touches it; an
//! encoder FFN's hidden layer is 134 MB).
//!
//! Reuse is safe while earlier recorded work still reads or writes the buffer: wgpu orders the
//! passes that use one buffer with barriers, in one command encoder and across submissions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Bytes of idle buffers a pool keeps; a buffer dropped beyond that is freed.
const MAX_IDLE_BYTES: u64 = 512 << 20;

/// Idle tensor buffers by byte size.
#[derive(Default)]
pub(crate) struct BufferPool {
    idle: Mutex<Idle>,
    /// Outputs served from the pool so far.
    reused: AtomicU64,
}

#[derive(Default)]
struct Idle {
    by_size: HashMap<u64, Vec<wgpu::Buffer>>,
    bytes: u64,
}

/// A tensor's device buffer; returned to its pool when the tensor's last handle drops.
pub(crate) struct PooledBuffer {
    pub buf: wgpu::Buffer,
    pool: Weak<BufferPool>,
}

impl PooledBuffer {
    /// `buf`, to be returned to `pool` (`None`: freed on drop, e.g. a bound weight).
    pub fn new(buf: wgpu::Buffer, pool: Option<&Arc<BufferPool>>) -> Self {
        PooledBuffer { buf, pool: pool.map_or_else(Weak::new, Arc::downgrade) }
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.put(self.buf.clone());
        }
    }
}

impl BufferPool {
    /// An idle buffer of exactly `bytes`, if one is kept.
    pub fn take(&self, bytes: u64) -> Option<wgpu::Buffer> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let buf = idle.by_size.get_mut(&bytes)?.pop()?;
        idle.bytes -= bytes;
        self.reused.fetch_add(1, Ordering::Relaxed);
        Some(buf)
    }

    pub(crate) fn put(&self, buf: wgpu::Buffer) {
        let bytes = buf.size();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.bytes + bytes > MAX_IDLE_BYTES {
            return;
        }
        idle.bytes += bytes;
        idle.by_size.entry(bytes).or_default().push(buf);
    }

    /// Outputs served from the pool so far.
    pub fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }
}
