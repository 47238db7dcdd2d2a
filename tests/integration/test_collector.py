"""The HTTP collector against a real broker: what the client is told is what is on the topics."""

from __future__ import annotations

import asyncio
import gzip
import time
import uuid
from datetime import datetime, timedelta, timezone
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipeline.collector.app import make_app
from pipeline.ingest.producer import EventProducer
from pipeline.kafka_admin import ensure_topics, wait_for_broker
from pipeline.localbroker import LocalBroker
from pipeline.settings import Settings
from tests.conftest import make_settings
from tests.integration.kafka_read import events_of, read_topics

pytestmark = pytest.mark.integration

CARD = "4111 1111 1111 1111"
EMAIL = "canary.person@example.com"
PASSWORD = "hunter2-canary"


def vital(session: str = "s1", **extra: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": "vital", "timestamp": "2026-11-23T10:00:00Z",
            "session_id": session, "vital": {"name": "LCP", "value": 1200.0}, **extra}


def error(session: str = "s1", message: str = "boom", **extra: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": "error", "timestamp": "2026-11-23T10:00:00Z",
            "session_id": session, "error": {"exception_type": "TypeError", "message": message}, **extra}


def action(session: str = "s1") -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": "action", "timestamp": "2026-11-23T10:00:00Z",
            "session_id": session, "action": {"kind": "click", "selector": "#buy"}}


def api(session: str = "s1") -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": "api", "timestamp": "2026-11-23T10:00:00Z",
            "session_id": session, "api": {"url": "/v1/cart", "status": 200, "duration_ms": 12}}


async def start_client(settings: Settings, producer: EventProducer) -> TestClient:
    server = TestServer(make_app(settings, producer))
    await server.start_server(auto_decompress=False)  # as run_collector serves it
    client = TestClient(server)
    await client.start_server()
    return client


@pytest.fixture
async def collector(settings: Settings) -> AsyncIterator[tuple[TestClient, Settings]]:
    async with EventProducer(settings.kafka, process="collector") as producer:
        client = await start_client(settings, producer)
        try:
            yield client, settings
        finally:
            await client.close()


def key_of(settings: Settings) -> str:
    return next(iter(settings.collector.project_keys))


async def post(client: TestClient, settings: Settings, body: bytes, **headers: str) -> tuple[int, dict[str, Any], Any]:
    hdrs = {"X-Pulse-Key": key_of(settings), **{k.replace("_", "-"): v for k, v in headers.items()}}
    async with client.post("/api/v1/events", data=body, headers=hdrs) as resp:
        return resp.status, await resp.json(), resp.headers


async def test_array_object_ndjson_gzip_land_grouped_by_session(collector: tuple[TestClient, Settings]) -> None:
    client, s = collector
    project = s.collector.project_keys[key_of(s)]
    batch = [vital("a"), error("a"), action("a"), api("b"), vital("b"), vital("a")]
    single = error("c")
    nd = [action("d"), action("d"), vital("e")]
    gz = [vital("f"), error("f")]

    status, doc, headers = await post(client, s, orjson.dumps(batch))
    assert (status, doc) == (200, {"accepted": 6, "rejected": 0, "filtered": 0, "errors": []})
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert (await post(client, s, orjson.dumps(single)))[:2] == (200, {"accepted": 1, "rejected": 0, "filtered": 0, "errors": []})
    body = b"\n".join(orjson.dumps(e) for e in nd) + b"\n"
    assert (await post(client, s, body, Content_Type="application/x-ndjson"))[1]["accepted"] == 3
    assert (await post(client, s, body))[1]["accepted"] == 3, "NDJSON is detected without the content type"
    gz_body = gzip.compress(b"\n".join(orjson.dumps(e) for e in gz))
    assert (await post(client, s, gz_body, Content_Type="application/x-ndjson", Content_Encoding="gzip"))[1]["accepted"] == 2

    sent = batch + [single] + nd + nd + gz
    records = await read_topics(s.kafka.bootstrap_servers, s.kafka.raw_topics,
                                until=lambda rs: len(events_of(rs)) >= len(sent))
    got = events_of(records)
    assert sorted(e["event_id"] for e in got) == sorted(e["event_id"] for e in sent)
    expected_topic = {"error": s.kafka.topic_errors, "vital": s.kafka.topic_vitals, "api": s.kafka.topic_vitals,
                      "action": s.kafka.topic_actions}
    for r in records:
        doc = r.doc
        assert isinstance(doc, list), "the collector always sends array messages"
        assert {e["session_id"] for e in doc} == {r.key.decode()}, "one session per message, keyed by it"
        assert {expected_topic[e["type"]] for e in doc} == {r.topic}
        assert all(e["project"] == project and e["received_at"] for e in doc)
    # The first request's session "a" vitals travel together in one message.
    a_vitals = [r for r in records if r.topic == s.kafka.topic_vitals and r.key == b"a"]
    assert len(a_vitals) == 1 and len(a_vitals[0].doc) == 2


