"""A load plan as the worker reads it from Kafka, for the benches that replay the worker's step in
process (``ingest_replay.py``, ``replay_instructions.py``, ``late_events.py``): each message on its
raw topic, in the partition Kafka's default partitioner gives its key (murmur2, as aiokafka and the
Java client do), with offsets counted per partition in produced order."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from aiokafka.partitioner import murmur2

from pipeline.ingest.process import RawMessage
from pipeline.settings import KafkaSettings
from pipeline.simulate_load import TOPIC_KINDS, LoadPlan


def planned_raw_messages(plan: LoadPlan, kafka: KafkaSettings) -> list[RawMessage]:
    topics = dict(zip(TOPIC_KINDS, (kafka.topic_errors, kafka.topic_vitals, kafka.topic_actions)))
    offsets: Counter[tuple[str, int]] = Counter()
    raws = []
    for m in plan.messages:
        topic, partition = topics[m.topic_kind], (murmur2(m.key) & 0x7FFFFFFF) % kafka.partitions
        raws.append(RawMessage(topic, partition, offsets[(topic, partition)], m.key, m.value, m.send_ms))
        offsets[(topic, partition)] += 1
    return raws


def all_produced(raws: list[RawMessage]) -> Callable[[str, int], int]:
    """The high-water mark of each partition once every message of ``raws`` is produced (the benches
    produce everything before the worker reads): what ``SessionStore.step_batch`` is told."""
    upto: Counter[tuple[str, int]] = Counter()
    for m in raws:
        upto[(m.topic, m.partition)] = m.offset + 1
    return lambda topic, partition: upto[(topic, partition)]
