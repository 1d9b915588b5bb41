#!/usr/bin/env bash
# Runs every `cargo fuzz` target in fuzz/ for RUNS executions each (default 10,000,000), one
# target at a time with one libFuzzer worker, so it can share a small machine. Each target starts
# from the committed seeds in fuzz/seeds/<target>/ and grows a scratch corpus in
# fuzz/corpus/<target>/ (git-ignored, kept between runs). Crashes land in
# fuzz/artifacts/<target>/; minimise one with `cargo +nightly fuzz tmin -s none -a <target> <file>`
# (from the repo root) and turn it into a unit test next to the code that failed.
#
# Needs a nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz
# (`cargo install cargo-fuzz --locked`). Not run by CI: 10M executions of all targets take
# about an hour on two cores.
#
# Usage: scripts/fuzz.sh [RUNS] [TARGET...]      (no TARGET: every target in fuzz/Cargo.toml)
# Env:   FUZZ_SANITIZER  none (default: the decoders are safe Rust, and ASan halves exec/s) or
#                        address
#        FUZZ_MAX_TIME   seconds per target, stops a target early (default: no limit)
#        FUZZ_MAX_LEN    longest input in bytes (default: 4096 for frames and message records,
#                        2048 for JSON bodies, 1024 for header fields; exec/s falls steeply as
#                        inputs grow, and every seed fits)
#        CARGO_BUILD_JOBS (default 1)
# Per-target logs go to fuzz/logs/<target>.log; a summary table is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-10000000}"
shift || true
sanitizer="${FUZZ_SANITIZER:-none}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh needs a nightly toolchain and cargo-fuzz:" >&2
    echo "  rustup toolchain install nightly && cargo install cargo-fuzz --locked" >&2
    exit 2
fi

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi

# Debug assertions on (`-a`): overflow checks turn silent wrap-around into findings.
cargo +nightly fuzz build -s "$sanitizer" -a

mkdir -p fuzz/logs
summary=()
status=0
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target"
    args=(-runs="$runs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    [[ -n "${FUZZ_MAX_TIME:-}" ]] && args+=(-max_total_time="$FUZZ_MAX_TIME")
    case "$target" in
        json_lenient | route_data | running_info | reset_offset)
            args+=(-dict=fuzz/json.dict -max_len="${FUZZ_MAX_LEN:-2048}") ;;
        broker_headers) args+=(-max_len="${FUZZ_MAX_LEN:-1024}") ;;
        *) args+=(-max_len="${FUZZ_MAX_LEN:-4096}") ;;
    esac
    log="fuzz/logs/$target.log"
    echo "== $target: ${args[*]}"
    start=$(date +%s)
    result=ok
    # The scratch corpus comes first: libFuzzer writes new inputs only to the first directory.
    if ! cargo +nightly fuzz run -s "$sanitizer" -a "$target" \
        "fuzz/corpus/$target" "fuzz/seeds/$target" -- "${args[@]}" >"$log" 2>&1; then
        result="FAILED (see $log and fuzz/artifacts/$target/)"
        status=1
    fi
    secs=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
    summary+=("$(printf '%-16s %12s execs %8s exec/s %6ss  %-18s %s' \
        "$target" "${execs:-?}" "${speed:-?}" "$secs" "${cov:-}" "$result")")
done

echo
printf '%s\n' "${summary[@]}"
exit "$status"
