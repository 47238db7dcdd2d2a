// Drive the demo page in headless Chromium like a frustrated user: an uncaught error, a rage click,
// a dead click. Usage: node drive.mjs <page url> <chromium path>
import { chromium } from "playwright-core";

const [pageUrl, executablePath] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox"] });
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.log(`[page ${m.type()}] ${m.text()}`));
  await page.goto(pageUrl, { waitUntil: "load" });
  await page.waitForFunction(() => window.pulseReady === true);
  await page.waitForTimeout(1000);
  await page.click("#recalc");                      // a 250 ms interaction: Sentry reports it as INP on page hide
  await page.waitForTimeout(300);
  await page.click("#crash");                       // TypeError, uncaught (reaches Sentry's global handler)
  await page.waitForTimeout(500);
  for (let i = 0; i < 4; i++) {                     // 4 clicks, 150 ms apart, same spot: one rage click
    await page.click("#buy", { delay: 20 });
    await page.waitForTimeout(150);
  }
  await page.waitForTimeout(1500);
  await page.click("#promo");                       // nothing happens: PostHog reports a dead click
  // PostHog decides after its dead-click timeout (a few seconds, later when the machine is busy):
  // wait until it captured the report on #promo (#buy's clicks are reported dead too, earlier), so leaving
  // the page cannot drop it, then for a batch flush.
  await page.waitForFunction(() => (window.pulseCaptured || []).includes("$dead_click #promo"), null, { timeout: 30000 });
  console.log(`captured: ${await page.evaluate(() => window.pulseCaptured.join(", "))}`);
  await page.waitForTimeout(3000);
  await page.evaluate(() => { window.posthog.capture("checkout_abandoned", { step: "coupon" }); });
  await page.goto("about:blank");                   // pageleave; posthog sends with sendBeacon
  await page.waitForTimeout(1500);
  console.log("driven");
} finally {
  await browser.close();
}
