//! Hot reload on hostile and awkward files (issue #11 part 5): Kubernetes ConfigMap symlink
//! swaps, files that are not regular or too large, and reload storms. File watching needs real
//! time, so the tests wait on conditions by bounded polling, never on a fixed sleep.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cache_tests::variant;
use super::tests::plugin;
use super::*;

/// Polls `done` every 10 ms until it holds; panics with `what` after `deadline`.
async fn wait_for<F, Fut>(deadline: Duration, what: &str, mut done: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if done().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < deadline, "{what}: not within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn engine_with(cache: &Path, max_module_size: usize) -> SandboxEngine {
    SandboxEngine::new(EngineConfig {
        max_instances: 2,
        cache_dir: Some(cache.to_path_buf()),
        max_module_size,
        ..EngineConfig::default()
    })
    .expect("engine")
}

fn hash_of(path: &Path) -> ContentHash {
    ContentHash::of(&std::fs::read(path).unwrap())
}

/// Replaces `path` atomically with `bytes` (write aside, rename over), as deployments do.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A ConfigMap volume: `dir/..<timestamp>/plugin.wasm`, `dir/..data -> ..<timestamp>`,
/// `dir/plugin.wasm -> ..data/plugin.wasm`. An update writes a new timestamped directory, points
/// a new `..data_tmp` link at it, renames that over `..data` and removes the old directory: no
/// event ever names `plugin.wasm`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_configmap_symlink_swap_reloads() {
    let cache = tempfile::tempdir().unwrap();
    let engine = engine_with(cache.path(), 50 << 20);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let old = "..2024_01_01_00_00_00.123";
    std::fs::create_dir(d.join(old)).unwrap();
    std::fs::copy(plugin("router"), d.join(old).join("plugin.wasm")).unwrap();
    std::os::unix::fs::symlink(old, d.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/plugin.wasm", d.join("plugin.wasm")).unwrap();

    let spec = PluginSpec::new("configmap", "test_group");
    let l = WasmListener::load(&engine, &d.join("plugin.wasm"), spec).await.unwrap();
    assert_eq!(l.version().hash, hash_of(&plugin("router")));
    let _reloader = l.watch().unwrap();

    // The kubelet's update.
    let new = "..2024_01_01_00_01_00.456";
    std::fs::create_dir(d.join(new)).unwrap();
    std::fs::copy(plugin("filter"), d.join(new).join("plugin.wasm")).unwrap();
    std::os::unix::fs::symlink(new, d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    std::fs::remove_dir_all(d.join(old)).unwrap();

    let filter = hash_of(&plugin("filter"));
    let took = wait_for(Duration::from_secs(20), "the swapped ConfigMap reloads", || async {
        l.version().hash == filter
    })
    .await;
    eprintln!("configmap swap: serving the new version after {took:?}");
    let c = l.stats().counters;
    assert_eq!((c.reloads, c.reload_failures), (1, 0), "{c:?}");
}

/// A FIFO, a link to `/dev/zero` and an oversize file put in the plugin's place are refused
/// (counted as failed reloads, the old version serving) without blocking the reload loop: a
/// valid file after them still reloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_files_are_refused_without_blocking_reloads() {
    let cache = tempfile::tempdir().unwrap();
    let max = std::fs::metadata(plugin("filter")).unwrap().len() as usize + 4096;
    let engine = engine_with(cache.path(), max);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("listener.wasm");
    std::fs::copy(plugin("router"), &path).unwrap();
    let l =
        WasmListener::load(&engine, &path, PluginSpec::new("hostile", "test_group")).await.unwrap();
    let router = l.version().hash;
    let _reloader = l.watch().unwrap();

    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo (coreutils) creates the FIFO");
    let zero = dir.path().join("zero");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let big = dir.path().join("big");
    std::fs::write(&big, vec![0u8; max + 1]).unwrap();
    for (n, hostile) in [fifo, zero, big].iter().enumerate() {
        std::fs::rename(hostile, &path).unwrap();
        let what = format!("{} refused", hostile.display());
        wait_for(Duration::from_secs(20), &what, || async {
            l.stats().counters.reload_failures > n as u64
        })
        .await;
        assert_eq!(l.version().hash, router);
    }
    replace(&path, &std::fs::read(plugin("filter")).unwrap());
    let filter = hash_of(&plugin("filter"));
    wait_for(Duration::from_secs(20), "a valid file after them reloads", || async {
        l.version().hash == filter
    })
    .await;
}

