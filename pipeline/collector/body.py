"""Reading request bodies safely: a size cap on the wire and after gzip, a deadline, a cap on how many
slow bodies are read at once, and problems as answers.

A body that is still arriving ``slow_after_s`` after the headers is *slow*: it needs one of
``max_slow`` slots (``SlowBodies``) to go on; with none free it is answered 503 at once, so trickling
clients can hold at most ``max_slow`` requests, and fast requests never wait behind them. Every body
must be complete ``timeout_s`` after the headers (408). A client that goes away mid-body is status
499 (nginx's "client closed request") in the metrics: nothing was produced, nobody reads the answer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from pipeline.ingest.compression import CONTENT_ENCODINGS, GZIP_MAGIC, InflateError, inflate, inflate_gzip

__all__ = ["CLIENT_CLOSED_REQUEST", "GZIP_MAGIC", "BodyLimits", "Problem", "SlowBodies", "client_gone",
           "decompress", "decompress_gzip", "read_body", "CONTENT_ENCODINGS"]

CLIENT_CLOSED_REQUEST = 499  # nginx's status for "the client went away before the answer"; never sent


@dataclass(frozen=True)
class Problem:
    """A request we answer with an error status, and the message the client reads."""

    status: int
    message: str


class SlowBodies:
    """Slots for bodies still arriving after the grace period; ``enter`` says no when all are taken.

    Example::

        slots = SlowBodies(2)
        slots.enter(), slots.enter(), slots.enter()   # True, True, False
        slots.leave()                                 # one free again
    """

    def __init__(self, max_slow: int) -> None:
        self.max_slow = max_slow
        self.in_use = 0

    def enter(self) -> bool:
        if self.in_use >= self.max_slow:
            return False
        self.in_use += 1
        return True

    def leave(self) -> None:
        self.in_use -= 1


@dataclass(frozen=True)
class BodyLimits:
    """How long a body may take and who may be slow (``CollectorSettings``: body_timeout_s,
    slow_body_after_s, max_slow_bodies); one per app, shared by its routes."""

    max_bytes: int
    timeout_s: float
    slow_after_s: float
    slow: SlowBodies


BODY_LIMITS = web.AppKey("body_limits", BodyLimits)


def client_gone(request: web.Request) -> bool:
    """The connection is closed or closing: whatever we answer, nobody reads it."""
    return request.transport is None or request.transport.is_closing()


# ------------------------------------------------------------------ pure steps (bytes -> items)


def decompress(data: bytes, encoding: str, limit: int) -> bytes | Problem:
    """``Content-Encoding`` undone with a cap (``pipeline/ingest/compression.py``); a bad, oversized or
    unknown encoding is a Problem (400 / 413 / 415)."""
    try:
        return inflate(data, encoding, limit)
    except InflateError as exc:
        return Problem(exc.status, str(exc))


def decompress_gzip(data: bytes, limit: int) -> bytes | Problem:
    """Inflate with a cap (``pipeline/ingest/compression.py``); a bad or oversized body is a Problem."""
    try:
        return inflate_gzip(data, limit)
    except InflateError as exc:
        return Problem(exc.status, str(exc))


async def read_body(request: web.Request, limit: int | None = None) -> bytes | Problem:
    """Read the body within the app's ``BodyLimits``: at most ``limit`` (default max_bytes) bytes
    off the wire whatever Content-Length claims, complete within the deadline, slow only with a slot.

    Problems: 413 too large, 408 too slow, 503 too many slow bodies at once, 400 broken chunked
    framing, 499 client gone.
    """
    limits = request.app[BODY_LIMITS]
    limit = limits.max_bytes if limit is None else limit
    if request.content_length is not None and request.content_length > limit:
        return Problem(413, f"body of {request.content_length} bytes exceeds the limit of {limit}")
    content = request.content
    if content.is_eof():  # the whole body came with the headers (an SDK flush, usually): no waiting
        try:
            body = content.read_nowait()
        except (ConnectionError, HttpProcessingError) as exc:
            return Problem(CLIENT_CLOSED_REQUEST, f"client closed the connection before the body was complete: {exc}")
        if len(body) > limit:
            return Problem(413, f"body exceeds the limit of {limit} bytes")
        return body
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + limits.timeout_s
    slow_at = started + min(limits.slow_after_s, limits.timeout_s)
    is_slow = False
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            if not is_slow and loop.time() >= slow_at:
                if not limits.slow.enter():
                    return Problem(503, f"too many slow request bodies at once (limit {limits.slow.max_slow}); "
                                        f"send the body within {limits.slow_after_s:g} s or retry later")
                is_slow = True
            try:
                async with asyncio.timeout_at(deadline if is_slow else slow_at):
                    chunk = await request.content.readany()
            except TimeoutError:
                if loop.time() >= deadline:
                    return Problem(408, f"request body not complete within {limits.timeout_s:g} s")
                continue  # grace period over: take a slow slot or be refused
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                return Problem(413, f"body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
    except (ConnectionError, HttpProcessingError) as exc:
        if isinstance(exc, HttpProcessingError) and not client_gone(request):
            return Problem(400, f"malformed request body framing: {exc.message}")
        return Problem(CLIENT_CLOSED_REQUEST, f"client closed the connection before the body was complete: {exc}")
    finally:
        if is_slow:
            limits.slow.leave()
    return b"".join(chunks)
