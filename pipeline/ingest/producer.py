"""The Producer API: publish events to the raw topics from a Python service (and from the collector).

``prepare_events`` is the pure step (scrub -> project/received_at -> validate -> group by topic
and session into array messages); ``EventProducer`` is the thin Kafka edge that sends what it
prepared and waits for delivery.

Example::

    from pipeline.ingest.producer import EventProducer
    from pipeline.settings import Settings

    async with EventProducer(Settings().kafka) as producer:
        result = await producer.send([
            {"event_id": "0b5b0f0e-8c1d-4c57-9a55-3f7d3a3c2a11", "type": "vital", "project": "shop",
             "timestamp": "2026-11-23T10:00:00Z", "session_id": "s-1",
             "vital": {"name": "LCP", "value": 2315.0}},
        ])
        print(result.accepted, result.rejected)   # 1 []
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner, murmur2
from pydantic import BaseModel

from pipeline.contract import HEADER_TABLE, DeadLetter, reason_kind, topic_for_type
from pipeline.ingest.scrub import scrub_event, scrub_text
from pipeline.contract.fast import FAST_TYPES, decode_events
from pipeline.ingest.validate import Decoded, EventTimeWindow, check_event_time, validate_items
from pipeline.metrics import DEAD_LETTERS, EVENTS_IN, PRODUCE_FAILURES
from pipeline.settings import KafkaSettings

DEAD_LETTER_HEADERS = [(HEADER_TABLE, b"dead_letters")]
# One raw message stays well under the broker's default message.max.bytes (1 MiB) even when a
# session's batch compresses badly; larger batches are split into several messages.
MAX_MESSAGE_BYTES = 512 * 1024


@dataclass(frozen=True)
class Rejected:
    """One event that was not accepted: its position in the input, its id if readable, why."""

    index: int
    event_id: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "event_id": self.event_id, "reason": self.reason}


@dataclass(frozen=True)
class OutMessage:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None = None


@dataclass
class Prepared:
    """What one batch of input turned into."""

    messages: list[OutMessage] = field(default_factory=list)
    dead_letters: list[OutMessage] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    accepted_by_type: dict[str, int] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        return sum(self.accepted_by_type.values())


@dataclass(frozen=True)
class SendResult:
    accepted: int
    rejected: list[Rejected]


@dataclass(frozen=True)
class Unreadable:
    """An input element that could not even be parsed (e.g. a broken NDJSON line): rejected as is."""

    raw: bytes
    reason: str


class ProduceError(Exception):
    """Delivery was not confirmed (broker down, timeout, buffer full). Nothing may be claimed accepted;
    the caller retries (duplicates by event_id are dropped downstream)."""


class ProducerBusy(ProduceError):
    """More bytes are waiting for delivery than the producer's buffer allows."""


def _as_dict(item: Any) -> Any:
    if isinstance(item, BaseModel):
        return item.model_dump(mode="json", exclude_none=True)
    return item


