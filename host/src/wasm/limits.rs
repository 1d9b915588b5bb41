//! Per-listener sandbox limits, with their defaults in one place, and the policies that apply
//! them to sends: which topics a plugin may produce to, and how fast.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// Fuel a busy loop burns per millisecond of CPU on the reference machine (2 cores, x86_64):
/// `fuel_calibration` in `tests.rs` runs the infinite-loop plugin (a multiply-add loop, the
/// cheapest fuel per instruction there is) and measured 13.3–14.1 million per ms; rounded down
/// here. Real listeners touch memory and call the host, so they burn fuel more slowly: a budget
/// of `n * FUEL_PER_MS` is at most about `n` ms of CPU. Redpanda's figure for the same kind of
/// loop is 2 million per ms (older wasmtime, other hardware): calibrate per deployment.
pub const FUEL_PER_MS: u64 = 12_000_000;

/// Limits on every call of one listener.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Fuel per call (one batch, or one message during poison isolation). Deterministic: the
    /// same input and fuel abort at the same instruction. Default: about 1 s of CPU.
    pub fuel: u64,
    /// Wall-clock budget per call, including time blocked in host calls (a send to a slow
    /// broker). Enforced twice: an epoch deadline traps running wasm, a tokio timeout drops a
    /// call parked in the host.
    pub timeout: Duration,
    /// Fuel between cooperative yields to tokio, so a hot loop never holds a worker thread for
    /// more than about a millisecond.
    pub fuel_yield_interval: u64,
    /// Memory cap per call (bytes): every linear memory of the component's instances plus
    /// their tables' bytes, together (see `host::StoreLimiter`). Must not exceed the engine's
    /// `max_memory_size`.
    pub memory: usize,
    /// Table elements per call, summed over every table.
    pub table_elements: usize,
    /// Bytes the guest may pass to one host call (a log line, a message to send), which
    /// wasmtime copies out of guest memory before the host sees them; past it the call traps
    /// (wasmtime's "hostcall fuel", 128 MiB by default). The default fits RocketMQ's largest
    /// message (4 MiB) with its properties twice over.
    pub max_hostcall_bytes: usize,
    /// WASI resources (streams, pollables, …) a call may hold at once; wasmtime's default is a
    /// million, each a host allocation.
    pub max_wasi_resources: usize,
    /// Sandboxes of this listener that may run at once; callers beyond wait (backpressure).
    pub slots: u32,
    /// Log lines a call may emit; later lines are counted and dropped.
    pub max_log_lines: u32,
    /// Longest log line kept (bytes); longer lines are truncated and counted.
    pub max_log_line: usize,
    /// Log lines the listener may emit per second across all its calls (a burst of one
    /// second's worth); the WIT promises a rate, and retries must not renew it.
    pub max_log_lines_per_second: u32,
    /// The most verbose level of the plugin's own lines that is logged; lines above it are
    /// skipped in the `log` import before any other accounting (not counted as dropped).
    /// Default `trace`: the process's filter (`RUST_LOG`) alone decides.
    pub log_level: tracing::level_filters::LevelFilter,
    /// Messages a call may send through the `producer` import.
    pub max_sends: u32,
    /// Messages the listener may send per second across all its calls (retries and poison
    /// isolation re-runs included), with a burst of one second's worth.
    pub max_sends_per_second: u32,
    /// Topics the plugin may send to. Empty (the default): none — a send is a capability that is
    /// granted, as Spin grants outbound hosts and Redpanda fixes a transform's output topics at
    /// deploy time. RocketMQ's system topics are refused even when granted.
    pub produce_topics: Vec<TopicGrant>,
    /// Grants the real wall and monotonic clocks (otherwise frozen; see `host.rs`).
    pub clocks: bool,
    /// After an abort with a deterministic kind, bisect the batch on fresh instances and
    /// dead-letter the messages that abort alone (reason `poison`), within a per-call budget of
    /// re-runs, fuel and time (`listener::IsolationBudget`); messages it does not reach are
    /// retried, never dead-lettered. An abort at instantiation is the plugin's, not the
    /// messages': retried, never isolated.
    pub poison_isolation: bool,
    /// Told to the guest in its context (`max-reconsume-times`).
    pub max_reconsume_times: u32,
    /// Warm mode: how many calls one instance may serve before it is recycled. 0 and 1 mean a
    /// fresh instance per call (the default, and the strongest isolation: nothing a batch does
    /// survives into the next). Above 1, an instance that answered is kept for the next call of
    /// this listener (its memory and globals included) until it served this many calls; one
    /// that trapped, was aborted, answered `listener-error` or touched WASI is discarded.
    /// A kept instance keeps its slot of the engine's pool while idle (at most `slots` of
    /// them per listener) until a call of any listener finds no free slot: idle instances are
    /// then evicted first, so warm listeners never starve the others.
    pub instance_reuse: u32,
}

