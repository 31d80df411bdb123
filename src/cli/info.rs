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
