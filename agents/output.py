"""Producing a batch's outputs: whole Kafka record batches per partition, not one future per message.

``producer.send`` costs a future, a partitioner call and accumulator bookkeeping per message; at
thousands of outputs per poll that was a quarter of the worker's CPU (issue 14). ``BatchSender``
groups sends by (topic, partition), fills aiokafka ``BatchBuilder``s (C record builder) and submits
each with ``send_batch``: one future per record batch. Keyed sends go to the partition Kafka's
default partitioner (murmur2) picks, so downstream consumers see the same keying as with ``send``.

A send's outcome is its batch's outcome. Retriable failures are retried; each send gets its final
error (or None) back, in the caller's order.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.partitioner import murmur2

from agents.delivery import Send

log = logging.getLogger(__name__)
SEND_ATTEMPTS = 5


class BatchSender:
    """``await sender.send_all(sends)`` -> one error or None per send; same contract as ``agents.delivery``."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self._partitions: dict[str, list[int]] = {}
        self._round_robin = itertools.count()
        self.largest_record = 0  # bytes of the largest key + value produced (for /health and tests)

    async def _partitions_of(self, topic: str) -> list[int]:
        parts = self._partitions.get(topic)
        if parts is None:
            parts = self._partitions[topic] = sorted(await self.producer.partitions_for(topic))
        return parts

    async def _partition(self, send: Send) -> int:
        topic, key, _, partition, _ = send
        if partition is not None:
            return partition
        parts = await self._partitions_of(topic)
        if key is None:
            return parts[next(self._round_robin) % len(parts)]
        return parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)]

    async def send_all(self, sends: Sequence[Send]) -> list[BaseException | None]:
        results: list[BaseException | None] = [None] * len(sends)
        pending = list(range(len(sends)))
        for attempt in range(SEND_ATTEMPTS):
            failed = await self._send_once(sends, pending, results)
            retry = [i for i in failed if isinstance(results[i], KafkaError) and results[i].retriable]  # type: ignore[union-attr]
            if not retry or attempt + 1 == SEND_ATTEMPTS:
                break
            log.warning("retrying %d sends after %r", len(retry), results[retry[0]])
            pending = retry
            await asyncio.sleep(0.5 * 2 ** attempt)
        return results

    async def _send_once(self, sends: Sequence[Send], indices: list[int],
                         results: list[BaseException | None]) -> list[int]:
        """Send ``indices`` once; returns the indices that failed (their errors set in ``results``)."""
        by_tp: dict[tuple[str, int], list[int]] = {}
        for i in indices:
            by_tp.setdefault((sends[i][0], await self._partition(sends[i])), []).append(i)
        futures: list[tuple[asyncio.Future, list[int]]] = []
        failed: list[int] = []
        largest = self.largest_record
        try:
            for (topic, partition), members in by_tp.items():
                batch, in_batch = self.producer.create_batch(), []
                for i in members:
                    _, key, value, _, headers = sends[i]
                    size = (len(key) if key else 0) + (len(value) if value else 0)
                    if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                        if in_batch:  # full: submit it and start the next one
                            batch.close()
                            futures.append((await self.producer.send_batch(batch, topic, partition=partition), in_batch))
                            batch, in_batch = self.producer.create_batch(), []
                        if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                            results[i] = MessageSizeTooLargeError(f"a {size}-byte record does not fit a batch")
                            failed.append(i)
                            continue
                    in_batch.append(i)
                    results[i] = None
                    if size > largest:
                        largest = size
                if in_batch:
                    batch.close()
                    futures.append((await self.producer.send_batch(batch, topic, partition=partition), in_batch))
        finally:
            self.largest_record = largest
            outcomes = await _wait_all([f for f, _ in futures])
        for (_, members), outcome in zip(futures, outcomes):
            if outcome is not None:
                for i in members:
                    results[i] = outcome
                failed.extend(members)
        return failed


async def _wait_all(futures: list[asyncio.Future]) -> list[BaseException | None]:
    """Every future's error (or None); waits for all even when cancelled meanwhile (shutdown)."""
    if not futures:
        return []
    try:
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
    except asyncio.CancelledError:
        await asyncio.wait(futures, timeout=30)
        raise
    return [o if isinstance(o, BaseException) else None for o in outcomes]
