// foreman survives OpenCode, end to end in a real `opencode serve` with the fake model:
//   1. OpenCode's own `task` tool runs under the engine's lanes: 8 parallel task calls in one
//      assistant message with a lane of 2 never put more than 2 child requests at the model, and
//      an aborted parent gives every slot back;
//   2. a server killed (SIGKILL) with 10 tasks running starts again, the plugin restores its
//      journal from the project, every task ends in a final state, no prompt reaches the model
//      twice, the journal verifies and no session is left busy;
//   3. a torn journal file is detected at start and logged; the last good state is used;
//   4. a task finished before a kill keeps its session across the restart: a follow-up
//      (`followUp`) sent after it continues that conversation.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createOpencodeClient } from "@opencode-ai/sdk";
import { startFakeModel } from "./fake-model.mjs";
import { Opencode, newSession as newSessionIn, repo, say as sayIn, until } from "./opencode.mjs";
import { loadEngine } from "../js/fake-server.mjs";

const LIMIT = { timeout: 240_000 };
let model, opencode, client, native, restart;

before(async () => {
  model = await startFakeModel({ noticeDelayMs: 200 });
  opencode = new Opencode();
  const plugin = `file://${join(repo, "plugin", "index.ts")}`;
  native = opencode.project("native", { modelUrl: model.url, plugins: [[plugin, { lanes: { general: 2 }, warmAboveMs: 1000 }]] });
  restart = opencode.project("restart", { modelUrl: model.url, plugins: [[plugin, { lanes: { worker: 10 }, warmAboveMs: 1000 }]] });
  await opencode.start();
  client = createOpencodeClient({ baseUrl: opencode.url });
}, LIMIT);

const newSession = (directory, title) => newSessionIn(client, directory, title);
const say = (directory, sessionID, text) => sayIn(client, directory, sessionID, text);

after(async () => {
  await opencode?.stop();
  await model?.close();
});

async function toolParts(directory, sessionID, tool) {
  const messages = (await client.session.messages({ path: { id: sessionID }, query: { directory } })).data;
  return messages.flatMap((m) => m.parts).filter((p) => p.type === "tool" && p.tool === tool);
}

/** What a tool answers when a fresh session's model calls it. */
async function ask(directory, tool, args = {}) {
  const s = await newSession(directory, `ask ${tool}`);
  await say(directory, s, `CALL ${tool} ${JSON.stringify(args)}`);
  const [part] = await toolParts(directory, s, tool);
  assert.equal(part?.state.status, "completed", JSON.stringify(part?.state));
  return part.state.output;
}

/** Most requests at the model at once among those whose prompt starts with `prefix`. */
function peakOf(prefix) {
  const marks = model.log
    .filter((r) => r.text.startsWith(prefix))
    .flatMap((r) => [[r.start, 1], [r.end ?? Infinity, -1]])
    .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0, peak = 0;
  for (const [, d] of marks) peak = Math.max(peak, (now += d));
  return peak;
}

