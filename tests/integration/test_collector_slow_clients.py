"""The real ``pulse collector`` process against slow and vanishing clients, over loopback sockets.

300 bodies trickling at 1 byte/s are all answered and closed within the body timeout (plus the short
linger and a generous margin for a loaded box) while normal requests keep getting 200s; a client that
closes mid-body is status 499 in /metrics, never 500, and nothing of its body reaches Kafka."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.kafka_admin import ensure_topics
from pipeline.settings import Settings
from tests.conftest import make_settings
from tests.integration.kafka_read import events_of, read_topics
from tests.integration.pipeline_procs import running_pipeline

pytestmark = pytest.mark.integration

SLOW_CLIENTS = 300
BODY_TIMEOUT_S = 6.0
SLOW_AFTER_S = 1.0
MAX_SLOW = 50
HEADER_TIMEOUT_S = 4.0
SLOW_HEADERS = 20
MARGIN_S = 10.0  # linger (1 s) + scheduling on a shared 2-core box
GIVE_UP_S = 60.0  # the trickle stops here at the latest: the test loops are bounded


def vital(session: str) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": "vital", "timestamp": "2026-11-23T10:00:00Z",
            "session_id": session, "vital": {"name": "LCP", "value": 1200.0}}


def head(settings: Settings, framing: str) -> bytes:
    key = next(iter(settings.collector.project_keys))
    return (f"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pulse-Key: {key}\r\n"
            f"Content-Type: application/json\r\n{framing}\r\n\r\n").encode()


async def trickle(settings: Settings) -> tuple[bytes, float | None]:
    """Headers, then one body byte per second; (status line, seconds until the server closed) or None."""
    reader, writer = await asyncio.open_connection("127.0.0.1", settings.collector.port)
    t0 = time.monotonic()
    writer.write(head(settings, "Content-Length: 1000"))

    async def read_all() -> bytes:
        data = b""
        try:
            while chunk := await reader.read(4096):
                data += chunk
        except ConnectionError:
            pass
        return data

    answer = asyncio.create_task(read_all())
    try:
        while not answer.done() and time.monotonic() - t0 < GIVE_UP_S:
            try:
                writer.write(b"[")
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.wait([answer], timeout=1.0)
        if not answer.done():
            return b"still open", None
        closed_after = time.monotonic() - t0
        return (await answer).split(b"\r\n", 1)[0], closed_after
    finally:
        answer.cancel()
        writer.close()


async def trickle_headers(settings: Settings) -> float | None:
    """Request headers one byte per second; seconds until the server closed, None if it never did."""
    reader, writer = await asyncio.open_connection("127.0.0.1", settings.collector.port)
    t0 = time.monotonic()
    closed = asyncio.create_task(reader.read())
    try:
        for byte in head(settings, "Content-Length: 2") * 100:
            if closed.done() or time.monotonic() - t0 > GIVE_UP_S:
                break
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.wait([closed], timeout=1.0)
        return time.monotonic() - t0 if closed.done() else None
    finally:
        closed.cancel()
        writer.close()


async def hang_up_mid_body(settings: Settings, framing: str, sent: bytes) -> None:
    """Send headers and a body that is complete JSON but not a complete HTTP body, then close."""
    _, writer = await asyncio.open_connection("127.0.0.1", settings.collector.port)
    writer.write(head(settings, framing) + sent)
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()
    await writer.wait_closed()


async def requests_by_status(http: aiohttp.ClientSession, settings: Settings) -> dict[str, float]:
    async with http.get(f"http://127.0.0.1:{settings.collector.port}/metrics") as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "pulse_http_requests_total" and sample.labels["endpoint"] == "/api/v1/events":
                out[sample.labels["status"]] = sample.value
    return out


async def post_one(http: aiohttp.ClientSession, settings: Settings, event: dict[str, Any]) -> int:
    key = next(iter(settings.collector.project_keys))
    async with http.post(f"http://127.0.0.1:{settings.collector.port}/api/v1/events", data=orjson.dumps([event]),
                         headers={"X-Pulse-Key": key}, timeout=aiohttp.ClientTimeout(total=20)) as resp:
        doc = await resp.json()
        return resp.status if doc.get("accepted") == 1 else -resp.status


async def test_slow_bodies_are_closed_in_time_and_vanished_clients_are_499(kafka_bootstrap: str,
                                                                          tmp_path: Path) -> None:
    settings = make_settings(kafka_bootstrap, tmp_path, PULSE_COLLECTOR_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
                             PULSE_COLLECTOR_SLOW_BODY_AFTER_S=str(SLOW_AFTER_S),
                             PULSE_COLLECTOR_MAX_SLOW_BODIES=str(MAX_SLOW),
                             PULSE_COLLECTOR_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S))
    await ensure_topics(settings.kafka)
    with running_pipeline(settings, tmp_path / "logs", ("collector",)):
        async with aiohttp.ClientSession() as http:
            # A client gone mid-body, with a length and chunked: bodies that are valid JSON so far.
            orphans = [vital("orphan-1"), vital("orphan-2")]
            first = orjson.dumps([orphans[0]])
            await hang_up_mid_body(settings, f"Content-Length: {len(first) + 50}", first)
            second = orjson.dumps([orphans[1]])
            await hang_up_mid_body(settings, "Transfer-Encoding: chunked", b"%x\r\n%s\r\n" % (len(second), second))
            deadline = time.monotonic() + 30
            while (await requests_by_status(http, settings)).get("499", 0) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            by_status = await requests_by_status(http, settings)
            assert by_status.get("499") == 2 and "500" not in by_status, by_status

            # 300 trickling bodies; normal requests are served meanwhile.
            slow = [asyncio.create_task(trickle(settings)) for _ in range(SLOW_CLIENTS)]
            slow_heads = [asyncio.create_task(trickle_headers(settings)) for _ in range(SLOW_HEADERS)]
            await asyncio.sleep(SLOW_AFTER_S + 1.0)
            normal = [vital(f"normal-{i}") for i in range(10)]
            t_normal = time.monotonic()
            statuses = [await post_one(http, settings, event) for event in normal]
            normal_s = time.monotonic() - t_normal
            results = await asyncio.gather(*slow)
            head_closed = await asyncio.gather(*slow_heads)

            assert statuses == [200] * len(normal), statuses
            closed = [after for _, after in results]
            assert None not in closed, f"{closed.count(None)} slow bodies still open after {GIVE_UP_S} s"
            assert max(c for c in closed if c is not None) <= BODY_TIMEOUT_S + MARGIN_S, sorted(closed)[-5:]
            lines = [line for line, _ in results]
            timed_out = sum(line.startswith(b"HTTP/1.1 408") for line in lines)
            refused = sum(line.startswith(b"HTTP/1.1 503") for line in lines)
            assert timed_out + refused == SLOW_CLIENTS, set(lines)
            assert 0 < timed_out <= MAX_SLOW, (timed_out, refused)
            assert None not in head_closed, f"{head_closed.count(None)} slow headers still open after {GIVE_UP_S} s"
            assert max(c for c in head_closed if c is not None) <= HEADER_TIMEOUT_S + MARGIN_S, sorted(head_closed)
            print(f"\n{SLOW_HEADERS} trickled headers closed after at most "
                  f"{max(c for c in head_closed if c is not None):.2f} s (header timeout {HEADER_TIMEOUT_S} s)")
            print(f"{SLOW_CLIENTS} slow bodies: {timed_out} x 408, {refused} x 503; last closed after "
                  f"{max(c for c in closed if c is not None):.2f} s (body timeout {BODY_TIMEOUT_S} s); "
                  f"10 normal requests meanwhile in {normal_s:.2f} s")

        records = await read_topics(settings.kafka.bootstrap_servers, settings.kafka.raw_topics, quiet_s=2.0,
                                    until=lambda rs: len(events_of(rs)) >= len(normal))
        ids = {e["event_id"] for e in events_of(records)}
        assert ids >= {e["event_id"] for e in normal}
        assert not ids & {e["event_id"] for e in orphans}, "a body cut short reached Kafka"
