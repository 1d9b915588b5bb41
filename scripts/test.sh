#!/usr/bin/env bash
# The project's single test command (README; CI runs exactly this via .ci/run):
# formatting, clippy on all targets with warnings denied, and every test, including the ones
# against a real local cluster (started and stopped by the tests themselves): the whole suite
# against Apache RocketMQ 5.3 (the reference), then the compatibility subset against Apache
# RocketMQ 4.9 and rocketmq-rust 1.0.0 (scripts/test-compat.sh).
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
step clippy cargo clippy --workspace --all-targets -- -D warnings
step test-java5 env RMQ_CLUSTER_FLAVOUR=java5 cargo test --workspace
step test-java4-compat scripts/test-compat.sh java4
# Only the last part needs rocketmq-namesrv-rust / rocketmq-broker-rust: installed here (a
# no-op when present; waits for an install .ci/run started in the background).
step install-cluster scripts/install-cluster.sh
step test-rust-compat scripts/test-compat.sh rust