test("OpenCode's own task tool: 8 parallel calls in one message, lane 2: at most 2 at the model, all 8 complete; an aborted parent frees every slot", LIMIT, async (t) => {
  const parent = await newSession(native, "native tasks");
  const calls = Array.from({ length: 8 }, (_, i) => ({ description: `native ${i}`, prompt: `SLEEP 600 SAY native ${i} done`, subagent_type: "general" }));
  await say(native, parent, `CALLS task ${JSON.stringify(calls)}`);
  const parts = await toolParts(native, parent, "task");
  assert.equal(parts.length, 8);
  for (const p of parts) assert.equal(p.state.status, "completed", JSON.stringify(p.state));
  const requests = model.log.filter((r) => r.text.startsWith("SLEEP 600 SAY native"));
  assert.equal(requests.length, 8);
  const peak = peakOf("SLEEP 600 SAY native");
  t.diagnostic(`native task calls: peak ${peak} child requests at the model at once (lane 2)`);
  assert.equal(peak, 2);

  // A parent aborted while its task calls run or wait: every permit comes back.
  const aborted = await newSession(native, "aborted parent");
  const long = Array.from({ length: 8 }, (_, i) => ({ description: `long ${i}`, prompt: `SLEEP 60000 SAY long ${i}`, subagent_type: "general" }));
  await client.session.promptAsync({ path: { id: aborted }, query: { directory: native }, body: { parts: [{ type: "text", text: `CALLS task ${JSON.stringify(long)}` }] } });
  await until("two long children at the model", () => model.log.filter((r) => r.text.startsWith("SLEEP 60000 SAY long") && r.end === undefined).length === 2);
  await client.session.abort({ path: { id: aborted }, query: { directory: native } });
  await until("the aborted parent's children closed", () => model.log.filter((r) => r.text.startsWith("SLEEP 60000 SAY long")).every((r) => r.end !== undefined));
  const status = await until("every lane slot free", async () => {
    const out = await ask(native, "foreman_status");
    return /\bgeneral 0\/2\b/.test(out) && out;
  });
  t.diagnostic(status.split("\n")[1]);
  assert.equal(peakOf("SLEEP 60000 SAY long"), 2);
});

