"""Sending from the worker: every agent's outputs must be on Kafka before its input is acked."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import faust
from aiokafka.errors import KafkaError

from pipeline.contract import HEADER_TABLE, DeadLetter

log = logging.getLogger(__name__)
SEND_ATTEMPTS = 5
Send = tuple[str, bytes | None, bytes | None, int | None, list[tuple[str, bytes]]]  # topic, key, value, partition, headers
SendAll = Callable[[list[Send]], Awaitable[list[BaseException | None]]]


def make_send_all(app: faust.App) -> SendAll:
    """``send_all(sends)``: send, then wait for every delivery. Retriable failures are retried;
    returns the final error (or None) per send. Waits for deliveries even if cancelled meanwhile.

    Uses faust's producer directly (``app.producer.send`` -> aiokafka's delivery future):
    ``Topic.send`` costs several times more per message (FutureMessage, sensors, callbacks).
    """

    async def send_all(sends: list[Send]) -> list[BaseException | None]:
        producer = app.producer
        results: list[BaseException | None] = [None] * len(sends)
        pending = list(range(len(sends)))
        for attempt in range(SEND_ATTEMPTS):
            futs = []
            for i in pending:
                topic, key, value, partition, headers = sends[i]
                futs.append(await producer.send(topic, key, value, partition, None, headers))
            try:
                outcomes = await asyncio.gather(*futs, return_exceptions=True)
            except asyncio.CancelledError:
                # Shutting down: faust acks the batch anyway, so let the sends finish first.
                await asyncio.wait(futs, timeout=30)
                raise
            retry = []
            for i, outcome in zip(pending, outcomes):
                err = outcome if isinstance(outcome, BaseException) else None
                results[i] = err
                if err is not None and isinstance(err, KafkaError) and err.retriable and attempt + 1 < SEND_ATTEMPTS:
                    retry.append(i)
            if not retry:
                break
            log.warning("retrying %d sends after %r", len(retry), results[retry[0]])
            pending = retry
            await asyncio.sleep(0.5 * 2 ** attempt)
        return results

    return send_all


async def deliver_all(sends: list[Send], send_all: SendAll, what: str,
                      note_error: Callable[[str], None] | None = None) -> None:
    """Send and wait until every send is confirmed, retrying whatever failed (the stage pauses
    meanwhile; nothing is committed, so a long outage is a pause, not a loss): for outputs that must
    be on Kafka before the state that produced them is written. Failed sends are sent again in their
    original order; ``note_error`` hears of each failed round (for /health)."""
    pending, delay = sends, 0.5
    while pending:
        errors = await send_all(pending)
        failed = [s for s, err in zip(pending, errors) if err is not None]
        if failed:
            first = next(e for e in errors if e is not None)
            if note_error is not None:
                note_error(f"could not deliver {len(failed)} {what}: {first!r}")
            log.error("could not deliver %d %s (%r); retrying in %.1fs", len(failed), what, first, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
        pending = failed


def row_sends(topic: str, table: str, lines: list[bytes], max_bytes: int, partition: int | None = None) -> list[Send]:
    """JSONEachRow lines of one table (rows without a raw origin: sessions, issue states, alerts) as
    storage records, each cut below ``max_bytes`` (a line alone is never cut): the lines of a step
    that closed thousands of sessions at once would otherwise pass Kafka's 1 MB limit."""
    sends: list[Send] = []
    headers = [(HEADER_TABLE, table.encode())]
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        if chunk and size + len(line) + 1 > max_bytes:
            sends.append((topic, None, b"\n".join(chunk), partition, headers))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        sends.append((topic, None, b"\n".join(chunk), partition, headers))
    return sends


def dead_letter_send(topic: str, dl: DeadLetter) -> Send:
    """A dead letter as a send: the sink stores it in ``dead_letters`` like the collector's."""
    return (topic, None, dl.to_row_json(), None, [(HEADER_TABLE, b"dead_letters")])