/// A listener's per-call budget keys (`fuel`, `timeout`, `memory`) as a config or the flags of
/// `plugin test` give them: unset ones keep [`ListenerLimits::default`]'s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    pub fuel: Option<u64>,
    pub timeout: Option<Duration>,
    pub memory: Option<usize>,
}

impl Budget {
    /// Sets the given keys on `limits`.
    pub fn apply(self, limits: &mut ListenerLimits) {
        if let Some(f) = self.fuel {
            limits.fuel = f;
        }
        if let Some(t) = self.timeout {
            limits.timeout = t;
        }
        if let Some(m) = self.memory {
            limits.memory = m;
        }
    }
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            fuel: 1_000 * FUEL_PER_MS,
            timeout: Duration::from_secs(5),
            fuel_yield_interval: FUEL_PER_MS,
            memory: 64 * 1024 * 1024,
            table_elements: 100_000,
            max_hostcall_bytes: 8 << 20,
            max_wasi_resources: 4096,
            slots: 16,
            max_log_lines: 256,
            max_log_line: 4096,
            max_log_lines_per_second: 1000,
            log_level: tracing::level_filters::LevelFilter::TRACE,
            max_sends: 1024,
            max_sends_per_second: 1000,
            produce_topics: Vec::new(),
            clocks: false,
            poison_isolation: true,
            max_reconsume_times: 16,
            instance_reuse: 1,
        }
    }
}

impl ListenerLimits {
    /// Why a send to `topic` is refused, if it is.
    pub fn topic_denied(&self, topic: &str) -> Option<String> {
        if is_system_topic(topic) {
            return Some(format!("topic {topic} is a RocketMQ system topic"));
        }
        if !self.produce_topics.iter().any(|grant| grant.matches(topic)) {
            return Some(format!("topic {topic} is not granted to this listener (produce_topics)"));
        }
        None
    }
}

/// One topic a plugin may produce to: an exact name, or every topic that starts with a prefix
/// (written `prefix*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicGrant {
    Exact(String),
    Prefix(String),
}

/// A `produce_topics` entry that is not a topic name or `prefix*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("produce_topics entry {entry:?}: {reason}")]
pub struct GrantError {
    pub entry: String,
    pub reason: &'static str,
}

impl TopicGrant {
    /// Parses `name` or `prefix*`. A system topic (or a prefix that only covers system topics'
    /// namespaces) is refused here, so that a config that grants one fails at start.
    pub fn parse(entry: &str) -> Result<Self, GrantError> {
        let error = |reason| Err(GrantError { entry: entry.to_owned(), reason });
        let (name, prefix) = match entry.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (entry, false),
        };
        if name.is_empty() && !prefix {
            return error("empty");
        }
        if name.contains('*') {
            return error("`*` may only end a prefix");
        }
        // Java's TopicValidator: `^[%|a-zA-Z0-9_-]+$`.
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '%' | '|')) {
            return error("a topic name has only letters, digits, `_`, `-`, `%` and `|`");
        }
        if prefix && name.is_empty() {
            return error("`*` alone would grant every topic: name them, or a prefix");
        }
        if is_system_topic(name) || SYSTEM_PREFIXES.iter().any(|p| p.starts_with(name)) {
            return error("RocketMQ system topics cannot be granted");
        }
        Ok(if prefix { Self::Prefix(name.to_owned()) } else { Self::Exact(name.to_owned()) })
    }

    /// Whether this grant covers `topic`.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Self::Exact(name) => topic == name,
            Self::Prefix(prefix) => topic.starts_with(prefix.as_str()),
        }
    }
}

impl fmt::Display for TopicGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// Prefixes of RocketMQ's own topics: retry and dead-letter queues (`%RETRY%`, `%DLQ%`), light
/// message queues and other `%…%` namespaces, and the broker's `rmq_sys_` topics (Java's
/// `TopicValidator.SYSTEM_TOPIC_PREFIX`) and `RMQ_SYS_` ones (trace, transactions).
const SYSTEM_PREFIXES: &[&str] = &["%", "rmq_sys_", "RMQ_SYS_"];

