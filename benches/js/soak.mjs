// The soak benchmark: a long-lived engine against the simulated server on its virtual clock.
// 100,000 tasks with 20 KB prompts and results, then 2,000 tasks with 1 MiB prompts and results
// (each in a fresh process, so each job's wasm memory starts from nothing): whether the module
// traps, its peak linear memory, the memory per task, the journal kept, and the time of stats()
// and list() early and late, and the time of `Engine.restore` from the journal kept early and at
// the end (a history ten times longer, about the same tasks held). Printed beside the figures measured on the engine before retention
// and journaling by change (every transition wrote the whole task; nothing was ever forgotten).
//
//   node benches/js/soak.mjs                 both jobs, each in a child process
//   node benches/js/soak.mjs <job> [<pkg>]   one job ("20k" or "1m") against a pkg directory
//   node benches/js/soak.mjs restore <pkg> <file>   one restore of a journal (and <file>.head)
// FOREMAN_SOAK_TASKS overrides a job's task count (e.g. for a quick look).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { FakeServer } from "../../tests/js/fake-server.mjs";

const here = fileURLToPath(import.meta.url);
const JOBS = {
  "20k": { tasks: 100_000, bytes: 20 * 1024, batch: 500, name: "100,000 tasks × 20 KB prompts and results" },
  "1m": { tasks: 2_000, bytes: 1 << 20, batch: 25, name: "2,000 tasks × 1 MiB prompts and results" },
};
// Measured with this script (`node benches/js/soak.mjs <job> <pkg>`, the 20 KB job with
// FOREMAN_SOAK_TASKS=4000) against the package built from the code before this change (commit
// e6317a9), on 2026-11-29, on the machine the README's tables come from.
const BEFORE = {
  "20k":
    "before: 185 KB of wasm memory per task, never returned (725 MiB after 4,000 tasks: 4 GiB, a trap, " +
    "after ~22,000 at that rate); stats() 121 ms and list() 288 ms after 4,000 tasks; 5.8 ms a task",
  "1m": "before: trap (`unreachable`, wasm memory at 4 GiB) after 475–500 tasks",
};

