//! The on-disk cache of compiled plugins: Cranelift output, i.e. **native code** the host maps
//! executable and runs without re-validating it. Whoever can put a file the host accepts as an
//! artifact runs code as the host, outside every sandbox limit. Everything here follows from
//! that.
//!
//! # Threat model
//!
//! *Trusted*: the host's own user (it can replace the binary anyway) and root. *Not trusted*:
//! any other local user or process that can reach the cache directory — through a
//! group/world-writable directory, a directory someone else owns, a shared volume, a backup
//! restored from elsewhere, or a symbolic link planted where the cache writes.
//!
//! 1. **The directory** is created `0700` and, on every use, checked on the descriptor the cache
//!    holds (so renaming another directory into its path later changes nothing): it must be a
//!    directory owned by the process's effective uid and writable by nobody else. One that is
//!    not is refused with [`CacheError::Unsafe`] naming it and what is wrong; the engine then
//!    logs a WARN and compiles every plugin instead (see [`super::SandboxEngine::new`]): the
//!    cache is an optimisation, and refusing to start over it would turn a misconfigured
//!    directory into an outage, while running without it is exactly as safe as having none.
//! 2. **Every artifact is MAC'd**: HMAC-SHA256 under a 256-bit key private to the host, over the
//!    artifact's name (content hash of the `.wasm` + engine compatibility hash) and its bytes. A
//!    file whose tag does not verify — forged, corrupted, or a *valid* artifact of another
//!    plugin copied under this one's name — is deleted and the plugin recompiled; it is never
//!    deserialized. The bytes are read into memory, verified, and deserialized from that same
//!    buffer, so the file cannot change between the check and the use (and truncating a file
//!    the host has mapped cannot fault it).
//! 3. **The key** lives in the directory (`artifact.key`, `0600`, created on first use with
//!    `O_EXCL` and linked in without replacing): it persists across restarts, which is the
//!    point of the cache. It is read only if it is a regular file owned by the process's uid and
//!    accessible by nobody else. Its secrecy and integrity rest on check 1: someone who can
//!    write the directory can replace the key, which is why such a directory is refused rather
//!    than trusted on the strength of the MAC. What the MAC adds is defence against everything
//!    that puts files there *without* the key: artifacts copied between plugins, hosts or
//!    volumes, files from before the directory was locked down, bit rot.
//! 4. **Writes never follow links**: temporary files have unpredictable names and are created
//!    with `O_CREAT|O_EXCL|O_NOFOLLOW` (`0600`) relative to the directory's descriptor, fsynced,
//!    renamed over the artifact's name (a rename replaces a planted link, it does not follow
//!    it), and the directory is fsynced, so a crash leaves the old artifact or the new one,
//!    never a torn one. Reads use `O_NOFOLLOW` too: a link at an artifact's name is removed.
//! 5. **The cache is bounded**: after each write, artifacts beyond
//!    [`super::EngineConfig::cache_max_files`] or [`super::EngineConfig::cache_max_bytes`] are
//!    deleted, least recently used first (a cache hit refreshes the file's mtime), and
//!    temporary files left by a crash are removed after an hour.
//!
//! Not covered: an attacker with the host's uid or root, and a directory *above* the cache that
//! someone else controls (they could point the path elsewhere before the cache opens it; the
//! checks on the opened directory then still refuse anything not owned by us).

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac as _};
use rustix::fs::{AtFlags, Mode, OFlags};
use sha2::Sha256;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Why the cache directory (or its key) cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    #[error("artifact cache directory {dir}: {source}")]
    Io { dir: PathBuf, source: std::io::Error },
    /// The directory could let someone else plant native code.
    #[error("artifact cache directory {dir} is {problem}; refusing to run native code from it")]
    Unsafe { dir: PathBuf, problem: String },
    #[error("artifact cache key {path}: {problem}")]
    Key { path: PathBuf, problem: String },
}

