"""The notifier process's durable parts without a broker: the SQLite store, applying records with
offsets (skip what is stored, isolate a bad record), the retry decision, and the HTTP API."""

from __future__ import annotations

import asyncio
from collections import namedtuple
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipeline.notify import NotifierState
from pipeline.notify.deliver import SendResult, decide
from pipeline.notify.service import NotifierService, make_app
from pipeline.notify.store import NotifierStore
from pipeline.settings import Settings
from tests.unit.notify.factory import RECEIVERS, T0, Alerts, config

Rec = namedtuple("Rec", "topic partition offset value")
TOPIC = "pulse.alerts"
NOW_CONFIG = config(RECEIVERS + """
route:
  receiver: hook
  group_by: [alertname, project]
  group_wait: 0s
""")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def service(path: Path, clock: Clock | None = None, settings: Settings | None = None) -> NotifierService:
    return NotifierService(settings or Settings(), NOW_CONFIG, NotifierStore(path), clock=clock or Clock())


def rec(event: dict[str, Any], offset: int, partition: int = 0) -> Rec:
    return Rec(TOPIC, partition, offset, orjson.dumps(event))


# ------------------------------------------------------------------------------ store


def test_outbox_insert_is_idempotent_and_ordered(tmp_path: Path) -> None:
    svc = service(tmp_path / "s.db")
    alerts = Alerts()
    intents = svc.notifier.on_alert(svc.state, alerts.fire("a", T0), T0)
    intents += svc.notifier.on_alert(svc.state, alerts.fire("b", T0, rule="Other"), T0)
    assert len(intents) == 2
    with svc.store.transaction():
        assert svc.store.add_intents(intents, T0) == 2
        assert svc.store.add_intents(intents[:1], T0) == 0  # same id: not inserted twice
    assert [r.intent_id for r in svc.store.pending()] == [i.intent_id for i in intents]
    assert svc.store.pending()[0].to_intent() == intents[0]
    with svc.store.transaction():
        svc.store.reschedule(intents[0].intent_id, 1, T0 + 1000, T0, "HTTP 500")
        svc.store.finish(intents[1].intent_id, "done", 1, T0)
    row = svc.store.get(intents[0].intent_id)
    assert row is not None and (row.attempts, row.next_attempt_at, row.last_error) == (1, T0 + 1000, "HTTP 500")
    assert svc.store.counts() == {"pending": 1, "done": 1, "failed": 0}
    with svc.store.transaction():
        assert svc.store.prune(T0 + 1) == 1  # the finished one
    assert svc.store.counts() == {"pending": 1, "done": 0, "failed": 0}


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    store = NotifierStore(tmp_path / "s.db")
    state = NotifierState()
    state.seen_events["e1"] = T0
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.save_state(state, T0)
            store.set_offsets({(TOPIC, 0): 5})
            raise RuntimeError("boom")
    assert store.offsets() == {} and store.load_state().seen_events == {}
    with store.transaction():
        assert store.save_state(state, T0)
        store.set_offsets({(TOPIC, 0): 5})
    with store.transaction():
        assert not store.save_state(state, T0)  # unchanged: not written again
        store.set_offsets({(TOPIC, 0): 3})  # offsets never go back
    store.close()
    again = NotifierStore(tmp_path / "s.db")
    assert again.offsets() == {(TOPIC, 0): 5} and again.load_state().seen_events == {"e1": T0}


# ------------------------------------------------------------------------------ records and offsets


def test_records_below_the_stored_offset_are_skipped_also_after_a_restart(tmp_path: Path) -> None:
    svc = service(tmp_path / "s.db")
    event = Alerts().fire("a", T0)
    assert svc.apply_records([rec(event, 0)]) == 1
    assert len(svc.store.pending()) == 1 and svc.store.offsets() == {(TOPIC, 0): 1}
    assert svc.apply_records([rec(event, 0)]) == 0  # the same record again (a re-fetch)
    svc.store.close()

    restarted = service(tmp_path / "s.db")  # as after SIGKILL: everything comes from the file
    assert restarted.offsets == {(TOPIC, 0): 1} and "a" in restarted.state.alerts
    assert restarted.apply_records([rec(event, 0)]) == 0
    # the same event under a new offset (produced twice): applied, but the engine drops its event id
    assert restarted.apply_records([rec(event, 1)]) == 1
    assert len(restarted.store.pending()) == 1 and restarted.store.offsets() == {(TOPIC, 0): 2}