/// 50 versions written 100 ms apart: the loop waits for the file to settle (or, for a file that
/// never settles, loads what is there at most once per [`MAX_SETTLE`]) instead of
/// compiling every version, and the cache keeps only a bounded number of artifacts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_storm_causes_a_bounded_number_of_compiles_and_cache_files() {
    const VERSIONS: u32 = 50;
    let cache = tempfile::tempdir().unwrap();
    let engine = engine_with(cache.path(), 50 << 20);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("listener.wasm");
    let base = std::fs::read(plugin("filter")).unwrap();
    std::fs::write(&path, variant(&base, 0)).unwrap();
    let l = Arc::new(
        WasmListener::load(&engine, &path, PluginSpec::new("storm", "test_group")).await.unwrap(),
    );
    let _reloader = l.watch().unwrap();

    let started = Instant::now();
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    let mut last = ContentHash::of(&[]);
    for i in 1..=VERSIONS {
        pace.tick().await;
        let bytes = variant(&base, i);
        last = ContentHash::of(&bytes);
        replace(&path, &bytes);
    }
    let storm = started.elapsed();
    wait_for(Duration::from_secs(60), "the last version serves", || async {
        l.version().hash == last
    })
    .await;
    let c = l.stats().counters;
    let compiles = c.reloads + c.reload_failures;
    let files = std::fs::read_dir(cache.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "cwasm"))
        .count();
    eprintln!(
        "reload storm: {VERSIONS} versions over {storm:?} → {compiles} compiles \
         ({} reloads, {} failed), {files} cache files, serving the last after {:?}",
        c.reloads,
        c.reload_failures,
        started.elapsed()
    );
    assert!(compiles <= 6, "{compiles} compiles for {VERSIONS} versions");
    assert!(c.reloads >= 2, "the never-settling file was loaded while it kept changing");
    assert!(files <= 7, "{files} cache files");
}

/// The settle wait itself, in paused time: a file rewritten every 100 ms never settles once the
/// debounce exceeds that (a storm grew it: a writer that does not wait for us), yet is given up
/// on after [`MAX_SETTLE`], the debounce at [`MAX_DEBOUNCE`]; a file that stays still settles
/// after one debounce.
#[tokio::test(start_paused = true)]
async fn a_file_that_never_settles_is_loaded_after_max_settle() {
    use super::reload::{identity, settle};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("listener.wasm");
    std::fs::write(&path, b"v0").unwrap();
    let (_tx, mut rx) = tokio::sync::mpsc::channel(1);

    let writer = {
        let path = path.clone();
        tokio::spawn(async move {
            for i in 1u32.. {
                tokio::time::sleep(Duration::from_millis(100)).await;
                replace(&path, &i.to_le_bytes());
            }
        })
    };
    let mut debounce = 4 * DEBOUNCE;
    let started = tokio::time::Instant::now();
    settle(&path, identity(&path), &mut debounce, &mut rx).await;
    let took = started.elapsed();
    writer.abort();
    assert!(took >= MAX_SETTLE && took <= MAX_SETTLE + MAX_DEBOUNCE, "gave up after {took:?}");
    assert_eq!(debounce, MAX_DEBOUNCE);

    let mut debounce = DEBOUNCE;
    let started = tokio::time::Instant::now();
    let settled = settle(&path, identity(&path), &mut debounce, &mut rx).await;
    assert_eq!((started.elapsed(), debounce), (DEBOUNCE, DEBOUNCE));
    assert_eq!(settled, identity(&path));
}