const [, , job, pkgArg, journalFile] = process.argv;
if (job === "restore") {
  // One restore in a fresh process: prints { ms, held }.
  const pkg = new URL(`${pkgArg ? `file://${pkgArg.replace(/\/?$/, "/")}` : "../../pkg/"}`, import.meta.url);
  const { initSync, Engine } = await import(new URL("foreman.js", pkg));
  initSync({ module: readFileSync(new URL("foreman_bg.wasm", pkg)) });
  const bytes = new Uint8Array(readFileSync(journalFile));
  const head = JSON.parse(readFileSync(`${journalFile}.head`, "utf8"));
  const t = performance.now();
  const engine = Engine.restore(bytes, head, new FakeServer().host(), { lanes: { worker: 64 } });
  const ms = performance.now() - t;
  console.log(JSON.stringify({ ms, held: engine.list().length }));
  process.exit(0);
}
if (!job) {
  for (const name of Object.keys(JOBS)) {
    const out = execFileSync(process.execPath, ["--max-old-space-size=4096", here, name], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
    process.stdout.write(out);
  }
  process.exit(0);
}

const spec = JOBS[job];
const pkg = new URL(`${pkgArg ? `file://${pkgArg.replace(/\/?$/, "/")}` : "../../pkg/"}`, import.meta.url);
const { initSync, Engine } = await import(new URL("foreman.js", pkg));
const wasm = initSync({ module: readFileSync(new URL("foreman_bg.wasm", pkg)) });
const memory = () => wasm.memory.buffer.byteLength;

const total = Number(process.env.FOREMAN_SOAK_TASKS ?? spec.tasks);
const server = new FakeServer({ turnMs: 1_000, gapMs: 100 });
const engine = server.attach(new Engine(server.host(), { lanes: { worker: 64 } }));
const body = "z".repeat(spec.bytes - 16);
const timings = [];
let firstJournal = null; // the journal kept at the first sample: { bytes, head, done }
const base = memory();
let done = 0;
let trapped = null;
let full = 0;
const t0 = performance.now();
const timeOf = (fn) => {
  const t = performance.now();
  fn();
  return performance.now() - t;
};
try {
  while (done < total) {
    const n = Math.min(spec.batch, total - done);
    let ids;
    try {
      ids = engine.delegate(Array.from({ length: n }, (_, i) => ({ agent: "worker", prompt: `${done + i} ${body}` })));
    } catch (e) {
      if (e.code !== "ENGINE_FULL") throw e;
      full++; // the budget refused the batch: let work settle, then send it again
      await server.advance(5_000);
      continue;
    }
    while (engine.status(ids.at(-1)).state !== "succeeded") await server.advance(1_000);
    done += n;
    server.calls.length = 0; // the simulated server's own log
    if (done % (spec.batch * 20) === 0 || done === total) {
      timings.push({ done, memory: memory(), stats: timeOf(() => engine.stats()), list: timeOf(() => engine.list()) });
      firstJournal ??= { bytes: engine.journalExport(), head: engine.journalHead(), done };
    }
  }
} catch (e) {
  trapped = e;
}
const secs = (performance.now() - t0) / 1000;
const mib = (b) => `${(b / 2 ** 20).toFixed(0)} MiB`;
const peak = memory();
console.log(`\n${spec.name}${total !== spec.tasks ? ` (${total} run)` : ""}`);
if (trapped) {
  console.log(`  TRAP after ${done} tasks: ${trapped.message} (wasm memory ${mib(peak)})`);
} else {
  const early = timings[0];
  const late = timings.at(-1);
  const s = engine.stats();
  console.log(`  no trap: ${done} tasks in ${secs.toFixed(0)} s (${((secs * 1000) / done).toFixed(2)} ms a task on the virtual clock)`);
  console.log(`  peak wasm memory ${mib(peak)} (${mib(base)} at start): ${((peak - base) / done / 1024).toFixed(1)} KB per task of the run`);
  console.log(`  wasm memory after ${early.done} tasks ${mib(early.memory)}, after ${late.done} ${mib(late.memory)}`);
  if (s.engine) {
    console.log(`  journal kept ${mib(s.journal.bytes)}; ${s.tasks.succeeded} tasks held, ${s.tasks.forgotten} forgotten; footprint ${mib(s.engine.footprint)} of ${mib(s.engine.budget)}${full ? `; ${full} batches refused with ENGINE_FULL and re-sent` : ""}`);
  } else {
    console.log(`  ${s.tasks.succeeded} tasks held, none forgotten (an engine without retention)`);
  }
  console.log(`  stats() ${early.stats.toFixed(2)} ms after ${early.done} tasks, ${late.stats.toFixed(2)} ms after ${late.done}; list() ${early.list.toFixed(1)} → ${late.list.toFixed(1)} ms`);
}
// Restore from the journal kept after the first sample and at the end, each in a fresh process
// (restores in one process slow down as its wasm memory fills). Its cost follows the journal
// kept — the tasks held — not how many tasks the engine ever ran.
if (!trapped && firstJournal && engine.journalExport) {
  const dir = mkdtempSync(join(tmpdir(), "foreman-soak-"));
  const restore = ({ bytes, head, done: at }) => {
    const file = join(dir, `journal-${at}`);
    writeFileSync(file, bytes);
    writeFileSync(`${file}.head`, JSON.stringify(head));
    const out = execFileSync(process.execPath, [here, "restore", pkgArg ?? "", file], { encoding: "utf8" });
    return { ...JSON.parse(out), at, mib: bytes.length / 2 ** 20 };
  };
  try {
    const a = restore(firstJournal);
    const b = restore({ bytes: engine.journalExport(), head: engine.journalHead(), done });
    console.log(
      `  Engine.restore after ${a.at} tasks: ${a.ms.toFixed(0)} ms (${a.mib.toFixed(1)} MiB journal, ${a.held} tasks held); ` +
        `after ${b.at}: ${b.ms.toFixed(0)} ms (${b.mib.toFixed(1)} MiB, ${b.held} held)`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
console.log(`  ${BEFORE[job]}`);
engine.dispose?.();
