// Liveness when the host misbehaves, against the real pkg/ build: no run slot lost, no task
// stuck, every failure a ForemanError. Each test names the class of misbehaviour it covers
// (README, "Liveness"); the hostile hosts are in hostile.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeServer, loadEngine, settle } from "./fake-server.mjs";
import { filterEvents, hostWith, never, revoked, throwingThen } from "./hostile.mjs";

const Engine = loadEngine();

/** Counts settlements of `promises` as they happen. */
function track(promises) {
  const t = { fulfilled: 0, rejected: [], values: [] };
  for (const p of promises) {
    p.then(
      (v) => {
        t.fulfilled++;
        t.values.push(v);
      },
      (e) => t.rejected.push(e),
    );
  }
  return t;
}

/** Collects unhandled rejections while `fn` runs (and a few turns after). */
async function noUnhandled(fn) {
  const seen = [];
  const listener = (reason) => seen.push(reason);
  process.on("unhandledRejection", listener);
  try {
    await fn();
    for (let i = 0; i < 5; i++) await settle();
  } finally {
    process.off("unhandledRejection", listener);
  }
  assert.deepEqual(seen.map((r) => String(r?.stack ?? r)), [], "unhandled rejections");
}

test("class 1: a breaker closing with 1,000 runs waiting starts every one of them", async () => {
  const server = new FakeServer();
  const config = { lanes: { io: 1024 }, breaker: { failureThreshold: 1, openMs: 1_000, closeAfter: 1 } };
  const engine = server.attach(new Engine(server.host(), config));
  const options = { lane: "io", key: "p/m" };
  const down = Object.assign(new Error("down"), { class: "upstream" });
  await assert.rejects(engine.run(() => Promise.reject(down), options));
  let started = 0;
  const runs = [];
  for (let i = 0; i < 1_000; i++) {
    runs.push(
      engine.run(async () => {
        started++;
        return i;
      }, options),
    );
  }
  const t = track(runs);
  await settle();
  assert.equal(started, 0, "the open breaker holds them");
  // At the probe time one of them runs as the probe; its success closes the breaker and the
  // other 999 are made ready by one release.
  await server.advance(1_500);
  assert.equal(t.rejected.length, 0);
  assert.equal(t.fulfilled, 1_000, `${1_000 - t.fulfilled} runs never settled`);
  assert.equal(started, 1_000);
  assert.deepEqual(engine.stats().runs, { waiting: 0, running: 0 });
  engine.dispose();
});

test("class 1: more ready slots than the buffer holds, made ready inside a full pass, all start", async () => {
  // A lane of 1 024 freed by one run whose end also moves a sub-agent task (the full pass).
  const server = new FakeServer();
  const engine = server.attach(new Engine(server.host(), { lanes: { io: 1, worker: 1 } }));
  let release;
  const first = engine.run(() => new Promise((r) => (release = r)), { lane: "io" });
  const runs = [];
  for (let i = 0; i < 600; i++) runs.push(engine.run(() => i, { lane: "io" }));
  const t = track(runs);
  release("x");
  await first;
  await server.advance(10);
  assert.equal(t.fulfilled, 600);
  engine.dispose();
});

