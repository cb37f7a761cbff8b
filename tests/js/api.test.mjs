// The public JavaScript API of the real pkg/ build, method by method, against a simulated
// OpenCode server on a virtual clock (fake-server.mjs).
import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeServer, loadEngine, settle } from "./fake-server.mjs";
import { throwsCode } from "./check.mjs";

const Engine = loadEngine();

function setup(options = {}, config = { lanes: { worker: 2 } }) {
  const server = new FakeServer(options);
  const engine = server.attach(new Engine(server.host(), config));
  return { server, engine };
}

async function rejectsCode(promise, code) {
  await assert.rejects(promise, (e) => e instanceof Error && e.code === code);
}

test("constructor and static members", () => {
  assert.match(Engine.version(), /^\d+\.\d+\.\d+$/);
  const server = new FakeServer();
  const host = server.host();
  delete host.now;
  assert.equal(throwsCode(() => new Engine(host), "INVALID_HOST").member, "now");
  assert.equal(throwsCode(() => new Engine(server.host(), { lanes: { worker: 1.5 } }), "INVALID_CONFIG").key, "lanes.worker");
  assert.equal(throwsCode(() => new Engine(server.host(), { typo: 1 }), "INVALID_CONFIG").key, "typo");
  assert.equal(throwsCode(() => new Engine({ ...server.host(), setTimer: 3 }), "INVALID_HOST").member, "setTimer");
  const { clearTimer, ...halfTimers } = server.host();
  assert.equal(throwsCode(() => new Engine(halfTimers), "INVALID_HOST").member, "clearTimer");
});

test("delegate → wait → status → list: a task runs to success through the host", async () => {
  const { server, engine } = setup();
  const id = engine.delegate({ agent: "worker", prompt: "write the tests", parentID: "ses_parent" });
  assert.equal(typeof id, "number");
  const waiting = engine.wait(id);
  assert.equal(engine.status(id).state === "queued" || engine.status(id).state === "admitted", true);
  await server.advance(5_000);
  const info = await waiting;
  assert.equal(info.state, "succeeded");
  assert.equal(info.result, "done: write the tests");
  assert.equal(info.parentID, "ses_parent");
  assert.equal(info.attempts, 1);
  assert.deepEqual(engine.status(id), info);
  assert.deepEqual(engine.list().map((t) => t.id), [id]);
  assert.deepEqual(engine.list({ state: "succeeded", agent: "worker" }).length, 1);
  assert.deepEqual(engine.list({ agent: "planner" }), []);
  // wait on a settled task resolves at once.
  assert.equal((await engine.wait(id)).state, "succeeded");
  engine.dispose();
});

test("delegate takes an array, checks every spec first and names the bad field", async () => {
  const { server, engine } = setup();
  const e = throwsCode(() => engine.delegate([{ agent: "worker", prompt: "a" }, { agent: "worker", prompt: "" }]), "INVALID_INPUT");
  assert.equal(e.field, "specs[1].prompt");
  assert.equal(engine.list().length, 0, "nothing was submitted");
  assert.equal(throwsCode(() => engine.delegate({ agent: "worker", prompt: "x", priority: "urgent" }), "INVALID_INPUT").field, "priority");
  assert.equal(throwsCode(() => engine.delegate({ agent: "worker", prompt: "x", dependsOn: [99] }), "INVALID_INPUT").field, "dependsOn");
  assert.equal(throwsCode(() => engine.delegate({ agent: "worker", prompt: "x", colour: 1 }), "INVALID_INPUT").field, "colour");
  const ids = engine.delegate([
    { agent: "worker", prompt: "one" },
    { agent: "worker", prompt: "two", priority: "high" },
    { agent: "reviewer", prompt: "three", idempotencyKey: "k1" },
  ]);
  assert.deepEqual(ids, [1, 2, 3]);
  assert.equal(engine.delegate({ agent: "reviewer", prompt: "three again", idempotencyKey: "k1" }), 3, "same key, same task");
  await server.advance(10_000);
  assert.deepEqual(engine.list().map((t) => t.state), ["succeeded", "succeeded", "succeeded"]);
  engine.dispose();
});

test("dependencies run in order; a failed dependency cancels its dependents", async () => {
  const { server, engine } = setup({ fail: (text) => (text === "break" ? { status: 400 } : null) });
  const a = engine.delegate({ agent: "worker", prompt: "first" });
  const b = engine.delegate({ agent: "worker", prompt: "second", dependsOn: [a] });
  const bad = engine.delegate({ agent: "worker", prompt: "break" });
  const c = engine.delegate({ agent: "worker", prompt: "after bad", dependsOn: [bad] });
  await server.advance(10_000);
  assert.equal(engine.status(b).state, "succeeded");
  assert.ok(engine.status(b).updatedMs > engine.status(a).updatedMs);
  assert.equal(engine.status(bad).state, "failed");
  assert.equal(engine.status(bad).error.class, "invalid");
  assert.equal(engine.status(c).state, "cancelled");
  assert.match(engine.status(c).reason, /dependency/);
  engine.dispose();
});

