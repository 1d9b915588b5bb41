#!/usr/bin/env bash
# Every benchmark of #15 in one run (README "Performance"), each figure beside its peer's:
#   1. consume-bench (bench/src/main.rs): 1,000,000 × 1 KiB messages consumed by (a) our push
#      consumer with a no-op native listener at batch 1 and (a') 32, (b) rocketmq-client-rust,
#      (c) a raw pull loop, (d) the Java DefaultMQPushConsumer, (e) ours with the Wasm filter
#      plugin on a fresh instance per call and (e') warm, (f) ours in POP mode and (f') POP with
#      the Wasm filter;
#   2. host-bench all (bench/src/host_bench/): produce → listener latency at 1,000 msgs/s, host
#      RSS idle and at full load per listener, three hosts in one group;
#   3. scripts/bench-sandbox.sh: the sandbox's own cost per call and per message.
# Each starts a local cluster of its own on 127.0.0.1 (Apache RocketMQ 5.3 unless
# RMQ_CLUSTER_FLAVOUR says java4 or rust; or reuses the one RMQ_TEST_CLUSTER_ENV=<dir>/cluster.env
# names, from `scripts/cluster.sh start`).
#
# Usage:
#   scripts/bench.sh                         everything above
#   scripts/bench.sh consume [args]          consume-bench alone (`consume --help` lists them)
#   scripts/bench.sh host [mode] [args]      host-bench alone: all, latency, memory, scale-out
#   scripts/bench.sh sandbox [args]          scripts/bench-sandbox.sh
#   scripts/bench.sh -n 50000 --runs ours,raw   (anything else: consume-bench with these args)
# Env: CARGO_TARGET_DIR (default target), CARGO_BUILD_JOBS (default 2), BENCH_MESSAGES
# (consume-bench's N in the full run, default 1000000), BENCH_ROUNDS (its rounds, default 3: each
# row's median round is the one compared).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"

# The Java jars serve the Java cluster and (d)'s peer (the 5.3 client unless the cluster is 4.9).
case "${RMQ_CLUSTER_FLAVOUR:-java5}" in
  rust) scripts/install-cluster.sh >&2 && scripts/install-java-cluster.sh 5 >&2 ;;
  java4) scripts/install-java-cluster.sh 4 >&2 ;;
  *) scripts/install-java-cluster.sh 5 >&2 ;;
esac
[[ -f target/plugins/filter.wasm && -f target/plugins/c-filter.wasm ]] || scripts/build-plugins.sh >&2
# The whole workspace, as every other build here: features unify the same way, so one cache
# serves consume-bench, host-bench and sandbox-bench.
# Row (b), rocketmq-client-rust, is a feature of the bench crate (~200 crates a release build
# otherwise skips); both bench scripts build with it so that they share one cache.
cargo build --quiet --release --workspace --bins --features rmq-wasm-bench/rust-peer -j "${CARGO_BUILD_JOBS:-2}" >&2

consume() { "$target/release/consume-bench" "$@"; }
host() { "$target/release/host-bench" "${@:-all}"; }

case "${1-}" in
  consume) shift; consume "$@" ;;
  host) shift; host "$@" ;;
  sandbox) shift; exec scripts/bench-sandbox.sh "$@" ;;
  "")
    echo "# scripts/bench.sh on $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -srm)," \
      "load average $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD)"
    # 4.x has no POP: its rows only on a 5.x broker.
    runs=ours,ours32,peer,raw,java,wasm,wasm-tag,wasm-warm
    [[ "${RMQ_CLUSTER_FLAVOUR:-java5}" == java5 ]] && runs+=,pop,pop-wasm
    echo; echo "## 1. consume-bench"
    consume -n "${BENCH_MESSAGES:-1000000}" --rounds "${BENCH_ROUNDS:-3}" --runs "$runs"
    echo; echo "## 2. host-bench (latency, memory, scale-out)"
    host all
    echo; echo "## 3. sandbox-bench"
    scripts/bench-sandbox.sh
    ;;
  *) consume "$@" ;;
esac
