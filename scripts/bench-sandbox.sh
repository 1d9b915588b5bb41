#!/usr/bin/env bash
# Measures what the Wasm sandbox costs: per call and per message at batch 1/32/256 (1 KiB
# bodies) through WasmListener (fresh store + instance per call, fuel, epoch deadline, timeout)
# and in warm mode, against the same decision run natively; an empty call; store + pooled
# instantiation alone; hot-reload latency (file landed → first call on the new version).
# Builds the plugins first if they are missing, then runs sandbox-bench/ in release mode.
#
# Usage: scripts/bench-sandbox.sh [sandbox-bench args, e.g. --iterations 10000]
# Env: CARGO_TARGET_DIR (default target), CARGO_BUILD_JOBS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
# sandbox-bench compares the Rust filter with its C twin.
[[ -f target/plugins/filter.wasm && -f target/plugins/c-filter.wasm ]] || scripts/build-plugins.sh
# The whole workspace (features unify as in scripts/bench.sh, so both share one cache).
cargo build --quiet --release --workspace --bins --features rmq-wasm-bench/rust-peer -j "${CARGO_BUILD_JOBS:-2}"
exec "${CARGO_TARGET_DIR:-target}/release/sandbox-bench" --plugins target/plugins "$@"