test("cancel: queued at once, running after the abort is confirmed; the server is never misused", async () => {
  const { server, engine } = setup({ turnMs: 60_000 }, { lanes: { worker: 1 } });
  const [running, queued] = engine.delegate([
    { agent: "worker", prompt: "long" },
    { agent: "worker", prompt: "later" },
  ]);
  await server.advance(1_000);
  assert.equal(engine.status(running).state, "running");
  assert.equal(engine.cancel(queued), true);
  assert.equal(engine.status(queued).state, "cancelled");
  assert.equal(engine.cancel(running), true);
  await server.advance(1_000);
  assert.equal(engine.status(running).state, "cancelled");
  assert.equal(engine.cancel(running), false, "already settled");
  assert.equal(throwsCode(() => engine.cancel(12345), "UNKNOWN_TASK").task, 12345);
  throwsCode(() => engine.cancel(-1), "INVALID_INPUT");
  throwsCode(() => engine.status("1"), "INVALID_INPUT");
  await rejectsCode(engine.wait(777), "UNKNOWN_TASK");
  // The aborted session is deleted only after quiet, never while busy (the server throws if so).
  await server.advance(60_000);
  assert.ok(server.calls.some(([op]) => op === "deleteSession"));
  engine.dispose();
});

test("deadlines time tasks out and abort their sessions", async () => {
  const { server, engine } = setup({ hang: () => true });
  const id = engine.delegate({ agent: "worker", prompt: "hangs", deadlineMs: 5_000 });
  await server.advance(10_000);
  assert.equal(engine.status(id).state, "timed_out");
  assert.ok(server.calls.some(([op]) => op === "abort"));
  engine.dispose();
});

test("on('task') sees every transition in order; the unsubscribe function stops it", async () => {
  const { server, engine } = setup();
  const seen = [];
  const off = engine.on("task", (e) => seen.push(`${e.id}:${e.state}`));
  engine.on("task", () => {
    throw new Error("a listener that throws is ignored");
  });
  const id = engine.delegate({ agent: "worker", prompt: "x" });
  await server.advance(5_000);
  assert.deepEqual(seen, [`${id}:queued`, `${id}:admitted`, `${id}:session_acquired`, `${id}:dispatched`, `${id}:running`, `${id}:succeeded`]);
  off();
  off(); // twice is harmless
  engine.delegate({ agent: "worker", prompt: "y" });
  await server.advance(5_000);
  assert.equal(seen.length, 6);
  throwsCode(() => engine.on("nope", () => {}), "INVALID_INPUT");
  throwsCode(() => engine.on("task", 3), "INVALID_INPUT");
  engine.dispose();
});

test("run(fn): the lane's limit holds, HIGH goes first, results and errors pass through", async () => {
  const { engine } = setup({}, { lanes: { bench: 2 } });
  let active = 0;
  let peak = 0;
  const order = [];
  const gates = [];
  const job = (name) => () =>
    new Promise((resolve) => {
      active++;
      peak = Math.max(peak, active);
      order.push(name);
      gates.push(() => {
        active--;
        resolve(name);
      });
    });
  const results = [
    engine.run(job("n1"), { lane: "bench" }),
    engine.run(job("n2"), { lane: "bench" }),
    engine.run(job("n3"), { lane: "bench" }),
    engine.run(job("low"), { lane: "bench", priority: "low" }),
    engine.run(job("high"), { lane: "bench", priority: "high" }),
  ];
  while (order.length < 5 || gates.length) {
    await settle();
    gates.shift()?.();
  }
  assert.deepEqual(await Promise.all(results), ["n1", "n2", "n3", "low", "high"]);
  assert.deepEqual(order, ["n1", "n2", "high", "n3", "low"]);
  assert.equal(peak, 2);
  assert.equal(await engine.run(() => 42), 42, "a plain value");
  const inUse = (name) => engine.stats().lanes.find((l) => l.name === name).inUse;
  assert.deepEqual(await engine.run(() => [inUse("other"), inUse("bench")]), [1, 0], "no lane: `other`");
  await assert.rejects(engine.run(() => { throw new TypeError("sync"); }), TypeError);
  await assert.rejects(engine.run(async () => { throw new RangeError("async"); }), RangeError);
  // Re-entrant: work that runs more work.
  assert.equal(await engine.run(() => engine.run(() => "inner")), "inner");
  await rejectsCode(engine.run("not a function"), "INVALID_INPUT");
  await rejectsCode(engine.run(() => 1, { lane: 7 }), "INVALID_INPUT");
  await rejectsCode(engine.run(() => 1, { priority: "now" }), "INVALID_INPUT");
  await rejectsCode(engine.run(() => 1, { deadlineMs: -5 }), "INVALID_INPUT");
  await rejectsCode(engine.run(() => 1, { extra: true }), "INVALID_INPUT");
  // One options object reused, then changed: the change counts.
  const shared = { lane: "bench", priority: "low" };
  assert.equal(await engine.run(() => "a", shared), "a");
  shared.priority = "urgent";
  await rejectsCode(engine.run(() => "b", shared), "INVALID_INPUT");
  shared.priority = "high";
  shared.colour = "red";
  await rejectsCode(engine.run(() => "c", shared), "INVALID_INPUT");
  const stats = engine.stats();
  assert.deepEqual(stats.runs, { waiting: 0, running: 0 });
  assert.equal(stats.lanes.find((l) => l.name === "bench").inUse, 0);
  engine.dispose();
});

