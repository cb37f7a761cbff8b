#!/usr/bin/env bash
# Installs every tool the build and the test suites need, idempotently, at pinned versions, from
# the package registries only (crates, npm, Debian). A second run with everything present takes
# about a second: each step first checks what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned versions. WASM_BINDGEN must equal the wasm-bindgen version in Cargo.lock: wasm-pack
# only uses the CLI on PATH when the two match exactly.
WASM_BINDGEN=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
WASM_PACK=0.15.1
GECKODRIVER=0.37.1

export PATH="$HOME/.cargo/bin:$PATH"
# Cargo tools run the same at opt-level 1 and build markedly faster.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=1

log() { printf 'setup: %s\n' "$*"; }

have_version() { # have_version CMD WANT: CMD --version mentions WANT
  # grep reads all of it (no -q): a grep that quits at the first match makes a tool that prints
  # more lines (geckodriver) die of SIGPIPE, which pipefail reports as a failed check, and the
  # tool was reinstalled (minutes of compiling) on about one build in seven.
  command -v "$1" >/dev/null 2>&1 && "$1" --version 2>/dev/null | grep -F "$2" >/dev/null
}

apt_packages() {
  local missing=()
  # dpkg -s succeeds for a removed package whose config files remain; ask for the real status.
  for p in "$@"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

rust_tools() {
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    log "rustup target add wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
  fi
  if ! have_version wasm-bindgen "$WASM_BINDGEN"; then
    log "cargo install wasm-bindgen-cli $WASM_BINDGEN"
    # Unlocked on purpose: the published lock of 0.2.130 pins a crate version the registry lacks.
    cargo install wasm-bindgen-cli --version "=$WASM_BINDGEN" --no-default-features --force
  fi
  if ! have_version wasm-pack "$WASM_PACK"; then
    log "cargo install wasm-pack $WASM_PACK"
    cargo install wasm-pack --version "=$WASM_PACK" --locked --force
  fi
  if ! have_version geckodriver "$GECKODRIVER"; then
    log "cargo install geckodriver $GECKODRIVER"
    cargo install geckodriver --version "=$GECKODRIVER" --locked --force
  fi
}

npm_deps() { # npm_deps DIR: install DIR's locked dependencies when they are missing or stale
  local dir=$1 stamp=$1/node_modules/.foreman-installed
  if [ ! -f "$stamp" ] || [ "$dir/package.json" -nt "$stamp" ] || [ "$dir/package-lock.json" -nt "$stamp" ]; then
    log "npm install in $dir"
    # `npm install` with exact pins and the committed lock, not `npm ci`: npm's lock for
    # opencode-ai lacks the other platforms' optional packages, and `npm ci` refuses it.
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error)
    touch "$stamp"
  fi
}

case "${1:-all}" in
  browsers) apt_packages chromium chromium-driver firefox-esr ;;
  rust) rust_tools ;;
  npm) npm_deps . ; npm_deps plugin ;;
  all)
    apt_packages chromium chromium-driver firefox-esr
    rust_tools
    npm_deps .
    npm_deps plugin
    ;;
  *) echo "usage: setup.sh [all|browsers|rust|npm]" >&2; exit 2 ;;
esac
