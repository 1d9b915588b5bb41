//! The compiled-artifact cache under attack (issue #11 part 4): whoever can write the cache
//! directory must not get the host to run native code of their choosing. Each test plays one
//! attacker move against a fresh cache directory and a dedicated engine.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use super::tests::plugin;
use super::*;

fn engine_with_cache(dir: &Path) -> SandboxEngine {
    SandboxEngine::new(EngineConfig {
        max_instances: 2,
        cache_dir: Some(dir.to_path_buf()),
        ..EngineConfig::default()
    })
    .expect("engine")
}

/// The `.cwasm` artifacts in `dir`.
fn artifacts(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    files.sort();
    files
}

/// `base` (a component) with a custom section carrying `i` appended: a distinct, valid version
/// of the same plugin (a different content hash, so a different compile and cache entry).
pub(crate) fn variant(base: &[u8], i: u32) -> Vec<u8> {
    let name = b"rmq-wasm-test-version";
    let payload = i.to_le_bytes();
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = base.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8); // LEB128 of a length < 128
    out.extend_from_slice(&section);
    out
}

/// The attacker copies a *valid* artifact (router's, compiled by this very engine) over the
/// artifact name of another plugin (filter). Its header, target and engine flags all match:
/// only a MAC binding the artifact to its name tells the two apart.
#[tokio::test]
async fn a_valid_artifact_of_another_plugin_planted_under_this_plugins_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_cache(dir.path());
    drop(engine.load(&plugin("filter")).await.unwrap());
    let filter_artifact = artifacts(dir.path()).pop().expect("filter is cached");
    drop(engine.load(&plugin("router")).await.unwrap());
    let router_artifact =
        artifacts(dir.path()).into_iter().find(|p| *p != filter_artifact).expect("router cached");

    // Plant router's artifact under filter's name (by rename, as an attacker would: a new inode).
    let planted = dir.path().join("planted");
    std::fs::copy(&router_artifact, &planted).unwrap();
    std::fs::rename(&planted, &filter_artifact).unwrap();

    let reloaded = engine.load(&plugin("filter")).await.unwrap();
    assert!(!reloaded.from_cache, "the planted artifact (router's code) was loaded as filter");
    assert_ne!(
        std::fs::read(&filter_artifact).unwrap(),
        std::fs::read(&router_artifact).unwrap(),
        "the planted artifact is replaced by filter's own"
    );
}

/// A cache directory others can write (group-writable, or owned by another user) is not used:
/// nothing is read from it and nothing written into it.
#[tokio::test]
async fn a_cache_dir_others_can_write_is_not_used() {
    let root = tempfile::tempdir().unwrap();
    let group_writable = root.path().join("group-writable");
    std::fs::create_dir(&group_writable).unwrap();
    std::fs::set_permissions(&group_writable, std::fs::Permissions::from_mode(0o770)).unwrap();
    let foreign = root.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Another owner (the tests may run as root, which can give a directory away; otherwise a
    // directory we do not own is simulated by `/` further down).
    let chowned = std::process::Command::new("chown").arg("65534").arg(&foreign).status();
    let mut dirs = vec![group_writable];
    if chowned.is_ok_and(|s| s.success()) {
        dirs.push(foreign);
    }
    for dir in dirs {
        let engine = engine_with_cache(&dir);
        let first = engine.load(&plugin("filter")).await.unwrap();
        let second = engine.load(&plugin("filter")).await.unwrap();
        assert!(!first.from_cache && !second.from_cache, "{} was used", dir.display());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "{} written", dir.display());
    }
}

/// A cache directory the engine creates is private to the user (0700).
#[tokio::test]
async fn a_new_cache_dir_is_created_private() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cache");
    let engine = engine_with_cache(&dir);
    drop(engine.load(&plugin("filter")).await.unwrap());
    let mode = std::fs::metadata(&dir).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o700, "cache dir created {mode:o}");
    assert!(engine.load(&plugin("filter")).await.unwrap().from_cache, "and it is used");
}

