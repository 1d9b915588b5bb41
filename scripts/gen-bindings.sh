#!/usr/bin/env bash
# Regenerates the checked-in guest bindings from wit/listener.wit with the pinned wit-bindgen.
#   C: guest-sdk/c/bindings/{listener.c,listener.h,listener_component_type.o} (`wit-bindgen c`)
# Installs wit-bindgen-cli at the pinned version with `cargo install` when it is missing or another
# version. Run after changing the WIT; CI does not regenerate (the output is committed).
set -euo pipefail
cd "$(dirname "$0")/.."
WIT_BINDGEN_VERSION=0.63.0
wit_bindgen=${WIT_BINDGEN:-$HOME/.cargo/bin/wit-bindgen}
if [[ "$("$wit_bindgen" --version 2>/dev/null | awk '{print $2}')" != "$WIT_BINDGEN_VERSION" ]]; then
  cargo install --locked wit-bindgen-cli --version "$WIT_BINDGEN_VERSION"
  wit_bindgen=$HOME/.cargo/bin/wit-bindgen
fi

# ---- C ------------------------------------------------------------------------------------------
"$wit_bindgen" c wit/listener.wit --world listener --out-dir guest-sdk/c/bindings
