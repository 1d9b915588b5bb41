//! The push consumer against a real rocketmq-rust cluster: rebalance among several members,
//! at-least-once delivery, retries with reconsume times, DLQ, restart without redelivery.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rmq_wasm::consumer::PushConsumer;
use rmq_wasm::consumer::config::{ConsumeMode, ConsumerConfig, Subscription};
use rmq_wasm::consumer::listener::{FnListener, MessageListener, MessageOutcome};
use rmq_wasm::protocol::MessageQueue;
use rmq_wasm::protocol::message::{Message, MessageExt};
use rmq_wasm_tests::cluster::Cluster;
use rmq_wasm_tests::support::{
    Clients, consumer_config, init_tracing, read_topic_until, start_consumer as start, unique,
    wait_for, wait_for_all,
};

/// What a listener saw: message id → reconsume times of every delivery, per consumer name.
type Seen = Arc<Mutex<Vec<(String, String, i32)>>>;

fn recorder(name: &str, seen: &Seen) -> Arc<dyn MessageListener> {
    let name = name.to_owned();
    let seen = Arc::clone(seen);
    Arc::new(FnListener(move |_ctx, msgs: Vec<MessageExt>| {
        let name = name.clone();
        let seen = Arc::clone(&seen);
        async move {
            let mut s = seen.lock().unwrap();
            for m in &msgs {
                s.push((name.clone(), m.msg_id(), m.reconsume_times));
            }
            Ok(vec![MessageOutcome::Success; msgs.len()])
        }
    }))
}

fn config(group: &str, topic: &str, instance: &str) -> ConsumerConfig {
    consumer_config(group, Subscription::all(topic), instance)
}

fn owned(c: &PushConsumer, topic: &str) -> BTreeSet<MessageQueue> {
    c.stats().queues.into_keys().filter(|q| q.topic == topic).collect()
}

/// True when the members' queue sets are disjoint and together cover `all`.
fn partition(
    members: &[&PushConsumer],
    topic: &str,
    all: &BTreeSet<MessageQueue>,
) -> Option<Vec<usize>> {
    let sets: Vec<_> = members.iter().map(|c| owned(c, topic)).collect();
    let total: usize = sets.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<_> = sets.iter().flatten().cloned().collect();
    (total == all.len() && &union == all).then(|| sets.iter().map(BTreeSet::len).collect())
}

