"""The project's own broker works with our client stack (aiokafka, the version Faust uses)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipeline.settings import Settings

pytestmark = pytest.mark.integration


def test_produce_consume_round_trip_with_compression(settings: Settings) -> None:
    async def run() -> list[tuple[bytes, bytes]]:
        topic = settings.kafka.topic_actions
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers,
                                    compression_type="lz4", enable_idempotence=True)
        await producer.start()
        try:
            for i in range(20):
                await producer.send_and_wait(topic, f"v{i}".encode(), key=b"session-1")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka.bootstrap_servers,
                                    group_id="rt", auto_offset_reset="earliest")
        await consumer.start()
        got: list[tuple[bytes, bytes]] = []
        try:
            while len(got) < 20:
                batch = await consumer.getmany(timeout_ms=5000)
                if not batch:
                    break
                for records in batch.values():
                    got.extend((r.key, r.value) for r in records)
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(run())
    # One key -> one partition -> order kept.
    assert got == [(b"session-1", f"v{i}".encode()) for i in range(20)]


def test_topics_created_with_explicit_partition_counts(settings: Settings) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    async def run() -> dict[str, int]:
        """Topic creation completes asynchronously in Kafka: a topic created a moment ago may still
        describe with no partitions, so ask again (briefly) until every one has its partitions."""
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
        await admin.start()
        try:
            for _ in range(40):
                described = await admin.describe_topics(settings.kafka.all_topics)
                counts = {d["topic"]: len(d["partitions"]) for d in described}
                if all(counts.values()):
                    break
                await asyncio.sleep(0.25)
        finally:
            await admin.close()
        return counts

    counts = asyncio.run(run())
    assert counts == {t: 2 for t in settings.kafka.all_topics}
