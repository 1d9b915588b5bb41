//! Hostile: asks the host for WASI resources and never drops them — a pollable per
//! `subscribe-duration` call, `count` of them (default: forever). Each is an entry in the host's
//! resource table and a host allocation; the host's cap on live WASI resources must stop it.
//! With `count` set it then succeeds, reporting nothing: the test sees the cap by the abort.

use rmq_wasm_guest::{ConsumeContext, Listener, ListenerError, Message, Outcome, config};

struct ResourceHog;

impl Listener for ResourceHog {
    fn consume(_ctx: &ConsumeContext, msgs: &[Message<'_>]) -> Result<Vec<Outcome>, ListenerError> {
        let count = config::parse::<u64>("count")?.unwrap_or(u64::MAX);
        let mut kept = Vec::new();
        for _ in 0..count {
            kept.push(wasip2::clocks::monotonic_clock::subscribe_duration(1_000_000_000));
        }
        drop(kept);
        Ok(vec![Outcome::Success; msgs.len()])
    }
}

rmq_wasm_guest::export_listener!(ResourceHog);
