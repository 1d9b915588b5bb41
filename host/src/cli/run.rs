//! `rmq-wasm run --config FILE`: push consumers whose listeners are Wasm components, from a
//! TOML file.
//!
//! ```toml
//! namesrv = ["${NAMESRV:-127.0.0.1:9876}"]   # ${VAR} / ${VAR:-default} from the environment
//!
//! [acl]                         # optional: brokers with authentication on
//! access_key = "rocketmq2"
//! secret_key_env = "RMQ_SECRET_KEY"   # or secret_key_file; never the secret itself
//!
//! [engine]                      # optional
//! max_instances = 64            # sandboxes at once; default and minimum: the listeners' slots together
//! max_memory = "256MiB"         # upper bound of any listener's memory cap
//! cache_dir = "/var/cache/rmq-wasm"
//! max_module_size = "50MiB"     # the largest .wasm file loaded
//!
//! [http]                        # optional: /metrics /livez /readyz /status (see `crate::ops`)
//! listen = "127.0.0.1:9100"
//!
//! [[listener]]
//! group = "orders_router"
//! topic = "orders"
//! expression = "TagA || TagB"   # default "*"; with expression_type = "sql92" an SQL92 filter
//! message_model = "clustering"  # or "broadcasting"
//! consume_mode = "concurrently" # or "orderly"
//! request_mode = "pull"         # or "pop" (5.x POP), "broker" (QUERY_ASSIGNMENT decides)
//! pop_invisible_time = "60s"    # POP: how long a popped message stays hidden (5 s..=300 s)
//! pop_batch_size = 32           # POP: messages per pop, and pop_threshold_for_queue (flow
//!                               # control: unacked messages per popped queue)
//! broker_suspend_max = "15s"    # how long the broker may hold a pull or pop (long poll)
//! consume_from = "timestamp"    # a new group's start: "last" (default: skips what the topic
//!                               # holds, and logs how many), "first" or "timestamp"
//! consume_timestamp = "2026-12-05T17:00:00Z"
//! allocate_strategy = "avg"     # or "avg_by_circle", "consistent_hash"
//! pull_batch_size = 32          # and pull_threshold_* (flow control), shutdown_drain_timeout,
//! instance_name = "blue"        # unit_name: see `rmq-wasm config defaults`
//! wasm = "plugins/router.wasm"  # relative to this file
//! fuel = 1000000000
//! timeout = "2s"
//! memory = "64MiB"
//! batch_size = 32
//! max_reconsume_times = 16
//! instance_reuse = 1            # warm mode when > 1: an instance serves up to N calls
//! produce_topics = ["routed"]   # where the plugin may send (default: nowhere)
//! [listener.config]             # the plugin's own table (`config` import)
//! target-topic = "routed"
//! ```
//!
//! Every key is checked (`deny_unknown_fields`): a typo is an error naming the key, not a
//! silently ignored setting; `rmq-wasm config check FILE` lists every problem at once and
//! `rmq-wasm config defaults` every key (from `config_doc`'s table, tested against these
//! structs). Unset consumer settings are the consumer's defaults
//! (`ConsumerConfig::new`), unset sandbox limits `ListenerLimits::default()`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use serde::Deserialize;
use tracing::Instrument as _;

use crate::client::{NameServerClient, Producer, ProducerConfig};
use crate::consumer::PushConsumer;
use crate::consumer::config::{ConsumeMode, ConsumerConfig, RequestMode, Subscription};
use crate::protocol::EpochMillis;
use crate::protocol::body::{ConsumeFromWhere, MessageModel};
use crate::remoting::ConnectionPool;
use crate::wasm::{
    Budget, EngineConfig, ListenerLimits, PluginProducer, PluginSpec, SandboxEngine, TopicGrant,
    WasmListener,
};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Name servers: a list, or one `host:port[;host:port…]` string.
    pub namesrv: Addrs,
    #[serde(default)]
    pub engine: EngineSection,
    #[serde(rename = "listener", default)]
    pub listeners: Vec<ListenerSection>,
    /// Credentials for brokers with authentication on (every consumer and the plugin producer).
    pub acl: Option<AclSection>,
    /// The operators' endpoint (`/metrics`, `/livez`, `/readyz`, `/status`); none unless set.
    pub http: Option<crate::ops::HttpSection>,
}

/// `[acl]`: the access key inline, the secret only by reference (an environment variable or a
/// file), so the config file itself never holds it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclSection {
    pub access_key: String,
    /// Name of the environment variable holding the secret key.
    pub secret_key_env: Option<String>,
    /// File holding the secret key (surrounding whitespace ignored); relative to the config file.
    pub secret_key_file: Option<PathBuf>,
}

