//! POP consumption (RocketMQ 5.x) against the Apache RocketMQ 5.3 broker: a group larger than
//! the queue count shares the work (and idles in PULL mode), retries grow reconsume times until
//! the DLQ, and a member killed mid-stream loses nothing — its unacked messages come back to
//! the others after the invisible time. Skipped on 4.9 and rocketmq-rust (see `docs/pop.md`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rmq_wasm::client::QueueSelector;
use rmq_wasm::consumer::config::{ConsumeMode, ConsumerConfig, RequestMode, Subscription};
use rmq_wasm::consumer::listener::{FnListener, MessageListener, MessageOutcome};
use rmq_wasm::protocol::body::{MessageRequestMode, SetMessageRequestModeRequestBody};
use rmq_wasm::protocol::message::{Message, MessageExt};
use rmq_wasm::protocol::{QueueId, QueueOffset};
use rmq_wasm_tests::cluster::{Cluster, Flavour};
use rmq_wasm_tests::host_procs::{
    HostProc, Reader, report, router_config, spawn_stream, tails, tally,
};
use rmq_wasm_tests::java_peer::{JavaPeer, PeerOptions};
use rmq_wasm_tests::support::{
    Clients, consumer_config, init_tracing, read_back_header, read_topic_until,
    start_consumer as start, unique, wait_for,
};

/// The host binary, for the process tests (only an integration test can name it).
const BIN: &str = env!("CARGO_BIN_EXE_rmq-wasm-proc");

/// POP needs the 5.x broker: the 4.9.7 broker has no POP processors at all, and rocketmq-rust
/// 1.0.0 is not proven here.
fn java5_only() -> bool {
    let flavour = Flavour::from_env().expect("RMQ_CLUSTER_FLAVOUR");
    if flavour != Flavour::Java5 {
        eprintln!("skipped: POP consumption is proven against Apache RocketMQ 5.3 only");
    }
    flavour == Flavour::Java5
}

/// The shared cluster, clients and a new topic of `queues` queues; `None` (skip) unless java5.
async fn setup(prefix: &str, queues: i32) -> Option<(&'static Cluster, Clients, String)> {
    if !java5_only() {
        return None;
    }
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique(prefix);
    c.create_topic(cluster, &topic, queues).await.unwrap();
    Some((cluster, c, topic))
}

/// The admin sets `group` to POP for `topic` (SET_MESSAGE_REQUEST_MODE, every member popping
/// every queue).
async fn set_pop_mode(c: &Clients, cluster: &Cluster, topic: &str, group: &str) {
    let body = SetMessageRequestModeRequestBody {
        topic: topic.to_owned(),
        consumer_group: group.to_owned(),
        mode: MessageRequestMode::Pop,
        pop_share_queue_num: 0,
    };
    c.admin
        .set_message_request_mode(&cluster.broker_addr, &body, Duration::from_secs(5))
        .await
        .unwrap();
}

/// Who consumed what: consumer name → message keys, in order.
type Seen = Arc<Mutex<BTreeMap<String, Vec<String>>>>;

/// Records each message's key under `name` and succeeds, after `work` per message (so that the
/// messages spread over the members rather than all going to the first one to ask).
fn recorder(name: &str, seen: &Seen, work: Duration) -> Arc<dyn MessageListener> {
    let (name, seen) = (name.to_owned(), Arc::clone(seen));
    Arc::new(FnListener(move |_ctx, msgs: Vec<MessageExt>| {
        let (name, seen) = (name.clone(), Arc::clone(&seen));
        async move {
            tokio::time::sleep(work * msgs.len() as u32).await;
            let keys = msgs.iter().map(|m| m.keys().next().unwrap_or_default().to_owned());
            seen.lock().unwrap().entry(name).or_default().extend(keys);
            Ok(vec![MessageOutcome::Success; msgs.len()])
        }
    }))
}

fn pop_config(group: &str, topic: &str, instance: &str) -> ConsumerConfig {
    let mut cfg = consumer_config(group, Subscription::all(topic), instance);
    cfg.request_mode = RequestMode::Pop;
    // Small pops, so that six members share a few hundred messages.
    cfg.pop_batch_size = 4;
    cfg.pop_threshold_for_queue = 8;
    cfg
}

fn keys(range: std::ops::Range<usize>) -> BTreeSet<String> {
    range.map(|i| format!("k{i}")).collect()
}

fn union(seen: &Seen) -> BTreeSet<String> {
    seen.lock().unwrap().values().flatten().cloned().collect()
}

