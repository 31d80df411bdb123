//! Multi-scale deformable attention (MSDA): the problem description and layout contract.
//!
//! Layouts (row-major, last index fastest):
//! - `value`               `[B, S, M, D]`, token `start_l + y·W_l + x` of level `l`, channel `m·D + d`
//! - `sampling_locations`  `[B, Q, M, L, P, 2]`, `(x, y)` normalized to `[0, 1]`
//! - `attention_weights`   `[B, Q, M, L, P]`, already softmaxed over `L·P`
//! - fused form: `reference` `[B, Q, L, 2]` (points) or `[B, Q, L, 4]` (boxes cx,cy,w,h),
//!   `sampling_offsets` `[B, Q, M, L, P, 2]` (raw projection output),
//!   `attention_logits` `[B, Q, M, L·P]` (pre-softmax)
//! - `output`              `[B, Q, M·D]`, channel `m·D + d`

pub(crate) mod cpu;
#[cfg(any(feature = "cubecl-wgpu", feature = "cuda"))]
pub(crate) mod cubecl;
pub(crate) mod kernel;
pub mod oracle;
#[cfg(feature = "wgpu")]
pub(crate) mod wgpu;

pub use kernel::MsdaKernel;

use crate::error::{Error, Result};
use crate::problem::DType;

/// Op name in errors.
pub const OP: &str = "ms_deform_attn";

/// Largest supported number of heads M.
pub const MAX_HEADS: usize = 16;
/// Largest supported L·P (points per head per query).
pub const MAX_POINTS: usize = 64;
/// Largest supported channels per head D (must also be a multiple of [`D_MULTIPLE`]).
pub const MAX_CHANNELS: usize = 256;
/// D must be a multiple of this: GPU kernels move 8 channels per load.
pub const D_MULTIPLE: usize = 8;
/// Largest supported level count L.
pub const MAX_LEVELS: usize = 16;
/// Largest element count of any one tensor: GPU kernels index with 32-bit integers.
pub const MAX_ELEMENTS: usize = (1 << 31) - 1;

/// One feature level: its size and where its tokens start in the flattened sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    /// H_l
    pub h: usize,
    /// W_l
    pub w: usize,
    /// First token of the level in the flattened axis.
    pub start: usize,
}

/// What the reference of the fused form holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefKind {
    /// `[B,Q,L,2]` points: `loc = ref + off / (W_l, H_l)`.
    Points,
    /// `[B,Q,L,4]` boxes (cx,cy,w,h): `loc = ref_xy + off / P · ref_wh · 0.5`.
    Boxes,
}

impl RefKind {
    /// Numbers per reference: 2 (points) or 4 (boxes).
    pub fn dim(self) -> usize {
        match self {
            RefKind::Points => 2,
            RefKind::Boxes => 4,
        }
    }
}

/// Which entry form: the official op's inputs, or the fused form the graph calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Form {
    /// Sampling locations and softmaxed weights given (`MSDeformAttnFunction`'s inputs).
    Official,
    /// Reference, raw offsets and logits given; softmax and locations computed in the kernel.
    Fused(RefKind),
}

/// One `ms_deform_attn` call: dimensions, levels and entry form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsDeformAttnProblem {
    /// B
    pub batch: usize,
    /// Q
    pub queries: usize,
    /// M
    pub heads: usize,
    /// D
    pub channels: usize,
    /// P
    pub points: usize,
    /// L = levels.len()
    pub levels: Vec<Level>,
    /// S = Σ H_l·W_l
    pub tokens: usize,
    /// Entry form.
    pub form: Form,
}

impl MsDeformAttnProblem {
    /// Builds a problem with packed levels (start_l = Σ_{k<l} H_k·W_k) from `(H, W)` pairs.
    pub fn new(
        batch: usize,
        queries: usize,
        heads: usize,
        channels: usize,
        points: usize,
        shapes: &[(usize, usize)],
        form: Form,
    ) -> Self {
        let mut start = 0;
        let levels = shapes
            .iter()
            .map(|&(h, w)| {
                let lv = Level { h, w, start };
                start += h * w;
                lv
            })
            .collect();
        MsDeformAttnProblem { batch, queries, heads, channels, points, levels, tokens: start, form }
    }

    /// L
    pub fn num_levels(&self) -> usize {
        self.levels.len()
    }

