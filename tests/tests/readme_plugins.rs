//! The README's "Writing your own plugin" is an executed example: `scripts/readme-plugins.sh`
//! takes each language's files and build commands from README.md and runs them in a fresh
//! directory outside the repository; here the host loads every result and calls it on the
//! messages the README describes (a body with the word → dead letter, tag `later` → retry, the
//! rest → success). A command or an example that stops working fails this test.

use std::process::Command;

use bytes::Bytes;
use rmq_wasm::consumer::{ConsumeContext, ConsumeMode, MessageListener as _, MessageOutcome};
use rmq_wasm::protocol::message::{MessageExt, Properties, property};
use rmq_wasm::protocol::{MessageQueue, QueueId, QueueOffset};
use rmq_wasm::wasm::{PluginSpec, WasmListener};
use rmq_wasm_tests::wasm::{engine, workspace_root};

fn message(offset: i64, body: &'static str, tag: Option<&str>) -> MessageExt {
    let mut properties = Properties::new();
    if let Some(tag) = tag {
        properties.insert(property::TAGS, tag);
    }
    MessageExt {
        topic: "orders".into(),
        body: Bytes::from_static(body.as_bytes()),
        properties,
        queue_id: QueueId(0),
        queue_offset: QueueOffset(offset),
        ..MessageExt::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_plugin_examples_build_from_any_directory_and_behave_as_described() {
    let out = tempfile::tempdir().unwrap();
    let root = workspace_root();
    let status = Command::new(root.join("scripts/readme-plugins.sh"))
        .arg(out.path())
        // The Rust example's dependencies are compiled once, not on every run.
        .env("CARGO_TARGET_DIR", root.join("target/readme-plugins-build"))
        .current_dir(std::env::temp_dir())
        .status()
        .unwrap();
    assert!(status.success(), "scripts/readme-plugins.sh failed: {status}");

    let ctx = ConsumeContext {
        group: "my_first_group".into(),
        queue: MessageQueue::new("orders", "broker-a", QueueId(0)),
        mode: ConsumeMode::Concurrently,
    };
    let msgs = [
        message(0, "a fine order", None),
        message(1, "a poison order", None),
        message(2, "not yet", Some("later")),
        message(3, "another fine one", Some("TagA")),
    ];
    for lang in ["python", "javascript", "rust", "go"] {
        let wasm = out.path().join(format!("{lang}.wasm"));
        let listener = WasmListener::load(engine(), &wasm, PluginSpec::new(lang, "my_first_group"))
            .await
            .unwrap_or_else(|e| panic!("{lang}: {e}"));
        let outcomes =
            listener.consume(&ctx, &msgs).await.unwrap_or_else(|e| panic!("{lang}: {e}"));
        assert_eq!(outcomes.len(), 4, "{lang}: {outcomes:?}");
        assert_eq!(outcomes[0], MessageOutcome::Success, "{lang}");
        match &outcomes[1] {
            MessageOutcome::DeadLetter { reason, .. } => {
                assert!(
                    reason.contains("body contains") && reason.contains("poison"),
                    "{lang}: {reason}"
                );
            }
            other => panic!("{lang}: the poison message got {other:?}"),
        }
        assert_eq!(outcomes[2], MessageOutcome::RETRY, "{lang}");
        assert_eq!(outcomes[3], MessageOutcome::Success, "{lang}");
    }
}
