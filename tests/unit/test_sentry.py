"""Sentry SDK payloads -> native events (pipeline/ingest/sentry.py).

The ``*.envelope`` fixtures are what the real Python SDK sent (tests/fixtures/sdk/capture_sentry.py
recorded them); ``browser_event.json`` is hand-written after the documented event payload, shaped as
@sentry/browser sends it. The small envelopes below cover the edge cases of the format.
"""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sentry_sdk.envelope import Envelope as SdkEnvelope
from sentry_sdk.envelope import Item as SdkItem

from pipeline.contract.events import EVENT_ADAPTER
from pipeline.ingest.sentry import (
    translate_span,
    MESSAGE_EXCEPTION_TYPE,
    EnvelopeError,
    SentryEnvelope,
    dsn_public_key,
    parse_auth,
    parse_envelope,
    translate_envelope,
    translate_event,
    translate_session,
    translate_store,
    translate_transaction,
)
from pipeline.common import browser_and_os

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sdk" / "sentry"
NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
CAPTURED = ["exception", "message", "scope", "transaction", "session"]


def envelope_bytes(name: str) -> bytes:
    return (FIXTURES / f"{name}.envelope").read_bytes()


def request_meta(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.headers.json").read_text())


def translate(body: bytes) -> Any:
    return translate_envelope(parse_envelope(body), project="shop", received_at=NOW)


def payload_of(name: str, item_type: str) -> dict[str, Any]:
    env = parse_envelope(envelope_bytes(name))
    return orjson.loads(next(i for i in env.items if i.type == item_type).payload)


def valid(events: list[dict[str, Any]]) -> list[Any]:
    return [EVENT_ADAPTER.validate_python(e) for e in events]


def event(**fields: Any) -> dict[str, Any]:
    base = {"event_id": "9ec79c33ec9942ab8353589fcb2e04dc", "timestamp": "2026-11-23T10:00:00Z"}
    return {**base, **fields}


def one_error(sentry_event: Any, **kw: Any) -> dict[str, Any]:
    [out] = translate_event(sentry_event, project="shop", received_at=NOW, **kw)
    valid([out])
    return out


def iso(value: str) -> datetime:
    return datetime.fromisoformat(value)


# ------------------------------------------------------------------ real captured envelopes


@pytest.mark.parametrize("name", CAPTURED)
def test_every_captured_envelope_parses_and_translates_into_valid_events(name: str) -> None:
    meta = request_meta(name)
    assert meta["path"] == "/api/42/envelope/"
    assert parse_auth(meta["headers"], {}) == "publickey"
    result = translate(envelope_bytes(name))
    assert result.problems == []
    assert sum(result.counts.values()) >= 1
    for model in valid(result.events):
        assert model.project == "shop"
        assert model.release == "shop@1.4.2"
        assert model.environment == "staging"
        assert model.sdk is not None and model.sdk.name.startswith("sentry.python")


@pytest.mark.parametrize("name", CAPTURED)
def test_we_read_envelopes_as_the_sdk_itself_does(name: str) -> None:
    body = envelope_bytes(name)
    theirs, ours = SdkEnvelope.deserialize(body), parse_envelope(body)
    assert ours.headers == theirs.headers
    assert [(i.type, i.headers, orjson.loads(i.payload)) for i in ours.items] == [
        (i.type, i.headers, orjson.loads(i.get_bytes())) for i in theirs.items]


def test_envelope_the_sdk_serializes_with_a_binary_attachment() -> None:
    attachment = b"first\nsecond\r\n\x00\xff"
    sdk_envelope = SdkEnvelope(headers={"event_id": "9ec79c33ec9942ab8353589fcb2e04dc"})
    sdk_envelope.add_item(SdkItem(payload=attachment, type="attachment", filename="dump.bin"))
    sdk_envelope.add_event(event(message="after the attachment"))
    env = parse_envelope(sdk_envelope.serialize())
    assert [i.type for i in env.items] == ["attachment", "event"]
    assert env.items[0].payload == attachment
    result = translate_envelope(env, project="shop", received_at=NOW)
    assert result.counts == {"attachment": 1, "event": 1} and result.problems == []
    assert [e["error"]["message"] for e in result.events] == ["after the attachment"]


def test_gzip_body_as_sent_is_the_recorded_envelope() -> None:
    assert request_meta("exception")["headers"]["Content-Encoding"] == "gzip"
    raw = (FIXTURES / "exception.envelope.gz").read_bytes()
    assert gzip.decompress(raw) == envelope_bytes("exception")


def test_chained_exception_uses_the_raised_one_with_its_frames() -> None:
    env = parse_envelope(envelope_bytes("exception"))
    payload = payload_of("exception", "event")
    assert [e["type"] for e in payload["exception"]["values"]] == ["ValueError", "PaymentError"]
    result = translate_envelope(env, project="shop", received_at=NOW)
    assert result.counts == {"event": 1}
    assert result.event_id == env.headers["event_id"] == payload["event_id"]
    [out] = result.events
    assert out["type"] == "error"
    assert out["event_id"] == str(uuid.UUID(payload["event_id"]))
    assert iso(out["timestamp"]) == iso(payload["timestamp"])
    assert iso(out["sent_at"]) == iso(env.headers["sent_at"])
    assert iso(out["received_at"]) == NOW
    assert out["session_id"] == payload["contexts"]["trace"]["trace_id"]
    assert out["sdk"] == {"name": payload["sdk"]["name"], "version": payload["sdk"]["version"]}
    error = out["error"]
    assert error["exception_type"] == "PaymentError"
    assert error["message"] == "payment failed for amount '12,50'"
    assert error["mechanism"] == {"type": "generic", "handled": True}
    assert error["handled"] is True and error["level"] == "error"
    frames = error["stacktrace"]
    assert [f["function"] for f in frames] == ["step_exception", "checkout"]  # outermost first
    assert all(f["filename"] == "capture_sentry.py" and f["module"] == "__main__" and f["in_app"] for f in frames)
    assert all(isinstance(f["lineno"], int) and f["lineno"] > 0 for f in frames)
    assert "raise PaymentError" in frames[-1]["context_line"]
    assert "user_id" not in out and "url" not in out


def test_capture_message_becomes_a_message_error() -> None:
    [out] = translate(envelope_bytes("message")).events
    assert out["error"]["exception_type"] == MESSAGE_EXCEPTION_TYPE == "Message"
    assert out["error"]["message"] == "Checkout took longer than 5 s"
    assert out["error"]["level"] == "warning"
    assert out["error"]["stacktrace"] == [] and "mechanism" not in out["error"]


def test_scope_data_user_tags_fingerprint_breadcrumbs() -> None:
    payload = payload_of("scope", "event")
    [out] = translate(envelope_bytes("scope")).events
    assert payload["user"]["email"] == "ann@example.com"
    assert out["user_id"] == "user-17"  # the id, never the e-mail or username
    error = out["error"]
    assert error["exception_type"] == "KeyError" and error["message"] == "'total'"
    assert error["tags"] == {"page": "/cart", "ab_test": "checkout-v2"}
    assert error["fingerprint"] == ["cart", "{{ default }}"]
    crumbs = error["breadcrumbs"]
    assert [c["category"] for c in crumbs] == ["ui.click", "navigation", "shop.cart"]
    assert crumbs[0]["message"] == "button#checkout" and crumbs[0]["level"] == "info"
    assert crumbs[1]["data"] == {"from": "/cart", "to": "/checkout"}
    assert crumbs[2] == {**crumbs[2], "message": "cart total recomputed", "level": "warning"}
    assert [iso(c["timestamp"]) for c in crumbs] == [iso(c["timestamp"]) for c in payload["breadcrumbs"]["values"]]


def test_transaction_measurements_become_vitals_and_http_spans_api_calls() -> None:
    payload = payload_of("transaction", "transaction")
    result = translate(envelope_bytes("transaction"))
    assert result.counts == {"transaction": 1}
    assert result.event_id == payload["event_id"]
    valid(result.events)
    vitals = {e["vital"]["name"]: e for e in result.events if e["type"] == "vital"}
    assert {n: e["vital"]["value"] for n, e in vitals.items()} == {"LCP": 1234, "FCP": 456.5, "CLS": 0.12, "TTFB": 89}
    assert "fp" in payload["measurements"]  # sent, but not a vital we keep
    start = iso(payload["start_timestamp"])
    assert all(iso(e["timestamp"]) == start for e in vitals.values())
    calls = [e for e in result.events if e["type"] == "api"]
    spans = [s for s in payload["spans"] if s["op"] == "http.client"]
    assert len(calls) == len(spans) == 2
    for call, span in zip(calls, spans):
        assert iso(call["timestamp"]) == iso(span["start_timestamp"])
        duration = (iso(span["timestamp"]) - iso(span["start_timestamp"])).total_seconds() * 1000
        assert call["api"]["duration_ms"] == pytest.approx(duration)
        assert call["api"]["method"] == "GET" and call["api"]["kind"] == "api"
    assert calls[0]["api"]["url"].endswith("/api/products/7?currency=EUR")  # the query comes from http.query
    assert [c["api"]["status"] for c in calls] == [200, 404]
    for out in result.events:
        assert out["route"] == "/product/:id"
        assert out["session_id"] == payload["contexts"]["trace"]["trace_id"]
        assert uuid.UUID(out["event_id"]).version == 5
    assert len({e["event_id"] for e in result.events}) == len(result.events)


def test_session_items_are_counted_not_translated() -> None:
    result = translate(envelope_bytes("session"))
    assert result.counts == {"session": 1}
    assert result.events == [] and result.problems == [] and result.event_id is None
    assert translate_session(payload_of("session", "session"), project="shop", received_at=NOW) == []


# ------------------------------------------------------------------ browser-shaped event


def browser_event() -> dict[str, Any]:
    return json.loads((FIXTURES / "browser_event.json").read_text())


def test_browser_event() -> None:
    out = one_error(browser_event())
    assert out["event_id"] == "7b3c1f0e-9a2d-4c8b-8e6f-5a4d3c2b1a09"
    assert iso(out["timestamp"]) == datetime(2026, 11, 23, 10, 22, 32, 481000, tzinfo=timezone.utc)
    assert out["session_id"] == "4c79f60c11214eb38604f4ae0781bfb2"
    assert out["user_id"] == "u-981"
    assert out["url"] == "https://shop.example/product/42?ref=newsletter"
    assert out["route"] == "/product/:id"
    assert browser_and_os(out["user_agent"])[:3] == ("Chrome", "124", "Windows")
    assert out["sdk"] == {"name": "sentry.javascript.browser", "version": "8.33.1"}
    assert out["release"] == "shop-web@2.3.0" and out["environment"] == "production"
    error = out["error"]
    assert error["exception_type"] == "TypeError"
    assert error["message"] == "Cannot read properties of undefined (reading 'price')"
    assert error["handled"] is False
    assert error["mechanism"] == {"type": "auto.browser.global_handlers.onerror", "handled": False}
    frames = error["stacktrace"]
    assert [f["function"] for f in frames] == ["commitHookEffectListMount", "ProductPage", "renderPrice"]
    assert [f["in_app"] for f in frames] == [False, True, True]  # node_modules inferred, no in_app sent
    assert frames[2]["filename"] == "https://shop.example/static/js/main.abc123.js"  # the URL, not the path
    assert (frames[2]["lineno"], frames[2]["colno"]) == (1, 18822)
    assert frames[2]["context_line"] == "const total = product.price * qty;"
    crumbs = error["breadcrumbs"]
    assert [c["category"] for c in crumbs] == ["navigation", "ui.click", "fetch"]
    assert iso(crumbs[0]["timestamp"]) == datetime(2026, 11, 23, 10, 22, 20, 112000, tzinfo=timezone.utc)
    assert crumbs[2]["data"]["status_code"] == 500
    assert error["tags"] == {"page_type": "product", "experiment": "price-v2"}


def test_browser_envelope_without_lengths_as_the_js_sdk_writes_it() -> None:
    body = b"\n".join([
        orjson.dumps({"event_id": "7b3c1f0e9a2d4c8b8e6f5a4d3c2b1a09", "sent_at": "2026-11-23T10:22:33.000Z",
                      "sdk": {"name": "sentry.javascript.browser", "version": "8.33.1"}}),
        b'{"type":"event"}', orjson.dumps(browser_event()),
        b'{"type":"client_report"}', b'{"timestamp":1795429353.0,"discarded_events":[]}',
    ])
    result = translate(body)
    assert result.counts == {"event": 1, "client_report": 1}
    assert result.event_id == "7b3c1f0e9a2d4c8b8e6f5a4d3c2b1a09"
    [out] = valid(result.events)
    assert out.sent_at == datetime(2026, 11, 23, 10, 22, 33, tzinfo=timezone.utc)
    assert out.error.exception_type == "TypeError"


# ------------------------------------------------------------------ envelope format


def test_length_prefixed_payload_may_contain_newlines() -> None:
    attachment = b"line 1\nline 2\n\n"
    body = (b'{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc"}\n'
            + b'{"type":"attachment","length":%d,"content_type":"text/plain","filename":"log.txt"}\n' % len(attachment)
            + attachment + b"\n"
            + b'{"type":"event","length":41,"content_type":"application/json"}\n'
            + b'{"message":"hello world","level":"error"}\n')
    env = parse_envelope(body)
    assert [i.type for i in env.items] == ["attachment", "event"]
    assert env.items[0].payload == attachment
    assert env.items[0].headers["filename"] == "log.txt"
    assert orjson.loads(env.items[1].payload) == {"message": "hello world", "level": "error"}


@pytest.mark.parametrize("body, payloads", [
    # the spec's examples (develop.sentry.dev/sdk/envelopes/#full-examples)
    (b'{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc"}\n{"type":"attachment","length":10,"content_type":"text/plain"}\n'
     b'\xef\xbb\xbfHello\r\n\n{"type":"event","length":41}\n{"message":"hello world","level":"error"}',
     [b"\xef\xbb\xbfHello\r\n", b'{"message":"hello world","level":"error"}']),
    (b'{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc"}\n'
     b'{"type":"attachment","length":0}\n\n{"type":"attachment","length":0}\n\n', [b"", b""]),
    (b'{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc"}\n'
     b'{"type":"attachment","length":0}\n\n{"type":"attachment","length":0}\n', [b"", b""]),  # no final newline
    (b'{}\n{"type":"attachment"}\nhelloworld\n', [b"helloworld"]),
    (b'{}\n{"type":"attachment"}\nhelloworld', [b"helloworld"]),  # no final newline
    (b'{}\n{"type":"attachment"}\nhello\r\n', [b"hello\r"]),  # \r belongs to an implicit-length payload
    (b'{}\n{"type":"session"}\n{"started":"2020-02-07T14:16:00Z"}', [b'{"started":"2020-02-07T14:16:00Z"}']),
    (b'{}\n\n{"type":"a"}\none\n\n\n{"type":"b","length":3}\ntwo\n\n', [b"one", b"two"]),  # empty lines between items
    (b'{"type":"a"}', []),  # header only, no newline
    (b'{}\n', []),
    (b'{}\n{"type":"attachment","length":0}', [b""]),  # header at the very end, empty payload
])
def test_envelope_framing(body: bytes, payloads: list[bytes]) -> None:
    assert [i.payload for i in parse_envelope(body).items] == payloads


@pytest.mark.parametrize("body, message", [
    (b"", "envelope header: body is empty"),
    (b"not json\n", "envelope header is not JSON"),
    (b"[1]\n", "envelope header is not a JSON object"),
    (b'{}\n{"type":"event"}\n{}\n{"type": oops}\n{}', "item 2 (byte 23): header is not JSON"),
    (b'{}\n["event"]\n', "item 1 (byte 3): header is not a JSON object"),
    (b'{}\n{"length":2}\nab\n', "item 1 (byte 3): header has no type"),
    (b'{}\n{"type":"event","length":-1}\n', "item 1 (byte 3): length -1 is not a non-negative integer"),
    (b'{}\n{"type":"event","length":"2"}\nab\n', "item 1 (byte 3): length '2' is not a non-negative integer"),
    (b'{}\n{"type":"event","length":10}\nshort\n', "item 1 (byte 3): payload of 10 bytes, but only 6 remain"),
    (b'{}\n{"type":"event","length":2}\nabc\n', "item 1 (byte 3): payload of 2 bytes is followed by b'c', not a newline"),
])
def test_malformed_envelopes_say_what_and_where(body: bytes, message: str) -> None:
    with pytest.raises(EnvelopeError) as exc:
        parse_envelope(body)
    assert str(exc.value).startswith(message)
    assert isinstance(exc.value, ValueError)


# ------------------------------------------------------------------ envelope translation


def test_unknown_item_types_are_counted_never_errors() -> None:
    types = ["client_report", "attachment", "profile", "replay_event", "check_in", "statsd", "log",
             "brand_new_type"]
    body = b"{}\n" + b"".join(b'{"type":"%s"}\n{"x":1}\n' % t.encode() for t in types)
    result = translate(body)
    assert result.counts == {t: 1 for t in types}
    assert result.events == [] and result.problems == []


def test_non_json_attachment_is_skipped_and_the_event_still_translated() -> None:
    binary = b"\x89PNG\r\n\x1a\n\x00\x00"
    body = (b'{}\n{"type":"attachment","length":%d,"content_type":"image/png"}\n' % len(binary) + binary + b"\n"
            + b'{"type":"event"}\n' + orjson.dumps(event(message="with a screenshot")) + b"\n")
    result = translate(body)
    assert result.counts == {"attachment": 1, "event": 1}
    assert result.problems == []
    assert [e["error"]["message"] for e in result.events] == ["with a screenshot"]


def test_unreadable_item_is_a_problem_and_the_others_still_count() -> None:
    body = (b'{}\n{"type":"event"}\n{"message": broken\n{"type":"transaction"}\n[1, 2]\n'
            + b'{"type":"event"}\n' + orjson.dumps(event(message="fine")) + b"\n")
    result = translate(body)
    assert result.counts == {"event": 2, "transaction": 1}
    assert len(result.problems) == 2
    assert result.problems[0].startswith("item 1 (event): payload is not JSON")
    assert result.problems[1] == "item 2 (transaction): payload is list, not an object"
    assert [e["error"]["message"] for e in result.events] == ["fine"]
    assert result.event_id == "9ec79c33ec9942ab8353589fcb2e04dc"  # no header id: the first event's


def test_event_id_hex_and_uuid_forms() -> None:
    dashed = "12c2d058-d584-4270-9aa2-eca08bf20986"
    assert one_error(event(event_id="12c2d058d58442709aa2eca08bf20986"))["event_id"] == dashed
    assert one_error(event(event_id=dashed))["event_id"] == dashed
    env = SentryEnvelope(headers={"event_id": dashed}, items=[])
    assert translate_envelope(env, project="shop", received_at=NOW).event_id == "12c2d058d58442709aa2eca08bf20986"


def test_event_without_a_usable_id_gets_one_derived_from_its_content() -> None:
    first = one_error({"message": "no id", "event_id": "nope"})
    again = one_error({"message": "no id", "event_id": "nope"})
    other = one_error({"message": "no id either"})
    assert first["event_id"] == again["event_id"] != other["event_id"]
    assert first["session_id"] == first["event_id"]


def test_store_body() -> None:
    result = translate_store(browser_event(), project="shop", received_at=NOW)
    assert result.counts == {"event": 1} and result.problems == []
    assert result.event_id == "7b3c1f0e9a2d4c8b8e6f5a4d3c2b1a09"
    assert [e.error.exception_type for e in valid(result.events)] == ["TypeError"]
    tx = translate_store(payload_of("transaction", "transaction"), project="shop", received_at=NOW)
    assert tx.counts == {"transaction": 1} and len(tx.events) == 6
    bad = translate_store([1], project="shop", received_at=NOW)
    assert bad.events == [] and bad.problems == ["store body is list, not an object"]


# ------------------------------------------------------------------ field mapping


@pytest.mark.parametrize("level, ours", [
    ("fatal", "fatal"), ("critical", "fatal"), ("error", "error"), ("warning", "warning"), ("warn", "warning"),
    ("info", "info"), ("log", "info"), ("debug", "debug"), ("WARNING", "warning"), ("verbose", "error"),
    (None, "error"), (3, "error"),
])
def test_level_mapping(level: Any, ours: str) -> None:
    assert one_error(event(message="m", level=level))["error"]["level"] == ours


@pytest.mark.parametrize("fields, text", [
    ({"message": "plain"}, "plain"),
    ({"message": {"formatted": "Hello world", "message": "Hello %s"}}, "Hello world"),
    ({"logentry": {"message": "Hello %s", "params": ["world"]}}, "Hello %s"),
    ({"logentry": {"formatted": "Hello world", "message": "Hello %s"}, "message": "other"}, "Hello world"),
    ({}, ""),
])
def test_message_only_events(fields: dict[str, Any], text: str) -> None:
    error = one_error(event(**fields))["error"]
    assert (error["exception_type"], error["message"]) == ("Message", text)


def test_exception_as_flat_list_without_type() -> None:
    error = one_error(event(exception=[{"value": "boom", "mechanism": {"handled": False}}]))["error"]
    assert (error["exception_type"], error["message"]) == ("Error", "boom")
    assert error["mechanism"] == {"type": "generic", "handled": False} and error["handled"] is False


def test_tags_as_pairs_are_stringified() -> None:
    tags = [["page", "/cart"], ["retries", 3], ["beta", True], ["ratio", 0.5], ["gone", None], ["bad"], ["obj", {"a": 1}]]
    assert one_error(event(tags=tags))["error"]["tags"] == {
        "page": "/cart", "retries": "3", "beta": "true", "ratio": "0.5"}


@pytest.mark.parametrize("crumbs", [
    {"values": [{"timestamp": 1795429340.5, "message": "a"}, {"timestamp": "2026-11-23T10:22:21Z", "message": "b"}]},
    [{"timestamp": 1795429340.5, "message": "a"}, {"timestamp": "2026-11-23T10:22:21Z", "message": "b"}],
])
def test_breadcrumbs_as_list_or_values_with_float_or_string_times(crumbs: Any) -> None:
    out = one_error(event(breadcrumbs=crumbs))["error"]["breadcrumbs"]
    assert [c["message"] for c in out] == ["a", "b"]
    assert [iso(c["timestamp"]) for c in out] == [
        datetime(2026, 11, 23, 10, 22, 20, 500000, tzinfo=timezone.utc),
        datetime(2026, 11, 23, 10, 22, 21, tzinfo=timezone.utc)]


@pytest.mark.parametrize("timestamp, expected", [
    ("2026-11-23T11:00:00+01:00", datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)),
    ("2026-11-23T10:00:00.123456789Z", datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=timezone.utc)),
    ("2026-11-23T10:00:00", datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)),
    (1795428000, datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)),
    ("1795428000.25", datetime(2026, 11, 23, 10, 0, 0, 250000, tzinfo=timezone.utc)),
    (None, NOW), ("yesterday", NOW), (1e300, NOW), (True, NOW),
])
def test_timestamps(timestamp: Any, expected: datetime) -> None:
    assert iso(one_error(event(timestamp=timestamp, message="m"))["timestamp"]) == expected


