"""Inflating request bodies with a cap, for every endpoint that accepts gzip. Pure."""

from __future__ import annotations

import zlib

GZIP_MAGIC = b"\x1f\x8b"


class InflateError(ValueError):
    """The body is not usable gzip (400) or inflates beyond the limit (413)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def inflate_gzip(data: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes come out; inflating stops at limit+1, so a gzip bomb costs nothing."""
    return _inflate(data, limit, 16 + zlib.MAX_WBITS, "gzip")


def inflate_deflate(data: bytes, limit: int) -> bytes:
    """``Content-Encoding: deflate`` (zlib-wrapped, as HTTP means it), with the same cap as gzip."""
    return _inflate(data, limit, zlib.MAX_WBITS, "deflate")


def _inflate(data: bytes, limit: int, wbits: int, name: str) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise InflateError(400, f"body is not valid {name}: {exc}") from None
    if len(out) > limit:
        raise InflateError(413, f"body exceeds {limit} bytes after decompression")
    if not inflater.eof:
        raise InflateError(400, f"body is not valid {name}: truncated stream")
    return out
