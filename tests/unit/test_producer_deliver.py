"""``EventProducer.deliver``: returns once every message is acknowledged, raises ProduceError otherwise,
and never cancels what aiokafka still holds (a late delivery is a harmless duplicate)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pipeline.ingest.producer import EventProducer, OutMessage, ProduceError
from pipeline.settings import KafkaSettings


class StubKafka:
    """aiokafka's ``send``: a future per message, settled by the test (or on the next loop turn)."""

    def __init__(self, settle: str = "soon") -> None:
        self.settle = settle
        self.futures: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(fut)
        if self.settle == "soon":
            asyncio.get_running_loop().call_soon(fut.set_result, None)
        return fut

    async def stop(self) -> None:
        pass


def producer(stub: StubKafka) -> EventProducer:
    p = EventProducer(KafkaSettings(bootstrap_servers="127.0.0.1:9"))
    p._producer = stub  # type: ignore[assignment]
    p._started = True
    return p


MESSAGES = [OutMessage("t", b"k", b"x" * 100), OutMessage("t", b"k2", b"y" * 50), OutMessage("u", None, b"z")]


async def test_returns_when_every_message_is_acknowledged() -> None:
    stub = StubKafka()
    p = producer(stub)
    await p.deliver(MESSAGES, timeout_s=5)
    assert len(stub.futures) == 3 and all(f.done() for f in stub.futures)
    assert p._pending_bytes == 0


async def test_a_missing_acknowledgement_is_a_timeout_that_leaves_the_futures_alive() -> None:
    stub = StubKafka(settle="never")
    p = producer(stub)
    task = asyncio.ensure_future(p.deliver(MESSAGES, timeout_s=0.05))
    await asyncio.sleep(0)
    stub.futures[0].set_result(None)  # one of three acknowledged
    with pytest.raises(ProduceError, match=r"not confirmed within 0.05s \(2 of 3 messages pending\)"):
        await task
    assert not any(f.cancelled() for f in stub.futures)  # aiokafka may still deliver them
    assert p._pending_bytes == 51  # still held by aiokafka
    for f in stub.futures[1:]:
        f.set_result(None)
    await asyncio.sleep(0)
    assert p._pending_bytes == 0


async def test_a_failed_or_cancelled_delivery_is_a_produce_error() -> None:
    stub = StubKafka(settle="never")
    p = producer(stub)
    task = asyncio.ensure_future(p.deliver(MESSAGES, timeout_s=5))
    await asyncio.sleep(0)
    stub.futures[0].set_result(None)
    stub.futures[1].set_exception(RuntimeError("broker said no"))
    await asyncio.sleep(0)
    assert not task.done()  # waits for all three
    stub.futures[2].set_result(None)
    with pytest.raises(ProduceError, match="delivery failed: RuntimeError"):
        await task
    stub = StubKafka(settle="never")
    p = producer(stub)
    task = asyncio.ensure_future(p.deliver(MESSAGES[:1], timeout_s=5))
    await asyncio.sleep(0)
    stub.futures[0].cancel()  # aiokafka stopping
    with pytest.raises(ProduceError, match="cancelled"):
        await task
    assert p._pending_bytes == 0