/// Name-server addresses in either spelling.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Addrs {
    One(String),
    Many(Vec<String>),
}

impl Addrs {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(s) => NameServerClient::parse_addrs(s),
            Self::Many(v) => v.iter().flat_map(|s| NameServerClient::parse_addrs(s)).collect(),
        }
    }
}

/// `[engine]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    pub max_instances: Option<u32>,
    pub max_memory: Option<ByteSize>,
    pub max_wasm_stack: Option<ByteSize>,
    /// The largest `.wasm` file loaded (default 50 MiB).
    pub max_module_size: Option<ByteSize>,
    #[serde(default, with = "humantime_serde")]
    pub epoch_tick: Option<Duration>,
    /// Precompiled artifacts; default `~/.cache/rmq-wasm`.
    pub cache_dir: Option<PathBuf>,
    /// Disables the artifact cache.
    #[serde(default)]
    pub no_cache: bool,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExpressionType {
    #[default]
    Tag,
    Sql92,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    #[default]
    Clustering,
    Broadcasting,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Concurrently,
    Orderly,
}

/// How messages are fetched (`consumer::config::RequestMode`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Request {
    #[default]
    Pull,
    Pop,
    Broker,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConsumeFrom {
    Last,
    First,
    Timestamp,
}

/// `allocate_strategy`: Java's queue allocation strategies; every member of a group must use the
/// same one.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Allocate {
    Avg,
    AvgByCircle,
    ConsistentHash,
}

/// One `[[listener]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    /// Names the plugin in logs and DLQ properties; default: the group.
    pub name: Option<String>,
    pub group: String,
    pub topic: String,
    #[serde(default = "star")]
    pub expression: String,
    #[serde(default)]
    pub expression_type: ExpressionType,
    #[serde(default)]
    pub message_model: Model,
    #[serde(default)]
    pub consume_mode: Mode,
    #[serde(default)]
    pub request_mode: Request,
    #[serde(default, with = "humantime_serde")]
    pub pop_invisible_time: Option<Duration>,
    /// POP: messages per pop.
    pub pop_batch_size: Option<u32>,
    /// POP flow control: stop popping a queue past this many messages waiting for their ack.
    pub pop_threshold_for_queue: Option<u32>,
    /// How long the broker may hold a pull or pop that finds nothing (the long poll).
    #[serde(default, with = "humantime_serde")]
    pub broker_suspend_max: Option<Duration>,
    pub consume_from: Option<ConsumeFrom>,
    /// With `consume_from = "timestamp"`: where a new group starts, an RFC 3339 instant or
    /// epoch milliseconds (default: 30 minutes before the start, Java's).
    pub consume_timestamp: Option<Timestamp>,
    /// How long in-flight listener calls may finish at shutdown.
    #[serde(default, with = "humantime_serde")]
    pub shutdown_drain_timeout: Option<Duration>,
    pub allocate_strategy: Option<Allocate>,
    /// Messages per pull.
    pub pull_batch_size: Option<u32>,
    /// Flow control: pause a queue's pulls past this many buffered messages.
    pub pull_threshold_for_queue: Option<u32>,
    /// Flow control: pause a queue's pulls past this many MiB of buffered bodies.
    pub pull_threshold_size_for_queue_mib: Option<u32>,
    /// Flow control across the listener's queues (split over them; replaces the per-queue one).
    pub pull_threshold_for_topic: Option<u32>,
    pub pull_threshold_size_for_topic_mib: Option<u32>,
    /// Part of the client id (default: `<pid>#<nanos>` in clustering).
    pub instance_name: Option<String>,
    /// Appended to the client id.
    pub unit_name: Option<String>,
    /// The component; relative paths are relative to the config file.
    pub wasm: PathBuf,
    pub fuel: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    pub memory: Option<ByteSize>,
    pub batch_size: Option<u32>,
    pub max_reconsume_times: Option<i32>,
    /// Concurrent sandboxes of this listener (and listener calls of its consumer).
    pub slots: Option<u32>,
    /// Grant the real clocks (frozen otherwise).
    #[serde(default)]
    pub clocks: bool,
    /// Warm mode: calls one instance may serve (`ListenerLimits::instance_reuse`); unset or 1:
    /// a fresh instance per call.
    pub instance_reuse: Option<u32>,
    /// Topics the plugin may produce to: names, or `prefix*`. Unset or empty: none (a send is a
    /// granted capability). RocketMQ's system topics are refused.
    #[serde(default)]
    pub produce_topics: Vec<String>,
    /// Allow `produce_topics` to cover the listener's own input topic. Off by default: a plugin
    /// that copies each message back to its input makes the topic grow without bound.
    #[serde(default)]
    pub produce_to_input: bool,
    /// Messages the plugin may send per second across all its calls (default 1000).
    pub max_sends_per_second: Option<u32>,
    /// The most verbose level of the plugin's own log lines kept (`trace` … `error`, `off`);
    /// unset: all of them, and `RUST_LOG` decides.
    pub log_level: Option<String>,
    /// Watch the `.wasm` and swap in new versions (default on).
    #[serde(default = "yes")]
    pub hot_reload: bool,
    #[serde(default = "yes")]
    pub poison_isolation: bool,
    /// The plugin's own table: strings, numbers and booleans (passed as strings).
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
}