test("class 2: a run started by a host function as another run expires never receives that expiry", async () => {
  const server = new FakeServer({ gapMs: 1e9, turnMs: 1e9 });
  let engine;
  let inner = null;
  const start = server.clock;
  const hook = (input, callId, real) => {
    // The first host call at or after the expiry's moment starts a run (a host that limits its
    // own I/O with foreman): it is started while the engine is between the expiry and telling
    // run.js about it.
    if (inner === null && server.clock >= start + 5_000) inner = engine.run(() => "inner", { lane: "io" });
    return real(input, callId);
  };
  const host = hostWith(server, { lastAssistantMessage: hook, checkSession: hook, abort: hook });
  host.sessionStatuses = (input, callId) => hook(input, callId, () => Promise.resolve({}));
  engine = server.attach(new Engine(host, { lanes: { io: 1 } }));
  let release;
  const blocker = engine.run(() => new Promise((r) => (release = r)), { lane: "io" });
  const waiting = engine.run(() => "never started", { lane: "io", deadlineMs: 5_000 });
  const w = track([waiting]);
  engine.delegate({ agent: "worker", prompt: "p" }); // its grace check falls at the same moment
  await server.advance(5_000);
  assert.notEqual(inner, null, "a host call was made at the expiry's moment");
  const i = track([inner]);
  await settle();
  assert.equal(w.rejected.length, 1, "the expired run heard of its expiry");
  assert.equal(w.rejected[0].code, "TIMED_OUT");
  assert.equal(i.rejected.length, 0, "the new run did not receive the old one's expiry");
  release("done");
  await blocker;
  await server.advance(10);
  assert.deepEqual(i.values, ["inner"], "the new run ran when the slot freed");
  assert.equal(engine.stats().runs.running + engine.stats().runs.waiting, 0);
  engine.dispose();
});

test("class 6: a host that throws or rejects with a revoked proxy fails the call, never the engine", async () => {
  await noUnhandled(async () => {
    for (const mode of ["throw", "reject"]) {
      const server = new FakeServer();
      const host = hostWith(server, {
        createSession: () => {
          if (mode === "throw") throw revoked();
          return Promise.reject(revoked());
        },
      });
      const engine = server.attach(new Engine(host, { lanes: { worker: 2 } }));
      const id = engine.delegate({ agent: "worker", prompt: "p" });
      const done = engine.wait(id);
      await server.advance(200_000);
      const info = await done;
      assert.equal(info.state, "failed", `${mode}: settled`);
      assert.equal(engine.stats().lanes.find((l) => l.name === "worker").inUse, 0);
      // The same values from run work and breaker work reach their caller as they are (the
      // engine classifies them without reading them raw).
      const r1 = revoked();
      assert.equal(await engine.run(() => Promise.reject(r1)).catch((e) => e === r1), true);
      const r2 = revoked();
      assert.equal(await engine.breaker("p/m").execute(() => { throw r2; }).catch((e) => e === r2), true);
      engine.dispose();
    }
  });
});

test("class 6: delegate submits the whole batch and starts every host call, even when one returns a promise whose then throws", async () => {
  await noUnhandled(async () => {
    const server = new FakeServer();
    let creates = 0;
    const host = hostWith(server, {
      createSession: (input, callId, real) => {
        creates++;
        // The first fails like a 503 behind a `then` that throws; it is retried.
        const down = Object.assign(new Error("unavailable"), { status: 503 });
        return creates === 1 ? throwingThen(Promise.reject(down)) : real(input, callId);
      },
    });
    const engine = server.attach(new Engine(host, { lanes: { worker: 3 } }));
    const ids = engine.delegate([
      { agent: "worker", prompt: "a" },
      { agent: "worker", prompt: "b" },
      { agent: "worker", prompt: "c" },
    ]);
    assert.equal(ids.length, 3);
    assert.ok(creates >= 3, "every host call of the batch was started");
    const infos = await Promise.all([...ids.map((id) => engine.wait(id)), server.advance(200_000)]);
    assert.deepEqual(infos.slice(0, 3).map((i) => i.state), ["succeeded", "succeeded", "succeeded"]);
    engine.dispose();
  });
});

test("class 6: delegate refused for one spec submits none of the batch", async () => {
  const server = new FakeServer();
  const engine = server.attach(new Engine(server.host(), { lanes: { worker: 3 } }));
  server.memoryUsed = 950; // LOW work is refused under pressure
  engine.stats(); // a fresh reading
  let caught;
  try {
    engine.delegate([{ agent: "worker", prompt: "a" }, { agent: "worker", prompt: "b", priority: "low" }]);
  } catch (e) {
    caught = e;
  }
  assert.equal(caught?.code, "MEMORY_PRESSURE");
  assert.deepEqual(caught.submitted, []);
  assert.equal(engine.list().length, 0, "nothing of the batch was submitted");
  assert.equal(server.calls.length, 0, "no host call started");
  engine.dispose();
});

