#!/usr/bin/env bash
# Builds foreman's wasm package as it was at a git commit, for the comparison of `make bench` /
# `make bench-baseline` (benches/js/baseline.mjs), and prints the package's directory on stdout.
#
#   scripts/baseline-pkg.sh REF        REF: any commit-ish of this clone (a hash, a tag, main~3)
#
# The commit's files come out of git's object store (`git archive`) into
# target/bench-baseline/COMMIT/tree: the working tree, the index and the list of worktrees are
# never touched, so there is nothing to clean up. The package goes to
# target/bench-baseline/COMMIT/pkg and is built once per commit (a second run prints the
# directory at once); `rm -rf target/bench-baseline` forgets every one. The build is the one
# `make build` makes (wasm-pack --target web --release, the commit's own Cargo.toml and
# Cargo.lock and wasm-opt settings), with this checkout's tools: wasm-bindgen must be the version
# the commit's Cargo.lock pins, and is refused otherwise (wasm-pack would go and download one).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$HOME/.cargo/bin:$PATH"

log() { printf 'baseline-pkg: %s\n' "$*" >&2; }

ref=${1:?usage: scripts/baseline-pkg.sh REF}
if ! commit=$(git rev-parse --verify --quiet "$ref^{commit}"); then
  log "no commit '$ref' in this clone (a shallow clone lacks it: git fetch --unshallow)"
  exit 2
fi
dir=$PWD/target/bench-baseline/$commit
if [ -f "$dir/pkg/.built" ]; then
  echo "$dir/pkg"
  exit 0
fi

log "building $ref ($commit) into ${dir#"$PWD"/}"
rm -rf "$dir/tree" "$dir/pkg" "$dir/pkg.part"
mkdir -p "$dir/tree"
git archive --format=tar "$commit" | tar -x -C "$dir/tree"

for tool in wasm-pack wasm-opt; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    # wasm-pack would download a missing wasm-opt from outside the package registries.
    log "$tool is missing: run make setup (or make build) first"
    exit 2
  fi
done
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' "$dir/tree/Cargo.lock")
if ! wasm-bindgen --version 2>/dev/null | grep -qF " $want"; then
  log "$commit pins wasm-bindgen $want; this machine has $(wasm-bindgen --version 2>/dev/null || echo none)"
  log "install it with: cargo install wasm-bindgen-cli --version =$want (then scripts/setup.sh puts back this checkout's)"
  exit 2
fi

# A cargo target dir of the commit's own. A shared one looked the same to cargo for every
# commit — the source paths are renamed as in `make build`, and `git archive` stamps files with
# the commit's time, older than the last build — so a second commit got the first one's .wasm.
(cd "$dir/tree" && cargo fetch --quiet)
flags="${RUSTFLAGS:-} $(scripts/remap-flags.sh)"
(
  cd "$dir/tree"
  RUSTFLAGS="$flags" CARGO_TARGET_DIR="$dir/cargo" \
    wasm-pack --log-level warn build --target web --release --mode no-install --out-dir "$dir/pkg.part" >&2
)
mv "$dir/pkg.part" "$dir/pkg"
touch "$dir/pkg/.built"
echo "$dir/pkg"
