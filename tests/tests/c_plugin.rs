//! The C filter (`plugins/c-filter`, built on the C SDK `guest-sdk/c`) through the full push
//! consumer against a real cluster: every per-message outcome honoured — success, retry then
//! success, retry then dead letter with the plugin's reason.
//!
//! The plugin comes from `target/plugins/` (built by `scripts/build-plugins.sh`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rmq_wasm::consumer::PushConsumer;
use rmq_wasm::consumer::config::{ConsumerConfig, Subscription};
use rmq_wasm::consumer::listener::DLQ_REASON;
use rmq_wasm::protocol::body::ConsumeFromWhere;
use rmq_wasm::protocol::message::Message;
use rmq_wasm::wasm::{PROP_VERSION, PluginSpec, WasmListener};
use rmq_wasm_tests::cluster::Cluster;
use rmq_wasm_tests::support::{Clients, init_tracing, unique, wait_for};
use rmq_wasm_tests::wasm::{engine, plugin, read_keys};

/// Starts the C filter with `config` on a fresh one-queue topic and group (max reconsume times
/// 3) and sends `(key, tags, body)` messages.
async fn start(
    cluster: &Cluster,
    prefix: &str,
    config: &[(&str, &str)],
    messages: &[(&str, Option<&str>, &str)],
) -> (Arc<WasmListener>, PushConsumer, String) {
    let c = Clients::new(cluster);
    let topic = unique(prefix);
    c.create_topic(cluster, &topic, 1).await.unwrap();
    let group = unique(&format!("{prefix}_g"));
    let mut spec = PluginSpec::new("c-filter", &group);
    spec.config = config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let listener = Arc::new(WasmListener::load(engine(), &plugin("c-filter"), spec).await.unwrap());
    let mut cc = ConsumerConfig::new(&group).subscribe(Subscription::all(&topic));
    cc.consume_from_where = ConsumeFromWhere::FirstOffset;
    cc.max_reconsume_times = Some(3);
    cc.rebalance_interval = Duration::from_secs(2);
    let consumer =
        PushConsumer::start(cc, vec![cluster.namesrv_addr.clone()], Arc::clone(&listener) as _)
            .await
            .unwrap();
    for (key, tags, body) in messages {
        let mut m = Message::new(&topic, Bytes::from(body.to_string())).with_keys([*key]);
        if let Some(t) = tags {
            m = m.with_tags(*t);
        }
        c.producer.send(m).await.unwrap();
    }
    (listener, consumer, group)
}

/// `go` succeeds at once; `hold` is retried once (delay level 1), then dead-lettered by the
/// plugin with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_filter_commits_retries_and_dead_letters_real_messages() {
    init_tracing();
    let cluster = Cluster::shared();
    let (listener, consumer, group) = start(
        cluster,
        "c_filter",
        &[("tag", "hold"), ("delay-level", "1"), ("dead-letter-after", "1")],
        &[("go", Some("go"), "fine"), ("hold", Some("hold"), "held")],
    )
    .await;
    let c = Clients::new(cluster);
    let dlq =
        read_keys(&c, cluster, &format!("%DLQ%{group}"), &["hold"], Duration::from_secs(90)).await;
    assert_eq!(dlq[0].body, Bytes::from_static(b"held"));
    let reason = dlq[0].property(DLQ_REASON).unwrap_or_default();
    assert_eq!(reason, "filter: still matching after 1 redeliveries", "{:?}", dlq[0].properties);
    assert_eq!(dlq[0].property(PROP_VERSION), Some(listener.version().hash.short().as_str()));
    // `go` committed on the topic's own queue (offset past both messages: `hold` counts as
    // consumed there once it was sent back for retry).
    wait_for("the topic's queue committed", Duration::from_secs(30), || {
        consumer
            .stats()
            .queues
            .iter()
            .any(|(q, s)| !q.topic.starts_with('%') && s.committed_offset.0 >= 2)
            .then_some(())
    })
    .await;
    let stats = listener.stats().counters;
    assert!(stats.answered >= 2, "{stats:?}");
    assert_eq!((stats.isolations, stats.poison, stats.listener_errors), (0, 0, 0), "{stats:?}");
    consumer.shutdown().await;
}

/// A body matching `body-contains` is retried once, then accepted: it is consumed from the
/// group's retry topic and never reaches the DLQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_filter_retries_then_accepts_a_real_message() {
    init_tracing();
    let cluster = Cluster::shared();
    let (listener, consumer, group) = start(
        cluster,
        "c_accept",
        &[("body-contains", "later"), ("delay-level", "1"), ("accept-after", "1")],
        &[("later", None, "do it later")],
    )
    .await;
    let retry_topic = format!("%RETRY%{group}");
    wait_for("the redelivered message consumed and committed", Duration::from_secs(90), || {
        consumer
            .stats()
            .queues
            .iter()
            .any(|(q, s)| q.topic == retry_topic && s.consumed_ok >= 1 && s.committed_offset.0 >= 1)
            .then_some(())
    })
    .await;
    let stats = listener.stats().counters;
    assert!(stats.answered >= 2, "first delivery retried, the redelivery accepted: {stats:?}");
    assert_eq!((stats.isolations, stats.poison, stats.listener_errors), (0, 0, 0), "{stats:?}");
    consumer.shutdown().await;
}
