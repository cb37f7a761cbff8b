// A long-lived engine against the real pkg/ on the simulated server: memory that plateaus under
// retention, a budget that refuses work with a typed error instead of trapping, parked sessions
// bounded per agent after a burst, and the fencing epoch that keeps two engines restored from
// one journal from both acting on it. Sizes and counts are asserted (they are deterministic);
// times are only printed (the soak benchmark in `make bench` reports them).
import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeServer, loadEngine } from "./fake-server.mjs";
import { throwsCode } from "./check.mjs";

const Engine = loadEngine();

async function rejectsCode(promise, code) {
  await assert.rejects(promise, (e) => e.code === code || assert.fail(`${e.code}: ${e.message}`));
}

const KB20 = "x".repeat(20 * 1024);

test("soak: 20,000 tasks of 20 KB prompts and results; wasm memory plateaus, journal, stats and list stay flat", async () => {
  const server = new FakeServer({ turnMs: 1_000, gapMs: 100 });
  const engine = server.attach(new Engine(server.host(), { lanes: { worker: 64 } }));
  const TOTAL = 20_000;
  const BATCH = 500;
  const samples = []; // per batch: { done, memory, journal, listed, statsMs, listMs }
  let done = 0;
  const t0 = performance.now();
  for (let sent = 0; sent < TOTAL; sent += BATCH) {
    const ids = engine.delegate(
      Array.from({ length: BATCH }, (_, i) => ({ agent: "worker", prompt: `${sent + i} ${KB20}` })),
    );
    const last = engine.wait(ids.at(-1));
    while (engine.status(ids.at(-1)).state !== "succeeded") await server.advance(1_000);
    const info = await last;
    assert.equal(info.result.length, `done: ${sent + BATCH - 1} ${KB20}`.length, "a 20 KB result is kept whole");
    done += BATCH;
    server.calls.length = 0; // the simulated server's own log, not the engine's memory
    let t = performance.now();
    const stats = engine.stats();
    const statsMs = performance.now() - t;
    t = performance.now();
    const listed = engine.list().length;
    const listMs = performance.now() - t;
    samples.push({ done, memory: stats.engine.wasmMemory, journal: stats.journal.bytes, listed, statsMs, listMs, stats });
  }
  const secs = (performance.now() - t0) / 1000;
  const final = samples.at(-1).stats;
  assert.equal(final.tasks.succeeded + final.tasks.forgotten, TOTAL, "every task succeeded, held or forgotten");
  assert.ok(final.tasks.forgotten > TOTAL / 2, `retention forgot most of them: ${final.tasks.forgotten}`);
  // Memory: the last quarter of the run adds under 5 % to the peak before it.
  const q = samples.length / 4;
  const peak = (from, to) => Math.max(...samples.slice(from, to).map((s) => s.memory));
  const before = peak(0, 3 * q);
  const lastQuarter = peak(3 * q, samples.length);
  assert.ok(lastQuarter <= before * 1.05, `wasm memory ${before} → ${lastQuarter} in the last quarter`);
  // Journal kept and tasks held: flat once retention applies (the second half never exceeds the
  // second quarter's peak by more than 10 %: checkpoints make a saw-tooth, not a slope).
  const jpeak = (from, to) => Math.max(...samples.slice(from, to).map((s) => s.journal));
  assert.ok(jpeak(2 * q, samples.length) <= jpeak(q, 2 * q) * 1.1, `journal ${jpeak(q, 2 * q)} → ${jpeak(2 * q, samples.length)}`);
  const lpeak = (from, to) => Math.max(...samples.slice(from, to).map((s) => s.listed));
  assert.ok(lpeak(2 * q, samples.length) <= lpeak(q, 2 * q), "list() returns no more tasks as history grows");
  // Footprint stays inside the budget with room to spare.
  assert.ok(final.engine.footprint < final.engine.budget / 4, `footprint ${final.engine.footprint}`);
  const ms = (k, from, to) => samples.slice(from, to).reduce((a, s) => a + s[k], 0) / (to - from);
  console.log(
    `# soak: ${TOTAL} tasks in ${secs.toFixed(1)} s; wasm memory peak ${(before / 2 ** 20).toFixed(0)} MiB → ` +
      `${(lastQuarter / 2 ** 20).toFixed(0)} MiB in the last quarter; journal ≤ ${(jpeak(0, samples.length) / 2 ** 20).toFixed(1)} MiB; ` +
      `${samples.at(-1).listed} tasks held; stats() ${ms("statsMs", q, 2 * q).toFixed(2)} → ${ms("statsMs", 3 * q, 4 * q).toFixed(2)} ms, ` +
      `list() ${ms("listMs", q, 2 * q).toFixed(1)} → ${ms("listMs", 3 * q, 4 * q).toFixed(1)} ms (second → last quarter)`,
  );
  // A forgotten task answers clearly.
  throwsCode(() => engine.status(1), "TASK_FORGOTTEN");
  await rejectsCode(engine.wait(1), "TASK_FORGOTTEN");
  const dep = throwsCode(() => engine.delegate({ agent: "worker", prompt: "next", dependsOn: [1] }), "INVALID_INPUT");
  assert.match(dep.message, /forgotten/);
  // The journal kept is what an export holds, and a restore from it replays the tasks held,
  // not the 20,000 of the history.
  const journal = engine.journalExport();
  assert.equal(journal.length, engine.stats().journal.bytes);
  const restored = Engine.restore(journal, engine.journalHead(), new FakeServer().host(), { lanes: { worker: 64 } });
  assert.deepEqual(restored.list().map((t) => t.id), engine.list().map((t) => t.id));
  assert.equal(restored.stats().tasks.forgotten, engine.stats().tasks.forgotten);
  restored.dispose();
  engine.dispose();
});

