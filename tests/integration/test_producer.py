"""The Producer API against a real broker: exactly the valid events on the raw topics, the rest dead letters."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest

from pipeline.contract import EVENT_ADAPTER
from pipeline.ingest.producer import EventProducer
from pipeline.settings import Settings
from tests.integration.kafka_read import events_of, read_topics

pytestmark = pytest.mark.integration


def event(kind: str, session: str, **extra: Any) -> dict[str, Any]:
    payload = {"error": {"exception_type": "E", "message": "m"}, "vital": {"name": "INP", "value": 80.0},
               "action": {"kind": "pageview"}, "api": {"url": "/x", "duration_ms": 5, "status": 200}}[kind]
    return {"event_id": str(uuid.uuid4()), "type": kind, "project": "shop", "session_id": session,
            "timestamp": "2026-11-23T10:00:00Z", kind: payload, **extra}


async def test_single_batched_and_invalid_events(settings: Settings) -> None:
    k = settings.kafka
    model = EVENT_ADAPTER.validate_python(event("vital", "m1"))  # contract models are accepted too
    single = event("error", "s1", error={"exception_type": "E", "message": "mail me at ann@example.com"})
    batch = [event("action", "s1"), event("action", "s2"), event("api", "s2"), event("vital", "s2")]
    invalid = [event("vital", "s3", vital={"name": "NOPE", "value": 1}), {"type": "error"},
               event("action", "s3", action={"kind": "click"})]
    caller_copy = orjson.loads(orjson.dumps(single))

    async with EventProducer(k) as producer:
        r1 = await producer.send([single])
        r2 = await producer.send([model, *batch[:2], invalid[0], *batch[2:], *invalid[1:]])
        r3 = await producer.send([invalid[0]], dead_letter=False)
        await producer.send_raw(k.topic_actions, b"\xff not json", key=b"garbage")
        await producer.flush()

    assert (r1.accepted, r1.rejected) == (1, [])
    assert r2.accepted == 5 and [r.index for r in r2.rejected] == [3, 6, 7]
    assert r2.rejected[0].event_id == invalid[0]["event_id"] and "vital.name" in r2.rejected[0].reason
    assert "selector" in r2.rejected[2].reason
    assert r3.accepted == 0 and len(r3.rejected) == 1
    assert single == caller_copy, "the caller's dict is not mutated by scrubbing"

    valid = [single, model.model_dump(mode="json"), *batch]
    records = await read_topics(k.bootstrap_servers, k.raw_topics,
                                until=lambda rs: len(rs) >= 1 and len(events_of([r for r in rs if r.key != b"garbage"])) >= len(valid))
    good = [r for r in records if r.key != b"garbage"]
    got = events_of(good)
    assert sorted(e["event_id"] for e in got) == sorted(str(e["event_id"]) for e in valid)
    assert any(r.key == b"garbage" and r.value == b"\xff not json" for r in records)
    assert "ann@example.com" not in orjson.dumps(got).decode()
    for r in good:
        assert {e["session_id"] for e in r.doc} == {r.key.decode()}
    s2_vitals = [r for r in good if r.key == b"s2" and r.topic == k.topic_vitals]
    assert len(s2_vitals) == 1 and len(s2_vitals[0].doc) == 2, "api and vital of one session share a message"

    dead = await read_topics(k.bootstrap_servers, [k.topic_dead_letter], until=lambda rs: len(rs) >= 3)
    assert len(dead) == 3, "dead_letter=False kept the third send out of the DLQ"
    assert all(r.headers["pulse-table"] == b"dead_letters" and r.doc["reason"] for r in dead)
    assert {r.doc["event_id"] for r in dead} == {invalid[0]["event_id"], "", invalid[2]["event_id"]}


async def test_received_at_and_project_are_stamped_when_asked(settings: Settings) -> None:
    k = settings.kafka
    now = datetime(2026, 11, 23, 10, 0, 5, tzinfo=timezone.utc)
    mine = event("vital", "p1")
    theirs = event("vital", "p1", project="other")
    async with EventProducer(k) as producer:
        result = await producer.send([mine | {"project": ""}, theirs], project="shop", received_at=now)
    assert result.accepted == 1 and "does not match" in result.rejected[0].reason
    records = await read_topics(k.bootstrap_servers, [k.topic_vitals], until=lambda rs: len(rs) >= 1)
    [e] = events_of(records)
    assert e["project"] == "shop" and e["received_at"].startswith("2026-11-23T10:00:05")
