"""Rows without a raw origin (sessions, issue states, alerts) are cut into records below the limit."""

from __future__ import annotations

from agents.delivery import row_sends


def test_rows_are_cut_below_the_limit_and_none_is_lost() -> None:
    lines = [b'{"n":%d,"pad":"%s"}' % (i, b"x" * (i % 300)) for i in range(5000)]
    sends = row_sends("storage", "sessions", lines, 64 * 1024, partition=3)
    assert len(sends) > 10
    assert all(len(value) <= 64 * 1024 for _, _, value, _, _ in sends)
    assert [line for _, _, value, _, _ in sends for line in value.split(b"\n")] == lines
    assert {(topic, partition, tuple(headers)) for topic, _, _, partition, headers in sends} == \
        {("storage", 3, (("pulse-table", b"sessions"),))}


def test_a_line_alone_above_the_limit_still_travels_whole() -> None:
    sends = row_sends("storage", "alerts", [b"a" * 100, b"b" * 10], 50)
    assert [value for _, _, value, _, _ in sends] == [b"a" * 100, b"b" * 10]