test("class 6: Engine.restore given a proxy of a Uint8Array or a detached one throws a ForemanError", async () => {
  const server = new FakeServer();
  const engine = server.attach(new Engine(server.host()));
  engine.delegate({ agent: "worker", prompt: "p" });
  await server.advance(5_000);
  const journal = engine.journalExport();
  const head = engine.journalHead();
  for (const [what, bytes] of [
    ["a proxy", new Proxy(journal, {})],
    ["a revoked proxy", revoked()],
    ["a detached array", (() => {
      const b = journal.slice();
      structuredClone(b.buffer, { transfer: [b.buffer] });
      return b;
    })()],
  ]) {
    let caught;
    try {
      Engine.restore(bytes, head, new FakeServer().host());
    } catch (e) {
      caught = e;
    }
    assert.equal(caught?.name, "ForemanError", `${what}: ${caught?.stack}`);
    assert.equal(caught.code, "INVALID_INPUT", what);
  }
  // The real bytes restore.
  Engine.restore(journal, head, new FakeServer().host()).dispose();
  engine.dispose();
});

/** A task's state after `ms` of virtual time. */
async function stateAfter(server, engine, id, ms) {
  await server.advance(ms);
  return engine.status(id).state;
}

test("class 3: a lost idle costs at most the liveness interval, not the deadline", async () => {
  const server = new FakeServer({ gapMs: 200, turnMs: 1_000 });
  // The stream reconnects at the wrong moment: every idle of the session is lost.
  filterEvents(server, (e) => (e.type === "session.idle" || e.properties.status?.type === "idle" ? [] : [e]));
  const engine = server.attach(new Engine(server.host(), { lanes: { worker: 2 } }));
  const id = engine.delegate({ agent: "worker", prompt: "p" });
  assert.equal(await stateAfter(server, engine, id, 2_000), "running", "busy seen, idle lost");
  // One interval (15 s) after it was last heard from, the probe finds it idle and reads it.
  assert.equal(await stateAfter(server, engine, id, 15_000), "succeeded");
  const probes = server.calls.filter(([op]) => op === "sessionStatuses").length;
  assert.ok(probes >= 1 && probes <= 2, `${probes} probes`);
  engine.dispose();
});

test("class 3: busy delivered after idle on a short turn does not leave the task running", async () => {
  const server = new FakeServer({ gapMs: 200, turnMs: 1_000 });
  // Busy arrives after the idle (reordered), inside the grace period after dispatch.
  const f = filterEvents(server, (e, held) => {
    if (e.properties.status?.type === "busy") {
      held.push(e);
      return [];
    }
    return e.type === "session.idle" ? [e, ...held.splice(0)] : [e];
  });
  const engine = server.attach(new Engine(server.host(), { lanes: { worker: 2 } }));
  const id = engine.delegate({ agent: "worker", prompt: "p" });
  assert.equal(await stateAfter(server, engine, id, 2_000), "running");
  assert.equal(f.held.length, 0);
  assert.equal(await stateAfter(server, engine, id, 16_000), "succeeded");
  engine.dispose();
});

test("class 3: a stray busy on a pool session does not keep it on the server past its retirement", async () => {
  const server = new FakeServer({ gapMs: 200, turnMs: 1_000 });
  const engine = server.attach(new Engine(server.host(), { lanes: { worker: 2 } }));
  const id = engine.delegate({ agent: "worker", prompt: "p" });
  await server.advance(5_000);
  const info = await engine.wait(id);
  assert.equal(info.state, "succeeded");
  // A late busy for the parked session, with no idle ever after it.
  server.emit("session.status", { sessionID: info.sessionID, status: { type: "busy" } });
  // Retired after 5 min idle, aborted, deleted after 10 s of quiet — the busy mark does not
  // hold it forever.
  await server.advance(400_000);
  assert.equal(server.sessions.size, 0, "no session left on the server");
  engine.dispose();
});

