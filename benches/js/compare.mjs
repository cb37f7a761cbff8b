// foreman's JS API side by side with the npm libraries a plugin author would otherwise use, in
// one process, interleaved: every repetition runs each contender once per job, in turn, and the
// table shows the median of the repetitions. Run under Node (`node --expose-gc`) and under Bun;
// `make bench` does both. Costs are ns per task unless the column says otherwise; the ratio
// column is foreman against the best other library in the row (lower is better).
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import os from "node:os";
import pLimit from "p-limit";
import PQueue from "p-queue";
import { circuitBreaker, ConsecutiveBreaker, handleAll } from "cockatiel";
import CircuitBreaker from "opossum";
import genericPool from "generic-pool";
import Bottleneck from "bottleneck";
import { initSync, Engine } from "../../pkg/foreman.js";

const REPS = Number(process.env.FOREMAN_BENCH_REPS ?? 5);
const WARMUP = Number(process.env.FOREMAN_BENCH_WARMUP ?? 3);
const QUICK = process.env.FOREMAN_BENCH_QUICK === "1";
// Only the jobs whose name contains this text (e.g. "slot of 5"); every job when unset.
const ONLY = process.env.FOREMAN_BENCH_ONLY ?? "";
const N = QUICK ? 10_000 : 100_000;
const runtime = typeof Bun !== "undefined" ? `Bun ${Bun.version}` : `Node ${process.versions.node}`;
const wasmUrl = new URL("../../pkg/foreman_bg.wasm", import.meta.url);
const wasmBytes = readFileSync(wasmUrl);

function gc() {
  if (typeof Bun !== "undefined") Bun.gc(true);
  else if (typeof globalThis.gc === "function") globalThis.gc();
}
// Bun's process.memoryUsage() does not track its JS heap; its own heap statistics do.
const bunHeap = typeof Bun !== "undefined" ? (await import("bun:jsc")).heapStats : null;
const heap = () => (bunHeap ? bunHeap().heapSize : process.memoryUsage().heapUsed);

// ---- foreman ----
const t0 = performance.now();
const module = new WebAssembly.Module(wasmBytes);
const wasm = initSync({ module });
const coldMs = performance.now() - t0;

function engine(lanes) {
  const host = { now: Date.now, memory: () => ({ used: 0, limit: 1 }), createSession: () => undefined };
  return new Engine(host, { lanes, adaptive: { enabled: false } });
}

// ---- a hand-written JS semaphore: what a careful author writes in 20 lines ----
class Semaphore {
  constructor(limit) {
    this.limit = limit;
    this.active = 0;
    this.queue = [];
    this.head = 0;
  }
  run(fn) {
    return new Promise((resolve, reject) => {
      const start = () => {
        this.active++;
        let p;
        try {
          p = Promise.resolve(fn());
        } catch (e) {
          p = Promise.reject(e);
        }
        p.then(resolve, reject).finally(() => {
          this.active--;
          if (this.head < this.queue.length) {
            const next = this.queue[this.head++];
            if (this.head > 1024 && this.head * 2 > this.queue.length) {
              this.queue = this.queue.slice(this.head);
              this.head = 0;
            }
            next();
          }
        });
      };
      if (this.active < this.limit) start();
      else this.queue.push(start);
    });
  }
}

// ---- the jobs ----
const trivial = () => Promise.resolve(1);
const yielding = () => new Promise((r) => setImmediate(r));

/** A limiter interface per contender: `make(limit)` → `(fn, priority?) => Promise`. */
const limiters = {
  foreman: (limit) => {
    const e = engine({ bench: limit });
    const opts = [{ lane: "bench", priority: "high" }, { lane: "bench" }, { lane: "bench", priority: "low" }];
    return { run: (fn, p = 1) => e.run(fn, opts[p]), close: () => e.dispose() };
  },
  "p-limit": (limit) => {
    const l = pLimit(limit);
    return { run: (fn) => l(fn) };
  },
  "p-queue": (limit) => {
    const q = new PQueue({ concurrency: limit });
    const prio = [2, 1, 0];
    return { run: (fn, p = 1) => q.add(fn, { priority: prio[p] }) };
  },
  bottleneck: (limit) => {
    const b = new Bottleneck({ maxConcurrent: limit });
    const prio = [0, 5, 9];
    return { run: (fn, p = 1) => b.schedule({ priority: prio[p] }, fn), close: () => b.disconnect() };
  },
  semaphore: (limit) => {
    const s = new Semaphore(limit);
    return { run: (fn) => s.run(fn) };
  },
};

