//! Hot reload under load against a real cluster: 10,000 messages stream through a Wasm listener
//! while its `.wasm` is replaced (v1 → v2) and then broken. None is lost, each is processed by
//! exactly one version, every call that starts after the swap runs v2, and the broken file
//! leaves v2 serving.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rmq_wasm::client::QueueSelector;
use rmq_wasm::consumer::PushConsumer;
use rmq_wasm::consumer::config::{ConsumerConfig, Subscription};
use rmq_wasm::consumer::listener::{
    ConsumeContext, ListenerFuture, MessageListener, MessageOutcome,
};
use rmq_wasm::protocol::body::ConsumeFromWhere;
use rmq_wasm::protocol::message::{Message, MessageExt};
use rmq_wasm::wasm::{ContentHash, PluginSpec, WasmListener};
use rmq_wasm_tests::cluster::Cluster;
use rmq_wasm_tests::support::{Clients, init_tracing, unique, wait_for};
use rmq_wasm_tests::wasm::{engine, plugin};

const TOTAL: usize = 10_000;

/// Per message id: (version that processed it, when its call started).
type Seen = Arc<Mutex<HashMap<String, Vec<(ContentHash, Instant)>>>>;

/// Records which version served each message.
struct Recording {
    inner: Arc<WasmListener>,
    seen: Seen,
}

impl MessageListener for Recording {
    fn consume<'a>(
        &'a self,
        ctx: &'a ConsumeContext,
        messages: &'a [MessageExt],
    ) -> ListenerFuture<'a> {
        Box::pin(async move {
            let started = Instant::now();
            let (result, version) = self.inner.consume_traced(ctx, messages).await;
            if let Ok(outcomes) = &result {
                let mut seen = self.seen.lock().unwrap();
                for (m, o) in messages.iter().zip(outcomes) {
                    if *o == MessageOutcome::Success {
                        seen.entry(m.msg_id()).or_default().push((version.hash, started));
                    }
                }
            }
            result
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_loses_nothing_and_switches_every_later_call() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("wasm_reload");
    c.create_topic(cluster, &topic, 4).await.unwrap();
    let group = unique("wasm_reload_g");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("listener.wasm");
    std::fs::copy(plugin("filter"), &path).unwrap();
    // Both versions answer success for every message: only the version differs.
    let mut spec = PluginSpec::new("reload", &group);
    spec.config.insert("tag".into(), "never".into());
    let listener = Arc::new(WasmListener::load(engine(), &path, spec).await.unwrap());
    let v1 = listener.version().hash;
    let _reloader = listener.watch().unwrap();
    let seen: Seen = Arc::default();
    let recording = Arc::new(Recording { inner: Arc::clone(&listener), seen: Arc::clone(&seen) });

    let mut config = ConsumerConfig::new(&group).subscribe(Subscription::all(&topic));
    config.consume_from_where = ConsumeFromWhere::FirstOffset;
    config.consume_message_batch_max_size = 16;
    let consumer =
        PushConsumer::start(config, vec![cluster.namesrv_addr.clone()], recording).await.unwrap();

    let producer = tokio::spawn(async move {
        for chunk in 0..TOTAL / 100 {
            let msgs = (0..100)
                .map(|i| Message::new(&topic, Bytes::from(format!("m{}", chunk * 100 + i))))
                .collect();
            c.producer.send_batch(msgs, QueueSelector::RoundRobin).await.unwrap();
        }
    });

    let count = || seen.lock().unwrap().len();
    wait_for("a third of the stream consumed", Duration::from_secs(120), || {
        (count() >= TOTAL / 3).then_some(())
    })
    .await;
    let tmp = dir.path().join("listener.wasm.new");
    std::fs::copy(plugin("config-echo"), &tmp).unwrap();
    let landed = Instant::now();
    std::fs::rename(&tmp, &path).unwrap();
    let swapped = wait_for("the swap", Duration::from_secs(30), || {
        (listener.version().hash != v1).then(Instant::now)
    })
    .await;
    let v2 = listener.version().hash;
    eprintln!("reload under load: v2 serving {:?} after the file landed", swapped - landed);
    assert!(count() < TOTAL, "the swap should happen mid-stream");

    // A broken file later keeps v2 serving.
    std::fs::write(&tmp, b"\0asm broken").unwrap();
    std::fs::rename(&tmp, &path).unwrap();

    producer.await.unwrap();
    wait_for("every message consumed", Duration::from_secs(180), || {
        (count() >= TOTAL).then_some(())
    })
    .await;
    wait_for("the broken file noticed", Duration::from_secs(30), || {
        (listener.stats().counters.reload_failures >= 1).then_some(())
    })
    .await;
    assert_eq!(listener.version().hash, v2, "a broken file must not replace v2");

    consumer.shutdown().await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), TOTAL, "no message lost");
    let (mut on_v1, mut on_v2) = (0, 0);
    for (id, runs) in seen.iter() {
        let versions: Vec<_> = runs.iter().map(|(v, _)| *v).collect();
        assert!(versions.iter().all(|v| *v == versions[0]), "{id} ran on two versions");
        for (version, started) in runs {
            if *started > swapped {
                assert_eq!(*version, v2, "{id}: its call started after the swap but ran v1");
            }
        }
        if versions[0] == v1 { on_v1 += 1 } else { on_v2 += 1 }
    }
    eprintln!("reload under load: {on_v1} messages on v1, {on_v2} on v2");
    assert!(on_v1 > 0 && on_v2 > 0);
}
