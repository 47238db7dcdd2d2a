// Open the built-in dashboard in headless Chromium like a person would, and report what it shows.
// Usage: node dashboard.mjs <dashboard url> <chromium path> <screenshot path> [api token]
//
// With a token: the page must first ask for one (the API answers 401), then work once it is pasted.
// Then: wait for window.pulseDashboard.ready, read the panel counts, take a full-page screenshot, see a
// live refresh happen, make the API fail (503, intercepted) and see the error banner while the panels
// keep their data, and see the banner go once the API answers again.
// Prints one line "RESULT <json>": the page's state per phase and every console message and page error
// (with the phase it happened in); tests/integration/test_dashboard.py asserts on it.
import { chromium } from "playwright-core";

const [pageUrl, executablePath, screenshotPath, token] = process.argv.slice(2);
const result = { console: [], pageErrors: [] };
let phase = "load";

const state = (page) => page.evaluate(() => JSON.parse(JSON.stringify(window.pulseDashboard)));
const isDashboardApi = (url) => new URL(url).pathname === "/api/dashboard";

const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox"] });
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  page.on("console", (m) => result.console.push({ phase, type: m.type(), text: m.text(), url: m.location().url }));
  page.on("pageerror", (e) => result.pageErrors.push({ phase, text: String(e && e.stack ? e.stack : e) }));
  await page.goto(pageUrl, { waitUntil: "load" });

  if (token) {
    phase = "token";
    await page.waitForFunction(() => window.pulseDashboard && window.pulseDashboard.needsToken === true, null,
                               { timeout: 20000 });
    result.token = { panelVisible: await page.isVisible("#token-panel"), ready: (await state(page)).ready };
    await page.fill("#token-input", token);
    await page.click("#token-save");
  }

  phase = "ready";
  await page.waitForFunction(() => window.pulseDashboard && window.pulseDashboard.ready === true &&
                                   window.pulseDashboard.healthChecked === true, null, { timeout: 30000 });
  result.ready = await state(page);
  result.dom = await page.evaluate(() => {
    const visible = (sel) => { const n = document.querySelector(sel); return !!n && n.offsetParent !== null; };
    return {
      tokenPanelVisible: visible("#token-panel"),
      bannerVisible: visible("#error-banner"),
      lastUpdated: document.getElementById("last-updated").textContent,
      health: document.getElementById("health-score").textContent,
      vitals: [...document.querySelectorAll(".vital")].map((v) => ({
        name: v.dataset.vital, classes: v.className, value: v.querySelector(".value").textContent })),
      issueRows: document.querySelectorAll("#issues-table tbody tr").length,
      alertsTableVisible: visible("#alerts-table"),
      alertsEmptyVisible: visible("#panel-alerts .empty"),
      charts: ["error-rate-chart", "clicks-chart"].map((id) => {
        const c = document.getElementById(id);
        return { id, width: c.width, height: c.height };
      }),
      storedToken: window.localStorage.getItem("pulseDashboard.token") !== null,
    };
  });
  await page.screenshot({ path: screenshotPath, fullPage: true });

  phase = "refresh";  // live: another update comes by itself
  const updates = result.ready.updates;
  await page.waitForFunction((n) => window.pulseDashboard.updates > n, updates,
                             { timeout: (result.ready.refreshSeconds + 10) * 1000 });
  result.refreshed = await state(page);

  phase = "failure";  // the API fails: a banner, and the panels keep what they had
  await page.route(isDashboardApi, (route) => route.fulfill({
    status: 503, contentType: "application/json", headers: { "Retry-After": "5" },
    body: JSON.stringify({ error: "ClickHouse is not reachable: (test) the sink is down" }) }));
  await page.click("#refresh-now");
  await page.waitForFunction(() => window.pulseDashboard.error !== null, null, { timeout: 15000 });
  result.failure = { state: await state(page), bannerVisible: await page.isVisible("#error-banner"),
                     banner: await page.textContent("#error-banner") };

  phase = "recovery";
  await page.unroute(isDashboardApi);
  await page.click("#refresh-now");
  await page.waitForFunction(() => window.pulseDashboard.error === null, null, { timeout: 15000 });
  result.recovery = { state: await state(page), bannerVisible: await page.isVisible("#error-banner") };
  phase = "done";
} catch (err) {
  result.failed = { phase, error: String(err && err.stack ? err.stack : err) };
} finally {
  await browser.close();
}
console.log(`RESULT ${JSON.stringify(result)}`);
