"""ClickHouse's two kinds of HTTP compression, as its drivers speak them. Pure (bytes in, bytes out).

* ``compress=1`` / ``decompress=1``: the body is ClickHouse's own block framing (what the JDBC/client-v2
  driver uses by default): per block a 16-byte CityHash128 (CityHash v1.0.2, as ClickHouse pins it) of
  the rest of the block, one method byte (0x82 LZ4, 0x90 ZSTD, 0x02 none), the compressed size (with
  the 9-byte header) and the uncompressed size as little-endian UInt32, then the payload.
* ``enable_http_compression=1``: ordinary HTTP ``Accept-Encoding`` for the response (ClickHouse picks
  in its own order, not the client's q-values) and ``Content-Encoding`` of a request body.

Decompressing a client's body is bounded by ``max_size`` (the operator's setting): a few KiB of
zeros can expand to gigabytes, so every decoder stops as soon as the output would pass the bound.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import brotli
import lz4.block
import lz4.frame
from clickhouse_cityhash.cityhash import CityHash128

try:  # Python >= 3.14 has it in the standard library; before, the backport clickhouse-connect brings
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the interpreter
    from backports import zstd  # type: ignore[no-redef]

METHOD_NONE, METHOD_LZ4, METHOD_ZSTD = 0x02, 0x82, 0x90
HEADER = struct.Struct("<BII")  # method, compressed size (header included), uncompressed size
CHECKSUM_SIZE = 16
BLOCK_SIZE = 1024 * 1024  # ClickHouse's max_compress_block_size default
# ClickHouse's choice among Accept-Encoding values, in its own order (HTTPHandler): the first one the
# client lists at all wins, whatever its q-value.
RESPONSE_ENCODINGS = ("gzip", "deflate", "xz", "zstd", "br", "lz4", "bz2")


class CompressionError(ValueError):
    """Worded like ClickHouse's own errors; ``code`` and ``status`` as ClickHouse answers them."""

    def __init__(self, why: str, code: int, name: str, status: int = 400) -> None:
        self.code, self.name, self.status = code, name, status
        super().__init__(f"Code: {code}. DB::Exception: {why}. ({name})")


def body_too_large(max_size: int) -> CompressionError:
    """A request body (as sent or decompressed) past the operator's bound."""
    return CompressionError(f"the request body is larger than {max_size} bytes (as sent or decompressed; "
                            "PULSE_SINK_SQL_MAX_REQUEST_BODY_BYTES)", 307, "TOO_MANY_BYTES", 413)


def checksum(block: bytes) -> bytes:
    """CityHash128 of a block (method byte onwards) in ClickHouse's byte order: the two 64-bit halves,
    each little-endian, first half first (checked against a block chDB wrote)."""
    value = CityHash128(block)
    return struct.pack("<QQ", value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF)


def compress_blocks(data: bytes, block_size: int = BLOCK_SIZE) -> bytes:
    """``data`` in ClickHouse's compressed-block framing, LZ4, one block per ``block_size`` bytes."""
    out = bytearray()
    for start in range(0, len(data), block_size) if data else ():
        chunk = data[start:start + block_size]
        payload = lz4.block.compress(chunk, store_size=False)
        block = HEADER.pack(METHOD_LZ4, HEADER.size + len(payload), len(chunk)) + payload
        out += checksum(block) + block
    return bytes(out)


def decompress_blocks(data: bytes, max_size: int) -> bytes:
    """The body of a ``decompress=1`` request. Raises CompressionError: a bad checksum
    (CHECKSUM_DOESNT_MATCH, 40, as ClickHouse), an unknown method (89), a cut block (CORRUPTED_DATA, 246),
    or more than ``max_size`` bytes once decompressed (TOO_MANY_BYTES, 307)."""
    out = bytearray()
    pos = 0
    while pos < len(data):
        if len(data) - pos < CHECKSUM_SIZE + HEADER.size:
            raise CompressionError("Cannot read all data: a compressed block's header is cut short", 246, "CORRUPTED_DATA")
        method, compressed_size, size = HEADER.unpack_from(data, pos + CHECKSUM_SIZE)
        block = data[pos + CHECKSUM_SIZE:pos + CHECKSUM_SIZE + compressed_size]
        if compressed_size < HEADER.size or len(block) != compressed_size:
            raise CompressionError(f"Cannot read all data: a compressed block says {compressed_size} bytes, "
                                   f"{len(block)} follow", 246, "CORRUPTED_DATA")
        expected = data[pos:pos + CHECKSUM_SIZE]
        if checksum(block) != expected:
            raise CompressionError(f"Checksum doesn't match: corrupted data. Reference: {expected.hex()}. "
                                   f"Actual: {checksum(block).hex()}. Size of compressed block: {compressed_size}",
                                   40, "CHECKSUM_DOESNT_MATCH")
        if len(out) + size > max_size:
            raise body_too_large(max_size)
        out += _decompress_block(method, block[HEADER.size:], size)
        pos += CHECKSUM_SIZE + compressed_size
    return bytes(out)


