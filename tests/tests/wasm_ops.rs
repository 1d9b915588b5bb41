//! The operators' endpoint of `rmq-wasm run` (#13) against the real cluster: one process, two
//! Wasm listeners in one config, `[http]` on a port the process picks.
//!
//! - `/readyz` answers 503 while a listener's topic does not exist (no route, so no queue can
//!   be assigned) and 200 once the topic is created and its queues assigned;
//! - `/metrics` counts exactly what was sent, retried and dead-lettered: the `filter` listener
//!   retries each `Retry`-tagged message once, then dead-letters it on redelivery (through
//!   `%RETRY%<group>`); the `trap-on-key` listener traps on one poison message, which isolation
//!   dead-letters alone;
//! - `rmq-wasm status --addr` prints the owned queues;
//! - `--log-format json` lines carry their listener and queue (spans);
//! - `/readyz` answers 503 as soon as a graceful shutdown (SIGTERM) begins, while in-flight
//!   calls still drain and the endpoint still answers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rmq_wasm::ops::http::get;
use rmq_wasm::protocol::message::Message;
use rmq_wasm_tests::cluster::Cluster;
use rmq_wasm_tests::support::{Clients, init_tracing, unique};
use rmq_wasm_tests::wasm::{cache_dir, plugin};

const TIMEOUT: Duration = Duration::from_secs(5);

/// `rmq-wasm run` as a child process; SIGKILLed on drop.
struct HostProc {
    child: Child,
    log: PathBuf,
}

