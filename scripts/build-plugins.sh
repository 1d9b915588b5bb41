#!/usr/bin/env bash
# Builds every listener plugin into target/plugins/<name>.wasm and checks that each is a component
# exporting the rmq:listener world (`rmq-wasm plugin check`, built here as target/debug/rmq-wasm):
#   - Rust (plugins/Cargo.toml workspace): cargo, the wasm32-wasip2 target pinned in
#     rust-toolchain.toml;
#   - Python (plugins/py-*): componentize-py, from a venv in plugins/.venv (pins in
#     plugins/requirements-build.txt), with the Python SDK (guest-sdk/python, module rmq_wasm)
#     on the module path;
#   - JavaScript (plugins/js-*): componentize-js through its JS API (build.mjs), installed with
#     `npm ci` into the plugin's node_modules from its package-lock.json; run from the repository
#     root, so that the plugins' imports of the JavaScript SDK (guest-sdk/js) resolve;
#   - Go (plugins/go-*): the Go toolchain on PATH (or $GO) with GOOS=wasip1, the SDK from
#     guest-sdk/go, componentized by `rmq-wasm plugin componentize` (built here, debug);
#   - C (plugins/c-*): Debian's clang + wasi-libc (apt-get install when missing and running as
#     root), made a component by `rmq-wasm plugin componentize` (the debug binary, built here).
# Installs what is missing itself; idempotent, and fast when nothing changed (inputs hashed).
#
# Usage: scripts/build-plugins.sh [--test] [--smoke]
#   --test   also run the native unit tests of the Rust plugins (cargo test in plugins/), of the Go
#            SDK and plugins (go test), of the C SDK (guest-sdk/c/tests) and of the C plugins
#            (plugins/c-*/*_test.c)
#   --smoke  also call every component once in node (jco) against a fake host
#            (scripts/smoke-plugins.mjs)
# Env: CARGO_BUILD_JOBS (default: every core), PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/target/plugins
venv=$root/plugins/.venv
jobs=${CARGO_BUILD_JOBS:-$(nproc)}
python=${PYTHON:-python3}
run_tests=0
run_smoke=0
for arg in "$@"; do
  case $arg in
    --test) run_tests=1 ;;
    --smoke) run_smoke=1 ;;
    *)
      echo "usage: $0 [--test] [--smoke]" >&2
      exit 2
      ;;
  esac
done

start=$SECONDS
mkdir -p "$out"
declare -A status

step() { echo "==> $*"; }
# Runs a command and prints how long it took.
timed() {
  local t=$SECONDS
  "$@"
  echo "    done in $((SECONDS - t)) s"
}

# Hash of files (paths sorted), for up-to-date checks.
inputs_hash() { find "$@" -type f ! -path '*/node_modules/*' ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1; }

# Copies $1 to $2 unless identical; records built/up to date for the summary.
install_artifact() {
  local name=$3
  if cmp -s "$1" "$2"; then
    status[$name]="up to date"
  else
    cp "$1" "$2.tmp" && mv "$2.tmp" "$2"
    status[$name]="built"
  fi
}

# build_host WHY: builds the host's debug binary once per run and sets $rmq_wasm to its path.
# `--examples` (the workspace has none) makes cargo resolve features as `cargo test --workspace`
# does, dev-dependencies included: built without it, ~250 dependencies (tokio, serde, flate2…)
# got other feature sets and scripts/test.sh compiled them all a second time (CI, #15).
rmq_wasm=
build_host() {
  [[ -n $rmq_wasm ]] && return
  step "$1: cargo build --workspace --bin rmq-wasm --examples (the test build's features)"
  timed cargo build --quiet --locked --workspace --bin rmq-wasm --examples -j "$jobs"
  rmq_wasm=${CARGO_TARGET_DIR:-$root/target}/debug/rmq-wasm
}