fn distinct_ids(seen: &Seen) -> BTreeSet<String> {
    seen.lock().unwrap().iter().map(|(_, id, _)| id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clustering_members_split_queues_and_lose_nothing() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("split");
    let route = c.create_topic(cluster, &topic, 8).await.unwrap();
    let all: BTreeSet<_> = route.subscribe_queues(&topic).into_iter().collect();
    let group = unique("split_group");
    let seen: Seen = Arc::default();
    let mut expected = c.produce_numbered(&topic, 0, 200).await;

    let c1 = start(cluster, config(&group, &topic, "one"), recorder("one", &seen)).await;
    let c2 = start(cluster, config(&group, &topic, "two"), recorder("two", &seen)).await;
    // AVG over 8 queues: 4 + 4, disjoint, covering all.
    wait_for("2 members to split 8 queues 4/4", Duration::from_secs(30), || {
        partition(&[&c1, &c2], &topic, &all).filter(|s| s == &[4, 4])
    })
    .await;

    let c3 = start(cluster, config(&group, &topic, "three"), recorder("three", &seen)).await;
    // AVG over 8 queues and 3 sorted members: 3 + 3 + 2, disjoint, covering all.
    wait_for("3 members to split 8 queues 3/3/2", Duration::from_secs(30), || {
        partition(&[&c1, &c2, &c3], &topic, &all).filter(|s| {
            let mut s = s.clone();
            s.sort_unstable();
            s == [2, 3, 3]
        })
    })
    .await;
    expected.extend(c.produce_numbered(&topic, 200, 300).await);
    wait_for_all("all 500 messages consumed", Duration::from_secs(60), &expected, || {
        distinct_ids(&seen)
    })
    .await;

    // One member leaves: its queues move to the others.
    c2.shutdown().await;
    wait_for("2 remaining members to split 8 queues 4/4", Duration::from_secs(30), || {
        partition(&[&c1, &c3], &topic, &all).filter(|s| s == &[4, 4])
    })
    .await;
    expected.extend(c.produce_numbered(&topic, 500, 200).await);
    wait_for_all("all 700 messages consumed", Duration::from_secs(60), &expected, || {
        distinct_ids(&seen)
    })
    .await;
    let names: BTreeSet<_> = seen.lock().unwrap().iter().map(|(n, _, _)| n.clone()).collect();
    assert_eq!(names.len(), 3, "every member consumed something: {names:?}");
    c1.shutdown().await;
    c3.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_message_comes_back_with_growing_reconsume_times_then_succeeds() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("retry");
    c.create_topic(cluster, &topic, 2).await.unwrap();
    let group = unique("retry_group");
    const FAILS: i32 = 3;
    let attempts: Arc<Mutex<HashMap<String, Vec<i32>>>> = Arc::default();
    let a = Arc::clone(&attempts);
    let listener = Arc::new(FnListener(move |_ctx, msgs: Vec<MessageExt>| {
        let a = Arc::clone(&a);
        async move {
            let mut a = a.lock().unwrap();
            Ok(msgs
                .iter()
                .map(|m| {
                    let key = m.keys().next().unwrap_or_default().to_owned();
                    a.entry(key.clone()).or_default().push(m.reconsume_times);
                    if key == "flaky" && m.reconsume_times < FAILS {
                        // Delay level 1: the test broker's shortest level.
                        MessageOutcome::RetryLater { delay_level: Some(1) }
                    } else {
                        MessageOutcome::Success
                    }
                })
                .collect())
        }
    }));
    let consumer = start(cluster, config(&group, &topic, "r"), listener).await;
    let msg = Message::new(&topic, &b"x"[..]).with_keys(["flaky"]);
    c.producer.send(msg).await.unwrap();
    c.producer.send(Message::new(&topic, &b"y"[..]).with_keys(["steady"])).await.unwrap();
    let seen = wait_for("the flaky message to succeed", Duration::from_secs(60), || {
        let a = attempts.lock().unwrap();
        a.get("flaky").filter(|v| v.len() > usize::try_from(FAILS).unwrap()).cloned()
    })
    .await;
    assert_eq!(seen, vec![0, 1, 2, 3], "reconsume times of each delivery");
    assert_eq!(attempts.lock().unwrap().get("steady").cloned(), Some(vec![0]));
    consumer.shutdown().await;
}

/// A brand-new group's first retry comes back in seconds: the broker creates `%RETRY%<group>` on
/// the group's first heartbeat, and the consumer asks for a missing route again after 1 s, 2 s,
/// … instead of waiting for the 30 s name-server poll (which is how long it took before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_groups_first_retry_comes_back_within_seconds() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("first_retry");
    c.create_topic(cluster, &topic, 1).await.unwrap();
    let group = unique("first_retry_group");
    let deliveries: Arc<Mutex<Vec<std::time::Instant>>> = Arc::default();
    let d = Arc::clone(&deliveries);
    let listener = Arc::new(FnListener(move |_ctx, msgs: Vec<MessageExt>| {
        let d = Arc::clone(&d);
        async move {
            let mut d = d.lock().unwrap();
            d.push(std::time::Instant::now());
            let first = d.len() == 1;
            // The test broker's delay level 1 is 1 s.
            let outcome = if first {
                MessageOutcome::RetryLater { delay_level: Some(1) }
            } else {
                MessageOutcome::Success
            };
            Ok(vec![outcome; msgs.len()])
        }
    }));
    let consumer = start(cluster, config(&group, &topic, "first"), listener).await;
    c.producer.send(Message::new(&topic, &b"x"[..]).with_keys(["once"])).await.unwrap();
    let (first, again) =
        wait_for("the retried message to come back", Duration::from_secs(60), || {
            let d = deliveries.lock().unwrap();
            (d.len() >= 2).then(|| (d[0], d[1]))
        })
        .await;
    let took = again - first;
    eprintln!("a new group's first retry came back after {took:?}");
    assert!(
        took < Duration::from_secs(15),
        "the retry took {took:?}: the retry topic's route was found late"
    );
    consumer.shutdown().await;
}

