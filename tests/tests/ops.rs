//! The operators' verbs against a real cluster (issue #13 §4, #16 item 3): reading a topic
//! without touching offsets, a group's dead letters listed with their cause and re-delivered
//! once to the running listener, and offset resets that running consumers (ours and Java's)
//! follow.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rmq_wasm::consumer::ConsumeContext;
use rmq_wasm::consumer::PushConsumer;
use rmq_wasm::consumer::config::Subscription;
use rmq_wasm::consumer::listener::{FnListener, MessageListener, MessageOutcome};
use rmq_wasm::ops::dlq::{DeadLetters, Filter};
use rmq_wasm::ops::reader::{StartAt, TOOLS_GROUP, TopicReader};
use rmq_wasm::ops::reset::{ResetTo, reset_offset};
use rmq_wasm::protocol::QueueOffset;
use rmq_wasm::protocol::header::QueryConsumerOffsetRequestHeader;
use rmq_wasm::protocol::message::{Message, MessageExt};
use rmq_wasm::wasm::{PluginSpec, WasmListener};
use rmq_wasm_tests::cluster::Cluster;
use rmq_wasm_tests::java_peer::{JavaPeer, PeerOptions};
use rmq_wasm_tests::support::{Clients, consumer_config, init_tracing, unique, wait_for};
use rmq_wasm_tests::wasm::{engine, plugin};

fn reader(c: &Clients) -> TopicReader {
    TopicReader::new(c.namesrv.clone(), c.broker.clone())
}

/// Polls `check` (async) until it returns `Some`, or panics naming `what` after `timeout`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?}: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// trap-on-key dead-letters the message keyed `poison`; `dlq list` shows it with the host's
/// cause properties, `peek` reads the topic without leaving an offset, and `dlq resend` hands
/// it back once to the running listener (which traps again: a second letter naming the first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_with_their_cause_and_resent_once_to_the_running_listener() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("ops_dlq");
    c.create_topic(cluster, &topic, 1).await.unwrap();
    let group = unique("ops_dlq_g");
    let mut spec = PluginSpec::new("trapper", &group);
    spec.config.insert("key".into(), "poison".into());
    let listener =
        Arc::new(WasmListener::load(engine(), &plugin("trap-on-key"), spec).await.unwrap());
    let consumer = PushConsumer::start(
        consumer_config(&group, Subscription::all(&topic), "ours"),
        vec![cluster.namesrv_addr.clone()],
        Arc::clone(&listener) as Arc<dyn MessageListener>,
    )
    .await
    .unwrap();
    for key in ["ok-1", "poison", "ok-2"] {
        let m = Message::new(&topic, Bytes::from_static(b"{\"n\":1}")).with_keys([key]);
        c.producer.send(m).await.unwrap();
    }

    // peek: all three, every field, and no offset stored for the reading group.
    let r = reader(&c);
    let queues = r.queues(&topic).await.unwrap();
    let (min, max) = r.bounds(&queues[0]).await.unwrap();
    let peeked = r.read(&queues[0], StartAt::First.resolve(min, max), 10).await.unwrap();
    let keys: Vec<&str> = peeked.iter().flat_map(MessageExt::keys).collect();
    assert_eq!(keys, ["ok-1", "poison", "ok-2"]);
    let last = r.read(&queues[0], StartAt::Last(1).resolve(min, max), 10).await.unwrap();
    assert_eq!(last.iter().flat_map(MessageExt::keys).collect::<Vec<_>>(), ["ok-2"]);
    let tools_offset = c
        .broker
        .query_offset(
            &queues[0].addr,
            &QueryConsumerOffsetRequestHeader {
                consumer_group: TOOLS_GROUP.into(),
                topic: topic.clone(),
                queue_id: queues[0].queue.queue_id,
                set_zero_if_not_found: Some(false),
                bname: None,
            },
            Duration::from_secs(3),
        )
        .await
        .unwrap();
    // None on 5.x; a 4.9 broker answers 0 for a group that never committed. A commit would
    // have stored 3 (the next offset after the three messages read).
    assert!(
        matches!(tools_offset, None | Some(QueueOffset(0))),
        "reading stores no offset: {tools_offset:?}"
    );

    let letters = DeadLetters::new(reader(&c), &group);
    let first = eventually("the poison message in the DLQ", Duration::from_secs(60), || async {
        letters.list(10).await.ok().and_then(|l| l.into_iter().next())
    })
    .await;
    assert_eq!(first.msg.keys().collect::<Vec<_>>(), ["poison"]);
    assert_eq!(first.reason(), Some("poison"));
    assert_eq!(first.abort(), Some("trap"));
    assert_eq!(first.plugin(), Some("trapper"));
    assert_eq!(first.version(), Some(listener.version().hash.short().as_str()));
    assert!(first.fuel_used().is_some_and(|f| f > 0), "{:?}", first.msg.properties);
    assert_eq!(first.origin_topic(), Some(topic.as_str()));
    assert!(first.origin_msg_id().is_some());
    let consumed_at = first.consumed_at().unwrap();
    assert!(
        consumed_at.starts_with(&format!("{topic}@")) && consumed_at.ends_with(":1"),
        "{consumed_at}"
    );

    // The same through the binary.
    let ns = cluster.namesrv_addr.as_str();
    let listed = cli(&["dlq", "list", "--namesrv", ns, "--group", &group, "--format", "json"]);
    let row: serde_json::Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!((row["reason"].as_str(), row["abort"].as_str()), (Some("poison"), Some("trap")));
    assert_eq!(
        (row["dlq_id"].as_str(), row["origin_topic"].as_str()),
        (Some(&*first.id()), Some(&*topic))
    );
    let text = cli(&["dlq", "list", "--namesrv", ns, "--group", &group]);
    assert!(text.contains("reason      poison") && text.contains("1 dead letter(s)"), "{text}");
    let dry = cli(&["dlq", "resend", "--namesrv", ns, "--group", &group, "--all", "--dry-run"]);
    assert!(dry.contains(&format!("would resend {} to %RETRY%{group}", first.id())), "{dry}");

    // A dry run sends nothing; a real one sends the letter once.
    let poison = [Filter::Key("poison".into())];
    let dry = letters.resend(&c.producer, &poison, true).await.unwrap();
    assert_eq!(dry.sent.len(), 1);
    assert!(letters.ledger().await.unwrap().is_empty(), "a dry run sends nothing");
    let sent = letters.resend(&c.producer, &poison, false).await.unwrap();
    assert_eq!(sent.sent.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), [first.id()]);

    // The running listener gets it again (from the retry topic) and traps again.
    let second =
        eventually("the resent letter dead-lettered again", Duration::from_secs(60), || async {
            letters
                .list(10)
                .await
                .ok()
                .and_then(|l| l.into_iter().find(|l| l.resent_from().is_some()))
        })
        .await;
    assert_eq!(second.resent_from(), Some(first.id().as_str()));
    assert_eq!(second.reason(), Some("poison"));
    assert_eq!(second.origin_topic(), Some(topic.as_str()));
    assert!(second.consumed_at().unwrap().starts_with(&format!("%RETRY%{group}@")));
    assert_eq!(listener.stats().counters.poison, 2);

    // Once each: the first letter is in the ledger now.
    let again = letters.resend(&c.producer, &[Filter::Id(first.id())], false).await.unwrap();
    assert!(again.sent.is_empty(), "{again:?}");
    assert_eq!(again.already_resent, [first.id()]);
    consumer.shutdown().await;
}

