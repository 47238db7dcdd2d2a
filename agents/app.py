"""The Faust app: configuration, the raw-event runner, the issue and alert agents, /health and /metrics.

``make_app(settings)`` builds a fresh app (no module-global app: settings are injected), attaches
the ingest runner (``agents/ingest.py``, its own consumer: the hot path), the issue and alert agents
(Faust agents: low-volume streams with tables) and the web pages, and returns it. Run it with
``agents.worker.run_worker``. This is the wiring module: it imports the stages, none of them imports
it (what they share, ``WorkerState``, is in ``agents/state.py``; checked by
tests/unit/test_agents_imports.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agents.alerts import AlertAgent
from agents.delivery import make_send_all
from agents.ingest import IngestRunner
from agents.issues import IssueAgent
from agents.skips import FaustBooks
from agents.state import WorkerState
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def make_app(settings: Settings) -> faust.App:
    """The worker app for ``settings``: ingest runner on the raw topics, issue and alert agents,
    /health and /metrics."""
    kafka, worker = settings.kafka, settings.worker
    app = faust.App(
        worker.app_id,
        broker=[f"kafka://{server.strip()}" for server in kafka.bootstrap_servers.split(",")],
        datadir=str(worker.data_dir.resolve()),
        store="memory://",
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        topic_allow_declare=False,  # topics are created by pipeline.kafka_admin with the project's counts
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        # At-least-once: offsets of a batch are acked only after its outputs are delivered; faust
        # flushes the producer before every commit as well.
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        # A killed worker's partitions move to the survivors after this long (faust default: 60 s).
        broker_session_timeout=15.0,
        consumer_group_instance_id=worker.group_instance_id(),
        # No standby copies of table partitions: with the in-memory store, Faust drops a standby's
        # records at the end of recovery, and a partition promoted from standby to active could
        # then be rebuilt from a partial table. Recovery reads the compacted changelog instead.
        table_standby_replicas=0,
        stream_buffer_maxsize=max(4096, worker.batch_size * 4),
        consumer_max_fetch_size=4 * 1024 * 1024,
        producer_compression_type=kafka.compression_type,
        producer_linger=kafka.linger_ms / 1000.0,
        producer_max_request_size=kafka.max_request_bytes,
        # Storage messages are kilobytes of rows: 16 KiB batches would mean a produce batch per message.
        producer_max_batch_size=min(1024 * 1024, kafka.max_request_bytes),
        producer_acks=-1,
        web_enabled=True,
        web_bind=worker.web_host,
        web_host="127.0.0.1" if worker.web_host in ("0.0.0.0", "::") else worker.web_host,
        web_port=worker.web_port,
    )
    state = WorkerState()
    runner = IngestRunner(settings, state)
    send_all = make_send_all(app)
    IssueAgent(app, settings, state, send_all)
    AlertAgent(app, settings, state, send_all)

    @app.task
    async def ingest() -> None:
        """The raw-event runner for the worker's lifetime. If it fails, the worker stops with the
        error (nothing after its last commit was acknowledged, so a restart replays it)."""
        try:
            FaustBooks(app).check()
            await runner.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the worker must not run on without its hot path
            log.exception("the ingest runner failed; stopping the worker")
            state.last_error = f"ingest runner: {type(exc).__name__}: {exc}"
            await app.crash(exc)

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
        ingest = runner.health()
        # Faust's agents are ready once it restored their tables for the current assignment.
        agents_ready = bool(assigned) and app.tables.recovery.completed.is_set() and not app.rebalancing \
            and not getattr(app, "in_recovery", False)
        return web.json({
            "status": "ok",
            "app_id": worker.app_id,
            "assigned_partitions": sorted([*assigned, *ingest["assigned_partitions"]]),
            "last_batch_at": state.last_batch_at,
            "batches": state.batches,
            "messages": state.messages,
            "last_error": state.last_error,
            "sessions": ingest["sessions"],
            "ingest": {"group": ingest["group"], "ready": ingest["ready"],
                       "largest_record_bytes": ingest["largest_record_bytes"], "rebalance": ingest["rebalance"]},
            "issues": {"batches": state.issue_batches, "last_batch_at": state.last_issue_batch_at},
            "ready": agents_ready and ingest["ready"],
            "uptime_s": round(time.time() - state.started_at, 3),
        })

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app
