//! `rmq-wasm run --config FILE` end to end against a real cluster: the TOML file is parsed, the
//! plugin loaded, a push consumer started per listener, messages routed by the plugin through
//! the host's producer, and everything shut down gracefully when the run ends.

use std::time::Duration;

use bytes::Bytes;
use rmq_wasm::protocol::message::Message;
use rmq_wasm_tests::cluster::Cluster;
use rmq_wasm_tests::support::{Clients, init_tracing, unique};
use rmq_wasm_tests::wasm::{cache_dir, plugin, read_keys};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_consumes_with_a_plugin_from_a_toml_file_and_shuts_down() {
    init_tracing();
    let cluster = Cluster::shared();
    let c = Clients::new(cluster);
    let topic = unique("wasm_cli");
    let out = unique("wasm_cli_out");
    c.create_topic(cluster, &topic, 2).await.unwrap();
    c.create_topic(cluster, &out, 1).await.unwrap();
    let keys: Vec<String> = (0..10).map(|i| format!("cli-{i}")).collect();
    for k in &keys {
        let m = Message::new(&topic, Bytes::from_static(b"{}")).with_keys([k.as_str()]);
        c.producer.send(m).await.unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let wasm = plugin("router");
    let config = dir.path().join("listeners.toml");
    std::fs::write(
        &config,
        format!(
            r#"
namesrv = "{namesrv}"
[engine]
cache_dir = "{cache}"

[[listener]]
name = "cli-router"
group = "{group}"
topic = "{topic}"
consume_from = "first"
wasm = "{wasm}"
batch_size = 4
timeout = "5s"
hot_reload = false
produce_topics = ["{out}"]
[listener.config]
target-topic = "{out}"
"#,
            namesrv = cluster.namesrv_addr,
            cache = cache_dir().display(),
            group = unique("wasm_cli_g"),
            wasm = wasm.display(),
        ),
    )
    .unwrap();

    let started = std::time::Instant::now();
    rmq_wasm::cli::run::run(&config, Some(Duration::from_secs(12))).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(40), "shutdown took {:?}", started.elapsed());

    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let routed = read_keys(&c, cluster, &out, &key_refs, Duration::from_secs(30)).await;
    assert!(routed.iter().all(|m| m.property("ROUTED_FROM") == Some(topic.as_str())));
}
