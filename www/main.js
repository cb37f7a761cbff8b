// The demo page: the wasm engine orchestrating the simulated OpenCode server (sim.js) on real
// time. The page submits work and breaks things; every figure it shows comes from the engine —
// task and breaker events (`on`), `stats()` sampled ten times a second, `status`/`list`,
// `journalExport`/`journalHead`/`verify` — never from the page's own bookkeeping.
//
// `window.demo` exposes the live objects (engine, server, views, samples) for the browser tests.
import init, { Engine } from "../pkg/foreman.js";
import { SimServer, DEMO_LATENCY, rng } from "./sim.js";
import { parseFrames, describeChanges, tamper } from "./journal.js";
import { Timeline, BreakerStrips, chart, COLORS } from "./views.js";

const MODELS = [
  ["anthropic/claude-sonnet-4", 6],
  ["openai/gpt-5", 4],
  ["google/gemini-2.5-pro", 3],
];
const SETTLED = new Set(["succeeded", "failed", "cancelled", "timed_out"]);
const MEMORY_LIMIT = 8 * 1024 ** 3;
const SAMPLE_MS = 100;

const $ = (id) => document.getElementById(id);
const num = (id) => Number($(id).value);

const demo = {
  engine: null, server: null, config: null, offs: [], lanes: new Set(),
  run: { active: false, submitted: 0, t0: 0 },
  samples: [], frames: [], refusals: new Map(), high: null, restores: [], tamper: null,
  timeline: null, breakers: null, charts: {},
};
window.demo = demo;

function log(text, cls = "") {
  const li = document.createElement("li");
  li.textContent = text;
  if (cls) li.className = cls;
  $("log").prepend(li);
  while ($("log").children.length > 40) $("log").lastChild.remove();
}

/** The engine configuration the panel describes. The breaker opens after 3 upstream failures and
 * probes back after 2 s (the defaults are 5 and 30 s), so an outage plays out in seconds. */
function config() {
  return {
    lanes: { planner: num("lane-planner"), worker: num("lane-worker"), reviewer: num("lane-reviewer"), other: num("lane-other") },
    keys: Object.fromEntries(MODELS.map(([m], i) => [m, num(`model-${i}`)])),
    breaker: { failureThreshold: 3, openMs: 2_000, maxOpenMs: 8_000, closeAfter: 2 },
    adaptive: { windowMs: 1_000 },
    pressure: { refuseAt: 0.8, resumeBelow: 0.75, staleMs: 5_000 },
  };
}

/** Applies the sliders to the simulated server (they act at once, mid-run too). */
function applySliders(server = demo.server) {
  for (const id of ["failure", "rateLimit", "hang", "latency", "memory"]) $(`${id}Out`).textContent = $(id).value;
  if (!server) return;
  server.rates = { failure: num("failure"), rateLimit: num("rateLimit"), hang: num("hang") };
  server.latencyScale = num("latency");
  server.memoryUsed = Math.round(num("memory") * MEMORY_LIMIT);
}

/** A fresh server and engine for a run (a new seed replays the same outcomes). */
function fresh() {
  for (const off of demo.offs) off();
  demo.server?.close();
  demo.engine?.dispose();
  demo.engine = null;
  const server = new SimServer({
    clock: "real", seed: num("seed"), latency: DEMO_LATENCY, providerRetries: 2,
    retryAfterMs: 1_000, retryBaseMs: 500, memoryLimit: MEMORY_LIMIT,
  });
  applySliders(server);
  demo.server = server;
  demo.config = config();
  connect(server.attach(new Engine(server.host(), demo.config)));
  for (const [i, [model]] of MODELS.entries()) {
    $(`outage-${i}`).classList.remove("on");
    server.outages.delete(model);
  }
}

/** Makes `engine` the page's engine: listeners, lane names, views. */
function connect(engine) {
  demo.engine = engine;
  const stats = engine.stats();
  demo.lanes = new Set(stats.lanes.map((l) => l.name));
  for (const l of stats.lanes) demo.timeline.limit(l.name, l.limit);
  demo.offs = [engine.on("task", onTask), engine.on("breaker", onBreaker), engine.on("limit", onLimit)];
}

const laneOf = (agent) => (demo.lanes.has(agent) ? agent : "other");