/// A listener that panics is a listener that failed: its batch is consumed again (concurrent:
/// sent back, as RECONSUME_LATER; orderly: the queue suspends and retries it, as
/// SUSPEND_CURRENT_QUEUE_A_MOMENT) — never committed as if consumed, never left pinning the
/// offset until the consume-timeout sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_panics_gets_its_batch_again_in_both_modes() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    for mode in [ConsumeMode::Concurrently, ConsumeMode::Orderly] {
        let topic = unique("panic");
        c.create_topic(cluster, &topic, 2).await.unwrap();
        let consumed: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let panicked = Arc::new(AtomicBool::new(false));
        let (done, once) = (Arc::clone(&consumed), Arc::clone(&panicked));
        let listener = Arc::new(FnListener(move |_ctx, msgs: Vec<MessageExt>| {
            let (done, once) = (Arc::clone(&done), Arc::clone(&once));
            async move {
                let keys: Vec<String> =
                    msgs.iter().map(|m| m.keys().next().unwrap_or_default().to_owned()).collect();
                if keys.iter().any(|k| k == "k7") && !once.swap(true, Ordering::SeqCst) {
                    panic!("listener bug on k7 (a test of panic handling)");
                }
                done.lock().unwrap().extend(keys);
                Ok(vec![MessageOutcome::Success; msgs.len()])
            }
        }));
        let mut config = config(&unique("panic_group"), &topic, "p");
        config.consume_mode = mode;
        let consumer = start(cluster, config, listener).await;
        let mut expected = BTreeSet::new();
        for i in 0..20 {
            let key = format!("k{i}");
            let msg = Message::new(&topic, Bytes::from(key.clone())).with_keys([key.clone()]);
            c.producer.send(msg).await.unwrap();
            expected.insert(key);
        }
        wait_for_all(
            &format!("{mode:?}: every key consumed"),
            Duration::from_secs(60),
            &expected,
            || consumed.lock().unwrap().clone(),
        )
        .await;
        assert!(panicked.load(Ordering::SeqCst), "{mode:?}: the listener panicked once");
        consumer.shutdown().await;
    }
}

