//! `rlipv2 detect`: triplets for images or folders, as JSON and annotated PNGs.

use std::path::PathBuf;

use rlipv2::detect::{Detector, Labels, Profile};
use rlipv2::model::labels::LabelSet;
use rlipv2::model::postprocess::{Detection, PairScores, PostConfig};
use rlipv2::model::preprocess::RgbImage;
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
    /// `model` (the head the checkpoint was fine-tuned for: hico or vcoco), `hico`, `vcoco`, or
    /// a JSON file {"objects": [...], "verbs": [...]} (needs --tokenizer).
    #[arg(long, default_value = "model")]
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
    /// `json`: OUT/<image stem>.json per image; `jsonl`: one line per image in
    /// OUT/detections[-K-of-N].jsonl, appended and flushed per image (for large runs).
    #[arg(long, default_value = "json", value_parser = ["json", "jsonl"])]
    pub format: String,
    /// Run only shard K of N (0-based): a file's shard is a hash of its name, so N tasks with
    /// K = 0..N−1 split a dataset into disjoint parts, whatever machine lists it.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<rlipv2::dataset::Shard>,
    /// Skip images already in the output (a complete JSON file or JSON line) and carry on.
    #[arg(long)]
    pub resume: bool,
    /// Stop at the first image that cannot be read or detected (default: report it in
    /// OUT/failures[-K-of-N].jsonl, carry on, and exit non-zero at the end).
    #[arg(long)]
    pub fail_fast: bool,
    /// Print a per-stage time table for every image.
    #[arg(long)]
    pub profile: bool,
    /// Detections drawn on an annotated PNG beside each result (0: no PNG) [default: 5 with
    /// --format json, 0 with jsonl].
    #[arg(long)]
    pub draw: Option<usize>,
    /// Where stderr is not a terminal (logs), a progress line every N images.
    #[arg(long, default_value_t = 10)]
    pub log_every: usize,
    /// Pad every N consecutive images to their largest pre-processed height and width, as the
    /// official batched evaluation does (NestedTensor: zero pad, masks, valid ratios), so each
    /// image gets what it gets in an official batch of N. Each image still runs its own forward:
    /// on cpu padding only adds work (see the README); use it to reproduce official numbers.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub batch: u32,
    /// Inputs of the large matrix products (convolutions, linear layers): f32 (default, matches
    /// the official model to the test tolerances) or bf16 (cpu backend: rounded to bf16, summed
    /// in f32; AVX512-BF16 makes it faster where the CPU has it — see the README for its fidelity).
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    pub precision: String,
}

