//! `rmq-wasm run` as a service (issue #13 §5), as a separate process against a real cluster:
//! SIGHUP re-reads the config file and starts an added listener while the running one carries
//! on untouched; SIGTERM still drains and exits.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use rmq_wasm::protocol::message::Message;
use rmq_wasm_tests::cluster::Cluster;
use rmq_wasm_tests::support::{Clients, init_tracing, unique, wait_for};
use rmq_wasm_tests::wasm::{cache_dir, plugin, read_keys};

/// The host process; killed on drop so a failing assertion leaves nothing behind.
struct Host(Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status();
    assert!(ok.is_ok_and(|s| s.success()), "kill -{name}");
}

fn listener(group: &str, topic: &str, out: &str, tag: &str) -> String {
    format!(
        "[[listener]]\ngroup = \"{group}\"\ntopic = \"{topic}\"\nconsume_from = \"first\"\n\
         wasm = \"{wasm}\"\nhot_reload = false\nproduce_topics = [\"{out}\"]\nslots = 2\n\
         [listener.config]\ntarget-topic = \"{out}\"\ntags = \"{tag}\"\n",
        wasm = plugin("router").display(),
    )
}

/// Lines of the log holding every one of `needles`.
fn count(log: &Path, needles: &[&str]) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().filter(|l| needles.iter().all(|n| l.contains(n))).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_a_listener_without_disturbing_the_running_one() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let (in_a, in_b, out) = (unique("svc_a"), unique("svc_b"), unique("svc_out"));
    for t in [&in_a, &in_b, &out] {
        c.create_topic(cluster, t, 1).await.unwrap();
    }
    let (group_a, group_b) = (unique("svc_ga"), unique("svc_gb"));
    let head = format!(
        "namesrv = \"${{SVC_NAMESRV}}\"\n[engine]\ncache_dir = \"{}\"\nmax_instances = 8\n",
        cache_dir().display()
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("listeners.toml");
    let log = dir.path().join("host.log");
    std::fs::write(&config, format!("{head}{}", listener(&group_a, &in_a, &out, "A"))).unwrap();
    let out_file = std::fs::File::create(&log).unwrap();
    let mut host = Host(
        Command::new(env!("CARGO_BIN_EXE_rmq-wasm-proc"))
            .args(["run", "--config"])
            .arg(&config)
            .args(["--duration", "180s"])
            .env("SVC_NAMESRV", &cluster.namesrv_addr)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out_file.try_clone().unwrap())
            .stderr(out_file)
            .spawn()
            .unwrap(),
    );
    let send = |topic: &str, key: &str| {
        Message::new(topic, Bytes::from_static(b"{}")).with_keys([key.to_owned()])
    };
    c.producer.send(send(&in_a, "a-0")).await.unwrap();
    read_keys(&c, cluster, &out, &["a-0"], Duration::from_secs(90)).await;

    // Add listener B and hang up.
    std::fs::write(
        &config,
        format!(
            "{head}{}{}",
            listener(&group_a, &in_a, &out, "A"),
            listener(&group_b, &in_b, &out, "B")
        ),
    )
    .unwrap();
    signal(&host.0, "HUP");
    wait_for("the reload to finish", Duration::from_secs(90), || {
        (count(&log, &["reload done"]) == 1).then_some(())
    })
    .await;
    c.producer.send(send(&in_b, "b-0")).await.unwrap();
    c.producer.send(send(&in_a, "a-1")).await.unwrap();
    let routed =
        read_keys(&c, cluster, &out, &["a-0", "a-1", "b-0"], Duration::from_secs(90)).await;
    for m in &routed {
        let want = if m.keys().any(|k| k.starts_with("b-")) { "B" } else { "A" };
        assert_eq!(m.tags(), Some(want), "{:?}", m.keys().collect::<Vec<_>>());
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        count(&log, &["listener running", &format!("group={group_a}")]),
        1,
        "A started once, never restarted:\n{text}"
    );
    assert_eq!(
        count(&log, &["listener running", &format!("group={group_b}")]),
        1,
        "B started by the reload:\n{text}"
    );
    assert!(text.contains("stopped=0 started=1 kept=1"), "{text}");

    // A broken file changes nothing.
    std::fs::write(&config, format!("{head}[[listener]]\ngroup = 7\n")).unwrap();
    signal(&host.0, "HUP");
    wait_for("the refused reload", Duration::from_secs(30), || {
        (count(&log, &["reload refused"]) == 1).then_some(())
    })
    .await;
    c.producer.send(send(&in_b, "b-1")).await.unwrap();
    read_keys(&c, cluster, &out, &["b-1"], Duration::from_secs(60)).await;

    signal(&host.0, "TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = host.0.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}: {}", std::fs::read_to_string(&log).unwrap());
}

/// `rmq-wasm config check` through the binary: every problem, each as `file:line: key:
/// message`, exit status 1; a good file passes with 0.
#[test]
fn config_check_names_file_line_and_key_of_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "namesrv = \"127.0.0.1:9876\"\n[[listener]]\ngroup = \"g\"\ntopic = \"t\"\n\
         wasm = \"a.wasm\"\nfuel = \"lots\"\nslot = 4\nnamesrv_port = \"${RMQ_WASM_TEST_UNSET_PORT}\"\n",
    )
    .unwrap();
    let run = |path: &Path| {
        Command::new(env!("CARGO_BIN_EXE_rmq-wasm-proc"))
            .args(["config", "check"])
            .arg(path)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap()
    };
    let out = run(&file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let f = file.display();
    for want in [
        format!("{f}:6: listener[0].fuel: invalid type: string \"lots\""),
        format!("{f}:7: listener[0].slot: unknown key in [[listener]] (valid: "),
        format!("{f}:8: environment variable RMQ_WASM_TEST_UNSET_PORT is not set"),
        format!("{f}:8: listener[0].namesrv_port: unknown key in [[listener]]"),
    ] {
        assert!(stdout.contains(&want), "{want:?} missing from:\n{stdout}");
    }
    assert_eq!(stdout.lines().count(), 4, "four problems and nothing else:\n{stdout}");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "namesrv = \"127.0.0.1:9876\"\n[[listener]]\ngroup = \"g\"\ntopic = \"t\"\nwasm = \"a.wasm\"\n")
        .unwrap();
    let out = run(&good);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}
