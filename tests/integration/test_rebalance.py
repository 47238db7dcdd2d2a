"""Cheap and exact rebalances (issue 14): worker B joins and leaves while traffic flows; worker A
keeps the partitions it gets back and rebuilds only the ones that are really new to it.

Real broker, two real ``pulse worker`` processes, the real sink and chDB. The session scenario
(``pipeline/simulate_sessions.py``) knows the true sessions, rage and dead clicks; the tables
must match it exactly. Worker A's ``/health`` counts the session partitions it restored from the
changelog and those it kept: joining and leaving must not make A re-read its own partitions.
With ``PULSE_WORKER_KEEP_STATE_ON_REBALANCE=false`` (the old behaviour) the same counters show A
re-reading everything, so the check can tell the two apart.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from pipeline.contract.topics import topic_for_type
from pipeline.kafka_admin import ensure_topics
from pipeline.settings import Settings
from tests.conftest import free_port, make_settings
from tests.integration.pipeline_procs import PipelineProcs
from tests.integration.test_sessions import assert_matches_truth, query, scenario, wait_for_sessions
from tests.integration.test_soak import health

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

PARTITIONS = 4
TRAFFIC_S = 50.0
B_JOINS_AT, B_LEAVES_AT = 8.0, 30.0  # seconds into the traffic (B leaves no earlier than 5 s after ready)


def produce_spread(settings: Settings, flushes: list[Any], seconds: float, done: threading.Event,
                   paused: threading.Event | None = None) -> None:
    """Send the flushes evenly over ``seconds`` (one message per raw topic and flush, keyed by session);
    while ``paused`` is set nothing is sent, and what fell due meanwhile goes right after."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, linger_ms=5,
                                    enable_idempotence=True)
        await producer.start()
        try:
            t0 = time.monotonic()
            for i, flush in enumerate(flushes):
                await asyncio.sleep(max(0.0, t0 + seconds * i / len(flushes) - time.monotonic()))
                while paused is not None and paused.is_set():
                    await asyncio.sleep(0.01)
                by_topic: dict[str, list[Any]] = {}
                for e in flush.events:
                    try:
                        topic = topic_for_type(settings.kafka, e.get("type", ""))
                    except ValueError:
                        topic = settings.kafka.topic_actions
                    by_topic.setdefault(topic, []).append(e)
                for topic, events in by_topic.items():
                    await producer.send(topic, orjson.dumps(events), key=flush.session_id.encode())
            await producer.flush()
        finally:
            await producer.stop()
            done.set()

    asyncio.run(run())


def raw_held(doc: dict[str, Any] | None, settings: Settings) -> int:
    if not doc:
        return 0
    return len([p for p in doc.get("assigned_partitions", []) if p.rsplit(":", 1)[0] in settings.kafka.raw_topics])


def wait_until(what: str, check: Any, timeout_s: float, procs: list[PipelineProcs]) -> float:
    started = time.monotonic()
    while time.monotonic() < started + timeout_s:
        for p in procs:
            p.check_alive()
        if check():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout_s:.0f} s\n" + "\n".join(p.log("worker") for p in procs))


