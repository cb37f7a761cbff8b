// The simulated OpenCode server itself (www/sim.js, which the demo page and these tests share):
// the event sequences the real server emits, its retries and Retry-After, the status map, seeded
// outcomes, lognormal latency, a lost connection, and both clocks.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SimServer } from "../../www/sim.js";
import { loadEngine } from "./fake-server.mjs";

const Engine = loadEngine();

/** A server whose bus events are recorded as `[ms since start, type, detail]`. */
function recorded(options) {
  const server = new SimServer(options);
  const t0 = server.now();
  const events = [];
  server.attach({
    hostEvent: ({ type, properties: p }) => {
      const detail = type === "session.status" ? p.status.type : type === "message.updated" ? p.info.finish : "";
      events.push([server.now() - t0, type, detail, p]);
    },
  });
  return { server, host: server.host(), events };
}

test("a turn goes busy after the gap, then message, status idle, session.idle", async () => {
  const { server, host, events } = recorded({ turnMs: 1_000, gapMs: 200 });
  const { id } = await host.createSession({ agent: "worker", title: "t" });
  await host.prompt({ sessionID: id, agent: "worker", text: "hello" });
  assert.deepEqual(await host.sessionStatuses({}), {}, "before the first busy the map is empty");
  await server.advance(500);
  assert.deepEqual(await host.sessionStatuses({}), { [id]: { type: "busy" } });
  assert.equal(await host.checkSession({ sessionID: id }), "busy");
  await server.advance(1_000);
  assert.deepEqual(events.map(([t, type, d]) => [t, type, d]), [
    [200, "session.status", "busy"],
    [1_000, "message.updated", "stop"],
    [1_000, "session.status", "idle"],
    [1_000, "session.idle", ""],
  ]);
  assert.deepEqual(await host.sessionStatuses({}), {});
  const last = await host.lastAssistantMessage({ sessionID: id });
  assert.equal(last.info.finish, "stop");
  assert.equal(last.parts[0].text, "done: hello");
});

test("a 429: OpenCode's retries show as retry statuses honouring Retry-After, then APIError 429 and idle twice", async () => {
  const { server, host, events } = recorded({ turnMs: 900, gapMs: 100, rates: { rateLimit: 1 }, providerRetries: 2, retryAfterMs: 1_000 });
  const { id } = await host.createSession({ agent: "worker", title: "t" });
  await host.prompt({ sessionID: id, agent: "worker", model: "p/m", text: "x" });
  await server.advance(400);
  const status = (await host.sessionStatuses({}))[id];
  assert.equal(status.type, "retry");
  assert.equal(status.attempt, 1);
  assert.equal(status.next, server.now() - 100 + 1_000, "next = when it failed + Retry-After");
  assert.match(status.message, /Retry-After/);
  await server.advance(10_000);
  assert.deepEqual(events.map(([t, type, d]) => [t, type, d]), [
    [100, "session.status", "busy"],
    [300, "session.status", "retry"],
    [1_300, "session.status", "busy"],
    [1_600, "session.status", "retry"],
    [2_600, "session.status", "busy"],
    [2_900, "message.updated", "error"],
    [2_900, "session.status", "idle"],
    [2_900, "session.idle", ""],
    [2_900, "session.idle", ""],
  ]);
  const { info } = await host.lastAssistantMessage({ sessionID: id });
  assert.equal(info.error.name, "APIError");
  assert.equal(info.error.data.statusCode, 429);
  assert.equal(info.error.data.responseHeaders["retry-after"], "1");
  assert.equal(server.turns.rateLimited, 1);
});

test("a hang stays busy until aborted; abort leaves MessageAbortedError and idle twice", async () => {
  const { server, host, events } = recorded({ rates: { hang: 1 } });
  const { id } = await host.createSession({ agent: "worker", title: "t" });
  await host.prompt({ sessionID: id, agent: "worker", text: "x" });
  await server.advance(60_000);
  assert.equal(await host.checkSession({ sessionID: id }), "busy");
  await host.abort({ sessionID: id });
  await server.advance(100);
  assert.deepEqual(events.map(([, type, d]) => `${type} ${d}`.trim()), ["session.status busy", "session.idle", "session.idle"]);
  assert.equal((await host.lastAssistantMessage({ sessionID: id })).info.error.name, "MessageAbortedError");
  assert.equal(await host.checkSession({ sessionID: id }), "idle");
});