test("past its memory budget the engine says ENGINE_FULL; export, restore, wait and cancel still work and nothing accepted is lost", async () => {
  const server = new FakeServer({ turnMs: 1_000 });
  const config = { lanes: { worker: 2 }, memoryBudget: 8 * 2 ** 20 };
  const engine = server.attach(new Engine(server.host(), config));
  const big = "y".repeat(256 * 1024);
  const accepted = [];
  let full;
  for (let i = 0; i < 200 && !full; i++) {
    try {
      accepted.push(engine.delegate({ agent: "worker", prompt: `${i} ${big}` }));
    } catch (e) {
      full = e;
    }
  }
  assert.ok(full, "the budget refused work");
  assert.equal(full.code, "ENGINE_FULL", full.message);
  assert.ok(full.footprint <= full.budget && full.budget === 8 * 2 ** 20);
  const stats = JSON.parse(JSON.stringify(engine.stats())); // plain numbers, no BigInt
  assert.equal(stats.tasks.queued + stats.tasks.running, accepted.length);
  assert.equal(stats.engine.budget, 8 * 2 ** 20);
  assert.ok(accepted.length >= 4, `${accepted.length} accepted`);
  throwsCode(() => engine.delegate({ agent: "worker", prompt: big }), "ENGINE_FULL");
  // Still working: export, cancel, wait, and (last: it fences this engine out) restore.
  const journal = engine.journalExport();
  const head = engine.journalHead();
  assert.equal(engine.verify(), true);
  assert.equal(engine.cancel(accepted.at(-1)), true);
  const waits = accepted.slice(0, -1).map((id) => engine.wait(id));
  while (engine.list({ open: true }).length > 0) await server.advance(1_000);
  for (const info of await Promise.all(waits)) assert.equal(info.state, "succeeded");
  assert.equal(engine.status(accepted.at(-1)).state, "cancelled");
  // Settled work leaves room again once retention forgets it.
  const small = engine.delegate({ agent: "worker", prompt: "fits again" });
  assert.equal(typeof small, "number");
  const copy = Engine.restore(journal, head, new FakeServer().host(), config);
  assert.deepEqual(copy.list().map((t) => t.id), accepted, "a restore from the full engine's journal holds every accepted task");
  copy.dispose();
  engine.dispose();
});

