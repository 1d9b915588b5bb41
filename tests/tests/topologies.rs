//! The push consumer against multi-broker Apache RocketMQ clusters (Java flavours only; skipped
//! with a note on rocketmq-rust): two masters whose queues a group splits and whose locks an
//! orderly member holds on both, and a master + slave pair where consumption continues from the
//! slave while the master is dead and nothing is lost once it returns.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rmq_wasm::consumer::ConsumeMode;
use rmq_wasm::consumer::PushConsumer;
use rmq_wasm::consumer::config::{ConsumerConfig, Subscription};
use rmq_wasm::consumer::listener::{FnListener, MessageListener, MessageOutcome};
use rmq_wasm::protocol::MessageQueue;
use rmq_wasm::protocol::body::LockBatchRequestBody;
use rmq_wasm::protocol::message::{Message, MessageExt};
use rmq_wasm_tests::cluster::{Cluster, ClusterOptions, Flavour, Topology};
use rmq_wasm_tests::support::{
    Clients, consumer_config, init_tracing, start_consumer as start, unique, wait_for, wait_for_all,
};

/// Starts an own cluster of `topology`, or `None` (with a note) when the flavour cannot run it.
fn java_cluster(topology: Topology) -> Option<Cluster> {
    java_cluster_with(ClusterOptions { topology, ..ClusterOptions::default() })
}

fn java_cluster_with(options: ClusterOptions) -> Option<Cluster> {
    let flavour = Flavour::from_env().expect("RMQ_CLUSTER_FLAVOUR");
    if !flavour.is_java() {
        let topology = options.topology;
        eprintln!("skipped: {topology:?} is proven against Apache RocketMQ (flavour is {flavour})");
        return None;
    }
    Some(Cluster::start(options).unwrap())
}

/// Every delivery: (consumer, message id, queue).
type Seen = Arc<Mutex<Vec<(String, String, MessageQueue)>>>;