function onTask({ id, state }) {
  const info = demo.engine.status(id);
  const lane = laneOf(info.agent);
  if (state === "admitted") {
    demo.timeline.open(id, lane, info.updatedMs);
    const high = demo.high;
    if (high && !high.admittedAt && lane === high.lane) {
      if (id === high.id) {
        high.admittedAt = info.updatedMs;
        showHigh();
      } else if (id < high.id) {
        high.before += 1;
      }
    }
  } else if (SETTLED.has(state)) {
    demo.timeline.close(id, info.updatedMs, state);
  } else if (state === "unknown") {
    demo.timeline.unknown(id); // restored, still holding its slot until reconciled
  } else if (state === "queued") {
    demo.timeline.close(id, info.updatedMs, "retried");
  }
}

function onBreaker({ key, state }) {
  demo.breakers.event(key, state, demo.engine.stats().now);
  log(`breaker ${key}: ${state.replace("_", "-")}`, state === "open" ? "bad" : "");
}

function onLimit({ scope, name, from, to, cause }) {
  log(`${scope} ${name}: limit ${from} → ${to} (${cause.replace("_", " ")})`, to < from ? "bad" : "");
}

/** The workload the panel describes, as groups of specs (seeded: the same seed, the same work). */
function workload() {
  const n = num("tasks");
  const random = rng(num("seed"));
  const pick = () => MODELS[Math.floor(random() * MODELS.length)][0];
  const priority = () => {
    const r = random() * 100;
    return r < num("highPct") ? "high" : r < num("highPct") + num("lowPct") ? "low" : "normal";
  };
  const worker = () => (random() * 100 < num("explorers") ? "explorer" : "worker");
  const seed = num("seed");
  const groups = [];
  let left = n;
  for (let g = 0; left > 0; g++) {
    const p = priority();
    const fanout = num("fanout");
    if ($("shape").value === "flat" || left < fanout + 2) {
      const size = $("shape").value === "flat" ? 1 : left;
      groups.push({ works: Array.from({ length: size }, (_, k) => ({ agent: worker(), prompt: `s${seed} g${g} work ${k}`, priority: p, model: pick() })) });
      left -= size;
      continue;
    }
    groups.push({
      plan: { agent: "planner", prompt: `s${seed} g${g} plan`, priority: p, model: pick() },
      works: Array.from({ length: fanout }, (_, k) => ({ agent: worker(), prompt: `s${seed} g${g} work ${k}`, priority: p, model: pick() })),
      review: { agent: "reviewer", prompt: `s${seed} g${g} review`, priority: p, model: pick() },
    });
    left -= fanout + 2;
  }
  return groups;
}

/** Each task's deadline from dispatch: room for slow turns and OpenCode's own retries at this
 * latency, while a hung turn still times out (and is aborted) within a demo's patience. */
const deadline = () => Math.round(10_000 + 20_000 * num("latency"));

/** Submits specs; a refusal is shown with its code and ends the group. */
function submit(specs) {
  const withDeadline = (spec) => ({ deadlineMs: deadline(), ...spec });
  specs = Array.isArray(specs) ? specs.map(withDeadline) : withDeadline(specs);
  try {
    const ids = demo.engine.delegate(specs);
    demo.run.submitted += Array.isArray(ids) ? ids.length : 1;
    return ids;
  } catch (err) {
    demo.refusals.set(err.code, (demo.refusals.get(err.code) ?? 0) + 1);
    log(`refused: ${err.code}: ${err.message}`, "bad");
    const done = err.submitted ?? [];
    demo.run.submitted += done.length;
    return Array.isArray(specs) ? done : null;
  }
}

function startRun() {
  try {
    fresh();
  } catch (err) {
    // A lane or model limit out of range: the engine refuses the config with a typed error.
    $("state").textContent = "refused";
    log(`${err.code} (${err.key}): ${err.message}`, "bad");
    return;
  }
  const now = demo.engine.stats().now;
  resetViews(now);
  demo.run = { active: true, submitted: 0, t0: now, started: performance.now() };
  demo.frames = [];
  for (const group of workload()) {
    const plan = group.plan ? submit(group.plan) : null;
    if (group.plan && plan == null) continue;
    const works = submit(group.works.map((w) => (plan == null ? w : { ...w, dependsOn: [plan] })));
    if (group.review && works.length > 0) submit({ ...group.review, dependsOn: works });
  }
  $("state").textContent = "running";
  log(`run: ${demo.run.submitted} tasks submitted (seed ${num("seed")})`);
}

function resetViews(now) {
  const stats = demo.engine.stats();
  demo.timeline.reset(stats.lanes.map((l) => ({ name: l.name, limit: l.limit })), now);
  demo.breakers.reset(MODELS.map(([m]) => m), now);
  demo.samples = [];
  demo.refusals = new Map();
  demo.high = null;
  demo.tamper = null;
  for (const c of Object.values(demo.charts)) c.clear();
  $("tamperResult").textContent = "";
}

