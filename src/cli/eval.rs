//! `rlipv2 eval`: the official evaluation of detections written by `rlipv2 detect`.

use std::path::{Path, PathBuf};

use rlipv2::eval::{detections, hico};
use rlipv2::model::labels::LabelSet;
use rlipv2::{Error, Result};

/// `rlipv2 eval <dataset>`.
#[derive(clap::Subcommand)]
pub enum EvalCmd {
    /// HICO-DET mAP (Default setting: Full, Rare, Non-rare; or a zero-shot split) as the official
    /// `datasets/hico_eval.py` computes it.
    ///
    /// Example: rlipv2 eval hico --annotations hico_20160224_det/annotations --detections results/
    Hico(HicoArgs),
}

/// `rlipv2 eval hico`.
#[derive(clap::Args)]
pub struct HicoArgs {
    /// `test_hico.json`, or the official `annotations/` directory holding it (and the files below).
    #[arg(long)]
    pub annotations: PathBuf,
    /// What `rlipv2 detect --labels hico` wrote: its --out directory, or a JSON Lines file.
    #[arg(long)]
    pub detections: PathBuf,
    /// The training annotations that define rare triplets (< 10 instances) [default:
    /// trainval_hico.json beside the test annotations]. The 100 % file, also for few-shot models.
    #[arg(long)]
    pub trainval: Option<PathBuf>,
    /// `hoi_list_new.json`, for the zero-shot splits [default: beside the test annotations].
    #[arg(long)]
    pub hoi_list: Option<PathBuf>,
    /// `nf` (no fine-tuning: Default split, detections from `detect --person-only`), `uc-rf`,
    /// `uc-nf` (unseen combinations: mAP over the 120 unseen / 480 seen HOI classes) or `uo`
    /// (unseen objects, 100).
    #[arg(long, value_parser = ["nf", "uc-rf", "uc-nf", "uo"])]
    pub zero_shot: Option<String>,
    /// Treat a test image without a detection file as an image without detections (default:
    /// an error naming the missing images).
    #[arg(long)]
    pub allow_missing: bool,
    /// Machine-readable output, per-triplet APs included.
    #[arg(long)]
    pub json: bool,
}

/// Runs `rlipv2 eval`.
pub fn run(cmd: EvalCmd) -> Result<()> {
    match cmd {
        EvalCmd::Hico(args) => run_hico(args),
    }
}

fn beside(test: &Path, name: &str) -> PathBuf {
    test.parent().unwrap_or(Path::new(".")).join(name)
}

fn need(path: PathBuf, what: &str, flag: &str) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Format { file: path, reason: format!("not found: {what} (pass {flag})") })
    }
}

