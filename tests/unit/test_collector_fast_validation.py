"""The collector validates JSON-parsed items on the msgspec fast path (``prepare_events(json_items=True)``):
same messages, dead letters, rejections and counts as the pydantic path, byte for byte."""

from __future__ import annotations

import copy
import random
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.ingest import producer as producer_module
from pipeline.ingest.posthog import decode_body, translate_batch
from pipeline.ingest.producer import Prepared, Unreadable, prepare_events
from pipeline.settings import KafkaSettings, Settings

NOW = datetime(2026, 11, 23, 10, 0, 40, tzinfo=timezone.utc)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sdk" / "posthog"
WINDOW = Settings().collector.event_time_window()


def native(rng: random.Random, kind: str, **extra: Any) -> dict[str, Any]:
    base = {"event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "timestamp": "2026-11-23T10:00:30Z",
            "session_id": f"s-{rng.randrange(3)}", "url": "https://shop.example.com/p/42?ref=mail",
            "release": "web@1.2.3"}
    payload = {"vital": {"type": "vital", "vital": {"name": "LCP", "value": rng.random() * 3000}},
               "action": {"type": "action", "action": {"kind": "click", "selector": "button.buy", "tag": "button",
                                                       "text": "Add to cart", "x": 3, "y": 5, "interactive": True}},
               "api": {"type": "api", "api": {"url": "/api/cart", "method": "POST", "status": 200,
                                              "duration_ms": 12.5}},
               "error": {"type": "error", "error": {"exception_type": "TypeError", "message": "x is undefined",
                                                    "stacktrace": [{"filename": "app.js", "lineno": 3}]}}}[kind]
    return base | payload | extra


def batches() -> list[list[Any]]:
    rng = random.Random(3)
    kinds = ["vital", "action", "api"]
    out: list[list[Any]] = [[native(rng, rng.choice(kinds)) for _ in range(n)] for n in (1, 2, 3, 5, 10) * 4]
    out += [
        [native(rng, "vital"), native(rng, "error")],  # an error: pydantic decides the whole batch
        [native(rng, "vital", vital={"name": "LCP", "value": -1})],  # invalid
        [native(rng, "vital"), native(rng, "action", type="nope")],  # one invalid among valid
        [native(rng, "api", api={"url": "/a", "method": "GET", "status": "200", "duration_ms": 1})],  # lax number
        [native(rng, "vital", timestamp="2026-11-23T10:00:30")],  # naive: the fast path declines
        [native(rng, "vital", timestamp="2026-11-23T12:00:30+02:00")],  # an offset kept as written
        [native(rng, "vital", timestamp="2027-11-23T10:00:25Z", sent_at="2027-11-23T10:00:30Z")],  # clock skew
        [native(rng, "vital", timestamp="9999-01-01T00:00:00Z"), native(rng, "vital")],  # out of range
        [native(rng, "vital", project="other")],  # another project's key
        [native(rng, "vital", timestamp="2026-11-23T10:00:30.1234567Z")],  # more than microseconds
        [native(rng, "vital"), "not an object", 42, None],
        [native(rng, "vital"), Unreadable(b'{"broken', "invalid JSON")],
        [{"type": "vital"}],
    ]
    for name in ("js_e_batch", "js_gzip", "python_plain", "python_gzip"):
        request = orjson.loads((FIXTURES / f"{name}.request.json").read_bytes())
        headers = request["headers"]
        batch = decode_body((FIXTURES / f"{name}.body").read_bytes(), content_type=headers.get("Content-Type", ""),
                            content_encoding=headers.get("Content-Encoding"), query=request.get("query", {}),
                            max_bytes=10_000_000)
        out.append(translate_batch(batch, project="shop", received_at=NOW).events)  # type: ignore[arg-type]
    return out


def prepared(items: list[Any], json_items: bool, time_window: Any = WINDOW) -> Prepared:
    return prepare_events(copy.deepcopy(items), kafka=KafkaSettings(), now=NOW, source="http:/api/v1/events",
                          project="shop", received_at=NOW, time_window=time_window, json_items=json_items)


@pytest.mark.parametrize("index", range(len(batches())))
def test_fast_validation_gives_the_same_messages_dead_letters_and_answers(index: int) -> None:
    items = batches()[index]
    assert prepared(items, json_items=True) == prepared(items, json_items=False)


def test_clamped_times_are_encoded_again() -> None:
    items = [native(random.Random(1), "vital", timestamp="9999-01-01T00:00:00Z")]
    clamp = WINDOW.__class__(out_of_range="clamp")
    fast, slow = prepared(items, True, clamp), prepared(items, False, clamp)
    assert fast == slow and orjson.loads(fast.messages[0].value)[0]["timestamp"] == NOW.isoformat()


def test_the_fast_path_is_taken_for_plain_batches_and_declined_for_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = producer_module.validate_items
    monkeypatch.setattr(producer_module, "validate_items", lambda items, **kw: calls.append(len(items)) or real(items, **kw))
    rng = random.Random(2)
    prepared([native(rng, "vital"), native(rng, "action"), native(rng, "api")], json_items=True)
    assert calls == []  # no pydantic
    prepared([native(rng, "vital"), native(rng, "error")], json_items=True)
    assert calls == [2]
    prepared([native(rng, "vital")], json_items=False)
    assert calls == [2, 1]


def test_unix_time_and_fractions_match() -> None:
    rng = random.Random(5)
    items = [native(rng, "vital", timestamp=(NOW - timedelta(seconds=s)).isoformat()) for s in (0.5, 1.25, 59)]
    items.append(native(rng, "vital", timestamp=(NOW - timedelta(seconds=3)).astimezone(timezone(timedelta(hours=-5)))
                        .isoformat()))
    assert prepared(items, True) == prepared(items, False)
