//! Test plugin for the host's isolation and sandbox tests: failures triggered by one message or
//! by the batch as a whole, and probes of what a sandbox could observe or leak. Every option is
//! a config key; with none set every message succeeds. Checked in this order:
//!
//! - `stderr-kib = N`: writes N KiB to stderr first (over the host's 4 KiB stderr pipe, the
//!   write fails and `eprint!` panics: a trap that has nothing to do with the messages);
//! - `trap-on-reuse`: traps when this instance already served a call (only in warm mode);
//! - `trap-if-batch-over = N`: traps when the batch has more than N messages (a failure that
//!   depends on batching, not on any one message);
//! - `trap-key`, `spin-key`, `bomb-key = K`: when a message has key K, trap (`unreachable`),
//!   spin until fuel or the deadline stops it, or allocate until the memory cap;
//! - `write-secret = S`: plants S (XOR 0x5A, so a scan never matches its own plain copy) in a
//!   stack buffer, a small and a `secret-kib` (default 4096) heap block, leaks them, and fails the
//!   batch with `wrote secret: ... end <highest address>` (unless it also scans, below);
//! - `scan-secret = S`: grows memory by `scan-grow-kib` (default 8192) without writing, scans
//!   the whole linear memory for planted S and fails the batch with
//!   `scan: <bytes> bytes, secret found at <address>` or `... secret not found`;
//! - `clocks`: fails the batch with `clocks: wall-ns <since the epoch> monotonic-ns <elapsed
//!   over a busy loop>`.

use std::hint::black_box;
use std::io::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};

use rmq_wasm_guest::{ConsumeContext, Listener, ListenerError, Message, Outcome, config};

struct Probe;

/// Calls this instance served (warm mode keeps an instance, and its statics, between calls).
static CALLS: AtomicU32 = AtomicU32::new(0);

const XOR: u8 = 0x5A;
const PAGE: usize = 64 * 1024;

impl Listener for Probe {
    fn consume(_ctx: &ConsumeContext, msgs: &[Message<'_>]) -> Result<Vec<Outcome>, ListenerError> {
        if let Some(kib) = config::parse::<usize>("stderr-kib")? {
            let line = "x".repeat(1023) + "\n";
            for _ in 0..kib {
                eprint!("{line}");
            }
            std::io::stderr().flush().expect("stderr flush");
        }
        if config::get("trap-on-reuse").is_some() && CALLS.fetch_add(1, Ordering::Relaxed) > 0 {
            trap();
        }
        if let Some(max) = config::parse::<usize>("trap-if-batch-over")?
            && msgs.len() > max
        {
            trap();
        }
        let has = |key: &str| config::get(key).is_some_and(|k| msgs.iter().any(|m| m.has_key(&k)));
        if has("trap-key") {
            trap();
        }
        if has("spin-key") {
            let mut n: u64 = black_box(msgs.len() as u64);
            loop {
                n = black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        if has("bomb-key") {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(black_box(vec![0xA5u8; 1 << 20]));
                black_box(&hoard);
            }
        }
        let mut planted = None;
        if let Some(secret) = config::get("write-secret") {
            let kib = config::parse::<usize>("secret-kib")?.unwrap_or(4096);
            planted = Some(plant(secret.as_bytes(), kib * 1024));
        }
        if let Some(secret) = config::get("scan-secret") {
            let grow = config::parse::<usize>("scan-grow-kib")?.unwrap_or(8192) * 1024;
            return Err(ListenerError::new(scan(secret.as_bytes(), grow)));
        }
        if let Some(report) = planted {
            return Err(ListenerError::new(report));
        }
        if config::get("clocks").is_some() {
            return Err(ListenerError::new(clocks()));
        }
        Ok(vec![Outcome::Success; msgs.len()])
    }
}

/// Fills `buf` with the XORed secret, repeated.
fn fill(buf: &mut [u8], secret: &[u8]) {
    for (b, s) in buf.iter_mut().zip(secret.iter().cycle()) {
        *b = s ^ XOR;
    }
}

fn plant(secret: &[u8], big: usize) -> String {
    let mut stack = [0u8; 512];
    fill(&mut stack, secret);
    black_box(&stack);
    let mut small = vec![0u8; 1024];
    fill(&mut small, secret);
    let mut large = vec![0u8; big.max(secret.len())];
    fill(&mut large, secret);
    let end = large.as_ptr() as usize + large.len();
    let report = format!(
        "wrote secret: stack {:#x} small {:#x} large {:#x} end {end} memory {}",
        stack.as_ptr() as usize,
        small.as_ptr() as usize,
        large.as_ptr() as usize,
        memory_bytes()
    );
    // Leaked: still in memory when the instance is torn down.
    black_box(small.leak());
    black_box(large.leak());
    report
}

fn memory_bytes() -> usize {
    #[cfg(target_arch = "wasm32")]
    {
        core::arch::wasm32::memory_size(0) * PAGE
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

fn scan(secret: &[u8], grow: usize) -> String {
    if secret.len() < 32 {
        return "scan: the secret must be at least 32 bytes (a spilled vector register is 16)"
            .into();
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = core::arch::wasm32::memory_grow(0, grow.div_ceil(PAGE));
    }
    #[cfg(not(target_arch = "wasm32"))]
    let _ = grow;
    let size = memory_bytes();
    let found = (8..size.saturating_sub(secret.len()))
        .find(|&addr| secret.iter().enumerate().all(|(i, s)| read(addr + i) == s ^ XOR));
    match found {
        Some(addr) => format!("scan: {size} bytes, secret found at {addr:#x}"),
        None => format!("scan: {size} bytes, secret not found"),
    }
}

/// One byte of linear memory. `addr` is below the memory size (checked by the caller), so the
/// read is in bounds of the wasm memory; volatile so the compiler neither elides nor reorders it.
#[cfg(target_arch = "wasm32")]
fn read(addr: usize) -> u8 {
    // SAFETY: wasm linear memory is one flat, always-mapped range [0, memory_size); `addr` is in
    // it and non-null. The bytes may belong to live Rust objects, which a volatile read of a
    // `u8` does not disturb.
    unsafe { core::ptr::read_volatile(addr as *const u8) }
}

#[cfg(not(target_arch = "wasm32"))]
fn read(_addr: usize) -> u8 {
    0
}

fn clocks() -> String {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let start = std::time::Instant::now();
    let mut n = black_box(1u64);
    for _ in 0..2_000_000 {
        n = black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    format!("clocks: wall-ns {wall} monotonic-ns {}", start.elapsed().as_nanos())
}

#[cfg(target_arch = "wasm32")]
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn trap() -> ! {
    std::process::abort()
}

rmq_wasm_guest::export_listener!(Probe);
