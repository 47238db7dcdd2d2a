"""Broker readiness and topic creation with explicit partition counts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline.settings import KafkaSettings


@contextmanager
def _quiet_aiokafka() -> Iterator[None]:
    """While probing, 'Unable connect' is the expected answer: don't print it as an error."""
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


async def wait_for_broker(bootstrap: str, timeout_s: float = 60.0,
                          on_attempt: Callable[[int], None] | None = None) -> None:
    """Ready = a metadata request succeeds. Raises TimeoutError naming the address."""
    with _quiet_aiokafka():
        await _wait_for_broker(bootstrap, timeout_s, on_attempt)


async def _wait_for_broker(bootstrap: str, timeout_s: float, on_attempt: Callable[[int], None] | None) -> None:
    deadline = time.monotonic() + timeout_s
    attempt = 0
    last: Exception | None = None
    while time.monotonic() < deadline:
        attempt += 1
        if on_attempt:
            on_attempt(attempt)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError) as exc:
            last = exc
        finally:
            try:
                await admin.close()
            except Exception:  # noqa: BLE001 - closing a half-started client
                pass
        await asyncio.sleep(0.5)
    raise TimeoutError(f"Kafka at {bootstrap} did not answer within {timeout_s:.0f}s (last error: {last})")


async def ensure_topics(kafka: KafkaSettings, topics: list[str] | None = None,
                        compacted: list[str] | None = None) -> list[str]:
    """Create the project's topics (idempotent). Returns the names that were created now.
    ``compacted`` topics (state changelogs) get ``cleanup.policy=compact``: only the last record
    per key matters, and deleting them by age would lose state."""
    compact = set(compacted or [])
    wanted = list(dict.fromkeys([*(topics if topics is not None else kafka.all_topics), *sorted(compact)]))
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(t, kafka.partitions, kafka.replication_factor,
                              topic_configs={"cleanup.policy": "compact"} if t in compact else None)
                     for t in missing])
            except TopicAlreadyExistsError:
                pass  # raced with another process; fine
        return missing
    finally:
        await admin.close()
