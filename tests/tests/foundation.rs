//! The foundation against a real rocketmq-rust cluster: routes, topic admin, sending and pulling
//! back every field, consumer offsets, queue locks, heartbeats and the consumer list.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;
use rmq_wasm::client::{PullStatus, QueueSelector, SendResult};
use rmq_wasm::protocol::body::{
    ConsumeFromWhere, ConsumeType, ConsumerData, HeartbeatData, LockBatchRequestBody, MessageModel,
    SubscriptionData, UnlockBatchRequestBody,
};
use rmq_wasm::protocol::header::{
    GetMaxOffsetRequestHeader, PullMessageRequestHeader, QueryConsumerOffsetRequestHeader,
    UnregisterClientRequestHeader, UpdateConsumerOffsetRequestHeader, pull_sys_flag,
};
use rmq_wasm::protocol::message::{Message, MessageExt, property};
use rmq_wasm::protocol::{EpochMillis, MessageQueue, QueueId, QueueOffset};
use rmq_wasm_tests::cluster::Cluster;
use rmq_wasm_tests::support::{Clients, init_tracing, read_back_header, unique};
use tokio::time::Instant;

const RPC: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_lookup_and_cluster_info() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let info = c.namesrv.cluster_info().await.unwrap();
    assert_eq!(info.master_addrs(&cluster.cluster_name), vec![cluster.broker_addr.as_str()]);
    assert!(c.namesrv.route(&unique("no_such_topic")).await.unwrap().is_none());

    let topic = unique("route");
    let route = c.create_topic(cluster, &topic, 8).await.unwrap();
    let queues = route.subscribe_queues(&topic);
    assert_eq!(queues.len(), 8);
    assert!(queues.iter().all(|q| q.broker_name == cluster.broker_name));
    assert_eq!(route.master_addr(&cluster.broker_name), Some(cluster.broker_addr.as_str()));
    assert_eq!(route.publish_queues(&topic).len(), 8);
}

/// What we sent, to compare with what comes back.
struct Sent {
    message: Message,
    result: SendResult,
}

