//! `/metrics`: a [`Reading`] in the Prometheus text format (0.0.4), through `prometheus-client`.
//!
//! Names: the RocketMQ 5.x clients' where one exists (`rocketmq_process_time`,
//! `rocketmq_await_time`, `rocketmq_consumer_cached_messages`, `rocketmq_consumer_cached_bytes`;
//! times in ms, their buckets), `rmq_wasm_*` otherwise. Labels are bounded by the configuration
//! and the cluster's queues: `listener`, `consumer_group`, `topic` (the configured one and
//! `%RETRY%<group>`), per queue `broker` and `queue_id`, and small fixed sets (`outcome`,
//! `kind`, `result`); never a message key, id or anything a message carries.
//!
//! Counters come from life-long counters (per topic, per listener), so they never go down when
//! a queue is rebalanced away; gauges of queues (lag, cache) cover the queues owned now.

use std::borrow::Cow;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::reading::{ListenerReading, Reading};
use crate::wasm::stats::{ABORT_KINDS, SandboxStatsSnapshot};

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Renders `reading` as a Prometheus text exposition.
pub fn render(reading: Reading) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Frozen(reading)));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .expect("writing to a String does not fail");
    out
}

/// A reading, encoded when the registry asks.
#[derive(Debug)]
struct Frozen(Reading);

type Labels<'a> = Vec<(&'static str, Cow<'a, str>)>;

/// One metric family: a name, help, type and its series.
struct Family<'a, M> {
    name: &'static str,
    help: &'static str,
    series: Vec<(Labels<'a>, M)>,
}

impl<'a, M: EncodeMetric> Family<'a, M> {
    fn new(name: &'static str, help: &'static str) -> Self {
        Self { name, help, series: Vec::new() }
    }

    fn add(&mut self, labels: Labels<'a>, metric: M) {
        self.series.push((labels, metric));
    }

