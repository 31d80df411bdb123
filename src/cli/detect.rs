//! `rlipv2 detect`: triplets for images or folders, as JSON and annotated PNGs.

use std::path::PathBuf;

use rlipv2::{backend, io, Error, Result};

/// `rlipv2 detect` (see its help).
#[derive(clap::Args)]
pub struct DetectArgs {
    /// A model file written by `rlipv2 convert`.
    #[arg(long)]
    pub weights: PathBuf,
    /// Images (PNG or JPEG), or directories of them.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// `hico`, `vcoco`, or a JSON file {"objects": [...], "verbs": [...]} (needs --tokenizer).
    #[arg(long, default_value = "hico")]
    pub labels: String,
    /// The roberta-base tokenizer.json, for label sets not baked into the model file.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// auto, cpu, reference, wgpu, cubecl-wgpu, cubecl-cuda (every stage, the backbone's
    /// implicit-GEMM convolutions included, runs on the chosen device).
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Detections kept per image after NMS (at most 100: the evaluator's candidate count).
    #[arg(long, default_value_t = 100)]
    pub top_k: usize,
    /// Drop detections scoring below this.
    #[arg(long, default_value_t = 0.0)]
    pub threshold: f32,
    /// Keep only pairs whose subject is classified as `person` (the zero-shot evaluation).
    #[arg(long)]
    pub person_only: bool,
    /// Output directory (created if missing).
    #[arg(long, default_value = "detections")]
    pub out: PathBuf,
    /// Print a per-stage time table for every image.
    #[arg(long)]
    pub profile: bool,
    /// Detections drawn on the annotated PNG written beside each JSON (0: no PNG).
    #[arg(long, default_value_t = 5)]
    pub draw: usize,
}

/// Image files among `inputs` (directories expanded, sorted).
fn image_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|source| Error::Io { path: p.clone(), source })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
                })
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// Runs detection with `args`.
pub fn run(args: DetectArgs) -> Result<()> {
    let DetectArgs {
        weights,
        images: inputs,
        labels,
        tokenizer,
        backend,
        top_k,
        threshold,
        person_only,
        out,
        profile,
        draw,
    } = args;
    let (weights, labels, tokenizer, backend, out) =
        (weights.as_path(), labels.as_str(), tokenizer.as_deref(), backend.as_str(), out.as_path());
    use rlipv2::detect::{Detector, Profile};
    use rlipv2::model::labels::LabelSet;
    use rlipv2::model::postprocess::PostConfig;
    let files = image_files(&inputs)?;
    if files.is_empty() {
        return Err(Error::Format { file: inputs[0].clone(), reason: "no PNG or JPEG images found".into() });
    }
    let set = LabelSet::resolve(labels)?;
    let (be, why) = backend::select(backend)?;
    eprintln!("backend: {why}");
    eprintln!("loading {}", weights.display());
    let file = rlipv2::io::weights::WeightFile::open(weights)?;
    let det = Detector::load(&file, weights)?;
    let labels = det.labels(&file, weights, set, tokenizer, be.as_ref())?;
    std::fs::create_dir_all(out).map_err(|source| Error::Io { path: out.to_path_buf(), source })?;
    let post = PostConfig { zero_shot: person_only, ..PostConfig::default() };
    // how the detections were selected, so `rlipv2 eval` can say where it differs from the official
    let post_doc = serde_json::json!({"top_k": top_k, "threshold": threshold, "nms": post.nms.is_some(), "person_only": person_only});
    // a bar on a terminal for several images; a line per image in logs (the bar hides itself there)
    let bar = indicatif::ProgressBar::new(files.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} images, {elapsed} (eta {eta}) {wide_msg}")
            .expect("template"),
    );
    if files.len() < 2 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let say = |line: String| if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) };
    for (i, f) in files.iter().enumerate() {
        bar.set_position(i as u64);
        bar.set_message(f.display().to_string());
        if bar.is_hidden() {
            eprintln!("[{}/{}] {}", i + 1, files.len(), f.display());
        }
        let img = io::image::load_rgb(f)?;
        let mut prof = Profile::default();
        let uploaded = be.uploaded_bytes();
        let (launched, submitted, recycled) = (be.dispatch_count(), be.submission_count(), be.recycled_outputs());
        let dets = det.detect(be.as_ref(), &img, &labels, &post, &mut prof)?;
        let kept: Vec<serde_json::Value> =
            dets.iter().filter(|d| d.score >= threshold).take(top_k).map(|d| d.record(&labels.set)).collect();
        let doc = serde_json::json!({"image": f.display().to_string(), "width": img.width, "height": img.height, "labels": labels.set.name, "backend": be.kind().name(), "post": post_doc, "detections": kept});
        let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| format!("image{i}"));
        let path = out.join(format!("{stem}.json"));
        io::write_atomic(&path, serde_json::to_string_pretty(&doc).expect("json").as_bytes())?;
        if draw > 0 {
            let shown: Vec<_> = dets.iter().filter(|d| d.score >= threshold).take(top_k.min(draw)).cloned().collect();
            io::draw::save_png(&io::draw::annotate(&img, &shown, &labels.set, draw), &out.join(format!("{stem}.png")))?;
        }
        if let Some(top) = dets.first() {
            say(format!(
                "{}: {} detections; best: {} {} ({:.3})",
                f.display(),
                kept.len(),
                labels.set.verbs[top.verb],
                labels.set.objects[top.object_label],
                top.score
            ));
        }
        if profile {
            let total: f64 = prof.stages.iter().map(|s| s.1).sum();
            for (stage, t, peak) in &prof.stages {
                let peak = peak.map(|b| format!("   peak RSS {:.0} MB", b as f64 / 1e6)).unwrap_or_default();
                println!("  {stage:<24} {:>9.1} ms{peak}", t * 1e3);
            }
            println!("  {:<24} {:>9.1} ms", "total", total * 1e3);
            if let (Some(a), Some(b)) = (uploaded, be.uploaded_bytes()) {
                println!(
                    "  host → device copies: {:.1} MB (weights are bound on the first image)",
                    (b - a) as f64 / 1e6
                );
            }
            if let (Some(a), Some(b), Some(c), Some(d)) =
                (launched, be.dispatch_count(), submitted, be.submission_count())
            {
                println!("  kernel launches: {} in {} queue submissions", b - a, d - c);
            }
            if let (Some(a), Some(b)) = (recycled, be.recycled_outputs()) {
                println!("  outputs in recycled device buffers: {}", b - a);
            }
        }
    }
    bar.finish_and_clear();
    Ok(())
}
