//! Test support.

pub mod cluster;
pub mod host_procs;
pub mod java_peer;
pub mod proxy;
pub mod support;
pub mod wasm;