def test_user_identifiers() -> None:
    out = one_error(event(user={"id": 42, "email": "ann@example.com", "ip_address": "10.1.2.3", "username": "ann"}))
    assert out["user_id"] == "42" and out["session_id"] == "42"
    out = one_error(event(user={"email": "ann@example.com", "ip_address": "10.1.2.3"}))
    assert "user_id" not in out
    assert "ann@example.com" not in json.dumps(out) and "10.1.2.3" not in json.dumps(out)


def test_session_id_prefers_trace_then_user_then_event() -> None:
    trace = {"trace": {"trace_id": "4c79f60c11214eb38604f4ae0781bfb2"}}
    assert one_error(event(contexts=trace, user={"id": "u1"}))["session_id"] == "4c79f60c11214eb38604f4ae0781bfb2"
    assert one_error(event(user={"id": "u1"}))["session_id"] == "u1"
    assert one_error(event())["session_id"] == "9ec79c33-ec99-42ab-8353-589fcb2e04dc"
    assert len(one_error(event(user={"id": "u" * 300}))["session_id"]) == 128


def test_url_route_and_user_agent_fallbacks() -> None:
    out = one_error(event(tags={"url": "https://shop.example/cart"}, transaction="checkout.views.cart",
                          contexts={"browser": {"name": "Firefox", "version": "121.0"},
                                    "os": {"name": "Mac OS X", "version": "14.2"}}))
    assert out["url"] == "https://shop.example/cart"
    assert "route" not in out  # not a route
    assert out["user_agent"] == "Firefox/121.0 (Mac OS X 14.2)"
    assert browser_and_os(out["user_agent"])[:3] == ("Firefox", "121", "Mac OS X")
    out = one_error(event(request={"url": "https://api.example/orders", "query_string": "page=2",
                                   "headers": [["user-agent", "curl/8.5"]]}))
    assert (out["url"], out["user_agent"]) == ("https://api.example/orders?page=2", "curl/8.5")


