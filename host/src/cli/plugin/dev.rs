//! `rmq-wasm dev --config FILE`: the whole edit → serve loop in one command. It runs the config
//! exactly as `rmq-wasm run` does and, for every listener whose `.wasm` is the output of a
//! `plugin new` project (`DIR/NAME.wasm` where DIR is a listener project), watches DIR's sources
//! and rebuilds on change with `plugin build`. The build moves the new `.wasm` into place in one
//! rename, and the listener's own hot reload (`wasm::reload`) swaps it in: in-flight calls finish
//! on the old version. A build that fails prints the tool's output and changes nothing — the
//! running version keeps serving until a build succeeds.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::build::{build_dir, detect};
use crate::cli::run::RunConfig;

#[derive(Debug, clap::Args)]
pub(crate) struct DevArgs {
    /// The run config (as for `rmq-wasm run`).
    #[arg(long)]
    config: PathBuf,
    /// Stop after this long (e.g. `10m`), as `run --duration`.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

/// Saves come in bursts (an editor's write + rename, a `git checkout`): wait this long after the
/// last change before building.
const QUIET: Duration = Duration::from_millis(300);

pub(crate) async fn dev(args: DevArgs) -> anyhow::Result<()> {
    let config = RunConfig::load(&args.config)?;
    let mut projects = BTreeSet::new();
    for section in &config.listeners {
        match project_of(&section.wasm) {
            Some(dir) => {
                if !section.hot_reload {
                    tracing::warn!(group = %section.group, "hot_reload = false: rebuilds of {} will not be served", dir.display());
                }
                projects.insert(dir);
            }
            None => tracing::warn!(
                wasm = %section.wasm.display(),
                "not the output of a listener project (DIR/NAME.wasm with DIR made by `plugin new`): served, not rebuilt"
            ),
        }
    }
    // A project never built yet: build it before `run` loads it.
    for dir in &projects {
        let name = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if !dir.join(format!("{name}.wasm")).is_file() {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || build_dir(&dir)).await??;
        }
    }
    let mut watchers = Vec::new();
    for dir in projects {
        tracing::info!(project = %dir.display(), "watching the sources; a change rebuilds and reloads");
        watchers.push(SourceWatcher::start(dir)?);
    }
    let result = crate::cli::run::run(&args.config, args.duration).await;
    drop(watchers);
    result
}

/// The project a listener's `.wasm` is built from: its directory, if the file is `NAME.wasm`
/// with NAME the directory's name and the directory a listener project.
fn project_of(wasm: &Path) -> Option<PathBuf> {
    let dir = wasm.parent()?.canonicalize().ok()?;
    let name = dir.file_name()?.to_str()?;
    (wasm.file_name()? == format!("{name}.wasm").as_str() && detect(&dir).is_ok()).then_some(dir)
}

/// Whether a changed path under the project is a source the author edited, rather than a
/// build's own output (target/, node_modules/, the `.wasm` and its temporaries, Cargo.lock) or
/// an editor's scratch file (dotfiles, `~` backups) — those must not start a rebuild loop.
fn is_source_change(project: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(project) else { return false };
    let generated = ["target", "node_modules", "__pycache__", ".git"];
    let in_generated = rel.components().any(|c| match c {
        Component::Normal(name) => generated.iter().any(|g| name == *g),
        _ => false,
    });
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !in_generated
        && !name.is_empty()
        && !name.starts_with('.')
        && !name.ends_with('~')
        && !name.ends_with(".wasm")
        && !name.ends_with(".wasm.tmp")
        && name != "Cargo.lock"
}

/// One project's watcher and its rebuild task (stopped when dropped).
struct SourceWatcher {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SourceWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SourceWatcher {
    fn start(dir: PathBuf) -> anyhow::Result<Self> {
        // One pending change is enough: the build reads whatever the sources are by then.
        let (tx, rx) = mpsc::channel::<()>(1);
        let project = dir.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let changed = match event {
                    Ok(e) => {
                        !matches!(e.kind, EventKind::Access(_))
                            && e.paths.iter().any(|p| is_source_change(&project, p))
                    }
                    // Lost events (a queue overflow): rebuild to be sure.
                    Err(_) => true,
                };
                if changed {
                    let _ = tx.try_send(());
                }
            })
            .with_context(|| format!("watching {}", dir.display()))?;
        watcher
            .watch(&dir, RecursiveMode::Recursive)
            .with_context(|| format!("watching {}", dir.display()))?;
        let task = tokio::spawn(rebuild_loop(dir, rx));
        Ok(Self { _watcher: watcher, task })
    }
}

/// Waits for a change, lets the burst settle, builds; a change made during a build is queued in
/// the channel and starts the next build.
async fn rebuild_loop(dir: PathBuf, mut changes: mpsc::Receiver<()>) {
    while changes.recv().await.is_some() {
        while let Ok(Some(())) = tokio::time::timeout(QUIET, changes.recv()).await {}
        tracing::info!(project = %dir.display(), "sources changed: rebuilding");
        let project = dir.clone();
        match tokio::task::spawn_blocking(move || build_dir(&project)).await {
            Ok(Ok(())) => {
                tracing::info!(project = %dir.display(), "rebuilt; the listener reloads it")
            }
            Ok(Err(e)) => tracing::error!(
                project = %dir.display(),
                "build failed: {e:#}; the running version keeps serving"
            ),
            Err(e) => tracing::error!(project = %dir.display(), "build task failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_told_from_build_output_and_scratch_files() {
        let p = Path::new("/src/my-listener");
        let table = [
            ("main.go", true),
            ("src/lib.rs", true),
            ("rmq_wasm/views.py", true),
            ("Cargo.toml", true),
            ("my-listener.wasm", false),
            ("my-listener.core.wasm", false),
            ("my-listener.wasm.tmp", false),
            ("target/wasm32-wasip2/release/x.wasm", false),
            ("target/debug/build/x/output", false),
            ("node_modules/x/index.js", false),
            ("__pycache__/app.cpython-311.pyc", false),
            (".git/index", false),
            (".main.go.swp", false),
            ("app.py~", false),
            ("Cargo.lock", false),
        ];
        for (rel, expected) in table {
            assert_eq!(is_source_change(p, &p.join(rel)), expected, "{rel}");
        }
        assert!(!is_source_change(p, Path::new("/elsewhere/main.go")));
    }

    #[test]
    fn only_a_projects_own_output_is_rebuilt() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("orders");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("go.mod"), "module orders\n").unwrap();
        assert_eq!(project_of(&dir.join("orders.wasm")), Some(dir.canonicalize().unwrap()));
        assert_eq!(project_of(&dir.join("other.wasm")), None);
        assert_eq!(project_of(&root.path().join("orders.wasm")), None);
    }
}
