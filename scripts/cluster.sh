#!/usr/bin/env bash
# Local RocketMQ cluster for the demo and manual runs (Apache RocketMQ 5.3 unless
# RMQ_CLUSTER_FLAVOUR or --flavour says java4 or rust):
#   scripts/cluster.sh start [--dir D] [--flavour java5|java4|rust]
#                            [--topology single|two-masters|master-slave] [--delay-levels "1s 5s ..."]
#                            (prints NAMESRV_ADDR=... etc.)
#   scripts/cluster.sh status [--dir D]
#   scripts/cluster.sh stop [--dir D]
# D defaults to target/local-cluster; the env is also written to D/cluster.env. The servers are
# installed on first use (scripts/install-java-cluster.sh, or scripts/install-cluster.sh for rust).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${1:-} == start ]]; then
  flavour=${RMQ_CLUSTER_FLAVOUR:-java5}
  for ((i = 1; i <= $#; i++)); do
    if [[ ${!i} == --flavour ]]; then j=$((i + 1)); flavour=${!j}; fi
  done
  case "$flavour" in
    rust) scripts/install-cluster.sh >&2 ;;
    *) scripts/install-java-cluster.sh >&2 ;;
  esac
fi
exec cargo run -q -p rmq-wasm-tests --bin cluster -- "$@"
