//! What a plugin can reach: the `rmq:listener` imports (`log`, `config`, `producer`), a
//! deny-by-default WASI context, and the store's resource limiter. One [`HostState`] per store,
//! so per call.
//!
//! WASI policy. Rust components built for `wasm32-wasip2` import `wasi:cli` and `wasi:io` even
//! when they never print (std's runtime references them), and a plugin may import more (the
//! fs-escape plugin imports filesystem and sockets). Refusing to link those would refuse
//! ordinary plugins, so every WASI interface is linked but grants nothing:
//! - no preopened directories (every path open fails with "no such file"/"not permitted"),
//!   no environment variables, no arguments, stdin closed;
//! - no network: TCP, UDP and name lookup are disabled outright (`allow_tcp(false)` …), not
//!   merely filtered by address;
//! - stdout is discarded; stderr goes to a small in-memory pipe whose content (a panic message,
//!   typically) is attached to the log line of a failed call and otherwise logged at debug, under
//!   the same caps as `log`;
//! - clocks: unless the listener is granted them (`clocks = true`), the wall clock reads the Unix
//!   epoch and the monotonic clock stands still (at 1 s, not 0: Go's runtime refuses a zero). A plugin then cannot observe time, which keeps
//!   a call a function of its input and fuel — the property poison-pill detection relies on — and
//!   closes a timing side channel. Messages carry their own born/store timestamps;
//! - randomness is real (the interpreters of Python and JavaScript plugins seed hash tables from
//!   it, and refusing it would break them for no gain: it grants no access).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::bindings::rmq::listener::{config, log, producer, types};
use super::convert;
use super::limits::{ListenerLimits, RateLimit};
use super::stats::SandboxStats;
use crate::client::{ClientError, Producer, SendResult};
use crate::protocol::message::Message;

/// Sends a plugin's messages. The host's [`Producer`] in production; tests substitute one that
/// can fail or hang on demand.
pub trait PluginProducer: Send + Sync + 'static {
    fn send(
        &self,
        msg: Message,
    ) -> Pin<Box<dyn Future<Output = Result<SendResult, ClientError>> + Send + '_>>;
}

impl PluginProducer for Producer {
    fn send(
        &self,
        msg: Message,
    ) -> Pin<Box<dyn Future<Output = Result<SendResult, ClientError>> + Send + '_>> {
        Box::pin(Producer::send(self, msg))
    }
}

/// Everything about a listener that its stores share: its name, config table, producer,
/// limits and counters.
pub(crate) struct PluginEnv {
    pub name: Arc<str>,
    pub group: Arc<str>,
    /// The `[listener.config]` table, sorted by key (the order `config.all` promises).
    pub config: BTreeMap<String, String>,
    pub producer: Option<Arc<dyn PluginProducer>>,
    pub limits: ListenerLimits,
    pub stats: Arc<SandboxStats>,
    /// `limits.max_sends_per_second`, across every call of this listener.
    pub send_rate: std::sync::Mutex<RateLimit>,
    /// `limits.max_log_lines_per_second`, across every call of this listener.
    pub log_rate: std::sync::Mutex<RateLimit>,
    /// A refused send is logged once per listener (the guest sees every refusal as an error,
    /// and `send_failures` counts them): a plugin must not turn refusals into a log flood.
    pub refusal_logged: std::sync::atomic::AtomicBool,
}

/// Takes a token of a listener-wide bucket now. A poisoned lock still holds a valid bucket
/// (plain numbers), so it is used as is.
fn take_token(rate: &std::sync::Mutex<RateLimit>) -> bool {
    rate.lock().unwrap_or_else(std::sync::PoisonError::into_inner).try_take(Instant::now())
}

impl PluginEnv {
    /// Counts a refused send, logs the first, and returns the error the guest sees.
    fn refuse(&self, meter: &mut SendMeter, reason: String) -> producer::ProduceError {
        meter.denied += 1;
        if !self.refusal_logged.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(plugin = %self.name, group = %self.group, %reason, "plugin send refused (further refusals are counted, not logged)");
        }
        producer::ProduceError::Denied(reason)
    }
}

impl fmt::Debug for PluginEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginEnv")
            .field("name", &self.name)
            .field("group", &self.group)
            .field("config_keys", &self.config.len())
            .field("producer", &self.producer.is_some())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Why the limiter refused a growth: the error a trapping `memory.grow` carries, so the call is
/// reported as `ResourceLimit` and not as a plain trap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error(
        "memory cap exceeded: {desired} bytes requested for the store's memories and tables, \
         cap {cap} bytes"
    )]
    Memory { desired: usize, cap: usize },
    #[error(
        "table cap exceeded: {desired} elements requested across the store's tables, cap {cap}"
    )]
    Table { desired: usize, cap: usize },
}