fn shares(seen: &Seen, names: &[String]) -> Vec<(String, usize)> {
    let seen = seen.lock().unwrap();
    names.iter().map(|n| (n.clone(), seen.get(n).map_or(0, Vec::len))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_pop_members_share_a_two_queue_topic_where_pull_idles_four() {
    let Some((cluster, c, topic)) = setup("pop_scale", 2).await else {
        return;
    };
    const N: usize = 300;
    let names: Vec<String> = (0..6).map(|i| format!("m{i}")).collect();

    // POP: every member pops both queues.
    let group = unique("pop_scale_group");
    let seen: Seen = Arc::default();
    let mut members = Vec::new();
    for name in &names {
        let cfg = pop_config(&group, &topic, name);
        members.push(start(cluster, cfg, recorder(name, &seen, Duration::from_millis(20))).await);
    }
    let produced = c.produce_numbered(&topic, 0, N).await;
    assert_eq!(produced.len(), N);
    wait_for("every message consumed by the POP group", Duration::from_secs(90), || {
        union(&seen).is_superset(&keys(0..N)).then_some(())
    })
    .await;
    let pop_shares = shares(&seen, &names);
    eprintln!("POP shares of {N} messages over 2 queues: {pop_shares:?}");
    assert!(pop_shares.iter().all(|(_, n)| *n > 0), "a POP member got nothing: {pop_shares:?}");
    let acks: u64 =
        members.iter().flat_map(|m| m.stats().queues.into_values()).map(|q| q.pop_acks).sum();
    assert!(acks >= N as u64, "{acks} acks for {N} messages");
    for m in members {
        m.shutdown().await;
    }

    // PULL, the same shape: two queues, six members — four own nothing.
    let group = unique("pull_scale_group");
    let pulled: Seen = Arc::default();
    let mut members = Vec::new();
    for name in &names {
        let cfg = consumer_config(&group, Subscription::all(&topic), name);
        members.push(start(cluster, cfg, recorder(name, &pulled, Duration::ZERO)).await);
    }
    // Wait until the allocation settled (each queue owned once) before counting the idle.
    wait_for("both queues owned, once each", Duration::from_secs(60), || {
        let owners: Vec<usize> = members
            .iter()
            .map(|m| m.stats().queues.keys().filter(|q| q.topic == topic).count())
            .collect();
        (owners.iter().sum::<usize>() == 2 && owners.iter().all(|n| *n <= 1)).then_some(())
    })
    .await;
    wait_for("the PULL group caught up", Duration::from_secs(60), || {
        union(&pulled).is_superset(&keys(0..N)).then_some(())
    })
    .await;
    let pull_shares = shares(&pulled, &names);
    eprintln!("PULL shares of {N} messages over 2 queues: {pull_shares:?}");
    let idle = pull_shares.iter().filter(|(_, n)| *n == 0).count();
    assert_eq!(idle, 4, "PULL: {pull_shares:?}");
    for m in members {
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pop_message_that_always_fails_grows_its_reconsume_times_then_goes_to_the_dlq() {
    let Some((cluster, c, topic)) = setup("pop_dlq", 1).await else {
        return;
    };
    let group = unique("pop_dlq_group");
    let deliveries: Arc<Mutex<Vec<(i32, Instant)>>> = Arc::default();
    let d = Arc::clone(&deliveries);
    let listener = Arc::new(FnListener(move |_ctx, msgs: Vec<MessageExt>| {
        let d = Arc::clone(&d);
        async move {
            d.lock().unwrap().extend(msgs.iter().map(|m| (m.reconsume_times, Instant::now())));
            // Delay level 1: invisible for 1 s, then the broker delivers it again.
            Ok(vec![MessageOutcome::RetryLater { delay_level: Some(1) }; msgs.len()])
        }
    }));
    let mut cfg = pop_config(&group, &topic, "d");
    cfg.max_reconsume_times = Some(2);
    // A revived message does not wake a suspended pop: a short long poll keeps retries quick.
    cfg.broker_suspend_max = Duration::from_secs(2);
    cfg.pull_timeout = Duration::from_secs(5);
    let consumer = start(cluster, cfg, listener).await;
    let sent =
        c.producer.send(Message::new(&topic, &b"poison"[..]).with_keys(["p"])).await.unwrap();
    let dlq = format!("%DLQ%{group}");
    let found = read_topic_until(&c, cluster, &dlq, Duration::from_secs(90), |m| {
        m.keys().any(|k| k == "p")
    })
    .await;
    assert_eq!(found.body, Bytes::from_static(b"poison"));
    let d = deliveries.lock().unwrap().clone();
    let times: Vec<i32> = d.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, [0, 1, 2], "initial delivery + 2 retries, then the DLQ");
    let gaps: Vec<Duration> = d.windows(2).map(|w| w[1].1 - w[0].1).collect();
    eprintln!("POP retry gaps with a 1 s invisible time: {gaps:?}; msg {}", sent.msg_id);
    consumer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pop_member_killed_mid_stream_loses_nothing_its_messages_come_back_to_the_others() {
    let Some((cluster, c, topic)) = setup("pop_kill", 2).await else {
        return;
    };
    let group = unique("pop_kill_group");
    const N: usize = 200;
    const INVISIBLE: Duration = Duration::from_secs(5);

    // The victim takes messages and never finishes them (a hung or dying host).
    let held: Arc<Mutex<Vec<String>>> = Arc::default();
    let h = Arc::clone(&held);
    let hang = Arc::new(FnListener(move |_ctx, msgs: Vec<MessageExt>| {
        let h = Arc::clone(&h);
        async move {
            h.lock()
                .unwrap()
                .extend(msgs.iter().map(|m| m.keys().next().unwrap_or_default().to_owned()));
            std::future::pending::<()>().await;
            Ok(vec![MessageOutcome::Success; msgs.len()])
        }
    }));
    let mut victim_cfg = pop_config(&group, &topic, "victim");
    victim_cfg.pop_invisible_time = INVISIBLE;
    let victim = start(cluster, victim_cfg, hang).await;

    let seen: Seen = Arc::default();
    let names: Vec<String> = (0..2).map(|i| format!("s{i}")).collect();
    let mut survivors = Vec::new();
    for name in &names {
        let mut cfg = pop_config(&group, &topic, name);
        cfg.pop_invisible_time = INVISIBLE;
        // A revived message does not wake a suspended pop: a short long poll picks it up sooner.
        cfg.broker_suspend_max = Duration::from_secs(2);
        cfg.pull_timeout = Duration::from_secs(5);
        survivors.push(start(cluster, cfg, recorder(name, &seen, Duration::from_millis(5))).await);
    }
    c.produce_numbered(&topic, 0, N).await;
    wait_for("the victim holding messages", Duration::from_secs(60), || {
        (!held.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    // Everything the victim popped is in flight: it never acks.
    let victim_popped: u64 = victim.stats().queues.values().map(|q| q.pulled_messages).sum();
    let killed_at = Instant::now();
    drop(victim); // abrupt: no ack, no drain, no unregister
    let held_keys: BTreeSet<String> = held.lock().unwrap().iter().cloned().collect();

    wait_for("every message consumed by the survivors", Duration::from_secs(90), || {
        union(&seen).is_superset(&keys(0..N)).then_some(())
    })
    .await;
    let back_after = killed_at.elapsed();
    let all: Vec<String> = seen.lock().unwrap().values().flatten().cloned().collect();
    let distinct: BTreeSet<&String> = all.iter().collect();
    let duplicates = all.len() - distinct.len();
    eprintln!(
        "victim held {} (popped {victim_popped}); survivors got all {N} within {back_after:?} of the kill; {duplicates} duplicates; shares {:?}",
        held_keys.len(),
        shares(&seen, &names)
    );
    assert!(held_keys.iter().all(|k| distinct.contains(k)), "a held message never came back");
    assert!(
        duplicates as u64 <= victim_popped,
        "{duplicates} duplicates > the victim's {victim_popped} in flight"
    );
    for m in survivors {
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_mode_pulls_what_the_broker_assigns_and_pops_once_the_admin_says_so() {
    let Some((cluster, c, topic)) = setup("pop_broker_mode", 2).await else {
        return;
    };
    let group = unique("pop_broker_mode_group");
    let seen: Seen = Arc::default();
    let mut cfg = consumer_config(&group, Subscription::all(&topic), "b");
    cfg.request_mode = RequestMode::Broker;
    let consumer = start(cluster, cfg, recorder("b", &seen, Duration::ZERO)).await;
    let queue_ids = || -> Vec<i32> {
        let stats = consumer.stats();
        stats.queues.keys().filter(|q| q.topic == topic).map(|q| q.queue_id.0).collect()
    };

    // The broker's default mode is PULL: QUERY_ASSIGNMENT allocates both queues to the member.
    wait_for("the broker's PULL assignment", Duration::from_secs(30), || {
        (queue_ids() == [0, 1]).then_some(())
    })
    .await;
    c.produce_numbered(&topic, 0, 20).await;
    wait_for("pulled", Duration::from_secs(30), || {
        union(&seen).is_superset(&keys(0..20)).then_some(())
    })
    .await;

    // The admin switches the group to POP: the next rebalance pops every queue (id -1).
    set_pop_mode(&c, cluster, &topic, &group).await;
    wait_for("the broker's POP assignment", Duration::from_secs(30), || {
        (queue_ids() == [-1]).then_some(())
    })
    .await;
    c.produce_numbered(&topic, 20, 20).await;
    wait_for("popped", Duration::from_secs(30), || {
        union(&seen).is_superset(&keys(0..40)).then_some(())
    })
    .await;
    // Acks follow the listener's return: wait for them rather than race them.
    wait_for("20 acks", Duration::from_secs(10), || {
        let acks: u64 = consumer.stats().queues.values().map(|q| q.pop_acks).sum();
        (acks >= 20).then_some(())
    })
    .await;
    consumer.shutdown().await;
}

/// `rmq-wasm run` with `request_mode = "pop"`: the Wasm router plugin consumes through POP
/// unchanged, beside a native POP member of the same group; together they lose nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmq_wasm_run_pops_with_a_wasm_plugin_beside_a_native_member() {
    let Some((cluster, c, topic)) = setup("pop_wasm", 2).await else {
        return;
    };
    let out = unique("pop_wasm_out");
    c.create_topic(cluster, &out, 1).await.unwrap();
    let group = unique("pop_wasm_group");
    const N: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("listeners.toml");
    std::fs::write(
        &config,
        format!(
            "namesrv = \"{namesrv}\"\n[engine]\ncache_dir = \"{cache}\"\n\n[[listener]]\n\
             group = \"{group}\"\ntopic = \"{topic}\"\nconsume_from = \"first\"\n\
             request_mode = \"pop\"\npop_invisible_time = \"30s\"\nwasm = \"{wasm}\"\n\
             hot_reload = false\nproduce_topics = [\"{out}\"]\n\
             [listener.config]\ntarget-topic = \"{out}\"\n",
            namesrv = cluster.namesrv_addr,
            cache = rmq_wasm_tests::wasm::cache_dir().display(),
            wasm = rmq_wasm_tests::wasm::plugin("router").display(),
        ),
    )
    .unwrap();
    let seen: Seen = Arc::default();
    let native = start(
        cluster,
        pop_config(&group, &topic, "n"),
        recorder("n", &seen, Duration::from_millis(20)),
    )
    .await;
    let produced: Vec<String> = (0..N).map(|i| format!("k{i}")).collect();
    let produce = async {
        for k in &produced {
            let m = Message::new(&topic, Bytes::from_static(b"{}")).with_keys([k.as_str()]);
            c.producer.send(m).await.unwrap();
        }
    };
    // The host runs for 15 s while the messages arrive (its future is not `Send + 'static`:
    // joined here rather than spawned).
    let (host, ()) =
        tokio::join!(rmq_wasm::cli::run::run(&config, Some(Duration::from_secs(15))), produce);
    host.unwrap();
    native.shutdown().await;
    let native_keys = union(&seen);
    let rest: Vec<&str> =
        produced.iter().filter(|k| !native_keys.contains(*k)).map(String::as_str).collect();
    eprintln!(
        "rmq-wasm run (POP) routed {}, the native POP member {}",
        rest.len(),
        native_keys.len()
    );
    assert!(!rest.is_empty(), "the Wasm host got nothing");
    let routed =
        rmq_wasm_tests::wasm::read_keys(&c, cluster, &out, &rest, Duration::from_secs(30)).await;
    assert!(routed.iter().all(|m| m.property("ROUTED_FROM") == Some(topic.as_str())));
}

/// Ours (following the broker's mode) and Apache RocketMQ's own Java push consumer in POP mode
/// (`clientRebalance = false`) in one group: both pop both queues, nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_pop_member_and_the_java_pop_consumer_share_one_group() {
    let Some((cluster, c, topic)) = setup("pop_java", 2).await else {
        return;
    };
    let group = unique("pop_java_group");
    let seen: Seen = Arc::default();
    let mut cfg = pop_config(&group, &topic, "ours");
    cfg.request_mode = RequestMode::Broker;
    // Ours works 100 ms a message (8 in flight: ~80/s), so that the Java consumer, whose JVM
    // starts in seconds, still finds work.
    let ours = start(cluster, cfg, recorder("ours", &seen, Duration::from_millis(100))).await;
    // The group exists once ours has heartbeated (it then holds the broker's PULL assignment).
    let assigned = |want: &[i32]| {
        let ids: Vec<i32> =
            ours.stats().queues.keys().filter(|q| q.topic == topic).map(|q| q.queue_id.0).collect();
        (ids == want).then_some(())
    };
    wait_for("the group's PULL assignment", Duration::from_secs(30), || assigned(&[0, 1])).await;
    set_pop_mode(&c, cluster, &topic, &group).await;
    wait_for("ours popping", Duration::from_secs(30), || assigned(&[-1])).await;
    let mut peer = JavaPeer::start(&PeerOptions {
        pop: true,
        ..PeerOptions::new(&cluster.namesrv_addr, &group, &topic, "java")
    })
    .unwrap();
    const N: usize = 400;
    c.produce_numbered(&topic, 0, N).await;
    let peer_keys = |peer: &JavaPeer| -> BTreeSet<String> {
        peer.state().messages.iter().map(|m| m.keys.clone()).collect()
    };
    wait_for(
        "every message consumed by ours or the Java consumer",
        Duration::from_secs(90),
        || {
            let mut all = union(&seen);
            all.extend(peer_keys(&peer));
            all.is_superset(&keys(0..N)).then_some(())
        },
    )
    .await;
    let (ours_n, java_n) = (union(&seen).len(), peer_keys(&peer).len());
    eprintln!("POP group of ours + the Java consumer, {N} messages: ours {ours_n}, Java {java_n}");
    assert!(ours_n > 0 && java_n > 0, "ours {ours_n}, Java {java_n}");
    peer.stop().unwrap();
    ours.shutdown().await;
}

/// The proof with real processes: six `rmq-wasm run` processes (the router plugin, each
/// tagging its copies with its name) pop one two-queue topic; all six get messages. Then one is
/// frozen (SIGSTOP) and SIGKILLed mid-stream: what it held comes back to the others after the invisible time, nothing
/// is lost, and the duplicates stay within what it held.
///
/// What the victim held is read from the broker: each of its unacked check points is revived into
/// the group's POP retry topic `%RETRY%<group>_<topic>` once the invisible time passed (queue 0,
/// `PopAckConstants.retryQueueNum` = 1). Every redelivery goes through that topic before a
/// survivor copies it, so at any moment duplicates ≤ revived messages; the wait covers the
/// revival (kill + invisible time + the revive interval) and every revived key's copy by a
/// survivor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_pop_processes_share_two_queues_and_a_sigkilled_ones_messages_come_back() {
    let Some((cluster, c, topic)) = setup("pop_procs", 2).await else {
        return;
    };
    let started = Instant::now();
    let out = unique("pop_procs_out");
    c.create_topic(cluster, &out, 1).await.unwrap();
    let group = unique("pop_procs_group");
    const N: usize = 400;
    const INVISIBLE: Duration = Duration::from_secs(5);
    const LONG_POLL: Duration = Duration::from_secs(2);
    // Small pops and a low flow-control threshold, so that six processes share 400 messages.
    let extra = format!(
        "request_mode = \"pop\"\npop_invisible_time = \"{}s\"\npop_batch_size = 4\n\
         pop_threshold_for_queue = 8\nbroker_suspend_max = \"{}s\"",
        INVISIBLE.as_secs(),
        LONG_POLL.as_secs()
    );
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (1..=6).map(|i| format!("h{i}")).collect();
    let mut hosts: Vec<HostProc> = names
        .iter()
        .map(|n| {
            let config = router_config(cluster, n, &group, &topic, &out, &extra);
            HostProc::start(BIN, dir.path(), n, &config)
        })
        .collect();
    for h in &mut hosts {
        h.wait_running().await;
    }
    let keys = (0..N).map(|i| (format!("{topic}-{i}"), None)).collect();
    let stream = spawn_stream(cluster, topic.clone(), keys, 0, 100.0);
    let mut reader = Reader::new(&out);
    let copies_of =
        |reader: &Reader, host: &str| reader.msgs.iter().filter(|m| m.tags() == Some(host)).count();

    // Every process consumed some, the victim (h6) a few: kill it mid-stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        reader.poll(&c, cluster).await;
        let shares: Vec<usize> = names.iter().map(|n| copies_of(&reader, n)).collect();
        if shares.iter().all(|n| *n > 0) && shares[5] >= 5 {
            eprintln!(
                "shares before the kill: {:?}",
                names.iter().zip(&shares).collect::<Vec<_>>()
            );
            break;
        }
        let all: Vec<&HostProc> = hosts.iter().collect();
        assert!(
            Instant::now() < deadline && !stream.is_finished(),
            "not every process consumed while the stream ran: {shares:?}\n{}",
            tails(&all)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Frozen first (a hung host): its sockets stay open, so its pending long poll still takes
    // messages it will never ack while the others go on; then SIGKILL.
    let mut victim = hosts.pop().expect("six hosts");
    victim.signal("STOP");
    let frozen_at = reader.msgs.len();
    let survivors: Vec<&HostProc> = hosts.iter().collect();
    reader.wait_copies(&c, cluster, frozen_at + 60, &survivors).await;
    assert!(!stream.is_finished(), "the stream ended before the kill: raise N");
    let killed_at = Instant::now();
    victim.kill9();

    let sent = stream.await.unwrap();
    reader.wait_keys(&c, cluster, &sent, &survivors).await;
    let retry_topic = format!("%RETRY%{group}_{topic}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let revived = loop {
        reader.poll(&c, cluster).await;
        let revived = read_queue0(&c, cluster, &retry_topic).await;
        let survivor_copies: BTreeSet<&str> =
            reader.msgs.iter().filter(|m| m.tags() != Some("h6")).flat_map(|m| m.keys()).collect();
        let back = revived.iter().all(|m| m.keys().all(|k| survivor_copies.contains(k)));
        if !revived.is_empty() && back && killed_at.elapsed() > INVISIBLE + Duration::from_secs(2) {
            break revived;
        }
        assert!(
            Instant::now() < deadline,
            "{} revived messages (none: the victim held nothing), not all copied by a survivor\n{}",
            revived.len(),
            tails(&survivors)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let back_after = killed_at.elapsed();
    let t = tally(&sent, &reader.msgs);
    let shares: Vec<(&String, usize)> = names.iter().map(|n| (n, copies_of(&reader, n))).collect();
    report(
        "pop processes",
        &t,
        started,
        &format!(
            "shares {shares:?}; h6 SIGKILLed holding {} (revived into {retry_topic}), all back \
             within {back_after:?} of the kill",
            revived.len()
        ),
    );
    t.assert_nothing_lost(N);
    assert!(shares.iter().all(|(_, n)| *n > 0), "a process got nothing: {shares:?}");
    assert!(
        t.duplicated <= revived.len(),
        "{} duplicates, more than the {} messages the victim held",
        t.duplicated,
        revived.len()
    );
}

/// Every message of queue 0 of `topic` on the broker, read from offset 0 (none if the topic
/// does not exist yet).
async fn read_queue0(c: &Clients, cluster: &Cluster, topic: &str) -> Vec<MessageExt> {
    let mut msgs = Vec::new();
    let mut offset = 0;
    loop {
        let header = read_back_header(topic, QueueId(0), QueueOffset(offset));
        let Ok(r) = c.broker.pull(&cluster.broker_addr, &header, Duration::from_secs(5)).await
        else {
            return msgs;
        };
        if r.messages.is_empty() || r.next_begin_offset.0 <= offset {
            return msgs;
        }
        offset = r.next_begin_offset.0;
        msgs.extend(r.messages);
    }
}

/// Batch ack on the real broker: the acks of a listener batch go as one BATCH_ACK_MESSAGE whose
/// bit set names the acked offsets of their check point. Ten messages are popped at once (one
/// check point); the listener takes them three at a time, succeeds for nine and holds the last
/// (`hold`) forever. When the broker revives that check point after the invisible time, it
/// writes exactly the offsets not acked into `%RETRY%<group>_<topic>`: only `hold` if every
/// bit landed on its offset (the sets span a byte boundary: bits 0–2, 3–5, 6–8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_acks_ack_exactly_their_offsets_and_the_held_one_comes_back() {
    let Some((cluster, c, topic)) = setup("pop_batch_ack", 1).await else {
        return;
    };
    let group = unique("pop_batch_ack_group");
    let keys: Vec<String> = (0..9).map(|i| format!("k{i}")).chain(["hold".to_owned()]).collect();
    for k in &keys {
        let m = Message::new(&topic, Bytes::from_static(b"{}")).with_keys([k.as_str()]);
        c.producer.send(m).await.unwrap();
    }
    let listener = Arc::new(FnListener(move |_ctx, msgs: Vec<MessageExt>| async move {
        if msgs.iter().any(|m| m.keys().any(|k| k == "hold")) {
            std::future::pending::<()>().await;
        }
        Ok(vec![MessageOutcome::Success; msgs.len()])
    }));
    let mut cfg = pop_config(&group, &topic, "b");
    cfg.pop_batch_size = 32;
    cfg.pop_threshold_for_queue = 96;
    cfg.consume_message_batch_max_size = 3;
    cfg.pop_invisible_time = Duration::from_secs(5);
    cfg.broker_suspend_max = Duration::from_secs(2);
    let consumer = start(cluster, cfg, listener).await;
    wait_for("nine acks", Duration::from_secs(30), || {
        let acks: u64 = consumer.stats().queues.values().map(|q| q.pop_acks).sum();
        (acks >= 9).then_some(())
    })
    .await;
    let pops: u64 = consumer.stats().queues.values().map(|q| q.pulls).sum();
    let retry_topic = format!("%RETRY%{group}_{topic}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let revived = loop {
        let revived = read_queue0(&c, cluster, &retry_topic).await;
        if !revived.is_empty() {
            break revived;
        }
        assert!(Instant::now() < deadline, "the held message never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let revived_keys: Vec<&str> = revived.iter().flat_map(|m| m.keys()).collect();
    eprintln!("batch acks: {pops} pops; revived {revived_keys:?}");
    assert!(revived_keys.iter().all(|k| *k == "hold"), "acked messages revived: {revived_keys:?}");
    consumer.shutdown().await;
}

/// One delivery an orderly POP listener saw: queue, offset, key, sequence number, reconsume
/// times, member.
type Delivery = (i32, i64, String, usize, i32, &'static str);

/// Orderly POP (`order = true`) with two members on a four-queue topic: each queue's messages
/// reach the listener strictly in offset order with no gaps, never two members inside one queue
/// at once; a poison message is retried in place (the rest of its queue waits), its reconsume
/// times counted by the broker, then dead-lettered after the max; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orderly_pop_keeps_each_queue_in_offset_order_retries_in_place_then_dead_letters() {
    let Some((cluster, c, topic)) = setup("pop_orderly", 4).await else {
        return;
    };
    let group = unique("pop_orderly_group");
    const PER_KEY: usize = 15;
    const POISON: (&str, usize) = ("bravo", 5);
    let keys = ["alpha", "bravo", "charlie", "delta"];
    let seen: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let active: Arc<Mutex<BTreeMap<i32, &'static str>>> = Arc::default();
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    let listener = |name: &'static str| -> Arc<dyn MessageListener> {
        let (seen, active, violations) =
            (Arc::clone(&seen), Arc::clone(&active), Arc::clone(&violations));
        Arc::new(FnListener(
            move |ctx: rmq_wasm::consumer::ConsumeContext, msgs: Vec<MessageExt>| {
                let (seen, active, violations) =
                    (Arc::clone(&seen), Arc::clone(&active), Arc::clone(&violations));
                async move {
                    assert_eq!(ctx.mode, ConsumeMode::Orderly);
                    let q = msgs[0].queue_id.0;
                    if let Some(other) = active.lock().unwrap().insert(q, name) {
                        violations
                            .lock()
                            .unwrap()
                            .push(format!("queue {q}: {name} entered while {other} was in"));
                    }
                    // Long enough for the other member's pop to come while this one holds the queue.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let mut outcomes = Vec::new();
                    for m in &msgs {
                        let key = m.property("k").unwrap_or_default().to_owned();
                        let seq: usize =
                            m.property("seq").and_then(|s| s.parse().ok()).unwrap_or(usize::MAX);
                        let poison = (key.as_str(), seq) == POISON;
                        // The handle of an orderly pop names the broker's orderly revive queue.
                        let revive = m.property("POP_CK").and_then(|ck| ck.split(' ').nth(3));
                        if revive != Some("999") {
                            violations
                                .lock()
                                .unwrap()
                                .push(format!("handle {:?}", m.property("POP_CK")));
                        }
                        seen.lock().unwrap().push((
                            q,
                            m.queue_offset.0,
                            key,
                            seq,
                            m.reconsume_times,
                            name,
                        ));
                        outcomes.push(if poison {
                            MessageOutcome::RETRY
                        } else {
                            MessageOutcome::Success
                        });
                    }
                    active.lock().unwrap().remove(&q);
                    Ok(outcomes)
                }
            },
        ))
    };
    let cfg = |instance: &str| {
        let mut cfg = pop_config(&group, &topic, instance);
        cfg.consume_mode = ConsumeMode::Orderly;
        cfg.consume_message_batch_max_size = 1;
        cfg.max_reconsume_times = Some(2);
        cfg.suspend_current_queue_time = Duration::from_millis(500);
        // A blocked queue's pop waits in the long poll; keep it short.
        cfg.broker_suspend_max = Duration::from_secs(2);
        cfg.pull_timeout = Duration::from_secs(5);
        cfg
    };
    let one = start(cluster, cfg("o1"), listener("o1")).await;
    let two = start(cluster, cfg("o2"), listener("o2")).await;
    let mut queue_of = BTreeMap::new();
    for seq in 0..PER_KEY {
        for key in keys {
            let msg = Message::new(&topic, Bytes::from(format!("{key}-{seq}")))
                .with_keys([format!("{key}-{seq}")])
                .with_property("k", key)
                .with_property("seq", seq.to_string());
            let sent = c.producer.send_with(msg, QueueSelector::ShardingKey(key)).await.unwrap();
            queue_of.insert(key, sent.queue.queue_id.0);
        }
    }
    let started = Instant::now();
    let dlq = format!("%DLQ%{group}");
    let poison_key = format!("{}-{}", POISON.0, POISON.1);
    let found = read_topic_until(&c, cluster, &dlq, Duration::from_secs(60), |m| {
        m.keys().any(|k| k == poison_key)
    })
    .await;
    assert_eq!(found.body, Bytes::from(poison_key.clone()));
    let total = keys.len() * PER_KEY;
    let deliveries = wait_for("every message consumed", Duration::from_secs(60), || {
        let s = seen.lock().unwrap();
        let done: BTreeSet<(&str, usize)> = s.iter().map(|d| (d.2.as_str(), d.3)).collect();
        (done.len() == total).then(|| s.clone())
    })
    .await;
    eprintln!(
        "orderly POP: {} deliveries of {total} messages in {:?}",
        deliveries.len(),
        started.elapsed()
    );
    assert!(violations.lock().unwrap().is_empty(), "{:?}", violations.lock().unwrap());
    let mut by_member = BTreeMap::<&str, usize>::new();
    for d in &deliveries {
        *by_member.entry(d.5).or_default() += 1;
    }
    eprintln!("deliveries per member: {by_member:?}");
    for key in keys {
        let of_key: Vec<&Delivery> = deliveries.iter().filter(|d| d.2 == key).collect();
        assert!(of_key.iter().all(|d| d.0 == queue_of[key]), "key {key} left its queue");
        // Each message once, in send order — but the poison, three times in a row.
        let seqs: Vec<usize> = of_key.iter().map(|d| d.3).collect();
        let mut expected_seqs: Vec<usize> = (0..PER_KEY).collect();
        if key == POISON.0 {
            expected_seqs.splice(POISON.1..=POISON.1, [POISON.1; 3]);
            let times: Vec<i32> = of_key.iter().filter(|d| d.3 == POISON.1).map(|d| d.4).collect();
            assert_eq!(times, [0, 1, 2], "the poison's reconsume times (the broker's count)");
        }
        assert_eq!(seqs, expected_seqs, "key {key}: delivery order");
    }
    // Each queue (keys may share one): offsets strictly in order from 0 with no gaps, only the
    // poison repeated, in place.
    let queues: BTreeSet<i32> = deliveries.iter().map(|d| d.0).collect();
    for q in queues {
        let offsets: Vec<i64> = deliveries.iter().filter(|d| d.0 == q).map(|d| d.1).collect();
        let mut distinct = offsets.clone();
        distinct.dedup();
        let n = distinct.len() as i64;
        assert_eq!(distinct, (0..n).collect::<Vec<_>>(), "queue {q}: offsets {offsets:?}");
        let repeats = offsets.len() as i64 - n;
        let poison_queue = queue_of[POISON.0];
        assert_eq!(repeats, if q == poison_queue { 2 } else { 0 }, "queue {q}: {offsets:?}");
    }
    one.shutdown().await;
    two.shutdown().await;
}

/// `rmq-wasm run` in orderly POP mode with the router plugin: the Wasm listener is called one
/// message at a time per queue, so each sharding key's messages reach the output topic (one
/// queue) in the order they were sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmq_wasm_run_orderly_pop_routes_each_key_in_send_order() {
    let Some((cluster, c, topic)) = setup("pop_wasm_orderly", 2).await else {
        return;
    };
    let out = unique("pop_wasm_orderly_out");
    c.create_topic(cluster, &out, 1).await.unwrap();
    let group = unique("pop_wasm_orderly_group");
    const PER_KEY: usize = 12;
    let shards = ["a", "b", "c"];
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("listeners.toml");
    let extra = "consume_mode = \"orderly\"\nrequest_mode = \"pop\"\nbroker_suspend_max = \"2s\"";
    let text = router_config(cluster, "orderly", &group, &topic, &out, extra)
        .replace("batch_size = 8", "batch_size = 1");
    std::fs::write(&config, text).unwrap();
    let produce = async {
        for seq in 0..PER_KEY {
            for shard in shards {
                let m = Message::new(&topic, Bytes::from_static(b"{}"))
                    .with_keys([format!("{shard}-{seq}")]);
                c.producer.send_with(m, QueueSelector::ShardingKey(shard)).await.unwrap();
            }
        }
    };
    // Joined rather than spawned: the host's future is not `Send + 'static`.
    let (host, ()) =
        tokio::join!(rmq_wasm::cli::run::run(&config, Some(Duration::from_secs(10))), produce);
    host.unwrap();
    let keys: Vec<String> =
        shards.iter().flat_map(|s| (0..PER_KEY).map(move |i| format!("{s}-{i}"))).collect();
    let wanted: Vec<&str> = keys.iter().map(String::as_str).collect();
    let routed =
        rmq_wasm_tests::wasm::read_keys(&c, cluster, &out, &wanted, Duration::from_secs(30)).await;
    for shard in shards {
        let seqs: Vec<usize> = routed
            .iter()
            .flat_map(|m| m.keys())
            .filter_map(|k| k.strip_prefix(&format!("{shard}-")).and_then(|s| s.parse().ok()))
            .collect();
        assert_eq!(seqs, (0..PER_KEY).collect::<Vec<_>>(), "shard {shard}: routed order");
    }
}
