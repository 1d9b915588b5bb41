//! `/status` and `rmq-wasm status`: each listener's owned queues with offsets and lag, plugin
//! version and load time, limits and abort counts — as JSON (the endpoint's answer, which
//! `status --json` prints as it came) and as a table for a person.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::reading::Reading;
use crate::wasm::stats::{ABORT_KINDS, RecentAbort};

/// Recent aborts the table shows per listener, newest first (the JSON has all that are kept).
const RECENT_ABORTS_SHOWN: usize = 5;

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Ready as `/readyz` says: every listener placed all its topics.
    pub ready: bool,
    pub instances_active: u32,
    pub instances_max: u32,
    pub listeners: Vec<ListenerStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerStatus {
    pub name: String,
    pub group: String,
    pub topic: String,
    pub ready: bool,
    pub plugin: PluginStatus,
    pub limits: LimitsStatus,
    pub queues: Vec<QueueStatus>,
    /// Messages by the listener's decision since start, over its topic and retry topic.
    #[serde(default)]
    pub outcomes: OutcomeStatus,
    pub calls: u64,
    pub listener_errors: u64,
    /// Aborts by kind (`trap`, `fuel`, `timeout`, `memory`, `stack`, `unavailable`), since start.
    pub aborts: BTreeMap<String, u64>,
    /// The last aborts (at most 16), oldest first.
    pub recent_aborts: Vec<RecentAbort>,
    pub poison: u64,
}

/// `rmq_wasm_consumed_messages_total` by outcome, summed over a listener's topics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeStatus {
    pub success: u64,
    /// Sent back to be redelivered later.
    pub retry: u64,
    /// Dead-lettered: by the plugin's decision or as poison.
    pub dead_letter: u64,
}