/// Bytes one table element occupies on the host: a pointer (wasmtime's funcref and externref
/// slots), what the pooling allocator reserves per element.
pub(crate) const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// The per-store resource limiter: one budget for everything the guest's instances grow.
///
/// Why sums: a component holds several core instances (the guest, the WASI adapter, the
/// interpreter of a Python or JavaScript plugin), and the pooling allocator lets each have its
/// own memories and tables. Capping each memory alone would let a component with four memories
/// take four times the cap; table slots (8 bytes each) would not count at all. So the memory cap
/// is on the sum of every memory's size plus every table's bytes, and the table cap on the sum
/// of elements. Growth past a cap traps (instead of `memory.grow` returning -1) so that the
/// abort is attributed to the limit, with a backtrace at the allocation.
#[derive(Debug)]
pub(crate) struct StoreLimiter {
    memory_cap: usize,
    table_cap: usize,
    /// Bytes of every memory of the store, as last granted.
    memory_bytes: usize,
    /// Elements of every table of the store, as last granted.
    table_elements: usize,
}

impl StoreLimiter {
    pub fn new(memory_cap: usize, table_cap: usize) -> Self {
        Self { memory_cap, table_cap, memory_bytes: 0, table_elements: 0 }
    }

    /// Memory and table bytes the store holds now.
    pub fn used_bytes(&self) -> usize {
        self.memory_bytes.saturating_add(self.table_elements.saturating_mul(TABLE_ELEMENT_BYTES))
    }

    /// Grants a memory growing from `current` to `desired` bytes if the store's total stays
    /// within the cap.
    fn grow_memory(&mut self, current: usize, desired: usize) -> Result<(), LimitExceeded> {
        let grown = desired.saturating_sub(current);
        let total = self.used_bytes().saturating_add(grown);
        if total > self.memory_cap {
            return Err(LimitExceeded::Memory { desired: total, cap: self.memory_cap });
        }
        self.memory_bytes = self.memory_bytes.saturating_add(grown);
        Ok(())
    }

    /// Grants a table growing from `current` to `desired` elements if the store's element
    /// total and byte total stay within their caps.
    fn grow_table(&mut self, current: usize, desired: usize) -> Result<(), LimitExceeded> {
        let grown = desired.saturating_sub(current);
        let elements = self.table_elements.saturating_add(grown);
        if elements > self.table_cap {
            return Err(LimitExceeded::Table { desired: elements, cap: self.table_cap });
        }
        let total = self.used_bytes().saturating_add(grown.saturating_mul(TABLE_ELEMENT_BYTES));
        if total > self.memory_cap {
            return Err(LimitExceeded::Memory { desired: total, cap: self.memory_cap });
        }
        self.table_elements = elements;
        Ok(())
    }
}

impl ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow_memory(current, desired).map_err(wasmtime::Error::new)?;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow_table(current, desired).map_err(wasmtime::Error::new)?;
        Ok(true)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        8
    }
}

/// Per-call log accounting.
#[derive(Debug, Default)]
pub(crate) struct LogMeter {
    pub lines: u32,
    pub dropped: u64,
    pub truncated: u64,
}

/// Per-call producer accounting.
#[derive(Debug, Default)]
pub(crate) struct SendMeter {
    pub sent: u32,
    pub failed: u32,
    pub denied: u32,
}

/// The data of one store: one consume call (or one isolated retry).
pub(crate) struct HostState {
    pub env: Arc<PluginEnv>,
    /// Labels for the plugin's log lines: the version (`PluginVersion::tag`, shared, so a
    /// line costs no formatting of the hash; a warm store only ever serves its own version),
    /// topic and queue.
    pub version: Arc<str>,
    pub topic: Arc<str>,
    pub queue_id: i32,
    /// Built on the first WASI call: most calls make none (Rust plugins import WASI but only
    /// touch it to print a panic), and building a context (RNG seeding, clock objects) is a
    /// measurable part of a call's set-up.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    pub limiter: StoreLimiter,
    pub log: LogMeter,
    pub sends: SendMeter,
    stderr: Option<MemoryOutputPipe>,
}

impl fmt::Debug for HostState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostState")
            .field("plugin", &self.env.name)
            .field("version", &self.version)
            .field("topic", &self.topic)
            .field("queue_id", &self.queue_id)
            .finish_non_exhaustive()
    }
}

/// Bytes of stderr kept per call (a panic message fits; a flood does not get far).
const STDERR_CAPACITY: usize = 4096;