/// An instant: an RFC 3339 string (`"2026-12-05T17:00:00Z"`) or epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub EpochMillis);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Millis(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Millis(ms) if ms >= 0 => Ok(Self(EpochMillis(ms))),
            Raw::Millis(ms) => Err(serde::de::Error::custom(format!("{ms} is before 1970"))),
            Raw::Text(s) => humantime::parse_rfc3339_weak(&s)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_millis()).ok())
                .map(|ms| Self(EpochMillis(ms)))
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "{s:?} is not an instant like \"2026-12-05T17:00:00Z\""
                    ))
                }),
        }
    }
}

fn star() -> String {
    "*".to_owned()
}

fn yes() -> bool {
    true
}

/// A byte count: an integer, or a string with a unit (`"64MiB"`, `"512 KiB"`, `"1GiB"`, `"100MB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => usize::try_from(n).map(ByteSize).map_err(serde::de::Error::custom),
            Raw::Text(s) => parse_bytes(&s).map(ByteSize).map_err(serde::de::Error::custom),
        }
    }
}

pub(crate) fn parse_bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().map_err(|_| format!("{s:?} is not a byte size like \"64MiB\""))?;
    let mult: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!("unknown byte unit {other:?} in {s:?} (use B, KiB, MiB, GiB)"));
        }
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

impl RunConfig {
    /// Reads and parses `path`; errors name the file and the offending key.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = super::env::read_interpolated(path)?;
        let mut config: Self =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for l in &mut config.listeners {
            if l.wasm.is_relative() {
                l.wasm = base.join(&l.wasm);
            }
        }
        if let Some(file) = config.acl.as_mut().and_then(|a| a.secret_key_file.as_mut())
            && file.is_relative()
        {
            *file = base.join(&*file);
        }
        config.check()?;
        Ok(config)
    }

    /// Parses a config held in memory (relative wasm paths stay as written).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: Self = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        super::config_map::check(self)?;
        if self.namesrv.to_vec().is_empty() {
            anyhow::bail!("namesrv: at least one name server address is needed");
        }
        if self.listeners.is_empty() {
            anyhow::bail!("no [[listener]] is configured");
        }
        let total = self.total_slots();
        if let Some(n) = self.engine.max_instances
            && n < total
        {
            let each: Vec<String> = self
                .listeners
                .iter()
                .map(|l| format!("{} {}", l.display_name(), l.consumer_config().consume_thread_max))
                .collect();
            anyhow::bail!(
                "engine.max_instances = {n} is less than the listeners' slots together ({total}: \
                 {}): hanging calls of some listeners could hold every sandbox and starve the \
                 others; raise max_instances (or leave it unset) or lower a listener's slots",
                each.join(", ")
            );
        }
        for l in &self.listeners {
            for (key, value) in &l.config {
                config_value(value).with_context(|| {
                    format!("listener {}: config key {key:?}", l.display_name())
                })?;
            }
        }
        Ok(())
    }

    /// Sandboxes the listeners may use at once, together: each gets its `slots` (its consumer's
    /// listener-call bound) from the engine's pool, so the pool must hold them all for every
    /// listener to be guaranteed its share.
    fn total_slots(&self) -> u32 {
        self.listeners
            .iter()
            .map(|l| l.consumer_config().consume_thread_max)
            .fold(0, u32::saturating_add)
    }

    /// The engine settings.
    pub fn engine_config(&self) -> EngineConfig {
        let mut c = EngineConfig::default();
        let e = &self.engine;
        // Sized for every listener's slots by default, so none waits on another's (see `check`).
        c.max_instances =
            e.max_instances.unwrap_or_else(|| c.max_instances.max(self.total_slots()));
        if let Some(m) = e.max_memory {
            c.max_memory_size = m.0;
        }
        if let Some(s) = e.max_module_size {
            c.max_module_size = s.0;
        }
        if let Some(s) = e.max_wasm_stack {
            c.max_wasm_stack = s.0;
        }
        if let Some(t) = e.epoch_tick {
            c.epoch_tick = t;
        }
        if e.cache_dir.is_some() {
            c.cache_dir = e.cache_dir.clone();
        }
        if e.no_cache {
            c.cache_dir = None;
        }
        c
    }
}

