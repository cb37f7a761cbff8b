// The measures of the JS benchmarks, shared by compare.mjs (foreman against the npm libraries)
// and baseline.mjs (this build of foreman against an earlier one, in the same process): the
// workloads, foreman's side of each one for a given `Engine` class, and the list of jobs with
// their goals. A contender is a factory; a job's `measure(make, name)` runs one repetition with
// it and returns one number.

export const QUICK = process.env.FOREMAN_BENCH_QUICK === "1";
export const N = QUICK ? 10_000 : 100_000;
const CALLS = QUICK ? 10_000 : 50_000;

export function gc() {
  if (typeof Bun !== "undefined") Bun.gc(true);
  else if (typeof globalThis.gc === "function") globalThis.gc();
}
// Bun's process.memoryUsage() does not track its JS heap; its own heap statistics do.
const bunHeap = typeof Bun !== "undefined" ? (await import("bun:jsc")).heapStats : null;
export const heap = () => (bunHeap ? bunHeap().heapSize : process.memoryUsage().heapUsed);

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * The clock the costs are timed with, in ms: the wall clock (`performance.now`) unless
 * `useClock` set another. The makespan of the simulated agent load is always wall time.
 */
let clock = () => performance.now();

/** Times the costs with `read` (ms) from now on, e.g. the process's CPU time. */
export function useClock(read) {
  clock = read;
}

/**
 * The CPU time this process has used, in ms (user + system, every thread of the process). On a
 * shared machine it leaves out the time the process waited while others ran, which the wall
 * clock counts.
 */
export function cpuTime() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

export const trivial = () => Promise.resolve(1);
const yielding = () => new Promise((r) => setImmediate(r));

// ---- foreman's side, for one build's `Engine` class ----

/**
 * foreman as a contender of each kind: `limiter(limit)` → `{ run(fn, priority?), close }`,
 * `breaker()` / `limitedBreaker()` → `{ fire(fn), close }`, `pool()` → `{ use(fn), close }`, and
 * `engine(lanes)` itself.
 */
export function foreman(Engine) {
  const engine = (lanes) => {
    const host = { now: Date.now, memory: () => ({ used: 0, limit: 1 }), createSession: () => undefined };
    return new Engine(host, { lanes, adaptive: { enabled: false } });
  };
  return {
    engine,
    limiter: (limit) => {
      const e = engine({ bench: limit });
      const opts = [{ lane: "bench", priority: "high" }, { lane: "bench" }, { lane: "bench", priority: "low" }];
      return { run: (fn, p = 1) => e.run(fn, opts[p]), close: () => e.dispose() };
    },
    breaker: () => {
      const e = engine({ bench: 1024 });
      const b = e.breaker("p/m");
      return { fire: (fn) => b.execute(fn), close: () => e.dispose() };
    },
    limitedBreaker: () => {
      const e = engine({ bench: 1024 });
      const opts = { lane: "bench", key: "p/m" };
      return { fire: (fn) => e.run(fn, opts), close: () => e.dispose() };
    },
    pool: () => {
      const e = engine({ pool: 5 });
      const opts = { lane: "pool" };
      return { use: (fn) => e.run(fn, opts), close: () => e.dispose() };
    },
  };
}

// ---- the workloads ----

async function timed(fn) {
  gc();
  const start = clock();
  const extra = await fn();
  return { ms: clock() - start, ...extra };
}

/** Steady dispatch: 16 tasks kept in flight at limit 8, `count` tasks in all. */
export async function steady(make, count) {
  const l = make(8);
  const r = await timed(async () => {
    let submitted = 0;
    await new Promise((done) => {
      let finished = 0;
      const next = () => {
        if (submitted >= count) return;
        submitted++;
        l.run(trivial).then(() => {
          if (++finished === count) done();
          else next();
        });
      };
      for (let i = 0; i < 16; i++) next();
    });
  });
  l.close?.();
  return (r.ms * 1e6) / count;
}

/** `count` tasks queued at once at limit 8: time per task, and heap per queued task. */
async function backlog(make, count, fn = trivial) {
  const l = make(8);
  gc();
  const before = heap();
  const start = clock();
  const all = new Array(count);
  for (let i = 0; i < count; i++) all[i] = l.run(fn);
  const gcStart = clock();
  gc(); // what the queue retains, not what building it allocated
  const queuedHeap = heap() - before;
  const gcMs = clock() - gcStart;
  await Promise.all(all);
  const ms = clock() - start - gcMs;
  l.close?.();
  return { ns: (ms * 1e6) / count, bytes: queuedHeap / count };
}

