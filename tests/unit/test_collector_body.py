"""Reading bodies under the app's limits: slow bodies need a slot, every body has a deadline, and a
client gone mid-body is a 499, never a 500. A hand-fed payload stands for the wire (no sockets)."""

from __future__ import annotations

import asyncio
import time
from unittest.mock import Mock

from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request

from pipeline.collector.body import BODY_LIMITS, BodyLimits, Problem, SlowBodies, read_body


def _request(limits: BodyLimits, content_length: int | None = None, transport: Mock | None = None
             ) -> tuple[web.Request, StreamReader]:
    loop = asyncio.get_running_loop()
    protocol = BaseProtocol(loop)
    protocol.transport = Mock()  # "connected"; the bytes come from feed_data
    payload = StreamReader(protocol, 2**16, loop=loop)
    app = web.Application()
    app[BODY_LIMITS] = limits
    headers = {} if content_length is None else {"Content-Length": str(content_length)}
    transport = transport or Mock(is_closing=Mock(return_value=True))  # the client's side is gone
    return make_mocked_request("POST", "/api/v1/events", headers=headers, payload=payload, app=app,
                               transport=transport), payload


def _limits(timeout_s: float = 5.0, slow_after_s: float = 5.0, max_slow: int = 4, max_bytes: int = 1024) -> BodyLimits:
    return BodyLimits(max_bytes, timeout_s, slow_after_s, SlowBodies(max_slow))


async def _trickle(payload: StreamReader, every_s: float, n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(every_s)
        payload.feed_data(b"[")


def test_slow_slots_say_no_when_all_are_taken() -> None:
    slots = SlowBodies(2)
    assert [slots.enter(), slots.enter(), slots.enter()] == [True, True, False]
    slots.leave()
    assert slots.enter() is True and slots.in_use == 2
    assert SlowBodies(0).enter() is False


async def test_a_prompt_body_is_read_whole() -> None:
    request, payload = _request(_limits())
    payload.feed_data(b'[{"a": 1}')
    payload.feed_data(b"]")
    payload.feed_eof()
    assert await read_body(request) == b'[{"a": 1}]'


async def test_a_trickling_body_is_408_at_the_deadline_and_frees_its_slot() -> None:
    limits = _limits(timeout_s=0.6, slow_after_s=0.2)
    request, payload = _request(limits)
    feeder = asyncio.create_task(_trickle(payload, 0.05, 100))
    t0 = time.monotonic()
    problem = await read_body(request)
    elapsed = time.monotonic() - t0
    feeder.cancel()
    assert isinstance(problem, Problem) and problem.status == 408, problem
    assert 0.55 <= elapsed < 1.5, elapsed
    assert limits.slow.in_use == 0


async def test_a_slow_body_without_a_free_slot_is_503_after_the_grace_period() -> None:
    limits = _limits(timeout_s=5.0, slow_after_s=0.2, max_slow=1)
    assert limits.slow.enter()  # someone else holds the only slot
    request, payload = _request(limits)
    feeder = asyncio.create_task(_trickle(payload, 0.05, 100))
    t0 = time.monotonic()
    problem = await read_body(request)
    elapsed = time.monotonic() - t0
    feeder.cancel()
    assert isinstance(problem, Problem) and problem.status == 503 and "limit 1" in problem.message
    assert 0.15 <= elapsed < 1.0, elapsed
    assert limits.slow.in_use == 1  # only the other holder's


async def test_a_slow_body_with_a_slot_completes() -> None:
    limits = _limits(timeout_s=5.0, slow_after_s=0.1, max_slow=1)
    request, payload = _request(limits)

    async def feed() -> None:
        await _trickle(payload, 0.1, 4)
        payload.feed_eof()

    feeder = asyncio.create_task(feed())
    assert await read_body(request) == b"[[[["
    await feeder
    assert limits.slow.in_use == 0


async def test_a_client_gone_mid_body_is_499() -> None:
    request, payload = _request(_limits(), content_length=100)
    payload.feed_data(b'[{"a"')
    asyncio.get_running_loop().call_later(0.05, payload.set_exception, ConnectionResetError("Connection lost"))
    problem = await read_body(request)
    assert isinstance(problem, Problem) and problem.status == 499, problem


async def test_broken_chunked_framing_from_a_connected_client_is_400_and_from_a_gone_one_499() -> None:
    from aiohttp.http_exceptions import TransferEncodingError

    open_transport = Mock(is_closing=Mock(return_value=False))
    request, payload = _request(_limits(), transport=open_transport)
    payload.feed_data(b"[")
    payload.set_exception(TransferEncodingError("Not enough data to satisfy transfer length header."))
    problem = await read_body(request)
    assert isinstance(problem, Problem) and problem.status == 400, problem
    request, payload = _request(_limits())
    payload.set_exception(TransferEncodingError("Not enough data to satisfy transfer length header."))
    problem = await read_body(request)
    assert isinstance(problem, Problem) and problem.status == 499, problem


async def test_too_large_is_413_by_header_and_on_the_wire() -> None:
    request, _ = _request(_limits(max_bytes=10), content_length=11)
    assert await read_body(request) == Problem(413, "body of 11 bytes exceeds the limit of 10")
    request, payload = _request(_limits(max_bytes=10))
    payload.feed_data(b"x" * 11)
    problem = await read_body(request)
    assert isinstance(problem, Problem) and problem.status == 413
