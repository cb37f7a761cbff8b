// End to end in a real `opencode serve` (npm opencode-ai, pinned), offline, with the fake model:
//   1. the plugin loads, and a tool call the model makes is answered by the wasm engine;
//   2. the plugin's host creates real sessions through the engine (under a parent);
//   3. the same check fails for a plugin that cannot load, so a broken plugin cannot pass.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { createOpencodeClient } from "@opencode-ai/sdk";
import { startFakeModel } from "./fake-model.mjs";
import { Opencode, repo } from "./opencode.mjs";

const run = promisify(execFile);
const version = /^version = "(.+)"$/m.exec(readFileSync(join(repo, "Cargo.toml"), "utf8"))[1];
let model, opencode, client, good, broken;

/** A copy of the plugin whose wasm module is corrupt: it fails at load, as a bad build would. */
function brokenPluginCopy(root) {
  const dir = join(root, "broken");
  mkdirSync(join(dir, "pkg"), { recursive: true });
  cpSync(join(repo, "plugin", "index.ts"), join(dir, "plugin", "index.ts"));
  cpSync(join(repo, "plugin", "src"), join(dir, "plugin", "src"), { recursive: true });
  symlinkSync(join(repo, "plugin", "node_modules"), join(dir, "plugin", "node_modules"));
  for (const f of ["foreman.js", "foreman.d.ts"]) cpSync(join(repo, "pkg", f), join(dir, "pkg", f));
  writeFileSync(join(dir, "pkg", "foreman_bg.wasm"), readFileSync(join(repo, "pkg", "foreman_bg.wasm")).subarray(0, 64));
  return `file://${join(dir, "plugin", "index.ts")}`;
}

/** Collects the server's events for `directory` (plugin load failures arrive only as events). */
function watchEvents(directory) {
  const events = [];
  const abort = new AbortController();
  const done = (async () => {
    const res = await fetch(`${opencode.url}/event?directory=${encodeURIComponent(directory)}`, { signal: abort.signal });
    const decoder = new TextDecoder();
    let buffer = "";
    for await (const bytes of res.body) {
      buffer += decoder.decode(bytes, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = frame.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("");
        if (data) events.push(JSON.parse(data));
      }
    }
  })().catch(() => {});
  return { events, stop: async () => { abort.abort(); await done; } };
}

/** Asks the model to call foreman_status in a new session; returns what a user would judge by. */
async function askForStatus(directory) {
  const watch = watchEvents(directory);
  const session = await client.session.create({ body: { title: "foreman e2e" }, query: { directory } });
  assert.ok(session.data, `session.create failed: ${JSON.stringify(session.error)}`);
  const reply = await client.session.prompt({
    path: { id: session.data.id },
    query: { directory },
    body: { parts: [{ type: "text", text: "please call foreman_status" }] },
  });
  const messages = await client.session.messages({ path: { id: session.data.id }, query: { directory } });
  await new Promise((r) => setTimeout(r, 200));
  await watch.stop();
  const parts = messages.data.flatMap((m) => m.parts);
  const toolPart = parts.find((p) => p.type === "tool" && p.tool === "foreman_status");
  const text = parts.filter((p) => p.type === "text" && !p.synthetic).map((p) => p.text).join("\n");
  const errors = watch.events
    .filter((e) => e.type === "session.error")
    .map((e) => JSON.stringify(e.properties?.error ?? e.properties));
  return { toolPart, text, errors, replyError: reply.data?.info?.error ?? reply.error };
}

/** The verdict the first test asserts: did the wasm engine answer the tool call? */
function verdict(result) {
  const problems = [];
  if (result.errors.length) problems.push(`session.error events: ${result.errors.join("; ")}`);
  if (!result.toolPart) problems.push(`no foreman_status tool call; the model said: ${result.text}`);
  else if (result.toolPart.state?.status !== "completed") problems.push(`tool state ${JSON.stringify(result.toolPart.state)}`);
  else if (!result.toolPart.state.output.startsWith(`foreman v${version} (wasm engine)\n`)) problems.push(`unexpected output ${result.toolPart.state.output}`);
  return problems;
}

// Bounded so a stuck server fails the run instead of hanging it.
const LIMIT = { timeout: 180_000 };

before(async () => {
  model = await startFakeModel();
  opencode = new Opencode();
  good = opencode.project("good", { modelUrl: model.url, plugins: [[`file://${join(repo, "plugin", "index.ts")}`, { lanes: { worker: 12 } }]] });
  broken = opencode.project("broken-project", { modelUrl: model.url, plugins: [brokenPluginCopy(opencode.root)] });
  await opencode.start();
  client = createOpencodeClient({ baseUrl: opencode.url });
}, LIMIT);

after(async () => {
  await opencode?.stop();
  await model?.close();
});

test("the plugin loads in real OpenCode and the wasm engine answers foreman_status", LIMIT, async () => {
  const result = await askForStatus(good);
  assert.deepEqual(verdict(result), []);
  const output = result.toolPart.state.output;
  // The plugin's options reached the engine: worker 12 is not a default.
  assert.match(output, /^lanes \(in use\/limit\): other 0\/4, planner 0\/2, reviewer 0\/4, worker 0\/12$/m);
  assert.match(output, /^memory: \d+\.\d % of \d+ MiB$/m);
  // And the model received the engine's answer as the tool result.
  assert.ok(result.text.includes(`tool said: foreman v${version} (wasm engine)`), result.text);
  assert.equal(result.replyError, undefined);
});

test("the plugin's host creates real sessions under a parent through the engine", LIMIT, async () => {
  const parent = await client.session.create({ body: { title: "foreman parent" }, query: { directory: good } });
  const bun = join(repo, "node_modules", ".bin", "bun");
  const { stdout } = await run(bun, [join(repo, "tests", "e2e", "host-probe.ts"), opencode.url, good, parent.data.id], { cwd: repo, env: opencode.env });
  const probe = JSON.parse(stdout.trim().split("\n").pop());
  assert.equal(probe.ids.length, 3);
  assert.equal(new Set(probe.ids).size, 3);
  assert.deepEqual(probe.stats.sessions.failed, 0);
  assert.deepEqual(probe.stats.sessions.created, 3);
  for (const [i, id] of probe.ids.entries()) {
    const s = await client.session.get({ path: { id }, query: { directory: good } });
    assert.equal(s.data?.parentID, parent.data.id, `session ${id} is a child of the parent`);
    assert.equal(s.data?.title, `probe ${i + 1}`);
  }
  const children = await client.session.children({ path: { id: parent.data.id }, query: { directory: good } });
  assert.deepEqual(children.data.map((c) => c.id).sort(), [...probe.ids].sort());
});

test("the same check fails for a plugin that cannot load", LIMIT, async () => {
  const result = await askForStatus(broken);
  const problems = verdict(result);
  assert.ok(problems.length > 0, "a broken plugin must not pass the check");
  assert.equal(result.toolPart, undefined);
  assert.ok(
    result.text.includes("TOOL_NOT_OFFERED foreman_status") || result.errors.some((e) => /plugin/i.test(e)),
    `expected a plugin load failure, got: ${problems.join("; ")}`,
  );
});