    /// Checks every dimension against the documented limits and the level table against S.
    pub fn validate(&self) -> Result<()> {
        let (b, q, m, d, p, l) = (self.batch, self.queries, self.heads, self.channels, self.points, self.levels.len());
        let lim = |what: &str, reason: String| Err(Error::limit(OP, what, reason));
        if b == 0 || q == 0 {
            return lim("B, Q", format!("batch ({b}) and queries ({q}) must be at least 1"));
        }
        if m == 0 || m > MAX_HEADS {
            return lim("M", format!("heads = {m}, supported 1..={MAX_HEADS}"));
        }
        if d == 0 || d > MAX_CHANNELS || d % D_MULTIPLE != 0 {
            return lim(
                "D",
                format!(
                    "channels per head = {d}, supported: a multiple of {D_MULTIPLE} in {D_MULTIPLE}..={MAX_CHANNELS}"
                ),
            );
        }
        if l == 0 || l > MAX_LEVELS {
            return lim("L", format!("levels = {l}, supported 1..={MAX_LEVELS}"));
        }
        if p == 0 || l * p > MAX_POINTS {
            return lim("L·P", format!("L = {l}, P = {p}: L·P must be in 1..={MAX_POINTS}"));
        }
        let mut expect_start = 0usize;
        for (i, lv) in self.levels.iter().enumerate() {
            if lv.h == 0 || lv.w == 0 {
                return Err(Error::limit(
                    OP,
                    "spatial_shapes",
                    format!("level {i} has size {}×{}; every level needs H, W ≥ 1", lv.h, lv.w),
                ));
            }
            if lv.start != expect_start {
                return Err(Error::limit(
                    OP,
                    "level_start_index",
                    format!("level {i} starts at {}, but the levels before it hold {expect_start} tokens", lv.start),
                ));
            }
            expect_start =
                lv.h.checked_mul(lv.w)
                    .and_then(|hw| hw.checked_add(expect_start))
                    .ok_or_else(|| Error::limit(OP, "spatial_shapes", "token count overflows"))?;
        }
        if expect_start != self.tokens {
            return Err(Error::limit(
                OP,
                "value",
                format!("S = {} tokens, but Σ H·W over spatial_shapes = {expect_start}", self.tokens),
            ));
        }
        for (what, n) in [
            ("value", self.value_shape().iter().try_fold(1usize, |a, &x| a.checked_mul(x))),
            ("sampling_locations", self.locations_shape().iter().try_fold(1usize, |a, &x| a.checked_mul(x))),
            ("output", self.output_shape().iter().try_fold(1usize, |a, &x| a.checked_mul(x))),
        ] {
            match n {
                Some(n) if n <= MAX_ELEMENTS => {}
                _ => return lim(what, format!("more than {MAX_ELEMENTS} elements; split the batch or queries")),
            }
        }
        Ok(())
    }

    /// `[B,S,M,D]`
    pub fn value_shape(&self) -> Vec<usize> {
        vec![self.batch, self.tokens, self.heads, self.channels]
    }
    /// `[B,Q,M,L,P,2]`
    pub fn locations_shape(&self) -> Vec<usize> {
        vec![self.batch, self.queries, self.heads, self.levels.len(), self.points, 2]
    }
    /// `[B,Q,M,L,P]`
    pub fn weights_shape(&self) -> Vec<usize> {
        vec![self.batch, self.queries, self.heads, self.levels.len(), self.points]
    }
    /// `[B,Q,L,2]` or `[B,Q,L,4]`
    pub fn reference_shape(&self, kind: RefKind) -> Vec<usize> {
        vec![self.batch, self.queries, self.levels.len(), kind.dim()]
    }
    /// `[B,Q,M,L·P]`
    pub fn logits_shape(&self) -> Vec<usize> {
        vec![self.batch, self.queries, self.heads, self.levels.len() * self.points]
    }
    /// `[B,Q,M·D]`
    pub fn output_shape(&self) -> Vec<usize> {
        vec![self.batch, self.queries, self.heads * self.channels]
    }
    /// B·Q·M·D
    pub fn output_len(&self) -> usize {
        self.output_shape().iter().product()
    }
    /// Number of (b, q, m, l, p) samples.
    pub fn samples(&self) -> usize {
        self.batch * self.queries * self.heads * self.levels.len() * self.points
    }

    /// Arithmetic: per sample and channel, 4 taps (multiply-add) and the weighted add.
    pub fn flops(&self) -> u64 {
        (self.samples() * self.channels * 10) as u64
    }

