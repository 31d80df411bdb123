//! The plan of one fused ALIF round, shared by the wgpu (`shaders/sparse_fusion.wgsl`) and cubecl
//! (`kernels/sparse_fusion.rs`) kernels: one arena holding inputs, weights and every
//! intermediate at element offsets, a parameter block per launch, and the launch list —
//! `gated_cross_attn` in 3 launches, a whole `sparse_fusion` round in 8.
//!
//! The weights come first in the arena, so their offsets do not depend on the token counts: a
//! resident round uploads them once ([`sparse_fusion_weights`]) and lays out only the inputs and
//! intermediates per call after them ([`sparse_fusion_layout`]); the host-to-host entry points
//! plan weights and inputs into one arena. Image rows are the last level only (tokens = Nv,
//! start = 0), copied in from and back to the caller's `[B,S,C]` buffer.

use super::fusion_layout::*;
use crate::error::{Error, Result};
use crate::problem::{
    BertLayerProblem, BertLayerWeights, Gate, GatedCrossAttnProblem, GatedCrossAttnWeights, SparseFusionProblem,
};

/// One GEMM of a grouped launch (`Job` in the shaders).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Job {
    pub a: u32,
    pub w: u32,
    pub bias: u32,
    pub out: u32,
    pub rows: u32,
    pub k: u32,
    pub n: u32,
    pub tile0: u32,
    pub ln_w: u32,
    pub ln_b: u32,
    pub pos: u32,
    pub flags: u32,
    pub stat: u32,
    pub gamma: u32,
    pub scale: f32,
    pub res: u32,
}

/// The parameter block of a launch (`P` in the WGSL shader; read as u32 words by the cubecl kernels).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct FusionParams {
    pub batch: u32,
    pub nv: u32,
    pub t: u32,
    pub e: u32,
    pub heads: u32,
    pub dh: u32,
    pub tokens: u32,
    pub start: u32,
    pub gate: u32,
    pub grid_x: u32,
    pub njobs: u32,
    pub total: u32,
    pub lh: u32,
    pub lheads: u32,
    pub ldh: u32,
    pub lffn: u32,
    pub lscale: f32,
    pub has_mask: u32,
    pub eps: f32,
    pub _pad: u32,
    pub off: [u32; 32],
    pub jobs: [Job; 4],
}

/// Output tile edge of `gemm_jobs`.
pub(crate) const GEMM_TILE: usize = 64;

/// Query rows per `attend` workgroup.
const ATTEND_ROWS: usize = 4;

/// Kernel limits: keys staged per query row, head width, language row width.
const MAX_KEYS: usize = 1024;
const MAX_HEAD_DIM: usize = 256;
const MAX_LANG_WIDTH: usize = 1024;

/// Host image of the arena buffer from element `.1` on: tensors appended at element offsets
/// (`.1` = 0: the whole arena; otherwise the part after weights already on the device).
#[derive(Default)]
pub(crate) struct Arena(pub Vec<f32>, pub u32);

impl Arena {
    fn put(&mut self, x: &[f32]) -> u32 {
        let o = self.1 + self.0.len() as u32;
        self.0.extend_from_slice(x);
        o
    }
    fn zeros(&mut self, n: usize) -> u32 {
        let o = self.1 + self.0.len() as u32;
        self.0.resize(self.0.len() + n, 0.0);
        o
    }
}

/// The four kernels of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kernel {
    GemmJobs,
    Attend,
    LangAttend,
    NormRows,
}

impl Kernel {
    /// The WGSL entry point.
    pub(crate) fn entry(self) -> &'static str {
        match self {
            Kernel::GemmJobs => "gemm_jobs",
            Kernel::Attend => "attend",
            Kernel::LangAttend => "lang_attend",
            Kernel::NormRows => "norm_rows",
        }
    }
}

/// One launch: its kernel, its grouped jobs (GEMM launches) and how many workgroups it needs.
pub(crate) struct Launch {
    /// What the launch computes (the per-launch profile's column).
    pub label: &'static str,
    pub kernel: Kernel,
    pub jobs: Vec<Job>,
    pub items: usize,
}

