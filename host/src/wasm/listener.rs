//! [`WasmListener`]: the consumer's [`MessageListener`] backed by a sandboxed component.
//!
//! Every consume call gets a fresh `Store` (fresh WASI context, fresh limiter) and a fresh
//! instance from the active version's `InstancePre`, so nothing a batch does survives into the
//! next one. Warm mode (`ListenerLimits::instance_reuse = N > 1`, opt-in) trades that for
//! speed: an instance that answered with outcomes, without touching WASI, is kept (with its
//! pool slot) for the next call of the same listener and version, up to N calls; one that
//! trapped, was aborted or answered `listener-error` is dropped, and a reload retires the kept
//! instances of the old version. Fuel and the deadline are re-armed for every call.
//!
//! The call runs under a fuel budget, an epoch deadline and a tokio timeout, with a memory cap;
//! it ends in exactly one of three ways, which stay distinct in the result, the logs and the
//! counters:
//! - the guest answers with outcomes → honoured one by one (as the WIT says, missing outcomes
//!   are retries and extra ones are ignored, like Java's `ackIndex`);
//! - the guest answers `listener-error` → [`ListenerError::Failed`]: the batch is retried;
//! - the host stops it (trap, fuel, timeout, memory, stack) → [`ListenerError::Aborted`], with one
//!   log line carrying the guest backtrace and a counter per kind — unless poison isolation
//!   applies (below).
//!
//! Poison isolation: an abort of a deterministic kind (trap, fuel, memory, stack — not a timeout,
//! which depends on the clock and on host calls) during the guest's `consume` is narrowed down by
//! bisection: the batch is split in halves, a half that answers gets its outcomes, a half that
//! aborts again is split again. A message that aborts alone is a poison pill: it is dead-lettered
//! at once with reason `poison` and properties naming the abort kind, the fuel used and the plugin
//! version, instead of blocking its batch through 16 redeliveries. Every isolation run gets a
//! fresh instance (never a warm one: a kept instance carries the state of earlier calls, so a
//! message run on it is not run alone) and the full per-call fuel and timeout, so that "aborts
//! alone" means the same as on first delivery. In orderly mode the halves run in order and
//! isolation stops at the first message that is not settled, because nothing after it may be
//! committed (or even run) before it.
//!
//! What is never isolated, and why: a failure that is not about the messages. An abort while
//! *instantiating* (a memory cap below the component's initial memory, a start function that
//! traps, the pool refusing an instance) happens before the guest has seen a message, so it
//! fails the whole call as [`AbortKind::Unavailable`] (the detail says what failed): every
//! message is retried with the consumer's backoff, and the abort is counted and logged like any
//! other. Likewise a trap after the guest filled its stderr pipe (see [`STDERR_FULL`]) is
//! reported as the plugin's fault, not the batch's. Re-running messages one by one cannot tell
//! "this message kills the plugin" from "the plugin is broken": dead-lettering a batch for the
//! plugin's fault would lose it, retrying it loses nothing.
//!
//! The cost of isolation is bounded per consume call (see [`IsolationBudget`]): bisection finds
//! one poison message in a batch of N in 2·⌈log₂ N⌉ runs (16 for 256, instead of 256), and a
//! budget of twice that (in runs, in full-fuel runs and in timeouts of wall time) bounds what any
//! guest can make one consume call cost — a guest that aborts whenever a batch has more than one
//! message included. Messages the budget did not reach are retried, never dead-lettered.
//!
//! Backpressure: a call waits for one of the listener's slots and one of the engine's pool
//! slots; while it waits the consumer's consume permits stay taken, so the queues stop being
//! pulled (flow control) — nothing is dropped.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{Store, Trap, WasmBacktrace};

use super::WasmError;
use super::bindings::Listener;
use super::bindings::rmq::listener::types as wit;
use super::convert::{self, MAX_GUEST_TEXT, PROP_ABORT, PROP_FUEL_USED, PROP_PLUGIN, PROP_VERSION};
use super::engine::{IdleInstances, PluginVersion, SandboxEngine};
use super::host::{HostState, LimitExceeded, PluginEnv, PluginProducer};
use super::limits::{ListenerLimits, RateLimit};
use super::lower::{self, BatchView};
use super::reload::{self, Reloader};
use super::stats::{RecentAbort, SandboxStats, SandboxStatsSnapshot};
use crate::consumer::listener::{
    AbortKind, ConsumeContext, ConsumeMode, ListenerError, ListenerFuture, MessageListener,
    MessageOutcome,
};
use crate::protocol::message::MessageExt;

