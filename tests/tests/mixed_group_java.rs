//! Our push consumer and Apache RocketMQ's own `DefaultMQPushConsumer` (the seed of everything
//! the consumer rebuilds) in one group on the real cluster: both compute the same AVG split, every
//! message is consumed once across both, a member leaving hands its queues over without loss, and
//! in an orderly group a queue is never processed by both at once.
//!
//! Messages are identified by (broker, queue, offset), which both sides see the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rmq_wasm::client::QueueSelector;
use rmq_wasm::consumer::config::{ConsumerConfig, Subscription};
use rmq_wasm::consumer::listener::{FnListener, MessageListener, MessageOutcome};
use rmq_wasm::consumer::{ConsumeContext, ConsumeMode, PushConsumer};
use rmq_wasm::protocol::MessageQueue;
use rmq_wasm::protocol::message::{Message, MessageExt};
use rmq_wasm_tests::cluster::Cluster;
use rmq_wasm_tests::java_peer::{JavaPeer, PeerOptions, PeerState};
use rmq_wasm_tests::support::{Clients, consumer_config, init_tracing, unique, wait_for};

/// A message's identity: (broker, queue id, queue offset).
type Id = (String, i32, i64);
/// One listener call of ours: (queue, first-start ms, end ms, ids).
type Call = (Id, i64, i64);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Records every message with the wall-clock interval of its listener call.
fn recorder(seen: &Arc<Mutex<Vec<Call>>>, pause: Duration) -> Arc<dyn MessageListener> {
    let seen = Arc::clone(seen);
    Arc::new(FnListener(move |ctx: ConsumeContext, msgs: Vec<MessageExt>| {
        let seen = Arc::clone(&seen);
        async move {
            let start = now_ms();
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            let end = now_ms();
            let mut s = seen.lock().unwrap();
            for m in &msgs {
                let id = (ctx.queue.broker_name.clone(), ctx.queue.queue_id.0, m.queue_offset.0);
                s.push((id, start, end));
            }
            Ok(vec![MessageOutcome::Success; msgs.len()])
        }
    }))
}

fn config(group: &str, topic: &str, mode: ConsumeMode) -> ConsumerConfig {
    let mut c = consumer_config(group, Subscription::all(topic), "ours");
    c.consume_mode = mode;
    c
}

fn java_cluster() -> Option<&'static Cluster> {
    let cluster = Cluster::shared();
    if !cluster.flavour.is_java() {
        eprintln!(
            "skipped: the Java peer runs against Apache RocketMQ (flavour {})",
            cluster.flavour
        );
        return None;
    }
    Some(cluster)
}

fn ours_owned(c: &PushConsumer, topic: &str) -> BTreeSet<(String, i32)> {
    c.stats()
        .queues
        .into_keys()
        .filter(|q| q.topic == topic)
        .map(|q| (q.broker_name, q.queue_id.0))
        .collect()
}

fn peer_ids(state: &PeerState) -> Vec<Id> {
    state.messages.iter().map(|m| (m.broker.clone(), m.queue, m.offset)).collect()
}

/// Sends `n` messages, round robin, or in turn to each of `queues`.
async fn produce(c: &Clients, topic: &str, n: usize, queues: Option<&[MessageQueue]>) {
    for i in 0..n {
        let msg = Message::new(topic, Bytes::from(format!("m{i}"))).with_keys([format!("k{i}")]);
        let selector = match queues {
            Some(queues) => QueueSelector::Queue(&queues[i % queues.len()]),
            None => QueueSelector::RoundRobin,
        };
        c.producer.send_with(msg, selector).await.unwrap();
    }
}

