//! The `sparse_fusion` round op by op on the device, as `backend::compose` spells it (LayerNorm,
//! adds, GEMMs, attention once per direction, gated residuals, then the language layer): 24
//! launches over separate buffers, inputs and weights uploaded once. It is the resident
//! side-by-side baseline of the fused round (`cubecl.rs`), timed the same way.

use cubecl::prelude::*;

use crate::backend::cubecl::{arg, catch, retag, Buf, CubeclBackend};
use crate::backend::Prepared;
use crate::error::Result;
use crate::kernels::dense;
use crate::problem::{Activation, BertLayerWeights, Gate, GatedCrossAttnWeights, Linear, Norm, SparseFusionProblem};

type Launch<'a> = Box<dyn Fn() + 'a>;

pub(super) struct UnfusedRound<'a, R: Runtime> {
    be: &'a CubeclBackend<R>,
    launches: Vec<(&'static str, Launch<'a>)>,
    out: Buf,
}

struct Builder<'a, R: Runtime> {
    be: &'a CubeclBackend<R>,
    launches: Vec<(&'static str, Launch<'a>)>,
}

const OP: &str = crate::problem::sparse_fusion::OP;

impl<'a, R: Runtime> Builder<'a, R> {
    fn upload(&self, what: &str, data: &[f32]) -> Result<Buf> {
        let data: &[f32] = if data.is_empty() { &[0.0] } else { data };
        let h = self.be.upload(what, bytemuck::cast_slice(data)).map_err(|e| retag(e, OP))?;
        Ok((h, data.len()))
    }

    fn empty(&self, len: usize) -> Result<Buf> {
        Ok((self.be.f32_out(OP, len)?, len.max(1)))
    }

    fn norm(&mut self, x: &Buf, n: &Norm, rows: usize, width: usize) -> Result<Buf> {
        let (g, b, y) =
            (self.upload("norm.weight", n.weight)?, self.upload("norm.bias", n.bias)?, self.empty(rows * width)?);
        let (be, x, out) = (self.be, x.clone(), y.clone());
        let cubes = be.row_cubes(rows);
        let eps = crate::problem::gated_cross_attn::LN_EPS;
        self.launches.push((
            "layer_norm",
            Box::new(move || unsafe {
                dense::layer_norm::launch_unchecked::<R>(
                    &be.client,
                    cubes.clone(),
                    CubeDim::new_1d(256),
                    arg(&x),
                    arg(&g),
                    arg(&b),
                    arg(&out),
                    rows as u32,
                    width as u32,
                    eps,
                )
            }),
        ));
        Ok(y)
    }

    fn linear(&mut self, x: &Buf, lin: &Linear, rows: usize, k: usize, n: usize, act: Activation) -> Result<Buf> {
        let (w, b, y) = (self.upload("weight", lin.weight)?, self.upload("bias", lin.bias)?, self.empty(rows * n)?);
        let (be, x, out) = (self.be, x.clone(), y.clone());
        let p = crate::problem::GemmProblem { m: rows, k, n, bias: true, act };
        self.launches.push((
            "gemm",
            Box::new(move || unsafe {
                crate::backend::cubecl::launch_gemm::<R>(
                    &be.client,
                    &p,
                    arg(&x),
                    arg(&w),
                    arg(&b),
                    arg(&b),
                    arg(&out),
                    true,
                    false,
                )
            }),
        ));
        Ok(y)
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &mut self,
        q: &Buf,
        k: &Buf,
        v: &Buf,
        mask: Option<&Buf>,
        batch: usize,
        heads: usize,
        q_len: usize,
        k_len: usize,
        head_dim: usize,
        scale: f32,
    ) -> Result<Buf> {
        let y = self.empty(q.1)?;
        let (be, q, k, v, out) = (self.be, q.clone(), k.clone(), v.clone(), y.clone());
        let has_mask = mask.is_some();
        let m = match mask {
            Some(m) => m.clone(),
            None => self.upload("mask", &[])?,
        };
        let cubes = be.row_cubes(batch * heads * q_len);
        self.launches.push((
            "attention",
            Box::new(move || unsafe {
                dense::attention::launch_unchecked::<R>(
                    &be.client,
                    cubes.clone(),
                    CubeDim::new_1d(256),
                    arg(&q),
                    arg(&k),
                    arg(&v),
                    arg(&m),
                    arg(&out),
                    batch as u32,
                    heads as u32,
                    q_len as u32,
                    k_len as u32,
                    head_dim as u32,
                    scale,
                    has_mask,
                )
            }),
        ));
        Ok(y)
    }

    fn add(&mut self, a: &Buf, b: &Buf) -> Result<Buf> {
        let y = self.empty(a.1)?;
        let (be, a, b, out) = (self.be, a.clone(), b.clone(), y.clone());
        let cubes = be.row_cubes(a.1.div_ceil(256));
        self.launches.push((
            "add",
            Box::new(move || unsafe {
                dense::add::launch_unchecked::<R>(
                    &be.client,
                    cubes.clone(),
                    CubeDim::new_1d(256),
                    arg(&a),
                    arg(&b),
                    arg(&out),
                    a.1 as u32,
                    false,
                    0,
                )
            }),
        ));
        Ok(y)
    }