fn config_value(v: &toml::Value) -> anyhow::Result<String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) | toml::Value::Table(_) => {
            anyhow::bail!("values must be strings, numbers or booleans")
        }
    })
}

impl ListenerSection {
    fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.group)
    }

    /// The consumer settings: `ConsumerConfig::new` defaults plus what the section sets.
    pub fn consumer_config(&self) -> ConsumerConfig {
        let subscription = match self.expression_type {
            ExpressionType::Tag => Subscription::tag(&self.topic, &self.expression),
            ExpressionType::Sql92 => Subscription::sql92(&self.topic, &self.expression),
        };
        let mut c = ConsumerConfig::new(&self.group).subscribe(subscription);
        c.message_model = match self.message_model {
            Model::Clustering => MessageModel::Clustering,
            Model::Broadcasting => MessageModel::Broadcasting,
        };
        c.consume_mode = match self.consume_mode {
            Mode::Concurrently => ConsumeMode::Concurrently,
            Mode::Orderly => ConsumeMode::Orderly,
        };
        c.request_mode = match self.request_mode {
            Request::Pull => RequestMode::Pull,
            Request::Pop => RequestMode::Pop,
            Request::Broker => RequestMode::Broker,
        };
        if let Some(from) = self.consume_from {
            c.consume_from_where = match from {
                ConsumeFrom::Last => ConsumeFromWhere::LastOffset,
                ConsumeFrom::First => ConsumeFromWhere::FirstOffset,
                ConsumeFrom::Timestamp => ConsumeFromWhere::Timestamp,
            };
        }
        if let Some(n) = self.batch_size {
            c.consume_message_batch_max_size = n;
        }
        if self.max_reconsume_times.is_some() {
            c.max_reconsume_times = self.max_reconsume_times;
        }
        if let Some(n) = self.slots {
            c.consume_thread_max = n;
        }
        super::config_map::apply(self, &mut c);
        c
    }

    /// The plugin spec (limits on top of `ListenerLimits::default()`).
    pub fn plugin_spec(&self, consumer: &ConsumerConfig) -> anyhow::Result<PluginSpec> {
        let mut spec = PluginSpec::new(self.display_name(), &self.group);
        for (k, v) in &self.config {
            spec.config.insert(k.clone(), config_value(v)?);
        }
        let l = &mut spec.limits;
        *l = ListenerLimits::default();
        Budget { fuel: self.fuel, timeout: self.timeout, memory: self.memory.map(|m| m.0) }
            .apply(l);
        // As many sandboxes as the consumer runs listener calls: neither side waits on the other.
        l.slots = consumer.consume_thread_max;
        l.clocks = self.clocks;
        if let Some(n) = self.instance_reuse {
            l.instance_reuse = n;
        }
        l.produce_topics = self.produce_grants()?;
        if let Some(n) = self.max_sends_per_second {
            l.max_sends_per_second = n;
        }
        if let Some(level) = &self.log_level {
            l.log_level = level.parse().map_err(|_| {
                anyhow::anyhow!(
                    "listener {}: log_level {level:?} is not one of trace, debug, info, warn, \
                     error, off",
                    self.display_name()
                )
            })?;
        }
        l.poison_isolation = self.poison_isolation;
        l.max_reconsume_times =
            u32::try_from(consumer.effective_max_reconsume_times()).unwrap_or(u32::MAX);
        Ok(spec)
    }
}

impl ListenerSection {
    /// `produce_topics` parsed; refuses a grant of the input topic unless `produce_to_input`.
    fn produce_grants(&self) -> anyhow::Result<Vec<TopicGrant>> {
        let name = self.display_name();
        let grants = self
            .produce_topics
            .iter()
            .map(|entry| TopicGrant::parse(entry))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("listener {name}"))?;
        if !self.produce_to_input
            && let Some(grant) = grants.iter().find(|g| g.matches(&self.topic))
        {
            anyhow::bail!(
                "listener {name}: produce_topics entry {grant:?} grants its own input topic {} \
                 (a plugin copying messages back grows the topic without bound); set \
                 produce_to_input = true to allow it",
                self.topic,
                grant = grant.to_string()
            );
        }
        Ok(grants)
    }
}