/// What a Wasm listener is, besides its `.wasm` file.
#[derive(Clone)]
pub struct PluginSpec {
    /// Names the plugin in logs, stats and DLQ properties.
    pub name: String,
    /// The consumer group (for log fields).
    pub group: String,
    /// The plugin's own key/value table (`config` import).
    pub config: BTreeMap<String, String>,
    /// Where `producer.send` goes; `None` denies every send.
    pub producer: Option<Arc<dyn PluginProducer>>,
    pub limits: ListenerLimits,
}

impl fmt::Debug for PluginSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginSpec")
            .field("name", &self.name)
            .field("group", &self.group)
            .field("config", &self.config)
            .field("producer", &self.producer.is_some())
            .field("limits", &self.limits)
            .finish()
    }
}

impl PluginSpec {
    /// A spec with default limits, no config and no producer.
    pub fn new(name: impl Into<String>, group: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            group: group.into(),
            config: BTreeMap::new(),
            producer: None,
            limits: ListenerLimits::default(),
        }
    }
}

/// The version serving a listener, swapped atomically by hot reload: a call clones the `Arc`
/// at its start and finishes on that version whatever happens meanwhile.
pub type ActiveVersion = ArcSwap<PluginVersion>;

/// A [`MessageListener`] running a Wasm component.
pub struct WasmListener {
    engine: SandboxEngine,
    env: Arc<PluginEnv>,
    active: Arc<ActiveVersion>,
    slots: Semaphore,
    /// Warm mode (`instance_reuse > 1`): instances that answered and may serve again, each
    /// with the pool slot it occupies. At most `slots` of them (one per concurrent call); the
    /// engine evicts them when another call needs their slots.
    warm: Arc<WarmPool>,
}

/// A listener's idle warm instances.
struct WarmPool {
    parked: std::sync::Mutex<Vec<Parked>>,
    stats: Arc<SandboxStats>,
}

impl WarmPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Parked>> {
        self.parked.lock().expect("warm pool lock")
    }
}

impl IdleInstances for WarmPool {
    fn evict_one(&self) -> bool {
        // Dropped outside the lock: tearing a store down is not free.
        let evicted = self.lock().pop();
        if evicted.is_some() {
            SandboxStats::add(&self.stats.warm_evicted, 1);
        }
        evicted.is_some()
    }
}

/// A live instance and its store, kept between calls in warm mode.
struct Warm {
    store: Store<HostState>,
    instance: Listener,
    /// Calls it has served.
    calls: u32,
}

/// A [`Warm`] instance between calls: the version it was made from (a reload retires it) and
/// the engine pool slot it keeps occupied.
struct Parked {
    warm: Warm,
    version: Arc<PluginVersion>,
    pool_slot: OwnedSemaphorePermit,
}

impl fmt::Debug for WasmListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmListener")
            .field("name", &self.env.name)
            .field("version", &self.active.load().hash.short())
            .finish_non_exhaustive()
    }
}

/// Stats of one listener: the serving version and the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmListenerStats {
    /// sha256 (hex) of the serving `.wasm`.
    pub version: String,
    pub counters: SandboxStatsSnapshot,
}

/// Why the host stopped a call.
#[derive(Debug, Clone)]
struct Abort {
    kind: AbortKind,
    /// One line: what stopped the call. Travels in the `ListenerError`.
    detail: String,
    /// The guest's stderr and backtrace: only in the host's one log line for the abort.
    context: String,
    /// The abort says nothing about the messages (instantiation, a full stderr pipe): the whole
    /// plugin is at fault, so it is never isolated (see the module docs).
    plugin_wide: bool,
}

impl Abort {
    /// Whether re-running fewer messages is evidence about them: a deterministic kind, in the
    /// guest's `consume`, not a failure of the plugin as a whole.
    fn isolatable(&self) -> bool {
        !self.plugin_wide && deterministic(self.kind)
    }
}

/// Bytes of stderr at which the guest's pipe counts as full: `host.rs` keeps 4096 bytes per call
/// and a write past them fails, which a Rust guest turns into a panic and a trap. A plugin that
/// writes that much writes it for any batch (a banner, a debug dump), so the trap that follows is
/// the plugin's fault; a message whose panic message alone is that long is retried instead of
/// dead-lettered (the safe side: the consumer's max reconsume times still ends it). Compared
/// with the trimmed text, so a little under the capacity.
const STDERR_FULL: usize = 4096 - 64;

/// `handler.consume`'s result, as the host lifts it.
type ConsumeResult = Result<Vec<wit::MessageOutcome>, wit::ListenerError>;

/// How one sandboxed call ended.
struct CallReport {
    result: Result<ConsumeResult, Abort>,
    fuel_used: u64,
    /// The run had a fresh instance (not a warm one): its abort concerns these messages alone.
    fresh: bool,
}

