// Run children through the real pkg/ build: `run(fn)` work started from inside a running run
// with a parent (`ctx.run`, or `run(fn, { parent: ctx })`), and `ctx.join`, which lends the
// parent's slot to its children. Counted where the work runs: how many work functions are
// inside their body at once (a parent waiting in `join` is not running).
import { test } from "node:test";
import assert from "node:assert/strict";
import { loadEngine } from "./fake-server.mjs";

const Engine = loadEngine();

const host = () => ({ now: () => 0, memory: () => ({ used: 0, limit: 100 }), createSession: () => undefined });
const turn = () => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function turns(n) {
  for (let i = 0; i < n; i++) await turn();
}

/** Whether `promise` settled within `n` event-loop turns (a bounded wait, no timer). */
async function within(promise, n) {
  let settled = false;
  promise.then(() => { settled = true; }, () => { settled = true; });
  for (let i = 0; i < n && !settled; i++) await turn();
  return settled;
}

/**
 * A tree of `depth` levels below the root, `fanOut` children per parent, in a lane of `lane`;
 * every parent starts its children, then waits on them: with `lend`, as children of its run
 * (`ctx.run` + `ctx.join`); without, as plain runs it awaits while holding its slot, as a
 * p-limit-style semaphore would.
 */
async function tree({ lane, depth, fanOut, lend, bound = 5_000 }) {
  const engine = new Engine(host(), { lanes: { w: lane } });
  let running = 0;
  let most = 0;
  const started = [];
  const node = async (ctx, name, level) => {
    running++;
    most = Math.max(most, running);
    started.push(name);
    await turns(2);
    if (level < depth) {
      const kids = [];
      for (let k = 0; k < fanOut; k++) {
        const work = (c) => node(c, `${name}.${k}`, level + 1);
        kids.push(lend ? ctx.run(work, { lane: "w" }) : engine.run(work, { lane: "w" }));
      }
      running--; // waiting on its children: no work of its own
      const got = lend ? await ctx.join(kids) : await Promise.all(kids);
      running++;
      assert.deepEqual(got, kids.map((_, k) => `${name}.${k}`));
    }
    await turn();
    running--;
    return name;
  };
  const root = engine.run((ctx) => node(ctx, "r", 0), { lane: "w" });
  const done = await within(root, bound);
  return { engine, root, done, most, started, running: () => running };
}

const size = (depth, fanOut) => Array.from({ length: depth + 1 }, (_, d) => fanOut ** d).reduce((a, b) => a + b);

test("a run tree of depth 3, fan-out 4 joining its children completes in a lane of 4, never more than 4 at work", async () => {
  const { engine, root, done, most, started } = await tree({ lane: 4, depth: 3, fanOut: 4, lend: true });
  assert.ok(done, "the root settled within the bound");
  assert.equal(await root, "r");
  assert.equal(started.length, size(3, 4));
  assert.equal(new Set(started).size, started.length, "every run started once");
  assert.ok(most <= 4, `${most} work functions at once in a lane of 4`);
  assert.equal(most, 4, "the lane was used");
  const lane = engine.stats().lanes.find((l) => l.name === "w");
  assert.equal(lane.inUse, 0, "every permit back");
  engine.dispose();
});

test("the same tree with plain runs deadlocks: every slot is held by a parent awaiting its children", async () => {
  const { engine, root, done, started, running } = await tree({ lane: 4, depth: 3, fanOut: 4, lend: false, bound: 2_000 });
  root.catch(() => {});
  assert.equal(done, false, "the root never settles");
  assert.ok(started.length < size(3, 4), `${started.length} runs started`);
  assert.equal(running(), 0, "nothing is at work: every slot's holder waits");
  assert.equal(engine.stats().lanes.find((l) => l.name === "w").inUse, 4);
  engine.dispose();
});

test("in a lane of 1 a run tree runs depth-first, newest child first", async () => {
  const { engine, done, most, started } = await tree({ lane: 1, depth: 2, fanOut: 3, lend: true });
  assert.ok(done);
  assert.equal(most, 1);
  const expected = [];
  const visit = (name, level) => {
    expected.push(name);
    if (level < 2) for (let k = 2; k >= 0; k--) visit(`${name}.${k}`, level + 1);
  };
  visit("r", 0);
  assert.deepEqual(started, expected);
  engine.dispose();
});

test("join rejects with the first rejection in order, only after every child settled and the slot is back", async () => {
  const engine = new Engine(host(), { lanes: { w: 1 } });
  const ended = [];
  const outcome = await engine.run(async (ctx) => {
    const a = ctx.run(async () => { await turns(3); ended.push("a"); throw new Error("a failed"); }, { lane: "w" });
    const b = ctx.run(async () => { await turns(1); ended.push("b"); throw new Error("b failed"); }, { lane: "w" });
    const c = ctx.run(async () => { await turns(2); ended.push("c"); return "c"; }, { lane: "w" });
    try {
      await ctx.join([a, b, c]);
      return "resolved";
    } catch (error) {
      return `${error.message} after ${ended.join(",")}`;
    }
  }, { lane: "w" });
  assert.equal(outcome, "a failed after c,b,a", "newest first on the lent slot; all settled first");
  assert.deepEqual(await engine.run(async (ctx) => ctx.join([]), { lane: "w" }), []);
  engine.dispose();
});

