//! Hostile: floods the `log` import. First one huge line (`huge-line-kib`, default 1024 KiB), then
//! `lines` lines (default 1,000,000) of `line-bytes` bytes (default 1024) at `error` level; then
//! every message succeeds. The host's size and rate caps must keep this cheap for the host.

use rmq_wasm_guest::{
    ConsumeContext, Level, Listener, ListenerError, Message, Outcome, config, log,
};

struct LogFlood;

impl Listener for LogFlood {
    fn consume(_ctx: &ConsumeContext, msgs: &[Message<'_>]) -> Result<Vec<Outcome>, ListenerError> {
        let huge_kib = config::parse::<usize>("huge-line-kib")?.unwrap_or(1024);
        let lines = config::parse::<u64>("lines")?.unwrap_or(1_000_000);
        let line_bytes = config::parse::<usize>("line-bytes")?.unwrap_or(1024);

        log::log(Level::Error, &"H".repeat(huge_kib * 1024));
        let line = "F".repeat(line_bytes);
        for _ in 0..lines {
            log::log(Level::Error, &line);
        }
        Ok(vec![Outcome::Success; msgs.len()])
    }
}

rmq_wasm_guest::export_listener!(LogFlood);
