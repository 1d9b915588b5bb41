//! Hostile: blocks inside a host call. It sends one message to the topic in config `topic`
//! (default `__hang__`) before looking at the batch.
//!
//! Contract with the host's tests: the test host's producer never answers a send to `__hang__`
//! (it awaits forever), so only the per-call wall-clock timeout around the call can end it; fuel
//! and epochs do not tick while the guest is parked in the host. A production producer treats
//! `__hang__` like any other topic. If the send does return, its error fails the batch.

use rmq_wasm_guest::{
    ConsumeContext, Listener, ListenerError, Message, Outcome, OutgoingMessage, config,
};

struct HangInHostCall;

impl Listener for HangInHostCall {
    fn consume(_ctx: &ConsumeContext, msgs: &[Message<'_>]) -> Result<Vec<Outcome>, ListenerError> {
        let topic = config::get_or("topic", "__hang__");
        OutgoingMessage::new(topic, "hang").send()?;
        Ok(vec![Outcome::Success; msgs.len()])
    }
}

rmq_wasm_guest::export_listener!(HangInHostCall);