@pytest.mark.parametrize("frame, in_app", [
    ({"abs_path": "https://shop.example/static/js/main.js"}, True),
    ({"filename": "app/views.py"}, True),
    ({"abs_path": "webpack://shop/./node_modules/lodash/lodash.js"}, False),
    ({"abs_path": "/usr/lib/python3.11/site-packages/requests/api.py", "filename": "requests/api.py"}, False),
    ({"filename": "chrome-extension://abcdef/content.js"}, False),
    ({"filename": "<anonymous>"}, False),
    ({"filename": "[native code]"}, False),
    ({"function": "lonely"}, True),
    ({"abs_path": "webpack://shop/./node_modules/x.js", "in_app": True}, True),  # the SDK's word wins
    ({"filename": "app/views.py", "in_app": False}, False),
])
def test_in_app_inferred_only_when_missing(frame: dict[str, Any], in_app: bool) -> None:
    exception = {"type": "E", "stacktrace": {"frames": [frame]}}
    [out] = one_error(event(exception={"values": [exception]}))["error"]["stacktrace"]
    assert out["in_app"] is in_app


def test_frames_fall_back_to_the_crashed_thread() -> None:
    threads = {"values": [{"id": 1, "stacktrace": {"frames": [{"function": "idle"}]}},
                          {"id": 2, "current": True, "stacktrace": {"frames": [{"function": "work", "lineno": 3}]}}]}
    error = one_error(event(message="m", threads=threads))["error"]
    assert [f["function"] for f in error["stacktrace"]] == ["work"]


