#!/usr/bin/env bash
# Regenerates the Go bindings of the rmq:listener world into internal/wit/ and the wit-bindgen Go
# runtime they need into internal/witpkg/. Both are checked in: building a listener needs only the
# Go toolchain, no wit-bindgen and no module download.
#
# Pinned: wit-bindgen 0.63.0 (`cargo install wit-bindgen-cli@0.63.0 --locked`). Its generated code
# imports go.bytecodealliance.org/pkg v0.4.0, which the Go module proxy does not serve; the same
# source ships inside the wit-bindgen-go 0.63.0 crate (src/pkg, Apache-2.0), so it is copied from
# there (only the parts a synchronous world uses) and the imports are rewritten to point at it.
#
# Local changes to that runtime (see internal/witpkg/runtime/runtime.go, marked "rmq-wasm:"):
# cabi_realloc does not call `adapter_monotonic_clock_set_paused`, an export only newer
# WASI preview-1 adapters have (wasmtime 48's does not); the SDK keeps the Go GC from starting
# inside cabi_realloc instead (rmq/gc_wasip1.go).
#
# Usage: guest-sdk/go/scripts/gen-bindings.sh   (from anywhere; needs wit-bindgen 0.63.0 on PATH
# or in ~/.cargo/bin, and the crate source in ~/.cargo/registry, which `cargo install` leaves)
set -euo pipefail
sdk=$(cd "$(dirname "$0")/.." && pwd)
wit=$sdk/../../wit
module=rmqwasm.dev/sdk
want=0.63.0
bindgen=$(command -v wit-bindgen || echo "$HOME/.cargo/bin/wit-bindgen")
have=$("$bindgen" --version | awk '{print $2}')
[[ $have == "$want" ]] || { echo "need wit-bindgen $want, found $have ($bindgen)" >&2; exit 1; }
crate=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/wit-bindgen-go-$want | head -1)
[[ -d $crate/src/pkg/wit ]] || { echo "wit-bindgen-go $want source not found under ~/.cargo/registry" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bindgen" go "$wit/listener.wit" --pkg-name "$module/internal/wit" --out-dir "$tmp/wit" --quiet >/dev/null

rm -rf "$sdk/internal/wit/imports" "$sdk/internal/wit/exports/wit_exports" "$sdk/internal/witpkg"
mkdir -p "$sdk/internal/wit" "$sdk/internal/witpkg/types" "$sdk/internal/witpkg/runtime"
cp -r "$tmp/wit/imports" "$sdk/internal/wit/"
mkdir -p "$sdk/internal/wit/exports"
cp -r "$tmp/wit/exports/wit_exports" "$sdk/internal/wit/exports/"
for f in option.go result.go tuple.go unit.go; do
  cp "$crate/src/pkg/wit/types/$f" "$sdk/internal/witpkg/types/"
done
cp "$crate/src/pkg/wit/runtime/runtime.go" "$crate/src/pkg/wit/runtime/empty.s" "$sdk/internal/witpkg/runtime/"
cp "$crate/src/pkg/LICENSE" "$sdk/internal/witpkg/LICENSE"

# Imports: the copied runtime instead of go.bytecodealliance.org/pkg.
grep -rl 'go.bytecodealliance.org/pkg/wit/' "$sdk/internal" | xargs sed -i "s#go.bytecodealliance.org/pkg/wit/#$module/internal/witpkg/#"
# The runtime change described above.
python3 - "$sdk/internal/witpkg/runtime/runtime.go" <<'PY'
import sys
path = sys.argv[1]
src = open(path).read()
old_decl = "//nolint:unused\n//go:wasmimport wasi_snapshot_preview1 adapter_monotonic_clock_set_paused\nfunc adapterMonotonicClockSetPaused(paused bool)\n"
assert old_decl in src, "runtime.go changed upstream: review the rmq-wasm patch"
src = src.replace(old_decl, "// rmq-wasm: no adapter_monotonic_clock_set_paused import (wasmtime 48's adapter lacks it);\n// the SDK keeps the GC from starting inside cabi_realloc (rmq/gc_wasip1.go).\n")
src = src.replace("\t\tadapterMonotonicClockSetPaused(true)\n", "").replace("\t\tadapterMonotonicClockSetPaused(false)\n", "")
assert "adapterMonotonicClockSetPaused" not in src
open(path, "w").write(src)
PY
# Wasm-only packages (they declare //go:wasmimport / //go:wasmexport functions) get a build
# constraint, so that `go test ./...` and `go vet ./...` work on the native GOOS.
for f in $(grep -rl 'go:wasm\(im\|ex\)port' "$sdk/internal" --include='*.go'); do
  for g in "$(dirname "$f")"/*.go "$(dirname "$f")"/*.s; do
    [[ -f $g ]] && ! grep -q '^//go:build wasip1' "$g" && sed -i '1i //go:build wasip1\n' "$g"
  done
done
(cd "$sdk" && gofmt -w internal)
echo "bindings regenerated in $sdk/internal (wit-bindgen $want)"
