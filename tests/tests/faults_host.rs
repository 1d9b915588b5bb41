//! Fault suite, host processes (#10 part 3): `rmq-wasm run` as separate OS processes with the
//! `router` Wasm listener, killed with SIGKILL, stopped with SIGTERM and started during a
//! stream against the real cluster. Every message is counted by its unique key; each test
//! prints sent / received unique / lost / duplicated / run time.
//!
//! How a process's consumption is observed from outside it:
//! * The router plugin copies every message it consumes to an output topic (keys kept) and
//!   reports success only after the copy's send succeeded, so "key present in the output" means
//!   "consumed and acknowledged by the listener" (at-least-once end to end). Each process runs the
//!   router with its own `tags` (`h1`, `h2`, …), so every copy names the host that made it; the
//!   copy's born timestamp is the host's clock at the send.
//! * The output topic has one queue: the router sends synchronously, so for one host and one
//!   source queue the output order is the consume order (used by the orderly check).
//! * (queue, host, start, end) of every listener call come from the host's own DEBUG line
//!   `rmq_wasm::calls` ("listener call", wall-clock microseconds), one log file per process. The
//!   hosts and the test share one machine and one clock; the interval is the listener call as the
//!   consumer sees it (slot wait included), not the offset commit after it.
//!
//! Limits of what this sees: the overlap check covers listener calls only, so a host that
//! committed an offset after losing its queue lock, without calling the listener, would not show
//! here (the duplicate and order figures would). The order check reads store order in the output
//! topic, i.e. the order the copies' sends completed, which for one host and one orderly queue
//! is the call order. In concurrent mode neither order nor exclusivity is promised (Java alike):
//! both are printed there, not asserted.
//!
//! Leaves in the join/leave tests are graceful (SIGTERM): a SIGKILLed member of an orderly group
//! keeps its broker-side queue locks until they expire (60 s on Apache RocketMQ), which stalls
//! those queues past this suite's time budget; SIGKILL is the first test's subject.
//!
//! Processes are children of the test, killed on drop ([`HostProc`]), so a failing assertion
//! leaves none behind; each also runs with `--duration 180s`, so not even a killed test process
//! leaves one running for long.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rmq_wasm::protocol::message::MessageExt;
use rmq_wasm_tests::cluster::Cluster;
use rmq_wasm_tests::host_procs::{
    HostProc, Reader, now_millis, report, router_config, spawn_stream, tally,
};
use rmq_wasm_tests::support::{Clients, init_tracing, unique};

/// `ConsumerConfig::persist_consumer_offset_interval`'s default, which `rmq-wasm run` keeps.
const PERSIST_INTERVAL: Duration = Duration::from_secs(5);
/// Messages per second the test stream sends: well under what one host consumes here, so the
/// backlog stays small and "consumed in the last persist interval" is about this rate.
const RATE: f64 = 400.0;
/// The host binary (only an integration test can name it).
const BIN: &str = env!("CARGO_BIN_EXE_rmq-wasm-proc");

/// The router host `name` in `mode` (`concurrently`, `orderly`).
fn host_config(
    cluster: &Cluster,
    name: &str,
    group: &str,
    topic: &str,
    out: &str,
    mode: &str,
) -> String {
    router_config(cluster, name, group, topic, out, &format!("consume_mode = \"{mode}\""))
}

async fn setup(prefix: &str, queues: i32) -> (&'static Cluster, Clients, String, String, String) {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique(prefix);
    let out = unique(&format!("{prefix}_out"));
    c.create_topic(cluster, &topic, queues).await.unwrap();
    c.create_topic(cluster, &out, 1).await.unwrap();
    (cluster, c, topic, out, unique(&format!("{prefix}_g")))
}

