// Nested delegation through the real pkg/ build against the simulated server (www/sim.js): a
// running task's session delegates children and waits on them in its tool call, as the plugin's
// delegate in wait mode does — `join` (its task lends its slot), `wait` for each child, then
// `resumed` before the tool call returns. Counted at the server: turns in flight per agent.
import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeServer, loadEngine } from "./fake-server.mjs";

const Engine = loadEngine();

/**
 * A tree of `depth` levels below the root with `fanOut` children per parent, in a lane of
 * `lane`; every parent delegates when its turn is running and blocks until its tool call
 * returns. With `lend` false the tool call never says it waits (no `join`): a plain wait.
 */
async function tree({ lane, depth, fanOut, lend, seed = 1 }) {
  const server = new FakeServer({ seed, gapMs: 200, latency: { worker: { medianMs: 1_000, sigma: 0.5 } } });
  const engine = server.attach(new Engine(server.host(), { lanes: { worker: lane } }));
  const level = new Map();
  const delegated = new Set();
  const toolCalls = [];
  const delegate = async (parent) => {
    const session = engine.status(parent).sessionID;
    const ids = engine.delegate(
      Array.from({ length: fanOut }, (_, k) => ({ agent: "worker", prompt: `${parent}.${k}`, parentID: session })),
    );
    for (const id of ids) level.set(id, level.get(parent) + 1);
    assert.ok(server.block(session), "the parent's turn was busy");
    const lenders = lend ? engine.join(ids) : [];
    if (lend) assert.deepEqual(lenders, [parent]);
    const infos = await Promise.all(ids.map((id) => engine.wait(id)));
    await Promise.all(lenders.map((p) => engine.resumed(p)));
    server.unblock(session);
    return infos;
  };
  engine.on("task", (e) => {
    if (e.state !== "running" || delegated.has(e.id) || level.get(e.id) >= depth) return;
    delegated.add(e.id);
    queueMicrotask(() => toolCalls.push(delegate(e.id)));
  });
  const root = engine.delegate({ agent: "worker", prompt: "root", parentID: "ses_user" });
  level.set(root, 0);
  const done = engine.wait(root);
  let settled = false;
  done.then(() => { settled = true; }, () => {});
  for (let t = 0; t < 600 && !settled; t++) await server.advance(1_000);
  const result = { server, engine, settled, tasks: level.size, toolCalls };
  return result;
}

test("nested awaited delegation in a lane of N never deadlocks and never has more than N turns in flight", async () => {
  for (const [lane, depth, fanOut, seed] of [[3, 3, 3, 1], [2, 3, 2, 2], [4, 2, 4, 3], [1, 3, 2, 4]]) {
    const { server, engine, settled, tasks, toolCalls } = await tree({ lane, depth, fanOut, lend: true, seed });
    const expected = Array.from({ length: depth + 1 }, (_, d) => fanOut ** d).reduce((a, b) => a + b);
    assert.ok(settled, `lane ${lane}, depth ${depth}, fan-out ${fanOut}: the root settled`);
    assert.equal(tasks, expected);
    const infos = await Promise.all(toolCalls);
    assert.ok(infos.flat().every((i) => i.state === "succeeded"));
    assert.ok(engine.list().every((t) => t.state === "succeeded"), "every task succeeded");
    const most = server.maxBusy.agent.get("worker");
    assert.ok(most <= lane, `lane ${lane}: ${most} turns in flight at the server`);
    assert.ok(most >= Math.min(lane, fanOut), `the lane was used (${most})`);
    engine.dispose();
    server.close();
  }
});

test("the same tree without join deadlocks: every slot is held by a parent waiting on its children", async () => {
  const { server, engine, settled, toolCalls } = await tree({ lane: 2, depth: 2, fanOut: 2, lend: false });
  for (const call of toolCalls) call.catch(() => {}); // they never return: disposed below
  assert.equal(settled, false);
  const open = engine.list().filter((t) => t.state !== "succeeded");
  assert.ok(open.some((t) => t.state === "queued"), "children wait for a slot that never frees");
  assert.equal(engine.stats().lanes.find((l) => l.name === "worker").inUse, 2);
  engine.dispose();
  server.close();
});

test("join and resumed check their input; resumed resolves at once for a task not waiting", async () => {
  const server = new FakeServer();
  const engine = server.attach(new Engine(server.host()));
  const id = engine.delegate({ agent: "worker", prompt: "alone" });
  assert.deepEqual(engine.join([id]), [], "no parent task: nothing lends");
  await engine.resumed(id);
  assert.throws(() => engine.join([id, "x"]), (e) => e.code === "INVALID_INPUT" && e.field === "ids[1]");
  assert.throws(() => engine.join([999]), (e) => e.code === "UNKNOWN_TASK");
  await assert.rejects(engine.resumed(999), (e) => e.code === "UNKNOWN_TASK");
  engine.dispose();
  server.close();
});