test("class 3: hostEvent while now() throws handles the event at the last good time", async () => {
  const server = new FakeServer({ gapMs: 200, turnMs: 1_000 });
  let broken = false;
  const host = hostWith(server, {}, {
    now: () => {
      if (broken) throw new Error("clock unavailable");
      return server.clock;
    },
  });
  const engine = server.attach(new Engine(host, { lanes: { worker: 2 } }));
  const id = engine.delegate({ agent: "worker", prompt: "p" });
  await server.advance(500); // busy seen
  broken = true;
  await server.advance(600); // the turn ends: its idle arrives while the clock fails
  broken = false;
  await server.advance(10);
  assert.equal(engine.status(id).state, "succeeded", "the idle was not dropped");
  engine.dispose();
});

test("class 3: without sessionStatuses the probe falls back to one check per suspect", async () => {
  const server = new FakeServer({ gapMs: 200, turnMs: 1_000 });
  filterEvents(server, (e) => (e.type === "session.idle" || e.properties.status?.type === "idle" ? [] : [e]));
  const host = server.host();
  delete host.sessionStatuses;
  const engine = server.attach(new Engine(host, { lanes: { worker: 2 } }));
  const id = engine.delegate({ agent: "worker", prompt: "p" });
  assert.equal(await stateAfter(server, engine, id, 17_000), "succeeded");
  engine.dispose();
});

test("class 4: a createSession that never answers times out, is retried, and then fails with class timeout", async () => {
  const server = new FakeServer();
  const host = hostWith(server, { createSession: () => never() });
  const engine = server.attach(new Engine(host, { lanes: { worker: 1 } }));
  const id = engine.delegate({ agent: "worker", prompt: "p" });
  await server.advance(200_000);
  const info = engine.status(id);
  assert.equal(info.state, "failed");
  assert.equal(info.error.class, "timeout");
  assert.equal(engine.stats().lanes.find((l) => l.name === "worker").inUse, 0, "the slot was freed");
  assert.equal(engine.stats().pendingCalls, 3, "the timed-out creations still listen for a late session");
  engine.dispose();
});

test("class 4: a prompt that never answers frees the slot with class timeout", async () => {
  const server = new FakeServer();
  const host = hostWith(server, { prompt: () => never() });
  const engine = server.attach(new Engine(host, { lanes: { worker: 1 } }));
  const id = engine.delegate({ agent: "worker", prompt: "p" });
  await server.advance(40_000);
  const info = engine.status(id);
  assert.equal(info.state, "failed");
  assert.equal(info.error.class, "timeout");
  assert.equal(engine.stats().lanes.find((l) => l.name === "worker").inUse, 0);
  engine.dispose();
});

test("class 4: cancel settles cancelled within the bound when abort never answers", async () => {
  const server = new FakeServer({ hang: () => true });
  const host = hostWith(server, { abort: () => never() });
  const engine = server.attach(new Engine(host, { lanes: { worker: 1 } }));
  const id = engine.delegate({ agent: "worker", prompt: "p", deadlineMs: 5_000 });
  await server.advance(1_000);
  assert.equal(engine.status(id).state, "running");
  assert.equal(engine.cancel(id), true);
  // Before the bound (10 s) the task's own deadline passes: the cancel still stands.
  assert.equal(await stateAfter(server, engine, id, 10_100), "cancelled");
  engine.dispose();
});