fn run_hico(a: HicoArgs) -> Result<()> {
    let test = if a.annotations.is_dir() { a.annotations.join("test_hico.json") } else { a.annotations.clone() };
    let test = need(test, "the test annotations", "--annotations FILE")?;
    let setting = match a.zero_shot.as_deref() {
        Some("uc-rf") => Some(hico::ZeroShot::UcRf),
        Some("uc-nf") => Some(hico::ZeroShot::UcNf),
        Some("uo") => Some(hico::ZeroShot::Uo),
        _ => None,
    };
    let split = match setting {
        Some(s) => {
            let list = need(
                a.hoi_list.clone().unwrap_or_else(|| beside(&test, "hoi_list_new.json")),
                "hoi_list_new.json, which numbers the 600 HOI classes of the zero-shot splits",
                "--hoi-list",
            )?;
            hico::unseen_split(s, &list)?
        }
        None => {
            let train = need(
                a.trainval.clone().unwrap_or_else(|| beside(&test, "trainval_hico.json")),
                "trainval_hico.json, whose counts define the rare triplets",
                "--trainval",
            )?;
            hico::rare_split(&hico::read_annotations(&train)?)
        }
    };
    let gts = hico::read_annotations(&test)?;
    let set = LabelSet::builtin("hico").expect("built in");
    let mut found = detections::read(&a.detections, &set)?;
    let mut missing = Vec::new();
    let mut dets = Vec::with_capacity(gts.len());
    let mut settings: Vec<(detections::Post, usize)> = Vec::new();
    for g in &gts {
        match found.remove(&detections::stem(&g.file_name)) {
            Some(d) => {
                if let Some(p) = d.post {
                    match settings.iter_mut().find(|(q, _)| *q == p) {
                        Some((_, n)) => *n += 1,
                        None => settings.push((p, 1)),
                    }
                }
                dets.push(d.detections);
            }
            None => {
                missing.push(g.file_name.clone());
                dets.push(Vec::new());
            }
        }
    }
    if !missing.is_empty() && !a.allow_missing {
        let shown: Vec<&str> = missing.iter().take(5).map(String::as_str).collect();
        return Err(Error::Format {
            file: a.detections.clone(),
            reason: format!(
                "no detections for {} of {} test images ({}{}); run detect on them, or pass --allow-missing to count them as images without detections",
                missing.len(),
                gts.len(),
                shown.join(", "),
                if missing.len() > 5 { ", …" } else { "" }
            ),
        });
    }
    // how the detections were selected: the official evaluation keeps the top 100 after NMS,
    // all scores, person-only subjects exactly in the NF zero-shot setting
    let nf = a.zero_shot.as_deref() == Some("nf");
    for (p, n) in &settings {
        let mut off = Vec::new();
        if p.top_k < 100 {
            off.push(format!("--top-k {} (the evaluator keeps 100)", p.top_k));
        }
        if p.threshold > 0.0 {
            off.push(format!("--threshold {} (the evaluator keeps every score)", p.threshold));
        }
        if !p.nms {
            off.push("no triplet NMS (every official script sets --use_nms_filter)".into());
        }
        if p.person_only != nf {
            off.push(if nf {
                "no --person-only (the NF zero-shot evaluation keeps person subjects only)".into()
            } else {
                "--person-only (only the NF zero-shot evaluation filters subjects)".into()
            });
        }
        if !off.is_empty() {
            eprintln!("warning: {n} detection files differ from the official evaluation: {}", off.join("; "));
        }
    }
    let r = hico::evaluate(&gts, &dets, &split);
    let (rare, non_rare) =
        if setting.is_some() { ("mAP rare (unseen)", "mAP non-rare (seen)") } else { ("mAP rare", "mAP non-rare") };
    let unlisted = r.triplets.iter().filter(|t| t.rare.is_none()).count();
    let name = match a.zero_shot.as_deref() {
        None => "Default".to_string(),
        Some(z) => format!("Default, zero-shot {}", z.to_uppercase()),
    };
    if a.json {
        let num = |x: f64| if x.is_finite() { serde_json::json!(x) } else { serde_json::Value::Null };
        let per: Vec<_> = r.triplets.iter().map(|t| serde_json::json!({
            "subject": set.objects[t.triplet.0], "object": set.objects[t.triplet.1], "verb": set.verbs[t.triplet.2],
            "instances": t.instances, "ap": t.ap, "max_recall": t.max_recall,
            "split": match t.rare { Some(true) => "rare", Some(false) => "non-rare", None => "none" },
        })).collect();
        let doc = serde_json::json!({
            "setting": name, "mAP": num(r.map), "mAP rare": num(r.map_rare), "mAP non-rare": num(r.map_non_rare),
            "mean max recall": num(r.mean_max_recall), "images": r.images, "images_evaluated": r.images_matched,
            "images_missing": missing.len(), "triplets": per,
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
    } else {
        let pct = |x: f64| {
            if x.is_finite() {
                format!("{:8.4}", 100.0 * x)
            } else {
                "     n/a (no test triplet in this split)".into()
            }
        };
        let n_rare = r.triplets.iter().filter(|t| t.rare == Some(true)).count();
        println!(
            "HICO-DET, {name}: {} images ({} with ground-truth boxes and detections{}), {} test triplets ({n_rare} {}, {} {}{})",
            r.images,
            r.images_matched,
            if missing.is_empty() { String::new() } else { format!(", {} without a detection file", missing.len()) },
            r.triplets.len(),
            if setting.is_some() { "unseen" } else { "rare" },
            r.triplets.len() - n_rare - unlisted,
            if setting.is_some() { "seen" } else { "non-rare" },
            if unlisted > 0 { format!(", {unlisted} in neither split: Full only") } else { String::new() },
        );
        println!("  {:<22} {}", "mAP (Full)", pct(r.map));
        println!("  {rare:<22} {}", pct(r.map_rare));
        println!("  {non_rare:<22} {}", pct(r.map_non_rare));
        println!("  {:<22} {}", "mean max recall", pct(r.mean_max_recall));
        println!("(percent; --json gives the official fractions and every triplet's AP)");
    }
    Ok(())
}
