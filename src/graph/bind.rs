//! Weights bound to the backend instance that ran a graph part last: bound on first use (host
//! backends share the loaded tensors, GPU backends upload them), kept until another backend
//! instance runs it.

use std::sync::{Arc, Mutex};

use crate::backend::{Backend, Tensor};
use crate::error::Result;

/// A graph part's weights as one backend instance holds them.
pub(crate) struct Binding<T> {
    slot: Mutex<Option<(u64, Arc<T>)>>,
}

impl<T> Default for Binding<T> {
    fn default() -> Self {
        Binding { slot: Mutex::new(None) }
    }
}

impl<T> Binding<T> {
    /// The weights on `be`, made by `bind` the first time this backend instance asks.
    pub(crate) fn get(&self, be: &dyn Backend, bind: impl FnOnce() -> Result<T>) -> Result<Arc<T>> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((owner, b)) = slot.as_ref() {
            if *owner == be.owner_id() {
                return Ok(b.clone());
            }
        }
        *slot = None; // another backend's buffers go before this one's are made
        let b = Arc::new(bind()?);
        *slot = Some((be.owner_id(), b.clone()));
        Ok(b)
    }
}

/// `t` moved out of `slot` onto `be` (uploaded if it lives elsewhere).
pub(crate) fn take_on(be: &dyn Backend, what: &str, slot: &mut Tensor) -> Result<Tensor> {
    let t = std::mem::replace(slot, Tensor::host(Vec::new()));
    if t.owner() == be.owner_id() {
        return Ok(t);
    }
    be.bind(what, &t)
}
