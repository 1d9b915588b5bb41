#!/usr/bin/env bash
# Consume-throughput benchmark (README "Benchmarks"): builds consume-bench in release mode and
# runs it. It starts a local cluster on 127.0.0.1 (or reuses the one named by
# RMQ_TEST_CLUSTER_ENV=<dir>/cluster.env from `scripts/cluster.sh start`), fills an 8-queue topic
# and times (a) our push consumer, (b) rocketmq-client-rust, (c) a raw pull loop.
# Arguments go to the benchmark, e.g. `scripts/bench.sh -n 50000 --runs ours,raw`
# (`scripts/bench.sh --help` lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-cluster.sh >/dev/null
exec cargo run -q --release -p rmq-wasm-bench --bin consume-bench -- "$@"
