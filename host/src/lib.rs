//! rmq-wasm: a native RocketMQ push-consumer host whose listeners are sandboxed WebAssembly
//! components.
//!
//! Layout follows the architecture, bottom up: [`protocol`] (pure wire codecs) → [`remoting`]
//! (one task per TCP connection, request/response matching) → [`client`] (name server, broker
//! admin and producer calls) → [`consumer`] → [`wasm`] (the sandbox); [`ops`] holds the
//! operators' tools, [`plugin_test`] the plugin authors' replay, and [`cli`] the binary's
//! commands.

/// The target of the spans that give log lines their context (a listener, its consumer's
/// group and topic, a queue): shown by `--log-format json`, left out of text lines.
pub const SPAN_TARGET: &str = "rmq_wasm::span";

pub mod cli;
pub mod client;
pub mod consumer;
pub mod ops;
pub mod plugin_test;
pub mod protocol;
pub mod remoting;
pub mod wasm;