def test_values_are_cut_to_the_contract_limits() -> None:
    frames = [{"function": f"f{i}", "filename": "a.js", "lineno": i} for i in range(300)]
    crumbs = [{"message": f"c{i}"} for i in range(250)]
    sentry_event = event(
        exception={"values": [{"type": "T" * 600, "value": "v" * 20_000, "stacktrace": {"frames": frames}}]},
        breadcrumbs=crumbs, tags={"k" * 600: "v" * 600}, fingerprint=["f" * 600],
        release="r" * 600, environment="e" * 600, transaction="/" + "p" * 600,
        request={"url": "https://x.example/" + "u" * 20_000, "headers": {"User-Agent": "a" * 600}},
        sdk={"name": "n" * 600, "version": "1"})
    error = one_error(sentry_event)["error"]
    assert len(error["exception_type"]) == 512 and len(error["message"]) == 16_384
    assert len(error["stacktrace"]) == 250
    assert error["stacktrace"][0]["function"] == "f50" and error["stacktrace"][-1]["function"] == "f299"  # innermost kept
    assert len(error["breadcrumbs"]) == 200 and error["breadcrumbs"][-1]["message"] == "c249"  # newest kept
    assert error["tags"] == {"k" * 512: "v" * 512} and error["fingerprint"] == ["f" * 512]