fn gemm_launch(label: &'static str, mut jobs: Vec<Job>) -> Launch {
    let mut tiles = 0;
    for j in &mut jobs {
        j.tile0 = tiles as u32;
        tiles += (j.rows as usize).div_ceil(GEMM_TILE) * (j.n as usize).div_ceil(GEMM_TILE);
    }
    Launch { label, kernel: Kernel::GemmJobs, jobs, items: tiles }
}

/// Offsets of a block's weights in the arena, in its weight-name order.
fn put_weights<'a>(arena: &mut Arena, tensors: impl IntoIterator<Item = &'a [f32]>) -> Vec<u32> {
    tensors.into_iter().map(|t| arena.put(t)).collect()
}

/// Where a round's weights sit at the start of the arena.
#[derive(Clone, Debug)]
pub(crate) struct WeightOffsets {
    /// Fusion block, `GatedCrossAttnProblem::weight_shapes` order.
    fo: Vec<u32>,
    /// Language layer, `BertLayerProblem::weight_shapes` order, and its attention-output
    /// weight transposed (empty / 0 for `gated_cross_attn`).
    bo: Vec<u32>,
    wo_t: u32,
    /// Elements the weights take.
    pub len: u32,
}

/// The weights of a round (the language layer's with `lang`) as the head of an arena.
fn weights(
    p: &GatedCrossAttnProblem,
    fw: &GatedCrossAttnWeights,
    lang: Option<(&BertLayerProblem, &BertLayerWeights)>,
) -> (Arena, WeightOffsets) {
    let mut a = Arena::default();
    let fo = put_weights(&mut a, fw.tensors(p).into_iter().map(|(_, _, d)| d));
    let (mut bo, mut wo_t) = (Vec::new(), 0);
    if let Some((lp, bw)) = lang {
        bo = put_weights(&mut a, bw.tensors(lp).into_iter().map(|(_, _, d)| d));
        // the row kernel reads this weight column-contiguous: stored transposed
        wo_t = a.put(&transpose(bw.attn_out.weight, lp.hidden, lp.hidden));
    }
    let len = a.0.len() as u32;
    (a, WeightOffsets { fo, bo, wo_t, len })
}

/// A `sparse_fusion` round's weights for a resident round: the arena's head, uploaded once.
pub(crate) fn sparse_fusion_weights(
    p: &SparseFusionProblem,
    fw: &GatedCrossAttnWeights,
    bw: &BertLayerWeights,
) -> (Vec<f32>, WeightOffsets) {
    let (a, w) = weights(&p.fusion, fw, Some((&p.lang, bw)));
    (a.0, w)
}

/// The rest of a resident round's arena after its weights `w`: inputs (zeros, to be filled on
/// the device: the image rows at `Round::v_in`, positions at `pos_in`, language at `l_in`),
/// intermediates, and the launches. Every label valid (no mask).
pub(crate) fn sparse_fusion_layout(backend: &str, p: &SparseFusionProblem, w: &WeightOffsets) -> Result<Round> {
    check_round(backend, p)?;
    let f = &p.fusion;
    let (nv, nl) = (f.batch * f.nv * f.v_dim, f.batch * f.t * f.l_dim);
    let r = fusion_round(Arena(Vec::new(), w.len), w, f, Input::Zeros(nv, nv, nl));
    Ok(lang_layer(r, &p.lang, w, None))
}

pub(crate) struct Round {
    pub arena: Arena,
    params: FusionParams,
    pub launches: Vec<Launch>,
    /// Offsets of the image rows, positions and language inputs.
    pub v_in: u32,
    pub pos_in: u32,
    pub l_in: u32,
    /// (offset, len) of the fused image rows (in place over `v_in`) and of the language output.
    pub v_out: (u32, usize),
    pub l_out: (u32, usize),
}