/// Runs detection with `args`.
pub fn run(args: DetectArgs) -> Result<()> {
    use rlipv2::dataset::{list_images, Failures, Output, Post, RunInfo, Shard};
    let a = args;
    let rlipv2::dataset::Listing { images: mut files, passed_over: passed } = list_images(&a.images)?;
    if let Some(shard) = a.shard {
        files.retain(|f| shard.holds(&f.key));
    }
    if files.is_empty() && a.shard.is_none() {
        return Err(Error::Format { file: a.images[0].clone(), reason: "no PNG or JPEG images found".into() });
    }
    if a.labels != "model" {
        LabelSet::resolve(&a.labels)?; // a bad label file fails before the model loads
    }
    let (be, why) = backend::select_at(&a.backend, rlipv2::problem::Precision::parse(&a.precision)?)?;
    rlipv2::backend::op_time::enable(a.profile);
    eprintln!("backend: {why}");
    eprintln!("loading {}", a.weights.display());
    let file = rlipv2::io::weights::WeightFile::open(&a.weights)?;
    let det = Detector::load(&file, &a.weights)?;
    let set = det.label_set(&a.labels)?;
    let labels = det.labels(&file, &a.weights, set, a.tokenizer.as_deref(), be.as_ref())?;
    let out = a.out.as_path();
    std::fs::create_dir_all(out).map_err(|source| Error::Io { path: out.to_path_buf(), source })?;
    let suffix = Shard::suffix(a.shard);
    let (mut output, draw) = if a.format == "jsonl" {
        let (o, cut) = Output::lines(&out.join(format!("detections{suffix}.jsonl")), a.resume)?;
        if cut > 0 {
            eprintln!("dropped the last {cut} bytes of the output: a line cut short when the earlier run stopped");
        }
        (o, a.draw.unwrap_or(0))
    } else {
        (Output::per_image(out), a.draw.unwrap_or(5))
    };
    let mut failures = Failures::new(out.join(format!("failures{suffix}.jsonl")))?;
    let already = if a.resume { output.done()? } else { Default::default() };
    let total = files.len();
    files.retain(|f| !already.contains(&rlipv2::eval::detections::stem(&f.path.to_string_lossy())));
    let resumed = total - files.len();
    if resumed > 0 {
        eprintln!("resuming: {resumed} of {total} images already in {}", out.display());
    }
    let run = RunInfo::new(be.kind().name(), Post::new(a.top_k, a.threshold, a.person_only), &a.weights, &det.config);
    let post = run.post().config();
    // a bar on a terminal; a line per --log-every images in logs (the bar hides itself there)
    let bar = indicatif::ProgressBar::new(files.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} images, {per_sec}, {elapsed} (eta {eta}) {wide_msg}",
        )
        .expect("template"),
    );
    if files.len() < 2 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let say = |line: String| if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) };
    let started = std::time::Instant::now();
    let mut batch = std::collections::VecDeque::new();
    let mut canvas = None;
    for (i, f) in files.iter().enumerate() {
        bar.set_position(i as u64);
        bar.set_message(f.path.display().to_string());
        // a batch's images are read together: their sizes make the canvas they are padded to
        if batch.is_empty() {
            let end = files.len().min(i + a.batch as usize);
            batch = files[i..end].iter().map(|f| io::image::load_rgb(&f.path)).collect();
            let readable = batch.iter().filter_map(|r| r.as_ref().ok());
            canvas = if a.batch > 1 { rlipv2::detect::batch_canvas(readable) } else { None };
        }
        let img = batch.pop_front().expect("one entry per file of the batch");
        // an image that cannot be read or detected is a failure of that image; failing to write
        // the output is fatal (it would fail for every image)
        match img.and_then(|img| detect_one(&det, be.as_ref(), &labels, &post, img, canvas)) {
            Ok(Found { dets, pairs, img, timed: prof }) => {
                let kept = run.post().kept(&dets);
                output.write(&run.document(&f.path.display().to_string(), &img, &labels, &dets, pairs.as_deref()))?;
                if draw > 0 {
                    let shown: Vec<Detection> = kept.iter().take(draw).map(|d| (*d).clone()).collect();
                    let png = out.join(format!("{}.png", rlipv2::eval::detections::stem(&f.path.to_string_lossy())));
                    io::draw::save_png(&io::draw::annotate(&img, &shown, &labels.set, draw), &png)?;
                }
                if let Some(top) = kept.first() {
                    if !bar.is_hidden() || files.len() == 1 || a.profile {
                        say(format!(
                            "{}: {} detections; best: {} {} ({:.3})",
                            f.path.display(),
                            kept.len(),
                            labels.set.verbs[top.verb],
                            labels.set.objects[top.object_label],
                            top.score
                        ));
                    }
                }
                if a.profile {
                    print_profile(&prof, be.owner_id() == 0);
                }
            }
            Err(e) if !a.fail_fast => {
                say(format!("error: {e} (skipped; recorded in {})", failures.path.display()));
                failures.add(&f.path, &e.to_string())?;
            }
            Err(e) => return Err(e),
        }
        let done = i + 1;
        if bar.is_hidden() && files.len() > 1 && (done % a.log_every.max(1) == 0 || done == files.len()) {
            let secs = started.elapsed().as_secs_f64();
            let rate = done as f64 / secs.max(1e-9);
            let eta = (files.len() - done) as f64 / rate.max(1e-9);
            eprintln!(
                "[{done}/{}] {rate:.2} images/s, eta {}, {} failed",
                files.len(),
                indicatif::HumanDuration(std::time::Duration::from_secs_f64(eta)),
                failures.count
            );
        }
    }
    bar.finish_and_clear();
    let ok = files.len() - failures.count;
    if a.profile && !files.is_empty() {
        let secs = started.elapsed().as_secs_f64();
        println!(
            "throughput: {} images in {secs:.2} s, {:.3} images/s{}",
            files.len(),
            files.len() as f64 / secs.max(1e-9),
            if a.batch > 1 { format!(" (padded in batches of {})", a.batch) } else { String::new() }
        );
    }
    eprintln!(
        "done: {ok} images, failed: {}, passed over: {} (not image names){}{}",
        failures.count,
        passed.len(),
        if resumed > 0 { format!(", already done: {resumed}") } else { String::new() },
        a.shard.map(|s| format!(" (shard {}/{})", s.k, s.n)).unwrap_or_default(),
    );
    for (p, why) in passed.iter().take(5) {
        eprintln!("  passed over {}: {why}", p.display());
    }
    if failures.count > 0 {
        return Err(Error::Format {
            file: failures.path.clone(),
            reason: format!("{} of {} images failed (image and reason on each line)", failures.count, files.len()),
        });
    }
    Ok(())
}

