// The demo page in real headless Chromium (Playwright makes a fresh profile per launch): it must load the wasm engine and show figures the
// engine computed. Run with `node --test tests/browser/`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { fork } from "node:child_process";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
let server, browser, page, base;
const errors = [];

before(async () => {
  server = fork(new URL("../../scripts/serve.mjs", import.meta.url), ["0"], { stdio: "pipe" });
  const { port } = await new Promise((ok, fail) => {
    server.once("message", ok);
    server.once("exit", (code) => fail(new Error(`demo server exited with ${code}`)));
  });
  base = `http://127.0.0.1:${port}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  page = await browser.newPage();
  page.on("pageerror", (err) => errors.push(err.message));
  page.on("console", (msg) => msg.type() === "error" && errors.push(msg.text()));
  await page.goto(`${base}/www/`);
  await page.waitForFunction(() => document.getElementById("state")?.textContent !== "loading"
    && document.getElementById("state")?.textContent !== "running", null, { timeout: 30_000 });
}, { timeout: 90_000 });

after(async () => {
  await browser?.close();
  server?.kill();
});

test("the page loads the wasm module and finishes its first run", async () => {
  assert.equal(await page.textContent("#state"), "done", `page errors: ${errors.join("; ")}`);
  assert.deepEqual(errors, []);
  const wasmLoaded = await page.evaluate(() =>
    performance.getEntriesByType("resource").some((r) => r.name.endsWith("/pkg/foreman_bg.wasm")));
  assert.ok(wasmLoaded, "the page fetched foreman_bg.wasm");
  assert.match(await page.textContent("#version"), /^v\d+\.\d+\.\d+ \(wasm\)$/);
});

test("the figures on the page are the engine's, and agree with the simulated host", async () => {
  const { shown, sim, stats } = await page.evaluate(() => ({
    shown: {
      created: Number(document.getElementById("created").textContent),
      failed: Number(document.getElementById("failed").textContent),
      pending: Number(document.getElementById("pending").textContent),
    },
    sim: { ...window.foreman.host.counts, ids: window.foreman.host.sessionIds.size },
    stats: window.foreman.engine.stats(),
  }));
  assert.equal(sim.calls, 24, "the engine asked the host for every session");
  assert.equal(shown.created + shown.failed, 24);
  assert.equal(shown.created, sim.created, "engine counted what the host created");
  assert.equal(shown.failed, sim.failed + sim.rateLimited, "engine counted every host failure");
  assert.ok(sim.failed + sim.rateLimited > 0 && sim.created > 0, "seed 1 mixes outcomes");
  assert.equal(shown.pending, 0);
  assert.deepEqual(
    { created: stats.sessions.created, failed: stats.sessions.failed, pending: stats.pendingCalls },
    shown,
  );
});

test("host failures are classified by the engine", async () => {
  const rows = await page.$$eval("#outcomes tbody tr", (trs) => trs.map((tr) => tr.children[1].textContent));
  const sim = await page.evaluate(() => window.foreman.host.counts);
  assert.equal(rows.length, 24);
  assert.equal(rows.filter((r) => r === "HOST_FAILED (rate_limited)").length, sim.rateLimited);
  assert.equal(rows.filter((r) => r === "HOST_FAILED (upstream)").length, sim.failed);
  assert.equal(rows.filter((r) => r === "created").length, sim.created);
});

test("a bad configuration is refused by the wasm validator", async () => {
  assert.equal(
    await page.textContent("#validation"),
    "ForemanError INVALID_CONFIG (key lanes.worker): invalid config `lanes.worker`: must be between 1 and 1024, got 0",
  );
});

test("a second run from the controls uses a fresh engine", async () => {
  await page.fill("#count", "10");
  await page.fill("#seed", "7");
  await page.click("#run");
  await page.waitForFunction(() => window.foreman?.stats?.sessions.created + window.foreman?.stats?.sessions.failed === 10);
  const stats = await page.evaluate(() => window.foreman.engine.stats());
  const counts = await page.evaluate(() => window.foreman.host.counts);
  assert.equal(stats.sessions.created, counts.created);
  assert.equal(stats.pendingCalls, 0);
});
