//! Waiting for the device from synchronous code, and error scopes.
//!
//! Native: a wgpu future completes while we block in it (`pollster`), and `device.poll` runs the
//! callbacks of finished work. Browser (wasm32 + WebGPU): every answer of the GPU process
//! (an error scope, a mapped buffer, finished work) is a JS promise that settles only when the
//! page's event loop runs, which synchronous code never lets happen. The page therefore hands us
//! a function that suspends this WebAssembly stack until the event loop has turned once (JSPI,
//! `WebAssembly.Suspending`: see `web/`), and [`block_on`] polls between turns. Error scopes are
//! not waited for one by one there (a turn per bind group would dominate a graph's time): their
//! answers are collected and checked at the next read-back or wait, which every result passes
//! through, so an invalid command still fails the call that reads its output, with its label.

use std::future::Future;
use std::task::{Context, Poll};

use super::{device_err, WgpuBackend};
use crate::error::{Error, Result};

/// Blocks until `f` completes: `pollster` natively; on wasm32 by suspending to the page's event
/// loop between polls (errors if the page registered no [`set_event_loop_yield`], or after
/// [`crate::backend::gpu_timeout`]).
pub(crate) fn block_on<F: Future>(f: F) -> Result<F::Output> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        Ok(pollster::block_on(f))
    }
    #[cfg(target_arch = "wasm32")]
    {
        let turn = web::yield_fn()?;
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let start = web_time::Instant::now();
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return Ok(v);
            }
            if start.elapsed() > crate::backend::gpu_timeout() {
                return Err(device_err(format!(
                    "the browser's WebGPU did not answer within {:?}",
                    crate::backend::gpu_timeout()
                )));
            }
            turn();
        }
    }
}

/// Registers the function that suspends the WebAssembly stack until the page's event loop has
/// run once (a `WebAssembly.Suspending` import of the page; the call into the crate must come
/// through `WebAssembly.promising`). Without it, waiting for WebGPU is an error, not a hang.
#[cfg(target_arch = "wasm32")]
pub fn set_event_loop_yield(f: fn()) {
    web::set(f)
}

#[cfg(target_arch = "wasm32")]
mod web {
    use std::sync::Mutex;

    use crate::error::Result;

    static YIELD: Mutex<Option<fn()>> = Mutex::new(None);

    pub(super) fn set(f: fn()) {
        if let Ok(mut y) = YIELD.lock() {
            *y = Some(f);
        }
    }

    pub(super) fn yield_fn() -> Result<fn()> {
        YIELD.lock().ok().and_then(|y| *y).ok_or_else(|| {
            super::device_err(
                "waiting for WebGPU needs the page's event-loop yield (rlipv2::backend::wgpu::set_event_loop_yield)",
            )
        })
    }
}

/// A value a device callback delivers later (a mapped buffer, finished work): a future that is
/// ready once the callback has run.
pub(crate) struct Slot<T>(std::sync::Arc<std::sync::Mutex<Option<T>>>);

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Slot(self.0.clone())
    }
}

impl<T> Slot<T> {
    pub(crate) fn new() -> Self {
        Slot(Default::default())
    }
    pub(crate) fn set(&self, v: T) {
        if let Ok(mut s) = self.0.lock() {
            *s = Some(v);
        }
    }
    pub(crate) fn take(&self) -> Option<T> {
        self.0.lock().ok().and_then(|mut s| s.take())
    }
}

impl<T> Future for Slot<T> {
    type Output = T;
    fn poll(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<T> {
        match self.take() {
            Some(v) => Poll::Ready(v),
            None => Poll::Pending,
        }
    }
}

/// An error scope's answer still to come, and how to report an error in it.
#[cfg(target_arch = "wasm32")]
pub(crate) struct Deferred {
    answer: std::pin::Pin<Box<dyn Future<Output = Option<wgpu::Error>>>>,
    report: Box<dyn FnOnce(wgpu::Error) -> Error>,
}

// SAFETY: wasm32-unknown-unknown without atomics has one thread; nothing here crosses threads.
#[cfg(target_arch = "wasm32")]
unsafe impl Send for Deferred {}

impl WgpuBackend {
    /// Runs `f` inside an error scope of `filter`; an error it raised becomes `report(e)` — now
    /// (native), or at the next read-back or wait (browser, see the module docs).
    pub(crate) fn scoped<T>(
        &self,
        filter: wgpu::ErrorFilter,
        f: impl FnOnce() -> T,
        report: impl FnOnce(wgpu::Error) -> Error + 'static,
    ) -> Result<T> {
        let scope = self.device.push_error_scope(filter);
        let r = f();
        #[cfg(not(target_arch = "wasm32"))]
        {
            match block_on(scope.pop())? {
                Some(e) => Err(report(e)),
                None => Ok(r),
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let d = Deferred { answer: Box::pin(scope.pop()), report: Box::new(report) };
            self.deferred.lock().map_err(|_| device_err("error scopes poisoned"))?.push(d);
            Ok(r)
        }
    }

    /// The first error among the scopes still to be answered (browser; native checks each at
    /// once, so there is nothing to do).
    pub(crate) fn check_deferred(&self) -> Result<()> {
        #[cfg(target_arch = "wasm32")]
        {
            let pending = std::mem::take(&mut *self.deferred.lock().map_err(|_| device_err("error scopes poisoned"))?);
            let mut first = None;
            for d in pending {
                if let Some(e) = block_on(d.answer)? {
                    first.get_or_insert_with(|| (d.report)(e));
                }
            }
            if let Some(e) = first {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Waits until the device has finished everything submitted so far.
    pub(crate) fn wait_submitted(&self, idx: Option<wgpu::SubmissionIndex>) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.device
                .poll(wgpu::PollType::Wait { submission_index: idx, timeout: Some(crate::backend::gpu_timeout()) })
                .map_err(super::poll_err)?;
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = idx;
            let done = Slot::new();
            let d = done.clone();
            self.queue.on_submitted_work_done(move || d.set(()));
            block_on(done)?;
        }
        self.check_deferred()
    }

    /// Maps `staging` (a MAP_READ buffer whose copy was submitted as `idx`) and returns its bytes.
    pub(crate) fn map_read(&self, staging: &wgpu::Buffer, idx: Option<wgpu::SubmissionIndex>) -> Result<Vec<u8>> {
        let mapped = Slot::new();
        let m = mapped.clone();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| m.set(r));
        // natively the map callback runs inside the device wait; in the browser a promise settles
        #[cfg(not(target_arch = "wasm32"))]
        let r = {
            self.wait_submitted(idx)?;
            mapped.take().ok_or_else(|| device_err("the readback buffer was not mapped when the device finished"))?
        };
        #[cfg(target_arch = "wasm32")]
        let r = {
            let _ = idx;
            let r = block_on(mapped)?;
            self.check_deferred()?;
            r
        };
        r.map_err(device_err)?;
        let data = staging.slice(..).get_mapped_range().to_vec();
        staging.unmap();
        Ok(data)
    }
}
