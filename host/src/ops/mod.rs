//! The operators' surface of `rmq-wasm run`: an HTTP endpoint (off unless `[http]` is
//! configured) with Prometheus metrics, liveness, readiness and a JSON status that
//! `rmq-wasm status` prints.
//!
//! Layout: [`config`] (the `[http]` table), [`reading`] (what a request reads from the running
//! listeners), [`exposition`] (`/metrics`), [`status`] (`/status`, `/readyz`), [`http`] (the
//! server and the client GET). Nothing here is on the consume path: the counters and
//! histograms it reads are the consumer's and the sandbox's own, updated there with atomics
//! and pre-resolved handles.

pub mod config;
pub mod exposition;
pub mod http;
pub mod reading;
pub mod status;
#[cfg(test)]
mod tests;

pub use config::HttpSection;
pub use http::Endpoint;
pub use reading::{Reading, Running, RunningListener, Source};
pub use status::Status;