impl HostState {
    pub fn new(env: Arc<PluginEnv>, version: Arc<str>, topic: Arc<str>, queue_id: i32) -> Self {
        let limiter = StoreLimiter::new(env.limits.memory, env.limits.table_elements);
        let mut table = ResourceTable::new();
        table.set_max_capacity(env.limits.max_wasi_resources);
        Self {
            env,
            version,
            topic,
            queue_id,
            wasi: None,
            table,
            limiter,
            log: LogMeter::default(),
            sends: SendMeter::default(),
            stderr: None,
        }
    }

    /// Readies a kept (warm-mode) store for its next call: new labels, zeroed per-call meters.
    pub fn reset_for_call(&mut self, topic: Arc<str>, queue_id: i32) {
        self.topic = topic;
        self.queue_id = queue_id;
        self.log = LogMeter::default();
        self.sends = SendMeter::default();
    }

    /// Whether the guest called into WASI in this store. Such a store is not reused in warm
    /// mode: its WASI context (stderr content, open stream handles) belongs to the call that
    /// made it.
    pub fn touched_wasi(&self) -> bool {
        self.wasi.is_some()
    }

    /// What the guest wrote to stderr, lossily decoded and trimmed.
    pub fn stderr_text(&self) -> String {
        self.stderr.as_ref().map_or_else(String::new, |pipe| {
            String::from_utf8_lossy(&pipe.contents()).trim().to_owned()
        })
    }
}

/// The deny-by-default context (see the module docs).
fn deny_by_default(limits: &ListenerLimits, stderr: &MemoryOutputPipe) -> WasiCtx {
    let mut wasi = WasiCtx::builder();
    wasi.stderr(stderr.clone()).allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
    if !limits.clocks {
        wasi.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
    }
    wasi.build()
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let Self { wasi, table, stderr, env, .. } = self;
        let ctx = wasi.get_or_insert_with(|| {
            let pipe = stderr.get_or_insert_with(|| MemoryOutputPipe::new(STDERR_CAPACITY));
            deny_by_default(&env.limits, pipe)
        });
        WasiCtxView { ctx, table }
    }
}

/// A clock that never advances: the wall clock reads the Unix epoch, the monotonic clock
/// [`FROZEN_MONOTONIC_NS`]. See the module docs for why this is the default.
#[derive(Debug, Clone, Copy)]
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        FROZEN_MONOTONIC_NS
    }
}

/// Where the frozen monotonic clock stands. A monotonic clock's origin is arbitrary, but not
/// zero: Go's runtime takes a reading of 0 for a broken clock and aborts at start-up ("fatal
/// error: nanotime returning zero"), so every Go plugin would fail to instantiate.
pub(crate) const FROZEN_MONOTONIC_NS: u64 = 1_000_000_000;

impl types::Host for HostState {}

impl log::Host for HostState {
    /// At most `max_log_lines` lines per call and `max_log_lines_per_second` per listener, each
    /// cut to `max_log_line` bytes with control characters escaped (a plugin cannot forge log
    /// lines); the rest is counted and summarised once when the call ends (see `listener.rs`),
    /// so a flood costs the host a counter increment per line.
    fn log(&mut self, level: log::Level, message: String) {
        let limits = &self.env.limits;
        // Below the listener's `log_level`: not a line the operator asked for, so neither kept
        // nor counted as dropped, and it spends none of the rate.
        if tracing_level(level) > limits.log_level {
            return;
        }
        if self.log.lines >= limits.max_log_lines || !take_token(&self.env.log_rate) {
            self.log.dropped += 1;
            return;
        }
        self.log.lines += 1;
        let (message, truncated) = convert::guest_text(&message, limits.max_log_line);
        if truncated {
            self.log.truncated += 1;
        }
        let (plugin, version, group, topic, queue) =
            (&*self.env.name, &*self.version, &*self.env.group, &*self.topic, self.queue_id);
        macro_rules! emit {
            ($lvl:expr) => {
                tracing::event!(target: super::PLUGIN_LOG_TARGET, $lvl, plugin, version, group, topic, queue, "{message}")
            };
        }
        // `event!` wants its level as a constant (one callsite per level).
        match level {
            log::Level::Trace => emit!(tracing::Level::TRACE),
            log::Level::Debug => emit!(tracing::Level::DEBUG),
            log::Level::Info => emit!(tracing::Level::INFO),
            log::Level::Warn => emit!(tracing::Level::WARN),
            log::Level::Error => emit!(tracing::Level::ERROR),
        }
    }
}

