// Property-based fuzz of the real pkg/ build: sequences of 50 calls to the public API with
// arbitrary arguments — NaN, huge and negative numbers, wrong types, unknown ids, proxies whose
// every trap throws, functions that throw or call back into the engine, host functions that
// re-enter, calls after `dispose` — checked for: no WebAssembly trap, no "recursive use" error,
// no unhandled rejection, and every error the engine raises an `Error` with a string `code`.
// The host misbehaves too, as random operations: bus events lost, repeated and reordered; calls
// that never answer; the wall clock stepping either way (±10 s for good, which the server's
// message stamps share; a day ahead, once); host functions that
// throw or answer with revoked proxies and promises whose `then` throws. After the calls, every
// task settles within its deadline plus the liveness interval, and every `wait` settles once.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { FakeServer, loadEngine, settle } from "./fake-server.mjs";
import { filterEvents, never, revoked, throwingThen } from "./hostile.mjs";

const Engine = loadEngine();
const RUNS = Number(process.env.FOREMAN_FUZZ_RUNS ?? 10_000);
const SEED = Number(process.env.FOREMAN_SEED ?? 20261124);
const CALLS = 50;

/** Errors the fuzz's own functions throw: passed through by design, not the engine's. */
class UserError extends Error {}

const trapProxy = () =>
  new Proxy(
    {},
    {
      get() {
        throw new UserError("get trap");
      },
      has() {
        throw new UserError("has trap");
      },
      ownKeys() {
        throw new UserError("ownKeys trap");
      },
      getOwnPropertyDescriptor() {
        throw new UserError("descriptor trap");
      },
      getPrototypeOf() {
        throw new UserError("prototype trap");
      },
    },
  );

/** Stands for a fresh throwing proxy (made at call time: fast-check must not inspect one). */
const PROXY = Symbol("proxy");
const real = (arg) => (arg === PROXY ? trapProxy() : arg);

let current = null; // the engine under test, for re-entrant functions
let problems = [];

function check(error, where) {
  if (error instanceof WebAssembly.RuntimeError) problems.push(`${where}: wasm trap: ${error.message}`);
  else if (String(error?.message ?? error).includes("recursive use")) problems.push(`${where}: ${error.message}`);
  else if (error instanceof UserError && / trap$/.test(error.message) && !where.includes("async") && !where.startsWith("run"))
    problems.push(`${where}: a throwing proxy's error escaped instead of INVALID_INPUT: ${error.stack}`);
  else if (error instanceof UserError) return;
  else if (!(error instanceof Error) || typeof error.code !== "string") problems.push(`${where}: not a coded Error: ${String(error?.stack ?? error)}`);
}

function watch(value, where) {
  if (value && typeof value.then === "function") value.then(() => {}, (e) => check(e, `${where} (async)`));
}

const reentrant = () => {
  // Work that calls back into the engine while it runs.
  try {
    current?.stats();
    current?.list();
    watch(current?.run(() => 1), "nested run");
  } catch (e) {
    check(e, "re-entrant call");
  }
  return "reentered";
};

const functions = fc.constantFrom(
  () => 1,
  () => {
    throw new UserError("sync");
  },
  () => Promise.reject(Object.assign(new UserError("503"), { status: 503 })),
  () => Promise.reject(Object.assign(new UserError("429"), { status: 429 })),
  () => new Promise(() => {}),
  async () => "async",
  reentrant,
  () => trapProxy(),
);

const numbers = fc.oneof(
  fc.constantFrom(NaN, Infinity, -Infinity, -1, -0, 0, 0.5, 1, 2, 3, 7, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 64, 1e308, Number.MIN_VALUE),
  fc.integer({ min: -3, max: 40 }),
  fc.double(),
);

const spec = fc.record(
  {
    agent: fc.oneof(fc.constantFrom("worker", "planner", "reviewer", "x", ""), fc.string()),
    prompt: fc.oneof(fc.constantFrom("do it", "fail!", " "), fc.string()),
    priority: fc.oneof(fc.constantFrom("high", "normal", "low", "HIGH"), fc.anything()),
    deadlineMs: numbers,
    model: fc.constantFrom("p/m", "q/n", "bad", ""),
    dependsOn: fc.array(numbers, { maxLength: 3 }),
    retries: numbers,
    failFast: fc.oneof(fc.boolean(), fc.anything()),
    idempotencyKey: fc.string({ maxLength: 3 }),
    followUpOf: numbers,
    parentID: fc.string({ maxLength: 5 }),
  },
  { requiredKeys: [] },
);