/// What poison isolation may still spend on one consume call, beyond the batch's own run.
///
/// Bisection isolates one poison message of a batch of `n` in `2·d` runs, `d = ⌈log₂ n⌉` (both
/// halves of each level down to the message: the half without it still needs its outcomes), and
/// of those only the `d` runs that contain the poison can burn a whole call's fuel or time. The
/// budget is twice that, so two poison messages in one batch are still both found:
/// - at most `4·d + 1` runs (the `+ 1`: a batch of one that aborted on a warm instance is re-run
///   once on a fresh one) — this bounds instantiations, logs and sends;
/// - at most `2·d + 1` calls' worth of fuel and of wall time (`limits.fuel`, `limits.timeout`):
///   no run starts once either is spent. Every run still gets the full per-call fuel and timeout,
///   because a smaller budget would make a fuel abort no evidence; so the total is bounded by the
///   budget plus one run.
///
/// For 256 messages: at most 33 runs and 17 calls' worth of fuel and time, whatever the guest
/// does (before: 256 runs, each with the full budget). Messages not reached are retried with the
/// consumer's backoff, never dead-lettered.
///
/// What no bound fixes: a plugin that aborts in `consume` on *every* input (an infinite loop) is
/// indistinguishable from a batch of poison messages, so the messages the budget reaches alone
/// are dead-lettered as poison — a few per delivery (the budget admits at most `2·d + 1` of
/// them), not the whole batch, and each with the abort kind and plugin version to look into.
#[derive(Debug)]
struct IsolationBudget {
    runs: u32,
    fuel: u64,
    deadline: Instant,
}

impl IsolationBudget {
    fn new(n: usize, limits: &ListenerLimits) -> Self {
        let depth = n.max(1).next_power_of_two().trailing_zeros();
        let units = 2 * depth + 1;
        Self {
            runs: 4 * depth + 1,
            fuel: limits.fuel.saturating_mul(u64::from(units)),
            deadline: Instant::now() + limits.timeout.saturating_mul(units),
        }
    }

    /// Whether another run may start; if so, counts it.
    fn start_run(&mut self) -> bool {
        if self.runs == 0 || self.fuel == 0 || Instant::now() >= self.deadline {
            return false;
        }
        self.runs -= 1;
        true
    }

    fn spent_fuel(&mut self, fuel: u64) {
        self.fuel = self.fuel.saturating_sub(fuel);
    }
}

/// Kinds that repeat for the same input and fuel, so re-running a message alone is evidence.
fn deterministic(kind: AbortKind) -> bool {
    matches!(
        kind,
        AbortKind::Trap
            | AbortKind::FuelExhausted
            | AbortKind::ResourceLimit
            | AbortKind::StackOverflow
    )
}

impl WasmListener {
    /// Loads `path` (compiling off the async path) and builds the listener.
    pub async fn load(
        engine: &SandboxEngine,
        path: &std::path::Path,
        spec: PluginSpec,
    ) -> Result<Self, WasmError> {
        let version = engine.load(path).await?;
        Self::new(engine, version, spec)
    }

    /// A listener serving `version`.
    pub fn new(
        engine: &SandboxEngine,
        version: PluginVersion,
        spec: PluginSpec,
    ) -> Result<Self, WasmError> {
        let limits = spec.limits;
        let max = engine.config().max_memory_size;
        if limits.memory > max {
            return Err(WasmError::Limits(format!(
                "listener {}: memory cap {} bytes is over the engine's maximum of {max} bytes",
                spec.name, limits.memory
            )));
        }
        if limits.fuel == 0 || limits.timeout.is_zero() || limits.slots == 0 {
            return Err(WasmError::Limits(format!(
                "listener {}: fuel, timeout and slots must be positive",
                spec.name
            )));
        }
        let slots = Semaphore::new(limits.slots.min(engine.config().max_instances) as usize);
        let env = Arc::new(PluginEnv {
            name: spec.name.into(),
            group: spec.group.into(),
            config: spec.config,
            producer: spec.producer,
            send_rate: std::sync::Mutex::new(RateLimit::new(
                limits.max_sends_per_second,
                tokio::time::Instant::now(),
            )),
            log_rate: std::sync::Mutex::new(RateLimit::new(
                limits.max_log_lines_per_second,
                tokio::time::Instant::now(),
            )),
            refusal_logged: std::sync::atomic::AtomicBool::new(false),
            limits,
            stats: Arc::new(SandboxStats::default()),
        });
        let warm = Arc::new(WarmPool {
            parked: std::sync::Mutex::new(Vec::new()),
            stats: Arc::clone(&env.stats),
        });
        if env.limits.instance_reuse > 1 {
            engine.register_idle(Arc::downgrade(&warm) as Weak<dyn IdleInstances>);
        }
        Ok(Self {
            engine: engine.clone(),
            env,
            active: Arc::new(ArcSwap::from_pointee(version)),
            slots,
            warm,
        })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.env.name
    }

