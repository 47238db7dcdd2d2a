"""The metrics API's pure parts: points -> contract events, parameters -> SQL, minute partials."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pipeline.api.common import ApiError
from pipeline.api.metrics import metric_query, point_to_event
from pipeline.contract import EVENT_ADAPTER
from pipeline.rollups.metrics import metric_rollup_rows, tags_key
from pipeline.rollups.sketch import quantile

NOW = datetime(2026, 11, 23, 10, 0, 30, tzinfo=timezone.utc)
NOW_S = int(NOW.timestamp())


def test_a_point_becomes_a_valid_metric_event() -> None:
    event = point_to_event({"name": "checkout.duration", "value": 12.5, "tags": {"route": "/cart"}}, NOW)
    parsed = EVENT_ADAPTER.validate_python({**event, "project": "shop"})
    assert parsed.type == "metric" and parsed.metric.tags == {"route": "/cart"}
    assert parsed.timestamp == NOW and parsed.session_id == "metric:checkout.duration"


@pytest.mark.parametrize(("point", "reason"), [
    ({"name": "bad name", "value": 1}, "name: String should match pattern"),
    ({"name": "x", "value": "abc"}, "value: Input should be a valid number"),
    ({"name": "x"}, "value: Field required"),
    ({"name": "x", "value": 1, "tags": {f"k{i}": "v" for i in range(21)}}, "tags: Dictionary should have at most 20"),
    ({"name": "x", "value": 1, "extra": 1}, "extra: Extra inputs are not permitted"),
    ({"name": "x", "value": 1, "timestamp": (NOW + timedelta(hours=2)).isoformat()}, "more than an hour in the future"),
])
def test_bad_points_name_the_field(point: dict, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        point_to_event(point, NOW)


def test_query_picks_the_table_by_period_and_merges_states() -> None:
    desc, series, totals = metric_query({"name": "checkout.duration", "aggregation": "p95", "period": "1m",
                                         "group_by": "route", "tag.payment": "card"}, NOW_S)
    assert desc["interval"] == "1d" and "FROM metrics_day" in series
    assert "pulseQuantile(0.95, sumMap(sketch))" in totals and "tags['payment'] = 'card'" in series
    assert "GROUP BY g0" in totals and "tags['route'] AS g0" in totals
    desc, series, _ = metric_query({"name": "web_vitals.lcp", "group_by": "page"}, NOW_S)
    assert desc["aggregation"] == "p75" and "FROM rollups_minute" in series and "sumMap(lcp)" in series
    assert desc["from"] == "2026-11-23T09:01:00+00:00"  # whole minutes of the last hour


@pytest.mark.parametrize(("params", "message"), [
    ({}, "name is required"),
    ({"name": "x", "period": "2h"}, "period must be one of"),
    ({"name": "x", "aggregation": "p42"}, "aggregation must be one of"),
    ({"name": "errors", "aggregation": "p95"}, "errors is a counter"),
    ({"name": "web_vitals.lcp", "aggregation": "sum"}, "is a distribution"),
    ({"name": "errors", "group_by": "payment"}, "built-in metrics group by"),
    ({"name": "x", "group_by": "a b"}, "is not a tag name"),
    ({"name": "errors", "tag.route": "/"}, "tag filters apply to custom metrics"),
    ({"name": "x", "tag.x'y": "1"}, "is not a tag name"),
])
def test_bad_parameters_are_400s(params: dict, message: str) -> None:
    with pytest.raises(ApiError, match=message) as info:
        metric_query(params, NOW_S)
    assert info.value.status == 400


def test_values_are_quoted() -> None:
    _, series, _ = metric_query({"name": "x", "project": "a'b\\"}, NOW_S)
    assert "project = 'a\\'b\\\\'" in series


def test_minute_partials_merge_one_series_per_tag_set() -> None:
    base = {"project": "p", "environment": "production", "release": "", "name": "m"}
    rows = [{**base, "timestamp": NOW, "value": float(v), "tags": {"a": "1", "b": "2"}} for v in range(1, 101)]
    rows += [{**base, "timestamp": NOW, "value": -3.0, "tags": {"b": "2", "a": "1"}}]
    rows += [{**base, "timestamp": NOW + timedelta(minutes=1), "value": 5.0, "tags": {}}]
    out = metric_rollup_rows(rows)
    assert len(out) == 2
    first = next(r for r in out if r["tags_key"] == tags_key({"a": "1", "b": "2"}))
    assert (first["count"], first["sum"], first["min"], first["max"], first["negatives"]) == (101, 5047.0, -3.0, 100.0, 1)
    assert first["minute"] == NOW_S - NOW_S % 60
    assert abs(quantile(first["sketch"], 0.95) - 95) <= 0.5
