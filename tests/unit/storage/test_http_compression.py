"""ClickHouse's HTTP compression: the block framing checked against bytes chDB itself wrote, every
Content-Encoding round trip, and the bound on what a client's body may decompress to."""

from __future__ import annotations

import gzip
import struct
import zlib

import brotli
import lz4.frame
import pytest

from pipeline.storage.http_compression import (
    CompressionError, checksum, compress_blocks, decode, decompress_blocks, encode, response_encoding)

# A column file chDB 26.9 wrote for a String column (CODEC(LZ4)) holding 'frontend-pulse', 'frontend-pulse',
# 'ClickHouse': ClickHouse's own compressed-block framing, checksum included.
CHDB_BLOCK = bytes.fromhex(
    "a3b49a82df9676abbf8b527ffaf724b5822500000026000000ea66726f6e74656e642d70756c73650e00a0436c69636b486f757365")
CHDB_PLAIN = b"frontend-pulsefrontend-pulseClickHouse"  # the characters; the lengths are in another file


def test_checksum_matches_the_block_chdb_wrote() -> None:
    assert checksum(CHDB_BLOCK[16:]) == CHDB_BLOCK[:16]
    assert decompress_blocks(CHDB_BLOCK, max_size=1000) == CHDB_PLAIN


def test_compress_blocks_round_trips_and_splits_into_blocks() -> None:
    data = bytes(range(256)) * 5000  # 1.28 MB: two blocks of at most 1 MiB
    framed = compress_blocks(data)
    assert framed[16] == 0x82 and decompress_blocks(framed, max_size=len(data)) == data
    first_size = struct.unpack_from("<I", framed, 17)[0]
    assert struct.unpack_from("<I", framed, 21)[0] == 1024 * 1024  # the first block holds 1 MiB
    assert framed[16 + first_size + 16] == 0x82  # a second block follows
    assert compress_blocks(b"") == b"" and decompress_blocks(b"", 10) == b""


def test_a_flipped_bit_is_clickhouse_checksum_error() -> None:
    damaged = bytearray(compress_blocks(b"SELECT 1"))
    damaged[-1] ^= 1
    with pytest.raises(CompressionError) as err:
        decompress_blocks(bytes(damaged), 1000)
    assert err.value.code == 40 and "(CHECKSUM_DOESNT_MATCH)" in str(err.value) and err.value.status == 400


def test_cut_blocks_and_unknown_methods_are_refused() -> None:
    framed = compress_blocks(b"SELECT 1")
    with pytest.raises(CompressionError) as err:
        decompress_blocks(framed[:-2], 1000)
    assert err.value.code == 246
    with pytest.raises(CompressionError):
        decompress_blocks(framed[:20], 1000)
    block = struct.pack("<BII", 0x55, 9 + 3, 3) + b"abc"
    with pytest.raises(CompressionError) as err:
        decompress_blocks(checksum(block) + block, 1000)
    assert err.value.code == 89


def test_uncompressed_method_blocks_are_read() -> None:
    block = struct.pack("<BII", 0x02, 9 + 3, 3) + b"abc"
    assert decompress_blocks(checksum(block) + block, 3) == b"abc"


def test_a_block_bomb_stops_at_the_operator_bound_before_decompressing() -> None:
    framed = compress_blocks(bytes(1024 * 1024) * 4)  # 4 MiB of zeros: a few KiB framed
    assert len(framed) < 40_000
    with pytest.raises(CompressionError) as err:
        decompress_blocks(framed, max_size=2 * 1024 * 1024)
    assert err.value.code == 307 and err.value.status == 413
    assert len(decompress_blocks(framed, max_size=4 * 1024 * 1024)) == 4 * 1024 * 1024


@pytest.mark.parametrize("accept, chosen", [
    ("gzip, deflate, br", "gzip"), ("br;q=1.0, gzip;q=0.1", "gzip"), ("lz4, zstd, br, gzip", "gzip"),
    ("br", "br"), ("zstd, br", "zstd"), ("deflate", "deflate"), ("lz4", "lz4"), ("x-gzip", "gzip"),
    ("identity", None), ("", None), ("snappy", None)])
def test_response_encoding_follows_clickhouse_order(accept: str, chosen: str | None) -> None:
    assert response_encoding(accept) == chosen


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd", "br", "xz", "lz4", "bz2"])
def test_every_encoding_round_trips_and_is_bounded(encoding: str) -> None:
    data = b"SELECT count() FROM errors WHERE project = 'shop'\n" * 2000
    encoded = encode(data, encoding)
    assert len(encoded) < len(data) // 10
    assert decode(encoded, encoding, max_size=len(data)) == data
    with pytest.raises(CompressionError) as err:
        decode(encoded, encoding, max_size=len(data) - 1)
    assert err.value.code == 307


def test_decode_reads_what_standard_libraries_write() -> None:
    assert decode(gzip.compress(b"SELECT 1"), "gzip", 100) == b"SELECT 1"
    assert decode(zlib.compress(b"SELECT 1"), "deflate", 100) == b"SELECT 1"
    assert decode(brotli.compress(b"SELECT 1"), "br", 100) == b"SELECT 1"
    assert decode(lz4.frame.compress(b"SELECT 1"), "lz4", 100) == b"SELECT 1"
    assert decode(b"SELECT 1", "identity", 100) == b"SELECT 1"


def test_a_gzip_bomb_stops_at_the_bound() -> None:
    bomb = gzip.compress(bytes(64 * 1024 * 1024))  # 64 MiB of zeros in ~64 KiB
    with pytest.raises(CompressionError) as err:
        decode(bomb, "gzip", max_size=1024 * 1024)
    assert err.value.code == 307


def test_bad_or_unknown_encodings_are_clickhouse_errors() -> None:
    with pytest.raises(CompressionError) as err:
        decode(b"not gzip", "gzip", 100)
    assert err.value.code == 271
    with pytest.raises(CompressionError) as err:
        decode(b"x", "snappy", 100)
    assert err.value.code == 89
    with pytest.raises(CompressionError):
        decode(b"x" * 101, "", 100)