/// First bytes of an artifact file: format tag, then the 32-byte HMAC, then wasmtime's bytes.
const MAGIC: &[u8; 8] = b"RMQWCA1\0";
const TAG_LEN: usize = 32;
const HEADER_LEN: usize = MAGIC.len() + TAG_LEN;
/// Domain separation of the MAC input.
const MAC_CONTEXT: &[u8] = b"rmq-wasm compiled artifact v1\0";
const KEY_FILE: &str = "artifact.key";
const KEY_LEN: usize = 32;
/// Extension of artifact files: the only files pruning deletes (with stale temporaries).
pub(crate) const ARTIFACT_EXT: &str = ".cwasm";
const TMP_PREFIX: &str = ".tmp-";
/// A temporary file this old was left by a crashed writer.
const STALE_TMP: Duration = Duration::from_secs(3600);

type HmacSha256 = Hmac<Sha256>;

/// An opened, checked cache directory and its key.
pub(crate) struct ArtifactCache {
    path: PathBuf,
    /// The directory itself: every operation is relative to it, so what was checked is what is
    /// used.
    dir: File,
    key: [u8; KEY_LEN],
    max_files: usize,
    max_bytes: u64,
}

impl std::fmt::Debug for ArtifactCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactCache")
            .field("path", &self.path)
            .field("max_files", &self.max_files)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

impl ArtifactCache {
    /// Creates `path` (`0700`) if needed, checks it, and reads or creates its key.
    pub(crate) fn open(path: &Path, max_files: usize, max_bytes: u64) -> Result<Self, CacheError> {
        use std::os::unix::fs::DirBuilderExt as _;
        let io = |source| CacheError::Io { dir: path.into(), source };
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(io)?;
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io(e.into()))?;
        let mut cache = Self {
            path: path.into(),
            dir: File::from(fd),
            key: [0; KEY_LEN],
            max_files: max_files.max(1),
            max_bytes,
        };
        cache.check()?;
        cache.key = cache.load_or_create_key()?;
        Ok(cache)
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Re-checks the opened directory (its mode or owner may have changed since it was opened).
    pub(crate) fn check(&self) -> Result<(), CacheError> {
        let meta = self
            .dir
            .metadata()
            .map_err(|source| CacheError::Io { dir: self.path.clone(), source })?;
        let unsafe_dir = |problem: String| CacheError::Unsafe { dir: self.path.clone(), problem };
        if !meta.is_dir() {
            return Err(unsafe_dir("not a directory".into()));
        }
        if meta.uid() != euid() {
            return Err(unsafe_dir(format!(
                "owned by uid {}, not by this process's uid {}",
                meta.uid(),
                euid()
            )));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            let who = if mode & 0o002 != 0 { "world-writable" } else { "group-writable" };
            return Err(unsafe_dir(format!("{who} (mode {mode:04o}; use 0700)")));
        }
        Ok(())
    }

    fn load_or_create_key(&self) -> Result<[u8; KEY_LEN], CacheError> {
        let key_path = self.path.join(KEY_FILE);
        let key_err = |problem: String| CacheError::Key { path: key_path.clone(), problem };
        // Two attempts: another process may create the key between our open and our link.
        for _ in 0..2 {
            match rustix::fs::openat(
                &self.dir,
                KEY_FILE,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => return read_key(File::from(fd)).map_err(key_err),
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(key_err(std::io::Error::from(e).to_string())),
            }
            let key: [u8; KEY_LEN] = rand::random();
            let tmp = self.write_tmp(&key).map_err(|e| key_err(e.to_string()))?;
            // `linkat` never replaces: if another process won the race, read its key.
            let linked = rustix::fs::linkat(&self.dir, &tmp, &self.dir, KEY_FILE, AtFlags::empty());
            let _ = rustix::fs::unlinkat(&self.dir, &tmp, AtFlags::empty());
            match linked {
                Ok(()) => {
                    let _ = rustix::fs::fsync(&self.dir);
                    return Ok(key);
                }
                Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(key_err(std::io::Error::from(e).to_string())),
            }
        }
        Err(key_err("created and removed concurrently".into()))
    }

