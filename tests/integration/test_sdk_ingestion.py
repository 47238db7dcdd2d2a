"""The real Sentry and PostHog Python SDKs, pointed at a collector started here, land in the same
tables as native events; canary secrets sent through each endpoint appear in no ClickHouse table and
no topic; the Sentry-style answers (401, 429 with X-Sentry-Rate-Limits, unknown items accepted)."""

from __future__ import annotations

from collections.abc import Callable

import asyncio
import json
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipeline.kafka_admin import ensure_topics
from pipeline.settings import Settings
from tests.conftest import make_settings
from tests.integration.kafka_read import read_topics
from tests.integration.pipeline_procs import PipelineProcs, running_pipeline
from tests.integration.test_sessions import query

pytestmark = pytest.mark.integration

CANARIES = ("hunter2canary", "canary.user@example.com", "4111 1111 1111 1111", "sk_live_canary", "tok_canary_bearer",
            "10.66.77.88")

SENTRY_SCRIPT = """
import sentry_sdk, sys, urllib.request
sentry_sdk.init(dsn=sys.argv[1], traces_sample_rate=1.0, release="web@1.0", environment="staging",
                send_default_pii=False)
sentry_sdk.set_tag("api_key", "sk_live_canary")
sentry_sdk.add_breadcrumb(category="auth", message="Authorization: Bearer tok_canary_bearer", level="info")
def charge(card):
    raise ValueError(f"payment failed for canary.user@example.com card {card} password=hunter2canary from 10.66.77.88")
def checkout():
    charge("4111 1111 1111 1111")
try:
    checkout()
except ValueError:
    sentry_sdk.capture_exception()
sentry_sdk.capture_message("cart is empty for canary.user@example.com", level="warning")
with sentry_sdk.start_transaction(op="pageload", name="/checkout"):
    sentry_sdk.set_measurement("lcp", 1234.0, "millisecond")
    sentry_sdk.set_measurement("cls", 0.07, "")
    urllib.request.urlopen(sys.argv[2]).read()   # an http.client span
sentry_sdk.flush(10)
"""

POSTHOG_SCRIPT = """
import posthog, sys
client = posthog.Posthog(project_api_key="phc_canary_project", host=sys.argv[1], sync_mode=True)
client.capture(distinct_id="user-7", event="plan_upgraded",
               properties={"$session_id": "ph-session-1", "$current_url": "https://shop.example/pricing?token=hunter2canary",
                           "plan": "pro", "api_key": "sk_live_canary", "contact": "canary.user@example.com"})
def load():
    raise KeyError("config missing for 10.66.77.88")
try:
    load()
except KeyError as exc:
    client.capture_exception(exc, distinct_id="user-7", properties={"$session_id": "ph-session-1"})
client.flush()
client.shutdown()
"""

POSTHOG_V1_SCRIPT = """
import posthog, sys
client = posthog.Posthog(project_api_key="phc_canary_project", host=sys.argv[1], capture_mode="v1", gzip=True)
client.capture(distinct_id="user-8", event="v1_checkout", properties={"$session_id": "ph-session-2", "cart": 3})
client.flush()
client.shutdown()
"""


def run_script(tmp_path: Path, name: str, code: str, *args: str) -> None:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(code))
    done = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def wait_rows(settings: Settings, sql: str, want: int, procs: PipelineProcs, timeout_s: float = 60,
              detail: Callable[[], str] | None = None) -> None:
    """Poll until ``sql``'s count reaches ``want``; else fail with ``detail()`` and the processes' logs."""
    deadline = time.monotonic() + timeout_s
    got = -1
    while time.monotonic() < deadline:
        rows = query(settings, sql)
        got = int(rows[0][0]) if rows else -1
        if got >= want:
            return
        time.sleep(0.5)
    raise AssertionError(f"{sql}: {got} < {want}{detail() if detail else ''}\n--- collector ---\n"
                         f"{procs.log('collector')[-3000:]}\n--- worker ---\n{procs.log('worker')[-3000:]}")