impl OutcomeStatus {
    pub fn total(&self) -> u64 {
        self.success + self.retry + self.dead_letter
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginStatus {
    pub version: String,
    pub path: String,
    #[serde(with = "humantime_serde")]
    pub load_time: Duration,
    pub from_cache: bool,
    pub reloads: u64,
    pub reload_failures: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsStatus {
    pub fuel: u64,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub memory_bytes: u64,
    pub slots: u32,
    pub instance_reuse: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatus {
    pub topic: String,
    pub broker: String,
    pub queue_id: i32,
    pub committed_offset: i64,
    pub max_offset: i64,
    /// max − committed.
    pub lag: i64,
    pub cached_messages: u64,
}

impl Status {
    /// The status of `reading`.
    pub fn of(reading: &Reading) -> Self {
        let listeners: Vec<ListenerStatus> = reading
            .listeners
            .iter()
            .map(|l| {
                let c = l.sandbox.snapshot();
                ListenerStatus {
                    name: l.name.clone(),
                    group: l.group.clone(),
                    topic: l.topic.clone(),
                    ready: l.ready,
                    plugin: PluginStatus {
                        version: l.plugin.version.clone(),
                        path: l.plugin.path.clone(),
                        load_time: l.plugin.load_time,
                        from_cache: l.plugin.from_cache,
                        reloads: c.reloads,
                        reload_failures: c.reload_failures,
                    },
                    limits: LimitsStatus {
                        fuel: l.limits.fuel,
                        timeout: l.limits.timeout,
                        memory_bytes: l.limits.memory as u64,
                        slots: l.limits.slots,
                        instance_reuse: l.limits.instance_reuse,
                    },
                    queues: l
                        .queues
                        .queues
                        .iter()
                        .map(|(q, s)| QueueStatus {
                            topic: q.topic.clone(),
                            broker: q.broker_name.clone(),
                            queue_id: q.queue_id.0,
                            committed_offset: s.committed_offset.0,
                            max_offset: s.max_offset.0,
                            lag: (s.max_offset.0 - s.committed_offset.0).max(0),
                            cached_messages: s.cached_count,
                        })
                        .collect(),
                    outcomes: l.topics.iter().fold(OutcomeStatus::default(), |sum, (_, t)| {
                        let o = t.snapshot().outcomes;
                        OutcomeStatus {
                            success: sum.success + o.success,
                            retry: sum.retry + o.retry,
                            dead_letter: sum.dead_letter + o.dead_letter,
                        }
                    }),
                    calls: c.calls,
                    listener_errors: c.listener_errors,
                    aborts: ABORT_KINDS
                        .iter()
                        .map(|k| (k.as_str().to_owned(), c.aborts_of(*k)))
                        .collect(),
                    recent_aborts: l.sandbox.recent_aborts(),
                    poison: c.poison,
                }
            })
            .collect();
        Self {
            ready: listeners.iter().all(|l| l.ready),
            instances_active: reading.instances_active,
            instances_max: reading.instances_max,
            listeners,
        }
    }

    /// The listeners that are not ready, by name.
    pub fn not_ready(&self) -> Vec<&str> {
        self.listeners.iter().filter(|l| !l.ready).map(|l| l.name.as_str()).collect()
    }

    /// One line per listener for `rmq-wasm status --watch`: messages per second since
    /// `previous` (taken `elapsed` earlier; `-` without one, or for a listener it lacks),
    /// outcomes and aborts since start, lag, and the serving plugin version with its reload
    /// count — so a hot reload shows as the version changing on the next line.
    pub fn watch_lines(&self, previous: Option<&Status>, elapsed: Duration) -> String {
        let mut out = String::new();
        for l in &self.listeners {
            let before = previous.and_then(|p| p.listeners.iter().find(|b| b.name == l.name));
            let rate = match before {
                Some(b) if !elapsed.is_zero() => format!(
                    "{:.0}",
                    l.outcomes.total().saturating_sub(b.outcomes.total()) as f64
                        / elapsed.as_secs_f64()
                ),
                _ => "-".to_owned(),
            };
            let o = &l.outcomes;
            let _ = writeln!(
                out,
                "{}{}: {rate:>6} msg/s | success {} retry {} dead-letter {} | aborts {} poison {} \
                 | lag {} | plugin {} reloads {}",
                l.name,
                if l.ready { "" } else { " (NOT READY)" },
                o.success,
                o.retry,
                o.dead_letter,
                l.aborts.values().sum::<u64>(),
                l.poison,
                l.queues.iter().map(|q| q.lag).sum::<i64>(),
                l.plugin.version.get(..12).unwrap_or(&l.plugin.version),
                l.plugin.reloads,
            );
        }
        out
    }

    /// A table for a person.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let ready = if self.ready { "ready" } else { "NOT READY" };
        let _ = writeln!(
            out,
            "{ready}; sandboxes {}/{} in use",
            self.instances_active, self.instances_max
        );
        for l in &self.listeners {
            let aborts: Vec<String> =
                l.aborts.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k}={n}")).collect();
            let _ = writeln!(
                out,
                "\nlistener {} (group {}, topic {}){}",
                l.name,
                l.group,
                l.topic,
                if l.ready { "" } else { " NOT READY" }
            );
            let _ = writeln!(
                out,
                "  plugin {} {} (loaded in {:?}{}; reloads {}, failed {})",
                l.plugin.version.get(..12).unwrap_or(&l.plugin.version),
                l.plugin.path,
                l.plugin.load_time,
                if l.plugin.from_cache { ", from cache" } else { "" },
                l.plugin.reloads,
                l.plugin.reload_failures
            );
            let _ = writeln!(
                out,
                "  limits fuel {} timeout {:?} memory {} MiB slots {} instance_reuse {}",
                l.limits.fuel,
                l.limits.timeout,
                l.limits.memory_bytes >> 20,
                l.limits.slots,
                l.limits.instance_reuse
            );
            let _ = writeln!(
                out,
                "  messages: success {} retry {} dead-letter {}",
                l.outcomes.success, l.outcomes.retry, l.outcomes.dead_letter
            );
            let _ = writeln!(
                out,
                "  calls {} listener-errors {} aborts [{}] poison {}",
                l.calls,
                l.listener_errors,
                aborts.join(" "),
                l.poison
            );
            for a in l.recent_aborts.iter().rev().take(RECENT_ABORTS_SHOWN) {
                let at = std::time::UNIX_EPOCH
                    + Duration::from_millis(u64::try_from(a.at.0).unwrap_or_default());
                let _ = writeln!(
                    out,
                    "  abort {} at {} on {}#{} version {} batch {} fuel {}: {}",
                    a.kind,
                    humantime::format_rfc3339_millis(at),
                    a.topic,
                    a.queue_id,
                    a.version,
                    a.batch,
                    a.fuel_used,
                    a.detail
                );
            }
            if l.queues.is_empty() {
                let _ = writeln!(out, "  no queue owned");
                continue;
            }
            let _ = writeln!(
                out,
                "  {:<32} {:<16} {:>5} {:>12} {:>12} {:>8} {:>7}",
                "topic", "broker", "queue", "committed", "max", "lag", "cached"
            );
            for q in &l.queues {
                let _ = writeln!(
                    out,
                    "  {:<32} {:<16} {:>5} {:>12} {:>12} {:>8} {:>7}",
                    q.topic,
                    q.broker,
                    q.queue_id,
                    q.committed_offset,
                    q.max_offset,
                    q.lag,
                    q.cached_messages
                );
            }
        }
        out
    }
}