    /// The serving version.
    pub fn version(&self) -> Arc<PluginVersion> {
        self.active.load_full()
    }

    /// Serving version and counters.
    pub fn stats(&self) -> WasmListenerStats {
        WasmListenerStats {
            version: self.active.load().hash.hex(),
            counters: self.env.stats.snapshot(),
        }
    }

    /// The live counters (what [`Self::stats`] copies), for exporters that read them on demand.
    pub fn live_stats(&self) -> Arc<SandboxStats> {
        Arc::clone(&self.env.stats)
    }

    /// Starts hot reload of the serving version's file (see `reload.rs`). Reloading stops when
    /// the returned handle is dropped.
    pub fn watch(&self) -> Result<Reloader, WasmError> {
        let path = self.active.load().path.clone();
        reload::watch(
            self.engine.clone(),
            path,
            Arc::clone(&self.active),
            Arc::clone(&self.env.stats),
            Arc::clone(&self.env.name),
        )
    }

    /// Replaces the serving version (what a reload does once the new file validated).
    pub fn swap(&self, version: PluginVersion) -> Arc<PluginVersion> {
        self.active.swap(Arc::new(version))
    }

    /// Sets up a store exactly as a consume call does and instantiates the serving version in
    /// it, without calling the guest: the fixed part of a call's cost. For benchmarks
    /// (`sandbox-bench`); takes a pool slot like a call.
    #[doc(hidden)]
    pub async fn instantiate_probe(&self) -> Result<Duration, WasmError> {
        let _slot = self.slots.acquire().await.expect("the slot semaphore is never closed");
        let _instance = self.engine.instance_slot().await;
        let version = self.active.load_full();
        let started = Instant::now();
        let mut store = new_store(&self.engine, &self.env, &version.tag, "probe".into(), 0);
        version.pre.instantiate_async(&mut store).await.map_err(|e| WasmError::Invalid {
            path: version.path.clone(),
            reason: format!("{e:#}"),
        })?;
        drop(store);
        Ok(started.elapsed())
    }

    /// [`MessageListener::consume`], also returning the version that served the call (for
    /// tests and tracing of reloads: a call runs on exactly one version).
    pub async fn consume_traced(
        &self,
        ctx: &ConsumeContext,
        messages: &[MessageExt],
    ) -> (Result<Vec<MessageOutcome>, ListenerError>, Arc<PluginVersion>) {
        // Taken before the version: a call that waited for a slot runs the newest version.
        let _slot = self.slots.acquire().await.expect("the slot semaphore is never closed");
        let (warm, pool_slot, version) = match self.take_warm() {
            Some(p) => (Some(p.warm), p.pool_slot, p.version),
            None => {
                let pool_slot = self.engine.instance_slot().await;
                (None, pool_slot, self.active.load_full())
            }
        };
        let (result, warm) = self.consume_on(&version, ctx, messages, warm).await;
        if let Some(warm) = warm {
            let parked = Parked { warm, version: Arc::clone(&version), pool_slot };
            self.warm.lock().push(parked);
        }
        (result, version)
    }

    /// A kept instance of the serving version, if there is one; kept instances of a replaced
    /// version are dropped (their pool slots freed) on the way.
    fn take_warm(&self) -> Option<Parked> {
        if self.env.limits.instance_reuse <= 1 {
            return None;
        }
        let active = self.active.load();
        let mut pool = self.warm.lock();
        pool.retain(|p| Arc::ptr_eq(&p.version, &active));
        pool.pop()
    }

    async fn consume_on(
        &self,
        version: &PluginVersion,
        ctx: &ConsumeContext,
        messages: &[MessageExt],
        warm: Option<Warm>,
    ) -> (Result<Vec<MessageOutcome>, ListenerError>, Option<Warm>) {
        let mut call = Call {
            listener: self,
            version,
            version_tag: Arc::clone(&version.tag),
            wctx: convert::context(ctx, self.env.limits.max_reconsume_times),
            topic: ctx.queue.topic.as_str().into(),
            queue_id: ctx.queue.queue_id.0,
            warm,
            isolating: false,
        };
        let result = call.consume(ctx, messages).await;
        (result, call.warm.take())
    }
}