    fn encode(&self, encoder: &mut DescriptorEncoder<'_>, kind: MetricType) -> std::fmt::Result {
        if self.series.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(self.name, self.help, None, kind)?;
        for (labels, metric) in &self.series {
            metric.encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

fn gauge(v: i64) -> ConstGauge<i64> {
    ConstGauge::new(v)
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Collector for Frozen {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let r = &self.0;
        let mut pulls = Family::new("rmq_wasm_pulls", "Pull requests answered by a broker.");
        let mut pulled =
            Family::new("rmq_wasm_pulled_messages", "Messages pulled (before tag filtering).");
        let mut calls = Family::new("rmq_wasm_consume_calls", "Listener calls (one per batch).");
        let mut consumed = Family::new(
            "rmq_wasm_consumed_messages",
            "Messages by the listener's decision: success, retry (sent back), dead_letter \
             (poison included).",
        );
        let mut pauses = Family::new(
            "rmq_wasm_flow_control_pauses",
            "Pulls held back by flow control (cached count or size over the threshold).",
        );
        let mut process: Family<'_, Histogram> =
            Family::new("rocketmq_process_time", "Listener call duration, in milliseconds.");
        let mut await_time: Family<'_, Histogram> = Family::new(
            "rocketmq_await_time",
            "Time a pulled batch waited for a consume permit before its call, in milliseconds.",
        );
        let mut pull_rt: Family<'_, Histogram> =
            Family::new("rmq_wasm_pull_rt_milliseconds", "Pull round trip, in milliseconds.");
        let mut cached_msgs = Family::new(
            "rocketmq_consumer_cached_messages",
            "Messages pulled and not yet settled, over the queues owned now.",
        );
        let mut cached_bytes = Family::new(
            "rocketmq_consumer_cached_bytes",
            "Body bytes of the cached messages, over the queues owned now.",
        );
        let mut lag = Family::new(
            "rmq_wasm_queue_lag",
            "Messages in an owned queue past the committed offset (broker max offset - \
             committed).",
        );
        let mut committed =
            Family::new("rmq_wasm_queue_committed_offset", "Committed offset of an owned queue.");
        let mut owned = Family::new("rmq_wasm_owned_queues", "Queues owned now.");
        let mut ready = Family::new(
            "rmq_wasm_listener_ready",
            "1 when the last rebalance placed every subscribed topic of the listener.",
        );
        let mut info = Family::new(
            "rmq_wasm_plugin_info",
            "The serving plugin version (sha256 prefix of the .wasm); always 1.",
        );
        let mut sandbox_calls =
            Family::new("rmq_wasm_sandbox_calls", "Sandboxed runs, isolation re-runs included.");
        let mut listener_errors =
            Family::new("rmq_wasm_listener_errors", "Calls the plugin answered with an error.");
        let mut aborts =
            Family::new("rmq_wasm_aborts", "Calls the host stopped, by kind of abort.");
        let mut poison = Family::new(
            "rmq_wasm_poison_messages",
            "Messages dead-lettered because they alone made the plugin abort.",
        );
        let mut fuel: Family<'_, Histogram> =
            Family::new("rmq_wasm_fuel_used", "Fuel one sandboxed run used.");
        let mut reloads =
            Family::new("rmq_wasm_reloads", "Hot reloads of the plugin, by result (ok, failed).");
        let mut log_dropped = Family::new(
            "rmq_wasm_log_lines_dropped",
            "Plugin log lines dropped by the per-call and per-listener caps.",
        );
        let mut sends = Family::new("rmq_wasm_plugin_sends", "Messages the plugin sent.");

        for l in &r.listeners {
            let base = || {
                vec![
                    ("listener", Cow::Borrowed(l.name.as_str())),
                    ("consumer_group", Cow::Borrowed(l.group.as_str())),
                ]
            };
            for (topic, stats) in &l.topics {
                let labels = || {
                    let mut v = base();
                    v.push(("topic", Cow::Borrowed(topic.as_str())));
                    v
                };
                let s = stats.snapshot();
                pulls.add(labels(), counter(s.pulls));
                pulled.add(labels(), counter(s.pulled_messages));
                calls.add(labels(), counter(s.consume_calls));
                for (outcome, n) in [
                    ("success", s.outcomes.success),
                    ("retry", s.outcomes.retry),
                    ("dead_letter", s.outcomes.dead_letter),
                ] {
                    let mut with = labels();
                    with.push(("outcome", Cow::Borrowed(outcome)));
                    consumed.add(with, counter(n));
                }
                pauses.add(labels(), counter(s.flow_control_pauses));
                process.add(labels(), stats.process_time().clone());
                await_time.add(labels(), stats.await_time().clone());
                pull_rt.add(labels(), stats.pull_rt().clone());
                let (mut msgs, mut bytes) = (0, 0);
                for qs in l.queues.queues.iter().filter(|(q, _)| q.topic == *topic).map(|(_, s)| s)
                {
                    msgs += qs.cached_count;
                    bytes += qs.cached_bytes;
                }
                cached_msgs.add(labels(), gauge(clamp(msgs)));
                cached_bytes.add(labels(), gauge(clamp(bytes)));
            }
            queue_series(l, &mut lag, &mut committed);
            owned.add(base(), gauge(clamp(l.queues.queues.len() as u64)));
            ready.add(base(), gauge(i64::from(l.ready)));
            let mut with = base();
            with.push(("version", Cow::Borrowed(short(&l.plugin.version))));
            info.add(with, gauge(1));
            let c: SandboxStatsSnapshot = l.sandbox.snapshot();
            sandbox_calls.add(base(), counter(c.calls));
            listener_errors.add(base(), counter(c.listener_errors));
            for kind in ABORT_KINDS {
                let mut with = base();
                with.push(("kind", Cow::Borrowed(kind.as_str())));
                aborts.add(with, counter(c.aborts_of(kind)));
            }
            poison.add(base(), counter(c.poison));
            fuel.add(base(), l.sandbox.fuel_histogram().clone());
            for (result, n) in [("ok", c.reloads), ("failed", c.reload_failures)] {
                let mut with = base();
                with.push(("result", Cow::Borrowed(result)));
                reloads.add(with, counter(n));
            }
            log_dropped.add(base(), counter(c.log_dropped));
            sends.add(base(), counter(c.sends));
        }

        for f in [&pulls, &pulled, &calls, &consumed, &pauses] {
            f.encode(&mut encoder, MetricType::Counter)?;
        }
        for f in [&process, &await_time, &pull_rt] {
            f.encode(&mut encoder, MetricType::Histogram)?;
        }
        for f in [&cached_msgs, &cached_bytes, &lag, &committed, &owned, &ready] {
            f.encode(&mut encoder, MetricType::Gauge)?;
        }
        info.encode(&mut encoder, MetricType::Gauge)?;
        for f in [&sandbox_calls, &listener_errors, &aborts, &poison] {
            f.encode(&mut encoder, MetricType::Counter)?;
        }
        fuel.encode(&mut encoder, MetricType::Histogram)?;
        for f in [&reloads, &log_dropped, &sends] {
            f.encode(&mut encoder, MetricType::Counter)?;
        }
        let mut active = Family::new("rmq_wasm_instances_active", "Sandbox pool slots held now.");
        active.add(Vec::new(), gauge(i64::from(r.instances_active)));
        active.encode(&mut encoder, MetricType::Gauge)?;
        let mut max = Family::new("rmq_wasm_instances_max", "Sandbox pool size.");
        max.add(Vec::new(), gauge(i64::from(r.instances_max)));
        max.encode(&mut encoder, MetricType::Gauge)
    }
}

/// Lag and committed offset of each owned queue.
fn queue_series<'a>(
    l: &'a ListenerReading,
    lag: &mut Family<'a, ConstGauge<i64>>,
    committed: &mut Family<'a, ConstGauge<i64>>,
) {
    for (q, s) in &l.queues.queues {
        let labels = || {
            vec![
                ("listener", Cow::Borrowed(l.name.as_str())),
                ("consumer_group", Cow::Borrowed(l.group.as_str())),
                ("topic", Cow::Borrowed(q.topic.as_str())),
                ("broker", Cow::Borrowed(q.broker_name.as_str())),
                ("queue_id", Cow::Owned(q.queue_id.0.to_string())),
            ]
        };
        lag.add(labels(), gauge((s.max_offset.0 - s.committed_offset.0).max(0)));
        committed.add(labels(), gauge(s.committed_offset.0));
    }
}

/// The first 12 hex digits of a version: enough to tell versions apart in a label.
fn short(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}
