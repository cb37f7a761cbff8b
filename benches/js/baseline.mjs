// This build of foreman against an earlier one (the baseline): the P1–P6 measures of
// compare.mjs (measures.mjs), run on both builds in the same rounds, so the two see the same
// machine. Absolute numbers on a shared machine drift several-fold between runs; two builds
// measured in the same rounds drift together, so their ratio holds.
//
//   node --expose-gc benches/js/baseline.mjs BASELINE_PKG [LABEL] [CURRENT_PKG]
//   bun benches/js/baseline.mjs BASELINE_PKG [LABEL] [CURRENT_PKG]
//
// BASELINE_PKG is a wasm-pack `--target web` package directory (`make bench-baseline` builds one
// from a git commit: scripts/baseline-pkg.sh); CURRENT_PKG defaults to this checkout's pkg/.
//
// How it measures, and why:
// - Each measuring process loads both builds, each with its own copy of measures.mjs (so the
//   JIT's feedback for the measuring code sees one build), and runs every job in rounds: both
//   builds back to back, the order swapped every round, the heap collected before each; at
//   least FOREMAN_BENCH_REPS rounds (6) after FOREMAN_BENCH_WARMUP (4), and more, in pairs, until
//   they took FOREMAN_BENCH_MIN_MS (1,000 ms): a short measure scatters more.
// - Several such processes run one after the other (FOREMAN_BENCH_PROCS, 4 by default), every
//   other one loading the current build first: which module a process loads first, and how the
//   JIT happens to compile it, moves a measure by up to ~25 % for the whole of that process.
// - Costs are timed in CPU time of the process (FOREMAN_BENCH_CLOCK=wall for the wall clock):
//   on a machine others share it leaves out the time the process waited for a core.
//
// The table shows each build's median and current/baseline: the median of the per-round ratios
// over all processes. Every measure is a cost (time, heap, makespan over its bound) except
// "HIGH behind 1,000 NORMAL", a count that must not grow. "Within 10 %" means ratio ≤ 1.10 for a
// cost and current ≤ baseline for the count. A measure outside is measured again (as many
// processes again) and counts as a loss only if it is outside both times: noise here rarely
// repeats in one direction; a real loss does. A loss is flagged in the table and the summary
// line; the exit status is 1 only with FOREMAN_BENCH_STRICT=1 (or when a measure cannot run at
// all), so a noisy spell does not stop the rest of `make bench`.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL, fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import * as shared from "./measures.mjs";

const REPS = Number(process.env.FOREMAN_BENCH_REPS ?? 6);
const MAX_REPS = Math.max(REPS, 64);
const MIN_MS = Number(process.env.FOREMAN_BENCH_MIN_MS ?? 1000);
const WARMUP = Number(process.env.FOREMAN_BENCH_WARMUP ?? 4);
const PROCS = Number(process.env.FOREMAN_BENCH_PROCS ?? 4);
const ONLY = process.env.FOREMAN_BENCH_ONLY ?? "";
const STRICT = process.env.FOREMAN_BENCH_STRICT === "1";
const VERBOSE = process.env.FOREMAN_BENCH_VERBOSE === "1";
const CLOCK = process.env.FOREMAN_BENCH_CLOCK ?? "cpu";
const LIMIT = 1.1;
const root = fileURLToPath(new URL("../../", import.meta.url));
const { median } = shared;

const [baselineDir, baselineLabel = baselineDir, currentDir = join(root, "pkg")] = process.argv.slice(2);
if (!baselineDir) {
  console.error("usage: baseline.mjs BASELINE_PKG [LABEL] [CURRENT_PKG]  (or: make bench-baseline)");
  process.exit(2);
}
if (resolve(baselineDir) === resolve(currentDir)) {
  // One URL is one module instance: the "two" builds would share everything.
  console.error("baseline.mjs: the baseline and current packages are the same directory; copy one elsewhere");
  process.exit(2);
}
if (CLOCK !== "cpu" && CLOCK !== "wall") {
  console.error("baseline.mjs: FOREMAN_BENCH_CLOCK must be cpu or wall");
  process.exit(2);
}

/** compare.mjs's jobs, plus P6 (which compare.mjs prints on a line of its own), from `m`. */
function jobsOf(m) {
  return [
    ...m.JOBS,
    { p: "P6", name: "work inside WebAssembly per task (runBegin + runEnd)", unit: "ns/task", kind: null, better: "lower", measure: (fx) => m.wasmWork(fx) },
  ];
}

// ---- a measuring process ----

/**
 * A package directory's module, initialised with its own .wasm (each has its own memory), with
 * its own instance of measures.mjs.
 */
