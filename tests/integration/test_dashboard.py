"""The built-in dashboard on a real pipeline: Kafka, worker, sink and collector as separate processes, a few
minutes' worth of simulated browser traffic (errors, vitals, API calls, rage and dead clicks) through the
collector, then ``/api/dashboard`` must match the generator's truth and the page, in headless Chromium
(Debian's package, driven by playwright-core as in test_browser.py), must ask for the API token, show
every panel with data, refresh by itself and show an error banner when its API fails. The screenshot goes
to ``test-artifacts/dashboard.png`` (directory: ``PULSE_TEST_ARTIFACTS``). Skipped with the reason when
Chromium or the npm packages are missing, except under CI where that is a failure."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from pipeline.kafka_admin import ensure_topics
from pipeline.settings import Settings
from pipeline.simulate import Scenario, generate_scenario
from tests.conftest import make_settings
from tests.integration.pipeline_procs import PipelineProcs, running_pipeline
from tests.integration.test_browser import BROWSER_DIR, CHROMIUM, browser_ready  # noqa: F401 - the fixture

pytestmark = [pytest.mark.integration, pytest.mark.browser]
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "dashboard-test-token"
SESSIONS, SEED = 60, 11
LAST_EVENT_AGO_S = 20  # the traffic ends this long ago: behind the worker's watermark once partitions go quiet


def artifacts_dir() -> Path:
    path = Path(os.environ.get("PULSE_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def recent_traffic(project: str) -> Scenario:
    """Simulated sessions whose events all happened in the last few minutes (none in the future)."""
    def make(start: datetime) -> Scenario:
        return generate_scenario(SESSIONS, seed=SEED, start=start, spread_s=60, project=project, malformed_ratio=0)

    probe_start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    last = max(datetime.fromisoformat(e["timestamp"]) for e in make(probe_start).events)
    span = last - probe_start
    scenario = make(datetime.now(timezone.utc) - span - timedelta(seconds=LAST_EVENT_AGO_S))
    events = scenario.events
    # what the panels need: errors, vitals, API calls, and a rage burst (its clicks are dead clicks too)
    assert scenario.truth.errors_by_family and scenario.truth.valid_by_type["vital"] and scenario.truth.valid_by_type["api"]
    assert sum(1 for e in events if e["type"] == "action" and e["action"].get("selector") == "button#pay") >= 3
    return scenario


async def send(url: str, key: str, scenario: Scenario, concurrency: int = 8) -> int:
    """POST each SDK flush in send order (as fast as the collector takes them); the accepted count."""
    limit = asyncio.Semaphore(concurrency)
    accepted = 0

    async def post(http: aiohttp.ClientSession, events: list[dict[str, Any]]) -> None:
        nonlocal accepted
        async with limit:
            async with http.post(f"{url}/api/v1/events", data=orjson.dumps(events),
                                 headers={"X-Pulse-Key": key, "Content-Type": "application/json"}) as resp:
                assert resp.status == 200, await resp.text()
                accepted += (await resp.json())["accepted"]

    async with aiohttp.ClientSession() as http:
        pending: set[asyncio.Task[None]] = set()
        for flush in scenario.flushes:
            while len(pending) >= concurrency:  # keep the send order close to event order
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for d in done:
                    d.result()
            pending.add(asyncio.create_task(post(http, flush.events)))
        await asyncio.gather(*pending)
    return accepted


def get(url: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    async def go() -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)
    return asyncio.run(go())


def wait_for_dashboard(url: str, ready: Any, procs: PipelineProcs, timeout_s: float = 40) -> dict[str, Any]:
    """Poll /api/dashboard until ``ready(doc)``; the last answer and the logs when it never is."""
    deadline = time.monotonic() + timeout_s
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        procs.check_alive()
        status, doc = get(url, TOKEN)
        if status == 200 and ready(doc):
            return doc
        time.sleep(0.5)
    raise AssertionError(f"dashboard never ready: {orjson.dumps(doc).decode()[:3000]}\n--- worker ---\n"
                         f"{procs.log('worker')[-2500:]}\n--- sink ---\n{procs.log('sink')[-1500:]}")


def unexpected_console_errors(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Console errors other than the HTTP failures the test provokes: the 401 before the token is pasted, the
    intercepted 503, and /api/report while that endpoint is not there (the page shows n/a for it)."""
    def expected(m: dict[str, Any]) -> bool:
        if not m["text"].startswith("Failed to load resource"):
            return False
        if "/api/report" in m["url"]:
            return True
        if "/api/dashboard" in m["url"]:
            return (m["phase"] in ("load", "token") and "401" in m["text"]) or \
                   (m["phase"] == "failure" and "503" in m["text"])
        return False
    return [m for m in result["console"] if m["type"] == "error" and not expected(m)]