function submitHigh() {
  if (!demo.engine) return;
  const stats = demo.engine.stats();
  const lane = stats.lanes.find((l) => l.name === "worker");
  const id = submit({ agent: "worker", prompt: `s${num("seed")} high ${stats.now}`, priority: "high", model: MODELS[0][0] });
  if (id == null) return;
  // Admitted at once (a free slot), its event came before `delegate` returned.
  const bar = demo.timeline.openBars.get(id);
  demo.high = { id, lane: "worker", waiting: lane.queued.normal + lane.queued.low, submittedAt: stats.now, before: 0, admittedAt: bar ? bar.start : null };
  if (!demo.run.active) demo.run = { ...demo.run, active: true };
  $("state").textContent = "running";
  showHigh();
}

function showHigh() {
  const h = demo.high;
  $("highResult").textContent = h.admittedAt == null
    ? `HIGH task #${h.id} submitted behind ${h.waiting} waiting in lane worker…`
    : `HIGH task #${h.id}, submitted behind ${h.waiting} waiting in lane worker, was admitted ${h.admittedAt - h.submittedAt} ms later, after ${h.before} earlier task(s) took a slot of the lane`;
}

function submitLow() {
  if (!demo.engine) return;
  let refused = 0;
  for (let i = 0; i < 10; i++) {
    const id = submit({ agent: "worker", prompt: `s${num("seed")} low ${Date.now()} ${i}`, priority: "low", model: MODELS[1][0] });
    if (id == null) refused += 1;
  }
  if (refused < 10) {
    demo.run.active = true;
    $("state").textContent = "running";
  }
}

/** Loses the engine without warning, then restores a new one from the journal it left. */
function dropAndRestore() {
  if (!demo.engine) return;
  const lost = demo.engine;
  const journal = lost.journalExport();
  const head = lost.journalHead();
  const open = lost.stats().tasks;
  for (const off of demo.offs) off();
  demo.server.drop();
  const t = demo.server.now();
  let engine;
  try {
    engine = Engine.restore(journal, head, demo.server.host(), demo.config);
  } catch (err) {
    $("restoreResult").textContent = `restore failed: ${err.code}: ${err.message}`;
    log(`restore failed: ${err.code}`, "bad");
    return;
  }
  demo.server.attach(engine);
  connect(engine);
  const unknown = engine.list({ state: "unknown" }).length;
  const verified = engine.verify();
  demo.timeline.mark(t, "engine lost → restored");
  demo.restores.push({ seq: head.seq, unknown, verified });
  $("restoreResult").textContent = `engine dropped at journal seq ${head.seq} with ${open.queued} queued and ${open.running} running; restored from ${parseFrames(journal).length} records (verify: ${verified ? "ok" : "failed"}); ${unknown} in-flight task(s) reconciled with the server`;
  log(`engine lost at seq ${head.seq}; restored (${unknown} unknown)`, "warn");
}

/** Flips a byte in one record of an export of the journal and has the engine verify it. */
function tamperAndVerify() {
  if (!demo.engine) return;
  const journal = demo.engine.journalExport();
  const head = demo.engine.journalHead();
  const frames = parseFrames(journal);
  if (frames.length === 0) return;
  const seq = $("tamperSeq").value ? num("tamperSeq") : frames[Math.floor(frames.length / 2)].seq;
  const forged = tamper(journal, seq);
  if (!forged) {
    $("tamperResult").textContent = `the journal holds seq ${frames[0].seq}…${frames.at(-1).seq}; no record ${seq} to tamper with`;
    return;
  }
  let result;
  try {
    // A restore verifies the whole export against the head the host kept: the engine's check.
    const probe = new SimServer();
    Engine.restore(forged, head, probe.host(), demo.config).dispose();
    result = { seq, ok: true, text: `tampered record seq ${seq}: verification PASSED (unexpected)` };
  } catch (err) {
    const position = err.record ?? Number(/record (\d+)/.exec(err.message)?.[1]);
    const at = frames[position - 1]?.seq ?? null;
    result = { seq, ok: false, failedAt: at, code: err.code, text: `tampered record seq ${seq}: verification failed at seq ${at} (${err.code}: ${err.message})` };
  }
  demo.tamper = result;
  $("tamperResult").textContent = result.text;
  $("tamperResult").className = `figline ${result.ok ? "" : "bad"}`;
  log(result.text, "bad");
}

