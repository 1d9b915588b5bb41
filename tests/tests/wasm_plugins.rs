//! Wasm listeners through the full push consumer against a real rocketmq-rust cluster: a plugin
//! in each language with its per-message outcomes honoured (routed copies, retries, DLQ), every
//! hostile plugin ending in the DLQ while a well-behaved listener in the same process keeps
//! consuming (or, for the ones that fail politely or only flood, retried or committed), and a
//! plugin that cannot even be instantiated retried rather than dead-lettered as poison.
//!
//! Plugins come from `target/plugins/` (built by `scripts/build-plugins.sh`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rmq_wasm::client::QueueSelector;
use rmq_wasm::consumer::PushConsumer;
use rmq_wasm::consumer::config::{ConsumerConfig, Subscription};
use rmq_wasm::consumer::listener::{AbortKind, DLQ_REASON};
use rmq_wasm::consumer::stats::QueueStatsSnapshot;
use rmq_wasm::protocol::body::ConsumeFromWhere;
use rmq_wasm::protocol::message::Message;
use rmq_wasm::wasm::{
    PROP_ABORT, PROP_FUEL_USED, PROP_VERSION, PluginProducer, PluginSpec, TopicGrant, WasmListener,
};
use rmq_wasm_tests::cluster::Cluster;
use rmq_wasm_tests::support::{Clients, init_tracing, unique, wait_for};
use rmq_wasm_tests::wasm::{HangingProducer, engine, plugin, read_keys};

fn producer_for(cluster: &Cluster) -> Arc<dyn PluginProducer> {
    Arc::new(HangingProducer(Clients::new(cluster).producer))
}

fn consumer_config(group: &str, topic: &str, max_reconsume_times: i32) -> ConsumerConfig {
    let mut c = ConsumerConfig::new(group).subscribe(Subscription::all(topic));
    c.consume_from_where = ConsumeFromWhere::FirstOffset;
    c.max_reconsume_times = Some(max_reconsume_times);
    c.rebalance_interval = Duration::from_secs(2);
    c
}

async fn start(
    cluster: &Cluster,
    plugin_name: &str,
    spec: PluginSpec,
    config: ConsumerConfig,
) -> (Arc<WasmListener>, PushConsumer) {
    let listener =
        Arc::new(WasmListener::load(engine(), &plugin(plugin_name), spec).await.unwrap());
    let consumer =
        PushConsumer::start(config, vec![cluster.namesrv_addr.clone()], Arc::clone(&listener) as _)
            .await
            .unwrap();
    (listener, consumer)
}

fn spec(name: &str, group: &str, config: &[(&str, &str)]) -> PluginSpec {
    let mut s = PluginSpec::new(name, group);
    s.config = config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    s
}

async fn send(c: &Clients, topic: &str, key: &str, tags: Option<&str>, body: &str) {
    let mut m = Message::new(topic, Bytes::from(body.to_owned())).with_keys([key]);
    if let Some(t) = tags {
        m = m.with_tags(t);
    }
    c.producer.send(m).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_plugin_retries_then_dead_letters_through_the_consumer() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("wasm_rust");
    c.create_topic(cluster, &topic, 2).await.unwrap();
    let group = unique("wasm_rust_g");
    let s = spec(
        "filter",
        &group,
        &[("tag", "hold"), ("delay-level", "1"), ("dead-letter-after", "1")],
    );
    let (listener, consumer) =
        start(cluster, "filter", s, consumer_config(&group, &topic, 3)).await;
    send(&c, &topic, "go", Some("go"), "fine").await;
    send(&c, &topic, "hold", Some("hold"), "held").await;

    // "hold": retried once (reconsume 0 → 1), then dead-lettered by the plugin.
    let dlq =
        read_keys(&c, cluster, &format!("%DLQ%{group}"), &["hold"], Duration::from_secs(90)).await;
    assert_eq!(dlq[0].body, Bytes::from_static(b"held"));
    // The plugin's reason travels with the DLQ copy, with the plugin version.
    let reason = dlq[0].property(DLQ_REASON).unwrap_or_default();
    assert!(reason.contains("still matching"), "{:?}", dlq[0].properties);
    assert_eq!(dlq[0].property(PROP_VERSION), Some(listener.version().hash.short().as_str()));
    let stats = listener.stats().counters;
    assert!(stats.answered >= 3, "{stats:?}");
    consumer.shutdown().await;
}

