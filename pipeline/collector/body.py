"""Reading request bodies safely: a size cap on the wire and after gzip, and problems as answers."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from aiohttp import web

GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Problem:
    """A request we answer with an error status, and the message the client reads."""

    status: int
    message: str


# ------------------------------------------------------------------ pure steps (bytes -> items)


def decompress_gzip(data: bytes, limit: int) -> bytes | Problem:
    """Inflate with a cap: output beyond ``limit`` stops at limit+1 bytes (a gzip bomb costs nothing)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        return Problem(400, f"body is not valid gzip: {exc}")
    if len(out) > limit:
        return Problem(413, f"body exceeds {limit} bytes after decompression")
    if not inflater.eof:
        return Problem(400, "body is not valid gzip: truncated stream")
    return out


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
