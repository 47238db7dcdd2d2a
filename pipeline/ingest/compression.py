"""Inflating request bodies with a cap, for every endpoint that accepts compressed bodies. Pure.

``Content-Encoding`` as SDKs send it: gzip (most), deflate, br (sentry-python whenever the
``brotli`` module is importable, which many services have) and zstd. Each decoder stops at
limit+1 bytes of output, so a bomb costs nothing."""

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


CONTENT_ENCODINGS = ("gzip", "x-gzip", "deflate", "br", "zstd")


def inflate(data: bytes, encoding: str, limit: int) -> bytes:
    """A body sent with ``Content-Encoding: encoding`` (one of ``CONTENT_ENCODINGS``), at most ``limit``
    bytes decoded. A gzip header says gzip whatever the header claims (some SDKs send it plain
    with ``gzip`` announced; that body is returned as is)."""
    if encoding in ("gzip", "x-gzip"):
        return inflate_gzip(data, limit) if data[:2] == GZIP_MAGIC else data
    if encoding == "deflate":
        return inflate_deflate(data, limit)
    if encoding == "br":
        return inflate_brotli(data, limit)
    if encoding == "zstd":
        return inflate_zstd(data, limit)
    raise InflateError(415, f"unsupported Content-Encoding {encoding!r}; use gzip, deflate, br, zstd or none")


def inflate_brotli(data: bytes, limit: int) -> bytes:
    import brotli

    decoder = brotli.Decompressor()
    try:
        out = bytes(decoder.process(data, output_buffer_limit=limit + 1))
    except brotli.error as exc:
        raise InflateError(400, f"body is not valid br: {exc}") from None
    if len(out) > limit:
        raise InflateError(413, f"body exceeds {limit} bytes after decompression")
    if not decoder.is_finished():
        raise InflateError(400, "body is not valid br: truncated stream")
    return out


def inflate_zstd(data: bytes, limit: int) -> bytes:
    try:  # Python >= 3.14 has it in the standard library; before, the backport
        from compression import zstd  # type: ignore[import-not-found]
    except ImportError:
        from backports import zstd  # type: ignore[no-redef]

    decoder = zstd.ZstdDecompressor()
    try:
        out = decoder.decompress(data, max_length=limit + 1)
    except zstd.ZstdError as exc:
        raise InflateError(400, f"body is not valid zstd: {exc}") from None
    if len(out) > limit:
        raise InflateError(413, f"body exceeds {limit} bytes after decompression")
    if not decoder.eof:
        raise InflateError(400, "body is not valid zstd: truncated stream")
    return out


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
