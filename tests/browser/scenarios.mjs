// The demo page's checks, run in each real headless browser (chromium.test.mjs, firefox.test.mjs).
// Each drives the page through its own controls, reads what the page shows, and compares it with
// the engine's `stats()`/`list()` and with what the simulated server measured at its boundary
// (turns in flight per agent). A screenshot after a run is kept under target/browser/.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { fork } from "node:child_process";
import { mkdirSync } from "node:fs";
import { parseFrames } from "../../www/journal.js";

const ARTIFACTS = new URL("../../target/browser/", import.meta.url);

/** Starts scripts/serve.mjs on a free loopback port; resolves `{ base, stop }`. */
export async function serve() {
  const server = fork(new URL("../../scripts/serve.mjs", import.meta.url), ["0"], { stdio: "pipe" });
  const { port } = await new Promise((ok, fail) => {
    server.once("message", ok);
    server.once("exit", (code) => fail(new Error(`demo server exited with ${code}`)));
  });
  return { base: `http://127.0.0.1:${port}`, stop: () => server.kill() };
}

/**
 * Registers the suite for one browser. `open()` launches it and resolves a driver:
 * `{ page, waitFor(fn, arg, timeoutMs), close() }`, where `page` has `goto`, `evaluate(fn, arg)`,
 * `click(selector)`, `screenshot({ path })` and `on("console" | "pageerror")` (Playwright's and
 * Puppeteer's pages agree on these).
 */