/// RocketMQ's system topics without one of those prefixes (Java's `TopicValidator`).
const SYSTEM_TOPICS: &[&str] = &[
    "TBW102",
    "SCHEDULE_TOPIC_XXXX",
    "BenchmarkTest",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
    "CHECKPOINT_TOPIC",
];

/// Whether `topic` is one of RocketMQ's own: a plugin never sends there, granted or not.
pub fn is_system_topic(topic: &str) -> bool {
    SYSTEM_PREFIXES.iter().any(|p| topic.starts_with(p)) || SYSTEM_TOPICS.contains(&topic)
}

/// A token bucket: `rate` tokens a second, holding at most one second's worth. Bounds what a
/// listener sends and logs across calls, where `max_sends` and `max_log_lines` bound one call.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// A full bucket of `per_second` tokens.
    pub fn new(per_second: u32, now: Instant) -> Self {
        let rate = f64::from(per_second);
        Self { rate, tokens: rate, last: now }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_are_denied_unless_granted_and_system_topics_always() {
        let mut l = ListenerLimits::default();
        assert!(l.topic_denied("orders").is_some(), "nothing is granted by default");
        l.produce_topics =
            vec![TopicGrant::parse("out").unwrap(), TopicGrant::parse("audit_").unwrap()];
        l.produce_topics.push(TopicGrant::parse("events_*").unwrap());
        let table = [
            ("out", true),
            ("out2", false),
            ("audit_", true),
            ("events_a", true),
            ("events_", true),
            ("events", false),
            ("orders", false),
            ("%DLQ%g", false),
            ("%RETRY%g", false),
            ("%LMQ%x", false),
            ("rmq_sys_wheel_timer", false),
            ("RMQ_SYS_TRACE_TOPIC", false),
            ("RMQ_SYS_TRANS_HALF_TOPIC", false),
            ("TBW102", false),
            ("SCHEDULE_TOPIC_XXXX", false),
            ("OFFSET_MOVED_EVENT", false),
        ];
        for (topic, allowed) in table {
            assert_eq!(l.topic_denied(topic).is_none(), allowed, "{topic}");
        }
        // Even a grant that would match cannot open a system topic.
        l.produce_topics = vec![TopicGrant::Prefix(String::new())];
        assert!(l.topic_denied("TBW102").is_some());
        assert!(l.topic_denied("anything").is_none());
    }

    #[test]
    fn grants_parse_names_and_prefixes_and_refuse_the_rest() {
        let ok = [
            ("out", TopicGrant::Exact("out".into())),
            ("events_*", TopicGrant::Prefix("events_".into())),
            ("a-b_c|d", TopicGrant::Exact("a-b_c|d".into())),
        ];
        for (entry, grant) in ok {
            assert_eq!(TopicGrant::parse(entry), Ok(grant.clone()), "{entry}");
            assert_eq!(grant.to_string(), entry);
        }
        let refused = [
            ("", "empty"),
            ("*", "`*` alone would grant every topic: name them, or a prefix"),
            ("a*b", "`*` may only end a prefix"),
            ("a.b", "a topic name has only letters, digits, `_`, `-`, `%` and `|`"),
            ("TBW102", "RocketMQ system topics cannot be granted"),
            ("%DLQ%*", "RocketMQ system topics cannot be granted"),
            ("rmq_*", "RocketMQ system topics cannot be granted"),
            ("RMQ_SYS_TRACE_TOPIC", "RocketMQ system topics cannot be granted"),
        ];
        for (entry, reason) in refused {
            assert_eq!(
                TopicGrant::parse(entry),
                Err(GrantError { entry: entry.to_owned(), reason }),
                "{entry}"
            );
        }
    }

    #[test]
    fn the_send_rate_allows_a_second_of_burst_then_refills() {
        let t0 = Instant::now();
        let mut rate = RateLimit::new(10, t0);
        let burst = (0..20).filter(|_| rate.try_take(t0)).count();
        assert_eq!(burst, 10, "one second's worth at once");
        assert!(!rate.try_take(t0 + Duration::from_millis(50)), "half a token");
        assert!(rate.try_take(t0 + Duration::from_millis(100)), "one token after 100 ms");
        let after_idle = t0 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| rate.try_take(after_idle)).count(), 10, "capped at 1 s");
    }
}