test("run(fn): upstream failures open the key's breaker; failFast refuses; on('breaker') reports it", async () => {
  const { server, engine } = setup();
  const breaker = [];
  engine.on("breaker", (e) => breaker.push(`${e.key}:${e.state}`));
  const upstream = Object.assign(new Error("503"), { status: 503 });
  for (let i = 0; i < 5; i++) {
    await assert.rejects(engine.run(() => Promise.reject(upstream), { key: "p/m" }), (e) => e === upstream);
  }
  await rejectsCode(engine.run(() => 1, { key: "p/m", failFast: true }), "BREAKER_OPEN");
  assert.deepEqual(breaker, ["p/m:open"]);
  assert.equal(engine.stats().keys.find((k) => k.name === "p/m").breaker, "open");
  // Waiting work (no failFast) waits for the probe time, then runs as the probe.
  const probe = engine.run(() => "probe", { key: "p/m" });
  await server.advance(61_000);
  assert.equal(await probe, "probe");
  // An open breaker with nothing waiting: after its open period a failFast call is the probe
  // (the engine reads the clock for it; its last reading is a minute old).
  for (let i = 0; i < 5; i++) {
    await assert.rejects(engine.run(() => Promise.reject(upstream), { key: "r/m" }), (e) => e === upstream);
  }
  await rejectsCode(engine.run(() => 1, { key: "r/m", failFast: true }), "BREAKER_OPEN");
  await server.advance(61_000);
  assert.equal(await engine.run(() => "probe", { key: "r/m", failFast: true }), "probe");
  // 429s and user errors do not count.
  for (let i = 0; i < 6; i++) {
    await assert.rejects(engine.run(() => Promise.reject(Object.assign(new Error("slow down"), { status: 429 })), { key: "q/m" }));
  }
  assert.equal(engine.stats().keys.find((k) => k.name === "q/m").breaker, "closed");
  engine.dispose();
});

test("breaker(key): shares the key's breaker with run tasks, fails fast, probes, closes", async () => {
  const { server, engine } = setup();
  const events = [];
  engine.on("breaker", (e) => events.push(`${e.key}:${e.state}`));
  const b = engine.breaker("p/m");
  assert.equal(b.key, "p/m");
  assert.equal(engine.breaker("p/m"), b, "one object per key");
  assert.equal(await b.execute(() => "plain"), "plain");
  assert.equal(await b.execute(async () => "async"), "async");
  const upstream = Object.assign(new Error("503"), { status: 503 });
  // Failures through run() and through the breaker count alike; a success in between resets.
  await assert.rejects(engine.run(() => Promise.reject(upstream), { key: "p/m" }));
  await assert.rejects(b.execute(() => Promise.reject(upstream)));
  assert.equal(await b.execute(() => 1), 1);
  for (let i = 0; i < 4; i++) await assert.rejects(b.execute(() => Promise.reject(upstream)), (e) => e === upstream);
  assert.equal(engine.stats().keys.find((k) => k.name === "p/m").breaker, "closed", "4 in a row is below the threshold");
  await assert.rejects(b.execute(() => { throw upstream; }), (e) => e === upstream);
  assert.deepEqual(events, ["p/m:open"]);
  let called = false;
  let refused;
  await assert.rejects(b.execute(() => { called = true; }), (e) => (refused = e).code === "BREAKER_OPEN");
  assert.equal(called, false, "an open breaker does not call fn");
  assert.equal(refused.key, "p/m");
  assert.equal(typeof refused.retryAt, "number");
  // run tasks see the same breaker.
  await rejectsCode(engine.run(() => 1, { key: "p/m", failFast: true }), "BREAKER_OPEN");
  // 429s do not count: another key stays closed.
  const q = engine.breaker("q/m");
  for (let i = 0; i < 6; i++) await assert.rejects(q.execute(() => Promise.reject(Object.assign(new Error("slow"), { status: 429 }))));
  assert.equal(engine.stats().keys.find((k) => k.name === "q/m").breaker, "closed");
  // After the open period: one probe at a time; two successes close it.
  await server.advance(61_000);
  let release;
  const probe = b.execute(() => new Promise((r) => (release = r)));
  await rejectsCode(b.execute(() => 1), "BREAKER_OPEN"); // one probe at a time
  release("probed");
  assert.equal(await probe, "probed");
  assert.equal(await b.execute(() => "second"), "second");
  assert.equal(engine.stats().keys.find((k) => k.name === "p/m").breaker, "closed");
  assert.deepEqual(events, ["p/m:open", "p/m:half_open", "p/m:closed"]);
  throwsCode(() => engine.breaker(""), "INVALID_INPUT");
  throwsCode(() => engine.breaker(7), "INVALID_INPUT");
  await rejectsCode(b.execute("nope"), "INVALID_INPUT");
  engine.dispose();
  await rejectsCode(b.execute(() => 1), "DISPOSED");
});