async function timed(fn) {
  gc();
  const start = performance.now();
  const extra = await fn();
  return { ms: performance.now() - start, ...extra };
}

/** Steady dispatch: 16 tasks kept in flight at limit 8, `count` tasks in all. */
async function steady(make, count) {
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
  const start = performance.now();
  const all = new Array(count);
  for (let i = 0; i < count; i++) all[i] = l.run(fn);
  const gcStart = performance.now();
  gc(); // what the queue retains, not what building it allocated
  const queuedHeap = heap() - before;
  const gcMs = performance.now() - gcStart;
  await Promise.all(all);
  const ms = performance.now() - start - gcMs;
  l.close?.();
  return { ns: (ms * 1e6) / count, bytes: queuedHeap / count };
}

/** Three priority levels at random, `count` queued at once. */
async function priorities(make, count) {
  const l = make(8);
  let seed = 7;
  const level = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) % 3;
  const start = performance.now();
  const all = new Array(count);
  for (let i = 0; i < count; i++) all[i] = l.run(trivial, level());
  await Promise.all(all);
  const ms = performance.now() - start;
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

/** A breaker per call: `count` successful calls through it, all at once. */
const breakers = {
  foreman: () => {
    const e = engine({ bench: 1024 });
    const b = e.breaker("p/m");
    return { fire: (fn) => b.execute(fn), close: () => e.dispose() };
  },
  cockatiel: () => {
    const b = circuitBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new ConsecutiveBreaker(5) });
    return { fire: (fn) => b.execute(fn) };
  },
  opossum: () => {
    const b = new CircuitBreaker((fn) => fn(), { timeout: false, resetTimeout: 30_000 });
    return { fire: (fn) => b.fire(fn), close: () => b.shutdown() };
  },
};

/** A concurrency limit and a breaker together: `run` with a key vs p-limit around cockatiel. */
const limitedBreakers = {
  foreman: () => {
    const e = engine({ bench: 1024 });
    const opts = { lane: "bench", key: "p/m" };
    return { fire: (fn) => e.run(fn, opts), close: () => e.dispose() };
  },
  "p-limit+cockatiel": () => {
    const limit = pLimit(1024);
    const b = circuitBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new ConsecutiveBreaker(5) });
    return { fire: (fn) => limit(() => b.execute(fn)) };
  },
};

async function breakerPerCall(make, count) {
  const b = make();
  const start = performance.now();
  for (let i = 0; i < count; i += 1000) {
    const batch = [];
    for (let j = 0; j < 1000; j++) batch.push(b.fire(trivial));
    await Promise.all(batch);
  }
  const ms = performance.now() - start;
  b.close?.();
  return (ms * 1e6) / count;
}

/** Acquire + release of one of 5 slots: generic-pool's resources vs foreman's permits (run). */
const pools = {
  foreman: () => {
    const e = engine({ pool: 5 });
    const opts = { lane: "pool" };
    return { use: (fn) => e.run(fn, opts), close: () => e.dispose() };
  },
  "generic-pool": () => {
    let n = 0;
    const p = genericPool.createPool({ create: async () => ({ id: n++ }), destroy: async () => {} }, { max: 5, min: 5 });
    return {
      use: async (fn) => {
        const r = await p.acquire();
        try {
          return await fn(r);
        } finally {
          await p.release(r);
        }
      },
      close: () => p.drain().then(() => p.clear()),
    };
  },
};

async function poolUse(make, count, contended) {
  const p = make();
  await p.use(trivial); // warm
  const start = performance.now();
  if (contended) {
    const all = [];
    for (let i = 0; i < count; i++) all.push(p.use(trivial));
    await Promise.all(all);
  } else {
    for (let i = 0; i < count; i++) await p.use(trivial);
  }
  const ms = performance.now() - start;
  await p.close?.();
  return (ms * 1e6) / count;
}