impl Call<'_> {
    /// Converts the batch, runs it, and maps the answer (isolating a poison message after a
    /// deterministic abort).
    async fn consume(
        &mut self,
        ctx: &ConsumeContext,
        messages: &[MessageExt],
    ) -> Result<Vec<MessageOutcome>, ListenerError> {
        let env = self.env();
        let report = self.run(messages).await;
        match report.result {
            Ok(Ok(outcomes)) => {
                if outcomes.len() != messages.len() {
                    // The WIT contract (Java's ackIndex): missing outcomes are retries, extra
                    // ones are ignored. Worth a warning: it is usually a plugin bug.
                    tracing::warn!(
                        plugin = &*env.name,
                        topic = &*self.topic,
                        queue = self.queue_id,
                        outcomes = outcomes.len(),
                        messages = messages.len(),
                        "plugin returned a wrong number of outcomes; missing ones are retried"
                    );
                }
                let mut mapped: Vec<MessageOutcome> =
                    outcomes.into_iter().take(messages.len()).map(|o| self.outcome(o)).collect();
                mapped.resize(messages.len(), MessageOutcome::RETRY);
                Ok(mapped)
            }
            Ok(Err(e)) => {
                Err(ListenerError::Failed(convert::guest_text(&e.message, MAX_GUEST_TEXT).0))
            }
            Err(abort) if env.limits.poison_isolation && abort.isolatable() => {
                let first = CallReport { result: Err(abort), ..report };
                Ok(self.isolate(messages, first, ctx.mode).await)
            }
            Err(abort) => Err(ListenerError::Aborted { kind: abort.kind, detail: abort.detail }),
        }
    }
}

impl MessageListener for WasmListener {
    fn consume<'a>(
        &'a self,
        ctx: &'a ConsumeContext,
        messages: &'a [MessageExt],
    ) -> ListenerFuture<'a> {
        Box::pin(async move {
            let start = epoch_micros();
            let result = self.consume_traced(ctx, messages).await.0;
            // One line per call at DEBUG (off by default): who processed which queue when, in
            // wall-clock microseconds comparable across processes on one machine. The fault
            // tests (tests/tests/faults_host.rs) check from these that no queue of an orderly
            // group is ever in two hosts' calls at once.
            tracing::debug!(
                target: "rmq_wasm::calls",
                plugin = &*self.env.name,
                group = &*ctx.group,
                topic = %ctx.queue.topic,
                broker = %ctx.queue.broker_name,
                queue = ctx.queue.queue_id.0,
                batch = messages.len(),
                first_offset = messages.first().map_or(-1, |m| m.queue_offset.0),
                last_offset = messages.last().map_or(-1, |m| m.queue_offset.0),
                start_us = start,
                end_us = epoch_micros(),
                ok = result.is_ok(),
                "listener call"
            );
            result
        })
    }
}

/// Wall-clock microseconds since the Unix epoch (0 if the clock is before it).
fn epoch_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A store set up for one call: per-call host state, limiter, fuel, epoch deadline.
fn new_store(
    engine: &SandboxEngine,
    env: &Arc<PluginEnv>,
    version: &Arc<str>,
    topic: Arc<str>,
    queue_id: i32,
) -> Store<HostState> {
    let limits = &env.limits;
    let state = HostState::new(Arc::clone(env), Arc::clone(version), topic, queue_id);
    let mut store = Store::new(engine.engine(), state);
    store.limiter(|s| &mut s.limiter);
    store.set_hostcall_fuel(limits.max_hostcall_bytes);
    store
        .fuel_async_yield_interval(Some(limits.fuel_yield_interval))
        .expect("fuel is enabled on the engine");
    store.epoch_deadline_trap();
    arm(&mut store, engine, limits);
    store
}

/// Gives a store a full call's budget: the fuel and an epoch deadline `timeout` from now.
fn arm(store: &mut Store<HostState>, engine: &SandboxEngine, limits: &ListenerLimits) {
    store.set_fuel(limits.fuel).expect("fuel is enabled on the engine");
    let tick = engine.config().epoch_tick.as_nanos().max(1);
    let ticks = u64::try_from(limits.timeout.as_nanos().div_ceil(tick)).unwrap_or(u64::MAX);
    store.set_epoch_deadline(ticks.saturating_add(1));
}

/// One consume call's fixed parts (a batch run and its isolated re-runs share them).
struct Call<'a> {
    listener: &'a WasmListener,
    version: &'a PluginVersion,
    /// `version.tag`.
    version_tag: Arc<str>,
    wctx: wit::ConsumeContext,
    topic: Arc<str>,
    queue_id: i32,
    /// Warm mode: the instance the next run uses (and where a run that may be reused leaves it).
    warm: Option<Warm>,
    /// Poison isolation is running: every run gets a fresh instance and none is kept.
    isolating: bool,
}

