//! Per-listener sandbox limits, with their defaults in one place.

use std::time::Duration;

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
    /// Linear memory cap per instance (bytes). Must not exceed the engine's
    /// `max_memory_size`.
    pub memory: usize,
    /// Elements per table.
    pub table_elements: usize,
    /// Sandboxes of this listener that may run at once; callers beyond wait (backpressure).
    pub slots: u32,
    /// Log lines a call may emit; later lines are counted and dropped.
    pub max_log_lines: u32,
    /// Longest log line kept (bytes); longer lines are truncated and counted.
    pub max_log_line: usize,
    /// Messages a call may send through the `producer` import.
    pub max_sends: u32,
    /// Topics the plugin may send to (`None`: any topic except RocketMQ's own `%…%` and
    /// `rmq_sys_` topics).
    pub allowed_topics: Option<Vec<String>>,
    /// Grants the real wall and monotonic clocks (otherwise frozen; see `host.rs`).
    pub clocks: bool,
    /// After an abort with a deterministic kind, retry the batch's messages one by one and
    /// dead-letter those that abort alone (reason `poison`).
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

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            fuel: 1_000 * FUEL_PER_MS,
            timeout: Duration::from_secs(5),
            fuel_yield_interval: FUEL_PER_MS,
            memory: 64 * 1024 * 1024,
            table_elements: 100_000,
            slots: 16,
            max_log_lines: 256,
            max_log_line: 4096,
            max_sends: 1024,
            allowed_topics: None,
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
        if topic.starts_with('%') || topic.starts_with("rmq_sys_") {
            return Some(format!("topic {topic} is a RocketMQ system topic"));
        }
        match &self.allowed_topics {
            Some(allowed) if !allowed.iter().any(|t| t == topic) => {
                Some(format!("topic {topic} is not in this listener's allowed topics"))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_topics_are_never_allowed_and_the_allow_list_is_exact() {
        let mut l = ListenerLimits::default();
        assert!(l.topic_denied("%DLQ%g").is_some());
        assert!(l.topic_denied("%RETRY%g").is_some());
        assert!(l.topic_denied("orders").is_none());
        l.allowed_topics = Some(vec!["out".into()]);
        assert!(l.topic_denied("out").is_none());
        assert!(l.topic_denied("orders").is_some());
    }
}
