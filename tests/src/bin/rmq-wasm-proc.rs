//! The `rmq-wasm` binary under another name, for tests that run the host as a separate process
//! (`tests/tests/faults_host.rs`): Cargo hands an integration test the path of its own package's
//! binaries only (`CARGO_BIN_EXE_<name>`), and the host's `rmq-wasm` belongs to the `host`
//! package. The body is exactly `host/src/main.rs`, so the process under test is the real CLI.

#[global_allocator]
static ALLOC: rmq_wasm::Allocator = rmq_wasm::Allocator;

fn main() -> anyhow::Result<()> {
    rmq_wasm::cli::main()
}