/// The backend's counters, where it keeps them: bytes uploaded, launches, queue submissions,
/// outputs in recycled buffers.
#[derive(Clone, Copy)]
struct Counters([Option<u64>; 4]);

impl Counters {
    fn read(be: &dyn backend::Backend) -> Counters {
        Counters([be.uploaded_bytes(), be.dispatch_count(), be.submission_count(), be.recycled_outputs()])
    }
}

/// One image's run: per-stage times and the counters around it.
struct Timed {
    prof: Profile,
    before: Counters,
    after: Counters,
}

/// One image's results.
struct Found {
    dets: Vec<Detection>,
    /// Every pair, where the set is evaluated on them (V-COCO).
    pairs: Option<Vec<PairScores>>,
    img: RgbImage,
    timed: Timed,
}

/// One image (padded to `canvas` in a batch): every detection (and pair), the image, the times.
fn detect_one(
    det: &Detector,
    be: &dyn backend::Backend,
    labels: &Labels,
    post: &PostConfig,
    img: RgbImage,
    canvas: Option<(usize, usize)>,
) -> Result<Found> {
    let mut prof = Profile::default();
    let before = Counters::read(be);
    let (dets, pairs) = det.detect_in(be, &img, canvas, labels, post, &mut prof)?;
    let after = Counters::read(be);
    Ok(Found { dets, pairs, img, timed: Timed { prof, before, after } })
}

fn print_profile(t: &Timed, host: bool) {
    let total: f64 = t.prof.stages.iter().map(|s| s.1).sum();
    for (stage, secs, peak) in &t.prof.stages {
        let peak = peak.map(|b| format!("   peak RSS {:.0} MB", b as f64 / 1e6)).unwrap_or_default();
        println!("  {stage:<24} {:>9.1} ms{peak}", secs * 1e3);
    }
    println!("  {:<24} {:>9.1} ms", "total", total * 1e3);
    if host {
        // where each stage's time goes, op by op (host backends compute when called)
        let kinds = rlipv2::backend::op_time::OpKind::ALL;
        let head: Vec<String> = kinds.iter().map(|k| format!("{:>16}", k.name())).collect();
        println!("  {:<24}{}{:>16}", "ms by op", head.join(""), "rest");
        for ((stage, secs, _), ops) in t.prof.stages.iter().zip(&t.prof.ops) {
            let cells: Vec<String> = ops.iter().map(|s| format!("{:>16.1}", s * 1e3)).collect();
            println!("  {stage:<24}{}{:>16.1}", cells.join(""), (secs - ops.iter().sum::<f64>()) * 1e3);
        }
    }
    let delta = |i: usize| t.before.0[i].zip(t.after.0[i]).map(|(a, b)| b - a);
    if let Some(d) = delta(0) {
        println!("  host → device copies: {:.1} MB (weights are bound on the first image)", d as f64 / 1e6);
    }
    if let (Some(l), Some(s)) = (delta(1), delta(2)) {
        println!("  kernel launches: {l} in {s} queue submissions");
    }
    if let Some(r) = delta(3) {
        println!("  outputs in recycled device buffers: {r}");
    }
}
