//! Hostile: tries to reach outside the sandbox without any grant: read a host file, create a
//! file, list the root directory, open a TCP connection, read the environment. It never traps:
//! it always fails the batch with a listener error reporting what happened, starting with
//! `fs-escape: blocked:` when every attempt failed (the expected outcome) and
//! `fs-escape: ESCAPED:` when any succeeded.
//!
//! Config: `path` (default `/etc/passwd`), `connect` (default `127.0.0.1:9876`).

use std::io::Write;

use rmq_wasm_guest::{ConsumeContext, Listener, ListenerError, Message, Outcome, config};

struct FsEscape;

fn attempt<T>(what: String, r: std::io::Result<T>, report: &mut Vec<String>) -> bool {
    match r {
        Ok(_) => {
            report.push(format!("{what}: OPENED"));
            true
        }
        Err(e) => {
            report.push(format!("{what}: {e}"));
            false
        }
    }
}

impl Listener for FsEscape {
    fn consume(
        _ctx: &ConsumeContext,
        _msgs: &[Message<'_>],
    ) -> Result<Vec<Outcome>, ListenerError> {
        let path = config::get_or("path", "/etc/passwd");
        let addr = config::get_or("connect", "127.0.0.1:9876");
        let mut report = Vec::new();
        let mut escaped = false;

        escaped |= attempt(format!("read {path}"), std::fs::read(&path), &mut report);
        escaped |= attempt(
            "create /tmp/rmq-wasm-fs-escape".into(),
            std::fs::File::create("/tmp/rmq-wasm-fs-escape").and_then(|mut f| f.write_all(b"x")),
            &mut report,
        );
        escaped |= attempt("list /".into(), std::fs::read_dir("/"), &mut report);
        escaped |= attempt(
            format!("connect {addr}"),
            std::net::TcpStream::connect(addr.as_str()),
            &mut report,
        );
        let env = std::env::vars().count();
        if env > 0 {
            escaped = true;
        }
        report.push(format!("environment: {env} variables"));

        let verdict = if escaped { "ESCAPED" } else { "blocked" };
        let report = report.join("; ");
        rmq_wasm_guest::warn!("fs-escape: {verdict}: {report}");
        Err(ListenerError::new(format!("fs-escape: {verdict}: {report}")))
    }
}

rmq_wasm_guest::export_listener!(FsEscape);
