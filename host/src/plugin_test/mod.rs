//! Running a plugin without a cluster: the message fixture (`rmq-wasm capture` writes it), the
//! replay through the production [`crate::wasm::WasmListener`] (`rmq-wasm plugin test`), and
//! expectations about the outcomes.
//!
//! - [`fixture`]: the JSONL message format, one consumed message a line;
//! - [`expect`]: the JSONL expectation format and its matching;
//! - [`replay`]: batching a fixture and calling the listener;
//! - [`sends`]: the producer that records a plugin's sends instead of sending;
//! - [`logs`]: the plugin's log lines, per call.

pub mod expect;
pub mod fixture;
pub mod logs;
pub mod replay;
pub mod sends;

pub use fixture::{FixtureError, FixtureMessage, parse_fixture};