/// SIGKILL a host mid-stream and start another in its place (same group): nothing is lost, and
/// what is consumed twice is bounded by what was consumed since the last offset commit.
///
/// The bound: the consumer persists its offsets every [`PERSIST_INTERVAL`]; at the kill, every
/// message whose copy was made before the last persist (less the calls then in flight) is
/// committed. So the replays are at most the copies the killed host made in the last persist
/// interval before the kill, plus one second for the calls in flight at that persist — counted
/// from the copies' born timestamps (the host's clock, which is the test's). A host that lost
/// its committed offsets and restarted from the first offset would replay everything the first
/// host consumed (over 7 s of it) and fail this bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_lose_nothing_and_replay_at_most_one_persist_interval() {
    let started = Instant::now();
    let (cluster, c, topic, out, group) = setup("fh_kill", 4).await;
    let dir = tempfile::tempdir().unwrap();
    let config = |name: &str| host_config(cluster, name, &group, &topic, &out, "concurrently");

    let mut h1 = HostProc::start(BIN, dir.path(), "h1", &config("h1"));
    h1.wait_running().await;
    let h1_up = Instant::now();
    let n = 8_000;
    let keys = (0..n).map(|i| (format!("{topic}-{i}"), None)).collect();
    let stream = spawn_stream(cluster, topic.clone(), keys, 0, RATE);
    let mut reader = Reader::new(&out);

    // h1 consumes half the stream and runs for over two persist intervals, so a restart from
    // the first offset would replay about twice what the bound allows.
    reader.wait_copies(&c, cluster, n / 2, &[&h1]).await;
    let min_run = 2 * PERSIST_INTERVAL + Duration::from_secs(2);
    if let Some(rest) = min_run.checked_sub(h1_up.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let kill_ms = now_millis();
    h1.kill9();
    let mut h2 = HostProc::start(BIN, dir.path(), "h2", &config("h2"));
    h2.wait_running().await;

    let sent = stream.await.unwrap();
    reader.wait_keys(&c, cluster, &sent, &[&h2]).await;
    let status = h2.terminate().await;
    reader.poll(&c, cluster).await;

    let t = tally(&sent, &reader.msgs);
    let by = |host: &str| reader.msgs.iter().filter(|m| m.tags() == Some(host)).count();
    let window_ms = (PERSIST_INTERVAL + Duration::from_secs(1)).as_millis() as i64;
    let h1_recent = reader
        .msgs
        .iter()
        .filter(|m| m.tags() == Some("h1") && m.born_timestamp.0 >= kill_ms - window_ms)
        .count();
    let (h1_copies, h2_copies) = (by("h1"), by("h2"));
    report(
        "sigkill",
        &t,
        started,
        &format!(
            "h1 copies {h1_copies} (last {window_ms} ms before the kill: {h1_recent}), \
             h2 copies {h2_copies}"
        ),
    );
    assert!(status.success(), "h2 shut down with {status}");
    t.assert_nothing_lost(n);
    assert!(h1_copies < n && h2_copies > 0, "the kill fell mid-stream");
    assert!(
        t.duplicated <= h1_recent,
        "{} duplicates, more than the {h1_recent} messages h1 consumed in the last persist \
         interval (+1 s) before the kill",
        t.duplicated
    );
}

/// One listener call as the host logged it.
#[derive(Debug, Clone)]
struct Call {
    host: String,
    queue: String,
    start_us: u64,
    end_us: u64,
    batch: usize,
}

