#!/usr/bin/env bash
# Prints rustc flags that rename where this machine keeps dependency sources to `deps/`, so the
# panic locations compiled into the .wasm name a crate and file, not a home directory or the
# registry it came from. Run after the dependencies are fetched (`cargo fetch`).
set -euo pipefail
src="${CARGO_HOME:-$HOME/.cargo}/registry/src"
for dir in "$src"/*/; do
  [ -d "$dir" ] && printf -- '--remap-path-prefix=%s=deps ' "${dir%/}"
done
printf -- '--remap-path-prefix=%s=deps' "${CARGO_HOME:-$HOME/.cargo}/git/checkouts"
