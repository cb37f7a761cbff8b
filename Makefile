# foreman: `make demo` and `make test` are all a fresh machine needs; both set up what is missing.
SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)
PORT ?= 8080

.PHONY: setup build demo test bench bench-baseline package clean

## BASELINE: the commit `make bench` measures P1–P6 against (any commit-ish of this clone, e.g.
## `make bench-baseline BASELINE=main~3`); by default the engine before the one-core rework
BASELINE ?= 64db4e2

## setup: install the pinned toolchain, browsers and npm packages that are missing (idempotent)
setup:
	@scripts/setup.sh

## build: compile the wasm package into pkg/ (wasm-pack --target web, release, wasm-opt).
## Dependency sources are renamed in it (scripts/remap-flags.sh), in a target dir of its own so
## the other builds keep their flags and caches.
build: setup
	cargo fetch --quiet
	RUSTFLAGS="$$RUSTFLAGS $$(scripts/remap-flags.sh)" CARGO_TARGET_DIR=target/pkg \
	  wasm-pack build --target web --release --mode no-install --out-dir pkg

## package: build, then pack the npm package foreman-opencode (plugin, wasm, glue, types) into
## target/package/ and print the tarball's path
package: build
	node scripts/package.mjs

## demo: build, then serve the demo page on 127.0.0.1 and print its address
demo: build
	node scripts/serve.mjs $(PORT)

## test: build, then run every suite and print each runner's summary line
test: build
	@scripts/test.sh

## bench: P1–P6 of this build against BASELINE's (bench-baseline), criterion benchmarks of the
## native core, then foreman's JS API against the npm libraries, on Node and on Bun (one
## interleaved table each; see benches/js/compare.mjs), then the soak benchmark of a long-lived
## engine (benches/js/soak.mjs), then P8: the plugin in a real `opencode serve` with the fake
## model (benches/e2e/p8.mjs, a few minutes)
bench: build bench-baseline
	cargo bench --bench control --bench store --bench engine --bench agent_load --bench nested
	node --expose-gc benches/js/compare.mjs
	bun benches/js/compare.mjs
	node benches/js/soak.mjs
	node benches/e2e/p8.mjs

## bench-baseline: build BASELINE's wasm package once (scripts/baseline-pkg.sh, kept in
## target/bench-baseline/), then time P1–P6 on it and on pkg/ in the same rounds (four processes,
## each loading both builds), on Node and on Bun (benches/js/baseline.mjs); a loss is flagged,
## FOREMAN_BENCH_STRICT=1 fails on it
bench-baseline: build
	dir=$$(scripts/baseline-pkg.sh "$(BASELINE)") && \
	  node --expose-gc benches/js/baseline.mjs "$$dir" "$(BASELINE)" && \
	  bun benches/js/baseline.mjs "$$dir" "$(BASELINE)"

clean:
	cargo clean
	rm -rf pkg