def test_real_sdks_land_in_the_native_tables_without_secrets(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = make_settings(kafka_bootstrap, tmp_path, PULSE_COLLECTOR_PROJECT_KEYS=json.dumps(
        {"demo-public-key": "demo", "phc_canary_project": "demo", "tiny-key": "tiny"}),
        PULSE_COLLECTOR_RATE_LIMITS=json.dumps({"tiny": 5}))
    asyncio.run(ensure_topics(settings.kafka))
    base = f"http://127.0.0.1:{settings.collector.port}"
    with running_pipeline(settings, tmp_path / "logs") as procs:
        run_script(tmp_path, "sentry_client", SENTRY_SCRIPT, f"http://demo-public-key@127.0.0.1:{settings.collector.port}/1",
                   f"{base}/health")
        run_script(tmp_path, "posthog_client", POSTHOG_SCRIPT, base)

        wait_rows(settings, "SELECT count() FROM errors", 3, procs)
        wait_rows(settings, "SELECT count() FROM vitals", 2, procs)
        wait_rows(settings, "SELECT count() FROM actions WHERE name = 'plan_upgraded'", 1, procs)

        errors = {r[0]: r for r in query(settings, "SELECT exception_type, message, release, environment, sdk_name, "
                                                   "level, project, culprit FROM errors")}
        assert set(errors) == {"ValueError", "Message", "KeyError"}
        value_error = errors["ValueError"]
        assert value_error[2:4] + value_error[5:7] == ["web@1.0", "staging", "error", "demo"]
        assert value_error[4].startswith("sentry.python")
        assert "charge" in value_error[7]  # the in-app frame that raised is the culprit
        assert errors["Message"][5] == "warning"
        assert errors["KeyError"][4].startswith("posthog")
        vitals = dict(query(settings, "SELECT name, value FROM vitals"))
        assert float(vitals["LCP"]) == 1234.0 and float(vitals["CLS"]) == pytest.approx(0.07)
        wait_rows(settings, "SELECT count() FROM api_calls WHERE request_url LIKE '%/health%'", 1, procs)
        [[session, user, url]] = query(settings, "SELECT session_id, user_id, url FROM actions WHERE name = 'plan_upgraded'")
        assert (session, user) == ("ph-session-1", "user-7") and "token=[Filtered]" in url
        # capture v1 (/i/v1/analytics/events, Bearer key, gzip) from the real SDK
        run_script(tmp_path, "posthog_v1_client", POSTHOG_V1_SCRIPT, base)
        wait_rows(settings, "SELECT count() FROM actions WHERE name = 'v1_checkout'", 1, procs)
        [[session, user, sdk]] = query(settings, "SELECT session_id, user_id, sdk_name FROM actions WHERE name = 'v1_checkout'")
        assert (session, user, sdk) == ("ph-session-2", "user-8", "posthog-python")

        # the Sentry-style answers
        envelope = b'{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc"}\n{"type":"client_report"}\n{"discarded_events":[]}\n' \
                   b'{"type":"profile_chunk"}\n{}\n'
        status, _, body = post(f"{base}/api/1/envelope/", envelope, {"X-Sentry-Auth": "Sentry sentry_key=demo-public-key"})
        assert status == 200 and json.loads(body) == {"id": "9ec79c33ec9942ab8353589fcb2e04dc"}
        status, _, body = post(f"{base}/api/1/envelope/", envelope, {"X-Sentry-Auth": "Sentry sentry_key=nope"})
        assert status == 401 and b"DSN" in body
        status, _, body = post(f"{base}/api/1/envelope/", b"not an envelope", {"X-Sentry-Auth": "Sentry sentry_key=x"})
        assert status == 400
        event = json.dumps({"event_id": "0" * 31 + "1", "message": "m", "level": "error"}).encode()
        three = b'{}\n' + b"".join(b'{"type":"event"}\n' + event + b"\n" for _ in range(3))
        assert post(f"{base}/api/2/envelope/?sentry_key=tiny-key", three, {})[0] == 200
        status, headers, _ = post(f"{base}/api/2/envelope/?sentry_key=tiny-key", three, {})
        assert status == 429 and int(headers["Retry-After"]) > 0
        assert headers["X-Sentry-Rate-Limits"] == f"{headers['Retry-After']}::project"
        status, _, body = post(f"{base}/e/", b'{"api_key": "wrong", "batch": []}', {"Content-Type": "application/json"})
        assert status == 401 and json.loads(body)["code"] == "invalid_api_key"

        # items the translators cannot read are accepted (as the SDKs expect) but kept as dead letters
        broken = b'{"event_id":"9ec79c33ec9942ab8353589fcb2e04dd"}\n{"type":"event"}\nnot json at all\n'
        assert post(f"{base}/api/1/envelope/", broken, {"X-Sentry-Auth": "Sentry sentry_key=demo-public-key"})[0] == 200
        status, _, _ = post(f"{base}/e/", json.dumps({"api_key": "phc_canary_project", "batch": [
            {"event": "no_distinct_id", "properties": {}}]}).encode(), {"Content-Type": "application/json"})
        assert status == 200
        wait_rows(settings, "SELECT count() FROM dead_letters WHERE source IN ('http:sentry-envelope', 'http:posthog')",
                  2, procs)
        reasons = dict(query(settings, "SELECT source, reason FROM dead_letters WHERE source LIKE 'http:%'"))
        assert "item 1" in reasons["http:sentry-envelope"] and "not JSON" in reasons["http:sentry-envelope"]
        assert "event 0" in reasons["http:posthog"] and "distinct_id" in reasons["http:posthog"], reasons

        # the native endpoints get the same canaries
        native = [{"event_id": "7d0a5e7e-43c4-4b1a-9d44-1f6f7c0e2b11", "type": "error", "session_id": "n1",
                   "timestamp": "2026-11-23T10:00:00Z", "url": "https://shop.example/cb?api_key=sk_live_canary",
                   "error": {"exception_type": "Error", "message": "login failed password=hunter2canary "
                             "for canary.user@example.com at 10.66.77.88",
                             "breadcrumbs": [{"message": "Bearer tok_canary_bearer", "data": {"card": "4111 1111 1111 1111"}}]}}]
        status, _, body = post(f"{base}/api/v1/events", json.dumps(native).encode(),
                               {"X-Pulse-Key": "demo-public-key", "Content-Type": "application/json"})
        assert status == 200 and json.loads(body)["accepted"] == 1, body
        metric = [{"name": "login.attempts", "value": 1, "tags": {"email": "canary.user@example.com",
                                                                  "password": "hunter2canary", "ip": "10.66.77.88"}}]
        status, _, body = post(f"{base}/api/metrics", json.dumps(metric).encode(), {"X-Pulse-Key": "demo-public-key"})
        assert status == 200, body
        wait_rows(settings, "SELECT count() FROM metrics WHERE name = 'login.attempts'", 1, procs)
        wait_rows(settings, "SELECT count() FROM errors WHERE session_id = 'n1'", 1, procs)
        [[native_message]] = query(settings, "SELECT message FROM errors WHERE session_id = 'n1'")
        assert native_message == "login failed password=[Filtered] for [email] at [ip]"

        # no canary anywhere: every table, every topic the pipeline writes
        time.sleep(2)
        tables = [r[0] for r in query(settings, "SELECT name FROM system.tables WHERE database = 'pulse' "
                                                "AND engine NOT IN ('View', 'MaterializedView')")]
        assert "errors" in tables and "actions" in tables
        for table in tables:
            dump = "\n".join("\t".join(r) for r in query(settings, f"SELECT * FROM {table}"))
            for canary in CANARIES:
                assert canary not in dump, (table, canary)
        k = settings.kafka
        topics = [*k.raw_topics, k.topic_storage, k.topic_dead_letter, k.topic_ux_signals, k.topic_issue_events,
                  k.topic_issue_transitions]
        records = asyncio.run(read_topics(k.bootstrap_servers, topics, timeout_s=8, until=lambda rs: len(rs) > 5))
        assert len(records) > 5
        blob = b"\n".join(r.value or b"" for r in records).decode("utf-8", "replace")
        for canary in CANARIES:
            assert canary not in blob, canary