/// Routers in Python and JavaScript: valid events are produced to the output topic with the
/// plugin's properties, invalid ones go straight to the DLQ with the plugin's reason, a `retry`
/// one is redelivered until the consumer's max reconsume times sends it to the DLQ. Both
/// languages run at once (the retry delays dominate the time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_javascript_plugins_route_retry_and_dead_letter_real_messages() {
    init_tracing();
    let cluster = Cluster::shared();
    tokio::join!(
        route_retry_and_dead_letter(cluster, "py-json-router", "EVENT_KIND"),
        route_retry_and_dead_letter(cluster, "js-json-router", "ORDER_ID"),
    );
}

async fn route_retry_and_dead_letter(cluster: &Cluster, name: &str, prop: &str) {
    let c = Clients::new(cluster);
    let topic = unique("wasm_lang");
    let out = unique("wasm_lang_out");
    c.create_topic(cluster, &topic, 2).await.unwrap();
    c.create_topic(cluster, &out, 1).await.unwrap();
    let group = unique("wasm_lang_g");
    let mut s =
        spec(name, &group, &[("route.order", &out), ("target-topic", &out), ("delay-level", "1")]);
    s.producer = Some(producer_for(cluster));
    s.limits.produce_topics = vec![TopicGrant::parse(&out).unwrap()];
    s.limits.timeout = Duration::from_secs(20);
    let (listener, consumer) = start(cluster, name, s, consumer_config(&group, &topic, 1)).await;
    send(&c, &topic, "ok", None, r#"{"kind":"order","id":7,"type":"new"}"#).await;
    send(&c, &topic, "bad", None, "not json").await;
    send(&c, &topic, "again", None, r#"{"kind":"order","id":8,"retry":true}"#).await;

    let routed = read_keys(&c, cluster, &out, &["ok"], Duration::from_secs(90)).await;
    assert!(routed[0].property(prop).is_some(), "{name}: {:?}", routed[0].properties);
    let dlq = format!("%DLQ%{group}");
    let dead = read_keys(&c, cluster, &dlq, &["bad", "again"], Duration::from_secs(90)).await;
    let bad = dead.iter().find(|m| m.keys().any(|k| k == "bad")).unwrap();
    assert!(bad.property(DLQ_REASON).is_some_and(|r| r.contains("JSON")), "{name}: {bad:?}");
    let stats = listener.stats().counters;
    assert!(stats.sends >= 1, "{name}: {stats:?}");
    consumer.shutdown().await;
}

/// Every hostile plugin ends in the DLQ, stopped by its own limit, while a well-behaved listener
/// in the same process (same engine) consumes everything produced meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_end_in_the_dlq_while_a_good_listener_keeps_consuming() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);

    let good_topic = unique("wasm_good");
    c.create_topic(cluster, &good_topic, 2).await.unwrap();
    let good_group = unique("wasm_good_g");
    let (good, good_consumer) = start(
        cluster,
        "filter",
        spec("good", &good_group, &[("tag", "never")]),
        consumer_config(&good_group, &good_topic, 16),
    )
    .await;

    // (plugin, its config, the abort kind that must stop it)
    type Hostile = (&'static str, &'static [(&'static str, &'static str)], AbortKind);
    let hostile: [Hostile; 5] = [
        ("infinite-loop", &[], AbortKind::FuelExhausted),
        ("memory-bomb", &[], AbortKind::ResourceLimit),
        ("deep-recursion", &[], AbortKind::StackOverflow),
        ("trap-on-key", &[("key", "k")], AbortKind::Trap),
        ("hang-in-host-call", &[], AbortKind::Timeout),
    ];
    let mut running = Vec::new();
    for (name, config, kind) in hostile {
        let topic = unique("wasm_bad");
        c.create_topic(cluster, &topic, 1).await.unwrap();
        let group = unique("wasm_bad_g");
        let mut s = spec(name, &group, config);
        s.producer = Some(producer_for(cluster));
        // hang-in-host-call sends to `__hang__`, which the test producer never answers.
        s.limits.produce_topics = vec![TopicGrant::parse("__hang__").unwrap()];
        s.limits.fuel = 200 * rmq_wasm::wasm::FUEL_PER_MS;
        // The hanging plugin is stopped by the timeout; every other one must be stopped by its
        // own limit first, also on a loaded machine where 200 ms of fuel takes longer than
        // 500 ms of wall clock (the infinite loop was then reported as a timeout).
        s.limits.timeout = match kind {
            AbortKind::Timeout => Duration::from_millis(500),
            _ => Duration::from_secs(10),
        };
        s.limits.memory = 16 * 1024 * 1024;
        // Deterministic aborts reach the DLQ through poison isolation at once; the timeout goes
        // the long way: retried, then dead-lettered by the broker after one redelivery.
        let (listener, consumer) =
            start(cluster, name, s, consumer_config(&group, &topic, 1)).await;
        send(&c, &topic, "k", None, "{}").await;
        running.push((name, kind, group, listener, consumer));
    }

    // The good listener keeps consuming while the hostile ones burn their budgets.
    let mut keys = Vec::new();
    for i in 0..40 {
        let key = format!("good-{i}");
        send(&c, &good_topic, &key, Some("TagA"), "{}").await;
        keys.push(key);
    }

    for (name, kind, group, listener, _) in &running {
        let dlq =
            read_keys(&c, cluster, &format!("%DLQ%{group}"), &["k"], Duration::from_secs(120))
                .await;
        let stats = listener.stats().counters;
        assert!(stats.aborts_of(*kind) >= 1, "{name}: expected {kind} aborts, {stats:?}");
        if *kind != AbortKind::Timeout {
            // Poison: dead-lettered by the sandbox, with the reason, kind, fuel and version.
            let m = &dlq[0];
            assert_eq!(m.property(DLQ_REASON), Some("poison"), "{name}: {:?}", m.properties);
            assert_eq!(m.property(PROP_ABORT), Some(kind.as_str()), "{name}");
            assert!(m.property(PROP_FUEL_USED).is_some(), "{name}");
            assert!(m.property(PROP_VERSION).is_some(), "{name}");
        }
    }
    wait_for("the good listener consumed everything", Duration::from_secs(60), || {
        (good.stats().counters.answered >= 1
            && good_consumer.stats().queues.values().map(|q| q.consumed_ok).sum::<u64>() >= 40)
            .then_some(())
    })
    .await;
    for (_, _, _, _, consumer) in running {
        consumer.shutdown().await;
    }
    good_consumer.shutdown().await;
}

/// A poison message in a batch of 32, through the full consumer: the batch traps, poison
/// isolation re-runs each message alone once under the same fuel, the poison one goes to
/// `%DLQ%<group>` with reason `poison` at once (not after 16 redeliveries), and the other 31
/// commit with no retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_in_a_batch_of_32_is_dead_lettered_while_the_other_31_commit() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("wasm_poison");
    c.create_topic(cluster, &topic, 1).await.unwrap();
    // One SEND_BATCH_MESSAGE: the 32 are stored consecutively before the consumer starts, so
    // its first pull (32 messages, Java's pullBatchSize) hands them to one listener call.
    let msgs: Vec<Message> = (0..32)
        .map(|i| {
            let key = if i == 17 { "poison".to_owned() } else { format!("ok-{i}") };
            Message::new(topic.as_str(), Bytes::from_static(b"{}")).with_keys([key])
        })
        .collect();
    c.producer.send_batch(msgs, QueueSelector::RoundRobin).await.unwrap();

    let group = unique("wasm_poison_g");
    let mut config = consumer_config(&group, &topic, 16);
    config.consume_message_batch_max_size = 32;
    let (listener, consumer) =
        start(cluster, "trap-on-key", spec("trap-on-key", &group, &[("key", "poison")]), config)
            .await;

    let counts =
        poison_dead_lettered_and_the_rest_committed(&c, cluster, &consumer, &group, 32).await;
    assert_eq!(counts, (31, 1), "31 commit, 1 dead letter");
    let sandbox = listener.stats().counters;
    assert_eq!(sandbox.isolations, 1, "one batch trapped and was isolated: {sandbox:?}");
    assert_eq!(sandbox.poison, 1, "{sandbox:?}");
    consumer.shutdown().await;
}

