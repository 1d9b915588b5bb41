#!/usr/bin/env bash
# The demo: a local Apache RocketMQ 5.3 cluster (RMQ_CLUSTER_FLAVOUR=java4|rust for the others),
# a steady producer, and the sample plugin `filter.wasm` consuming through `rmq-wasm run` with its
# operators' endpoint. Every second it prints, per listener, messages per second, outcomes,
# aborts, lag and the serving plugin version (`rmq-wasm status --watch 1s`); it shows the first
# retried message and the first dead letter with its reason, and the /metrics URL.
#
#   scripts/demo.sh                    # until Ctrl-C
#   scripts/demo.sh --duration 30s     # bounded (a check: exits non-zero unless it saw a
#                                      # success, a retry and a dead letter)
#
# Hot reload: while it runs, edit plugins/filter/src/lib.rs (say, the dead-letter reason) and run
# scripts/build-plugins.sh; the next lines show the new version and `reloads 1`, and the next
# dead letter carries the new reason. PLUGIN=path.wasm runs another build of the filter.
#
# Ctrl-C (or the end of --duration) stops everything the demo started: the producer, the watch,
# `rmq-wasm run` (gracefully: in-flight messages finish, offsets are committed) and the cluster
# (unless KEEP_CLUSTER=1).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

duration=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --duration) duration=${2:?--duration needs a value like 30s}; shift 2 ;;
    *) echo "usage: $0 [--duration 30s]" >&2; exit 2 ;;
  esac
done
limit=0
if [[ -n $duration ]]; then
  [[ $duration =~ ^([0-9]+)(s|m)?$ ]] || { echo "--duration: $duration is not like 30s or 2m" >&2; exit 2; }
  limit=${BASH_REMATCH[1]}
  if [[ ${BASH_REMATCH[2]} == m ]]; then limit=$((limit * 60)); fi
fi

TOPIC=${TOPIC:-DemoOrders}
RATE=${RATE:-50}                       # messages per second, in one send per second
DIR=${CLUSTER_DIR:-$root/target/demo-cluster}
PLUGIN=${PLUGIN:-$root/target/plugins/filter.wasm}
GROUP=demo_filter_$$
mkdir -p "$DIR"

[[ -f $PLUGIN ]] || scripts/build-plugins.sh
# One build of both binaries (rmq-wasm, and the cluster harness scripts/cluster.sh runs).
cargo build -q --workspace --bins
BIN=$root/target/debug/rmq-wasm
cluster() { "$root/target/debug/cluster" "$@"; }
case "${RMQ_CLUSTER_FLAVOUR:-java5}" in
  rust) scripts/install-cluster.sh >&2 ;;
  *) scripts/install-java-cluster.sh >&2 ;;
esac

# Every process the demo starts runs in its own session (setsid): Ctrl-C reaches the demo only,
# and the demo stops each of them, `rmq-wasm run` last among ours so its shutdown is graceful.
pids=()
run_pid=""
cluster_started=0
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  if [[ -n $run_pid ]]; then
    kill -TERM "$run_pid" 2>/dev/null || true
    wait "$run_pid" 2>/dev/null || true
    echo "== rmq-wasm run stopped; its log: $DIR/run.log"
    tail -n 3 "$DIR/run.log" | grep -v '^\s*$' || true
  fi
  if [[ $cluster_started == 1 && ${KEEP_CLUSTER:-0} != 1 ]]; then
    cluster stop --dir "$DIR" >/dev/null 2>&1 || true
    echo "== cluster stopped"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== starting a local cluster in $DIR"
cluster start --dir "$DIR" >/dev/null
cluster_started=1
# NAMESRV_ADDR and CLUSTER_NAME, which rmq-wasm reads from the environment.
# shellcheck disable=SC1090,SC1091
set -a; source "$DIR/cluster.env"; set +a
"$BIN" create-topic "$TOPIC" --queues 4 >/dev/null

cat >"$DIR/listeners.toml" <<EOF
namesrv = "$NAMESRV_ADDR"

[http]
listen = "127.0.0.1:0"                  # a free port, printed below

[[listener]]
name = "demo-filter"
group = "$GROUP"
topic = "$TOPIC"
wasm = "$PLUGIN"                        # watched: a rebuilt plugin is swapped in (hot reload)
max_reconsume_times = 3
[listener.config]
tag = "Retry"                           # messages tagged Retry are retried once...
delay-level = "1"
dead-letter-after = "1"                 # ...then dead-lettered with the plugin's reason
EOF

setsid "$BIN" run --config "$DIR/listeners.toml" >"$DIR/run.log" 2>&1 &
run_pid=$!
addr=""
for _ in $(seq 600); do
  addr=$(grep -o 'serving /metrics.*' "$DIR/run.log" | grep -o 'addr=[0-9.:]*' | head -n1 | cut -d= -f2 || true)
  [[ -n $addr ]] && break
  kill -0 "$run_pid" 2>/dev/null || { cat "$DIR/run.log"; exit 1; }
  sleep 0.1
done
[[ -n $addr ]] || { echo "rmq-wasm run did not start:"; cat "$DIR/run.log"; exit 1; }
echo "== rmq-wasm run (pid $run_pid): metrics at http://$addr/metrics, status at http://$addr/status"

# The steady producer: RATE messages a second, and every 5 s one tagged Retry.
setsid bash -c '
  n=0
  while true; do
    "$0" produce "$1" --count "$2" --tag Ok --batch 16 >/dev/null
    if ((n % 5 == 0)); then
      "$0" produce "$1" --tag Retry --key "retry-$n" --body "order $n: retried once, then dead-lettered" >/dev/null
    fi
    n=$((n + 1))
    sleep 1
  done' "$BIN" "$TOPIC" "$RATE" </dev/null >"$DIR/producer.log" 2>&1 &
pids+=("$!")

setsid "$BIN" status --addr "$addr" --watch 1s &
pids+=("$!")

# The first retried message and the first dead letter, shown once each.
count() { curl -fsS "http://$addr/metrics" | awk -v o="outcome=\"$1\"" 'index($0, "rmq_wasm_consumed_messages_total{") == 1 && index($0, o) { n += $NF } END { print n + 0 }'; }
shown_retry=0
shown_dlq=0
started=$SECONDS
while true; do
  # A sent-back message reaches %RETRY%<group> when its delay ends: asked again until it is there.
  if ((shown_retry == 0)) && (($(count retry) > 0)); then
    retried=$("$BIN" peek --topic "%RETRY%$GROUP" --from first --count 1 2>/dev/null || true)
    if [[ -n $retried ]]; then
      echo "== a retried message, as redelivered from %RETRY%$GROUP:"
      sed 's/^/   /' <<<"$retried"
      shown_retry=1
    fi
  fi
  if ((shown_dlq == 0)) && (($(count dead_letter) > 0)); then
    echo "== a dead letter and its reason (rmq-wasm dlq list --group $GROUP):"
    "$BIN" dlq list --group "$GROUP" --count 1 | sed 's/^/   /' || true
    shown_dlq=1
  fi
  if ((limit > 0 && SECONDS - started >= limit)); then break; fi
  kill -0 "$run_pid" 2>/dev/null || { echo "rmq-wasm run exited:"; tail -n 20 "$DIR/run.log"; exit 1; }
  sleep 1
done

success=$(count success)
echo "== after $duration: success $success, retry $(count retry), dead letter $(count dead_letter)"
((success > 0 && shown_retry == 1 && shown_dlq == 1)) || { echo "the demo did not show every outcome"; exit 1; }
