//! The host's imports, on plain types.
//!
//! On `wasm32` each function calls the component import; elsewhere it uses the thread-local fake
//! host of [`crate::testing`], so listener logic runs in native unit tests.

/// The host's `log` import: lines go to the host's tracing, tagged with plugin, group, topic and
/// queue. The host caps line length and rate (excess lines are truncated or dropped and counted).
pub mod log {
    use crate::types::Level;

    /// Logs `message` at `level`.
    pub fn log(level: Level, message: &str) {
        #[cfg(target_arch = "wasm32")]
        crate::bindings::rmq::listener::log::log(level.into(), message);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_host(|h| h.logs.push((level, message.to_owned())));
    }

    /// Logs at `trace` level.
    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }

    /// Logs at `debug` level.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }

    /// Logs at `info` level.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }

    /// Logs at `warn` level.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }

    /// Logs at `error` level.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// The host's `config` import: the listener's own key/value table from the host configuration.
pub mod config {
    use std::str::FromStr;

    use crate::types::ListenerError;

    /// The value configured for `key`.
    pub fn get(key: &str) -> Option<String> {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::rmq::listener::config::get(key);
        #[cfg(not(target_arch = "wasm32"))]
        return crate::testing::with_host(|h| h.config.get(key).cloned());
    }

    /// Every configured key/value pair, sorted by key.
    pub fn all() -> Vec<(String, String)> {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::rmq::listener::config::all();
        #[cfg(not(target_arch = "wasm32"))]
        return crate::testing::with_host(|h| {
            h.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        });
    }

    /// The value for `key`, or `default` when it is not configured.
    pub fn get_or(key: &str, default: &str) -> String {
        get(key).unwrap_or_else(|| default.to_owned())
    }

    /// The value for `key` parsed as `T`; `Ok(None)` when not configured, an error naming the
    /// key when it does not parse.
    pub fn parse<T>(key: &str) -> Result<Option<T>, ListenerError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        get(key)
            .map(|v| {
                v.parse::<T>().map_err(|e| ListenerError::new(format!("config {key} = {v:?}: {e}")))
            })
            .transpose()
    }

    /// The value for `key`, or an error naming the missing key.
    pub fn require(key: &str) -> Result<String, ListenerError> {
        get(key).ok_or_else(|| ListenerError::new(format!("config key {key} is not set")))
    }
}

/// The host's `producer` import: sends are bounded per call and counted by the host; failures
/// come back as [`ProduceError`](crate::ProduceError).
pub mod producer {
    use crate::types::{OutgoingMessage, ProduceError, SendReceipt};

    /// Sends `msg` and waits for the broker's answer.
    pub fn send(msg: &OutgoingMessage) -> Result<SendReceipt, ProduceError> {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::rmq::listener::producer::send(&msg.into())
            .map(Into::into)
            .map_err(Into::into);
        #[cfg(not(target_arch = "wasm32"))]
        return crate::testing::fake_send(msg);
    }
}