async def test_invalid_events_are_dead_letters_and_counted(collector: tuple[TestClient, Settings]) -> None:
    client, s = collector
    good = vital("g")
    bad_value = vital("g", vital={"name": "LCP", "value": -5})
    other_project = vital("g", project="someone-else")
    status, doc, _ = await post(client, s, orjson.dumps([good, bad_value, 7, other_project]))
    assert status == 200 and doc["accepted"] == 1 and doc["rejected"] == 3
    errors = {e["index"]: e for e in doc["errors"]}
    assert errors[1]["event_id"] == bad_value["event_id"] and "vital.value" in errors[1]["reason"]
    assert 2 in errors
    assert "does not match" in errors[3]["reason"]
    # A broken NDJSON line among good ones is a dead letter too, with its index.
    body = orjson.dumps(vital("h")) + b"\n{broken\n" + orjson.dumps(vital("h"))
    status, doc, _ = await post(client, s, body, Content_Type="application/x-ndjson")
    assert status == 200 and doc["accepted"] == 2 and doc["errors"][0]["index"] == 1
    assert "invalid JSON" in doc["errors"][0]["reason"]

    dead = await read_topics(s.kafka.bootstrap_servers, [s.kafka.topic_dead_letter], until=lambda rs: len(rs) >= 4)
    assert len(dead) == 4
    assert all(r.headers["pulse-table"] == b"dead_letters" for r in dead)
    rows = [r.doc for r in dead]
    assert all(row["step"] == "collector" and row["reason"] for row in rows)
    assert bad_value["event_id"] in {row["event_id"] for row in rows}
    raw = await read_topics(s.kafka.bootstrap_servers, s.kafka.raw_topics, until=lambda rs: len(events_of(rs)) >= 3)
    assert len(events_of(raw)) == 3


async def test_client_errors(collector: tuple[TestClient, Settings]) -> None:
    client, s = collector
    limits = s.collector
    async with client.post("/api/v1/events", data=orjson.dumps([vital()])) as resp:
        assert resp.status == 401 and "key" in (await resp.json())["error"]
    async with client.post("/api/v1/events", data=orjson.dumps([vital()]), headers={"X-Pulse-Key": "nope"}) as resp:
        assert resp.status == 401
    async with client.post(f"/api/v1/events?key={key_of(s)}", data=orjson.dumps([vital()])) as resp:
        assert resp.status == 200, "the key may come as a query parameter"

    status, doc, _ = await post(client, s, b"this is not json")
    assert status == 400 and "not JSON" in doc["error"]
    status, doc, _ = await post(client, s, b"\x1f\x8b\x08garbage", Content_Encoding="gzip")
    assert status == 400 and "gzip" in doc["error"]
    status, doc, _ = await post(client, s, b"42")
    assert status == 400

    status, doc, _ = await post(client, s, b" " * (limits.max_body_bytes + 1))
    assert status == 413
    bomb = gzip.compress(b"[" + b" " * (limits.max_body_bytes * 4) + b"]")
    status, doc, _ = await post(client, s, bomb, Content_Encoding="gzip")
    assert status == 413 and "decompression" in doc["error"]
    huge = error("big", message="x" * 10) | {"padding": "y" * (limits.max_event_bytes + 10)}
    status, doc, _ = await post(client, s, orjson.dumps([vital(), huge]))
    assert status == 413 and "index 1" in doc["error"]
    status, doc, _ = await post(client, s, orjson.dumps([vital()] * (limits.max_events_per_request + 1)))
    assert status == 413 and str(limits.max_events_per_request) in doc["error"]

    async with client.options("/api/v1/events", headers={"Origin": "https://shop.example",
                                                         "Access-Control-Request-Method": "POST"}) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "X-Pulse-Key" in resp.headers["Access-Control-Allow-Headers"]

    async with client.get("/health") as resp:
        assert resp.status == 200 and (await resp.json())["dependencies"]["kafka"]["ok"] is True
    async with client.get("/metrics") as resp:
        assert resp.status == 200 and "pulse_http_requests_total" in await resp.text()