async function load(dir, tag) {
  // Its own file: runtimes key modules by URL, and Bun drops a query string from a file URL.
  const copy = mkdtempSync(join(os.tmpdir(), "foreman-bench-"));
  let m;
  try {
    copyFileSync(new URL("./measures.mjs", import.meta.url), join(copy, `measures-${tag}.mjs`));
    m = await import(pathToFileURL(join(copy, `measures-${tag}.mjs`)).href);
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
  if (CLOCK === "cpu") m.useClock(m.cpuTime);
  const mod = await import(pathToFileURL(join(resolve(dir), "foreman.js")).href);
  mod.initSync({ module: new WebAssembly.Module(readFileSync(join(resolve(dir), "foreman_bg.wasm"))) });
  return { fx: m.foreman(mod.Engine), jobs: jobsOf(m) };
}

/** Runs the jobs FOREMAN_BENCH_JOBS names; prints `{ index: samples | { error } }` as JSON. */
async function measureHere() {
  const builds = {};
  const first = process.env.FOREMAN_BENCH_LOAD_FIRST === "current" ? "current" : "baseline";
  builds[first] = await load(first === "current" ? currentDir : baselineDir, first);
  const second = first === "current" ? "baseline" : "current";
  builds[second] = await load(second === "current" ? currentDir : baselineDir, second);
  const out = {};
  for (const index of process.env.FOREMAN_BENCH_JOBS.split(",").map(Number)) {
    const job = builds.current.jobs[index];
    const make = (b) => (job.kind === null ? builds[b].fx : builds[b].fx[job.kind]);
    const samples = { baseline: [], current: [] };
    try {
      // Counted rounds go on past REPS, in pairs (each build first equally often), until they
      // have taken MIN_MS: a short measure gets more samples to pay for its larger scatter.
      let since = 0;
      for (let round = 0; ; round++) {
        const counted = round - WARMUP;
        if (counted === 0) since = performance.now();
        if (counted >= REPS && counted % 2 === 0 && (performance.now() - since >= MIN_MS || counted >= MAX_REPS)) break;
        const order = round % 2 === 0 ? ["baseline", "current"] : ["current", "baseline"];
        for (const b of order) {
          // The garbage one build's run left is collected here, not inside the other's.
          shared.gc();
          const v = await builds[b].jobs[index].measure(make(b), "foreman");
          if (counted >= 0) samples[b].push(v);
        }
      }
      out[index] = samples;
    } catch (error) {
      out[index] = { error: String(error?.message ?? error) };
    }
    if (VERBOSE && !out[index].error) {
      for (const [b, v] of Object.entries(samples)) console.error(`${job.name} — ${b} (${first} loaded first): ${v.map((x) => x.toFixed(x < 10 ? 3 : 0)).join(" ")}`);
    }
  }
  console.log(JSON.stringify(out));
}

if (process.env.FOREMAN_BENCH_JOBS !== undefined) {
  await measureHere();
  process.exit(0);
}

// ---- the comparison: measuring processes one after the other, then the table ----

const jobs = jobsOf(shared);
const runtime = typeof Bun !== "undefined" ? `Bun ${Bun.version}` : `Node ${process.versions.node}`;

/** The samples of `indices` over PROCS processes, the first of each pair loading the baseline first. */
function measure(indices) {
  const pooled = Object.fromEntries(indices.map((i) => [i, { baseline: [], current: [], ratios: [] }]));
  for (let p = 0; p < PROCS; p++) {
    const env = { ...process.env, FOREMAN_BENCH_JOBS: indices.join(","), FOREMAN_BENCH_LOAD_FIRST: p % 2 === 0 ? "baseline" : "current" };
    const args = [...process.execArgv, fileURLToPath(import.meta.url), baselineDir, baselineLabel, currentDir];
    let stdout;
    try {
      stdout = execFileSync(process.execPath, args, { env, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 1 << 24 });
    } catch {
      // Its own error is on stderr above (e.g. a build that cannot be loaded or constructed).
      console.error(`baseline.mjs: a measuring process failed (${env.FOREMAN_BENCH_LOAD_FIRST} loaded first)`);
      process.exit(1);
    }
    const out = JSON.parse(stdout.trim().split("\n").pop());
    for (const i of indices) {
      const s = out[i];
      if (s.error) pooled[i].error ??= s.error;
      else {
        pooled[i].baseline.push(...s.baseline);
        pooled[i].current.push(...s.current);
        pooled[i].ratios.push(...s.current.map((c, k) => c / s.baseline[k]));
      }
    }
  }
  return pooled;
}

/** The verdict on one job's pooled samples. */
function judge(job, s) {
  const baseline = median(s.baseline);
  const current = median(s.current);
  if (job.better === "no more") return { baseline, current, ratio: null, within: current <= baseline };
  const ratio = median(s.ratios);
  return { baseline, current, ratio, within: ratio <= LIMIT };
}

const describe = () => {
  if (resolve(currentDir) !== resolve(join(root, "pkg"))) return currentDir;
  try {
    const git = (...args) => execFileSync("git", args, { cwd: root, encoding: "utf8" }).trim();
    // Changes to what the package is built from (not to the benchmarks or the docs).
    const dirty = git("status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock") !== "";
    return `${git("rev-parse", "--short", "HEAD")}${dirty ? " + uncommitted changes" : ""}`;
  } catch {
    return "pkg/";
  }
};

const loadBefore = os.loadavg();
const currentLabel = describe(); // before measuring: the checkout may move meanwhile
const chosen = jobs.flatMap((j, i) => (j.name.includes(ONLY) ? [i] : []));
const firstPass = measure(chosen);
const results = new Map();
for (const i of chosen) {
  if (!firstPass[i].error) results.set(i, { first: judge(jobs[i], firstPass[i]) });
}
const outside = [...results].filter(([, r]) => !r.first.within).map(([i]) => i);
if (outside.length > 0) {
  const again = measure(outside);
  for (const i of outside) {
    if (again[i].error) firstPass[i].error = again[i].error;
    else results.get(i).again = judge(jobs[i], again[i]);
  }
}
const loadAfter = os.loadavg();

// ---- print ----
const fmt = (v) => (Math.abs(v) >= 100 ? Math.round(v).toLocaleString("en-US") : v.toFixed(v < 10 ? 3 : 1));
const ratioOf = (r) => (r.ratio === null ? "—" : `${r.ratio.toFixed(3)}×`);
console.log(`\n## foreman ${currentLabel} vs baseline ${baselineLabel} — ${runtime}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ${new Date().toISOString().slice(0, 10)}`);
console.log(
  `${PROCS} processes × at least ${REPS} rounds and ${MIN_MS} ms of them per measure (after ${WARMUP} warm-up), both builds back to back in every round; costs in ${CLOCK === "cpu" ? "CPU" : "wall-clock"} time; ` +
    `load average ${loadBefore[0].toFixed(1)} at the start, ${loadAfter[0].toFixed(1)} at the end (${os.cpus().length} cores)`,
);
console.log(`within 10 %: current/baseline (median of the per-round ratios) ≤ ${LIMIT.toFixed(2)} for a cost; for a count, current ≤ baseline; a measure outside is measured again and is a loss only if outside both times\n`);
console.log("| goal | measure | unit | baseline | current | current/baseline | within 10 % |");
console.log("|---|---|---|---|---|---|---|");
const rows = [];
for (const i of chosen) {
  const job = jobs[i];
  const head = `| ${job.p ?? "—"} | ${job.name} | ${job.unit}`;
  const r = results.get(i);
  if (firstPass[i].error) {
    rows.push({ job, error: true });
    console.log(`${head} | — | — | — | could not measure: ${firstPass[i].error} |`);
    continue;
  }
  const loss = r.again !== undefined && !r.again.within;
  rows.push({ job, loss });
  const shown = r.again ?? r.first;
  const show = job.better === "no more" ? (x) => fmt(x.current) : ratioOf;
  const verdict = r.first.within ? "yes" : loss ? `**NO** (${show(r.first)}, then ${show(r.again)})` : `yes (${show(r.first)} at first, then ${show(r.again)})`;
  console.log(`${head} | ${fmt(shown.baseline)} | ${fmt(shown.current)} | ${ratioOf(shown)} | ${verdict} |`);
}
const bytes = (dir) => readFileSync(join(resolve(dir), "foreman_bg.wasm"));
const size = (b) => `${b.length.toLocaleString("en-US")} B raw, ${gzipSync(b, { level: 9 }).length.toLocaleString("en-US")} B gzip`;
console.log(`\n.wasm: baseline ${size(bytes(baselineDir))}; current ${size(bytes(currentDir))}`);

const gated = rows.filter((r) => r.job.p !== null);
const names = (rs) => rs.map((r) => `${r.job.p ?? "—"} ${r.job.name}`).join("; ");
const gatedLosses = gated.filter((r) => r.loss);
const otherLosses = rows.filter((r) => r.loss && r.job.p === null);
const broken = rows.filter((r) => r.error);
let summary = `P1–P6 vs baseline ${baselineLabel}: ${gated.filter((r) => !r.loss && !r.error).length} of ${gated.length} within 10 %`;
if (gatedLosses.length > 0) summary += ` — LOSS: ${names(gatedLosses)}`;
if (otherLosses.length > 0) summary += `; outside 10 % (no P goal): ${names(otherLosses)}`;
if (broken.length > 0) summary += `; could not be measured: ${names(broken)}`;
console.log(summary);
if (broken.length > 0 || (STRICT && gatedLosses.length + otherLosses.length > 0)) process.exit(1);
