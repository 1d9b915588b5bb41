//! `rmq-wasm plugin new` and `plugin build` as a plugin author uses them: for each language a
//! project is created in a temporary directory outside the repository, built there with only the
//! CLI and the language's toolchain (the WIT and the SDK come with the template), checked against
//! the world, and the component then consumes real messages through the push consumer on the
//! cluster with its per-message outcomes honoured: the template's listener accepts a message,
//! retries one tagged `later` (until the reconsume limit sends it to the DLQ) and dead-letters
//! one whose body contains the configured word, with its reason.
//!
//! One test drives the five languages concurrently. The componentize tools are installed on the
//! first run into `target/plugin-new-cache/` (the CLI's `XDG_CACHE_HOME` here), where the CLI
//! also caches the compiled artifact that the test's engine then loads; Rust builds share
//! `target/plugin-new-build/`. This replaces the README-example test (readme_plugins.rs): the
//! README's "Writing a listener" starts from these templates.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rmq_wasm::consumer::PushConsumer;
use rmq_wasm::consumer::config::{ConsumerConfig, Subscription};
use rmq_wasm::consumer::listener::DLQ_REASON;
use rmq_wasm::protocol::body::ConsumeFromWhere;
use rmq_wasm::protocol::message::Message;
use rmq_wasm::wasm::{EngineConfig, PluginSpec, SandboxEngine, WasmListener};
use rmq_wasm_tests::cluster::Cluster;
use rmq_wasm_tests::support::{Clients, init_tracing, unique};
use rmq_wasm_tests::wasm::{read_keys, workspace_root};

/// The CLI's cache home: toolchains under `rmq-wasm/toolchains/`, artifacts in `rmq-wasm/`.
fn cache_home() -> PathBuf {
    workspace_root().join("target/plugin-new-cache")
}

/// An engine on the CLI's artifact cache, so the compile `plugin build` did is not repeated.
fn engine() -> &'static SandboxEngine {
    static ENGINE: OnceLock<SandboxEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let cache_dir = Some(cache_home().join("rmq-wasm"));
        SandboxEngine::new(EngineConfig { cache_dir, ..EngineConfig::default() }).expect("engine")
    })
}

/// Runs the CLI with `args` from `/tmp`; panics with its output unless it succeeds.
fn cli(args: &[&str]) -> String {
    let (ok, text) = try_cli(args);
    assert!(ok, "rmq-wasm {args:?} failed:\n{text}");
    text
}

/// Runs the CLI with `args` from `/tmp`: whether it succeeded, and its output.
fn try_cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rmq-wasm-proc"))
        .args(args)
        .env("XDG_CACHE_HOME", cache_home())
        .env("CARGO_TARGET_DIR", workspace_root().join("target/plugin-new-build"))
        .current_dir(std::env::temp_dir())
        .output()
        .expect("running rmq-wasm");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// `plugin new` + `plugin build` in a fresh directory under /tmp: the built `.wasm`.
async fn new_and_build(lang: &str, dir: &Path) -> PathBuf {
    let name = format!("my-{lang}-listener");
    let dir_arg = dir.to_str().unwrap().to_owned();
    let started = Instant::now();
    let project = dir.join(&name);
    let built = tokio::task::spawn_blocking({
        let (lang, name, project) = (lang.to_owned(), name.clone(), project.clone());
        move || {
            cli(&["plugin", "new", "--lang", &lang, "--dir", &dir_arg, &name]);
            cli(&["plugin", "build", project.to_str().unwrap()])
        }
    })
    .await
    .unwrap();
    assert!(built.contains("implements rmq:listener@0.2"), "{lang}: {built}");
    let wasm = project.join(format!("{name}.wasm"));
    let size = std::fs::metadata(&wasm).unwrap().len();
    eprintln!(
        "{lang}: new + build + check in {:.1} s, {name}.wasm {:.1} MiB",
        started.elapsed().as_secs_f64(),
        size as f64 / f64::from(1 << 20)
    );
    wasm
}

