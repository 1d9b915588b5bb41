//! The plugin author's verbs as a user runs them: `plugin check` on real plugins and on
//! components of the wrong world (built here with wasm-encoder), `plugin test` replaying
//! hand-written fixtures with passing and failing expectations, recorded sends and aborts (no
//! cluster), and `capture` from the real cluster feeding `plugin test`.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use rmq_wasm_tests::cluster::Cluster;
use rmq_wasm_tests::support::{Clients, cli_command, output_text as text, unique};
use rmq_wasm_tests::wasm::plugin;
use serde_json::Value;
use wasm_encoder::{
    Component, ComponentExportKind, ComponentExportSection, ComponentImportSection,
    ComponentInstanceSection, ComponentTypeRef, ComponentTypeSection, InstanceType,
};

/// `rmq-wasm` with `args`, WARN and up logged.
fn rmq_wasm(args: &[&str]) -> Command {
    cli_command(env!("CARGO_BIN_EXE_rmq-wasm-proc"), "warn", args)
}

fn run(args: &[&str]) -> Output {
    rmq_wasm(args).stdin(Stdio::null()).output().unwrap()
}

/// `plugin test WASM --messages FIXTURE` and `extra`.
fn replay(wasm: &Path, fixture: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["plugin", "test", path(wasm), "--messages", path(fixture)];
    args.extend_from_slice(extra);
    run(&args)
}