impl Round {
    /// The parameter block of launch `i`; `grid_x` is the width of the 2-D workgroup grid.
    pub(crate) fn params(&self, i: usize, grid_x: u32) -> FusionParams {
        let l = &self.launches[i];
        let mut p = self.params;
        p.grid_x = grid_x;
        p.total = l.items as u32;
        p.njobs = l.jobs.len() as u32;
        for (slot, j) in p.jobs.iter_mut().zip(&l.jobs) {
            *slot = *j;
        }
        p
    }

    /// Size of the arena buffer, weights included (every offset fits 32 bits when it fits a device buffer).
    pub(crate) fn arena_bytes(&self) -> u64 {
        (self.arena.1 as u64 + self.arena.0.len() as u64) * 4
    }
}

fn check_limits(op: &'static str, backend: &str, p: &GatedCrossAttnProblem) -> Result<()> {
    if p.head_dim() > MAX_HEAD_DIM || p.nv > MAX_KEYS || p.t > MAX_KEYS {
        return Err(Error::Unsupported { op, backend: backend.into(), reason: format!("this kernel stages ≤ {MAX_KEYS} keys and ≤ {MAX_HEAD_DIM} channels per head; got Nv = {}, T = {}, Dh = {}", p.nv, p.t, p.head_dim()) });
    }
    Ok(())
}

/// Launches 1–3: the fusion block on `v`, `pos` (image rows, tokens = Nv), `l`.
pub(crate) fn gated_cross_attn(
    backend: &str,
    p: &GatedCrossAttnProblem,
    v: &[f32],
    pos: &[f32],
    l: &[f32],
    w: &GatedCrossAttnWeights,
) -> Result<Round> {
    check_limits(crate::problem::gated_cross_attn::OP, backend, p)?;
    let (a, wo) = weights(p, w, None);
    Ok(fusion_round(a, &wo, p, Input::Host(v, pos, l)))
}

/// A round's image rows, positions and language tokens: host values, or that many zeros.
enum Input<'a> {
    Host(&'a [f32], &'a [f32], &'a [f32]),
    Zeros(usize, usize, usize),
}

