"""ingest_events: raw topics -> validated, deduplicated rows on the storage topic (+ dead letters).

The agent is an adapter: decode a batch into ``RawMessage``s, call ``process_batch`` once, send
the results, wait until Kafka confirmed every send, then let faust ack the batch.

Delivery and commits (faust 0.15 semantics, read from its source):
  * ``stream.take_events`` disables per-event acks and acks the whole batch when the loop asks
    for the next batch -- and also in its ``finally`` when the body raises. So the body must
    never raise, and must not leave a batch before its sends are confirmed: we await every
    send's delivery future (and, on cancellation during shutdown, still wait for them).
  * Offsets are committed by faust's commit timer only for acked events, and
    ``Consumer._commit_offsets`` flushes the producer before committing.
Together: a raw offset is committed only after its storage messages and dead letters are on
the broker (at-least-once). Replays after a crash re-send the same (source, table) messages,
which the sink drops by source offset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import faust
from agents.app import WorkerState
from agents.delivery import Send, SendAll, dead_letter_send
from agents.issues import occurrence_sends
from agents.skips import CompleteBatches, to_raw_message
from agents.sessions import SessionState
from pipeline.contract import HEADER_SOURCE, DeadLetter, reason_kind
from pipeline.ingest.dedup import RecentIds
from pipeline.ingest.process import RawMessage, dead_letter_for, process_batch
from pipeline.metrics import (
    BATCH_SECONDS,
    BATCH_SIZE,
    DEAD_LETTERS,
    DUPLICATES_DROPPED,
    EVENTS_IN,
    EVENTS_OUT,
    LATE_EVENTS,
)
from pipeline.settings import Settings

log = logging.getLogger(__name__)
PROCESS = "worker"


def attach_ingest_agent(app: faust.App, settings: Settings, raw: faust.TopicT, state: WorkerState,
                        sessions: SessionState, send_all: SendAll) -> Any:
    """Register the ``ingest_events`` agent (reading ``raw``) on ``app`` and return it. Output goes
    to ``settings.kafka.topic_storage`` / ``topic_dead_letter`` through the app's producer; action
    and error events also go through sessionization (``sessions``), and first-time errors to the
    issue agent (``agents/issues.py``) re-keyed by fingerprint."""
    dedup = RecentIds(settings.worker.dedup_capacity)
    session_topics = frozenset(settings.kafka.session_topics)
    rollup_rules = settings.rollups.rules()
    noise_rules = settings.issues.noise_rules()
    issue_topic = settings.kafka.topic_issue_events
    partials_topic = settings.kafka.topic_rollup_partials
    storage_partitions = settings.kafka.partitions
    storage_topic, dead_letter_topic = settings.kafka.topic_storage, settings.kafka.topic_dead_letter
    batch_size, within = settings.worker.batch_size, settings.worker.batch_within_s

    def dl_send(dl: DeadLetter) -> Send:
        return dead_letter_send(dead_letter_topic, dl)

    batches = CompleteBatches(app, settings.kafka.bootstrap_servers)

    async def handle_batch(events: Sequence[Any]) -> None:
        started = time.perf_counter()
        now = datetime.now(timezone.utc)
        messages: list[RawMessage] = []
        try:
            messages = await batches.complete(events)
            out = process_batch(messages, dedup, storage_partitions, now, session_topics, rollup_rules,
                                noise_rules, downstream=True)
            sends: list[Send] = [(storage_topic, s.key, s.value, s.partition_hint, s.headers) for s in out.storage]
            sends += occurrence_sends(out.issue_records, issue_topic)
            sends += [(partials_topic, key, value, None, []) for key, value in out.alert_partials]
            sends += [dl_send(dl) for dl in out.dead_letters]
            async with sessions.lock:
                steps = sessions.step_batch(out)
                session_sends = sessions.sends_for(steps)
                errors = await send_all(sends + session_sends)
                # Session outputs must be on Kafka before their state is written (see agents/sessions.py).
                await sessions.deliver([s for s, e in zip(session_sends, errors[len(sends):]) if e is not None],
                                       send_all)
                await sessions.write_changelog(steps, send_all)
            errors = errors[:len(sends)]
            failed = [(sends[i], err) for i, err in enumerate(errors) if err is not None]
            if failed:
                # Non-retriable (e.g. a row batch above max_request_bytes): keep the input instead.
                by_source = {m.source: m for m in messages}
                retry_dls = []
                for send, err in failed:
                    src = dict(send[4]).get(HEADER_SOURCE)
                    msg = by_source.get(src.decode()) if isinstance(src, bytes) else None
                    if msg is not None:
                        retry_dls.append(dead_letter_for(msg, f"worker could not produce output: {err!r}", now))
                    log.error("send failed for good: %r", err)
                await send_all([dl_send(dl) for dl in retry_dls])
                if retry_dls:
                    DEAD_LETTERS.labels(PROCESS, "worker", "processing_failed").inc(len(retry_dls))
            for type_, n in out.events_in.items():
                EVENTS_IN.labels(PROCESS, type_).inc(n)
            for table, n in out.rows_out.items():
                EVENTS_OUT.labels(PROCESS, table).inc(n)
            for dl in out.dead_letters:
                DEAD_LETTERS.labels(PROCESS, "worker", reason_kind(dl.reason)).inc()
            if out.late_rollup_events:
                LATE_EVENTS.labels(PROCESS, "rollups").inc(out.late_rollup_events)
            if out.duplicates:
                DUPLICATES_DROPPED.labels(PROCESS, "event_id").inc(out.duplicates)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the agent boundary: never crash the agent
            log.exception("batch failed; dead-lettering %d messages", len(events))
            state.last_error = f"{type(exc).__name__}: {exc}"
            try:
                msgs = messages or [to_raw_message(e) for e in events]
                reason = f"worker batch failed: {type(exc).__name__}: {exc}"
                await send_all([dl_send(dead_letter_for(m, reason, now)) for m in msgs])
                DEAD_LETTERS.labels(PROCESS, "worker", "processing_failed").inc(len(msgs))
            except Exception:  # noqa: BLE001
                log.exception("could not dead-letter a failed batch")
        state.batches += 1
        state.messages += len(events)
        state.last_batch_at = time.time()
        BATCH_SIZE.labels(PROCESS).observe(len(events))
        BATCH_SECONDS.labels(PROCESS).observe(time.perf_counter() - started)

    @app.timer(settings.sessions.timer_interval_s)
    async def advance_quiet_partitions() -> None:
        try:
            await sessions.advance_quiet_partitions(send_all)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a failed tick is retried by the next one
            log.exception("session timer tick failed")

    @app.agent(raw, name="ingest_events")
    async def ingest_events(stream: faust.StreamT) -> None:
        """Batches of raw messages -> storage messages and dead letters."""
        async for events in stream.take_events(batch_size, within=within):
            await handle_batch(events)

    return ingest_events
