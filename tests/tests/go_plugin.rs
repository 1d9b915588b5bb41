//! The Go listener (plugins/go-router, built with the Go SDK in guest-sdk/go) through the full
//! push consumer against a real cluster: per-message outcomes honoured in one batch — a routed
//! copy (success), a retry that succeeds on redelivery, a dead letter with the plugin's reason —
//! (fresh instance per call, the default).
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
use rmq_wasm::wasm::{PluginSpec, TopicGrant, WasmListener};
use rmq_wasm_tests::cluster::Cluster;
use rmq_wasm_tests::support::{Clients, init_tracing, unique};
use rmq_wasm_tests::wasm::{HangingProducer, engine, plugin, read_keys};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_router_routes_retries_then_routes_and_dead_letters_real_messages() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("go_router");
    let out = unique("go_router_out");
    c.create_topic(cluster, &topic, 2).await.unwrap();
    c.create_topic(cluster, &out, 1).await.unwrap();
    let group = unique("go_router_g");

    let mut spec = PluginSpec::new("go-router", &group);
    spec.config = [
        ("route.order", out.as_str()),
        ("retry-tag", "later"),
        ("delay-level", "1s"),
        ("dead-word", "poison"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    spec.producer = Some(Arc::new(HangingProducer(Clients::new(cluster).producer)));
    spec.limits.produce_topics = vec![TopicGrant::parse(&out).unwrap()];
    let listener =
        Arc::new(WasmListener::load(engine(), &plugin("go-router"), spec).await.unwrap());
    let mut config = ConsumerConfig::new(&group).subscribe(Subscription::all(&topic));
    config.consume_from_where = ConsumeFromWhere::FirstOffset;
    config.max_reconsume_times = Some(3);
    config.rebalance_interval = Duration::from_secs(2);
    let consumer =
        PushConsumer::start(config, vec![cluster.namesrv_addr.clone()], Arc::clone(&listener) as _)
            .await
            .unwrap();

    let send = |key: &'static str, tags: Option<&'static str>, body: &'static str| {
        let mut m = Message::new(&topic, Bytes::from_static(body.as_bytes())).with_keys([key]);
        if let Some(t) = tags {
            m = m.with_tags(t);
        }
        c.producer.send(m)
    };
    send("ok", None, r#"{"kind":"order","id":1}"#).await.unwrap();
    send("again", Some("later"), r#"{"kind":"order","id":2}"#).await.unwrap();
    send("bad", None, r#"{"kind":"order","note":"poison"}"#).await.unwrap();
    send("tagged", Some("order"), "not json: routed by its tag").await.unwrap();

    let routed =
        read_keys(&c, cluster, &out, &["ok", "again", "tagged"], Duration::from_secs(90)).await;
    let retries = |key: &str| {
        let m = routed.iter().find(|m| m.keys().any(|k| k == key)).unwrap();
        assert_eq!(m.property("ROUTE_KEY"), Some("order"), "{key}: {:?}", m.properties);
        m.property("ROUTED_AFTER_RETRIES").map(str::to_owned)
    };
    assert_eq!(retries("ok").as_deref(), Some("0"));
    assert_eq!(retries("tagged").as_deref(), Some("0"));
    // Retried once (reconsume 0 → 1), then routed: the plugin's retry outcome was honoured.
    assert_eq!(retries("again").as_deref(), Some("1"));

    let dead =
        read_keys(&c, cluster, &format!("%DLQ%{group}"), &["bad"], Duration::from_secs(90)).await;
    let reason = dead[0].property(DLQ_REASON).unwrap_or_default();
    assert!(reason.contains("poison"), "{:?}", dead[0].properties);
    // Only the poisoned message went to the DLQ (dead-lettered, not retried into it).
    assert_eq!(dead.len(), 1, "{dead:?}");
    let stats = listener.stats().counters;
    assert!(stats.sends >= 3 && stats.isolations == 0, "{stats:?}");
    consumer.shutdown().await;
}