test("a child in another lane goes through the controller while its parent lends its slot", async () => {
  const engine = new Engine(host(), { lanes: { a: 1, b: 1 } });
  let inA = 0;
  let mostA = 0;
  const result = await engine.run(async (ctx) => {
    const other = ctx.run(async () => { await turns(3); return "b"; }, { lane: "b" });
    const same = ctx.run(async () => {
      inA++;
      mostA = Math.max(mostA, inA);
      await turns(2);
      inA--;
      return "a";
    }, { lane: "a" });
    return ctx.join([other, same]);
  }, { lane: "a" });
  assert.deepEqual(result, ["b", "a"]);
  assert.equal(mostA, 1);
  engine.dispose();
});

test("a parent's deadline rejects its caller; its children and its join go on", async () => {
  const clock = { ...host(), now: () => Date.now() };
  const engine = new Engine(clock, { lanes: { w: 2 } });
  let joined;
  const parent = engine.run(async (ctx) => {
    const kids = [1, 2, 3].map((k) => ctx.run(async () => { await sleep(30); return k; }, { lane: "w" }));
    joined = ctx.join(kids);
    return joined;
  }, { lane: "w", deadlineMs: 5 });
  await assert.rejects(parent, (e) => e.code === "TIMED_OUT");
  assert.deepEqual(await joined, [1, 2, 3]);
  await turns(5);
  assert.equal(engine.stats().lanes.find((l) => l.name === "w").inUse, 0);
  engine.dispose();
});

test("a child started after its parent ended is a plain run; bad parents and joins are typed errors", async () => {
  const engine = new Engine(host(), { lanes: { w: 2 } });
  let kept;
  await engine.run((ctx) => { kept = ctx; }, { lane: "w" });
  assert.equal(await kept.run(() => "late", { lane: "w" }), "late");
  assert.equal(await engine.run(() => "late too", { parent: kept }), "late too");
  assert.deepEqual(await kept.join([]), []);
  for (const parent of [null, 1, "ctx", {}, [], new Proxy({}, {})]) {
    await assert.rejects(engine.run(() => 0, { parent }), (e) => e.code === "INVALID_INPUT" && e.field === "options.parent");
  }
  const other = new Engine(host());
  let foreign;
  await other.run((ctx) => { foreign = ctx; });
  await assert.rejects(engine.run(() => 0, { parent: foreign }), (e) => e.code === "INVALID_INPUT" && e.field === "options.parent");
  await engine.run(async (ctx) => {
    await assert.rejects(ctx.join([Promise.resolve(1)]), (e) => e.code === "INVALID_INPUT" && e.field === "promises[0]");
    await assert.rejects(ctx.join("x"), (e) => e.code === "INVALID_INPUT" && e.field === "promises");
    await assert.rejects(ctx.run(() => 0, { parent: foreign }), (e) => e.code === "INVALID_INPUT" && e.field === "options.parent");
    await assert.rejects(ctx.run(() => 0, 5), (e) => e.code === "INVALID_INPUT" && e.field === "options");
    const kid = ctx.run(() => 1);
    assert.deepEqual(await ctx.join([kid, kid]), [1, 1]);
  }, { lane: "w" });
  other.dispose();
  engine.dispose();
});

test("a frozen or detached context, or one with a broken id, gives typed errors and starts nothing", async () => {
  const engine = new Engine(host(), { lanes: { w: 2 } });
  let started = 0;
  const work = () => { started++; return 1; };
  await engine.run(async (ctx) => {
    await assert.rejects(engine.run(work, { lane: "w", parent: Object.freeze(ctx) }), (e) => e.code === "INVALID_INPUT" && e.field === "options.parent");
    await assert.rejects(ctx.run(work), (e) => e.code === "INVALID_INPUT" && e.field === "options.parent");
    const { run, join } = ctx;
    await assert.rejects(run(work), (e) => e.code === "INVALID_INPUT" && e.field === "ctx");
    await assert.rejects(join([]), (e) => e.code === "INVALID_INPUT" && e.field === "ctx");
    await assert.rejects(join.call({ ...ctx, _id: Symbol("id") }, []), (e) => e.code === "INVALID_INPUT" && e.field === "ctx");
    assert.equal(JSON.stringify(ctx).includes("cells"), false, "the engine's run state stays out of JSON");
  }, { lane: "w" });
  await turns(5);
  assert.equal(started, 0);
  engine.dispose();
});

test("dispose rejects a join waiting for its slot with DISPOSED", async () => {
  const engine = new Engine(host(), { lanes: { w: 1 } });
  let joined;
  engine.run(async (ctx) => {
    joined = ctx.join([ctx.run(() => new Promise(() => {}), { lane: "w" })]);
    return joined;
  }, { lane: "w" }).catch(() => {});
  await turns(2);
  engine.dispose();
  await assert.rejects(joined, (e) => e.code === "DISPOSED");
});
