// Faults injected into a real `opencode serve` (one server; one project and one fake model per
// scenario, so a provider-wide fault touches only its own scenario; the scenarios run side by
// side to keep the suite short):
//   1. a 429 storm (every request answers 429 with `retry-after: 1` for 10 s, and at least until
//      OpenCode has given up on a first attempt, which a loaded machine delays): OpenCode's `retry`
//      statuses lower the model's effective limit before any attempt has ended, OpenCode gives up
//      on each attempt after ~6 s, the engine re-dispatches it after Retry-After in a fresh session
//      (so every session's transcript holds the prompt once), no task fails, and every queued task
//      starts after the storm;
//   2. an outage (every request answers 500): five failed tasks open the model's breaker (a toast
//      says so), a task queued for it waits and one with failFast is refused at once, one probe
//      goes through after the open time, the breaker closes when the model is back, and every
//      task ends in a state that says what happened;
//   3. a hung model (the stream opens and never finishes): the task times out at its deadline, its
//      session is aborted (the model sees the stream closed, the session is not busy), its slot
//      goes to the task queued behind it, and its parent is told.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { createOpencodeClient } from "@opencode-ai/sdk";
import { startFakeModel } from "./fake-model.mjs";
import { Opencode, newSession as newSessionIn, repo, say as sayIn, until, watchEvents } from "./opencode.mjs";

const LIMIT = { timeout: 180_000 };
const STORM_MS = 10_000;
const OPEN_MS = 4_000;
let opencode, client;
const models = {};
const dirs = {};
/** Bus events per project, in arrival order. */
const events = {};
const watchers = [];

before(async () => {
  opencode = new Opencode();
  const plugin = `file://${join(repo, "plugin", "index.ts")}`;
  for (const name of ["storm", "outage", "hang"]) models[name] = await startFakeModel({ noticeDelayMs: 100 });
  // warmAboveMs far above a local create: no warm sessions, so every child session ran a task.
  dirs.storm = opencode.project("storm", {
    modelUrl: models.storm.url,
    models: ["storm"],
    plugins: [[plugin, { keys: { "fake/storm": 2 }, warmAboveMs: 60_000 }]],
  });
  dirs.outage = opencode.project("outage", {
    modelUrl: models.outage.url,
    models: ["down"],
    plugins: [[plugin, { keys: { "fake/down": 5 }, breaker: { openMs: OPEN_MS }, warmAboveMs: 60_000 }]],
  });
  dirs.hang = opencode.project("hang", {
    modelUrl: models.hang.url,
    models: ["hung"],
    plugins: [[plugin, { keys: { "fake/hung": 1 }, warmAboveMs: 60_000 }]],
  });
  await opencode.start();
  client = createOpencodeClient({ baseUrl: opencode.url });
  for (const [name, dir] of Object.entries(dirs)) {
    const watch = watchEvents(opencode.url, dir);
    events[name] = watch.events;
    watchers.push(watch.stop);
  }
}, LIMIT);

after(async () => {
  for (const stop of watchers) await stop();
  await opencode?.stop();
  for (const m of Object.values(models)) await m.close();
});

const newSession = (directory, title) => newSessionIn(client, directory, title);
const say = (directory, sessionID, text) => sayIn(client, directory, sessionID, text);

async function messages(directory, sessionID) {
  return (await client.session.messages({ path: { id: sessionID }, query: { directory } })).data;
}

/** Same JSON value, whatever the key order. */
function sameJson(a, b) {
  const norm = (v) => (Array.isArray(v) ? v.map(norm) : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, norm(v[k])])) : v);
  return JSON.stringify(norm(a)) === JSON.stringify(norm(b));
}

/** Has the session's model call `tool` with `args` and returns that call's final state. The call
 * is found by its input, not by being the last one: a notice turn can end the prompt's wait
 * before the turn that makes this call has run. */
async function call(directory, sessionID, tool, args) {
  await say(directory, sessionID, `CALL ${tool} ${JSON.stringify(args)}`);
  return until(`the ${tool} call in ${sessionID}`, async () => {
    const parts = (await messages(directory, sessionID)).flatMap((m) => m.parts);
    const part = parts.find((p) => p.type === "tool" && p.tool === tool && sameJson(p.state.input, args));
    return part && (part.state.status === "completed" || part.state.status === "error") && part.state;
  }, 60_000);
}

/** What a tool answers when a fresh session's model calls it (the session's own model is the
 * unfaulted default). */
async function ask(directory, tool, args = {}) {
  const s = await newSession(directory, `ask ${tool}`);
  return call(directory, s, tool, args);
}