/// How often each listener's stats are logged while running.
const STATS_INTERVAL: Duration = Duration::from_secs(30);

/// What every listener of the process shares; listeners started by a reload get the same.
pub(crate) struct Shared {
    pub engine: SandboxEngine,
    pub namesrv_addrs: Vec<String>,
    pub producer: Arc<dyn PluginProducer>,
    pub credentials: Option<crate::protocol::acl::AclCredentials>,
    /// The engine's sandbox pool, fixed at start: a reload may not need more.
    pub max_instances: u32,
}

/// One listener at work.
pub(crate) struct Running {
    pub section: ListenerSection,
    pub listener: Arc<WasmListener>,
    pub consumer: PushConsumer,
    pub reloader: Option<crate::wasm::Reloader>,
}

/// Loads a listener's plugin and starts its consumer.
pub(crate) async fn start_listener(
    shared: &Shared,
    section: &ListenerSection,
) -> anyhow::Result<Running> {
    let (consumer_config, listener) = load_listener(shared, section).await?;
    start_consumer(shared, section, consumer_config, listener).await
}

/// The log context of everything a listener does (see [`crate::SPAN_TARGET`]).
fn listener_span(section: &ListenerSection) -> tracing::Span {
    tracing::info_span!(target: crate::SPAN_TARGET, "listener", listener = section.display_name(), group = %section.group, topic = %section.topic)
}

/// What the operators' endpoint reads of each running listener.
pub(crate) fn endpoint_view(running: &[Running]) -> Vec<crate::ops::RunningListener> {
    running
        .iter()
        .map(|r| crate::ops::RunningListener {
            listener: Arc::clone(&r.listener),
            consumer: r.consumer.probe(),
            topic: r.section.topic.clone(),
            // Computed as at the listener's start, which it passed.
            limits: r
                .section
                .plugin_spec(&r.section.consumer_config())
                .map(|spec| spec.limits)
                .unwrap_or_default(),
        })
        .collect()
}

/// Compiles (or loads from the cache) a listener's plugin: the part of a start that takes
/// seconds and can run beside the others.
async fn load_listener(
    shared: &Shared,
    section: &ListenerSection,
) -> anyhow::Result<(ConsumerConfig, Arc<WasmListener>)> {
    let mut consumer_config = section.consumer_config();
    consumer_config.credentials.clone_from(&shared.credentials);
    let mut spec = section.plugin_spec(&consumer_config)?;
    spec.producer = Some(Arc::clone(&shared.producer));
    let listener = WasmListener::load(&shared.engine, &section.wasm, spec)
        .instrument(listener_span(section))
        .await
        .with_context(|| format!("listener {}", section.display_name()))?;
    Ok((consumer_config, Arc::new(listener)))
}

/// Starts the consumer of a loaded listener (and its file watch when hot reload is on).
async fn start_consumer(
    shared: &Shared,
    section: &ListenerSection,
    consumer_config: ConsumerConfig,
    listener: Arc<WasmListener>,
) -> anyhow::Result<Running> {
    let reloader = if section.hot_reload { Some(listener.watch()?) } else { None };
    let consumer = PushConsumer::start(
        consumer_config,
        shared.namesrv_addrs.clone(),
        Arc::clone(&listener) as _,
    )
    .instrument(listener_span(section))
    .await
    .with_context(|| format!("starting the consumer of {}", section.display_name()))?;
    tracing::info!(
        listener = section.display_name(),
        group = %section.group,
        topic = %section.topic,
        version = %listener.version().hash.short(),
        "listener running"
    );
    Ok(Running { section: section.clone(), listener, consumer, reloader })
}

