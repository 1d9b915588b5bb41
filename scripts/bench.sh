#!/usr/bin/env bash
# Consume-throughput benchmark (README "Benchmarks"): builds consume-bench in release mode and
# runs it. It starts a local cluster on 127.0.0.1 (Apache RocketMQ 5.3 unless RMQ_CLUSTER_FLAVOUR
# says java4 or rust; or reuses the one named by RMQ_TEST_CLUSTER_ENV=<dir>/cluster.env from
# `scripts/cluster.sh start`), fills an 8-queue topic and times (a) our push consumer,
# (b) rocketmq-client-rust, (c) a raw pull loop, (d) the Java DefaultMQPushConsumer and (e) our
# push consumer calling the Wasm filter plugin.
# Arguments go to the benchmark, e.g. `scripts/bench.sh -n 50000 --runs ours,raw`
# (`scripts/bench.sh --help` lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
# The Java jars serve the Java cluster and (d)'s peer (the 5.3 client unless the cluster is 4.9).
case "${RMQ_CLUSTER_FLAVOUR:-java5}" in
  rust) scripts/install-cluster.sh >&2 && scripts/install-java-cluster.sh 5 >&2 ;;
  java4) scripts/install-java-cluster.sh 4 >&2 ;;
  *) scripts/install-java-cluster.sh 5 >&2 ;;
esac
scripts/build-plugins.sh >&2
exec cargo run -q --release -p rmq-wasm-bench --bin consume-bench -- "$@"
