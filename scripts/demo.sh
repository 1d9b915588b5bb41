#!/usr/bin/env bash
# The main job on a local default: start a local rocketmq-rust cluster (installing it once),
# create an 8-queue topic, produce sample messages and show where they went.
# Stops the cluster on exit unless KEEP_CLUSTER=1.
set -euo pipefail
cd "$(dirname "$0")/.."

TOPIC=${TOPIC:-DemoTopic}
COUNT=${COUNT:-1000}
DIR=${CLUSTER_DIR:-target/demo-cluster}

scripts/install-cluster.sh
cargo build -q --release -p rmq-wasm -p rmq-wasm-tests --bins
BIN=target/release

"$BIN/cluster" start --dir "$DIR"
if [[ "${KEEP_CLUSTER:-0}" != 1 ]]; then
  trap '"$BIN/cluster" stop --dir "$DIR" || true' EXIT
fi
# shellcheck disable=SC1090,SC1091
set -a; source "$DIR/cluster.env"; set +a

"$BIN/rmq-wasm" create-topic --namesrv "$NAMESRV_ADDR" --cluster "${CLUSTER_NAME:-DefaultCluster}" --topic "$TOPIC" --queues 8
"$BIN/rmq-wasm" produce --namesrv "$NAMESRV_ADDR" --topic "$TOPIC" --count "$COUNT" --tags TagA,TagB --body-size 1024 --batch 16
"$BIN/rmq-wasm" route --namesrv "$NAMESRV_ADDR" "$TOPIC"