const event = fc.record(
  {
    type: fc.constantFrom("session.status", "session.idle", "session.error", "session.deleted", "message.updated", 3),
    properties: fc.oneof(
      fc.record({
        sessionID: fc.oneof(fc.constantFrom("ses_0001", "ses_0002", "ses_0003"), fc.anything()),
        status: fc.record({ type: fc.constantFrom("busy", "idle", "retry", "other"), attempt: numbers, next: numbers }),
        error: fc.anything(),
        info: fc.record({ id: fc.constantFrom("ses_0001", "ses_0002") }),
      }),
      fc.anything(),
    ),
  },
  { requiredKeys: [] },
);

const anyArg = fc.oneof(
  { weight: 4, arbitrary: fc.anything() },
  { weight: 4, arbitrary: numbers },
  { weight: 2, arbitrary: spec },
  { weight: 1, arbitrary: fc.array(spec, { maxLength: 4 }) },
  { weight: 1, arbitrary: event },
  { weight: 2, arbitrary: functions },
  { weight: 1, arbitrary: fc.constant(PROXY) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }) },
  { weight: 1, arbitrary: fc.record({ lane: fc.constantFrom("worker", "bench", 3), key: fc.constantFrom("p/m", ""), priority: fc.anything(), deadlineMs: numbers, failFast: fc.anything() }, { requiredKeys: [] }) },
);

const methods = [
  "delegate", "wait", "cancel", "status", "list", "stats", "on", "journalExport", "journalHead", "verify", "fence",
  "resolve", "reject", "hostEvent", "run", "run", "run", "dispose", "restore", "advance",
  "breaker", "breaker", "mischief", "mischief",
];

/** What the host does wrong, chosen by a `mischief` call's first argument. */
const MISCHIEF = ["lose", "repeat", "reorder", "behave", "hang", "throwRevoked", "rejectRevoked", "thenThrows", "stepBack", "stepAhead", "dayAhead"];
const SETTLED = new Set(["succeeded", "failed", "cancelled", "timed_out"]);

const call = fc.record({
  method: fc.constantFrom(...methods),
  args: fc.array(anyArg, { maxLength: 4 }),
});