@pytest.mark.parametrize("keep", [True, False], ids=["keep", "rebuild-all"])
def test_worker_joins_and_leaves_under_traffic_exact_and_cheap(kafka_bootstrap: str, tmp_path: Path,
                                                                keep: bool) -> None:
    settings = make_settings(kafka_bootstrap, tmp_path, PULSE_KAFKA_PARTITIONS=str(PARTITIONS),
                             # 3 h of scenario are sent in 50 s (216x): the lateness allowance must cover
                             # a rebalance's pause in that time scale (30 min of event time = 8 s here), and
                             # no partition may follow the wall clock before the traffic is over.
                             PULSE_SESSIONS_ALLOWED_LATENESS_S="1800", PULSE_SESSIONS_QUIET_PARTITION_S="45",
                             PULSE_WORKER_KEEP_STATE_ON_REBALANCE=str(keep).lower())
    asyncio.run(ensure_topics(settings.kafka))
    all_raw = len(settings.kafka.raw_topics) * PARTITIONS
    sc = scenario(seed=14, sessions=300)
    a_port, b_port = settings.worker.web_port, free_port()
    procs = PipelineProcs(settings, tmp_path / "logs")
    procs_b = PipelineProcs(settings, tmp_path / "logs-b")
    figures: dict[str, Any] = {"keep": keep}
    try:
        procs.start("sink")
        procs.wait_http(f"http://127.0.0.1:{settings.sink.port}/ping")
        procs.start("worker")
        procs.wait_ready(a_port, timeout_s=120)
        start = health(a_port)["ingest"]["rebalance"]  # type: ignore[index]
        assert start["session_partitions_restored"] == PARTITIONS and start["session_partitions_kept"] == 0, start

        done = threading.Event()
        traffic = threading.Thread(target=produce_spread, args=(settings, sc.flushes, TRAFFIC_S, done), daemon=True)
        t0 = time.monotonic()
        traffic.start()

        # B joins: both ready, the raw partitions shared
        time.sleep(max(0.0, t0 + B_JOINS_AT - time.monotonic()))
        procs_b.start("worker", PULSE_WORKER_DATA_DIR=str(settings.worker.data_dir) + "-b",
                      PULSE_WORKER_WEB_PORT=str(b_port), PULSE_WORKER_INSTANCE_ID=f"{settings.worker.app_id}-b")

        def both_ready() -> bool:
            a, b = health(a_port), health(b_port)
            return bool(a and b and a.get("ready") and b.get("ready") and raw_held(b, settings) > 0
                        and raw_held(a, settings) + raw_held(b, settings) == all_raw)

        figures["join_to_both_ready_s"] = round(wait_until("both workers ready", both_ready, 120, [procs, procs_b]), 1)
        a_doc = health(a_port)
        joined = a_doc["ingest"]["rebalance"]  # type: ignore[index]
        b_held = raw_held(health(b_port), settings)
        figures["a_pause_at_join_s"] = joined["last_pause_s"]
        figures["a_after_join"] = {k: joined[k] for k in ("session_partitions_restored", "session_partitions_kept",
                                                          "last_kept", "last_rebuilt")}
        a_session_parts = len({p.rsplit(":", 1)[1] for p in a_doc["assigned_partitions"]  # type: ignore[index]
                               if p.rsplit(":", 1)[0] in settings.kafka.session_topics})

        # B leaves (SIGTERM; a static member: its partitions move after the session timeout)
        time.sleep(max(5.0, t0 + B_LEAVES_AT - time.monotonic()))
        assert procs_b.stop("worker") == 0
        left = time.monotonic()
        wait_until("A holds every raw partition", lambda: raw_held(health(a_port), settings) == all_raw
                   and bool((health(a_port) or {}).get("ready")), 90, [procs])
        figures["leave_to_a_ready_s"] = round(time.monotonic() - left, 1)
        back = health(a_port)["ingest"]["rebalance"]  # type: ignore[index]
        figures["a_pause_at_leave_s"] = back["last_pause_s"]
        figures["a_after_leave"] = {k: back[k] for k in ("session_partitions_restored", "session_partitions_kept",
                                                         "last_kept", "last_rebuilt")}

        assert done.wait(timeout=TRAFFIC_S + 60)
        wait_for_sessions(settings, sc.truth.session_count, procs, timeout_s=180)
        print(f"\n--- rebalance figures ---\n{orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode()}")

        # exact: sessions, rage and dead clicks, bounces; raw rows stored once
        assert_matches_truth(settings, sc, procs.log("worker"))
        for table in ("actions", "errors"):
            [[n, distinct]] = query(settings, f"SELECT count(), uniqExact(event_id) FROM {table}")
            assert int(n) == int(distinct) > 0, (table, n, distinct)

        # cheap: what A re-read from the changelog
        assert 0 < b_held < all_raw and 0 < a_session_parts < PARTITIONS, (b_held, a_session_parts)
        if keep:
            # B joining: A kept every session partition it got back and read none
            assert joined["session_partitions_restored"] == PARTITIONS, joined
            assert joined["session_partitions_kept"] >= a_session_parts, joined
            # B leaving: A read only B's partitions (new to it) and kept its own
            assert back["session_partitions_restored"] == PARTITIONS + (PARTITIONS - a_session_parts), back
            assert back["session_partitions_kept"] >= 2 * a_session_parts, back
        else:
            assert joined["session_partitions_restored"] >= PARTITIONS + a_session_parts, joined
            assert back["session_partitions_restored"] >= 2 * PARTITIONS + a_session_parts, back
            assert back["session_partitions_kept"] == 0, back
    finally:
        procs_b.stop_all()
        procs.stop_all()