/** When each probe of session state (`sessionStatuses`, `checkSession`) reached the server. */
function probesAt(server) {
  return server.calls.filter(([op]) => op === "sessionStatuses" || op === "checkSession").map((c) => c.at);
}

/** The simulated server's call log, each entry stamped with the server's clock. */
function stampCalls(server) {
  const push = server.calls.push.bind(server.calls);
  server.calls.push = (entry) => push(Object.assign(entry, { at: server.now() }));
}

test("after a burst of 10,000 short tasks, parked sessions on the server stay within the pool size per agent, and health checks take at most one host probe per interval", async () => {
  const server = new FakeServer({ turnMs: 500, gapMs: 100 });
  stampCalls(server);
  const engine = server.attach(new Engine(server.host(), { lanes: { worker: 64, reviewer: 16 } }));
  const interval = 15_000; // liveness.intervalMs, the default
  const ids = engine.delegate(
    Array.from({ length: 10_000 }, (_, i) => ({ agent: i % 4 === 0 ? "reviewer" : "worker", prompt: `short ${i}` })),
  );
  while (engine.list({ open: true }).length > 0) await server.advance(1_000);
  assert.equal(engine.stats().tasks.succeeded + engine.stats().tasks.forgotten, ids.length);
  await server.advance(15_000); // the quiet period before retired sessions are deleted
  const byAgent = new Map();
  for (const s of server.sessions.values()) byAgent.set(s.agent, (byAgent.get(s.agent) ?? 0) + 1);
  assert.ok((byAgent.get("worker") ?? 0) <= 5, `worker sessions left: ${byAgent.get("worker")}`);
  assert.ok((byAgent.get("reviewer") ?? 0) <= 5, `reviewer sessions left: ${byAgent.get("reviewer")}`);
  const parked = engine.stats().pool.parked;
  assert.ok(parked >= 1 && parked <= 10, `${parked} parked`);
  // Two more minutes: the parked sessions are due their health checks every minute.
  const from = server.now();
  await server.advance(120_000);
  const all = probesAt(server);
  const after = all.filter((at) => at >= from);
  // Counted at the server: never two probes within an interval, during the burst or after it;
  // no session is checked on its own (the host has `sessionStatuses`); and the parked
  // sessions are checked (the probe runs for them with nothing else to watch).
  for (let i = 1; i < all.length; i++) {
    assert.ok(all[i] - all[i - 1] >= interval, `two probes ${all[i] - all[i - 1]} ms apart`);
  }
  assert.equal(server.calls.filter(([op]) => op === "checkSession").length, 0, "no checkSession");
  assert.ok(after.length >= 2 && after.length <= 120_000 / interval, `${after.length} probes in two idle minutes`);
  console.log(`# burst: ${all.length} probes in all (${after.length} in the two idle minutes), ${parked} sessions parked`);
  engine.dispose();
});

test("a host without sessionStatuses: parked sessions are checked one call each, once a minute, bounded by the pool size", async () => {
  const server = new FakeServer({ turnMs: 500, gapMs: 100 });
  stampCalls(server);
  const host = server.host();
  delete host.sessionStatuses;
  const engine = server.attach(new Engine(host, { lanes: { worker: 16, reviewer: 8 } }));
  engine.delegate(
    Array.from({ length: 400 }, (_, i) => ({ agent: i % 4 === 0 ? "reviewer" : "worker", prompt: `short ${i}` })),
  );
  while (engine.list({ open: true }).length > 0) await server.advance(1_000);
  await server.advance(15_000);
  const parked = engine.stats().pool.parked;
  assert.ok(parked >= 1 && parked <= 10, `${parked} parked`);
  const from = server.now();
  await server.advance(120_000);
  const stamps = server.calls.filter((c) => c[0] === "checkSession" && c.at >= from);
  // Each parked session once a minute: two minutes, at most two checks each.
  assert.ok(stamps.length >= parked && stamps.length <= 2 * parked, `${stamps.length} checks of ${parked} parked sessions in two minutes`);
  const per = new Map();
  for (const [, session] of stamps) per.set(session, (per.get(session) ?? 0) + 1);
  for (const [session, n] of per) assert.ok(n <= 2, `${session} checked ${n} times in two minutes`);
  engine.dispose();
});

