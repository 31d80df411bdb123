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
    /// V-COCO agent and role AP (scenarios 1 and 2) as the official export
    /// (generate_vcoco_official.py) scored by `datasets/vsrl_eval.py` computes them, from the
    /// pairs `rlipv2 detect --labels vcoco` writes.
    ///
    /// Example: rlipv2 eval vcoco --annotations vcoco_files/ --detections results/
    Vcoco(VcocoArgs),
}

/// `rlipv2 eval vcoco`.
#[derive(clap::Args)]
pub struct VcocoArgs {
    /// A directory holding the four files below under their official names (each can be given
    /// on its own instead).
    #[arg(long)]
    pub annotations: Option<PathBuf>,
    /// V-COCO's `vcoco_test.json` (v-coco/data/vcoco/).
    #[arg(long)]
    pub vsrl: Option<PathBuf>,
    /// COCO instances `instances_vcoco_all_2014.json` (v-coco/data/).
    #[arg(long)]
    pub coco: Option<PathBuf>,
    /// The split's image ids, `vcoco_test.ids` (v-coco/data/splits/).
    #[arg(long)]
    pub ids: Option<PathBuf>,
    /// RLIPv2's valid (verb, object) matrix `corre_vcoco.npy` [29, 80] (its annotations/).
    #[arg(long)]
    pub correct_mat: Option<PathBuf>,
    /// What `rlipv2 detect --labels vcoco` wrote: its --out directory, or a JSON Lines file.
    #[arg(long)]
    pub detections: PathBuf,
    /// Treat a test image without a detection file as an image without detections (default:
    /// an error naming the missing images).
    #[arg(long)]
    pub allow_missing: bool,
    /// Machine-readable output, every action's and role's AP included.
    #[arg(long)]
    pub json: bool,
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
        EvalCmd::Vcoco(args) => run_vcoco(args),
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

/// Matches the test images to their detections by file stem; missing ones are an error unless
/// allowed (then empty).
fn match_images<T: Default>(
    names: &[&str],
    found: &mut std::collections::HashMap<String, detections::ImageDetections>,
    pick: impl Fn(detections::ImageDetections) -> Result<T>,
    allow_missing: bool,
    source: &Path,
) -> Result<(Vec<T>, Vec<detections::Post>, usize)> {
    let (mut out, mut posts, mut missing) = (Vec::with_capacity(names.len()), Vec::new(), Vec::new());
    for name in names {
        match found.remove(&detections::stem(name)) {
            Some(d) => {
                posts.extend(d.post.clone());
                out.push(pick(d)?);
            }
            None => {
                missing.push(name.to_string());
                out.push(T::default());
            }
        }
    }
    if !missing.is_empty() && !allow_missing {
        let shown: Vec<&str> = missing.iter().take(5).map(String::as_str).collect();
        return Err(Error::Format {
            file: source.to_path_buf(),
            reason: format!(
                "no detections for {} of {} test images ({}{}); run detect on them, or pass --allow-missing to count them as images without detections",
                missing.len(),
                names.len(),
                shown.join(", "),
                if missing.len() > 5 { ", …" } else { "" }
            ),
        });
    }
    Ok((out, posts, missing.len()))
}

fn run_vcoco(a: VcocoArgs) -> Result<()> {
    use rlipv2::eval::vcoco;
    let file = |given: &Option<PathBuf>, name: &str, flag: &str, what: &str| -> Result<PathBuf> {
        let p = given.clone().or_else(|| a.annotations.as_ref().map(|d| d.join(name)));
        match p {
            Some(p) => need(p, what, flag),
            None => Err(Error::Format {
                file: PathBuf::from(name),
                reason: format!("{what}: pass {flag}, or --annotations DIR holding {name}"),
            }),
        }
    };
    let vsrl = file(&a.vsrl, "vcoco_test.json", "--vsrl", "V-COCO's test annotations")?;
    let coco = file(&a.coco, "instances_vcoco_all_2014.json", "--coco", "the COCO instances of V-COCO")?;
    let ids = file(&a.ids, "vcoco_test.ids", "--ids", "the test split's image ids")?;
    let mat = file(&a.correct_mat, "corre_vcoco.npy", "--correct-mat", "RLIPv2's valid-pair matrix")?;
    let gt = vcoco::read_annotations(&vsrl, &coco, &ids)?;
    let correct = vcoco::read_correct_mat(&mat)?;
    let set = LabelSet::builtin("vcoco").expect("built in");
    let mut found = detections::read(&a.detections, &set)?;
    let names: Vec<&str> = gt.images.iter().map(|g| g.file_name.as_str()).collect();
    let source = a.detections.clone();
    let pick = |d: detections::ImageDetections| {
        d.pairs.ok_or_else(|| Error::Format {
            file: source.clone(),
            reason: format!(
                "{}: no `pairs` (every query pair): write the detections with `rlipv2 detect --labels vcoco`",
                d.source
            ),
        })
    };
    let (pairs, _, missing) = match_images(&names, &mut found, pick, a.allow_missing, &a.detections)?;
    let missing_label = set.objects.len() - 1;
    let r = vcoco::evaluate(&gt, &pairs, &correct, missing_label)?;
    let num = |x: f64| if x.is_finite() { serde_json::json!(x) } else { serde_json::Value::Null };
    if a.json {
        let per: Vec<_> = r
            .actions
            .iter()
            .enumerate()
            .map(|(i, act)| {
                let roles: Vec<_> = act.roles[1..]
                    .iter()
                    .enumerate()
                    .map(|(k, role)| serde_json::json!({"role": role, "ap_scenario_1": num(r.role_ap_1[i][k] as f64), "ap_scenario_2": num(r.role_ap_2[i][k] as f64)}))
                    .collect();
                serde_json::json!({"action": act.name, "positives": r.positives[i], "agent_ap": num(r.agent_ap[i] as f64), "roles": roles})
            })
            .collect();
        let doc = serde_json::json!({
            "agent AP": num(r.agent_map()), "role AP scenario 1": num(r.role_map(1)), "role AP scenario 2": num(r.role_map(2)),
            "role AP scenario 1 without point": r.role_map_without_point(1).map(num), "role AP scenario 2 without point": r.role_map_without_point(2).map(num),
            "images": gt.images.len(), "images_missing": missing, "images_without_persons_skipped": r.unmatched_images, "actions": per,
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
    } else {
        let pct = |x: f64| if x.is_finite() { format!("{:8.4}", 100.0 * x) } else { "     n/a".into() };
        println!(
            "V-COCO: {} images{}, {} actions ({} action-role pairs)",
            gt.images.len(),
            if missing > 0 { format!(" ({missing} without a detection file)") } else { String::new() },
            r.actions.len(),
            r.actions.iter().map(|x| x.roles.len() - 1).sum::<usize>()
        );
        println!("  {:<34} {}", "role AP, scenario 1 (AP_role #1)", pct(r.role_map(1)));
        println!("  {:<34} {}", "role AP, scenario 2 (AP_role #2)", pct(r.role_map(2)));
        println!("  {:<34} {}", "agent AP", pct(r.agent_map()));
        if r.unmatched_images > 0 {
            println!("  ({} images with detections but no ground-truth person were left out, as the official evaluator cannot score them)", r.unmatched_images);
        }
        println!("(percent; --json gives fractions, every action's and role's AP, and the means without `point`)");
    }
    Ok(())
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
    let names: Vec<&str> = gts.iter().map(|g| g.file_name.as_str()).collect();
    let (dets, posts, missing) =
        match_images(&names, &mut found, |d| Ok(d.detections), a.allow_missing, &a.detections)?;
    let mut settings: Vec<(detections::Post, usize)> = Vec::new();
    for p in posts {
        match settings.iter_mut().find(|(q, _)| *q == p) {
            Some((_, n)) => *n += 1,
            None => settings.push((p, 1)),
        }
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
            "images_missing": missing, "triplets": per,
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
            if missing == 0 { String::new() } else { format!(", {missing} without a detection file") },
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