// ---- the table ----
const rows = [];
function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function job(name, unit, contenders, measure, goal) {
  if (!name.includes(ONLY)) return;
  const samples = Object.fromEntries(Object.keys(contenders).map((k) => [k, []]));
  // Warm-up rounds (not counted), so every contender runs JIT-compiled code.
  for (let round = 0; round < WARMUP; round++) {
    for (const [k, make] of Object.entries(contenders)) await measure(make, k);
  }
  for (let rep = 0; rep < REPS; rep++) {
    for (const [k, make] of Object.entries(contenders)) samples[k].push(await measure(make, k));
  }
  if (process.env.FOREMAN_BENCH_VERBOSE === "1") {
    for (const [k, v] of Object.entries(samples)) console.error(`${name} — ${k}: ${v.map((x) => x.toFixed(x < 10 ? 3 : 0)).join(" ")}`);
  }
  const values = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
  rows.push({ name, unit, values, goal });
}

const pick = (obj, ...keys) => Object.fromEntries(keys.map((k) => [k, obj[k]]));
// Bottleneck paces every dispatch with a timer (~2 ms a task here): it gets fewer tasks.
const count = (name, n) => (name === "bottleneck" ? Math.min(n, 1_000) : n);
const limiterNames = ["foreman", "p-limit", "p-queue", "bottleneck", "semaphore"];

await job(`steady dispatch, limit 8 (${N} tasks)`, "ns/task", pick(limiters, ...limiterNames), (make, k) => steady(make, count(k, N)), "P1 ≤ 0.5× best limiter, ≤ 1.2× semaphore");
await job(`${N} queued at once: time`, "ns/task", pick(limiters, ...limiterNames), async (make, k) => (await backlog(make, count(k, N))).ns, "P2 ≤ 0.5×");
await job(`${N} queued at once: heap`, "B/task", pick(limiters, ...limiterNames), async (make, k) => (await backlog(make, count(k, N))).bytes, "P2 ≤ 0.5×");
await job("3 priorities, 10k queued", "ns/task", pick(limiters, "foreman", "p-queue", "bottleneck"), (make, k) => priorities(make, count(k, 10_000)), "P3 ≤ 0.1× p-queue");
await job(`3 priorities, ${N / 1000}k queued`, "ns/task", pick(limiters, "foreman", "p-queue", "bottleneck"), (make, k) => priorities(make, count(k, N)), "P3 ≤ 0.1× p-queue; ≤ 1.5× the 10k cost");
await job("tasks that await setImmediate (10k)", "ns/task", pick(limiters, ...limiterNames), async (make, k) => (await backlog(make, count(k, 10_000), yielding)).ns, "");
await job(`breaker per call: engine.breaker(key) (${QUICK ? "10k" : "50k"} calls)`, "ns/call", breakers, (make) => breakerPerCall(make, QUICK ? 10_000 : 50_000), "P5 ≤ 0.7× cockatiel");
await job(`limit + breaker per call: run with a key (${QUICK ? "10k" : "50k"} calls)`, "ns/call", limitedBreakers, (make) => breakerPerCall(make, QUICK ? 10_000 : 50_000), "");
await job("slot of 5: acquire+release, sequential", "ns/use", pools, (make) => poolUse(make, 10_000, false), "P5 ≤ 0.25× generic-pool");
await job("slot of 5: acquire+release, contended", "ns/use", pools, (make) => poolUse(make, 10_000, true), "P5 ≤ 0.25× generic-pool");
await job("simulated agent load (1,000 lognormal, limit 8)", "makespan / bound", pick(limiters, "foreman", "p-limit", "p-queue", "semaphore"), (make) => agentLoad(make), "P4 ≤ 1.03");
await job("HIGH behind 1,000 NORMAL", "NORMAL started first", pick(limiters, "foreman", "p-queue", "bottleneck", "p-limit"), (make) => highBehindNormal(make), "P4: at the next free slot (0)");

// ---- size, start, idle ----
const gzBytes = gzipSync(wasmBytes, { level: 9 }).length;
const instantiate = [];
for (let i = 0; i < 5; i++) {
  const s = performance.now();
  const m = new WebAssembly.Module(wasmBytes);
  const imports = {};
  for (const { module: from, name } of WebAssembly.Module.imports(m)) (imports[from] ??= {})[name] = () => {};
  new WebAssembly.Instance(m, imports);
  instantiate.push(performance.now() - s);
}

