"""The worker's fast decode (pipeline/contract/fast.py) against the contract (pydantic).

For every message here -- the contract's example, simulated traffic, and thousands of mutations of
full events (every field given odd values: null, wrong types, numbers as strings, bools as 0/1,
ints as floats, 1e400, NaN, big ints, strings one character too long incl. non-ASCII and escapes,
naive and offset times, fractions beyond microseconds, UUID forms, duplicate keys, missing fields,
unknown fields) -- the fast path either declines (pydantic decides, as before) or gives events that
pydantic accepts too and that are equal in every field, row byte and session view downstream reads.
"""

from __future__ import annotations

import math
import typing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import orjson
import pytest
from pydantic import BaseModel, ValidationError

from pipeline.common import epoch_ms, epoch_us, page_of
from pipeline.contract import EVENT_ADAPTER, EVENT_BATCH_ADAPTER, events as contract
from pipeline.contract.fast import FAST_STRUCTS, FAST_TYPES, _Generator, as_contract, decode_events
from pipeline.ingest.normalize import event_to_row
from pipeline.ingest.process import RawMessage, _decode
from pipeline.ingest.validate import decode_message
from pipeline.sessions.events import session_view
from pipeline.simulate import generate_scenario
from pipeline.simulate_load import generate_load

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
RECEIVED = datetime(2026, 11, 23, 10, 0, 5, tzinfo=timezone.utc)
UID = "0b5b0f0e-8c1d-4c57-9a55-3f7d3a3c2a11"
ENVELOPE = {"event_id": UID, "project": "shop", "timestamp": "2026-11-23T10:00:00.123Z",
            "received_at": "2026-11-23T10:00:01.5+01:00", "sent_at": "2026-11-23T10:00:00.9Z", "session_id": "s-1",
            "anonymous_id": "a-1", "user_id": "u-1", "release": "1.2.3", "environment": "staging",
            "url": "https://shop.example.com/cart?x=1", "route": "/cart", "user_agent": "Mozilla/5.0",
            "sdk": {"name": "pulse-js", "version": "1.0"}, "consent": True}
PAYLOADS = {
    "vital": {"name": "LCP", "value": 2315.5, "rating": "good", "navigation_type": "navigate", "element": "img"},
    "action": {"kind": "click", "selector": "#buy", "tag": "button", "text": "Buy", "x": 10.5, "y": 20,
               "interactive": True, "observed": {"dom_mutation_ms": 12.5, "navigated": False, "scrolled": True,
                                                 "observed_for_ms": 1000},
               "scroll_depth": 50, "form": "f", "visibility": "visible", "name": "n",
               "properties": {"a": 1, "b": [1.5, "x", None, True], "c": {"d": -0.0}}},
    "api": {"kind": "resource", "url": "https://shop.example.com/api", "method": "POST", "status": 201,
            "duration_ms": 12.5, "ok": None, "initiator": "fetch", "size_bytes": 512},
    "metric": {"name": "checkout.duration", "value": 12.5, "unit": "millisecond", "tags": {"route": "/cart"}},
}
ACTION_KINDS = ("pageview", "click", "scroll", "form_start", "form_submit", "visibility", "custom")


def full_event(type_: str) -> dict[str, Any]:
    return {**ENVELOPE, "type": type_, type_: dict(PAYLOADS[type_])}


# ------------------------------------------------------------------ comparison


