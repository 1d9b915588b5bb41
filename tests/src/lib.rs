//! Test support.

pub mod cluster;
pub mod support;
pub mod wasm;
