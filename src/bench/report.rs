//! What `rlipv2 bench suite` writes: `bench.json` (every record, for machines and `--compare`),
//! `bench.md` (the tables) and `bench.svg` (the sweeps as a chart, [`super::chart`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::suite::{cpu_median, Record};
use crate::error::{Error, Result};

/// Version of the `bench.json` layout; a file of another version is refused by `--compare`.
pub const SCHEMA: u32 = 1;

/// One run of the suite: what measured it, and every record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// Layout version ([`SCHEMA`]).
    pub schema: u32,
    /// Crate version that measured it.
    pub rlipv2: String,
    /// Cargo features it was built with.
    pub features: Vec<String>,
    /// Seconds since the Unix epoch when the run ended.
    pub created_unix: u64,
    /// Whether the quick (small) shapes were used.
    pub quick: bool,
    /// Timed samples per cell.
    pub repeat: usize,
    /// Every cell, timed or skipped.
    pub records: Vec<Record>,
}

impl Report {
    /// A report of `records` stamped with this build's version, features and the time now.
    pub fn new(records: Vec<Record>, quick: bool, repeat: usize) -> Self {
        let features = [
            ("wgpu", cfg!(feature = "wgpu")),
            ("cubecl-wgpu", cfg!(feature = "cubecl-wgpu")),
            ("cuda", cfg!(feature = "cuda")),
        ]
        .into_iter()
        .filter(|&(_, on)| on)
        .map(|(f, _)| f.to_string())
        .collect();
        let created_unix =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Report {
            schema: SCHEMA,
            rlipv2: env!("CARGO_PKG_VERSION").into(),
            features,
            created_unix,
            quick,
            repeat,
            records,
        }
    }

    /// Reads a `bench.json`, naming the file and what is wrong with it.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let r: Report = serde_json::from_str(&text).map_err(|e| Error::Format {
            file: path.to_path_buf(),
            reason: format!("not a bench.json of `rlipv2 bench suite`: {e}"),
        })?;
        if r.schema != SCHEMA {
            return Err(Error::Format {
                file: path.to_path_buf(),
                reason: format!("bench.json schema {} (this build reads {SCHEMA})", r.schema),
            });
        }
        Ok(r)
    }

    /// Writes `bench.json`, `bench.md` and `bench.svg` into `dir`, each atomically.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
        let svg = super::chart::svg(self)?;
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Format { file: dir.join("bench.json"), reason: e.to_string() })?;
        let mut out = Vec::new();
        for (name, text) in [("bench.json", json), ("bench.md", self.markdown()), ("bench.svg", svg)] {
            let path = dir.join(name);
            crate::io::write_atomic(&path, text.as_bytes())?;
            out.push(path);
        }
        Ok(out)
    }

    /// One markdown table per op: every backend × dtype × size, with the speed-up vs cpu.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "# rlipv2 bench suite\n\nrlipv2 {} (features: {}), {} timed samples per cell{}.\n",
            self.rlipv2,
            self.features.join(", "),
            self.repeat,
            if self.quick { ", quick shapes" } else { "" }
        );
        s += "`resident`: inputs on the device, 10 queued launches and one sync per sample; `host-to-host`: uploads and read-back included. Median and min over the samples; `vs cpu` = cpu median / this median, same op, size and dtype.\n";
        // one line per backend: its device, or why it did not open (its cells are left out below)
        s += "\n| backend | device |\n|---|---|\n";
        let mut seen: Vec<&str> = Vec::new();
        for r in &self.records {
            if seen.contains(&r.backend.as_str()) {
                continue;
            }
            seen.push(&r.backend);
            let opened = self.records.iter().find(|o| o.backend == r.backend && o.device != "-");
            let device = match opened {
                Some(o) => o.device.clone(),
                None => format!("unavailable: {}", r.skipped.as_deref().unwrap_or("-")),
            };
            let _ = writeln!(s, "| {} | {} |", r.backend, device.replace('|', "/"));
        }
        let mut ops: Vec<(&str, &str)> = Vec::new();
        for r in &self.records {
            if !ops.contains(&(r.op.as_str(), r.case.as_str())) {
                ops.push((r.op.as_str(), r.case.as_str()));
            }
        }
        for (op, case) in ops {
            let _ = write!(s, "\n## {op} — {case}\n\n| shape | backend | dtype | median ms | min ms | throughput | vs cpu | timing |\n|---|---|---|---:|---:|---:|---:|---|\n");
            for r in self.records.iter().filter(|r| r.op == op && r.case == case && r.device != "-") {
                match (r.median_ms, &r.skipped) {
                    (Some(med), _) => {
                        let thr = r.throughput.map(|t| format!("{t:.1} {}", r.unit)).unwrap_or_else(|| "-".into());
                        let vs = cpu_median(&self.records, r)
                            .map(|c| format!("{:.2}×", c / med))
                            .unwrap_or_else(|| "-".into());
                        let _ = writeln!(
                            s,
                            "| {} | {} | {} | {med:.3} | {:.3} | {thr} | {vs} | {} |",
                            r.shape,
                            r.backend,
                            r.dtype,
                            r.min_ms.unwrap_or(med),
                            r.timing
                        );
                    }
                    (None, why) => {
                        let why = why.as_deref().unwrap_or("not run").replace('|', "/");
                        let _ = writeln!(s, "| {} | {} | {} | skipped: {why} | | | | |", r.shape, r.backend, r.dtype);
                    }
                }
            }
        }
        s
    }

    /// The change of every cell that both runs timed: old and new median and the ratio; cells in
    /// only one of them are listed as added or gone.
    pub fn compare(&self, old: &Report) -> String {
        let mut s = format!(
            "{:<28} {:<8} {:>7} {:<12} {:<5} {:>11} {:>11} {:>8}\n",
            "op", "case", "size", "backend", "dtype", "old ms", "new ms", "change"
        );
        for r in &self.records {
            let prev = old.records.iter().find(|o| o.key() == r.key());
            let cell = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
            let change = match (prev.and_then(|p| p.median_ms), r.median_ms) {
                (Some(o), Some(n)) => format!("{:+.1}%", (n / o - 1.0) * 100.0),
                (None, Some(_)) if prev.is_none() => "added".into(),
                _ => "-".into(),
            };
            let _ = writeln!(
                s,
                "{:<28} {:<8} {:>7} {:<12} {:<5} {:>11} {:>11} {:>8}",
                r.op,
                r.case,
                r.size,
                r.backend,
                r.dtype,
                cell(prev.and_then(|p| p.median_ms)),
                cell(r.median_ms),
                change
            );
        }
        for o in old.records.iter().filter(|o| !self.records.iter().any(|r| r.key() == o.key())) {
            let _ = writeln!(
                s,
                "{:<28} {:<8} {:>7} {:<12} {:<5} {:>11} {:>11} {:>8}",
                o.op,
                o.case,
                o.size,
                o.backend,
                o.dtype,
                o.median_ms.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into()),
                "-",
                "gone"
            );
        }
        s + "change: + is slower, − is faster (new median / old median − 1)\n"
    }
}