fn sample_message(topic: &str, i: usize) -> Message {
    // Bodies of varied size; every 50th is over 4 KiB so the producer compresses it.
    let len = if i.is_multiple_of(50) { 6000 + i } else { 16 + i % 300 };
    let body: Vec<u8> = (0..len).map(|j| u8::try_from((i * 31 + j * 7) % 251).unwrap()).collect();
    Message::new(topic, Bytes::from(body))
        .with_tags(if i.is_multiple_of(2) { "TagA" } else { "TagB" })
        .with_keys([format!("key-{i}"), format!("order-{}", i % 7)])
        .with_property("idx", i.to_string())
        .with_property("unicode", "häßlich ✓")
        .with_flag(i32::try_from(i % 5).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_come_back_with_every_field_equal() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("roundtrip");
    let route = c.create_topic(cluster, &topic, 8).await.unwrap();
    let queues = route.subscribe_queues(&topic);
    let started = EpochMillis::now();

    let mut sent: HashMap<String, Sent> = HashMap::new();
    // 500 single sends, round robin.
    for i in 0..500 {
        let message = sample_message(&topic, i);
        let result = c.producer.send(message.clone()).await.unwrap();
        sent.insert(result.msg_id.clone(), Sent { message, result });
    }
    // 500 more in batches of 25, each batch to one queue.
    for b in 0..20 {
        let batch: Vec<Message> =
            (0..25).map(|k| sample_message(&topic, 500 + b * 25 + k)).collect();
        let queue = &queues[b % queues.len()];
        let result =
            c.producer.send_batch(batch.clone(), QueueSelector::Queue(queue)).await.unwrap();
        let ids: Vec<&str> = result.msg_id.split(',').collect();
        assert_eq!(ids.len(), 25);
        assert_eq!(&result.queue, queue);
        for (k, (id, message)) in ids.iter().zip(batch).enumerate() {
            let mut one = result.clone();
            one.msg_id = (*id).to_owned();
            one.queue_offset = QueueOffset(result.queue_offset.0 + i64::try_from(k).unwrap());
            sent.insert((*id).to_owned(), Sent { message, result: one });
        }
    }
    assert_eq!(sent.len(), 1000, "every send got a distinct unique id");

    // The broker indexes stored messages into their queues asynchronously (its reput
    // service): on a loaded machine the last ones may not be in the queues yet. Wait until
    // every message is indexed, then pull every queue from 0 to its max offset.
    let max_offset = |queue: &MessageQueue| {
        let header = GetMaxOffsetRequestHeader {
            topic: topic.clone(),
            queue_id: queue.queue_id,
            committed: None,
            bname: None,
        };
        let broker = c.broker.clone();
        let addr = cluster.broker_addr.clone();
        async move { broker.max_offset(&addr, &header, RPC).await.unwrap() }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut indexed = 0;
        for queue in &queues {
            indexed += max_offset(queue).await.0;
        }
        if indexed == 1000 {
            break;
        }
        assert!(Instant::now() < deadline, "only {indexed} of 1000 messages indexed after 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut pulled: BTreeMap<String, (MessageQueue, MessageExt)> = BTreeMap::new();
    for queue in &queues {
        let max = max_offset(queue).await;
        let mut offset = QueueOffset(0);
        let deadline = Instant::now() + Duration::from_secs(60);
        while offset < max {
            assert!(Instant::now() < deadline, "pulling {queue} stalled at {offset}/{max}");
            let header = read_back_header(&topic, queue.queue_id, offset);
            let result = c.broker.pull(&cluster.broker_addr, &header, RPC).await.unwrap();
            assert_eq!(result.status, PullStatus::Found, "pull {queue} at {offset}");
            assert!(result.next_begin_offset > offset);
            for m in result.messages {
                assert_eq!(m.queue_offset, offset, "offsets are dense in {queue}");
                offset = offset.next();
                pulled.insert(m.msg_id(), (queue.clone(), m));
            }
            assert_eq!(offset, result.next_begin_offset);
        }
    }
    assert_eq!(pulled.len(), 1000);

    let broker_port: u16 = cluster.broker_addr.rsplit(':').next().unwrap().parse().unwrap();
    for (id, (queue, got)) in &pulled {
        let Sent { message, result } = sent.get(id).unwrap_or_else(|| panic!("unknown id {id}"));
        assert_eq!(got.topic, topic);
        assert_eq!(got.body, message.body, "body of {id}");
        assert_eq!(got.flag, message.flag);
        assert_eq!(got.tags(), message.tags());
        assert_eq!(got.keys().collect::<Vec<_>>(), message.keys().collect::<Vec<_>>());
        assert_eq!(got.property("idx"), message.property("idx"));
        assert_eq!(got.property("unicode"), Some("häßlich ✓"));
        assert_eq!(got.uniq_key(), Some(id.as_str()));
        // Every property we sent is there unchanged (the broker may add its own).
        for (k, v) in message.properties.iter() {
            assert_eq!(got.property(k), Some(v), "property {k} of {id}");
        }
        assert_eq!(queue, &result.queue, "queue of {id}");
        assert_eq!(got.queue_id, result.queue.queue_id);
        assert_eq!(got.queue_offset, result.queue_offset, "offset of {id}");
        assert_eq!(got.reconsume_times, 0);
        assert!(got.born_host.ip().is_loopback(), "born host {}", got.born_host);
        assert!(got.store_host.ip().is_loopback(), "store host {}", got.store_host);
        assert_eq!(got.store_host.port(), broker_port);
        assert!(got.born_timestamp >= started && got.store_timestamp >= got.born_timestamp);
        if !is_batched(message) {
            // A single send reports the broker's offset msg id; it must be the record's.
            assert_eq!(got.offset_msg_id(), result.offset_msg_id, "offset msg id of {id}");
        }
    }
}

/// Messages 500.. were sent in batches, whose send result names the whole batch.
fn is_batched(m: &Message) -> bool {
    m.property("idx").and_then(|v| v.parse::<usize>().ok()).is_some_and(|i| i >= 500)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_offsets_round_trip() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("offsets");
    c.create_topic(cluster, &topic, 4).await.unwrap();
    // The broker only keeps offsets for groups it knows; a heartbeat registers ours.
    let group = unique("offset_group");
    heartbeat(&c, cluster, "offsets-client", &group, &topic).await;
    let update = |queue: i32, offset: i64| UpdateConsumerOffsetRequestHeader {
        consumer_group: group.clone(),
        topic: topic.clone(),
        queue_id: QueueId(queue),
        commit_offset: QueueOffset(offset),
        bname: Some(cluster.broker_name.clone()),
    };
    let query = |queue: i32| QueryConsumerOffsetRequestHeader {
        consumer_group: group.clone(),
        topic: topic.clone(),
        queue_id: QueueId(queue),
        set_zero_if_not_found: Some(false),
        bname: Some(cluster.broker_name.clone()),
    };
    c.broker.update_offset(&cluster.broker_addr, &update(1, 42), RPC).await.unwrap();
    assert_eq!(
        c.broker.query_offset(&cluster.broker_addr, &query(1), RPC).await.unwrap(),
        Some(QueueOffset(42))
    );
    // Oneway, as the periodic persist sends it: visible once the broker has processed it.
    c.broker.update_offset_oneway(&cluster.broker_addr, &update(2, 7), RPC).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = c.broker.query_offset(&cluster.broker_addr, &query(2), RPC).await.unwrap();
        if got == Some(QueueOffset(7)) {
            break;
        }
        assert!(Instant::now() < deadline, "oneway update never applied; last read {got:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A queue the group never committed: not found (or 0 under the broker quirk, reference 2.6).
    let fresh = c.broker.query_offset(&cluster.broker_addr, &query(3), RPC).await.unwrap();
    assert!(matches!(fresh, None | Some(QueueOffset(0))), "fresh queue offset {fresh:?}");
}

async fn heartbeat(c: &Clients, cluster: &Cluster, client_id: &str, group: &str, topic: &str) {
    let data = HeartbeatData {
        client_id: client_id.to_owned(),
        consumer_data_set: vec![ConsumerData {
            group_name: group.to_owned(),
            consume_type: ConsumeType::Passively,
            message_model: MessageModel::Clustering,
            consume_from_where: ConsumeFromWhere::LastOffset,
            subscription_data_set: vec![SubscriptionData::new(topic, "TagA || TagB")],
            unit_mode: false,
        }],
        ..Default::default()
    };
    c.broker.heartbeat(&cluster.broker_addr, &data, RPC).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_registers_and_unregister_removes_a_consumer() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("hb");
    c.create_topic(cluster, &topic, 4).await.unwrap();
    let group = unique("hb_group");
    // One connection per client id, as real clients have (rocketmq-rust refuses a second client
    // id on a connection that already heartbeated with another).
    let other = Clients::new(cluster);
    heartbeat(&c, cluster, "127.0.0.1@hb-one", &group, &topic).await;
    heartbeat(&other, cluster, "127.0.0.1@hb-two", &group, &topic).await;
    let ids = c.broker.consumer_ids(&cluster.broker_addr, &group, RPC).await.unwrap();
    let ids: BTreeSet<_> = ids.into_iter().collect();
    assert!(ids.contains("127.0.0.1@hb-one") && ids.contains("127.0.0.1@hb-two"), "{ids:?}");

    let unregister = UnregisterClientRequestHeader {
        client_id: "127.0.0.1@hb-one".into(),
        producer_group: None,
        consumer_group: Some(group.clone()),
    };
    c.broker.unregister(&cluster.broker_addr, &unregister, RPC).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ids =
            c.broker.consumer_ids(&cluster.broker_addr, &group, RPC).await.unwrap_or_default();
        if !ids.iter().any(|id| id == "127.0.0.1@hb-one") {
            assert!(ids.iter().any(|id| id == "127.0.0.1@hb-two"), "{ids:?}");
            break;
        }
        assert!(Instant::now() < deadline, "unregistered client still listed: {ids:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_locks_are_exclusive_until_unlocked() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("locks");
    let route = c.create_topic(cluster, &topic, 4).await.unwrap();
    let group = unique("lock_group");
    let b_clients = Clients::new(cluster);
    heartbeat(&c, cluster, "127.0.0.1@lock-a", &group, &topic).await;
    heartbeat(&b_clients, cluster, "127.0.0.1@lock-b", &group, &topic).await;
    let wanted: BTreeSet<MessageQueue> =
        route.subscribe_queues(&topic).into_iter().take(3).collect();
    let lock = |client: &str| LockBatchRequestBody {
        consumer_group: group.clone(),
        client_id: client.to_owned(),
        only_this_broker: false,
        mq_set: wanted.clone(),
    };
    let a =
        c.broker.lock_batch(&cluster.broker_addr, &lock("127.0.0.1@lock-a"), RPC).await.unwrap();
    assert_eq!(a, wanted, "A gets every free queue");
    let again =
        c.broker.lock_batch(&cluster.broker_addr, &lock("127.0.0.1@lock-a"), RPC).await.unwrap();
    assert_eq!(again, wanted, "renewal by the holder");
    let b = b_clients
        .broker
        .lock_batch(&cluster.broker_addr, &lock("127.0.0.1@lock-b"), RPC)
        .await
        .unwrap();
    assert!(b.is_empty(), "B must not get A's queues: {b:?}");

    let unlock = UnlockBatchRequestBody {
        consumer_group: group.clone(),
        client_id: "127.0.0.1@lock-a".into(),
        only_this_broker: false,
        mq_set: wanted.clone(),
    };
    c.broker.unlock_batch(&cluster.broker_addr, &unlock, false, RPC).await.unwrap();
    let b = b_clients
        .broker
        .lock_batch(&cluster.broker_addr, &lock("127.0.0.1@lock-b"), RPC)
        .await
        .unwrap();
    assert_eq!(b, wanted, "B gets them once A unlocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_pull_wakes_when_a_message_arrives() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("longpoll");
    let route = c.create_topic(cluster, &topic, 1).await.unwrap();
    let queue = route.subscribe_queues(&topic).remove(0);
    let group = unique("lp_group");
    heartbeat(&c, cluster, "127.0.0.1@lp", &group, &topic).await;
    let header = PullMessageRequestHeader {
        consumer_group: group.clone(),
        topic: topic.clone(),
        queue_id: queue.queue_id,
        queue_offset: QueueOffset(0),
        max_msg_nums: 32,
        sys_flag: pull_sys_flag::SUSPEND,
        commit_offset: QueueOffset(0),
        suspend_timeout_millis: 15_000,
        subscription: Some("*".into()),
        sub_version: EpochMillis(0),
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
        bname: None,
    };
    let broker = c.broker.clone();
    let addr = cluster.broker_addr.clone();
    let parked =
        tokio::spawn(async move { broker.pull(&addr, &header, Duration::from_secs(30)).await });
    // The message is sent while the pull is (most likely) parked; either way the pull must return
    // it well before the 15 s suspend ends.
    let sent_at = Instant::now();
    let result =
        c.producer.send(Message::new(&topic, &b"wake up"[..]).with_tags("TagA")).await.unwrap();
    let pulled = parked.await.unwrap().unwrap();
    assert!(sent_at.elapsed() < Duration::from_secs(10), "long poll was not woken");
    assert_eq!(pulled.status, PullStatus::Found);
    assert_eq!(pulled.messages.len(), 1);
    assert_eq!(pulled.messages[0].uniq_key(), Some(result.msg_id.as_str()));
    assert_eq!(pulled.messages[0].property(property::TAGS), Some("TagA"));
}
