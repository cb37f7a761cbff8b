// The JS tests' simulated OpenCode server: the same module as the demo page's (www/sim.js), on
// its default virtual clock, so a test moves time explicitly and runs deterministically. This
// file adds only what needs Node: loading the wasm package from disk.
import { readFileSync } from "node:fs";
import { initSync, Engine } from "../../pkg/foreman.js";
import { SimServer, settle } from "../../www/sim.js";

export { settle };

let loaded = false;
/** The Engine class with the wasm module instantiated (once per process). */
export function loadEngine() {
  if (!loaded) {
    initSync({ module: readFileSync(new URL("../../pkg/foreman_bg.wasm", import.meta.url)) });
    loaded = true;
  }
  return Engine;
}

/** The simulated server on a virtual clock (turns of `turnMs`, busy after `gapMs`, hooks
 * `fail(text)` / `hang(text)`, memory 100 of 1000): see www/sim.js for everything it does. */
export class FakeServer extends SimServer {}