    /// Writes `parts` to a new temporary file (unpredictable name, `O_EXCL|O_NOFOLLOW`, `0600`)
    /// and fsyncs it; returns its name.
    fn write_tmp(&self, parts: &[u8]) -> std::io::Result<String> {
        self.write_tmp_parts(&[parts])
    }

    fn write_tmp_parts(&self, parts: &[&[u8]]) -> std::io::Result<String> {
        let name = format!("{TMP_PREFIX}{:016x}", rand::random::<u64>());
        let fd = rustix::fs::openat(
            &self.dir,
            &name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let mut file = File::from(fd);
        let written =
            parts.iter().try_for_each(|p| file.write_all(p)).and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = rustix::fs::unlinkat(&self.dir, &name, AtFlags::empty());
            return Err(e);
        }
        Ok(name)
    }

    fn mac(&self, name: &str, artifact: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(MAC_CONTEXT);
        mac.update(&(name.len() as u64).to_le_bytes());
        mac.update(name.as_bytes());
        mac.update(artifact);
        mac
    }

    /// The verified artifact stored under `name`, or `None` (absent, or refused and removed:
    /// not a regular file of ours, bad header, MAC mismatch). `Err` only when the directory
    /// itself fails its checks.
    pub(crate) fn get(&self, name: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.check()?;
        let fd = match rustix::fs::openat(
            &self.dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => {
                // ELOOP: a symbolic link planted at the name.
                self.refuse(name, &format!("cannot open it: {}", std::io::Error::from(e)));
                return Ok(None);
            }
        };
        let mut file = File::from(fd);
        let Ok(meta) = file.metadata() else { return Ok(None) };
        if !meta.is_file() || meta.uid() != euid() || meta.mode() & 0o022 != 0 {
            self.refuse(name, "not a regular file owned and writable only by this user");
            return Ok(None);
        }
        if meta.len() < HEADER_LEN as u64 || meta.len() > self.max_bytes.max(1 << 20) {
            self.refuse(name, &format!("implausible size {}", meta.len()));
            return Ok(None);
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        if let Err(e) = std::io::Read::by_ref(&mut file).take(meta.len()).read_to_end(&mut bytes) {
            self.refuse(name, &format!("reading it: {e}"));
            return Ok(None);
        }
        let (header, artifact) = bytes.split_at(HEADER_LEN.min(bytes.len()));
        let verified = header.len() == HEADER_LEN
            && header.starts_with(MAGIC)
            && self.mac(name, artifact).verify_slice(&header[MAGIC.len()..]).is_ok();
        if !verified {
            self.refuse(name, "its MAC does not verify (forged, corrupted or another plugin's)");
            return Ok(None);
        }
        // Recently used: pruning removes the least recently used first.
        let _ = file.set_modified(SystemTime::now());
        bytes.drain(..HEADER_LEN);
        Ok(Some(bytes))
    }

    /// Deletes `name` (an artifact that failed verification or deserialization).
    pub(crate) fn refuse(&self, name: &str, why: &str) {
        tracing::warn!(
            file = %self.path.join(name).display(),
            reason = why,
            "refusing a cached artifact; the plugin is recompiled"
        );
        let _ = rustix::fs::unlinkat(&self.dir, name, AtFlags::empty());
    }

    /// Stores `artifact` under `name` (temporary file, fsync, rename, directory fsync), then
    /// prunes the cache.
    pub(crate) fn put(&self, name: &str, artifact: &[u8]) -> Result<(), CacheError> {
        self.check()?;
        let io = |source| CacheError::Io { dir: self.path.clone(), source };
        let tag = self.mac(name, artifact).finalize().into_bytes();
        let tmp = self.write_tmp_parts(&[MAGIC, &tag, artifact]).map_err(io)?;
        if let Err(e) = rustix::fs::renameat(&self.dir, &tmp, &self.dir, name) {
            let _ = rustix::fs::unlinkat(&self.dir, &tmp, AtFlags::empty());
            return Err(io(e.into()));
        }
        // The rename is durable once the directory is: a crash otherwise may lose it (harmless)
        // but never expose a torn file, since the content was fsynced before.
        let _ = rustix::fs::fsync(&self.dir);
        self.prune(name);
        Ok(())
    }

    /// Deletes the least recently used artifacts beyond the caps (never `keep`, the one just
    /// written), and stale temporary files.
    fn prune(&self, keep: &str) {
        let Ok(entries) = rustix::fs::Dir::read_from(&self.dir) else { return };
        let now = SystemTime::now();
        let mut artifacts = Vec::new();
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            let is_tmp = name.starts_with(TMP_PREFIX);
            if !(is_tmp || name.ends_with(ARTIFACT_EXT)) {
                continue;
            }
            let Ok(fd) = rustix::fs::openat(
                &self.dir,
                &name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) else {
                continue;
            };
            let Ok(meta) = File::from(fd).metadata() else { continue };
            let modified = meta.modified().unwrap_or(now);
            if is_tmp {
                if now.duration_since(modified).is_ok_and(|age| age > STALE_TMP) {
                    let _ = rustix::fs::unlinkat(&self.dir, &name, AtFlags::empty());
                }
            } else if name != keep {
                artifacts.push((modified, meta.len(), name));
            }
        }
        // Newest first; `keep` counts as the newest.
        artifacts.sort_by_key(|a| std::cmp::Reverse(a.0));
        let keep_len = self.dir_entry_len(keep);
        let (mut files, mut bytes) = (1usize, keep_len);
        for (_, len, name) in artifacts {
            if files < self.max_files && bytes.saturating_add(len) <= self.max_bytes {
                files += 1;
                bytes += len;
            } else {
                tracing::debug!(file = %self.path.join(&name).display(), "pruning a cached artifact");
                let _ = rustix::fs::unlinkat(&self.dir, &name, AtFlags::empty());
            }
        }
    }

