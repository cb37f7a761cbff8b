// Run by opencode.test.mjs under Bun: drives the plugin's own host implementation
// (plugin/src/host.ts) against a real OpenCode server, the way the engine calls it (operations
// with call ids, several at once), and prints what happened as JSON.
// Usage: bun host-probe.ts <serverUrl> <directory> <parentID>
import { createOpencodeClient } from "@opencode-ai/sdk";
import { createHost } from "../../plugin/src/host.ts";

const [baseUrl, directory, parentID] = process.argv.slice(2);
const client = createOpencodeClient({ baseUrl });
const host = createHost(client, directory);
const started = performance.now();
const made = await Promise.all(
  [1, 2, 3].map((i) => host.createSession({ agent: "worker", parentID, title: `probe ${i}` }, i)),
);
const elapsedMs = performance.now() - started;
const ids = made.map((m: unknown) => (typeof m === "string" ? m : (m as { id: string }).id));
console.log(JSON.stringify({ ids, elapsedMs }));