test("run and breaker pass whole numbers to every integer parameter of the WebAssembly side", async () => {
  // JavaScriptCore (Bun) converts a boolean, undefined or a fraction given to an i32 parameter on
  // a slow path that costs more than foreman's whole work per task (run.js, NUMBERS_ONLY).
  const { server, engine } = setup({}, { lanes: { worker: 1 } });
  const integers = { runBegin: [0, 1, 2, 3], runEnd: [0], runFail: [0], breakerEnter: [0], breakerOk: [0, 1], breakerFail: [0, 1], runChild: [0, 1, 2, 3, 4], runJoin: [0] };
  const seen = new Set();
  for (const [name, positions] of Object.entries(integers)) {
    const method = Object.getPrototypeOf(engine)[name];
    engine[name] = function (...args) {
      for (const i of positions) {
        assert.ok(Number.isInteger(args[i]) && args[i] >= 0 && args[i] <= 0x7fffffff, `${name} argument ${i} is ${String(args[i])}`);
      }
      seen.add(name);
      return method.apply(this, args);
    };
  }
  const upstream = Object.assign(new Error("503"), { status: 503 });
  const b = engine.breaker("p/m");
  const blocker = engine.run(() => new Promise((r) => setTimeout(r, 5)), { lane: "worker" });
  const queued = [
    engine.run(() => 1, { lane: "worker", key: "p/m", priority: "high", failFast: true, deadlineMs: 60_000 }),
    engine.run(() => Promise.reject(upstream), { lane: "worker", failFast: false, priority: "low" }),
  ];
  await blocker;
  assert.equal(await queued[0], 1);
  await assert.rejects(queued[1]);
  for (let i = 0; i < 5; i++) await assert.rejects(b.execute(() => Promise.reject(upstream)));
  await server.advance(61_000);
  assert.equal(await b.execute(() => "probe"), "probe");
  assert.equal(await b.execute(() => "closed"), "closed");
  await assert.rejects(b.execute(() => { throw upstream; }));
  const child = { lane: "worker", key: "p/m", priority: "low", failFast: true, deadlineMs: 60_000 };
  assert.deepEqual(await engine.run(async (ctx) => ctx.join([ctx.run(() => 2, child)]), { lane: "worker" }), [2]);
  assert.deepEqual([...seen].sort(), Object.keys(integers).sort(), "every integer-taking method was exercised");
  engine.dispose();
});

test("run called from work being started still starts its own work, after it", async () => {
  // The second task is started by the launch loop (it waited for the first); its work calls
  // run for a lane with room, which is admitted at once — and must start once the loop moves on.
  const { engine } = setup({}, { lanes: { worker: 1, other: 2 } });
  let releaseFirst;
  const first = engine.run(() => new Promise((r) => (releaseFirst = r)), { lane: "worker" });
  const order = [];
  let inner;
  const second = engine.run(() => {
    order.push("second");
    inner = engine.run(() => {
      order.push("inner");
      return "inner done";
    });
    order.push("second returns");
    return "second done";
  }, { lane: "worker" });
  releaseFirst("first done");
  assert.equal(await first, "first done");
  assert.equal(await second, "second done");
  assert.equal(await inner, "inner done");
  assert.deepEqual(order, ["second", "second returns", "inner"]);
  assert.equal(engine.stats().runs.running, 0);
  engine.dispose();
});

test("run(fn) takes any result: thenables, hostile objects, values; started at once or after waiting", async () => {
  const { engine } = setup({}, { lanes: { one: 1 } });
  const hostile = new Proxy({}, { get() { throw new Error("trap"); }, getPrototypeOf() { throw new Error("trap"); } });
  const thenable = { then(ok) { ok("from a thenable"); } };
  for (const waits of [false, true]) {
    // With `waits`, a task holds the only slot, so each run below queues first.
    let release;
    const holder = waits ? engine.run(() => new Promise((r) => (release = r)), { lane: "one" }) : null;
    const runs = [
      engine.run(() => thenable, { lane: "one" }),
      engine.run(() => hostile, { lane: "one" }),
      engine.run(() => undefined, { lane: "one" }),
      engine.run(() => Promise.reject(new RangeError("no")), { lane: "one" }),
    ];
    release?.();
    const [a, b, c, d] = await Promise.allSettled(runs);
    assert.deepEqual(a, { status: "fulfilled", value: "from a thenable" }, `waits: ${waits}`);
    assert.equal(b.status, "rejected", "a value whose `then` cannot be read");
    assert.equal(b.reason.message, "trap");
    assert.deepEqual(c, { status: "fulfilled", value: undefined });
    assert.ok(d.status === "rejected" && d.reason instanceof RangeError);
    await holder;
    const lane = engine.stats().lanes.find((l) => l.name === "one");
    assert.equal(lane.inUse, 0, "every slot came back");
  }
  engine.dispose();
});

