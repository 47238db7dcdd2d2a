"""Forgetting a user, end to end: after `POST /api/forget-user` on the sink (and `pulse forget-user`
through it), nothing of that user remains in any ClickHouse table (their identifiers, their
sessions' rows, dead letters mentioning them), while another user's data stays."""

from __future__ import annotations

import json
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

from pipeline.settings import Settings
from tests.conftest import settings_env
from tests.integration.pipeline_procs import running_pipeline
from tests.integration.test_issues import http
from tests.integration.test_sessions import query

pytestmark = pytest.mark.integration


def events_of(user: str, session: str, start: datetime) -> list[dict[str, Any]]:
    def ev(type_: str, i: int, **payload: Any) -> dict[str, Any]:
        return {"event_id": str(uuid.uuid4()), "type": type_, "timestamp": (start + timedelta(seconds=i)).isoformat(),
                "session_id": session, "user_id": user, "url": "https://shop.example/cart", **payload}

    return [ev("action", 0, action={"kind": "pageview"}),
            ev("action", 1, action={"kind": "click", "selector": "#buy", "x": 10, "y": 10,
                                    "observed": {"navigated": False, "scrolled": False, "observed_for_ms": 3000}}),
            ev("error", 2, error={"exception_type": "TypeError", "message": "cart is undefined"}),
            ev("vital", 3, vital={"name": "LCP", "value": 1800.0}),
            ev("api", 4, api={"url": "/api/cart", "status": 500, "duration_ms": 120.0})]


def everything(settings: Settings) -> str:
    tables = [r[0] for r in query(settings, "SELECT name FROM system.tables WHERE database = currentDatabase() "
                                            "AND engine NOT IN ('View', 'MaterializedView')")]
    return "\n".join("\t".join(r) for t in tables for r in query(settings, f"SELECT * FROM {t}"))


def forget(settings: Settings, user: str) -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{settings.sink.port}/api/forget-user", method="POST",
                                 data=json.dumps({"user_id": user}).encode())
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_forget_user_removes_every_row_of_the_user(settings: Settings, tmp_path: Path) -> None:
    gone, kept = f"forget-{uuid.uuid4().hex[:6]}", f"keep-{uuid.uuid4().hex[:6]}"
    start = datetime.now(timezone.utc) - timedelta(hours=2)  # sessions that close by the clock
    with running_pipeline(settings, tmp_path / "logs") as procs:
        for user, session in ((gone, "sess-gone"), (kept, "sess-kept")):
            status, doc = http(settings, "POST", "/api/v1/events", events_of(user, session, start))
            assert status == 200 and doc["accepted"] == 5, doc
        # a dead letter that names the user (an invalid event of theirs)
        status, _ = http(settings, "POST", "/api/v1/events", [{"type": "vital", "user_id": gone, "session_id": "x"}])
        assert status == 200
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            dump = everything(settings)
            if dump.count("sess-gone") >= 7 and "sess-kept" in dump and gone in dump and \
                    query(settings, "SELECT count() FROM sessions")[0][0] == "2":
                break
            time.sleep(0.5)
        assert query(settings, "SELECT count() FROM sessions")[0][0] == "2", procs.log("worker")[-2000:]
        assert int(query(settings, "SELECT count() FROM dead_letters")[0][0]) >= 1

        status, doc = forget(settings, gone)
        assert status == 200 and doc["rows"] >= 8, doc
        assert {"errors", "actions", "vitals", "api_calls", "sessions", "dead_letters"} <= set(doc["deleted"])
        dump = everything(settings)
        assert gone not in dump and "sess-gone" not in dump
        assert kept in dump and "sess-kept" in dump and query(settings, "SELECT count() FROM sessions")[0][0] == "1"

        assert forget(settings, " ")[0] == 400
        cli = subprocess.run([sys.executable, "-m", "pipeline.cli", "forget-user", kept, "--yes"], capture_output=True,
                             text=True, timeout=120, env=settings_env(settings) | {"PATH": "/usr/bin:/bin"})
        assert cli.returncode == 0, cli.stderr
        assert "sessions\t1" in cli.stdout
        assert kept not in everything(settings)


def test_events_without_consent_keep_no_user_identifiers_anywhere(settings: Settings, tmp_path: Path) -> None:
    """consent=false: the user's ids are gone from the raw topic, every table and every derived topic,
    while the events themselves (and a consenting user's ids) are kept."""
    import asyncio

    from tests.integration.kafka_read import read_topics

    secret_user, secret_anon, open_user = (f"{p}-{uuid.uuid4().hex[:8]}" for p in ("nocons", "anon", "cons"))
    start = datetime.now(timezone.utc) - timedelta(hours=2)
    refused = [dict(e, consent=False, anonymous_id=secret_anon) for e in events_of(secret_user, "sess-nocons", start)]
    refused.append({"type": "vital", "consent": "false", "user_id": secret_user, "session_id": "x"})  # a dead letter
    given = events_of(open_user, "sess-cons", start)
    with running_pipeline(settings, tmp_path / "logs") as procs:
        status, doc = http(settings, "POST", "/api/v1/events", refused + given)
        assert status == 200 and doc["accepted"] == 10, doc
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if query(settings, "SELECT count() FROM sessions")[0][0] == "2" and \
                    query(settings, "SELECT count() FROM dead_letters")[0][0] == "1" and \
                    query(settings, "SELECT count() FROM errors")[0][0] == "2" and \
                    everything(settings).count("sess-nocons") >= 7:
                break
            time.sleep(0.5)
        assert query(settings, "SELECT count() FROM sessions")[0][0] == "2", procs.log("worker")[-2000:]
        dump = everything(settings)
        assert dump.count("sess-nocons") >= 7  # the events are kept, without their user
        assert secret_user not in dump and secret_anon not in dump
        assert open_user in dump
        assert query(settings, "SELECT uniqExact(user_id), countIf(consent = false) FROM errors") == [["2", "1"]]

    k = settings.kafka
    topics = [k.topic_errors, k.topic_vitals, k.topic_actions, k.topic_dead_letter, k.topic_storage,
              k.topic_ux_signals, k.topic_issue_events]
    records = asyncio.run(read_topics(settings.kafka.bootstrap_servers, topics, timeout_s=10))
    blob = b"\n".join(r.value for r in records)
    assert b"sess-nocons" in blob and open_user.encode() in blob
    assert secret_user.encode() not in blob and secret_anon.encode() not in blob
