//! `plugin check FILE`: the verdict and the lists come from [`SandboxEngine::inspect`]; this
//! file parses the arguments and prints.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use crate::wasm::inspect::{Inspection, Provision, WORLD_PACKAGE, WORLD_VERSION};
use crate::wasm::{EngineConfig, SandboxEngine};

pub(super) const EXAMPLES: &str = "\
Examples:
  rmq-wasm plugin check target/plugins/filter.wasm
  rmq-wasm plugin check --json my-listener.wasm | jq .imports
  # insist on less WASI than the host links (what scripts/build-plugins.sh does):
  rmq-wasm plugin check --wasi wasi:io/,wasi:cli/ filter.wasm
  rmq-wasm plugin check --wasi none py-json-router.wasm";

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The component (`.wasm`).
    pub file: PathBuf,
    /// WASI interfaces the component may import, as comma-separated prefixes
    /// (`wasi:io/,wasi:cli/`), or `none`; default: whatever the host links.
    #[arg(long, value_name = "PREFIXES")]
    pub wasi: Option<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub(super) async fn check(args: CheckArgs) -> anyhow::Result<()> {
    let engine = SandboxEngine::new(EngineConfig { max_instances: 1, ..EngineConfig::default() })
        .context("starting the wasm engine")?;
    let path = args.file.clone();
    let mut report = tokio::task::spawn_blocking(move || engine.inspect(&path))
        .await
        .context("the check task failed")?
        .with_context(|| format!("checking {}", args.file.display()))?;
    if let Some(wasi) = &args.wasi {
        report.restrict_wasi(&wasi_prefixes(wasi));
    }
    if args.json {
        let mut j = serde_json::to_value(&report)?;
        j["file"] = args.file.display().to_string().into();
        j["fits"] = report.fits().into();
        j["grants"] = report.grants().into();
        println!("{j}");
    } else {
        print!("{}", text(&args.file.display().to_string(), &report));
    }
    if !report.fits() {
        anyhow::bail!(
            "{} does not implement {WORLD_PACKAGE}@{WORLD_VERSION} ({} problem(s))",
            args.file.display(),
            report.misfits.len()
        );
    }
    Ok(())
}

/// `--wasi`: `none`, or comma-separated prefixes.
fn wasi_prefixes(arg: &str) -> Vec<String> {
    if arg.trim() == "none" {
        return Vec::new();
    }
    arg.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect()
}

/// The report for a person.
fn text(file: &str, r: &Inspection) -> String {
    let mut out = String::new();
    let verdict = if r.fits() { "implements" } else { "does NOT implement" };
    let _ = writeln!(
        out,
        "{file}: {verdict} {WORLD_PACKAGE}@{WORLD_VERSION} ({} bytes, sha256 {})",
        r.bytes,
        &r.sha256[..12.min(r.sha256.len())]
    );
    for m in &r.misfits {
        let _ = writeln!(out, "  ✗ {m}");
    }
    let _ = writeln!(out, "exports:");
    for e in &r.exports {
        let _ = writeln!(out, "  {e}");
    }
    if r.exports.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    let _ = writeln!(out, "imports:");
    let width = r.imports.iter().map(|i| i.name.len()).max().unwrap_or(0);
    for i in &r.imports {
        let _ = writeln!(out, "  {:<width$}  {}", i.name, i.provision.describe());
    }
    if r.imports.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    let _ = writeln!(out, "grants it would need in its [[listener]]:");
    let grants = r.grants();
    for key in &grants {
        let hint = match *key {
            "produce_topics" => "produce_topics = [\"…\"]   the topics it sends to",
            "clocks" => "clocks = true              to read real time",
            _ => "[listener.config]          the keys it reads",
        };
        let _ = writeln!(out, "  {hint}");
    }
    if grants.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    let denied = r.imports.iter().filter(|i| i.provision == Provision::Denied).count();
    if denied > 0 {
        let _ = writeln!(
            out,
            "note: {denied} import(s) are filesystem or network: linked, but every call fails"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::wasi_prefixes;

    #[test]
    fn wasi_prefixes_parse() {
        let table: [(&str, &[&str]); 4] = [
            ("none", &[]),
            ("wasi:io/,wasi:cli/", &["wasi:io/", "wasi:cli/"]),
            (" wasi: ", &["wasi:"]),
            ("", &[]),
        ];
        for (arg, expected) in table {
            assert_eq!(wasi_prefixes(arg), expected, "{arg}");
        }
    }
}
