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

/// The allocator every binary of the project installs (`#[global_allocator] static ALLOC:
/// rmq_wasm::Allocator = rmq_wasm::Allocator;`), so the benchmarks measure what `rmq-wasm` runs.
///
/// Why not the system allocator: a consumer frees thousands of small objects per pull (decoded
/// properties, per-call buffers) between allocations of whole pull bodies, and glibc's malloc
/// consolidates its fast bins on each large request — 19 % of the consumer's CPU in
/// `consume-bench` under `perf` (#15). mimalloc's per-thread free lists do no such sweep. A
/// library never installs an allocator itself: an embedder keeps the choice.
pub use mimalloc::MiMalloc as Allocator;