test("a server killed with 10 tasks running restarts: the journal is restored, every task ends, no prompt is sent twice, the journal verifies, nothing is left busy", LIMIT, async (t) => {
  const parent = await newSession(restart, "restart parent");
  const tasks = Array.from({ length: 10 }, (_, i) => ({ agent: "worker", prompt: `SLEEP 4000 SAY restart ${i}`, description: `restart ${i}` }));
  await say(restart, parent, `CALL foreman_delegate ${JSON.stringify({ tasks })}`);
  const inFlight = () => model.log.filter((r) => r.text.startsWith("SLEEP 4000 SAY restart") && r.end === undefined).length;
  await until("10 tasks at the model", () => inFlight() === 10);
  await new Promise((r) => setTimeout(r, 500)); // the plugin saves its journal at most every 200 ms
  const killed = new Promise((ok) => opencode.proc.once("exit", ok));
  opencode.proc.kill("SIGKILL");
  await killed;
  await until("the killed server's streams closed", () => inFlight() === 0);

  await opencode.start();
  client = createOpencodeClient({ baseUrl: opencode.url });
  const settled = /^#\d+ (succeeded|failed|cancelled|timed_out|unknown) /;
  let last = "";
  const list = await until("every restored task in a final state", async () => {
    const out = (last = await ask(restart, "foreman_list", {}));
    const lines = out.split("\n").filter((l) => /^#\d+ /.test(l));
    return lines.length >= 10 && lines.every((l) => settled.test(l)) && out;
  }, 120_000, () => `; foreman_list says:\n${last}\nforeman's log:\n${opencode.log.join("").split("\n").filter((l) => l.includes("foreman")).slice(-30).join("\n")}`);
  t.diagnostic(`after the restart:\n${list}`);
  for (let i = 0; i < 10; i++) {
    const sent = model.log.filter((r) => r.text === `SLEEP 4000 SAY restart ${i}`).length;
    assert.equal(sent, 1, `prompt ${i} reached the model ${sent} times`);
  }
  // Their parent is told, in one synthetic notice.
  await until("the parent told what happened to its tasks", async () => {
    const messages = (await client.session.messages({ path: { id: parent }, query: { directory: restart } })).data;
    return messages.some((m) => m.parts.some((p) => p.type === "text" && p.synthetic && /#1\b/.test(p.text) && /#10\b/.test(p.text)));
  }, 30_000);
  // The notice's own turn may still run: every session goes idle soon after.
  let busy = {};
  await until("no session left busy", async () => {
    busy = (await client.session.status({ query: { directory: restart } })).data;
    return Object.keys(busy).length === 0;
  }, 20_000, () => `: ${JSON.stringify(busy)}`);

  // The journal on disk verifies on its own (a fresh engine restores from it).
  const dir = join(restart, ".opencode", "foreman");
  const commit = JSON.parse(readFileSync(join(dir, "head.json"), "utf8"));
  const Engine = loadEngine();
  const host = { now: () => Date.now(), memory: () => ({ used: 1, limit: 10 }), createSession: () => undefined };
  const restored = Engine.restore(readFileSync(join(dir, commit.file)), commit.head, host);
  assert.equal(restored.verify(), true);
  restored.dispose();
});

test("a torn journal file is detected at start, logged, and the last good state is used", LIMIT, async () => {
  const dir = join(restart, ".opencode", "foreman");
  const before = await ask(restart, "foreman_list", {});
  await new Promise((r) => setTimeout(r, 500));
  const killed = new Promise((ok) => opencode.proc.once("exit", ok));
  opencode.proc.kill("SIGKILL");
  await killed;
  const commit = JSON.parse(readFileSync(join(dir, "head.json"), "utf8"));
  const file = join(dir, commit.file);
  const bytes = readFileSync(file);
  writeFileSync(file, bytes.subarray(0, Math.floor(bytes.length / 2)));
  const logFrom = opencode.log.length;
  await opencode.start();
  client = createOpencodeClient({ baseUrl: opencode.url });
  const after = await ask(restart, "foreman_list", {});
  const ids = (out) => [...out.matchAll(/^#(\d+) /gm)].map((m) => Number(m[1]));
  assert.ok(ids(after).length >= 10, after);
  assert.deepEqual(ids(after).slice(0, 10), ids(before).slice(0, 10));
  const log = opencode.log.slice(logFrom).join("");
  assert.match(log, /not loading .*head\.json: .*(cut short|SHA-256)/);
});

test("a task that finished before the server was killed keeps its conversation: a follow-up after the restart runs in its session", LIMIT, async () => {
  const blockOf = (output, id) => output.split("\n\n").find((b) => b.startsWith(`#${id} `)) ?? "";
  const sessionOf = (output, id) => /session (ses_\w+)/.exec(blockOf(output, id))?.[1];
  const first = await ask(restart, "foreman_delegate", {
    tasks: [{ agent: "worker", prompt: "SAY before the kill", description: "before the kill" }],
    mode: "wait",
  });
  const [id] = [...first.matchAll(/^#(\d+) succeeded/gm)].map((m) => Number(m[1]));
  assert.ok(id, first);
  const session = sessionOf(first, id);
  assert.ok(session, first);
  await new Promise((r) => setTimeout(r, 500)); // the plugin saves its journal at most every 200 ms
  const killed = new Promise((ok) => opencode.proc.once("exit", ok));
  opencode.proc.kill("SIGKILL");
  await killed;
  await opencode.start();
  client = createOpencodeClient({ baseUrl: opencode.url });
  const next = await ask(restart, "foreman_delegate", {
    tasks: [{ agent: "worker", prompt: "SAY after the restart", description: "after the restart", followUp: `#${id}` }],
    mode: "wait",
  });
  const [second] = [...next.matchAll(/^#(\d+) succeeded/gm)].map((m) => Number(m[1]));
  assert.ok(second, next);
  assert.equal(blockOf(next, second).split("\n")[1], "after the restart", next);
  assert.equal(sessionOf(next, second), session, `the follow-up ran in the first task's session:\n${next}`);
  // The session's transcript holds both turns, in order.
  const messages = (await client.session.messages({ path: { id: session }, query: { directory: restart } })).data;
  const said = messages.flatMap((m) => m.parts).filter((p) => p.type === "text" && !p.synthetic).map((p) => p.text);
  assert.deepEqual(said.filter((t) => /before the kill|after the restart/.test(t)).map((t) => t.replace(/^SAY /, "")),
    ["before the kill", "before the kill", "after the restart", "after the restart"], said.join(" | "));
});