# ------------------------------------------------------------------ transactions


def browser_transaction(**fields: Any) -> dict[str, Any]:
    tx = {
        "type": "transaction", "event_id": "0a4b3c2d1e0f4a5b8c7d6e5f4a3b2c1d", "transaction": "/product/:id",
        "start_timestamp": 1795429350.0, "timestamp": 1795429353.5,
        "contexts": {"trace": {"trace_id": "4c79f60c11214eb38604f4ae0781bfb2", "op": "pageload",
                               "data": {"lcp.element": "body > div#app > img.hero"}}},
        "request": {"url": "https://shop.example/product/42"},
        "measurements": {"lcp": {"value": 2315.5, "unit": "millisecond"}, "cls": {"value": 0.02, "unit": ""},
                         "inp": {"value": 0.18, "unit": "second"}, "fid": {"value": 3},
                         "ttfb.requestTime": {"value": 50, "unit": "millisecond"}, "fp": {"value": 900, "unit": "millisecond"},
                         "fcp": {"value": -1, "unit": "millisecond"}, "ttfb": {"value": 80, "unit": "byte"}},
        "spans": [
            {"span_id": "a1", "op": "http.client", "description": "POST https://shop.example/api/cart",
             "start_timestamp": 1795429351.0, "timestamp": 1795429351.25,
             "data": {"http.response.status_code": 201, "type": "fetch", "http.response_content_length": 512}},
            {"span_id": "a2", "op": "resource.script", "description": "https://shop.example/static/js/main.abc123.js",
             "start_timestamp": 1795429350.1, "timestamp": 1795429350.4, "data": {"http.response_transfer_size": 20480}},
            {"span_id": "a3", "op": "resource.img", "description": "https://cdn.example/hero.webp",
             "start_timestamp": 1795429350.2, "timestamp": 1795429350.3},
            {"span_id": "a4", "op": "http", "description": "GET /api/stock", "start_timestamp": 1795429352.0,
             "timestamp": 1795429352.1, "tags": {"http.status_code": "503"}},
            {"span_id": "a5", "op": "ui.long-task", "description": "Main UI thread blocked",
             "start_timestamp": 1795429350.5, "timestamp": 1795429350.7},
            {"span_id": "a6", "op": "http.client", "description": "GET https://x.example/no-end", "start_timestamp": 1},
            {"span_id": "a7", "op": "resource.fetch", "data": {"url": "https://shop.example/api/x"},
             "start_timestamp": 1795429352.5, "timestamp": 1795429352.4},  # ends before it starts
            "not a span",
        ],
        "sdk": {"name": "sentry.javascript.browser", "version": "8.33.1"},
    }
    return {**tx, **fields}