/// Symbolic links planted where the cache writes (the artifact's name, and the temporary name
/// it used to derive from the artifact's name and the pid) are never followed: the file they
/// point to is left alone.
#[tokio::test]
async fn a_symlink_planted_at_the_temp_or_artifact_path_is_not_followed() {
    // Learn the artifact's name from a scratch cache.
    let scratch = tempfile::tempdir().unwrap();
    drop(engine_with_cache(scratch.path()).load(&plugin("filter")).await.unwrap());
    let name = artifacts(scratch.path()).pop().unwrap().file_name().unwrap().to_owned();

    let victims = tempfile::tempdir().unwrap();
    let victim = victims.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join(&name);
    let tmp = artifact.with_extension(format!("tmp{}", std::process::id()));
    std::os::unix::fs::symlink(&victim, &artifact).unwrap();
    std::os::unix::fs::symlink(&victim, &tmp).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();

    let engine = engine_with_cache(dir.path());
    let first = engine.load(&plugin("filter")).await.unwrap();
    assert!(!first.from_cache, "a symlink is not an artifact");
    let victim_now = std::fs::read(&victim).unwrap();
    assert!(
        victim_now == b"precious",
        "the link's target was overwritten ({} bytes)",
        victim_now.len()
    );
    let meta = std::fs::symlink_metadata(&artifact).unwrap();
    assert!(meta.is_file(), "the artifact is a regular file again, not the planted link");
    assert!(engine.load(&plugin("filter")).await.unwrap().from_cache);
}

/// The cache stays bounded: old versions' artifacts are pruned, least recently used first.
#[tokio::test]
async fn pruning_keeps_the_cache_bounded() {
    const CAP: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let engine = SandboxEngine::new(EngineConfig {
        max_instances: 2,
        cache_dir: Some(dir.path().to_path_buf()),
        cache_max_files: CAP,
        ..EngineConfig::default()
    })
    .unwrap();
    let base = std::fs::read(plugin("filter")).unwrap();
    let src = tempfile::tempdir().unwrap();
    for i in 0..(CAP as u32 + 4) {
        let path = src.path().join(format!("v{i}.wasm"));
        std::fs::write(&path, variant(&base, i)).unwrap();
        drop(engine.load(&path).await.unwrap());
        let n = artifacts(dir.path()).len();
        assert!(n <= CAP, "{n} artifacts after {} versions, cap {CAP}", i + 1);
    }
}

/// The refusal names the directory and what is wrong with it; the engine keeps running
/// without a cache ([`SandboxEngine::cache_dir`] is `None`).
#[test]
fn a_refused_dir_is_named_with_its_problem_and_the_engine_runs_without_a_cache() {
    use super::cache::ArtifactCache;
    let root = tempfile::tempdir().unwrap();
    let cases = [(0o770, "is group-writable (mode 0770"), (0o707, "is world-writable (mode 0707")];
    for (mode, problem) in cases {
        let dir = root.path().join(format!("{mode:o}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        let e = ArtifactCache::open(&dir, 8, 1 << 30).unwrap_err().to_string();
        assert!(e.contains(&*dir.to_string_lossy()) && e.contains(problem), "{e}");
        assert!(engine_with_cache(&dir).cache_dir().is_none());
    }
    let ok = root.path().join("ok");
    assert_eq!(engine_with_cache(&ok).cache_dir(), Some(ok.as_path()));
}

/// The key is created `0600`; a key file others can read (they could forge MACs) or a link in
/// its place is refused.
#[test]
fn the_key_is_private_and_a_lax_or_linked_key_is_refused() {
    use super::cache::ArtifactCache;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cache");
    ArtifactCache::open(&dir, 8, 1 << 30).unwrap();
    let key = dir.join("artifact.key");
    let meta = std::fs::symlink_metadata(&key).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.len()), (0o600, 32));

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = ArtifactCache::open(&dir, 8, 1 << 30).unwrap_err().to_string();
    assert!(e.contains(&*key.to_string_lossy()) && e.contains("mode 0644"), "{e}");

    std::fs::remove_file(&key).unwrap();
    let elsewhere = root.path().join("attacker.key");
    std::fs::write(&elsewhere, [0u8; 32]).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &key).unwrap();
    let e = ArtifactCache::open(&dir, 8, 1 << 30).unwrap_err().to_string();
    assert!(e.contains(&*key.to_string_lossy()), "{e}");
}
