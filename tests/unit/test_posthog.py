"""PostHog SDK payloads -> native events (pipeline/ingest/posthog.py).

Fixtures in tests/fixtures/sdk/posthog/: ``python_*`` are recorded from the real posthog-python SDK
(tests/fixtures/sdk/capture_posthog.py); ``js_*`` are hand-written in the shape posthog-js 1.x sends
(see the ``note`` in each ``*.request.json``).
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contract.events import EVENT_ADAPTER
from pipeline.ingest.posthog import (
    DecodeProblem,
    PosthogBatch,
    Translation,
    UntranslatableEvent,
    decode_body,
    decode_v1_body,
    translate_batch,
    translate_event,
)
from pipeline.ingest.posthog import v1_results as posthog_v1_results
from pipeline.ingest.producer import prepare_events
from pipeline.sessions.clicks import DeadClickRule, dead_click_kind
from pipeline.sessions.events import session_event
from pipeline.settings import KafkaSettings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sdk" / "posthog"
RECEIVED = datetime(2026, 11, 23, 10, 0, 40, tzinfo=timezone.utc)
ANON = "019ab0f3-7c00-7a1e-9d2b-3c4d5e6f7a80"
SESSION = "019ab0f3-7c01-7f3a-8b5c-1d2e3f405162"


def fixture(name: str) -> tuple[bytes, dict[str, Any]]:
    return (FIXTURES / f"{name}.body").read_bytes(), json.loads((FIXTURES / f"{name}.request.json").read_text())


def decode(body: bytes, *, content_type: str = "application/json", content_encoding: str | None = None,
           query: dict[str, str] | None = None, max_bytes: int = 5 * 1024 * 1024) -> PosthogBatch | DecodeProblem:
    return decode_body(body, content_type=content_type, content_encoding=content_encoding, query=query or {},
                       max_bytes=max_bytes)


def decode_fixture(name: str, **overrides: Any) -> PosthogBatch:
    body, request = fixture(name)
    headers = request["headers"]
    args = {"content_type": headers.get("Content-Type", ""), "content_encoding": headers.get("Content-Encoding"),
            "query": request["query"], **overrides}
    batch = decode(body, **args)
    assert isinstance(batch, PosthogBatch), batch
    return batch


def translate(batch: PosthogBatch) -> Translation:
    out = translate_batch(batch, project="shop", received_at=RECEIVED)
    for event in out.events:
        EVENT_ADAPTER.validate_python(event)
    return out


def one(events: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    """The single event whose type/payload fields match, e.g. one(events, type="action", kind="click")."""
    def matches(event: dict[str, Any]) -> bool:
        payload = event[event["type"]]
        return all(event.get(k) == v if k == "type" else payload.get(k) == v for k, v in match.items())
    found = [e for e in events if matches(e)]
    assert len(found) == 1, (match, found)
    return found[0]


def ph_event(name: str = "signup", **properties: Any) -> dict[str, Any]:
    return {"event": name, "distinct_id": "u-1", "timestamp": "2026-11-23T10:00:00Z", "properties": properties}


def translate_one(event: dict[str, Any], sent_at: datetime | None = None) -> list[dict[str, Any]]:
    out = translate_event(event, project="shop", received_at=RECEIVED, sent_at=sent_at)
    for native in out:
        EVENT_ADAPTER.validate_python(native)
    return out


# ------------------------------------------------------------------ posthog-python, recorded


def test_python_sdk_plain_and_gzip_bodies_decode() -> None:
    plain, gzipped = decode_fixture("python_plain"), decode_fixture("python_gzip")
    assert fixture("python_gzip")[1]["headers"]["Content-Encoding"] == "gzip"
    for batch in (plain, gzipped):
        assert batch.api_key == "phc_test"
        assert batch.sent_at is not None and batch.sent_at.tzinfo is not None
        assert [e["event"] for e in batch.events] == [
            "checkout_completed", "report_exported", "$exception", "$create_alias", "$set"]


def test_python_sdk_events_translate() -> None:
    batch = decode_fixture("python_plain")
    out = translate(batch)
    assert out.problems == []
    assert out.counts == {"checkout_completed": 1, "report_exported": 1, "$exception": 1, "$create_alias": 1,
                          "$set": 1}
    assert out.skipped == {"$create_alias": 1, "$set": 1}
    raw = {e["event"]: e for e in batch.events}

    checkout = one(out.events, type="action", name="checkout_completed")
    assert checkout["action"]["kind"] == "custom"
    assert checkout["action"]["properties"] == {"plan": "pro", "amount": 49.5, "coupon": None,
                                                "items": [{"sku": "A-1", "qty": 2}]}
    assert checkout["event_id"] == raw["checkout_completed"]["uuid"]
    # A server SDK's distinct_id is the application's user id; without $session_id it is the session.
    assert (checkout["user_id"], checkout["session_id"]) == ("user-42", "user-42")
    assert "anonymous_id" not in checkout
    assert checkout["url"] == "https://shop.example/cart"
    assert checkout["sdk"] == {"name": "posthog-python",
                               "version": raw["checkout_completed"]["properties"]["$lib_version"]}
    assert checkout["sent_at"] == batch.sent_at.isoformat()
    assert checkout["timestamp"] == datetime.fromisoformat(raw["checkout_completed"]["timestamp"]).isoformat()

    assert one(out.events, name="report_exported")["session_id"] == "sess-py-1"

    error = one(out.events, type="error")
    assert error["environment"] == "staging"
    payload = error["error"]
    assert (payload["exception_type"], payload["message"]) == ("ValueError", "cart has no items")
    assert (payload["handled"], payload["mechanism"], payload["level"]) == (
        True, {"type": "generic", "handled": True}, "error")
    frames = payload["stacktrace"]
    assert [f["function"] for f in frames] == ["_capture", "_checkout"]  # outermost first
    assert frames[-1]["filename"] == "capture_posthog.py"
    assert frames[-1]["context_line"].strip() == 'raise ValueError("cart has no items") from exc'
    assert all(isinstance(f["lineno"], int) and f["in_app"] for f in frames)


# ------------------------------------------------------------------ posthog-js, hand-written


def test_js_batch_decodes() -> None:
    batch = decode_fixture("js_e_batch")
    assert batch.api_key == "phc_test"
    assert batch.sent_at == datetime(2026, 11, 23, 10, 0, 31, tzinfo=timezone.utc)
    assert len(batch.events) == 13


@pytest.fixture(scope="module")
def js() -> tuple[PosthogBatch, Translation]:
    batch = decode_fixture("js_e_batch")
    return batch, translate(batch)


def test_js_batch_counts(js: tuple[PosthogBatch, Translation]) -> None:
    _, out = js
    assert out.problems == []
    assert out.counts == {"$pageview": 1, "$autocapture": 3, "$rageclick": 1, "$dead_click": 1, "$web_vitals": 1,
                          "$exception": 1, "$identify": 1, "plan_selected": 1, "$feature_flag_called": 1,
                          "survey shown": 1, "$pageleave": 1}
    assert out.skipped == {"$feature_flag_called": 1, "survey shown": 1}
    # pageview, click, rage, dead, 4 vitals, error, identify, custom, form_start, form_submit, hidden, scroll
    assert len(out.events) == 15
    assert len({e["event_id"] for e in out.events}) == 15


def test_js_envelope_of_an_anonymous_visitor(js: tuple[PosthogBatch, Translation]) -> None:
    batch, out = js
    pageview = one(out.events, kind="pageview")
    assert pageview["event_id"] == batch.events[0]["uuid"]
    assert (pageview["session_id"], pageview["anonymous_id"]) == (SESSION, ANON)
    assert "user_id" not in pageview
    assert pageview["url"] == "https://shop.example/product/42?ref=newsletter"
    assert "route" not in pageview  # the page is the URL's path; $pathname is used only without a URL
    assert pageview["sdk"] == {"name": "web", "version": "1.298.0"}
    assert pageview["user_agent"].startswith("Mozilla/5.0 (Macintosh")
    assert (pageview["environment"], pageview["consent"], pageview["project"]) == ("production", True, "shop")
    assert datetime.fromisoformat(pageview["timestamp"]) == datetime(2026, 11, 23, 10, tzinfo=timezone.utc)


def test_js_identify_links_anonymous_and_user_ids(js: tuple[PosthogBatch, Translation]) -> None:
    _, out = js
    identify = one(out.events, kind="custom", name="$identify")
    assert (identify["user_id"], identify["anonymous_id"]) == ("user-42", ANON)
    plan = one(out.events, kind="custom", name="plan_selected")
    assert (plan["user_id"], plan["anonymous_id"]) == ("user-42", ANON)  # $is_identified, $device_id
    assert plan["action"]["properties"] == {"plan": "pro", "seats": 3, "annual": True, "addons": ["support", "sso"]}


def test_js_autocapture_click_selector_from_the_elements_chain(js: tuple[PosthogBatch, Translation]) -> None:
    _, out = js
    click = one(out.events, kind="click", text="Add to cart")["action"]
    assert click["selector"] == "section#product-main button.btn.btn-primary"
    assert (click["tag"], click["interactive"]) == ("button", True)
    assert "observed" not in click  # autocapture does not watch what follows a click


def test_js_rageclick_is_a_custom_action_not_a_click(js: tuple[PosthogBatch, Translation]) -> None:
    _, out = js
    rage = one(out.events, kind="custom", name="$rageclick")["action"]
    assert rage["properties"] == {"selector": "section#product-main span.price.price--large"}
    assert rage["text"] == "49,50 €"
    assert [e["action"]["selector"] for e in out.events if e["type"] == "action" and e["action"]["kind"] == "click"] \
        == ["section#product-main button.btn.btn-primary", "img.hero.hero--wide"]


def test_js_dead_click_is_dead_by_the_pipelines_rule(js: tuple[PosthogBatch, Translation]) -> None:
    _, out = js
    dead = one(out.events, kind="click", selector="img.hero.hero--wide")
    action = dead["action"]
    assert action["observed"] == {"dom_mutation_ms": None, "navigated": False, "scrolled": False,
                                  "observed_for_ms": 3012}
    assert action["interactive"] is False
    assert action["properties"]["$dead_click_absolute_timeout"] is True
    click = session_event(EVENT_ADAPTER.validate_python(dead)).click
    assert click is not None and dead_click_kind(click) == "non_interactive"


def test_dead_click_watch_time_is_at_least_the_pipelines_window() -> None:
    # posthog-js reports a scroll-timeout dead click after ~1 s; it judged the click dead, so do we.
    event = ph_event("$dead_click", **{"$elements_chain": 'button:attr__id="go"nth-child="1"nth-of-type="1"',
                                       "$dead_click_absolute_delay_ms": 1004, "$dead_click_scroll_timeout": True})
    for window in (DeadClickRule().window_ms, 4000.0):
        [native] = translate_event(event, project="shop", received_at=RECEIVED, sent_at=None,
                                   dead_click_window_ms=window)
        click = session_event(EVENT_ADAPTER.validate_python(native)).click
        assert native["action"]["observed"]["observed_for_ms"] == window
        assert click is not None and dead_click_kind(click, DeadClickRule(window)) == "unresponsive"


def test_js_web_vitals(js: tuple[PosthogBatch, Translation]) -> None:
    batch, out = js
    vitals = {e["vital"]["name"]: e for e in out.events if e["type"] == "vital"}
    assert {name: e["vital"]["value"] for name, e in vitals.items()} == {
        "LCP": 2315.4, "CLS": 0.12, "FCP": 820.1, "INP": 184}
    assert vitals["CLS"]["vital"]["rating"] == "needs-improvement"
    assert vitals["LCP"]["vital"]["element"] == "section#product-main > img.hero"
    assert vitals["INP"]["vital"]["element"] == "button.btn.btn-primary"
    assert vitals["LCP"]["vital"]["navigation_type"] == "navigate"
    # each metric at the time it was measured, with its own deterministic id
    assert datetime.fromisoformat(vitals["LCP"]["timestamp"]) == datetime(2026, 11, 23, 10, 0, 3, 100_000,
                                                                         tzinfo=timezone.utc)
    source = uuid.UUID(next(e["uuid"] for e in batch.events if e["event"] == "$web_vitals"))
    assert vitals["LCP"]["event_id"] == str(uuid.uuid5(source, "vital:LCP"))


def test_js_exception(js: tuple[PosthogBatch, Translation]) -> None:
    _, out = js
    error = one(out.events, type="error")["error"]
    assert error["exception_type"] == "TypeError"
    assert error["message"] == "Cannot read properties of undefined (reading 'price')"
    assert (error["handled"], error["mechanism"]) == (False, {"type": "generic", "handled": False})
    frames = error["stacktrace"]
    assert [(f["function"], f["lineno"], f["colno"], f["in_app"]) for f in frames] == [
        ("HTMLButtonElement.dispatch", 2, 40012, False), ("onAddToCart", 1, 8123, True),
        ("renderCart", 1, 4312, True)]
    assert frames[-1]["filename"] == "https://shop.example/static/js/app.4f3c.js"
    crumbs = error["breadcrumbs"]
    assert [c["message"] for c in crumbs] == ["Clicked Add to cart", "Cart request failed"]
    assert crumbs[1]["data"] == {"status": 502}
    assert datetime.fromisoformat(crumbs[1]["timestamp"]) == datetime(2026, 11, 23, 10, 0, 15, 300_000,
                                                                     tzinfo=timezone.utc)


def test_js_forms(js: tuple[PosthogBatch, Translation]) -> None:
    _, out = js
    assert one(out.events, kind="form_start")["action"]["form"] == "form#signup"  # change in #email
    assert one(out.events, kind="form_submit")["action"]["form"] == "form#signup"


def test_js_pageleave_hides_the_page_and_reports_its_scroll_depth(js: tuple[PosthogBatch, Translation]) -> None:
    batch, out = js
    hidden = one(out.events, kind="visibility")
    scroll = one(out.events, kind="scroll")
    assert hidden["action"]["visibility"] == "hidden"
    assert scroll["action"]["scroll_depth"] == pytest.approx(62.0)
    leave = uuid.UUID(next(e["uuid"] for e in batch.events if e["event"] == "$pageleave"))
    assert (hidden["event_id"], scroll["event_id"]) == (str(leave), str(uuid.uuid5(leave, "scroll")))


def test_js_gzip_js_body_with_and_without_the_query_hint() -> None:
    batch = decode_fixture("js_gzip")
    assert batch.api_key == "phc_test"  # from the events' properties.token (array format)
    assert batch.sent_at == datetime(2026, 11, 23, 10, 0, 5, tzinfo=timezone.utc)  # ?_=<epoch ms>
    # current posthog-js sends gzip as text/plain with no compression parameter at all
    assert decode_fixture("js_gzip", query={}).events == batch.events
    out = translate(batch)
    assert [e["action"]["kind"] for e in out.events] == ["pageview", "custom"]
    assert out.events[1]["action"]["properties"] == {"items": 2}


def test_js_base64_form_body_events_without_uuid_get_deterministic_ids() -> None:
    batch = decode_fixture("js_base64_form")
    assert [e["event"] for e in batch.events] == ["$pageleave", "newsletter_signup"]
    assert all("uuid" not in e for e in batch.events)
    assert decode_fixture("js_base64_form", query={}).events == batch.events  # recognized without the hint
    first, again = translate(batch), translate(decode_fixture("js_base64_form"))
    ids = [e["event_id"] for e in first.events]
    assert ids == [e["event_id"] for e in again.events]  # a retried batch yields the same ids
    assert len(set(ids)) == 2
    # no $session_id (old SDK): the distinct_id is the session
    assert {e["session_id"] for e in first.events} == {ANON}


@pytest.mark.parametrize("name", ["js_e_batch", "js_gzip", "js_base64_form", "python_plain", "python_gzip"])
def test_translated_fixtures_pass_the_collectors_producer_step(name: str) -> None:
    out = translate(decode_fixture(name))
    prepared = prepare_events(out.events, kafka=KafkaSettings(), now=RECEIVED, source="test", project="shop",
                              received_at=RECEIVED)  # scrub, stamp, validate: what the collector does next
    assert prepared.rejected == [] and prepared.accepted == len(out.events) > 0


# ------------------------------------------------------------------ decoding


def test_form_encoded_plain_json_and_base64_with_unescaped_plus() -> None:
    doc = [{"event": "a>>>", "distinct_id": "u", "properties": {"token": "phc_x"}}]
    plain = decode(b"data=" + quote(json.dumps(doc)).encode(), content_type="application/x-www-form-urlencoded")
    assert isinstance(plain, PosthogBatch) and plain.events == doc and plain.api_key == "phc_x"
    encoded = base64.b64encode(json.dumps(doc).encode())
    assert b"+" in encoded
    raw_plus = decode(b"data=" + encoded, content_type="application/x-www-form-urlencoded")  # '+' read as ' '
    assert isinstance(raw_plus, PosthogBatch) and raw_plus.events == doc


def test_single_event_and_batch_envelopes() -> None:
    single = decode(json.dumps({"api_key": "phc_1", "event": "x", "distinct_id": "u"}).encode())
    assert isinstance(single, PosthogBatch) and single.api_key == "phc_1" and len(single.events) == 1
    batch = decode(json.dumps({"token": "phc_2", "batch": [], "sent_at": "2026-11-23T10:00:00Z"}).encode())
    assert isinstance(batch, PosthogBatch) and (batch.api_key, batch.events) == ("phc_2", [])
    assert batch.sent_at == datetime(2026, 11, 23, 10, tzinfo=timezone.utc)
    get = decode(b"", query={"data": json.dumps([{"event": "x", "token": "phc_3"}])})  # legacy GET ?data=
    assert isinstance(get, PosthogBatch) and get.api_key == "phc_3"


def test_sent_at_in_seconds_is_ignored() -> None:
    batch = decode(b"[]", query={"_": "1795428005"})
    assert isinstance(batch, PosthogBatch) and batch.sent_at is None


def test_gzip_bomb_is_413() -> None:
    bomb = gzip.compress(b"[" + b" " * (8 * 1024 * 1024) + b"]")
    assert len(bomb) < 64 * 1024
    problem = decode(bomb, content_encoding="gzip", max_bytes=1024 * 1024)
    assert isinstance(problem, DecodeProblem) and problem.status == 413
    assert "after decompression" in problem.message


@pytest.mark.parametrize(("body", "kwargs", "status", "words"), [
    (b"data=abc%24def", {"content_type": "application/x-www-form-urlencoded", "query": {"compression": "base64"}},
     400, "base64"),
    (b"!!not base64!!", {"query": {"compression": "base64"}}, 400, "base64"),
    (b"QUJD", {}, 400, "not JSON"),  # base64 of "ABC"
    (gzip.compress(b'[{"event": "x"}]')[:-8], {}, 400, "gzip"),
    (b"x", {"query": {"compression": "lz64"}}, 415, "lz64"),
    (b"x", {"content_encoding": "br"}, 415, "Content-Encoding"),
    (b"x", {"query": {"compression": "zstd"}}, 415, "compression"),
    (b"   ", {}, 400, "empty"),
    (b"{not json", {}, 400, "not JSON"),
    (b'"a string"', {}, 400, "JSON object or array"),
    (b'{"batch": {}}', {}, 400, "batch"),
    (b'[{"event": "x", "token": "a"}, {"event": "y", "token": "b"}]', {}, 400, "tokens"),
    (b"data=", {"content_type": "application/x-www-form-urlencoded"}, 400, "data field"),
])
def test_decode_problems(body: bytes, kwargs: dict[str, Any], status: int, words: str) -> None:
    problem = decode(body, **kwargs)
    assert isinstance(problem, DecodeProblem) and problem.status == status
    assert words in problem.message


# ------------------------------------------------------------------ translation details


def test_deterministic_event_ids_for_events_without_uuid() -> None:
    event = {"event": "signup", "distinct_id": "u-1", "timestamp": "2026-11-23T10:00:00Z"}
    first, second = translate_one(dict(event)), translate_one(dict(event))
    assert first[0]["event_id"] == second[0]["event_id"]
    later = translate_one({**event, "timestamp": "2026-11-23T10:00:01Z"})
    assert later[0]["event_id"] != first[0]["event_id"]
    assert translate_one({**event, "uuid": "not-a-uuid"})[0]["event_id"] == first[0]["event_id"]


def test_timestamp_from_offset_and_fallbacks() -> None:
    sent = datetime(2026, 11, 23, 10, 0, 10, tzinfo=timezone.utc)
    event = {"event": "signup", "distinct_id": "u-1", "offset": 1500}
    assert datetime.fromisoformat(translate_one(event, sent)[0]["timestamp"]) == sent - timedelta(milliseconds=1500)
    assert datetime.fromisoformat(translate_one(event)[0]["timestamp"]) == RECEIVED - timedelta(milliseconds=1500)
    garbled = {"event": "signup", "distinct_id": "u-1", "timestamp": "yesterday"}
    assert datetime.fromisoformat(translate_one(garbled, sent)[0]["timestamp"]) == sent


@pytest.mark.parametrize(("properties", "event", "user_id", "anonymous_id"), [
    ({"$is_identified": False, "$device_id": "d"}, "x", None, "u-1"),
    ({"$is_identified": True, "$device_id": "d"}, "x", "u-1", "d"),
    ({"$is_identified": True, "$device_id": "u-1"}, "x", "u-1", None),
    ({"$anon_distinct_id": "a"}, "$identify", "u-1", "a"),
    ({"$user_id": "me"}, "x", "me", "u-1"),
    ({"$is_server": True}, "x", "u-1", None),
    ({}, "x", None, "u-1"),
    # server SDKs that send neither $is_identified nor $is_server: the distinct_id is the user id ...
    ({"$lib": "posthog-node"}, "x", "u-1", None),
    ({"$lib": "posthog-go", "$device_id": "dev-9"}, "x", "u-1", "dev-9"),
    ({"$lib": "posthog-java"}, "$pageview", "u-1", None),
    # ... unless the SDK marks it anonymous
    ({"$lib": "posthog-node", "$process_person_profile": False}, "x", None, "u-1"),
    ({"$is_server": True, "$process_person_profile": False}, "x", None, "u-1"),
    ({"$lib": "posthog-go", "$device_id": "u-1"}, "x", None, "u-1"),
    # device SDKs keep their own word
    ({"$lib": "web"}, "x", None, "u-1"),
    ({"$lib": "posthog-react-native"}, "x", None, "u-1"),
])
def test_user_and_anonymous_ids(properties: dict[str, Any], event: str, user_id: str | None,
                                anonymous_id: str | None) -> None:
    [native] = translate_one(ph_event(event, **properties))
    assert (native.get("user_id"), native.get("anonymous_id")) == (user_id, anonymous_id)


@pytest.mark.parametrize("browser_id", ["019ab0f3-7c00-7a1e-9d2b-3c4d5e6f7a80",  # posthog-js UUIDv7
                                        "18b2c1d2e3f4a5-0a1b2c3d4e5f6a-4c0b1a2d-1fa400-18b2c1d2e3f4a6"])  # older
def test_a_browser_anonymous_id_passed_to_a_server_sdk_stays_anonymous(browser_id: str) -> None:
    [native] = translate_one({**ph_event("$exception", **{"$lib": "posthog-node"}), "distinct_id": browser_id})
    assert (native.get("user_id"), native.get("anonymous_id")) == (None, browser_id)
    [user] = translate_one({**ph_event("x", **{"$lib": "posthog-node"}),
                            "distinct_id": "0b814371-baa0-40ee-a7e6-6da52cdf9711"})  # a UUIDv4 user id
    assert user.get("user_id") == "0b814371-baa0-40ee-a7e6-6da52cdf9711"


def test_long_ids_and_texts_are_cut_to_the_contract() -> None:
    long_url = "https://shop.example/?q=" + "x" * 20_000
    [native] = translate_one({**ph_event("n" * 600, **{"$current_url": long_url, "$session_id": "s" * 300,
                                                        "$raw_user_agent": "ua" * 600})})
    assert len(native["url"]) == 16_384 and len(native["action"]["name"]) == 512
    assert len(native["user_agent"]) == 512
    assert uuid.UUID(native["session_id"])  # a long session id becomes a uuid5 of itself
    assert translate_one(ph_event(**{"$session_id": "s" * 300}))[0]["session_id"] == native["session_id"]


def test_custom_properties_are_bounded() -> None:
    props = {f"k{i:02}": i for i in range(60)}
    props |= {"$internal": 1, "token": "phc", "distinct_id": "u"}
    [native] = translate_one(ph_event(**props))
    kept = native["action"]["properties"]
    assert list(kept) == [f"k{i:02}" for i in range(50)]
    big = {"nested": {"list": ["y" * 100] * 30}, "small": {"a": [1, 2]}, "text": "z" * 5000}
    kept = translate_one(ph_event(**big))[0]["action"]["properties"]
    assert isinstance(kept["nested"], str) and len(kept["nested"]) == 1024
    assert kept["small"] == {"a": [1, 2]}
    assert len(kept["text"]) == 1024


def test_elements_chain_parsing_edge_cases() -> None:
    chain = ('span.label:nth-child="1"nth-of-type="1"text="Say \\"hi\\"; bye";'
             'a.hover:bg-blue-500.px-4:attr__class="hover:bg-blue-500 px-4"attr__href="/a;b"nth-child="1"nth-of-type="1";'
             'div:attr__id="menu"attr_id="menu"nth-child="1"nth-of-type="1";body:nth-child="2"nth-of-type="1"')
    [native] = translate_one(ph_event("$autocapture", **{"$event_type": "click", "$elements_chain": chain}))
    action = native["action"]
    assert action["selector"] == "div#menu span.label"
    assert action["text"] == 'Say "hi"; bye'
    assert action["interactive"] is True  # a span inside a link


def test_elements_list_and_coordinates() -> None:
    elements = [{"tag_name": "DIV", "attr__class": "card  tile", "$el_text": "Card", "attr__role": "button"},
                {"tag_name": "section", "attr__id": "grid"}]
    [native] = translate_one(ph_event("$autocapture", **{"$event_type": "click", "$elements": elements,
                                                         "$mouse_x": 10, "$mouse_y": 20.5}))
    action = native["action"]
    assert (action["selector"], action["tag"], action["text"]) == ("section#grid div.card.tile", "div", "Card")
    assert (action["x"], action["y"], action["interactive"]) == (10, 20.5, True)


def test_older_exception_format() -> None:
    stack = ("TypeError: x is undefined\n"
             "    at renderCart (https://shop.example/app.js:1:4312)\n"
             "    at https://shop.example/app.js:1:8123\n"
             "onClick@https://shop.example/vendor.js:2:10")
    [native] = translate_one(ph_event("$exception", **{
        "$exception_type": "TypeError", "$exception_message": "x is undefined", "$exception_stack_trace_raw": stack,
        "$exception_level": "warning", "$exception_fingerprint": "cart-render"}))
    error = native["error"]
    assert (error["exception_type"], error["message"], error["level"]) == ("TypeError", "x is undefined", "warning")
    assert error["fingerprint"] == ["cart-render"]
    assert [(f.get("function"), f["colno"]) for f in error["stacktrace"]] == [
        ("onClick", 10), (None, 8123), ("renderCart", 4312)]  # outermost first
    frames_json = json.dumps([{"filename": "app.js", "function": "main", "lineno": 3, "colno": 1}])
    [native] = translate_one(ph_event("$exception", **{"$exception_stack_trace_raw": frames_json,
                                                       "$exception_level": "log"}))
    assert native["error"]["stacktrace"] == [{"filename": "app.js", "function": "main", "lineno": 3, "colno": 1}]
    assert (native["error"]["exception_type"], native["error"]["level"]) == ("Error", "info")


def test_web_vitals_skip_unusable_values_and_take_ttfb() -> None:
    out = translate_one(ph_event("$web_vitals", **{"$web_vitals_LCP_value": -1, "$web_vitals_CLS_value": "0.1",
                                                   "$web_vitals_TTFB_value": 95.0}))
    assert [(e["vital"]["name"], e["vital"]["value"]) for e in out] == [("TTFB", 95.0)]


def test_autocapture_skips_what_it_does_not_map() -> None:
    chain = {"$elements_chain": 'input:attr__id="q"nth-child="1"nth-of-type="1"'}
    assert translate_one(ph_event("$autocapture", **{"$event_type": "change", **chain})) == []  # not in a form
    assert translate_one(ph_event("$autocapture", **{"$event_type": "copy", **chain})) == []
    for name in ("$set", "$groupidentify", "$opt_in", "$snapshot", "$heatmap", "survey sent"):
        assert translate_one(ph_event(name)) == []


def test_bad_events_are_problems_and_the_rest_survives() -> None:
    events = ["not an object", {"distinct_id": "u"}, {"event": "x"},
              ph_event("$autocapture", **{"$event_type": "click"}), ph_event("$set"), ph_event("ok")]
    out = translate_batch(PosthogBatch("phc", events), project="shop", received_at=RECEIVED)
    assert [p.split(":")[0] for p in out.problems] == ["event 0", "event 1", "event 2", "event 3"]
    assert "distinct_id" in out.problems[2] and "$elements_chain" in out.problems[3]
    assert (out.counts, out.skipped) == ({"$set": 1, "ok": 1}, {"$set": 1})
    assert [e["action"]["name"] for e in out.events] == ["ok"]
    with pytest.raises(UntranslatableEvent):
        translate_event(["x"], project="shop", received_at=RECEIVED, sent_at=None)


# ------------------------------------------------------------------ never raises, always valid

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)
_chain = st.text(alphabet='abdiv.:;="\\#_- ', max_size=60)
_anything = _json | _chain
_properties = st.fixed_dictionaries({}, optional={
    "$event_type": st.sampled_from(["click", "submit", "change"]) | _json,
    "$elements_chain": _chain | _json,
    "$elements": st.lists(st.dictionaries(st.sampled_from(["tag_name", "attr__id", "attr__class", "classes",
                                                          "$el_text", "attr__role"]), _anything, max_size=4),
                          max_size=3) | _json,
    **dict.fromkeys(["$exception_list", "$exception_steps", "$web_vitals_LCP_event"], st.lists(
        st.dictionaries(st.sampled_from(["type", "value", "mechanism", "stacktrace", "frames", "$message",
                                         "$timestamp", "attribution", "timestamp", "rating"]), _anything, max_size=4),
        max_size=2) | _json),
    **dict.fromkeys(["$exception_type", "$exception_stack_trace_raw", "$exception_level", "$exception_fingerprint",
                     "$web_vitals_LCP_value", "$web_vitals_CLS_value", "$session_id", "$current_url", "$pathname",
                     "$is_identified", "$is_server", "$user_id", "$device_id", "$anon_distinct_id", "$lib",
                     "$lib_version", "$dead_click_absolute_delay_ms", "$prev_pageview_max_scroll_percentage",
                     "$mouse_x", "plain", "nested"], _anything),
})
_events = st.fixed_dictionaries(
    {"event": st.sampled_from(["$pageview", "$pageleave", "$autocapture", "$rageclick", "$dead_click", "$exception",
                               "$web_vitals", "$identify", "$set", "custom"]) | st.text(max_size=5),
     "distinct_id": st.text(min_size=1, max_size=6) | _json,
     "properties": _properties},
    optional={"uuid": st.uuids().map(str) | st.text(max_size=8),
              "timestamp": st.datetimes().map(datetime.isoformat) | st.text(max_size=8), "offset": _json})


@settings(max_examples=200, deadline=None)
@given(st.lists(_events | _json, max_size=4), st.none() | st.datetimes(timezones=st.just(timezone.utc)))
def test_any_batch_translates_to_valid_events_or_named_problems(events: list[Any], sent_at: datetime | None) -> None:
    out = translate_batch(PosthogBatch("phc", events, sent_at), project="shop", received_at=RECEIVED)
    for event in out.events:
        EVENT_ADAPTER.validate_python(event)
    assert not [p for p in out.problems if "cannot translate" in p]  # only the problems we name


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.sampled_from(["", "gzip-js", "base64"]),
       st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]))
def test_any_body_decodes_or_is_a_problem(body: bytes, compression: str, content_type: str) -> None:
    result = decode(body, content_type=content_type, query={"compression": compression} if compression else {})
    assert isinstance(result, (PosthogBatch, DecodeProblem))


# ---------------------------------------------------------------- capture v1 (/i/v1/analytics/events)


def decode_v1_fixture() -> PosthogBatch:
    body, request = fixture("python_v1")
    batch = decode_v1_body(body, content_encoding=request["headers"].get("Content-Encoding"),
                           headers=request["headers"])
    assert isinstance(batch, PosthogBatch), batch
    return batch


def test_capture_v1_from_the_real_sdk() -> None:
    batch = decode_v1_fixture()
    assert batch.api_key == "phc_test"  # the Bearer token
    assert batch.sent_at == datetime.fromisoformat(
        fixture("python_v1")[1]["headers"]["PostHog-Request-Timestamp"])
    out = translate(batch)
    assert not out.problems
    checkout = one(out.events, type="action", name="checkout_completed")
    assert checkout["user_id"] == "user-42" and checkout["sdk"]["name"] == "posthog-python"
    assert checkout["action"]["properties"]["plan"] == "pro"
    report = one(out.events, type="action", name="report_exported")
    assert report["session_id"] == "sess-py-1"  # v1's top-level session_id
    error = one(out.events, type="error")
    assert error["error"]["exception_type"] == "ValueError" and error["environment"] == "staging"
    assert posthog_v1_results(batch, out.dropped) == {e["uuid"]: {"result": "ok"} for e in batch.events}


def test_capture_v1_options_bodies_and_answers() -> None:
    doc = {"created_at": "2026-11-23T10:00:00Z", "batch": [
        {"event": "signed_up", "uuid": "0b814371-baa0-40ee-a7e6-6da52cdf9711", "distinct_id": "anon-9",
         "timestamp": "2026-11-23T10:00:00Z", "options": {"process_person_profile": False}, "properties": {}},
        {"event": "", "uuid": "831fe11f-320b-4a7a-bfd8-9933f8de3348", "distinct_id": "x"},
    ]}
    raw = json.dumps(doc).encode()
    headers = {"Authorization": "Bearer phc_x", "PostHog-Sdk-Info": "posthog-go/1.6.0"}
    for body, encoding in ((raw, None), (gzip.compress(raw), "gzip"), (__import__("zlib").compress(raw), "deflate")):
        batch = decode_v1_body(body, content_encoding=encoding, headers=headers)
        assert isinstance(batch, PosthogBatch) and batch.api_key == "phc_x" and batch.sent_at is None
        out = translate(batch)
        signed_up = one(out.events, type="action", name="signed_up")
        assert signed_up["sdk"] == {"name": "posthog-go", "version": "1.6.0"}
        assert "user_id" not in signed_up and signed_up["anonymous_id"] == "anon-9"  # person profile off
        assert out.dropped == {1}
        assert posthog_v1_results(batch, out.dropped) == {
            "0b814371-baa0-40ee-a7e6-6da52cdf9711": {"result": "ok"},
            "831fe11f-320b-4a7a-bfd8-9933f8de3348": {"result": "drop"}}
    problems = [decode_v1_body(b"", content_encoding=None, headers=headers),
                decode_v1_body(b"[]", content_encoding=None, headers=headers),
                decode_v1_body(raw, content_encoding="br", headers=headers),
                decode_v1_body(b"\x1f\x8bxx", content_encoding="gzip", headers=headers)]
    assert [p.status for p in problems if isinstance(p, DecodeProblem)] == [400, 400, 415, 400]
    no_key = decode_v1_body(raw, content_encoding=None, headers={"Authorization": "Basic phc_x"})
    assert isinstance(no_key, PosthogBatch) and no_key.api_key is None


# ---------------------------------------------------------------- $exception frame order per SDK

GO_FRAMES_OUTERMOST_FIRST = [
    {"function": "runtime.goexit", "filename": "/usr/local/go/src/runtime/asm_amd64.s", "in_app": False},
    {"function": "main.main", "filename": "/app/main.go", "in_app": True},
    {"function": "main.checkout", "filename": "/app/cart.go", "in_app": True},
    {"function": "main.loadCart", "filename": "/app/cart.go", "in_app": True},
]


def exception_event(frames: list[dict[str, Any]], **props: Any) -> dict[str, Any]:
    return ph_event("$exception", **{"$exception_list": [{"type": "*errors.errorString", "value": "no cart",
                                                          "stacktrace": {"type": "raw", "frames": frames}}],
                                     **props})


GO_OUTERMOST = ["runtime.goexit", "main.main", "main.checkout", "main.loadCart"]


@pytest.mark.parametrize(("frames", "props", "expected"), [
    (GO_FRAMES_OUTERMOST_FIRST, {"$lib": "posthog-go", "$lib_version": "1.22.0"}, GO_OUTERMOST),  # canonical
    (GO_FRAMES_OUTERMOST_FIRST[::-1], {"$lib": "posthog-go", "$lib_version": "1.19.0"}, GO_OUTERMOST),  # < 1.20
    (GO_FRAMES_OUTERMOST_FIRST[::-1], {"$lib": "posthog-go"}, GO_OUTERMOST),  # no version: goexit is last
    ([{"function": "runtime.Callers"}, *GO_FRAMES_OUTERMOST_FIRST[:0:-1]], {"$lib": "posthog-rs"},
     ["main.main", "main.checkout", "main.loadCart", "runtime.Callers"]),  # the capture site came first
    ([{"module": "com.shop.Cart", "function": "load"}, {"module": "com.shop.Checkout", "function": "run"},
      {"module": "java.lang.Thread", "function": "run"}], {"$lib": "posthog-java"}, ["run", "run", "load"]),
    (GO_FRAMES_OUTERMOST_FIRST, {"$lib": "posthog-node"}, GO_OUTERMOST),  # as sent
    ([{"function": "a"}, {"function": "b"}], {"$lib": "posthog-ruby"}, ["a", "b"]),  # no clue: as sent
])
def test_exception_frames_are_put_outermost_first_for_every_sdk(frames: list[dict[str, Any]], props: dict[str, Any],
                                                                expected: list[str]) -> None:
    [native] = translate_one(exception_event(frames, **props))
    assert [f.get("function") for f in native["error"]["stacktrace"]] == expected


def _go_frame(function: str, filename: str, platform: str) -> dict[str, Any]:
    # posthog-go's SimpleInAppDecider calls every frame outside the module cache and vendor/ in-app
    return {"function": function, "filename": filename, "lineno": 7, "in_app": True, "platform": platform,
            **({"lang": "go"} if platform == "native" else {})}


@pytest.mark.parametrize("platform", ["go", "native"])  # "native" when the binary has a build id (>= 1.22)
def test_posthog_go_recovered_panic_is_reported_where_it_panicked(platform: str) -> None:
    """posthog-go records the stack where NewDefaultException is called: in a deferred recover, that is
    the handler. As sentry-go does, the frames from runtime.gopanic on go, and runtime frames are not in-app."""
    goroot = "/usr/local/go/src/runtime"
    frames = [_go_frame("runtime.goexit", f"{goroot}/asm_amd64.s", platform),
              _go_frame("runtime.main", f"{goroot}/proc.go", platform),
              _go_frame("main.main", "/app/main.go", platform),
              _go_frame("main.checkout", "/app/main.go", platform),
              _go_frame("main.chargeCard", "/app/main.go", platform),
              _go_frame("runtime.gopanic", f"{goroot}/panic.go", platform),
              _go_frame("main.recoverCheckout.func1", "/app/main.go", platform),
              _go_frame("main.run.func3", "/app/main.go", platform)]
    [native] = translate_one(exception_event(frames, **{"$lib": "posthog-go", "$lib_version": "1.23.1"}))
    stored = native["error"]["stacktrace"]
    assert [f["function"] for f in stored] == ["runtime.goexit", "runtime.main", "main.main", "main.checkout",
                                               "main.chargeCard"]
    assert [f["in_app"] for f in stored] == [False, False, True, True, True]


def test_frames_of_other_platforms_keep_the_sdks_in_app() -> None:
    frames = [{"function": "runtime.start", "filename": "/app/runtime.js", "in_app": True, "platform": "node:javascript"},
              {"function": "runtime.gopanic", "filename": "/app/x.js", "in_app": True}]
    [native] = translate_one(exception_event(frames, **{"$lib": "posthog-node"}))
    assert [(f["function"], f["in_app"]) for f in native["error"]["stacktrace"]] == [
        ("runtime.start", True), ("runtime.gopanic", True)]
