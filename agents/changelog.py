"""Read a compacted changelog partition to its end: the state a newly assigned partition starts from.

Compaction may not have run, so the log can hold several values per key: the last one wins, and a
``None`` value (tombstone) deletes the key. The end is the partition's end offset when reading
starts: whoever owned the partition before has stopped writing by then (its raw partitions were
revoked, or it died), so nothing the new owner needs comes later.
"""

from __future__ import annotations

import logging
import time

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
