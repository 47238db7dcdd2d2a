"""The Faust app: configuration, topics, and the /health and /metrics pages.

``make_app(settings)`` builds a fresh app (no module-global app: settings are injected), attaches
the ingest agent and the web pages, and returns it. Run it with ``agents.worker.run_worker``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.settings import Settings


@dataclass
class WorkerState:
    """What /health reports; updated by the agent after each batch."""

    started_at: float = field(default_factory=time.time)
    last_batch_at: float | None = None
    batches: int = 0
    messages: int = 0
    last_error: str | None = None
    issue_batches: int = 0
    last_issue_batch_at: float | None = None


def make_app(settings: Settings) -> faust.App:
    """The worker app for ``settings``: ingest agent on the raw topics, /health and /metrics."""
    from agents.alerts import AlertAgent
    from agents.delivery import make_send_all
    from agents.ingest import attach_ingest_agent
    from agents.issues import IssueAgent
    from agents.sessions import SessionState

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
    raw = app.topic(*kafka.raw_topics, key_type=bytes, value_type=bytes,
                    key_serializer="raw", value_serializer="raw", internal=False)
    sessions = SessionState(app, settings)
    send_all = make_send_all(app)
    attach_ingest_agent(app, settings, raw, state, sessions, send_all)
    IssueAgent(app, settings, state, send_all)
    AlertAgent(app, settings, state, send_all)
    # Partitions are reconciled after each recovery (agents/sessions.py), not on revocation: Kafka's
    # eager rebalance revokes every partition, also those this worker keeps, and a kept partition's
    # live state must survive (Faust re-reads only the changelog's tail for it).

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
        return web.json({
            "status": "ok",
            "app_id": worker.app_id,
            "assigned_partitions": assigned,
            "last_batch_at": state.last_batch_at,
            "batches": state.batches,
            "messages": state.messages,
            "last_error": state.last_error,
            "sessions": sessions.health(),
            "issues": {"batches": state.issue_batches, "last_batch_at": state.last_issue_batch_at},
            # True once Faust restored the tables for the current assignment and streams run.
            "ready": bool(assigned) and app.tables.recovery.completed.is_set() and not app.rebalancing
            and not getattr(app, "in_recovery", False),
            "uptime_s": round(time.time() - state.started_at, 3),
        })

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app