test("a rejection nobody handles is reported as unhandled, on every path (nothing is swallowed)", async () => {
  const { engine } = setup({}, { lanes: { one: 1 } });
  const seen = [];
  const listener = (reason) => seen.push(reason?.message);
  // Take the reports from the runner for this test only (they are the point of it).
  const runners = process.listeners("unhandledRejection");
  process.removeAllListeners("unhandledRejection");
  process.on("unhandledRejection", listener);
  try {
    engine.run(() => Promise.reject(new Error("started at once")), { lane: "one" });
    engine.run(() => Promise.reject(new Error("queued first")), { lane: "one" });
    engine.breaker("p/m").execute(() => Promise.reject(new Error("breaker")));
    await new Promise((r) => setTimeout(r, 20));
  } finally {
    process.off("unhandledRejection", listener);
    for (const r of runners) process.on("unhandledRejection", r);
  }
  assert.deepEqual(seen.sort(), ["breaker", "queued first", "started at once"]);
  engine.dispose();
});

test("run(fn) deadlines: waiting work leaves the queue, running work keeps its slot until it ends", async () => {
  const { server, engine } = setup({}, { lanes: { bench: 1 } });
  let finish;
  const caught = (p) => p.then(() => null, (err) => err);
  const running = caught(engine.run(() => new Promise((r) => (finish = r)), { lane: "bench", deadlineMs: 1_000 }));
  let started = false;
  const waiting = caught(engine.run(() => { started = true; }, { lane: "bench", deadlineMs: 500 }));
  const after = engine.run(() => "after", { lane: "bench" });
  await server.advance(600);
  assert.equal((await waiting).code, "TIMED_OUT");
  await server.advance(600);
  const e = await running;
  assert.equal(e.code, "TIMED_OUT");
  assert.equal(e.afterMs, 1_000);
  assert.equal(engine.stats().lanes.find((l) => l.name === "bench").inUse, 1, "the late work still holds its slot");
  finish("late");
  assert.equal(await after, "after");
  assert.equal(started, false);
  engine.dispose();
});

test("journalExport, journalHead and verify", async () => {
  const { server, engine } = setup();
  assert.deepEqual(engine.journalHead(), { seq: 0, hash: "0".repeat(64), epoch: 0 });
  engine.delegate({ agent: "worker", prompt: "x" });
  await server.advance(5_000);
  const head = engine.journalHead();
  assert.ok(head.seq >= 6);
  assert.match(head.hash, /^[0-9a-f]{64}$/);
  const all = engine.journalExport();
  assert.ok(all instanceof Uint8Array && all.length > 0);
  assert.ok(engine.journalExport(head.seq).length < all.length);
  assert.equal(engine.journalExport(head.seq + 1).length, 0);
  assert.equal(engine.verify(), true);
  throwsCode(() => engine.journalExport(-1), "INVALID_INPUT");
  engine.dispose();
});

test("Engine.restore refuses a tampered journal, naming the record", () => {
  const { engine, server } = setup();
  engine.delegate([{ agent: "worker", prompt: "a" }, { agent: "worker", prompt: "b" }]);
  const journal = engine.journalExport();
  const head = engine.journalHead();
  const tampered = Uint8Array.from(journal);
  tampered[20] ^= 1;
  const e = throwsCode(() => Engine.restore(tampered, head, server.host()), "JOURNAL_INVALID");
  assert.match(e.message, /record 1/);
  throwsCode(() => Engine.restore(journal, { seq: head.seq, hash: "zz" }, server.host()), "INVALID_INPUT");
  throwsCode(() => Engine.restore(journal, { ...head, seq: head.seq + 1 }, server.host()), "JOURNAL_INVALID");
  engine.dispose();
});

test("resolve / reject by id, hostEvent parsing", async () => {
  const server = new FakeServer();
  const base = server.host();
  const pending = [];
  const host = { ...base, createSession: (input, callId) => { pending.push([callId, input]); return undefined; } };
  const engine = server.attach(new Engine(host));
  const [made, refused] = engine.delegate([{ agent: "worker", prompt: "a" }, { agent: "worker", prompt: "b" }]);
  assert.equal(pending.length, 2, "both sessions are asked for, and answered by id");
  engine.resolve(pending[0][0], await base.createSession(pending[0][1]));
  throwsCode(() => engine.resolve(pending[0][0], "again"), "UNKNOWN_CALL");
  throwsCode(() => engine.reject(0.5, new Error("x")), "INVALID_INPUT");
  engine.reject(pending[1][0], Object.assign(new Error("no such agent"), { status: 400 }));
  throwsCode(() => engine.reject(pending[1][0], new Error("again")), "UNKNOWN_CALL");
  await server.advance(5_000);
  assert.equal(engine.status(made).state, "succeeded");
  const info = engine.status(refused);
  assert.equal(info.state, "failed");
  assert.equal(info.error.class, "invalid", "a 4xx is classified as invalid, and not retried");
  assert.equal(pending.length, 2);
  engine.hostEvent({ type: "message.updated", properties: {} }); // not ours: ignored
  engine.hostEvent({ type: "session.idle", properties: { sessionID: "ses_unknown" } }); // nobody's
  assert.equal(throwsCode(() => engine.hostEvent({ type: "session.status", properties: { sessionID: "s" } }), "INVALID_INPUT").field, "event");
  throwsCode(() => engine.hostEvent(null), "INVALID_INPUT");
  engine.dispose();
});