fn tracing_level(level: log::Level) -> tracing::Level {
    match level {
        log::Level::Trace => tracing::Level::TRACE,
        log::Level::Debug => tracing::Level::DEBUG,
        log::Level::Info => tracing::Level::INFO,
        log::Level::Warn => tracing::Level::WARN,
        log::Level::Error => tracing::Level::ERROR,
    }
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.env.config.get(&key).cloned()
    }

    fn all(&mut self) -> Vec<(String, String)> {
        self.env.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl producer::Host for HostState {
    /// Only to topics granted in `produce_topics`, never to a RocketMQ system topic; bounded per
    /// call (`max_sends`) and per listener across calls (`max_sends_per_second`). Every refusal
    /// and failure is returned to the guest as a WIT error, never a trap.
    async fn send(
        &mut self,
        msg: producer::OutgoingMessage,
    ) -> Result<producer::SendReceipt, producer::ProduceError> {
        let env = Arc::clone(&self.env);
        let Some(sink) = env.producer.as_ref() else {
            return Err(
                env.refuse(&mut self.sends, "this listener has no producer configured".into())
            );
        };
        if let Some(reason) = env.limits.topic_denied(&msg.topic) {
            return Err(env.refuse(&mut self.sends, reason));
        }
        if self.sends.sent + self.sends.failed >= env.limits.max_sends {
            let reason =
                format!("send quota of {} messages per call used up", env.limits.max_sends);
            return Err(env.refuse(&mut self.sends, reason));
        }
        if !take_token(&env.send_rate) {
            let reason = format!(
                "send rate of {} messages per second for this listener exceeded",
                env.limits.max_sends_per_second
            );
            return Err(env.refuse(&mut self.sends, reason));
        }
        let msg = match convert::outgoing(msg) {
            Ok(m) => m,
            Err(reason) => {
                self.sends.failed += 1;
                return Err(producer::ProduceError::Invalid(reason));
            }
        };
        match sink.send(msg).await {
            Ok(result) => {
                self.sends.sent += 1;
                Ok(convert::receipt(result))
            }
            Err(e) => {
                self.sends.failed += 1;
                Err(convert::produce_error(&e))
            }
        }
    }
}

#[cfg(test)]
mod limiter_tests {
    use wasmtime::{Config, Engine, Module, Store};

    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn the_caps_apply_to_the_sum_of_every_memory_and_table() {
        let mut l = StoreLimiter::new(10 * MIB, 1000);
        assert_eq!(l.grow_memory(0, 4 * MIB), Ok(()), "first memory");
        assert_eq!(l.grow_memory(0, 4 * MIB), Ok(()), "second memory");
        assert_eq!(
            l.grow_memory(0, 4 * MIB),
            Err(LimitExceeded::Memory { desired: 12 * MIB, cap: 10 * MIB }),
            "a third memory of the same size would pass a per-memory cap"
        );
        assert_eq!(l.grow_memory(4 * MIB, 5 * MIB), Ok(()), "growth counts the difference only");
        assert_eq!(l.used_bytes(), 9 * MIB);
        assert_eq!(l.grow_table(0, 600), Ok(()));
        assert_eq!(
            l.grow_table(0, 600),
            Err(LimitExceeded::Table { desired: 1200, cap: 1000 }),
            "elements are summed over tables"
        );
        assert_eq!(l.used_bytes(), 9 * MIB + 600 * TABLE_ELEMENT_BYTES);
        // Table bytes count against the memory cap too.
        let mut l = StoreLimiter::new(MIB, usize::MAX);
        let elements = MIB / TABLE_ELEMENT_BYTES;
        assert_eq!(l.grow_table(0, elements), Ok(()));
        assert!(matches!(l.grow_memory(0, 64 * 1024), Err(LimitExceeded::Memory { .. })));
    }

    /// What wasmtime asks the limiter for a module with two memories: each within a
    /// per-memory cap, together over it.
    #[test]
    fn wasmtime_cannot_instantiate_two_memories_over_the_summed_cap() {
        let engine = Engine::new(&Config::new()).unwrap();
        // `(module (memory 40) (memory 40))`: 40 pages (2.5 MiB) each, in binary form (the
        // engine is built without the text parser).
        let wasm = [0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 5, 2, 0, 40, 0, 40];
        let module = Module::new(&engine, wasm).unwrap();
        let instantiate = |cap: usize| {
            let mut store = Store::new(&engine, StoreLimiter::new(cap, 1000));
            store.limiter(|l| l);
            wasmtime::Instance::new(&mut store, &module, &[]).map(|_| store.data().used_bytes())
        };
        assert_eq!(instantiate(5 * MIB).unwrap(), 5 * MIB, "both fit in 5 MiB together");
        let err = instantiate(4 * MIB).expect_err("each memory fits 4 MiB, both do not");
        assert!(err.downcast_ref::<LimitExceeded>().is_some(), "{err:?}");
    }
}