/** Three priority levels at random, `count` queued at once. */
async function priorities(make, count) {
  const l = make(8);
  let seed = 7;
  const level = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) % 3;
  const start = clock();
  const all = new Array(count);
  for (let i = 0; i < count; i++) all[i] = l.run(trivial, level());
  await Promise.all(all);
  const ms = clock() - start;
  l.close?.();
  return (ms * 1e6) / count;
}

/** 1,000 NORMAL 1 ms tasks queued, then one HIGH: how many NORMAL started before it. */
async function highBehindNormal(make) {
  const l = make(8);
  let started = 0;
  let startedBeforeHigh = -1;
  const normal = () => {
    started++;
    return new Promise((r) => setTimeout(r, 1));
  };
  const all = [];
  for (let i = 0; i < 1000; i++) all.push(l.run(normal, 1));
  await new Promise((r) => setTimeout(r, 3)); // some are running
  const at = started;
  all.push(l.run(() => { startedBeforeHigh = started - at; }, 0));
  await Promise.all(all);
  l.close?.();
  return startedBeforeHigh;
}

/** 1,000 lognormal tasks (median 2 ms, σ 0.8) at limit 8: makespan / lower bound. */
async function agentLoad(make) {
  let seed = 11;
  const uniform = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) + 0.5) / 4294967296;
  const durations = Array.from({ length: 1000 }, () => {
    const z = Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
    return 2 * Math.exp(0.8 * z);
  });
  const l = make(8);
  const turns = [];
  const start = performance.now();
  await Promise.all(
    durations.map((d) =>
      l.run(
        () =>
          new Promise((r) => {
            const t = performance.now();
            setTimeout(() => {
              turns.push(performance.now() - t);
              r();
            }, d);
          }),
      ),
    ),
  );
  const makespan = performance.now() - start;
  l.close?.();
  const bound = Math.max(turns.reduce((a, b) => a + b, 0) / 8, Math.max(...turns));
  return makespan / bound;
}

/** `count` successful calls through a breaker (or a limit and a breaker), 1,000 at a time. */
async function breakerPerCall(make, count) {
  const b = make();
  const start = clock();
  for (let i = 0; i < count; i += 1000) {
    const batch = [];
    for (let j = 0; j < 1000; j++) batch.push(b.fire(trivial));
    await Promise.all(batch);
  }
  const ms = clock() - start;
  b.close?.();
  return (ms * 1e6) / count;
}

/** Acquire + release of one of 5 slots, one use after another or all at once. */
async function poolUse(make, count, contended) {
  const p = make();
  await p.use(trivial); // warm
  const start = clock();
  if (contended) {
    const all = [];
    for (let i = 0; i < count; i++) all.push(p.use(trivial));
    await Promise.all(all);
  } else {
    for (let i = 0; i < count; i++) await p.use(trivial);
  }
  const ms = clock() - start;
  await p.close?.();
  return (ms * 1e6) / count;
}

// The bits of what `runBegin` returns: the slot (its index with a generation above it), and
// the flag set when the slot was admitted at once with nothing else made ready (see run.js).
const ALONE = 0x40000000;
const SLOT = ALONE - 1;

/**
 * P6: the engine's work inside WebAssembly per task — the two calls `run` makes (`runBegin`,
 * `runEnd`, integer arguments), without the JS promise work around them — in ns, over `n` tasks
 * on a fresh engine of `fx` (from `foreman`). These are the package's internal calls (not its
 * API): a build whose run protocol differs is refused with an error, never timed on its error
 * path.
 */
export async function wasmWork(fx, n = 1_000_000) {
  const e = fx.engine({ bench: 8 });
  try {
    await e.run(trivial, { lane: "bench" }); // sets up the run path
    if (typeof e.runBegin !== "function" || e.runBegin.length !== 6 || typeof e.runEnd !== "function" || e.runEnd.length !== 1) {
      throw new Error("this build's run protocol differs (runBegin(lane, key, priority, failFast, deadline, now), runEnd(slot)): P6 cannot be measured on it as written");
    }
    const lane = e.runLane("bench");
    let failed = 0;
    const s = clock();
    for (let i = 0; i < n; i++) failed |= e.runEnd(e.runBegin(lane, 0, 1, 0, 0, NaN) & SLOT);
    const ns = ((clock() - s) * 1e6) / n;
    if (failed !== 0) throw new Error(`runBegin/runEnd failed while measuring: ${e.runError()}`);
    return ns;
  } finally {
    e.dispose();
  }
}

