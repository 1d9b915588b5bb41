#!/usr/bin/env bash
# The main job on a local default: start a local Apache RocketMQ 5.3 cluster (its jars resolved
# from Maven Central once; RMQ_CLUSTER_FLAVOUR=java4|rust for the others),
# create an 8-queue topic, produce sample messages, show where they went, then consume them with a
# sample Wasm plugin (router.wasm: copies every message to <topic>Routed) through
# `rmq-wasm run --config`, and print the listener's stats.
# Stops the cluster on exit unless KEEP_CLUSTER=1.
set -euo pipefail
cd "$(dirname "$0")/.."

TOPIC=${TOPIC:-DemoTopic}
COUNT=${COUNT:-1000}
DIR=${CLUSTER_DIR:-target/demo-cluster}

case "${RMQ_CLUSTER_FLAVOUR:-java5}" in
  rust) scripts/install-cluster.sh ;;
  *) scripts/install-java-cluster.sh ;;
esac
scripts/build-plugins.sh
cargo build -q --release -p rmq-wasm --bins
BIN=target/release

scripts/cluster.sh start --dir "$DIR"
if [[ "${KEEP_CLUSTER:-0}" != 1 ]]; then
  trap 'scripts/cluster.sh stop --dir "$DIR" || true' EXIT
fi
# NAMESRV_ADDR and CLUSTER_NAME, which rmq-wasm reads from the environment.
# shellcheck disable=SC1090,SC1091
set -a; source "$DIR/cluster.env"; set +a

"$BIN/rmq-wasm" create-topic "$TOPIC" --queues 8
"$BIN/rmq-wasm" produce "$TOPIC" --count "$COUNT" --tags TagA,TagB --body-size 1024 --batch 16
"$BIN/rmq-wasm" route "$TOPIC"

# Consume them with a Wasm plugin, through the binary, for RUN_FOR (default 20 s).
"$BIN/rmq-wasm" create-topic "${TOPIC}Routed" --queues 4
cat >"$DIR/listeners.toml" <<EOF
namesrv = "$NAMESRV_ADDR"

[[listener]]
name = "demo-router"
group = "demo_router_$$"
topic = "$TOPIC"
consume_from = "first"               # a new group reads what is there (default "last" skips it)
wasm = "$PWD/target/plugins/router.wasm"
batch_size = 32
timeout = "2s"
produce_topics = ["${TOPIC}Routed"]   # sends are denied unless granted
[listener.config]
target-topic = "${TOPIC}Routed"
EOF
"$BIN/rmq-wasm" run --config "$DIR/listeners.toml" --duration "${RUN_FOR:-20s}"
