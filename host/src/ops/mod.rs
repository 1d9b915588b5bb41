//! The operators' surface.
//!
//! Chores over the client layer: reading a topic without consuming it ([`reader`]), a group's
//! dead letters and their re-delivery ([`dlq`]), offset resets through the broker ([`reset`]).
//!
//! The HTTP endpoint of `rmq-wasm run` (off unless `[http]` is configured): Prometheus metrics,
//! liveness, readiness and a JSON status that `rmq-wasm status` prints. [`config`] (the `[http]`
//! table), [`reading`] (what a request reads from the running listeners), [`exposition`]
//! (`/metrics`), [`status`] (`/status`, `/readyz`), [`http`] (the server and the client GET).
//! Nothing there is on the consume path: the counters and histograms it reads are the
//! consumer's and the sandbox's own, updated there with atomics and pre-resolved handles.

pub mod config;
pub mod dlq;
pub mod exposition;
pub mod http;
pub mod reader;
pub mod reading;
pub mod reset;
pub mod status;
#[cfg(test)]
mod tests;

pub use config::HttpSection;
pub use http::Endpoint;
pub use reading::{ListenerSet, Reading, RunningListener, Source};
pub use status::Status;