/// Waits until `group` has committed the end of every queue of `topic` on the broker (a 4.x
/// broker refuses to reset a group without an offset).
async fn wait_committed(c: &Clients, group: &str, topic: &str) {
    let r = reader(c);
    eventually("the group's offsets committed", Duration::from_secs(60), || async {
        for q in r.queues(topic).await.ok()? {
            let (_, max) = r.bounds(&q).await.ok()?;
            let header = QueryConsumerOffsetRequestHeader {
                consumer_group: group.to_owned(),
                topic: topic.to_owned(),
                queue_id: q.queue.queue_id,
                set_zero_if_not_found: Some(false),
                bname: None,
            };
            let committed = c.broker.query_offset(&q.addr, &header, Duration::from_secs(3)).await;
            if committed.ok()? != Some(max) {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// Counts how often each key was delivered.
fn counter(seen: &Arc<Mutex<BTreeMap<String, u32>>>) -> Arc<dyn MessageListener> {
    let seen = Arc::clone(seen);
    Arc::new(FnListener(move |_ctx: ConsumeContext, msgs: Vec<MessageExt>| {
        let seen = Arc::clone(&seen);
        async move {
            let mut s = seen.lock().unwrap();
            for m in &msgs {
                for k in m.keys() {
                    *s.entry(k.to_owned()).or_default() += 1;
                }
            }
            Ok(vec![MessageOutcome::Success; msgs.len()])
        }
    }))
}

/// `reset-offset --to first` on a running group of ours and on a running Java group: both
/// consume every message a second time without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_offset_rewinds_running_consumers_ours_and_javas() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("ops_reset");
    c.create_topic(cluster, &topic, 2).await.unwrap();
    let n = 10;
    c.produce_numbered(&topic, 0, n).await;

    let ours_group = unique("ops_reset_ours");
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let ours = PushConsumer::start(
        consumer_config(&ours_group, Subscription::all(&topic), "ours"),
        vec![cluster.namesrv_addr.clone()],
        counter(&seen),
    )
    .await
    .unwrap();
    let times = |k: u32| {
        let s = seen.lock().unwrap();
        (s.len() == n && s.values().all(|v| *v >= k)).then_some(())
    };
    wait_for("ours consumed everything once", Duration::from_secs(60), || times(1)).await;
    wait_committed(&c, &ours_group, &topic).await;

    let java_group = unique("ops_reset_java");
    let mut peer = cluster.flavour.is_java().then(|| {
        JavaPeer::start(&PeerOptions {
            flavour: cluster.flavour,
            ..PeerOptions::new(&cluster.namesrv_addr, &java_group, &topic, "java")
        })
        .unwrap()
    });
    if let Some(p) = &mut peer {
        p.wait("java consumed everything once", Duration::from_secs(60), |s| s.messages.len() >= n)
            .unwrap();
        wait_committed(&c, &java_group, &topic).await;
    }

    let table =
        reset_offset(&c.namesrv, &c.broker, &ours_group, &topic, ResetTo::First).await.unwrap();
    assert_eq!(table.len(), 2, "{table:?}");
    assert!(table.values().all(|o| o.0 == 0), "{table:?}");
    wait_for("ours consumed everything twice", Duration::from_secs(60), || times(2)).await;

    if let Some(p) = &mut peer {
        let ns = cluster.namesrv_addr.as_str();
        let out = cli(&[
            "reset-offset",
            "--namesrv",
            ns,
            "--group",
            &java_group,
            "--topic",
            &topic,
            "--to",
            "first",
        ]);
        assert!(out.contains("reset 2 queue(s)"), "{out}");
        p.wait("java consumed everything twice", Duration::from_secs(60), |s| {
            s.messages.len() >= 2 * n
        })
        .unwrap();
        p.stop().unwrap();
    } else {
        eprintln!("Java peer skipped: flavour {}", cluster.flavour);
    }
    ours.shutdown().await;
}

/// Runs the `rmq-wasm` binary to completion; returns stdout (panics with stderr on failure).
fn cli(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rmq-wasm-proc"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The `peek` verb end to end through the binary: every field as JSON, binary bodies as hex,
/// `--from last-N`, and `--follow` printing a message sent after it started, until SIGINT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peek_prints_every_field_and_follows_new_messages() {
    use std::io::BufRead as _;
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("ops_peek");
    c.create_topic(cluster, &topic, 1).await.unwrap();
    c.produce_numbered(&topic, 0, 3).await;
    let binary =
        Message::new(&topic, Bytes::from_static(b"\xff\x00")).with_keys(["bin"]).with_tags("TagX");
    c.producer.send(binary).await.unwrap();
    let ns = cluster.namesrv_addr.as_str();

    let out =
        cli(&["peek", "--namesrv", ns, "--topic", &topic, "--from", "first", "--format", "json"]);
    let rows: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 4, "{out}");
    for (i, row) in rows[..3].iter().enumerate() {
        assert_eq!(row["offset"], i as i64);
        assert_eq!(row["keys"], serde_json::json!([format!("k{i}")]));
        assert_eq!(
            (row["body"].as_str(), row["body_encoding"].as_str()),
            (Some(&*format!("m{i}")), Some("utf8"))
        );
        assert!(row["msg_id"].as_str().is_some_and(|id| !id.is_empty()));
        assert!(row["properties"]["UNIQ_KEY"].is_string(), "{row}");
        assert!(row["store_host"].as_str().is_some_and(|h| h.contains(':')));
    }
    assert_eq!(
        (rows[3]["body"].as_str(), rows[3]["body_encoding"].as_str()),
        (Some("ff00"), Some("hex"))
    );
    assert_eq!(rows[3]["tags"], "TagX");
    let text = cli(&["peek", "--namesrv", ns, "--topic", &topic, "--from", "last-2"]);
    assert_eq!(text.matches("── ").count(), 2, "{text}");
    assert!(text.contains("body       2 B hex ff00") && text.contains("keys       k2"), "{text}");

    let mut follow = std::process::Command::new(env!("CARGO_BIN_EXE_rmq-wasm-proc"))
        .args(["peek", "--namesrv", ns, "--topic", &topic, "--from", "last", "--follow"])
        .args(["--format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The follower polls from the end; keep sending until one of ours shows up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let seen = loop {
        c.producer
            .send(Message::new(&topic, Bytes::from_static(b"late")).with_keys(["late"]))
            .await
            .unwrap();
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
            break line;
        }
        assert!(tokio::time::Instant::now() < deadline, "--follow printed nothing");
    };
    let row: serde_json::Value = serde_json::from_str(&seen).unwrap();
    assert_eq!((row["keys"][0].as_str(), row["body"].as_str()), (Some("late"), Some("late")));
    assert!(row["offset"].as_i64().unwrap() >= 4, "only what arrived after the start: {row}");
    std::process::Command::new("kill").args(["-INT", &follow.id().to_string()]).status().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while follow.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "peek --follow ignored SIGINT");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