def _decompress_block(method: int, payload: bytes, size: int) -> bytes:
    try:
        if method == METHOD_LZ4:
            chunk = lz4.block.decompress(payload, uncompressed_size=size)
        elif method == METHOD_ZSTD:
            chunk = zstd.ZstdDecompressor().decompress(payload, max_length=size)
        elif method == METHOD_NONE:
            chunk = payload
        else:
            raise CompressionError(f"Unknown compression method: {method:#04x}", 89, "UNKNOWN_COMPRESSION_METHOD")
    except CompressionError:
        raise
    except Exception as exc:  # noqa: BLE001 - each codec has its own error type
        raise CompressionError(f"Cannot decompress a block: {exc}", 271, "CANNOT_DECOMPRESS") from None
    if len(chunk) != size:
        raise CompressionError(f"Cannot decompress a block: {len(chunk)} bytes, the header says {size}",
                               271, "CANNOT_DECOMPRESS")
    return chunk


# ------------------------------------------------------------ HTTP Content-Encoding / Accept-Encoding
def response_encoding(accept_encoding: str) -> str | None:
    """The encoding ClickHouse would answer with for this ``Accept-Encoding`` (None: plain)."""
    offered = {part.split(";", 1)[0].strip().lower() for part in accept_encoding.split(",")}
    offered |= {"gzip"} if "x-gzip" in offered else set()
    return next((name for name in RESPONSE_ENCODINGS if name in offered), None)


def encode(data: bytes, encoding: str, level: int = 3) -> bytes:
    """The response body in an encoding ``response_encoding`` picked. ``level``: ClickHouse's
    ``http_zlib_compression_level`` (1..9; ClickHouse's default is 3), used for gzip/deflate."""
    if encoding == "gzip":
        compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return compressor.compress(data) + compressor.flush()
    if encoding == "deflate":
        return zlib.compress(data, level)
    if encoding == "zstd":
        return zstd.compress(data)
    if encoding == "br":
        return bytes(brotli.compress(data, quality=4))
    if encoding == "xz":
        return lzma.compress(data)
    if encoding == "lz4":
        return bytes(lz4.frame.compress(data))
    if encoding == "bz2":
        return bz2.compress(data)
    raise ValueError(f"unknown encoding {encoding}")


@dataclass
class _Stream:
    """One streaming decoder: ``feed(data, limit)`` gives at most ``limit`` bytes, ``more()`` says output is pending."""

    feed: Callable[[bytes, int], bytes]
    more: Callable[[], bool]


def _stream(encoding: str) -> _Stream | None:
    if encoding in ("gzip", "x-gzip", "deflate"):
        z = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS)
        return _Stream(lambda data, limit: z.decompress(z.unconsumed_tail + data, limit), lambda: bool(z.unconsumed_tail))
    if encoding == "zstd":
        zd = zstd.ZstdDecompressor()
        return _Stream(lambda data, limit: zd.decompress(data, limit), lambda: not zd.needs_input and not zd.eof)
    if encoding == "lz4":
        ld = lz4.frame.LZ4FrameDecompressor()
        return _Stream(lambda data, limit: ld.decompress(data, limit), lambda: not ld.needs_input and not ld.eof)
    if encoding in ("xz", "bz2"):
        xd: lzma.LZMADecompressor | bz2.BZ2Decompressor = lzma.LZMADecompressor() if encoding == "xz" else bz2.BZ2Decompressor()
        return _Stream(lambda data, limit: xd.decompress(data, limit), lambda: not xd.needs_input and not xd.eof)
    if encoding == "br":
        bd = brotli.Decompressor()
        return _Stream(lambda data, limit: bytes(bd.process(data, output_buffer_limit=limit)),
                       lambda: not bd.can_accept_more_data())
    return None


def decode(data: bytes, encoding: str, max_size: int) -> bytes:
    """A request body sent with ``Content-Encoding: encoding``, at most ``max_size`` bytes decoded.
    ``identity`` or empty: as is. Unknown encoding: ClickHouse's UNKNOWN_COMPRESSION_METHOD (89)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity", "none"):
        if len(data) > max_size:
            raise body_too_large(max_size)
        return data
    stream = _stream(encoding)
    if stream is None:
        raise CompressionError(f"Unknown HTTP Content-Encoding: {encoding[:32]}", 89, "UNKNOWN_COMPRESSION_METHOD")
    out = bytearray()
    try:
        chunk = stream.feed(data, max_size + 1)
        while True:
            out += chunk
            if len(out) > max_size:
                raise body_too_large(max_size)
            if not chunk or not stream.more():
                break
            chunk = stream.feed(b"", max_size + 1 - len(out))
    except CompressionError:
        raise
    except Exception as exc:  # noqa: BLE001 - each codec has its own error type
        raise CompressionError(f"Cannot decode the request body ({encoding}): {exc}", 271, "CANNOT_DECOMPRESS") from None
    return bytes(out)
