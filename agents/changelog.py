"""Reading back what a newly assigned partition starts from: its compacted changelog to the end,
and the recent input before its committed offset (for the dedup memory).

The changelog:

Compaction may not have run, so the log can hold several values per key: the last one wins, and a
``None`` value (tombstone) deletes the key. The end is the partition's end offset when reading
starts: whoever owned the partition before has stopped writing by then (its raw partitions were
revoked, or it died), so nothing the new owner needs comes later.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger(__name__)


async def read_to_end(bootstrap_servers: str, topic: str, partitions: list[int],
                      timeout_s: float = 300.0) -> dict[int, dict[bytes, bytes]]:
    """``{partition: {key: latest value}}`` for ``partitions`` of ``topic`` (tombstones applied)."""
    state: dict[int, dict[bytes, bytes]] = {p: {} for p in partitions}
    if not partitions:
        return state
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024,
                                fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    started = time.monotonic()
    records = 0
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        todo = {tp for tp in tps if ends[tp] > starts[tp]}
        for tp in todo:
            consumer.seek(tp, starts[tp])
        while todo:
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"reading {topic} partitions {sorted(tp.partition for tp in todo)} took over "
                                   f"{timeout_s:.0f} s")
            for tp, batch in (await consumer.getmany(*todo, timeout_ms=1000)).items():
                values = state[tp.partition]
                for r in batch:
                    if r.offset >= ends[tp]:
                        break
                    records += 1
                    if r.key is None:
                        continue
                    if r.value is None:
                        values.pop(r.key, None)
                    else:
                        values[r.key] = r.value
                if batch and batch[-1].offset >= ends[tp] - 1:
                    todo.discard(tp)
            for tp in list(todo):  # compaction can leave the end offset past the last record
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
    finally:
        await consumer.stop()
    if records:
        log.info("read %d records of %s partitions %s in %.2f s", records, topic, partitions,
                 time.monotonic() - started)
    return state


async def read_back(bootstrap_servers: str, ends: dict[tuple[str, int], int], seconds: float,
                    most: int, timeout_s: float = 120.0) -> list[bytes]:
    """Values of the messages in the ``seconds`` before each partition's ``ends`` offset (by the
    Kafka timestamp of the message just before it), at most ``most`` per partition (the newest):
    what the dedup memory of a worker taking over a partition is rebuilt from."""
    from aiokafka import TopicPartition as TP

    wanted = {TP(t, p): end for (t, p), end in ends.items() if end > 0}
    if not wanted or seconds <= 0:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=2 * 1024 * 1024)
    await consumer.start()
    values: list[bytes] = []
    started = time.monotonic()
    try:
        consumer.assign(list(wanted))
        starts = await consumer.beginning_offsets(list(wanted))
        begin: dict[Any, int] = {}
        for tp, end in wanted.items():
            consumer.seek(tp, max(starts[tp], end - 1))
            last = await consumer.getmany(tp, timeout_ms=5000)
            records = last.get(tp, [])
            if not records or records[0].offset >= end:
                continue
            since = await consumer.offsets_for_times({tp: max(0, records[0].timestamp - int(seconds * 1000))})
            first = since[tp].offset if since.get(tp) is not None else end
            begin[tp] = max(first, end - most, starts[tp])
        todo = {tp for tp, first in begin.items() if first < wanted[tp]}
        for tp in todo:
            consumer.seek(tp, begin[tp])
        while todo:
            if time.monotonic() - started > timeout_s:
                log.error("reading back %s for the dedup memory took over %.0f s; going on without the rest",
                          sorted(f"{tp.topic}:{tp.partition}" for tp in todo), timeout_s)
                break
            for tp, batch in (await consumer.getmany(*todo, timeout_ms=1000)).items():
                for r in batch:
                    if r.offset >= wanted[tp]:
                        todo.discard(tp)
                        break
                    if r.value is not None:
                        values.append(r.value)
                if batch and batch[-1].offset >= wanted[tp] - 1:
                    todo.discard(tp)
    finally:
        await consumer.stop()
    return values