    fn gate(&mut self, x: &Buf, d: &Buf, gamma: &[f32], gate: Gate, width: usize) -> Result<Buf> {
        let (g, y) = (self.upload("gamma", gamma)?, self.empty(x.1)?);
        let (be, x, d, out) = (self.be, x.clone(), d.clone(), y.clone());
        let cubes = be.row_cubes(x.1.div_ceil(256));
        let gate = match gate {
            Gate::VXAc => 0,
            Gate::Glip => 1,
            Gate::XGating => 2,
        };
        self.launches.push((
            "gated residual",
            Box::new(move || unsafe {
                dense::gated_residual::launch_unchecked::<R>(
                    &be.client,
                    cubes.clone(),
                    CubeDim::new_1d(256),
                    arg(&x),
                    arg(&d),
                    arg(&g),
                    arg(&out),
                    x.1 as u32,
                    width as u32,
                    gate,
                )
            }),
        ));
        Ok(y)
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn prepare<'a, R: Runtime>(
    be: &'a CubeclBackend<R>,
    p: &SparseFusionProblem,
    memory: &[f32],
    pos: &[f32],
    lang: &[f32],
    mask: Option<&[f32]>,
    fw: &GatedCrossAttnWeights,
    bw: &BertLayerWeights,
) -> Result<UnfusedRound<'a, R>> {
    let f = &p.fusion;
    let (rv, rl, cv, cl, e) = (f.batch * f.nv, f.batch * f.t, f.v_dim, f.l_dim, f.embed);
    let mut g = Builder { be, launches: Vec::new() };
    let v = g.upload("memory (last level)", &p.gather_level(memory))?;
    let vp = g.upload("pos (last level)", &p.gather_level(pos))?;
    let l = g.upload("lang", lang)?;
    // gated_cross_attn, as compose::gated_cross_attn
    let vh = g.norm(&v, &fw.layer_norm_v, rv, cv)?;
    let lh = g.norm(&l, &fw.layer_norm_l, rl, cl)?;
    let qin = g.add(&vh, &vp)?;
    let q = g.linear(&qin, &fw.v_proj, rv, cv, e, Activation::None)?;
    let k = g.linear(&lh, &fw.l_proj, rl, cl, e, Activation::None)?;
    let vv = g.linear(&vh, &fw.values_v_proj, rv, cv, e, Activation::None)?;
    let vl = g.linear(&lh, &fw.values_l_proj, rl, cl, e, Activation::None)?;
    let out_v = g.attention(&q, &k, &vl, None, f.batch, f.heads, f.nv, f.t, f.head_dim(), f.scale())?;
    let out_l = g.attention(&k, &q, &vv, None, f.batch, f.heads, f.t, f.nv, f.head_dim(), f.scale())?;
    let dv = g.linear(&out_v, &fw.out_v_proj, rv, e, cv, Activation::None)?;
    let dl = g.linear(&out_l, &fw.out_l_proj, rl, e, cl, Activation::None)?;
    g.gate(&vh, &dv, fw.gamma_v, f.gate, cv)?;
    let l_new = g.gate(&lh, &dl, fw.gamma_l, f.gate, cl)?;
    // the language layer, as compose::bert_layer
    let lp = &p.lang;
    let (rows, h) = (lp.batch * lp.t, lp.hidden);
    let lq = g.linear(&l_new, &bw.query, rows, h, h, Activation::None)?;
    let lk = g.linear(&l_new, &bw.key, rows, h, h, Activation::None)?;
    let lv = g.linear(&l_new, &bw.value, rows, h, h, Activation::None)?;
    let additive = match mask {
        Some(m) => Some(g.upload("mask", &m.iter().map(|&x| (1.0 - x) * -10000.0).collect::<Vec<f32>>())?),
        None => None,
    };
    let ctx = g.attention(
        &lq,
        &lk,
        &lv,
        additive.as_ref(),
        lp.batch,
        lp.heads,
        lp.t,
        lp.t,
        lp.head_dim(),
        (lp.head_dim() as f32).powf(-0.5),
    )?;
    let ao = g.linear(&ctx, &bw.attn_out, rows, h, h, Activation::None)?;
    let s1 = g.add(&ao, &l_new)?;
    let a = g.norm(&s1, &bw.attn_norm, rows, h)?;
    let inter = g.linear(&a, &bw.intermediate, rows, h, lp.ffn, Activation::Gelu)?;
    let o = g.linear(&inter, &bw.output, rows, lp.ffn, h, Activation::None)?;
    let s2 = g.add(&o, &a)?;
    let out = g.norm(&s2, &bw.out_norm, rows, h)?;
    Ok(UnfusedRound { be, launches: g.launches, out })
}

impl<R: Runtime> UnfusedRound<'_, R> {
    fn launch(&self, i: usize) -> Result<()> {
        catch("launch", self.be.kind, &self.launches[i].1)?;
        self.be.count_launch();
        Ok(())
    }
}

impl<R: Runtime> Prepared for UnfusedRound<'_, R> {
    fn enqueue(&mut self) -> Result<()> {
        (0..self.launches.len()).try_for_each(|i| self.launch(i))
    }

    fn wait(&mut self) -> Result<()> {
        self.be.sync(OP)
    }

    fn output(&mut self) -> Result<Vec<f32>> {
        let bytes = self.be.read_bytes(OP, self.out.0.clone())?;
        Ok(bytemuck::pod_collect_to_vec(&bytes[..self.out.1 * 4]))
    }

    fn stages(&self) -> Vec<&'static str> {
        self.launches.iter().map(|(name, _)| *name).collect()
    }

    fn enqueue_stage(&mut self, i: usize) -> Result<()> {
        self.launch(i)
    }
}
