// End to end in a real `opencode serve` (npm opencode-ai, pinned), offline, with the fake model
// (one server for every test; each test works in its own parent sessions and on its own fake
// models, so the model's per-model counts are that test's alone):
//   1. the plugin loads, and a tool call the model makes is answered by the wasm engine;
//   2. the plugin's host creates real sessions through the engine (under a parent);
//   3. the same check fails for a plugin that cannot load, so a broken plugin cannot pass;
//   4. the whole delegate / watch / collect / cancel capability, driven by a parent session's
//      model calling the tools (see plugin-flow.mjs).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { createOpencodeClient } from "@opencode-ai/sdk";
import { startFakeModel } from "./fake-model.mjs";
import { Opencode, repo, until, watchEvents } from "./opencode.mjs";

const run = promisify(execFile);
const version = /^version = "(.+)"$/m.exec(readFileSync(join(repo, "Cargo.toml"), "utf8"))[1];
let model, opencode, client, good, broken, badOption, goodEvents;
/** Every bus event of the `good` project, in arrival order. */
let events = [];

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

/** Asks the model to call foreman_status in a new session; returns what a user would judge by. */
async function askForStatus(directory) {
  const watch = watchEvents(opencode.url, directory);
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
  model = await startFakeModel({ noticeDelayMs: 1500 });
  opencode = new Opencode();
  const plugin = `file://${join(repo, "plugin", "index.ts")}`;
  good = opencode.project("good", {
    modelUrl: model.url,
    // warmAboveMs far above a local create (20-90 ms here, under load): no warm sessions, so
    // every child session a test sees ran a task.
    plugins: [[plugin, { lanes: { worker: 12 }, keys: { "fake/limited": 3, "fake/cancel": 3, "fake/orphan": 2 }, warmAboveMs: 1000 }]],
    models: ["limited", "cancel", "child", "nested", "flaky", "orphan", "lendmid", "lendleaf"],
    // A user-defined agent under one of foreman's names: the plugin must leave it alone.
    extra: { agent: { reviewer: { description: "USER REVIEWER", mode: "subagent", prompt: "The user's own reviewer." } } },
  });
  badOption = opencode.project("bad-option", { modelUrl: model.url, plugins: [[plugin, { lanes: { worker: 0 } }]] });
  broken = opencode.project("broken-project", { modelUrl: model.url, plugins: [brokenPluginCopy(opencode.root)] });
  await opencode.start();
  client = createOpencodeClient({ baseUrl: opencode.url });
  goodEvents = watchEvents(opencode.url, good);
  events = goodEvents.events;
}, LIMIT);

after(async () => {
  await goodEvents?.stop();
  await opencode?.stop();
  await model?.close();
});

test("the plugin loads in real OpenCode and the wasm engine answers foreman_status", LIMIT, async () => {
  const result = await askForStatus(good);
  assert.deepEqual(verdict(result), []);
  const output = result.toolPart.state.output;
  // The plugin's options reached the engine: worker 12 is not a default.
  assert.match(output, /^lanes \(in use\/limit\): commander 0\/2, other 0\/4, planner 0\/2, reviewer 0\/4, worker 0\/12$/m);
  assert.match(output, /^memory: \d+\.\d % of \d+ MiB, gate open$/m);
  // And the model received the engine's answer as the tool result.
  assert.ok(result.text.includes(`tool said: foreman v${version} (wasm engine)`), result.text);
  assert.equal(result.replyError, undefined);
});