test("host functions and listeners may call back in synchronously", async () => {
  const server = new FakeServer();
  let engine;
  const seen = [];
  const base = server.host();
  const host = {
    ...base,
    createSession: (input) => {
      seen.push(engine.stats().pendingCalls);
      return base.createSession(input);
    },
  };
  engine = server.attach(new Engine(host));
  engine.on("task", (e) => seen.push(engine.status(e.id).state));
  const id = engine.delegate({ agent: "worker", prompt: "x" });
  await server.advance(5_000);
  assert.equal(engine.status(id).state, "succeeded");
  assert.ok(seen.includes("succeeded"));
  engine.dispose();
});

test("on('limit'): a 429 storm halves an adaptive limit once per window, busy successes raise it back; each change told with its values", async () => {
  const { server, engine } = setup({}, { lanes: { bench: 4 }, keys: { "p/m": 4 } });
  const seen = [];
  engine.on("limit", (e) => seen.push(e));
  const tooMany = () => Promise.reject(Object.assign(new Error("slow down"), { status: 429 }));
  const effective = (name) => engine.stats().lanes.find((l) => l.name === name).effective;
  // The storm: four 429s at once on the lane, in one window.
  await Promise.allSettled(Array.from({ length: 4 }, () => engine.run(tooMany, { lane: "bench" })));
  assert.deepEqual(seen, [{ type: "limit", scope: "lane", name: "bench", from: 4, to: 2, cause: "rate_limited" }]);
  assert.equal(effective("bench"), 2);
  // Recovery: successes with the lane full, three per step, up to the configured 4.
  await Promise.all(Array.from({ length: 30 }, (_, i) => engine.run(async () => i, { lane: "bench" })));
  assert.deepEqual(seen.slice(1).map(({ from, to, cause }) => `${from}→${to} ${cause}`), ["2→3 recovery", "3→4 recovery"]);
  assert.equal(effective("bench"), 4);
  // A limited key's limit, through its breaker alone: an upstream failure, then (next window) a 429.
  seen.length = 0;
  const b = engine.breaker("p/m");
  await assert.rejects(b.execute(() => Promise.reject(Object.assign(new Error("bad gateway"), { status: 502 }))));
  await assert.rejects(b.execute(tooMany));
  await server.advance(5_000);
  await assert.rejects(b.execute(tooMany));
  assert.deepEqual(seen, [
    { type: "limit", scope: "key", name: "p/m", from: 4, to: 2, cause: "upstream" },
    { type: "limit", scope: "key", name: "p/m", from: 2, to: 1, cause: "rate_limited" },
  ]);
  assert.equal(engine.stats().keys.find((k) => k.name === "p/m").effective, 1);
  assert.equal(throwsCode(() => engine.on("limits", () => {}), "INVALID_INPUT").field, "event");
  engine.dispose();
});

test("memory: read only when the engine asks — before deciding LOW work, once per ms — and the gate decides with it", async () => {
  const server = new FakeServer({ hang: (text) => text === "holds the lane" });
  const host = server.host();
  let reads = 0;
  const read = host.memory;
  host.memory = () => (reads++, read());
  const engine = server.attach(new Engine(host, { lanes: { worker: 1 } }));
  assert.equal(reads, 1, "the constructor checks the host once");
  reads = 0;
  engine.delegate({ agent: "worker", prompt: "holds the lane" });
  await engine.run(() => "normal run");
  await server.advance(40_000); // the running task's liveness probes tick the timer
  assert.equal(reads, 0, "nothing LOW to decide: no reading");
  server.memoryUsed = 950;
  assert.equal(throwsCode(() => engine.delegate({ agent: "worker", prompt: "low", priority: "low" }), "MEMORY_PRESSURE").code, "MEMORY_PRESSURE");
  assert.equal(reads, 1, "a LOW submission is decided on a fresh reading");
  await rejectsCode(engine.run(() => "low run", { priority: "low" }), "MEMORY_PRESSURE");
  assert.equal(reads, 1, "the same ms: the reading made then stands");
  server.memoryUsed = 100;
  await server.advance(1);
  assert.equal(await engine.run(() => "low run", { priority: "low" }), "low run");
  assert.equal(reads, 2, "run's LOW work asks too (its other priorities never do)");
  // LOW work waiting behind a busy lane: each tick reads while it waits, and only then.
  const queued = engine.delegate({ agent: "worker", prompt: "low, queued", priority: "low" });
  assert.equal(engine.status(queued).state, "queued");
  const before = reads;
  await server.advance(16_000);
  assert.ok(reads > before, `a tick with LOW work waiting reads (${before} → ${reads})`);
  engine.dispose();
  // A memory() that disposes the engine while run's LOW work waits for the reading.
  const other = new FakeServer();
  const hostile = other.host();
  let disposing;
  hostile.memory = () => (disposing?.dispose(), { used: 1, limit: 10 });
  disposing = other.attach(new Engine(hostile));
  await rejectsCode(disposing.run(() => "never", { priority: "low" }), "DISPOSED");
});

/** A server and engine whose host counts memory() reads (and when they happen). */
function counted(options = {}, config = { lanes: { worker: 1 } }) {
  const server = new FakeServer(options);
  const host = server.host();
  const readsAt = [];
  const read = host.memory;
  host.memory = () => (readsAt.push(server.now()), read());
  const engine = server.attach(new Engine(host, config));
  readsAt.length = 0;
  return { server, engine, readsAt };
}