test("two engines restored from one journal: the newer fences the older out; every task runs once and sessions are deleted once", async () => {
  const server = new FakeServer({ turnMs: 2_000 });
  const config = { lanes: { worker: 2 } };
  const lost = server.attach(new Engine(server.host(), config));
  const prompts = Array.from({ length: 6 }, (_, i) => `fenced ${i}`);
  const ids = lost.delegate(prompts.map((prompt) => ({ agent: "worker", prompt })));
  await server.advance(500); // two running (sessions created), four queued
  const journal = lost.journalExport();
  const head = lost.journalHead();
  assert.equal(head.epoch, 0);
  // Each restored engine gets its own host view of the same server, so calls are attributed.
  const counted = (name) => {
    const host = server.host();
    const calls = [];
    for (const op of ["prompt", "deleteSession", "abort", "createSession"]) {
      const real = host[op];
      host[op] = (input, callId) => {
        calls.push([op, input.text ?? input.sessionID ?? input.agent]);
        return real(input, callId);
      };
    }
    return { host, calls, name };
  };
  const a = counted("first");
  const b = counted("second");
  const first = Engine.restore(journal, head, a.host, config);
  const second = Engine.restore(journal, head, b.host, config);
  assert.ok(second.journalHead().epoch > first.journalHead().epoch, "the later restore holds the higher epoch");
  assert.equal(first.stats().engine.fenced, true);
  assert.equal(second.stats().engine.fenced, false);
  assert.equal(lost.stats().engine.fenced, true, "the lost engine is fenced too");
  throwsCode(() => first.delegate({ agent: "worker", prompt: "more" }), "FENCED");
  throwsCode(() => first.cancel(ids[0]), "FENCED");
  throwsCode(() => lost.delegate({ agent: "worker", prompt: "more" }), "FENCED");
  await rejectsCode(first.wait(ids[5]), "FENCED");
  // Events reach both engines (the server broadcasts to the one attached); feed both.
  server.attach({ hostEvent: (e) => { first.hostEvent(e); second.hostEvent(e); lost.hostEvent(e); } });
  const waits = ids.map((id) => second.wait(id));
  await server.advance(60_000);
  for (const info of await Promise.all(waits)) assert.equal(info.state, "succeeded", JSON.stringify(info));
  assert.deepEqual(a.calls, [], "the fenced engine made no host call");
  const sent = b.calls.filter(([op]) => op === "prompt").map(([, text]) => text);
  const all = server.calls.filter(([op]) => op === "prompt").map(([, , text]) => text);
  for (const p of prompts) assert.equal(all.filter((t) => t === p).length, 1, `${p} sent once in all`);
  assert.equal(new Set(sent).size, sent.length, "the newest engine sent each prompt once");
  const deletes = server.calls.filter(([op]) => op === "deleteSession").map(([, session]) => session);
  assert.equal(new Set(deletes).size, deletes.length, "each session deleted once");
  // The host holds the epoch: a head carrying a higher one makes the next restore go above it.
  const third = Engine.restore(second.journalExport(), { ...second.journalHead(), epoch: 40 }, server.host(), config);
  assert.equal(third.journalHead().epoch, 41);
  assert.equal(second.stats().engine.fenced, true);
  // And an engine told of a newer epoch by its host stops acting.
  assert.equal(third.fence(41), false, "its own epoch does not fence it");
  assert.equal(third.fence(42), true);
  throwsCode(() => third.delegate({ agent: "worker", prompt: "no" }), "FENCED");
  for (const e of [lost, first, second, third]) e.dispose();
});