/// The `rmq_wasm::calls` lines of `host`'s log for `topic`.
fn calls(host: &HostProc, topic: &str) -> Vec<Call> {
    let field = |line: &str, name: &str| -> Option<String> {
        let at = line.find(&format!(" {name}="))? + name.len() + 2;
        let rest = &line[at..];
        let end = rest.find(' ').unwrap_or(rest.len());
        Some(rest[..end].trim_matches('"').to_owned())
    };
    host.log_text()
        .lines()
        .map(strip_ansi)
        .filter(|l| l.contains("rmq_wasm::calls") && l.contains("listener call"))
        .filter(|l| field(l, "topic").as_deref() == Some(topic))
        .map(|l| Call {
            host: host.name.clone(),
            queue: format!("{}:{}", field(&l, "broker").unwrap(), field(&l, "queue").unwrap()),
            start_us: field(&l, "start_us").unwrap().parse().unwrap(),
            end_us: field(&l, "end_us").unwrap().parse().unwrap(),
            batch: field(&l, "batch").unwrap().parse().unwrap(),
        })
        .collect()
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// Pairs of calls of different hosts on one queue whose intervals intersect.
fn overlaps(all: &[Call]) -> Vec<(Call, Call)> {
    let mut by_queue: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
    for c in all {
        by_queue.entry(&c.queue).or_default().push(c);
    }
    let mut found = Vec::new();
    for calls in by_queue.values_mut() {
        calls.sort_by_key(|c| c.start_us);
        // The latest-ending call so far of each host.
        let mut last: BTreeMap<&str, &Call> = BTreeMap::new();
        for c in calls.iter() {
            for (host, prev) in &last {
                if *host != c.host && prev.end_us > c.start_us {
                    found.push(((*prev).clone(), (*c).clone()));
                }
            }
            let e = last.entry(&c.host).or_insert(c);
            if c.end_us > e.end_us {
                *e = c;
            }
        }
    }
    found
}

/// Queue handovers in the call log: (times a queue's next call was by another host than its
/// previous one, the shortest gap in µs between such a pair). Shows the overlap check had
/// something to check.
fn handovers(all: &[Call]) -> (usize, Option<i64>) {
    let mut by_queue: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
    for c in all {
        by_queue.entry(&c.queue).or_default().push(c);
    }
    let (mut n, mut min_gap) = (0, None::<i64>);
    for calls in by_queue.values_mut() {
        calls.sort_by_key(|c| c.start_us);
        for pair in calls.windows(2) {
            if pair[0].host != pair[1].host {
                n += 1;
                let gap = pair[1].start_us as i64 - pair[0].end_us as i64;
                min_gap = Some(min_gap.map_or(gap, |m| m.min(gap)));
            }
        }
    }
    (n, min_gap)
}

/// Per sharding key, walks the copies in output order: each next sequence number must be the
/// previous plus one (in order, nothing skipped), or at most the previous (a replay: the queue
/// restarted from its committed offset after a rebalance, or an orderly redelivery). A jump
/// forward is an order violation. Returns (violations, replay runs: the backward jumps).
fn check_order(copies: &[MessageExt]) -> (Vec<String>, usize) {
    let mut last: HashMap<String, (i64, String)> = HashMap::new();
    let mut violations = Vec::new();
    let mut replays = 0;
    for m in copies {
        let Some(key) = m.keys().next() else { continue };
        // `<topic>-s<shard>-<seq>`
        let mut parts = key.rsplitn(3, '-');
        let seq: i64 = parts.next().unwrap().parse().unwrap();
        let shard = parts.next().unwrap().to_owned();
        let host = m.tags().unwrap_or("?").to_owned();
        let (prev, prev_host) = last.get(&shard).cloned().unwrap_or((-1, String::new()));
        if seq > prev + 1 {
            violations.push(format!(
                "{shard}: {seq} (by {host}) after {prev} (by {prev_host}) at output offset {}",
                m.queue_offset.0
            ));
        } else if seq <= prev {
            replays += 1;
        }
        last.insert(shard, (seq, host));
    }
    (violations, replays)
}

/// Three hosts join and leave one group during a stream: h1 starts, h2 and h3 join, h1 and then
/// h2 leave (SIGTERM), h3 finishes. Each step waits for the output to reach a share of the
/// stream, so every change happens while messages flow. Nothing may be lost; duplicates are
/// printed (a rebalance replays from the committed offset, so some are expected). Orderly
/// groups also check per-key order and that no queue is in two hosts' calls at once.
async fn join_and_leave(mode: &str, n: usize) {
    let started = Instant::now();
    let step = |what: &str| {
        eprintln!("[join/leave {mode}] {:>5.1} s {what}", started.elapsed().as_secs_f64())
    };
    let (cluster, c, topic, out, group) = setup(&format!("fh_join_{mode}"), 8).await;
    step("cluster and topics ready");
    let dir = tempfile::tempdir().unwrap();
    let config = |name: &str| host_config(cluster, name, &group, &topic, &out, mode);
    let orderly = mode == "orderly";
    let step = |what: &str| {
        eprintln!("[join/leave {mode}] {:>5.1} s {what}", started.elapsed().as_secs_f64())
    };

    // 16 sharding keys over 8 queues; keys `<topic>-s<shard>-<seq>`, seq counting per shard.
    let keys = (0..n)
        .map(|i| {
            let shard = format!("s{}", i % 16);
            (format!("{topic}-{shard}-{}", i / 16), orderly.then_some(shard))
        })
        .collect();
    // A quarter of the stream is a backlog before h1 starts: the first joins and leaves happen
    // while queues are busy (back-to-back calls of 8), not idle between paced messages.
    let stream = spawn_stream(cluster, topic.clone(), keys, n / 4, RATE);
    let mut h1 = HostProc::start(BIN, dir.path(), "h1", &config("h1"));
    h1.wait_running().await;
    let mut reader = Reader::new(&out);
    step("h1 running");

    reader.wait_copies(&c, cluster, n * 15 / 100, &[&h1]).await;
    let mut h2 = HostProc::start(BIN, dir.path(), "h2", &config("h2"));
    h2.wait_running().await;
    step("h2 running");
    reader.wait_copies(&c, cluster, n * 30 / 100, &[&h1, &h2]).await;
    let mut h3 = HostProc::start(BIN, dir.path(), "h3", &config("h3"));
    h3.wait_running().await;
    step("h3 running");
    reader.wait_copies(&c, cluster, n * 45 / 100, &[&h1, &h2, &h3]).await;
    let s1 = h1.terminate().await;
    step("h1 stopped");
    reader.wait_copies(&c, cluster, n * 65 / 100, &[&h2, &h3]).await;
    let s2 = h2.terminate().await;
    step("h2 stopped");

    let sent = stream.await.unwrap();
    step("stream sent");
    reader.wait_keys(&c, cluster, &sent, &[&h3]).await;
    step("all keys in");
    let s3 = h3.terminate().await;
    step("h3 stopped");
    reader.poll(&c, cluster).await;

    let t = tally(&sent, &reader.msgs);
    let by: Vec<String> = ["h1", "h2", "h3"]
        .iter()
        .map(|h| format!("{h} {}", reader.msgs.iter().filter(|m| m.tags() == Some(h)).count()))
        .collect();
    let all_calls: Vec<Call> = [&h1, &h2, &h3].iter().flat_map(|h| calls(h, &topic)).collect();
    let called: usize = all_calls.iter().map(|c| c.batch).sum();
    let overlapping = overlaps(&all_calls);
    let (switches, min_gap) = handovers(&all_calls);
    let (violations, replays) = check_order(&reader.msgs);
    report(
        &format!("join/leave {mode}"),
        &t,
        started,
        &format!(
            "copies by {} | calls {} ({called} messages) | queue handovers {switches} \
             (shortest gap {:?} ms) | overlapping calls {} | order violations {} | replay runs \
             {replays}",
            by.join(", "),
            all_calls.len(),
            min_gap.map(|g| g as f64 / 1e3),
            overlapping.len(),
            violations.len(),
        ),
    );
    for (status, host) in [(s1, "h1"), (s2, "h2"), (s3, "h3")] {
        assert!(status.success(), "{host} shut down with {status}");
    }
    t.assert_nothing_lost(n);
    assert!(called >= n, "the call log covers every message ({called} < {n})");
    // h2's and h3's joins and h1's and h2's leaves each move queues (8 queues, 3 hosts).
    assert!(
        switches >= 4,
        "only {switches} queue handovers: the membership changes moved no queues"
    );
    if orderly {
        assert!(
            overlapping.is_empty(),
            "queues in two hosts' calls at once: {:#?}",
            &overlapping[..overlapping.len().min(5)]
        );
        assert!(
            violations.is_empty(),
            "order violations: {:#?}",
            &violations[..violations.len().min(10)]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_join_and_leave_a_concurrent_group_without_loss() {
    join_and_leave("concurrently", 8_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_join_and_leave_an_orderly_group_in_order_without_overlap() {
    join_and_leave("orderly", 8_000).await;
}

/// The checkers themselves, on made-up data: they must be able to fail.
#[test]
fn the_overlap_and_order_checkers_find_what_they_look_for() {
    let call = |host: &str, queue: &str, start_us, end_us| Call {
        host: host.into(),
        queue: queue.into(),
        start_us,
        end_us,
        batch: 1,
    };
    // Back to back on one queue, and at once on different queues: fine.
    let fine = [call("h1", "b:0", 0, 10), call("h2", "b:0", 10, 20), call("h1", "b:1", 12, 18)];
    assert!(overlaps(&fine).is_empty());
    // h2 starts on b:0 while h1's long call there is still running, after a short h1 call.
    let bad = [call("h1", "b:0", 0, 50), call("h1", "b:0", 50, 60), call("h2", "b:0", 55, 70)];
    assert_eq!(overlaps(&bad).len(), 1);

    let copy = |key: &str, host: &str| {
        let mut m = MessageExt::default();
        m.properties.insert("KEYS", key);
        m.properties.insert("TAGS", host);
        m
    };
    let replayed = ["t-s1-0", "t-s1-1", "t-s1-2", "t-s1-1", "t-s1-2", "t-s1-3", "t-s2-0"];
    let copies: Vec<MessageExt> = replayed.iter().map(|k| copy(k, "h1")).collect();
    assert_eq!(check_order(&copies), (vec![], 1), "one replay run");
    let skipped: Vec<MessageExt> =
        ["t-s1-0", "t-s1-2", "t-s1-1"].iter().map(|k| copy(k, "h1")).collect();
    assert_eq!(check_order(&skipped).0.len(), 1);
}
