"""Issue status end to end (collector -> worker's issue agent -> sink -> chDB, and the transitions
topic): new, escalating, resolved over HTTP and from the CLI, not regressed by an old release,
regressed by a later one; the API's errors; exactly one alertable transition per change."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pipeline.kafka_admin import ensure_topics
from pipeline.settings import Settings
from tests.conftest import make_settings, settings_env
from tests.integration.kafka_read import read_topics
from tests.integration.pipeline_procs import PipelineProcs, running_pipeline
from tests.integration.test_sessions import query

pytestmark = pytest.mark.integration

FAMILIES = {
    "A": ("TypeError", "cart is undefined", "addToCart"),
    "B": ("RangeError", "list too long", "renderList"),
    "C": ("SyntaxError", "unexpected token", "parseConfig"),
}


def error(family: str, ts: datetime, release: str) -> dict[str, Any]:
    etype, message, function = FAMILIES[family]
    return {"event_id": str(uuid.uuid4()), "type": "error", "timestamp": ts.isoformat(), "release": release,
            "session_id": f"s-{family}", "user_id": f"u-{family}",
            "error": {"exception_type": etype, "message": message, "tags": {"family": family},
                      "stacktrace": [{"filename": "https://shop.example/static/app.js", "function": function,
                                      "lineno": 10, "in_app": True}]}}


def http(settings: Settings, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
         ) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{settings.collector.port}{path}"
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    req = urllib.request.Request(url, data=data, method=method, headers={
        "X-Pulse-Key": next(iter(settings.collector.project_keys)), "Content-Type": "application/json",
        **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def send(settings: Settings, events: list[dict[str, Any]]) -> None:
    status, doc = http(settings, "POST", "/api/v1/events", events)
    assert (status, doc["accepted"]) == (200, len(events)), doc


def wait_until(check, what: str, procs: PipelineProcs, timeout_s: float = 60) -> Any:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.4)
    raise AssertionError(f"timed out waiting for {what}\n--- worker log ---\n{procs.log('worker')[-3000:]}")


def states(settings: Settings) -> dict[str, tuple[str, int]]:
    """family -> (status, events counted by the issue agent)."""
    rows = query(settings, "SELECT any(e.tags['family']), s.status, s.events FROM issue_state AS s FINAL "
                           "JOIN errors AS e ON e.group_id = s.group_id GROUP BY s.group_id, s.status, s.events")
    return {fam: (status, int(n)) for fam, status, n in rows}


def fingerprints(settings: Settings) -> dict[str, str]:
    return {fam: fp for fam, fp in query(settings, "SELECT any(tags['family']), group_id FROM errors GROUP BY group_id")}


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "issues", *args], capture_output=True, text=True,
                          timeout=120, env=settings_env(settings) | {"PATH": "/usr/bin:/bin", "COLUMNS": "200"})


def test_issue_lifecycle_end_to_end(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = make_settings(kafka_bootstrap, tmp_path, PULSE_ISSUES_BASELINE_HOURS="1",
                             PULSE_ISSUES_ESCALATION_MIN_EVENTS="5", PULSE_ISSUES_ESCALATION_FACTOR="2")
    asyncio.run(ensure_topics(settings.kafka))
    now = datetime.now(timezone.utc)
    h0 = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    with running_pipeline(settings, tmp_path / "logs") as procs:
        # new issues; B gets a baseline of 2 errors an hour for two hours
        send(settings, [error("A", now - timedelta(hours=2, minutes=m), "1.0") for m in range(3)])
        send(settings, [error("B", h0 + timedelta(hours=h, minutes=m), "1.0") for h in (0, 1) for m in range(2)])
        send(settings, [error("C", now - timedelta(hours=2), "1.0"), error("C", now - timedelta(hours=1), "1.0")])
        got = wait_until(lambda: s if len(s := states(settings)) == 3 else None, "three issues", procs)
        assert got == {"A": ("new", 3), "B": ("new", 4), "C": ("new", 2)}
        fps = fingerprints(settings)

        # B spikes: 6 errors in one hour against a baseline of 2 an hour (threshold max(5, 2 x 2))
        send(settings, [error("B", h0 + timedelta(hours=2, minutes=m), "1.0") for m in range(6)])
        wait_until(lambda: states(settings)["B"][0] == "escalating", "B escalating", procs)

        # the API: access from loopback without a token, clear errors
        status, doc = http(settings, "POST", f"/api/issues/{fps['A']}/resolve", {"actor": "ana"})
        assert status == 202 and doc["issue"]["fingerprint"] == fps["A"] and doc["issue"]["status"] == "new", doc
        assert http(settings, "POST", "/api/issues/nope/resolve")[0] == 404
        assert http(settings, "POST", f"/api/issues/{fps['A']}/delete")[0] == 404
        status, doc = http(settings, "POST", f"/api/issues/{fps['A']}/resolve", {"until_escalating": True})
        assert status == 400 and "until_escalating only applies to ignore" in doc["error"]
        assert http(settings, "POST", f"/api/issues/{fps['A']}/resolve", b"[1]")[0] == 400
        assert http(settings, "GET", "/api/issues?status=bogus")[0] == 400
        wait_until(lambda: states(settings)["A"][0] == "resolved", "A resolved", procs)

        # the CLI, with a prefix of the fingerprint
        done = cli(settings, "resolve", fps["C"][:10], "--project", "demo")
        assert done.returncode == 0, done.stderr
        assert "resolve: demo/" + fps["C"] in done.stdout
        wait_until(lambda: states(settings)["C"][0] == "resolved", "C resolved", procs)
        unknown = cli(settings, "resolve", "zzzz")
        assert unknown.returncode == 1 and "no issue with fingerprint 'zzzz'" in unknown.stderr

        # an old release still running does not regress A; a later release does
        send(settings, [error("A", datetime.now(timezone.utc), "1.0")])
        assert wait_until(lambda: states(settings)["A"] == ("resolved", 4), "A counted, still resolved", procs)
        send(settings, [error("A", datetime.now(timezone.utc), "1.1"), error("C", datetime.now(timezone.utc), "")])
        wait_until(lambda: states(settings)["A"][0] == "regressed" and states(settings)["C"][0] == "regressed",
                   "A and C regressed", procs)

        status, doc = http(settings, "GET", f"/api/issues/{fps['A']}")
        assert status == 200
        assert [(h["kind"], h["actor"]) for h in doc["history"]] == [("new", ""), ("resolved", "ana"), ("regressed", "")]
        assert doc["issue"]["events"] == 5 and doc["issue"]["status"] == "regressed"
        status, doc = http(settings, "GET", "/api/issues?status=regressed")
        assert status == 200 and {i["fingerprint"] for i in doc["issues"]} == {fps["A"], fps["C"]}
        listing = cli(settings, "--status", "escalating")
        assert listing.returncode == 0 and fps["B"][:12] in listing.stdout and fps["A"][:12] not in listing.stdout
        history = cli(settings, "history", fps["C"][:10])
        assert history.returncode == 0 and "resolved" in history.stdout and "regressed" in history.stdout

        # exactly one alertable transition per change on the transitions topic
        records = asyncio.run(read_topics(settings.kafka.bootstrap_servers, [settings.kafka.topic_issue_transitions],
                                          until=lambda rs: len(rs) >= 6, timeout_s=20))
        family = {fp: fam for fam, fp in fps.items()}
        got = sorted((family[r.doc["group_id"]], r.doc["kind"]) for r in records)
        assert got == [("A", "new"), ("A", "regressed"), ("B", "escalating"), ("B", "new"), ("C", "new"),
                       ("C", "regressed")]
        assert all(r.key == b"demo" for r in records)

        # SIGKILL the worker: the restarted one restores every issue from the changelog and goes on
        # counting; nothing new is alertable, so the topic keeps exactly those six transitions
        assert procs.stop("worker", sig=signal.SIGKILL) == -signal.SIGKILL
        procs.start("worker")
        send(settings, [error("A", datetime.now(timezone.utc), "1.2"), error("B", h0 + timedelta(hours=2, minutes=30), "1.0")])
        wait_until(lambda: states(settings)["A"] == ("regressed", 6), "A counted after the restart", procs, 90)
        assert states(settings)["B"] == ("escalating", 11) and states(settings)["C"] == ("regressed", 3)
        records = asyncio.run(read_topics(settings.kafka.bootstrap_servers, [settings.kafka.topic_issue_transitions],
                                          until=lambda rs: len(rs) >= 6, timeout_s=20, quiet_s=2))
        assert len(records) == len({r.doc["transition_id"] for r in records}) == 6