/// Launches 1–3 in arena `a`, which holds (or, resident, follows) the weights at `w`.
fn fusion_round(mut a: Arena, w: &WeightOffsets, p: &GatedCrossAttnProblem, input: Input) -> Round {
    let (rv, rl) = ((p.batch * p.nv) as u32, (p.batch * p.t) as u32);
    let (cv, cl, e) = (p.v_dim as u32, p.l_dim as u32, p.embed as u32);
    let (ov, opos, ol) = match input {
        Input::Host(v, pos, l) => (a.put(v), a.put(pos), a.put(l)),
        Input::Zeros(v, pos, l) => (a.zeros(v), a.zeros(pos), a.zeros(l)),
    };
    let wo = &w.fo;
    // WEIGHT_NAMES order: 0/1 ln_v, 2/3 ln_l, 4/5 v_proj, 6/7 l_proj, 8/9 values_v, 10/11 values_l,
    // 12/13 out_v, 14/15 out_l, 16 gamma_v, 17 gamma_l
    let mut off = [0u32; 32];
    off[O_Q] = a.zeros((rv * e) as usize);
    off[O_K] = a.zeros((rl * e) as usize);
    off[O_VV] = a.zeros((rv * e) as usize);
    off[O_VL] = a.zeros((rl * e) as usize);
    off[O_CTXV] = a.zeros((rv * e) as usize);
    off[O_CTXL] = a.zeros((rl * e) as usize);
    off[O_LNEW] = a.zeros((rl * cl) as usize);
    let (stat_v, stat_l) = (a.zeros(2 * rv as usize), a.zeros(2 * rl as usize));
    let base = Job { scale: 1.0, ..Default::default() };
    let project = gemm_launch(
        "LN+projections",
        vec![
            Job {
                a: ov,
                w: wo[4],
                bias: wo[5],
                out: off[O_Q],
                rows: rv,
                k: cv,
                n: e,
                ln_w: wo[0],
                ln_b: wo[1],
                pos: opos,
                flags: F_LN | F_POS | F_MAP_A,
                scale: p.scale(),
                ..base
            },
            Job {
                a: ov,
                w: wo[8],
                bias: wo[9],
                out: off[O_VV],
                rows: rv,
                k: cv,
                n: e,
                ln_w: wo[0],
                ln_b: wo[1],
                flags: F_LN | F_MAP_A | F_STATS,
                stat: stat_v,
                ..base
            },
            Job {
                a: ol,
                w: wo[6],
                bias: wo[7],
                out: off[O_K],
                rows: rl,
                k: cl,
                n: e,
                ln_w: wo[2],
                ln_b: wo[3],
                flags: F_LN,
                ..base
            },
            Job {
                a: ol,
                w: wo[10],
                bias: wo[11],
                out: off[O_VL],
                rows: rl,
                k: cl,
                n: e,
                ln_w: wo[2],
                ln_b: wo[3],
                flags: F_LN | F_STATS,
                stat: stat_l,
                ..base
            },
        ],
    );
    let attend = Launch {
        label: "attend both ways",
        kernel: Kernel::Attend,
        jobs: vec![],
        items: p.batch * p.heads * (p.nv.div_ceil(ATTEND_ROWS) + p.t.div_ceil(ATTEND_ROWS)),
    };
    let output = gemm_launch(
        "out proj+gate",
        vec![
            Job {
                a: off[O_CTXV],
                w: wo[12],
                bias: wo[13],
                out: ov,
                res: ov,
                rows: rv,
                k: e,
                n: cv,
                ln_w: wo[0],
                ln_b: wo[1],
                stat: stat_v,
                gamma: wo[16],
                flags: F_GATE | F_MAP_OUT,
                ..base
            },
            Job {
                a: off[O_CTXL],
                w: wo[14],
                bias: wo[15],
                out: off[O_LNEW],
                res: ol,
                rows: rl,
                k: e,
                n: cl,
                ln_w: wo[2],
                ln_b: wo[3],
                stat: stat_l,
                gamma: wo[17],
                flags: F_GATE,
                ..base
            },
        ],
    );
    let params = FusionParams {
        batch: p.batch as u32,
        nv: p.nv as u32,
        t: p.t as u32,
        e,
        heads: p.heads as u32,
        dh: p.head_dim() as u32,
        tokens: p.nv as u32,
        start: 0,
        gate: match p.gate {
            Gate::VXAc => 0,
            Gate::Glip => 1,
            Gate::XGating => 2,
        },
        grid_x: 0,
        njobs: 0,
        total: 0,
        lh: 0,
        lheads: 0,
        ldh: 0,
        lffn: 0,
        lscale: 1.0,
        has_mask: 0,
        eps: crate::problem::gated_cross_attn::LN_EPS,
        _pad: 0,
        off,
        jobs: [Job::default(); 4],
    };
    let l_out = (off[O_LNEW], (rl * cl) as usize);
    Round {
        arena: a,
        params,
        launches: vec![project, attend, output],
        v_in: ov,
        pos_in: opos,
        l_in: ol,
        v_out: (ov, (rv * cv) as usize),
        l_out,
    }
}

/// `[rows, cols]` → `[cols, rows]`.
fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; x.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = x[r * cols + c];
        }
    }
    t
}

fn check_round(backend: &str, p: &SparseFusionProblem) -> Result<()> {
    const OP: &str = crate::problem::sparse_fusion::OP;
    let lp = &p.lang;
    check_limits(OP, backend, &p.fusion)?;
    if lp.hidden > MAX_LANG_WIDTH || lp.head_dim() > MAX_HEAD_DIM || lp.t > MAX_KEYS {
        return Err(Error::Unsupported { op: OP, backend: backend.into(), reason: format!("the language layer kernel holds rows of ≤ {MAX_LANG_WIDTH} and ≤ {MAX_KEYS} labels; got width {}, T = {}", lp.hidden, lp.t) });
    }
    Ok(())
}