# ---- tools: venv with componentize-py ------------------------------------------------------------
want=$(sha256sum plugins/requirements-build.txt | cut -d' ' -f1)
if [[ ! -x $venv/bin/componentize-py || "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]]; then
  step "venv: pip install -r plugins/requirements-build.txt into plugins/.venv"
  [[ -x $venv/bin/pip ]] || "$python" -m venv "$venv"
  timed "$venv/bin/pip" install --quiet --disable-pip-version-check -r plugins/requirements-build.txt
  echo "$want" >"$venv/.requirements.sha256"
fi

# ---- Rust ---------------------------------------------------------------------------------------
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
step "rust: cargo build --release --target wasm32-wasip2 (plugins/)"
rust_target=$root/target/plugins-build
(cd plugins && CARGO_TARGET_DIR=$rust_target timed cargo build --quiet --release --locked --target wasm32-wasip2 -j "$jobs")
rust_plugins=$(sed -n '/^members = \[/,/^\]/p' plugins/Cargo.toml | grep -o '"[^"]*"' | tr -d '"')
for p in $rust_plugins; do
  install_artifact "$rust_target/wasm32-wasip2/release/${p//-/_}.wasm" "$out/$p.wasm" "$p"
done
if ((run_tests)); then
  step "rust: cargo test (plugins/, native)"
  (cd plugins && CARGO_TARGET_DIR=$rust_target timed cargo test --quiet --locked -j "$jobs")
fi

# ---- Python -------------------------------------------------------------------------------------
for dir in plugins/py-*/; do
  name=$(basename "$dir")
  hash=$(inputs_hash wit "$dir" guest-sdk/python/rmq_wasm plugins/requirements-build.txt)
  if [[ -f $out/$name.wasm && "$(cat "$out/.$name.sha256" 2>/dev/null)" == "$hash" ]]; then
    status[$name]="up to date"
    continue
  fi
  step "python: componentize-py $name"
  # --stub-wasi: every WASI import becomes a trapping stub inside the component, so it imports
  # only the rmq:listener world (Python's `random` is seeded at build time: not for secrets).
  timed "$venv/bin/componentize-py" --quiet -d wit -w listener componentize --stub-wasi \
    -p "$dir" -p guest-sdk/python app -o "$out/$name.wasm.tmp"
  mv "$out/$name.wasm.tmp" "$out/$name.wasm"
  echo "$hash" >"$out/.$name.sha256"
  status[$name]="built"
done

# ---- JavaScript ---------------------------------------------------------------------------------
for dir in plugins/js-*/; do
  name=$(basename "$dir")
  [[ -f $dir/package.json ]] || continue # built below, with js-json-router's toolchain
  lock=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [[ "$(cat "$dir/node_modules/.lock.sha256" 2>/dev/null)" != "$lock" ]]; then
    step "js: npm ci in $dir"
    (cd "$dir" && timed npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock" >"$dir/node_modules/.lock.sha256"
  fi
  hash=$(inputs_hash wit "$dir" guest-sdk/js/rmq-wasm.js)
  if [[ -f $out/$name.wasm && "$(cat "$out/.$name.sha256" 2>/dev/null)" == "$hash" ]]; then
    status[$name]="up to date"
    continue
  fi
  step "js: componentize-js $name"
  timed node "$dir/build.mjs" "$root/wit" "$out/$name.wasm" "$dir/listener.js"
  echo "$hash" >"$out/.$name.sha256"
  status[$name]="built"
done

# A JS plugin without a package.json of its own (a test plugin) is built with js-json-router's
# toolchain, installed by the loop above: one set of node_modules (~400 MB) for all of them.
toolchain=plugins/js-json-router
for dir in plugins/js-*/; do
  name=$(basename "$dir")
  [[ -f $dir/package.json ]] && continue
  hash=$(inputs_hash wit "$dir" guest-sdk/js/rmq-wasm.js "$toolchain/build.mjs" "$toolchain/package-lock.json")
  if [[ -f $out/$name.wasm && "$(cat "$out/.$name.sha256" 2>/dev/null)" == "$hash" ]]; then
    status[$name]="up to date"
    continue
  fi
  step "js: componentize-js $name (toolchain of $toolchain)"
  timed node "$toolchain/build.mjs" "$root/wit" "$out/$name.wasm" "$dir/listener.js"
  echo "$hash" >"$out/.$name.sha256"
  status[$name]="built"
done

# ---- Go -----------------------------------------------------------------------------------------
# Go 1.25+ (GOOS=wasip1, //go:wasmexport), the SDK in guest-sdk/go (bindings checked in, no module
# to download), then `rmq-wasm plugin componentize` (embeds the world, adds the WASI preview-1
# adapter). -checklinkname=0: the wit-bindgen Go runtime links runtime.sbrk for cabi_realloc calls
# made before the Go runtime is initialised.
go_bin=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
go_plugins=(plugins/go-*/)
if [[ -d ${go_plugins[0]} ]]; then
  [[ -x $go_bin ]] || { echo "Go not found (set GO=/path/to/go; Go 1.25 or newer)" >&2; exit 1; }
  build_host "go: the host's plugin componentize verb"
  for dir in "${go_plugins[@]}"; do
    name=$(basename "$dir")
    hash=$(inputs_hash wit guest-sdk/go "$dir")
    if [[ -f $out/$name.wasm && "$(cat "$out/.$name.sha256" 2>/dev/null)" == "$hash" ]]; then
      status[$name]="up to date"
      continue
    fi
    step "go: go build (GOOS=wasip1) + rmq-wasm plugin componentize $name"
    go_start=$SECONDS
    (cd "$dir" && GOOS=wasip1 GOARCH=wasm "$go_bin" build -buildmode=c-shared -ldflags=-checklinkname=0 \
      -o "$out/$name.core.wasm.tmp" .)
    "$rmq_wasm" plugin componentize "$out/$name.core.wasm.tmp" --out "$out/$name.wasm.tmp"
    rm "$out/$name.core.wasm.tmp"
    mv "$out/$name.wasm.tmp" "$out/$name.wasm"
    echo "    done in $((SECONDS - go_start)) s"
    echo "$hash" >"$out/.$name.sha256"
    status[$name]="built"
  done
  if ((run_tests)); then
    step "go: go test (guest-sdk/go and plugins/go-*, native)"
    (cd guest-sdk/go && timed "$go_bin" test ./...)
    for dir in "${go_plugins[@]}"; do (cd "$dir" && timed "$go_bin" test ./...); done
  fi
fi

# ---- C ------------------------------------------------------------------------------------------
# One clang invocation per plugin: its sources (not *_test.c), the SDK and the generated bindings
# (guest-sdk/c; the component-type object says which world the module implements), a reactor
# module (no main; `_initialize` runs libc's constructors once per instance).
c_sdk=guest-sdk/c
c_flags=(--target=wasm32-wasi --sysroot=/usr -mexec-model=reactor -O2 -std=c11 -Wall -Wextra -Werror
  -Wl,--strip-debug -I"$c_sdk")
c_packages=(clang lld wasi-libc libclang-rt-dev-wasm32)
c_toolchain_works() { echo 'int x;' | clang "${c_flags[@]}" -x c -o /dev/null - 2>/dev/null; }
if ! c_toolchain_works; then
  if ((EUID == 0)) && command -v apt-get >/dev/null; then
    step "c: apt-get install ${c_packages[*]}"
    timed bash -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${c_packages[*]} >/dev/null"
  fi
  c_toolchain_works || {
    echo "C plugins need clang with the wasm32-wasi target and wasi-libc: apt-get install ${c_packages[*]}" >&2
    exit 1
  }
fi
c_build=$root/target/plugins-build/c
# build_c NAME SOURCE...: the core module, then the component in $out/NAME.wasm.
build_c() {
  local name=$1
  shift
  clang "${c_flags[@]}" -o "$c_build/$name.core.wasm" "$@" "$c_sdk/rmq_listener.c" \
    "$c_sdk/bindings/listener.c" "$c_sdk/bindings/listener_component_type.o"
  "$rmq_wasm" plugin componentize "$c_build/$name.core.wasm" --out "$out/$name.wasm"
}
mkdir -p "$c_build"
for dir in plugins/c-*/; do
  name=$(basename "$dir")
  hash=$(inputs_hash wit "$c_sdk" "$dir" host/src/wasm/componentize.rs)
  if [[ -f $out/$name.wasm && "$(cat "$out/.$name.sha256" 2>/dev/null)" == "$hash" ]]; then
    status[$name]="up to date"
    continue
  fi
  build_host "c: the host's plugin componentize verb"
  step "c: clang + rmq-wasm plugin componentize $name"
  mapfile -t sources < <(find "$dir" -maxdepth 1 -name '*.c' ! -name '*_test.c' | sort)
  timed build_c "$name" "${sources[@]}"
  echo "$hash" >"$out/.$name.sha256"
  status[$name]="built"
done
if ((run_tests)); then
  # Natively, with the sanitizers when the compiler has them (gcc does; Debian's clang 14 lacks
  # the ASan runtime unless libclang-rt-14-dev is installed).
  native=(cc -std=c11 -O1 -g -Wall -Wextra -Werror -I"$c_sdk")
  echo 'int main(void){return 0;}' | "${native[@]}" -fsanitize=address,undefined -x c -o "$c_build/probe" - 2>/dev/null &&
    native+=(-fsanitize=address,undefined)
  c_test() {
    local bin=$c_build/$1
    shift
    "${native[@]}" -o "$bin" "$@" "$c_sdk/rmq_testing.c" "$c_sdk/rmq_listener.c" && "$bin"
  }
  step "c: SDK native tests (guest-sdk/c/tests)"
  timed c_test sdk_test "$c_sdk/tests/sdk_test.c"
  for dir in plugins/c-*/; do
    name=$(basename "$dir")
    step "c: native tests of $name"
    mapfile -t sources < <(find "$dir" -maxdepth 1 -name '*.c' | sort)
    timed c_test "${name}_test" "${sources[@]}"
  done
fi

# ---- check and summary --------------------------------------------------------------------------
# The host's own engine judges each component (the same load path as a listener), and --wasi
# keeps each plugin to the WASI it is meant to import.
build_host "host: plugin check"
echo
printf '%-20s %-6s %10s  %-11s %s\n' plugin lang bytes status "WASI imports"
failed=0
for wasm in "$out"/*.wasm; do
  name=$(basename "$wasm" .wasm)
  case $name in
    py-*) lang=python allowed="" ;;
    js-*) lang=js allowed="" ;;
    go-*) lang=go allowed="wasi:io/,wasi:cli/,wasi:clocks/,wasi:random/,wasi:filesystem/" ;; # Go's runtime (wasip1 adapter)
    # wasi-libc's stdio (pulled in by printf), through the preview-1 adapter: fd_seek/fd_close
    # become wasi:filesystem (no preopens are granted: no file is reachable), and the adapter
    # imports the wall clock. None of them is called unless the plugin writes to stdout.
    c-*) lang=c allowed="wasi:io/,wasi:cli/,wasi:clocks/,wasi:filesystem/" ;;
    fs-escape) lang=rust allowed="wasi:" ;;
    probe) lang=rust allowed="wasi:io/,wasi:cli/,wasi:clocks/" ;; # reads the clocks (tests frozen ones)
    resource-hog) lang=rust allowed="wasi:io/,wasi:cli/,wasi:clocks/" ;;
    *) lang=rust allowed="wasi:io/,wasi:cli/" ;;
  esac
  if [[ -z ${status[$name]:-} ]]; then
    continue # a leftover from a removed plugin
  fi
  if report=$(RUST_LOG=warn "$rmq_wasm" plugin check --wasi "${allowed:-none}" "$wasm"); then
    # WASI imports per package, e.g. `wasi:io(3) wasi:cli(11)`; `-` for none.
    wasi=$({ grep -o '^  wasi:[^/]*' <<<"$report" || true; } | sort | uniq -c | awk '{printf "%s%s(%d)", sep, $2, $1; sep=" "}')
    wasi=${wasi:--}
  else
    failed=1
    wasi="(check failed)"
    echo "$report" >&2
  fi
  printf '%-20s %-6s %10s  %-11s %s\n' "$name" "$lang" "$(stat -c %s "$wasm")" "${status[$name]}" "$wasi"
done
echo "plugins in $out (${#status[@]} components, $((SECONDS - start)) s)"
((failed == 0)) || {
  echo "some components do not match the world (see above)" >&2
  exit 1
}

if ((run_smoke)); then
  step "smoke: every component once in node against a fake host"
  jco_dir=plugins/js-json-router
  # The Python component uses extended-const, still behind a flag in node 20.
  node --experimental-wasm-extended-const scripts/smoke-plugins.mjs "$out" "$jco_dir/node_modules/.bin/jco" "$root/target/plugins-smoke"
fi
