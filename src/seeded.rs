//! Seeded inputs and weights, identical on every platform, for tests, benches and the CLI's
//! `bench`. Weight recipes follow PyTorch's default scales so activations stay O(1).

use crate::problem::{Form, MsDeformAttnInput, MsDeformAttnProblem, OwnedWeights, RefKind};

/// SplitMix64: small, seeded, identical on every platform.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (same stream on every platform).
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    /// `n` values uniform in [lo, hi).
    pub fn fill(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

/// Owned inputs for either form.
#[derive(Clone, Debug)]
pub struct MsDeformAttnData {
    /// `value [B,S,M,D]`, U(−1, 1).
    pub value: Vec<f32>,
    /// official: sampling_locations; fused: reference
    pub a: Vec<f32>,
    /// official: attention_weights; fused: sampling_offsets
    pub b: Vec<f32>,
    /// fused only: attention_logits
    pub c: Vec<f32>,
    /// Which form the tensors are for.
    pub form: Form,
}

impl MsDeformAttnData {
    /// Seeded inputs with the locality of real use: value U(−1,1); official locations = the
    /// query's point + U(−4,4) pixels of each level, with softmaxed weights;
    /// fused references U(0,1) (boxes: w,h U(0.05,0.5)), offsets U(−4,4), logits U(−3,3).
    pub fn random(pr: &MsDeformAttnProblem, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let value = rng.fill(pr.value_shape().iter().product(), -1.0, 1.0);
        let n = pr.samples();
        match pr.form {
            Form::Official => {
                let refs = query_points(pr, &mut rng);
                let mut loc = Vec::with_capacity(2 * n);
                for bq in 0..pr.batch * pr.queries {
                    for _m in 0..pr.heads {
                        for lv in &pr.levels {
                            for _p in 0..pr.points {
                                loc.push(refs[2 * bq] + rng.uniform(-4.0, 4.0) / lv.w as f32);
                                loc.push(refs[2 * bq + 1] + rng.uniform(-4.0, 4.0) / lv.h as f32);
                            }
                        }
                    }
                }
                let logits = rng.fill(n, -3.0, 3.0);
                let lp = pr.num_levels() * pr.points;
                let mut w = vec![0.0; n];
                for (wr, lr) in w.chunks_mut(lp).zip(logits.chunks(lp)) {
                    let mx = lr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let s: f32 = lr.iter().map(|x| (x - mx).exp()).sum();
                    for (o, x) in wr.iter_mut().zip(lr) {
                        *o = (x - mx).exp() / s;
                    }
                }
                MsDeformAttnData { value, a: loc, b: w, c: Vec::new(), form: pr.form }
            }
            Form::Fused(kind) => {
                let nref = pr.batch * pr.queries * pr.num_levels();
                let mut reference = Vec::with_capacity(nref * kind.dim());
                for _ in 0..nref {
                    reference.push(rng.uniform(0.0, 1.0));
                    reference.push(rng.uniform(0.0, 1.0));
                    if kind == RefKind::Boxes {
                        reference.push(rng.uniform(0.05, 0.5));
                        reference.push(rng.uniform(0.05, 0.5));
                    }
                }
                let off = rng.fill(2 * n, -4.0, 4.0);
                let logits = rng.fill(n, -3.0, 3.0);
                MsDeformAttnData { value, a: reference, b: off, c: logits, form: pr.form }
            }
        }
    }

    /// The inputs as the backends take them.
    pub fn input(&self) -> MsDeformAttnInput<'_> {
        match self.form {
            Form::Official => MsDeformAttnInput::Official {
                value: &self.value,
                sampling_locations: &self.a,
                attention_weights: &self.b,
            },
            Form::Fused(_) => MsDeformAttnInput::Fused {
                value: &self.value,
                reference: &self.a,
                sampling_offsets: &self.b,
                attention_logits: &self.c,
            },
        }
    }
}

/// One normalized point per (b, q): for encoder self-attention (Q = S) the centre of the query's
/// own pixel, as the encoder's reference points are; otherwise uniform in [0, 1)².
fn query_points(pr: &MsDeformAttnProblem, rng: &mut Rng) -> Vec<f32> {
    let mut pts = Vec::with_capacity(2 * pr.batch * pr.queries);
    for _b in 0..pr.batch {
        if pr.queries == pr.tokens {
            for lv in &pr.levels {
                for i in 0..lv.h {
                    for j in 0..lv.w {
                        pts.push((j as f32 + 0.5) / lv.w as f32);
                        pts.push((i as f32 + 0.5) / lv.h as f32);
                    }
                }
            }
        } else {
            for _q in 0..pr.queries {
                pts.push(rng.uniform(0.0, 1.0));
                pts.push(rng.uniform(0.0, 1.0));
            }
        }
    }
    pts
}

impl OwnedWeights {
    /// Seeded weights for `shapes` (a problem's `weight_shapes()`): linear weights `[out,in]`
    /// U(±1/√in), biases U(±0.1), LayerNorm γ U(0.8,1.2) and β U(±0.1), fusion gates U(0.2,0.6).
    pub fn seeded(shapes: Vec<(&'static str, Vec<usize>)>, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let mut names = Vec::new();
        let mut tensors = Vec::new();
        for (name, shape) in shapes {
            let n: usize = shape.iter().product();
            let is_norm = name.to_ascii_lowercase().contains("norm");
            let t = if name.contains("gamma") {
                rng.fill(n, 0.2, 0.6)
            } else if shape.len() == 2 {
                let a = 1.0 / (shape[1] as f32).sqrt();
                rng.fill(n, -a, a)
            } else if is_norm && name.ends_with("weight") {
                rng.fill(n, 0.8, 1.2)
            } else {
                rng.fill(n, -0.1, 0.1)
            };
            names.push(name);
            tensors.push(t);
        }
        OwnedWeights { names, tensors }
    }
}