test("memory: a LOW task sent again after a 429 is decided on a fresh reading at its redispatch tick", async () => {
  let first = true;
  const tooMany = (text) => (text === "low, rate limited" && first ? ((first = false), { status: 429 }) : null);
  const { server, engine, readsAt } = counted({ fail: tooMany, retryAfterMs: 1_000 });
  let requeuedAt;
  let queued = 0;
  engine.on("task", (e) => e.state === "queued" && ++queued === 2 && (requeuedAt = server.now()));
  const id = engine.delegate({ agent: "worker", prompt: "low, rate limited", priority: "low" });
  for (let i = 0; i < 300 && requeuedAt === undefined; i++) await server.advance(100);
  assert.ok(requeuedAt !== undefined, "the 429 sent it back to the queue");
  server.memoryUsed = 950;
  await server.advance(1_000);
  assert.ok(readsAt.includes(requeuedAt + 1_000), `the redispatch tick read (${readsAt})`);
  assert.equal(engine.status(id).state, "queued", "refused at 95 %");
  await server.advance(15_000); // past the stale age of any reading: each retry reads again
  assert.equal(engine.status(id).state, "queued", "still refused while memory stays high");
  server.memoryUsed = 100;
  await server.advance(10_000);
  assert.equal(engine.status(id).state, "succeeded");
  engine.dispose();
});

// Each call that may free a slot for queued LOW work reads memory first (once per ms).
test("memory: a tick's reading closes the gate on queued LOW work before a slot frees", async () => {
  // LOW work queued behind a task that ends at its deadline (the timer frees its slot).
  {
    const { server, engine, readsAt } = counted({ hang: (text) => text === "holds the lane" });
    engine.delegate({ agent: "worker", prompt: "holds the lane", deadlineMs: 5_000 });
    await server.advance(100);
    const low = engine.delegate({ agent: "worker", prompt: "low", priority: "low" });
    assert.equal(engine.status(low).state, "queued");
    server.memoryUsed = 950;
    const before = readsAt.length;
    await server.advance(5_000);
    assert.ok(readsAt.length > before, "the ticks read");
    assert.equal(engine.status(low).state, "queued", "the tick's reading closed the gate on it");
    engine.dispose();
  }
});

test("memory: the answers and events that end a turn read before its slot goes to queued LOW work", async () => {
  {
    const { server, engine, readsAt } = counted();
    const busy = engine.delegate({ agent: "worker", prompt: "holds the lane" });
    await server.advance(100);
    const low = engine.delegate({ agent: "worker", prompt: "low", priority: "low" });
    server.memoryUsed = 950;
    const before = readsAt.length;
    await server.advance(4_000);
    assert.equal(engine.status(busy).state, "succeeded");
    assert.ok(readsAt.length > before, "the answers and events read");
    assert.equal(engine.status(low).state, "queued", "not admitted on the old low reading");
    engine.dispose();
  }
});

test("memory: a cancel reads before the slot it frees goes to queued LOW work", async () => {
  {
    const { server, engine } = counted({ hang: () => true });
    const busy = engine.delegate({ agent: "worker", prompt: "holds the lane" });
    await server.advance(100);
    const low = engine.delegate({ agent: "worker", prompt: "low", priority: "low" });
    server.memoryUsed = 950;
    await server.advance(5); // a later ms: the reading made at submission does not stand
    engine.cancel(busy);
    await server.advance(0);
    assert.equal(engine.status(low).state, "queued", "the cancel read before the slot went to it");
    engine.dispose();
  }
});

test("memory: a runEnd decides queued LOW work on the engine's latest reading (the run path reads no clock of its own)", async () => {
  {
    const { server, engine, readsAt } = counted();
    let end;
    const running = engine.run(() => new Promise((r) => (end = r)), { lane: "worker" });
    await server.advance(0);
    const low = engine.delegate({ agent: "worker", prompt: "low", priority: "low" });
    server.memoryUsed = 950;
    await server.advance(5); // a later ms: the reading made at submission does not stand
    const before = readsAt.length;
    // A call that reads the clock (a submission, while LOW work is pending) takes the reading.
    engine.delegate({ agent: "planner", prompt: "elsewhere" });
    assert.ok(readsAt.length > before, "the submission read memory");
    end("done");
    assert.equal(await running, "done");
    assert.equal(engine.status(low).state, "queued", "runEnd read before the slot went to it");
    engine.dispose();
  }
});

test("memory: Engine.restore decides the restored LOW work on the constructor's reading", async () => {
  const { server, engine } = counted({ hang: () => true });
  engine.delegate({ agent: "worker", prompt: "holds the lane" });
  await server.advance(100);
  const low = engine.delegate({ agent: "worker", prompt: "low", priority: "low" });
  const journal = engine.journalExport();
  const head = engine.journalHead();
  engine.dispose();
  server.memoryUsed = 950;
  const restored = server.attach(Engine.restore(journal, head, server.host(), { lanes: { worker: 2 } }));
  assert.equal(restored.status(low).state, "queued", "refused at 95 %, with a free slot");
  restored.dispose();
});