    /// Compulsory bytes: every input read once and the output written once.
    pub fn bytes(&self, dtype: DType) -> u64 {
        self.buffer_bytes(dtype).iter().map(|(_, b)| b).sum()
    }

    /// The bytes each device buffer of the op holds, by name: `value` and `output` in `dtype`,
    /// `sampling` (locations or offsets), `attention` (weights or logits) and, fused form only,
    /// `reference` in f32 (0 bytes for the official form).
    pub fn buffer_bytes(&self, dtype: DType) -> [(&'static str, u64); 5] {
        let (s, f) = (self.samples() as u64, 4u64);
        let reference = match self.form {
            Form::Official => 0,
            Form::Fused(k) => (self.batch * self.queries * self.levels.len() * k.dim()) as u64 * f,
        };
        [
            ("value", (self.value_shape().iter().product::<usize>() * dtype.size()) as u64),
            ("sampling", s * 2 * f),
            ("attention", s * f),
            ("reference", reference),
            ("output", (self.output_len() * dtype.size()) as u64),
        ]
    }

    /// Checks caller-owned device buffers against [`Self::buffer_bytes`]: `size(name)` is the
    /// size of the buffer passed for `name`, or `None` where none was passed.
    pub fn check_buffers(&self, dtype: DType, size: impl Fn(&str) -> Option<u64>) -> Result<()> {
        for (what, need) in self.buffer_bytes(dtype) {
            match size(what) {
                None if need > 0 => {
                    return Err(Error::limit(
                        OP,
                        what,
                        format!("the {} form needs a `{what}` buffer", self.form_name()),
                    ))
                }
                Some(have) if have < need => {
                    return Err(Error::limit(OP, what, format!("buffer holds {have} bytes, the problem needs {need}")))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Host inputs, all f32 (an f16 run converts `value` on upload), in the layouts of the module docs.
#[derive(Clone, Copy, Debug)]
pub enum MsDeformAttnInput<'a> {
    /// `value [B,S,M,D]`, `sampling_locations [B,Q,M,L,P,2]`, `attention_weights [B,Q,M,L,P]`.
    #[allow(missing_docs)]
    Official { value: &'a [f32], sampling_locations: &'a [f32], attention_weights: &'a [f32] },
    /// `value [B,S,M,D]`, `reference [B,Q,L,2|4]`, `sampling_offsets [B,Q,M,L,P,2]`,
    /// `attention_logits [B,Q,M,L·P]`.
    #[allow(missing_docs)]
    Fused { value: &'a [f32], reference: &'a [f32], sampling_offsets: &'a [f32], attention_logits: &'a [f32] },
}

impl<'a> MsDeformAttnInput<'a> {
    /// `value`, whichever the form.
    pub fn value(&self) -> &'a [f32] {
        match *self {
            MsDeformAttnInput::Official { value, .. } | MsDeformAttnInput::Fused { value, .. } => value,
        }
    }

    /// Checks that every slice has the length the problem's layout demands and that the input
    /// form matches `problem.form`.
    pub fn check(&self, problem: &MsDeformAttnProblem) -> Result<()> {
        let want = |what: &str, shape: Vec<usize>, got: usize| -> Result<()> {
            let n: usize = shape.iter().product();
            if n != got {
                return Err(Error::shape(OP, what, shape, format!("{got} elements")));
            }
            Ok(())
        };
        want("value", problem.value_shape(), self.value().len())?;
        match (*self, problem.form) {
            (MsDeformAttnInput::Official { sampling_locations, attention_weights, .. }, Form::Official) => {
                want("sampling_locations", problem.locations_shape(), sampling_locations.len())?;
                want("attention_weights", problem.weights_shape(), attention_weights.len())
            }
            (MsDeformAttnInput::Fused { reference, sampling_offsets, attention_logits, .. }, Form::Fused(kind)) => {
                want("reference", problem.reference_shape(kind), reference.len())?;
                want("sampling_offsets", problem.locations_shape(), sampling_offsets.len())?;
                want("attention_logits", problem.logits_shape(), attention_logits.len())
            }
            (_, form) => {
                Err(Error::limit(OP, "input form", format!("inputs do not match the problem's form {form:?}")))
            }
        }
    }
}

impl MsDeformAttnProblem {
    /// `official`, `fused-points` or `fused-boxes`.
    pub fn form_name(&self) -> &'static str {
        match self.form {
            Form::Official => "official",
            Form::Fused(RefKind::Points) => "fused-points",
            Form::Fused(RefKind::Boxes) => "fused-boxes",
        }
    }
}