/// Asserts that `out` succeeded and that its stderr says `needle`.
fn assert_ok_saying(out: &Output, needle: &str) {
    assert!(out.status.success(), "{}", text(out));
    assert!(String::from_utf8_lossy(&out.stderr).contains(needle), "{needle}: {}", text(out));
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A component that exports `rmq:listener/handler@0.2.0` as an instance with no functions.
fn handler_without_consume() -> Vec<u8> {
    let mut c = Component::new();
    let mut instances = ComponentInstanceSection::new();
    instances.export_items(Vec::<(&str, ComponentExportKind, u32)>::new());
    c.section(&instances);
    let mut exports = ComponentExportSection::new();
    exports.export("rmq:listener/handler@0.2.0", ComponentExportKind::Instance, 0, None);
    c.section(&exports);
    c.finish()
}

/// A component that imports an HTTP interface the host does not have and exports nothing.
fn http_importer() -> Vec<u8> {
    let mut c = Component::new();
    let mut types = ComponentTypeSection::new();
    types.instance(&InstanceType::new());
    c.section(&types);
    let mut imports = ComponentImportSection::new();
    imports.import("wasi:http/outgoing-handler@0.2.0", ComponentTypeRef::Instance(0));
    c.section(&imports);
    c.finish()
}

#[test]
fn check_accepts_the_plugins_and_names_the_grants_they_need() {
    let filter = plugin("filter");
    let out = run(&["plugin", "check", path(&filter)]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for part in [
        "implements rmq:listener@0.2.0",
        "rmq:listener/handler@0.2.0#consume",
        "rmq:listener/config@0.2.0",
        "[listener.config]",
    ] {
        assert!(stdout.contains(part), "{part}: {}", text(&out));
    }

    let router = plugin("router");
    let out = run(&["plugin", "check", "--json", path(&router)]);
    assert!(out.status.success(), "{}", text(&out));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["fits"], true);
    assert_eq!(j["grants"], serde_json::json!(["config", "produce_topics"]));
    assert!(
        j["imports"].as_array().unwrap().iter().any(|i| i["name"]
            .as_str()
            .unwrap()
            .starts_with("rmq:listener/producer@0.2")
            && i["provision"] == "produce")
    );

    // Every built Rust plugin fits (fs-escape imports all of WASI): the host's table of what it
    // provides agrees with its linker. (The interpreters' components import no WASI, and take
    // seconds each to compile: one of them is checked below.)
    for entry in std::fs::read_dir(filter.parent().unwrap()).unwrap() {
        let file = entry.unwrap().path();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".wasm") && !name.starts_with("py-") && !name.starts_with("js-") {
            let out = run(&["plugin", "check", path(&file)]);
            assert!(out.status.success(), "{}", text(&out));
        }
    }

    // The Python plugin imports no WASI at all; the Rust filter imports wasi:cli.
    let py = plugin("py-json-router");
    let out = run(&["plugin", "check", "--wasi", "none", path(&py)]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&["plugin", "check", "--wasi", "wasi:io/", path(&filter)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("which --wasi does not allow"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("`wasi:cli/"), "{}", text(&out));
}

#[test]
fn check_refuses_components_of_another_world_naming_the_item() {
    let dir = tempfile::tempdir().unwrap();
    let table: [(&str, Vec<u8>, &[&str]); 2] = [
        (
            "no-consume.wasm",
            handler_without_consume(),
            &["export `rmq:listener/handler@0.2.0#consume` is missing"],
        ),
        (
            "http.wasm",
            http_importer(),
            &[
                "export `rmq:listener/handler@0.2.0` is missing",
                "imports `wasi:http/outgoing-handler@0.2.0`, which the host never provides",
            ],
        ),
    ];
    for (name, bytes, problems) in table {
        let file = dir.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        let out = run(&["plugin", "check", path(&file)]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("does NOT implement rmq:listener@0.2.0"), "{}", text(&out));
        for p in problems {
            assert!(stdout.contains(p), "{name}: {p}: {}", text(&out));
        }
    }

    // A core module is not a component at all; a missing file is named.
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let out = run(&["plugin", "check", path(&core)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("core.wasm"), "{}", text(&out));
    let out = run(&["plugin", "check", "/nonexistent/x.wasm"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.wasm"), "{}", text(&out));
}

/// Three hand-written messages: one tagged `urgent`, one whose body says boom after 3
/// redeliveries, one plain.
const FIXTURE: &str = r#"{"topic":"orders","body":"{\"id\":1}","tags":"urgent","keys":["o1"]}
{"topic":"orders","body":"boom","reconsume_times":3}
{"topic":"orders","body":"{\"id\":3}","msg_id":"MSG-3"}
"#;

#[test]
fn plugin_test_replays_a_fixture_and_checks_expectations() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("f.jsonl");
    std::fs::write(&fixture, FIXTURE).unwrap();
    let expect = |name: &str, lines: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, lines).unwrap();
        file
    };
    let good = expect(
        "good.jsonl",
        r#"{"index":0,"outcome":"retry","delay_level":3}
{"index":1,"outcome":"dead-letter","reason":"redeliveries"}
{"msg_id":"MSG-3","outcome":"success"}
"#,
    );
    let bad = expect(
        "bad.jsonl",
        "{\"index\":0,\"outcome\":\"retry\"}\n{\"msg_id\":\"MSG-3\",\"outcome\":\"retry\"}\n",
    );
    let filter = plugin("filter");
    let args = |expectations: &Path| {
        replay(
            &filter,
            &fixture,
            &[
                "--config",
                "tag=urgent",
                "--config",
                "body-contains=boom",
                "--config",
                "delay-level=10s",
                "--config",
                "dead-letter-after=2",
                "--expect",
                path(expectations),
            ],
        )
    };
    let out = args(&good);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for part in [
        "retry (delay level 3)",
        "dead-letter (filter: still matching after 3",
        "MSG-3  success",
        "fuel ",
    ] {
        assert!(stdout.contains(part), "{part}: {}", text(&out));
    }
    assert_ok_saying(&out, "expectations: 3 met, 0 failed");

    let out = args(&bad);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "FAILED expectation line 2: message #2: MSG-3 (success): expected retry, got success"
        ),
        "{}",
        text(&out)
    );
    assert!(!stderr.contains("line 1:"), "the first expectation holds: {}", text(&out));

    // --json: one object per message.
    let out = replay(&filter, &fixture, &["--config", "tag=urgent", "--batch", "3", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let outcomes: Vec<&str> = lines.iter().map(|l| l["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["retry", "success", "success"]);
    assert!(
        lines.iter().all(|l| l["call"]["len"] == 3 && l["call"]["fuel_used"].as_u64() > Some(0))
    );
}

#[test]
fn plugin_test_records_sends_and_fails_on_an_unexpected_abort() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("f.jsonl");
    std::fs::write(&fixture, FIXTURE).unwrap();

    let router = plugin("router");
    let out = replay(
        &router,
        &fixture,
        &["--config", "target-topic=audit", "--produce-topics", "audit", "--log-level", "debug"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("send (recorded, not sent) → audit").count(), 3, "{}", text(&out));
    assert!(stdout.contains("log DEBUG routed"), "the plugin's own lines: {}", text(&out));

    // Without the grant the host denies the sends, as in production: the router fails its batch.
    let out = replay(&router, &fixture, &["--config", "target-topic=audit"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("recorded"), "{}", text(&out));

    let looping = plugin("infinite-loop");
    let out = replay(&looping, &fixture, &["--fuel", "2000000"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ABORTED message #0"), "{}", text(&out));
    let expect = dir.path().join("e.jsonl");
    let lines: String = (0..3)
        .map(|i| format!("{{\"index\":{i},\"outcome\":\"dead-letter\",\"abort\":\"fuel\"}}\n"))
        .collect();
    std::fs::write(&expect, lines).unwrap();
    let out = replay(&looping, &fixture, &["--fuel", "2000000", "--expect", path(&expect)]);
    assert!(out.status.success(), "expected aborts pass: {}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_from_the_cluster_feeds_plugin_test() {
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("plugin_capture");
    c.create_topic(cluster, &topic, 2).await.unwrap();
    let ns = cluster.namesrv_addr.as_str();

    let sent = run(&[
        "produce",
        &topic,
        "--namesrv",
        ns,
        "--body",
        "{\"id\":1}",
        "--key",
        "k-urgent",
        "--tag",
        "urgent",
        "--property",
        "region=eu",
    ]);
    assert!(sent.status.success(), "{}", text(&sent));
    let mut child =
        rmq_wasm(&["produce", &topic, "--namesrv", ns, "--body", "-", "--tag", "plain"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"two\nthree\n").unwrap();
    let sent = child.wait_with_output().unwrap();
    assert!(sent.status.success(), "{}", text(&sent));

    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("captured.jsonl");
    let out = run(&[
        "capture",
        "--namesrv",
        ns,
        "--topic",
        &topic,
        "--count",
        "10",
        "--out",
        path(&fixture),
    ]);
    assert_ok_saying(&out, "captured 3 message(s)");
    let lines: Vec<Value> = std::fs::read_to_string(&fixture)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let urgent = lines.iter().find(|l| l["tags"] == "urgent").expect("the tagged message");
    assert_eq!(urgent["keys"], serde_json::json!(["k-urgent"]));
    assert_eq!(urgent["properties"]["region"], "eu");
    assert_eq!(urgent["body_base64"], "eyJpZCI6MX0=");
    assert_eq!(urgent["topic"], topic.as_str());
    for l in &lines {
        assert!(
            l["store_timestamp"].as_i64() > Some(0) && l["born_timestamp"].as_i64() > Some(0),
            "{l}"
        );
        assert!(l["msg_id"].as_str().is_some_and(|id| id.len() == 32), "{l}");
        assert!(l["store_host"].as_str().is_some_and(|h| h.contains(':')), "{l}");
        assert!(l["queue_offset"].is_i64() && l["offset_msg_id"].is_string(), "{l}");
    }

    // Only what was stored after a point: nothing from an hour ahead, all from an hour ago.
    let later = dir.path().join("none.jsonl");
    let out = run(&[
        "capture",
        "--namesrv",
        ns,
        "--topic",
        &topic,
        "--since",
        "2999-01-01T00:00:00Z",
        "--count",
        "10",
        "--out",
        path(&later),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&later).unwrap(), "");
    let out = run(&[
        "capture",
        "--namesrv",
        ns,
        "--topic",
        &topic,
        "--since",
        "1h ago",
        "--count",
        "2",
        "--out",
        path(&later),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&later).unwrap().lines().count(), 2);

    // The captured messages through the filter (retry the urgent one) and the router.
    let id = urgent["msg_id"].as_str().unwrap();
    let expect = dir.path().join("e.jsonl");
    let others: String = lines
        .iter()
        .filter(|l| l["msg_id"] != id)
        .map(|l| format!("{{\"msg_id\":{},\"outcome\":\"success\"}}\n", l["msg_id"]))
        .collect();
    std::fs::write(
        &expect,
        format!("{{\"msg_id\":\"{id}\",\"outcome\":\"retry\",\"delay_level\":2}}\n{others}"),
    )
    .unwrap();
    let filter = plugin("filter");
    let out = replay(
        &filter,
        &fixture,
        &[
            "--config",
            "tag=urgent",
            "--config",
            "delay-level=5s",
            "--batch",
            "8",
            "--expect",
            path(&expect),
        ],
    );
    assert_ok_saying(&out, "expectations: 3 met, 0 failed");

    let router = plugin("router");
    let out = replay(
        &router,
        &fixture,
        &["--config", "target-topic=routed", "--produce-topics", "routed", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let sends: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .flat_map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["call"]["sends"].as_array().unwrap().clone()
        })
        .collect();
    assert_eq!(sends.len(), 3, "{}", text(&out));
    assert!(sends.iter().any(|s| s["body_base64"] == "eyJpZCI6MX0=" && s["tags"] == "urgent"));
    // Nothing was sent: the topic the router would write to does not exist.
    assert!(c.namesrv.route("routed").await.map(|r| r.is_none()).unwrap_or(true));
}