/// Warm mode (`instance_reuse`) through the consumer: calls are served by kept instances, and a
/// trapping message still ends in the DLQ as `poison` (the trapped instance is discarded, its
/// isolated re-run gets a fresh one) while every other message commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_instances_serve_real_messages_and_a_trap_still_isolates_the_poison() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("wasm_warm");
    c.create_topic(cluster, &topic, 1).await.unwrap();
    for i in 0..24 {
        let key = if i == 9 { "poison".to_owned() } else { format!("ok-{i}") };
        send(&c, &topic, &key, None, "{}").await;
    }
    let group = unique("wasm_warm_g");
    let mut s = spec("trap-on-key", &group, &[("key", "poison")]);
    s.limits.instance_reuse = 8;
    let mut config = consumer_config(&group, &topic, 16);
    // One call at a time, so one warm instance serves them in turn.
    config.consume_thread_max = 1;
    let (listener, consumer) = start(cluster, "trap-on-key", s, config).await;

    let counts =
        poison_dead_lettered_and_the_rest_committed(&c, cluster, &consumer, &group, 24).await;
    assert_eq!(counts, (23, 1), "23 commit, 1 dead letter");
    let sandbox = listener.stats().counters;
    assert_eq!(sandbox.poison, 1, "{sandbox:?}");
    // An instance serves up to 8 calls (7 of them warm) unless a trap discards it first.
    assert!(sandbox.warm_calls * 2 >= sandbox.calls, "mostly warm calls: {sandbox:?}");
    assert!(sandbox.warm_calls < sandbox.calls, "instances are recycled: {sandbox:?}");
    consumer.shutdown().await;
}