test("memory: a host memory() that disposes the engine stops the call that asked for it", async () => {
  const hostile = (disposeWhen) => {
    const server = new FakeServer({ hang: (text) => text === "holds the lane" });
    const host = server.host();
    let engine;
    const setTimer = host.setTimer;
    host.setTimer = (fn, ms) => setTimer(() => ((server.inTick = true), fn(), (server.inTick = false)), ms);
    host.memory = () => (disposeWhen(server) && engine?.dispose(), { used: 1, limit: 10 });
    engine = server.attach(new Engine(host, { lanes: { worker: 1 } }));
    return { server, engine };
  };
  // delegate: the LOW submission's reading disposes it.
  let armed = false;
  const d = hostile(() => armed);
  armed = true;
  throwsCode(() => d.engine.delegate({ agent: "worker", prompt: "low", priority: "low" }), "DISPOSED");
  // The tick: LOW work waits, the timer's reading disposes the engine; nothing more is done.
  armed = false;
  const t = hostile((server) => armed && server.inTick);
  t.engine.delegate({ agent: "worker", prompt: "holds the lane" });
  await t.server.advance(100);
  t.engine.delegate({ agent: "worker", prompt: "low", priority: "low" });
  const calls = t.server.turns.ok + t.server.turns.hung;
  armed = true;
  t.server.attach(null); // a disposed engine hears no more events
  await t.server.advance(60_000);
  assert.equal(t.server.turns.ok + t.server.turns.hung, calls, "no work started after dispose");
  throwsCode(() => t.engine.status(1), "DISPOSED");
  // cancel and hostEvent: LOW work pending, the reading disposes the engine.
  for (const call of [(e, busy) => e.cancel(busy), (e) => e.hostEvent({ type: "session.idle", properties: { sessionID: "ses_x" } })]) {
    armed = false;
    const c = hostile(() => armed);
    const busy = c.engine.delegate({ agent: "worker", prompt: "holds the lane" });
    await c.server.advance(100);
    c.engine.delegate({ agent: "worker", prompt: "low", priority: "low" });
    await c.server.advance(5); // a later ms: a reading is due again
    c.server.attach(null);
    armed = true;
    throwsCode(() => call(c.engine, busy), "DISPOSED");
  }
});

test("stats covers lanes, keys, gate, pool, tasks, runs and journal", async () => {
  const { server, engine } = setup();
  engine.delegate({ agent: "worker", prompt: "x", model: "p/m" });
  await server.advance(5_000);
  const s = engine.stats();
  for (const k of ["version", "now", "memory", "pendingCalls", "lanes", "keys", "gate", "pool", "tasks", "runs", "journal", "engine"]) {
    assert.ok(k in s, k);
  }
  assert.equal(s.tasks.succeeded, 1);
  assert.equal(s.keys[0].name, "p/m");
  assert.equal(s.pool.misses, 1);
  assert.equal(s.gate.perMille, 100);
  assert.ok(s.journal.seq > 0);
  engine.dispose();
});

test("dispose rejects what waits, clears the timer, and later calls throw DISPOSED", async () => {
  const { server, engine } = setup({ turnMs: 60_000 }, { lanes: { worker: 1, bench: 1 } });
  const id = engine.delegate({ agent: "worker", prompt: "long" });
  const waiting = engine.wait(id);
  let release;
  const running = engine.run(() => new Promise((r) => (release = r)), { lane: "bench" });
  const queued = engine.run(() => "never", { lane: "bench" });
  await server.advance(1_000);
  assert.ok(server.engineTimers() >= 1, "a deadline timer is armed");
  engine.dispose();
  engine.dispose(); // idempotent
  await rejectsCode(waiting, "DISPOSED");
  await rejectsCode(queued, "DISPOSED");
  release("still delivered");
  assert.equal(await running, "still delivered");
  assert.equal(server.engineTimers(), 0, "no timer left behind");
  for (const call of [
    () => engine.delegate({ agent: "worker", prompt: "x" }),
    () => engine.status(id),
    () => engine.list(),
    () => engine.stats(),
    () => engine.cancel(id),
    () => engine.journalExport(),
    () => engine.journalHead(),
    () => engine.verify(),
    () => engine.on("task", () => {}),
    () => engine.hostEvent({ type: "session.idle", properties: { sessionID: "s" } }),
  ]) {
    throwsCode(call, "DISPOSED");
  }
  await rejectsCode(engine.wait(id), "DISPOSED");
  await rejectsCode(engine.run(() => 1), "DISPOSED");
});

test("an idle engine arms no timer", async () => {
  const { server, engine } = setup();
  assert.equal(server.engineTimers(), 0);
  await engine.run(() => 1);
  assert.equal(server.engineTimers(), 0);
  const id = engine.delegate({ agent: "worker", prompt: "x" });
  await server.advance(5_000);
  assert.equal((await engine.wait(id)).state, "succeeded");
  // The pool keeps the parked session for 5 minutes, then retires and deletes it.
  await server.advance(20 * 60_000);
  assert.equal(server.engineTimers(), 0);
  assert.equal(server.sessions.size, 0);
  engine.dispose();
});
