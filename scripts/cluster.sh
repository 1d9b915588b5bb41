#!/usr/bin/env bash
# Local rocketmq-rust cluster for the demo and manual runs:
#   scripts/cluster.sh start [--dir D] [--delay-levels "1s 5s ..."]   (prints NAMESRV_ADDR=... etc.)
#   scripts/cluster.sh status [--dir D]
#   scripts/cluster.sh stop [--dir D]
# D defaults to target/local-cluster; the env is also written to D/cluster.env.
# Run scripts/install-cluster.sh first on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run -q -p rmq-wasm-tests --bin cluster -- "$@"
