//! Helpers for the Wasm listener tests: the built plugins, one shared engine, a producer that
//! honours the hang plugin's contract, and reading messages back by key.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

use rmq_wasm::client::{ClientError, Producer, SendResult};
use rmq_wasm::protocol::QueueOffset;
use rmq_wasm::protocol::message::{Message, MessageExt};
use rmq_wasm::wasm::{EngineConfig, PluginProducer, SandboxEngine};

use crate::cluster::Cluster;
use crate::support::{Clients, read_back_header};

/// The workspace root (where `target/plugins/` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The built plugin `name`, or a panic telling how to build it.
pub fn plugin(name: &str) -> PathBuf {
    let path = workspace_root().join("target/plugins").join(format!("{name}.wasm"));
    assert!(path.exists(), "{} is missing: run scripts/build-plugins.sh", path.display());
    path
}

/// The artifact cache the tests share (compiling the Python plugin takes seconds).
pub fn cache_dir() -> PathBuf {
    workspace_root().join("target/wasm-cache")
}

/// One engine per test binary.
pub fn engine() -> &'static SandboxEngine {
    static ENGINE: OnceLock<SandboxEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        SandboxEngine::new(EngineConfig { cache_dir: Some(cache_dir()), ..EngineConfig::default() })
            .expect("wasm engine")
    })
}

/// The real producer, except that a send to `__hang__` never answers (the hang-in-host-call
/// plugin's contract): only the call's timeout can end it.
#[derive(Debug)]
pub struct HangingProducer(pub Producer);

impl PluginProducer for HangingProducer {
    fn send(
        &self,
        msg: Message,
    ) -> Pin<Box<dyn Future<Output = Result<SendResult, ClientError>> + Send + '_>> {
        Box::pin(async move {
            if msg.topic == "__hang__" {
                std::future::pending::<()>().await;
            }
            self.0.send(msg).await
        })
    }
}

/// Reads every queue of `topic` from offset 0 until a message with each of `keys` has been
/// seen (or panics after `timeout`); returns the matching messages.
pub async fn read_keys(
    c: &Clients,
    cluster: &Cluster,
    topic: &str,
    keys: &[&str],
    timeout: Duration,
) -> Vec<MessageExt> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut found = Vec::new();
        if let Ok(Some(route)) = c.namesrv.route(topic).await {
            for q in route.subscribe_queues(topic) {
                let mut offset = QueueOffset(0);
                loop {
                    let header = read_back_header(topic, q.queue_id, offset);
                    let Ok(r) =
                        c.broker.pull(&cluster.broker_addr, &header, Duration::from_secs(5)).await
                    else {
                        break;
                    };
                    if r.messages.is_empty() || r.next_begin_offset <= offset {
                        break;
                    }
                    offset = r.next_begin_offset;
                    found.extend(
                        r.messages.into_iter().filter(|m| m.keys().any(|k| keys.contains(&k))),
                    );
                }
            }
        }
        let seen: BTreeSet<&str> = found.iter().flat_map(|m| m.keys()).collect();
        if keys.iter().all(|k| seen.contains(k)) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{topic}: saw keys {seen:?}, expected all of {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