async fn new_build_and_consume(lang: &str) {
    init_tracing();
    let dir = tempfile::Builder::new().prefix("rmq-wasm-plugin-new-").tempdir_in("/tmp").unwrap();
    assert!(!dir.path().starts_with(workspace_root()));
    let wasm = new_and_build(lang, dir.path()).await;

    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("plugin_new");
    c.create_topic(cluster, &topic, 2).await.unwrap();
    let group = unique("plugin_new_g");
    let mut spec = PluginSpec::new(lang, &group);
    spec.config = [("word".to_owned(), "poison".to_owned())].into();
    spec.limits.timeout = Duration::from_secs(20);
    let listener = Arc::new(WasmListener::load(engine(), &wasm, spec).await.unwrap());
    let mut config = ConsumerConfig::new(&group).subscribe(Subscription::all(&topic));
    config.consume_from_where = ConsumeFromWhere::FirstOffset;
    config.max_reconsume_times = Some(1);
    config.rebalance_interval = Duration::from_secs(2);
    let consumer =
        PushConsumer::start(config, vec![cluster.namesrv_addr.clone()], Arc::clone(&listener) as _)
            .await
            .unwrap();
    let mut ids = Vec::new();
    for (key, tag, body) in [
        ("ok", None, "a fine order"),
        ("poison", None, "a poison order"),
        ("later", Some("later"), "not yet"),
    ] {
        let mut m = Message::new(&topic, Bytes::from_static(body.as_bytes())).with_keys([key]);
        if let Some(t) = tag {
            m = m.with_tags(t);
        }
        ids.push(c.producer.send(m).await.unwrap().msg_id);
    }

    // The poison message straight to the DLQ with the listener's reason; the `later` one after
    // its one redelivery (so it was retried, not dead-lettered by the listener).
    let dlq = format!("%DLQ%{group}");
    let dead = read_keys(&c, cluster, &dlq, &["poison", "later"], Duration::from_secs(120)).await;
    let by_key = |k: &str| dead.iter().find(|m| m.keys().any(|x| x == k)).unwrap();
    let reason = by_key("poison").property(DLQ_REASON).unwrap_or_default().to_owned();
    assert!(reason.contains("body contains 'poison'"), "{lang}: {:?}", by_key("poison"));
    let later = by_key("later");
    assert!(later.reconsume_times >= 1, "{lang}: not retried before the DLQ: {later:?}");
    assert!(!later.property(DLQ_REASON).is_some_and(|r| r.contains("body contains")), "{lang}");
    // The accepted one is not in the DLQ, and every delivery got an answer from the plugin.
    let again = read_keys(&c, cluster, &dlq, &["poison", "later"], Duration::from_secs(5)).await;
    assert!(
        again.iter().all(|m| !m.keys().any(|k| k == "ok")),
        "{lang}: the accepted message was dead-lettered"
    );
    let stats = listener.stats().counters;
    assert!(stats.answered >= 4 && stats.aborts.iter().all(|(_, n)| *n == 0), "{lang}: {stats:?}");
    consumer.shutdown().await;
    the_same_messages_captured_replay_with_the_same_outcomes(
        &wasm,
        &topic,
        &cluster.namesrv_addr,
        &ids,
    )
    .await;

    if lang == "python" {
        a_broken_source_fails_the_build_verbatim_and_keeps_the_old_wasm(&wasm).await;
    }
}

/// `capture` reads the topic's three messages into a fixture (no group's offsets move), and
/// `plugin test` replays it with no cluster involved: the same outcomes as on the cluster.
async fn the_same_messages_captured_replay_with_the_same_outcomes(
    wasm: &Path,
    topic: &str,
    namesrv: &str,
    ids: &[String],
) {
    let dir = wasm.parent().unwrap();
    let (fixture, expect) = (dir.join("captured.jsonl"), dir.join("expect.jsonl"));
    let outcomes = ["success", "dead-letter", "retry"];
    let lines: String = ids
        .iter()
        .zip(outcomes)
        .map(|(id, outcome)| format!("{{\"msg_id\":\"{id}\",\"outcome\":\"{outcome}\"}}\n"))
        .collect();
    std::fs::write(&expect, lines).unwrap();
    let (topic, namesrv, wasm) = (topic.to_owned(), namesrv.to_owned(), wasm.to_owned());
    tokio::task::spawn_blocking(move || {
        let fixture_arg = fixture.to_str().unwrap();
        cli(&[
            "capture",
            "--topic",
            &topic,
            "--namesrv",
            &namesrv,
            "--count",
            "3",
            "--out",
            fixture_arg,
        ]);
        let wasm_arg = wasm.to_str().unwrap();
        let expect_arg = expect.to_str().unwrap();
        cli(&[
            "plugin",
            "test",
            wasm_arg,
            "--messages",
            fixture_arg,
            "--config",
            "word=poison",
            "--timeout",
            "20s",
            "--expect",
            expect_arg,
        ]);
    })
    .await
    .unwrap();
}

/// A syntax error: the tool's own message, a non-zero exit, and the previous `.wasm` untouched
/// (what a running listener keeps serving).
async fn a_broken_source_fails_the_build_verbatim_and_keeps_the_old_wasm(wasm: &Path) {
    let project = wasm.parent().unwrap().to_owned();
    let before = std::fs::read(wasm).unwrap();
    std::fs::write(project.join("app.py"), "def consume(ctx, msgs:\n").unwrap();
    let (ok, text) = tokio::task::spawn_blocking(move || {
        try_cli(&["plugin", "build", project.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert!(!ok, "a broken app.py built: {text}");
    assert!(text.contains("SyntaxError") && text.contains("componentize-py failed"), "{text}");
    assert_eq!(std::fs::read(wasm).unwrap(), before, "the old .wasm was replaced");
}

/// The five languages at once: their builds share the two cores either way, and their waits
/// for the retried message overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_from_plugin_new_build_outside_the_repo_and_consume_real_messages() {
    let started = Instant::now();
    tokio::join!(
        new_build_and_consume("rust"),
        new_build_and_consume("python"),
        new_build_and_consume("js"),
        new_build_and_consume("go"),
        new_build_and_consume("c"),
    );
    eprintln!("all five in {:.1} s", started.elapsed().as_secs_f64());
}