/** Reads the engine: one sample of every time series, and the figures shown as text. */
function sample() {
  const engine = demo.engine;
  if (!engine) return;
  const s = engine.stats();
  const x = (s.now - demo.run.t0) / 1000;
  const queued = { high: 0, normal: 0, low: 0 };
  for (const l of s.lanes) for (const p of ["high", "normal", "low"]) queued[p] += l.queued[p];
  demo.samples.push({ now: s.now, lanes: s.lanes.map((l) => ({ name: l.name, inUse: l.inUse, limit: l.limit })), view: demo.timeline.view() });
  if (demo.samples.length > 5_000) demo.samples.shift();
  demo.charts.queue.push(x, [queued.high, queued.normal, queued.low]);
  demo.charts.limits.push(x, MODELS.flatMap(([m]) => {
    const k = s.keys.find((key) => key.name === m);
    return [k?.effective ?? null, k?.limit ?? null];
  }));
  demo.charts.pool.push(x, [s.pool.warm, s.pool.inUse, s.pool.parked, s.pool.retiring, s.pool.deleting]);
  for (const c of Object.values(demo.charts)) c.draw();

  put($("version"), `v${s.version} (wasm)`);
  const t = s.tasks;
  const figures = Object.entries({ ...t, journal: s.journal.seq, "host calls": s.pendingCalls });
  if ($("tasksFig").children.length !== figures.length * 2) {
    $("tasksFig").replaceChildren(...figures.flatMap(([k]) => {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.dataset.testid = `tasks-${k}`;
      return [dt, dd];
    }));
  }
  figures.forEach(([, v], i) => put($("tasksFig").children[2 * i + 1], v));
  // A restored engine starts with its breakers as its config makes them: the strips follow it.
  for (const k of s.keys) demo.breakers.state(k.name, k.breaker, s.now);
  table($("keys").tBodies[0], s.keys.map((k) => [k.name, k.breaker, `${k.effective ?? "–"} / ${k.limit ?? "∞"}`, k.inUse, k.queued]), (tr, [name, breaker]) => {
    tr.cells[1].className = breaker;
    tr.cells[1].dataset.testid = `breaker-${name}`;
  });
  put($("poolFig"), `pool: ${s.pool.warm} warm · ${s.pool.inUse} in use · ${s.pool.parked} parked · ${s.pool.retiring} retiring · ${s.pool.deleting} deleting — ${s.pool.hits} hits, ${s.pool.misses} misses, ${s.pool.deletes} deleted`);
  const width = `${s.memory.perMille / 10}%`;
  if ($("memBar").style.width !== width) $("memBar").style.width = width;
  $("memBar").classList.toggle("closed", s.gate.closed);
  put($("gate"), `memory ${(s.memory.perMille / 10).toFixed(1)} % — gate ${s.gate.closed ? "closed: LOW work refused" : "open"}${s.gate.stale ? " (reading stale)" : ""}`);
  put($("refusals"), demo.refusals.size === 0 ? "no refusals" : [...demo.refusals].map(([code, n]) => `${code} × ${n}`).join(" · "));
  const settled = t.succeeded + t.failed + t.cancelled + t.timedOut;
  if (demo.run.active && settled >= demo.run.submitted && t.queued + t.running + t.unknown === 0) {
    demo.run.active = false;
    $("state").textContent = "done";
    log(`done: ${t.succeeded} succeeded, ${t.failed} failed, ${t.cancelled} cancelled, ${t.timedOut} timed out`);
  }
}

/** Sets an element's text only when it changes (no layout work for an unchanged figure). */
function put(el, text) {
  const value = String(text);
  if (el.textContent !== value) el.textContent = value;
}

/** Shows `rows` in `body`, reusing the rows already there; `decorate(tr, cells)` after each. */
function table(body, rows, decorate = () => {}) {
  if (body.rows.length !== rows.length) body.replaceChildren(...rows.map((cells) => row(cells)));
  rows.forEach((cells, i) => {
    const tr = body.rows[i];
    cells.forEach((c, j) => put(tr.cells[j], c));
    decorate(tr, cells);
  });
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    td.textContent = c;
    tr.append(td);
  }
  return tr;
}