impl<'a> Call<'a> {
    fn env(&self) -> &'a Arc<PluginEnv> {
        &self.listener.env
    }

    fn outcome(&self, o: wit::MessageOutcome) -> MessageOutcome {
        convert::outcome(o, &self.env().name, &self.version_tag)
    }

    /// Runs the guest once on `msgs` in a fresh store and instance (or, in warm mode outside
    /// isolation, the kept one, re-armed), under every limit.
    async fn run(&mut self, msgs: &[MessageExt]) -> CallReport {
        let env = self.env();
        let batch = match convert::batch(msgs) {
            Ok(batch) => batch,
            Err(e) => return self.refuse(&e),
        };
        let limits = &env.limits;
        let stats = &env.stats;
        let engine = &self.listener.engine;
        SandboxStats::add(&stats.calls, 1);
        let started = Instant::now();

        let warm = if self.isolating { None } else { self.warm.take() };
        let fresh = warm.is_none();
        let (mut store, kept, calls) = match warm {
            Some(Warm { mut store, instance, calls }) => {
                SandboxStats::add(&stats.warm_calls, 1);
                store.data_mut().reset_for_call(Arc::clone(&self.topic), self.queue_id);
                arm(&mut store, engine, limits);
                (store, Some(instance), calls)
            }
            None => {
                let store = new_store(
                    engine,
                    env,
                    &self.version_tag,
                    Arc::clone(&self.topic),
                    self.queue_id,
                );
                (store, None, 0)
            }
        };

        let version = self.version;
        let pre = &version.pre;
        let wctx = &self.wctx;
        let guarded = tokio::time::timeout(limits.timeout, async {
            let instance = match kept {
                Some(instance) => instance,
                None => {
                    pre.instantiate_async(&mut store).await.map_err(|e| (e, Stage::Instantiate))?
                }
            };
            // `call_consume` with the batch lowered by `lower.rs` instead of field by field.
            let func = *instance.rmq_listener_handler().func_consume().func();
            let consume = lower::consume_func(func, &store, &version.consume_checked)
                .map_err(|e| (e, Stage::Call))?;
            let (answer,) = consume
                .call_async(&mut store, (wctx, BatchView::of(&batch)))
                .await
                .map_err(|e| (e, Stage::Call))?;
            Ok((instance, answer))
        })
        .await;
        let mut reusable = None;
        let result = match guarded {
            Ok(Ok((instance, answer))) => {
                reusable = Some(instance);
                Ok(answer)
            }
            Ok(Err((e, stage))) => Err(classify(&e, stage, &store.data().stderr_text())),
            Err(_) => Err(Abort {
                kind: AbortKind::Timeout,
                detail: format!(
                    "no answer within {:?} (time blocked in host calls counts)",
                    limits.timeout
                ),
                context: String::new(),
                plugin_wide: false,
            }),
        };
        let fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let elapsed = started.elapsed();
        self.account(&store, &result, fuel_used, elapsed, msgs.len());
        // Warm mode keeps only an instance that answered with outcomes, never touched WASI and
        // has calls left, and never one of an isolation run; anything else (abort,
        // listener-error) is dropped with its store.
        if let Some(instance) = reusable
            && !self.isolating
            && matches!(result, Ok(Ok(_)))
            && calls + 1 < limits.instance_reuse
            && !store.data().touched_wasi()
        {
            self.warm = Some(Warm { store, instance, calls: calls + 1 });
        }
        CallReport { result, fuel_used, fresh }
    }

    /// A batch the guest could not even be handed: aborted like a call over the memory cap,
    /// which it would have hit first (the messages are then isolated one by one; each fits).
    fn refuse(&self, e: &convert::BatchTooLarge) -> CallReport {
        self.env().stats.abort(AbortKind::ResourceLimit);
        let abort = Abort {
            kind: AbortKind::ResourceLimit,
            detail: e.to_string(),
            context: String::new(),
            plugin_wide: false,
        };
        CallReport { result: Err(abort), fuel_used: 0, fresh: true }
    }

    /// Counters, the log-cap summary and the abort log line of one run.
    fn account(
        &self,
        store: &Store<HostState>,
        result: &Result<ConsumeResult, Abort>,
        fuel_used: u64,
        elapsed: Duration,
        batch: usize,
    ) {
        let env = self.env();
        let stats = &env.stats;
        let state = store.data();
        stats.add_fuel(fuel_used);
        SandboxStats::add(&stats.log_lines, u64::from(state.log.lines));
        SandboxStats::add(&stats.log_dropped, state.log.dropped);
        SandboxStats::add(&stats.log_truncated, state.log.truncated);
        SandboxStats::add(&stats.sends, u64::from(state.sends.sent));
        SandboxStats::add(&stats.send_failures, u64::from(state.sends.failed + state.sends.denied));
        let (plugin, group, topic, queue) = (&*env.name, &*env.group, &*self.topic, self.queue_id);
        let version = &self.version_tag;
        if state.log.dropped > 0 || state.log.truncated > 0 {
            tracing::warn!(
                plugin, group, topic, queue, %version,
                dropped = state.log.dropped,
                truncated = state.log.truncated,
                kept = state.log.lines,
                "plugin log capped"
            );
        }
        match result {
            Ok(Ok(_)) => SandboxStats::add(&stats.answered, 1),
            Ok(Err(_)) => SandboxStats::add(&stats.listener_errors, 1),
            Err(abort) => {
                stats.record_abort(RecentAbort {
                    at: crate::protocol::EpochMillis::now(),
                    kind: abort.kind,
                    topic: topic.to_owned(),
                    queue_id: queue,
                    version: version.to_string(),
                    batch,
                    fuel_used,
                    detail: abort.detail.clone(),
                });
                tracing::warn!(
                    plugin, group, topic, queue, %version,
                    kind = %abort.kind,
                    batch,
                    fuel_used,
                    elapsed_ms = elapsed.as_secs_f64() * 1e3,
                    "listener call aborted: {}{}",
                    abort.detail,
                    abort.context
                );
            }
        }
        if result.as_ref().is_ok_and(|r| r.is_ok()) {
            let stderr = state.stderr_text();
            if !stderr.is_empty() {
                tracing::debug!(target: super::PLUGIN_LOG_TARGET, plugin, group, topic, queue, "stderr: {stderr}");
            }
        }
    }

    /// Narrows down the messages that abort alone after `first` (the batch's own run) aborted
    /// with an isolatable kind: bisection on fresh instances, within an [`IsolationBudget`] (see
    /// the module docs).
    async fn isolate(
        &mut self,
        msgs: &[MessageExt],
        first: CallReport,
        mode: ConsumeMode,
    ) -> Vec<MessageOutcome> {
        let env = self.env();
        let kind = first.result.as_ref().err().map_or(AbortKind::Trap, |a| a.kind);
        SandboxStats::add(&env.stats.isolations, 1);
        tracing::info!(
            plugin = &*env.name, topic = &*self.topic, queue = self.queue_id,
            %kind, batch = msgs.len(),
            "isolating the batch's messages to find the poison"
        );
        let mut budget = IsolationBudget::new(msgs.len(), &env.limits);
        let mut outcomes: Vec<Option<MessageOutcome>> = vec![None; msgs.len()];
        // Ranges still to run, the next one last: left halves first, so that orderly mode sees
        // the messages in order.
        let mut pending: Vec<(std::ops::Range<usize>, Option<CallReport>)> =
            vec![(0..msgs.len(), Some(first))];
        self.isolating = true;
        let mut exhausted = false;
        while let Some((range, known)) = pending.pop() {
            // The batch's own run: several messages are split in any case; one message is a
            // verdict only if its instance was fresh (a warm one carries earlier calls' state),
            // otherwise it is re-run alone.
            let report = match known {
                Some(report) if report.fresh || range.len() > 1 => report,
                _ => {
                    if !budget.start_run() {
                        exhausted = true;
                        break;
                    }
                    let report = self.run(&msgs[range.clone()]).await;
                    budget.spent_fuel(report.fuel_used);
                    report
                }
            };
            let fuel_used = report.fuel_used;
            let unsettled = match report.result {
                Ok(Ok(answer)) => {
                    let mut answer = answer.into_iter().map(|o| self.outcome(o));
                    for i in range {
                        outcomes[i] = Some(answer.next().unwrap_or(MessageOutcome::RETRY));
                    }
                    false
                }
                Err(abort) if abort.isolatable() && range.len() > 1 => {
                    let mid = range.start + range.len() / 2;
                    pending.push((mid..range.end, None));
                    pending.push((range.start..mid, None));
                    continue;
                }
                Err(abort) if abort.isolatable() => {
                    let msg = &msgs[range.start];
                    SandboxStats::add(&env.stats.poison, 1);
                    tracing::warn!(
                        plugin = &*env.name, topic = &*self.topic, queue = self.queue_id,
                        msg_id = %msg.msg_id(), offset = msg.queue_offset.0, kind = %abort.kind,
                        fuel_used,
                        "poison message: it aborts on its own; sending it to the DLQ"
                    );
                    outcomes[range.start] = Some(self.poison(&abort, fuel_used));
                    false
                }
                // A listener-error, a timeout or a plugin-wide abort: no verdict on these
                // messages, retried.
                Ok(Err(_)) | Err(_) => {
                    for i in range {
                        outcomes[i] = Some(MessageOutcome::RETRY);
                    }
                    true
                }
            };
            if mode == ConsumeMode::Orderly
                && (unsettled || outcomes.iter().flatten().any(|o| !settled(o)))
            {
                break;
            }
        }
        self.isolating = false;
        let reached = outcomes.iter().filter(|o| o.is_some()).count();
        if exhausted {
            tracing::warn!(
                plugin = &*env.name,
                topic = &*self.topic,
                queue = self.queue_id,
                batch = msgs.len(),
                retried = msgs.len() - reached,
                "poison isolation budget spent: the messages not isolated are retried"
            );
        }
        let mut outcomes: Vec<MessageOutcome> =
            outcomes.into_iter().map(|o| o.unwrap_or(MessageOutcome::RETRY)).collect();
        if mode == ConsumeMode::Orderly
            && let Some(first_unsettled) = outcomes.iter().position(|o| !settled(o))
        {
            outcomes[first_unsettled..].fill(MessageOutcome::RETRY);
        }
        outcomes
    }

    fn poison(&self, abort: &Abort, fuel_used: u64) -> MessageOutcome {
        MessageOutcome::DeadLetter {
            reason: "poison".to_owned(),
            properties: vec![
                (PROP_ABORT.to_owned(), abort.kind.as_str().to_owned()),
                (PROP_FUEL_USED.to_owned(), fuel_used.to_string()),
                (PROP_VERSION.to_owned(), self.version_tag.to_string()),
                (PROP_PLUGIN.to_owned(), self.env().name.to_string()),
            ],
        }
    }
}

