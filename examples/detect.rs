//! HOI detection from Rust: load a model file written by `rlipv2 convert`, pick a backend, and
//! print the top ⟨human, verb, object⟩ triplets of an image.
//!
//! Run: `cargo run --release --example detect -- MODEL.safetensors IMAGE [BACKEND]`
//! (the model needs baked HICO labels: `rlipv2 convert CKPT.pth MODEL.safetensors --tokenizer tokenizer.json`).

use std::path::Path;

use rlipv2::detect::{Detector, Profile};
use rlipv2::model::labels::LabelSet;
use rlipv2::model::postprocess::PostConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, image, rest @ ..] = args.as_slice() else {
        return Err("usage: detect MODEL.safetensors IMAGE [BACKEND]".into());
    };
    let (be, why) = rlipv2::backend::select(rest.first().map_or("auto", |s| s.as_str()))?;
    println!("backend: {why}");
    let file = rlipv2::io::weights::WeightFile::open(Path::new(model))?;
    let detector = Detector::load(&file, Path::new(model))?;
    let labels =
        detector.labels(&file, Path::new(model), LabelSet::builtin("hico").expect("built in"), None, be.as_ref())?;
    let img = rlipv2::io::image::load_rgb(Path::new(image))?;
    let mut profile = Profile::default();
    let detections = detector.detect(be.as_ref(), &img, &labels, &PostConfig::default(), &mut profile)?;
    for d in detections.iter().take(5) {
        let [x0, y0, x1, y1] = d.object_box;
        println!(
            "{:.3}  person {} {} at ({x0:.0},{y0:.0})–({x1:.0},{y1:.0})",
            d.score, labels.set.verbs[d.verb], labels.set.objects[d.object_label]
        );
    }
    let total: f64 = profile.stages.iter().map(|s| s.1).sum();
    println!("{} detections in {:.0} ms", detections.len(), total * 1e3);
    Ok(())
}