async def test_sdk_paths_without_trailing_slash_and_capture_v1_land(collector: tuple[TestClient, Settings]) -> None:
    """PostHog server SDKs post to ``/batch`` (no slash) and, opted in, to ``/i/v1/analytics/events``;
    Sentry proxies may drop the slash too. All of it is on the raw topics."""
    client, s = collector
    key = key_of(s)
    legacy = {"api_key": key, "batch": [{"event": "plan_upgraded", "distinct_id": "user-1",
                                          "uuid": str(uuid.uuid4()), "properties": {"$lib": "posthog-node"}}]}
    async with client.post("/batch", data=orjson.dumps(legacy)) as resp:
        assert (resp.status, await resp.json()) == (200, {"status": 1})
    v1_uuid = str(uuid.uuid4())
    v1 = {"created_at": "2026-11-23T10:00:00Z", "batch": [
        {"event": "checkout_done", "uuid": v1_uuid, "distinct_id": "user-2", "timestamp": "2026-11-23T10:00:00Z",
         "options": {}, "properties": {"cart": 3}, "session_id": "v1-session"}]}
    async with client.post("/i/v1/analytics/events", data=gzip.compress(orjson.dumps(v1)),
                           headers={"Authorization": f"Bearer {key}", "Content-Encoding": "gzip",
                                    "PostHog-Sdk-Info": "posthog-go/1.6.0"}) as resp:
        assert (resp.status, await resp.json()) == (200, {"results": {v1_uuid: {"result": "ok"}}})
    envelope = (b'{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc"}\n{"type":"event"}\n'
                b'{"message":"no slash","timestamp":"2026-11-23T10:00:00Z"}\n')
    async with client.post("/api/1/envelope", data=envelope,
                           headers={"X-Sentry-Auth": f"Sentry sentry_key={key}"}) as resp:
        assert resp.status == 200
    records = await read_topics(s.kafka.bootstrap_servers, s.kafka.raw_topics, until=lambda rs: len(events_of(rs)) >= 3)
    got = {e.get("action", {}).get("name") or e["error"]["message"]: e for e in events_of(records)}
    assert set(got) == {"plan_upgraded", "checkout_done", "no slash"}
    assert got["checkout_done"]["session_id"] == "v1-session" and got["checkout_done"]["event_id"] == v1_uuid
    assert got["checkout_done"]["sdk"]["name"] == "posthog-go"


async def test_event_times_are_corrected_and_out_of_range_ones_are_dead_letters(
        collector: tuple[TestClient, Settings]) -> None:
    """A client clock a year ahead is corrected by its sent_at; year 9999 and 1970 are dead letters."""
    client, s = collector
    now = datetime.now(timezone.utc)
    ahead = now + timedelta(days=365)
    skewed = vital("t") | {"timestamp": (ahead - timedelta(seconds=5)).isoformat(), "sent_at": ahead.isoformat()}
    future, ancient = vital("t") | {"timestamp": "9999-12-31T00:00:00Z"}, vital("t") | {"timestamp": "1970-01-01T00:00:00Z"}
    status, doc, _ = await post(client, s, orjson.dumps([skewed, future, ancient]))
    assert status == 200 and (doc["accepted"], doc["rejected"]) == (1, 2)
    assert all("timestamp out of range" in e["reason"] for e in doc["errors"])
    raw = await read_topics(s.kafka.bootstrap_servers, s.kafka.raw_topics, until=lambda rs: len(events_of(rs)) >= 1)
    [landed] = events_of(raw)
    assert abs((datetime.fromisoformat(landed["timestamp"]) - now).total_seconds()) < 120
    dead = await read_topics(s.kafka.bootstrap_servers, [s.kafka.topic_dead_letter], until=lambda rs: len(rs) >= 2)
    assert {r.doc["event_id"] for r in dead} == {future["event_id"], ancient["event_id"]}
    assert all(r.doc["reason"].startswith("timestamp out of range") for r in dead)


