// The demo page in headless Chromium (Debian's), driven by Playwright (a fresh profile per launch).
import { chromium } from "playwright-core";
import { suite } from "./scenarios.mjs";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

suite("chromium", async () => {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const page = await browser.newPage({ viewport: { width: 1360, height: 1000 } });
  return {
    page,
    waitFor: (fn, arg, timeout) => page.waitForFunction(fn, arg, { timeout, polling: 100 }),
    close: () => browser.close(),
  };
});