def canon(value: Any) -> Any:
    """Everything downstream can read of an event, as comparable plain data (types and offsets included)."""
    if isinstance(value, (BaseModel, msgspec.Struct)):
        model = type(value) if isinstance(value, BaseModel) else None
        names = list(model.model_fields) if model else [*value.__struct_fields__, "type"]  # type: ignore[union-attr]
        if model is None and value.__struct_config__.tag is None:
            names.remove("type")
        return {name: canon(getattr(value, name)) for name in sorted(set(names) & _readable(value))}
    if isinstance(value, datetime):
        return ("datetime", value.isoformat(), value.utcoffset(), epoch_us(value))
    if isinstance(value, dict):
        return ("dict", [(canon(k), canon(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [canon(v) for v in value])
    if isinstance(value, float):
        return ("float", repr(value), math.copysign(1.0, value))
    if isinstance(value, UUID):
        return ("uuid", str(value))
    return (type(value).__name__, value)


def _readable(value: Any) -> set[str]:
    if isinstance(value, BaseModel):
        return set(type(value).model_fields)
    return {*value.__struct_fields__, *(["type"] if value.__struct_config__.tag else [])}


def outcome(make: Any) -> Any:
    """``make()``, or its exception's text: the same failure on both sides is parity too (the
    worker turns it into the same dead letter)."""
    try:
        return make()
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"


def row_bytes(event: Any) -> bytes | str:
    def make() -> bytes:
        table, row = event_to_row(event, RECEIVED)
        return table.encode() + orjson.dumps(row)
    return outcome(make)


def session_bytes(event: Any) -> Any:
    sess = session_view(event, epoch_ms(event.timestamp), page_of(event.route, event.url), str(event.event_id))
    return None if sess is None else repr(sess)


def pydantic_events(raw: bytes) -> list[Any] | None:
    """The worker's pydantic path (``_decode`` before the fast path): ``validate_json``, else orjson and
    ``validate_python`` (e.g. nesting deeper than pydantic's JSON parser takes, 200); None if any is invalid."""
    try:
        return EVENT_BATCH_ADAPTER.validate_json(raw) if raw[:1] == b"[" else [EVENT_ADAPTER.validate_json(raw)]
    except ValidationError:
        pass
    decoded = decode_message(raw, step="worker", source="t:0:0", now=RECEIVED)
    return None if decoded.dead_letters else decoded.events


class Tally:
    def __init__(self) -> None:
        self.accepted = self.declined = 0


def check(raw: bytes, tally: Tally) -> None:
    """The fast path declines ``raw``, or agrees with pydantic on everything downstream reads."""
    fast = decode_events(raw)
    if fast is None:
        tally.declined += 1
        return
    tally.accepted += 1
    slow = pydantic_events(raw)
    assert slow is not None, f"fast path accepted what the contract rejects: {raw[:300]!r}"
    assert len(fast) == len(slow)
    for f, s in zip(fast, slow):
        assert canon(f) == canon(s), raw[:300]
        assert row_bytes(f) == row_bytes(s), raw[:300]
        assert session_bytes(f) == session_bytes(s), raw[:300]
        assert outcome(lambda: EVENT_ADAPTER.dump_json(as_contract(f))) == outcome(lambda: EVENT_ADAPTER.dump_json(s))
        later = datetime(2026, 11, 23, 11, tzinfo=timezone.utc)
        assert canon(f.model_copy(update={"timestamp": later})) == canon(s.model_copy(update={"timestamp": later}))


# ------------------------------------------------------------------ traffic


def test_the_contract_example_and_simulated_traffic_agree() -> None:
    tally = Tally()
    example = contract.__doc__.split("Example::", 1)[1].strip().replace("\n    ", " ").encode()  # type: ignore
    check(example, tally)
    assert tally.accepted == 1
    examples = sorted(EXAMPLES.rglob("*.json"))
    assert len(examples) >= 10
    for path in examples:  # the canonical examples per topic, valid and invalid
        check(path.read_bytes(), tally)
    assert tally.accepted >= 4  # actions, vitals and api, the metric (errors go through pydantic)
    end_ms = 1_795_428_000_000
    for shape in ("flush", "one"):
        for m in generate_load(events=4000, sessions=200, shape=shape, seed=3, end_ms=end_ms).messages:
            check(m.value, tally)
    scenario = generate_scenario(30, seed=5, start=datetime(2026, 11, 23, 10, tzinfo=timezone.utc))
    for flush in scenario.flushes:
        check(orjson.dumps(flush.events), tally)
        for event in flush.events:
            check(orjson.dumps(event), tally)
    # most traffic takes the fast path (errors, malformed records and messages holding them do not)
    print("traffic accepted", tally.accepted, "declined", tally.declined)
    assert tally.accepted > 5 * tally.declined, (tally.accepted, tally.declined)


def test_the_worker_decode_uses_the_fast_path_and_falls_back() -> None:
    now = RECEIVED
    fast = RawMessage("pulse.raw.vitals", 0, 1, b"s", orjson.dumps([full_event("vital"), full_event("api")]))
    events, dead = _decode(fast, now)
    assert [type(e).__module__ for e in events] == ["pipeline.contract.fast"] * 2 and not dead
    naive = full_event("vital") | {"timestamp": "2026-11-23T10:00:00"}  # the contract makes it UTC
    events, dead = _decode(RawMessage("t", 0, 2, b"s", orjson.dumps([naive])), now)
    assert isinstance(events[0], contract.VitalEvent) and events[0].timestamp.utcoffset() == timedelta(0)
    bad = full_event("action") | {"action": {"kind": "click"}}  # no selector: the contract's words
    events, dead = _decode(RawMessage("t", 0, 3, b"s", orjson.dumps([full_event("vital"), bad])), now)
    assert len(events) == 1 and "action kind 'click' requires selector" in dead[0].reason


# ------------------------------------------------------------------ mutations

VALUES = ["null", "true", "false", "0", "1", "-1", "2", "1.0", "200.0", "1e2", "1.5", "-0.0", "0.1234567891",
          "1e400", "-1e400", "NaN", "Infinity", "18446744073709551616", "9223372036854775808", "101",
          '""', '"1"', '"1.5"', '"true"', '"abc"', '"\\u00e9\\n"', '"click"', '"good"', '"api"', "[]", "{}",
          '{"a": 1}', '["a"]', '"2026-11-23T10:00:00Z"', '"LCP"', '"visible"', '"checkout.duration\\n"']
TIMES = ["2026-11-23T10:00:00Z", "2026-11-23T10:00:00", "2026-11-23T10:00:00.123456789Z", "2026-11-23T10:00:00.9999996Z",
         "2026-11-23T10:00:00.1234567+02:00", "2026-11-23T10:00:00+02:00", "2026-11-23T10:00:00-00:00",
         "2026-11-23T10:00:00.5-03:30", "2026-11-23 10:00:00Z", "2026-11-23T10:00:00z", "2026-11-23T10:00Z",
         "2026-11-23", "2026-11-23T10:00:00+0200", "2026-11-23T24:00:00Z", "2026-11-23T10:00:60Z",
         "2026-11-23T10:00:00,5Z", "1795428000", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z",
         "2026-11-23T10:00:00+23:59",
         # JSON escapes inside the time: the parsers see the unescaped text, a scan of the raw bytes does not
         "2026-11-23T10:00:00\\u002e9999996Z", "2026-11-23T10:00:00.999999\\u0036Z",
         "2026-11-23T10:00:\\u0030\\u0030.1234567Z", "2026-11-23T10:00:00\\u002E5Z"]
TIME_NUMBERS = ["1795428000", "1795428000.5", "1795428000123"]
UUIDS = [UID.upper(), UID.replace("-", ""), "{" + UID + "}", "urn:uuid:" + UID, UID[:-1], UID + "0", "",
         "0b5b0f0e-8c1d-4c57-9a55-3f7d3a3c2a1g", "0b5b0f0e8c1d-4c57-9a55-3f7d3a3c2a11"]


def leaf_paths(doc: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for key, value in doc.items():
        out.append((*prefix, key))
        if isinstance(value, dict) and key not in ("properties", "tags"):
            out += leaf_paths(value, (*prefix, key))
    return out


def with_raw(doc: dict[str, Any], path: tuple[str, ...], fragment: str | None) -> bytes:
    """``doc`` as JSON with the value at ``path`` replaced by the JSON text ``fragment`` (None: removed)."""
    doc = orjson.loads(orjson.dumps(doc))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if fragment is None:
        del parent[path[-1]]
        return orjson.dumps(doc)
    parent[path[-1]] = "__MUTATION__"
    return orjson.dumps(doc).replace(b'"__MUTATION__"', fragment.encode())


def string_limits() -> dict[str, int]:
    """max_length of every string field by name, read from the contract (so new fields are covered)."""
    limits: dict[str, int] = {}
    for model in (contract.Envelope, contract.Sdk, contract.VitalPayload, contract.ActionPayload,
                  contract.ClickObservation, contract.ApiPayload, contract.MetricPayload):
        for name, info in model.model_fields.items():
            metas = [*info.metadata, *(m for a in typing.get_args(info.annotation) for m in getattr(a, "__metadata__", ()))]
            for m in metas:
                for inner in getattr(m, "metadata", [m]):
                    if hasattr(inner, "max_length") and "str" in str(info.annotation):
                        limits[name] = inner.max_length
    return limits


def mutations() -> list[bytes]:
    out: list[bytes] = []
    limits = string_limits()
    for type_ in FAST_TYPES:
        base = full_event(type_)
        for path in leaf_paths(base):
            out.append(with_raw(base, path, None))  # missing
            for fragment in VALUES:
                out.append(with_raw(base, path, fragment))
            original = orjson.dumps(_get(base, path)).decode()
            key = orjson.dumps(path[-1]).decode()
            out.append(with_raw(base, path, f'{original}, {key}: "zz"'))  # duplicate keys, both orders
            out.append(with_raw(base, path, f'"zz", {key}: {original}'))
            out.append(with_raw(base, path, f'null, {key}: {original}'))
            limit = limits.get(path[-1])
            if limit:
                for char in ("a", "é", "😀", "\\u00e9", "\\ud83d\\ude00"):
                    for n in (limit, limit + 1):
                        out.append(with_raw(base, path, f'"{char * n}"'))
        out.append(with_raw({**base, "unknown": {"x": [1]}}, ("unknown",), '{"deep": [1, 2, {"z": null}]}'))
        for ts_field in ("timestamp", "received_at", "sent_at"):
            out += [with_raw(base, (ts_field,), f'"{t}"') for t in TIMES]
            out += [with_raw(base, (ts_field,), t) for t in TIME_NUMBERS]
        out += [with_raw(base, ("event_id",), f'"{u}"') for u in UUIDS]
        out.append(with_raw(base, ("type",), '"vital", "type": "action"'))
        out.append(orjson.dumps(base).replace(b'"s-1"', b'"\\u0073-\\u0031"'))  # escapes for plain letters
        out.append(b"  " + orjson.dumps(base))
        out.append(orjson.dumps([base, base]) + b" ")
        out.append(orjson.dumps(base)[:-1])  # truncated
        # nesting: pydantic's JSON parser stops at 200 (then orjson + validate_python take it), msgspec
        # raises RecursionError near Python's recursion limit (declined), orjson stops at 1024 (a dead letter)
        for depth in (100, 199, 300, 990, 1000, 1030, 5000):
            out.append(with_raw(base, ("unknown",) if type_ != "action" else ("action", "properties"),
                                '{"a":' + "[" * depth + "1" + "]" * depth + "}"))
    for kind in ACTION_KINDS:  # required per kind, and its absence
        base = full_event("action")
        base["action"]["kind"] = kind
        out.append(orjson.dumps(base))
        for name in ("selector", "scroll_depth", "form", "visibility", "name"):
            out.append(with_raw(base, ("action", name), "null"))
    api = full_event("api")
    for status in ("null", "0", "199", "200", "399", "400", "999", "1000"):
        for ok in ("null", "true", "false"):
            out.append(with_raw(with_raw_doc(api, ("api", "status"), status), ("api", "ok"), ok))
    metric = full_event("metric")
    for name in ("a", "_x", "9x", "a" * 128, "a" * 129, "a b", "a\n", "é", "a/b:c.d-e"):
        out.append(with_raw(metric, ("metric", "name"), orjson.dumps(name).decode()))
    for tags in ({f"k{i}": "v" for i in range(20)}, {f"k{i}": "v" for i in range(21)}, {"9": "v"}, {"k": "v" * 201},
                 {"k\n": "v"}, {"k": 1}):
        out.append(with_raw(metric, ("metric", "tags"), orjson.dumps(tags).decode()))
    return out


def with_raw_doc(doc: dict[str, Any], path: tuple[str, ...], fragment: str) -> dict[str, Any]:
    return orjson.loads(with_raw(doc, path, fragment))


def _get(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def test_mutations_are_declined_or_agree_with_the_contract() -> None:
    tally = Tally()
    cases = mutations()
    for raw in cases:
        check(raw, tally)
        check(b"[" + orjson.dumps(full_event("vital")) + b"," + raw + b"]", tally)  # inside a flush
    # both sides are exercised: the mutations are not all declined, nor all accepted
    print("mutations", len(cases), "accepted", tally.accepted, "declined", tally.declined)
    assert tally.accepted > 1000 and tally.declined > 1000, (tally.accepted, tally.declined)


@pytest.mark.parametrize("raw, why", [
    (with_raw(full_event("vital"), ("timestamp",), '"2026-11-23T10:00:00"'), "naive: the contract makes it UTC"),
    (with_raw(full_event("vital"), ("timestamp",), '"2026-11-23T10:00:00.1234567Z"'), "msgspec rounds"),
    (with_raw(full_event("vital"), ("timestamp",), '"2026-11-23T10:00:00\\u002e1234567Z"'), "msgspec rounds, escaped"),
    (with_raw(full_event("metric"), ("metric", "name"), '"checkout\\n"'), "Python's $ matches before a newline"),
    (with_raw(full_event("api"), ("api", "status"), "200.0"), "pydantic takes an exact float as an int"),
    (with_raw(full_event("vital"), ("vital", "value"), '"1.5"'), "pydantic takes numbers as strings"),
    (with_raw(full_event("vital"), ("consent",), "0"), "pydantic takes 0/1 as bools"),
    (with_raw(full_event("vital"), ("event_id",), '"{' + UID + '}"'), "pydantic takes braced UUIDs"),
    (with_raw(full_event("vital"), ("vital", "value"), "1e400"), "pydantic takes it as inf"),
    (orjson.dumps(full_event("action") | {"action": {"kind": "scroll"}}), "the contract's hook words it"),
    (orjson.dumps({**ENVELOPE, "type": "error", "error": {"exception_type": "E"}}), "errors go through pydantic"),
])
def test_declined(raw: bytes, why: str) -> None:
    assert decode_events(raw) is None, why


def test_compact_floats_are_not_taken_for_long_fractions_of_a_second() -> None:
    vital = with_raw(full_event("vital"), ("vital", "value"), "12.30000000000291")
    assert b'"value":12.30000000000291' in vital and decode_events(vital) is not None
    assert decode_events(vital.replace(b'"s-1"', b'"at 10:00:00.1234567"')) is None  # a time-like text: declined


def test_the_structs_follow_the_contract_field_by_field() -> None:
    """Every model's Struct: field names and order, required or not, defaults and default
    factories, the tag (constraints are checked by behaviour above, one character over each limit)."""
    assert {m.__name__ for m in FAST_STRUCTS} == {
        "VitalEvent", "VitalPayload", "ActionEvent", "ActionPayload", "ClickObservation", "ApiEvent", "ApiPayload",
        "MetricEvent", "MetricPayload", "Sdk"}
    for model, struct in FAST_STRUCTS.items():
        fields = {f.name: f for f in msgspec.structs.fields(struct)}
        tag = struct.__struct_config__.tag
        assert [*fields] == [n for n in model.model_fields if not (tag and n == "type")], model
        for name, f in fields.items():
            info = model.model_fields[name]
            assert f.required == info.is_required(), (model, name)
            if info.default_factory is not None:
                assert f.default_factory is info.default_factory, (model, name)
            elif not info.is_required():
                assert f.default == info.default and type(f.default) is type(info.default), (model, name)
        if tag:
            assert struct.type == tag and typing.get_args(model.model_fields["type"].annotation) == (tag,)


def test_the_generator_refuses_what_it_does_not_know() -> None:
    from pydantic import Field, field_validator

    class Stripped(contract._Model):
        x: typing.Annotated[str, Field(max_length=3)] = ""

        @field_validator("x", mode="before")
        @classmethod
        def _strip(cls, v: Any) -> Any:
            return v.strip()

    class Multiple(contract._Model):
        x: typing.Annotated[float, Field(multiple_of=2)] = 0

    for model in (Stripped, Multiple):
        with pytest.raises(TypeError):
            _Generator().struct(model)
