// Drives the published Node SDKs against a collector, for tests/integration/test_sdk_languages.py:
// node probe.cjs SENTRY_DSN POSTHOG_HOST POSTHOG_KEY RELEASE ENVIRONMENT PING_URL
// Sentry: an exception thrown through two functions of this file, a message, a "GET /checkout"
// transaction with an HTTP call to PING_URL, user "user-node". PostHog: identify, a $pageview of
// /checkout, the same exception. Flushes both, exits 0 (1 on any failure).
"use strict";
const Sentry = require("@sentry/node");
const { PostHog } = require("posthog-node");
const http = require("node:http");

const [dsn, posthogHost, posthogKey, release, environment, pingUrl] = process.argv.slice(2);
const USER = "user-node";

function chargeCard(amount) {
  throw new TypeError(`card declined for amount ${amount}`);
}

function checkout() {
  chargeCard(42);
}

function ping(url) {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => { res.resume(); res.on("end", resolve); }).on("error", reject);
  });
}

async function main() {
  Sentry.init({ dsn, release, environment, tracesSampleRate: 1.0 });
  Sentry.setUser({ id: USER });
  try { checkout(); } catch (err) { Sentry.captureException(err); }
  Sentry.captureMessage("cart is empty", "warning");
  await Sentry.startSpan({ name: "GET /checkout", op: "http.server" }, () => ping(pingUrl));
  if (!(await Sentry.flush(15000))) throw new Error("Sentry did not flush");

  const posthog = new PostHog(posthogKey, { host: posthogHost, flushAt: 1, flushInterval: 0 });
  const props = { $app_version: release, $environment: environment };
  posthog.identify({ distinctId: USER, properties: { plan: "pro" } });
  posthog.capture({ distinctId: USER, event: "$pageview",
                    properties: { ...props, $current_url: "https://shop.example/checkout" } });
  try { checkout(); } catch (err) { posthog.captureException(err, USER, props); }
  await posthog.shutdown(15000);
}

main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });
