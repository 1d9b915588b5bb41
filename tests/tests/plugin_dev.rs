//! `rmq-wasm dev`: the edit → serve loop of a plugin author, on the real cluster. A Go project
//! from `plugin new` (Go builds in about a second once its cache is warm) is served by `dev`,
//! which builds it first; an edit of its source is rebuilt and hot-reloaded into the running
//! listener (a message sent afterwards meets the new logic); a broken edit fails the build with
//! Go's own message and the previous version keeps serving.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rmq_wasm::consumer::listener::DLQ_REASON;
use rmq_wasm::protocol::message::Message;
use rmq_wasm_tests::cluster::Cluster;
use rmq_wasm_tests::host_procs::HostProc;
use rmq_wasm_tests::support::{Clients, init_tracing, unique};
use rmq_wasm_tests::wasm::read_keys;

const BIN: &str = env!("CARGO_BIN_EXE_rmq-wasm-proc");

/// Waits (bounded) until the host's log has `needle` `count` times.
async fn wait_log(host: &HostProc, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while host.log_text().matches(needle).count() < count {
        assert!(Instant::now() < deadline, "no {needle:?} ×{count} in the log:\n{}", host.tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The dead letter of `key` in `%DLQ%<group>` and its reason.
async fn dead_letter_reason(c: &Clients, cluster: &Cluster, group: &str, key: &str) -> String {
    let dlq = format!("%DLQ%{group}");
    let found = read_keys(c, cluster, &dlq, &[key], Duration::from_secs(60)).await;
    found[0].property(DLQ_REASON).unwrap_or_default().to_owned()
}

fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", file.display());
    std::fs::write(file, text.replace(from, to)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_rebuilds_and_reloads_on_edit_and_keeps_serving_through_a_broken_build() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("dev_orders");
    c.create_topic(cluster, &topic, 1).await.unwrap();
    let group = unique("dev_g");
    let dir = tempfile::tempdir().unwrap();
    let made = Command::new(BIN)
        .args(["plugin", "new", "--lang", "go", "--dir"])
        .arg(dir.path())
        .arg("orders")
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let config = format!(
        "namesrv = \"{}\"\n[[listener]]\ngroup = \"{group}\"\ntopic = \"{topic}\"\n\
         wasm = \"orders/orders.wasm\"\nconsume_from = \"first\"\n",
        cluster.namesrv_addr
    );
    let mut host = HostProc::start_verb(BIN, "dev", dir.path(), "dev", &config);
    host.wait_running().await;
    let send = |key: &'static str, body: &'static str| {
        c.producer.send(Message::new(&topic, Bytes::from_static(body.as_bytes())).with_keys([key]))
    };

    // The template's logic: a body with "poison" is dead-lettered.
    send("first", "a poison apple").await.unwrap();
    let reason = dead_letter_reason(&c, cluster, &group, "first").await;
    assert!(reason.contains("body contains 'poison'"), "{reason}");

    // An edit: rebuilt, reloaded, and the next message meets the new word.
    let source = dir.path().join("orders/main.go");
    edit(&source, "\"poison\")", "\"apple\")");
    wait_log(&host, "plugin reloaded", 1).await;
    send("second", "an apple").await.unwrap();
    let reason = dead_letter_reason(&c, cluster, &group, "second").await;
    assert!(reason.contains("body contains 'apple'"), "{reason}");

    // A broken edit: Go's message, no reload, and the edited version still serves.
    edit(&source, "func consume(", "func consume(((");
    wait_log(&host, "build failed", 1).await;
    let log = host.log_text();
    assert!(log.contains("main.go"), "Go's error is not shown:\n{}", host.tail());
    send("third", "apple pie").await.unwrap();
    let reason = dead_letter_reason(&c, cluster, &group, "third").await;
    assert!(reason.contains("body contains 'apple'"), "{reason}");
    assert_eq!(host.log_text().matches("plugin reloaded").count(), 1, "{}", host.tail());
    assert!(host.terminate().await.success(), "{}", host.tail());
}
