//! The listeners `host-bench` measures: a native no-op (the peer every figure is printed beside)
//! and the Wasm plugins, each through `WasmListener` as `rmq-wasm run` loads them (a fresh
//! instance per call, default fuel, timeout and memory cap, as many slots as the consumer's
//! consume threads), wrapped so that the messages a listener accepted are counted and can be
//! observed as they are.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, Result, ensure};
use clap::ValueEnum;
use rmq_wasm::client::Producer;
use rmq_wasm::consumer::listener::{ListenerFuture, MessageListener};
use rmq_wasm::consumer::{ConsumeContext, ConsumerConfig, MessageOutcome};
use rmq_wasm::protocol::message::MessageExt;
use rmq_wasm::wasm::{PluginProducer, PluginSpec, SandboxEngine, TopicGrant, WasmListener};

/// Which listener a consumer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Native, accepts every message at once.
    Native,
    /// The Rust `filter` plugin, told to look for a tag and a body text no message has: it reads
    /// every tag, scans every body, then accepts.
    Filter,
    /// The Python `py-json-router` (componentize-py): parses each JSON body and sends a copy to
    /// the output topic.
    Python,
    /// The JavaScript `js-json-router` (componentize-js): the same.
    Javascript,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Native => "native no-op",
            Self::Filter => "Wasm filter (Rust)",
            Self::Python => "Wasm py-json-router",
            Self::Javascript => "Wasm js-json-router",
        }
    }

    /// The plugin's file name under the plugins directory, `None` for the native listener.
    fn plugin(self) -> Option<&'static str> {
        match self {
            Self::Native => None,
            Self::Filter => Some("filter"),
            Self::Python => Some("py-json-router"),
            Self::Javascript => Some("js-json-router"),
        }
    }

    /// Whether the listener sends a copy of each message (to `out`).
    pub fn routes(self) -> bool {
        matches!(self, Self::Python | Self::Javascript)
    }
}

/// A message body of `size` bytes every listener accepts: a JSON object with the `id` and `kind`
/// the routers need, padded with a `pad` string of `x` (which the filter searches in vain).
pub fn body(size: usize) -> Vec<u8> {
    let head = r#"{"id":1,"kind":"bench","type":"bench","pad":""#;
    let mut body = head.as_bytes().to_vec();
    body.resize(size.max(head.len() + 2) - 2, b'x');
    body.extend_from_slice(br#""}"#);
    body
}

/// Called with each message a listener accepted, as soon as it did.
pub type OnAccepted = Box<dyn Fn(&MessageExt) + Send + Sync>;

/// The listener of a measured consumer: `plugin` decides (none: accept all), `on_accepted` sees
/// every message accepted, `accepted` counts them.
pub struct Counting {
    plugin: Option<WasmListener>,
    on_accepted: OnAccepted,
    pub accepted: AtomicU64,
}

impl std::fmt::Debug for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counting")
            .field("wasm", &self.plugin.is_some())
            .field("accepted", &self.accepted)
            .finish_non_exhaustive()
    }
}

impl Counting {
    /// A listener of `kind`; a plugin is loaded from `plugins` for `group`, granted sends to
    /// `out` through `producer` if it routes.
    pub async fn load(
        kind: Kind,
        engine: Option<&SandboxEngine>,
        plugins: &Path,
        group: &str,
        routing: Option<(&str, Producer)>,
        on_accepted: OnAccepted,
    ) -> Result<Arc<Self>> {
        let plugin = match kind.plugin() {
            None => None,
            Some(name) => {
                let engine = engine.context("a Wasm listener needs an engine")?;
                let path = plugins.join(format!("{name}.wasm"));
                ensure!(
                    path.is_file(),
                    "{} is missing: run scripts/build-plugins.sh",
                    path.display()
                );
                let mut spec = PluginSpec::new(name, group);
                let config: &[(&str, &str)] = match kind {
                    Kind::Filter => {
                        &[("tag", "bench-no-such-tag"), ("body-contains", "bench-no-such-text")]
                    }
                    _ => &[],
                };
                spec.config =
                    config.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
                if kind.routes() {
                    let (out, producer) = routing.context("a router needs an output topic")?;
                    // py-json-router's key, then js-json-router's.
                    spec.config.insert("default-topic".into(), out.into());
                    spec.config.insert("target-topic".into(), out.into());
                    spec.limits.produce_topics = vec![TopicGrant::Exact(out.into())];
                    spec.limits.max_sends_per_second = 10_000_000;
                    spec.producer = Some(Arc::new(producer) as Arc<dyn PluginProducer>);
                }
                // As `rmq-wasm run` sets it: as many sandboxes as the consumer runs calls.
                spec.limits.slots = ConsumerConfig::DEFAULT_CONSUME_THREAD_MAX;
                Some(WasmListener::load(engine, &path, spec).await?)
            }
        };
        Ok(Arc::new(Self { plugin, on_accepted, accepted: AtomicU64::new(0) }))
    }

    fn accept(&self, m: &MessageExt) {
        (self.on_accepted)(m);
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }
}

impl MessageListener for Counting {
    fn consume<'a>(
        &'a self,
        ctx: &'a ConsumeContext,
        messages: &'a [MessageExt],
    ) -> ListenerFuture<'a> {
        let Some(plugin) = &self.plugin else {
            messages.iter().for_each(|m| self.accept(m));
            return Box::pin(std::future::ready(Ok(vec![MessageOutcome::Success; messages.len()])));
        };
        Box::pin(async move {
            let outcomes = plugin.consume(ctx, messages).await?;
            for (m, outcome) in messages.iter().zip(&outcomes) {
                if outcome.is_success() {
                    self.accept(m);
                }
            }
            Ok(outcomes)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_of_the_size_asked() {
        for size in [0, 10, 64, 1024] {
            let b = body(size);
            let json: serde_json::Value = serde_json::from_slice(&b).unwrap();
            assert_eq!(json["kind"], "bench", "size {size}");
            if size >= 64 {
                assert_eq!(b.len(), size);
            }
        }
    }
}
