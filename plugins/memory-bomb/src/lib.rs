//! Hostile: allocates and touches 1 MiB blocks until an allocation fails (`memory.grow` refused by
//! the host's limit, or the 4 GiB wasm32 ceiling), which aborts: a trap.
//!
//! Config: `chunk-kib` (default 1024).

use std::hint::black_box;

use rmq_wasm_guest::{ConsumeContext, Listener, ListenerError, Message, Outcome, config};

struct MemoryBomb;

impl Listener for MemoryBomb {
    fn consume(
        _ctx: &ConsumeContext,
        _msgs: &[Message<'_>],
    ) -> Result<Vec<Outcome>, ListenerError> {
        let chunk = config::parse::<usize>("chunk-kib")?.unwrap_or(1024).max(1) * 1024;
        rmq_wasm_guest::info!("memory-bomb: allocating {chunk} bytes at a time");
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // vec! of a non-zero byte: every page is written, so the memory is really committed.
            hoard.push(black_box(vec![0xA5u8; chunk]));
            black_box(&hoard);
        }
    }
}

rmq_wasm_guest::export_listener!(MemoryBomb);
