//! The one wasmtime [`Engine`] of the process, its import [`Linker`], the epoch ticker, and the
//! compile path: `.wasm` → (on-disk artifact cache) → [`Component`] → validated
//! [`PluginVersion`] holding one `InstancePre` per listener version.
//!
//! Why these settings:
//! - **Pooling allocator + copy-on-write memory init**: a fresh instance per consume call is the
//!   isolation model (nothing leaks from one batch to the next), and pooling makes that cheap:
//!   slots are reserved once, a memory image is mapped copy-on-write instead of copied.
//! - **Fuel** is the deterministic CPU budget ("same message + same fuel → same abort"), which
//!   poison-pill detection relies on; **epochs** are the wall-clock backstop, ticked by one
//!   thread every [`EngineConfig::epoch_tick`].
//! - **A bounded wasm stack** turns runaway recursion into a stack-overflow trap long before the
//!   fiber's native stack is at risk.
//! - **Compilation happens on the blocking pool**, never on a tokio worker, and its result is
//!   cached on disk keyed by the content hash and the engine's compatibility hash, so a restart or
//!   a reload of an unchanged file costs a read and a MAC check, not a Cranelift run. The cache
//!   holds native code: its threat model and defences are in `cache.rs`.

use std::fmt;
use std::hash::Hasher;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
};

use super::WasmError;
use super::bindings::{Listener, ListenerPre};
use super::cache::{ARTIFACT_EXT, ArtifactCache, deserialize_verified};
use super::host::HostState;
use super::lower::TypeChecked;

/// Engine-wide limits. Per-listener limits (fuel, timeout, memory cap) live in
/// [`super::ListenerLimits`] and must fit inside these.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Sandboxes that may run at once across all listeners: the pooling allocator's capacity.
    /// Callers beyond it wait for a slot (backpressure), they are never refused.
    pub max_instances: u32,
    /// The largest linear memory any instance may have: the pool's slot size and therefore the
    /// upper bound of every listener's memory cap.
    pub max_memory_size: usize,
    /// Native stack a wasm call may use before it traps with a stack overflow.
    pub max_wasm_stack: usize,
    /// Epoch ticker period: the resolution of the wall-clock deadline.
    pub epoch_tick: Duration,
    /// Where precompiled artifacts are cached (`None`: compile every time). Created `0700`; a
    /// directory owned by another user or writable by group/others is refused with a WARN and
    /// the engine compiles without a cache (see `cache.rs` for the threat model).
    pub cache_dir: Option<PathBuf>,
    /// The most artifacts the cache keeps; beyond it the least recently used are deleted.
    pub cache_max_files: usize,
    /// The most bytes of artifacts the cache keeps (the newest artifact is always kept).
    pub cache_max_bytes: u64,
    /// The largest `.wasm` file loaded (wasmCloud's default: 50 MiB). A plugin file is read
    /// whole and compiled: without a cap, a huge file (or `/dev/zero` behind a link) takes the
    /// host's memory.
    pub max_module_size: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_instances: 64,
            max_memory_size: 256 * 1024 * 1024,
            max_wasm_stack: 512 * 1024,
            epoch_tick: Duration::from_millis(10),
            cache_dir: default_cache_dir(),
            cache_max_files: 64,
            cache_max_bytes: 2 << 30,
            max_module_size: 50 * 1024 * 1024,
        }
    }
}

/// Reads a plugin file: a regular file (symbolic links followed, so a swapped link reloads) of
/// at most `max` bytes. Opened non-blocking and checked on the open descriptor, so a FIFO or a
/// device put in its place is refused instead of blocking or streaming forever.
pub(crate) fn read_plugin(path: &Path, max: usize) -> Result<Vec<u8>, WasmError> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let read_error = |source| WasmError::Read { path: path.into(), source };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(WasmError::NotAFile { path: path.into(), kind: file_kind(&meta) });
    }
    let too_large = |size| WasmError::TooLarge { path: path.into(), size, max };
    if meta.len() > max as u64 {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow after the check: read one byte past the cap at most.
    file.take(max as u64 + 1).read_to_end(&mut bytes).map_err(read_error)?;
    if bytes.len() > max {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    let t = meta.file_type();
    match () {
        () if t.is_dir() => "a directory",
        () if t.is_fifo() => "a FIFO",
        () if t.is_socket() => "a socket",
        () if t.is_char_device() || t.is_block_device() => "a device",
        () => "not a regular file",
    }
}

/// `$XDG_CACHE_HOME/rmq-wasm` or `~/.cache/rmq-wasm`.
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("rmq-wasm"))
}

