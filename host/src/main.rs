//! The `rmq-wasm` binary: a thin edge over the library.

#[global_allocator]
static ALLOC: rmq_wasm::Allocator = rmq_wasm::Allocator;

fn main() -> anyhow::Result<()> {
    rmq_wasm::cli::main()
}