def test_invalid_records_advance_the_offset(tmp_path: Path) -> None:
    svc = service(tmp_path / "s.db")
    bad = [Rec(TOPIC, 1, 7, b"not json"), Rec(TOPIC, 1, 8, b'{"fingerprint": "x"}')]
    assert svc.apply_records(bad) == 2  # (read and skipped in the same transaction)
    assert svc.store.offsets() == {(TOPIC, 1): 9} and svc.store.pending() == []


def test_a_record_that_breaks_the_engine_is_isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = service(tmp_path / "s.db")
    alerts = Alerts()
    good1, poison, good2 = alerts.fire("a", T0), alerts.fire("p", T0, rule="Poison"), alerts.fire("b", T0, rule="B")
    real = svc.notifier.on_alert

    def on_alert(state: NotifierState, event: dict[str, Any], now_ms: int) -> Any:
        out = real(state, event, now_ms)  # changes the state, then fails: must not be stored
        if event["rule"] == "Poison":
            raise RuntimeError("engine bug")
        return out

    monkeypatch.setattr(svc.notifier, "on_alert", on_alert)
    assert svc.apply_records([rec(good1, 0), rec(poison, 1), rec(good2, 2)]) == 2
    assert svc.store.offsets() == {(TOPIC, 0): 3}
    assert sorted(svc.state.alerts) == ["a", "b"]  # the poison record's half-done change was rolled back
    assert sorted(svc.store.load_state().alerts) == ["a", "b"]
    assert {r.to_intent().alerts[0]["fingerprint"] for r in svc.store.pending()} == {"a", "b"}


def test_commit_failure_reloads_the_stored_state(tmp_path: Path) -> None:
    svc = service(tmp_path / "s.db")
    svc.apply_records([rec(Alerts().fire("a", T0), 0)])

    def change(state: NotifierState) -> list[Any]:
        state.alerts.clear()
        raise ValueError("refused")

    with pytest.raises(ValueError):
        svc.commit(change)
    assert "a" in svc.state.alerts


# ------------------------------------------------------------------------------ retry decisions


@pytest.mark.parametrize(("result", "attempts", "outcome", "wait"), [
    (SendResult(True, 200), 1, "delivered", None),
    (SendResult(True, 202), 3, "delivered", None),
    (SendResult(False, 500), 1, "retry", 1.0),
    (SendResult(False, 502), 3, "retry", 4.0),
    (SendResult(False, None, error="timeout"), 2, "retry", 2.0),
    (SendResult(False, 429, {"Retry-After": "30"}), 1, "retry", 30.0),
    (SendResult(False, 503, {"retry-after": "7"}), 5, "retry", 7.0),
    (SendResult(False, 400), 1, "failed", None),
    (SendResult(False, 404), 1, "failed", None),
    (SendResult(False, 550, permanent=True), 1, "failed", None),  # SMTP: mailbox unavailable
    (SendResult(False, 451), 1, "failed", None),  # (an HTTP 451; SMTP 4xx come without a status)
])
def test_decide(result: SendResult, attempts: int, outcome: str, wait: float | None) -> None:
    d = decide(result, attempts, T0)
    assert (d.outcome, d.retry_in_s) == (outcome, wait)


# ------------------------------------------------------------------------------ HTTP API


async def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> tuple[TestClient, NotifierService]:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    svc = service(tmp_path / "s.db", settings=Settings())
    client = TestClient(TestServer(make_app(svc)))
    await client.start_server()
    return client, svc


async def test_silences_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client, svc = await api(tmp_path, monkeypatch)
    try:
        for body, needle in [
            ({}, "matchers"), ({"matchers": "nope", "duration": "1h", "created_by": "a"}, "matcher"),
            ({"matchers": ['a="1"'], "created_by": "a"}, "duration"),
            ({"matchers": ['a="1"'], "duration": "1h"}, "created_by"),
            ({"matchers": ['a="1"'], "ends_at": "2020-01-01T00:00:00", "created_by": "a"}, "time zone"),
            ({"matchers": ['a="1"'], "ends_at": T0 - 1, "created_by": "a"}, "past"),
        ]:
            resp = await client.post("/api/silences", json=body)
            assert resp.status == 400, body
            assert needle in (await resp.json())["error"], body
        resp = await client.post("/api/silences", data=b"[1]")
        assert resp.status == 400 and "JSON object" in (await resp.json())["error"]

        resp = await client.post("/api/silences", json={"matchers": ['alertname="A"'], "duration": "30m",
                                                        "created_by": "alice", "comment": "deploy"})
        assert resp.status == 201
        sid = (await resp.json())["silence_id"]
        assert (await (await client.get("/api/silences")).json())[0]["status"] == "active"
        assert (await client.delete(f"/api/silences/{sid[:6]}")).status == 200  # a unique prefix
        assert await (await client.get("/api/silences")).json() == []  # expired ones are hidden ...
        listed = await (await client.get("/api/silences?expired=true")).json()  # ... unless asked for
        assert [s["status"] for s in listed] == ["expired"]
        assert NotifierStore(tmp_path / "s.db").load_state().silences[sid].ends_at == T0  # stored
        assert (await client.delete("/api/silences/zzz")).status == 404
    finally:
        await client.close()