const idsOf = (output) => [...output.matchAll(/^#(\d+) /gm)].map((m) => Number(m[1]));
const lineOf = (output, id) => output.split("\n").find((l) => l.startsWith(`#${id} `)) ?? "";
const toasts = (name) => events[name].filter((e) => e.type === "tui.toast.show");

/** Most requests at the model at once among `entries`. */
function peakOf(entries) {
  // At each request's start: that request and those still open then. A request answered within
  // the millisecond it arrived still counts as one (a sweep over start/end marks would see it
  // end before it began).
  const open = (r) => 1 + entries.filter((q) => q !== r && q.start <= r.start && (q.end ?? Infinity) > r.start).length;
  return Math.max(0, ...entries.map(open));
}

/** The child sessions of `parent` and their transcripts. */
async function children(directory, parent) {
  const list = (await client.session.children({ path: { id: parent }, query: { directory } })).data;
  return Promise.all(list.map(async (s) => ({ session: s, messages: await messages(directory, s.id) })));
}

describe("faults in a real server", { concurrency: true }, () => {
  test("a 10 s 429 storm: the limit backs off, rate-limited tasks are re-dispatched after Retry-After in a fresh session, none fails, every queued task starts after it", LIMIT, async (t) => {
    const dir = dirs.storm, model = models.storm;
    const parent = await newSession(dir, "storm parent");
    model.setFault({ status: 429, headers: { "retry-after": "1" }, models: ["storm"] });
    const stormStart = Date.now();
    const tasks = [0, 1, 2, 3].map((i) => ({ agent: "worker", prompt: `SLEEP 500 SAY storm ${i}`, description: `storm ${i}`, model: "fake/storm" }));
    const ids = idsOf((await call(dir, parent, "foreman_delegate", { tasks })).output);
    assert.equal(ids.length, 4);
    // OpenCode's `retry` statuses reach the limiter while the first attempts are still retrying
    // inside their sessions (OpenCode gives up on an attempt only after ~6 s).
    const backedOff = await until("the effective limit to drop", async () => {
      const state = await ask(dir, "foreman_status");
      return /fake\/storm \d+\/1 of 2\b/.test(state.output) && state;
    }, STORM_MS);
    // When the tool read the engine's stats (the tool call's own start stamp).
    const droppedAt = backedOff.time.start - stormStart;
    t.diagnostic(`effective limit 1 of 2 at ${droppedAt} ms into the storm: ${backedOff.output.split("\n")[2]}`);
    // The storm lasts 10 s, and at least until OpenCode has given up on a first attempt (~6 s of
    // its own retries here; longer on a loaded machine), so the engine meets the 429 APIError.
    const gaveUp = (e) => e.type === "session.error" && e.properties?.error?.data?.statusCode === 429;
    const firstGaveUp = await until("OpenCode to give up on a first attempt", () => events.storm.find(gaveUp), 60_000);
    assert.ok(firstGaveUp.at - stormStart > droppedAt, `the limit dropped on retry statuses (${droppedAt} ms), before any attempt ended (${firstGaveUp.at - stormStart} ms)`);
    await new Promise((r) => setTimeout(r, Math.max(0, stormStart + STORM_MS - Date.now())));
    model.setFault(null);
    const stormEnd = Date.now();
    const during = model.log.filter((r) => r.start < stormEnd && r.model === "storm");
    t.diagnostic(`storm: ${during.length} requests to the model in ${stormEnd - stormStart} ms, all answered ${[...new Set(during.map((r) => r.status))].join(",")}; OpenCode first gave up after ${firstGaveUp.at - stormStart} ms`);
    assert.ok(during.every((r) => r.status === 429));

    const out = await until("every storm task settled", async () => {
      const o = (await ask(dir, "foreman_result", { ids: ids.map((i) => `#${i}`), block: true, timeoutMs: 5_000 })).output;
      return !/not settled yet/.test(o) && o;
    }, 90_000);
    t.diagnostic(out.split("\n\n").map((b) => b.split("\n")[0]).join("\n"));
    for (const id of ids) assert.match(out, new RegExp(`^#${id} succeeded · worker · "storm \\d" · session ses_\\w+ · \\d+ attempts? · `, "m"));
    for (const [i] of tasks.entries()) {
      const mine = model.log.filter((r) => r.text === `SLEEP 500 SAY storm ${i}`);
      assert.ok(mine.some((r) => r.outcome === "done" && r.start >= stormEnd), `storm ${i} started after the storm`);
    }
    const attempts = [...out.matchAll(/ · (\d+) attempts? · /g)].map((m) => Number(m[1]));
    assert.ok(attempts.some((a) => a >= 2), `some task was re-dispatched (attempts ${attempts})`);
    // The key limit holds at the model, storm or not.
    assert.ok(peakOf(model.log.filter((r) => r.model === "storm")) <= 2);
    // Each attempt ran in a session of its own: every child's transcript holds the prompt once,
    // ending with the 429 that ended it or with the answer.
    const kids = await children(dir, parent);
    assert.equal(kids.length, attempts.reduce((a, b) => a + b, 0), kids.map((k) => k.session.title).join(", "));
    const byTitle = new Map();
    for (const { session, messages: m } of kids) {
      const prompts = m.filter((x) => x.info.role === "user");
      assert.equal(prompts.length, 1, `${session.title}: ${prompts.length} prompts`);
      const last = m[m.length - 1].info;
      assert.ok(last.error?.data?.statusCode === 429 || (last.finish === "stop" && !last.error), `${session.title}: ${JSON.stringify(last.error ?? last.finish)}`);
      if (last.error) {
        // What the engine reads the wait from: the provider's headers on OpenCode's APIError.
        assert.equal(last.error.name, "APIError");
        assert.equal(last.error.data.responseHeaders?.["retry-after"], "1", JSON.stringify(last.error.data));
      }
      byTitle.set(session.title, [...(byTitle.get(session.title) ?? []), { sent: prompts[0].info.time.created, ended: last.time.completed, error: !!last.error }]);
    }
    // An attempt is sent again only after the provider's Retry-After, counted from the 429 that
    // ended the one before.
    const gaps = [];
    for (const attemptsOf of byTitle.values()) {
      attemptsOf.sort((a, b) => a.sent - b.sent);
      for (let i = 1; i < attemptsOf.length; i++) {
        assert.ok(attemptsOf[i - 1].error, "only a failed attempt is followed by another");
        gaps.push(attemptsOf[i].sent - attemptsOf[i - 1].ended);
      }
    }
    t.diagnostic(`re-dispatched ${gaps.length} attempt(s), each after ${gaps.join(", ")} ms (Retry-After 1 s)`);
    assert.ok(gaps.length >= 1 && gaps.every((g) => g >= 900), `gaps ${gaps}`);
    // No slot is left taken.
    const status = (await ask(dir, "foreman_status")).output;
    assert.match(status, /fake\/storm 0\//, status);
  });

  test("an outage: 5 failures open the breaker (toast), queued work waits and failFast work is refused, one probe after the open time, the breaker closes on recovery", LIMIT, async (t) => {
    const dir = dirs.outage, model = models.outage;
    const parent = await newSession(dir, "outage parent");
    // `retry-after-ms` keeps OpenCode's own five retries of each 500 short.
    model.setFault({ status: 500, headers: { "retry-after-ms": "10" }, models: ["down"] });
    const failing = [0, 1, 2, 3, 4].map((i) => ({ agent: "worker", prompt: `SAY down ${i}`, description: `down ${i}`, model: "fake/down" }));
    const failedIds = idsOf((await call(dir, parent, "foreman_delegate", { tasks: failing })).output);
    const open = await until("the breaker's toast", () => toasts("outage").find((e) => /^fake\/down keeps failing: its circuit breaker opened/.test(e.properties.message)), 60_000);
    t.diagnostic(`toast: ${open.properties.message} (${open.properties.variant})`);
    // The breaker cannot have opened before the last request of the fifth failure ended.
    const openedAt = open.at;
    const openedAfter = Math.max(...model.log.filter((r) => r.text.startsWith("SAY down")).map((r) => r.end));
    // While it is open: queued work waits (the model sees none of it), failFast work is refused.
    const backTasks = { tasks: [0, 1].map((i) => ({ agent: "worker", prompt: `SAY back ${i}`, description: `back ${i}`, model: "fake/down" })) };
    const waitingIds = idsOf((await call(dir, parent, "foreman_delegate", backTasks)).output);
    assert.equal(waitingIds.length, 2);
    const fast = await call(dir, parent, "foreman_delegate", { tasks: [{ agent: "worker", prompt: "SAY fast", description: "fast", model: "fake/down", failFast: true }] });
    assert.equal(fast.status, "error", JSON.stringify(fast));
    assert.match(fast.error, /BREAKER_OPEN/);
    assert.match(fast.error, /fake\/down keeps failing and its circuit breaker is open \(the next probe goes in \d s\)/);
    const status = (await ask(dir, "foreman_status")).output;
    // (Its effective limit is lower too: OpenCode's retry statuses and the failures backed it off.)
    assert.match(status, /fake\/down 0\/(\d of )?5 \(\+2 queued\), breaker open \(probe in \d+ s\)/, status);
    // The model comes back before the open time ends; the first probe finds it well.
    model.setFault(null);
    const list = await until("the waiting tasks settled", async () => {
      const o = (await ask(dir, "foreman_list", {})).output;
      return waitingIds.every((id) => /^#\d+ succeeded/.test(lineOf(o, id))) && o;
    }, 60_000);
    t.diagnostic(list);
    const back = model.log.filter((r) => r.text.startsWith("SAY back"));
    assert.equal(back.length, 2, "each waiting task reached the model once");
    assert.ok(!model.log.some((r) => r.text === "SAY fast"), "the failFast task never ran");
    const firstProbe = Math.min(...back.map((r) => r.start));
    t.diagnostic(`first probe ${firstProbe - openedAfter} ms after the last failed request (open time ${OPEN_MS} ms)`);
    assert.ok(firstProbe - openedAfter >= OPEN_MS, `the probe waited for the open time (${firstProbe - openedAfter} ms)`);
    assert.equal(peakOf(back), 1, "one probe at a time");
    // Every failed task says what happened; none was sent again by the engine.
    for (const id of failedIds) assert.match(lineOf(list, id), /^#\d+ failed · worker · "down \d" · session ses_\w+ · upstream: APIError 500/);
    for (const [i] of failing.entries()) {
      const sent = model.log.filter((r) => r.text === `SAY down ${i}`);
      assert.ok(sent.length >= 1 && sent.length <= 6, `down ${i}: ${sent.length} requests (one prompt and OpenCode's own retries)`);
      assert.ok(sent.every((r) => r.start <= openedAt), `down ${i} was not re-sent after it failed`);
    }
    const closed = await until("the breaker closed", async () => {
      const o = (await ask(dir, "foreman_status")).output;
      return /fake\/down 0\/(\d of )?5(?!.*breaker)/.test(o.split("\n")[2]) && o;
    }, 10_000);
    t.diagnostic(closed.split("\n")[2]);
    await until("the recovery toast", () => toasts("outage").find((e) => /^fake\/down recovered: its circuit breaker closed/.test(e.properties.message)), 5_000);
  });

  test("a hung model: the task times out at its deadline, its session is aborted, its slot goes to the next task, its parent is told", LIMIT, async (t) => {
    const dir = dirs.hang, model = models.hang;
    const parent = await newSession(dir, "hang parent");
    const tasks = [
      { agent: "worker", prompt: "HANG forever", description: "hung", model: "fake/hung", deadlineMs: 3_000 },
      { agent: "worker", prompt: "SAY after the hang", description: "after", model: "fake/hung" },
    ];
    const launchedAt = Date.now();
    const [hung, next] = idsOf((await call(dir, parent, "foreman_delegate", { tasks })).output);
    const notice = await until("the parent told", async () => {
      const m = await messages(dir, parent);
      const texts = m.flatMap((x) => x.parts).filter((p) => p.type === "text" && p.synthetic).map((p) => p.text);
      return texts.find((x) => new RegExp(`#${hung} timed_out`).test(x));
    }, 60_000);
    t.diagnostic(notice);
    const hangReq = model.log.find((r) => r.text === "HANG forever");
    await until("the hung stream closed", () => hangReq.outcome === "closed", 15_000);
    t.diagnostic(`hung stream closed ${hangReq.end - launchedAt} ms after the launch (deadline 3000 ms from dispatch)`);
    assert.ok(hangReq.end - launchedAt >= 3_000 && hangReq.end - launchedAt < 20_000);
    const after = await until("the next task's request", () => model.log.find((r) => r.text === "SAY after the hang" && r.outcome === "done"), 30_000);
    t.diagnostic(`the queued task reached the model ${after.start - hangReq.end} ms after the hung stream closed`);
    assert.ok(after.start >= launchedAt + 3_000, "the queued task waited for the hung one's slot (key limit 1)");
    const list = await until("both settled", async () => {
      const o = (await ask(dir, "foreman_list", {})).output;
      return /^#\d+ succeeded/.test(lineOf(o, next)) && o;
    }, 30_000);
    assert.match(lineOf(list, hung), /^#\d+ timed_out · worker · "hung" · session (ses_\w+) · deadline passed/);
    const session = /session (ses_\w+)/.exec(lineOf(list, hung))[1];
    const busy = (await client.session.status({ query: { directory: dir } })).data;
    assert.equal(busy[session], undefined, `the hung session is not busy: ${JSON.stringify(busy[session])}`);
    const m = await messages(dir, session);
    assert.equal(m[m.length - 1].info.error?.name, "MessageAbortedError", JSON.stringify(m[m.length - 1].info));
    const status = (await ask(dir, "foreman_status")).output;
    assert.match(status, /fake\/hung 0\/1\b/, status);
  });
});