export function suite(name, open) {
  describe(`demo page in headless ${name}`, () => {
    let server, driver, page;
    const errors = [];

    const set = (values) => page.evaluate((v) => {
      for (const [id, value] of Object.entries(v)) {
        const el = document.getElementById(id);
        el.value = String(value);
        el.dispatchEvent(new Event("input", { bubbles: true }));
        el.dispatchEvent(new Event("change", { bubbles: true }));
      }
    }, values);
    const text = (testid) => page.evaluate((t) => document.querySelector(`[data-testid="${t}"]`)?.textContent ?? null, testid);
    const waitDone = (timeoutMs) => driver.waitFor(() => document.querySelector('[data-testid="state"]').textContent === "done", null, timeoutMs);
    const defaults = {
      tasks: 200, shape: "dag", fanout: 4, explorers: 20, highPct: 10, lowPct: 20, seed: 1,
      "lane-planner": 2, "lane-worker": 8, "lane-reviewer": 4, "lane-other": 4,
      "model-0": 6, "model-1": 4, "model-2": 3,
      failure: 0.05, rateLimit: 0.05, hang: 0, latency: 0.15, memory: 0.4, tamperSeq: "",
    };
    const run = async (values) => {
      await set({ ...defaults, ...values });
      await page.click("#run");
    };

    before(async () => {
      mkdirSync(ARTIFACTS, { recursive: true });
      server = await serve();
      driver = await open();
      page = driver.page;
      page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));
      page.on("console", (msg) => msg.type() === "error" && errors.push(`console: ${msg.text()}`));
      await page.goto(`${server.base}/www/`);
      await driver.waitFor(() => document.querySelector('[data-testid="state"]')?.textContent === "ready", null, 30_000);
    }, { timeout: 120_000 });

    after(async () => {
      await driver?.close();
      server?.stop();
    });

    test("the page loads the wasm engine and its chart library", async () => {
      const loaded = await page.evaluate(() => ({
        version: document.getElementById("version").textContent,
        resources: performance.getEntriesByType("resource").map((r) => new URL(r.name).pathname),
      }));
      assert.match(loaded.version, /^v\d+\.\d+\.\d+ \(wasm\)$/);
      assert.ok(loaded.resources.includes("/pkg/foreman_bg.wasm"), loaded.resources.join(" "));
      assert.ok(loaded.resources.includes("/node_modules/uplot/dist/uPlot.esm.js"));
      assert.deepEqual(errors, []);
    });

    test("a 200-task run completes with no lane above its limit: page view, stats, and the server", { timeout: 120_000 }, async () => {
      // Models wide enough that the lanes are what binds: they fill up.
      await run({ "model-0": 8, "model-1": 8, "model-2": 8 });
      // Sample from outside too, while it runs: the page's own timeline and the engine's stats.
      const outside = [];
      let done = false;
      const finished = waitDone(90_000).then(() => (done = true));
      while (!done) {
        outside.push(await page.evaluate(() => ({ view: window.demo.timeline.view(), lanes: window.demo.engine.stats().lanes })));
        await new Promise((r) => setTimeout(r, 100));
      }
      await finished;
      const r = await page.evaluate(() => ({
        samples: window.demo.samples, view: window.demo.timeline.view(), stats: window.demo.engine.stats(),
        maxBusy: Object.fromEntries(window.demo.server.maxBusy.agent), shown: document.querySelector('[data-testid="tasks-succeeded"]').textContent,
        list: window.demo.engine.list().map((t) => t.state),
      }));
      assert.equal(r.list.length, 200);
      assert.ok(r.list.every((s) => ["succeeded", "failed", "cancelled", "timed_out"].includes(s)), r.list.join());
      assert.equal(Number(r.shown), r.stats.tasks.succeeded, "the page shows the engine's count");
      assert.ok(r.stats.tasks.succeeded > 100 && r.stats.tasks.failed > 0, JSON.stringify(r.stats.tasks));
      assert.ok(r.samples.length > 20 && outside.length > 10, `${r.samples.length} samples, ${outside.length} outside`);
      const limits = Object.fromEntries(r.stats.lanes.map((l) => [l.name, l.limit]));
      for (const { view, lanes } of [...r.samples, ...outside]) {
        for (const l of lanes) assert.ok(l.inUse <= l.limit, `stats: ${l.name} ${l.inUse} > ${l.limit}`);
        for (const [lane, v] of Object.entries(view)) assert.ok(v.open <= limits[lane], `page: ${lane} ${v.open} > ${limits[lane]}`);
      }
      for (const [lane, v] of Object.entries(r.view)) assert.ok(v.maxOpen <= limits[lane], `page at most: ${lane} ${v.maxOpen}`);
      for (const lane of ["planner", "worker"]) assert.equal(r.view[lane].maxOpen, limits[lane], `${lane} was full at some point`);
      const statsMax = {};
      for (const { lanes } of [...r.samples, ...outside]) for (const l of lanes) statsMax[l.name] = Math.max(statsMax[l.name] ?? 0, l.inUse);
      console.log(`# ${name}: lane limit / most running seen by the page, by stats, by the server: ${Object.entries(limits).map(([lane, limit]) =>
        `${lane} ${limit} / ${r.view[lane]?.maxOpen ?? 0}, ${statsMax[lane] ?? 0}, ${Object.entries(r.maxBusy).filter(([a]) => (a in limits ? a : "other") === lane).reduce((m, [, v]) => Math.max(m, v), 0)}`).join("; ")}`);
      const laneOf = (agent) => (agent in limits ? agent : "other");
      for (const [agent, max] of Object.entries(r.maxBusy)) {
        assert.ok(max <= limits[laneOf(agent)], `server: ${max} ${agent} turns at once, lane limit ${limits[laneOf(agent)]}`);
      }
      await page.screenshot({ path: new URL(`demo-${name}.png`, ARTIFACTS).pathname, fullPage: true });
      assert.deepEqual(errors, []);
    });

    test("a HIGH task submitted behind 100 NORMAL starts at the lane's next free slot", { timeout: 60_000 }, async () => {
      await run({ tasks: 100, shape: "flat", explorers: 0, highPct: 0, lowPct: 0, "lane-worker": 4, "model-0": 100, "model-1": 100, "model-2": 100, failure: 0, rateLimit: 0, latency: 0.2 });
      await page.click("#high");
      await driver.waitFor(() => window.demo.high?.admittedAt != null, null, 20_000);
      const { high, shown } = await page.evaluate(() => ({ high: window.demo.high, shown: document.querySelector('[data-testid="high"]').textContent }));
      assert.ok(high.waiting >= 90, `${high.waiting} NORMAL tasks were waiting`);
      assert.equal(high.before, 0, "no NORMAL task took a slot before it");
      assert.match(shown, new RegExp(`HIGH task #${high.id}, submitted behind ${high.waiting} waiting .* after 0 earlier task`));
    });

    test("a 100 % failure rate on one model opens its breaker (shown); recovery closes it", { timeout: 90_000 }, async () => {
      const model = "anthropic/claude-sonnet-4";
      await run({ tasks: 150, shape: "flat", explorers: 0, failure: 0, rateLimit: 0, latency: 0.2 });
      await page.click("#outage-0");
      await driver.waitFor((m) => document.querySelector(`[data-testid="breaker-${m}"]`)?.textContent === "open", model, 30_000);
      const open = await page.evaluate((m) => window.demo.engine.stats().keys.find((k) => k.name === m), model);
      assert.equal(open.breaker, "open");
      await page.click("#outage-0");
      await driver.waitFor((m) => document.querySelector(`[data-testid="breaker-${m}"]`)?.textContent === "closed", model, 40_000);
      const states = await page.evaluate((m) => window.demo.breakers.log.get(m).map((s) => s.state), model);
      assert.deepEqual(states.slice(0, 2), ["closed", "open"]);
      assert.equal(states.at(-1), "closed");
      assert.ok(states.includes("half_open"), states.join(" → "));
      assert.equal(await page.evaluate((m) => window.demo.engine.stats().keys.find((k) => k.name === m).breaker, model), "closed");
    });

    test("memory above the threshold: LOW submissions are refused with MEMORY_PRESSURE (shown)", async () => {
      await set({ memory: 0.9 });
      await page.click("#low");
      await driver.waitFor(() => document.querySelector('[data-testid="refusals"]').textContent.includes("MEMORY_PRESSURE × 10"), null, 5_000);
      await driver.waitFor(() => document.querySelector('[data-testid="gate"]').textContent.includes("closed"), null, 5_000);
      assert.equal(await page.evaluate(() => window.demo.engine.stats().gate.closed), true);
      await set({ memory: 0.4 });
      await page.click("#low");
      await driver.waitFor(() => document.querySelector('[data-testid="gate"]').textContent.includes("open"), null, 5_000);
      assert.match(await text("refusals"), /^MEMORY_PRESSURE × 10$/, "LOW work is accepted again below the threshold");
    });

    test("drop the engine mid-run and restore it from its journal: the same final task states", { timeout: 120_000 }, async () => {
      const workload = { tasks: 60, seed: 5, failure: 0.1, rateLimit: 0.05, latency: 0.15 };
      await run(workload);
      await waitDone(60_000);
      const plain = await page.evaluate(() => window.demo.engine.list().map((t) => [t.id, t.state]));
      await run(workload);
      await driver.waitFor(() => {
        const t = window.demo.engine.stats().tasks;
        return t.succeeded >= 10 && t.running >= 3;
      }, null, 30_000);
      await page.click("#drop");
      const shown = await text("restore");
      assert.match(shown, /^engine dropped at journal seq \d+ with \d+ queued and [1-9]\d* running; restored from \d+ records \(verify: ok\)/);
      await waitDone(60_000);
      const restored = await page.evaluate(() => window.demo.engine.list().map((t) => [t.id, t.state]));
      assert.equal(plain.length, 60);
      assert.ok(plain.some(([, s]) => s === "failed") && plain.some(([, s]) => s === "succeeded"));
      assert.deepEqual(restored, plain);
    });

    test("a tampered journal record fails verification at that record's sequence (shown)", async () => {
      // A record the engine still keeps (it forgets what precedes its last checkpoint).
      const bytes = await page.evaluate(() => Array.from(window.demo.engine.journalExport()));
      const frames = parseFrames(Uint8Array.from(bytes));
      assert.ok(frames.length >= 3, `${frames.length} records kept`);
      const index = Math.floor(frames.length / 2);
      const seq = frames[index].seq;
      await set({ tamperSeq: seq });
      await page.click("#tamper");
      const result = await page.evaluate(() => window.demo.tamper);
      assert.equal(result.ok, false);
      assert.equal(result.code, "JOURNAL_INVALID");
      assert.equal(result.failedAt, seq);
      // The engine names the bad record by its position in the export.
      assert.match(result.text, new RegExp(`journal record ${index + 1} is invalid: hash does not match the chain`));
      assert.match(await text("tamper"), new RegExp(`^tampered record seq ${seq}: verification failed at seq ${seq} \\(JOURNAL_INVALID`));
      assert.equal(await page.evaluate(() => window.demo.engine.verify()), true, "the engine's own journal is intact");
    });

    test("hung turns time out at their deadline and their sessions are aborted; the run still ends", { timeout: 60_000 }, async () => {
      await run({ tasks: 40, shape: "flat", explorers: 0, failure: 0, rateLimit: 0, hang: 0.2, latency: 0.05 });
      await waitDone(40_000);
      const r = await page.evaluate(() => ({
        tasks: window.demo.engine.stats().tasks, turns: window.demo.server.turns,
        shown: document.querySelector('[data-testid="tasks-timedOut"]').textContent,
        bars: window.demo.timeline.bars.filter((b) => b.outcome === "timed_out").length,
      }));
      assert.ok(r.tasks.timedOut > 0, JSON.stringify(r));
      assert.equal(r.tasks.timedOut, r.turns.hung, "every hung turn, and only those, timed out");
      assert.equal(r.turns.aborted, r.turns.hung, "the engine aborted every hung session");
      assert.equal(Number(r.shown), r.tasks.timedOut);
      assert.equal(r.bars, r.tasks.timedOut, "one timed-out bar per timed-out task");
    });

    test("a limit out of range is refused by the engine's config validator (shown)", async () => {
      await run({ "lane-worker": 0 });
      await driver.waitFor(() => document.querySelector('[data-testid="state"]').textContent === "refused", null, 5_000);
      const line = await page.evaluate(() => document.getElementById("log").firstChild.textContent);
      assert.equal(line, "INVALID_CONFIG (lanes.worker): invalid config `lanes.worker`: must be between 1 and 1024, got 0");
      await new Promise((r) => setTimeout(r, 300)); // a few samples: nothing reads a disposed engine
      assert.deepEqual(errors, []);
    });

    test("a 2,000-task run keeps the page responsive: p95 frame under 50 ms, no console errors", { timeout: 180_000 }, async () => {
      await run({
        tasks: 2000, seed: 3, "lane-planner": 8, "lane-worker": 16, "lane-reviewer": 8, "lane-other": 8,
        "model-0": 12, "model-1": 12, "model-2": 12, failure: 0.02, rateLimit: 0.02, latency: 0.05,
      });
      await waitDone(150_000);
      const r = await page.evaluate(() => ({ frames: window.demo.frames, tasks: window.demo.engine.stats().tasks, bars: window.demo.timeline.bars.length }));
      const sorted = [...r.frames].sort((a, b) => a - b);
      const p95 = sorted[Math.floor(sorted.length * 0.95)];
      console.log(`# ${name}: 2000 tasks, ${r.bars} bars, ${r.frames.length} frames, p95 frame ${p95.toFixed(1)} ms, max ${sorted.at(-1).toFixed(1)} ms`);
      assert.equal(r.tasks.succeeded + r.tasks.failed + r.tasks.cancelled + r.tasks.timedOut, 2000);
      assert.ok(r.frames.length > 60, `${r.frames.length} frames`);
      assert.ok(p95 < 50, `p95 frame ${p95.toFixed(1)} ms`);
      assert.deepEqual(errors, []);
    });
  });
}
