//! Hot reload: watch a listener's `.wasm` file and swap in each valid new version.
//!
//! **What counts as a change.** The watcher observes the file's *directory*, and any event there
//! (except reads) makes the task compare the file's identity — device, inode, size, mtime, ctime
//! of what the path resolves to *now*, links followed — with the last one it loaded. Events are
//! deliberately not filtered by file name: a symlink-swap deployment (a Kubernetes ConfigMap
//! volume renames a new `..data` link over the old one) never names the file, yet changes what
//! it resolves to. Links into *other* directories, and events the kernel dropped, are caught by
//! a poll of the same identity every [`POLL`]. A change whose content hash equals the serving
//! version's (a `touch`, a rewrite of the same bytes) reloads nothing.
//!
//! **Settling and storms.** After a change the file must stay identical for a settle period
//! before it is read, so a multi-write copy is loaded once, complete. The period starts at
//! [`DEBOUNCE`], so a deploy that waits for its version to serve before the next one (the
//! `sandbox-bench` pattern) reloads within DEBOUNCE + compile time. Each time the file changes
//! again *while* the task is settling or compiling — the writer is not waiting for us — the
//! period doubles, up to [`MAX_DEBOUNCE`]; a cycle the file stays still through resets it. A
//! file that never settles (rewritten continuously) is loaded as it is once [`MAX_SETTLE`] has
//! passed since the change was noticed, so it cannot postpone reloads forever. A storm thus costs
//! a few compiles while the period grows, then at most one per `MAX_SETTLE`, then the last
//! version: 50 versions 100 ms apart cost 3 compiles and leave 4 artifacts (`reload_tests.rs`).
//! There is at most one compile in flight per listener: the task loads versions one after
//! another, and changes during a compile are coalesced into the next check.
//!
//! **Hostile files.** The file is read by `engine::read_plugin`: opened non-blocking and checked
//! on the descriptor, so a FIFO, a device (`/dev/zero` behind a link) or a directory in its place
//! is refused without blocking the task, and a file over `EngineConfig::max_module_size` is
//! refused without being read whole.
//!
//! **Swapping.** The new version is compiled off the async path, linked and type-checked against
//! the world, and only then swapped in with one atomic pointer store. Calls clone the serving
//! `Arc` when they start, so in-flight calls finish on the old version and every call that starts
//! after the swap runs the new one. A file that fails to read, compile or validate leaves the old
//! version serving and logs an error naming the file and the reason.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::WasmError;
use super::engine::{ContentHash, SandboxEngine, read_plugin};
use super::listener::ActiveVersion;
use super::stats::SandboxStats;

/// How long a changed file must stay unchanged before it is loaded, when it is not changing
/// faster than it can be loaded.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// The longest settle period a reload storm grows it to.
pub const MAX_DEBOUNCE: Duration = Duration::from_millis(800);
/// A file still changing this long after the first change is loaded as it is.
pub const MAX_SETTLE: Duration = Duration::from_secs(2);
/// How often the file's identity is checked without an event (links into other directories,
/// dropped events).
pub const POLL: Duration = Duration::from_secs(2);

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
    if path.file_name().is_none() {
        return Err(WasmError::Watch { path: path.clone(), reason: "not a file path".into() });
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // One pending notification is enough: the task checks whatever the file is by then.
    let (tx, rx) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // An error (e.g. a queue overflow) may mean lost events: check.
        let relevant = event.map_or(true, |e| !is_read(&e.kind));
        if relevant {
            let _ = tx.try_send(());
        }
    })
    .map_err(watch_err)?;
    watcher.watch(dir, RecursiveMode::NonRecursive).map_err(watch_err)?;
    let task = tokio::spawn(reload_loop(engine, path, active, stats, plugin, rx));
    Ok(Reloader { _watcher: watcher, task })
}

/// Reads (ours included) change nothing.
fn is_read(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access(
            AccessKind::Read | AccessKind::Open(_) | AccessKind::Close(AccessMode::Read)
        )
    )
}

/// What the path resolves to now (links followed): a new inode (rename over, link swap) or a
/// rewrite in place changes it. `None`: missing or unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Identity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

pub(super) fn identity(path: &Path) -> Option<Identity> {
    let m = std::fs::metadata(path).ok()?;
    Some(Identity {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

/// Waits for the file at `path` to keep one identity for `debounce`, or for [`MAX_SETTLE`] to
/// pass; returns the identity it settled on. Every change during a wait doubles `debounce`.
pub(super) async fn settle(
    path: &Path,
    mut current: Option<Identity>,
    debounce: &mut Duration,
    rx: &mut mpsc::Receiver<()>,
) -> Option<Identity> {
    let noticed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(*debounce).await;
        // Events of the wait are what the comparison below looks at.
        while rx.try_recv().is_ok() {}
        let now = identity(path);
        if now == current {
            return now;
        }
        *debounce = (*debounce * 2).min(MAX_DEBOUNCE);
        if noticed.elapsed() >= MAX_SETTLE {
            return now;
        }
        current = now;
    }
}

async fn reload_loop(
    engine: SandboxEngine,
    path: PathBuf,
    active: Arc<ActiveVersion>,
    stats: Arc<SandboxStats>,
    plugin: Arc<str>,
    mut rx: mpsc::Receiver<()>,
) {
    // The identity of what was last checked; `None` first, so the first check compares content
    // (the file may have changed between the listener's load and this watch).
    let mut seen: Option<Option<Identity>> = None;
    let mut debounce = DEBOUNCE;
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = rx.recv() => if event.is_none() { return },
            _ = poll.tick() => {}
        }
        let now = identity(&path);
        if seen == Some(now) {
            continue;
        }
        let first_event = Instant::now();
        let settled = match seen {
            None => now,
            Some(_) => settle(&path, now, &mut debounce, &mut rx).await,
        };
        seen = Some(settled);
        // A change that did not change the content (touch, a rewrite of the same bytes).
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
        // Changed while loading: the writer does not wait for us, so wait longer next time.
        debounce =
            if identity(&path) == settled { DEBOUNCE } else { (debounce * 2).min(MAX_DEBOUNCE) };
    }
}
