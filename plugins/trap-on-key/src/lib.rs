//! Hostile: traps (wasm `unreachable`) when a message of the batch has the configured key;
//! otherwise every message succeeds. A deterministic poison pill for the host's isolation logic.
//!
//! Config: `key` (required).

use rmq_wasm_guest::{ConsumeContext, Listener, ListenerError, Message, Outcome, config};

struct TrapOnKey;

impl Listener for TrapOnKey {
    fn consume(_ctx: &ConsumeContext, msgs: &[Message<'_>]) -> Result<Vec<Outcome>, ListenerError> {
        let key = config::require("key")?;
        if let Some(m) = msgs.iter().find(|m| m.has_key(&key)) {
            rmq_wasm_guest::error!("trap-on-key: message {} has key {key}, trapping", m.msg_id());
            trap();
        }
        Ok(vec![Outcome::Success; msgs.len()])
    }
}

#[cfg(target_arch = "wasm32")]
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn trap() -> ! {
    std::process::abort()
}

rmq_wasm_guest::export_listener!(TrapOnKey);