let lastVerify = 0;
/** The journal's last records (seq, change, chain hash) and the engine's verification. */
function journalTail() {
  const engine = demo.engine;
  if (!engine) return;
  const head = engine.journalHead();
  const frames = parseFrames(engine.journalExport(Math.max(0, head.seq - 9)));
  table($("journal").tBodies[0], frames.reverse().map((f) => [f.seq, describeChanges(f.changes), `${f.hash.slice(0, 16)}…`]));
  if (performance.now() - lastVerify > 2_000 || !demo.run.active) {
    lastVerify = performance.now();
    let text;
    try {
      text = engine.verify() ? `engine.verify(): the chain holds through seq ${head.seq} (head ${head.hash.slice(0, 12)}…)` : "engine.verify(): false";
    } catch (err) {
      text = `engine.verify(): ${err.code} ${err.message}`;
    }
    put($("verify"), text);
  }
}

function frame(t) {
  if (demo.lastFrame != null && demo.run.active) demo.frames.push(t - demo.lastFrame);
  demo.lastFrame = t;
  const now = demo.server?.now() ?? 0;
  if (demo.run.active || demo.timeline.dirty) {
    demo.timeline.draw(now);
    demo.breakers.draw(now);
  }
  if (demo.frames.length > 0 && demo.frames.length % 30 === 0) {
    const sorted = [...demo.frames].sort((a, b) => a - b);
    $("frameFig").textContent = `page: ${demo.frames.length} frames this run, p95 frame ${sorted[Math.floor(sorted.length * 0.95)].toFixed(1)} ms`;
  }
  requestAnimationFrame(frame);
}

function controls() {
  $("models").replaceChildren(...MODELS.map(([m, limit], i) => {
    const label = document.createElement("label");
    label.append(`${m} `);
    const input = document.createElement("input");
    Object.assign(input, { id: `model-${i}`, type: "number", min: 1, max: 256, value: limit });
    label.append(input);
    return label;
  }));
  $("outages").replaceChildren(...MODELS.map(([m], i) => {
    const b = document.createElement("button");
    Object.assign(b, { id: `outage-${i}`, className: "outage", textContent: m.split("/")[1] });
    b.addEventListener("click", () => {
      const on = !demo.server.outages.has(m);
      if (on) demo.server.outages.add(m);
      else demo.server.outages.delete(m);
      b.classList.toggle("on", on);
      log(`outage on ${m}: ${on ? "started" : "over"}`, on ? "bad" : "");
    });
    return b;
  }));
  $("timelineLegend").replaceChildren(...["running", "succeeded", "failed", "cancelled", "timed_out", "unknown", "retried"].map((k) => {
    const s = document.createElement("span");
    s.innerHTML = `<i style="background:${COLORS[k]}"></i>${k.replace("_", " ")}`;
    return s;
  }));
  for (const id of ["failure", "rateLimit", "hang", "latency", "memory"]) $(id).addEventListener("input", () => applySliders());
  $("run").addEventListener("click", startRun);
  $("high").addEventListener("click", submitHigh);
  $("low").addEventListener("click", submitLow);
  $("drop").addEventListener("click", dropAndRestore);
  $("tamper").addEventListener("click", tamperAndVerify);
}

async function main() {
  await init();
  controls();
  applySliders();
  demo.timeline = new Timeline($("timeline"));
  demo.breakers = new BreakerStrips($("breakers"));
  demo.charts.queue = chart($("queueChart"), "Queue depth per priority (all lanes)", [
    { label: "high", stroke: COLORS.high }, { label: "normal", stroke: COLORS.normal }, { label: "low", stroke: COLORS.low },
  ]);
  const palette = ["#7c3aed", "#0891b2", "#ca8a04"];
  demo.charts.limits = chart($("limitChart"), "Effective (adaptive) limit vs ceiling, per model", MODELS.flatMap(([m], i) => [
    { label: m.split("/")[1], stroke: palette[i] }, { label: "ceiling", stroke: palette[i], dash: [4, 4], width: 1 },
  ]));
  demo.charts.pool = chart($("poolChart"), "Pool sessions by state", [
    { label: "warm", stroke: "#16a34a" }, { label: "in use", stroke: "#3b82f6" }, { label: "parked", stroke: "#a855f7" },
    { label: "retiring", stroke: "#f59e0b" }, { label: "deleting", stroke: "#dc2626" },
  ]);
  fresh();
  resetViews(demo.engine.stats().now);
  demo.run.t0 = demo.engine.stats().now;
  setInterval(sample, SAMPLE_MS);
  setInterval(journalTail, 500);
  sample();
  journalTail();
  requestAnimationFrame(frame);
  $("state").textContent = "ready";
}

main().catch((err) => {
  $("state").textContent = `failed: ${err.message}`;
  console.error(err);
});