/// Whether an outcome lets the offset move on (orderly isolation stops at the first that does not).
fn settled(o: &MessageOutcome) -> bool {
    matches!(o, MessageOutcome::Success | MessageOutcome::DeadLetter { .. })
}

#[derive(Debug, Clone, Copy)]
enum Stage {
    Instantiate,
    Call,
}

/// Whether `e` is one of the per-call caps wasmtime enforces for us: the hostcall budget
/// ([`ListenerLimits::max_hostcall_bytes`]) or a full WASI resource table
/// ([`ListenerLimits::max_wasi_resources`]). wasmtime's error type for the first is private, so
/// its message identifies it; `one_host_call_cannot_make_the_host_copy_more_than_its_hostcall_budget`
/// fails if a wasmtime upgrade changes it.
fn is_wasmtime_cap(e: &wasmtime::Error) -> bool {
    matches!(
        e.downcast_ref::<wasmtime::component::ResourceTableError>(),
        Some(wasmtime::component::ResourceTableError::Full)
    ) || e.chain().any(|cause| cause.to_string().contains("fuel allocated for hostcalls"))
}

/// Maps a wasmtime error to an abort kind and a one-line detail (plus the guest backtrace and
/// stderr, when there are any).
///
/// Anything that stops instantiation is [`AbortKind::Unavailable`] and plugin-wide, whatever its
/// cause (the cause is in the detail): no message has been seen yet, so the messages are retried,
/// never isolated. A wall-clock stop of running wasm is told by wasmtime's `Trap::Interrupt` (the
/// epoch deadline), and says so in the detail; the tokio timeout that backs it up (for a guest
/// parked in a host call) is reported by [`Call::run`] with its own detail.
fn classify(e: &wasmtime::Error, stage: Stage, stderr: &str) -> Abort {
    let kind = if let Stage::Instantiate = stage {
        AbortKind::Unavailable
    } else if e.downcast_ref::<LimitExceeded>().is_some() || is_wasmtime_cap(e) {
        AbortKind::ResourceLimit
    } else if let Some(trap) = e.downcast_ref::<Trap>() {
        match trap {
            Trap::OutOfFuel => AbortKind::FuelExhausted,
            Trap::Interrupt => AbortKind::Timeout,
            Trap::StackOverflow => AbortKind::StackOverflow,
            _ => AbortKind::Trap,
        }
    } else {
        // A host function failed in a way the guest cannot handle: a trap for the guest.
        AbortKind::Trap
    };
    // The outermost message of a trap is the backtrace context; the one line we want is the
    // trap (or the limit) itself.
    let what = if let Some(limit) = e.downcast_ref::<LimitExceeded>() {
        limit.to_string()
    } else if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
        "epoch deadline: the guest was still running wasm at the call's timeout (interrupt)"
            .to_owned()
    } else if let Some(trap) = e.downcast_ref::<Trap>() {
        trap.to_string()
    } else {
        e.root_cause().to_string()
    };
    let detail = match stage {
        Stage::Instantiate => format!("instantiating: {what}"),
        Stage::Call => what,
    };
    let mut context = String::new();
    if !stderr.is_empty() {
        context.push_str("\nguest stderr: ");
        context.push_str(stderr);
    }
    if let Some(bt) = e.downcast_ref::<WasmBacktrace>() {
        context.push_str("\nguest backtrace:\n");
        context.push_str(&bt.to_string());
    }
    let plugin_wide = matches!(stage, Stage::Instantiate) || stderr.len() >= STDERR_FULL;
    Abort { kind, detail, context, plugin_wide }
}