    fn dir_entry_len(&self, name: &str) -> u64 {
        rustix::fs::statat(&self.dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map(|st| u64::try_from(st.st_size).unwrap_or(0))
            .unwrap_or(0)
    }
}

/// Reads the key from its opened file, which must be a regular file of exactly [`KEY_LEN`]
/// bytes, owned by this user and accessible by nobody else.
fn read_key(mut file: File) -> Result<[u8; KEY_LEN], String> {
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.uid() != euid() {
        return Err(format!("owned by uid {}, not by this process's uid {}", meta.uid(), euid()));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!("accessible to other users (mode {mode:04o}; must be 0600)"));
    }
    let mut key = [0; KEY_LEN];
    if meta.len() != KEY_LEN as u64 {
        return Err(format!("{} bytes, not {KEY_LEN}", meta.len()));
    }
    file.read_exact(&mut key).map_err(|e| e.to_string())?;
    Ok(key)
}

/// Turns verified artifact bytes back into a component.
///
/// `Component::deserialize` is `unsafe` because wasmtime runs the artifact's machine code
/// without re-validating it: a forged or corrupted artifact could do anything.
#[allow(unsafe_code, reason = "deserializing our own MAC-verified artifact; see SAFETY")]
pub(crate) fn deserialize_verified(
    engine: &Engine,
    artifact: &[u8],
) -> wasmtime::Result<Component> {
    // SAFETY: `artifact` is the buffer `ArtifactCache::get` returned, i.e. bytes whose
    // HMAC-SHA256 under the host's private key verified over this exact name and content. Only
    // `ArtifactCache::put` computes such tags, and it is only given `Component::serialize` of a
    // component this process's engine compiled from the `.wasm` whose sha256 the name carries,
    // together with this engine's compatibility hash. So these are bytes this host produced for
    // this input and this engine configuration; wasmtime additionally checks the header
    // (version, target, engine flags). They are deserialized from memory (copied into a fresh
    // mapping by wasmtime), so no file can change under the running code. The key's secrecy
    // rests on the directory checks documented at the top of this module.
    unsafe { Component::deserialize(engine, artifact) }
}
