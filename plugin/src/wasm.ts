// Loads the foreman wasm module once per process. The package is wasm-pack's `--target web`
// build in ../../pkg; under Bun it is instantiated from the bytes with `initSync` (the
// `bundler` target does not load under Bun, and `fetch` of a file URL is not portable).
import { readFileSync } from "node:fs";
import { Engine, initSync } from "../../pkg/foreman.js";

let ready = false;

/** The `Engine` class, with the wasm module instantiated. */
export function loadEngine(): typeof Engine {
  if (!ready) {
    const bytes = readFileSync(new URL("../../pkg/foreman_bg.wasm", import.meta.url));
    initSync({ module: bytes });
    ready = true;
  }
  return Engine;
}

export type { Engine };
