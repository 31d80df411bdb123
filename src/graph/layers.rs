//! The graph's weighted layers, loaded by name through [`Vars`] and bound to the backend that
//! runs them on first use (host backends share the loaded tensors, GPU backends upload them once).

use super::bind::Binding;
use super::vars::Vars;
use crate::backend::{Backend, Ops, Tensor};
use crate::error::Result;
use crate::problem::{Activation, GemmProblem, LayerNormProblem};

/// A linear layer: `weight [out, in]`, `bias [out]`.
pub(crate) struct Lin {
    pub(crate) inp: usize,
    pub(crate) out: usize,
    /// Full names of the weight and the bias, for errors.
    names: [String; 2],
    pub(crate) w: Tensor,
    pub(crate) b: Tensor,
    bound: Binding<(Tensor, Tensor)>,
}

impl Lin {
    /// `weight` and `bias` under `vars`.
    pub(crate) fn load(vars: &Vars, out: usize, inp: usize) -> Result<Self> {
        let names = [vars.path("weight"), vars.path("bias")];
        Ok(Lin::new(names, inp, out, vars.get("weight", &[out, inp])?, vars.get("bias", &[out])?))
    }

    /// A layer from values already in hand (`names` of weight and bias for errors).
    pub(crate) fn new(names: [String; 2], inp: usize, out: usize, w: Vec<f32>, b: Vec<f32>) -> Self {
        Lin { inp, out, names, w: Tensor::host(w), b: Tensor::host(b), bound: Binding::default() }
    }

    /// `act(x [n, in]·Wᵀ + b)` where `be` computes.
    pub(crate) fn run_t(&self, be: &dyn Backend, x: &Tensor, act: Activation) -> Result<Tensor> {
        self.run_res(be, x, act, None)
    }

    /// `act(x·Wᵀ + b) + residual`.
    pub(crate) fn run_res(
        &self,
        be: &dyn Backend,
        x: &Tensor,
        act: Activation,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let [wn, bn] = &self.names;
        let wb = self.bound.get(be, || Ok((be.bind(wn, &self.w)?, be.bind(bn, &self.b)?)))?;
        let p = GemmProblem::linear(x.len() / self.inp, self.inp, self.out).with_act(act);
        be.gemm_t(&p, x, &wb.0, Some(&wb.1), residual)
    }
}

/// An MLP with ReLU between its layers (`layers.{i}`).
pub(crate) struct Mlp(Vec<Lin>);

impl Mlp {
    /// Layers `dims[i] → dims[i + 1]` under `vars.layers.{i}`.
    pub(crate) fn load(vars: &Vars, dims: &[usize]) -> Result<Self> {
        (0..dims.len() - 1)
            .map(|i| Lin::load(&vars.pp("layers").pp(i), dims[i + 1], dims[i]))
            .collect::<Result<_>>()
            .map(Mlp)
    }

    pub(crate) fn run_t(&self, be: &dyn Backend, x: &Tensor) -> Result<Tensor> {
        let mut y = x.clone();
        for (i, l) in self.0.iter().enumerate() {
            y = l.run_t(be, &y, if i + 1 < self.0.len() { Activation::Relu } else { Activation::None })?;
        }
        Ok(y)
    }
}

/// A LayerNorm over `width` channels: `weight`, `bias`.
pub(crate) struct Norm {
    width: usize,
    eps: f32,
    /// Full names of the weight and the bias, for errors.
    names: [String; 2],
    gamma: Tensor,
    beta: Tensor,
    bound: Binding<(Tensor, Tensor)>,
}

impl Norm {
    /// `weight` and `bias [width]` under `vars`.
    pub(crate) fn load(vars: &Vars, width: usize, eps: f32) -> Result<Self> {
        Ok(Norm {
            width,
            eps,
            names: [vars.path("weight"), vars.path("bias")],
            gamma: vars.tensor("weight", &[width])?,
            beta: vars.tensor("bias", &[width])?,
            bound: Binding::default(),
        })
    }

    /// LayerNorm of each `width`-wide row of `x`.
    pub(crate) fn run_t(&self, be: &dyn Backend, x: &Tensor) -> Result<Tensor> {
        let [wn, bn] = &self.names;
        let gb = self.bound.get(be, || Ok((be.bind(wn, &self.gamma)?, be.bind(bn, &self.beta)?)))?;
        be.layer_norm_t(
            &LayerNormProblem { rows: x.len() / self.width, width: self.width, eps: self.eps },
            x,
            &gb.0,
            &gb.1,
        )
    }
}
