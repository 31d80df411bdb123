use rlipv2::backend::{self, BackendKind};
use rlipv2::problem::*;
use rlipv2::seeded::Rng;
use rlipv2::problem::weights::OwnedWeights;
fn main() {
    let kind = BackendKind::parse(&std::env::args().nth(1).unwrap()).unwrap();
    let be = backend::open(kind).unwrap();
    let (tokens, start, t) = (22223, 21950, 198);
    let p = SparseFusionProblem::rlipv2(1, tokens, start, t);
    let fw = OwnedWeights::seeded(p.fusion.weight_shapes(), 1);
    let bw = OwnedWeights::seeded(BertLayerProblem::roberta_base(1, t).weight_shapes(), 2);
    let mut rng = Rng::new(3);
    let (memory, pos, lang) = (rng.fill(tokens * 256, -1.0, 1.0), rng.fill(tokens * 256, -1.0, 1.0), rng.fill(t * 768, -1.0, 1.0));
    let mut r = be.prepare_sparse_fusion(&p, &memory, &pos, &lang, None, &fw.as_fusion(), &bw.as_bert()).unwrap();
    r.run().unwrap();
    let names = r.stages();
    for i in 0..names.len() {
        r.enqueue_stage(i).unwrap(); r.wait().unwrap();
        let t0 = std::time::Instant::now();
        r.enqueue_stage(i).unwrap(); r.wait().unwrap();
        println!("{:<20} {:.1} ms", names[i], t0.elapsed().as_secs_f64() * 1e3);
    }
}