/// Waits until the message keyed `poison` is in the group's DLQ as a trapped poison message and
/// all `total` messages of the topic's one queue are settled and committed; returns that queue's
/// (consumed ok, consumed failed).
async fn poison_dead_lettered_and_the_rest_committed(
    c: &Clients,
    cluster: &Cluster,
    consumer: &PushConsumer,
    group: &str,
    total: u64,
) -> (u64, u64) {
    let dlq =
        read_keys(c, cluster, &format!("%DLQ%{group}"), &["poison"], Duration::from_secs(60)).await;
    assert_eq!(dlq[0].property(DLQ_REASON), Some("poison"), "{:?}", dlq[0].properties);
    assert_eq!(dlq[0].property(PROP_ABORT), Some(AbortKind::Trap.as_str()));
    let committed =
        |q: &QueueStatsSnapshot| u64::try_from(q.committed_offset.0).unwrap_or(0) >= total;
    wait_for("all settled and committed", Duration::from_secs(60), || {
        consumer
            .stats()
            .queues
            .values()
            .any(|q| committed(q) && q.consumed_ok + q.consumed_failed >= total)
            .then_some(())
    })
    .await;
    let queues = consumer.stats().queues;
    let q = queues.values().find(|q| committed(q)).unwrap();
    (q.consumed_ok, q.consumed_failed)
}

/// The hostile plugins the test above does not run, and a plugin that cannot be instantiated,
/// through the consumer (all at once; the retry delays dominate the time):
/// - fs-escape fails every batch with its own error: retried, then dead-lettered by the consumer
///   after max reconsume times — not as poison — and neither its file nor its TCP connect (to a
///   port that really listens) reached the host;
/// - log-flood succeeds with its log capped: every message commits;
/// - a memory cap below the component's initial memory fails every instantiation: `unavailable`
///   aborts, retried like fs-escape, never isolated, nothing dead-lettered as poison.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escapes_floods_and_unavailable_plugins_are_retried_or_committed_not_poisoned() {
    init_tracing();
    let cluster = Cluster::shared();
    tokio::join!(
        fs_escape_is_retried(cluster),
        log_flood_commits(cluster),
        unavailable_is_retried(cluster)
    );
}

