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
import { foreman, gc, heap, JOBS, median, steady, wasmWork } from "./measures.mjs";

const REPS = Number(process.env.FOREMAN_BENCH_REPS ?? 5);
const WARMUP = Number(process.env.FOREMAN_BENCH_WARMUP ?? 3);
// Only the jobs whose name contains this text (e.g. "slot of 5"); every job when unset.
const ONLY = process.env.FOREMAN_BENCH_ONLY ?? "";
const runtime = typeof Bun !== "undefined" ? `Bun ${Bun.version}` : `Node ${process.versions.node}`;
const wasmUrl = new URL("../../pkg/foreman_bg.wasm", import.meta.url);
const wasmBytes = readFileSync(wasmUrl);

// ---- foreman ----
const t0 = performance.now();
const module = new WebAssembly.Module(wasmBytes);
const wasm = initSync({ module });
const coldMs = performance.now() - t0;

const fm = foreman(Engine);

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

/** A limiter interface per contender: `make(limit)` → `(fn, priority?) => Promise`. */
const limiters = {
  foreman: fm.limiter,
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

/** A breaker per call: `count` successful calls through it, all at once. */
const breakers = {
  foreman: fm.breaker,
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
  foreman: fm.limitedBreaker,
  "p-limit+cockatiel": () => {
    const limit = pLimit(1024);
    const b = circuitBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new ConsecutiveBreaker(5) });
    return { fire: (fn) => limit(() => b.execute(fn)) };
  },
};

/** Acquire + release of one of 5 slots: generic-pool's resources vs foreman's permits (run). */
const pools = {
  foreman: fm.pool,
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

// ---- the table ----
const rows = [];

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

const contenders = { limiter: limiters, breaker: breakers, limitedBreaker: limitedBreakers, pool: pools };
for (const j of JOBS) {
  const table = contenders[j.kind];
  const picked = Object.fromEntries(["foreman", ...j.others].map((k) => [k, table[k]]));
  await job(j.name, j.unit, picked, j.measure, j.goal);
}

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

// P6: the engine's work inside WebAssembly per task (see `wasmWork`).
const wasmNs = [];
for (let rep = 0; rep < 5; rep++) wasmNs.push(await wasmWork(fm));

gc();
const heapBaseline = heap();
const wasmBaseline = wasm.memory.buffer.byteLength;
const timers = () => (typeof process.getActiveResourcesInfo === "function" ? process.getActiveResourcesInfo().filter((r) => r === "Timeout").length : null);
const idle = fm.engine({ bench: 8 });
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
console.log(`work inside WebAssembly per task (runBegin + runEnd): ${median(wasmNs).toFixed(1)} ns median of 5 (P6: ≤ 100 ns, 2 crossings)`);
console.log(`cold compile + instantiate: ${coldMs.toFixed(2)} ms first, ${median(instantiate).toFixed(2)} ms median of 5 (P7: ≤ 3 ms Node, ≤ 4 ms Bun)`);
console.log(
  `after 100k tasks drained and GC: heap ${((heapAfter - heapBaseline) / 1024).toFixed(0)} KiB over baseline, ` +
    `wasm memory ${((wasmAfter - wasmBaseline) / 1024).toFixed(0)} KiB over baseline; timers pending while idle: ${timersIdle ?? "n/a"} (P9: none; within 1 MB)`,
);
