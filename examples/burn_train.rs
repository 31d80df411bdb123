//! Trains a small deformable-attention layer with burn's Adam on burn's wgpu backend, the
//! attention itself being rlipv2's kernels (`rlipv2::burn::ms_deform_attn`, forward and the
//! deterministic backward) running on burn's own device buffers.
//!
//! The layer is an encoder self-attention over two feature levels (Deformable-DETR style: value
//! projection, sampling offsets around each token's reference point, softmaxed attention
//! weights); it learns to imitate a fixed random "teacher" layer of the same shape. Exits
//! non-zero unless the loss fell to under half its first value, and made no host round trip
//! inside the op.
//!
//! Run: `cargo run --release --features burn --example burn_train [-- STEPS]`

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::activation::softmax;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Tensor, TensorData};

type Wgpu = burn_cubecl::CubeBackend<cubecl::wgpu::WgpuRuntime, f32, i32, u32>;
type Train = burn::backend::Autodiff<Wgpu>;

const LEVELS: [(usize, usize); 2] = [(8, 8), (4, 4)];
const MODEL: usize = 16; // feature width = heads · channels
const HEADS: usize = 2;
const POINTS: usize = 2;

/// One deformable self-attention layer.
#[derive(Module, Debug)]
struct DeformLayer<B: Backend> {
    value: Linear<B>,
    offsets: Linear<B>,
    weights: Linear<B>,
}

impl<B: Backend + rlipv2::burn::MsDeformAttnBackend> DeformLayer<B> {
    fn new(device: &B::Device) -> Self {
        let l = LEVELS.len();
        DeformLayer {
            value: LinearConfig::new(MODEL, MODEL).init(device),
            offsets: LinearConfig::new(MODEL, HEADS * l * POINTS * 2).init(device),
            weights: LinearConfig::new(MODEL, HEADS * l * POINTS).init(device),
        }
    }

    /// `x [B,S,MODEL]`, reference points `[B,S,L,2]`, per-level (W, H) `[1,1,1,L,1,2]`.
    fn forward(&self, x: Tensor<B, 3>, reference: Tensor<B, 4>, sizes: Tensor<B, 6>) -> Tensor<B, 3> {
        let [b, s, _] = x.dims();
        let l = LEVELS.len();
        let value = self.value.forward(x.clone()).reshape([b, s, HEADS, MODEL / HEADS]);
        let offsets = self.offsets.forward(x.clone()).reshape([b, s, HEADS, l, POINTS, 2]);
        let locations = reference.reshape([b, s, 1, l, 1, 2]) + offsets / sizes;
        let logits = self.weights.forward(x).reshape([b, s, HEADS, l * POINTS]);
        let weights = softmax(logits, 3).reshape([b, s, HEADS, l, POINTS]);
        rlipv2::burn::ms_deform_attn(value, &LEVELS, locations, weights).expect("shapes are consistent")
    }
}

/// Every token's normalized centre, repeated for each level: `[batch, S, L, 2]`.
fn reference_points<B: Backend>(batch: usize, device: &B::Device) -> Tensor<B, 4> {
    let mut v = Vec::new();
    for _ in 0..batch {
        for &(h, w) in &LEVELS {
            for i in 0..h {
                for j in 0..w {
                    for _ in &LEVELS {
                        v.extend([(j as f32 + 0.5) / w as f32, (i as f32 + 0.5) / h as f32]);
                    }
                }
            }
        }
    }
    let s = v.len() / (batch * LEVELS.len() * 2);
    Tensor::from_data(TensorData::new(v, [batch, s, LEVELS.len(), 2]), device)
}

fn run<B: AutodiffBackend + rlipv2::burn::MsDeformAttnBackend>(steps: usize) -> Result<(f32, f32), String>
where
    B::InnerBackend: rlipv2::burn::MsDeformAttnBackend,
{
    let device = B::Device::default();
    B::seed(&device, 7);
    let batch = 2;
    let s: usize = LEVELS.iter().map(|(h, w)| h * w).sum();
    let reference = reference_points::<B>(batch, &device);
    let sizes: Vec<f32> = LEVELS.iter().flat_map(|&(h, w)| [w as f32, h as f32]).collect();
    let sizes = Tensor::<B, 6>::from_data(TensorData::new(sizes, [1, 1, 1, LEVELS.len(), 1, 2]), &device);
    let x = Tensor::<B, 3>::random([batch, s, MODEL], Distribution::Normal(0.0, 1.0), &device);
    let teacher = DeformLayer::<B>::new(&device);
    let target = teacher.forward(x.clone(), reference.clone(), sizes.clone()).detach();

    let mut model = DeformLayer::<B>::new(&device);
    let params = model.num_params();
    let mut optim = AdamConfig::new().init();
    let (mut first, mut last) = (f32::NAN, f32::NAN);
    let reads = rlipv2::burn::host_reads();
    for step in 0..steps {
        let out = model.forward(x.clone(), reference.clone(), sizes.clone());
        let loss = (out - target.clone()).powf_scalar(2.0).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let value = loss.into_data().into_vec::<f32>().map_err(|e| format!("{e:?}"))?[0];
        if step == 0 {
            first = value;
        }
        last = value;
        if step % 10 == 0 || step + 1 == steps {
            println!("step {step:>3}  loss {value:.6}");
        }
        model = optim.step(2e-2, model, grads);
    }
    if rlipv2::burn::host_reads() != reads {
        return Err("the op read tensors to the host on a cubecl backend".into());
    }
    println!("{params} parameters, {steps} steps: loss {first:.6} → {last:.6}");
    Ok((first, last))
}

fn main() {
    let steps = std::env::args().nth(1).map_or(60, |s| s.parse().expect("STEPS is a number"));
    match run::<Train>(steps) {
        Ok((first, last)) if last < 0.5 * first => println!("ok: the loss fell {:.1}×", first / last),
        Ok((first, last)) => {
            eprintln!("error: the loss did not fall enough ({first} → {last})");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
