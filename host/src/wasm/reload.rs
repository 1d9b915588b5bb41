//! Hot reload: watch a listener's `.wasm` file and swap in each valid new version.
//!
//! The watcher observes the file's *directory* (editors and `cp`/`mv` replace files, which a
//! watch on the file itself would lose) and keeps events for the file's name only. Events are
//! coalesced: after the first one the task waits until the file has been quiet for
//! [`DEBOUNCE`], so a multi-write copy is loaded once, complete. The new version is compiled
//! off the async path, linked and type-checked against the world, and only then swapped in with
//! one atomic pointer store. Calls clone the serving `Arc` when they start, so in-flight calls
//! finish on the old version and every call that starts after the swap runs the new one. A file
//! that fails to read, compile or validate leaves the old version serving and logs an error
//! naming the file and the reason.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::WasmError;
use super::engine::{ContentHash, SandboxEngine, read_plugin};
use super::listener::ActiveVersion;
use super::stats::SandboxStats;

/// Quiet time after the last change event before the file is loaded.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// A running hot-reload watch. Dropping it stops watching.
#[derive(Debug)]
pub struct Reloader {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching `path` for `active`. Must be called inside a tokio runtime.
pub(crate) fn watch(
    engine: SandboxEngine,
    path: PathBuf,
    active: Arc<ActiveVersion>,
    stats: Arc<SandboxStats>,
    plugin: Arc<str>,
) -> Result<Reloader, WasmError> {
    let watch_err =
        |e: notify::Error| WasmError::Watch { path: path.clone(), reason: e.to_string() };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(ToOwned::to_owned)
        .ok_or_else(|| WasmError::Watch { path: path.clone(), reason: "not a file path".into() })?;
    // One pending notification is enough: the task reloads whatever the file holds by then.
    let (tx, rx) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let relevant =
            matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_) | EventKind::Any)
                && event.paths.iter().any(|p| p.file_name() == Some(name.as_os_str()));
        if relevant {
            let _ = tx.try_send(());
        }
    })
    .map_err(watch_err)?;
    watcher.watch(dir, RecursiveMode::NonRecursive).map_err(watch_err)?;
    let task = tokio::spawn(reload_loop(engine, path, active, stats, plugin, rx));
    Ok(Reloader { _watcher: watcher, task })
}

async fn reload_loop(
    engine: SandboxEngine,
    path: PathBuf,
    active: Arc<ActiveVersion>,
    stats: Arc<SandboxStats>,
    plugin: Arc<str>,
    mut rx: mpsc::Receiver<()>,
) {
    while rx.recv().await.is_some() {
        let first_event = Instant::now();
        // Debounce: wait for a quiet period.
        while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
        // An event that did not change the content (touch, a rewrite of the same bytes).
        let (file, max) = (path.clone(), engine.config().max_module_size);
        let unchanged = match tokio::task::spawn_blocking(move || read_plugin(&file, max)).await {
            Ok(Ok(bytes)) => ContentHash::of(&bytes) == active.load().hash,
            // Unreadable, oversize or not a file: the load below says why.
            _ => false,
        };
        if unchanged {
            continue;
        }
        match engine.load(&path).await {
            Ok(version) => {
                let new = version.hash.short();
                let old = active.swap(Arc::new(version));
                SandboxStats::add(&stats.reloads, 1);
                tracing::info!(
                    plugin = &*plugin,
                    path = %path.display(),
                    from = %old.hash.short(),
                    to = %new,
                    swap_ms = first_event.elapsed().as_secs_f64() * 1e3,
                    "plugin reloaded; new calls use the new version"
                );
            }
            Err(e) => {
                SandboxStats::add(&stats.reload_failures, 1);
                tracing::error!(
                    plugin = &*plugin,
                    path = %path.display(),
                    serving = %active.load().hash.short(),
                    error = %e,
                    "plugin reload failed; the previous version keeps serving"
                );
            }
        }
    }
}
