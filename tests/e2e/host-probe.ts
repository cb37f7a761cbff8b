// Run by opencode.test.mjs under Bun: drives the plugin's own host implementation
// (plugin/src/host.ts) and the wasm engine against a real OpenCode server, and prints what
// happened as JSON. Usage: bun host-probe.ts <serverUrl> <directory> <parentID>
import { createOpencodeClient } from "@opencode-ai/sdk";
import { createHost } from "../../plugin/src/host.ts";
import { loadEngine } from "../../plugin/src/wasm.ts";

const [baseUrl, directory, parentID] = process.argv.slice(2);
const client = createOpencodeClient({ baseUrl });
const Engine = loadEngine();
const engine = new Engine(createHost(client, directory));
const started = performance.now();
const ids = await Promise.all([1, 2, 3].map((i) => engine.createSession({ agent: "worker", parentID, title: `probe ${i}` })));
const elapsedMs = performance.now() - started;
const stats = engine.stats();
engine.dispose();
console.log(JSON.stringify({ ids, elapsedMs, stats }));