async def test_ack_resolve_and_incidents_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client, svc = await api(tmp_path, monkeypatch)
    try:
        svc.apply_records([rec(Alerts().fire("fp1", T0), 0)])
        [incident] = svc.state.incidents.values()
        assert (await client.post("/api/alerts/fp1/ack", json={})).status == 400
        assert (await client.post("/api/alerts/unknown/ack", json={"by": "a"})).status == 404
        resp = await client.post(f"/api/alerts/{incident.incident_id[:8]}/ack", json={"by": "alice"})
        assert resp.status == 200
        doc = await resp.json()
        assert doc["incidents"] == [incident.incident_id] and doc["notifications"] == 1
        assert (await client.post("/api/alerts/fp1/ack", json={"by": "alice"})).status == 409
        listed = await (await client.get("/api/incidents?status=acknowledged")).json()
        assert [i["acked_by"] for i in listed] == ["alice"] and listed[0]["alerts"][0]["fingerprint"] == "fp1"
        assert [e["what"] for e in listed[0]["timeline"]][-1] == "acknowledged"
        assert (await client.get("/api/incidents?status=bogus")).status == 400
        resp = await client.post("/api/alerts/fp1/resolve", json={"by": "bob"})
        assert resp.status == 200
        assert svc.state.incidents[incident.incident_id].status == "resolved"
        kinds = sorted(r.kind for r in svc.store.pending())
        assert kinds == ["acknowledged", "firing", "resolved"]  # all in the outbox, once
        single = await (await client.get(f"/api/incidents/{incident.incident_id}")).json()
        assert single["resolved_by"] == "bob"
    finally:
        await client.close()


async def test_token_protects_the_api_but_not_health(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = await api(tmp_path, monkeypatch, PULSE_COLLECTOR_API_TOKEN="s3cret")
    try:
        assert (await client.get("/api/silences")).status == 401
        assert (await client.get("/api/silences", headers={"Authorization": "Bearer s3cret"})).status == 200
        assert (await client.get("/health")).status == 503  # not consuming (no broker here)
        assert (await client.get("/metrics")).status == 200
    finally:
        await client.close()


# ------------------------------------------------------------------------------ delivery order


async def test_one_send_at_a_time_per_receiver_and_incident(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    svc = service(tmp_path / "s.db", clock)
    alerts = Alerts()
    svc.apply_records([rec(alerts.fire("a", T0), 0), rec(alerts.fire("b", T0, rule="Other"), 1)])
    svc.commit(lambda state: svc.notifier.resolve(state, "a", "alice", T0))  # behind a's trigger, same lane
    assert [r.kind for r in svc.store.pending()] == ["firing", "firing", "resolved"]
    started: list[tuple[str, str]] = []

    async def fake_send(session: Any, row: Any, timeout_s: float) -> None:
        started.append((row.kind, row.to_intent().alerts[0]["fingerprint"]))

    monkeypatch.setattr(svc, "_send_one", fake_send)
    svc._start_due(None, 1.0)  # type: ignore[arg-type]
    await asyncio.gather(*svc._inflight.values())
    assert sorted(started) == [("firing", "a"), ("firing", "b")]  # the lanes' heads only

    # a's trigger waits for a retry: its resolve must wait too; b's lane is free
    first = svc.store.pending()[0]
    svc.commit(lambda state: [], also=lambda store: store.reschedule(first.intent_id, 1, T0 + 5000, T0, "HTTP 500"))
    svc.commit(lambda state: [], also=lambda store: store.finish(svc.store.pending()[1].intent_id, "done", 1, T0))
    started.clear()
    assert svc._start_due(None, 1.0) == 1.0  # type: ignore[arg-type]  # (waits at most a second)
    assert started == [] and not svc._inflight
    clock.now = T0 + 5000
    svc._start_due(None, 1.0)  # type: ignore[arg-type]
    await asyncio.gather(*svc._inflight.values())
    assert started == [("firing", "a")]
