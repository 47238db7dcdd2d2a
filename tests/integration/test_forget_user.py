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
