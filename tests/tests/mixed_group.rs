//! A mixed group on the real cluster: one of our push consumers and one `rocketmq-client-rust`
//! 1.0.0 `DefaultMQPushConsumer` in the same clustering group split an 8-queue topic 4/4 with no
//! overlap and no gap (the AVG contract every client of a group shares), and together consume
//! every message exactly where their split says.
//!
//! The peer gets client IP `127.0.0.1` and its own instance name, so its client id
//! (`127.0.0.1@<instance>`) differs from ours; by default it would put the first non-loopback
//! interface address into its id (it only ever dials the name server it is given and the broker
//! addresses from the routes, which are 127.0.0.1 here).
//!
//! rocketmq-client-rust 1.0.0 runs every listener call on its runtime's bounded `metadata_io`
//! blocking lane (2 × cores running + 8 × cores queued); a call that finds the lane full fails
//! with `runtime.capacity.exhausted` and the message is sent back to `%RETRY%<group>`, whose one
//! queue the AVG split gives to one member. The peer is kept within the lane (8 consume
//! threads) and the test still accounts for any message it hands back that way.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rmq_wasm::consumer::PushConsumer;
use rmq_wasm::consumer::config::{ConsumerConfig, Subscription};
use rmq_wasm::consumer::listener::{FnListener, MessageOutcome};
use rmq_wasm::protocol::body::ConsumeFromWhere;
use rmq_wasm::protocol::message::{Message, MessageExt};
use rmq_wasm_tests::cluster::Cluster;
use rmq_wasm_tests::support::{Clients, init_tracing, unique, wait_for};
use rocketmq_client_rust::{
    ClientConfig, ClientResult, ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus, DefaultMQPushConsumer, MQPushConsumer, MessageListenerConcurrently,
    MessageQueueListener, TelemetryHandle,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere as PeerFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt as PeerMessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue as PeerQueue;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

/// A queue as both clients name it: (topic, broker name, queue id).
type Queue = (String, String, i32);

/// The runtime the peer client lives on. rocketmq-client-rust 1.0.0 never uses the ambient Tokio
/// runtime: a `ClientRuntime` needs a context from an application-owned `RuntimeOwner` (its own
/// multi-thread runtime). Process-wide and never dropped, as in the client's own tests.
static PEER_RUNTIME: LazyLock<RuntimeOwner> = LazyLock::new(|| {
    RuntimeOwner::plan(RuntimeConfig::for_parallelism("rmq-peer", 2))
        .expect("valid peer runtime config")
        .build()
        .expect("peer runtime starts")
});

/// What the peer's listener saw: (unique message id, queue).
type PeerSeen = Arc<Mutex<Vec<(String, Queue)>>>;

struct PeerListener {
    seen: PeerSeen,
}

impl MessageListenerConcurrently for PeerListener {
    fn consume_message(
        &self,
        msgs: &[&PeerMessageExt],
        ctx: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mq = ctx.get_message_queue();
        let queue = (mq.topic_str().to_owned(), mq.broker_name().to_string(), mq.queue_id());
        let mut seen = self.seen.lock().unwrap();
        for m in msgs {
            seen.push((peer_msg_id(m), queue.clone()));
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

/// The client-side unique id (`UNIQ_KEY`), which our producer returns as the message id; the
/// peer's `MessageExt::msg_id` is the broker's offset id.
fn peer_msg_id(m: &PeerMessageExt) -> String {
    m.properties().get("UNIQ_KEY").map_or_else(|| m.msg_id().to_string(), ToString::to_string)
}

/// The peer's current allocation per topic, as its rebalance reports it.
#[derive(Default)]
struct PeerAllocation {
    by_topic: Mutex<BTreeMap<String, BTreeSet<Queue>>>,
    /// Every allocation the peer reported per topic, in order: a mid-run rebalance shows here
    /// even if it was undone before the end.
    history: Mutex<BTreeMap<String, Vec<BTreeSet<Queue>>>>,
}

impl MessageQueueListener for PeerAllocation {
    fn message_queue_changed(
        &self,
        topic: &str,
        _mq_all: &HashSet<PeerQueue>,
        mq_assigned: &HashSet<PeerQueue>,
    ) {
        let set: BTreeSet<Queue> = mq_assigned
            .iter()
            .map(|q| (q.topic_str().to_owned(), q.broker_name().to_string(), q.queue_id()))
            .collect();
        self.history.lock().unwrap().entry(topic.to_owned()).or_default().push(set.clone());
        self.by_topic.lock().unwrap().insert(topic.to_owned(), set);
    }
}

impl PeerAllocation {
    fn of(&self, topic: &str) -> BTreeSet<Queue> {
        self.by_topic.lock().unwrap().get(topic).cloned().unwrap_or_default()
    }

    /// Reported allocations of `topic` that differ from the one before them, after the first
    /// report of the current one (0: the split never moved once reached).
    fn changes_since_split(&self, topic: &str) -> usize {
        let history = self.history.lock().unwrap();
        let Some(reports) = history.get(topic) else { return 0 };
        let current = reports.last().cloned().unwrap_or_default();
        let first = reports.iter().position(|r| *r == current).unwrap_or(reports.len());
        reports[first..].windows(2).filter(|w| w[0] != w[1]).count()
    }
}

fn queue(q: rmq_wasm::protocol::MessageQueue) -> Queue {
    (q.topic, q.broker_name, q.queue_id.0)
}

fn ours_owned(c: &PushConsumer, topic: &str) -> BTreeSet<Queue> {
    c.stats().queues.into_keys().filter(|q| q.topic == topic).map(queue).collect()
}

/// `Some((ours, theirs))` when both own 4 queues, disjoint, covering `all`.
fn split_4_4(
    ours: &BTreeSet<Queue>,
    theirs: &BTreeSet<Queue>,
    all: &BTreeSet<Queue>,
) -> Option<(BTreeSet<Queue>, BTreeSet<Queue>)> {
    let union: BTreeSet<Queue> = ours.union(theirs).cloned().collect();
    (ours.len() == 4 && theirs.len() == 4 && ours.is_disjoint(theirs) && &union == all)
        .then(|| (ours.clone(), theirs.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_consumer_and_a_rocketmq_rust_consumer_split_the_queues_avg() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("mixed");
    let route = c.create_topic(cluster, &topic, 8).await.unwrap();
    let all: BTreeSet<Queue> = route.subscribe_queues(&topic).into_iter().map(queue).collect();
    assert_eq!(all.len(), 8);
    let group = unique("mixed_group");

    // The peer: clustering, AVG (its default), subscribe "*", from the first offset; 8 consume
    // threads keep its listener calls within its blocking lane (see the module docs).
    let peer_seen: PeerSeen = Arc::default();
    let peer_alloc = Arc::new(PeerAllocation::default());
    let client_runtime = ClientRuntime::try_new(
        PEER_RUNTIME.root_context().component("mixed-group-test"),
        ClientRuntimeConfig { shutdown_timeout: Duration::from_secs(10), ..Default::default() },
        TelemetryHandle::noop(),
    )
    .expect("peer client runtime");
    let mut peer_config = ClientConfig::new();
    peer_config.namesrv_addr = Some(cluster.namesrv_addr.clone().into());
    peer_config.client_ip = Some("127.0.0.1".into());
    peer_config.instance_name = unique("peer").into();
    let mut peer = DefaultMQPushConsumer::builder(Arc::clone(&client_runtime))
        .client_config(peer_config)
        .consumer_group(group.clone())
        .consume_from_where(PeerFromWhere::ConsumeFromFirstOffset)
        .consume_thread_min(8)
        .consume_thread_max(8)
        .message_queue_listener(Some(Arc::clone(&peer_alloc) as Arc<dyn MessageQueueListener>))
        .build();
    peer.subscribe(topic.clone(), "*").await.expect("peer subscribes");
    peer.register_message_listener_concurrently(PeerListener { seen: Arc::clone(&peer_seen) });
    tokio::time::timeout(Duration::from_secs(30), peer.start())
        .await
        .expect("peer start is bounded")
        .expect("peer starts");

    // Ours: same group, subscription and strategy (AVG is the default).
    let ours_seen: Arc<Mutex<Vec<(String, Queue)>>> = Arc::default();
    let s = Arc::clone(&ours_seen);
    let listener = Arc::new(FnListener(
        move |ctx: rmq_wasm::consumer::ConsumeContext, msgs: Vec<MessageExt>| {
            let s = Arc::clone(&s);
            async move {
                let queue = queue(ctx.queue);
                s.lock().unwrap().extend(msgs.iter().map(|m| (m.msg_id(), queue.clone())));
                Ok(vec![MessageOutcome::Success; msgs.len()])
            }
        },
    ));
    let mut config = ConsumerConfig::new(&group).subscribe(Subscription::all(&topic));
    config.instance_name = unique("ours");
    config.consume_from_where = ConsumeFromWhere::FirstOffset;
    config.rebalance_interval = Duration::from_secs(2);
    let ours = PushConsumer::start(config, vec![cluster.namesrv_addr.clone()], listener)
        .await
        .expect("our consumer starts");

    // Both see both members (the broker notifies the peer when we join) and split 4/4.
    let (ours_queues, peer_queues) = wait_for(
        "our consumer and the peer to split 8 queues 4/4",
        Duration::from_secs(60),
        || split_4_4(&ours_owned(&ours, &topic), &peer_alloc.of(&topic), &all),
    )
    .await;

    // Messages sent after the split land on both sides' queues (round robin).
    let (mut to_ours, mut to_peer) = (BTreeSet::new(), BTreeSet::new());
    for i in 0..400 {
        let msg = Message::new(&topic, Bytes::from(format!("mixed-{i}")));
        let sent = c.producer.send(msg).await.unwrap();
        if ours_queues.contains(&queue(sent.queue)) { &mut to_ours } else { &mut to_peer }
            .insert(sent.msg_id);
    }
    let expected: BTreeSet<String> = to_ours.union(&to_peer).cloned().collect();
    // Ids each member received from the topic's queues, and from any other (the retry topic).
    let ids = |seen: &Mutex<Vec<(String, Queue)>>, from_topic: bool| -> BTreeSet<String> {
        let seen = seen.lock().unwrap();
        seen.iter()
            .filter(|(_, q)| (q.0 == topic) == from_topic)
            .map(|(id, _)| id.clone())
            .collect()
    };
    wait_for("every message consumed by one of the two", Duration::from_secs(60), || {
        let mut all_seen = ids(&ours_seen, true);
        all_seen.extend(ids(&ours_seen, false));
        all_seen.extend(ids(&peer_seen, true));
        all_seen.extend(ids(&peer_seen, false));
        all_seen.is_superset(&expected).then_some(())
    })
    .await;

    // Each received the topic's messages from its own 4 queues only, so none went to both.
    let received_from = |seen: &Mutex<Vec<(String, Queue)>>| -> BTreeSet<Queue> {
        seen.lock().unwrap().iter().filter(|(_, q)| q.0 == topic).map(|(_, q)| q.clone()).collect()
    };
    assert_eq!(received_from(&ours_seen), ours_queues, "our consumer's queues");
    assert_eq!(received_from(&peer_seen), peer_queues, "the peer's queues");
    let (ours_ids, peer_ids) = (ids(&ours_seen, true), ids(&peer_seen, true));
    assert_eq!(ours_ids, to_ours, "our consumer got exactly the messages of its queues");
    assert!(peer_ids.is_subset(&to_peer), "the peer got messages of our queues");
    // Whatever the peer handed back came again through the retry topic.
    let mut retried = ids(&ours_seen, false);
    retried.extend(ids(&peer_seen, false));
    let handed_back: BTreeSet<_> = to_peer.difference(&peer_ids).cloned().collect();
    assert!(handed_back.is_subset(&retried), "lost: {:?}", handed_back.difference(&retried));
    if !handed_back.is_empty() {
        eprintln!("note: the peer handed back {} message(s) via %RETRY%", handed_back.len());
    }
    // The split held while consuming (no member came or went, so AVG gives the same answer at
    // every rebalance); the retry topic's queue has at most one owner.
    assert_eq!(ours_owned(&ours, &topic), ours_queues);
    assert_eq!(peer_alloc.of(&topic), peer_queues);
    assert_eq!(peer_alloc.changes_since_split(&topic), 0, "the peer's allocation changed mid-run");
    let retry_topic = format!("%RETRY%{group}");
    let (ours_retry, peer_retry) = (ours_owned(&ours, &retry_topic), peer_alloc.of(&retry_topic));
    assert!(ours_retry.is_disjoint(&peer_retry), "both own {retry_topic}: {ours_retry:?}");

    // With a stable split and no restart, delivery from the topic is exactly once across the
    // two: no id twice from the topic, and an id that came back through %RETRY% is one the peer
    // handed back without consuming it (only the peer does that here). Duplicates would only be
    // allowed around a rebalance, which the checks above rule out.
    let topic_deliveries = |seen: &Mutex<Vec<(String, Queue)>>| -> Vec<String> {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(_, q)| q.0 == topic)
            .map(|(id, _)| id.clone())
            .collect()
    };
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for id in topic_deliveries(&ours_seen).into_iter().chain(topic_deliveries(&peer_seen)) {
        *counts.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once from the topic: {twice:?}");
    assert!(
        retried.is_disjoint(&ours_ids) && retried.is_disjoint(&peer_ids),
        "a consumed message came again through %RETRY%"
    );
    assert_eq!(
        counts.len() + handed_back.len(),
        expected.len(),
        "every message consumed once from the topic or, handed back, once via %RETRY%"
    );

    ours.shutdown().await;
    tokio::time::timeout(Duration::from_secs(30), peer.shutdown())
        .await
        .expect("peer shutdown is bounded");
    let report = client_runtime.shutdown().await;
    assert!(report.is_healthy(), "peer client runtime shutdown: {}", report.to_json());
}
