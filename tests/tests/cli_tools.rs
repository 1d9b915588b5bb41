//! The `rmq-wasm` binary's everyday verbs against a real cluster, as a new user runs them:
//! `produce` with their own bodies, keys, tag and properties (flags and stdin), `create-topic`
//! finding the cluster by itself or naming the ones it knows, and `run`'s start-up: listeners
//! compiled before `--duration` starts, and a new group told what it skipped.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rmq_wasm_tests::cluster::Cluster;
use rmq_wasm_tests::support::{Clients, cli_command, output_text as text, unique};
use rmq_wasm_tests::wasm::{plugin, read_keys};

/// `rmq-wasm` (the test package's copy of the binary) with `args`, INFO and up logged.
fn rmq_wasm(args: &[&str]) -> Command {
    cli_command(env!("CARGO_BIN_EXE_rmq-wasm-proc"), "info", args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_sends_bodies_keys_tags_and_properties_from_flags_and_stdin() {
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("cli_produce");
    c.create_topic(cluster, &topic, 2).await.unwrap();
    let ns = cluster.namesrv_addr.as_str();

    let flags = rmq_wasm(&[
        "produce",
        &topic,
        "--namesrv",
        ns,
        "--body",
        "hello world",
        "--key",
        "k-flag",
        "--tag",
        "later",
        "--property",
        "a=1",
        "--property",
        "b=x=y",
    ])
    .output()
    .unwrap();
    assert!(flags.status.success(), "{}", text(&flags));

    let mut child = rmq_wasm(&[
        "produce",
        "--topic",
        &topic,
        "--namesrv",
        ns,
        "--body",
        "-",
        "--key",
        "k-stdin",
        "--property",
        "src=stdin",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    child.stdin.take().unwrap().write_all(b"line one\n\nline two\r\n").unwrap();
    let lines = child.wait_with_output().unwrap();
    assert!(lines.status.success(), "{}", text(&lines));
    assert!(String::from_utf8_lossy(&lines.stdout).contains("sent 2 messages"), "{}", text(&lines));

    let got = read_keys(&c, cluster, &topic, &["k-flag", "k-stdin"], Duration::from_secs(30)).await;
    let mut bodies: Vec<&[u8]> = got.iter().map(|m| m.body.as_ref()).collect();
    bodies.sort_unstable();
    assert_eq!(bodies, [&b"hello world"[..], b"line one", b"line two"]);
    for m in &got {
        if m.body.as_ref() == b"hello world" {
            assert_eq!(m.tags(), Some("later"));
            assert_eq!((m.property("a"), m.property("b")), (Some("1"), Some("x=y")));
            assert_eq!(m.keys().collect::<Vec<_>>(), ["k-flag"]);
        } else {
            assert_eq!((m.tags(), m.property("src")), (None, Some("stdin")), "{m:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topic_finds_the_only_cluster_and_names_the_known_ones_otherwise() {
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let ns = cluster.namesrv_addr.as_str();
    let name = cluster.cluster_name.as_str();

    // No --cluster, no CLUSTER_NAME: the only cluster the name server knows.
    let topic = unique("cli_topic");
    let found =
        rmq_wasm(&["create-topic", &topic, "--namesrv", ns, "--queues", "2"]).output().unwrap();
    assert!(found.status.success(), "{}", text(&found));
    assert!(String::from_utf8_lossy(&found.stdout).contains(&format!("in cluster {name}")));
    assert!(c.namesrv.route(&topic).await.unwrap().is_some());

    // CLUSTER_NAME is honoured like NAMESRV_ADDR.
    let topic = unique("cli_topic_env");
    let env = rmq_wasm(&["create-topic", "--topic", &topic])
        .env("NAMESRV_ADDR", ns)
        .env("CLUSTER_NAME", name)
        .output()
        .unwrap();
    assert!(env.status.success(), "{}", text(&env));

    // An unknown name: what is wrong, what the name server knows, what to pass.
    let wrong = rmq_wasm(&["create-topic", &unique("cli_never"), "--namesrv", ns])
        .env("CLUSTER_NAME", "DefaultCluster")
        .output()
        .unwrap();
    assert!(!wrong.status.success(), "{}", text(&wrong));
    let expected = format!(
        "cluster DefaultCluster is unknown to the name server at {ns}; it knows: {name}; pass \
         --cluster {name}"
    );
    assert!(String::from_utf8_lossy(&wrong.stderr).contains(&expected), "{}", text(&wrong));
}

/// Two listeners: both components are compiled (no cache) before "all 2 listener(s) running",
/// `--duration` is counted from that line, and the listener of a new group that starts at the
/// last offset of a topic holding messages says, once, how many it skipped and how to read them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_compiles_first_counts_duration_from_running_and_reports_skipped_messages() {
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("cli_run");
    c.create_topic(cluster, &topic, 2).await.unwrap();
    c.produce_numbered(&topic, 0, 5).await;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("listeners.toml");
    std::fs::write(
        &config,
        format!(
            r#"
namesrv = "{ns}"
[engine]
no_cache = true

[[listener]]
name = "skips"
group = "{g1}"
topic = "{topic}"
wasm = "{filter}"
hot_reload = false

[[listener]]
name = "reads"
group = "{g2}"
topic = "{topic}"
consume_from = "first"
wasm = "{config_echo}"
hot_reload = false
"#,
            ns = cluster.namesrv_addr,
            g1 = unique("cli_run_g1"),
            g2 = unique("cli_run_g2"),
            filter = plugin("filter").display(),
            config_echo = plugin("config-echo").display(),
        ),
    )
    .unwrap();
    let duration = Duration::from_secs(2);
    let mut child = rmq_wasm(&["run", "--config", config.to_str().unwrap(), "--duration", "2s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Each line with the instant it was read (logs are line-buffered).
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .map(|line| (Instant::now(), line))
            .collect::<Vec<_>>()
    });
    // The run ends by itself after `duration`; bound the wait anyway.
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("rmq-wasm run did not stop after --duration");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = reader.join().unwrap();
    let all = lines.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n");
    let at = |needle: &str| {
        lines.iter().position(|(_, l)| l.contains(needle)).unwrap_or_else(|| {
            panic!("no line with {needle:?}:\n{all}");
        })
    };
    let running = at("all 2 listener(s) running");
    for plugin in ["filter.wasm", "config-echo.wasm"] {
        assert!(at(&format!("compiling {plugin} (")) < at(&format!("compiled {plugin} in")));
        assert!(at(&format!("compiled {plugin} in")) < running, "{all}");
    }
    let stopping = at("shutting down");
    let ran = lines[stopping].0 - lines[running].0;
    // A lower bound only (what --duration promises), less the pipe's jitter.
    assert!(ran + Duration::from_millis(200) >= duration, "ran {ran:?}:\n{all}");

    let notices: Vec<&str> =
        lines.iter().map(|(_, l)| l.as_str()).filter(|l| l.contains("skipped")).collect();
    assert_eq!(notices.len(), 1, "one notice, from the new group at the last offset:\n{all}");
    assert!(notices[0].contains("skipped 5 message(s) already in"), "{}", notices[0]);
    assert!(notices[0].contains("consume_from = \"first\""), "{}", notices[0]);
}