def test_browser_transaction() -> None:
    events = translate_transaction(browser_transaction(), project="shop", received_at=NOW)
    valid(events)
    vitals = {e["vital"]["name"]: e["vital"] for e in events if e["type"] == "vital"}
    assert vitals == {"LCP": {"name": "LCP", "value": 2315.5, "element": "body > div#app > img.hero"},
                      "CLS": {"name": "CLS", "value": 0.02},
                      "INP": {"name": "INP", "value": pytest.approx(180.0)}, "FID": {"name": "FID", "value": 3.0}}
    calls = {e["api"]["url"]: e for e in events if e["type"] == "api"}
    assert list(calls) == ["https://shop.example/api/cart", "https://shop.example/static/js/main.abc123.js",
                           "https://cdn.example/hero.webp", "/api/stock"]
    cart = calls["https://shop.example/api/cart"]
    assert cart["api"] == {"kind": "api", "url": "https://shop.example/api/cart", "method": "POST", "status": 201,
                           "duration_ms": 250.0, "initiator": "fetch", "size_bytes": 512}
    assert iso(cart["timestamp"]) == datetime.fromtimestamp(1795429351.0, timezone.utc)
    script = calls["https://shop.example/static/js/main.abc123.js"]["api"]
    assert (script["kind"], script["initiator"], script["method"], script["size_bytes"]) == ("resource", "script", "GET", 20480)
    assert "status" not in script
    assert calls["/api/stock"]["api"]["status"] == 503
    for e in events:
        assert e["session_id"] == "4c79f60c11214eb38604f4ae0781bfb2"
        assert e["url"] == "https://shop.example/product/42" and e["route"] == "/product/:id"
    assert {iso(e["timestamp"]) for e in events if e["type"] == "vital"} == {
        datetime.fromtimestamp(1795429350.0, timezone.utc)}
    [model] = valid([cart])
    assert model.api.ok is True


def test_transaction_derived_ids_are_deterministic() -> None:
    first = translate_transaction(browser_transaction(), project="shop", received_at=NOW)
    retried = translate_transaction(browser_transaction(), project="shop", received_at=NOW + timedelta(minutes=1))
    dashed = translate_transaction(browser_transaction(event_id="0a4b3c2d-1e0f-4a5b-8c7d-6e5f4a3b2c1d"),
                                   project="shop", received_at=NOW)
    other = translate_transaction(browser_transaction(event_id="1a4b3c2d1e0f4a5b8c7d6e5f4a3b2c1d"),
                                  project="shop", received_at=NOW)
    ids = [e["event_id"] for e in first]
    assert len(set(ids)) == len(ids) == 8
    assert ids == [e["event_id"] for e in retried] == [e["event_id"] for e in dashed]
    assert not set(ids) & {e["event_id"] for e in other}


def test_transaction_without_measurements_or_spans() -> None:
    assert translate_transaction(browser_transaction(measurements=None, spans={}), project="shop", received_at=NOW) == []
    assert translate_transaction("nope", project="shop", received_at=NOW) == []


# ------------------------------------------------------------------ authentication


@pytest.mark.parametrize("headers, query, key", [
    ({"X-Sentry-Auth": "Sentry sentry_version=7, sentry_client=sentry.python/2.75.0, sentry_key=abc123, sentry_secret=s"},
     {}, "abc123"),
    ({"x-sentry-auth": "sentry  Sentry_Key = abc123 ,sentry_version=7"}, {}, "abc123"),
    ({"X-Sentry-Auth": 'Sentry sentry_key="abc123"'}, {}, "abc123"),
    ({"Authorization": "Sentry sentry_key=abc123, sentry_version=7"}, {}, "abc123"),
    ({"Authorization": "sentry_key=abc123"}, {}, "abc123"),
    ({"Authorization": "Bearer abc123"}, {"sentry_key": "q1"}, "q1"),
    ({}, {"sentry_key": "q1", "sentry_version": "7"}, "q1"),
    ({"X-Sentry-Auth": "Sentry sentry_version=7"}, {}, None),
    ({"X-Sentry-Auth": "Sentry sentry_key="}, {"sentry_key": " "}, None),
    ({}, {}, None),
])
def test_parse_auth(headers: dict[str, str], query: dict[str, str], key: str | None) -> None:
    assert parse_auth(headers, query) == key


def test_dsn_public_key() -> None:
    assert dsn_public_key("https://e12d836b15bb49d7bbf99e64295d995b:@sentry.io/42") == "e12d836b15bb49d7bbf99e64295d995b"
    assert dsn_public_key("http://publickey@127.0.0.1:9000/42") == "publickey"
    assert dsn_public_key("https://sentry.io/42") is None
    assert dsn_public_key(42) is None


# ------------------------------------------------------------------ never raise on odd input

_KEYS = ["event_id", "timestamp", "start_timestamp", "exception", "values", "type", "value", "stacktrace", "frames",
         "filename", "abs_path", "function", "in_app", "lineno", "colno", "mechanism", "handled", "message",
         "logentry", "formatted", "level", "breadcrumbs", "data", "tags", "user", "id", "request", "url", "headers",
         "User-Agent", "contexts", "trace", "trace_id", "browser", "os", "name", "version", "release", "environment",
         "fingerprint", "sdk", "transaction", "measurements", "lcp", "cls", "unit", "spans", "op", "description",
         "span_id", "http.response.status_code", "threads", "current", "query_string"]
_SCALARS = (st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False)
            | st.text(max_size=20) | st.sampled_from(["http.client", "resource.img", "GET https://x/y", "millisecond",
                                                     "2026-11-23T10:00:00Z", "9ec79c33ec9942ab8353589fcb2e04dc"]))
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=5), inner, max_size=6), max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_KEYS), _JSON, max_size=10))
def test_odd_events_and_transactions_never_raise_and_always_validate(doc: dict[str, Any]) -> None:
    valid(translate_event(doc, project="shop", received_at=NOW))
    valid(translate_transaction(doc, project="shop", received_at=NOW))
    valid(translate_store(doc, project="shop", received_at=NOW).events)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"{}", b'{"type":"event"}', b'{"type":"event","length":3}', b"\n", b"abc", b"{",
                                 b'{"message":"x"}', b"\r", b'{"type":"x","length":0}']), max_size=8))
def test_any_bytes_parse_or_raise_envelope_error(parts: list[bytes]) -> None:
    try:
        env = parse_envelope(b"\n".join(parts))
    except EnvelopeError:
        return
    valid(translate_envelope(env, project="shop", received_at=NOW).events)


