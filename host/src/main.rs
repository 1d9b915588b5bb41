//! The `rmq-wasm` binary: a thin edge over the library.

fn main() -> anyhow::Result<()> {
    rmq_wasm::cli::main()
}
