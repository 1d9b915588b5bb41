//! Counters of one Wasm listener: calls (and how many reused a warm instance), the three ways a
//! call ends (outcomes, listener error, abort by kind), poison isolation, log and producer caps,
//! reloads. Plain atomics, bumped on every call and read rarely (stats, `/metrics`), and one
//! histogram of the fuel each run used.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use prometheus_client::metrics::histogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::consumer::listener::AbortKind;
use crate::protocol::EpochMillis;

/// Every abort kind, in a fixed order (the index into the per-kind counters).
pub const ABORT_KINDS: [AbortKind; 6] = [
    AbortKind::Trap,
    AbortKind::FuelExhausted,
    AbortKind::Timeout,
    AbortKind::ResourceLimit,
    AbortKind::StackOverflow,
    AbortKind::Unavailable,
];

fn kind_index(kind: AbortKind) -> usize {
    ABORT_KINDS.iter().position(|k| *k == kind).unwrap_or(0)
}

/// Buckets of the fuel-used histogram: powers of 10 from 10⁴ to 10¹¹ units (at ~12 M units per
/// ms of busy CPU: a microsecond to ~8 s).
pub const FUEL_BUCKETS: [f64; 8] = [1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11];

/// Aborts kept for `rmq-wasm status` (the counters keep counting all of them).
pub const RECENT_ABORTS_KEPT: usize = 16;
/// The longest abort description kept (bytes; the log line has it whole).
const RECENT_ABORT_DETAIL: usize = 512;

/// One abort, as `rmq-wasm status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentAbort {
    /// Wall clock, ms since the Unix epoch.
    pub at: EpochMillis,
    #[serde(with = "kind_name")]
    pub kind: AbortKind,
    pub topic: String,
    pub queue_id: i32,
    /// The plugin version's short hash.
    pub version: String,
    pub batch: usize,
    pub fuel_used: u64,
    /// What stopped the call (control characters escaped, at most 512 bytes).
    pub detail: String,
}

/// An abort kind by its name (`trap`, `fuel`, …).
mod kind_name {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    use super::{ABORT_KINDS, AbortKind};

    pub(super) fn serialize<S: Serializer>(kind: &AbortKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(kind.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<AbortKind, D::Error> {
        let name = String::deserialize(d)?;
        ABORT_KINDS
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| D::Error::custom(format!("unknown abort kind {name:?}")))
    }
}

/// Live counters (shared by every call of a listener).
#[derive(Debug)]
pub struct SandboxStats {
    fuel_histogram: Histogram,
    /// The last [`RECENT_ABORTS_KEPT`] aborts; written on the (rare) abort path only.
    recent_aborts: Mutex<VecDeque<RecentAbort>>,
    pub(crate) calls: AtomicU64,
    pub(crate) warm_calls: AtomicU64,
    pub(crate) warm_evicted: AtomicU64,
    pub(crate) answered: AtomicU64,
    pub(crate) listener_errors: AtomicU64,
    pub(crate) aborts: [AtomicU64; ABORT_KINDS.len()],
    pub(crate) isolations: AtomicU64,
    pub(crate) poison: AtomicU64,
    pub(crate) fuel_used: AtomicU64,
    pub(crate) log_lines: AtomicU64,
    pub(crate) log_dropped: AtomicU64,
    pub(crate) log_truncated: AtomicU64,
    pub(crate) sends: AtomicU64,
    pub(crate) send_failures: AtomicU64,
    pub(crate) reloads: AtomicU64,
    pub(crate) reload_failures: AtomicU64,
}

impl Default for SandboxStats {
    fn default() -> Self {
        Self {
            fuel_histogram: Histogram::new(FUEL_BUCKETS),
            recent_aborts: Mutex::default(),
            calls: AtomicU64::default(),
            warm_calls: AtomicU64::default(),
            warm_evicted: AtomicU64::default(),
            answered: AtomicU64::default(),
            listener_errors: AtomicU64::default(),
            aborts: Default::default(),
            isolations: AtomicU64::default(),
            poison: AtomicU64::default(),
            fuel_used: AtomicU64::default(),
            log_lines: AtomicU64::default(),
            log_dropped: AtomicU64::default(),
            log_truncated: AtomicU64::default(),
            sends: AtomicU64::default(),
            send_failures: AtomicU64::default(),
            reloads: AtomicU64::default(),
            reload_failures: AtomicU64::default(),
        }
    }
}

impl SandboxStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Fuel one sandboxed run used: the total and the histogram.
    pub(crate) fn add_fuel(&self, used: u64) {
        Self::add(&self.fuel_used, used);
        self.fuel_histogram.observe(used as f64);
    }

    /// Fuel used per sandboxed run (isolation re-runs included).
    pub fn fuel_histogram(&self) -> &Histogram {
        &self.fuel_histogram
    }

    pub(crate) fn abort(&self, kind: AbortKind) {
        Self::add(&self.aborts[kind_index(kind)], 1);
    }

    /// Counts an abort and keeps it among the recent ones.
    pub(crate) fn record_abort(&self, mut abort: RecentAbort) {
        self.abort(abort.kind);
        abort.detail = super::convert::guest_text(&abort.detail, RECENT_ABORT_DETAIL).0;
        let mut recent = self.recent_aborts.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() == RECENT_ABORTS_KEPT {
            recent.pop_front();
        }
        recent.push_back(abort);
    }

    /// The last aborts, oldest first.
    pub fn recent_aborts(&self) -> Vec<RecentAbort> {
        self.recent_aborts.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect()
    }

    /// A consistent-enough copy for reporting.
    pub fn snapshot(&self) -> SandboxStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SandboxStatsSnapshot {
            calls: get(&self.calls),
            warm_calls: get(&self.warm_calls),
            warm_evicted: get(&self.warm_evicted),
            answered: get(&self.answered),
            listener_errors: get(&self.listener_errors),
            aborts: ABORT_KINDS.iter().map(|k| (*k, get(&self.aborts[kind_index(*k)]))).collect(),
            isolations: get(&self.isolations),
            poison: get(&self.poison),
            fuel_used: get(&self.fuel_used),
            log_lines: get(&self.log_lines),
            log_dropped: get(&self.log_dropped),
            log_truncated: get(&self.log_truncated),
            sends: get(&self.sends),
            send_failures: get(&self.send_failures),
            reloads: get(&self.reloads),
            reload_failures: get(&self.reload_failures),
        }
    }
}

/// A copy of [`SandboxStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxStatsSnapshot {
    /// Sandboxed calls, isolated retries included.
    pub calls: u64,
    /// Calls served by an instance kept from an earlier call (warm mode).
    pub warm_calls: u64,
    /// Idle kept instances dropped because a call (of any listener) needed their pool slot.
    pub warm_evicted: u64,
    /// Calls the guest answered with outcomes.
    pub answered: u64,
    /// Calls the guest answered with `listener-error`.
    pub listener_errors: u64,
    /// Calls the host stopped, per kind.
    pub aborts: Vec<(AbortKind, u64)>,
    /// Batches retried message by message after an abort.
    pub isolations: u64,
    /// Messages dead-lettered as poison.
    pub poison: u64,
    pub fuel_used: u64,
    pub log_lines: u64,
    pub log_dropped: u64,
    pub log_truncated: u64,
    pub sends: u64,
    pub send_failures: u64,
    pub reloads: u64,
    pub reload_failures: u64,
}

impl SandboxStatsSnapshot {
    /// Aborts of one kind.
    pub fn aborts_of(&self, kind: AbortKind) -> u64 {
        self.aborts.iter().find(|(k, _)| *k == kind).map_or(0, |(_, n)| *n)
    }
}
