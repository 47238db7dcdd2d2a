"""The notifier process (``pulse notifier``): alert events from Kafka in, pages out, durably.

Loops, all on one asyncio event loop:

* **consume**: reads the alerts topic (own consumer group) and applies each batch of records with
  ``Notifier.on_alert``;
* **tick**: every ``PULSE_NOTIFIER_TICK_INTERVAL_S`` calls ``Notifier.on_tick`` (group timers,
  repeats, escalation, expiry);
* **deliver**: sends due outbox entries (webhook, Slack, PagerDuty over HTTP; e-mail over SMTP) and
  schedules retries;
* **HTTP API** on ``PULSE_NOTIFIER_PORT``: silences, acknowledge, resolve, incidents, /health, /metrics.

Durability (``store.NotifierStore``, one SQLite file). Every change is one SQLite transaction
holding the new state, the intents it produced (outbox, keyed by intent id) and, for Kafka input,
the offsets of the records applied. The in-memory state is changed and committed with no ``await``
in between, so the loops never see each other's half-done work; if the commit fails the state is
reloaded from the file. Offsets live in SQLite, not in Kafka: on assignment the consumer seeks to
them, and any record below them is skipped, so a SIGKILL at any point neither loses an alert event
(its offset is only stored with its effects) nor applies one twice. Kafka offsets are committed
too, after SQLite, only so that lag tools show the group's position.

Delivery is at least once. A send that succeeded is recorded (``mark_delivered`` + outbox ``done``)
in one transaction; a crash between the receiver's answer and that commit re-sends the entry after
the restart. Each payload carries an idempotency handle for that case: PagerDuty's ``dedup_key`` (the
incident), the e-mail ``Message-ID`` (the intent id) and ``pulse.intent_id`` in webhooks. Entries of
one receiver and incident are sent in order, one at a time (a resolve never overtakes its trigger);
others go in parallel. Retries follow ``payloads.retry_after_seconds``: ``Retry-After`` on 429/503,
exponential backoff (1 s, 2 s, 4 s ... 5 min) on 5xx, timeouts and connection errors; other 4xx fail
the entry for good (logged, counted in ``pulse_notifications_total{outcome="failed"}``).

Run one notifier per consumer group: its state (groups, incidents) covers every partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.api.common import ApiError, check_access, json_response
from pipeline.metrics import NOTIFICATIONS, NOTIFIER_RECORDS, OUTBOX
from pipeline.notify.config import NotifierConfig, parse_duration
from pipeline.notify.deliver import decide, send
from pipeline.notify.engine import (
    LEDGER_RETENTION_MS,
    Intent,
    Notifier,
    NotifierState,
    expire_silence,
    list_silences,
    mark_delivered,
    silence,
)
from pipeline.notify.matchers import parse_matchers
from pipeline.notify.payloads import render
from pipeline.notify.store import NotifierStore, OutboxRow
from pipeline.settings import Settings

log = logging.getLogger("pulse.notifier")

MAX_PARALLEL_SENDS = 16
PRUNE_EVERY_S = 600.0
MAX_BATCH = 500


def now_ms() -> int:
    return int(time.time() * 1000)


def _unique(candidates: list[str], target: str, what: str) -> str | None:
    """``target`` itself when it is a candidate, else the one candidate it is a prefix of; None when
    none; ApiError 409 when several."""
    if target in candidates:
        return target
    hits = sorted({c for c in candidates if c.startswith(target)})
    if len(hits) > 1:
        raise ApiError(409, f"{target!r} is a prefix of {len(hits)} {what}s: {', '.join(h[:16] for h in hits[:5])}")
    return hits[0] if hits else None


class NotifierService:
    """The state, the store and the three loops; HTTP handlers call its methods."""

    def __init__(self, settings: Settings, config: NotifierConfig, store: NotifierStore,
                 clock: Callable[[], int] = now_ms) -> None:
        self.settings = settings
        self.config = config
        self.notifier = Notifier(config)
        self.store = store
        self.clock = clock
        self.state: NotifierState = store.load_state()
        self.offsets: dict[tuple[str, int], int] = store.offsets()
        self.wake = asyncio.Event()  # new outbox entries: the delivery loop looks again
        self.consumer: AIOKafkaConsumer | None = None
        self.consuming = False
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._update_gauges()

    # ------------------------------------------------------------------ the one way to change things

    def commit(self, change: Callable[[NotifierState], list[Intent]], *,
               offsets: dict[tuple[str, int], int] | None = None,
               also: Callable[[NotifierStore], None] | None = None) -> list[Intent]:
        """Apply ``change`` to the state and store the result, its intents, ``offsets`` and whatever
        ``also`` writes in one SQLite transaction. No ``await`` inside: nothing else runs meanwhile.
        On any error the transaction is rolled back, the state reloaded from the file (as committed)
        and the error re-raised."""
        now = self.clock()
        try:
            with self.store.transaction():
                intents = change(self.state)
                self.store.add_intents(intents, now)
                if offsets:
                    self.store.set_offsets(offsets)
                if also is not None:
                    also(self.store)
                self.store.save_state(self.state, now)
        except BaseException:
            self.state = self.store.load_state()
            raise
        if offsets:
            for key, value in offsets.items():
                self.offsets[key] = max(self.offsets.get(key, 0), value)
        if intents:
            self.wake.set()
            self._update_gauges()
        return intents

    def _update_gauges(self) -> None:
        for status, n in self.store.counts().items():
            OUTBOX.labels(status).set(n)

    # ------------------------------------------------------------------ Kafka input

    def apply_records(self, records: list[Any]) -> int:
        """Apply consumed records (anything with topic, partition, offset, value) in one transaction;
        records below the stored offsets are skipped. Returns how many were applied. Should the batch
        fail, each record is retried alone, and a record that still fails is logged and skipped (its
        offset stored), so one bad record cannot stop the pager."""
        fresh = [r for r in records if r.offset >= self.offsets.get((r.topic, r.partition), 0)]
        if len(fresh) < len(records):
            NOTIFIER_RECORDS.labels("skipped").inc(len(records) - len(fresh))
        if not fresh:
            return 0
        try:
            self._apply(fresh)
            return len(fresh)
        except sqlite3.Error:
            raise  # the database, not the records: nothing is skipped (the caller re-reads them)
        except Exception:  # noqa: BLE001 - an engine bug on one record: isolate it below
            log.exception("applying %d alert records failed; retrying one by one", len(fresh))
        applied = 0
        for r in fresh:
            try:
                self._apply([r])
                applied += 1
            except sqlite3.Error:
                raise
            except Exception:  # noqa: BLE001
                log.exception("skipping alert record %s[%d]@%d", r.topic, r.partition, r.offset)
                NOTIFIER_RECORDS.labels("invalid").inc()
                self.commit(lambda state: [], offsets={(r.topic, r.partition): r.offset + 1})
        return applied

    def _apply(self, records: list[Any]) -> None:
        offsets: dict[tuple[str, int], int] = {}
        counts = {"applied": 0, "invalid": 0}

        def change(state: NotifierState) -> list[Intent]:
            now = self.clock()
            out: list[Intent] = []
            for r in records:
                offsets[(r.topic, r.partition)] = max(offsets.get((r.topic, r.partition), 0), r.offset + 1)
                try:
                    doc = orjson.loads(r.value)
                    out += self.notifier.on_alert(state, doc, now)  # ValueError before any change
                    counts["applied"] += 1
                except ValueError as exc:  # (orjson.JSONDecodeError is one)
                    counts["invalid"] += 1
                    log.warning("invalid alert event %s[%d]@%d skipped: %s", r.topic, r.partition, r.offset, exc)
            return out

        self.commit(change, offsets=offsets)
        for outcome, n in counts.items():
            if n:
                NOTIFIER_RECORDS.labels(outcome).inc(n)

    async def consume(self, stop: asyncio.Event) -> None:
        """Connect (retrying while Kafka is away), then apply batches until ``stop``."""
        from aiokafka.errors import KafkaError

        from pipeline.kafka_admin import ensure_topics, wait_for_broker

        k = self.settings.kafka
        while True:
            if stop.is_set():
                return
            consumer = AIOKafkaConsumer(
                bootstrap_servers=k.bootstrap_servers, group_id=self.settings.notifier.group_id,
                enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=10_000,
                heartbeat_interval_ms=2_000, max_poll_records=MAX_BATCH, group_instance_id=self.instance_id())
            try:
                await wait_for_broker(k.bootstrap_servers, timeout_s=10)
                await ensure_topics(k, [k.topic_alerts])
                consumer.subscribe([k.topic_alerts], listener=_SeekToStored(self))
                self.consumer = consumer
                await consumer.start()
                break
            except (TimeoutError, KafkaError, OSError) as exc:
                log.warning("Kafka not ready (%s); the API and deliveries keep working meanwhile", exc)
                with contextlib.suppress(Exception):
                    await consumer.stop()
                self.consumer = None
                await _sleep(stop, 2.0)
        self.consuming = True
        log.warning("notifier consuming %s (group %s), state in %s", k.topic_alerts,
                    self.settings.notifier.group_id, self.store.path)
        try:
            while not stop.is_set():
                try:
                    batch = await consumer.getmany(timeout_ms=500, max_records=MAX_BATCH)
                except KafkaError as exc:
                    log.warning("fetch failed: %s", exc)
                    await _sleep(stop, 1.0)
                    continue
                records = [r for tp in sorted(batch, key=lambda t: (t.topic, t.partition)) for r in batch[tp]]
                if not records:
                    continue
                try:
                    self.apply_records(records)
                except Exception:  # noqa: BLE001 - the database refused: re-read from what is stored
                    log.exception("could not store %d alert records; re-reading them", len(records))
                    self._seek_to_stored(consumer, consumer.assignment())
                    await _sleep(stop, 1.0)
                    continue
                await self._commit_kafka(consumer)
        finally:
            self.consuming = False
            await consumer.stop()

    def instance_id(self) -> str:
        """Static group membership, stable per state file: a restarted notifier takes its partitions
        back at once instead of waiting for the session of its killed predecessor to time out."""
        import hashlib
        import socket

        where = hashlib.sha1(str(self.store.path.resolve()).encode(), usedforsecurity=False).hexdigest()[:10]
        return f"{self.settings.notifier.group_id}-{socket.gethostname()}-{where}"

    def _seek_to_stored(self, consumer: AIOKafkaConsumer, partitions: Any) -> None:
        for tp in partitions:
            offset = self.offsets.get((tp.topic, tp.partition))
            if offset is not None:
                consumer.seek(tp, offset)

    async def _commit_kafka(self, consumer: AIOKafkaConsumer) -> None:
        """Best effort, for lag monitoring only: SQLite holds the offsets that count."""
        mine = {tp: self.offsets[(tp.topic, tp.partition)] for tp in consumer.assignment()
                if (tp.topic, tp.partition) in self.offsets}
        if not mine:
            return
        try:
            await consumer.commit(mine)
        except Exception as exc:  # noqa: BLE001 - a rebalance or a broker hiccup; next time
            log.debug("Kafka offset commit skipped: %s", exc)

    # ------------------------------------------------------------------ time

    async def tick(self, stop: asyncio.Event) -> None:
        interval = self.settings.notifier.tick_interval_s
        last_prune = 0.0
        while not stop.is_set():
            try:
                self.commit(lambda state: self.notifier.on_tick(state, self.clock()))
                if time.monotonic() - last_prune > PRUNE_EVERY_S:
                    cutoff = self.clock() - LEDGER_RETENTION_MS
                    self.commit(lambda state: [], also=lambda store: store.prune(cutoff))
                    last_prune = time.monotonic()
                    self._update_gauges()
            except Exception:  # noqa: BLE001 - keep ticking; the state was reloaded
                log.exception("tick failed")
            await _sleep(stop, interval)

    # ------------------------------------------------------------------ delivery

    async def deliver(self, stop: asyncio.Event) -> None:
        """Send due outbox entries: per lane (receiver, incident) the oldest pending entry only."""
        timeout = self.settings.notifier.delivery_timeout_s
        async with aiohttp.ClientSession() as session:
            try:
                while not stop.is_set():
                    self.wake.clear()
                    wait_s = 1.0
                    try:
                        wait_s = self._start_due(session, timeout)
                    except Exception:  # noqa: BLE001
                        log.exception("reading the outbox failed")
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(_first(stop, self.wake), timeout=wait_s)
            finally:
                if self._inflight:
                    await asyncio.wait(list(self._inflight.values()), timeout=timeout + 1)
                for task in self._inflight.values():
                    task.cancel()

    def _start_due(self, session: aiohttp.ClientSession, timeout_s: float) -> float:
        """Start sends for due lane heads; seconds until the next one is due (at most 1)."""
        now = self.clock()
        heads: dict[tuple[str, str], OutboxRow] = {}
        for row in self.store.pending():
            heads.setdefault(row.lane, row)
        next_due: int | None = None
        for row in heads.values():
            if row.intent_id in self._inflight:
                continue
            if row.next_attempt_at > now or len(self._inflight) >= MAX_PARALLEL_SENDS:
                due = max(row.next_attempt_at, now + 50)
                next_due = due if next_due is None else min(next_due, due)
                continue
            task = asyncio.create_task(self._send_one(session, row, timeout_s))
            self._inflight[row.intent_id] = task
            task.add_done_callback(lambda _t, key=row.intent_id: self._sent(key))
        return 1.0 if next_due is None else min(1.0, max(0.0, (next_due - now) / 1000))

    def _sent(self, intent_id: str) -> None:
        self._inflight.pop(intent_id, None)
        self.wake.set()

    async def _send_one(self, session: aiohttp.ClientSession, row: OutboxRow, timeout_s: float) -> None:
        try:
            await self._try_send(session, row, timeout_s)
        except Exception:  # noqa: BLE001 - the entry stays pending and is tried again
            log.exception("sending %s to %s failed unexpectedly", row.kind, row.receiver)
            await asyncio.sleep(1.0)

    async def _try_send(self, session: aiohttp.ClientSession, row: OutboxRow, timeout_s: float) -> None:
        intent = row.to_intent()
        attempts = row.attempts + 1
        try:
            out = render(intent, self.config)
        except LookupError as exc:  # receiver gone from the config
            self._finish(row, intent, "failed", attempts, str(exc))
            return
        result = await send(session, out, timeout_s)
        now = self.clock()
        decision = decide(result, attempts, now)
        if decision.outcome == "retry":
            assert decision.retry_in_s is not None
            next_at = now + int(decision.retry_in_s * 1000)
            self.commit(lambda state: [], also=lambda store: store.reschedule(
                row.intent_id, attempts, next_at, now, result.error))
            NOTIFICATIONS.labels(intent.receiver, intent.kind, "retry").inc()
            log.warning("%s to %s failed (attempt %d: %s); retry in %.1fs", intent.kind, intent.receiver, attempts,
                        result.error, decision.retry_in_s)
            return
        if decision.outcome == "delivered" and result.error:
            log.warning("%s to %s: %s", intent.kind, intent.receiver, result.error)
        self._finish(row, intent, "done" if decision.outcome == "delivered" else "failed", attempts, result.error)

    def _finish(self, row: OutboxRow, intent: Intent, status: str, attempts: int, error: str) -> None:
        now = self.clock()

        def change(state: NotifierState) -> list[Intent]:
            if status == "done":
                mark_delivered(state, row.intent_id, now)
            return []

        self.commit(change, also=lambda store: store.finish(row.intent_id, status, attempts, now, error))
        self._update_gauges()
        if status == "done":
            NOTIFICATIONS.labels(intent.receiver, intent.kind, "delivered").inc()
            log.info("%s delivered to %s (incident %s, attempt %d)", intent.kind, intent.receiver,
                     intent.incident_id, attempts)
        else:
            NOTIFICATIONS.labels(intent.receiver, intent.kind, "failed").inc()
            log.error("%s to %s failed for good after %d attempt(s): %s (incident %s)", intent.kind, intent.receiver,
                      attempts, error, intent.incident_id)

    # ------------------------------------------------------------------ people (the HTTP API)

    def add_silence(self, body: dict[str, Any]) -> dict[str, Any]:
        matchers = body.get("matchers")
        if isinstance(matchers, str):
            matchers = [matchers]
        if not isinstance(matchers, list) or not matchers or not all(isinstance(m, str) for m in matchers):
            raise ApiError(400, 'matchers: expected a list of matchers like ["alertname=\\"HighErrorRate\\"", '
                                '"project=~\\"shop|blog\\""]')
        try:
            parse_matchers(matchers)
        except ValueError as exc:
            raise ApiError(400, f"matchers: {exc}") from None
        created_by = body.get("created_by")
        if not isinstance(created_by, str) or not created_by.strip():
            raise ApiError(400, "created_by: who creates the silence is required")
        comment = body.get("comment", "")
        if not isinstance(comment, str):
            raise ApiError(400, "comment: expected a string")
        now = self.clock()
        starts = _time_ms(body.get("starts_at"), "starts_at") if body.get("starts_at") not in (None, "") else now
        if body.get("ends_at") not in (None, ""):
            ends = _time_ms(body["ends_at"], "ends_at")
        elif body.get("duration") not in (None, ""):
            try:
                ends = starts + parse_duration(body["duration"])
            except ValueError as exc:
                raise ApiError(400, f"duration: {exc}") from None
        else:
            raise ApiError(400, "give duration (e.g. \"2h\") or ends_at (ISO-8601 or epoch ms)")
        if ends <= now:
            raise ApiError(400, "the silence would end in the past")
        result: dict[str, str] = {}

        def change(state: NotifierState) -> list[Intent]:
            result["id"] = silence(state, matchers, starts, ends, created_by.strip(), comment)
            return []

        try:
            self.commit(change)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        log.warning("silence %s by %s: %s until %s", result["id"], created_by, matchers, _iso(ends))
        return {"silence_id": result["id"], "matchers": matchers, "starts_at": starts, "ends_at": ends}

    def silences(self, include_expired: bool) -> list[dict[str, Any]]:
        return list_silences(self.state, self.clock(), include_expired=include_expired)

    def expire(self, target: str) -> dict[str, Any]:
        sid = _unique(list(self.state.silences), target, "silence")
        if sid is None:
            raise ApiError(404, f"no silence {target!r}")
        now = self.clock()
        self.commit(lambda state: (expire_silence(state, sid, now), [])[1])
        log.warning("silence %s expired", sid)
        return {"silence_id": sid, "status": self.state.silences[sid].status(now)}

    def _target(self, target: str) -> str:
        """An incident id or an alert fingerprint (or a unique prefix of either)."""
        if target in self.state.incidents or any(target in i.fingerprints for i in self.state.incidents.values()):
            return target
        candidates = list(self.state.incidents) + sorted({fp for i in self.state.incidents.values()
                                                          for fp in i.fingerprints})
        found = _unique(candidates, target, "incident or fingerprint")
        if found is None:
            raise ApiError(404, f"no incident or alert fingerprint {target!r}")
        return found

    def act(self, action: str, target: str, by: str) -> dict[str, Any]:
        key = self._target(target)
        now = self.clock()
        method = self.notifier.acknowledge if action == "ack" else self.notifier.resolve
        before = {i.incident_id: i.status for i in self.state.incidents.values()}
        try:
            intents = self.commit(lambda state: method(state, key, by, now))
        except LookupError as exc:
            raise ApiError(409, str(exc)) from None  # (it exists: nothing open to act on)
        changed = sorted(i for i, inc in self.state.incidents.items() if before.get(i) != inc.status)
        log.warning("%s of %s by %s: incidents %s", action, key, by, ", ".join(changed))
        return {"action": action, "target": key, "by": by, "incidents": changed, "notifications": len(intents)}

    def incidents(self, status: str | None) -> list[dict[str, Any]]:
        out = []
        for incident in sorted(self.state.incidents.values(), key=lambda i: (-i.opened_at, i.incident_id)):
            if status and incident.status != status:
                continue
            doc = asdict(incident)
            doc["alerts"] = [self.state.alerts[fp].snapshot() for fp in incident.fingerprints
                             if fp in self.state.alerts]
            out.append(doc)
        return out

    def health(self) -> tuple[int, dict[str, Any]]:
        assigned = sorted(f"{tp.topic}[{tp.partition}]" for tp in self.consumer.assignment()) \
            if self.consumer is not None and self.consuming else []
        ok = self.consuming and bool(assigned)
        counts = self.store.counts()
        return (200 if ok else 503), {
            "status": "ok" if ok else "starting",
            "kafka": {"consuming": self.consuming, "assigned": assigned, "topic": self.settings.kafka.topic_alerts},
            "outbox": {"pending": counts["pending"], "failed": counts["failed"], "sending": len(self._inflight)},
            "incidents_open": sum(1 for i in self.state.incidents.values() if i.status != "resolved"),
            "state_path": str(self.store.path),
        }


class _SeekToStored(ConsumerRebalanceListener):
    """On assignment, continue from the offsets in SQLite (records before them are applied)."""

    def __init__(self, service: NotifierService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        consumer = self.service.consumer
        if consumer is not None:
            self.service._seek_to_stored(consumer, assigned)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _first(*events: asyncio.Event) -> None:
    waits = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def _time_ms(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ApiError(400, f"{what}: expected epoch ms or an ISO-8601 time, got {value!r}")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ApiError(400, f"{what}: expected epoch ms or an ISO-8601 time, got {value!r}") from None
        if parsed.tzinfo is None:
            raise ApiError(400, f"{what}: ISO-8601 time without a time zone: {value!r} (add Z or +hh:mm)")
        return int(parsed.timestamp() * 1000)
    raise ApiError(400, f"{what}: expected epoch ms or an ISO-8601 time, got {value!r}")


def _iso(ms: int) -> str:
    from pipeline.notify.payloads import iso

    return iso(ms)


# ---------------------------------------------------------------------- HTTP API

SERVICE_KEY = web.AppKey("notifier", NotifierService)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ApiError(400, f"body: expected a JSON object, got {type(doc).__name__}")
    return doc


def _by(body: dict[str, Any]) -> str:
    by = body.get("by")
    if not isinstance(by, str) or not by.strip():
        raise ApiError(400, 'by: who acts is required, e.g. {"by": "alice"}')
    return by.strip()


async def _health(request: web.Request) -> web.Response:
    status, doc = request.app[SERVICE_KEY].health()
    return json_response(status, doc)


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _get_silences(request: web.Request) -> web.Response:
    expired = request.query.get("expired", "false").lower() in ("1", "true", "yes")
    return json_response(200, request.app[SERVICE_KEY].silences(expired))


async def _post_silence(request: web.Request) -> web.Response:
    return json_response(201, request.app[SERVICE_KEY].add_silence(await _body(request)))


async def _delete_silence(request: web.Request) -> web.Response:
    return json_response(200, request.app[SERVICE_KEY].expire(request.match_info["silence_id"]))


async def _ack(request: web.Request) -> web.Response:
    body = await _body(request)
    return json_response(200, request.app[SERVICE_KEY].act("ack", request.match_info["target"], _by(body)))


async def _resolve(request: web.Request) -> web.Response:
    body = await _body(request)
    return json_response(200, request.app[SERVICE_KEY].act("resolve", request.match_info["target"], _by(body)))


async def _incidents(request: web.Request) -> web.Response:
    status = request.query.get("status") or None
    if status not in (None, "open", "acknowledged", "resolved"):
        raise ApiError(400, f"status: expected open, acknowledged or resolved, got {status!r}")
    return json_response(200, request.app[SERVICE_KEY].incidents(status))


async def _incident(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    iid = _unique(list(service.state.incidents), request.match_info["incident_id"], "incident")
    if iid is None:
        raise ApiError(404, f"no incident {request.match_info['incident_id']!r}")
    return json_response(200, next(d for d in service.incidents(None) if d["incident_id"] == iid))


@web.middleware
async def _edge(request: web.Request, handler: Any) -> web.StreamResponse:
    """Access control on /api (bearer token or loopback, as the collector's API), errors as JSON."""
    try:
        if request.path.startswith("/api/"):
            check_access(request, request.app[SERVICE_KEY].settings)
        return await handler(request)
    except ApiError as exc:
        return json_response(exc.status, {"error": exc.message}, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_response(exc.status, {"error": exc.reason})
    except Exception:  # noqa: BLE001 - the boundary: log it, answer 500, keep serving
        log.exception("unexpected error on %s %s", request.method, request.path)
        return json_response(500, {"error": "internal error"})


def make_app(service: NotifierService) -> web.Application:
    app = web.Application(middlewares=[_edge], client_max_size=1024 * 1024)
    app[SERVICE_KEY] = service
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/api/silences", _get_silences)
    app.router.add_post("/api/silences", _post_silence)
    app.router.add_delete("/api/silences/{silence_id}", _delete_silence)
    app.router.add_post("/api/alerts/{target}/ack", _ack)
    app.router.add_post("/api/alerts/{target}/resolve", _resolve)
    app.router.add_get("/api/incidents", _incidents)
    app.router.add_get("/api/incidents/{incident_id}", _incident)
    return app


# ---------------------------------------------------------------------- process

async def serve(settings: Settings, config: NotifierConfig, stop: asyncio.Event) -> None:
    """Run until ``stop``; the API serves (and outbox entries are sent) while Kafka is away."""
    store = NotifierStore(settings.notifier.state_path)
    service = NotifierService(settings, config, store)
    pending = store.counts()["pending"]
    if pending:
        log.warning("%d notifications pending from before the restart", pending)
    runner = web.AppRunner(make_app(service), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.notifier.host, settings.notifier.port).start()
    log.warning("notifier API on http://%s:%d/ (config %s)", settings.notifier.host, settings.notifier.port,
                settings.notifier.config_path)
    tasks = [asyncio.create_task(service.consume(stop), name="consume"),
             asyncio.create_task(service.tick(stop), name="tick"),
             asyncio.create_task(service.deliver(stop), name="deliver")]
    stopping = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in done if t is not stopping and t.exception() is not None]
        stop.set()
        log.warning("notifier stopping")
        await asyncio.wait(tasks, timeout=settings.notifier.delivery_timeout_s + 5)
        if failed:
            raise failed[0].exception()  # type: ignore[misc]
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        stopping.cancel()
        await runner.cleanup()
        store.close()
        log.warning("notifier stopped")


def run_notifier(settings: Settings, config: NotifierConfig) -> None:
    """Blocking entry for ``pulse notifier``; SIGTERM/SIGINT stop it cleanly (sends in flight finish)."""
    from pipeline.runtime import run_service

    run_service(lambda stop: serve(settings, config, stop), log_level=logging.INFO)
