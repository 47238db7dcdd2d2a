"""Rebalances that land inside a gathering (issue 14): the ingest runner gathers polls for
``PULSE_WORKER_STEP_INTERVAL_S`` before a step; records gathered before a revocation belong to
the old assignment and must be dropped (the next owner reads them again from the committed
offsets), and an assignment must be restored before anything is processed.

With the default 1 s interval a rebalance falls inside a gathering by luck; here every worker
gathers for 8 s (a step costs ~0.1 s at this rate, so a revocation nearly always finds records
gathered), with a batch size no poll reaches, while a 300-session scenario with known sessions,
rage and dead clicks flows steadily into 4 partitions:

1. worker B joins: A is revoked in the middle of a gathering (a short rebalance round);
2. one second into a gathering of A's, the traffic pauses, B is SIGKILLed in the middle of its
   own gathering and a newcomer joins the group at once. A is revoked before its deadline, and
   the group waits for B's session (15 s) to expire before it assigns anything: A's poll times
   out at the deadline with nothing fetched since the revocation, so the gathering ends while
   the consumer still names the old assignment. Had A kept what it gathered before the
   revocation, it would process it with those partitions' sessions set aside (tried: the step
   fails on every record, the worker dead-letters them and stops);
3. the newcomer (a bare consumer of the ingest group: it processes and commits nothing) leaves:
   A is revoked in a gathering again and takes every partition.

Then every raw row is stored exactly once, sessions, rage and dead clicks match the truth, no
event is dead-lettered, and A's ``/health`` shows that it dropped gathered records at revocations.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from pipeline.kafka_admin import ensure_topics
from pipeline.settings import Settings
from tests.conftest import free_port, make_settings
from tests.integration.pipeline_procs import PipelineProcs
from tests.integration.test_rebalance import produce_spread, raw_held, wait_until
from tests.integration.test_sessions import assert_matches_truth, query, scenario, wait_for_sessions
from tests.integration.test_soak import TABLE_OF, health

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PARTITIONS = 4
STEP_INTERVAL_S = 8.0
TRAFFIC_S = 45.0
B_JOINS_AT = 1.0  # seconds into the traffic


class Newcomer:
    """A member joining the ingest group when the test says and leaving (LeaveGroup) on request,
    as a worker that starts and stops would, but without its start-up time: a bare consumer with
    the workers' group, topics and assignor. It commits nothing, so what it held is re-read."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.assigned: set[TopicPartition] = set()
        self.leave = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def join(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.leave.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the newcomer did not leave within 30 s"

    async def _run(self) -> None:
        k = self.settings.kafka
        consumer = AIOKafkaConsumer(*k.raw_topics, bootstrap_servers=k.bootstrap_servers,
                                    group_id=self.settings.worker.ingest_group(), enable_auto_commit=False,
                                    partition_assignment_strategy=(RangePartitionAssignor,),
                                    session_timeout_ms=15_000, heartbeat_interval_ms=3_000)
        await consumer.start()
        try:
            while not self.leave.is_set():
                self.assigned = set(consumer.assignment())
                await asyncio.sleep(0.1)
        finally:
            await consumer.stop()


def next_step(port: int, procs: list[PipelineProcs], timeout_s: float = 60) -> float:
    """When the worker's next step ended (``last_batch_at`` in ``/health`` changed): its next gathering begins."""
    last = (health(port) or {}).get("last_batch_at")
    wait_until("the next step", lambda: (health(port) or {}).get("last_batch_at") not in (None, last),
               timeout_s, procs)
    return time.monotonic()


def rebalance_of(port: int) -> dict[str, Any]:
    doc = health(port)
    assert doc is not None, f"no /health on port {port}"
    return doc["ingest"]["rebalance"]  # type: ignore[no-any-return]


def test_rebalances_inside_long_gatherings_are_exact(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = make_settings(kafka_bootstrap, tmp_path, PULSE_KAFKA_PARTITIONS=str(PARTITIONS),
                             PULSE_WORKER_STEP_INTERVAL_S=str(STEP_INTERVAL_S), PULSE_WORKER_BATCH_SIZE="100000",
                             # polls return within 0.1 s, so a gathering holds records from its first tenth of a second
                             PULSE_WORKER_FETCH_MAX_WAIT_MS="100",
                             # 3 h of scenario in 45 s (240x), as in test_rebalance.py: the lateness allowance
                             # covers a rebalance's pause in that time scale; a partition follows the wall clock
                             # only once the traffic is over (its input never pauses 20 s while it is held)
                             PULSE_SESSIONS_ALLOWED_LATENESS_S="1800", PULSE_SESSIONS_QUIET_PARTITION_S="20")
    asyncio.run(ensure_topics(settings.kafka))
    all_raw = len(settings.kafka.raw_topics) * PARTITIONS
    sc = scenario(seed=15, sessions=300)
    a_port, b_port = settings.worker.web_port, free_port()
    procs = PipelineProcs(settings, tmp_path / "logs")
    procs_b = PipelineProcs(settings, tmp_path / "logs-b")
    newcomer = Newcomer(settings)
    figures: dict[str, Any] = {}
    try:
        procs.start("sink")
        procs.wait_http(f"http://127.0.0.1:{settings.sink.port}/ping")
        procs.start("worker")
        procs.wait_ready(a_port, timeout_s=120)
        assert rebalance_of(a_port)["gathered_dropped"] == 0

        done = threading.Event()
        paused = threading.Event()
        traffic = threading.Thread(target=produce_spread, args=(settings, sc.flushes, TRAFFIC_S, done, paused),
                                   daemon=True)
        t0 = time.monotonic()
        traffic.start()

        # 1. B joins while A gathers
        time.sleep(max(0.0, t0 + B_JOINS_AT - time.monotonic()))
        procs_b.start("worker", PULSE_WORKER_DATA_DIR=str(settings.worker.data_dir) + "-b",
                      PULSE_WORKER_WEB_PORT=str(b_port), PULSE_WORKER_INSTANCE_ID=f"{settings.worker.app_id}-b")

        def shared_with(port: int) -> bool:
            a, other = health(a_port), health(port)
            return bool(a and other and a.get("ready") and other.get("ready") and raw_held(other, settings) > 0
                        and raw_held(a, settings) + raw_held(other, settings) == all_raw)

        wait_until("B ready, the partitions shared", lambda: shared_with(b_port), 120, [procs, procs_b])
        figures["b_ready_at_s"] = round(time.monotonic() - t0, 1)
        joined = rebalance_of(a_port)
        figures["a_at_join"] = {k: joined[k] for k in ("last_pause_s", "gathered_dropped")}

        # 2. One second into a gathering of A's, the traffic pauses, B is SIGKILLed (in a gathering of its
        # own) and a newcomer joins at once. A is revoked at its next heartbeat (<= 3 s), before its
        # deadline, holding records of the old assignment; the group then waits for B's session to expire
        # (15 s), so A's poll times out at the deadline with nothing assigned and nothing new fetched: the
        # gathering ends while consumer.assignment() still names the old partitions. Only the drop keeps
        # A from processing those records with their sessions set aside.
        gathering_began = next_step(a_port, [procs, procs_b])
        time.sleep(max(0.0, gathering_began + 1.0 - time.monotonic()))
        paused.set()
        assert procs_b.stop("worker", sig=signal.SIGKILL) == -signal.SIGKILL
        killed_at = time.monotonic()
        figures["b_killed_at_s"] = round(killed_at - t0, 1)
        time.sleep(0.5)  # fetches in flight are answered: nothing reaches A after its revocation
        newcomer.join()
        time.sleep(max(0.0, gathering_began + 1.0 + STEP_INTERVAL_S + 1.5 - time.monotonic()))
        paused.clear()  # A's deadline has passed; B's session has not expired yet

        def a_and_newcomer_assigned() -> bool:
            a = health(a_port)
            return bool(a and a.get("ready") and newcomer.assigned and a["ingest"]["rebalance"]["assignments"]
                        > joined["assignments"] and raw_held(a, settings) + len(newcomer.assigned) == all_raw)

        wait_until("A and the newcomer assigned", a_and_newcomer_assigned, 90, [procs])
        figures["kill_to_assigned_s"] = round(time.monotonic() - killed_at, 1)
        waited = rebalance_of(a_port)
        figures["a_at_kill"] = {k: waited[k] for k in ("last_pause_s", "gathered_dropped")}

        # 3. the newcomer leaves: A takes every partition
        newcomer.stop()
        wait_until("A holds every raw partition", lambda: raw_held(health(a_port), settings) == all_raw
                   and bool((health(a_port) or {}).get("ready")), 90, [procs])
        back = rebalance_of(a_port)
        figures["a_alone_at_s"] = round(time.monotonic() - t0, 1)
        figures["a_at_leave"] = {k: back[k] for k in ("last_pause_s", "gathered_dropped")}

        assert done.wait(timeout=TRAFFIC_S + 60)
        figures["traffic_s"] = round(time.monotonic() - t0, 1)
        wait_for_sessions(settings, sc.truth.session_count, procs, timeout_s=180)
        figures["sessions_stored_at_s"] = round(time.monotonic() - t0, 1)
        print(f"\n--- mid-gathering rebalance figures ---\n{orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode()}")

        # exact: sessions, rage and dead clicks, bounces; raw rows stored once; nothing dead-lettered
        assert_matches_truth(settings, sc, procs.log("worker"))
        sent: dict[str, set[str]] = {}
        for flush in sc.flushes:
            for e in flush.events:
                sent.setdefault(TABLE_OF[e["type"]], set()).add(e["event_id"])
        for table, ids in sent.items():
            stored = [r[0] for r in query(settings, f"SELECT event_id FROM {table}")]
            assert len(stored) == len(set(stored)), (table, len(stored) - len(set(stored)), "rows stored twice")
            assert set(stored) == ids, (table, len(ids - set(stored)), "missing", len(set(stored) - ids), "extra")
        [[dead]] = query(settings, "SELECT count() FROM dead_letters")
        assert int(dead) == 0, query(settings, "SELECT reason FROM dead_letters LIMIT 5")

        # A's assignment after B's kill waited longer than a whole gathering: its deadline passed while
        # the group had revoked it and not yet assigned anything, and A dropped what it had gathered
        assert waited["last_pause_s"] > STEP_INTERVAL_S, figures
        assert waited["gathered_dropped"] > joined["gathered_dropped"], figures
    finally:
        newcomer.leave.set()
        procs_b.stop_all()
        procs.stop_all()