async function play(calls) {
  const server = new FakeServer({ turnMs: 500, fail: (text) => (String(text).endsWith("!") ? { status: 503 } : null) });
  const base = server.host();
  let count = 0;
  // The host's misbehaviour, set by `mischief` calls.
  let events = "behave";
  let misanswer = null; // the next host operation's answer: hang, throw, reject, then-throws
  let step = 0; // the wall clock's error, ms
  let spike = 0; // readings left a day ahead
  // The server stamps messages on the same (stepped) wall clock; a spike is the host's alone.
  server.stamp = () => Math.max(0, server.clock + step);
  filterEvents(server, (e, held) => {
    if (events === "lose") return [];
    if (events === "repeat") return [e, e];
    if (events === "reorder") {
      held.push(e);
      return held.length > 2 ? held.splice(0).reverse() : [];
    }
    return [...held.splice(0), e];
  });
  const op = (name) => (input, id) => {
    const how = misanswer;
    misanswer = null;
    if (how === "hang") return never();
    if (how === "throwRevoked") throw revoked();
    if (how === "rejectRevoked") return Promise.reject(revoked());
    if (how === "thenThrows") return throwingThen(Promise.reject(new UserError("503")));
    return base[name](input, id);
  };
  const host = {
    ...base,
    now: () => {
      if (spike > 0) {
        spike--;
        return server.clock + 86_400_000;
      }
      return Math.max(0, server.clock + step);
    },
    monotonic: () => server.clock,
    prompt: op("prompt"),
    abort: op("abort"),
    deleteSession: op("deleteSession"),
    lastAssistantMessage: op("lastAssistantMessage"),
    checkSession: op("checkSession"),
    sessionStatuses: op("sessionStatuses"),
    // Every few calls the host re-enters the engine synchronously before answering.
    createSession: (input, id) => {
      if (++count % 3 === 0) reentrant();
      return op("createSession")(input, id);
    },
  };
  const waits = [];
  let engine = server.attach(new Engine(host, { lanes: { worker: 3, bench: 2 } }));
  current = engine;
  for (const { method, args: generated } of calls) {
    const args = generated.map(real);
    const where = `${method}(${args.length} args)`;
    try {
      let result;
      if (method === "mischief") {
        const n = typeof generated[0] === "number" && Number.isFinite(generated[0]) ? Math.abs(generated[0] | 0) : 0;
        const what = MISCHIEF[(n + generated.length * 5) % MISCHIEF.length];
        if (["lose", "repeat", "reorder", "behave"].includes(what)) events = what;
        else if (what === "stepBack") step -= 10_000;
        else if (what === "stepAhead") step += 10_000;
        else if (what === "dayAhead") spike = 1;
        else misanswer = what;
        continue;
      } else if (method === "advance") {
        await server.advance(typeof args[0] === "number" && Number.isFinite(args[0]) ? Math.abs(args[0]) % 120_000 : 1_000);
        continue;
      } else if (method === "restore") {
        // Half the time the real journal (a restore that works), else whatever was generated.
        const journal = generated[0] instanceof Uint8Array && generated[0].length % 2 ? engine.journalExport() : args[0];
        result = Engine.restore(journal, generated[1] === undefined ? engine.journalHead() : args[1], host, args[2]);
        engine.dispose();
        engine = server.attach(result);
        current = engine;
      } else if (method === "breaker") {
        // A valid key most of the time (so calls go through), anything otherwise.
        const key = args.length % 3 === 0 ? args[0] : ["p/m", "q/n"][args.length % 2];
        result = engine.breaker(key).execute(args[1]);
      } else {
        result = engine[method](...args);
        if (method === "wait" && result && typeof result.then === "function") {
          const w = { settled: 0 };
          result.then(() => w.settled++, () => w.settled++);
          waits.push(w);
        }
      }
      watch(result, where);
    } catch (e) {
      check(e, where);
    }
  }
  await server.advance(5_000);
  // The host behaves again (as after a reconnect); every open task settles within its deadline
  // plus the liveness interval (and the call timeout, for a call that hung): a day at most.
  events = "behave";
  misanswer = null;
  let open = [];
  try {
    for (let hours = 0; hours < 26; hours++) {
      open = engine.list().filter((t) => !SETTLED.has(t.state));
      if (open.length === 0) break;
      await server.advance(3_600_000);
    }
    open = engine.list().filter((t) => !SETTLED.has(t.state));
  } catch (e) {
    check(e, "drain");
  }
  if (open.length > 0) problems.push(`tasks never settled: ${JSON.stringify(open.map((t) => [t.id, t.state]))}`);
  try {
    engine.dispose();
  } catch (e) {
    check(e, "final dispose");
  }
  await settle();
  const unsettled = waits.filter((w) => w.settled !== 1).length;
  if (unsettled > 0) problems.push(`${unsettled} waits did not settle exactly once`);
}

test(`fuzz: ${RUNS} runs × ${CALLS} calls: no trap, no recursive use, no unhandled rejection, coded errors (seed ${SEED})`, async () => {
  const unhandled = [];
  const onUnhandled = (reason) => {
    if (!(reason instanceof UserError)) unhandled.push(String(reason?.stack ?? reason));
  };
  process.on("unhandledRejection", onUnhandled);
  let found = [];
  try {
    const details = await fc.check(
      fc.asyncProperty(fc.array(call, { minLength: CALLS, maxLength: CALLS }), async (calls) => {
        problems = [];
        await play(calls);
        if (problems.length) {
          found = problems;
          return false;
        }
        return true;
      }),
      { numRuns: RUNS, seed: SEED, endOnFailure: true },
    );
    await settle();
    // The problems alone (the counterexample is 50 calls of arbitrary values: rerun with the
    // printed seed and path to get it).
    assert.ok(!details.failed, `seed ${SEED}, path ${details.counterexamplePath}:\n${found.slice(0, 5).join("\n")}`);
    assert.equal(details.numRuns, RUNS);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
  assert.deepEqual(unhandled, []);
});
