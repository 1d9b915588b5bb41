#!/usr/bin/env bash
# The project's single test command (README; CI runs exactly this via .ci/run):
# formatting, clippy on all targets with warnings denied, and every test, including the ones
# against a real local rocketmq-rust cluster (started and stopped by the tests themselves).
set -euo pipefail
cd "$(dirname "$0")/.."

step() {
  local name=$1
  shift
  echo "==> $name: $*"
  local start=$SECONDS
  "$@"
  echo "<== $name: ok in $((SECONDS - start)) s"
}

# The real-cluster tests need rocketmq-namesrv-rust / rocketmq-broker-rust (no-op when present).
step install-cluster scripts/install-cluster.sh
# The Wasm sandbox tests run the plugins from target/plugins/ (Rust, Python, JavaScript); the
# script installs its own tools (componentize-py in a venv, npm packages) and is quick when
# nothing changed. --test runs the Rust plugins' native unit tests, --smoke calls every built
# component once in node against a fake host.
step plugins scripts/build-plugins.sh --test --smoke
step fmt cargo fmt --all --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
step test cargo test --workspace
