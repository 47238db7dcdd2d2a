"""In a real browser: a demo page loads the published browser SDKs (@sentry/browser, posthog-js from
the npm registry), pointed at the collector; headless Chromium (Debian's package, driven by
playwright-core) triggers an uncaught error, a rage click and a dead click; the pipeline's tables
must show them. Needs `deploy/ensure-browser-deps.sh` (run by `make test`); skipped with the reason
when Chromium or the npm packages are missing, except under CI where that is a failure."""

from __future__ import annotations

import asyncio
import functools
import http.server
import os
import shutil
import subprocess
import urllib.request
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.kafka_admin import ensure_topics
from pipeline.settings import Settings
from tests.conftest import make_settings
from tests.integration.pipeline_procs import PipelineProcs, running_pipeline
from tests.integration.test_sessions import query

pytestmark = [pytest.mark.integration, pytest.mark.browser]
BROWSER_DIR = Path(__file__).resolve().parents[1] / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _missing() -> str | None:
    if CHROMIUM is None:
        return "chromium is not installed (deploy/ensure-browser-deps.sh installs it)"
    if shutil.which("node") is None:
        return "node is not installed"
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        return "npm packages missing: run deploy/ensure-browser-deps.sh"
    return None


@pytest.fixture
def browser_ready() -> None:
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """The demo page and the SDK bundles, served on loopback."""
    root = tmp_path / "site"
    root.mkdir()
    shutil.copy(BROWSER_DIR / "index.html", root / "index.html")
    shutil.copy(BROWSER_DIR / "node_modules" / "posthog-js" / "dist" / "array.full.js", root / "posthog.js")
    subprocess.run([str(BROWSER_DIR / "node_modules" / ".bin" / "esbuild"), str(BROWSER_DIR / "sdk-entry.js"),
                    "--bundle", "--format=iife", f"--outfile={root / 'sentry.js'}", "--log-level=warning"],
                   check=True, cwd=BROWSER_DIR, timeout=120)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def wait_for(settings: Settings, sql: str, procs: PipelineProcs, timeout_s: float = 60) -> list[list[str]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = query(settings, sql)
        if rows and rows[0] and rows[0][0] not in ("0", ""):
            return rows
        time.sleep(0.5)
    raise AssertionError(f"nothing for {sql}\n--- collector ---\n{procs.log('collector')[-2500:]}\n"
                         f"--- worker ---\n{procs.log('worker')[-2500:]}")


def test_browser_sdks_error_rage_and_dead_click(kafka_bootstrap: str, tmp_path: Path, browser_ready: None,
                                                site: str) -> None:
    settings = make_settings(
        kafka_bootstrap, tmp_path,
        # headless Chromium says "HeadlessChrome": a crawler by its user agent, which is what this filter is for
        PULSE_COLLECTOR_FILTER_WEB_CRAWLERS="false",
        # close bursts within seconds instead of a minute (PostHog batches its events for about 3 s)
        PULSE_SESSIONS_ALLOWED_LATENESS_S="15", PULSE_SESSIONS_QUIET_PARTITION_S="3",
        # the browser SDK's DSN parser takes letters, digits and _ in the public key (no dashes)
        PULSE_COLLECTOR_PROJECT_KEYS='{"phc_browser_test_key": "shop"}')
    asyncio.run(ensure_topics(settings.kafka))
    collector = f"http://127.0.0.1:{settings.collector.port}"
    key = next(iter(settings.collector.project_keys))
    with running_pipeline(settings, tmp_path / "logs") as procs:
        page = f"{site}/index.html?collector={collector}&key={key}"
        driven = subprocess.run(["node", str(BROWSER_DIR / "drive.mjs"), page, str(CHROMIUM)], capture_output=True,
                                text=True, timeout=180, cwd=BROWSER_DIR)
        print(driven.stdout)  # what PostHog captured and what moved on the page: shown if a later check fails
        assert driven.returncode == 0 and "driven" in driven.stdout, driven.stdout[-2000:] + driven.stderr[-2000:]

        [[etype, message, sdk, release, culprit]] = wait_for(
            settings, "SELECT exception_type, message, sdk_name, release, culprit FROM errors "
                      "WHERE sdk_name LIKE 'sentry.javascript%'", procs)
        assert etype == "TypeError" and "code" in message and release == "web@3.1.0"
        assert "applyCoupon" in culprit, culprit
        rows = wait_for(settings, "SELECT count(), any(selector), max(clicks) FROM rage_clicks FINAL", procs)
        # 4 clicks were made; PostHog reports one of them again as a $dead_click (the button does
        # nothing): the sessionizer takes it as the same click, so the burst counts exactly 4
        assert int(rows[0][0]) == 1 and "buy" in rows[0][1] and int(rows[0][2]) == 4, rows
        try:
            wait_for(settings, "SELECT count() FROM dead_clicks FINAL WHERE selector LIKE '%promo%'", procs)
        except AssertionError as exc:  # say what the pipeline stored of that click, and the sessions' clocks
            clicks = query(settings, "SELECT timestamp, received_at, kind, selector, dom_mutation_ms, navigated, "
                                     "scrolled, session_id FROM actions WHERE selector LIKE '%promo%'")
            last = query(settings, "SELECT max(timestamp), max(received_at), count() FROM actions")
            health = urllib.request.urlopen(f"http://127.0.0.1:{settings.worker.web_port}/health").read().decode()
            raise AssertionError(f"{exc}\npromo clicks stored: {clicks}\nlast action: {last}\nworker: {health}")
        # INP arrives on its own span (Sentry's browser SDK sends it when the page hides): the slow
        # 250 ms click, from the same trace (session) as the page load's vitals
        [[inp, element, inp_release]] = wait_for(
            settings, "SELECT value, element, release FROM vitals WHERE name = 'INP' "
                      "AND sdk_name LIKE 'sentry.javascript%'", procs)
        assert float(inp) >= 200 and "recalc" in element and inp_release == "web@3.1.0", (inp, element)
        wait_for(settings, "SELECT count() FROM actions WHERE kind = 'pageview' AND sdk_name = 'web'", procs)
        wait_for(settings, "SELECT count() FROM actions WHERE name = 'checkout_abandoned'", procs)