/// Core instances a component may create (componentize-py links CPython as dozens of shared
/// libraries, each its own core instance: 38 for our Python plugin) and memories/tables per
/// component. The pool's totals are these times `max_instances`, so that a full set of the
/// largest components still fits: a permit of the instance semaphore always finds its slots.
const CORE_INSTANCES_PER_COMPONENT: u32 = 64;
const MEMORIES_PER_COMPONENT: u32 = 4;
const TABLES_PER_COMPONENT: u32 = 16;
/// Function-table slots per table: CPython's indirect-call table is large.
const TABLE_ELEMENTS: usize = 100_000;
/// Guest frames kept in a trap's backtrace.
const BACKTRACE_FRAMES: usize = 24;
/// VMContext size of one core instance; many imports/functions make it large for CPython.
const CORE_INSTANCE_SIZE: usize = 4 << 20;
/// Linear-memory bytes and table bytes a freed pool slot keeps mapped and resets in place.
const MEMORY_KEEP_RESIDENT: usize = 2 << 20;
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// The process's wasm engine. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct SandboxEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    config: EngineConfig,
    /// Hex of `Engine::precompile_compatibility_hash`: part of every cache key.
    compat: String,
    /// The artifact cache, if configured and its directory passed the checks.
    cache: Option<ArtifactCache>,
    /// One permit per pool slot (see [`EngineConfig::max_instances`]).
    instances: Arc<Semaphore>,
    /// Warm listeners' pools of idle instances, each holding a pool slot: a call that finds no
    /// free slot takes one from them instead of waiting behind instances nobody is using.
    idle: std::sync::Mutex<Vec<Weak<dyn IdleInstances>>>,
}

/// Idle warm-mode instances that can give their pool slots back.
pub(crate) trait IdleInstances: Send + Sync {
    /// Drops one idle instance (freeing its pool slot); false when there is none.
    fn evict_one(&self) -> bool;
}

/// How often a call waiting for a pool slot looks again for idle warm instances to evict: a
/// call that ends in warm mode parks its instance (keeping the slot) instead of releasing it.
const IDLE_RECHECK: Duration = Duration::from_millis(20);

impl fmt::Debug for SandboxEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxEngine")
            .field("config", &self.inner.config)
            .field("compat", &self.inner.compat)
            .finish_non_exhaustive()
    }
}

impl SandboxEngine {
    /// Builds the engine, links the imports (the `rmq:listener` interfaces and deny-by-default
    /// WASI) and starts the epoch ticker, which stops by itself once the engine is dropped.
    pub fn new(config: EngineConfig) -> Result<Self, WasmError> {
        let mut pool = PoolingAllocationConfig::new();
        let n = config.max_instances.max(1);
        pool.total_component_instances(n)
            .total_core_instances(n * CORE_INSTANCES_PER_COMPONENT)
            .total_memories(n * MEMORIES_PER_COMPONENT)
            .total_tables(n * TABLES_PER_COMPONENT)
            .total_stacks(n)
            .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(MEMORIES_PER_COMPONENT)
            .max_tables_per_component(TABLES_PER_COMPONENT)
            .table_elements(TABLE_ELEMENTS)
            .max_core_instance_size(CORE_INSTANCE_SIZE)
            .max_memory_size(config.max_memory_size)
            // A freed table is reset in place instead of decommitted (one madvise per table
            // per call otherwise): ~7 µs of a call with the Rust filter plugin.
            .table_keep_resident(TABLE_KEEP_RESIDENT);
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            // With PAGEMAP_SCAN (Linux 6.7+) a freed memory's touched pages (only those) are
            // reset by memset and stay mapped, so the next instance does not page-fault its
            // stack and heap back in: an empty call 16 µs → 9.5 µs (`sandbox-bench`). Without
            // the scan, keeping memory resident is worse than not (it memsets the whole kept
            // size every time), so older kernels keep wasmtime's default (decommit). RSS cost:
            // at most 2 MiB per pool memory that has been used.
            pool.linear_memory_keep_resident(MEMORY_KEEP_RESIDENT).pagemap_scan(Enabled::Yes);
        }

        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .memory_init_cow(true)
            .max_wasm_stack(config.max_wasm_stack)
            // The fiber stack must hold the wasm stack plus the host frames (imports, libcalls)
            // that run on it.
            .async_stack_size(config.max_wasm_stack + 1024 * 1024)
            .cranelift_opt_level(OptLevel::Speed)
            // Enough frames to see where a trap happened; a stack overflow would otherwise log
            // thousands of identical ones.
            .wasm_backtrace_max_frames(NonZeroUsize::new(BACKTRACE_FRAMES))
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(|e| WasmError::Engine(format!("{e:#}")))?;

        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| WasmError::Engine(format!("linking WASI: {e:#}")))?;
        Listener::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| WasmError::Engine(format!("linking rmq:listener imports: {e:#}")))?;

        let mut hasher = Sha256Hasher::default();
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        let compat = hex(&hasher.0.finalize()[..8]);

        let cache = config.cache_dir.as_deref().and_then(|dir| {
            ArtifactCache::open(dir, config.cache_max_files, config.cache_max_bytes)
                .inspect_err(|e| {
                    // A refusal to start would turn a misconfigured cache directory into an
                    // outage; compiling every time is as safe as having no cache.
                    tracing::warn!(
                        error = %e,
                        "the compiled-artifact cache is disabled: every plugin load compiles"
                    );
                })
                .ok()
        });

        spawn_epoch_ticker(&engine, config.epoch_tick);
        let instances = Arc::new(Semaphore::new(n as usize));
        let idle = std::sync::Mutex::new(Vec::new());
        let inner = Inner { engine, linker, config, compat, cache, instances, idle };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Pool slots held now (by running calls and idle warm instances), of `max_instances`.
    pub fn instances_in_use(&self) -> u32 {
        let free = u32::try_from(self.inner.instances.available_permits()).unwrap_or(u32::MAX);
        self.inner.config.max_instances.max(1).saturating_sub(free)
    }

    /// The engine-wide limits.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The artifact cache directory in use: `None` when none is configured or the configured
    /// one was refused (see [`EngineConfig::cache_dir`]).
    pub fn cache_dir(&self) -> Option<&Path> {
        self.inner.cache.as_ref().map(ArtifactCache::path)
    }

    /// Waits for a free pool slot. Held for the duration of one sandboxed call (or, in warm
    /// mode, as long as its instance is kept). When every slot is taken, idle warm instances
    /// are evicted first, so warm listeners can never starve the others of slots.
    pub(crate) async fn instance_slot(&self) -> OwnedSemaphorePermit {
        let slots = &self.inner.instances;
        loop {
            if let Ok(permit) = Arc::clone(slots).try_acquire_owned() {
                return permit;
            }
            if self.evict_idle() {
                continue;
            }
            // Every slot is in a running call: wait for one to end.
            if let Ok(permit) =
                tokio::time::timeout(IDLE_RECHECK, Arc::clone(slots).acquire_owned()).await
            {
                return permit.expect("the instance semaphore is never closed");
            }
        }
    }

    /// Registers a warm listener's idle instances for eviction (held weakly: a dropped listener
    /// unregisters itself).
    pub(crate) fn register_idle(&self, pool: Weak<dyn IdleInstances>) {
        self.inner.idle.lock().expect("idle registry lock").push(pool);
    }

    /// Evicts one idle warm instance of any listener; false when there is none.
    fn evict_idle(&self) -> bool {
        let pools: Vec<Arc<dyn IdleInstances>> = {
            let mut registry = self.inner.idle.lock().expect("idle registry lock");
            registry.retain(|w| w.strong_count() > 0);
            registry.iter().filter_map(Weak::upgrade).collect()
        };
        pools.iter().any(|p| p.evict_one())
    }

    /// Compiles (or loads from the cache) and validates the component at `path`, off the async
    /// path. The result is ready to instantiate: imports are linked and the export is
    /// type-checked against the `rmq:listener` world.
    pub async fn load(&self, path: &Path) -> Result<PluginVersion, WasmError> {
        let this = self.clone();
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || this.load_blocking(&path))
            .await
            .map_err(|e| WasmError::Join(e.to_string()))?
    }

    /// [`SandboxEngine::load`] on the current thread (it blocks for the compile).
    pub fn load_blocking(&self, path: &Path) -> Result<PluginVersion, WasmError> {
        let started = Instant::now();
        let bytes = read_plugin(path, self.inner.config.max_module_size)?;
        let hash = ContentHash::of(&bytes);
        let (component, cached) = self.compile(path, &bytes, &hash)?;
        let pre = self
            .link(&component)
            .map_err(|reason| WasmError::Invalid { path: path.into(), reason })?;
        let version = PluginVersion {
            pre,
            consume_checked: TypeChecked::default(),
            hash,
            tag: hash.short().into(),
            path: path.to_path_buf(),
            load_time: started.elapsed(),
            from_cache: cached,
        };
        tracing::info!(
            path = %path.display(),
            version = %version.hash.short(),
            load_ms = version.load_time.as_secs_f64() * 1e3,
            from_cache = cached,
            "plugin loaded"
        );
        Ok(version)
    }

    /// Links `component` against the host's imports and type-checks its `handler` export.
    pub(crate) fn link(&self, component: &Component) -> Result<ListenerPre<HostState>, String> {
        let pre = self.inner.linker.instantiate_pre(component).map_err(|e| format!("{e:#}"))?;
        ListenerPre::new(pre).map_err(|e| format!("{e:#}"))
    }

    /// [`Self::compile`] without saying whether the cache served it.
    pub(crate) fn compile_component(
        &self,
        path: &Path,
        bytes: &[u8],
        hash: &ContentHash,
    ) -> Result<Component, WasmError> {
        self.compile(path, bytes, hash).map(|(component, _)| component)
    }

    pub(crate) fn compile(
        &self,
        path: &Path,
        bytes: &[u8],
        hash: &ContentHash,
    ) -> Result<(Component, bool), WasmError> {
        let engine = &self.inner.engine;
        let name = format!("{}-{}{ARTIFACT_EXT}", hash.hex(), self.inner.compat);
        let cache = self.inner.cache.as_ref().filter(|cache| match cache.check() {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "not using the compiled-artifact cache for this load");
                false
            }
        });
        if let Some(cache) = cache {
            match cache.get(&name) {
                Ok(Some(artifact)) => match deserialize_verified(engine, &artifact) {
                    Ok(component) => {
                        tracing::info!(plugin = %file_name(path), "{} loaded from cache", file_name(path));
                        return Ok((component, true));
                    }
                    // Ours, but from an incompatible build: recompile.
                    Err(e) => cache.refuse(&name, &format!("{e:#}")),
                },
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "not using the compiled-artifact cache"),
            }
        }
        // A Python component (~18 MiB) takes seconds of Cranelift: say so before, not after.
        let started = Instant::now();
        let mib = bytes.len() as f64 / f64::from(1 << 20);
        tracing::info!(plugin = %file_name(path), "compiling {} ({mib:.1} MiB)…", file_name(path));
        let component = Component::new(engine, bytes)
            .map_err(|e| WasmError::Compile { path: path.into(), reason: format!("{e:#}") })?;
        tracing::info!(
            plugin = %file_name(path),
            "compiled {} in {:.1} s",
            file_name(path),
            started.elapsed().as_secs_f64()
        );
        if let Some(cache) = cache {
            let stored = component
                .serialize()
                .map_err(|e| format!("{e:#}"))
                .and_then(|artifact| cache.put(&name, &artifact).map_err(|e| e.to_string()));
            if let Err(e) = stored {
                // A cache we cannot write only costs a recompile next time.
                tracing::warn!(plugin = %path.display(), error = %e, "could not cache the compiled plugin");
            }
        }
        Ok((component, false))
    }
}

