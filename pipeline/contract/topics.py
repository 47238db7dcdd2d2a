"""Which topic carries which event type, and the headers on storage messages."""

from __future__ import annotations

import re
from collections.abc import Sequence
from operator import lt

from pipeline.settings import KafkaSettings

# Storage messages (worker -> sink, and dead letters) carry their destination in headers so the
# sink can route bytes without parsing them.
HEADER_TABLE = "pulse-table"
# Where the rows came from, so the sink can drop what a worker replay produces again:
#   "topic:partition:offset"      every line of the value came from that raw message, or
#   "topic:partition:first-last"  the lines came from raw offsets first..last; then the
#                                 pulse-src-lines header says which line came from which offset.
HEADER_SOURCE = "pulse-src"
# Each line's raw offset, run-length encoded: "<offset>x<count>" joined by commas, offsets strictly
# increasing, counts >= 1 and summing to the number of lines (b"\n"-separated) of the value.
HEADER_SOURCE_LINES = "pulse-src-lines"

_LINE_SOURCES = re.compile(rb"\d+x[1-9]\d*(?:,\d+x[1-9]\d*)*")


def encode_source_range(topic: str, partition: int, first: int, last: int) -> bytes:
    """The range form of the pulse-src header, e.g. ``b"raw.actions:3:100-250"``."""
    if not 0 <= first <= last or partition < 0:
        raise ValueError(f"bad source range {partition}:{first}-{last}")
    return f"{topic}:{partition}:{first}-{last}".encode()


def encode_line_sources(offsets: Sequence[int]) -> bytes:
    """The pulse-src-lines header for one raw offset per line, in line order.

    >>> encode_line_sources([100, 100, 100, 101, 105, 105])
    b'100x3,101x1,105x2'

    One pass, one formatted pair per run (a raw message's lines are one run): it runs per batch
    on tens of thousands of lines. Raises ValueError on no lines, a negative or a decreasing
    offset, since the sink would dead-letter such a message whole.
    """
    if not offsets:
        raise ValueError("no lines")
    runs: list[str] = []
    it = iter(offsets)
    prev = next(it)
    if prev < 0:
        raise ValueError(f"negative offset {prev}")
    count = 1
    for offset in it:
        if offset == prev:
            count += 1
        elif offset > prev:
            runs.append(f"{prev}x{count}")
            prev, count = offset, 1
        else:
            raise ValueError(f"offsets must not decrease: {offset} after {prev}")
    runs.append(f"{prev}x{count}")
    return ",".join(runs).encode()


def encode_line_runs(runs: Sequence[tuple[int, int]]) -> bytes:
    """The pulse-src-lines header from (offset, lines) runs, as ``encode_line_sources`` would write it
    for ``[offset] * lines`` of each run: one formatted pair per raw message instead of one list
    item per line. Same checks: no runs, a negative or a non-increasing offset, or a run without
    lines raise ValueError.

    >>> encode_line_runs([(100, 3), (101, 1), (105, 2)])
    b'100x3,101x1,105x2'
    """
    if not runs:
        raise ValueError("no lines")
    prev = -1
    for offset, count in runs:
        if offset <= prev or offset < 0 or count < 1:
            raise ValueError(f"bad line run {offset}x{count} after offset {prev}")
        prev = offset
    return ",".join([f"{offset}x{count}" for offset, count in runs]).encode()


def parse_line_sources(header: bytes) -> tuple[list[int], list[int]]:
    """``b"100x3,101x1,105x2"`` -> ``([100, 101, 105], [3, 1, 2])``: run offsets and line counts.

    Raises ValueError (with the reason) on bad syntax, a count of 0 or offsets not strictly
    increasing. Whether the counts match the value is the caller's check.
    """
    if _LINE_SOURCES.fullmatch(header) is None:
        raise ValueError(f"{HEADER_SOURCE_LINES} is not <offset>x<count>[,...]: {header[:80]!r}")
    numbers = list(map(int, header.replace(b"x", b",").split(b",")))
    offsets, counts = numbers[0::2], numbers[1::2]
    if not all(map(lt, offsets, offsets[1:])):
        bad = next(i for i in range(1, len(offsets)) if offsets[i] <= offsets[i - 1])
        raise ValueError(f"{HEADER_SOURCE_LINES} offsets not strictly increasing: {offsets[bad]} after {offsets[bad - 1]}")
    return offsets, counts


def topic_for_type(kafka: KafkaSettings, event_type: str) -> str:
    """API calls, resources and custom metrics travel with vitals: all are measurements."""
    if event_type == "error":
        return kafka.topic_errors
    if event_type == "action":
        return kafka.topic_actions
    if event_type in ("vital", "api", "metric"):
        return kafka.topic_vitals
    raise ValueError(f"unknown event type {event_type!r}")