test("the plugin's host creates real sessions under a parent", LIMIT, async () => {
  const parent = await client.session.create({ body: { title: "foreman parent" }, query: { directory: good } });
  const bun = join(repo, "node_modules", ".bin", "bun");
  const { stdout } = await run(bun, [join(repo, "tests", "e2e", "host-probe.ts"), opencode.url, good, parent.data.id], { cwd: repo, env: opencode.env });
  const probe = JSON.parse(stdout.trim().split("\n").pop());
  assert.equal(probe.ids.length, 3);
  assert.equal(new Set(probe.ids).size, 3);
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

test("a bad plugin option fails the load with the engine's error", LIMIT, async () => {
  const result = await askForStatus(badOption);
  assert.equal(result.toolPart, undefined);
  assert.ok(result.text.includes("TOOL_NOT_OFFERED foreman_status"), result.text);
  // OpenCode reports a plugin that throws while loading in its log only.
  const failure = opencode.log.join("").split("\n").find((l) => l.includes("failed to load plugin") && l.includes("lanes.worker"));
  assert.match(failure ?? "", /error="INVALID_CONFIG: invalid config `lanes\.worker`: must be between 1 and 1024, got 0"/);
});

// ---- The capability, driven by a parent session's model calling the tools. ----

const call = (tool, args) => `CALL ${tool} ${JSON.stringify(args)}`;

async function newParent(title) {
  const r = await client.session.create({ body: { title }, query: { directory: good } });
  assert.ok(r.data, JSON.stringify(r.error));
  return r.data.id;
}

/** Sends `text` as the user and waits for the turn to end. */
async function say(sessionID, text) {
  const r = await client.session.prompt({ path: { id: sessionID }, query: { directory: good }, body: { parts: [{ type: "text", text }] } });
  assert.ok(r.data, JSON.stringify(r.error));
  return r.data;
}

async function transcript(sessionID) {
  return (await client.session.messages({ path: { id: sessionID }, query: { directory: good } })).data;
}

/** The newest call of `tool` in a session's transcript. */
async function lastToolPart(sessionID, tool) {
  const parts = (await transcript(sessionID)).flatMap((m) => m.parts).filter((p) => p.type === "tool" && p.tool === tool);
  assert.ok(parts.length, `no ${tool} call in ${sessionID}`);
  return parts[parts.length - 1];
}

/** A transcript as a person would read it: who said what, tool calls with input and output. */
function render(messages) {
  const out = [];
  for (const m of messages) {
    for (const p of m.parts) {
      if (p.type === "text") out.push(`${m.info.role}${p.synthetic ? " (synthetic)" : ""}: ${p.text}`);
      else if (p.type === "tool") {
        out.push(`tool ${p.tool} ${JSON.stringify(p.state.input)}`);
        out.push(`→ ${p.state.status === "error" ? `error: ${p.state.error}` : p.state.output}`.replace(/\n/g, "\n  "));
      }
    }
  }
  return out.join("\n") + "\n";
}

const idsOf = (output) => [...output.matchAll(/^#(\d+) /gm)].map((m) => Number(m[1]));
const blockOf = (output, id) => output.split("\n\n").find((b) => b.startsWith(`#${id} `));

test("12 tasks over planner/worker/reviewer: at most 3 at the model at once, each child's own reply, all children of the parent, none left busy", LIMIT, async (t) => {
  const parent = await newParent("twelve in parallel");
  const agents = ["planner", "worker", "reviewer"];
  const tasks = Array.from({ length: 12 }, (_, i) => ({
    agent: agents[i % 3],
    prompt: `SLEEP 700 SAY reply of child ${i}`,
    description: `part ${i}`,
    model: "fake/limited",
  }));
  await say(parent, call("foreman_delegate", { tasks, notify: false }));
  const launch = await lastToolPart(parent, "foreman_delegate");
  assert.equal(launch.state.status, "completed", JSON.stringify(launch.state));
  const ids = idsOf(launch.state.output);
  assert.equal(ids.length, 12, launch.state.output);

  await say(parent, call("foreman_result", { ids, block: true, timeoutMs: 120_000 }));
  const result = await lastToolPart(parent, "foreman_result");
  assert.equal(result.state.status, "completed", JSON.stringify(result.state));
  const sessions = ids.map((id, i) => {
    const block = blockOf(result.state.output, id);
    assert.ok(block, `no result for #${id}:\n${result.state.output}`);
    assert.match(block, new RegExp(`^#${id} succeeded · ${agents[i % 3]} · "part ${i}" · session ses_`));
    assert.equal(block.split("\n")[1], `reply of child ${i}`, "each child answers with its own reply");
    return /session (ses_\w+)/.exec(block)[1];
  });

  // Measured at the model: never more than the key's limit at once, and really in parallel.
  const requests = model.log.filter((r) => r.model === "limited");
  assert.equal(requests.length, 12);
  assert.ok(model.peak.limited <= 3, `peak ${model.peak.limited} at the model`);
  assert.ok(model.peak.limited >= 2, `peak ${model.peak.limited}: tasks did not overlap`);
  const span = Math.max(...requests.map((r) => r.end)) - Math.min(...requests.map((r) => r.start));
  t.diagnostic(`fake model: peak ${model.peak.limited} concurrent of 12 requests, first start to last end ${span} ms (lower bound 4 × 700 ms)`);

  const children = (await client.session.children({ path: { id: parent }, query: { directory: good } })).data;
  assert.equal(new Set(sessions).size, 12);
  // No empty children: session.create is far under the warm-session threshold.
  assert.equal(children.length, 12, children.map((c) => c.title).join(", "));
  for (const [i, s] of sessions.entries()) {
    const child = children.find((c) => c.id === s);
    assert.ok(child, `session ${s} is a child of the parent`);
    assert.equal(child.title, `part ${i} (foreman #${ids[i]} ${agents[i % 3]})`);
  }
  await until("no session left busy", async () => {
    const busy = (await client.session.status({ query: { directory: good } })).data;
    return [parent, ...sessions].every((s) => !busy[s]);
  }, 10_000);
  // Warm sessions: none, session.create is far under the threshold where they would pay.
  await say(parent, "please call foreman_status");
  const status = (await lastToolPart(parent, "foreman_status")).state.output;
  const create = /mean create ([\d.]+) ms/.exec(status)?.[1];
  assert.match(status, /^pool: 0 warm, /m);
  t.diagnostic(`session.create mean ${create} ms as the host measured it; ${/^pool: .*$/m.exec(status)[0]}`);
  // The person watching got a toast at launch and one when the batch settled.
  const toasts = events.filter((e) => e.type === "tui.toast.show").map((e) => e.properties.message);
  assert.ok(toasts.includes("launched 12 tasks (planner ×4, worker ×4, reviewer ×4)"), toasts.join(" | "));
  assert.ok(toasts.includes("12 tasks settled: 12 succeeded"), toasts.join(" | "));
});

test("followUp continues an earlier task's session, and a deadline aborts a task that runs past it", LIMIT, async () => {
  const parent = await newParent("follow-up and deadline");
  await say(parent, call("foreman_delegate", { tasks: [{ agent: "worker", prompt: "SAY first turn", description: "first turn", model: "fake/child" }], mode: "wait" }));
  const firstOut = (await lastToolPart(parent, "foreman_delegate")).state.output;
  const [first] = idsOf(firstOut);
  const sessionOf = (output, id) => /session (ses_\w+)/.exec(blockOf(output, id))?.[1];
  await say(parent, call("foreman_delegate", {
    tasks: [
      { agent: "worker", prompt: "SAY second turn", description: "second turn", model: "fake/child", followUp: `#${first}` },
      { agent: "worker", prompt: "SLEEP 60000 SAY too slow", description: "too slow", model: "fake/child", deadlineMs: 1500 },
    ],
    mode: "wait",
  }));
  const out = (await lastToolPart(parent, "foreman_delegate")).state.output;
  const [second, slow] = idsOf(out);
  assert.equal(blockOf(out, second).split("\n")[1], "second turn");
  assert.equal(sessionOf(out, second), sessionOf(firstOut, first), "the follow-up ran in the first task's session");
  assert.match(blockOf(out, slow), /^#\d+ timed_out/);
  const request = model.log.find((r) => r.text === "SLEEP 60000 SAY too slow");
  await until("the late request's stream closed", () => request.outcome === "closed", 10_000);
});

test("nested wait mode in a lane of 2: planner tasks that delegate planners and wait lend them their slots, so it finishes with at most 2 requests at the model", LIMIT, async () => {
  const parent = await newParent("nested wait");
  // Each mid planner's turn calls foreman_delegate in wait mode for two leaf planners. Both mids
  // hold the planner lane's 2 slots while they wait: without lending, their leaves never start.
  const inner = (i) => call("foreman_delegate", {
    tasks: [0, 1].map((k) => ({ agent: "planner", prompt: `SLEEP 400 SAY leaf ${i}.${k}`, description: `leaf ${i}.${k}`, model: "fake/lendleaf" })),
    mode: "wait",
  });
  const tasks = [0, 1].map((i) => ({ agent: "planner", prompt: inner(i), description: `mid ${i}`, model: "fake/lendmid" }));
  await say(parent, call("foreman_delegate", { tasks, mode: "wait" }));
  const part = await lastToolPart(parent, "foreman_delegate");
  assert.equal(part.state.status, "completed", JSON.stringify(part.state));
  const out = part.state.output;
  assert.match(out, /^2 tasks settled: 2 succeeded, 0 did not\./, out);
  // Each mid's reply is its own tool call's answer: its two leaves' results.
  for (const i of [0, 1]) assert.match(out, new RegExp(`"mid ${i}"[^\\n]*\\ntool said: 2 tasks settled: 2 succeeded, 0 did not\\.`), out);
  // At the model: the lane's requests in flight (mids' and leaves' alike) never above 2.
  const requests = model.log.filter((r) => r.model === "lendmid" || r.model === "lendleaf");
  assert.equal(requests.length, 8, "2 mids × 2 turns' requests + 4 leaves");
  const edges = requests.flatMap((r) => [[r.start, 1], [r.end, -1]]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let most = 0;
  for (const [, d] of edges) most = Math.max(most, (now += d));
  assert.ok(most <= 2, `${most} planner-lane requests in flight at the model`);
  // A mid's session went on (its second request) only after its own leaves' replies ended.
  for (const i of [0, 1]) {
    const leaves = requests.filter((r) => r.text.startsWith(`SLEEP 400 SAY leaf ${i}.`));
    assert.equal(leaves.length, 2);
    const resumedAt = requests.filter((r) => r.model === "lendmid" && r.start >= Math.min(...leaves.map((l) => l.end)));
    assert.ok(resumedAt.length >= 1, `mid ${i} resumed after its leaves`);
  }
});

test("dependsOn holds at the model, a failed dependency cancels its dependent with the reason, and mode wait returns every result in one output", LIMIT, async () => {
  const parent = await newParent("dependencies");
  const tasks = [
    { agent: "worker", prompt: "SLEEP 600 SAY first done", description: "first", model: "fake/child" },
    { agent: "worker", prompt: "SAY second after first", description: "second", model: "fake/child", dependsOn: [0] },
    { agent: "worker", prompt: "FAIL 400", description: "doomed", model: "fake/child" },
    { agent: "worker", prompt: "SAY never runs", description: "after doomed", model: "fake/child", dependsOn: [2] },
  ];
  await say(parent, call("foreman_delegate", { tasks, mode: "wait" }));
  const part = await lastToolPart(parent, "foreman_delegate");
  assert.equal(part.state.status, "completed", JSON.stringify(part.state));
  const out = part.state.output;
  const ids = idsOf(out);
  assert.equal(ids.length, 4, out);
  assert.match(out, /^4 tasks settled: 2 succeeded, 2 did not\./);
  assert.equal(blockOf(out, ids[0]).split("\n")[1], "first done");
  assert.equal(blockOf(out, ids[1]).split("\n")[1], "second after first");
  assert.match(blockOf(out, ids[2]), /^#\d+ failed[^\n]*\nerror \(\w+\): .*400/);
  assert.match(blockOf(out, ids[3]), new RegExp(`^#${ids[3]} cancelled[^\\n]*\\ncancelled: dependency ${ids[2]} did not succeed`));

  const first = model.log.find((r) => r.model === "child" && r.text === "SLEEP 600 SAY first done");
  const second = model.log.find((r) => r.model === "child" && r.text === "SAY second after first");
  assert.ok(first && second);
  assert.ok(second.start >= first.end, `the dependent's request came ${first.end - second.start} ms before its dependency's reply ended`);
  assert.equal(model.log.filter((r) => r.text === "SAY never runs").length, 0, "a cancelled dependent never reaches the model");
});

test("background tasks notify the parent only while it is idle, at most once per idle period, batched, as synthetic messages", LIMIT, async (t) => {
  const parent = await newParent("notified parent");
  const sleeps = [200, 1500, 1600, 1700, 4500];
  const tasks = sleeps.map((ms, i) => ({ agent: "worker", prompt: `SLEEP ${ms} SAY background ${i}`, description: `background ${i}`, model: "fake/child" }));
  await say(parent, call("foreman_delegate", { tasks }));
  const ids = idsOf((await lastToolPart(parent, "foreman_delegate")).state.output);
  assert.equal(ids.length, 5);

  const notices = async () =>
    (await transcript(parent)).filter((m) => m.info.role === "user" && m.parts.some((p) => p.type === "text" && p.text.startsWith("[foreman]")));
  const settledIn = (m) => {
    const text = m.parts.map((p) => p.text ?? "").join("\n");
    return idsOf(text.split("\nStill open")[0].replace(/^- /gm, ""));
  };
  await until("a notice for every task", async () => {
    const seen = (await notices()).flatMap(settledIn);
    return ids.every((id) => seen.includes(id));
  }, 60_000);
  await until("the parent idle", async () => !(await client.session.status({ query: { directory: good } })).data[parent], 15_000);
  const list = await notices();

  // Batched and de-duplicated: fewer notices than tasks, each task listed as settled once.
  const listed = list.flatMap(settledIn);
  assert.deepEqual([...listed].sort((a, b) => a - b), ids);
  assert.ok(list.length < ids.length, `${list.length} notices for ${ids.length} tasks`);
  for (const m of list) {
    assert.ok(m.parts.every((p) => p.type !== "text" || p.synthetic === true), "notices are synthetic");
  }

  // Only while idle, at most one per idle period: read the parent's bus events in order.
  const timeline = events.filter(
    (e) =>
      (e.type === "session.status" && e.properties.sessionID === parent) ||
      (e.type === "message.updated" && e.properties.info.sessionID === parent && e.properties.info.role === "user"),
  );
  const noticeIds = new Set(list.map((m) => m.info.id));
  let status = "idle";
  let noticedThisPeriod = false;
  const written = new Set();
  for (const e of timeline) {
    if (e.type === "session.status") {
      status = e.properties.status.type;
      if (status !== "idle") noticedThisPeriod = false;
      continue;
    }
    const id = e.properties.info.id;
    if (!noticeIds.has(id) || written.has(id)) continue;
    written.add(id);
    assert.equal(status, "idle", "a notice was written while the parent was busy");
    assert.equal(noticedThisPeriod, false, "two notices in one idle period");
    noticedThisPeriod = true;
  }
  assert.equal(written.size, list.length, "every notice was seen on the bus");
  t.diagnostic(`${list.length} notices for ${ids.length} tasks: ${list.map((m) => settledIn(m).length).join(" + ")}`);

  // What a person reads back, kept for the README when FOREMAN_E2E_TRANSCRIPT names a file.
  await say(parent, call("foreman_result", { ids: ids.slice(0, 2) }));
  if (process.env.FOREMAN_E2E_TRANSCRIPT) writeFileSync(process.env.FOREMAN_E2E_TRANSCRIPT, render(await transcript(parent)));
});

test("foreman_cancel aborts running tasks (the model sees their streams closed), frees their slots, and a queued task never gets a session", LIMIT, async () => {
  const parent = await newParent("cancelled work");
  const tasks = [0, 1, 2, 3].map((i) => ({ agent: "worker", prompt: `SLEEP 120000 SAY too late ${i}`, description: `long ${i}`, model: "fake/cancel" }));
  await say(parent, call("foreman_delegate", { tasks, notify: false }));
  const ids = idsOf((await lastToolPart(parent, "foreman_delegate")).state.output);
  await until("3 requests in flight", () => model.active.cancel === 3);

  await say(parent, call("foreman_cancel", { all: true }));
  const cancel = await lastToolPart(parent, "foreman_cancel");
  assert.equal(cancel.state.status, "completed", JSON.stringify(cancel.state));
  assert.match(cancel.state.output, new RegExp(`^Cancelled 4 task\\(s\\): ${ids.map((i) => `#${i}`).join(", ")}\\.`));
  await until("3 streams closed at the model", () => model.log.filter((r) => r.model === "cancel" && r.outcome === "closed").length === 3, 20_000);
  assert.equal(model.active.cancel, 0);
  assert.deepEqual(model.log.filter((r) => r.model === "cancel").map((r) => r.text).sort(), [0, 1, 2].map((i) => `SLEEP 120000 SAY too late ${i}`));

  await say(parent, call("foreman_result", { ids, block: true, timeoutMs: 30_000 }));
  const out = (await lastToolPart(parent, "foreman_result")).state.output;
  for (const id of ids) assert.match(blockOf(out, id), /^#\d+ cancelled/);
  assert.doesNotMatch(blockOf(out, ids[3]).split("\n")[0], /session/, "the queued task never had a session");
  const children = (await client.session.children({ path: { id: parent }, query: { directory: good } })).data;
  assert.ok(!children.some((c) => c.title.startsWith("long 3")), "no session was made for the queued task");

  // The slots are free: a new task on the same model runs at once.
  await say(parent, call("foreman_delegate", { tasks: [{ agent: "worker", prompt: "SAY after cancel", description: "after", model: "fake/cancel" }], mode: "wait" }));
  const after = (await lastToolPart(parent, "foreman_delegate")).state.output;
  assert.match(after, /^1 task settled: 1 succeeded/);
  assert.ok(after.includes("\nafter cancel"), after);
  await say(parent, "please call foreman_status");
  assert.match((await lastToolPart(parent, "foreman_status")).state.output, /fake\/cancel 0\/3/);
  await until("no session left busy", async () => {
    const busy = (await client.session.status({ query: { directory: good } })).data;
    return ![parent, ...children.map((c) => c.id)].some((s) => busy[s]);
  }, 15_000);
});

test("deleting a parent session settles its tasks: a queued one is cancelled, the running ones end, their slots are freed", LIMIT, async () => {
  const parent = await newParent("deleted parent");
  const tasks = [0, 1, 2].map((i) => ({ agent: "worker", prompt: `SLEEP 120000 SAY orphan ${i}`, description: `orphan ${i}`, model: "fake/orphan" }));
  await say(parent, call("foreman_delegate", { tasks, notify: false }));
  const ids = idsOf((await lastToolPart(parent, "foreman_delegate")).state.output);
  await until("2 requests in flight", () => model.active.orphan === 2);
  const r = await client.session.delete({ path: { id: parent }, query: { directory: good } });
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  const watcher = await newParent("watcher");
  let out;
  await until("the deleted parent's tasks settled", async () => {
    await say(watcher, call("foreman_list", { parent }));
    out = (await lastToolPart(watcher, "foreman_list")).state.output;
    return ids.every((id) => /^#\d+ (cancelled|failed)/.test(out.split("\n").find((l) => l.startsWith(`#${id} `)) ?? ""));
  }, 20_000);
  assert.match(out.split("\n").find((l) => l.startsWith(`#${ids[2]} `)), /^#\d+ cancelled · worker · "orphan 2" · reason: /);
  assert.ok(!model.log.some((r) => r.text === "SLEEP 120000 SAY orphan 2"), "the queued task never ran");
  await say(watcher, "please call foreman_status");
  assert.match((await lastToolPart(watcher, "foreman_status")).state.output, /fake\/orphan 0\/2/);
});

test("a model that keeps failing opens its circuit breaker, and the person sees a toast", LIMIT, async () => {
  const parent = await newParent("flaky model");
  const tasks = [0, 1, 2, 3, 4].map((i) => ({ agent: "worker", prompt: `FAIL 503 attempt ${i}`, description: `flaky ${i}`, model: "fake/flaky" }));
  await say(parent, call("foreman_delegate", { tasks, mode: "wait" }));
  const out = (await lastToolPart(parent, "foreman_delegate")).state.output;
  assert.match(out, /^5 tasks settled: 0 succeeded, 5 did not\./);
  for (const id of idsOf(out)) assert.match(blockOf(out, id), /\nerror \(upstream\): APIError 503/);
  await until("the breaker's toast", () => events.some((e) => e.type === "tui.toast.show" && e.properties.message.startsWith("fake/flaky keeps failing: its circuit breaker opened")), 5_000);
  await say(parent, "please call foreman_status");
  assert.match((await lastToolPart(parent, "foreman_status")).state.output, /fake\/flaky 0\/unlimited, breaker open/);
});

test("foreman's agents appear in GET /agent and a user-defined agent of the same name is left as written", LIMIT, async () => {
  const res = await fetch(`${opencode.url}/agent?directory=${encodeURIComponent(good)}`);
  const agents = await res.json();
  const byName = Object.fromEntries(agents.map((a) => [a.name, a]));
  for (const name of ["commander", "planner", "worker", "reviewer"]) assert.ok(byName[name], `agent ${name} listed`);
  assert.equal(byName.commander.mode, "primary");
  assert.equal(byName.worker.mode, "subagent");
  assert.match(byName.worker.prompt, /foreman_delegate/);
  assert.equal(byName.reviewer.description, "USER REVIEWER");
  assert.equal(byName.reviewer.prompt, "The user's own reviewer.");
  // The default agent is still OpenCode's: a prompt that names none runs as `build`.
  const session = await newParent("default agent");
  await say(session, "SAY hello");
  const [first] = await transcript(session);
  assert.equal(first.info.agent, "build");
});

test("a bad tool argument answers with the error code and field and changes nothing", LIMIT, async () => {
  const parent = await newParent("bad arguments");
  const before = model.log.length;
  await say(parent, call("foreman_delegate", { tasks: [{ agent: "worker", prompt: "SAY fine", description: "fine", model: "fake/child" }, { agent: "worker", prompt: "SAY bad", retries: 99, model: "fake/child" }] }));
  const part = await lastToolPart(parent, "foreman_delegate");
  assert.equal(part.state.status, "error");
  assert.match(part.state.error, /INVALID_INPUT \(tasks\[1\]\.retries\)/);
  await say(parent, call("foreman_delegate", { tasks: [{ agent: "worker", prompt: "SAY fine", dependsOn: [3], model: "fake/child" }] }));
  assert.match((await lastToolPart(parent, "foreman_delegate")).state.error, /INVALID_INPUT \(tasks\[0\]\.dependsOn\[0\]\)/);
  await say(parent, call("foreman_list", { parent: "this" }));
  assert.equal((await lastToolPart(parent, "foreman_list")).state.output, "No tasks match.");
  assert.equal((await client.session.children({ path: { id: parent }, query: { directory: good } })).data.length, 0);
  assert.ok(!model.log.slice(before).some((r) => r.model === "child"), "no task reached the model");
});

test("sub-agents may delegate up to the depth limit and are refused beyond it", LIMIT, async () => {
  const parent = await newParent("nested");
  const level3 = call("foreman_delegate", { tasks: [{ agent: "worker", prompt: "SAY too deep", description: "level 3", model: "fake/nested" }] });
  const level2 = call("foreman_delegate", { tasks: [{ agent: "worker", prompt: level3, description: "level 2", model: "fake/nested" }], mode: "wait" });
  await say(parent, call("foreman_delegate", { tasks: [{ agent: "worker", prompt: level2, description: "level 1", model: "fake/nested" }], mode: "wait" }));
  const out = (await lastToolPart(parent, "foreman_delegate")).state.output;
  assert.match(out, /^1 task settled: 1 succeeded/);
  assert.match(out, /"level 2"/, "the child delegated once more");
  assert.match(out, /DEPTH_LIMIT \(parent\): nesting limit reached/, out);
  assert.ok(!model.log.some((r) => r.text === "SAY too deep"), "nothing ran beyond the limit");
  const [child] = (await client.session.children({ path: { id: parent }, query: { directory: good } })).data;
  const grandchildren = (await client.session.children({ path: { id: child.id }, query: { directory: good } })).data;
  assert.equal(grandchildren.length, 1);
  assert.equal(grandchildren[0].title.startsWith("level 2"), true);
});