/// The file name of a plugin path, for progress lines.
fn file_name(path: &Path) -> std::borrow::Cow<'_, str> {
    path.file_name().unwrap_or(path.as_os_str()).to_string_lossy()
}

/// Increments the engine's epoch every `tick` on a plain thread (not a tokio task: a busy
/// runtime must not delay the deadlines that protect it). It holds only a weak reference and
/// ends once the engine is gone.
fn spawn_epoch_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new().name("rmq-wasm-epoch".into()).spawn(move || {
        loop {
            std::thread::sleep(tick);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        }
    });
    if let Err(e) = spawned {
        // Without a ticker only the tokio timeout bounds a call; still safe, so only warn.
        tracing::error!(error = %e, "could not start the epoch ticker; timeouts rely on tokio only");
    }
}

/// A compiled, linked and validated plugin: what a consume call instantiates.
pub struct PluginVersion {
    pub(crate) pre: ListenerPre<HostState>,
    /// Whether `consume` passed its type check as `lower::ConsumeFunc` (on the first call).
    pub(crate) consume_checked: TypeChecked,
    /// sha256 of the `.wasm` file: the version's identity in stats and DLQ properties.
    pub hash: ContentHash,
    /// `hash.short()`, built once: every plugin log line, abort line and DLQ property of this
    /// version carries it, and a call clones the `Arc` instead of formatting the hash again.
    pub(crate) tag: Arc<str>,
    pub path: PathBuf,
    /// Read + compile (or cache load) + link + validate.
    pub load_time: Duration,
    pub from_cache: bool,
}

impl fmt::Debug for PluginVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginVersion")
            .field("hash", &self.hash.short())
            .field("path", &self.path)
            .field("load_time", &self.load_time)
            .field("from_cache", &self.from_cache)
            .finish_non_exhaustive()
    }
}

/// sha256 of a plugin file.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Full lowercase hex.
    pub fn hex(&self) -> String {
        hex(&self.0)
    }

    /// The first 12 hex digits: enough to tell versions apart in logs and DLQ properties.
    pub fn short(&self) -> String {
        hex(&self.0[..6])
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.short())
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Feeds a `Hash` value into sha256, so the compatibility hash is stable across processes
/// (`DefaultHasher` promises nothing about that).
#[derive(Default)]
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
