//! What the endpoint reads on each request: one [`Reading`] of every running listener and the
//! engine, taken from the live counters (atomics and histogram handles the consume path
//! already updates; nothing is copied on the consume path for the endpoint's sake).
//!
//! The renderers (`/metrics`, `/status`, `/readyz`) are functions of a `Reading`, so they are
//! tested on readings built by hand, without a cluster.

use std::sync::Arc;
use std::time::Duration;

use crate::consumer::ConsumerProbe;
use crate::consumer::stats::{ConsumerStats, TopicStats};
use crate::wasm::stats::SandboxStats;
use crate::wasm::{ListenerLimits, SandboxEngine, WasmListener};

/// Everything the endpoint shows, read at once.
#[derive(Debug, Clone)]
pub struct Reading {
    pub listeners: Vec<ListenerReading>,
    /// Sandbox pool slots held now.
    pub instances_active: u32,
    /// The pool's size (`engine.max_instances`).
    pub instances_max: u32,
}

/// One listener: its consumer and its plugin.
#[derive(Debug, Clone)]
pub struct ListenerReading {
    /// The listener's name (the group unless named): the `listener` label.
    pub name: String,
    pub group: String,
    /// The configured topic (the consumer also reads `%RETRY%<group>`, listed in `topics`).
    pub topic: String,
    /// See [`ConsumerProbe::is_ready`].
    pub ready: bool,
    /// Every subscribed topic's life-long counters and histograms.
    pub topics: Vec<(String, Arc<TopicStats>)>,
    /// The owned queues' live counters.
    pub queues: ConsumerStats,
    pub plugin: PluginReading,
    pub sandbox: Arc<SandboxStats>,
    pub limits: ListenerLimits,
}

/// The serving plugin version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginReading {
    /// sha256 of the `.wasm`, hex.
    pub version: String,
    pub path: String,
    /// Read + compile (or cache load) + link + validate of the serving version.
    pub load_time: Duration,
    pub from_cache: bool,
}

/// Where readings come from: the running listeners of `rmq-wasm run`, or a fixed reading in
/// tests.
pub trait Source: Send + Sync + 'static {
    fn read(&self) -> Reading;
}

/// One running listener, as `rmq-wasm run` registers it.
#[derive(Debug)]
pub struct RunningListener {
    pub listener: Arc<WasmListener>,
    pub consumer: ConsumerProbe,
    pub topic: String,
    pub limits: ListenerLimits,
}

/// The listeners of one `rmq-wasm run` and their engine; `run` replaces the set when a SIGHUP
/// reload adds, removes or changes listeners.
#[derive(Debug)]
pub struct ListenerSet {
    engine: SandboxEngine,
    listeners: std::sync::RwLock<Vec<RunningListener>>,
}

impl ListenerSet {
    pub fn new(engine: SandboxEngine) -> Self {
        Self { engine, listeners: std::sync::RwLock::default() }
    }

    /// The listeners running now.
    pub fn set(&self, listeners: Vec<RunningListener>) {
        *self.listeners.write().unwrap_or_else(std::sync::PoisonError::into_inner) = listeners;
    }
}

impl Source for ListenerSet {
    fn read(&self) -> Reading {
        let listeners = self
            .listeners
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|l| {
                let version = l.listener.version();
                ListenerReading {
                    name: l.listener.name().to_owned(),
                    group: l.consumer.group().to_owned(),
                    topic: l.topic.clone(),
                    ready: l.consumer.is_ready(),
                    topics: l.consumer.topics().map(|(t, s)| (t.to_owned(), s)).collect(),
                    queues: l.consumer.stats(),
                    plugin: PluginReading {
                        version: version.hash.hex(),
                        path: version.path.display().to_string(),
                        load_time: version.load_time,
                        from_cache: version.from_cache,
                    },
                    sandbox: l.listener.live_stats(),
                    limits: l.limits.clone(),
                }
            })
            .collect();
        Reading {
            listeners,
            instances_active: self.engine.instances_in_use(),
            instances_max: self.engine.config().max_instances,
        }
    }
}