# ------------------------------------------------------------------ standalone spans (INP)

TRACE = "d3d20f000885466b8c8f947c9b92b8d3"


def inp_span_v2(value: float = 312.0, **attributes: Any) -> dict[str, Any]:
    """The shape browser SDKs stream INP in: a span v2 with typed attributes (values made up here)."""
    attrs = {"sentry.op": "ui.interaction.click", "sentry.origin": "auto.http.browser.inp",
             "browser.web_vital.inp.value": value, "sentry.transaction": "/checkout",
             "sentry.environment": "staging", "sentry.release": "web@3.2.0",
             "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36",
             "sentry.sdk.name": "sentry.javascript.browser", "sentry.sdk.version": "11.12.0",
             "browser.web_vital.inp.target": "body > button#pay", **attributes}
    return {"name": "Click", "span_id": "a6f029fbe0e2389a", "trace_id": TRACE,
            "start_timestamp": 1795429350.25, "end_timestamp": 1795429350.6, "is_segment": False, "status": "ok",
            "attributes": {k: {"value": v, "type": "double" if isinstance(v, float) else "string"}
                           for k, v in attrs.items()}}


def span_envelope(payload: dict[str, Any], content_type: str) -> bytes:
    return (b'{"sent_at":"2026-11-23T10:00:00Z"}\n' + orjson.dumps({"type": "span", "content_type": content_type})
            + b"\n" + orjson.dumps(payload) + b"\n")


def test_a_streamed_inp_span_becomes_an_inp_vital() -> None:
    body = span_envelope({"items": [inp_span_v2()]}, "application/vnd.sentry.items.span.v2+json")
    result = translate(body)
    assert result.counts == {"span": 1} and result.problems == []
    [vital] = valid(result.events)
    assert (vital.type, vital.vital.name, vital.vital.value) == ("vital", "INP", 312.0)
    assert vital.vital.element == "body > button#pay"
    assert vital.session_id == TRACE and vital.route == "/checkout"
    assert (vital.release, vital.environment, vital.sdk.name) == ("web@3.2.0", "staging", "sentry.javascript.browser")
    assert vital.timestamp == datetime.fromtimestamp(1795429350.25, timezone.utc)
    assert translate(body).events[0]["event_id"] == result.events[0]["event_id"]  # a retry is deduplicated


def test_a_legacy_inp_span_and_pageload_vitals_in_trace_data() -> None:
    span = {"op": "ui.interaction.click", "description": "body > div.promo", "span_id": "bd429c44b67a3eb1",
            "trace_id": TRACE, "start_timestamp": 1795429350.0, "timestamp": 1795429351.0,
            "measurements": {"inp": {"value": 104}}, "data": {"transaction": "/cart"}}
    [vital] = valid(translate(span_envelope(span, "application/json")).events)
    assert (vital.vital.name, vital.vital.value, vital.route, vital.vital.element) == ("INP", 104.0, "/cart",
                                                                                       "body > div.promo")
    tx = browser_transaction(measurements=None, spans={})
    tx["contexts"]["trace"]["data"] = {"browser.web_vital.lcp.value": 2400, "browser.web_vital.cls.value": 0.12,
                                       "browser.web_vital.nope.value": 5, "browser.web_vital.fcp.value": "x"}
    vitals = valid(translate_transaction(tx, project="shop", received_at=NOW))
    assert sorted((v.vital.name, v.vital.value) for v in vitals) == [("CLS", 0.12), ("LCP", 2400.0)]


def test_streamed_http_spans_become_api_calls_and_other_spans_nothing() -> None:
    http = {"name": "GET https://shop.example/api/cart?id=1", "span_id": "c1", "trace_id": TRACE,
            "start_timestamp": 1795429350.0, "end_timestamp": 1795429350.25,
            "attributes": {"sentry.op": {"value": "http.client", "type": "string"},
                           "http.response.status_code": {"value": 503, "type": "integer"},
                           "url.full": {"value": "https://shop.example/api/cart?id=1", "type": "string"}}}
    other = {"name": "render", "span_id": "c2", "trace_id": TRACE, "start_timestamp": 1, "end_timestamp": 2,
             "attributes": {"sentry.op": {"value": "ui.render", "type": "string"}}}
    events = valid(translate(span_envelope({"items": [http, other, "junk"]},
                                           "application/vnd.sentry.items.span.v2+json")).events)
    [call] = events
    assert (call.api.method, call.api.status, call.api.ok, round(call.api.duration_ms)) == ("GET", 503, False, 250)
    assert call.api.url == "https://shop.example/api/cart?id=1"


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.floats(allow_nan=True) | st.text(max_size=20) | st.integers(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=30), inner, max_size=6),
                    max_leaves=30))
def test_odd_span_payloads_never_raise_and_always_validate(payload: Any) -> None:
    for shaped in (payload, {"items": [payload]}, {"items": payload}):
        valid(translate_span(shaped, project="shop", received_at=NOW))


# ---------------------------------------------------------------- server SDKs: span v2 segment, messages, in-app


def test_span_v2_streams_take_the_route_from_the_segment_name() -> None:
    """The Node SDK's span streaming: no sentry.transaction, the transaction is sentry.segment.name."""
    http = {"name": "GET https://api.example/users/7", "span_id": "d1", "trace_id": TRACE,
            "start_timestamp": 1795429350.0, "end_timestamp": 1795429350.1,
            "attributes": {"sentry.op": {"value": "http.client", "type": "string"},
                           "sentry.segment.name": {"value": "GET /orders/:id", "type": "string"},
                           "url.full": {"value": "https://api.example/users/7", "type": "string"},
                           "sentry.sdk.name": {"value": "sentry.javascript.node", "type": "string"}}}
    [call] = valid(translate(span_envelope({"items": [http]}, "application/vnd.sentry.items.span.v2+json")).events)
    assert call.route == "/orders/:id" and call.sdk.name == "sentry.javascript.node"
    page = inp_span_v2(**{"sentry.segment.name": "/checkout/:step", "sentry.transaction": None})
    [vital] = valid(translate(span_envelope({"items": [page]}, "application/vnd.sentry.items.span.v2+json")).events)
    assert vital.route == "/checkout/:step"