/// Starts `plugin_name` on a fresh one-queue topic and group (max reconsume times 1) and sends one
/// message keyed `k`.
async fn one_message(
    cluster: &Cluster,
    plugin_name: &str,
    s: PluginSpec,
    prefix: &str,
) -> (Arc<WasmListener>, PushConsumer, String) {
    let c = Clients::new(cluster);
    let topic = unique(prefix);
    c.create_topic(cluster, &topic, 1).await.unwrap();
    let group = s.group.clone();
    let (listener, consumer) =
        start(cluster, plugin_name, s, consumer_config(&group, &topic, 1)).await;
    send(&c, &topic, "k", None, "{}").await;
    (listener, consumer, group)
}

/// Reads the DLQ copy of `k`: dead-lettered by the consumer after its redeliveries, not by the
/// sandbox (no `poison` reason).
async fn dead_lettered_not_poisoned(cluster: &Cluster, group: &str, name: &str) {
    let c = Clients::new(cluster);
    let dlq =
        read_keys(&c, cluster, &format!("%DLQ%{group}"), &["k"], Duration::from_secs(120)).await;
    assert_ne!(dlq[0].property(DLQ_REASON), Some("poison"), "{name}: {:?}", dlq[0].properties);
    assert_eq!(dlq[0].property(PROP_ABORT), None, "{name}: {:?}", dlq[0].properties);
}

async fn fs_escape_is_retried(cluster: &Cluster) {
    let marker = std::path::Path::new("/tmp/rmq-wasm-fs-escape");
    let _ = std::fs::remove_file(marker);
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    server.set_nonblocking(true).unwrap();
    let addr = server.local_addr().unwrap().to_string();
    let group = unique("wasm_escape_g");
    let s = spec("fs-escape", &group, &[("connect", &addr)]);
    let (listener, consumer, group) = one_message(cluster, "fs-escape", s, "wasm_escape").await;
    dead_lettered_not_poisoned(cluster, &group, "fs-escape").await;
    let stats = listener.stats().counters;
    assert!(stats.listener_errors >= 2, "failed, retried, failed again: {stats:?}");
    assert_eq!((stats.isolations, stats.poison), (0, 0), "{stats:?}");
    assert!(!marker.exists(), "the guest created a host file");
    match server.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the guest reached the listening port: {other:?}"),
    }
    consumer.shutdown().await;
}

async fn log_flood_commits(cluster: &Cluster) {
    let group = unique("wasm_flood_g");
    let s = spec("log-flood", &group, &[("lines", "5000"), ("huge-line-kib", "64")]);
    let (listener, consumer, _) = one_message(cluster, "log-flood", s, "wasm_flood").await;
    wait_for("the flooding listener's message committed", Duration::from_secs(60), || {
        consumer
            .stats()
            .queues
            .values()
            .any(|q| q.consumed_ok >= 1 && q.committed_offset.0 >= 1)
            .then_some(())
    })
    .await;
    let stats = listener.stats().counters;
    let max = u64::from(rmq_wasm::wasm::ListenerLimits::default().max_log_lines);
    assert!(stats.log_lines <= max * stats.calls, "{stats:?}");
    assert!(stats.log_dropped >= 5001 - max, "{stats:?}");
    assert!(stats.log_truncated >= 1, "{stats:?}");
    consumer.shutdown().await;
}

async fn unavailable_is_retried(cluster: &Cluster) {
    let group = unique("wasm_unavailable_g");
    let mut s = spec("filter", &group, &[("tag", "hold")]);
    s.limits.memory = 64 * 1024; // below a Rust component's initial memory
    let (listener, consumer, group) = one_message(cluster, "filter", s, "wasm_unavailable").await;
    dead_lettered_not_poisoned(cluster, &group, "unavailable").await;
    let stats = listener.stats().counters;
    assert!(stats.aborts_of(AbortKind::Unavailable) >= 2, "{stats:?}");
    assert_eq!((stats.isolations, stats.poison, stats.answered), (0, 0, 0), "{stats:?}");
    consumer.shutdown().await;
}
