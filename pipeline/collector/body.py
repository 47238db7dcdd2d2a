"""Reading request bodies safely: a size cap on the wire and after gzip, and problems as answers."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from pipeline.ingest.compression import GZIP_MAGIC, InflateError, inflate_gzip

__all__ = ["GZIP_MAGIC", "Problem", "decompress_gzip", "read_body"]


@dataclass(frozen=True)
class Problem:
    """A request we answer with an error status, and the message the client reads."""

    status: int
    message: str


# ------------------------------------------------------------------ pure steps (bytes -> items)


def decompress_gzip(data: bytes, limit: int) -> bytes | Problem:
    """Inflate with a cap (``pipeline/ingest/compression.py``); a bad or oversized body is a Problem."""
    try:
        return inflate_gzip(data, limit)
    except InflateError as exc:
        return Problem(exc.status, str(exc))


async def read_body(request: web.Request, limit: int) -> bytes | Problem:
    """Read at most ``limit`` (+1) bytes off the wire, whatever Content-Length claims."""
    if request.content_length is not None and request.content_length > limit:
        return Problem(413, f"body of {request.content_length} bytes exceeds the limit of {limit}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_any():
        total += len(chunk)
        if total > limit:
            return Problem(413, f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