async def test_secrets_never_reach_the_raw_topics(collector: tuple[TestClient, Settings]) -> None:
    client, s = collector
    leaky = error("sec", message=f"charge failed for {EMAIL} card {CARD}",
                  url=f"https://shop.example/pay?password={PASSWORD}&email={EMAIL}")
    leaky["error"]["breadcrumbs"] = [{"message": f"login password={PASSWORD}",
                                      "data": {"password": PASSWORD, "card": CARD.replace(" ", "-"), "to": EMAIL}}]
    leaky["error"]["tags"] = {"email": EMAIL}
    status, doc, _ = await post(client, s, orjson.dumps([leaky]))
    assert (status, doc["accepted"]) == (200, 1)
    records = await read_topics(s.kafka.bootstrap_servers, s.kafka.raw_topics, until=lambda rs: len(rs) >= 1)
    blob = b"".join(r.value for r in records)
    assert b"[Filtered]" in blob and b"[email]" in blob
    for canary in (PASSWORD, EMAIL, CARD, CARD.replace(" ", "-"), CARD.replace(" ", "")):
        assert canary.encode() not in blob


async def test_503_while_the_broker_is_down_then_everything_acknowledged_is_there(
        broker_factory: Callable[[], LocalBroker], tmp_path: Path) -> None:
    broker = broker_factory()
    await asyncio.to_thread(broker.start)
    await wait_for_broker(broker.bootstrap, timeout_s=60)
    s = make_settings(broker.bootstrap, tmp_path, PULSE_COLLECTOR_PRODUCE_TIMEOUT_S="2",
                      PULSE_COLLECTOR_RETRY_AFTER_S="3")
    await ensure_topics(s.kafka)
    acknowledged: list[dict[str, Any]] = []
    async with EventProducer(s.kafka, process="collector") as producer:
        client = await start_client(s, producer)
        try:
            first = [vital("up"), error("up")]
            status, doc, _ = await post(client, s, orjson.dumps(first))
            assert (status, doc["accepted"]) == (200, 2)
            acknowledged += first

            await asyncio.to_thread(broker.stop)
            t0 = time.monotonic()
            status, doc, headers = await post(client, s, orjson.dumps([vital("down"), action("down")]))
            assert status == 503, doc
            assert headers["Retry-After"] == "3" and "accepted" not in doc and doc["error"]
            assert time.monotonic() - t0 < 10
            async with client.get("/health") as resp:
                assert resp.status == 503 and (await resp.json())["dependencies"]["kafka"]["ok"] is False

            await asyncio.to_thread(broker.start)  # same port, same data directory
            deadline = time.monotonic() + 90
            after = [vital("back"), api("back"), error("back2")]
            while True:
                status, doc, _ = await post(client, s, orjson.dumps(after))
                if status == 200 or time.monotonic() > deadline:
                    break
                assert status == 503
                await asyncio.sleep(0.5)
            assert (status, doc["accepted"]) == (200, 3), doc
            acknowledged += after
        finally:
            await client.close()
    records = await read_topics(s.kafka.bootstrap_servers, s.kafka.raw_topics, timeout_s=30,
                                until=lambda rs: {e["event_id"] for e in events_of(rs)} >= {e["event_id"] for e in acknowledged})
    on_topics = {e["event_id"] for e in events_of(records)}
    assert {e["event_id"] for e in acknowledged} <= on_topics
