// The recovery drill: an engine is lost mid-run (no dispose, no warning); a new one is made
// from the journal the host kept and the head it kept beside it, on the same server. The new
// engine must see the same tasks in the same states (in-flight work as `unknown`), reconcile
// every one through the server, run nothing twice, and leave no session behind.
import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeServer, loadEngine } from "./fake-server.mjs";
import { rng } from "./seeded.mjs";

const Engine = loadEngine();
const SEED = Number(process.env.FOREMAN_SEED ?? 7);

const settledStates = new Set(["succeeded", "failed", "cancelled", "timed_out"]);

test(`lose the instance mid-run, restore from the journal, get the same state (seed ${SEED})`, async () => {
  const random = rng(SEED);
  const server = new FakeServer({
    turnMs: 4_000,
    fail: (text) => (text.endsWith("!") ? { status: 503 } : null),
  });
  const config = { lanes: { worker: 4, reviewer: 2 } };
  const lost = server.attach(new Engine(server.host(), config));
  // The host persists the journal as it grows: appended frames, and the head beside them.
  const ids = [];
  const idempotent = new Set();
  const prompts = new Map();
  for (let i = 0; i < 30; i++) {
    const spec = { agent: random(3) === 0 ? "reviewer" : "worker", prompt: `task ${i}${random(6) === 0 ? "!" : ""}` };
    if (i > 0 && random(4) === 0) spec.dependsOn = [ids[random(ids.length)]];
    if (random(5) === 0) spec.idempotencyKey = `key-${i}`;
    const id = lost.delegate(spec);
    ids.push(id);
    prompts.set(id, spec.prompt);
    if (spec.idempotencyKey) idempotent.add(id);
  }
  lost.cancel(ids[29]);
  await server.advance(9_000);
  const journal = lost.journalExport();
  const head = lost.journalHead();
  const before = new Map(lost.list().map((t) => [t.id, t]));
  const inFlight = [...before.values()].filter((t) => ["dispatched", "running"].includes(t.state));
  assert.ok(inFlight.length > 0, "the drill loses work in flight");
  assert.ok([...before.values()].some((t) => settledStates.has(t.state)), "and work already settled");
  const promptsBefore = server.prompts();

  // The instance is gone: its timer and its answers go nowhere from now on.
  server.engine = null;
  for (const [id, t] of server.timers) if (t.owner === "engine") server.timers.delete(id);

  const restored = server.attach(Engine.restore(journal, head, server.host(), config));
  assert.equal(restored.verify(), true);
  const after = new Map(restored.list().map((t) => [t.id, t]));
  assert.deepEqual([...after.keys()], [...before.keys()], "every task, no more, no less");
  for (const [id, was] of before) {
    const now = after.get(id);
    if (settledStates.has(was.state)) {
      assert.deepEqual(now, was, `task ${id} is as it was`);
    } else if (was.state === "queued") {
      // Still waiting — or admitted at once by the new engine, which had free slots.
      const { state, updatedMs, attempts, sessionID, ...rest } = now;
      const { state: s0, updatedMs: u0, attempts: a0, sessionID: id0, ...rest0 } = was;
      assert.deepEqual(rest, rest0, `task ${id} has the same spec`);
      assert.ok(["queued", "admitted"].includes(state), `task ${id}: ${state}`);
    } else if (["dispatched", "running"].includes(was.state) && !idempotent.has(id)) {
      assert.ok(["unknown", "running", "succeeded", "failed"].includes(now.state), `task ${id}: ${now.state}`);
      assert.equal(now.sessionID, was.sessionID);
    }
  }

  await server.advance(600_000);
  const final = restored.list();
  assert.ok(final.every((t) => settledStates.has(t.state)), JSON.stringify(final.filter((t) => !settledStates.has(t.state))));
  // Nothing was prompted twice, except idempotent work that was in flight (re-run by design).
  const prompted = server.calls.filter(([op]) => op === "prompt");
  assert.equal(new Set(prompted.map(([, s]) => s)).size, prompted.length, "no session prompted twice");
  for (const t of final) {
    const count = prompted.filter(([, , text]) => text === prompts.get(t.id)).length;
    const rerun = idempotent.has(t.id) && inFlight.some((f) => f.id === t.id);
    assert.ok(count <= (rerun ? 2 : 1), `task ${t.id} prompted ${count} times`);
    if (t.state === "succeeded") assert.ok(count >= 1);
  }
  assert.ok(server.prompts() > promptsBefore, "the restored engine went on with the queue");
  // Every session either engine created is deleted once quiet; none is left on the server.
  await server.advance(30 * 60_000);
  assert.equal(server.sessions.size, 0, [...server.sessions.keys()].join(", "));
  assert.equal(server.engineTimers(), 0);
  restored.dispose();
});
