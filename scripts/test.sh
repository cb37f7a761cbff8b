#!/usr/bin/env bash
# Runs every test suite, then repeats each runner's summary line at the end so that a run that
# executed nothing is visible. Exits non-zero when any suite fails (all suites still run).
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=never NO_COLOR=1
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-120}
export WASM_BINDGEN_TEST_DRIVER_TIMEOUT=${WASM_BINDGEN_TEST_DRIVER_TIMEOUT:-60}

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
summary=()
failed_suites=()
total_pass=0
total_fail=0

# step NAME COMMAND...: runs a check whose only output that matters is its exit code.
step() {
  local name=$1; shift
  echo "=== $name: $*"
  if "$@"; then summary+=("$name: ok"); else summary+=("$name: FAILED"); failed_suites+=("$name"); fi
}

# suite NAME KIND COMMAND...: runs a test runner, keeps its output, and reads its counts.
suite() {
  local name=$1 kind=$2; shift 2
  local log="$logs/${name//[^a-zA-Z0-9]/_}.log"
  echo "=== $name: $*"
  "$@" 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]} pass=0 fail=0 line
  case $kind in
    cargo) # "test result: ok. N passed; M failed; …", one per test binary
      pass=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^passed/) s += $i } END { print s + 0 }' "$log")
      fail=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^failed/) s += $i } END { print s + 0 }' "$log") ;;
    node) # "# pass N" / "# fail M"
      pass=$(sed -nE 's/^# pass ([0-9]+)$/\1/p' "$log" | tail -1)
      fail=$(sed -nE 's/^# fail ([0-9]+)$/\1/p' "$log" | tail -1) ;;
    bun) # " N pass" / " M fail"
      pass=$(sed -nE 's/^ *([0-9]+) pass$/\1/p' "$log" | tail -1)
      fail=$(sed -nE 's/^ *([0-9]+) fail$/\1/p' "$log" | tail -1) ;;
  esac
  pass=${pass:-0}; fail=${fail:-0}
  if [ "$status" -ne 0 ] || [ "$fail" -ne 0 ] || [ "$pass" -eq 0 ]; then
    failed_suites+=("$name")
    line="$name: $pass passed, $fail failed (exit $status)"
  else
    line="$name: $pass passed, $fail failed"
  fi
  summary+=("$line")
  total_pass=$((total_pass + pass)); total_fail=$((total_fail + fail))
}

step "rustfmt" cargo fmt --check
step "clippy" cargo clippy --all-targets -- -D warnings
step "clippy wasm32" cargo clippy --target wasm32-unknown-unknown -- -D warnings
step "rustdoc" env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet
suite "cargo test (native)" cargo cargo test
suite "engine model, release (cargo test)" cargo cargo test --release --test engine_model
suite "wasm-bindgen-test (node)" cargo wasm-pack test --mode no-install --node
suite "wasm-bindgen-test (chrome)" cargo env WASM_BINDGEN_USE_BROWSER=1 CHROMEDRIVER=/usr/bin/chromedriver \
  wasm-pack test --mode no-install --headless --chrome
suite "wasm-bindgen-test (firefox)" cargo env WASM_BINDGEN_USE_BROWSER=1 GECKODRIVER="$(command -v geckodriver)" \
  wasm-pack test --mode no-install --headless --firefox
step "plugin typecheck" bash -c 'cd plugin && node_modules/.bin/tsc -p .'
# The .wasm `make build` made, against its budget (README, "Size of the .wasm").
raw=$(wc -c < pkg/foreman_bg.wasm)
gz=$(gzip -9 -c pkg/foreman_bg.wasm | wc -c)
step ".wasm size: $raw B raw, $gz B gzip -9 (budget 350000 / 145000)" test "$raw" -le 350000 -a "$gz" -le 145000
suite "plugin (bun test)" bun bash -c 'cd plugin && bun test'
suite "JS API, fuzz, recovery drill, journal verifier, simulator (node --test)" node node --test tests/js/
suite "demo page (node --test, headless chromium + firefox)" node node --test tests/browser/
suite "opencode end-to-end (node --test)" node node --test tests/e2e/

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
if [ ${#failed_suites[@]} -gt 0 ]; then
  echo "failed: ${failed_suites[*]}"
fi
echo "total: $total_pass passed, $total_fail failed"
[ ${#failed_suites[@]} -eq 0 ]
