"""Sessions, rage clicks and dead clicks end to end: real Kafka, the real worker and sink, chDB.

The scenario generator knows the true answer (near-threshold cases included); the pipeline's
ClickHouse tables must match it exactly -- also when the worker is SIGKILLed mid-run.

Scenario timestamps lie 1-4 h in the past, so once a partition is caught up its watermark follows
the wall clock (the timer) and every session closes without more traffic.
"""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from pipeline.contract.topics import topic_for_type
from pipeline.settings import Settings
from pipeline.simulate_sessions import SessionScenario, generate_session_scenario
from pipeline.storage.query_client import QueryError, run_query
from tests.integration.kafka_read import read_topics
from tests.integration.pipeline_procs import PipelineProcs

pytestmark = pytest.mark.integration


def scenario(seed: int, sessions: int) -> SessionScenario:
    return generate_session_scenario(seed=seed, sessions=sessions,
                                     start=datetime.now(timezone.utc) - timedelta(hours=4))


async def produce(settings: Settings, flushes: list) -> None:  # type: ignore[type-arg]
    """Each SDK flush becomes one message per raw topic, keyed by session id (as the collector does)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, linger_ms=10,
                                enable_idempotence=True)
    await producer.start()
    try:
        futures = []
        for flush in flushes:
            by_topic: dict[str, list] = {}  # type: ignore[type-arg]
            for e in flush.events:
                try:
                    topic = topic_for_type(settings.kafka, e.get("type", ""))
                except ValueError:  # malformed on purpose: it still travels (and is dead-lettered)
                    topic = settings.kafka.topic_actions
                by_topic.setdefault(topic, []).append(e)
            for topic, events in by_topic.items():
                futures.append(await producer.send(topic, orjson.dumps(events), key=flush.session_id.encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def query(settings: Settings, sql: str) -> list[list[str]]:
    try:
        out = run_query(settings, sql, "TabSeparated")
    except QueryError:
        return []
    return [line.split("\t") for line in out.splitlines() if line]


def wait_for_sessions(settings: Settings, expected: int, procs: PipelineProcs, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    n = 0
    while time.monotonic() < deadline:
        rows = query(settings, "SELECT count() FROM sessions FINAL")
        n = int(rows[0][0]) if rows else 0
        if n >= expected:
            time.sleep(1.5)  # let strays (which would be wrong rows) arrive too
            return
        time.sleep(0.5)
    try:
        health = urllib.request.urlopen(f"http://127.0.0.1:{settings.worker.web_port}/health", timeout=5).read()
        health += b"\n" + b"\n".join(
            line for line in urllib.request.urlopen(f"http://127.0.0.1:{settings.worker.web_port}/metrics",
                                                    timeout=5).read().splitlines()
            if line.startswith((b"pulse_late", b"pulse_session", b"pulse_active")))
    except OSError as exc:
        health = repr(exc).encode()
    raise AssertionError(f"{n} of {expected} sessions stored\nworker health: {health.decode()}\n"
                         f"{procs.log('worker')[-3000:]}")


def stored_sessions(settings: Settings) -> Counter[tuple]:  # type: ignore[type-arg]
    rows = query(settings, "SELECT session_id, toUnixTimestamp64Milli(start), toUnixTimestamp64Milli(end), "
                           "duration_ms, pageviews, clicks, rage_clicks, dead_clicks, errors, bounce "
                           "FROM sessions FINAL")
    return Counter((r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]), int(r[7]), int(r[8]),
                    r[9] == "true") for r in rows)


def expected_sessions(sc: SessionScenario) -> Counter[tuple]:  # type: ignore[type-arg]
    return Counter((s.session_id, s.start_ms, s.end_ms, s.duration_ms, s.pageviews, s.clicks, s.rage_clicks,
                    s.dead_clicks, s.errors, s.bounce) for s in sc.truth.sessions)


def assert_matches_truth(settings: Settings, sc: SessionScenario, log: str = "") -> None:
    stored = stored_sessions(settings)
    expected = expected_sessions(sc)
    assert stored == expected, f"missing {expected - stored}\nextra {stored - expected}\n{log[-3000:]}"
    rage = Counter((r[0], r[1], int(r[2])) for r in query(
        settings, "SELECT session_id, selector, clicks FROM rage_clicks FINAL"))
    assert rage == Counter((r.session_id, r.selector, r.clicks) for r in sc.truth.rage_clicks)
    dead = Counter((r[0], r[1], r[2], r[3]) for r in query(
        settings, "SELECT session_id, event_id, selector, kind FROM dead_clicks FINAL"))
    assert dead == Counter((d.session_id, d.event_id, d.selector, d.kind) for d in sc.truth.dead_clicks)
    [[bounces]] = query(settings, "SELECT countIf(bounce) FROM sessions FINAL")
    assert int(bounces) == sc.truth.bounces


def test_sessions_rage_and_dead_clicks_match_the_truth(settings: Settings, tmp_path: Path) -> None:
    sc = scenario(seed=21, sessions=80)
    assert sc.truth.total_rage > 5 and sc.truth.total_dead > 5 and sc.truth.bounces > 0
    asyncio.run(produce(settings, sc.flushes))
    procs = PipelineProcs(settings, tmp_path / "logs")
    try:
        procs.start("sink")
        procs.wait_http(f"http://127.0.0.1:{settings.sink.port}/ping")
        procs.start("worker")
        wait_for_sessions(settings, sc.truth.session_count, procs)
        assert_matches_truth(settings, sc)

        # Near-threshold cases, by name.
        per_id = {r[0]: (int(r[1]), int(r[2])) for r in query(
            settings, "SELECT session_id, count(), sum(rage_clicks) FROM sessions FINAL "
                      "WHERE session_id LIKE 'sess-edge-%' GROUP BY session_id")}
        assert per_id["sess-edge-rage-999ms"] == (1, 1) and per_id["sess-edge-rage-1001ms"] == (1, 0)
        assert per_id["sess-edge-rage-29px"] == (1, 1) and per_id["sess-edge-rage-31px"] == (1, 0)
        assert per_id["sess-edge-idle-29min"][0] == 1 and per_id["sess-edge-idle-31min"][0] == 2
        assert query(settings, "SELECT clicks FROM rage_clicks FINAL "
                               "WHERE session_id = 'sess-edge-rage-burst-6'") == [["6"]]

        # Page views and the per-minute page UX view hold the same clicks as the sessions.
        [[pv_clicks, pv_rage]] = query(settings, "SELECT sum(clicks), sum(rage_clicks) FROM page_views FINAL")
        [[s_clicks]] = query(settings, "SELECT sum(clicks) FROM sessions FINAL")
        assert int(pv_clicks) == int(s_clicks) and int(pv_rage) == sc.truth.total_rage
        [[ux_rage, ux_dead]] = query(settings, "SELECT sum(rage_clicks), sum(dead_clicks) FROM page_ux_minute")
        assert (int(ux_rage), int(ux_dead)) == (sc.truth.total_rage, sc.truth.total_dead)

        # Rage and dead clicks also reach the UX-signal topic, with stable ids for dedup.
        signals = asyncio.run(read_topics(
            settings.kafka.bootstrap_servers, [settings.kafka.topic_ux_signals],
            until=lambda rs: len(rs) >= sc.truth.total_rage + sc.truth.total_dead))
        kinds = Counter(orjson.loads(r.value)["signal"] for r in signals)
        assert kinds == {"rage_click": sc.truth.total_rage, "dead_click": sc.truth.total_dead}

        # A late event: stored raw, counted in late_events, and no session changes.
        late_id = "00000000-0000-4000-8000-00000000beef"
        edge = sc.truth.for_session("sess-edge-bounce-9999ms").sessions[0]
        late = [{"event_id": late_id, "type": "action", "project": "demo", "session_id": edge.session_id,
                 "timestamp": datetime.fromtimestamp((edge.end_ms + 1) / 1000, timezone.utc).isoformat(),
                 "action": {"kind": "pageview"}}]
        asyncio.run(produce(settings, [type("F", (), {"session_id": edge.session_id, "events": late})()]))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not query(
                settings, f"SELECT 1 FROM actions WHERE event_id = '{late_id}'"):
            time.sleep(0.3)
        assert query(settings, f"SELECT 1 FROM actions WHERE event_id = '{late_id}'") == [["1"]]
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{settings.worker.web_port}/metrics",
                                         timeout=10).read().decode()
        late_line = next(line for line in metrics.splitlines()
                         if line.startswith('pulse_late_events_total{process="worker",stage="sessions"}'))
        assert float(late_line.split()[-1]) >= 1
        assert stored_sessions(settings) == expected_sessions(sc)
    finally:
        procs.stop_all()


def test_worker_sigkill_mid_run_still_matches_the_truth(settings: Settings, tmp_path: Path) -> None:
    """First half of the traffic, SIGKILL the worker as soon as sessions start to close, second
    half, restart: the restored state (changelog) plus replayed raw offsets give the exact truth.
    The first worker's timer is off so its partitions do not jump to the wall clock between the
    halves (that would make the second half late, correctly, but not what this test is about)."""
    sc = scenario(seed=5, sessions=400)
    half = len(sc.flushes) // 2
    asyncio.run(produce(settings, sc.flushes[:half]))
    procs = PipelineProcs(settings, tmp_path / "logs")
    try:
        procs.start("sink")
        procs.wait_http(f"http://127.0.0.1:{settings.sink.port}/ping")
        procs.start("worker", PULSE_SESSIONS_TIMER_INTERVAL_S="3600")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not query(settings, "SELECT 1 FROM sessions LIMIT 1"):
            time.sleep(0.05)
        assert procs.stop("worker", sig=signal.SIGKILL) == -signal.SIGKILL
        closed_at_kill = int(query(settings, "SELECT count() FROM sessions FINAL")[0][0])
        assert 0 < closed_at_kill < sc.truth.session_count

        asyncio.run(produce(settings, sc.flushes[half:]))
        procs.start("worker")
        wait_for_sessions(settings, sc.truth.session_count, procs, timeout_s=180)
        assert_matches_truth(settings, sc, procs.log("worker"))
    finally:
        procs.stop_all()