// ---- the jobs ----

// Bottleneck paces every dispatch with a timer (~2 ms a task here): it gets fewer tasks.
const count = (name, n) => (name === "bottleneck" ? Math.min(n, 1_000) : n);
const LIMITERS = ["p-limit", "p-queue", "bottleneck", "semaphore"];

/**
 * Every job foreman runs in: `p` the goal it measures (null: no goal), `kind` which of foreman's
 * contenders it takes (see `foreman`), `others` the npm contenders compare.mjs runs beside it,
 * `better` how two results compare ("lower": a cost; "no more": a count that should stay where
 * it is), `measure(make, name)` one repetition.
 */
export const JOBS = [
  { p: "P1", name: `steady dispatch, limit 8 (${N} tasks)`, unit: "ns/task", kind: "limiter", others: LIMITERS, better: "lower", goal: "P1 ≤ 0.5× best limiter, ≤ 1.2× semaphore", measure: (make, k) => steady(make, count(k, N)) },
  { p: "P2", name: `${N} queued at once: time`, unit: "ns/task", kind: "limiter", others: LIMITERS, better: "lower", goal: "P2 ≤ 0.5×", measure: async (make, k) => (await backlog(make, count(k, N))).ns },
  { p: "P2", name: `${N} queued at once: heap`, unit: "B/task", kind: "limiter", others: LIMITERS, better: "lower", goal: "P2 ≤ 0.5×", measure: async (make, k) => (await backlog(make, count(k, N))).bytes },
  { p: "P3", name: "3 priorities, 10k queued", unit: "ns/task", kind: "limiter", others: ["p-queue", "bottleneck"], better: "lower", goal: "P3 ≤ 0.1× p-queue", measure: (make, k) => priorities(make, count(k, 10_000)) },
  { p: "P3", name: `3 priorities, ${N / 1000}k queued`, unit: "ns/task", kind: "limiter", others: ["p-queue", "bottleneck"], better: "lower", goal: "P3 ≤ 0.1× p-queue; ≤ 1.5× the 10k cost", measure: (make, k) => priorities(make, count(k, N)) },
  { p: null, name: "tasks that await setImmediate (10k)", unit: "ns/task", kind: "limiter", others: LIMITERS, better: "lower", goal: "", measure: async (make, k) => (await backlog(make, count(k, 10_000), yielding)).ns },
  { p: "P5", name: `breaker per call: engine.breaker(key) (${CALLS / 1000}k calls)`, unit: "ns/call", kind: "breaker", others: ["cockatiel", "opossum"], better: "lower", goal: "P5 ≤ 0.7× cockatiel", measure: (make) => breakerPerCall(make, CALLS) },
  { p: null, name: `limit + breaker per call: run with a key (${CALLS / 1000}k calls)`, unit: "ns/call", kind: "limitedBreaker", others: ["p-limit+cockatiel"], better: "lower", goal: "", measure: (make) => breakerPerCall(make, CALLS) },
  { p: "P5", name: "slot of 5: acquire+release, sequential", unit: "ns/use", kind: "pool", others: ["generic-pool"], better: "lower", goal: "P5 ≤ 0.25× generic-pool", measure: (make) => poolUse(make, 10_000, false) },
  { p: "P5", name: "slot of 5: acquire+release, contended", unit: "ns/use", kind: "pool", others: ["generic-pool"], better: "lower", goal: "P5 ≤ 0.25× generic-pool", measure: (make) => poolUse(make, 10_000, true) },
  { p: "P4", name: "simulated agent load (1,000 lognormal, limit 8)", unit: "makespan / bound", kind: "limiter", others: ["p-limit", "p-queue", "semaphore"], better: "lower", goal: "P4 ≤ 1.03", measure: (make) => agentLoad(make) },
  { p: "P4", name: "HIGH behind 1,000 NORMAL", unit: "NORMAL started first", kind: "limiter", others: ["p-queue", "bottleneck", "p-limit"], better: "no more", goal: "P4: at the next free slot (0)", measure: (make) => highBehindNormal(make) },
];