def _dump(item: Any) -> bytes:
    """JSON of one input for a dead letter; repr for what JSON cannot express (a producer's set)."""
    try:
        return orjson.dumps(item, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return repr(item).encode()


def _event_id(item: Any) -> str:
    return str(item.get("event_id", ""))[:64] if isinstance(item, dict) else ""


def prepare_events(items: Iterable[Any], *, kafka: KafkaSettings, now: datetime, source: str,
                   project: str | None = None, received_at: datetime | None = None,
                   max_message_bytes: int = MAX_MESSAGE_BYTES, keep_ips: bool = False,
                   time_window: EventTimeWindow | None = None, json_items: bool = False) -> Prepared:
    """Scrub, stamp, validate and group events into raw-topic messages. Pure.

    ``keep_ips``: IP addresses are scrubbed unless this is set (``PULSE_COLLECTOR_SCRUB_IP_ADDRESSES``).
    ``project``: when given (the collector's project key), events without one get it and events
    naming another project are rejected. ``received_at``: stamped on every event when given.
    ``time_window``: each event's time is corrected for the client's clock skew (its ``sent_at``) and
    must fall in this window around ``received_at`` (else ``now``); outside it the event is a dead
    letter (or clamped, as the window says). Defaults to ``EventTimeWindow()``.
    Messages are JSON arrays of one session's events, keyed by session_id.
    ``json_items``: the items came from a JSON parser (the collector), so validating their JSON
    decides as validating them does: the batch is tried on the msgspec fast path
    (``pipeline/contract/fast.py``, ~5x cheaper) and goes to pydantic only when that declines it.
    """
    window = time_window or EventTimeWindow()
    reference = received_at or now
    out = Prepared()
    stamped = received_at.isoformat() if received_at is not None else None
    candidates: list[tuple[int, Any]] = []

    def reject(index: int, item: Any, reason: str) -> None:
        event_id = _event_id(item)
        out.rejected.append(Rejected(index, event_id, reason))
        own = str(item.get("project", ""))[:128] if isinstance(item, dict) else ""
        dead = DeadLetter.of(_dump(item), step="collector", source=source,
                             reason=reason, project=project or own, event_id=event_id, now=now)
        out.dead_letters.append(OutMessage(kafka.topic_dead_letter, event_id.encode() or None,
                                           dead.to_row_json(), DEAD_LETTER_HEADERS))

    def reject_raw(index: int, bad: Unreadable) -> None:
        out.rejected.append(Rejected(index, "", bad.reason))
        try:  # scrubbed as text: unparsable input may still hold a card number or a password
            payload = scrub_text(bad.raw.decode("utf-8"), keep_ips).encode()
        except UnicodeDecodeError:
            payload = bad.raw
        dead = DeadLetter.of(payload, step="collector", source=source, reason=bad.reason, project=project or "",
                             now=now)
        out.dead_letters.append(OutMessage(kafka.topic_dead_letter, None, dead.to_row_json(), DEAD_LETTER_HEADERS))

    for index, raw in enumerate(items):
        if isinstance(raw, Unreadable):
            reject_raw(index, raw)
            continue
        item = scrub_event(_as_dict(raw), keep_ips)  # a fresh top-level dict: safe to stamp below
        if isinstance(item, dict):
            if project is not None:
                own = item.get("project")
                if own not in (None, "", project):
                    reject(index, item, f"project {str(own)[:128]!r} does not match the project key's project {project!r}")
                    continue
                item["project"] = project
            if stamped is not None:
                item["received_at"] = stamped
        candidates.append((index, item))

    valid: list[tuple[int, Any, Any, bytes | None]] = []  # (index, dict, model, its JSON if already encoded)
    # The common case (no clock skew to correct, time inside the window) is two comparisons against
    # bounds computed once per batch; anything else goes through check_event_time for its verdict.
    latest = reference + timedelta(seconds=window.max_future_s)
    earliest = reference - timedelta(days=window.max_past_days)
    # Error events always go to pydantic (``FAST_TYPES``): a batch holding one skips the attempt.
    encoded_at = _encode_all(candidates) if json_items and candidates and all(
        isinstance(item, dict) and item.get("type") in FAST_TYPES for _, item in candidates) else None
    fast = decode_events(b"[" + b",".join(encoded_at) + b"]") if encoded_at is not None else None
    if fast is not None:
        decoded = Decoded(events=fast)
    else:
        encoded_at = None
        decoded = validate_items([c[1] for c in candidates], step="collector", source=source, now=now,
                                 project=project or "")
    failed = {position: dead.reason for position, dead in zip(decoded.rejected_at, decoded.dead_letters)}
    events = iter(decoded.events)  # the valid ones, in input order
    for position, (index, item) in enumerate(candidates):
        if position in failed:
            reject(index, item, failed[position])
            continue
        event = next(events)
        sent_at = event.sent_at
        if (sent_at is None or abs((reference - sent_at).total_seconds()) < window.skew_min_s) \
                and earliest <= event.timestamp <= latest:
            valid.append((index, item, event, encoded_at[position] if encoded_at is not None else None))
            continue
        timed = check_event_time(event.timestamp, sent_at, reference, window)
        if timed.timestamp is None:
            reject(index, item, timed.reason or "timestamp out of range")
            continue
        if timed.timestamp != event.timestamp:
            item["timestamp"] = timed.timestamp.isoformat()
            valid.append((index, item, event, None))  # changed: encoded again below
            continue
        valid.append((index, item, event, encoded_at[position] if encoded_at is not None else None))

    topics: dict[str, str] = {}  # only the types this batch holds (usually one or two)
    groups: dict[tuple[str, str], list[bytes]] = {}
    accepted = out.accepted_by_type
    for index, item, event, encoded in valid:
        if encoded is None:
            try:
                encoded = orjson.dumps(item, option=orjson.OPT_NON_STR_KEYS)
            except TypeError as exc:  # only from producers: a value JSON cannot express (e.g. a set)
                reject(index, item, f"not JSON-serializable: {exc}")
                continue
        topic = topics.get(event.type)
        if topic is None:
            topic = topics[event.type] = topic_for_type(kafka, event.type)
        groups.setdefault((topic, event.session_id), []).append(encoded)
        accepted[event.type] = accepted.get(event.type, 0) + 1
    for (topic, session_id), encoded in groups.items():
        key = session_id.encode()
        chunk: list[bytes] = []
        size = 2
        for one in encoded:
            if chunk and size + len(one) + 1 > max_message_bytes:
                out.messages.append(OutMessage(topic, key, b"[" + b",".join(chunk) + b"]"))
                chunk, size = [], 2
            chunk.append(one)
            size += len(one) + 1
        out.messages.append(OutMessage(topic, key, b"[" + b",".join(chunk) + b"]"))
    return out


def _encode_all(candidates: list[tuple[int, Any]]) -> list[bytes] | None:
    """Each item's JSON (the bytes its message will hold), or None when one cannot be encoded."""
    try:
        return [orjson.dumps(item, option=orjson.OPT_NON_STR_KEYS) for _, item in candidates]
    except TypeError:
        return None


@functools.lru_cache(maxsize=65536)
def _key_hash(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF


def session_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's default partitioner (Java client's murmur2 of the key) with the hash remembered per
    key: a session's flushes repeat its key, and aiokafka's murmur2 is pure Python."""
    if key is None:
        return DefaultPartitioner()(key, all_partitions, available)
    return all_partitions[_key_hash(key) % len(all_partitions)]


class EventProducer:
    """Async producer for the raw topics: validated, scrubbed, grouped, compressed, idempotent.

    ``send`` returns only after Kafka acknowledged every message (acks=all), or raises
    ``ProduceError``; invalid events go to the dead-letter topic (unless ``dead_letter=False``)
    and are listed in the result with their reasons.
    """

    def __init__(self, kafka: KafkaSettings, *, process: str = "producer",
                 max_pending_bytes: int = 64 * 1024 * 1024, request_timeout_ms: int = 30_000,
                 keep_ips: bool = False) -> None:
        self.kafka = kafka
        self.keep_ips = keep_ips
        self.process = process
        self.max_pending_bytes = max_pending_bytes
        self._pending_bytes = 0
        self._request_timeout_ms = request_timeout_ms
        self._producer = self._make_client()
        self._started = False
        self._events_in: dict[str, Any] = {}  # metric child per event type: labels() once, not per request

    def _make_client(self) -> AIOKafkaProducer:
        kafka, process, request_timeout_ms = self.kafka, self.process, self._request_timeout_ms
        return AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers,
            compression_type=kafka.compression_type,
            linger_ms=kafka.linger_ms,
            enable_idempotence=True,  # implies acks=all; broker retries never duplicate
            max_request_size=kafka.max_request_bytes,
            max_batch_size=MAX_MESSAGE_BYTES,
            request_timeout_ms=request_timeout_ms,
            client_id=f"pulse-{process}",
            partitioner=session_partitioner,
        )

    async def start(self) -> None:
        """Connect; raises (KafkaError/OSError) when the broker is unreachable. May be retried."""
        try:
            await self._producer.start()
        except BaseException:
            # A client whose start failed is not reusable; the next attempt gets a fresh one.
            try:
                await self._producer.stop()
            finally:
                self._producer = self._make_client()
            raise
        self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._producer.stop()

    async def __aenter__(self) -> "EventProducer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def started(self) -> bool:
        return self._started

    async def send(self, events: Iterable[Any], *, project: str | None = None,
                   received_at: datetime | None = None, source: str = "producer", dead_letter: bool = True,
                   timeout_s: float | None = None, now: datetime | None = None,
                   time_window: EventTimeWindow | None = None, json_items: bool = False) -> SendResult:
        """Validate, scrub, check event times and publish events (contract models or dicts); wait for delivery.
        ``json_items``: the events came from a JSON parser (see ``prepare_events``)."""
        now = now or datetime.now(timezone.utc)
        prepared = prepare_events(events, kafka=self.kafka, now=now, source=source, project=project, keep_ips=self.keep_ips,
                                  received_at=received_at, time_window=time_window, json_items=json_items)
        messages = prepared.messages + (prepared.dead_letters if dead_letter else [])
        await self.deliver(messages, timeout_s)
        for event_type, n in prepared.accepted_by_type.items():
            counter = self._events_in.get(event_type)
            if counter is None:
                counter = self._events_in[event_type] = EVENTS_IN.labels(self.process, event_type)
            counter.inc(n)
        if dead_letter:
            for rejected in prepared.rejected:
                DEAD_LETTERS.labels(self.process, "collector", reason_kind(rejected.reason)).inc()
        return SendResult(prepared.accepted, prepared.rejected)

    async def send_raw(self, topic: str, value: bytes, key: bytes | None = None,
                       headers: list[tuple[str, bytes]] | None = None, timeout_s: float | None = None) -> None:
        """Publish bytes as they are: records that are not events (issue commands), and malformed
        input for tests and demos."""
        await self.deliver([OutMessage(topic, key, value, headers)], timeout_s)

    async def deliver(self, messages: list[OutMessage], timeout_s: float | None = None) -> None:
        """Produce messages and wait for all acknowledgements, within ``timeout_s`` if given."""
        if not messages:
            return
        if not self._started:
            raise ProduceError("producer is not connected to Kafka")
        size = sum(len(m.value) for m in messages)
        if self._pending_bytes + size > self.max_pending_bytes and self._pending_bytes > 0:
            PRODUCE_FAILURES.labels(self.process).inc()
            raise ProducerBusy(f"producer buffer full ({self._pending_bytes} bytes awaiting delivery)")
        self._pending_bytes += size
        futures: list[asyncio.Future[Any]] = []
        unsent = [size]
        # One future of our own that the last delivery settles (cheaper than asyncio.wait, which
        # builds a set, a waiter and a callback per future every call). When the timeout cancels
        # us, only it is cancelled: aiokafka may still deliver the messages, a harmless duplicate
        # once the client retries.
        all_settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        unsettled = [len(messages)]

        def settled(n: int, fut: asyncio.Future[Any]) -> None:
            self._settled(n, fut)
            unsettled[0] -= 1
            if not unsettled[0] and not all_settled.done():
                all_settled.set_result(None)

        async def enqueue_and_wait() -> None:
            for m in messages:
                fut = await self._producer.send(m.topic, m.value, key=m.key, headers=m.headers)
                n = len(m.value)
                unsent[0] -= n
                fut.add_done_callback(functools.partial(settled, n))
                futures.append(fut)
            await all_settled

        try:
            # One timeout around the whole request, in this task (wait_for would start another).
            async with asyncio.timeout(timeout_s):
                await enqueue_and_wait()
            for fut in futures:
                if fut.cancelled():  # aiokafka cancels what it still holds when it is stopped
                    raise ProduceError("delivery cancelled: the producer is stopping")
                exc = fut.exception()
                if exc is not None:
                    raise ProduceError(f"delivery failed: {exc!r}") from exc
        except (asyncio.TimeoutError, TimeoutError) as exc:
            PRODUCE_FAILURES.labels(self.process).inc()
            pending = sum(1 for f in futures if not f.done()) + len(messages) - len(futures)
            raise ProduceError(f"delivery not confirmed within {timeout_s}s ({pending} of {len(messages)} "
                               "messages pending)") from exc
        except KafkaError as exc:
            PRODUCE_FAILURES.labels(self.process).inc()
            raise ProduceError(f"produce failed: {exc!r}") from exc
        except ProduceError:
            PRODUCE_FAILURES.labels(self.process).inc()
            raise
        finally:
            self._pending_bytes -= unsent[0]

    def _settled(self, n: int, fut: asyncio.Future[Any]) -> None:
        self._pending_bytes -= n
        if not fut.cancelled():
            fut.exception()  # retrieved: a late failure after a timeout is not an unhandled error

    async def flush(self) -> None:
        """Wait until everything handed to Kafka so far is delivered."""
        await self._producer.flush()

    async def check_broker(self, timeout_s: float = 2.0) -> str | None:
        """None when the broker answers a metadata request in time, else why not."""
        if not self._started:
            return "producer not started"
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout_s)
            return None
        except (asyncio.TimeoutError, TimeoutError):
            return f"no metadata answer within {timeout_s}s"
        except (KafkaError, OSError) as exc:
            return f"metadata request failed: {exc!r}"