/// The consume timeout measures the listener call, not the wait for a consume permit (Java
/// stamps CONSUME_START_TIME as it invokes the listener). One permit, a listener that takes
/// 1 s per message and a 2 s timeout: a backlog of 75 waits up to 75 s, yet no call runs over
/// 2 s, so the sweep (first after 60 s) must send nothing back and nothing is delivered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_waiting_for_a_permit_is_not_timed_out() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("backlog");
    c.create_topic(cluster, &topic, 1).await.unwrap();
    const N: usize = 75;
    let ids = c.produce_numbered(&topic, 0, N).await;
    let seen: Seen = Arc::default();
    let s = Arc::clone(&seen);
    let listener = Arc::new(FnListener(move |_ctx, msgs: Vec<MessageExt>| {
        let s = Arc::clone(&s);
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut s = s.lock().unwrap();
            s.extend(msgs.iter().map(|m| ("b".to_owned(), m.msg_id(), m.reconsume_times)));
            Ok(vec![MessageOutcome::Success; msgs.len()])
        }
    }));
    let mut config = config(&unique("backlog_group"), &topic, "b");
    config.consume_thread_max = 1;
    config.consume_timeout = Duration::from_secs(2);
    let consumer = start(cluster, config, listener).await;
    let distinct = || seen.lock().unwrap().iter().map(|(_, id, _)| id.clone()).collect();
    wait_for_all("the backlog consumed", Duration::from_secs(150), &ids, distinct).await;
    // Anything sent back would come again from %RETRY% (1 s delay here): wait until nothing is
    // buffered or in flight any more.
    wait_for("the consumer idle", Duration::from_secs(30), || {
        let stats = consumer.stats();
        stats.queues.values().all(|q| q.cached_count == 0).then_some(())
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    let again: Vec<_> = seen.iter().filter(|(_, _, times)| *times > 0).collect();
    assert_eq!(seen.len(), N, "{} deliveries of {N} messages; redelivered: {again:?}", seen.len());
    consumer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_always_fails_ends_in_the_dlq() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("dlq");
    c.create_topic(cluster, &topic, 1).await.unwrap();
    let group = unique("dlq_group");
    let deliveries: Arc<Mutex<Vec<i32>>> = Arc::default();
    let d = Arc::clone(&deliveries);
    let listener = Arc::new(FnListener(move |_ctx, msgs: Vec<MessageExt>| {
        let d = Arc::clone(&d);
        async move {
            d.lock().unwrap().extend(msgs.iter().map(|m| m.reconsume_times));
            Ok(vec![MessageOutcome::RetryLater { delay_level: Some(1) }; msgs.len()])
        }
    }));
    let mut cfg = config(&group, &topic, "d");
    cfg.max_reconsume_times = Some(2);
    let consumer = start(cluster, cfg, listener).await;
    let sent =
        c.producer.send(Message::new(&topic, &b"poison"[..]).with_keys(["p"])).await.unwrap();

    // Read the DLQ topic back once the broker has created it.
    let dlq = format!("%DLQ%{group}");
    let found = read_topic_until(&c, cluster, &dlq, Duration::from_secs(60), |m| {
        m.keys().any(|k| k == "p")
    })
    .await;
    assert_eq!(found.body, Bytes::from_static(b"poison"));
    assert_eq!(found.uniq_key(), Some(sent.msg_id.as_str()));
    assert_eq!(*deliveries.lock().unwrap(), vec![0, 1, 2], "initial delivery + 2 retries");
    consumer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_neither_loses_nor_redelivers() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("restart");
    c.create_topic(cluster, &topic, 4).await.unwrap();
    let group = unique("restart_group");
    let first: Seen = Arc::default();
    let consumer = start(cluster, config(&group, &topic, "r1"), recorder("first", &first)).await;
    let batch1 = c.produce_numbered(&topic, 0, 100).await;
    wait_for_all("the first 100 consumed", Duration::from_secs(60), &batch1, || {
        distinct_ids(&first)
    })
    .await;
    consumer.shutdown().await;

    let batch2 = c.produce_numbered(&topic, 100, 100).await;
    let second: Seen = Arc::default();
    let consumer = start(cluster, config(&group, &topic, "r2"), recorder("second", &second)).await;
    wait_for_all("the next 100 consumed", Duration::from_secs(60), &batch2, || {
        distinct_ids(&second)
    })
    .await;
    let again: BTreeSet<_> = distinct_ids(&second).intersection(&batch1).cloned().collect();
    assert!(again.is_empty(), "committed messages were redelivered: {} of them", again.len());
    let per_id: BTreeMap<String, usize> =
        first.lock().unwrap().iter().fold(BTreeMap::new(), |mut m, (_, id, _)| {
            *m.entry(id.clone()).or_default() += 1;
            m
        });
    assert!(per_id.values().all(|n| *n == 1), "no duplicates within a clean run");
    consumer.shutdown().await;
}

/// Admin requests the broker forwards to us: GET_CONSUMER_RUNNING_INFO answers with real
/// figures, CONSUME_MESSAGE_DIRECTLY runs the listener on one message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_can_ask_for_running_info_and_direct_consumption() {
    use rmq_wasm::protocol::body::{CMResult, ConsumeMessageDirectlyResult, ConsumerRunningInfo};
    use rmq_wasm::protocol::header::{
        ConsumeMessageDirectlyResultRequestHeader, GetConsumerRunningInfoRequestHeader,
    };
    use rmq_wasm::protocol::{RemotingCommand, RequestCode, ResponseCode};

    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("admin");
    c.create_topic(cluster, &topic, 2).await.unwrap();
    let group = unique("admin_group");
    let seen: Seen = Arc::default();
    let consumer = start(cluster, config(&group, &topic, "adm"), recorder("adm", &seen)).await;
    let ids = c.produce_numbered(&topic, 0, 10).await;
    wait_for_all("10 consumed", Duration::from_secs(60), &ids, || distinct_ids(&seen)).await;

    let header = GetConsumerRunningInfoRequestHeader {
        consumer_group: group.clone(),
        client_id: consumer.client_id().to_owned(),
        jstack_enable: Some(false),
    };
    let cmd = RemotingCommand::request(RequestCode::GetConsumerRunningInfo, &header);
    let resp =
        c.broker.pool().request(&cluster.broker_addr, cmd, Duration::from_secs(10)).await.unwrap();
    assert_eq!(resp.response_code(), ResponseCode::Success, "{:?}", resp.remark);
    let info = ConsumerRunningInfo::decode(&resp.body).unwrap();
    assert_eq!(
        info.properties.get(ConsumerRunningInfo::PROP_CONSUME_TYPE).map(String::as_str),
        Some("CONSUME_PASSIVELY")
    );
    // Java writes its consumer's fields with the enums' constant names (`object2Properties`).
    for (key, expected) in
        [("messageModel", "CLUSTERING"), ("consumeFromWhere", "CONSUME_FROM_FIRST_OFFSET")]
    {
        assert_eq!(info.properties.get(key).map(String::as_str), Some(expected), "{key}");
    }
    assert!(info.subscription_set.iter().any(|s| s.topic == topic));
    let topic_queues: Vec<_> = info.mq_table.iter().filter(|(q, _)| q.topic == topic).collect();
    assert_eq!(topic_queues.len(), 2, "both queues reported: {:?}", info.mq_table.keys());
    let committed: i64 = topic_queues.iter().map(|(_, pq)| pq.commit_offset.0).sum();
    assert_eq!(committed, 10, "commit offsets add up to the 10 consumed messages");
    let status = info.status_table.get(&topic).expect("a status for the topic");
    assert!(status.consume_ok_tps > 0.0);

    // Direct consumption of one stored message by its offset msg id.
    let sent =
        c.producer.send(Message::new(&topic, &b"direct"[..]).with_keys(["direct"])).await.unwrap();
    let header = ConsumeMessageDirectlyResultRequestHeader {
        consumer_group: group.clone(),
        client_id: Some(consumer.client_id().to_owned()),
        msg_id: Some(sent.offset_msg_id.clone()),
        broker_name: Some(cluster.broker_name.clone()),
        topic: Some(topic.clone()),
        topic_sys_flag: None,
        group_sys_flag: None,
    };
    let cmd = RemotingCommand::request(RequestCode::ConsumeMessageDirectly, &header);
    let resp =
        c.broker.pool().request(&cluster.broker_addr, cmd, Duration::from_secs(10)).await.unwrap();
    assert_eq!(resp.response_code(), ResponseCode::Success, "{:?}", resp.remark);
    let result = ConsumeMessageDirectlyResult::decode(&resp.body).unwrap();
    assert_eq!(result.consume_result, Some(CMResult::Success));
    assert!(!result.order);
    let direct_count = seen.lock().unwrap().iter().filter(|(_, id, _)| id == &sent.msg_id).count();
    assert!(direct_count >= 1, "the listener ran on the message");
    consumer.shutdown().await;
}

