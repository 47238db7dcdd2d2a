"""Merging rollups_minute partial rows per series (pipeline/rollups/minute.merge_rollup_rows) and
packing them into rollup-partials messages (alert_partial_messages): the merge reads exactly like
the unmerged rows, and no message exceeds its limit."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.alerts.evaluate import WindowAggregate, merge
from pipeline.rollups.minute import (KEY_COLUMNS, alert_partial_messages, fold_rollup_rows, fold_rollup_series,
                                     merge_rollup_rows, rollup_one, rollup_rows, rollup_series)


def row(page: str = "/a", minute: int = 60, project: str = "shop", **values: Any) -> dict[str, Any]:
    return {"project": project, "minute": minute, "environment": "production", "release": "r1", "page": page,
            "browser": "Chrome", **values}


def test_rows_of_one_series_merge_and_others_stay_apart() -> None:
    rows = [row(events=2, errors=1, api_duration_ms=1.5, api_latency={700: 1, 701: 2}),
            row(page="/b", events=1),
            row(events=3, pageviews=2, api_duration_ms=2.0, api_latency={"700": 4}, lcp={10: 1}),
            row(minute=120, events=1)]
    before = copy.deepcopy(rows)
    merged = merge_rollup_rows(rows)
    assert rows == before  # inputs untouched
    assert merged == [row(events=5, errors=1, pageviews=2, api_duration_ms=3.5, api_latency={700: 5, 701: 2},
                          lcp={10: 1}),
                      row(page="/b", events=1), row(minute=120, events=1)]


def test_folding_message_by_message_is_the_merge_of_all_rows() -> None:
    """The worker folds each message's partials into the batch's as it goes (no copy); the result
    must serialize exactly as ``merge_rollup_rows`` of every row, float sums and column order included."""
    messages = [[row(events=1, api_duration_ms=0.1, api_latency={700: 1})],
                [row(events=2, api_duration_ms=0.2, lcp={5: 1}), row(page="/b", events=1, clicks=1)],
                [row(events=1, api_duration_ms=0.7, errors=1, api_latency={700: 2, 650: 1})],
                [row(minute=120, events=1), row(page="/b", events=3, long_task_blocking_ms=12.25)]]
    expected = merge_rollup_rows([r for rows in copy.deepcopy(messages) for r in rows])
    folded: dict[Any, dict[str, Any]] = {}
    for rows in messages:
        fold_rollup_rows(folded, rows)
    dump = [orjson.dumps(r, option=orjson.OPT_NON_STR_KEYS) for r in folded.values()]
    assert dump == [orjson.dumps(r, option=orjson.OPT_NON_STR_KEYS) for r in expected]
    assert list(folded.values())[0]["api_duration_ms"] == (0.1 + 0.2) + 0.7 != 0.1 + (0.2 + 0.7)  # same order
    assert list(folded.values())[0] is messages[0][0]  # the first row of a series is taken over, not copied
    with pytest.raises(ValueError, match="'noise'"):
        fold_rollup_rows(folded, [row(events=1, noise="yes")])


def test_folded_rollup_rows_of_real_events_read_like_merged_ones() -> None:
    from datetime import datetime, timezone

    rows = [("vitals", {"project": "shop", "timestamp": datetime(2026, 1, 1, 0, 0, s, tzinfo=timezone.utc),
                        "environment": "production", "release": "r1", "route": None, "url": f"https://x.io/p{s % 2}",
                        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0", "name": "LCP",
                        "value": 1000.0 + 37 * s}) for s in range(40)]
    per_message = [rollup_rows(rows[i:i + 3]) for i in range(0, 40, 3)]
    expected = merge_rollup_rows([r for rs in copy.deepcopy(per_message) for r in rs])
    folded: dict[Any, dict[str, Any]] = {}
    for rs in per_message:
        fold_rollup_rows(folded, rs)
    assert len(folded) == 2 and list(folded.values()) == expected


def test_series_keys_are_the_rows_key_columns_and_fold_alike() -> None:
    """``rollup_series`` keys each row by its ``KEY_COLUMNS`` values, the key ``fold_rollup_rows``
    reads back out of the row; folding by those keys gives the same rows, in the same order."""
    from datetime import datetime, timezone

    from pipeline.common import epoch_us, page_of

    ua = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
    rows = [(table, {"project": "shop", "timestamp": datetime(2026, 1, 1, 0, s // 20, s % 60, tzinfo=timezone.utc),
                     "environment": "production", "release": f"r{s % 2}", "route": None,
                     "url": f"https://x.io/p{s % 3}", "user_agent": ua, **extra})
            for s in range(60)
            for table, extra in [("vitals", {"name": "LCP", "value": 900.0 + 41 * s}),
                                 ("api_calls", {"kind": "fetch", "duration_ms": 10.0 + s, "ok": s % 4 != 0,
                                                "request_url": "https://x.io/checkout/pay"}),
                                 ("actions", {"kind": "click"})][s % 3:s % 3 + 1]]
    timed = [(t, r, epoch_us(r["timestamp"]) // 1000, page_of(r["route"], r["url"])) for t, r in rows]
    by_rows: dict[Any, dict[str, Any]] = {}
    by_series: dict[Any, dict[str, Any]] = {}
    for i in range(0, len(timed), 4):
        series = rollup_series(timed[i:i + 4])
        assert all(key == tuple(r[c] for c in KEY_COLUMNS) for key, r in series.items())
        fold_rollup_rows(by_rows, copy.deepcopy(list(series.values())))
        fold_rollup_series(by_series, series)
    assert list(by_series) == list(by_rows)
    dump = [orjson.dumps(r, option=orjson.OPT_NON_STR_KEYS) for r in by_series.values()]
    assert dump == [orjson.dumps(r, option=orjson.OPT_NON_STR_KEYS) for r in by_rows.values()]
    assert any("lcp" in r for r in by_series.values()) and any("api_latency" in r for r in by_series.values())


def test_one_event_rolls_up_as_a_series_of_one_and_folds_alike() -> None:
    """``rollup_one`` (a message of one event) gives ``rollup_series``' only (key, row), column order
    included, for every table and branch; folding its rows message by message reads like the merge."""
    from datetime import datetime, timezone

    from pipeline.rollups.minute import SKETCH_TABLES, RollupRules

    ua = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
    extras = [("vitals", {"name": "LCP", "value": 3000.0}), ("vitals", {"name": "CLS", "value": 0.01}),
              ("vitals", {"name": "LONG_TASK", "value": 80.0}), ("vitals", {"name": "CUSTOM", "value": 1.0}),
              ("api_calls", {"kind": "fetch", "duration_ms": 120.0, "ok": False, "request_url": "https://x.io/checkout"}),
              ("api_calls", {"kind": "resource", "duration_ms": 1500.0, "ok": False, "request_url": "https://x.io/a.js"}),
              ("actions", {"kind": "click"}), ("actions", {"kind": "pageview"}), ("actions", {"kind": "scroll"}),
              ("errors", {"noise": ""}), ("errors", {"noise": "extension"})]
    rules = RollupRules(checkout_patterns=("/checkout",))
    timed = [(table, {"project": "shop", "environment": "production", "release": "r1", "user_agent": ua, **extra},
              1_767_225_600_000 + 7_000 * i, "/p") for i, (table, extra) in enumerate(extras)]
    folded: dict[Any, dict[str, Any]] = {}
    by_rows: dict[Any, dict[str, Any]] = {}
    for item in timed:
        (key, expected), = rollup_series([item], rules).items()
        got_key, got = rollup_one(*item, rules)
        assert (got_key, list(got.items())) == (key, list(expected.items()))
        # the worker dumps other tables' partials without OPT_NON_STR_KEYS: they must hold no sketch
        assert item[0] in SKETCH_TABLES or not any(isinstance(v, dict) for v in got.values()), item
        fold_rollup_rows(by_rows, [copy.deepcopy(got)])
        fold_rollup_series(folded, {got_key: got})
    dump = [orjson.dumps(r, option=orjson.OPT_NON_STR_KEYS) for r in folded.values()]
    assert dump == [orjson.dumps(r, option=orjson.OPT_NON_STR_KEYS) for r in by_rows.values()]
    merged = list(folded.values())
    assert len(merged) == 2 and merged[0]["lcp"] and merged[0]["api_latency"] and merged[0]["checkout_failures"] == 1
    assert (merged[1]["events"], merged[1]["errors"]) == (2, 1)  # the noise error counts as an event only


def test_a_column_that_is_neither_number_nor_sketch_is_refused() -> None:
    with pytest.raises(ValueError, match="'noise'"):
        merge_rollup_rows([row(events=1), row(events=1, noise="yes")])


PAGES = st.sampled_from(["/a", "/b", "/c"])
SKETCH = st.dictionaries(st.integers(-5, 5), st.integers(1, 9), max_size=4)
ROWS = st.lists(st.builds(lambda page, minute, release, events, errors, lat, lcp: {
    **row(page, minute), "release": release, "events": events, "errors": errors,
    **({"api_latency": lat} if lat else {}), **({"lcp": lcp} if lcp else {})},
    PAGES, st.sampled_from([60, 120]), st.sampled_from(["r1", "r2"]), st.integers(1, 50), st.integers(0, 5),
    SKETCH, SKETCH), max_size=40)


@settings(max_examples=150, deadline=None)
@given(ROWS)
def test_merged_rows_read_as_the_unmerged_ones(rows: list[dict[str, Any]]) -> None:
    merged = merge_rollup_rows(rows)
    keys = [(r["minute"], r["page"], r["release"]) for r in merged]
    assert len(keys) == len(set(keys))  # one row per series
    as_aggregates = [WindowAggregate.from_rollup_row(r) for r in merged]
    assert merge(as_aggregates, 60_000) == merge([WindowAggregate.from_rollup_row(r) for r in rows], 60_000)
    assert len(merge(as_aggregates, 60_000)) == len(merged)  # already one aggregate per series


def decoded(messages: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    return [r for _, value in messages for r in orjson.loads(value)]


def test_partial_messages_are_per_project_and_split_under_the_limit() -> None:
    rows = [row(page=f"/p{i}", project=p, events=i + 1) for p in ("shop", "blog") for i in range(200)]
    messages = alert_partial_messages(rows, 4096)
    assert {k for k, _ in messages} == {b"shop", b"blog"}
    assert len(messages) > 2  # 400 rows do not fit in two 4 KiB values
    assert all(len(v) <= 4096 for _, v in messages)
    for key, value in messages:
        assert {r["project"] for r in orjson.loads(value)} == {key.decode()}
    assert decoded(messages) == orjson.loads(orjson.dumps(merge_rollup_rows(rows)))


def test_a_row_bigger_than_the_limit_is_cut_into_rows_that_add_up_to_it() -> None:
    big = row(events=7, errors=2, api_latency={k: k + 1 for k in range(3000)}, lcp={k: 2 for k in range(-900, 900)})
    messages = alert_partial_messages([big, row(page="/b", events=1)], 8192)
    assert all(len(v) <= 8192 for _, v in messages)
    parts = decoded(messages)
    assert len(parts) > 3
    back = merge_rollup_rows(parts)
    assert len(back) == 2
    assert WindowAggregate.from_rollup_row(back[0]) == WindowAggregate.from_rollup_row(big)


@settings(max_examples=60, deadline=None)
@given(ROWS, st.integers(4096, 20_000))
def test_messages_never_exceed_the_limit_and_lose_nothing(rows: list[dict[str, Any]], limit: int) -> None:
    messages = alert_partial_messages(rows, limit)
    assert all(len(v) <= limit for _, v in messages)
    got = merge([WindowAggregate.from_rollup_row(r) for r in decoded(messages)], 60_000)
    assert got == merge([WindowAggregate.from_rollup_row(r) for r in rows], 60_000)
