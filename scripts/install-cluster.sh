#!/usr/bin/env bash
# Installs the rocketmq-rust 1.0.0 name server and broker (rocketmq-namesrv-rust,
# rocketmq-broker-rust) unless both are already on PATH or in ~/.cargo/bin.
# Idempotent; building them from scratch takes ~15 min on 2 cores (optimisation level 1, below).
set -euo pipefail

VERSION=1.0.0
BINS=(rocketmq-namesrv-rust rocketmq-broker-rust)
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"

find_bin() {
  command -v "$1" 2>/dev/null && return 0
  [[ -x "$CARGO_BIN/$1" ]] && { echo "$CARGO_BIN/$1"; return 0; }
  return 1
}

# One install at a time: .ci/run starts this in the background at its very beginning, and
# scripts/test.sh calls it again right before the tests that need rocketmq-rust; the second call
# waits here for the first and then finds both binaries.
lock="${CARGO_HOME:-$HOME/.cargo}/.rmq-wasm-install-cluster.lock"
mkdir -p "$(dirname "$lock")"
exec 9>"$lock"
flock 9

missing=()
for bin in "${BINS[@]}"; do
  if path=$(find_bin "$bin"); then
    echo "install-cluster: found $bin at $path"
  else
    missing+=("$bin")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-cluster: rocketmq-rust binaries present; nothing to do"
  exit 0
fi

crates=()
for bin in "${missing[@]}"; do
  case "$bin" in
    rocketmq-namesrv-rust) crates+=("rocketmq-namesrv@$VERSION") ;;
    rocketmq-broker-rust) crates+=("rocketmq-broker@$VERSION") ;;
  esac
done

echo "install-cluster: installing ${crates[*]} (cargo install --locked; this takes a while)"
start=$SECONDS
# Optimisation level 1 instead of release's 3: the build takes about half as long (1025 s against
# 2178 s, both measured on the 2-core VM beside other work) and the test cluster's load is small;
# the compatibility subset passes against either build. Override with RMQ_CLUSTER_OPT_LEVEL=3.
# One target directory for both crates: `cargo install a b` builds each in a fresh temporary
# directory of its own, so the dependencies the two share (tokio, the rocketmq-* crates…) were
# compiled twice. Removed afterwards: it is ~2 GiB the disk-judging broker would count.
target_dir=$(mktemp -d "${TMPDIR:-/tmp}/rmq-install-cluster.XXXXXX")
trap 'rm -rf "$target_dir"' EXIT
CARGO_PROFILE_RELEASE_OPT_LEVEL="${RMQ_CLUSTER_OPT_LEVEL:-1}" \
  cargo install --locked --target-dir "$target_dir" "${crates[@]}"
echo "install-cluster: installed ${crates[*]} in $((SECONDS - start)) s"

for bin in "${BINS[@]}"; do
  find_bin "$bin" >/dev/null || { echo "install-cluster: $bin still missing" >&2; exit 1; }
done
