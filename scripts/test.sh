#!/usr/bin/env bash
# The project's single test command (README; CI runs exactly this via .ci/run):
# formatting, clippy on all targets with warnings denied (in the background), and every test,
# including the ones against a real local cluster (one shared per flavour, started and stopped
# here; tests that need another topology start their own): the whole suite against Apache
# RocketMQ 5.3 (the reference), then the compatibility subset against Apache RocketMQ 4.9 and
# rocketmq-rust 1.0.0 (scripts/test-compat.sh).
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

# The real-cluster tests need Apache RocketMQ's jars (Maven Central; the Java peer consumer is
# built with them; a no-op when present).
step install-java-cluster scripts/install-java-cluster.sh
# The Wasm sandbox tests run the plugins from target/plugins/ (Rust, Python, JavaScript); the
# script installs its own tools (componentize-py in a venv, npm packages) and is quick when
# nothing changed. --test runs the Rust plugins' native unit tests, --smoke calls every built
# component once in node against a fake host.
step plugins scripts/build-plugins.sh --test --smoke
# The guest SDKs' native unit tests (the Rust SDK's run with cargo test below): a second each.
step sdk-python sh -c 'cd guest-sdk/python && python3 -m unittest --quiet'
step sdk-js sh -c 'cd guest-sdk/js && node --import ./testing/register.js --test'
step fmt cargo fmt --all --check
# Clippy runs in the background at the lowest priority, in a target directory of its own (a
# check build shares nothing with the test build, and two cargos on one directory wait for each
# other's lock): it takes ~8 min of both cores, which it now finds while the real-cluster tests
# wait on brokers instead of adding them to the run. Its verdict is awaited last.
# --all-features: the benchmark's rocketmq-client-rust row (feature rust-peer) is linted too.
clippy_log=target/clippy.log
mkdir -p target
echo "==> clippy: in the background at nice 19 (log: $clippy_log)"
clippy_start=$SECONDS
CARGO_TARGET_DIR=target/clippy nice -n 19 setsid \
  cargo clippy --workspace --all-targets --all-features -- -D warnings >"$clippy_log" 2>&1 &
clippy_pid=$!
trap 'kill -- -"$clippy_pid" 2>/dev/null || true' EXIT
clippy_verdict() {
  if wait "$clippy_pid"; then
    echo "    clippy finished clean $((SECONDS - clippy_start)) s after it started"
  else
    cat "$clippy_log"
    return 1
  fi
}
step test-build cargo test --workspace --no-run
# One Apache RocketMQ 5.3 cluster for every test binary (`cluster run`); tests that need their
# own topology or crash brokers start their own.
step test-java5 "${CARGO_TARGET_DIR:-target}/debug/cluster" run --flavour java5 -- cargo test --workspace
step test-java4-compat scripts/test-compat.sh java4
# Only the last part needs rocketmq-namesrv-rust / rocketmq-broker-rust: installed here (a
# no-op when present; waits for an install .ci/run started in the background).
step install-cluster scripts/install-cluster.sh
step test-rust-compat scripts/test-compat.sh rust
step clippy clippy_verdict
