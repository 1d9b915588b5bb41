//! The Wasm sandbox: listener logic as WebAssembly components implementing the
//! `rmq:listener@0.2.0` world (`wit/listener.wit`), run under fuel, deadline and memory limits,
//! with traps turned into retries, poison pills into DLQ entries, and hot reload.
//!
//! - [`engine`]: the one wasmtime engine (pooling, CoW, fuel, epochs), the compile path, and
//!   [`PluginVersion`] (an `InstancePre` per listener version);
//! - `cache`: the on-disk cache of compiled (native) artifacts, MAC'd and in a checked private
//!   directory;
//! - `host`: the imports a plugin gets (`log`, `config`, `producer`, deny-by-default WASI);
//! - [`listener`]: [`WasmListener`], the consumer's `MessageListener` over a component;
//! - [`inspect`]: a component's exports, imports and needed grants (`plugin check`), and
//!   whether it implements the world, every misfit named (`check_world`, `plugin build`);
//! - `reload`: file watching and atomic version swaps;
//! - [`componentize`]: a core module (Go, C) made a listener component, in-process;
//! - `bindings`: the `bindgen!` output, alone.

mod bindings;
mod cache;
pub mod componentize;
mod convert;
pub mod engine;
mod host;
pub mod inspect;
pub mod limits;
pub mod listener;
mod lower;
mod reload;
pub mod stats;

#[cfg(test)]
mod cache_tests;
#[cfg(test)]
mod reload_tests;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use cache::CacheError;
pub use convert::{PROP_ABORT, PROP_FUEL_USED, PROP_PLUGIN, PROP_VERSION, is_system_property};
pub use engine::{ContentHash, EngineConfig, PluginVersion, SandboxEngine};
pub use host::{LimitExceeded, PluginProducer};
pub use inspect::{WorldMismatch, check_world};
pub use limits::{Budget, FUEL_PER_MS, GrantError, ListenerLimits, TopicGrant, is_system_topic};
pub use listener::{PluginSpec, WasmListener, WasmListenerStats};
pub use reload::{DEBOUNCE, MAX_DEBOUNCE, MAX_SETTLE, POLL, Reloader};
pub use stats::SandboxStatsSnapshot;

/// The `tracing` target of the lines a plugin logs through its `log` import.
pub const PLUGIN_LOG_TARGET: &str = "rmq_wasm::plugin";

/// Why a plugin could not be loaded or a listener built. (Failures *during* a call are
/// `ListenerError`s: they never leave the consume path as errors of this type.)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WasmError {
    #[error("creating the wasm engine: {0}")]
    Engine(String),
    #[error("reading plugin {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("plugin {path} is {kind}, not a regular file")]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("plugin {path} is {size} bytes, over the engine's max_module_size of {max}")]
    TooLarge { path: PathBuf, size: u64, max: usize },
    #[error("compiling plugin {path}: {reason}")]
    Compile { path: PathBuf, reason: String },
    /// The component does not fit the `rmq:listener` world (missing/mistyped export, or an
    /// import the host does not provide).
    #[error("plugin {path} does not implement the rmq:listener world: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("invalid sandbox limits: {0}")]
    Limits(String),
    #[error("watching plugin {path} for reloads: {reason}")]
    Watch { path: PathBuf, reason: String },
    #[error("the compile task failed: {0}")]
    Join(String),
}