// P6: the engine's work inside WebAssembly per task — the two calls `run` makes (`runBegin`,
// `runEnd`, integer arguments), without the JS promise work around them.
const wasmWork = [];
{
  const e = engine({ bench: 8 });
  await e.run(trivial, { lane: "bench" }); // sets up the run path
  const lane = e.runLane("bench");
  let failed = 0;
  for (let rep = 0; rep < 5; rep++) {
    const n = 1_000_000;
    const s = performance.now();
    // (Below the limit `runBegin` returns the slot with its admitted-alone bit, 1 << 30, set.)
    for (let i = 0; i < n; i++) failed |= e.runEnd(e.runBegin(lane, 0, 1, 0, 0, NaN) & 0x3fffffff);
    wasmWork.push(((performance.now() - s) * 1e6) / n);
  }
  // A changed protocol would time the error path instead: refuse to print that.
  if (failed !== 0) throw new Error(`runBegin/runEnd failed while measuring: ${e.runError()}`);
  e.dispose();
}

gc();
const heapBaseline = heap();
const wasmBaseline = wasm.memory.buffer.byteLength;
const timers = () => (typeof process.getActiveResourcesInfo === "function" ? process.getActiveResourcesInfo().filter((r) => r === "Timeout").length : null);
const idle = engine({ bench: 8 });
{
  // 100k tasks flow through (16 in flight at a time), then the engine sits idle.
  const l = { run: (fn) => idle.run(fn, { lane: "bench" }) };
  await steady(() => l, 100_000);
}
await new Promise((r) => setTimeout(r, 20));
gc();
const heapAfter = heap();
const timersIdle = timers();
const wasmAfter = wasm.memory.buffer.byteLength;
idle.dispose();

// ---- print ----
const fmt = (v) => (v === undefined ? "—" : Math.abs(v) >= 100 ? Math.round(v).toLocaleString("en-US") : v.toFixed(v < 10 ? 3 : 1));
console.log(`\n## foreman vs npm libraries — ${runtime}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ${new Date().toISOString().slice(0, 10)}`);
console.log(`median of ${REPS} interleaved repetitions; ratio = foreman / best other in the row\n`);
const columns = ["foreman", "semaphore", "p-limit", "p-queue", "bottleneck", "cockatiel", "opossum", "generic-pool", "p-limit+cockatiel"];
console.log(`| job | unit | ${columns.join(" | ")} | ratio | goal |`);
console.log(`|${"---|".repeat(columns.length + 4)}`);
for (const r of rows) {
  const others = Object.entries(r.values).filter(([k]) => k !== "foreman" && k !== "semaphore").map(([, v]) => v);
  const best = r.unit === "NORMAL started first" ? null : Math.min(...others);
  const ratio = best ? r.values.foreman / best : null;
  console.log(`| ${r.name} | ${r.unit} | ${columns.map((c) => fmt(r.values[c])).join(" | ")} | ${ratio === null ? "—" : ratio.toFixed(2) + "×"} | ${r.goal} |`);
}
console.log(`\n.wasm: ${wasmBytes.length.toLocaleString("en-US")} B raw, ${gzBytes.toLocaleString("en-US")} B gzip (P7: ≤ 200 KB / 80 KB)`);
console.log(`work inside WebAssembly per task (runBegin + runEnd): ${median(wasmWork).toFixed(1)} ns median of 5 (P6: ≤ 100 ns, 2 crossings)`);
console.log(`cold compile + instantiate: ${coldMs.toFixed(2)} ms first, ${median(instantiate).toFixed(2)} ms median of 5 (P7: ≤ 3 ms Node, ≤ 4 ms Bun)`);
console.log(
  `after 100k tasks drained and GC: heap ${((heapAfter - heapBaseline) / 1024).toFixed(0)} KiB over baseline, ` +
    `wasm memory ${((wasmAfter - wasmBaseline) / 1024).toFixed(0)} KiB over baseline; timers pending while idle: ${timersIdle ?? "n/a"} (P9: none; within 1 MB)`,
);