def test_capture_message_with_a_synthetic_exception_is_a_message() -> None:
    """@sentry/browser captureMessage with attachStacktrace: an exception with no type, synthetic."""
    frames = [{"filename": "https://shop.example/assets/index-DiwrgTda.js", "function": "checkout", "lineno": 1,
               "colno": 300, "in_app": True}]
    out = one_error(event(message="Checkout took longer than 5 s", level="warning", platform="javascript",
                          exception={"values": [{"value": "Checkout took longer than 5 s",
                                                 "stacktrace": {"frames": frames},
                                                 "mechanism": {"type": "generic", "synthetic": True,
                                                               "handled": True}}]}))
    assert (out["error"]["exception_type"], out["error"]["message"]) == (MESSAGE_EXCEPTION_TYPE,
                                                                         "Checkout took longer than 5 s")
    assert out["error"]["level"] == "warning" and out["error"]["stacktrace"][0]["function"] == "checkout"
    # a real exception without a type is still an Error; a synthetic one with a type keeps it
    untyped = one_error(event(exception={"values": [{"value": "x"}]}))
    assert untyped["error"]["exception_type"] == "Error"
    typed = one_error(event(exception={"values": [{"type": "TypeError", "value": "x",
                                                   "mechanism": {"synthetic": True}}]}))
    assert typed["error"]["exception_type"] == "TypeError"


@pytest.mark.parametrize(("platform", "frame", "in_app"), [
    ("java", {"module": "java.lang.Thread", "function": "getStackTrace"}, False),
    ("java", {"module": "javax.servlet.http.HttpServlet", "function": "service"}, False),
    ("java", {"module": "sun.reflect.NativeMethodAccessorImpl", "function": "invoke"}, False),
    ("java", {"module": "jdk.internal.reflect.DirectMethodHandleAccessor", "function": "invoke"}, False),
    ("java", {"module": "kotlin.coroutines.jvm.internal.BaseContinuationImpl", "function": "resumeWith"}, False),
    ("java", {"module": "com.shop.Cart", "function": "add"}, True),
    ("java", {"module": "javascript.Thing", "function": "x"}, True),  # a prefix, not a package: in-app
    ("go", {"module": "runtime", "function": "goexit", "abs_path": "/usr/local/go/src/runtime/asm_amd64.s"}, False),
    ("go", {"module": "net/http", "function": "HandlerFunc.ServeHTTP"}, False),
    ("go", {"module": "github.com/gin-gonic/gin", "function": "(*Context).Next",
            "abs_path": "/root/go/pkg/mod/github.com/gin-gonic/gin@v1.10.0/context.go"}, False),
    ("go", {"module": "main", "function": "checkout", "abs_path": "/app/cart.go"}, True),
    ("native", {"function": "std::panicking::begin_panic"}, False),
    ("native", {"function": "core::result::unwrap_failed"}, False),
    ("native", {"function": "<alloc::boxed::Box<F> as core::ops::function::FnOnce<A>>::call_once"}, False),
    ("native", {"function": "tokio::runtime::task::harness::poll"}, False),
    ("native", {"function": "shop::cart::add"}, True),
    ("csharp", {"module": "System.Threading.Tasks.Task", "function": "Run"}, False),
    ("csharp", {"module": "Microsoft.AspNetCore.Mvc.Infrastructure", "function": "Invoke"}, False),
    ("csharp", {"module": "Shop.Cart", "function": "Add"}, True),
    ("python", {"module": "json.decoder", "function": "raw_decode"}, False),
    ("python", {"module": "x", "abs_path": "/usr/lib/python3.11/json/decoder.py", "function": "f"}, False),
    ("python", {"module": "flask.app", "abs_path": "/app/.venv/lib/python3.11/site-packages/flask/app.py"}, False),
    ("python", {"module": "shop.cart", "abs_path": "/app/shop/cart.py", "function": "add"}, True),
    ("node", {"filename": "node:internal/process/task_queues", "function": "processTicksAndRejections"}, False),
    ("node", {"module": "internal/timers", "function": "listOnTimeout"}, False),
    ("node", {"filename": "/app/node_modules/express/lib/router.js", "function": "handle"}, False),
    ("node", {"filename": "/app/dist/server.js", "module": "server", "function": "checkout"}, True),
    ("javascript", {"filename": "https://shop.example/assets/index-DiwrgTda.js", "function": "render"}, True),
])
def test_per_platform_in_app_defaults_when_the_sdk_leaves_it_unset(platform: str, frame: dict[str, Any],
                                                                    in_app: bool) -> None:
    out = one_error(event(platform=platform, exception={"values": [{"type": "E", "value": "x",
                                                                    "stacktrace": {"frames": [frame]}}]}))
    assert out["error"]["stacktrace"][0]["in_app"] is in_app
    explicit = one_error(event(platform=platform, exception={"values": [{"type": "E", "value": "x", "stacktrace": {
        "frames": [{**frame, "in_app": not in_app}]}}]}))
    assert explicit["error"]["stacktrace"][0]["in_app"] is (not in_app)  # the SDK's word wins


def test_a_java_runtime_frame_is_never_the_culprit() -> None:
    from pipeline.grouping import group_error
    frames = [{"module": "com.shop.Checkout", "function": "submit", "filename": "Checkout.java"},
              {"module": "com.shop.Cart", "function": "total", "filename": "Cart.java"},
              {"module": "java.lang.Thread", "function": "getStackTrace", "filename": "Thread.java"}]
    out = one_error(event(platform="java", exception={"values": [{"type": "java.lang.IllegalStateException",
                                                                  "value": "x", "stacktrace": {"frames": frames}}]}))
    g = group_error(out["error"]["exception_type"], out["error"]["message"], valid([out])[0].error.stacktrace)
    assert g.culprit == "total (com.shop.Cart)"


def test_an_event_without_timestamp_takes_the_client_clock_so_the_skew_correction_holds() -> None:
    from pipeline.ingest.validate import EventTimeWindow, check_event_time
    sent = NOW + timedelta(days=365)  # the client's clock is a year ahead
    out = one_error(event(timestamp=None, message="x"), sent_at=sent)
    timestamp = datetime.fromisoformat(out["timestamp"])
    assert timestamp == sent
    assert check_event_time(timestamp, sent, NOW, EventTimeWindow()).timestamp == NOW