def test_dashboard_shows_live_traffic_in_a_real_browser(kafka_bootstrap: str, tmp_path: Path,
                                                        browser_ready: None) -> None:  # noqa: F811
    settings: Settings = make_settings(
        kafka_bootstrap, tmp_path, PULSE_COLLECTOR_API_TOKEN=TOKEN,
        # close rage bursts and judge dead clicks within seconds of the traffic, not a minute
        PULSE_SESSIONS_ALLOWED_LATENESS_S="10", PULSE_SESSIONS_QUIET_PARTITION_S="2")
    asyncio.run(ensure_topics(settings.kafka))
    base = f"http://127.0.0.1:{settings.collector.port}"
    key, project = next(iter(settings.collector.project_keys.items()))
    scenario = recent_traffic(project)
    truth = scenario.truth
    api = f"{base}/api/dashboard?period=1h"

    with running_pipeline(settings, tmp_path / "logs") as procs:
        accepted = asyncio.run(send(base, key, scenario))
        assert accepted == truth.valid

        # the JSON API: guarded, validated, and (once the pipeline has it all) equal to the generator's truth
        assert get(api)[0] == 401
        status, bad = get(f"{base}/api/dashboard?period=2h", TOKEN)
        assert status == 400 and "15m, 1h, 6h, 24h, 7d" in bad["error"]
        errors = sum(truth.errors_by_family.values())
        # the summary reads the rollups and the top issues the raw errors table: the sink may land one
        # before the other, so wait for both
        doc = wait_for_dashboard(api, lambda d: d["summary"]["errors"] == errors and
                                 (len(d["top_issues"]) >= 10 or sum(i["events"] for i in d["top_issues"]) == errors) and
                                 d["summary"]["pageviews"] == truth.pageviews and
                                 d["counts"]["clicks"] > 0 and d["counts"]["topIssues"] > 0 and
                                 sum(p["dead_clicks"] for p in d["clicks"]) > 0 and
                                 sum(p["rage_clicks"] for p in d["clicks"]) > 0, procs)
        counts = doc["counts"]
        assert counts["errorRate"] >= 2 and counts["vitals"] == 5, counts
        assert doc["summary"]["api_calls"] == truth.valid_by_type["api"]
        assert {v["rating"] for v in doc["vitals"]} <= {"good", "needs-improvement", "poor"}
        if len(doc["top_issues"]) < 10:
            assert sum(i["events"] for i in doc["top_issues"]) == errors
        assert all(i["status"] in ("new", "ongoing", "escalating", "regressed") for i in doc["top_issues"])
        assert doc["projects"] == [project] and doc["source"] == "rollups_minute"
        filtered = get(f"{base}/api/dashboard?period=15m&project=nobody", TOKEN)[1]
        assert filtered["counts"]["topIssues"] == 0 and filtered["summary"]["errors"] == 0

        # the page, in a real browser
        screenshot = artifacts_dir() / "dashboard.png"
        screenshot.unlink(missing_ok=True)
        driven = subprocess.run(["node", str(BROWSER_DIR / "dashboard.mjs"), f"{base}/dashboard?period=1h&refresh=2",
                                 str(CHROMIUM), str(screenshot), TOKEN],
                                capture_output=True, text=True, timeout=120, cwd=BROWSER_DIR)
        line = next((ln for ln in driven.stdout.splitlines() if ln.startswith("RESULT ")), None)
        assert driven.returncode == 0 and line, driven.stdout[-3000:] + driven.stderr[-3000:]
        result = orjson.loads(line[len("RESULT "):])
        assert "failed" not in result, result.get("failed")
        assert result["token"] == {"panelVisible": True, "ready": False}  # asked for the token first

        ready, dom = result["ready"], result["dom"]
        panels = ready["panels"]
        assert panels["errorRate"] > 0 and panels["topIssues"] > 0 and panels["vitals"] > 0 and panels["clicks"] > 0, panels
        assert panels["vitals"] == 5 and panels["clicks"] == len(doc["clicks"]), (panels, doc["counts"])
        assert ready["rendered"]["alerts"] and (dom["alertsTableVisible"] or dom["alertsEmptyVisible"])
        assert isinstance(panels["alerts"], int) and panels["alerts"] >= 0  # may be 0: the panel rendered is enough
        assert ready["lastUpdate"] and ready["error"] is None and ready["refreshSeconds"] == 2
        assert dom["storedToken"] and not dom["tokenPanelVisible"] and not dom["bannerVisible"]
        assert dom["issueRows"] == panels["topIssues"] and "updated" in dom["lastUpdated"]
        assert [v["name"] for v in dom["vitals"]] == ["LCP", "INP", "CLS", "FCP", "TTFB"]
        assert all(any(r in v["classes"].split() for r in ("good", "needs-improvement", "poor")) for v in dom["vitals"])
        # the health score is GET /api/report's (another endpoint): a number when it answers, "n/a" otherwise
        report_status = get(f"{base}/api/report?period=1h", TOKEN)[0]
        assert dom["health"].isdigit() if report_status == 200 else dom["health"] == "n/a", (report_status, dom)
        assert all(c["width"] > 0 and c["height"] > 0 for c in dom["charts"])
        assert screenshot.is_file() and screenshot.stat().st_size > 10_000

        assert result["refreshed"]["updates"] > ready["updates"]  # live: it refreshed by itself
        failure = result["failure"]
        assert failure["bannerVisible"] and "503" in failure["banner"] and "not reachable" in failure["banner"]
        assert failure["state"]["panels"]["topIssues"] == panels["topIssues"]  # the data stays on screen
        assert not result["recovery"]["bannerVisible"] and result["recovery"]["state"]["error"] is None

        assert result["pageErrors"] == []
        assert unexpected_console_errors(result) == [], result["console"]

        # with the sink gone, the API says so (503, retry) instead of opening the database itself
        procs.stop("sink")
        status, down = get(api, TOKEN)
        assert status == 503 and "not reachable" in down["error"]
