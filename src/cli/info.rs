//! `rlipv2 info` and `rlipv2 backends`: what runs here, and how.

use rlipv2::backend::{self, BackendKind};
use rlipv2::Result;

/// Version, features and every backend (`json`: machine-readable).
pub fn info(json: bool) -> Result<()> {
    let features: Vec<&str> = [
        ("wgpu", cfg!(feature = "wgpu")),
        ("cubecl-wgpu", cfg!(feature = "cubecl-wgpu")),
        ("cuda", cfg!(feature = "cuda")),
    ]
    .into_iter()
    .filter_map(|(f, on)| on.then_some(f))
    .collect();
    let mut rows = Vec::new();
    for kind in BackendKind::ALL {
        rows.push(match backend::open(kind) {
            Ok(b) => serde_json::json!({"backend": kind.name(), "available": true, "device": b.device(), "details": b.details().into_iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v))).collect::<serde_json::Map<_, _>>()}),
            Err(e) => serde_json::json!({"backend": kind.name(), "available": false, "why": e.to_string()}),
        });
    }
    let (_, auto) = backend::select("auto")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"version": env!("CARGO_PKG_VERSION"), "features": features, "backends": rows, "auto": auto})).expect("json"));
    } else {
        println!("rlipv2 {} (features: {})", env!("CARGO_PKG_VERSION"), features.join(", "));
        for r in &rows {
            if r["available"].as_bool() == Some(true) {
                println!("\n{:<12} ok  {}", r["backend"].as_str().unwrap_or(""), r["device"].as_str().unwrap_or(""));
                for (k, v) in r["details"].as_object().into_iter().flatten() {
                    println!("    {k:<18} {}", v.as_str().unwrap_or(""));
                }
            } else {
                println!("\n{:<12} --  {}", r["backend"].as_str().unwrap_or(""), r["why"].as_str().unwrap_or(""));
            }
        }
        println!("\nauto → {auto}");
    }
    Ok(())
}

/// What a converted model file is (`json`: machine-readable).
pub fn model(path: &std::path::Path, json: bool) -> Result<()> {
    use rlipv2::convert::{META_CONFIG, META_FORMAT, META_LABEL_SETS, META_SOURCE};
    let file = rlipv2::io::weights::WeightFile::open(path)?;
    let raw = file.metadata.get(META_CONFIG).ok_or_else(|| rlipv2::Error::Format {
        file: path.to_path_buf(),
        reason: format!("no `{META_CONFIG}` metadata: not a model file written by `rlipv2 convert`"),
    })?;
    let config: rlipv2::model::Config = serde_json::from_str(raw)
        .map_err(|e| rlipv2::Error::Format { file: path.to_path_buf(), reason: format!("bad `{META_CONFIG}`: {e}") })?;
    let (tensors, elements) = file.counts();
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let meta = |k: &str| file.metadata.get(k).cloned().unwrap_or_default();
    let sets: Vec<String> = meta(META_LABEL_SETS).split(',').filter(|s| !s.is_empty()).map(str::to_string).collect();
    if json {
        let doc = serde_json::json!({
            "file": path.display().to_string(), "variant": config.summary(), "config": config,
            "label_sets": sets, "source": meta(META_SOURCE), "format": meta(META_FORMAT),
            "tensors": tensors, "elements": elements, "bytes": bytes,
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
        return Ok(());
    }
    println!("{}", path.display());
    println!("  model       {}", config.summary());
    println!("  converted   from {} (format {})", meta(META_SOURCE), meta(META_FORMAT));
    println!(
        "  layers      encoder {} (fusion every {}, gate {}), decoders {}, FFN {}, {} levels × {} points",
        config.enc_layers,
        config.fusion_interval,
        config.gating,
        config.dec_layers,
        config.dim_feedforward,
        config.num_feature_levels,
        config.n_points
    );
    println!(
        "  labels      {}",
        if sets.is_empty() {
            "none baked (detect needs --tokenizer)".to_string()
        } else {
            format!("{} baked", sets.join(", "))
        }
    );
    println!("  size        {tensors} tensors, {:.1} M values, {:.0} MB", elements as f64 / 1e6, bytes as f64 / 1e6);
    Ok(())
}

/// One line per backend and the `auto` pick.
pub fn backends() -> Result<()> {
    for kind in BackendKind::ALL {
        match backend::open(kind) {
            Ok(b) => println!("{:<12} ok    {}", kind.name(), b.device()),
            Err(e) => println!("{:<12} SKIP  {e}", kind.name()),
        }
    }
    let (_, why) = backend::select("auto")?;
    println!("auto → {why}");
    Ok(())
}
