"""Alert rules in the worker, end to end: breaching traffic through the collector -> one firing
alert event per rule and series on the alerts topic and in the `alerts` table once the window
closed, a resolved one when the next window is healthy, and new issues alerting at once.

Windows of 10 s (PULSE_ROLLUPS_WINDOW_S) and 1 s of lateness keep the test short; the logic is the
same as with minutes."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from pipeline.kafka_admin import ensure_topics
from tests.conftest import free_port, make_settings
from tests.integration.kafka_read import read_topics
from tests.integration.test_notifier import Mailbox, Receivers, config_yaml, mailbox, receivers  # noqa: F401,F811 - fixtures
from tests.integration.pipeline_procs import running_pipeline
from tests.integration.test_issues import send
from tests.integration.test_sessions import query

pytestmark = pytest.mark.integration

RULES = """
rules:
  - name: error-rate
    kind: ratio
    numerator: errors
    denominator: pageviews
    window: 10s
    thresholds: {warning: 0.05, critical: 0.10}
    min_volume: 5
    group_by: [environment]
  - name: new-issue
    kind: issue
    transitions: [new]
    level: warning
"""


def pageview(session: str, ts: datetime) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": "action", "timestamp": ts.isoformat(), "session_id": session,
            "route": "/cart", "environment": "production", "action": {"kind": "pageview"}}


def error(session: str, ts: datetime) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": "error", "timestamp": ts.isoformat(), "session_id": session,
            "route": "/cart", "environment": "production",
            "error": {"exception_type": "TypeError", "message": "cart is undefined",
                      "stacktrace": [{"filename": "https://shop.example/app.js", "function": "addToCart"}]}}


async def produce_raw(bootstrap: str, records: list[tuple[str, bytes, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def test_error_rate_fires_and_resolves(kafka_bootstrap: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    settings = make_settings(kafka_bootstrap, tmp_path, PULSE_ROLLUPS_WINDOW_S="10",
                             PULSE_ROLLUPS_ALLOWED_LATENESS_S="1", PULSE_ALERTS_RULES_PATH=str(rules),
                             PULSE_ALERTS_TICK_INTERVAL_S="0.5")
    asyncio.run(ensure_topics(settings.kafka))
    with running_pipeline(settings, tmp_path / "logs") as procs:
        procs.wait_ready(settings.worker.web_port)
        # garbage on the agents' own input topics: dead letters with the reason, the worker goes on
        asyncio.run(produce_raw(settings.kafka.bootstrap_servers, [
            (settings.kafka.topic_issue_events, b"demo", b'{"kind": "nonsense"}'),
            (settings.kafka.topic_rollup_partials, b"demo", b"not json")]))
        # wait for the start of a fresh 10 s window, then 20 page views and 4 errors in it: 20 % > 10 %
        while int(time.time()) % 10 > 2:
            time.sleep(0.2)
        sent_at = time.time()
        now = datetime.now(timezone.utc)
        send(settings, [pageview(f"s{i}", now) for i in range(20)] + [error(f"s{i}", now) for i in range(4)])

        def alert_events() -> list[dict[str, Any]]:
            records = asyncio.run(read_topics(settings.kafka.bootstrap_servers, [settings.kafka.topic_alerts],
                                              timeout_s=2, quiet_s=0.2, until=lambda rs: bool(rs)))
            return [r.doc for r in records]

        deadline = time.monotonic() + 60
        events: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            events = alert_events()
            rate = [e for e in events if e["rule"] == "error-rate"]
            if any(e["status"] == "resolved" for e in rate):
                break
            time.sleep(0.5)
        rate = [e for e in events if e["rule"] == "error-rate"]
        assert [(e["status"], e["severity"]) for e in rate] == [("firing", "critical"), ("resolved", "critical")], \
            (events, procs.log("worker")[-3000:])
        firing = rate[0]
        assert firing["labels"]["environment"] == "production" and firing["labels"]["project"] == "demo"
        assert firing["value"] == pytest.approx(0.2) and firing["threshold"] == pytest.approx(0.10)
        assert rate[1]["fingerprint"] == firing["fingerprint"]
        assert firing["annotations"]["suggested_actions"] and "last_release" not in firing["annotations"]
        assert [r["title"][:9] for r in firing["annotations"]["related_issues"]] == ["TypeError"]
        fired_after = firing["at"] / 1000 - sent_at
        assert fired_after <= 10 + 1 + 5, fired_after  # window + lateness + 5 s
        issue = [e for e in events if e["rule"] == "new-issue"]
        assert len(issue) == 1 and issue[0]["status"] == "firing" and issue[0]["annotations"]["title"].startswith("TypeError")

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            rows = query(settings, "SELECT rule, status, severity FROM alerts FINAL ORDER BY at, status")
            if len(rows) >= 3:
                break
            time.sleep(0.5)
        assert sorted(map(tuple, rows)) == [("error-rate", "firing", "critical"), ("error-rate", "resolved", "critical"),
                                            ("new-issue", "firing", "warning")]
        # the alert state records: new-format (bounded buffer), far below the 1 MB record limit
        state = asyncio.run(read_topics(settings.kafka.bootstrap_servers, [f"{settings.worker.app_id}-alert_state-changelog"],
                                        timeout_s=5, quiet_s=0.5))
        assert state and max(len(r.value) for r in state) < 100_000
        assert all(isinstance(r.doc["buffer"], dict) for r in state)
        reasons = sorted(r[0] for r in query(settings, "SELECT reason FROM dead_letters"))
        assert len(reasons) == 2, reasons
        assert reasons[0].startswith("alert agent: not an alerting input: JSONDecodeError")
        assert reasons[1].startswith("issue agent: not an issue record: unknown record kind") and "nonsense" in reasons[1]


def test_breaching_traffic_pages_each_receiver_once_then_resolves(kafka_bootstrap: str, tmp_path: Path,
                                                                  receivers: Receivers, mailbox: Mailbox) -> None:
    """The whole chain: collector -> worker (rules) -> alerts topic -> notifier -> a webhook, Slack,
    PagerDuty and an SMTP server on loopback. One firing page per receiver, then one resolved notice
    when the next window is healthy."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    (tmp_path / "notifier.yaml").write_text(config_yaml(receivers, mailbox, routes=["hook", "slack", "pagerduty", "email"],
                                                        group_wait="0s", group_interval="1s"))
    settings = make_settings(kafka_bootstrap, tmp_path, PULSE_ROLLUPS_WINDOW_S="10",
                             PULSE_ROLLUPS_ALLOWED_LATENESS_S="1", PULSE_ALERTS_RULES_PATH=str(rules),
                             PULSE_ALERTS_TICK_INTERVAL_S="0.5", PULSE_NOTIFIER_CONFIG_PATH=str(tmp_path / "notifier.yaml"),
                             PULSE_NOTIFIER_PORT=str(free_port()), PULSE_NOTIFIER_TICK_INTERVAL_S="0.2",
                             PULSE_NOTIFIER_STATE_PATH=str(tmp_path / "notifier" / "state.sqlite3"),
                             PULSE_NOTIFIER_GROUP_ID=f"notifier-{uuid.uuid4().hex[:8]}")
    asyncio.run(ensure_topics(settings.kafka))
    with running_pipeline(settings, tmp_path / "logs", ("sink", "worker", "collector", "notifier")) as procs:
        procs.wait_ready(settings.worker.web_port)
        while int(time.time()) % 10 > 2:
            time.sleep(0.2)
        now = datetime.now(timezone.utc)
        send(settings, [pageview(f"s{i}", now) for i in range(20)] + [error(f"s{i}", now) for i in range(4)])

        def rate_pages(path: str) -> list[dict[str, Any]]:
            """This rule's notifications; PagerDuty's resolve names only the dedup_key of its trigger."""
            bodies = [r.body for r in receivers.got(path) if r.status < 300]
            keys = {b.get("dedup_key") for b in bodies if "error-rate" in json.dumps(b) and "dedup_key" in b}
            return [b for b in bodies if "error-rate" in json.dumps(b) or b.get("dedup_key") in keys]

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(len(rate_pages(p)) >= 2 for p in ("/hook", "/slack", "/pagerduty")) and \
                    sum("error-rate" in s for s in mailbox.subjects()) >= 2:
                break
            time.sleep(0.3)
        time.sleep(2)  # a duplicate would have arrived by now
        hook = rate_pages("/hook")
        assert [b["status"] for b in hook] == ["firing", "resolved"], (hook, procs.log("notifier")[-2000:])
        assert hook[0]["alerts"][0]["labels"]["severity"] == "critical"
        pd = rate_pages("/pagerduty")
        assert [b["event_action"] for b in pd] == ["trigger", "resolve"] and pd[0]["dedup_key"] == pd[1]["dedup_key"]
        assert len(rate_pages("/slack")) == 2
        subjects = [s for s in mailbox.subjects() if "error-rate" in s]
        assert len(subjects) == 2 and "RESOLVED" in subjects[1].upper(), subjects