test("seeded: a prompt's outcome depends on the seed and its text, not on the order of prompts", () => {
  const rates = { failure: 0.3, rateLimit: 0.2, hang: 0.1 };
  const texts = Array.from({ length: 200 }, (_, i) => `task ${i}`);
  const outcomes = (seed, order) => {
    const server = new SimServer({ seed, rates, latency: { worker: { medianMs: 1_000, sigma: 0.5 } } });
    return Object.fromEntries(order.map((t) => [t, server.plan(t, "worker", "p/m")]));
  };
  const a = outcomes(7, texts);
  assert.deepEqual(outcomes(7, [...texts].reverse()), a);
  assert.notDeepEqual(outcomes(8, texts), a);
  const kinds = Object.values(a).map((p) => (p.hang ? "hang" : p.status ?? "ok"));
  for (const kind of ["hang", 503, 429, "ok"]) assert.ok(kinds.includes(kind), kind);
  // A retry of the same text is a new draw.
  const server = new SimServer({ seed: 7, rates });
  const first = texts.map((t) => server.plan(t, "worker").status ?? "ok");
  const second = texts.map((t) => server.plan(t, "worker").status ?? "ok");
  assert.notDeepEqual(first, second);
});

test("turn latency is lognormal per agent: median and spread as configured", () => {
  const server = new SimServer({ latency: { planner: { medianMs: 2_000, sigma: 0.5 } } });
  const ms = Array.from({ length: 4_000 }, (_, i) => server.plan(`p${i}`, "planner").ms).sort((a, b) => a - b);
  const median = ms[ms.length / 2];
  assert.ok(Math.abs(median / 2_000 - 1) < 0.08, `median ${median}`);
  const logs = ms.map(Math.log);
  const mean = logs.reduce((a, b) => a + b) / logs.length;
  const sd = Math.sqrt(logs.reduce((a, b) => a + (b - mean) ** 2, 0) / logs.length);
  assert.ok(Math.abs(sd - 0.5) < 0.04, `sigma ${sd}`);
  assert.equal(server.plan("w", "worker").ms, 1_000, "an agent without a profile takes turnMs");
});

test("drop(): the lost connection's calls are never answered and its timers are gone", async () => {
  const server = new SimServer();
  const host = server.host();
  let fired = 0;
  host.setTimer(() => fired++, 1_000);
  server.attach({ hostEvent: () => assert.fail("an event reached a lost engine") });
  const { id } = await host.createSession({ agent: "worker", title: "t" });
  await host.prompt({ sessionID: id, agent: "worker", text: "x" });
  server.drop();
  assert.equal(server.engineTimers(), 0);
  let answered = false;
  host.checkSession({ sessionID: id }).then(() => (answered = true));
  await server.advance(5_000);
  assert.equal(answered, false);
  assert.equal(fired, 0);
  assert.equal(await server.host().checkSession({ sessionID: id }), "idle", "a new connection is answered; the turn went on");
});

test("with the engine: an outage on a model opens its breaker; its end lets the probes close it", async () => {
  const server = new SimServer({ turnMs: 1_000 });
  const engine = server.attach(new Engine(server.host(), { keys: { "p/m": 2 }, breaker: { failureThreshold: 3, openMs: 2_000, closeAfter: 2 } }));
  const seen = [];
  engine.on("breaker", ({ key, state }) => seen.push(`${key} ${state}`));
  server.outages.add("p/m");
  const ids = engine.delegate(Array.from({ length: 10 }, (_, i) => ({ agent: "worker", prompt: `t${i}`, model: "p/m" })));
  await server.advance(3_000);
  assert.equal(engine.stats().keys[0].breaker, "open");
  server.outages.clear();
  await server.advance(60_000);
  assert.deepEqual(seen.slice(0, 1), ["p/m open"]);
  assert.equal(seen.at(-1), "p/m closed");
  assert.equal(server.maxBusy.model.get("p/m"), 2, "never more turns on the model than its limit");
  const states = ids.map((id) => engine.status(id));
  assert.ok(states.filter((t) => t.state === "failed").every((t) => /503/.test(t.error.message)), JSON.stringify(states));
  assert.ok(states.some((t) => t.state === "succeeded"));
  engine.dispose();
});

test("on real time: a task runs to success through real timers", async () => {
  const server = new SimServer({ clock: "real", turnMs: 30, gapMs: 5 });
  const engine = server.attach(new Engine(server.host(), {}));
  const id = engine.delegate({ agent: "worker", prompt: "now" });
  const info = await engine.wait(id);
  assert.equal(info.state, "succeeded");
  assert.equal(info.result, "done: now");
  engine.dispose();
  server.close();
  assert.equal(server.timers.size, 0);
});