/// Launches 1–8 of one round over the last level of `memory`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sparse_fusion(
    backend: &str,
    p: &SparseFusionProblem,
    memory: &[f32],
    pos: &[f32],
    lang: &[f32],
    mask: Option<&[f32]>,
    fw: &GatedCrossAttnWeights,
    bw: &BertLayerWeights,
) -> Result<Round> {
    check_round(backend, p)?;
    let (a, w) = weights(&p.fusion, fw, Some((&p.lang, bw)));
    let r = fusion_round(a, &w, &p.fusion, Input::Host(&p.gather_level(memory), &p.gather_level(pos), lang));
    Ok(lang_layer(r, &p.lang, &w, mask))
}

/// Launches 4–8 (the language layer) after a fusion round `r`.
fn lang_layer(mut r: Round, lp: &BertLayerProblem, w: &WeightOffsets, mask: Option<&[f32]>) -> Round {
    let (rl, h, ffn) = ((lp.batch * lp.t) as u32, lp.hidden as u32, lp.ffn as u32);
    let a = &mut r.arena;
    // BERT_WEIGHT_NAMES order: 0/1 query, 2/3 key, 4/5 value, 6/7 attn out, 8/9 attn norm,
    // 10/11 intermediate, 12/13 output, 14/15 output norm
    let bo = &w.bo;
    let mut off = r.params.off;
    off[O_LQ] = a.zeros((rl * h) as usize);
    off[O_LK] = a.zeros((rl * h) as usize);
    off[O_LV] = a.zeros((rl * h) as usize);
    off[O_A] = a.zeros((rl * h) as usize);
    off[O_INTER] = a.zeros((rl * ffn) as usize);
    off[O_LOUT] = a.zeros((rl * h) as usize);
    off[O_MASK] = a.put(mask.unwrap_or(&[0.0]));
    off[O_WO] = w.wo_t;
    off[O_INTER2] = a.zeros((rl * h) as usize);
    (off[O_BO], off[O_N1W], off[O_N1B]) = (bo[7], bo[8], bo[9]);
    (off[O_N2W], off[O_N2B]) = (bo[14], bo[15]);
    let pp = &mut r.params;
    pp.off = off;
    (pp.lh, pp.lheads, pp.ldh, pp.lffn) = (h, lp.heads as u32, lp.head_dim() as u32, ffn);
    pp.lscale = (lp.head_dim() as f32).powf(-0.5);
    pp.has_mask = mask.is_some() as u32;
    let base = Job { scale: 1.0, rows: rl, k: h, n: h, a: off[O_LNEW], ..Default::default() };
    r.launches.push(gemm_launch(
        "lang QKV",
        vec![
            Job { w: bo[0], bias: bo[1], out: off[O_LQ], ..base },
            Job { w: bo[2], bias: bo[3], out: off[O_LK], ..base },
            Job { w: bo[4], bias: bo[5], out: off[O_LV], ..base },
        ],
    ));
    r.launches.push(Launch {
        label: "lang attend+out+LN",
        kernel: Kernel::LangAttend,
        jobs: vec![],
        items: rl as usize,
    });
    r.launches.push(gemm_launch(
        "FFN up+GELU",
        vec![Job { a: off[O_A], w: bo[10], bias: bo[11], out: off[O_INTER], n: ffn, flags: F_GELU, ..base }],
    ));
    r.launches.push(gemm_launch(
        "FFN down+res",
        vec![Job {
            a: off[O_INTER],
            w: bo[12],
            bias: bo[13],
            out: off[O_INTER2],
            res: off[O_A],
            k: ffn,
            flags: F_RESID,
            ..base
        }],
    ));
    r.launches.push(Launch { label: "final LN", kernel: Kernel::NormRows, jobs: vec![], items: rl as usize });
    r.l_out = (off[O_LOUT], (rl * h) as usize);
    r
}