/// An admin offset reset (INVOKE_BROKER_TO_RESET_OFFSET) rewinds the group: whether the broker
/// pushes RESET_CONSUMER_CLIENT_OFFSET to us (4.x path) or answers our next pull with
/// OFFSET_MOVED (5.x server-side reset), the consumed messages come again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_offset_reset_rewinds_the_group() {
    use rmq_wasm::protocol::header::ResetOffsetRequestHeader;
    use rmq_wasm::protocol::{EpochMillis, RemotingCommand, RequestCode, ResponseCode};

    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("reset");
    c.create_topic(cluster, &topic, 2).await.unwrap();
    let group = unique("reset_group");
    let seen: Seen = Arc::default();
    let consumer = start(cluster, config(&group, &topic, "rs"), recorder("rs", &seen)).await;
    let ids = c.produce_numbered(&topic, 0, 10).await;
    wait_for_all("10 consumed", Duration::from_secs(60), &ids, || distinct_ids(&seen)).await;
    let before = seen.lock().unwrap().len();

    let header = ResetOffsetRequestHeader {
        topic: topic.clone(),
        group: group.clone(),
        timestamp: EpochMillis(0),
        is_force: true,
        queue_id: None,
        offset: None,
    };
    let cmd = RemotingCommand::request(RequestCode::Other(222), &header);
    let resp =
        c.broker.pool().request(&cluster.broker_addr, cmd, Duration::from_secs(10)).await.unwrap();
    assert_eq!(resp.response_code(), ResponseCode::Success, "{:?}", resp.remark);
    wait_for("the 10 messages to be consumed again", Duration::from_secs(60), || {
        let s = seen.lock().unwrap();
        let again: BTreeSet<&String> = s[before..].iter().map(|(_, id, _)| id).collect();
        (ids.iter().all(|id| again.contains(id))).then_some(())
    })
    .await;
    consumer.shutdown().await;
}
