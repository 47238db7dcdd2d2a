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
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise InflateError(400, f"body is not valid gzip: {exc}") from None
    if len(out) > limit:
        raise InflateError(413, f"body exceeds {limit} bytes after decompression")
    if not inflater.eof:
        raise InflateError(400, "body is not valid gzip: truncated stream")
    return out
