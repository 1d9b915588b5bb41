//! The endpoint's renderers on readings built by hand, and the server over a real socket.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};

use super::http::{Endpoint, get, respond};
use super::reading::{ListenerReading, PluginReading, Reading, Source};
use super::{Status, exposition};
use crate::consumer::listener::AbortKind;
use crate::consumer::stats::{ConsumerStats, OutcomeCounts, QueueStats, TopicStats};
use crate::protocol::EpochMillis;
use crate::protocol::{MessageQueue, QueueId};
use crate::wasm::ListenerLimits;
use crate::wasm::stats::{RecentAbort, SandboxStats};

/// A listener with `queues` owned queues of `topic` on `broker-a`, each with a pull of 10
/// messages and a call of 8 successes, 1 retry and 1 dead letter; 5 ms behind on offsets.
fn listener(name: &str, topic: &str, queues: i32, ready: bool) -> ListenerReading {
    let group = format!("{name}_group");
    let topic_stats = Arc::new(TopicStats::default());
    let retry_stats = Arc::new(TopicStats::default());
    let mut owned = ConsumerStats::default();
    for id in 0..queues {
        let q = QueueStats::new(Arc::clone(&topic_stats));
        q.add_pull(Duration::from_millis(3), 10);
        q.add_consume(
            Duration::from_micros(200),
            Duration::from_millis(2),
            OutcomeCounts { success: 8, retry: 1, dead_letter: 1 },
        );
        q.set_cache(2, 2048);
        q.max_offset.store(100 + i64::from(id), Ordering::Relaxed);
        q.committed_offset.store(95 + i64::from(id), Ordering::Relaxed);
        owned.queues.insert(MessageQueue::new(topic, "broker-a", QueueId(id)), q.snapshot());
    }
    let sandbox = Arc::new(SandboxStats::default());
    SandboxStats::add(&sandbox.calls, 7);
    sandbox.record_abort(RecentAbort {
        at: EpochMillis(1_700_000_000_000),
        kind: AbortKind::Trap,
        topic: topic.to_owned(),
        queue_id: 3,
        version: "0123456789ab".into(),
        batch: 4,
        fuel_used: 1234,
        detail: "wasm trap: unreachable\nforged line".into(),
    });
    sandbox.abort(AbortKind::FuelExhausted);
    SandboxStats::add(&sandbox.poison, 1);
    sandbox.add_fuel(5_000_000);
    ListenerReading {
        name: name.to_owned(),
        group: group.clone(),
        topic: topic.to_owned(),
        ready,
        topics: vec![(topic.to_owned(), topic_stats), (format!("%RETRY%{group}"), retry_stats)],
        queues: owned,
        plugin: PluginReading {
            version: "0123456789abcdef0123".into(),
            path: "/plugins/router.wasm".into(),
            load_time: Duration::from_millis(12),
            from_cache: true,
        },
        sandbox,
        limits: ListenerLimits::default(),
    }
}

fn reading(ready: bool) -> Reading {
    Reading {
        listeners: vec![
            listener("orders", "Orders", 16, true),
            listener("audit", "Audit", 16, ready),
        ],
        instances_active: 3,
        instances_max: 64,
    }
}

