"""Request bodies in every Content-Encoding an SDK sends (pipeline/ingest/compression.py): decoded
exactly, refused past the cap without decoding the rest, refused when broken or unknown.
sentry-python sends ``br`` whenever the ``brotli`` module is importable."""

from __future__ import annotations

import gzip
import zlib

import brotli
import pytest

from pipeline.ingest.compression import InflateError, inflate

try:
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd  # type: ignore[no-redef]

BODY = b'{"event_id": "9ec79c33ec9942ab8353589fcb2e04dc", "message": "m"}\n' * 50
ENCODE = {"gzip": gzip.compress, "x-gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress,
          "zstd": zstd.compress}


@pytest.mark.parametrize("encoding", sorted(ENCODE))
def test_each_encoding_decodes_exactly(encoding: str) -> None:
    assert inflate(ENCODE[encoding](BODY), encoding, len(BODY)) == BODY


@pytest.mark.parametrize("encoding", sorted(ENCODE))
def test_a_bomb_is_refused_at_the_cap(encoding: str) -> None:
    bomb = ENCODE[encoding](b" " * 20_000_000)
    with pytest.raises(InflateError) as err:
        inflate(bomb, encoding, 1_000_000)
    assert err.value.status == 413


@pytest.mark.parametrize("encoding", ["deflate", "br", "zstd"])
def test_broken_and_truncated_bodies_are_400(encoding: str) -> None:
    for bad in (b"not compressed at all", ENCODE[encoding](BODY)[:-8]):
        with pytest.raises(InflateError) as err:
            inflate(bad, encoding, len(BODY))
        assert err.value.status == 400, (encoding, bad[:20])


def test_gzip_announced_but_plain_passes_and_unknown_is_415() -> None:
    assert inflate(BODY, "gzip", len(BODY)) == BODY
    with pytest.raises(InflateError) as err:
        inflate(BODY, "compress", len(BODY))
    assert err.value.status == 415