test("class 4: cancel settles within the bound when createSession never answers", async () => {
  const server = new FakeServer();
  const host = hostWith(server, { createSession: () => never() });
  const engine = server.attach(new Engine(host, { lanes: { worker: 1 }, liveness: { callTimeoutMs: 60_000, cancelMs: 2_000 } }));
  const id = engine.delegate({ agent: "worker", prompt: "p" });
  await server.advance(10);
  assert.equal(engine.status(id).state, "admitted");
  engine.cancel(id);
  assert.equal(await stateAfter(server, engine, id, 2_100), "cancelled");
  engine.dispose();
});

test("class 4: a session made by a timed-out createSession is retired, not left on the server", async () => {
  const server = new FakeServer();
  let first = true;
  const host = hostWith(server, {
    createSession: (input, callId, real) => {
      if (!first) return real(input, callId);
      first = false;
      // Answers after the timeout (30 s).
      return new Promise((resolve) => server.schedule(40_000, () => resolve(real(input, callId))));
    },
  });
  const engine = server.attach(new Engine(host, { lanes: { worker: 1 } }));
  const id = engine.delegate({ agent: "worker", prompt: "p" });
  await server.advance(100_000);
  assert.equal(engine.status(id).state, "succeeded");
  await server.advance(400_000);
  assert.equal(server.sessions.size, 0, "both sessions were deleted");
  assert.equal(engine.stats().pendingCalls, 0);
  engine.dispose();
});

test("class 5: one wall reading a day ahead freezes nothing when the host has a monotonic clock", async () => {
  const server = new FakeServer({ gapMs: 200, turnMs: 1_000 });
  const base = server.clock;
  let spikes = 0;
  const host = hostWith(server, {}, {
    now: () => {
      if (spikes > 0) {
        spikes--;
        return server.clock + 86_400_000;
      }
      return server.clock;
    },
    monotonic: () => server.clock - base + 0.5,
  });
  const engine = server.attach(new Engine(host, { lanes: { worker: 2 } }));
  const id = engine.delegate({ agent: "worker", prompt: "p" });
  spikes = 1; // the next reading (the session's arrival, just before the prompt) is a day ahead
  assert.equal(await stateAfter(server, engine, id, 5_000), "succeeded");
  const late = engine.delegate({ agent: "worker", prompt: "q", deadlineMs: 10_000 });
  assert.equal(await stateAfter(server, engine, late, 5_000), "succeeded");
  engine.dispose();
});

test("class 5: a 10 s step back of the wall clock does not time out tasks dispatched after it", async () => {
  const server = new FakeServer({ gapMs: 200, turnMs: 1_000 });
  let step = 0;
  // The host's wall clock and the server's message stamps share the machine's clock.
  const shift = (m) => m && { ...m, info: { ...m.info, time: { created: m.info.time.created + step, completed: m.info.time.completed + step } } };
  const host = hostWith(server, {
    lastAssistantMessage: (input, callId, real) => real(input, callId).then(shift),
  }, { now: () => server.clock + step });
  const engine = server.attach(new Engine(host, { lanes: { worker: 2 } }));
  await server.advance(1_000);
  step = -10_000; // NTP steps the clock back
  const id = engine.delegate({ agent: "worker", prompt: "p", deadlineMs: 60_000 });
  assert.equal(await stateAfter(server, engine, id, 5_000), "succeeded");
  engine.dispose();
});

test("class 4: a createSession that never answers is given up at the call timeout, not before", async () => {
  const server = new FakeServer();
  let asked = 0;
  const host = hostWith(server, { createSession: () => (asked++, never()) });
  const engine = server.attach(new Engine(host, { lanes: { worker: 1 } }));
  const id = engine.delegate({ agent: "worker", prompt: "p" });
  await server.advance(29_000);
  assert.equal(asked, 1, "no second creation before the first timed out");
  assert.equal(engine.status(id).state, "admitted");
  await server.advance(15_000);
  assert.equal(asked, 2, "timed out at 30 s, then created again after a backoff");
  await server.advance(200_000);
  assert.equal(engine.status(id).error?.class, "timeout");
  engine.dispose();
});
