// Makes the README's picture of the demo page (www/screenshot.png): a 200-task run in headless
// Chromium with a HIGH task, an outage on one model, a lost engine restored from its journal and
// a tampered record. Usage: node tests/browser/screenshot.mjs www/screenshot.png
import { chromium } from "playwright-core";
import { serve } from "./scenarios.mjs";
const s = await serve();
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--headless", "--no-sandbox", "--disable-gpu"] });
const page = await browser.newPage({ viewport: { width: 1360, height: 1000 } });
page.on("pageerror", (e) => console.log("pageerror", e.message));
await page.goto(`${s.base}/www/`);
await page.waitForFunction(() => document.querySelector('[data-testid="state"]')?.textContent === "ready");
await page.evaluate((v) => { for (const [id, value] of Object.entries(v)) { const el = document.getElementById(id); el.value = String(value); el.dispatchEvent(new Event("input")); } },
  { latency: 0.3, failure: 0.05, rateLimit: 0.08 });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
await page.click("#run");
await sleep(1500); await page.click("#high");
await sleep(2000); await page.click("#outage-1");
await sleep(4000); await page.click("#outage-1");
await sleep(3000); await page.click("#drop");
await page.waitForFunction(() => document.querySelector('[data-testid="state"]').textContent === "done", null, { timeout: 120000 });
await page.click("#tamper");
await sleep(700);
await page.screenshot({ path: process.argv[2], fullPage: true });
await browser.close();
s.stop();
