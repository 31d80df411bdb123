//! Checked weight access by name and shape under a prefix, as the graph modules load their
//! weights: `vars.pp("transformer.encoder.layers.3").tensor("linear1.weight", &[2048, 256])`.
//! The source (a model file, or a test's formula) checks the shape; its error names the full
//! state-dict name, so a missing or misshapen tensor says which one it is.

use std::fmt::Display;

use crate::backend::Tensor;
use crate::error::Result;

/// Where weights come from: `(full name, expected shape) → values`.
pub type Source<'a> = dyn Fn(&str, &[usize]) -> Result<Vec<f32>> + 'a;

/// A prefix into a weight source (candle's `VarBuilder` idea, on our loader).
#[derive(Clone)]
pub struct Vars<'a> {
    source: &'a Source<'a>,
    prefix: String,
}

impl<'a> Vars<'a> {
    /// The source's root (no prefix).
    pub fn new(source: &'a Source<'a>) -> Self {
        Vars { source, prefix: String::new() }
    }

    /// The same source under `prefix.sub` (`sub` alone at the root).
    pub fn pp(&self, sub: impl Display) -> Vars<'a> {
        Vars { source: self.source, prefix: self.path(&sub.to_string()) }
    }

    /// The full name of `name` here.
    pub fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// The values of `name`, which must have `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        (self.source)(&self.path(name), shape)
    }

    /// [`Vars::get`] as a host tensor.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        Ok(Tensor::host(self.get(name, shape)?))
    }
}