/// Runs every listener until Ctrl-C or SIGTERM (or `duration`, when given), then shuts all
/// consumers down gracefully and prints each listener's final stats. SIGHUP re-reads the file
/// and applies its listener changes (see `reload`).
pub async fn run(config_path: &Path, duration: Option<Duration>) -> anyhow::Result<()> {
    let config = RunConfig::load(config_path)?;
    let namesrv_addrs = config.namesrv.to_vec();
    let engine_config = config.engine_config();
    let max_instances = engine_config.max_instances;
    let engine = SandboxEngine::new(engine_config)?;

    let credentials = super::config_map::credentials(&config)?;
    // One producer for every plugin's `producer.send`.
    let mut pool_config = crate::remoting::pool::PoolConfig::default();
    pool_config.connection.credentials = credentials.clone().map(Arc::new);
    let pool = ConnectionPool::new(pool_config, Arc::new(crate::remoting::connection::RejectAll));
    let namesrv = NameServerClient::new(pool.clone(), namesrv_addrs.clone())?;
    let producer: Arc<dyn PluginProducer> = Arc::new(Producer::new(
        namesrv,
        crate::client::BrokerClient::new(pool),
        ProducerConfig { group: "RMQ_WASM_PLUGIN_PRODUCER".into(), ..Default::default() },
    ));
    let shared = Shared { engine, namesrv_addrs, producer, credentials, max_instances };

    // Compile every listener's component at once: Cranelift is CPU-bound (seconds for an
    // 18 MiB Python component), so a cold start of several listeners one after another
    // takes their sum. Bounded by the cores; each compile runs on a blocking thread, and the
    // engine's artifact cache still makes a warm start a read and a MAC check.
    let parallel = std::thread::available_parallelism().map_or(2, usize::from).max(2);
    let loads = config.listeners.iter().map(|section| {
        let shared = &shared;
        async move { anyhow::Ok((section, load_listener(shared, section).await?)) }
    });
    let loaded: Vec<_> = futures_util::stream::iter(loads)
        .buffered(parallel)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;

    let mut running = Vec::new();
    for (section, (consumer_config, listener)) in loaded {
        running.push(start_consumer(&shared, section, consumer_config, listener).await?);
    }
    let endpoint_view = Arc::new(crate::ops::ListenerSet::new(shared.engine.clone()));
    endpoint_view.set(self::endpoint_view(&running));
    let _endpoint = match &config.http {
        Some(http) => {
            let endpoint =
                crate::ops::Endpoint::start(http.listen, Arc::clone(&endpoint_view) as _)
                    .await
                    .with_context(|| format!("http.listen = {}: cannot listen", http.listen))?;
            tracing::info!(addr = %endpoint.local_addr(), "serving /metrics /livez /readyz /status");
            Some(endpoint)
        }
        None => None,
    };
    // `--duration` counts from here: compile time is not run time.
    match duration {
        Some(d) => tracing::info!(
            "all {} listener(s) running; stopping in {}",
            running.len(),
            humantime::format_duration(d)
        ),
        None => tracing::info!("all {} listener(s) running; Ctrl-C to stop", running.len()),
    }
    super::reload::notify_ready(running.len());

    let stop = async {
        match duration {
            Some(d) => tokio::select! {
                _ = shutdown_signal() => {}
                _ = tokio::time::sleep(d) => {}
            },
            None => shutdown_signal().await,
        }
    };
    tokio::pin!(stop);
    let mut hangup = super::reload::Hangup::new();
    let mut ticker = tokio::time::interval(STATS_INTERVAL);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = hangup.recv() => {
                super::reload::reload(config_path, &config, &shared, &mut running).await;
                endpoint_view.set(self::endpoint_view(&running));
            }
            _ = ticker.tick() => {
                for r in &running {
                    tracing::info!(listener = r.listener.name(), stats = ?r.listener.stats(), "listener stats");
                }
            }
        }
    }
    tracing::info!("shutting down");
    super::reload::notify_stopping();
    let mut tasks = tokio::task::JoinSet::new();
    for r in running {
        tasks.spawn(stop_listener(r));
    }
    while let Some(done) = tasks.join_next().await {
        print_final_stats(&*done.context("a consumer shutdown task failed")?);
    }
    Ok(())
}

/// Shuts a listener's consumer down gracefully; returns the listener for its final stats.
pub(crate) async fn stop_listener(r: Running) -> Arc<WasmListener> {
    drop(r.reloader);
    r.consumer.shutdown().await;
    r.listener
}

