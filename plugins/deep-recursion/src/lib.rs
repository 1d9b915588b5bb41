//! Hostile: recurses without bound on every call. The frames live on the wasm operand stack (no
//! address-taken locals), so wasmtime's native stack limit (`max_wasm_stack`) stops it with a
//! stack-overflow trap.
//!
//! Config: `depth` (default `u64::MAX`: until the stack overflows).

use std::hint::black_box;

use rmq_wasm_guest::{ConsumeContext, Listener, ListenerError, Message, Outcome, config};

struct DeepRecursion;

/// Not a tail call and not an accumulator LLVM can turn into a loop.
#[inline(never)]
fn descend(n: u64, seed: u64) -> u64 {
    if n == 0 {
        return seed;
    }
    let below = descend(n - 1, seed.wrapping_mul(31).wrapping_add(n));
    below.rotate_left((n % 63) as u32) ^ n
}

impl Listener for DeepRecursion {
    fn consume(_ctx: &ConsumeContext, msgs: &[Message<'_>]) -> Result<Vec<Outcome>, ListenerError> {
        let depth = config::parse::<u64>("depth")?.unwrap_or(u64::MAX);
        let r = descend(black_box(depth), black_box(msgs.len() as u64));
        rmq_wasm_guest::info!("deep-recursion: reached the bottom ({r})");
        Ok(vec![Outcome::Success; msgs.len()])
    }
}

rmq_wasm_guest::export_listener!(DeepRecursion);