fn recorder(name: &str, seen: &Seen, pause: Duration) -> Arc<dyn MessageListener> {
    let name = name.to_owned();
    let seen = Arc::clone(seen);
    Arc::new(FnListener(move |ctx: rmq_wasm::consumer::ConsumeContext, msgs: Vec<MessageExt>| {
        let name = name.clone();
        let seen = Arc::clone(&seen);
        async move {
            if !pause.is_zero() {
                // A slow listener keeps the stream going while the test breaks the cluster.
                tokio::time::sleep(pause).await;
            }
            let mut s = seen.lock().unwrap();
            for m in &msgs {
                s.push((name.clone(), m.msg_id(), ctx.queue.clone()));
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

fn distinct(seen: &Seen) -> BTreeSet<String> {
    seen.lock().unwrap().iter().map(|(_, id, _)| id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_masters_split_between_members_and_an_orderly_member_locks_both() {
    init_tracing();
    let Some(cluster) = java_cluster(Topology::TwoMasters) else { return };
    let c = Clients::new(&cluster);
    let topic = unique("two_masters");
    let route = c.create_topic(&cluster, &topic, 4).await.unwrap();
    let all: BTreeSet<MessageQueue> = route.subscribe_queues(&topic).into_iter().collect();
    let brokers: BTreeSet<&str> = all.iter().map(|q| q.broker_name.as_str()).collect();
    assert_eq!((all.len(), brokers.len()), (8, 2), "4 queues on each master: {all:?}");

    // Two members (AVG): 4 + 4, disjoint, covering both brokers' queues.
    let group = unique("two_masters_group");
    let seen: Seen = Arc::default();
    let expected = c.produce_numbered(&topic, 0, 400).await;
    let one =
        start(&cluster, config(&group, &topic, "one"), recorder("one", &seen, Duration::ZERO))
            .await;
    let two =
        start(&cluster, config(&group, &topic, "two"), recorder("two", &seen, Duration::ZERO))
            .await;
    wait_for("2 members to split 8 queues of 2 brokers 4/4", Duration::from_secs(60), || {
        let (a, b) = (owned(&one, &topic), owned(&two, &topic));
        let union: BTreeSet<_> = a.union(&b).cloned().collect();
        (a.len() == 4 && b.len() == 4 && a.is_disjoint(&b) && union == all).then_some(())
    })
    .await;
    wait_for_all("all 400 messages consumed", Duration::from_secs(60), &expected, || {
        distinct(&seen)
    })
    .await;
    let per_broker: BTreeMap<String, usize> =
        seen.lock().unwrap().iter().fold(BTreeMap::new(), |mut m, (_, _, q)| {
            *m.entry(q.broker_name.clone()).or_default() += 1;
            m
        });
    eprintln!("deliveries per broker: {per_broker:?}");
    assert_eq!(per_broker.len(), 2, "both brokers served messages: {per_broker:?}");
    one.shutdown().await;
    two.shutdown().await;

    // One orderly member owns all 8 queues and holds the lock of each on its own broker: a
    // second client id asking either broker for them gets none.
    let ordered_group = unique("two_masters_orderly");
    let mut cfg = config(&ordered_group, &topic, "ordered");
    cfg.consume_mode = ConsumeMode::Orderly;
    let ordered = start(&cluster, cfg, recorder("ordered", &seen, Duration::ZERO)).await;
    wait_for("the orderly member to own all 8 queues", Duration::from_secs(60), || {
        (owned(&ordered, &topic) == all).then_some(())
    })
    .await;
    for broker in cluster.brokers() {
        let mine: BTreeSet<MessageQueue> =
            all.iter().filter(|q| q.broker_name == broker.spec.broker_name).cloned().collect();
        let body = LockBatchRequestBody {
            consumer_group: ordered_group.clone(),
            client_id: "127.0.0.1@intruder".into(),
            only_this_broker: true,
            mq_set: mine.clone(),
        };
        let got = wait_for("the member's locks on every broker", Duration::from_secs(30), || {
            let got = futures_lock(&c, &broker.addr, &body);
            got.is_empty().then_some(got)
        })
        .await;
        assert!(got.is_empty(), "{} gave an intruder locked queues {got:?}", broker.spec.key());
    }
    ordered.shutdown().await;
}

/// LOCK_BATCH_MQ from another client id, synchronously inside a `wait_for` probe.
fn futures_lock(c: &Clients, addr: &str, body: &LockBatchRequestBody) -> BTreeSet<MessageQueue> {
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(c.broker.lock_batch(
            addr,
            body,
            Duration::from_secs(3),
        ))
    })
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumption_continues_from_the_slave_while_the_master_is_dead() {
    init_tracing();
    let Some(mut cluster) = java_cluster(Topology::MasterSlave) else { return };
    let c = Clients::new(&cluster);
    let topic = unique("ha");
    c.create_topic(&cluster, &topic, 4).await.unwrap();
    let mut expected = c.produce_numbered(&topic, 0, 1_000).await;
    // Wait until the slave holds every message (classic HA is asynchronous).
    let slave_addr = cluster.broker("broker-a", 1).expect("slave").addr.clone();
    let master_addr = cluster.broker_addr.clone();
    let queues: Vec<_> = (0..4).collect();
    wait_for("the slave to replicate all 1,000 messages", Duration::from_secs(60), || {
        let sum = |addr: &str| -> i64 { queues.iter().map(|q| max_offset(addr, &topic, *q)).sum() };
        (sum(&slave_addr) == 1_000 && sum(&master_addr) == 1_000).then_some(())
    })
    .await;

    let seen: Seen = Arc::default();
    let consumer = start(
        &cluster,
        config(&unique("ha_group"), &topic, "ha"),
        recorder("ha", &seen, Duration::from_millis(5)),
    )
    .await;
    wait_for("a quarter of the stream consumed", Duration::from_secs(60), || {
        (distinct(&seen).len() >= 250).then_some(())
    })
    .await;
    cluster.kill_broker(0).unwrap();
    let at_kill = distinct(&seen).len();
    eprintln!("master killed after {at_kill} of 1,000 messages");
    wait_for_all("the rest consumed from the slave", Duration::from_secs(120), &expected, || {
        distinct(&seen)
    })
    .await;
    assert!(at_kill < 1_000, "the master died mid-stream");
    cluster.restart_broker(0).unwrap();
    c.admin.wait_for_route(&topic, 1, 4, Duration::from_secs(60)).await.unwrap();
    // The master takes writes again: what is produced now is consumed too.
    let more = wait_for_send(&c, &topic).await;
    expected.extend(more);
    wait_for_all(
        "messages produced after the master returned",
        Duration::from_secs(120),
        &expected,
        || distinct(&seen),
    )
    .await;
    let deliveries = seen.lock().unwrap().len();
    let unique_count = distinct(&seen).len();
    eprintln!(
        "master + slave: {} produced, 0 lost, {} duplicate deliveries",
        expected.len(),
        deliveries - unique_count
    );
    assert_eq!(unique_count, expected.len());
    consumer.shutdown().await;
}

/// With `slaveReadEnable=false` (Apache RocketMQ's default) a slave serves no pulls: 4.9 answers
/// each at once with PULL_RETRY_IMMEDIATELY and no messages, 5.3 with SYSTEM_BUSY. While the
/// master is dead that is all the consumer gets, and it must pace its pulls rather than spin
/// (Java's client pulls again at once after PULL_RETRY_IMMEDIATELY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_that_serves_no_reads_is_not_polled_in_a_busy_loop() {
    init_tracing();
    let options = ClusterOptions {
        topology: Topology::MasterSlave,
        broker_props: vec![("slaveReadEnable".to_owned(), "false".to_owned())],
        ..ClusterOptions::default()
    };
    let Some(mut cluster) = java_cluster_with(options) else { return };
    let c = Clients::new(&cluster);
    let topic = unique("noread");
    c.create_topic(&cluster, &topic, 4).await.unwrap();
    let expected = c.produce_numbered(&topic, 0, 40).await;
    // A slave copies topic configs from its master periodically (every 60 s on 4.9); until
    // then it answers TOPIC_NOT_EXIST, which is not the case under test.
    let slave_addr = cluster.broker("broker-a", 1).expect("slave").addr.clone();
    wait_for("the slave to know the topic", Duration::from_secs(90), || {
        let configs = rmq_wasm_tests::cluster::rpc(
            &slave_addr,
            GET_ALL_TOPIC_CONFIG,
            &[],
            &[],
            Duration::from_secs(3),
        )
        .ok()?;
        String::from_utf8_lossy(&configs.body).contains(topic.as_str()).then_some(())
    })
    .await;
    let seen: Seen = Arc::default();
    let mut config = config(&unique("noread_group"), &topic, "noread");
    // Learn quickly that the master is gone (Java's default is 30 s).
    config.poll_name_server_interval = Duration::from_secs(1);
    let consumer = start(&cluster, config, recorder("noread", &seen, Duration::ZERO)).await;
    wait_for_all(
        "every message consumed from the master",
        Duration::from_secs(60),
        &expected,
        || distinct(&seen),
    )
    .await;
    cluster.kill_broker(0).unwrap();
    let namesrv = cluster.namesrv_addr.clone();
    wait_for("the name server to drop the master", Duration::from_secs(60), || {
        let route = rmq_wasm_tests::cluster::topic_route(&namesrv, &topic).ok()??;
        let listed =
            route["brokerDatas"].as_array()?.iter().any(|b| b["brokerAddrs"].get("0").is_some());
        (!listed).then_some(())
    })
    .await;
    // Every attempt counts: answered (4.9's code 20) or refused (5.3's SYSTEM_BUSY).
    let attempts = |c: &PushConsumer| -> u64 {
        c.stats().queues.values().map(|q| q.pulls + q.pull_errors).sum()
    };
    let (before, window_start) = (attempts(&consumer), tokio::time::Instant::now());
    tokio::time::sleep(Duration::from_secs(4)).await; // a measurement window, not a wait
    let rate = (attempts(&consumer) - before) as f64 / window_start.elapsed().as_secs_f64() / 4.0;
    eprintln!("pulls against a slave that serves no reads: {rate:.1} per second per queue");
    assert!(rate < 10.0, "{rate:.0} pulls/s per queue against the slave: the consumer spins");
    consumer.shutdown().await;
}

/// GET_ALL_TOPIC_CONFIG: a broker's topic configs (fastjson).
const GET_ALL_TOPIC_CONFIG: i32 = 21;

/// Sends 100 more messages, retrying while the restarted master's route settles.
async fn wait_for_send(c: &Clients, topic: &str) -> BTreeSet<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let probe = Message::new(topic, Bytes::from_static(b"probe")).with_keys(["probe"]);
        match c.producer.send(probe).await {
            Ok(sent) => {
                let mut ids = c.produce_numbered(topic, 1_000, 100).await;
                ids.insert(sent.msg_id);
                return ids;
            }
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the master takes no writes: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn max_offset(addr: &str, topic: &str, queue: i32) -> i64 {
    let queue = queue.to_string();
    rmq_wasm_tests::cluster::rpc(
        addr,
        rmq_wasm_tests::cluster::code::GET_MAX_OFFSET,
        &[("topic", topic), ("queueId", &queue)],
        &[],
        Duration::from_secs(3),
    )
    .ok()
    .filter(|r| r.code == 0)
    .and_then(|r| r.ext_fields.get("offset")?.parse().ok())
    .unwrap_or(0)
}
