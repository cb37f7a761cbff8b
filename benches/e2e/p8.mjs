// P8: foreman inside a real `opencode serve` (npm opencode-ai, pinned) with the scripted fake
// model on 127.0.0.1, one run of each workload, every figure beside its bound. Part of
// `make bench`; a few minutes. Workloads (each on a model name of its own, so the fake model's
// per-model counts are that run's alone):
//   1. 24 sub-agent tasks of 2 s (`SLEEP 2000`) launched by ONE `foreman_delegate` call that a
//      parent session's model makes, key limit 4: makespan against ceil(24/4) × 2 s, how long the
//      launching tool call stayed open, and the delay from each child's last model byte to the
//      task settled in the engine and to the parent's notice.
//   2. 100 tasks of 1 s at limit 20, beside the same 100 prompts sent raw 20-wide through the SDK
//      (session.create + session.prompt each) in the same server; then the same 100 tasks with
//      warm sessions always on (`warmAboveMs: 0`), for pool-hit session acquire against
//      session.create.
//   3. Workload 1 again (no notices) under a 10 s 429 storm (`retry-after: 1`), and under 30 % of
//      requests answering 500 (no retry header: OpenCode's own backoff applies, as with a real
//      provider's bare 500). Faults apply to the children's model only; the parent's model is
//      healthy, so the parent can launch and be told.
// Where each time is read (all epoch ms on this machine's clock):
//   - a child's last model byte: the fake model's `end` of that child's request;
//   - settled in the engine: the plugin's timing trace (`FOREMAN_TRACE_FILE`, see
//     plugin/src/plugin.ts), written when the engine reports the transition to the plugin;
//   - the notice: the start of the fake model's request whose last user message is the
//     `[foreman]` notice listing that task, and the notice message's creation time in the
//     parent's transcript;
//   - the launching call: its tool part's `time.start` / `time.end` in the parent's transcript.
// Every figure is one run on a shared machine: expect noise.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { createOpencodeClient } from "@opencode-ai/sdk";
import { startFakeModel } from "../../tests/e2e/fake-model.mjs";
import { Opencode, newSession, repo, say as sayIn, until, watchEvents } from "../../tests/e2e/opencode.mjs";

const SETTLED = new Set(["succeeded", "failed", "cancelled", "timed_out", "unknown"]);
const STORM_MS = 10_000;
/** How long the plugin gathers settlements before a notice (read from its source: Node runs no TS). */
const GATHER_MS = Number(/export const GATHER_MS = (\d+)/.exec(readFileSync(join(repo, "plugin", "src", "notify.ts"), "utf8"))?.[1]);
// `FOREMAN_P8_ONLY=storm,flaky` runs only those workloads (24, 100, storm, flaky); all by default.
const ONLY = (process.env.FOREMAN_P8_ONLY ?? "").split(",").filter(Boolean);
const wanted = (name) => !ONLY.length || ONLY.includes(name);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const call = (tool, args) => `CALL ${tool} ${JSON.stringify(args)}`;
const idsOf = (output) => [...output.matchAll(/^#(\d+) /gm)].map((m) => Number(m[1]));
/** The task ids a `[foreman]` notice reports as settled. */
const noticeIds = (text) => (/Read replies with foreman_result \(ids: ([\d, ]+)\)/.exec(text)?.[1] ?? "").split(",").map(Number).filter(Boolean);

function pct(values, p) {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)];
}
const ms = (v) => (Number.isFinite(v) ? `${Math.round(v)} ms` : "n/a");
const sec = (v) => (Number.isFinite(v) ? `${(v / 1000).toFixed(2)} s` : "n/a");
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : "—");

