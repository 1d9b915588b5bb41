#!/usr/bin/env bash
# Builds the README's "Writing your own plugin" examples exactly as a user would: for each
# language, the files and the build commands are taken from README.md (the fenced block after
# each `<!-- readme-plugin LANG FILE -->` / `<!-- readme-plugin LANG build -->` marker), written to
# a fresh directory outside the repository, and the commands run there with RMQ_WASM set to this
# checkout. The result is copied to OUT/LANG.wasm. The README cannot drift from what works: a
# changed command or source is what runs. tests/tests/readme_plugins.rs loads and calls the
# results.
#
# Usage: scripts/readme-plugins.sh OUT [python] [javascript] [rust] [go]   (default: all four)
# Needs the toolchains scripts/build-plugins.sh installs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: $0 OUT [python|javascript|rust|go]...}
shift
langs=("$@")
((${#langs[@]})) || langs=(python javascript rust go)
mkdir -p "$out"
out=$(cd "$out" && pwd)

# The fenced block after the marker line `<!-- readme-plugin $1 $2 -->`, without its fences.
block() {
  awk -v marker="<!-- readme-plugin $1 $2 -->" '
    $0 == marker { found = 1; next }
    found && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }
  ' "$root/README.md"
}

for lang in "${langs[@]}"; do
  dir=$(mktemp -d "${TMPDIR:-/tmp}/readme-plugin-$lang.XXXXXX")
  files=$(grep -o "<!-- readme-plugin $lang [^ ]* -->" "$root/README.md" | awk '{print $4}' | grep -vx build || true)
  [[ -n $files ]] || { echo "README.md has no readme-plugin blocks for $lang" >&2; exit 1; }
  for f in $files; do
    mkdir -p "$dir/$(dirname "$f")"
    block "$lang" "$f" >"$dir/$f"
  done
  commands=$(block "$lang" build)
  [[ -n $commands ]] || { echo "README.md has no build commands for $lang" >&2; exit 1; }
  echo "==> $lang in $dir"
  start=$SECONDS
  (cd "$dir" && RMQ_WASM=$root bash -euo pipefail -c "$commands")
  cp "$dir/my-listener.wasm" "$out/$lang.wasm"
  echo "    $lang.wasm: $(stat -c %s "$out/$lang.wasm") bytes in $((SECONDS - start)) s"
  rm -rf "$dir"
done
