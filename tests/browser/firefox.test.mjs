// The demo page in headless Firefox (Debian's firefox-esr), driven over WebDriver BiDi by
// Puppeteer. Playwright's own Firefox build cannot be installed from the package registries, and
// its `moz-firefox` channel (stock Firefox over BiDi) needs BiDi commands this Firefox ESR does not
// implement yet (`emulation.setMediaFeaturesOverride` when a page opens); Puppeteer's BiDi client
// uses only what it has.
import puppeteer from "puppeteer-core";
import { suite } from "./scenarios.mjs";

const FIREFOX = process.env.FIREFOX ?? "/usr/bin/firefox-esr";

suite("firefox", async () => {
  const browser = await puppeteer.launch({ browser: "firefox", executablePath: FIREFOX, headless: true });
  const page = await browser.newPage();
  await page.setViewport({ width: 1360, height: 1000 });
  return {
    page,
    waitFor: (fn, arg, timeout) => page.waitForFunction(fn, { timeout, polling: 100 }, arg),
    close: () => browser.close(),
  };
});