/// The one-line summary of a listener printed when it stops.
pub(crate) fn print_final_stats(listener: &WasmListener) {
    let s = listener.stats();
    let c = &s.counters;
    let aborts: Vec<String> =
        c.aborts.iter().filter(|(_, n)| *n > 0).map(|(kind, n)| format!("{kind}={n}")).collect();
    println!(
        "{}: version {} | calls {} (warm {}, evicted {}) answered {} listener-errors {} \
         aborts [{}] poison {} | sends {} (failed {}) | log lines {} (dropped {}) | \
         reloads {} (failed {})",
        listener.name(),
        &s.version[..12],
        c.calls,
        c.warm_calls,
        c.warm_evicted,
        c.answered,
        c.listener_errors,
        aborts.join(" "),
        c.poison,
        c.sends,
        c.send_failures,
        c.log_lines,
        c.log_dropped,
        c.reloads,
        c.reload_failures,
    );
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
namesrv = "127.0.0.1:9876;127.0.0.1:9877"

[engine]
max_instances = 9
max_memory = "128MiB"
max_module_size = "10MiB"

[[listener]]
group = "g1"
topic = "t1"
slots = 4
expression = "a > 1"
expression_type = "sql92"
message_model = "broadcasting"
consume_mode = "orderly"
consume_from = "first"
wasm = "router.wasm"
fuel = 5000
timeout = "2s 500ms"
memory = "32MiB"
batch_size = 32
max_reconsume_times = 3
instance_reuse = 100
produce_topics = ["out", "audit_*"]
max_sends_per_second = 50
[listener.config]
target-topic = "out"
limit = 7
verbose = true

[[listener]]
group = "g2"
topic = "t2"
slots = 4
wasm = "/abs/filter.wasm"

[[listener]]
group = "g3"
topic = "t3"
slots = 1
request_mode = "pop"
pop_invisible_time = "10s"
pop_batch_size = 4
pop_threshold_for_queue = 8
broker_suspend_max = "40s"
wasm = "pop.wasm"
"#;

    /// Every listener gets its slots from the pool, whatever the others do: a pool smaller
    /// than their sum would let hanging calls of some listeners starve the rest.
    #[test]
    fn the_sandbox_pool_holds_every_listeners_slots() {
        let two = |engine: &str| {
            format!(
                "namesrv = \"127.0.0.1:9876\"\n{engine}\n\
                 [[listener]]\ngroup = \"g1\"\ntopic = \"t\"\nwasm = \"a.wasm\"\nslots = 30\n\
                 [[listener]]\ngroup = \"g2\"\ntopic = \"t\"\nwasm = \"b.wasm\"\nslots = 50\n"
            )
        };
        let sized = RunConfig::parse(&two("")).unwrap();
        assert_eq!(sized.engine_config().max_instances, 80, "default: the slots together");
        let err = RunConfig::parse(&two("[engine]\nmax_instances = 64")).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("max_instances = 64") && text.contains("80"), "{text}");
        let roomy = RunConfig::parse(&two("[engine]\nmax_instances = 100")).unwrap();
        assert_eq!(roomy.engine_config().max_instances, 100);
    }

    #[test]
    fn a_full_config_maps_onto_consumer_and_sandbox_settings() {
        let c = RunConfig::parse(FULL).unwrap();
        assert_eq!(c.namesrv.to_vec(), ["127.0.0.1:9876", "127.0.0.1:9877"]);
        assert_eq!(c.engine_config().max_instances, 9);
        assert_eq!(c.engine_config().max_memory_size, 128 << 20);
        assert_eq!(c.engine_config().max_module_size, 10 << 20);
        let l = &c.listeners[0];
        let cc = l.consumer_config();
        assert_eq!(cc.subscriptions, vec![Subscription::sql92("t1", "a > 1")]);
        assert_eq!(cc.message_model, MessageModel::Broadcasting);
        assert_eq!(cc.consume_mode, ConsumeMode::Orderly);
        assert_eq!(cc.consume_from_where, ConsumeFromWhere::FirstOffset);
        assert_eq!(cc.consume_message_batch_max_size, 32);
        assert_eq!(cc.max_reconsume_times, Some(3));
        let spec = l.plugin_spec(&cc).unwrap();
        assert_eq!(spec.limits.fuel, 5000);
        assert_eq!(spec.limits.timeout, Duration::from_millis(2500));
        assert_eq!(spec.limits.memory, 32 << 20);
        assert_eq!(spec.limits.max_reconsume_times, 3);
        assert_eq!(spec.limits.instance_reuse, 100);
        assert_eq!(
            spec.limits.produce_topics,
            [TopicGrant::Exact("out".into()), TopicGrant::Prefix("audit_".into())]
        );
        assert_eq!(spec.limits.max_sends_per_second, 50);
        assert_eq!(spec.config["limit"], "7");
        assert_eq!(spec.config["verbose"], "true");
        assert_eq!(spec.name, "g1");
    }

    #[test]
    fn request_modes_map_onto_the_consumer() {
        let c = RunConfig::parse(FULL).unwrap();
        let pop = c.listeners[2].consumer_config();
        assert_eq!(pop.request_mode, RequestMode::Pop);
        assert_eq!(pop.pop_invisible_time, Duration::from_secs(10));
        assert_eq!((pop.pop_batch_size, pop.pop_threshold_for_queue), (4, 8));
        assert_eq!(pop.broker_suspend_max, Duration::from_secs(40));
        // The client timeout follows a long poll past the default.
        assert_eq!(pop.pull_timeout, Duration::from_secs(50));
        let pull = c.listeners[1].consumer_config();
        assert_eq!(pull.request_mode, RequestMode::Pull);
        assert_eq!(pull.pop_invisible_time, ConsumerConfig::new("g2").pop_invisible_time);
    }

    #[test]
    fn unset_values_are_the_consumers_defaults() {
        let c = RunConfig::parse(FULL).unwrap();
        let l = &c.listeners[1];
        let cc = l.consumer_config();
        let defaults = ConsumerConfig::new("g2");
        assert_eq!(cc.consume_message_batch_max_size, defaults.consume_message_batch_max_size);
        assert_eq!(cc.consume_mode, defaults.consume_mode);
        assert_eq!(cc.consume_from_where, defaults.consume_from_where);
        assert_eq!(cc.subscriptions, vec![Subscription::all("t2")]);
        let spec = l.plugin_spec(&cc).unwrap();
        assert_eq!(spec.limits.fuel, ListenerLimits::default().fuel);
        assert_eq!(spec.limits.max_reconsume_times, 16);
        assert_eq!(spec.limits.instance_reuse, 1);
        assert!(spec.limits.produce_topics.is_empty(), "no send is granted unless configured");
        assert!(l.hot_reload && l.poison_isolation);
    }

    #[test]
    fn produce_grants_are_checked_at_start() {
        let spec_error = |grants: &str, extra: &str| -> Option<String> {
            let text = FULL.replace(
                r#"produce_topics = ["out", "audit_*"]"#,
                &format!("produce_topics = {grants}\n{extra}"),
            );
            let c = RunConfig::parse(&text).unwrap();
            let l = &c.listeners[0];
            l.plugin_spec(&l.consumer_config()).err().map(|e| format!("{e:#}"))
        };
        // The input topic is t1.
        let e = spec_error(r#"["out", "t1"]"#, "").unwrap();
        assert!(e.contains("listener g1") && e.contains("own input topic t1"), "{e}");
        let e = spec_error(r#"["t*"]"#, "").unwrap();
        assert!(e.contains("\"t*\" grants its own input topic t1"), "{e}");
        assert_eq!(spec_error(r#"["t1"]"#, "produce_to_input = true"), None);
        let e = spec_error(r#"["RMQ_SYS_TRACE_TOPIC"]"#, "").unwrap();
        assert!(e.contains("listener g1") && e.contains("system topics cannot be granted"), "{e}");
        let e = spec_error(r#"["a*b"]"#, "").unwrap();
        assert!(e.contains("\"a*b\""), "{e}");
        let e = spec_error("[]", r#"log_level = "loud""#).unwrap();
        assert!(e.contains("listener g1: log_level \"loud\" is not one of"), "{e}");
    }

    #[test]
    fn log_level_sets_the_plugins_line_filter() {
        let level = |line: &str| {
            let c = RunConfig::parse(&FULL.replace("max_sends_per_second = 50", line)).unwrap();
            let l = &c.listeners[0];
            l.plugin_spec(&l.consumer_config()).unwrap().limits.log_level
        };
        use tracing::level_filters::LevelFilter;
        assert_eq!(level(""), LevelFilter::TRACE);
        assert_eq!(level(r#"log_level = "warn""#), LevelFilter::WARN);
        assert_eq!(level(r#"log_level = "off""#), LevelFilter::OFF);
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        let text = FULL.replace("batch_size = 32", "batch_sise = 32");
        let e = format!("{:#}", RunConfig::parse(&text).unwrap_err());
        assert!(e.contains("batch_sise"), "{e}");
        let text = FULL.replace("max_instances = 9", "max_instance = 9");
        let e = format!("{:#}", RunConfig::parse(&text).unwrap_err());
        assert!(e.contains("max_instance"), "{e}");
    }

    #[test]
    fn bad_values_are_explained() {
        let e = format!(
            "{:#}",
            RunConfig::parse(&FULL.replace("\"2s 500ms\"", "\"2 parsecs\"")).unwrap_err()
        );
        assert!(e.contains("timeout"), "{e}");
        let e = format!(
            "{:#}",
            RunConfig::parse(&FULL.replace("\"32MiB\"", "\"32 MiBs\"")).unwrap_err()
        );
        assert!(e.contains("MiBs"), "{e}");
        let e = format!(
            "{:#}",
            RunConfig::parse(&FULL.replace("limit = 7", "limit = [7]")).unwrap_err()
        );
        assert!(e.contains("limit"), "{e}");
        let e = format!("{:#}", RunConfig::parse("namesrv = []\n").unwrap_err());
        assert!(e.contains("namesrv"), "{e}");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert_eq!(parse_bytes("2GB"), Ok(2_000_000_000));
        assert!(parse_bytes("MiB").is_err());
    }
}
