//! The plugin's own log lines during a replay, kept per call instead of interleaved on stderr:
//! a `tracing` layer that keeps the events of [`PLUGIN_LOG_TARGET`] (what the `log` import
//! emits, after the host's caps) until [`LogCapture::take`].

use std::fmt;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer};

use crate::wasm::PLUGIN_LOG_TARGET;

/// One line the plugin logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    pub level: String,
    pub message: String,
}

/// A `tracing` layer; clones share the lines.
#[derive(Debug, Clone, Default)]
pub struct LogCapture {
    lines: Arc<Mutex<Vec<LogLine>>>,
}

impl LogCapture {
    /// The lines kept since the last `take`.
    pub fn take(&self) -> Vec<LogLine> {
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

struct MessageField(String);

impl Visit for MessageField {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.0);
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for LogCapture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if meta.target() != PLUGIN_LOG_TARGET {
            return;
        }
        let mut message = MessageField(String::new());
        event.record(&mut message);
        let line = LogLine { level: meta.level().to_string(), message: message.0 };
        self.lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line);
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[test]
    fn only_the_plugins_lines_are_kept_until_taken() {
        let capture = LogCapture::default();
        let subscriber = tracing_subscriber::registry().with(capture.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: PLUGIN_LOG_TARGET, plugin = "p", "routed {}", 3);
            tracing::warn!("a host line");
            tracing::error!(target: PLUGIN_LOG_TARGET, "bad body");
        });
        let lines = capture.take();
        assert_eq!(
            lines,
            [
                LogLine { level: "INFO".into(), message: "routed 3".into() },
                LogLine { level: "ERROR".into(), message: "bad body".into() },
            ]
        );
        assert!(capture.take().is_empty());
    }
}