/// The value of the one series of `name` whose labels include every one of `labels`.
fn value(text: &str, name: &str, labels: &[&str]) -> f64 {
    let hits: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .collect();
    assert_eq!(hits.len(), 1, "{name} {labels:?}: {hits:?}");
    hits[0].rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn the_exposition_carries_every_family_with_bounded_labels() {
    let text = exposition::render(reading(true));
    let orders = ["listener=\"orders\"", "consumer_group=\"orders_group\"", "topic=\"Orders\""];
    assert_eq!(value(&text, "rmq_wasm_pulled_messages_total", &orders), 160.0);
    assert_eq!(value(&text, "rmq_wasm_pulls_total", &orders), 16.0);
    assert_eq!(value(&text, "rmq_wasm_consume_calls_total", &orders), 16.0);
    let outcome = |o: &str| {
        let label = format!("outcome=\"{o}\"");
        value(&text, "rmq_wasm_consumed_messages_total", &[orders[0], orders[2], &label])
    };
    assert_eq!((outcome("success"), outcome("retry"), outcome("dead_letter")), (128.0, 16.0, 16.0));
    assert_eq!(value(&text, "rocketmq_process_time_count", &orders), 16.0);
    assert_eq!(
        value(&text, "rocketmq_process_time_bucket", &[orders[0], orders[2], "le=\"5\""]),
        16.0
    );
    assert_eq!(
        value(&text, "rocketmq_process_time_bucket", &[orders[0], orders[2], "le=\"1\""]),
        0.0
    );
    assert_eq!(
        value(&text, "rocketmq_await_time_bucket", &[orders[0], orders[2], "le=\"1\""]),
        16.0
    );
    assert_eq!(value(&text, "rmq_wasm_pull_rt_milliseconds_count", &orders), 16.0);
    assert_eq!(value(&text, "rocketmq_consumer_cached_messages", &orders), 32.0);
    assert_eq!(value(&text, "rocketmq_consumer_cached_bytes", &orders), 32.0 * 1024.0);
    // The retry topic has its own series, empty here.
    let retry = ["listener=\"orders\"", "topic=\"%RETRY%orders_group\""];
    assert_eq!(value(&text, "rmq_wasm_pulled_messages_total", &retry), 0.0);
    // Per queue: lag = max - committed.
    let q7 = ["listener=\"orders\"", "broker=\"broker-a\"", "queue_id=\"7\""];
    assert_eq!(value(&text, "rmq_wasm_queue_lag", &q7), 5.0);
    assert_eq!(value(&text, "rmq_wasm_queue_committed_offset", &q7), 102.0);
    assert_eq!(value(&text, "rmq_wasm_owned_queues", &["listener=\"audit\""]), 16.0);
    // The sandbox.
    let audit = ["listener=\"audit\"", "consumer_group=\"audit_group\""];
    assert_eq!(value(&text, "rmq_wasm_aborts_total", &[audit[0], "kind=\"trap\""]), 1.0);
    assert_eq!(value(&text, "rmq_wasm_aborts_total", &[audit[0], "kind=\"fuel\""]), 1.0);
    assert_eq!(value(&text, "rmq_wasm_aborts_total", &[audit[0], "kind=\"memory\""]), 0.0);
    assert_eq!(value(&text, "rmq_wasm_poison_messages_total", &audit), 1.0);
    assert_eq!(value(&text, "rmq_wasm_fuel_used_bucket", &[audit[0], "le=\"1e+07\""]), 1.0);
    assert_eq!(value(&text, "rmq_wasm_plugin_info", &[audit[0], "version=\"0123456789ab\""]), 1.0);
    assert_eq!(value(&text, "rmq_wasm_reloads_total", &[audit[0], "result=\"failed\""]), 0.0);
    assert_eq!(value(&text, "rmq_wasm_log_lines_dropped_total", &audit), 0.0);
    assert_eq!(value(&text, "rmq_wasm_listener_ready", &audit), 1.0);
    assert_eq!(value(&text, "rmq_wasm_instances_active", &[]), 3.0);
    assert_eq!(value(&text, "rmq_wasm_instances_max", &[]), 64.0);
    // Every family is typed and documented once.
    for family in [
        "rmq_wasm_pulls_total",
        "rocketmq_process_time",
        "rmq_wasm_queue_lag",
        "rmq_wasm_aborts_total",
    ] {
        assert_eq!(text.matches(&format!("# TYPE {family} ")).count(), 1, "{family}");
        assert_eq!(text.matches(&format!("# HELP {family} ")).count(), 1, "{family}");
    }
}

/// The scrape cost the issue asks to state: render time with 2 listeners × 16 queues.
#[test]
fn scrape_cost_with_two_listeners_of_sixteen_queues() {
    let reading = reading(true);
    let rounds = 200;
    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..rounds {
        bytes = exposition::render(reading.clone()).len();
    }
    let each = started.elapsed() / rounds;
    println!(
        "scrape cost: /metrics with 2 listeners x 16 queues renders {bytes} bytes in {each:?}"
    );
    assert!(bytes > 10_000, "{bytes}");
    if std::env::var_os("RMQ_PRINT_METRICS").is_some() {
        println!("{}", exposition::render(reading));
    }
}

/// A source whose reading tests change.
struct Fixed(Mutex<Reading>);

impl Source for Fixed {
    fn read(&self) -> Reading {
        self.0.lock().unwrap().clone()
    }
}

#[test]
fn readyz_names_the_listeners_not_ready_and_flips() {
    let source = Fixed(Mutex::new(reading(false)));
    let r = respond(&source, &Method::GET, "/readyz");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    *source.0.lock().unwrap() = reading(true);
    assert_eq!(respond(&source, &Method::GET, "/readyz").status(), StatusCode::OK);
    assert_eq!(respond(&source, &Method::GET, "/livez").status(), StatusCode::OK);
    assert_eq!(respond(&source, &Method::GET, "/nope").status(), StatusCode::NOT_FOUND);
    assert_eq!(
        respond(&source, &Method::POST, "/metrics").status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[test]
fn status_lists_owned_queues_with_offsets_and_lag() {
    let status = Status::of(&reading(false));
    assert!(!status.ready);
    assert_eq!(status.not_ready(), ["audit"]);
    let orders = &status.listeners[0];
    assert_eq!(orders.queues.len(), 16);
    assert_eq!(
        (orders.queues[3].committed_offset, orders.queues[3].max_offset, orders.queues[3].lag),
        (98, 103, 5)
    );
    assert_eq!(orders.aborts["trap"], 1);
    let json = serde_json::to_string(&status).unwrap();
    assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), status);
    let table = status.table();
    assert!(table.starts_with("NOT READY"), "{table}");
    assert!(table.contains("listener audit (group audit_group, topic Audit) NOT READY"), "{table}");
    assert!(table.contains("aborts [fuel=1 trap=1] poison 1"), "{table}");
    assert!(
        table.contains(
            "abort trap at 2023-11-14T22:13:20.000Z on Audit#3 version 0123456789ab batch 4 \
             fuel 1234: wasm trap: unreachable\\nforged line"
        ),
        "the recent abort, its text escaped: {table}"
    );
    assert_eq!(status.listeners[1].recent_aborts.len(), 1);
    let row = table.lines().find(|l| l.contains("Orders") && l.contains(" 15 ")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells, ["Orders", "broker-a", "15", "110", "115", "5", "2"], "{row}");
}

/// `status --watch`: the rate is the outcomes' growth over the interval, per listener.
#[test]
fn watch_lines_show_the_rate_since_the_previous_reading() {
    let before = Status::of(&reading(true));
    let mut now = before.clone();
    now.listeners[0].outcomes.success += 30;
    now.listeners[0].outcomes.dead_letter += 2;
    now.listeners[0].plugin.reloads += 1;
    let lines = now.watch_lines(Some(&before), Duration::from_secs(2));
    let orders = lines.lines().find(|l| l.starts_with("orders:")).expect(&lines);
    let o = &now.listeners[0].outcomes;
    assert!(orders.contains("    16 msg/s"), "(30 + 2) / 2 s: {orders}");
    assert!(
        orders.contains(&format!(
            "success {} retry {} dead-letter {}",
            o.success, o.retry, o.dead_letter
        )),
        "{orders}"
    );
    assert!(orders.contains("reloads 1"), "{orders}");
    let audit = lines.lines().find(|l| l.starts_with("audit:")).expect(&lines);
    assert!(audit.contains("     0 msg/s"), "{audit}");
    let first = now.watch_lines(None, Duration::from_secs(1));
    assert!(first.lines().all(|l| l.contains("     - msg/s")), "{first}");
}

#[tokio::test]
async fn the_endpoint_serves_over_http_and_stops_when_dropped() {
    let source: Arc<dyn Source> = Arc::new(Fixed(Mutex::new(reading(true))));
    let endpoint = Endpoint::start("127.0.0.1:0".parse().unwrap(), source).await.unwrap();
    let addr = endpoint.local_addr().to_string();
    let timeout = Duration::from_secs(5);
    let (code, body) = get(&addr, "/metrics", timeout).await.unwrap();
    assert_eq!(code, StatusCode::OK);
    assert!(body.contains("rmq_wasm_queue_lag{"), "{body}");
    let (code, body) = get(&addr, "/status", timeout).await.unwrap();
    assert_eq!(code, StatusCode::OK);
    assert_eq!(serde_json::from_str::<Status>(&body).unwrap().listeners.len(), 2);
    drop(endpoint);
    // The listener socket closes with the server task.
    let deadline = Instant::now() + timeout;
    while get(&addr, "/livez", timeout).await.is_ok() {
        assert!(Instant::now() < deadline, "the endpoint still answers after being dropped");
        tokio::task::yield_now().await;
    }
}