impl HostProc {
    fn start(dir: &Path, config: &str) -> Self {
        let config_path = dir.join("ops.toml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.join("ops.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rmq-wasm-proc"))
            .args(["run", "--config"])
            .arg(&config_path)
            // Ends by itself even if the test process is killed before its drop runs.
            .args(["--duration", "180s", "--log-format", "json"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting rmq-wasm");
        Self { child, log }
    }

    /// SIGTERM: the graceful shutdown `systemctl stop` or Kubernetes starts.
    fn terminate(&self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
        assert!(sent.success(), "kill -TERM {pid} failed");
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The endpoint's address, from the start-up line (the config asks for port 0).
    async fn endpoint(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = self.log_text();
            if let Some(line) = text.lines().find(|l| l.contains("serving /metrics")) {
                let line: serde_json::Value = serde_json::from_str(line).unwrap();
                return line["addr"].as_str().expect("addr on the line").to_owned();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("rmq-wasm exited during start-up ({status}):\n{text}");
            }
            assert!(Instant::now() < deadline, "rmq-wasm did not start:\n{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for HostProc {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// The top of a run config: the cluster, the shared artifact cache, `[http]` on a free port.
fn config_head(cluster: &Cluster) -> String {
    format!(
        "namesrv = \"{}\"\n[engine]\ncache_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
        cluster.namesrv_addr,
        cache_dir().display()
    )
}

/// The value of the one series of `name` whose labels include all of `labels` (0 if absent).
fn value(text: &str, name: &str, labels: &[&str]) -> u64 {
    let hits: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .collect();
    assert!(hits.len() <= 1, "{name} {labels:?} matches several series: {hits:?}");
    hits.first().map_or(0, |l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
}

/// Polls `path` until `done` holds for its body, or panics with the last body at the deadline.
async fn wait_body(
    addr: &str,
    path: &str,
    within: Duration,
    done: impl Fn(u16, &str) -> bool,
) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (code, body) = get(addr, path, TIMEOUT).await.unwrap();
        if done(code.as_u16(), &body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{path} never got there; last answer {code}:\n{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_what_two_listeners_consumed_retried_and_dead_lettered() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let (topic_f, topic_t) = (unique("ops_filter"), unique("ops_trap"));
    let (group_f, group_t) = (unique("ops_filter_g"), unique("ops_trap_g"));
    c.create_topic(cluster, &topic_f, 4).await.unwrap();
    // The trap listener's topic is created later: until then it cannot be ready.

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{head}
[[listener]]
name = "ops-filter"
group = "{group_f}"
topic = "{topic_f}"
consume_from = "first"
wasm = "{filter}"
hot_reload = false
[listener.config]
tag = "Retry"
delay-level = "1"
dead-letter-after = "1"

[[listener]]
name = "ops-trap"
group = "{group_t}"
topic = "{topic_t}"
consume_from = "first"
wasm = "{trap}"
batch_size = 4
hot_reload = false
[listener.config]
key = "poison"
"#,
        head = config_head(cluster),
        filter = plugin("filter").display(),
        trap = plugin("trap-on-key").display(),
    );
    let mut host = HostProc::start(dir.path(), &config);
    let addr = host.endpoint().await;
    let started = Instant::now();

    // Not ready: the trap listener's topic has no route.
    assert_eq!(get(&addr, "/livez", TIMEOUT).await.unwrap().0.as_u16(), 200);
    let (code, body) = get(&addr, "/readyz", TIMEOUT).await.unwrap();
    assert_eq!(code.as_u16(), 503, "{body}");
    assert!(body.contains("ops-trap"), "{body}");
    c.create_topic(cluster, &topic_t, 4).await.unwrap();
    wait_body(&addr, "/readyz", Duration::from_secs(60), |code, _| code == 200).await;
    println!("ready {:?} after start (topic created meanwhile)", started.elapsed());

    let (ok_f, retry_f, ok_t) = (20, 3, 12);
    for i in 0..ok_f + retry_f {
        let tag = if i < ok_f { "Ok" } else { "Retry" };
        let m = Message::new(&topic_f, Bytes::from_static(b"{}")).with_tags(tag);
        c.producer.send(m).await.unwrap();
    }
    for i in 0..=ok_t {
        let key = if i == ok_t / 2 { "poison".to_owned() } else { format!("fine-{i}") };
        let m = Message::new(&topic_t, Bytes::from_static(b"{}")).with_keys([key.as_str()]);
        c.producer.send(m).await.unwrap();
    }

    let retry_topic = format!("topic=\"%RETRY%{group_f}\"");
    let (tf, tt) = (format!("topic=\"{topic_f}\""), format!("topic=\"{topic_t}\""));
    let outcome = |text: &str, topic: &str, o: &str| {
        value(text, "rmq_wasm_consumed_messages_total", &[topic, &format!("outcome=\"{o}\"")])
    };
    let expected = |text: &str| {
        [
            outcome(text, &tf, "success"),
            outcome(text, &tf, "retry"),
            outcome(text, &tf, "dead_letter"),
            outcome(text, &retry_topic, "success"),
            outcome(text, &retry_topic, "retry"),
            outcome(text, &retry_topic, "dead_letter"),
            outcome(text, &tt, "success"),
            outcome(text, &tt, "retry"),
            outcome(text, &tt, "dead_letter"),
        ] == [ok_f, retry_f, 0, 0, 0, retry_f, ok_t, 0, 1]
    };
    let text =
        wait_body(&addr, "/metrics", Duration::from_secs(60), |_, body| expected(body)).await;
    println!("all outcomes counted {:?} after start", started.elapsed());
    assert_eq!(value(&text, "rmq_wasm_pulled_messages_total", &[&tf]), ok_f + retry_f);
    assert_eq!(value(&text, "rmq_wasm_pulled_messages_total", &[&retry_topic]), retry_f);
    assert_eq!(value(&text, "rmq_wasm_pulled_messages_total", &[&tt]), ok_t + 1);
    let trap = "listener=\"ops-trap\"";
    assert_eq!(value(&text, "rmq_wasm_poison_messages_total", &[trap]), 1);
    assert!(value(&text, "rmq_wasm_aborts_total", &[trap, "kind=\"trap\""]) >= 1, "{text}");
    assert_eq!(
        value(&text, "rmq_wasm_aborts_total", &["listener=\"ops-filter\"", "kind=\"trap\""]),
        0
    );
    assert_eq!(
        value(&text, "rmq_wasm_owned_queues", &[trap]),
        4 + 1,
        "4 queues and the retry queue"
    );
    assert_eq!(value(&text, "rmq_wasm_listener_ready", &[trap]), 1);
    assert!(value(&text, "rocketmq_process_time_count", &[&tf]) >= 1);
    assert_eq!(value(&text, "rmq_wasm_plugin_info", &["listener=\"ops-filter\""]), 1);

    // `rmq-wasm status` prints the owned queues.
    let out = Command::new(env!("CARGO_BIN_EXE_rmq-wasm-proc"))
        .args(["status", "--addr", &addr])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}{}", String::from_utf8_lossy(&out.stderr));
    assert!(table.starts_with("ready"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("abort trap at ") && l.contains(&format!("on {topic_t}#"))),
        "the trap listener's recent abort: {table}"
    );
    for id in 0..4 {
        let row = table
            .lines()
            .find(|l| {
                l.trim_start().starts_with(&topic_t)
                    && l.split_whitespace().nth(2) == Some(&id.to_string())
            })
            .unwrap_or_else(|| panic!("queue {id} of {topic_t} not in:\n{table}"));
        assert_eq!(row.split_whitespace().nth(5), Some("0"), "no lag left: {row}");
    }
    println!("{table}");

    // JSON log lines carry their context: the trap plugin's own line names the listener, its
    // group and topic, and the queue.
    let log = host.log_text();
    let plugin_line: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["target"] == "rmq_wasm::plugin")
        .unwrap_or_else(|| panic!("no plugin log line in:\n{log}"));
    let spans = plugin_line["spans"].as_array().expect("spans on the line");
    let span = |name: &str| spans.iter().find(|s| s["name"] == name).cloned().unwrap_or_default();
    assert_eq!(span("listener")["listener"], "ops-trap", "{plugin_line}");
    assert_eq!(span("listener")["group"], group_t.as_str(), "{plugin_line}");
    assert_eq!(span("queue")["topic"], topic_t.as_str(), "{plugin_line}");
    assert!(span("queue")["queue_id"].is_i64(), "{plugin_line}");
    // ... and the plugin version that wrote it, as /status names the serving one.
    let (_, status) = get(&addr, "/status", TIMEOUT).await.unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let serving = status["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "ops-trap")
        .map(|l| l["plugin"]["version"].as_str().unwrap().to_owned())
        .unwrap();
    let version = plugin_line["version"].as_str().expect("version on the plugin's line");
    assert!(version.len() == 12 && serving.starts_with(version), "{version} vs {serving}");

    // Nothing was counted twice in the meantime.
    let (_, text) = get(&addr, "/metrics", TIMEOUT).await.unwrap();
    assert!(expected(&text), "{text}");
}

/// A load balancer must stop sending before the process goes: `/readyz` turns 503 when SIGTERM
/// starts the graceful shutdown, while a call still runs (the `infinite-loop` plugin, stopped by
/// its 3 s deadline) and the endpoint still answers; then the process exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_not_ready_when_a_graceful_shutdown_starts() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let (topic, group) = (unique("ops_drain"), unique("ops_drain_g"));
    c.create_topic(cluster, &topic, 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{head}
[[listener]]
name = "ops-drain"
group = "{group}"
topic = "{topic}"
consume_from = "first"
wasm = "{spin}"
hot_reload = false
poison_isolation = false
timeout = "3s"
fuel = 100000000000000
"#,
        head = config_head(cluster),
        spin = plugin("infinite-loop").display(),
    );
    let mut host = HostProc::start(dir.path(), &config);
    let addr = host.endpoint().await;
    wait_body(&addr, "/readyz", Duration::from_secs(60), |code, _| code == 200).await;
    c.producer.send(Message::new(&topic, Bytes::from_static(b"spin"))).await.unwrap();
    // A call is running: the sandbox holds a pool slot.
    wait_body(&addr, "/metrics", Duration::from_secs(30), |_, body| {
        body.lines()
            .filter_map(|l| l.strip_prefix("rmq_wasm_instances_active "))
            .any(|n| n.parse::<f64>().is_ok_and(|n| n >= 1.0))
    })
    .await;

    host.terminate();
    let signalled = Instant::now();
    let (code, body) = loop {
        let (code, body) = get(&addr, "/readyz", TIMEOUT).await.unwrap_or_else(|e| {
            panic!("the endpoint stopped answering before /readyz said 503: {e}")
        });
        if code.as_u16() == 503 {
            break (code, body);
        }
        assert!(signalled.elapsed() < Duration::from_secs(2), "/readyz still {code} after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("/readyz {code} {:?} after SIGTERM: {body}", signalled.elapsed());
    assert!(body.contains("ops-drain"), "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = host.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM:\n{}", host.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}:\n{}", host.log_text());
}