/// Waits until our consumer and the peer hold disjoint queue sets covering `all`, `ours` and
/// `peer` queues each.
async fn wait_split(
    what: &str,
    ours: &PushConsumer,
    peer: &JavaPeer,
    topic: &str,
    all: &BTreeSet<(String, i32)>,
    want: (usize, usize),
) {
    wait_for(what, Duration::from_secs(60), || {
        let (a, b) = (ours_owned(ours, topic), peer.state().assigned);
        let union: BTreeSet<_> = a.union(&b).cloned().collect();
        ((a.len(), b.len()) == want && a.is_disjoint(&b) && &union == all).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_consumer_and_the_java_push_consumer_split_a_group_and_hand_over_without_loss() {
    init_tracing();
    let Some(cluster) = java_cluster() else { return };
    let c = Clients::new(cluster);
    let topic = unique("java_mixed");
    let route = c.create_topic(cluster, &topic, 8).await.unwrap();
    let all: BTreeSet<(String, i32)> = route
        .subscribe_queues(&topic)
        .into_iter()
        .map(|q: MessageQueue| (q.broker_name, q.queue_id.0))
        .collect();
    let group = unique("java_mixed_group");
    let seen: Arc<Mutex<Vec<Call>>> = Arc::default();
    let ours = PushConsumer::start(
        config(&group, &topic, ConsumeMode::Concurrently),
        vec![cluster.namesrv_addr.clone()],
        recorder(&seen, Duration::ZERO),
    )
    .await
    .unwrap();
    let mut peer = JavaPeer::start(&PeerOptions {
        flavour: cluster.flavour,
        ..PeerOptions::new(&cluster.namesrv_addr, &group, &topic, "java")
    })
    .unwrap();
    wait_split(
        "ours and the Java consumer to split 8 queues 4/4",
        &ours,
        &peer,
        &topic,
        &all,
        (4, 4),
    )
    .await;

    // 400 messages over all 8 queues, produced once the split is settled: each consumed exactly
    // once, by whichever side holds its queue.
    produce(&c, &topic, 400, None).await;
    let consumed = |seen: &Arc<Mutex<Vec<Call>>>, peer: &JavaPeer| {
        let mut ids: Vec<Id> = seen.lock().unwrap().iter().map(|(id, _, _)| id.clone()).collect();
        ids.extend(peer_ids(&peer.state()));
        ids
    };
    wait_for("400 messages consumed across both", Duration::from_secs(60), || {
        (consumed(&seen, &peer).into_iter().collect::<BTreeSet<_>>().len() >= 400).then_some(())
    })
    .await;
    let ids = consumed(&seen, &peer);
    let distinct: BTreeSet<Id> = ids.iter().cloned().collect();
    assert_eq!((ids.len(), distinct.len()), (400, 400), "exactly once across both sides");
    let ours_queues: BTreeSet<(String, i32)> =
        seen.lock().unwrap().iter().map(|((b, q, _), _, _)| (b.clone(), *q)).collect();
    let peer_queues: BTreeSet<(String, i32)> =
        peer.state().messages.iter().map(|m| (m.broker.clone(), m.queue)).collect();
    assert!(ours_queues.is_disjoint(&peer_queues), "{ours_queues:?} vs {peer_queues:?}");

    // The Java member leaves (graceful shutdown: offsets persisted, unregistered): ours takes
    // every queue over and consumes what comes next, losing nothing.
    peer.stop().unwrap();
    wait_for("ours to own all 8 queues", Duration::from_secs(60), || {
        (ours_owned(&ours, &topic) == all).then_some(())
    })
    .await;
    produce(&c, &topic, 200, None).await;
    wait_for("600 messages consumed", Duration::from_secs(60), || {
        (consumed(&seen, &peer).into_iter().collect::<BTreeSet<_>>().len() >= 600).then_some(())
    })
    .await;
    let ids = consumed(&seen, &peer);
    let distinct: BTreeSet<Id> = ids.iter().cloned().collect();
    eprintln!(
        "mixed group: 600 produced, {} consumed once, {} duplicates",
        distinct.len(),
        ids.len() - distinct.len()
    );
    assert_eq!(distinct.len(), 600);
    ours.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orderly_group_of_ours_and_the_java_consumer_never_runs_a_queue_on_both() {
    init_tracing();
    let Some(cluster) = java_cluster() else { return };
    let c = Clients::new(cluster);
    let topic = unique("java_orderly");
    let route = c.create_topic(cluster, &topic, 4).await.unwrap();
    let queues = route.subscribe_queues(&topic);
    let all: BTreeSet<(String, i32)> =
        queues.iter().map(|q| (q.broker_name.clone(), q.queue_id.0)).collect();
    let group = unique("java_orderly_group");
    let seen: Arc<Mutex<Vec<Call>>> = Arc::default();
    // A stream on every queue first, so that the handover happens mid-stream.
    produce(&c, &topic, 800, Some(&queues)).await;
    let ours = PushConsumer::start(
        config(&group, &topic, ConsumeMode::Orderly),
        vec![cluster.namesrv_addr.clone()],
        recorder(&seen, Duration::from_millis(2)),
    )
    .await
    .unwrap();
    wait_for("ours to start consuming", Duration::from_secs(60), || {
        (seen.lock().unwrap().len() >= 50).then_some(())
    })
    .await;
    let mut peer = JavaPeer::start(&PeerOptions {
        orderly: true,
        flavour: cluster.flavour,
        ..PeerOptions::new(&cluster.namesrv_addr, &group, &topic, "java")
    })
    .unwrap();
    wait_split("an orderly 2/2 split", &ours, &peer, &topic, &all, (2, 2)).await;
    wait_for("all 800 consumed", Duration::from_secs(120), || {
        let mut ids: BTreeSet<Id> =
            seen.lock().unwrap().iter().map(|(id, _, _)| id.clone()).collect();
        ids.extend(peer_ids(&peer.state()));
        (ids.len() >= 800).then_some(())
    })
    .await;
    let state = peer.stop().unwrap();

    // Never both at once: on each queue, no call of ours overlaps a call of the peer in time.
    let mut ours_calls: BTreeMap<(String, i32), Vec<(i64, i64)>> = BTreeMap::new();
    for ((b, q, _), start, end) in seen.lock().unwrap().iter() {
        ours_calls.entry((b.clone(), *q)).or_default().push((*start, *end));
    }
    let mut overlaps = 0;
    for m in &state.messages {
        if let Some(calls) = ours_calls.get(&(m.broker.clone(), m.queue)) {
            overlaps += calls.iter().filter(|(s, e)| *s < m.end_ms && m.start_ms < *e).count();
        }
    }
    assert_eq!(overlaps, 0, "a queue was processed by both consumers at once");
    // Per-queue order on each side: offsets never go backwards within one side's run.
    for queue in ours_calls.keys() {
        let offsets: Vec<i64> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|((b, q, _), _, _)| (b, *q) == (&queue.0, queue.1))
            .map(|((_, _, o), _, _)| *o)
            .collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "ours out of order on {queue:?}");
    }
    let handed: BTreeSet<(String, i32)> =
        state.messages.iter().map(|m| (m.broker.clone(), m.queue)).collect();
    eprintln!("orderly mixed: peer consumed {} messages on {handed:?}", state.messages.len());
    ours.shutdown().await;
}