const model = await startFakeModel();
const opencode = new Opencode();
const traceFile = join(opencode.root, "trace.jsonl");
opencode.env.FOREMAN_TRACE_FILE = traceFile;
const plugin = `file://${join(repo, "plugin", "index.ts")}`;
const lanes = { worker: 64 };
const keys = { "fake/p8": 4, "fake/storm": 4, "fake/flaky": 4, "fake/wide": 20, "fake/warmup": 4 };
const dir = opencode.project("p8", { modelUrl: model.url, plugins: [[plugin, { lanes, keys }]], models: ["p8", "storm", "flaky", "wide", "raw", "warmup"] });
const warmDir = opencode.project("p8-warm", {
  modelUrl: model.url,
  plugins: [[plugin, { lanes, keys: { "fake/warm": 20, "fake/warmup": 4 }, warmAboveMs: 0 }]],
  models: ["warm", "warmup"],
});

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await opencode.stop().catch(() => {});
  await model.close().catch(() => {});
}
for (const sig of ["SIGINT", "SIGTERM"]) process.once(sig, () => stop().then(() => process.exit(130)));

/** The plugin's timing trace: [{ at, id, state, sessionID, updatedMs, directory }]. */
function trace() {
  if (!existsSync(traceFile)) return [];
  return readFileSync(traceFile, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
}
/** Per task id of `directory`: the first time the plugin heard it enter each state. */
function transitions(directory, ids) {
  const want = new Set(ids);
  const out = new Map(ids.map((id) => [id, {}]));
  for (const e of trace()) if (e.directory === directory && want.has(e.id) && out.get(e.id)[e.state] === undefined) out.get(e.id)[e.state] = e;
  return out;
}
const settledOf = (t) => Object.values(t).find((e) => SETTLED.has(e.state));

/** When each session was first seen idle on the bus after `since` (the bench's clock on
 * arrival of the server's event): OpenCode's own report that a child's turn ended. */
function watchIdle(directory) {
  const watch = watchEvents(opencode.url, directory);
  const idle = (e) => e.type === "session.idle" || (e.type === "session.status" && e.properties?.status?.type === "idle");
  return {
    idleAfter: (sessionID, since) => watch.events.find((e) => idle(e) && e.properties.sessionID === sessionID && e.at >= since)?.at,
    stop: watch.stop,
  };
}

let client;
const newParent = (directory, title) => newSession(client, directory, title);
const say = (directory, sessionID, text) => sayIn(client, directory, sessionID, text);
const transcript = async (directory, id) => (await client.session.messages({ path: { id }, query: { directory } })).data;
async function lastToolPart(directory, sessionID, tool) {
  const parts = (await transcript(directory, sessionID)).flatMap((m) => m.parts).filter((p) => p.type === "tool" && p.tool === tool);
  if (!parts.length) throw new Error(`no ${tool} call in ${sessionID}`);
  return parts[parts.length - 1];
}

/** The parent's model launches `tasks` in one foreman_delegate call; waits until all settle. */
async function delegate(directory, title, tasks, { notify, settleMs }) {
  const parent = await newParent(directory, title);
  await say(directory, parent, call("foreman_delegate", { tasks, notify }));
  const part = await lastToolPart(directory, parent, "foreman_delegate");
  if (part.state.status !== "completed") throw new Error(`foreman_delegate: ${JSON.stringify(part.state)}`);
  const ids = idsOf(part.state.output);
  if (ids.length !== tasks.length) throw new Error(`launched ${ids.length} of ${tasks.length}:\n${part.state.output}`);
  let t;
  try {
    await until(`${tasks.length} tasks settled`, () => {
      t = transitions(directory, ids);
      return [...t.values()].every(settledOf);
    }, settleMs);
  } catch {
    // Reported as unsettled below, not thrown: a bench run shows what happened.
  }
  t = transitions(directory, ids);
  return { parent, ids, part, t, launchedAt: part.state.time.start, open: part.state.time.end - part.state.time.start };
}

/** Requests of `name` at the model, keyed by their prompt text (the last one per text). */
function requestsOf(name) {
  const all = model.log.filter((r) => r.model === name);
  return { all, byText: new Map(all.map((r) => [r.text, r])) };
}

const rows = [];
const notes = [];
const row = (metric, measured, bound, r = "—") => rows.push({ metric, measured, bound, ratio: r });
const section = (title) => rows.push({ section: title });

try {
  await opencode.start();
  client = createOpencodeClient({ baseUrl: opencode.url });

  // Warm-up, not measured: each plugin instance loads (lazily, on the first request for its
  // project), and the session/prompt paths of a fresh server run once.
  for (const d of [dir, warmDir]) {
    const p = await newParent(d, "warm-up");
    await say(d, p, call("foreman_delegate", { tasks: [{ agent: "worker", prompt: "SAY warm", description: "warm-up", model: "fake/warmup" }], mode: "wait" }));
  }
  {
    const p = await newParent(dir, "raw warm-up");
    const s = await client.session.create({ body: { parentID: p, title: "raw warm-up" }, query: { directory: dir } });
    await client.session.prompt({ path: { id: s.data.id }, query: { directory: dir }, body: { agent: "worker", model: { providerID: "fake", modelID: "raw" }, parts: [{ type: "text", text: "SAY warm" }] } });
  }

  // ---- 1. 24 × 2 s at key limit 4, with notices ----
  if (wanted("24")) {
    const N = 24, LIMIT = 4, TASK_MS = 2000;
    const bound = Math.ceil(N / LIMIT) * TASK_MS;
    const prompts = Array.from({ length: N }, (_, i) => `SLEEP ${TASK_MS} SAY p8 task ${i}`);
    model.resetPeaks();
    const bus = watchIdle(dir);
    await sleep(200);
    const run = await delegate(dir, "P8 24 tasks", prompts.map((prompt, i) => ({ agent: "worker", prompt, description: `p8 ${i}`, model: "fake/p8" })), { notify: true, settleMs: 120_000 });
    // Every notice reaches the model, and the parent's last notice turn ends.
    const noticeReqs = () => model.log.filter((r) => r.model === "fake-model" && r.text.startsWith("[foreman]") && noticeIds(r.text).some((id) => run.ids.includes(id)));
    await until("a notice for every task", () => new Set(noticeReqs().flatMap((r) => noticeIds(r.text))).size === N, 30_000).catch(() => {});
    await until("the parent idle", async () => !(await client.session.status({ query: { directory: dir } })).data[run.parent], 15_000).catch(() => {});

    const { byText, all } = requestsOf("p8");
    await bus.stop();
    const settle = [], notice = [], written = [], gather = [], idle = [], start = { create: [], prompt: [], server: [], all: [] };
    const noticeAt = new Map();
    for (const r of noticeReqs()) for (const id of noticeIds(r.text)) if (!noticeAt.has(id)) noticeAt.set(id, r.start);
    const msgAt = new Map();
    for (const m of await transcript(dir, run.parent)) {
      if (m.info.role !== "user") continue;
      const text = m.parts.filter((p) => p.type === "text").map((p) => p.text).join("\n");
      if (text.startsWith("[foreman]")) for (const id of noticeIds(text)) if (!msgAt.has(id)) msgAt.set(id, m.info.time.created);
    }
    let lastSettle = -Infinity, ok = 0;
    run.ids.forEach((id, i) => {
      const end = byText.get(prompts[i])?.end;
      const s = settledOf(run.t.get(id));
      if (s) lastSettle = Math.max(lastSettle, s.at);
      if (s?.state === "succeeded") ok++;
      const t = run.t.get(id), req = byText.get(prompts[i]);
      if (t.admitted && t.session_acquired && t.dispatched && req) {
        start.create.push(t.session_acquired.at - t.admitted.at);
        start.prompt.push(t.dispatched.at - t.session_acquired.at);
        start.server.push(req.start - t.dispatched.at);
        start.all.push(req.start - t.admitted.at);
      }
      if (end === undefined || !s) return;
      settle.push(s.at - end);
      const idleAt = s.sessionID && bus.idleAfter(s.sessionID, end);
      if (idleAt) idle.push(idleAt - end);
      if (noticeAt.has(id)) notice.push(noticeAt.get(id) - end);
      if (noticeAt.has(id)) gather.push(noticeAt.get(id) - s.at);
      if (msgAt.has(id)) written.push(msgAt.get(id) - end);
    });
    const span = Math.max(...all.map((r) => r.end ?? NaN)) - Math.min(...all.map((r) => r.start));
    const makespan = lastSettle - run.launchedAt;
    const notices = new Set(noticeReqs().map((r) => r.seq)).size;
    section(`24 tasks × 2 s, key limit 4, one foreman_delegate call (${ok}/${N} succeeded, peak ${model.peak.p8} at the model)`);
    row("makespan: launch call start → last task settled", sec(makespan), `${sec(bound)} (goal ≤ 1.05×)`, ratio(makespan, bound));
    row("at the model: first child request start → last end", sec(span), sec(bound), ratio(span, bound));
    row("launching tool call open (tool part time.end − time.start)", ms(run.open), "goal < 100 ms", ratio(run.open, 100));
    row("task admitted → its request at the model, p50 / max", `${ms(pct(start.all, 50))} / ${ms(Math.max(...start.all))}`, "—");
    row(`  of which session.create ${ms(pct(start.create, 50))}, promptAsync ${ms(pct(start.prompt, 50))}, OpenCode to the model ${ms(pct(start.server, 50))} (p50s)`, "", "");
    row("child's last model byte → session idle on the bus (OpenCode's own), p50 / max", `${ms(pct(idle, 50))} / ${ms(Math.max(...idle))}`, "—");
    row("child's last model byte → settled in the engine, p50 / max", `${ms(pct(settle, 50))} / ${ms(Math.max(...settle))}`, "goal ≤ 100 / ≤ 300 ms", `${ratio(pct(settle, 50), 100)} / ${ratio(Math.max(...settle), 300)}`);
    row(`child's last model byte → notice request at the model, p50 / max (${notices} notices for ${N} tasks: batched, at most 1 per idle period of the parent)`, `${ms(pct(notice, 50))} / ${ms(Math.max(...notice))}`, "goal ≤ 100 / ≤ 300 ms", `${ratio(pct(notice, 50), 100)} / ${ratio(Math.max(...notice), 300)}`);
    row("  of which settled in the engine → notice request at the model, p50 / max", `${ms(pct(gather, 50))} / ${ms(Math.max(...gather))}`, `notices gather ${GATHER_MS} ms`);
    row("child's last model byte → notice message created in the parent, p50 / max", `${ms(pct(written, 50))} / ${ms(Math.max(...written))}`, "goal ≤ 100 / ≤ 300 ms", `${ratio(pct(written, 50), 100)} / ${ratio(Math.max(...written), 300)}`);
  }

  // ---- 2. 100 × 1 s at limit 20: raw SDK, foreman, foreman with warm sessions ----
  if (wanted("100")) {
    const N = 100, WIDE = 20, TASK_MS = 1000;
    const bound = Math.ceil(N / WIDE) * TASK_MS;
    // Raw: 20 workers, each creates a child session and prompts it (blocking) until 100 are done.
    const rawParent = await newParent(dir, "P8 raw 100");
    const creates = [];
    let next = 0, rawOk = 0;
    model.resetPeaks();
    const rawStart = Date.now();
    await Promise.all(Array.from({ length: WIDE }, async () => {
      for (let i = next++; i < N; i = next++) {
        const t0 = performance.now();
        const s = await client.session.create({ body: { parentID: rawParent, title: `raw ${i}` }, query: { directory: dir } });
        creates.push(performance.now() - t0);
        if (!s.data) continue;
        const r = await client.session.prompt({
          path: { id: s.data.id },
          query: { directory: dir },
          body: { agent: "worker", model: { providerID: "fake", modelID: "raw" }, parts: [{ type: "text", text: `SLEEP ${TASK_MS} SAY raw ${i}` }] },
        });
        if (r.data && !r.data.info?.error) rawOk++;
      }
    }));
    const rawMakespan = Date.now() - rawStart;
    const rawPeak = model.peak.raw;

    const wide = async (directory, name) => {
      const prompts = Array.from({ length: N }, (_, i) => `SLEEP ${TASK_MS} SAY ${name} ${i}`);
      model.resetPeaks();
      const run = await delegate(directory, `P8 ${name} 100`, prompts.map((prompt, i) => ({ agent: "worker", prompt, description: `${name} ${i}`, model: `fake/${name}` })), { notify: false, settleMs: 120_000 });
      const settled = [...run.t.values()].map(settledOf);
      const last = Math.max(...settled.map((s) => s?.at ?? NaN));
      return { run, ok: settled.filter((s) => s?.state === "succeeded").length, makespan: last - run.launchedAt, peak: model.peak[name] };
    };
    const plain = await wide(dir, "wide");
    const warm = await wide(warmDir, "warm");

    // Session acquire per task (the plugin heard `admitted` → `session_acquired`). A pool hit is a
    // task whose session OpenCode created before the task was admitted (a warm session).
    const created = new Map((await client.session.children({ path: { id: warm.run.parent }, query: { directory: warmDir } })).data.map((s) => [s.id, s.time.created]));
    const hit = [], miss = [];
    for (const t of warm.run.t.values()) {
      const a = t.admitted?.at, acq = t.session_acquired;
      if (a === undefined || !acq) continue;
      (created.get(acq.sessionID) < a ? hit : miss).push(acq.at - a);
    }
    const plainAcq = [...plain.run.t.values()].filter((t) => t.admitted && t.session_acquired).map((t) => t.session_acquired.at - t.admitted.at);

    section(`100 tasks × 1 s, limit 20 (raw ${rawOk}/${N} ok, peak ${rawPeak}; foreman ${plain.ok}/${N}, peak ${plain.peak}; with warm sessions ${warm.ok}/${N}, peak ${warm.peak})`);
    row("raw SDK, 20 wide: first create → last prompt answered", sec(rawMakespan), sec(bound), ratio(rawMakespan, bound));
    row("foreman: launch call start → last task settled", sec(plain.makespan), `${sec(rawMakespan)} raw (goal ≤ 1.1×)`, ratio(plain.makespan, rawMakespan));
    row("foreman, warm sessions always (warmAboveMs 0)", sec(warm.makespan), `${sec(rawMakespan)} raw (goal ≤ 1.1×)`, ratio(warm.makespan, rawMakespan));
    row(`session acquire, pool hit (${hit.length} tasks), p50 / max`, `${ms(pct(hit, 50))} / ${ms(Math.max(...hit))}`, `session.create p50 ${ms(pct(creates, 50))} (raw SDK)`, ratio(pct(hit, 50), pct(creates, 50)));
    row(`session acquire by session.create in the engine (${plainAcq.length} + ${miss.length} tasks), p50 / max`, `${ms(pct([...plainAcq, ...miss], 50))} / ${ms(Math.max(...plainAcq, ...miss))}`, `session.create p50 / max ${ms(pct(creates, 50))} / ${ms(Math.max(...creates))} (raw SDK)`, ratio(pct([...plainAcq, ...miss], 50), pct(creates, 50)));
  }

  // ---- 3. 24 × 2 s at limit 4 under faults ----
  const faulted = async (name, fault, stormMs) => {
    const N = 24;
    const prompts = Array.from({ length: N }, (_, i) => `SLEEP 2000 SAY ${name} task ${i}`);
    const before = model.log.length;
    model.resetPeaks();
    model.setFault({ ...fault, models: [name] });
    const on = Date.now();
    let off;
    const clear = stormMs === undefined ? undefined : setTimeout(() => { model.setFault(null); off = Date.now(); }, stormMs);
    const run = await delegate(dir, `P8 ${name}`, prompts.map((prompt, i) => ({ agent: "worker", prompt, description: `${name} ${i}`, model: `fake/${name}` })), { notify: false, settleMs: 240_000 });
    clearTimeout(clear);
    if (off === undefined) { model.setFault(null); off = Date.now(); }
    const reqs = model.log.slice(before).filter((r) => r.model === name);
    const settled = [...run.t.values()].map(settledOf);
    const states = {};
    for (const s of settled) states[s?.state ?? "not settled"] = (states[s?.state ?? "not settled"] ?? 0) + 1;
    // What the failed ones say, as foreman_list tells the parent.
    let failures = [];
    if (states.failed) {
      await say(dir, run.parent, call("foreman_list", { parent: "this", state: "failed" }));
      const out = (await lastToolPart(dir, run.parent, "foreman_list")).state.output;
      // `#id failed · agent · "description" [· session …] · class: message`
      failures = [...new Set(out.split("\n").slice(1).map((l) => l.split(" · ").slice(3).filter((x) => !x.startsWith("session ")).join(" · ")))];
    }
    return {
      failures,
      ok: states.succeeded ?? 0,
      states: Object.entries(states).map(([k, v]) => `${v} ${k}`).join(", "),
      during: reqs.filter((r) => r.start >= on && r.start < off).length,
      failedReqs: reqs.filter((r) => r.status).length,
      // Time-weighted requests in flight at the model over the run (the limit at work).
      inFlight: reqs.reduce((a, r) => a + ((r.end ?? r.start) - r.start), 0) / (Math.max(...reqs.map((r) => r.end ?? r.start)) - Math.min(...reqs.map((r) => r.start))),
      peak: model.peak[name],
      total: reqs.length,
      makespan: Math.max(...settled.map((s) => s?.at ?? NaN)) - run.launchedAt,
    };
  };
  if (wanted("storm")) {
    const storm = await faulted("storm", { status: 429, headers: { "retry-after": "1" } }, STORM_MS);
    section(`24 tasks × 2 s, limit 4, 429 (retry-after: 1) to every request for the first 10 s`);
    row("tasks succeeded", `${storm.ok}/24 (${storm.states})`, "24/24", ratio(storm.ok, 24));
    row("requests the model received during the storm", `${storm.during}`, "—");
    row(`makespan (${storm.total} requests in all, ${storm.failedReqs} answered 429)`, sec(storm.makespan), `${sec(STORM_MS + 12_000)} (storm + ceil(24/4) × 2 s)`, ratio(storm.makespan, STORM_MS + 12_000));
    row("requests in flight at the model over the run, mean / peak", `${storm.inFlight.toFixed(1)} / ${storm.peak}`, "limit 4");
    for (const f of storm.failures) notes.push(`429 storm, a failed task: ${f}`);
  }
  if (wanted("flaky")) {
    const flaky = await faulted("flaky", { status: 500, probability: 0.3 });
    section(`24 tasks × 2 s, limit 4, 30 % of requests answer 500 (no retry header)`);
    row("tasks succeeded", `${flaky.ok}/24 (${flaky.states})`, "24/24", ratio(flaky.ok, 24));
    row("requests the model received", `${flaky.total} (${flaky.failedReqs} answered 500)`, "24 + retries");
    row("requests in flight at the model over the run, mean / peak", `${flaky.inFlight.toFixed(1)} / ${flaky.peak}`, "limit 4");
    for (const f of flaky.failures) notes.push(`500s, a failed task: ${f}`);
    row("makespan", sec(flaky.makespan), `${sec(12_000)} (ceil(24/4) × 2 s)`, ratio(flaky.makespan, 12_000));
  }
} finally {
  await stop();
}

// ---- the table ----
const version = (bin, args = ["--version"]) => {
  try {
    return execFileSync(join(repo, "node_modules", ".bin", bin), args, { encoding: "utf8" }).trim();
  } catch {
    return "?";
  }
};
console.log(`\nP8: foreman in a real opencode serve ${version("opencode")} with the fake model (one run each)`);
console.log(`${new Date().toISOString().slice(0, 10)} · ${os.cpus().length} cores (${os.cpus()[0]?.model ?? "?"}) · Node ${process.versions.node} · Bun ${version("bun")}\n`);
console.log("| metric | measured | bound / goal | ratio |");
console.log("|---|---|---|---|");
for (const r of rows) {
  if (r.section) console.log(`| **${r.section}** | | | |`);
  else console.log(`| ${r.metric} | ${r.measured} | ${r.bound} | ${r.ratio} |`);
}
for (const n of notes) console.log(`\n${n}`);
