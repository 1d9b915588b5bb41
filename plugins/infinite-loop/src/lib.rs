//! Hostile: spins forever on every call, without touching the host. Only fuel or the epoch
//! deadline stops it.

use std::hint::black_box;

use rmq_wasm_guest::{ConsumeContext, Listener, ListenerError, Message, Outcome};

struct InfiniteLoop;

impl Listener for InfiniteLoop {
    fn consume(_ctx: &ConsumeContext, msgs: &[Message<'_>]) -> Result<Vec<Outcome>, ListenerError> {
        let mut n: u64 = black_box(msgs.len() as u64);
        loop {
            n = black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

rmq_wasm_guest::export_listener!(InfiniteLoop);
